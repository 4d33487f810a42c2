//! Command-line arguments. Parsing only: each command lives in its own module.

use crate::device::DeviceArg;
use crate::meter::MeterChoice;
use crate::model::GraphOptimization;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `--version`: what this binary was built with, so an image or a GPU host can be checked before
/// any work (is CUDA linked in, can it capture CUDA graphs).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nlibtorch: ",
    env!("GREENBATCH_LIBTORCH_LIB"),
    "\nlibtorch with CUDA: ",
    env!("GREENBATCH_LIBTORCH_CUDA"),
    "\nCUDA graphs (--cuda-graphs): ",
    env!("GREENBATCH_BUILT_WITH_CUDA_GRAPHS"),
);

#[derive(Parser, Debug)]
#[command(
    name = "greenbatch-runtime",
    version,
    long_version = LONG_VERSION,
    about = "Measure, choose and serve the energy-optimal batch size of a model"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "GREENBATCH_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measure latency and joules per inference for each candidate batch size.
    Profile(ProfileArgs),
    /// Profile (or load a saved profile) and choose the batching config for an SLO, locally.
    Tune(TuneArgs),
    /// Serve the model over the KServe v2 protocol with energy-aware dynamic batching.
    Serve(ServeArgs),
    /// Drive a v2 server with open-loop (Poisson) or closed-loop load; report latency and energy.
    Loadgen(LoadgenArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Model name in the v2 API (default: the builtin name or the file stem).
    #[arg(long, env = "GREENBATCH_MODEL_NAME")]
    pub name: Option<String>,
    #[arg(long, default_value_t = 8080, env = "GREENBATCH_PORT")]
    pub port: u16,
    /// Also serve the KServe v2 gRPC protocol (`inference.GRPCInferenceService`) on this port;
    /// the same model, queue and metrics as HTTP. Off when unset.
    #[arg(long, env = "GREENBATCH_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// Address to listen on (HTTP and gRPC). `::` (the default): every address, IPv6 and IPv4
    /// (IPv4 only where the host has no IPv6); `0.0.0.0`: IPv4 only.
    #[arg(long, default_value = "::", env = "GREENBATCH_BIND")]
    pub bind: std::net::IpAddr,
    /// Largest batch the server forms (and the largest request it accepts, in items).
    #[arg(long, default_value_t = 8, env = "GREENBATCH_MAX_BATCH_SIZE")]
    pub max_batch_size: u32,
    /// Longest time the oldest request waits for its batch to fill.
    #[arg(long, default_value_t = 2.0, env = "GREENBATCH_MAX_QUEUE_DELAY_MS")]
    pub max_queue_delay_ms: f64,
    /// Items the queue holds before refusing with 429: at least --max-batch-size (a smaller queue
    /// could never hold a full batch). Default: 1024, or twice --max-batch-size when that is more.
    #[arg(long, env = "GREENBATCH_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Request bodies above this are refused with 413.
    #[arg(long, default_value_t = 64 * 1024 * 1024, env = "GREENBATCH_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    #[arg(long, default_value_t = 2, env = "GREENBATCH_HTTP_THREADS")]
    pub http_threads: usize,
    /// After the model fails to load (or to download), report the reason on the readiness
    /// endpoints for this many seconds, then exit with the failure's exit code, so that Kubernetes
    /// restarts the container (with back-off) and shows the code. 0: stay up, not ready.
    #[arg(
        long,
        default_value_t = 30,
        env = "GREENBATCH_EXIT_AFTER_LOAD_FAILURE_SECONDS"
    )]
    pub exit_after_load_failure_seconds: u64,
    /// On SIGTERM, report not ready at once but go on serving for this many seconds before
    /// draining: the time Kubernetes takes to take the pod out of its Service's endpoints, during
    /// which clients still send to it (answered instead of refused). 0: drain at once.
    #[arg(long, default_value_t = 5, env = "GREENBATCH_SHUTDOWN_DELAY_SECONDS")]
    pub shutdown_delay_seconds: u64,
    /// Pad each batch up to the next power of two (capped at --max-batch-size), so only a few batch
    /// shapes ever run and each is autotuned once at start-up: auto = on CUDA only.
    #[arg(long, value_enum, default_value_t = PadBatches::Auto, env = "GREENBATCH_PAD_BATCHES")]
    pub pad_batches: PadBatches,
    /// Energy meter for accounting: auto, nvml, nvml-power, rapl, synthetic, none.
    #[arg(long, default_value = "auto", env = "GREENBATCH_METER")]
    pub meter: MeterChoice,
    /// A profile file (EnergyProfile status JSON): with --slo-ms, adapt batch cap and delay to the
    /// load.
    #[arg(long, env = "GREENBATCH_PROFILE_FILE", conflicts_with = "profile_json")]
    pub profile: Option<PathBuf>,
    /// The same profile inline, as JSON (how the operator hands it to serving pods).
    #[arg(long, env = "GREENBATCH_PROFILE_INLINE", hide_env_values = true)]
    pub profile_json: Option<String>,
    #[arg(long, env = "GREENBATCH_SLO_MS")]
    pub slo_ms: Option<f64>,
    #[arg(long, default_value_t = 99, env = "GREENBATCH_SLO_PERCENTILE")]
    pub percentile: u32,
    /// Adaptive batching keeps the model busy at most this share of the time at the observed
    /// rate, in (0, 1] (the operator passes its own --target-utilisation).
    #[arg(long, default_value_t = greenbatch_core::Policy::default().target_utilisation, env = "GREENBATCH_TARGET_UTILISATION")]
    pub target_utilisation: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PadBatches {
    Auto,
    On,
    Off,
}

#[derive(Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// The server's HTTP endpoint: model metadata, `/metrics`, and the requests unless `--grpc`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Send the requests over KServe v2 gRPC to this address (`host:port`: the server's
    /// `--grpc-port`) instead of HTTP.
    #[arg(long)]
    pub grpc: Option<String>,
    /// With `--grpc`: HTTP/2 connections the requests are spread over, in turn.
    #[arg(long, default_value_t = 4)]
    pub grpc_connections: usize,
    /// Model name (default: asked from the server's metadata is not possible in v2, so required).
    #[arg(long)]
    pub model: String,
    /// Open loop: Poisson arrivals at this many requests per second.
    #[arg(
        long,
        conflicts_with = "concurrency",
        required_unless_present = "concurrency"
    )]
    pub rate: Option<f64>,
    /// Closed loop: this many requests in flight.
    #[arg(long)]
    pub concurrency: Option<usize>,
    #[arg(long, default_value_t = 10.0)]
    pub duration_seconds: f64,
    /// How long requests still open when the run's time is up may take before they are cut off
    /// and counted as `unfinished` (one hung request would otherwise stretch the run, its
    /// throughput and its energy, to the 60 s request timeout).
    #[arg(long, default_value_t = 10.0)]
    pub drain_seconds: f64,
    /// Items per request.
    #[arg(long, default_value_t = 1)]
    pub items: u32,
    /// Latency SLO to report attainment against (milliseconds).
    #[arg(long)]
    pub slo_ms: Option<f64>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Client threads (large bodies at high rates need more than one).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// `builtin:<name>` (random weights, e.g. builtin:resnet50), a TorchScript file path, or an
    /// http(s):// URL or `s3://<bucket>/<key>` of one (downloaded into --model-cache; give
    /// --model-digest to verify it).
    #[arg(long, env = "GREENBATCH_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub exec: ExecutionArgs,
}

/// How the model is fed and run: everything about the model except which one it is.
#[derive(Args, Debug, Clone)]
pub struct ExecutionArgs {
    /// One item's shape without the batch dimension, e.g. 3,224,224.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "3,224,224",
        env = "GREENBATCH_INPUT_SHAPE"
    )]
    pub shape: Vec<i64>,
    /// Input element type: float32, float16, bfloat16, int64, int32, uint8.
    #[arg(long, default_value = "float32", env = "GREENBATCH_INPUT_DTYPE")]
    pub dtype: String,
    /// fp32 (default), or fp16 / bf16 on CUDA.
    #[arg(long, default_value = "fp32", env = "GREENBATCH_PRECISION")]
    pub precision: String,
    /// auto (CUDA when available), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto", env = "GREENBATCH_DEVICE")]
    pub device: DeviceArg,
    /// Intra-op CPU threads for libtorch (default: libtorch's own choice).
    #[arg(long, env = "GREENBATCH_THREADS")]
    pub threads: Option<i32>,
    /// How a TorchScript graph is prepared: auto (on the CPU the faster of freeze and optimize,
    /// timed at load; freeze on CUDA), optimize (freeze + optimize_for_inference), freeze, none.
    #[arg(long, value_enum, default_value_t = GraphOptimization::Auto, env = "GREENBATCH_GRAPH")]
    pub graph: GraphOptimization,
    /// Replay each batch shape as one captured CUDA graph instead of launching its kernels one by
    /// one (TorchScript on CUDA; cuts host overhead at small batch sizes).
    #[arg(long, env = "GREENBATCH_CUDA_GRAPHS")]
    pub cuda_graphs: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Checking the model file, and fetching it when it is a URL.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// The digest (`sha256:` and 64 hex digits) the model file must have: checked before it is
    /// loaded (a download before it is kept).
    #[arg(long, env = "GREENBATCH_MODEL_DIGEST")]
    pub model_digest: Option<String>,
    /// Folder for downloaded models (default: $TMPDIR/greenbatch-models).
    #[arg(long, env = "GREENBATCH_MODEL_CACHE")]
    pub model_cache: Option<PathBuf>,
    /// PEM file of CA certificates trusted for https downloads, besides the bundled Mozilla roots.
    #[arg(long, env = "GREENBATCH_MODEL_CA_FILE")]
    pub model_ca_file: Option<PathBuf>,
    /// Largest model download accepted, in MiB.
    #[arg(long, default_value_t = 16384, env = "GREENBATCH_MODEL_MAX_MIB")]
    pub model_max_mib: u64,
    /// For `s3://` models: `http(s)://host[:port]` of an S3-compatible store (MinIO, Ceph, …),
    /// addressed path-style (default: AWS; else `AWS_ENDPOINT_URL` when set). Keys come from
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else a web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, at STS), else a container credentials
    /// endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`/`_RELATIVE_URI`); without any the object is
    /// read anonymously.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3")]
    pub s3_endpoint: Option<String>,
    /// For `s3://` models: the region requests are signed for (default: `AWS_DEFAULT_REGION`
    /// when set, else us-east-1).
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// Sign requests to a non-AWS `--s3-endpoint` with the pod's AWS identity too (IRSA, Pod
    /// Identity): for a store that accepts AWS's keys (LocalStack, a test store). Without it such
    /// an endpoint gets static keys only: another store would refuse AWS's, and should not see them.
    #[arg(long, env = "GREENBATCH_S3_SEND_POD_IDENTITY")]
    pub s3_send_pod_identity: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ProtocolArgs {
    /// Batch sizes to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128,256",
        env = "GREENBATCH_CANDIDATES"
    )]
    pub candidates: Vec<u32>,
    #[arg(long, default_value_t = 5, env = "GREENBATCH_WINDOWS")]
    pub windows: u32,
    #[arg(long, default_value_t = 0.5, env = "GREENBATCH_WINDOW_SECONDS")]
    pub window_seconds: f64,
    #[arg(long, default_value_t = 1.0, env = "GREENBATCH_WARMUP_SECONDS")]
    pub warmup_seconds: f64,
    /// Re-measure a batch size while (max - min) / median of its windows' J/inference exceeds this.
    #[arg(long, default_value_t = 0.1, env = "GREENBATCH_MAX_SPREAD")]
    pub max_spread: f64,
    /// auto, nvml, nvml-power, rapl, synthetic (a labelled test double), none.
    #[arg(long, default_value = "auto", env = "GREENBATCH_METER")]
    pub meter: MeterChoice,
    /// Stop growing the batch once its p50 exceeds this many milliseconds.
    #[arg(long, env = "GREENBATCH_STOP_LATENCY_MS")]
    pub stop_latency_ms: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Write the profile (EnergyProfile status schema) as JSON here; `-` for stdout.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the status of this EnergyProfile in the cluster (kubeconfig or in-cluster credentials).
    #[arg(long, env = "GREENBATCH_PROFILE_NAME")]
    pub output_profile: Option<String>,
    /// Namespace of --output-profile (default: the client's default namespace).
    #[arg(long, env = "GREENBATCH_PROFILE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Give up after this many seconds of loading and measuring: exit code 8, and with
    /// --output-profile the profile says why. A bound on the GPU time one measurement takes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub time_limit_seconds: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Model to profile (omit with --from-profile).
    #[arg(
        long,
        env = "GREENBATCH_MODEL",
        required_unless_present = "from_profile"
    )]
    pub model: Option<String>,
    #[command(flatten)]
    pub exec: ExecutionArgs,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Use a saved profile instead of measuring: JSON written by `profile --json`, or an
    /// EnergyProfile as `kubectl get energyprofile NAME -o json` prints it.
    #[arg(long, conflicts_with = "model")]
    pub from_profile: Option<PathBuf>,
    /// Latency SLO in milliseconds (end to end: queueing + execution).
    #[arg(long)]
    pub slo_ms: f64,
    /// SLO percentile: 50, 95 or 99.
    #[arg(long, default_value_t = 99)]
    pub percentile: u32,
    /// Expected arrival rate (inferences per second); sizes replicas and the queue delay for it.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub max_replicas: u32,
    /// Write an SVG plot (J/inference and latency vs batch size, SLO line, the pick marked).
    #[arg(long, default_value = "greenbatch-tune.svg")]
    pub plot: PathBuf,
    /// Also write the profile JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap's own consistency checks: no two arguments of a command share a flag, id or env var
    /// (ModelArgs, ExecutionArgs and the commands' own flags are flattened together).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
