//! Prometheus metrics of the server (`/metrics`), named and united per Prometheus conventions
//! (`_total` counters, `_seconds` and `_joules` units, base units only). Checked with `promtool`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// A stage of the executor's work on one batch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `assemble` (staging the requests, copy to the device), `forward` (the model, synchronised),
    /// `respond` (outputs back to the host, split per request, sent).
    pub stage: String,
}

/// What is being served: the device and how the model's graph was prepared (`measuredOn.graph`
/// in a profile).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub device: String,
    pub graph: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeterLabel {
    pub kind: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<CodeLabel, Counter>,
    pub inferences: Counter,
    /// Items of every decoded infer request that fits a batch, served or refused for capacity: the arrival rate the
    /// operator sizes replicas for (served items alone top out at capacity under overload).
    pub requested_items: Counter,
    /// Items refused because the batch queue was full (429): the server past its capacity.
    pub refused_items: Counter,
    /// Requests dropped from the queue unrun because their client had left.
    pub abandoned_requests: Counter,
    pub batches: Counter,
    pub batch_size: Histogram,
    pub queue_wait: Histogram,
    pub request_duration: Histogram,
    pub energy: Counter<f64, AtomicU64>,
    pub power: Gauge<f64, AtomicU64>,
    pub idle_power: Gauge<f64, AtomicU64>,
    pub joules_per_inference: Gauge<f64, AtomicU64>,
    pub queue_depth: Gauge,
    pub max_batch_size: Gauge,
    pub max_queue_delay: Gauge<f64, AtomicU64>,
    pub adjustments: Counter,
    pub padding_items: Counter,
    /// 1 for the model as it runs now (an info-style metric: the labels carry the value).
    pub model_info: Family<ModelLabels, Gauge>,
    /// 1 for the meter behind `energy_joules_total` (`none` without one).
    pub energy_meter_info: Family<MeterLabel, Gauge>,
    /// Executor time per stage: where a batch's time goes when the server, not the device, limits
    /// throughput.
    pub executor_seconds: Family<StageLabel, Counter<f64, AtomicU64>>,
}

/// Seconds. Dense where latency SLOs sit (a few ms to a second), so that a quantile interpolated
/// inside a bucket — how the operator checks an SLO from these — is not off by a whole 1-2-5 step.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
        0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            requests: Family::default(),
            inferences: Counter::default(),
            requested_items: Counter::default(),
            refused_items: Counter::default(),
            abandoned_requests: Counter::default(),
            batches: Counter::default(),
            batch_size: Histogram::new((0..=12).map(|i| f64::from(1u32 << i))),
            queue_wait: Histogram::new(latency_buckets()),
            request_duration: Histogram::new(latency_buckets()),
            energy: Counter::default(),
            power: Gauge::default(),
            idle_power: Gauge::default(),
            joules_per_inference: Gauge::default(),
            queue_depth: Gauge::default(),
            max_batch_size: Gauge::default(),
            max_queue_delay: Gauge::default(),
            adjustments: Counter::default(),
            padding_items: Counter::default(),
            model_info: Family::default(),
            energy_meter_info: Family::default(),
            executor_seconds: Family::default(),
            registry: Registry::with_prefix("greenbatch"),
        };
        // Exported at 0 from the start: a pod that has run no batch yet is known to be idle, not
        // unknown (the operator's first window of a new pod would have no busy time at all).
        for stage in ["assemble", "forward", "respond"] {
            let _ = m.executor_seconds.get_or_create(&StageLabel {
                stage: stage.to_string(),
            });
        }
        let registry = &mut m.registry;
        registry.register(
            "requests",
            "Inference requests by HTTP status code (a gRPC call by the HTTP status of its outcome)",
            m.requests.clone(),
        );
        registry.register(
            "inferences",
            "Items inferred (a request may carry several)",
            m.inferences.clone(),
        );
        registry.register(
            "requested_items",
            "Items in decoded infer requests, served or refused for capacity",
            m.requested_items.clone(),
        );
        registry.register(
            "refused_items",
            "Items refused because the batch queue was full (429)",
            m.refused_items.clone(),
        );
        registry.register(
            "abandoned_requests",
            "Requests dropped from the queue unrun because their client had left",
            m.abandoned_requests.clone(),
        );
        registry.register("batches", "Batches executed", m.batches.clone());
        registry.register(
            "batch_size",
            "Items per executed batch",
            m.batch_size.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "Time a request waited for its batch",
            Unit::Seconds,
            m.queue_wait.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from an infer request's arrival to its response, for requests answered 2xx",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register_with_unit(
            "energy",
            "Device energy measured while serving",
            Unit::Other("joules".into()),
            m.energy.clone(),
        );
        registry.register_with_unit(
            "power",
            "Device power, last accounting interval",
            Unit::Other("watts".into()),
            m.power.clone(),
        );
        registry.register_with_unit(
            "idle_power",
            "Device power while no batch ran",
            Unit::Other("watts".into()),
            m.idle_power.clone(),
        );
        registry.register(
            "joules_per_inference",
            "Energy per inference over the last accounting window (idle share included)",
            m.joules_per_inference.clone(),
        );
        registry.register(
            "queue_depth",
            "Items waiting in the batch queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "max_batch_size",
            "Current batch size cap",
            m.max_batch_size.clone(),
        );
        registry.register_with_unit(
            "max_queue_delay",
            "Current max queue delay",
            Unit::Seconds,
            m.max_queue_delay.clone(),
        );
        registry.register(
            "batching_adjustments",
            "Changes made by the adaptive batching controller",
            m.adjustments.clone(),
        );
        registry.register(
            "padding_items",
            "Zero items added to batches to run them at a warmed-up batch shape",
            m.padding_items.clone(),
        );
        registry.register_with_unit(
            "executor",
            "Executor time per stage of a batch: assemble (staging, copy to the device), forward (the model, synchronised), respond (outputs back, split, sent)",
            Unit::Seconds,
            m.executor_seconds.clone(),
        );
        registry.register(
            "energy_meter_info",
            "The meter behind greenbatch_energy_joules_total (value 1): synthetic is a test double, not a measurement; none, no meter",
            m.energy_meter_info.clone(),
        );
        registry.register(
            "model_info",
            "The model being served: its device and graph preparation (value 1)",
            m.model_info.clone(),
        );
        m
    }

    /// Names the meter behind the energy counter (`none` without one, or while it fails).
    pub fn set_energy_meter(&self, kind: &str) {
        self.energy_meter_info.clear();
        self.energy_meter_info
            .get_or_create(&MeterLabel {
                kind: kind.to_string(),
            })
            .set(1);
    }

    /// Records what is served now, replacing what was recorded before (CUDA graphs can be abandoned
    /// at run time).
    pub fn set_model_info(&self, labels: ModelLabels) {
        self.model_info.clear();
        self.model_info.get_or_create(&labels).set(1);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Adds the time since `since` to an executor stage.
    pub fn add_stage_time(&self, stage: &str, since: std::time::Instant) {
        self.executor_seconds
            .get_or_create(&StageLabel {
                stage: stage.to_string(),
            })
            .inc_by(since.elapsed().as_secs_f64());
    }

    pub fn count_request(&self, code: u16) {
        self.requests
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_ran_no_batch_says_its_model_thread_was_idle() {
        // Absent, the busy time of a new pod's first window was unknown to the operator.
        let text = Metrics::new().encode();
        for stage in ["assemble", "forward", "respond"] {
            let line = format!("greenbatch_executor_seconds_total{{stage=\"{stage}\"}} 0");
            assert!(text.lines().any(|l| l.starts_with(&line)), "{line}\n{text}");
        }
    }
}
