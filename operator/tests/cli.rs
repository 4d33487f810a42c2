//! The `greenbatch-operator` binary's command line, as a Deployment (the Helm chart's) runs it:
//! bad flags are usage errors naming the flag (exit 2), and start-up problems — no credentials,
//! inconsistent lease timings — end the process with a message instead of a crash loop of panics.
//! The chart's own flags are checked against this binary in `tests/tests/chart.rs`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_greenbatch-operator");

/// Runs the operator with `args` and the environment given (nothing inherited but PATH), killing
/// it after 30 s: every case here must end on its own long before.
fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the operator binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("greenbatch-operator {args:?} still runs after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_names_the_binary_and_its_version() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("greenbatch-operator {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--target-utilisation=0"], "--target-utilisation"),
        (&["--target-utilisation=1.5"], "--target-utilisation"),
        (&["--model-ca-configmap=Corp_CA"], "--model-ca-configmap"),
        (
            &["--observe-interval-seconds=0"],
            "--observe-interval-seconds",
        ),
        (
            &["--observe-interval-seconds=3601"],
            "--observe-interval-seconds",
        ),
        (&["--listen=nowhere"], "--listen"),
        (&["--log-format=xml"], "--log-format"),
        (&["--concurrency=-1"], "--concurrency"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, flag) in cases {
        let out = run(args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag),
            "{args:?}: the message names {flag}: {err}"
        );
    }
}

#[test]
fn without_credentials_it_exits_saying_so() {
    let home = tempfile::tempdir().expect("temp dir");
    let missing = home.path().join("no-such-kubeconfig");
    let out = run(&[], &[("HOME", home.path()), ("KUBECONFIG", &missing)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no Kubernetes credentials"), "{err}");
}

#[test]
fn inconsistent_lease_timings_are_refused_at_start() {
    // A kubeconfig for a server that is never contacted: the lease settings are checked first.
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: ops}}]\n\
         current-context: x\n",
    )
    .expect("write kubeconfig");
    let out = run(
        &[
            "--lease-duration-seconds=5",
            "--lease-renew-deadline-seconds=10",
        ],
        &[("HOME", dir.path()), ("KUBECONFIG", &kubeconfig)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("renew deadline"), "{err}");
}
