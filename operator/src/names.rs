//! Names the operator and its objects agree on: labels, annotations, the field manager, ports.
//! A leaf module: everything else may import it, it imports nothing.

/// The field manager of every server-side apply the operator makes (objects and status), but one.
pub const FIELD_MANAGER: &str = "greenbatch-operator";
/// The field manager of the one field the operator writes in an EnergyProfile's status
/// (`lastJob`). Not [`FIELD_MANAGER`], which applies the profile object itself: on Kubernetes
/// before 1.22 an object and its status subresource share one managedFields entry per manager, so
/// each apply would drop the other's ownership (a stale `lastJob.message` left behind, spec fields
/// no longer removed).
pub const JOB_RECORD_FIELD_MANAGER: &str = "greenbatch-operator-status";
/// The controller name in Events (`reportingController`).
pub const CONTROLLER_NAME: &str = "greenbatch.dev/operator";

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "greenbatch-operator";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// On serving pods, Deployments and Services: the InferenceService they serve (also the selector).
pub const SERVICE_LABEL: &str = "greenbatch.dev/inference-service";
/// On profiling Jobs and their pods: the EnergyProfile they measure. The Job watch maps through it.
pub const PROFILE_LABEL: &str = "greenbatch.dev/profile";

/// On an InferenceService: any new token (`[A-Za-z0-9._-]{1,63}`) asks for its profile to be measured
/// again. Each token is honoured once per profile.
pub const REPROFILE_ANNOTATION: &str = "greenbatch.dev/reprofile";
/// On an EnergyProfile: the re-profile tokens already honoured (comma-separated, newest last).
pub const REPROFILE_TOKENS_ANNOTATION: &str = "greenbatch.dev/reprofile-tokens";
/// Prefix of the re-profile tokens the operator sets itself on a sustained drift
/// (`spec.onDrift: Reprofile`), followed by when it asked (`%Y%m%dT%H%M%SZ`); reserved: a user's
/// token may not start with it.
pub const DRIFT_TOKEN_PREFIX: &str = "drift-";
/// On an EnergyProfile: the name of the Job that measures (or measured) it.
pub const PROFILING_JOB_ANNOTATION: &str = "greenbatch.dev/profiling-job";
/// On an InferenceService, `"true"`: the operator leaves it and what it owns as they are (an
/// emergency hand on the controls: a `kubectl scale` that sticks, a rollout held back).
pub const PAUSED_ANNOTATION: &str = "greenbatch.dev/paused";
/// On an EnergyProfile the operator made: since when (RFC 3339) no InferenceService has used it.
/// Set and removed by the pruner (`--unused-profile-ttl-seconds`), which deletes the profile once
/// it has been unused that long.
pub const UNUSED_SINCE_ANNOTATION: &str = "greenbatch.dev/unused-since";
/// On a profiling Job: a digest of the pod template the operator made it with. A Job whose pod
/// cannot run is replaced when the operator would now make it otherwise (a fixed `spec.pod`, a
/// runtime image that can be pulled).
pub const POD_TEMPLATE_HASH_ANNOTATION: &str = "greenbatch.dev/pod-template-hash";
/// On a profiling Job: the uid of the InferenceService whose settings (`spec.pod`) it was built
/// with — the one service that may replace it while it waits, as long as it uses the profile.
pub const BUILT_FOR_ANNOTATION: &str = "greenbatch.dev/built-for";
/// On a serving Deployment: the InferenceService generation it was applied for.
pub const SPEC_GENERATION_ANNOTATION: &str = "greenbatch.dev/spec-generation";

/// Name of the runtime container in profiling and serving pods.
pub const CONTAINER_NAME: &str = "runtime";
/// The runtime's HTTP port in serving pods (KServe v2 + /metrics); the Service's port too.
pub const HTTP_PORT: i32 = 8080;
pub const HTTP_PORT_NAME: &str = "http";
/// The runtime's KServe v2 gRPC port in serving pods (`serve --grpc-port`); the Service's too.
pub const GRPC_PORT: i32 = 8081;
pub const GRPC_PORT_NAME: &str = "grpc";
/// The serving pods' environment variable carrying the profile (`greenbatch-runtime serve
/// --profile-json`).
pub const PROFILE_INLINE_ENV: &str = "GREENBATCH_PROFILE_INLINE";
/// The node a profiling pod runs on, from the downward API; the runtime records it in
/// `measuredOn.host`.
pub const NODE_NAME_ENV: &str = "NODE_NAME";
/// The binary inside the runtime image.
pub const RUNTIME_BINARY: &str = "greenbatch-runtime";
/// `gpu.product` stands for the key of CPU-only profiles (`gpu.count: 0`).
pub const CPU_PRODUCT: &str = "cpu";
/// The key's GPU product when `gpu.count > 0` names no product: whatever GPU the Job lands on.
pub const ANY_GPU_PRODUCT: &str = "any-gpu";
/// The node label the GPU product pins pods with (NVIDIA GPU feature discovery).
pub const GPU_PRODUCT_NODE_LABEL: &str = "nvidia.com/gpu.product";
