//! `greenbatch-operator`: flags -> settings, logs, the controller and the HTTP endpoints, graceful
//! shutdown on SIGTERM/SIGINT.

use clap::{Parser, ValueEnum};
use greenbatch_crds::RuntimePodSpec;
use greenbatch_operator::controller::{Operator, Scope, Settings};
use greenbatch_operator::leader::{self, LeaseSettings};
use greenbatch_operator::{OperatorConfig, OperatorError, server};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "greenbatch-operator",
    version,
    about = "Serve each InferenceService at its energy-optimal batch size"
)]
struct Args {
    /// Image with `greenbatch-runtime` for profiling Jobs and serving Deployments.
    #[arg(long, env = "GREENBATCH_RUNTIME_IMAGE", default_value_t = OperatorConfig::default().runtime_image)]
    runtime_image: String,
    /// Version of the runtime in that image (part of every profile key).
    #[arg(long, env = "GREENBATCH_RUNTIME_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    runtime_version: String,
    /// imagePullPolicy of runtime containers (cluster default when unset).
    #[arg(long, env = "GREENBATCH_IMAGE_PULL_POLICY")]
    image_pull_policy: Option<String>,
    /// Service account of profiling pods (in each service's namespace); it writes EnergyProfile status.
    #[arg(
        long,
        env = "GREENBATCH_RUNTIME_SERVICE_ACCOUNT",
        default_value = "greenbatch-runtime"
    )]
    runtime_service_account: String,
    /// ConfigMap (key `ca.crt`, in each service's namespace) of CA certificates runtime pods trust
    /// for https and s3 model downloads, besides the public roots (a model store with a private CA).
    #[arg(long, env = "GREENBATCH_MODEL_CA_CONFIGMAP", value_parser = config_map_name)]
    model_ca_configmap: Option<String>,
    /// Scheduling and resources of runtime pods (profiling and serving) where a service's
    /// `spec.pod` leaves a field out, as JSON: `{"resources": {"requests": {"memory": "8Gi"}},
    /// "tolerations": [...], "nodeSelector": {...}, "priorityClassName": "..."}`. Without
    /// `resources` here, runtime pods request a CPU and 4 GiB (`{"resources": {}}`: nothing).
    #[arg(long, env = "GREENBATCH_RUNTIME_POD_DEFAULTS", value_parser = runtime_pod_defaults)]
    runtime_pod_defaults: Option<RuntimePodSpec>,
    /// How many serving pods a rollout may add above the count (`1`, `25%`); unset: Kubernetes'
    /// default (25%: one more pod, one more GPU, for 1 to 3 replicas). `0` with
    /// `--serving-max-unavailable 1` replaces pods in place, on a cluster without a spare GPU.
    #[arg(long, env = "GREENBATCH_SERVING_MAX_SURGE", value_parser = greenbatch_operator::config::rollout_step)]
    serving_max_surge: Option<IntOrString>,
    /// How many serving pods a rollout may take down below the count (`0`, `1`, `25%`); unset:
    /// Kubernetes' default (25%).
    #[arg(long, env = "GREENBATCH_SERVING_MAX_UNAVAILABLE", value_parser = greenbatch_operator::config::rollout_step)]
    serving_max_unavailable: Option<IntOrString>,
    /// Pod retries of a profiling Job.
    #[arg(long, env = "GREENBATCH_JOB_BACKOFF_LIMIT", default_value_t = 2)]
    job_backoff_limit: i32,
    /// Time limit of a measurement, seconds, kept by the runtime from its start (waiting for a
    /// GPU does not count); the pod's deadline is 600 s more, the Job's a day more than that.
    #[arg(long, env = "GREENBATCH_JOB_DEADLINE_SECONDS", default_value_t = 3600)]
    job_deadline_seconds: i64,
    /// Seconds a finished profiling Job (and its pod, with its log) is kept before it is deleted
    /// (ttlSecondsAfterFinished), at least 300: the operator records how it ended in the
    /// profile's status first. `never`: kept until a new Job of its profile starts.
    #[arg(long, env = "GREENBATCH_JOB_TTL_SECONDS", default_value = "86400", value_parser = job_ttl)]
    job_ttl_seconds: JobTtl,
    /// Most profiling Jobs running at once in the operator's scope (each holds a GPU while it
    /// measures), or `unlimited`. A service needing one more waits, said in its Profiled
    /// condition (`ProfilingQueued`), until one ends: after an operator upgrade every profile
    /// is measured afresh (the runtime version keys them), and the Jobs then take turns.
    #[arg(long, env = "GREENBATCH_MAX_PROFILING_JOBS", default_value = "unlimited", value_parser = max_profiling_jobs)]
    max_profiling_jobs: MaxProfilingJobs,
    /// Delete an EnergyProfile the operator made once no InferenceService has used it for this
    /// many seconds (at least 3600; its Jobs go with it), or `never` (profiles are measurements
    /// that took GPU time: kept by default). Looked at every 10 minutes.
    #[arg(long, env = "GREENBATCH_UNUSED_PROFILE_TTL_SECONDS", default_value = "never", value_parser = unused_profile_ttl)]
    unused_profile_ttl_seconds: UnusedProfileTtl,
    /// Seconds between scrapes of each serving service's pods (`/metrics`): the window of
    /// `status.observed`, and how quickly replicas follow the load.
    #[arg(long, env = "GREENBATCH_OBSERVE_INTERVAL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    observe_interval_seconds: u64,
    /// Size replicas to keep each one's device busy at most this fraction of the time at the
    /// observed rate (0 < u <= 1).
    #[arg(long, env = "GREENBATCH_TARGET_UTILISATION", default_value_t = OperatorConfig::default().target_utilisation,
          value_parser = utilisation)]
    target_utilisation: f64,
    /// Seconds the load must ask for fewer replicas before they go down (to the most it asked
    /// for meanwhile); up is at once. 0: down at the first observation that allows it.
    #[arg(long, env = "GREENBATCH_SCALE_DOWN_DELAY_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    scale_down_delay_seconds: u64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "GREENBATCH_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Most reconciles at once.
    #[arg(long, env = "GREENBATCH_CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// Address of /metrics, /healthz, /readyz.
    #[arg(long, env = "GREENBATCH_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    #[arg(long, value_enum, env = "GREENBATCH_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Run the controller without a Lease (one replica only, e.g. a local run).
    #[arg(long, env = "GREENBATCH_DISABLE_LEADER_ELECTION")]
    disable_leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "GREENBATCH_LEASE_NAME",
        default_value = "greenbatch-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease (default: the client's namespace — the pod's in a cluster).
    #[arg(long, env = "GREENBATCH_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a lease stays valid without renewal: how long a crashed leader's successor waits.
    #[arg(long, env = "GREENBATCH_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds between renewals (and a standby's checks).
    #[arg(
        long,
        env = "GREENBATCH_LEASE_RENEW_INTERVAL_SECONDS",
        default_value_t = 2
    )]
    lease_renew_interval_seconds: u64,
    /// Seconds without a successful renewal after which the leader gives up (and exits).
    #[arg(
        long,
        env = "GREENBATCH_LEASE_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    lease_renew_deadline_seconds: u64,
}

/// `never`, or a number of seconds in `range`: the form of both TTL flags.
fn seconds_or_never(
    text: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, String> {
    if text == "never" {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(s) if range.contains(&s) => Ok(Some(s)),
        _ => Err(format!(
            "{text:?} is neither `never` nor a number of seconds in {}..={}",
            range.start(),
            range.end()
        )),
    }
}

#[derive(Clone, Copy, Debug)]
struct JobTtl(Option<i32>);

/// The shortest Job TTL: the operator must see a Job end (a watch event, within seconds; a leader
/// change, tens of seconds) before the Job is gone, or a re-profile Job would run again.
const MIN_JOB_TTL_SECONDS: u64 = 300;

fn job_ttl(text: &str) -> Result<JobTtl, String> {
    // The Job field is an int32.
    let max = u64::try_from(i32::MAX).unwrap_or(u64::MAX);
    let seconds = seconds_or_never(text, MIN_JOB_TTL_SECONDS..=max)?;
    Ok(JobTtl(seconds.and_then(|s| i32::try_from(s).ok())))
}

#[derive(Clone, Copy, Debug)]
struct MaxProfilingJobs(Option<u32>);

fn max_profiling_jobs(text: &str) -> Result<MaxProfilingJobs, String> {
    if text == "unlimited" {
        return Ok(MaxProfilingJobs(None));
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(MaxProfilingJobs(Some(n))),
        _ => Err(format!(
            "{text:?} is neither `unlimited` nor a number of Jobs (1 or more)"
        )),
    }
}

#[derive(Clone, Copy, Debug)]
struct UnusedProfileTtl(Option<Duration>);

/// The shortest unused-profile TTL: a service deleted and applied again (a redeploy, a GitOps
/// sync) must find its profile still there, not start a new measurement.
const MIN_UNUSED_PROFILE_TTL_SECONDS: u64 = 3600;
/// Ten years: longer is `never`.
const MAX_UNUSED_PROFILE_TTL_SECONDS: u64 = 315_360_000;

fn unused_profile_ttl(text: &str) -> Result<UnusedProfileTtl, String> {
    let seconds = seconds_or_never(
        text,
        MIN_UNUSED_PROFILE_TTL_SECONDS..=MAX_UNUSED_PROFILE_TTL_SECONDS,
    )?;
    Ok(UnusedProfileTtl(seconds.map(Duration::from_secs)))
}

fn runtime_pod_defaults(text: &str) -> Result<RuntimePodSpec, String> {
    let what = "a pod settings object (resources, tolerations, nodeSelector, priorityClassName)";
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not {what}: {e}"))?;
    // A misspelt key would be dropped silently, and its setting with it.
    if let Some(unknown) = value.as_object().and_then(|o| {
        o.keys()
            .find(|k| !greenbatch_crds::runtime_pod::FIELDS.contains(&k.as_str()))
    }) {
        return Err(format!("unknown key {unknown:?}: expected {what}"));
    }
    let pod: RuntimePodSpec =
        serde_json::from_value(value).map_err(|e| format!("not {what}: {e}"))?;
    let errors = pod.check("runtime pod defaults", Some("nvidia.com/gpu"));
    if errors.is_empty() {
        Ok(pod)
    } else {
        Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

fn utilisation(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(u) if u > 0.0 && u <= 1.0 => Ok(u),
        _ => Err(format!("{text:?} is not a fraction in (0, 1]")),
    }
}

/// A ConfigMap name: a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253).
fn config_map_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a ConfigMap name (a DNS-1123 subdomain)"
        ))
    }
}

/// This replica's holder identity: the pod name, else `<hostname>-<pid>` (the pid keeps two local
/// runs on one host apart).
fn identity() -> Result<String, OperatorError> {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return Ok(pod);
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .map(Ok)
        .unwrap_or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .map_err(|source| OperatorError::Io {
            context: "reading the hostname for the lease identity (or set POD_NAME)".into(),
            source,
        })?;
    Ok(format!("{}-{}", host.trim(), std::process::id()))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: not in `kubectl logs` or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the operator");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down: finishing reconciles in flight");
}

async fn run(args: Args) -> Result<(), OperatorError> {
    let serving_rollout = greenbatch_operator::config::serving_rollout(
        args.serving_max_surge.clone(),
        args.serving_max_unavailable.clone(),
    )
    .map_err(OperatorError::Config)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|source| OperatorError::Kube {
            context: "no Kubernetes credentials (in-cluster or kubeconfig)".into(),
            source,
        })?;
    let settings = Settings {
        config: OperatorConfig {
            runtime_image: args.runtime_image,
            image_pull_policy: args.image_pull_policy,
            runtime_service_account: args.runtime_service_account,
            runtime_version: args.runtime_version,
            job_backoff_limit: args.job_backoff_limit,
            job_active_deadline_seconds: args.job_deadline_seconds,
            job_ttl_seconds_after_finished: args.job_ttl_seconds.0,
            max_profiling_jobs: args.max_profiling_jobs.0,
            unused_profile_ttl: args.unused_profile_ttl_seconds.0,
            prune_interval: OperatorConfig::default().prune_interval,
            observe_interval: Duration::from_secs(args.observe_interval_seconds),
            scale_down_delay: Duration::from_secs(args.scale_down_delay_seconds),
            target_utilisation: args.target_utilisation,
            model_ca_config_map: args.model_ca_configmap,
            runtime_pod: args
                .runtime_pod_defaults
                .unwrap_or_default()
                .over(&greenbatch_operator::config::baseline_runtime_pod()),
            serving_rollout,
        },
        scope: args.namespace.map(Scope::Namespace).unwrap_or(Scope::All),
        concurrency: args.concurrency,
        instance: std::env::var("POD_NAME").ok(),
    };
    let lease = if args.disable_leader_election {
        None
    } else {
        let lease = LeaseSettings {
            name: args.lease_name,
            namespace: args
                .lease_namespace
                .unwrap_or_else(|| client.default_namespace().to_string()),
            identity: identity()?,
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_interval: Duration::from_secs(args.lease_renew_interval_seconds),
            renew_deadline: Duration::from_secs(args.lease_renew_deadline_seconds),
        };
        lease.validate()?;
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election on");
        Some(lease)
    };
    let operator = Arc::new(Operator::default());
    if let Scope::Namespace(ns) = &settings.scope {
        operator.watch_only(ns);
    }
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_ctl_tx, stop_ctl_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, http) = server::bind(args.listen, operator.clone(), Some(client.clone()), async {
        let _ = stop_http_rx.await;
    })
    .await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /plots/{{namespace}}/{{name}}");
    let http = tokio::spawn(http);
    tokio::spawn(async move {
        termination().await;
        let _ = stop_ctl_tx.send(());
    });
    let stop = async {
        let _ = stop_ctl_rx.await;
    };
    // A lost lease ends in an error, hence a non-zero exit: the pod restarts as a standby.
    let result = match lease {
        Some(lease) => leader::run_elected(operator, client, settings, lease, stop).await,
        None => operator.run(client, settings, stop).await,
    };
    let _ = stop_http_tx.send(());
    // Bounded: a connection that opened and never sent a request (a TCP health check, a port
    // scan) counts as busy to the graceful shutdown, which would wait for it until the kubelet
    // kills the pod.
    match tokio::time::timeout(HTTP_SHUTDOWN_GRACE, http).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server"),
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(grace = ?HTTP_SHUTDOWN_GRACE, "HTTP connections still open at exit: closed")
        }
    }
    result
}

/// How long open HTTP connections may hold the exit once the operator has stopped.
const HTTP_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Args::parse();
    init_logs(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("greenbatch-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "greenbatch-operator failed");
            eprintln!("greenbatch-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
