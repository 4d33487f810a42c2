//! `InferenceService`: a model to serve under a latency SLO, at the least energy per inference.

use crate::condition::Condition;
use crate::model::{ModelSpec, Precision};
use crate::runtime_pod::RuntimePodSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The batch sizes profiled when the user names none.
pub const DEFAULT_CANDIDATES: [u32; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// The largest batch size the API accepts; beyond it a single request stops being "a batch".
pub const MAX_BATCH_SIZE: u32 = 4096;

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "greenbatch.dev",
    version = "v1alpha1",
    kind = "InferenceService",
    namespaced,
    shortname = "gis",
    category = "greenbatch",
    status = "InferenceServiceStatus",
    derive = "PartialEq",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Batch",
        type_ = "integer",
        json_path = ".status.selected.batchSize"
    ),
    printcolumn(name = "SLO-ms", type_ = "number", json_path = ".spec.slo.latencyMs"),
    printcolumn(
        name = "J/inf",
        type_ = "number",
        json_path = ".status.selected.joulesPerInference"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas.ready",
        priority = "1"
    ),
    printcolumn(
        name = "Inf/s",
        type_ = "number",
        json_path = ".status.observed.inferencesPerSecond",
        priority = "1"
    ),
    printcolumn(
        name = "Observed-J/inf",
        type_ = "number",
        json_path = ".status.observed.joulesPerInference",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    pub model: ModelSpec,
    pub slo: SloSpec,
    #[serde(default)]
    pub batching: BatchingSpec,
    #[serde(default)]
    pub gpu: GpuSpec,
    #[serde(default)]
    pub replicas: ReplicasSpec,
    #[serde(default)]
    pub profiling: ProfilingSpec,
    /// Scheduling and resources of the runtime pods (profiling and serving): CPU and memory,
    /// tolerations, node selector, priority class. Each field set replaces the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<RuntimePodSpec>,
    /// What to do when what the serving pods measure stays 2x off the profile's prediction — their
    /// joules per inference, or their model's time per batch (`status.observed`): `Event`
    /// (default) warns; `Reprofile` also measures the model again, at most once a day
    /// (docs/operator.md, "Drift").
    #[serde(default)]
    pub on_drift: DriftAction,
}

/// The response to a sustained drift between what serving measures and what the profile predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DriftAction {
    /// A `PredictionDrift` Warning Event; re-profiling stays the user's call (GPU minutes).
    #[default]
    Event,
    /// The Event, and when the drift holds for two observations in a row, a re-profile of the
    /// shared table, as if a new `greenbatch.dev/reprofile` token had been set. At most once a day:
    /// if the new table drifts too, the prediction rather than the table is off.
    Reprofile,
}

/// What to do when no profiled configuration meets the SLO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UnattainablePolicy {
    /// Do not deploy; the service stays Degraded with the closest configuration in status.
    #[default]
    DoNotServe,
    /// Serve at the closest configuration anyway; the service is Degraded, not Serving.
    ServeClosest,
}

/// End-to-end request latency objective: queueing plus execution, at a percentile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    // The schema's bound below is `> 0`: API servers compare an integer value with an
    // integer-cast minimum, so `minimum: 0.001` would let `0` in (1.20, tests/tests/api.rs); the
    // operator's validation holds the microsecond (greenbatch_core::slo::MIN_SLO_MS).
    /// Milliseconds, from 0.001 (a microsecond) to 3600000 (an hour).
    #[schemars(range(min = 0, max = 3_600_000), extend("exclusiveMinimum" = true))]
    pub latency_ms: f64,
    #[serde(default = "default_percentile")]
    #[schemars(extend("enum" = [50, 95, 99]))]
    pub percentile: u32,
    #[serde(default)]
    pub when_unattainable: UnattainablePolicy,
}

fn default_percentile() -> u32 {
    99
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchingMode {
    /// Profile every candidate and choose the least-energy one that meets the SLO.
    #[default]
    Auto,
    /// Serve at `batchSize`; it is still profiled, and status shows its cost against the best.
    Fixed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchingSpec {
    #[serde(default)]
    pub mode: BatchingMode,
    /// Batch sizes to profile.
    #[serde(default = "default_candidates")]
    #[schemars(length(min = 1, max = 32), inner(range(min = 1, max = 4096)))]
    pub candidates: Vec<u32>,
    /// Required with `mode: fixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: Option<u32>,
}

fn default_candidates() -> Vec<u32> {
    DEFAULT_CANDIDATES.to_vec()
}

impl Default for BatchingSpec {
    fn default() -> Self {
        BatchingSpec {
            mode: BatchingMode::Auto,
            candidates: default_candidates(),
            batch_size: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    /// Extended resource name requested per pod.
    #[serde(default = "default_gpu_resource")]
    #[schemars(length(min = 1, max = 253))]
    pub resource: String,
    /// GPUs per pod: 1, or 0 to run on the CPU (for development). A runtime pod serves on one
    /// GPU; more throughput comes from more replicas.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1))]
    pub count: u32,
    /// GPU product (the `nvidia.com/gpu.product` node label), e.g. `NVIDIA-H100-80GB-HBM3`. Profiles
    /// are per product; pods are pinned to nodes with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub product: Option<String>,
}

fn default_gpu_resource() -> String {
    "nvidia.com/gpu".to_string()
}

fn one() -> u32 {
    1
}

impl Default for GpuSpec {
    fn default() -> Self {
        GpuSpec {
            resource: default_gpu_resource(),
            count: 1,
            product: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasSpec {
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub min: u32,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub max: u32,
}

impl Default for ReplicasSpec {
    fn default() -> Self {
        ReplicasSpec { min: 1, max: 1 }
    }
}

/// The measurement protocol (see docs/measurement.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfilingSpec {
    /// Measurement windows per batch size; the median is reported.
    #[serde(default = "default_windows")]
    #[schemars(range(min = 3, max = 50))]
    pub windows: u32,
    /// Length of each window. The NVML energy counter moves every ~100 ms: below 0.5 s it is noise.
    #[serde(default = "default_window_seconds")]
    #[schemars(range(min = 0.1, max = 60.0))]
    pub window_seconds: f64,
    #[serde(default = "default_warmup_seconds")]
    #[schemars(range(min = 0.0, max = 300.0))]
    pub warmup_seconds: f64,
    /// Re-measure a batch size when (max - min) / median of its windows exceeds this.
    #[serde(default = "default_max_spread")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub max_spread: f64,
    #[serde(default)]
    pub precision: Precision,
}

fn default_windows() -> u32 {
    5
}
fn default_window_seconds() -> f64 {
    0.5
}
fn default_warmup_seconds() -> f64 {
    1.0
}
fn default_max_spread() -> f64 {
    0.1
}

impl Default for ProfilingSpec {
    fn default() -> Self {
        ProfilingSpec {
            windows: default_windows(),
            window_seconds: default_window_seconds(),
            warmup_seconds: default_warmup_seconds(),
            max_spread: default_max_spread(),
            precision: Precision::Fp32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Profiling,
    Serving,
    Degraded,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Name of the EnergyProfile (same namespace) the choice was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<SelectedConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedServing>,
    /// The last `greenbatch.dev/reprofile` token honoured for this service: never honoured again,
    /// even once the profile's own list of tokens (the last 16, shared by every service using
    /// it and by drift re-profiles) has let it go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprofile_token: Option<String>,
}

/// The configuration greenbatch serves at, with the numbers it was chosen on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectedConfig {
    pub batch_size: u32,
    pub max_queue_delay_ms: f64,
    /// Expected latency at the SLO percentile (queue delay + execution).
    pub expected_latency_ms: f64,
    pub percentile: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joules_per_inference: Option<f64>,
    /// What batch 1 costs: the baseline the choice saves against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch1_joules_per_inference: Option<f64>,
    pub slo_attainable: bool,
    /// The meter the energy numbers came from.
    pub meter: greenbatch_core::MeterKind,
    pub reason: String,
    /// The EnergyProfile the choice was made from: while a new profile is measured (a new model
    /// digest, GPU product or runtime version), the one the running pods were configured from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub desired: u32,
    pub ready: u32,
    /// Why `desired` is what it is: the observed load and one replica's capacity, or the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Items per second one pod was measured to sustain (its model thread on full batches, or
    /// while the pods refused work), when below the profile's capacity: used for sizing instead,
    /// while the batch size stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_capacity_per_replica: Option<f64>,
    /// A lower count the load has asked for, held back until it has for the operator's
    /// scale-down delay: a lull of a window or two does not stop pods that take minutes to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<PendingScaleDown>,
}

/// A scale-down waiting out the operator's scale-down delay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingScaleDown {
    /// The most replicas the load has asked for since `since` (fewer than `desired`).
    pub to: u32,
    /// When the load first asked for fewer (RFC 3339).
    pub since: String,
}

/// What the serving pods measured (their `/metrics`, summed over the pods) between two scrapes,
/// to size replicas from and to check the profile's predictions against.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedServing {
    /// Inference requests answered per second (any status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Items inferred per second (a request may carry several): the arrival rate replicas are
    /// sized for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inferences_per_second: Option<f64>,
    /// Items refused per second because the pods' queues were full (429): demand past their
    /// capacity. Refusals in two observations in a row teach the operator a pod's real capacity
    /// (`replicas.measuredCapacityPerReplica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_per_second: Option<f64>,
    /// Device energy over items inferred, idle share included; absent without a meter or traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joules_per_inference: Option<f64>,
    /// The meter the pods' joules come from (`nvml-counter`, `nvml-power`, `rapl`; `synthetic` is
    /// a test double, not a measurement), or several, comma-separated, when the pods differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_meter: Option<String>,
    /// What the profile predicts for the same rate, batching and pods (`greenbatch_core::
    /// energy_model::predict_config`): a `PredictionDrift` Event fires when the two part by 2x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_joules_per_inference: Option<f64>,
    /// When the table the prediction comes from was measured (the EnergyProfile's `finishedAt`):
    /// two readings drift "in a row" only against the same table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_measured_at: Option<String>,
    /// Request latency at the SLO's percentile (bucket-interpolated, server side: arrival to
    /// response), beside `spec.slo.latencyMs`; an `SLOMissed` Warning Event fires when it goes over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_at_slo_percentile_ms: Option<f64>,
    /// Request latency p99 from the pods' histograms (bucket-interpolated); absent without traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
    /// The batch cap the pods run now (the largest over pods): their adaptive batching moves it
    /// within `selected.batchSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    /// The max queue delay the pods run now (mean over pods), adapted to the rate they see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_ms: Option<f64>,
    /// The model's own time per batch in the pods (their `forward` stage), over the window's
    /// batches; absent below 20 batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_ms_per_batch: Option<f64>,
    /// The rows per batch those batches ran with (items plus padding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_batch_size: Option<f64>,
    /// The profile's median latency at that batch size (interpolated between the sizes it
    /// measured): when the two part by 2x the profile no longer describes the hardware — a
    /// `PredictionDrift` Event, measured with or without an energy meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_forward_ms_per_batch: Option<f64>,
    /// Share of the window the pods' model threads were busy (assembling, running and answering
    /// batches), mean over the pods. A pod running full batches at the selected cap this busy
    /// shows what it can serve (`replicas.measuredCapacityPerReplica`) before any request is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_busy: Option<f64>,
    /// Serving pods measured (both scrapes answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
    /// Length of the measurement window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    /// When the window ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
}
