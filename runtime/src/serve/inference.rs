//! The protocol-neutral side of serving: which model this server serves, whether it takes work
//! now, and one decoded request through the batch queue to its answer. The HTTP (`server`) and
//! gRPC (`grpc`) front ends only translate to and from it, and both count their requests and
//! latencies here alike — the operator sizes replicas from those metrics, whichever protocol
//! the clients speak.

use super::batcher::Rejected;
use super::executor::{Job, Shared};
use super::v2::{InferRequest, Signature, V2Error};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The model's one output.
pub const OUTPUT_NAME: &str = "output__0";

pub struct App {
    pub shared: Arc<Shared>,
    pub model_name: String,
    pub signature: Signature,
    pub max_body_bytes: usize,
}

/// Why a request got no answer: the HTTP status it means (the gRPC front end maps it to a gRPC
/// code) and what to tell the client. 429 and 503 are worth retrying.
pub type Failure = V2Error;

fn failure(status: u16, message: impl Into<String>) -> Failure {
    V2Error {
        status,
        message: message.into(),
    }
}

/// The answer to one request: the output's shape and values.
pub struct Answer {
    pub id: Option<String>,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
    /// Whether the output goes back as raw bytes (the HTTP binary extension).
    pub binary: bool,
}

impl App {
    /// A 404 for a model name or version this server does not serve.
    pub fn check_model(&self, name: &str, version: Option<&str>) -> Result<(), Failure> {
        if name != self.model_name {
            return Err(failure(
                404,
                format!(
                    "unknown model {name:?}; this server serves {:?}",
                    self.model_name
                ),
            ));
        }
        if let Some(v) = version.filter(|v| !v.is_empty() && *v != "1") {
            return Err(failure(
                404,
                format!("unknown version {v:?} of {name:?}; available: 1"),
            ));
        }
        Ok(())
    }

    pub fn is_live(&self) -> bool {
        !self.shared.broken.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
            && !self.shared.draining.load(Ordering::Relaxed)
            && !self.shared.terminating.load(Ordering::Relaxed)
    }

    /// Why the model does not take work, for a not-ready answer.
    pub fn not_ready_reason(&self) -> String {
        if self.shared.draining.load(Ordering::Relaxed) {
            "draining: the server is shutting down".to_string()
        } else if self.shared.terminating.load(Ordering::Relaxed) {
            "shutting down: still serving while the endpoints let go of this server, then draining"
                .to_string()
        } else {
            self.shared
                .not_ready_reason()
                .unwrap_or_else(|| "not ready".into())
        }
    }

    /// Whether a request is taken now: 503 while draining or before the model has loaded.
    pub fn admit(&self) -> Result<(), Failure> {
        if self.shared.draining.load(Ordering::Relaxed) {
            return Err(failure(503, "the server is draining for shutdown"));
        }
        if !self.shared.ready.load(Ordering::Relaxed) {
            let reason = self.shared.not_ready_reason().unwrap_or_default();
            return Err(failure(503, format!("model not ready: {reason}")));
        }
        Ok(())
    }

    /// The output's shape per item, known once the model has loaded and run; before, the model's
    /// metadata cannot be told and a 503 says so (as Triton refuses a model not loaded).
    pub fn output_item_shape(&self) -> Result<Vec<i64>, Failure> {
        self.shared
            .output_item_shape
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                let reason = self.shared.not_ready_reason().unwrap_or_default();
                failure(
                    503,
                    format!("the model's metadata is known once it has loaded: {reason}"),
                )
            })
    }

    /// One decoded request through the batch queue: 400 for an output the model lacks or more
    /// items than a batch, 429 when the queue is full, else the answer once its batch has run.
    pub async fn infer(&self, request: InferRequest, arrived: Instant) -> Result<Answer, Failure> {
        if let Some(unknown) = request.outputs.iter().find(|o| o.name != OUTPUT_NAME) {
            return Err(failure(
                400,
                format!(
                    "unknown output {:?}; the model's output is {OUTPUT_NAME:?}",
                    unknown.name
                ),
            ));
        }
        let id = request.id.clone();
        let items = request.items;
        let binary = request.binary_output(OUTPUT_NAME);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            request,
            arrived,
            respond: tx,
        };
        // Items asked for: served or refused for capacity, the demand the operator sizes
        // replicas for. A request larger than any batch is neither (a client error, 400), so it
        // is not counted.
        let submitted = self.shared.submit(job, self.signature.max_batch);
        if !matches!(
            submitted,
            Err(Rejected::TooLarge { .. } | Rejected::Draining)
        ) {
            self.shared.metrics.requested_items.inc_by(u64::from(items));
        }
        if let Err(why) = submitted {
            return Err(match why {
                Rejected::Full { capacity } => {
                    self.shared.metrics.refused_items.inc_by(u64::from(items));
                    failure(
                        429,
                        format!("the batch queue is full ({capacity} items): retry later"),
                    )
                }
                Rejected::TooLarge { items, max_batch } => failure(
                    400,
                    format!("request has {items} items, more than the max batch size {max_batch}"),
                ),
                Rejected::Draining => failure(503, "the server is draining for shutdown"),
            });
        }
        match rx.await {
            Ok(Ok(out)) => Ok(Answer {
                id,
                shape: out.shape,
                data: out.data,
                binary,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(failure(500, "the executor stopped before answering")),
        }
    }

    /// Counts a finished infer request by its status, and the latency of one served: a refusal
    /// (429) or a bad request answers at once, and would make the percentiles look best exactly
    /// when the server is overloaded.
    pub fn record(&self, status: u16, arrived: Instant) {
        self.shared.metrics.count_request(status);
        if (200..300).contains(&status) {
            self.shared
                .metrics
                .request_duration
                .observe(arrived.elapsed().as_secs_f64());
        }
    }
}
