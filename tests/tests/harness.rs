//! Tests of the harness itself: a real API server starts, identities are what RBAC sees, the
//! controller manager works, and no process outlives its cluster — not on drop, not on a panic, not
//! when the test process is killed.

use greenbatch_tests::rbac::{Grant, bind_service_account};
use greenbatch_tests::{
    ADMIN, Binaries, NOBODY, OPERATOR, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, TestCluster,
    TestClusterOptions, pid_alive,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_until_dead(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn forbidden_message(result: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => status.message.clone(),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn real_apiserver_with_rbac_identities_and_clean_teardown() {
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("cluster starts");
    assert!(
        cluster.version().starts_with("v1."),
        "version {}",
        cluster.version()
    );
    assert_eq!(
        cluster.server_url(),
        format!("https://127.0.0.1:{}", cluster.port())
    );
    let pids = cluster.pids();
    for pid in pids.all() {
        assert!(pid_alive(pid), "pid {pid} of the running cluster");
    }
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", pids.apiserver))
        .expect("apiserver cmdline");
    assert!(cmdline.contains("--authorization-mode=RBAC"), "{cmdline}");

    // The admin is system:masters.
    let admin = cluster.client();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("admin lists namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");

    // The operator's token is its service account as far as RBAC is concerned: nothing at first...
    let operator = cluster.client_as(OPERATOR).await.expect("operator client");
    let sa_user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    assert_eq!(
        cluster.identity(OPERATOR).expect("operator identity").user,
        sa_user
    );
    let config_maps: Api<ConfigMap> = Api::all(operator.clone());
    let msg = forbidden_message(config_maps.list(&ListParams::default()).await);
    assert!(msg.contains(&sa_user), "{msg}");

    // ...then exactly what a ClusterRole bound to the ServiceAccount subject grants (list config maps,
    // not delete them, not read secrets).
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some("harness-test".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    bind_service_account(
        &admin,
        "harness-test",
        Grant::ClusterRole {
            name: "harness-test",
        },
        OPERATOR_NAMESPACE,
        OPERATOR_SERVICE_ACCOUNT,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match config_maps.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the binding to take effect: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("operator still cannot list configmaps: {e}"),
        }
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(operator);
    forbidden_message(secrets.list(&ListParams::default()).await);

    // kubectl runs as any identity and sees the same.
    let can = cluster
        .kubectl_as(OPERATOR, ["auth", "can-i", "list", "configmaps"])
        .await
        .expect("kubectl runs");
    assert!(can.success() && can.stdout.trim() == "yes", "{can}");
    let cannot = cluster
        .kubectl_as(OPERATOR, ["auth", "can-i", "delete", "configmaps"])
        .await
        .expect("kubectl runs");
    assert_eq!(cannot.stdout.trim(), "no", "{cannot}");
    let nobody = cluster
        .kubectl_as(NOBODY, ["get", "namespaces"])
        .await
        .expect("kubectl runs");
    assert!(
        !nobody.success() && nobody.stderr.contains("forbidden"),
        "{nobody}"
    );
    assert!(
        cluster
            .kubectl_as("no-such-identity", ["version"])
            .await
            .is_err()
    );
    let admin_get = cluster
        .kubectl(["get", "namespace", "default", "-o", "name"])
        .await
        .expect("kubectl runs");
    assert_eq!(admin_get.stdout.trim(), "namespace/default", "{admin_get}");
    assert!(cluster.token_as(ADMIN).is_ok_and(|t| t.len() >= 32));

    // Teardown: every process is gone (and reaped) once the cluster is dropped, and so is its dir.
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("kube-apiserver.log").is_file());
    drop(cluster);
    assert_eq!(
        wait_until_dead(&pids.all(), Duration::ZERO),
        Vec::<u32>::new(),
        "processes left after drop"
    );
    assert!(!dir.exists(), "{} left after drop", dir.display());
}

#[tokio::test]
async fn controller_manager_collects_garbage() {
    let cluster = TestCluster::start(TestClusterOptions::default().with_controller_manager())
        .await
        .expect("cluster starts");
    let pids = cluster.pids();
    assert!(pids.controller_manager.is_some());
    cluster.create_namespace("gc").await.expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "gc");
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("owner");
    let owned = ConfigMap {
        metadata: ObjectMeta {
            name: Some("owned".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: owner.metadata.uid.clone().expect("uid"),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &owned)
        .await
        .expect("owned");
    cms.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cms.get_opt("owned").await.expect("get owned").is_some() {
        assert!(
            Instant::now() < deadline,
            "the garbage collector did not delete the owned ConfigMap; kube-controller-manager log:\n{}",
            cluster.controller_manager_log_tail(30).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(cluster);
    assert_eq!(
        wait_until_dead(&pids.all(), Duration::ZERO),
        Vec::<u32>::new(),
        "processes left after drop"
    );
}

#[tokio::test]
async fn the_owner_admission_probe_fails_until_the_server_maps_the_greenbatch_kinds() {
    // What the probe behind `chart::install` must see: with owner-reference enforcement on, an
    // object owned (blockOwnerDeletion) by a kind the server cannot map is refused...
    let options = TestClusterOptions {
        extra_apiserver_args: vec![
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        ],
        ..Default::default()
    };
    let cluster = TestCluster::start(options).await.expect("cluster starts");
    cluster.create_namespace("probe").await.expect("namespace");
    let refused = cluster
        .admits_greenbatch_owners("probe")
        .await
        .expect_err("no greenbatch CRDs yet");
    assert!(
        refused.to_string().contains("cannot find RESTMapping"),
        "{refused}"
    );
    // ...and admitted once the CRDs are established and the server's discovery cache has them
    // (it refreshes every 30 s).
    cluster.apply_crds().await.expect("CRDs");
    cluster
        .wait_until_greenbatch_owners_are_admitted("probe", Duration::from_secs(60))
        .await
        .expect("admitted once mapped");
}

/// A test that panics with a running cluster: Drop kills the servers during unwinding. The panic is
/// caught on the same (still living) thread, so the parent-death signal cannot be what killed them.
#[test]
fn a_panicking_test_leaves_no_processes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let cluster = TestCluster::start(TestClusterOptions::default())
                .await
                .expect("cluster starts");
            tx.send(cluster.pids()).expect("send pids");
            panic!("deliberate panic with a running cluster");
        })
    }));
    assert!(result.is_err(), "the block panicked");
    drop(tx);
    let pids = rx.recv().expect("the cluster started");
    assert_eq!(
        wait_until_dead(&pids.all(), Duration::ZERO),
        Vec::<u32>::new(),
        "processes left after a panic"
    );
}

/// SIGKILL a process that holds a cluster (the `test-cluster` binary): the kernel kills its servers.
#[test]
fn servers_die_with_a_killed_test_process() {
    // Become the subreaper of orphaned descendants, so the servers can be reaped (and their exit
    // inspected) here once their parent is gone.
    // SAFETY: a plain prctl on this process.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        r,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        std::io::Error::last_os_error()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_test-cluster"))
        .args(["--controller-manager"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn test-cluster");
    let stdout = child.stdout.take().expect("stdout");
    let mut pids = Vec::new();
    let mut kubeconfig = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        if let Some(k) = line.strip_prefix("KUBECONFIG=") {
            kubeconfig = Some(k.to_string());
        }
        if let Some(list) = line.strip_prefix("GREENBATCH_TEST_CLUSTER_PIDS=") {
            pids = list
                .split(',')
                .map(|p| p.parse::<u32>().expect("pid"))
                .collect();
            break;
        }
    }
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver and kube-controller-manager"
    );
    let kubeconfig = kubeconfig.expect("KUBECONFIG line");
    assert!(std::path::Path::new(&kubeconfig).is_file());
    // The cluster answers kubectl from outside.
    let kubectl = Binaries::locate()
        .expect("binaries")
        .kubectl
        .expect("kubectl");
    let out = Command::new(kubectl)
        .args(["--kubeconfig", &kubeconfig, "get", "--raw", "/readyz"])
        .output()
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    for pid in &pids {
        assert!(pid_alive(*pid));
    }
    child.kill().expect("SIGKILL the holder");
    child.wait().expect("reap the holder");
    // The orphaned servers were re-parented to this process (a subreaper): reap each and check that
    // the kernel's SIGKILL (PR_SET_PDEATHSIG) is what ended it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending = pids.clone();
    while !pending.is_empty() {
        pending.retain(|&pid| {
            let mut status = 0;
            // SAFETY: waitpid on a pid with WNOHANG; `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if r == pid as libc::pid_t {
                assert!(
                    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
                    "server {pid} ended with wait status {status:#x}, not by SIGKILL"
                );
                false
            } else {
                assert_eq!(r, 0, "waitpid({pid}): {}", std::io::Error::last_os_error());
                true
            }
        });
        assert!(
            Instant::now() < deadline,
            "servers {pending:?} outlived their killed parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A killed holder cannot remove its temp dir: do it here.
    let dir = std::path::Path::new(&kubeconfig)
        .parent()
        .expect("cluster dir");
    assert!(
        dir.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("greenbatch-cluster-")),
        "{}",
        dir.display()
    );
    std::fs::remove_dir_all(dir).expect("remove the killed cluster's dir");
}

#[test]
fn missing_binaries_fail_with_the_setup_hint() {
    // KUBEBUILDER_ASSETS pointing at an empty folder is honoured (and so is an error).
    let empty = tempfile::tempdir().expect("tempdir");
    let err = Binaries::resolve(Some(empty.path()), &|_| None, &Default::default(), None)
        .expect_err("no binaries");
    assert!(err.to_string().contains("setup-test-cluster.sh"), "{err}");
}

fn fake_binary(dir: &std::path::Path, name: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Start-up failures say which process failed and show the end of its log; nothing is left running.
#[tokio::test]
async fn startup_failures_are_explained_and_cleaned_up() {
    let real = Binaries::locate().expect("binaries");
    let dir = tempfile::tempdir().expect("tempdir");

    let crashing = fake_binary(
        dir.path(),
        "crashing-apiserver",
        "echo 'fake apiserver: flag parsing failed' >&2; exit 3",
    );
    let options = TestClusterOptions {
        binaries: Some(Binaries {
            kube_apiserver: crashing,
            ..real.clone()
        }),
        ..Default::default()
    };
    let err = TestCluster::start(options)
        .await
        .expect_err("a crashing apiserver");
    let msg = err.to_string();
    assert!(
        msg.contains("kube-apiserver exited during startup"),
        "{msg}"
    );
    assert!(msg.contains("fake apiserver: flag parsing failed"), "{msg}");

    let pid_file = dir.path().join("hanging.pid");
    let hanging = fake_binary(
        dir.path(),
        "hanging-apiserver",
        &format!(
            "echo $$ > {}; echo 'fake apiserver: waiting forever'; exec sleep 60",
            pid_file.display()
        ),
    );
    let options = TestClusterOptions {
        binaries: Some(Binaries {
            kube_apiserver: hanging,
            ..real
        }),
        startup_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let started = Instant::now();
    let err = TestCluster::start(options)
        .await
        .expect_err("an apiserver that never gets ready");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout was not honoured: {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("kube-apiserver (/readyz) not ready after 2s"),
        "{msg}"
    );
    assert!(msg.contains("fake apiserver: waiting forever"), "{msg}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        !pid_alive(pid),
        "the hanging apiserver {pid} was left running"
    );
}
