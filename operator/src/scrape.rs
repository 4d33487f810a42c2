//! Asks serving pods for their `/metrics` (the I/O half of [`crate::load`]): all pods at once, each
//! bounded by a timeout and a size limit, straight to the pod (no proxy, no redirects). A pod that
//! does not answer, or answers something that is not a runtime's metrics, is left out of the
//! snapshot and logged: the observation then covers fewer pods and says so.

use crate::load::{PodSample, Snapshot, Target};
use greenbatch_core::serving_metrics::{self, MetricsError, ServerCounters};
use std::time::Duration;

/// A runtime's `/metrics` is a few kilobytes; anything far larger is not one.
const MAX_METRICS_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct Scraper {
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answered more than {MAX_METRICS_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Metrics(#[from] MetricsError),
}

impl Scraper {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Scraper {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                // Pod IPs are reached directly: an HTTP(S)_PROXY set for the operator's other
                // traffic must not route scrapes, and a pod does not get to send us elsewhere.
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// One pod's counters, and the clock's reading when its answer began (the counters' time).
    async fn read(
        &self,
        url: &str,
        now: &(impl Fn() -> f64 + Sync),
    ) -> Result<(f64, ServerCounters), ScrapeError> {
        let mut response = self.client.get(url).send().await?;
        let at = now();
        let status = response.status();
        if !status.is_success() {
            return Err(ScrapeError::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_METRICS_BYTES {
                return Err(ScrapeError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((at, serving_metrics::parse(&String::from_utf8_lossy(&body))?))
    }

    /// Every answering target's counters (and how many did not answer), each stamped with `now`
    /// (a monotonic clock, seconds) as its answer arrived.
    pub async fn snapshot(&self, targets: &[Target], now: impl Fn() -> f64 + Sync) -> Snapshot {
        let mut snapshot = Snapshot {
            at_seconds: now(),
            ..Default::default()
        };
        let answers =
            futures::future::join_all(targets.iter().map(|t| self.read(&t.url, &now))).await;
        for (target, answer) in targets.iter().zip(answers) {
            match answer {
                Ok((at_seconds, counters)) => {
                    snapshot.pods.insert(
                        target.key.clone(),
                        PodSample {
                            at_seconds,
                            counters,
                        },
                    );
                }
                Err(e) => {
                    snapshot.unanswered += 1;
                    tracing::warn!(pod = %target.name, url = %target.url, error = %e, "could not read the serving pod's metrics");
                }
            }
        }
        snapshot
    }
}
