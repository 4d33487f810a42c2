//! The `greenbatch-operator` binary's command line, as a Deployment (the Helm chart's) runs it:
//! bad flags are usage errors naming the flag (exit 2), and start-up problems — no credentials,
//! inconsistent lease timings, missing CRDs — end the process with a message instead of a crash
//! loop of panics, after waiting out an API server that fails for a while.
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
        (&["--job-ttl-seconds=0"], "--job-ttl-seconds"),
        (&["--job-ttl-seconds=299"], "--job-ttl-seconds"),
        (&["--job-ttl-seconds=forever"], "--job-ttl-seconds"),
        (&["--max-profiling-jobs=0"], "--max-profiling-jobs"),
        (&["--max-profiling-jobs=all"], "--max-profiling-jobs"),
        (
            &["--unused-profile-ttl-seconds=60"],
            "--unused-profile-ttl-seconds",
        ),
        (
            &["--unused-profile-ttl-seconds=keep"],
            "--unused-profile-ttl-seconds",
        ),
        (
            &["--unused-profile-ttl-seconds=315360001"],
            "--unused-profile-ttl-seconds",
        ),
        (&["--runtime-pod-defaults={"], "--runtime-pod-defaults"),
        (
            &[r#"--runtime-pod-defaults={"nodeselector": {"pool": "a"}}"#],
            "--runtime-pod-defaults",
        ),
        (
            &[r#"--runtime-pod-defaults={"tolerations": [{"operator": "Equal"}]}"#],
            "--runtime-pod-defaults",
        ),
        (
            &[r#"--runtime-pod-defaults={"nodeSelector": {"nvidia.com/gpu.product": "H100"}}"#],
            "--runtime-pod-defaults",
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

#[test]
fn at_start_it_waits_out_an_api_server_that_fails_then_reports_missing_crds() {
    use std::io::{BufRead, BufReader, Write};
    // A stand-in API server on loopback: its first answers are 500 (failing: kube's client
    // retries 503s itself, the operator the rest), then 404 for the greenbatch API group (no CRDs
    // installed).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    let server = std::thread::spawn(move || {
        let mut paths = Vec::new();
        for (i, stream) in listener.incoming().take(3).enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            // Read the headers to their end.
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            paths.push(
                request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string(),
            );
            let (code, text) = if i < 2 {
                (500, "Internal Server Error")
            } else {
                (404, "Not Found")
            };
            let body = format!(
                "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"{text}\",\"reason\":\"{text}\",\"code\":{code}}}"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 {code} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        paths
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://{addr}'}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u, namespace: ops}}}}]\n\
             current-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    let started = Instant::now();
    let out = run(
        &["--disable-leader-election", "--listen=127.0.0.1:0"],
        &[("HOME", dir.path()), ("KUBECONFIG", &kubeconfig)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("greenbatch CRDs are not installed"), "{err}");
    assert!(
        err.matches("trying again").count() == 2,
        "two failures waited out: {err}"
    );
    // 1 s, then 2 s between the tries.
    assert!(started.elapsed() >= Duration::from_secs(3), "{err}");
    let paths = server.join().expect("server thread");
    assert!(
        paths.iter().all(|p| p == "/apis/greenbatch.dev/v1alpha1"),
        "{paths:?}"
    );
}
