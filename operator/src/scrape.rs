//! Asks serving pods for their `/metrics` (the I/O half of [`crate::load`]): all pods at once, each
//! bounded by a timeout and a size limit. A pod that does not answer, or answers something that is
//! not a runtime's metrics, is left out of the snapshot and logged: the observation then covers
//! fewer pods and says so, and replicas are not sized from it.

use crate::load::{self, PodCounters, Snapshot, Target};
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
    Metrics(#[from] load::MetricsError),
}

impl Scraper {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Scraper {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
        })
    }

    async fn counters(&self, url: &str) -> Result<PodCounters, ScrapeError> {
        let mut response = self.client.get(url).send().await?;
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
        Ok(load::parse(&String::from_utf8_lossy(&body))?)
    }

    /// Every answering target's counters (and how many did not answer); `at_seconds` stamps the
    /// snapshot (a monotonic clock's reading, taken once all answers are in).
    pub async fn snapshot(&self, targets: &[Target], at_seconds: impl FnOnce() -> f64) -> Snapshot {
        let answers =
            futures::future::join_all(targets.iter().map(|t| self.counters(&t.url))).await;
        let mut snapshot = Snapshot {
            at_seconds: at_seconds(),
            ..Default::default()
        };
        for (target, answer) in targets.iter().zip(answers) {
            match answer {
                Ok(counters) => {
                    snapshot.pods.insert(target.uid.clone(), counters);
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
