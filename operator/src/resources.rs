//! Pure builders of the objects the operator owns or shares: the profiling Job, the serving
//! Deployment and its Service, and the EnergyProfile. No I/O: each takes values, returns an object
//! ready for server-side apply (only the fields the operator means to own are set).

use crate::config::OperatorConfig;
use crate::names::*;
use greenbatch_crds::energy_profile::EnergyProfileSpec;
use greenbatch_crds::inference_service::GpuSpec;
use greenbatch_crds::{EnergyProfile, ModelSpec, Precision, RuntimePodSpec};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

mod model_mount;
pub use model_mount::{
    MODEL_CA_DIR, MODEL_CA_KEY, MODELS_ROOT, ModelMount, ResourceError, model_mount,
};

/// Non-root UID of runtime pods (the distroless "nonroot" user).
pub const RUNTIME_UID: i64 = 65532;

/// Grace period of serving pods on deletion: the runtime's shutdown delay plus its drain.
pub const SERVING_GRACE_SECONDS: i64 = 90;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn shape_arg(model: &ModelSpec) -> String {
    model
        .input
        .shape
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn dtype_arg(model: &ModelSpec) -> String {
    // The runtime parses the API's own lowercase names (float32, float16, ...).
    serde_json::to_value(model.input.dtype)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "float32".to_string())
}

/// Numbers as the runtime's flags read them: no exponent, no trailing zeros.
pub use greenbatch_core::select::fmt_num;

fn device_arg(gpu: &GpuSpec) -> &'static str {
    // Explicit, so a GPU pod that lands without a visible GPU fails loudly instead of measuring
    // (or serving on) the CPU.
    if gpu.count > 0 { "cuda" } else { "cpu" }
}

/// What a runtime pod gets and where it may run: the GPU of `spec.gpu`, and the settings of
/// `spec.pod` over the operator's defaults.
#[derive(Clone, Copy, Debug)]
pub struct PodPlacement<'a> {
    pub gpu: &'a GpuSpec,
    pub pod: &'a RuntimePodSpec,
}

/// The runtime container's resources: `spec.pod`'s (CPU, memory, ...) with the GPU of `spec.gpu`
/// in both requests and limits (an extended resource is requested as it is limited).
fn container_resources(gpu: &GpuSpec, pod: &RuntimePodSpec) -> Option<ResourceRequirements> {
    let given = pod.resources.clone().unwrap_or_default();
    let (mut requests, mut limits) = (
        given.requests.unwrap_or_default(),
        given.limits.unwrap_or_default(),
    );
    if gpu.count > 0 {
        let q = Quantity(gpu.count.to_string());
        requests.insert(gpu.resource.clone(), q.clone());
        limits.insert(gpu.resource.clone(), q);
    }
    let some = |m: BTreeMap<String, Quantity>| (!m.is_empty()).then_some(m);
    let (requests, limits) = (some(requests), some(limits));
    (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..Default::default()
    })
}

/// `spec.pod`'s node selector, with the GPU product's label when the pods get a GPU.
fn node_selector(gpu: &GpuSpec, pod: &RuntimePodSpec) -> Option<BTreeMap<String, String>> {
    let mut selector = pod.node_selector.clone().unwrap_or_default();
    if let Some(product) = gpu.product.as_ref().filter(|_| gpu.count > 0) {
        selector.insert(GPU_PRODUCT_NODE_LABEL.into(), product.clone());
    }
    (!selector.is_empty()).then_some(selector)
}

/// The runtime container as profiling and serving pods both run it: image, binary, `args`, the
/// GPU request, the locked-down security context, the model's mounts and its environment
/// (`env`: the model's, then the caller's).
fn runtime_container(
    cfg: &OperatorConfig,
    gpu: &GpuSpec,
    pod: &RuntimePodSpec,
    args: Vec<String>,
    mounts: Vec<VolumeMount>,
    env: Vec<EnvVar>,
) -> Container {
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(cfg.runtime_image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(vec![RUNTIME_BINARY.into()]),
        args: Some(args),
        resources: container_resources(gpu, pod),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        env: (!env.is_empty()).then_some(env),
        // The runtime prints why it failed (and exits with a code saying what kind of failure);
        // its last log lines become the container's termination message, which the service's
        // conditions quote.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

/// The runtime's exit codes no retry can change (`runtime/src/error.rs`): a bad argument, the
/// model missing, corrupt, not matching its input, an unknown builtin, nothing measurable,
/// unsupported on this device, bad candidates, the store refusing the download, another digest.
/// Not: the meter (7), writing the output (9), the API server (10), the store unreachable through
/// the runtime's own tries (15) — those may pass, and the Job's next pod tries again.
pub const PERMANENT_EXIT_CODES: [i32; 10] = [2, 3, 4, 5, 6, 8, 11, 12, 13, 14];

/// A profiling Job fails at the first pod that exits with a permanent code, instead of running
/// the same failure `backoffLimit` more times (each downloading the model, waiting for a GPU);
/// a pod evicted or preempted (`DisruptionTarget`) does not count against the limit. Kubernetes
/// 1.26 and later act on it; earlier servers drop the field and retry every failure as before.
fn profiling_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER_NAME.into()),
                    operator: "In".into(),
                    values: PERMANENT_EXIT_CODES.to_vec(),
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
            },
        ],
    }
}

/// `NODE_NAME`, the node the pod runs on (downward API): the profile records it as where it was
/// measured (`measuredOn.host`), a name that outlives the Job's pod.
fn node_name_env() -> EnvVar {
    EnvVar {
        name: NODE_NAME_ENV.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUNTIME_UID),
        run_as_group: Some(RUNTIME_UID),
        fs_group: Some(RUNTIME_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// A writable /tmp under the read-only root filesystem (libtorch writes temp files).
fn tmp_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    )
}

fn volumes(model: &ModelMount) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut pairs = vec![tmp_volume()];
    pairs.extend(model.volume.clone());
    pairs.extend(model.ca.clone());
    pairs.into_iter().unzip()
}

/// The shared EnergyProfile: not owned by any service (see docs/operator.md for its lifecycle).
pub fn energy_profile(
    name: &str,
    namespace: &str,
    spec: EnergyProfileSpec,
    annotations: BTreeMap<String, String>,
) -> EnergyProfile {
    let mut ep = EnergyProfile::new(name, spec);
    ep.metadata.namespace = Some(namespace.to_string());
    ep.metadata.labels = Some(labels(&[(MANAGED_BY_LABEL, MANAGED_BY)]));
    ep.metadata.annotations = Some(annotations);
    ep
}

/// The `profile` command line (after the binary) for an EnergyProfile.
pub fn profile_args(
    profile_name: &str,
    namespace: &str,
    spec: &EnergyProfileSpec,
    gpu: &GpuSpec,
    model: &ModelMount,
) -> Vec<String> {
    let candidates = spec
        .candidates
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let p = &spec.protocol;
    let mut args = vec!["profile".to_string()];
    args.extend(model.runtime_args());
    let rest = [
        "--shape",
        &shape_arg(&spec.model),
        "--dtype",
        &dtype_arg(&spec.model),
        "--precision",
        spec.precision.as_str(),
        "--device",
        device_arg(gpu),
        "--candidates",
        &candidates,
        "--windows",
        &p.windows.to_string(),
        "--window-seconds",
        &fmt_num(p.window_seconds),
        "--warmup-seconds",
        &fmt_num(p.warmup_seconds),
        "--max-spread",
        &fmt_num(p.max_spread),
        "--output-profile",
        profile_name,
        "--namespace",
        namespace,
    ];
    args.extend(rest.into_iter().map(str::to_string));
    args
}

/// The profiling Job of an EnergyProfile. Owned by the EnergyProfile (`owner`), so it lives as
/// long as the measurement it made and a service that reuses the profile sees the same Job.
pub fn profiling_job(
    job_name: &str,
    profile_name: &str,
    namespace: &str,
    spec: &EnergyProfileSpec,
    placement: PodPlacement<'_>,
    owner: OwnerReference,
    cfg: &OperatorConfig,
) -> Result<Job, ResourceError> {
    let PodPlacement { gpu, pod } = placement;
    let model = model_mount(&spec.model.source, cfg.model_ca_config_map.as_deref())?;
    let (volumes, mounts) = volumes(&model);
    let pod_labels = labels(&[
        (NAME_LABEL, RUNTIME_BINARY),
        (COMPONENT_LABEL, "profiler"),
        (MANAGED_BY_LABEL, MANAGED_BY),
        (PROFILE_LABEL, profile_name),
    ]);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels.clone()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(cfg.runtime_service_account.clone()),
            // The runtime writes the EnergyProfile's status with this identity.
            automount_service_account_token: Some(true),
            security_context: Some(pod_security()),
            node_selector: node_selector(gpu, pod),
            tolerations: pod.tolerations.clone(),
            priority_class_name: pod.priority_class_name.clone(),
            runtime_class_name: pod.runtime_class_name.clone(),
            volumes: Some(volumes),
            containers: vec![runtime_container(
                cfg,
                gpu,
                pod,
                profile_args(profile_name, namespace, spec, gpu, &model)
                    .into_iter()
                    .chain([
                        "--time-limit-seconds".to_string(),
                        cfg.job_active_deadline_seconds.to_string(),
                    ])
                    .collect(),
                mounts,
                model.env.iter().cloned().chain([node_name_env()]).collect(),
            )],
            // The time limit is the runtime's own (from its start: waiting for a GPU, on a full
            // cluster for hours, is no measurement running long); the pod's deadline, from its
            // start on a node, is a backstop past it by the time an image pull may take.
            active_deadline_seconds: Some(pod_deadline_seconds(cfg.job_active_deadline_seconds)),
            ..Default::default()
        }),
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(pod_labels),
            annotations: Some(BTreeMap::from([(
                POD_TEMPLATE_HASH_ANNOTATION.to_string(),
                pod_template_hash(&template),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(cfg.job_backoff_limit),
            pod_failure_policy: Some(profiling_failure_policy()),
            // A backstop on the whole Job, waiting included: a Job that can never be scheduled
            // (a GPU product the cluster lacks) ends, and frees its --max-profiling-jobs place.
            active_deadline_seconds: Some(
                pod_deadline_seconds(cfg.job_active_deadline_seconds)
                    .saturating_add(PROFILING_JOB_WAIT_SECONDS),
            ),
            ttl_seconds_after_finished: cfg.job_ttl_seconds_after_finished,
            template,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// How long a profiling Job may wait for its pod to start (a GPU to free up), on top of the
/// pod's own time limit: a day.
pub const PROFILING_JOB_WAIT_SECONDS: i64 = 86_400;

/// Time a profiling pod may take to start its runtime on its node — pulling a multi-gigabyte
/// CUDA image on a fresh node — beyond the measurement's limit.
pub const POD_START_ALLOWANCE_SECONDS: i64 = 600;

/// The profiling pod's deadline for a measurement limited to `limit` seconds: the runtime gives up
/// first (exit code 8, which fails the Job at once, and says why in the EnergyProfile), where the
/// deadline's kill would say nothing and be tried again.
pub fn pod_deadline_seconds(limit: i64) -> i64 {
    limit.saturating_add(POD_START_ALLOWANCE_SECONDS)
}

/// A digest of a pod template as the operator builds it (16 hex digits of the SHA-256 of its
/// JSON). Compared with the one recorded on an existing Job, it says whether the operator would
/// make that Job otherwise now, without comparing against what the API server defaulted into it.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    use sha2::{Digest, Sha256};
    // Serialising k8s-openapi types cannot fail: plain structs and string-keyed maps.
    let json = serde_json::to_vec(template).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digest [`profiling_job`] records on a Job it built.
pub fn recorded_pod_template_hash(job: &Job) -> Option<&str> {
    annotated_pod_template_hash(&job.metadata)
}

/// The pod-template digest recorded on an object the operator built (a Job, a Deployment).
pub fn annotated_pod_template_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(POD_TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

/// What the serving Deployment runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeSettings {
    pub batch_size: u32,
    pub max_queue_delay_ms: f64,
    pub replicas: u32,
    pub slo_ms: f64,
    pub percentile: u32,
    /// The precision the profile measured (`spec.profiling.precision`): the pods serve at it.
    pub precision: Precision,
    /// The operator's `--target-utilisation`: the pods' adaptive batching judges by the same.
    pub target_utilisation: f64,
    /// The profile (EnergyProfile status JSON) the pods' own adaptive batching works from: within
    /// the batch cap above, each pod adjusts its max queue delay (and cap) to the rate it sees.
    /// `None` in fixed mode: the pods keep the batch size and delay they are given.
    pub profile_json: Option<String>,
    /// The service's `metadata.generation` this Deployment is applied for
    /// ([`SPEC_GENERATION_ANNOTATION`]): whether what runs still answers the current spec.
    pub spec_generation: Option<i64>,
}

pub fn serve_args(
    name: &str,
    model: &ModelSpec,
    gpu: &GpuSpec,
    mount: &ModelMount,
    s: &ServeSettings,
) -> Vec<String> {
    let mut args = vec!["serve".to_string()];
    args.extend(mount.runtime_args());
    let rest = [
        "--shape",
        &shape_arg(model),
        "--dtype",
        &dtype_arg(model),
        "--precision",
        s.precision.as_str(),
        "--device",
        device_arg(gpu),
        "--name",
        name,
        "--port",
        &HTTP_PORT.to_string(),
        "--grpc-port",
        &GRPC_PORT.to_string(),
        "--max-batch-size",
        &s.batch_size.to_string(),
        "--max-queue-delay-ms",
        &fmt_num(s.max_queue_delay_ms),
        "--slo-ms",
        &fmt_num(s.slo_ms),
        "--percentile",
        &s.percentile.to_string(),
        "--target-utilisation",
        // In full: a share, where three decimals could round a small target to 0.
        &s.target_utilisation.to_string(),
    ];
    args.extend(rest.into_iter().map(str::to_string));
    args
}

/// The model's environment, and the profile the pods serve from: an env var, not an argument
/// (a profile is kilobytes, and it stays out of process listings).
fn serving_env(mount: &ModelMount, settings: &ServeSettings) -> Vec<EnvVar> {
    let mut env = mount.env.clone();
    env.extend(settings.profile_json.as_ref().map(|json| EnvVar {
        name: PROFILE_INLINE_ENV.into(),
        value: Some(json.clone()),
        ..Default::default()
    }));
    env
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

pub fn serving_labels(name: &str) -> BTreeMap<String, String> {
    labels(&[
        (NAME_LABEL, RUNTIME_BINARY),
        (COMPONENT_LABEL, "server"),
        (MANAGED_BY_LABEL, MANAGED_BY),
        (SERVICE_LABEL, name),
    ])
}

/// The serving Deployment, owned by the InferenceService (`owner`).
#[allow(clippy::too_many_arguments)]
pub fn deployment(
    name: &str,
    namespace: &str,
    model: &ModelSpec,
    placement: PodPlacement<'_>,
    settings: &ServeSettings,
    owner: OwnerReference,
    cfg: &OperatorConfig,
) -> Result<Deployment, ResourceError> {
    let PodPlacement { gpu, pod } = placement;
    let mount = model_mount(&model.source, cfg.model_ca_config_map.as_deref())?;
    let (volumes, mounts) = volumes(&mount);
    let pod_labels = serving_labels(name);
    let mut deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(pod_labels.clone()),
            // On the Deployment, not its pods: a new generation alone rolls nothing out.
            annotations: settings
                .spec_generation
                .map(|g| BTreeMap::from([(SPEC_GENERATION_ANNOTATION.to_string(), g.to_string())])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(settings.replicas).unwrap_or(i32::MAX)),
            strategy: cfg.serving_rollout.clone().map(|r| DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(r),
            }),
            selector: LabelSelector {
                match_labels: Some(labels(&[(SERVICE_LABEL, name)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // The runtime's account, as profiling pods: its image pull secrets, and one
                    // account per namespace to give a cloud identity (IRSA, Pod Identity) for
                    // s3:// models. Serving needs no API access: no token.
                    service_account_name: Some(cfg.runtime_service_account.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security()),
                    node_selector: node_selector(gpu, pod),
                    tolerations: pod.tolerations.clone(),
                    priority_class_name: pod.priority_class_name.clone(),
                    runtime_class_name: pod.runtime_class_name.clone(),
                    // Replicas on different nodes where the scheduler can: one node drained or
                    // lost does not take every replica with it. A preference, never a reason to
                    // leave a pod Pending (GPU nodes are few).
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(labels(&[(SERVICE_LABEL, name)])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    volumes: Some(volumes),
                    // On SIGTERM the runtime serves on for its shutdown delay (5 s: the endpoints
                    // let go of the pod meanwhile), then drains its queue — up to its capacity in
                    // items, which at a slow model's batch time can take most of a minute. It
                    // exits as soon as the queue is empty: a long grace costs nothing then.
                    termination_grace_period_seconds: Some(SERVING_GRACE_SECONDS),
                    containers: vec![Container {
                        ports: Some(vec![
                            ContainerPort {
                                name: Some(HTTP_PORT_NAME.into()),
                                container_port: HTTP_PORT,
                                protocol: Some("TCP".into()),
                                ..Default::default()
                            },
                            ContainerPort {
                                name: Some(GRPC_PORT_NAME.into()),
                                container_port: GRPC_PORT,
                                protocol: Some("TCP".into()),
                                ..Default::default()
                            },
                        ]),
                        readiness_probe: Some(probe("/v2/health/ready", 5, 3)),
                        liveness_probe: Some(Probe {
                            // Loading a large model can take a while before /live answers.
                            initial_delay_seconds: Some(10),
                            ..probe("/v2/health/live", 10, 6)
                        }),
                        ..runtime_container(
                            cfg,
                            gpu,
                            pod,
                            serve_args(name, model, gpu, &mount, settings),
                            mounts,
                            serving_env(&mount, settings),
                        )
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    // On the Deployment: what the plan compares to tell whether the observed rollout is the
    // planned one (any change of the pod template — args, the model's keys, the account, …).
    if let Some(spec) = &deployment.spec {
        let digest = pod_template_hash(&spec.template);
        deployment
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_ANNOTATION.to_string(), digest);
    }
    Ok(deployment)
}

/// The PodDisruptionBudget of the serving pods, owned by the InferenceService: a node drain
/// evicts one at a time (a service on one replica can still be evicted: a budget that forbade it
/// would block the drain). `api_version` is what the cluster serves (`policy/v1`, or
/// `policy/v1beta1` before Kubernetes 1.21; the object is the same in both).
pub fn disruption_budget(
    name: &str,
    namespace: &str,
    owner: OwnerReference,
    api_version: &str,
) -> kube::api::DynamicObject {
    kube::api::DynamicObject {
        types: Some(kube::core::TypeMeta {
            api_version: api_version.to_string(),
            kind: "PodDisruptionBudget".to_string(),
        }),
        metadata: serving_metadata(name, namespace, owner),
        data: serde_json::json!({
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": labels(&[(SERVICE_LABEL, name)])},
            },
        }),
    }
}

/// Name, namespace, labels and owner of the objects serving a service.
fn serving_metadata(name: &str, namespace: &str, owner: OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(serving_labels(name)),
        owner_references: Some(vec![owner]),
        ..Default::default()
    }
}

/// The Service in front of the serving pods, owned by the InferenceService.
pub fn service(name: &str, namespace: &str, owner: OwnerReference) -> Service {
    Service {
        metadata: serving_metadata(name, namespace, owner),
        spec: Some(ServiceSpec {
            selector: Some(labels(&[(SERVICE_LABEL, name)])),
            // HTTP (KServe v2 REST, /metrics) and KServe v2 gRPC, each under its protocol's
            // port name (Istio tells the protocols apart by it) and `appProtocol` (Gateway API
            // implementations, Contour, GKE: gRPC is HTTP/2 without TLS, `kubernetes.io/h2c`).
            ports: Some(
                [
                    (HTTP_PORT_NAME, HTTP_PORT, "http"),
                    (GRPC_PORT_NAME, GRPC_PORT, "kubernetes.io/h2c"),
                ]
                .map(|(name, port, app_protocol)| ServicePort {
                    name: Some(name.into()),
                    port,
                    target_port: Some(IntOrString::String(name.into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some(app_protocol.into()),
                    ..Default::default()
                })
                .to_vec(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::service;
    use greenbatch_crds::InferenceService;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "greenbatch.dev/v1alpha1".into(),
            kind: "InferenceService".into(),
            name: "svc".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn job_is_locked_down_and_pinned_to_the_gpu() {
        let mut is = service("svc");
        is.spec.gpu.product = Some("NVIDIA-H200".into());
        is.spec.gpu.count = 2;
        let spec = EnergyProfileSpec {
            model_name: "m".into(),
            model_digest: "d".into(),
            gpu_product: "NVIDIA-H200".into(),
            gpu_resource: None,
            runtime_version: "0.1.0".into(),
            precision: Default::default(),
            model: is.spec.model.clone(),
            candidates: vec![1, 8],
            protocol: Default::default(),
        };
        let cfg = OperatorConfig {
            job_backoff_limit: 3,
            ..Default::default()
        };
        // The platform's defaults under the service's own settings.
        let pod_settings: RuntimePodSpec = serde_json::from_value(serde_json::json!({
            "resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "16Gi"}},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "inference"},
            "priorityClassName": "inference",
        }))
        .unwrap();
        let job = profiling_job(
            "j",
            "p",
            "ns",
            &spec,
            PodPlacement {
                gpu: &is.spec.gpu,
                pod: &pod_settings,
            },
            owner(),
            &cfg,
        )
        .unwrap();
        let js = job.spec.unwrap();
        assert_eq!(js.backoff_limit, Some(3));
        // The time limit is the runtime's and its pod's, not the Job's: a Job waiting an hour
        // for a GPU failed DeadlineExceeded before it measured anything, for good. The pod's
        // deadline leaves time for an image pull past the runtime's; the Job may wait a day more.
        assert_eq!(js.active_deadline_seconds, Some(3600 + 600 + 86_400));
        assert_eq!(js.ttl_seconds_after_finished, Some(86_400));
        let pod = js.template.spec.unwrap();
        assert_eq!(pod.active_deadline_seconds, Some(3600 + 600));
        // The runtime gives up first, saying why (exit 8 fails the Job at once).
        let args = pod.containers[0].args.clone().unwrap();
        let limit = args
            .iter()
            .position(|a| a == "--time-limit-seconds")
            .unwrap();
        assert_eq!(args[limit + 1], "3600");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("greenbatch-runtime")
        );
        assert_eq!(
            pod.node_selector.clone().unwrap(),
            BTreeMap::from([
                (
                    "nvidia.com/gpu.product".to_string(),
                    "NVIDIA-H200".to_string()
                ),
                ("pool".to_string(), "inference".to_string())
            ])
        );
        assert_eq!(pod.tolerations, pod_settings.tolerations);
        assert_eq!(pod.priority_class_name.as_deref(), Some("inference"));
        let r = pod.containers[0].resources.clone().unwrap();
        let quantities = |m: Option<BTreeMap<String, Quantity>>| -> Vec<(String, String)> {
            m.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        };
        assert_eq!(
            quantities(r.requests),
            [("cpu", "4"), ("memory", "8Gi"), ("nvidia.com/gpu", "2")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(
            quantities(r.limits),
            [("memory", "16Gi"), ("nvidia.com/gpu", "2")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.unwrap().drop.unwrap(),
            vec!["ALL".to_string()]
        );
        assert_eq!(
            c.resources.clone().unwrap().limits.unwrap()["nvidia.com/gpu"].0,
            "2"
        );
        let a = c.args.clone().unwrap();
        assert_eq!(
            a.join(" "),
            "profile --model builtin:resnet50 --shape 3,224,224 --dtype float32 --precision fp32 --device cuda --candidates 1,8 --windows 5 --window-seconds 0.5 --warmup-seconds 1 --max-spread 0.1 --output-profile p --namespace ns --time-limit-seconds 3600"
        );
    }

    #[test]
    fn a_job_records_the_digest_of_the_pod_template_it_was_made_with() {
        let is = service("svc");
        let spec = cpu_profile_spec(&is);
        let digest = |name: &str, pod: &RuntimePodSpec, cfg: &OperatorConfig| {
            let gpu = GpuSpec {
                count: 0,
                ..is.spec.gpu.clone()
            };
            let job = profiling_job(
                name,
                "p",
                "ns",
                &spec,
                PodPlacement { gpu: &gpu, pod },
                owner(),
                cfg,
            )
            .expect("a Job");
            let recorded = recorded_pod_template_hash(&job).map(str::to_string);
            let template = job.spec.expect("a spec").template;
            assert_eq!(
                recorded.as_deref(),
                Some(pod_template_hash(&template).as_str())
            );
            recorded.expect("a digest")
        };
        let cfg = OperatorConfig::default();
        let plain = RuntimePodSpec::default();
        let first = digest("j", &plain, &cfg);
        assert_eq!(first.len(), 16);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        // The same template, the same digest: built again, or under another Job name.
        assert_eq!(digest("j", &plain, &cfg), first);
        assert_eq!(digest("j-2", &plain, &cfg), first);
        // What places the pod or what it runs: another digest.
        let placed = RuntimePodSpec {
            node_selector: Some([("pool".to_string(), "a".to_string())].into()),
            ..Default::default()
        };
        assert_ne!(digest("j", &placed, &cfg), first);
        // A RuntimeClass (k3s, RKE2 need `nvidia` for the GPU): in the template, another digest.
        let nvidia = RuntimePodSpec {
            runtime_class_name: Some("nvidia".into()),
            ..Default::default()
        };
        assert_ne!(digest("j", &nvidia, &cfg), first);
        let image = OperatorConfig {
            runtime_image: "registry.example/runtime:fixed".into(),
            ..Default::default()
        };
        assert_ne!(digest("j", &plain, &image), first);
    }

    /// A CPU profile's spec for `is`'s model, measuring batch sizes 1 and 8.
    fn cpu_profile_spec(is: &InferenceService) -> EnergyProfileSpec {
        EnergyProfileSpec {
            model_name: "m".into(),
            model_digest: "d".into(),
            gpu_product: "cpu".into(),
            gpu_resource: None,
            runtime_version: "0.1.0".into(),
            precision: Default::default(),
            model: is.spec.model.clone(),
            candidates: vec![1, 8],
            protocol: Default::default(),
        }
    }

    /// The serving Deployment of `is` ("svc" in "ns") with the operator's defaults.
    fn serving_deployment(is: &InferenceService, settings: &ServeSettings) -> Deployment {
        serving_deployment_with(is, settings, &OperatorConfig::default())
    }

    fn serving_deployment_with(
        is: &InferenceService,
        settings: &ServeSettings,
        cfg: &OperatorConfig,
    ) -> Deployment {
        deployment(
            "svc",
            "ns",
            &is.spec.model,
            PodPlacement {
                gpu: &is.spec.gpu,
                pod: &RuntimePodSpec::default(),
            },
            settings,
            owner(),
            cfg,
        )
        .unwrap()
    }

    #[test]
    fn a_rollout_without_a_spare_gpu_replaces_pods_in_place_when_configured() {
        use k8s_openapi::api::apps::v1::RollingUpdateDeployment;
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let is = service("svc");
        let build = |cfg: &OperatorConfig| {
            let settings = ServeSettings {
                batch_size: 8,
                max_queue_delay_ms: 1.0,
                replicas: 2,
                slo_ms: 50.0,
                percentile: 95,
                precision: Precision::Fp32,
                target_utilisation: 0.8,
                profile_json: None,
                spec_generation: None,
            };
            serving_deployment_with(&is, &settings, cfg)
                .spec
                .unwrap()
                .strategy
        };
        // Unset: Kubernetes' default (the field left out).
        assert_eq!(build(&OperatorConfig::default()), None);
        let in_place = RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(1)),
        };
        let cfg = OperatorConfig {
            serving_rollout: Some(in_place.clone()),
            ..Default::default()
        };
        let strategy = build(&cfg).expect("a strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(strategy.rolling_update, Some(in_place));
    }

    #[test]
    fn cpu_deployment_has_probes_and_no_gpu() {
        let mut is = service("svc");
        is.spec.gpu.count = 0;
        let s = ServeSettings {
            batch_size: 8,
            max_queue_delay_ms: 3.6251,
            replicas: 2,
            slo_ms: 50.0,
            percentile: 95,
            precision: Precision::Fp32,
            target_utilisation: 0.8,
            profile_json: Some("{\"table\":{}}".into()),
            spec_generation: Some(3),
        };
        let d = serving_deployment(&is, &s);
        // The runtime's account (its pull secrets, a cloud identity for S3) without an API token.
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(
            (
                pod.service_account_name.as_deref(),
                pod.automount_service_account_token
            ),
            (Some("greenbatch-runtime"), Some(false))
        );
        assert_eq!(
            d.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
        assert_eq!(
            d.metadata.annotations.unwrap()[SPEC_GENERATION_ANNOTATION],
            "3"
        );
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        assert!(pod.node_selector.is_none());
        // Spread over nodes where the scheduler can, never left Pending for it; time to drain.
        let spread = &pod.topology_spread_constraints.as_ref().unwrap()[0];
        assert_eq!(
            (
                spread.topology_key.as_str(),
                spread.when_unsatisfiable.as_str()
            ),
            ("kubernetes.io/hostname", "ScheduleAnyway")
        );
        assert_eq!(
            spread.label_selector.as_ref().unwrap().match_labels,
            spec.selector.match_labels
        );
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(SERVING_GRACE_SECONDS)
        );
        let c = &pod.containers[0];
        assert!(c.resources.is_none());
        // KServe v2 over HTTP and over gRPC, on the container and on the Service in front.
        let ports: Vec<(Option<String>, i32)> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            vec![(Some("http".into()), 8080), (Some("grpc".into()), 8081)]
        );
        let svc = super::service("svc", "ns", owner()).spec.unwrap();
        let svc_ports: Vec<(Option<String>, i32)> = svc
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        assert_eq!(svc_ports, ports);
        // Gateways and meshes that read appProtocol talk HTTP/2 without TLS to the gRPC port.
        let app_protocols: Vec<Option<&str>> = svc
            .ports
            .iter()
            .flatten()
            .map(|p| p.app_protocol.as_deref())
            .collect();
        assert_eq!(app_protocols, [Some("http"), Some("kubernetes.io/h2c")]);
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/v2/health/ready")
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/v2/health/live")
        );
        assert_eq!(
            c.args.clone().unwrap().join(" "),
            "serve --model builtin:resnet50 --shape 3,224,224 --dtype float32 --precision fp32 --device cpu --name svc --port 8080 --grpc-port 8081 --max-batch-size 8 --max-queue-delay-ms 3.625 --slo-ms 50 --percentile 95 --target-utilisation 0.8"
        );
        // The profile for the pod's own adaptive batching, by environment.
        let env = c.env.clone().unwrap_or_default();
        assert_eq!(
            (env.len(), env[0].name.as_str(), env[0].value.as_deref()),
            (1, PROFILE_INLINE_ENV, Some("{\"table\":{}}"))
        );
        let svc = service_obj();
        let port = &svc.spec.unwrap().ports.unwrap()[0];
        assert_eq!((port.port, port.name.as_deref()), (8080, Some("http")));
    }

    /// Serving settings at batch 8, 4 ms, one replica, p99 <= 50 ms, with a profile.
    fn serve_settings() -> ServeSettings {
        ServeSettings {
            batch_size: 8,
            max_queue_delay_ms: 4.0,
            replicas: 1,
            slo_ms: 50.0,
            percentile: 99,
            precision: Precision::Fp32,
            target_utilisation: 0.8,
            profile_json: Some("{}".into()),
            spec_generation: None,
        }
    }

    /// The profiling Job of `is`'s CPU profile with the default pod settings and configuration.
    fn default_job(is: &InferenceService) -> Job {
        profiling_job(
            "j",
            "p",
            "ns",
            &cpu_profile_spec(is),
            PodPlacement {
                gpu: &is.spec.gpu,
                pod: &RuntimePodSpec::default(),
            },
            owner(),
            &OperatorConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_profiling_job_stops_at_a_permanent_failure_and_forgives_evictions() {
        let job = default_job(&service("svc"));
        let rules = job.spec.unwrap().pod_failure_policy.unwrap().rules;
        let codes = rules[0].on_exit_codes.as_ref().unwrap();
        assert_eq!(rules[0].action, "FailJob");
        assert_eq!(codes.container_name.as_deref(), Some(CONTAINER_NAME));
        // A wrong digest fails at once; the API server being away (10) is tried again.
        assert!(codes.values.contains(&14) && !codes.values.contains(&10));
        assert_eq!(rules[1].action, "Ignore");
        assert_eq!(
            rules[1].on_pod_conditions.as_ref().unwrap()[0].type_,
            "DisruptionTarget"
        );
    }

    #[test]
    fn a_small_utilisation_target_reaches_the_pods_unrounded() {
        let is = service("svc");
        let s = ServeSettings {
            target_utilisation: 0.0001,
            profile_json: None,
            ..serve_settings()
        };
        let args = serve_args(
            "svc",
            &is.spec.model,
            &is.spec.gpu,
            &ModelMount::default(),
            &s,
        );
        let i = args
            .iter()
            .position(|a| a == "--target-utilisation")
            .unwrap();
        assert_eq!(args[i + 1], "0.0001");
    }

    #[test]
    fn profiling_and_serving_pods_of_an_s3_model_get_its_keys() {
        let mut is = service("svc");
        is.spec.model.source = crate::testutil::s3_source("model-store", "ef");
        let env_names = |c: &Container| -> Vec<String> {
            c.env.iter().flatten().map(|e| e.name.clone()).collect()
        };
        let keys = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ];
        let job = default_job(&is);
        let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
        let mut want = keys.map(String::from).to_vec();
        want.push(NODE_NAME_ENV.to_string());
        assert_eq!(env_names(c), want);
        let settings = serve_settings();
        let d = serving_deployment(&is, &settings);
        let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
        let mut want = keys.map(String::from).to_vec();
        want.push(PROFILE_INLINE_ENV.to_string());
        assert_eq!(env_names(c), want);
    }

    #[test]
    fn serving_pods_get_a_disruption_budget_of_one_at_a_time() {
        for version in ["policy/v1", "policy/v1beta1"] {
            let pdb = disruption_budget("svc", "ns", owner(), version);
            let json = serde_json::to_value(&pdb).unwrap();
            assert_eq!(json["apiVersion"], version);
            assert_eq!(json["kind"], "PodDisruptionBudget");
            assert_eq!(json["metadata"]["ownerReferences"][0]["controller"], true);
            assert_eq!(json["spec"]["maxUnavailable"], 1);
            assert_eq!(
                json["spec"]["selector"]["matchLabels"][SERVICE_LABEL], "svc",
                "the serving pods' label, as the Deployment selects them"
            );
        }
    }

    fn service_obj() -> Service {
        super::service("svc", "ns", owner())
    }

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(3.0004), "3");
    }
}
