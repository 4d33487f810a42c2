//! Starts a throw-away test cluster and keeps it up until Ctrl-C, SIGTERM or end of stdin — for poking
//! at it by hand (`export KUBECONFIG=...` from the output) and for the harness's own tests.
//!
//! `cargo run -p greenbatch-tests --bin test-cluster -- [--controller-manager] [--crds]`
//!
//! Prints `KEY=VALUE` lines on stdout once the cluster is ready: KUBECONFIG (admin),
//! GREENBATCH_OPERATOR_KUBECONFIG, GREENBATCH_TEST_CLUSTER_URL and GREENBATCH_TEST_CLUSTER_PIDS.

use greenbatch_tests::{OPERATOR, TestCluster, TestClusterOptions};
use std::io::Write;
use std::process::ExitCode;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut options = TestClusterOptions::default();
    let mut crds = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--controller-manager" => options.controller_manager = true,
            "--crds" => crds = true,
            "-h" | "--help" => {
                println!("usage: test-cluster [--controller-manager] [--crds]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("test-cluster: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let cluster = match TestCluster::start(options).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("test-cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    if crds && let Err(e) = cluster.apply_crds().await {
        eprintln!("test-cluster: {e}");
        return ExitCode::FAILURE;
    }
    let pids: Vec<String> = cluster.pids().all().iter().map(u32::to_string).collect();
    let operator = cluster
        .kubeconfig_as(OPERATOR)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "KUBECONFIG={}", cluster.kubeconfig().display());
    let _ = writeln!(out, "GREENBATCH_OPERATOR_KUBECONFIG={operator}");
    let _ = writeln!(out, "GREENBATCH_TEST_CLUSTER_URL={}", cluster.server_url());
    let _ = writeln!(out, "GREENBATCH_TEST_CLUSTER_PIDS={}", pids.join(","));
    let _ = out.flush();
    drop(out);

    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("test-cluster: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    let stdin_closed = async {
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = stdin_closed => {}
    }
    drop(cluster);
    // A pending blocking read of stdin would keep the runtime from shutting down: exit here.
    std::process::exit(0)
}
