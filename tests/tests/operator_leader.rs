//! Leader election against a real kube-apiserver 1.20: several operator instances, each under the
//! operator's service-account identity with exactly the RBAC of the Helm chart (installed by the
//! test: the ClusterRole and the leader-election Role), share one Lease. Only the holder reconciles; a
//! graceful stop hands over at once (the Lease is released); a killed holder is replaced once its
//! Lease expires; a holder whose Lease is taken from it stops with `LeadershipLost`.
//!
//! Each instance runs on its own thread and tokio runtime, so "kill" can drop that runtime with
//! every task in it (controller included) and nothing is released — as when a pod dies.
//! No kube-controller-manager is needed: an invalid InferenceService is decided by the operator
//! alone (phase Failed, `Ready=False/InvalidSpec`), which is the "did it reconcile" probe.

use greenbatch_crds::{InferenceService, Phase};
use greenbatch_operator::controller::{Operator, Role, Scope, Settings};
use greenbatch_operator::leader::{self, LeaseSettings};
use greenbatch_operator::{OperatorConfig, OperatorError};
use greenbatch_tests::{
    OPERATOR, OPERATOR_NAMESPACE, TestCluster, TestClusterOptions, chart, wait_for,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "leader";
const LEASE: &str = "greenbatch-operator";
/// Short, so that expiry is observable in a test: lease 3 s, renew every 0.5 s, give up after 2 s.
const LEASE_DURATION: Duration = Duration::from_secs(3);
const RENEW_INTERVAL: Duration = Duration::from_millis(500);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "[operator-leader] {line}");
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("greenbatch_operator::leader=info,kube=warn")
            }),
        )
        .with_test_writer()
        .try_init();
}

/// A cluster with the namespaces and the Helm chart installed (CRDs, the operator's RBAC).
async fn cluster() -> TestCluster {
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("cluster starts");
    cluster.create_namespace(NS).await.expect("namespace");
    cluster
        .create_namespace(OPERATOR_NAMESPACE)
        .await
        .expect("operator namespace");
    // The chart's service account and RBAC; no operator replica of its own (the test runs them).
    let values = serde_json::json!({"replicaCount": 0, "leaderElection": {"leaseName": LEASE}});
    if let Err(e) = chart::install(&cluster, &values).await {
        panic!("helm install: {e}");
    }
    cluster
}

async fn client_from(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// One operator replica on its own thread and runtime.
struct Instance {
    id: String,
    operator: Arc<Operator>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    /// `None` from the thread: killed.
    thread: Option<std::thread::JoinHandle<Option<Result<(), OperatorError>>>>,
}

impl Instance {
    fn start(kubeconfig: &Path, id: &str) -> Instance {
        let operator = Arc::new(Operator::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let (op, kubeconfig, identity): (_, PathBuf, String) =
            (operator.clone(), kubeconfig.into(), id.into());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime per instance");
            let out = rt.block_on(async move {
                // The client (and its connection tasks) lives on this runtime, so a kill drops it.
                let client = client_from(&kubeconfig).await;
                let settings = Settings {
                    config: OperatorConfig::default(),
                    scope: Scope::Namespace(NS.into()),
                    concurrency: 2,
                    instance: Some(identity.clone()),
                };
                let lease = LeaseSettings {
                    name: LEASE.into(),
                    namespace: OPERATOR_NAMESPACE.into(),
                    identity,
                    lease_duration: LEASE_DURATION,
                    renew_interval: RENEW_INTERVAL,
                    renew_deadline: RENEW_DEADLINE,
                };
                let run = leader::run_elected(op, client, settings, lease, async move {
                    let _ = stop_rx.await;
                });
                tokio::select! {
                    r = run => Some(r),
                    _ = kill_rx => None,
                }
            });
            // Cancels every task of this instance, the controller and lease renewal included.
            rt.shutdown_background();
            out
        });
        Instance {
            id: id.into(),
            operator,
            stop: Some(stop_tx),
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    fn leading(&self) -> bool {
        self.operator.role() == Role::Leader
    }

    /// The status is written inside a reconcile, before the reconcile is counted: a test that saw
    /// the status waits for the count rather than reading it at once.
    async fn counted_a_reconcile_of(&self, name: &str) {
        wait_for(
            &format!("a counted reconcile of {name}"),
            Duration::from_secs(5),
            || async {
                let n = self.reconciles_of(name);
                (n >= 1).then_some(()).ok_or(format!("{n} reconciles"))
            },
        )
        .await;
    }

    fn reconciles_of(&self, name: &str) -> u64 {
        self.operator.metrics.reconciles_of(&format!("{NS}/{name}"))
    }

    /// Waits (off the async runtime) for the instance's thread to end.
    async fn join(&mut self) -> Option<Result<(), OperatorError>> {
        let thread = self.thread.take().expect("joined once");
        tokio::task::spawn_blocking(move || thread.join().expect("instance thread"))
            .await
            .expect("join")
    }

    async fn stop_gracefully(&mut self) -> Result<(), OperatorError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.join().await.expect("stopped, not killed")
    }

    async fn kill(&mut self) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(());
        }
        assert!(self.join().await.is_none(), "{} was killed", self.id);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // A failing test must not leave an operator running into the next one.
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(());
        }
    }
}

fn invalid_service(name: &str) -> InferenceService {
    // Schema-valid, rejected by validation: fixed mode without a batch size.
    serde_json::from_value(serde_json::json!({
        "apiVersion": "greenbatch.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"source": {"uri": "file:///models/m.pt"}, "input": {"shape": [3, 16, 16]}},
            "slo": {"latencyMs": 1000, "percentile": 99},
            "batching": {"mode": "fixed", "candidates": [1, 2]},
            "gpu": {"count": 0},
            "replicas": {"min": 1, "max": 1},
        },
    }))
    .expect("a well-formed InferenceService")
}

/// Creates an invalid service and waits for its InvalidSpec condition.
async fn reconciled_invalid(admin: &Client, name: &str) {
    let services: Api<InferenceService> = Api::namespaced(admin.clone(), NS);
    services
        .create(&PostParams::default(), &invalid_service(name))
        .await
        .expect("create");
    wait_for(
        &format!("{name} to get InvalidSpec"),
        Duration::from_secs(30),
        || async {
            let is = services.get(name).await.map_err(|e| e.to_string())?;
            let st = is.status.unwrap_or_default();
            let invalid = st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "InvalidSpec");
            if st.phase == Some(Phase::Failed) && invalid {
                Ok(())
            } else {
                Err(format!("{:?} {:?}", st.phase, st.conditions))
            }
        },
    )
    .await;
}

async fn holder(admin: &Client) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .get_opt(LEASE)
        .await
        .expect("read the Lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Waits until exactly one of `instances` leads; returns its index.
async fn one_leader(instances: &[&Instance], timeout: Duration) -> usize {
    wait_for("exactly one leader", timeout, || async {
        let leading: Vec<usize> = (0..instances.len())
            .filter(|i| instances[*i].leading())
            .collect();
        match leading.as_slice() {
            [one] => Ok(*one),
            other => Err(format!("leading: {other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_reconciles_and_hands_over_on_graceful_stop() {
    init_logs();
    let t0 = Instant::now();
    let cluster = cluster().await;
    let admin = cluster.client();
    let kubeconfig = cluster
        .kubeconfig_as(OPERATOR)
        .expect("operator kubeconfig");
    let a = Instance::start(kubeconfig, "op-a");
    let b = Instance::start(kubeconfig, "op-b");
    let (mut leader, mut standby) = match one_leader(&[&a, &b], Duration::from_secs(20)).await {
        0 => (a, b),
        _ => (b, a),
    };
    say(&format!("{} leads, {} stands by", leader.id, standby.id));
    wait_for(
        "the standby to see the holder",
        Duration::from_secs(5),
        || async {
            match standby.operator.role() {
                Role::Standby { holder: Some(h) } if h == leader.id => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(holder(&admin).await.as_deref(), Some(leader.id.as_str()));
    // Readiness: the leader once its cache is synced; the standby while it reads the Lease.
    wait_for(
        "the leader to be ready",
        Duration::from_secs(20),
        || async {
            leader
                .operator
                .is_ready()
                .then_some(())
                .ok_or("not ready".to_string())
        },
    )
    .await;
    assert!(standby.operator.is_ready(), "a healthy standby is ready");
    assert!(
        leader
            .operator
            .metrics
            .encode()
            .contains("greenbatch_operator_leader 1")
    );
    assert!(
        standby
            .operator
            .metrics
            .encode()
            .contains("greenbatch_operator_leader 0")
    );

    // Only the leader reconciles (and writes the status).
    reconciled_invalid(&admin, "invalid-1").await;
    // A moment for a (wrong) second reconciler to show itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(leader.reconciles_of("invalid-1") >= 1);
    assert_eq!(
        standby.reconciles_of("invalid-1"),
        0,
        "the standby reconciled"
    );
    assert_eq!(standby.operator.metrics.reconciles_total(), 0);
    assert!(!standby.leading());

    // A graceful stop releases the Lease: the standby takes over well before the Lease would
    // have expired (3 s): within about one retry interval (0.5 s).
    let stopping = Instant::now();
    leader
        .stop_gracefully()
        .await
        .expect("the leader stops cleanly");
    let released_after = stopping.elapsed();
    wait_for(
        "the standby to take over",
        Duration::from_secs(10),
        || async {
            standby
                .leading()
                .then_some(())
                .ok_or(format!("{:?}", standby.operator.role()))
        },
    )
    .await;
    let handover = stopping.elapsed();
    say(&format!(
        "graceful handover: leader stopped in {released_after:?}, {} leads after {handover:?}",
        standby.id
    ));
    assert!(
        handover < LEASE_DURATION,
        "handover took {handover:?}: the Lease was not released"
    );
    assert_eq!(holder(&admin).await.as_deref(), Some(standby.id.as_str()));
    let transitions = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .get(LEASE)
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.lease_transitions);
    assert_eq!(transitions, Some(1), "one takeover since creation");

    // The new leader reconciles new work.
    reconciled_invalid(&admin, "invalid-2").await;
    standby.counted_a_reconcile_of("invalid-2").await;
    assert_eq!(standby.operator.metrics.errors_total(), 0);
    standby.stop_gracefully().await.expect("clean stop");
    assert_eq!(holder(&admin).await, None, "released on shutdown");
    say(&format!("took {:.1}s", t0.elapsed().as_secs_f64()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_after_lease_expiry() {
    init_logs();
    let t0 = Instant::now();
    let cluster = cluster().await;
    let admin = cluster.client();
    let kubeconfig = cluster
        .kubeconfig_as(OPERATOR)
        .expect("operator kubeconfig");
    // `a` first, alone, so that it is the leader; then `b`.
    let mut a = Instance::start(kubeconfig, "op-a");
    wait_for("op-a to lead", Duration::from_secs(20), || async {
        a.leading().then_some(()).ok_or("not yet".to_string())
    })
    .await;
    let mut b = Instance::start(kubeconfig, "op-b");
    wait_for("op-b to stand by", Duration::from_secs(10), || async {
        match b.operator.role() {
            Role::Standby { holder: Some(h) } if h == "op-a" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    reconciled_invalid(&admin, "invalid-1").await;
    assert_eq!(b.reconciles_of("invalid-1"), 0);

    // Kill: nothing renews, nothing releases. `b` must wait out the Lease, then take over.
    let killed = Instant::now();
    a.kill().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.leading(), "took over a live-looking Lease");
    assert_eq!(
        holder(&admin).await.as_deref(),
        Some("op-a"),
        "not released"
    );
    wait_for("op-b to take over", Duration::from_secs(15), || async {
        b.leading()
            .then_some(())
            .ok_or(format!("{:?}", b.operator.role()))
    })
    .await;
    let took = killed.elapsed();
    say(&format!("op-b leads {took:?} after op-a was killed"));
    // op-a renewed at most one interval before the kill; op-b checks every interval.
    assert!(
        took >= LEASE_DURATION - RENEW_INTERVAL - Duration::from_millis(100),
        "took over after {took:?}, before the Lease expired"
    );
    assert!(
        took <= LEASE_DURATION + 3 * RENEW_INTERVAL + Duration::from_secs(1),
        "took over only after {took:?}"
    );
    reconciled_invalid(&admin, "invalid-2").await;
    b.counted_a_reconcile_of("invalid-2").await;

    // A leader whose Lease is taken from it (here: written over by someone else) stops and
    // reports LeadershipLost, so that its process exits and restarts as a standby.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    wait_for(
        "the Lease written over",
        Duration::from_secs(10),
        || async {
            // Races op-b's renewals: a 409 Conflict is retried with a fresh read.
            let mut lease = leases.get(LEASE).await.map_err(|e| e.to_string())?;
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = Some("intruder".into());
                spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
                spec.lease_duration_seconds = Some(60);
            }
            leases
                .replace(LEASE, &PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let lost = tokio::time::timeout(Duration::from_secs(10), b.join())
        .await
        .expect("op-b stops after losing the Lease")
        .expect("not killed");
    match lost {
        Err(OperatorError::LeadershipLost { reason, .. }) => say(&format!("op-b: {reason}")),
        other => panic!("expected LeadershipLost, got {other:?}"),
    }
    assert_eq!(
        holder(&admin).await.as_deref(),
        Some("intruder"),
        "not released by the loser"
    );
    say(&format!("took {:.1}s", t0.elapsed().as_secs_f64()));
}
