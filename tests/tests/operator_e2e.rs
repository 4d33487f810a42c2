//! End to end: the operator (in-process, under its own service-account identity with exactly the
//! RBAC of the Helm chart, which the test installs) on a real kube-apiserver + etcd + kube-controller-manager, with a
//! small test agent playing the kubelet: it runs the real `greenbatch-runtime` binary as a local
//! process for each pod the Job and ReplicaSet controllers create, and reports the pod's status back
//! through the API.
//!
//! Needs the runtime binary: `cargo build -p greenbatch-runtime` (after
//! `source ~/.cache/greenbatch/libtorch.env`), found at `$GREENBATCH_RUNTIME_BIN`, else
//! `$CARGO_TARGET_DIR/debug/greenbatch-runtime`, else `target/debug/greenbatch-runtime`.

use greenbatch_crds::{
    EnergyProfile, InferenceService, JobOutcome, Phase, ProfilePhase, ProfilingJobRecord,
};
use greenbatch_operator::controller::{Operator, Scope, Settings};
use greenbatch_operator::leader::{self, LeaseSettings};
use greenbatch_operator::{OperatorConfig, names, server};
use greenbatch_tests::http::{get as http_get_at, get_local as http_get};
use greenbatch_tests::s3_store::{S3Store, WEB_IDENTITY_TOKEN, stand_in};
use greenbatch_tests::{
    Identity, OPERATOR, OPERATOR_NAMESPACE, TestCluster, TestClusterOptions, built_binary, chart,
    wait_for, workspace_root,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "e2e";
const RUNTIME_SA: &str = "greenbatch-runtime";
const RUNTIME_IDENTITY: &str = "runtime";
const IMAGE: &str = "greenbatch-runtime:e2e";
/// The node the test kubelet plays (`spec.nodeName` in the downward API).
const TEST_NODE: &str = "e2e-node";

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "[operator-e2e] {line}");
}

fn runtime_binary() -> PathBuf {
    built_binary("greenbatch-runtime", "GREENBATCH_RUNTIME_BIN")
}

// ---------------------------------------------------------------------------------------------
// The kubelet agent.

struct Proc {
    child: tokio::process::Child,
    /// Where a serving pod listens.
    addr: Option<SocketAddr>,
    ready: bool,
    stderr: PathBuf,
    started: String,
    image: String,
    /// `terminationMessagePolicy: FallbackToLogsOnError`: a failed container's message is the tail
    /// of its log (as a kubelet does; otherwise the message is empty: the runtime writes no
    /// termination-log file).
    logs_as_message: bool,
}

struct Agent {
    client: Client,
    bin: PathBuf,
    runtime_kubeconfig: PathBuf,
    logs: PathBuf,
    procs: HashMap<String, Proc>,
    /// The last loopback host number given to a serving pod (127.0.0.N).
    last_host: u8,
    /// Pods left unscheduled (as the scheduler leaves a pod no node fits).
    unschedulable: std::collections::HashSet<String>,
    /// Pods whose container cannot be configured (a Secret or key missing), and why: tried again
    /// each tick, as the kubelet does, and reported when the reason changes.
    config_errors: HashMap<String, String>,
    /// Once set, the EKS pod identity webhook's part too (a labelled test double): a pod whose
    /// service account carries `eks.amazonaws.com/role-arn` gets the web identity environment.
    irsa: Arc<Mutex<Option<Irsa>>>,
}

/// What the IRSA webhook stand-in gives pods: the token file, the region, and — this cluster's
/// network, not the webhook's — where STS is and that the test's non-AWS store may get the keys.
#[derive(Clone)]
struct Irsa {
    token_file: PathBuf,
    region: String,
    sts: String,
}

/// The annotation the EKS pod identity webhook reads on a service account.
const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The role moto's store lets a web identity assume (`tests/fixtures/s3_store.py`), which the
/// chart puts on the runtime service account here.
const IRSA_ROLE: &str = "arn:aws:iam::123456789012:role/models-reader";

/// A GPU product no node of this "cluster" has: the agent leaves pods pinned to it unscheduled,
/// with the scheduler's condition.
const NO_SUCH_GPU: &str = "NVIDIA-NO-SUCH-GPU";
/// A node label of this "cluster": pods whose `nodeSelector` asks for it to be `none` are left
/// unscheduled too (a node pool that does not exist, named in a service's `spec.pod`).
const POOL_LABEL: &str = "e2e.greenbatch.dev/pool";

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn conditions(ready: bool) -> serde_json::Value {
    let t = now();
    let r = if ready { "True" } else { "False" };
    serde_json::json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
        {"type": "Initialized", "status": "True", "lastTransitionTime": t},
        {"type": "ContainersReady", "status": r, "lastTransitionTime": t},
        {"type": "Ready", "status": r, "lastTransitionTime": t},
    ])
}

impl Agent {
    /// A serving pod's address: its own loopback address at the runtime's container port, as a
    /// pod has its own IP — the operator reads each pod's metrics at `podIP:8080`.
    fn serving_address(&mut self) -> SocketAddr {
        let port = u16::try_from(names::HTTP_PORT).expect("a TCP port");
        while self.last_host < 254 {
            self.last_host += 1;
            let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, self.last_host), port));
            if std::net::TcpListener::bind(addr).is_ok() {
                return addr;
            }
        }
        panic!(
            "port {port} is taken on every loopback address 127.0.0.2-254 (does a process listen on *:{port}?): the test agent gives each serving pod its own loopback address at the runtime's port"
        );
    }

    async fn patch_status(&self, name: &str, status: serde_json::Value) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        if let Err(e) = pods
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
        {
            say(&format!("agent: status of pod {name}: {e}"));
        }
    }

    async fn start(&mut self, pod: &Pod) {
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let Some(c) = spec.containers.first() else {
            return;
        };
        let selects = |label: &str, value: &str| {
            spec.node_selector
                .as_ref()
                .and_then(|s| s.get(label))
                .is_some_and(|v| v == value)
        };
        if selects(names::GPU_PRODUCT_NODE_LABEL, NO_SUCH_GPU) || selects(POOL_LABEL, "none") {
            // The scheduler's part: no node fits, say so on the pod, run nothing.
            if self.unschedulable.insert(uid) {
                say(&format!("agent: pod {name} left unschedulable"));
                self.patch_status(&name, serde_json::json!({
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "lastTransitionTime": now(),
                        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}],
                }))
                .await;
            }
            return;
        }
        let mut args = c.args.clone().unwrap_or_default();
        let serving = args.first().map(String::as_str) == Some("serve");
        let addr = serving.then(|| self.serving_address());
        if let (Some(addr), Some(i)) = (addr, args.iter().position(|a| a == "--port")) {
            args[i + 1] = addr.port().to_string();
        }
        let env = match self.container_env(c).await {
            Ok(env) => env,
            Err(message) => {
                if self.config_errors.get(&uid) != Some(&message) {
                    say(&format!(
                        "agent: pod {name}: CreateContainerConfigError: {message}"
                    ));
                    self.patch_status(&name, serde_json::json!({
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}],
                        "containerStatuses": [{"name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                            "ready": false, "restartCount": 0, "started": false,
                            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}],
                    }))
                    .await;
                    self.config_errors.insert(uid, message);
                }
                return;
            }
        };
        self.config_errors.remove(&uid);
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(&args)
            .envs(env)
            .envs(self.web_identity_env(spec).await);
        let ip = addr.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string());
        cmd.env("GREENBATCH_METER", "synthetic")
            // A serving pod that cannot load its model exits after reporting it (30 s by default).
            .env("GREENBATCH_EXIT_AFTER_LOAD_FAILURE_SECONDS", "1")
            .env("GREENBATCH_THREADS", "1")
            .env("GREENBATCH_BIND", &ip);
        if let Some(addr) = addr {
            cmd.env("GREENBATCH_PORT", addr.port().to_string());
        }
        if spec.service_account_name.as_deref() == Some(RUNTIME_SA)
            && spec.automount_service_account_token != Some(false)
        {
            // What the pod's mounted service-account token would give it.
            cmd.env("KUBECONFIG", &self.runtime_kubeconfig);
        }
        let stderr = self.logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&stderr).expect("agent log file");
        let file2 = file.try_clone().expect("agent log file");
        cmd.stdout(file).stderr(file2).kill_on_drop(true);
        say(&format!(
            "agent: pod {name}: {} {}",
            self.bin.display(),
            args.join(" ")
        ));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot run {}: {e}", self.bin.display()),
        };
        let started = now();
        let image = c.image.clone().unwrap_or_default();
        let logs_as_message =
            c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        self.patch_status(&name, serde_json::json!({
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "startTime": started,
            "conditions": conditions(false),
            "containerStatuses": [{"name": c.name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": started}}}],
        }))
        .await;
        self.procs.insert(
            uid,
            Proc {
                child,
                addr,
                ready: false,
                stderr,
                started,
                image,
                logs_as_message,
            },
        );
    }

    /// The container's environment as the kubelet builds it: values as given, `secretKeyRef`s
    /// read from their Secret; a missing Secret or key that is not optional is the kubelet's
    /// `CreateContainerConfigError`, in its words.
    async fn container_env(&self, c: &Container) -> Result<Vec<(String, String)>, String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NS);
        let mut env = Vec::new();
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value {
                env.push((e.name.clone(), v.clone()));
                continue;
            }
            // The one pod field the operator asks for: the node this agent plays.
            if let Some(field) = e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()) {
                match field.field_path.as_str() {
                    "spec.nodeName" => env.push((e.name.clone(), TEST_NODE.to_string())),
                    other => return Err(format!("unsupported fieldRef {other}")),
                }
                continue;
            }
            let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
            else {
                continue;
            };
            let optional = r.optional == Some(true);
            let secret = secrets.get_opt(&r.name).await.map_err(|e| e.to_string())?;
            let Some(secret) = secret else {
                if optional {
                    continue;
                }
                return Err(format!("secret \"{}\" not found", r.name));
            };
            match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(value) => env.push((
                    e.name.clone(),
                    String::from_utf8_lossy(&value.0).into_owned(),
                )),
                None if optional => {}
                None => {
                    return Err(format!(
                        "couldn't find key {} in Secret {NS}/{}",
                        r.key, r.name
                    ));
                }
            }
        }
        Ok(env)
    }

    /// The environment the IRSA webhook gives a pod whose service account names a role (none
    /// before the scenario sets the stand-in up).
    async fn web_identity_env(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Vec<(String, String)> {
        let Some(irsa) = self.irsa.lock().unwrap().clone() else {
            return Vec::new();
        };
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let role = Api::<ServiceAccount>::namespaced(self.client.clone(), NS)
            .get_opt(account)
            .await
            .ok()
            .flatten()
            .and_then(|sa| sa.metadata.annotations?.get(ROLE_ARN_ANNOTATION).cloned());
        let Some(role) = role else {
            return Vec::new();
        };
        [
            ("AWS_ROLE_ARN", role),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                irsa.token_file.display().to_string(),
            ),
            ("AWS_REGION", irsa.region.clone()),
            ("AWS_ENDPOINT_URL_STS", irsa.sts.clone()),
            ("GREENBATCH_S3_SEND_POD_IDENTITY", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    async fn tick(&mut self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return;
        };
        let mut seen = Vec::new();
        for pod in &list.items {
            let uid = pod.uid().unwrap_or_default();
            let name = pod.name_any();
            seen.push(uid.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                // The kubelet's part of deletion: stop the container, then confirm.
                if let Some(mut p) = self.procs.remove(&uid) {
                    let _ = p.child.kill().await;
                }
                let _ = pods
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
                continue;
            }
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if !self.procs.contains_key(&uid) && (phase.is_empty() || phase == "Pending") {
                self.start(pod).await;
                continue;
            }
            let Some(p) = self.procs.get_mut(&uid) else {
                continue;
            };
            match p.child.try_wait() {
                Ok(Some(status)) => {
                    let code = status.code().unwrap_or(137);
                    let log = std::fs::read_to_string(&p.stderr).unwrap_or_default();
                    let tail: Vec<&str> = log
                        .lines()
                        .rev()
                        .take(2)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    let message: String = if p.logs_as_message && code != 0 {
                        tail.join(" | ").chars().take(600).collect()
                    } else {
                        String::new()
                    };
                    let (started, image) = (p.started.clone(), p.image.clone());
                    self.procs.remove(&uid);
                    say(&format!("agent: pod {name} exited with {code}: {message}"));
                    self.patch_status(&name, serde_json::json!({
                        "phase": if code == 0 { "Succeeded" } else { "Failed" },
                        "conditions": conditions(false),
                        "containerStatuses": [{"name": names::CONTAINER_NAME, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                                "message": message, "startedAt": started, "finishedAt": now()}}}],
                    }))
                    .await;
                }
                Ok(None) => {
                    if let (Some(addr), false) = (p.addr, p.ready)
                        && matches!(http_get_at(addr, "/v2/health/ready").await, Ok((200, _)))
                    {
                        p.ready = true;
                        let (started, image) = (p.started.clone(), p.image.clone());
                        self.patch_status(&name, serde_json::json!({
                            "conditions": conditions(true),
                            "containerStatuses": [{"name": names::CONTAINER_NAME, "image": image, "imageID": "", "ready": true, "restartCount": 0, "started": true,
                                "state": {"running": {"startedAt": started}}}],
                        }))
                        .await;
                    }
                }
                Err(e) => say(&format!("agent: waiting on pod {name}: {e}")),
            }
        }
        let gone: Vec<String> = self
            .procs
            .keys()
            .filter(|u| !seen.contains(u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(mut p) = self.procs.remove(&uid) {
                let _ = p.child.kill().await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn service_yaml(name: &str, uri: &str, extra_spec: serde_json::Value) -> InferenceService {
    let mut spec = serde_json::json!({
        "model": {"source": {"uri": uri}, "input": {"shape": [3, 16, 16]}},
        "slo": {"latencyMs": 1000, "percentile": 99},
        "batching": {"mode": "auto", "candidates": [1, 2, 4]},
        "gpu": {"count": 0},
        "replicas": {"min": 1, "max": 1},
        "profiling": {"windows": 3, "windowSeconds": 0.1, "warmupSeconds": 0, "maxSpread": 10},
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "greenbatch.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
    .expect("a well-formed InferenceService")
}

/// Serves one file to every GET on a loopback port (a stand-in for a model store); its URL.
fn serve_file_over_http(file: PathBuf) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!(
        "http://{}/models/{}",
        listener.local_addr().expect("bound"),
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model.pt")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = std::fs::read(&file).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    url
}

fn status_of(is: &InferenceService) -> (Option<Phase>, Option<i64>) {
    let s = is.status.clone().unwrap_or_default();
    (s.phase, s.observed_generation)
}

fn condition_message(is: &InferenceService, t: &str) -> String {
    is.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
        .map(|c| format!("{}/{}: {}", c.status_str(), c.reason, c.message))
        .unwrap_or_default()
}

/// A service's state in one line, for a wait's failure message.
fn describe(is: &InferenceService) -> String {
    format!(
        "{:?}, replicas {:?}; Ready {}; Profiled {}",
        status_of(is),
        is.status.as_ref().and_then(|s| s.replicas.clone()),
        condition_message(is, "Ready"),
        condition_message(is, "Profiled")
    )
}

/// Waits until the operator has reconciled `key` (`namespace/name`) twice more than now: a check
/// after it is a check of what reconciles did, not of how long a sleep was.
async fn reconciled_twice_more(operator: &Operator, key: &str) {
    let from = operator.metrics.reconciles_of(key);
    wait_for(
        &format!("two more reconciles of {key}"),
        Duration::from_secs(30),
        || async {
            match operator.metrics.reconciles_of(key) {
                n if n >= from + 2 => Ok(()),
                n => Err(format!("{} reconciles since", n - from)),
            }
        },
    )
    .await;
}

/// Waits until `profile`'s record of its last profiling Job passes `ok`, and returns it.
async fn wait_last_job(
    profiles: &Api<EnergyProfile>,
    profile: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&ProfilingJobRecord) -> bool,
) -> ProfilingJobRecord {
    wait_for(what, timeout, || async {
        let p = profiles.get(profile).await.map_err(|e| e.to_string())?;
        match p.status.and_then(|s| s.last_job) {
            Some(r) if ok(&r) => Ok(r),
            other => Err(format!("lastJob {other:?}")),
        }
    })
    .await
}

/// Waits until service `name` is as `ok` wants it; a timeout fails with its last state.
async fn wait_service(
    services: &Api<InferenceService>,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&InferenceService) -> bool,
) -> InferenceService {
    wait_for(what, timeout, || async {
        let is = services.get(name).await.map_err(|e| e.to_string())?;
        if ok(&is) { Ok(is) } else { Err(describe(&is)) }
    })
    .await
}

trait StatusStr {
    fn status_str(&self) -> &'static str;
}
impl StatusStr for greenbatch_crds::Condition {
    fn status_str(&self) -> &'static str {
        match self.status {
            greenbatch_crds::ConditionStatus::True => "True",
            greenbatch_crds::ConditionStatus::False => "False",
            greenbatch_crds::ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// The operator's identity, RBAC and the runtime's service account in [`NS`], as a user installs them:
/// the Helm chart, with no operator replica (this test runs the operator in-process, as the chart's
/// service account). The chart also installs the CRDs.
async fn install_chart(cluster: &TestCluster) {
    let values = serde_json::json!({
        "replicaCount": 0,
        "runtime": {"namespaces": [NS], "serviceAccountName": RUNTIME_SA,
                    // IRSA: the role the runtime pods' AWS keys come from (scenario 5d).
                    "serviceAccountAnnotations": {ROLE_ARN_ANNOTATION: IRSA_ROLE}},
        // The RBAC of pruning (delete on energyprofiles); the operator here prunes after 3 s.
        "controller": {"unusedProfileTtlSeconds": 3600},
    });
    if let Err(e) = chart::install(cluster, &values).await {
        panic!("helm install: {e}");
    }
}

fn args_of(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

fn flag(args: &[String], f: &str) -> Option<String> {
    args.iter()
        .position(|a| a == f)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Waits for /readyz; false when the operator's task ended first.
async fn wait_ready<T>(port: u16, task: &tokio::task::JoinHandle<T>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if task.is_finished() {
            return false;
        }
        match http_get(port, "/readyz").await {
            Ok((200, _)) => return true,
            other => say(&format!("/readyz: {other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the operator did not become ready within 30s");
}

/// `gamma` (1 to 2 replicas) serves with no traffic at its minimum, scales to 2 under load from the
/// runtime's load generator (the operator sees the rate at the pod's `podIP:8080/metrics`), shows
/// the observed numbers in status, and scales back once the load stops.
async fn scale_with_observed_load(
    services: &Api<InferenceService>,
    deployments: &Api<Deployment>,
    admin: &Client,
    bin: &std::path::Path,
    uri: &str,
    operator_http: SocketAddr,
) {
    let replicas = |is: &InferenceService| {
        is.status
            .as_ref()
            .and_then(|s| s.replicas.clone())
            .unwrap_or_default()
    };
    services
        .create(
            &PostParams::default(),
            &service_yaml(
                "gamma",
                uri,
                serde_json::json!({"replicas": {"min": 1, "max": 2}}),
            ),
        )
        .await
        .expect("create gamma");
    wait_service(
        services,
        "gamma",
        "gamma serving on 1 replica",
        Duration::from_secs(90),
        |is| {
            let r = replicas(is);
            status_of(is).0 == Some(Phase::Serving) && (r.desired, r.ready) == (1, 1)
        },
    )
    .await;
    // Its pods have a disruption budget (policy/v1beta1 on this 1.20 API server, found through
    // discovery), owned by the service: a drain takes one at a time.
    let gvk = kube::api::GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget");
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "poddisruptionbudgets");
    let budgets: Api<kube::api::DynamicObject> = Api::namespaced_with(admin.clone(), NS, &ar);
    let budget = budgets
        .get("gamma")
        .await
        .expect("gamma's PodDisruptionBudget");
    assert_eq!(budget.data["spec"]["maxUnavailable"], 1, "{budget:?}");
    assert_eq!(
        budget
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].name.as_str()),
        Some("gamma")
    );
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let pod_ip = pods
        .list(&ListParams::default().labels(&format!("{}=gamma", names::SERVICE_LABEL)))
        .await
        .expect("gamma's pods")
        .items
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("gamma's pod has an IP");
    let url = format!("http://{pod_ip}:{}", names::HTTP_PORT);
    let mut load = tokio::process::Command::new(bin)
        .args(["loadgen", "--url", &url, "--model", "gamma", "--rate", "40"])
        // Longer than the scale-up can take on a busy machine (the second pod's runtime starts and
        // warms up under the load); stopped once the scale-up is seen. A load that ended first
        // would let the 2 s scale-down delay take the second replica away before the wait saw it.
        .args(["--duration-seconds", "40", "--threads", "1"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the runtime's load generator starts");
    let scaled = wait_for(
        "gamma scaled to 2 by the load",
        Duration::from_secs(30),
        || async {
            let is = services.get("gamma").await.map_err(|e| e.to_string())?;
            let d = deployments.get("gamma").await.map_err(|e| e.to_string())?;
            let r = replicas(&is);
            let want = d.spec.as_ref().and_then(|s| s.replicas);
            if r.desired == 2 && r.ready == 2 && want == Some(2) {
                Ok(is)
            } else {
                Err(format!(
                    "{r:?}, Deployment replicas {want:?}, observed {:?}",
                    is.status.as_ref().and_then(|s| s.observed.clone())
                ))
            }
        },
    )
    .await;
    let status = scaled.status.clone().unwrap_or_default();
    let seen = status.observed.clone().expect("status.observed");
    say(&format!(
        "gamma under load: {seen:?}; {:?}",
        status.replicas
    ));
    let rate = seen.inferences_per_second.unwrap_or(0.0);
    assert!(
        rate > 5.0 && rate < 80.0,
        "40 requests/s offered, {rate} observed"
    );
    assert!(
        seen.joules_per_inference.is_some_and(|j| j > 0.0)
            // The profile's prediction for the same load and batching sits beside it.
            && seen.predicted_joules_per_inference.is_some_and(|j| j > 0.0),
        "{seen:?}"
    );
    assert!(seen.latency_p99_ms.is_some_and(|ms| ms > 0.0), "{seen:?}");
    // The pods' joules are their synthetic meter's (a test double), and the status says so.
    assert_eq!(seen.energy_meter.as_deref(), Some("synthetic"), "{seen:?}");
    // The model's own time per batch (when the window held 20 batches or more: this test's
    // windows are 1 s), beside what the profile measured at that batch size.
    if seen.forward_ms_per_batch.is_some() {
        assert!(
            seen.run_batch_size.is_some_and(|b| b >= 1.0)
                && seen
                    .predicted_forward_ms_per_batch
                    .is_some_and(|ms| ms > 0.0),
            "{seen:?}"
        );
    }
    // How busy the pods' model threads were: a pod's capacity is learnt from it only past half
    // busy (this operator's target utilisation is tiny), so nothing is learnt at this load.
    assert!(
        seen.executor_busy.is_some_and(|b| b > 0.0 && b < 0.5),
        "{seen:?}"
    );
    assert_eq!(
        status
            .replicas
            .as_ref()
            .and_then(|r| r.measured_capacity_per_replica),
        None,
        "{:?}",
        status.replicas
    );
    // Refusals shown (none at this rate), and which table the prediction is against.
    assert_eq!(seen.refused_per_second, Some(0.0), "{seen:?}");
    assert!(seen.profile_measured_at.is_some(), "{seen:?}");
    // The plot draws what the pods measured beside the profile.
    let (code, svg) = http_get_at(operator_http, "/plots/e2e/gamma")
        .await
        .expect("GET gamma's plot");
    assert_eq!(code, 200, "{svg}");
    assert!(
        svg.contains("served:") && svg.contains("predicted for that load"),
        "gamma's plot under load draws the served levels"
    );
    // gamma's SLO is p99 <= 1000 ms: its latency at that percentile is the p99.
    assert_eq!(
        seen.latency_at_slo_percentile_ms, seen.latency_p99_ms,
        "{seen:?}"
    );
    // What the pods run now: their own adaptive batching stays within the selected cap.
    let cap = status.selected.as_ref().map(|s| s.batch_size).unwrap_or(0);
    assert!(
        seen.max_batch_size.is_some_and(|b| b >= 1 && b <= cap)
            && seen.max_queue_delay_ms.is_some_and(|ms| ms >= 0.0),
        "{seen:?}"
    );
    assert_eq!(
        status.phase,
        Some(Phase::Serving),
        "scaling keeps the service Serving"
    );
    let reason = status.replicas.and_then(|r| r.reason).unwrap_or_default();
    // Sized from the rate, or held there while the new pod has been measured only once.
    assert!(
        reason.contains("inferences/s observed") || reason.starts_with("kept at 2"),
        "{reason}"
    );
    // The scale-up came from a measured rate (a Scaled Event saying so), not only from holding.
    let events: Api<K8sEvent> = Api::namespaced(admin.clone(), NS);
    let notes: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Scaled"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("replicas 1 -> 2: 2") && n.contains("inferences/s")),
        "{notes:?}"
    );
    // Still running (it would have failed otherwise, with nothing scaled): stopped here.
    assert!(
        load.try_wait()
            .expect("the load generator's status")
            .is_none(),
        "the load generator ended before the scale-up was seen"
    );
    load.kill().await.expect("stop the load generator");
    // The load gone, the lower count waits out the scale-down delay in status first.
    wait_service(
        services,
        "gamma",
        "gamma holding 2 replicas while the scale-down waits",
        Duration::from_secs(30),
        |is| {
            let r = replicas(is);
            r.desired == 2 && r.scale_down.as_ref().is_some_and(|p| p.to == 1)
        },
    )
    .await;
    wait_service(
        services,
        "gamma",
        "gamma back to 1 replica without load",
        Duration::from_secs(30),
        |is| replicas(is).desired == 1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_end_to_end() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("greenbatch_operator=info,kube=warn")
            }),
        )
        .with_test_writer()
        .try_init();
    let t0 = Instant::now();
    let bin = runtime_binary();
    assert!(
        bin.is_file(),
        "greenbatch-runtime binary not found at {} — build it first: `source ~/.cache/greenbatch/libtorch.env && cargo build -p greenbatch-runtime` (or set GREENBATCH_RUNTIME_BIN)",
        bin.display()
    );
    // Serving is part of the test, always: a runtime that cannot serve fails it here.
    let serve_help = std::process::Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .expect("run greenbatch-runtime");
    assert!(
        serve_help.status.success(),
        "greenbatch-runtime serve --help: {}",
        String::from_utf8_lossy(&serve_help.stderr)
    );
    let model = workspace_root().join("runtime/tests/fixtures/tiny_cnn.pt");
    assert!(model.is_file(), "{}", model.display());

    let options = TestClusterOptions {
        controller_manager: true,
        identities: vec![
            Identity::operator(),
            Identity::service_account(RUNTIME_IDENTITY, NS, RUNTIME_SA),
            Identity::nobody(),
        ],
        // As on OpenShift and hardened clusters: an ownerReference with blockOwnerDeletion needs
        // `update` on the owner's finalizers (the chart grants it; without, every apply is 403).
        extra_apiserver_args: vec![
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        ],
        ..Default::default()
    };
    let cluster = TestCluster::start(options).await.expect("cluster starts");
    cluster.create_namespace(NS).await.expect("namespace");
    cluster
        .create_namespace(OPERATOR_NAMESPACE)
        .await
        .expect("the operator's namespace (its Lease)");
    install_chart(&cluster).await;
    let admin = cluster.client();

    // The operator, in-process, as its own service account.
    let op_client = cluster.client_as(OPERATOR).await.expect("operator client");
    let operator = Arc::new(Operator::default());
    let settings = Settings {
        config: OperatorConfig {
            runtime_image: IMAGE.into(),
            runtime_service_account: RUNTIME_SA.into(),
            // One pod per profiling Job: a failure is final at once (the Job controller's pod
            // backoff would add 10 s per retry).
            job_backoff_limit: 0,
            // One profiling Job at a time: services whose profiles are measured in one moment
            // take turns (scenario 5a' sees one queued behind a Job whose pod cannot run).
            max_profiling_jobs: Some(1),
            // Observe every second; and a target utilisation so low that any traffic needs more
            // than one replica (one replica of the tiny model serves thousands per second): the
            // scale-up and -down path runs in seconds. Services with a fixed count are unaffected.
            observe_interval: Duration::from_secs(1),
            target_utilisation: 0.0001,
            // Down 2 s after the load goes (the wait itself is the plan's unit tests').
            scale_down_delay: Duration::from_secs(2),
            // A profile no service uses goes 3 s after it is first seen unused (the pruner
            // looks every second).
            unused_profile_ttl: Some(Duration::from_secs(3)),
            prune_interval: Duration::from_secs(1),
            // The platform's default for runtime pods: tolerate the GPU nodes' taint.
            runtime_pod: serde_json::from_value(serde_json::json!({
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            }))
            .expect("pod defaults"),
            ..Default::default()
        },
        scope: Scope::All,
        concurrency: 2,
        instance: Some("e2e".into()),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // With leader election on, as deployed: one replica, which takes the Lease at once. The
    // multi-replica behaviour is tests/tests/operator_leader.rs.
    let lease = LeaseSettings {
        name: "greenbatch-operator".into(),
        namespace: OPERATOR_NAMESPACE.into(),
        identity: "e2e".into(),
        lease_duration: Duration::from_secs(15),
        renew_interval: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(10),
    };
    let op_task = tokio::spawn(leader::run_elected(
        operator.clone(),
        op_client.clone(),
        settings,
        lease,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let (addr, http) = server::bind(
        "127.0.0.1:0".parse().unwrap(),
        operator.clone(),
        Some(op_client.clone()),
        async move {
            let _ = http_stop_rx.await;
        },
    )
    .await
    .expect("metrics server binds");
    let http_task = tokio::spawn(http);

    // The kubelet agent.
    let logs = cluster.dir().join("agent");
    std::fs::create_dir_all(&logs).expect("agent log dir");
    let irsa: Arc<Mutex<Option<Irsa>>> = Arc::new(Mutex::new(None));
    let mut agent = Agent {
        client: admin.clone(),
        bin: bin.clone(),
        runtime_kubeconfig: cluster
            .kubeconfig_as(RUNTIME_IDENTITY)
            .expect("runtime kubeconfig")
            .to_path_buf(),
        logs,
        procs: HashMap::new(),
        last_host: 1,
        unschedulable: Default::default(),
        config_errors: HashMap::new(),
        irsa: irsa.clone(),
    };
    let agent_task = tokio::spawn(async move {
        loop {
            agent.tick().await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });

    let services: Api<InferenceService> = Api::namespaced(admin.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), NS);
    let svcs: Api<Service> = Api::namespaced(admin.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(admin.clone(), NS);
    let profiles: Api<EnergyProfile> = Api::namespaced(admin.clone(), NS);
    let uri = format!("file://{}", model.display());
    let pp = PostParams::default();

    let ready = wait_ready(addr.port(), &op_task).await;
    if !ready {
        match op_task.await {
            Ok(Err(e)) => panic!("the operator stopped: {e}"),
            other => panic!("the operator stopped: {other:?}"),
        }
    }

    // An invalid service first: it must not stop the others, nor loop.
    let invalid = service_yaml(
        "invalid",
        &uri,
        serde_json::json!({"batching": {"mode": "fixed", "candidates": [1, 2]}}),
    );
    services
        .create(&pp, &invalid)
        .await
        .expect("a schema-valid but invalid service is admitted");

    // Scenario 1: Pending -> Profiling -> Serving, with a real profile written by the runtime.
    let phases = Arc::new(Mutex::new(Vec::<Phase>::new()));
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher_task = {
        let (services, phases) = (services.clone(), phases.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            use kube::runtime::{WatchStreamExt, watcher};
            // A watch sees every status write; a poll can miss a phase shorter than its period.
            let config = watcher::Config::default().fields("metadata.name=alpha");
            let mut stream = std::pin::pin!(watcher(services, config).default_backoff());
            let mut listed = Some(listed_tx);
            while let Some(event) = stream.next().await {
                let is = match event {
                    Ok(watcher::Event::InitDone) => {
                        // Watching from here on: alpha may be created.
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Apply(is) | watcher::Event::InitApply(is)) => is,
                    _ => continue,
                };
                if let Some(p) = is.status.and_then(|s| s.phase) {
                    let mut v = phases.lock().unwrap();
                    if v.last() != Some(&p) {
                        v.push(p);
                    }
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(30), listed_rx)
        .await
        .expect("the phase watch starts")
        .expect("the phase watch runs");
    services
        .create(
            &pp,
            &service_yaml(
                "alpha",
                &uri,
                serde_json::json!({"pod": {"resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "2Gi"}}}}),
            ),
        )
        .await
        .expect("create alpha");
    let target = Phase::Serving;
    let alpha = wait_service(
        &services,
        "alpha",
        "alpha to be profiled and deployed",
        Duration::from_secs(120),
        |is| {
            status_of(is).0 == Some(target) && condition_message(is, "Profiled").starts_with("True")
        },
    )
    .await;
    // The watch may deliver the last write a moment after the GET that saw it.
    let seen = wait_for(
        "the watch to see alpha's phase",
        Duration::from_secs(10),
        || async {
            let seen = phases.lock().unwrap().clone();
            if seen.last() == Some(&target) {
                Ok(seen)
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;
    say(&format!(
        "alpha phases: {seen:?} after {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    // Profiling shows while the Job runs; a reconcile may also find the Job already done (this
    // tiny model profiles in half a second) and go from Pending straight on.
    assert!(
        seen.first() == Some(&Phase::Pending)
            && seen.last() == Some(&target)
            && seen
                .iter()
                .all(|p| matches!(p, Phase::Pending | Phase::Profiling) || *p == target),
        "alpha went Pending -> (Profiling) -> ... -> {target:?}: {seen:?}"
    );
    let status = alpha.status.clone().unwrap();
    let profile_name = status.profile_ref.clone().expect("profileRef");
    let ep = profiles
        .get(&profile_name)
        .await
        .expect("the EnergyProfile exists");
    let ep_status = ep
        .status
        .clone()
        .expect("the runtime wrote the profile's status");
    assert_eq!(ep_status.phase, Some(ProfilePhase::Complete));
    let table = ep_status.table.expect("a measured table");
    assert_eq!(
        table.rows.iter().map(|r| r.batch_size).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(table.meter, greenbatch_core::MeterKind::Synthetic);
    // Where it was measured: the node (downward API), not the Job's short-lived pod.
    assert_eq!(
        ep_status
            .measured_on
            .as_ref()
            .and_then(|m| m.host.as_deref()),
        Some(TEST_NODE)
    );
    assert!(
        ep.metadata.owner_references.is_none(),
        "profiles are shared, not owned"
    );
    let selected = status.selected.clone().expect("selected config");
    assert!(
        selected.joules_per_inference.is_some() && selected.batch1_joules_per_inference.is_some()
    );
    let d = deployments.get("alpha").await.expect("alpha's Deployment");
    // The pods adapt their batching from the profile (the runtime refuses a profile it cannot
    // read, so alpha being Serving means its pod took this one).
    let env = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].env.clone())
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == names::PROFILE_INLINE_ENV
            && e.value
                .as_deref()
                .is_some_and(|v| v.contains("\"batchSize\":4"))),
        "{env:?}"
    );
    let a = args_of(&d);
    assert_eq!(
        flag(&a, "--max-batch-size"),
        Some(selected.batch_size.to_string()),
        "{a:?}"
    );
    assert_eq!(
        d.metadata.owner_references.as_ref().unwrap()[0].uid,
        alpha.uid().unwrap()
    );
    // alpha's resources over the operator's default toleration, in its serving pods and in the
    // profiling Job's, as the API server stored them.
    let job = jobs
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            names::PROFILE_LABEL,
            status.profile_ref.clone().expect("profileRef")
        )))
        .await
        .expect("list Jobs")
        .items
        .into_iter()
        .next()
        .expect("alpha's profiling Job");
    for (what, pod) in [
        (
            "Deployment",
            d.spec.as_ref().and_then(|s| s.template.spec.clone()),
        ),
        (
            "Job",
            job.spec.as_ref().and_then(|s| s.template.spec.clone()),
        ),
    ] {
        let pod = pod.expect("a pod template");
        let tolerations = pod.tolerations.clone().unwrap_or_default();
        assert_eq!(
            tolerations.first().and_then(|t| t.key.as_deref()),
            Some("nvidia.com/gpu"),
            "{what}: {tolerations:?}"
        );
        let resources = pod.containers[0].resources.clone().unwrap_or_default();
        let memory_limit = resources
            .limits
            .unwrap_or_default()
            .get("memory")
            .map(|q| q.0.clone());
        assert_eq!(memory_limit.as_deref(), Some("2Gi"), "{what}");
    }
    svcs.get("alpha").await.expect("alpha's Service");
    assert_eq!(status.replicas.as_ref().map(|r| r.ready), Some(1));

    // Scenario 2: a second service with the same model reuses the profile: no second Job.
    services
        .create(
            &pp,
            &service_yaml(
                "beta",
                &uri,
                serde_json::json!({"slo": {"latencyMs": 500, "percentile": 95}}),
            ),
        )
        .await
        .expect("create beta");
    let beta = wait_service(
        &services,
        "beta",
        "beta deployed from the shared profile",
        Duration::from_secs(90),
        |is| status_of(is).0 == Some(target),
    )
    .await;
    assert_eq!(
        beta.status.as_ref().unwrap().profile_ref.as_deref(),
        Some(profile_name.as_str())
    );
    let profile_jobs =
        ListParams::default().labels(&format!("{}={profile_name}", names::PROFILE_LABEL));
    assert_eq!(
        jobs.list(&profile_jobs).await.unwrap().items.len(),
        1,
        "one profiling Job for two services"
    );

    // Scenario 2b: replicas follow the load the operator observes on the serving pods' /metrics.
    scale_with_observed_load(&services, &deployments, &admin, &bin, &uri, addr).await;

    // Scenario 3: a spec change re-plans (fixed batch size 2 -> a new rollout).
    services
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({"spec": {"batching": {"mode": "fixed", "batchSize": 2}}}),
            ),
        )
        .await
        .expect("patch alpha");
    wait_for(
        "alpha re-planned at batch 2",
        Duration::from_secs(90),
        || async {
            let is = services.get("alpha").await.map_err(|e| e.to_string())?;
            let d = deployments.get("alpha").await.map_err(|e| e.to_string())?;
            let ok = status_of(&is) == (Some(target), Some(2))
                && is
                    .status
                    .as_ref()
                    .and_then(|s| s.selected.as_ref())
                    .map(|s| s.batch_size)
                    == Some(2)
                && flag(&args_of(&d), "--max-batch-size").as_deref() == Some("2");
            if ok { Ok(()) } else { Err(describe(&is)) }
        },
    )
    .await;

    // Scenario 3b: paused, beta (1 replica by its spec) keeps a hand-made scale; resumed, the
    // operator sizes it again.
    let annotate = |value: serde_json::Value| serde_json::json!({"metadata": {"annotations": {names::PAUSED_ANNOTATION: value}}});
    services
        .patch(
            "beta",
            &PatchParams::default(),
            &Patch::Merge(&annotate(serde_json::json!("true"))),
        )
        .await
        .expect("pause beta");
    wait_service(
        &services,
        "beta",
        "beta paused",
        Duration::from_secs(30),
        |is| condition_message(is, "Paused").starts_with("True/"),
    )
    .await;
    let scale = serde_json::json!({"spec": {"replicas": 2}});
    deployments
        .patch("beta", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale beta's Deployment by hand");
    // Reconciles that saw the hand-made scale ran (the scale itself triggers one), not just time.
    reconciled_twice_more(&operator, "e2e/beta").await;
    let held = deployments.get("beta").await.expect("beta's Deployment");
    assert_eq!(
        held.spec.and_then(|s| s.replicas),
        Some(2),
        "a paused service's Deployment keeps a hand-made scale"
    );
    services
        .patch(
            "beta",
            &PatchParams::default(),
            &Patch::Merge(&annotate(serde_json::Value::Null)),
        )
        .await
        .expect("resume beta");
    wait_for(
        "beta resumed at 1 replica",
        Duration::from_secs(30),
        || async {
            let d = deployments.get("beta").await.map_err(|e| e.to_string())?;
            match d.spec.and_then(|s| s.replicas) {
                Some(1) => Ok(()),
                other => Err(format!("replicas {other:?}")),
            }
        },
    )
    .await;

    // Scenario 4: a re-profile request runs one more Job for the shared profile, and the first,
    // finished, is deleted as the new one starts (no Job per re-profile left behind).
    let first_job = jobs.list(&profile_jobs).await.unwrap().items[0].name_any();
    services
        .patch("beta", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"metadata": {"annotations": {names::REPROFILE_ANNOTATION: "r1"}}})))
        .await
        .expect("annotate beta");
    wait_for(
        "the re-profile Job to complete, the first deleted",
        Duration::from_secs(90),
        || async {
            let list = jobs.list(&profile_jobs).await.map_err(|e| e.to_string())?;
            let names: Vec<String> = list.items.iter().map(|j| j.name_any()).collect();
            let complete = list
                .items
                .iter()
                .filter(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
                .count();
            if names.len() == 1 && !names.contains(&first_job) && complete == 1 {
                Ok(())
            } else {
                Err(format!("Jobs {names:?}, {complete} complete"))
            }
        },
    )
    .await;
    // The operator records how it ended on the profile; then the Job can go (its
    // ttlSecondsAfterFinished, which this 1.20 cluster does not run: deleted here by hand) and is
    // not run again.
    let reprofile_job = jobs.list(&profile_jobs).await.unwrap().items[0].name_any();
    wait_last_job(
        &profiles,
        &profile_name,
        "the re-profile Job's end recorded on the profile",
        Duration::from_secs(30),
        |r| r.name == reprofile_job && r.outcome == JobOutcome::Succeeded,
    )
    .await;
    jobs.delete(&reprofile_job, &DeleteParams::background())
        .await
        .expect("delete the finished re-profile Job");
    // beta requeues every second while serving: a few reconciles, counted.
    reconciled_twice_more(&operator, "e2e/beta").await;
    let left: Vec<String> = jobs
        .list(&profile_jobs)
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "a recorded, deleted Job is not created again"
    );
    let beta = services.get("beta").await.expect("beta");
    assert_eq!(status_of(&beta).0, Some(target), "{}", describe(&beta));

    // Scenario 4b: a re-measurement that fails (the model file gone) keeps the table the service
    // serves from: the profile stays Complete, the runtime says what failed, the service serves on.
    let gone = cluster.dir().join("delta.pt");
    std::fs::copy(&model, &gone).expect("a model file of delta's own");
    services
        .create(
            &pp,
            &service_yaml(
                "delta",
                &format!("file://{}", gone.display()),
                serde_json::json!({}),
            ),
        )
        .await
        .expect("create delta");
    let delta = wait_service(
        &services,
        "delta",
        "delta profiled",
        Duration::from_secs(90),
        |is| status_of(is).0 == Some(target),
    )
    .await;
    let delta_profile = delta
        .status
        .as_ref()
        .and_then(|s| s.profile_ref.clone())
        .expect("delta's profile");
    std::fs::remove_file(&gone).expect("remove delta's model");
    services
        .patch("delta", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"metadata": {"annotations": {names::REPROFILE_ANNOTATION: "gone"}}})))
        .await
        .expect("annotate delta");
    let delta = wait_service(
        &services,
        "delta",
        "delta's failed re-measurement reported, the table kept",
        Duration::from_secs(90),
        |is| condition_message(is, "Profiled").contains("measuring again failed"),
    )
    .await;
    say(&format!("delta: {}", condition_message(&delta, "Profiled")));
    assert_eq!(status_of(&delta).0, Some(target), "{}", describe(&delta));
    let kept = profiles.get(&delta_profile).await.expect("delta's profile");
    let kept = kept.status.expect("status");
    assert_eq!(kept.phase, Some(ProfilePhase::Complete));
    assert!(kept.table.is_some_and(|t| !t.rows.is_empty()));
    assert!(
        kept.message
            .as_deref()
            .is_some_and(|m| m.contains("cannot read model file")),
        "{:?}",
        kept.message
    );
    // Scenario 4b: one more replica of delta cannot load the removed file: its pod exits with
    // code 3 and the Ready condition says so, while the first pod serves on.
    let replicas = serde_json::json!({"spec": {"replicas": {"min": 2, "max": 2}}});
    services
        .patch("delta", &PatchParams::default(), &Patch::Merge(&replicas))
        .await
        .expect("scale delta");
    let delta = wait_service(
        &services,
        "delta",
        "delta's new pod failing, said in its Ready condition",
        Duration::from_secs(90),
        |is| condition_message(is, "Ready").contains("a serving pod failed"),
    )
    .await;
    let ready = condition_message(&delta, "Ready");
    say(&format!("delta: {ready}"));
    assert!(
        ready.starts_with("True/")
            && ready.contains("1/2 replicas ready")
            && ready.contains("exit code 3 (model file missing)")
            && ready.contains("cannot read model file"),
        "{ready}"
    );
    let one = serde_json::json!({"spec": {"replicas": {"min": 1, "max": 1}}});
    services
        .patch("delta", &PatchParams::default(), &Patch::Merge(&one))
        .await
        .expect("scale delta back");

    // The failed re-measurement's end is recorded with why; the model back and measured again,
    // the record says Succeeded and nothing of the failure stays (on this 1.20 server an object
    // and its status share managedFields per manager: the record has its own manager).
    let failed = wait_last_job(
        &profiles,
        &delta_profile,
        "delta's failed Job recorded",
        Duration::from_secs(30),
        |r| r.outcome == JobOutcome::Failed,
    )
    .await;
    assert!(failed.message.is_some(), "{failed:?}");
    std::fs::copy(&model, &gone).expect("delta's model back");
    services
        .patch("delta", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"metadata": {"annotations": {names::REPROFILE_ANNOTATION: "back"}}})))
        .await
        .expect("annotate delta again");
    let succeeded = wait_last_job(
        &profiles,
        &delta_profile,
        "delta measured again, recorded as succeeded",
        Duration::from_secs(90),
        |r| r.outcome == JobOutcome::Succeeded && r.name != failed.name,
    )
    .await;
    assert_eq!(
        (succeeded.reason, succeeded.message),
        (None, None),
        "nothing of the earlier failure stays in the record"
    );

    // Scenario 5: a failing profiling pod (missing model file: exit code 3) surfaces its reason.
    services
        .create(
            &pp,
            &service_yaml(
                "broken",
                "file:///nonexistent/missing.pt",
                serde_json::json!({}),
            ),
        )
        .await
        .expect("create broken");
    let broken = wait_service(
        &services,
        "broken",
        "broken to fail with the pod's reason",
        Duration::from_secs(90),
        |is| status_of(is).0 == Some(Phase::Failed),
    )
    .await;
    let msg = condition_message(&broken, "Profiled");
    say(&format!("broken: {msg}"));
    assert!(msg.contains("exit code 3 (model file missing)"), "{msg}");

    // Scenario 5a: a profiling pod no node can take (a GPU product the cluster lacks) says why,
    // in the service's conditions, while it waits.
    services
        .create(
            &pp,
            &service_yaml(
                "stuck",
                &uri,
                serde_json::json!({"gpu": {"count": 1, "product": NO_SUCH_GPU}}),
            ),
        )
        .await
        .expect("create stuck");
    let stuck = wait_service(
        &services,
        "stuck",
        "stuck to say its profiling pod cannot be scheduled",
        Duration::from_secs(60),
        |is| {
            is.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Profiled" && c.reason == "ProfilingWaiting")
            })
        },
    )
    .await;
    let msg = condition_message(&stuck, "Profiled");
    say(&format!("stuck: {msg}"));
    assert!(
        msg.contains("cannot be scheduled: 0/1 nodes are available"),
        "{msg}"
    );
    assert_eq!(status_of(&stuck).0, Some(Phase::Pending));
    services
        .delete("stuck", &DeleteParams::default())
        .await
        .expect("delete stuck");
    // No service uses its profile now: stamped, then deleted once unused for the TTL (its Job,
    // whose pod never ran, with it).
    let stuck_profile = stuck
        .status
        .as_ref()
        .and_then(|s| s.profile_ref.clone())
        .expect("stuck's profile");
    wait_for(
        "stuck's unused profile to be pruned",
        Duration::from_secs(30),
        || async {
            match profiles
                .get_opt(&stuck_profile)
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(p) => Err(format!(
                    "still there, annotations {:?}",
                    p.metadata.annotations
                )),
            }
        },
    )
    .await;

    // Scenario 5a'': a namespace the chart did not set up for profiling (no runtime service
    // account): the Job controller cannot create the pod, and the service says why at once —
    // from the Job's FailedCreate Event — instead of "Profiling" until the Job's deadline.
    const BARE_NS: &str = "e2e-bare";
    cluster
        .create_namespace(BARE_NS)
        .await
        .expect("a namespace without the runtime service account");
    let bare_services: Api<InferenceService> = Api::namespaced(admin.clone(), BARE_NS);
    let mut bare = service_yaml("bare", &uri, serde_json::json!({}));
    bare.metadata.namespace = Some(BARE_NS.into());
    bare_services.create(&pp, &bare).await.expect("create bare");
    let bare = wait_service(
        &bare_services,
        "bare",
        "bare to say its profiling pod cannot be created",
        Duration::from_secs(60),
        |is| condition_message(is, "Profiled").contains("cannot create its pod"),
    )
    .await;
    let msg = condition_message(&bare, "Profiled");
    say(&format!("bare: {msg}"));
    assert!(
        msg.starts_with("False/ProfilingWaiting")
            && msg.contains(&format!("serviceaccount \"{RUNTIME_SA}\" not found")),
        "{msg}"
    );
    bare_services
        .delete("bare", &DeleteParams::default())
        .await
        .expect("delete bare");
    // Its Job holds the one place --max-profiling-jobs gives this run until it goes with its
    // pruned profile: gone before the next scenario, which counts on that place.
    let bare_jobs: Api<Job> = Api::namespaced(admin.clone(), BARE_NS);
    wait_for(
        "bare's unused profile and its Job to go",
        Duration::from_secs(30),
        || async {
            let left: Vec<String> = bare_jobs
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .map(|j| j.name_any())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still there: {left:?}"))
            }
        },
    )
    .await;

    // Scenario 5a': a profiling pod that cannot run because of the service's own pod settings
    // (a node pool that does not exist): once `spec.pod` is fixed, its Job is made anew (same
    // name, another uid) and measures.
    let placed_model = cluster.dir().join("placed.pt");
    std::fs::copy(&model, &placed_model).expect("a model file of placed's own");
    services
        .create(
            &pp,
            &service_yaml(
                "placed",
                &format!("file://{}", placed_model.display()),
                serde_json::json!({"pod": {"nodeSelector": {POOL_LABEL: "none"}}}),
            ),
        )
        .await
        .expect("create placed");
    let placed = wait_service(
        &services,
        "placed",
        "placed to say its profiling pod cannot be scheduled",
        Duration::from_secs(60),
        |is| condition_message(is, "Profiled").contains("cannot be scheduled"),
    )
    .await;
    let placed_profile = placed
        .status
        .as_ref()
        .and_then(|s| s.profile_ref.clone())
        .expect("placed's profile");
    let placed_jobs =
        ListParams::default().labels(&format!("{}={placed_profile}", names::PROFILE_LABEL));
    let stuck_job = jobs.list(&placed_jobs).await.unwrap().items;
    assert_eq!(stuck_job.len(), 1, "one profiling Job for placed");
    let stuck_uid = stuck_job[0].uid();
    // Its Job holds the one place --max-profiling-jobs allows: a service with another model
    // waits for it, and says so.
    let queued_model = cluster.dir().join("queued.pt");
    std::fs::copy(&model, &queued_model).expect("a model file of queued's own");
    services
        .create(
            &pp,
            &service_yaml(
                "queued",
                &format!("file://{}", queued_model.display()),
                serde_json::json!({}),
            ),
        )
        .await
        .expect("create queued");
    let queued = wait_service(
        &services,
        "queued",
        "queued to wait for a place among the profiling Jobs",
        Duration::from_secs(60),
        |is| condition_message(is, "Profiled").starts_with("False/ProfilingQueued"),
    )
    .await;
    say(&format!(
        "queued: {}",
        condition_message(&queued, "Profiled")
    ));
    assert!(
        condition_message(&queued, "Profiled").contains("--max-profiling-jobs allows (1)"),
        "{}",
        describe(&queued)
    );
    services
        .patch(
            "placed",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"pod": null}})),
        )
        .await
        .expect("fix placed's spec.pod");
    let placed = wait_service(
        &services,
        "placed",
        "placed's profiling Job to be made anew and measure",
        Duration::from_secs(90),
        |is| condition_message(is, "Profiled").starts_with("True/"),
    )
    .await;
    say(&format!(
        "placed: {}",
        condition_message(&placed, "Profiled")
    ));
    let made_anew = jobs.list(&placed_jobs).await.unwrap().items;
    assert_eq!(made_anew.len(), 1, "one profiling Job for placed");
    assert_eq!(made_anew[0].name_any(), stuck_job[0].name_any());
    assert_ne!(made_anew[0].uid(), stuck_uid, "the stuck Job was replaced");
    assert!(
        made_anew[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.node_selector.as_ref())
            .is_none_or(|s| !s.contains_key(POOL_LABEL)),
        "the new Job selects no pool: {:?}",
        made_anew[0].spec
    );
    // The place freed, the queued service is measured too.
    wait_service(
        &services,
        "queued",
        "queued to be profiled once a place is free",
        Duration::from_secs(90),
        |is| condition_message(is, "Profiled").starts_with("True/"),
    )
    .await;
    for name in ["placed", "queued"] {
        services
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete placed/queued");
    }

    // Scenario 5b: a model over http. With its digest the profiling pod downloads, checks and
    // measures it; with another digest the pod refuses the bytes it got (exit code 14) and the
    // service says which digest it found.
    let model_url = serve_file_over_http(model.clone());
    let digest = greenbatch_tests::workspace::file_digest(&model);
    let wrong = format!("sha256:{}", "0".repeat(64));
    for (name, d) in [("fetched", &digest), ("tampered", &wrong)] {
        let mut svc = service_yaml(name, &model_url, serde_json::json!({}));
        svc.spec.model.source.digest = Some(d.clone());
        services
            .create(&pp, &svc)
            .await
            .expect("create an http-model service");
    }
    let fetched = wait_service(
        &services,
        "fetched",
        "the http model to be downloaded and profiled",
        Duration::from_secs(90),
        |is| condition_message(is, "Profiled").starts_with("True/"),
    )
    .await;
    say(&format!(
        "fetched: {}",
        condition_message(&fetched, "Profiled")
    ));
    let tampered = wait_service(
        &services,
        "tampered",
        "the http model with another digest to fail",
        Duration::from_secs(90),
        |is| status_of(is).0 == Some(Phase::Failed),
    )
    .await;
    let msg = condition_message(&tampered, "Profiled");
    say(&format!("tampered: {msg}"));
    assert!(
        msg.contains("exit code 14") && msg.contains(&digest) && msg.contains(&wrong),
        "{msg}"
    );

    // Scenario 5c: a model in an S3 store (moto's S3 API, which checks signatures), read with
    // keys from a Secret the operator never reads. The Secret is not there yet: the profiling pod
    // cannot be configured (the kubelet's CreateContainerConfigError) and the service says so;
    // once it exists the pod starts, downloads the object signed, checks it and measures, and the
    // serving pod does the same.
    let s3_model = workspace_root().join("runtime/tests/fixtures/conv_bn.pt");
    match S3Store::start(&s3_model, "vision/conv bn.pt") {
        None => say("scenario 5c skipped: moto is not installed (scripts/setup-s3-test.sh)"),
        Some(store) => {
            let mut svc = service_yaml("stored", &store.uri(), serde_json::json!({}));
            svc.spec.model.source.digest =
                Some(greenbatch_tests::workspace::file_digest(&s3_model));
            svc.spec.model.source.s3 = Some(greenbatch_crds::S3Source {
                endpoint: Some(store.endpoint.clone()),
                region: Some(store.region.clone()),
                credentials_secret: Some("model-store".into()),
            });
            services
                .create(&pp, &svc)
                .await
                .expect("create an s3-model service");
            let waiting = wait_service(
                &services,
                "stored",
                "the S3 model's profiling pod to wait for its keys' Secret",
                Duration::from_secs(60),
                |is| {
                    condition_message(is, "Profiled")
                        .contains("CreateContainerConfigError: secret \"model-store\" not found")
                },
            )
            .await;
            say(&format!(
                "stored: {}",
                condition_message(&waiting, "Profiled")
            ));
            let keys: Secret = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "model-store", "namespace": NS},
                "stringData": {"AWS_ACCESS_KEY_ID": store.access_key_id,
                               "AWS_SECRET_ACCESS_KEY": store.secret_access_key},
            }))
            .expect("a well-formed Secret");
            Api::<Secret>::namespaced(admin.clone(), NS)
                .create(&pp, &keys)
                .await
                .expect("create the keys' Secret");
            let stored = wait_service(
                &services,
                "stored",
                "the S3 model to be downloaded, profiled (and served)",
                Duration::from_secs(90),
                |is| {
                    condition_message(is, "Profiled").starts_with("True/")
                        && status_of(is).0 == Some(Phase::Serving)
                },
            )
            .await;
            say(&format!(
                "stored: {:?}, {}",
                status_of(&stored).0,
                condition_message(&stored, "Profiled")
            ));

            // Scenario 5d: the same model read with the pods' own AWS identity (IRSA) instead of
            // a Secret: the chart annotated the runtime service account with a role, and serving
            // pods now run as it. A service sharing the profile above serves; its pod's keys come
            // from STS (a stand-in replaying moto's answer for that role and token, so moto checks
            // what they sign).
            assert_eq!(store.role_arn, IRSA_ROLE, "the role the chart names");
            let (sts_answer, role) = (store.sts_response.clone(), store.role_arn.clone());
            let sts = stand_in(move |request| {
                let arn = role.replace(':', "%3A").replace('/', "%2F");
                if request.contains(&format!("RoleArn={arn}"))
                    && request.contains(&format!("WebIdentityToken={WEB_IDENTITY_TOKEN}"))
                {
                    (200, sts_answer.clone())
                } else {
                    (
                        403,
                        "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"
                            .into(),
                    )
                }
            });
            let token_file = cluster.dir().join("web-identity-token");
            std::fs::write(&token_file, WEB_IDENTITY_TOKEN).expect("the token file");
            *irsa.lock().unwrap() = Some(Irsa {
                token_file,
                region: store.region.clone(),
                sts,
            });
            let mut svc = service_yaml("stored-irsa", &store.uri(), serde_json::json!({}));
            svc.spec.model.source.digest =
                Some(greenbatch_tests::workspace::file_digest(&s3_model));
            svc.spec.model.source.s3 = Some(greenbatch_crds::S3Source {
                endpoint: Some(store.endpoint.clone()),
                region: Some(store.region.clone()),
                credentials_secret: None,
            });
            services
                .create(&pp, &svc)
                .await
                .expect("create an s3-model service without a Secret");
            let irsa_served = wait_service(
                &services,
                "stored-irsa",
                "the S3 model to be served with the pods' own AWS identity",
                Duration::from_secs(90),
                |is| status_of(is).0 == Some(Phase::Serving),
            )
            .await;
            say(&format!(
                "stored-irsa: {}",
                condition_message(&irsa_served, "Ready")
            ));

            *irsa.lock().unwrap() = None;
            // Gone before their store is: their serving pods would fail without it.
            for name in ["stored", "stored-irsa"] {
                services
                    .delete(name, &DeleteParams::default())
                    .await
                    .expect("delete the s3-model services");
            }
        }
    }

    // The invalid service: a condition naming the field, and no reconcile loop.
    let inv = services.get("invalid").await.unwrap();
    let msg = condition_message(&inv, "Ready");
    assert!(
        msg.contains("InvalidSpec") && msg.contains("spec.batching.batchSize"),
        "{msg}"
    );
    let n1 = operator.metrics.reconciles_of("e2e/invalid");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n2 = operator.metrics.reconciles_of("e2e/invalid");
    assert!(
        n1 <= 3 && n1 == n2,
        "the invalid service was reconciled {n1} then {n2} times"
    );

    // Scenario 5e: a service named like a hand-made Service (the one it is to replace) says so
    // and leaves it as it is: neither applied over (its selector would send the other app's
    // traffic to the model) nor, once the SLO is unattainable and nothing is served, deleted.
    let handmade: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "handmade", "namespace": NS},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 80}]},
    }))
    .expect("a Service");
    svcs.create(&pp, &handmade)
        .await
        .expect("create the hand-made Service");
    services
        .create(&pp, &service_yaml("handmade", &uri, serde_json::json!({})))
        .await
        .expect("create handmade");
    let unchanged = |s: &Service| {
        s.spec.as_ref().and_then(|s| s.selector.clone())
            == Some([("app".to_string(), "other".to_string())].into())
            && s.metadata.owner_references.is_none()
    };
    wait_service(
        &services,
        "handmade",
        "handmade to report the name conflict",
        Duration::from_secs(60),
        |is| condition_message(is, "Ready").contains("NameConflict: a Service named handmade"),
    )
    .await;
    assert!(unchanged(&svcs.get("handmade").await.unwrap()));
    assert!(deployments.get_opt("handmade").await.unwrap().is_none());
    services
        .patch(
            "handmade",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"slo": {"latencyMs": 0.001}}})),
        )
        .await
        .expect("an unattainable SLO");
    wait_service(
        &services,
        "handmade",
        "handmade to stop serving for its unattainable SLO",
        Duration::from_secs(60),
        |is| condition_message(is, "Ready").contains("SLOUnattainable"),
    )
    .await;
    let left = svcs
        .get_opt("handmade")
        .await
        .unwrap()
        .expect("the hand-made Service is not deleted");
    assert!(unchanged(&left), "{left:?}");
    services
        .delete("handmade", &DeleteParams::default())
        .await
        .expect("delete handmade");

    // Scenario 6: deleting a service garbage-collects its objects; the shared profile stays.
    services
        .delete("alpha", &DeleteParams::default())
        .await
        .expect("delete alpha");
    wait_for(
        "alpha's Deployment and Service to be garbage-collected",
        Duration::from_secs(90),
        || async {
            let d = deployments
                .get_opt("alpha")
                .await
                .map_err(|e| e.to_string())?;
            let s = svcs.get_opt("alpha").await.map_err(|e| e.to_string())?;
            if d.is_none() && s.is_none() {
                Ok(())
            } else {
                Err(format!(
                    "deployment {}, service {}",
                    d.is_some(),
                    s.is_some()
                ))
            }
        },
    )
    .await;
    assert!(
        profiles.get_opt(&profile_name).await.unwrap().is_some(),
        "the shared profile stays"
    );
    // Nor does the operator keep counting a deleted service in memory.
    wait_for(
        "the operator to forget alpha",
        Duration::from_secs(10),
        || async {
            match operator.metrics.reconciles_of("e2e/alpha") {
                0 => Ok(()),
                n => Err(format!("{n} reconciles still remembered")),
            }
        },
    )
    .await;

    // Events on transitions, published under the operator's RBAC.
    let events: Api<K8sEvent> = Api::namespaced(admin.clone(), NS);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for want in [
        "Unused",
        "Pruned",
        "ProfilingStarted",
        "ProfileReused",
        "ConfigSelected",
        "ProfilingFailed",
        "ProfilingJobReplaced",
        "ProfilingQueued",
        "InvalidSpec",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} Event among {reasons:?}"
        );
    }
    for want in ["Serving", "Scaled"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} Event among {reasons:?}"
        );
    }
    // The pods ran what the profile measured, on the same machine: no drift was reported.
    assert!(
        !reasons.iter().any(|r| r == "PredictionDrift"),
        "a PredictionDrift Event among {reasons:?}"
    );

    // Metrics over HTTP.
    let (code, body) = http_get(addr.port(), "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(code, 200);
    for want in [
        "greenbatch_operator_reconciles_total",
        "greenbatch_operator_reconcile_duration_seconds",
        // broken, tampered and invalid.
        "greenbatch_operator_inference_services{phase=\"Failed\"} 3",
    ] {
        assert!(body.contains(want), "{want} missing in\n{body}");
    }
    let ok = body
        .lines()
        .find_map(|l| l.strip_prefix("greenbatch_operator_pod_scrapes_total{result=\"ok\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(ok > 0.0, "no successful pod scrapes counted in\n{body}");
    // What the operator decided for each service, beside what its pods measured.
    for want in [
        "greenbatch_operator_service_max_batch_size{namespace=\"e2e\",name=\"beta\"}",
        "greenbatch_operator_service_replicas{namespace=\"e2e\",name=\"beta\",state=\"desired\"}",
    ] {
        assert!(body.contains(want), "{want} missing in\n{body}");
    }

    let pruned = body
        .lines()
        .find_map(|l| l.strip_prefix("greenbatch_operator_profiles_pruned_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        pruned >= 1.0,
        "stuck's profile counted as pruned in\n{body}"
    );
    // From the spec: there whether or not the service serves.
    let slo = "greenbatch_operator_service_slo_seconds{namespace=\"e2e\",name=\"beta\",percentile=\"95\"} 0.5";
    assert!(body.contains(slo), "{slo} missing in\n{body}");
    greenbatch_tests::tool::assert_promtool_accepts_metrics(&body, "the operator's /metrics");
    // A deleted service leaves no series behind.
    assert!(
        !body.contains("name=\"alpha\""),
        "deleted alpha still has series in\n{body}"
    );
    assert_eq!(
        http_get(addr.port(), "/healthz").await.map(|r| r.0),
        Ok(200)
    );

    // Plots over HTTP, read with the operator's identity (the chart's RBAC): a served service's
    // profile, SLO and choice; reasons, not pictures, where there is nothing to draw.
    let (code, svg) = http_get(addr.port(), "/plots/e2e/gamma")
        .await
        .expect("GET a plot");
    assert_eq!(code, 200, "{svg}");
    assert!(
        svg.starts_with("<svg") && svg.contains("chosen: batch") && svg.contains("SLO 1000 ms"),
        "gamma's plot: {}",
        &svg[..svg.len().min(300)]
    );

    let (code, body) = http_get(addr.port(), "/plots/e2e/broken")
        .await
        .expect("GET a plot");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("e2e/broken"), "{body}");
    let (code, body) = http_get(addr.port(), "/plots/e2e/nothing-here")
        .await
        .expect("GET a plot");
    assert_eq!(
        (code, body.as_str()),
        (404, "no InferenceService e2e/nothing-here")
    );

    let total = operator.metrics.reconciles_total();
    let errors = operator.metrics.errors_total();
    say(&format!(
        "reconciles: total {total}, errors {errors}; per service: beta {}, broken {}, invalid {}; took {:.1}s",
        operator.metrics.reconciles_of("e2e/beta"),
        operator.metrics.reconciles_of("e2e/broken"),
        operator.metrics.reconciles_of("e2e/invalid"),
        t0.elapsed().as_secs_f64()
    ));
    assert_eq!(
        errors, 0,
        "reconciles failed (a missing RBAC rule shows up here); see the log above"
    );

    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), op_task)
        .await
        .expect("the operator stops")
        .expect("join")
        .expect("operator ran cleanly");
    let _ = http_task.await;
    // A graceful stop released the Lease (no holder), so a successor would not wait for expiry.
    let lease = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .get("greenbatch-operator")
        .await
        .expect("the operator's Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "the Lease is released on shutdown"
    );
    watcher_task.abort();
    agent_task.abort();
}
