//! Test harness of greenbatch: a real Kubernetes API server per test.
//!
//! [`TestCluster::start`] runs a fresh etcd and kube-apiserver (v1.20 as built by
//! `scripts/setup-test-cluster.sh`, or whatever `KUBEBUILDER_ASSETS` holds), optionally
//! kube-controller-manager, on free loopback ports with their own temp dir, PKI (made with `openssl`),
//! static tokens and `--authorization-mode=RBAC`. It hands out `kube::Client`s and kubeconfigs for the
//! admin and for other identities (the operator's service account, an unprivileged user), runs kubectl
//! and helm against the cluster, applies the greenbatch CRDs, and kills every process it started when it
//! is dropped — also when the test panics — and, through `PR_SET_PDEATHSIG`, when the test process dies.
//!
//! ```no_run
//! # async fn example() -> Result<(), greenbatch_tests::HarnessError> {
//! use greenbatch_tests::{TestCluster, TestClusterOptions};
//! let cluster = TestCluster::start(TestClusterOptions::default()).await?;
//! cluster.apply_crds().await?;
//! let out = cluster.kubectl(["get", "crds"]).await?.ok()?;
//! assert!(out.stdout.contains("inferenceservices.greenbatch.dev"));
//! # Ok(()) }
//! ```

pub mod binaries;
pub mod chart;
pub mod cluster;
pub mod error;
pub mod http;
pub mod imports;
pub mod pki;
pub mod process;
pub mod rbac;
pub mod s3_store;
pub mod tool;
pub mod wait;
pub mod workspace;

pub use binaries::Binaries;
pub use cluster::{
    ADMIN, ClusterPids, FIELD_MANAGER, Identity, KEEP_ENV, NOBODY, OPERATOR, OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT, TestCluster, TestClusterOptions,
};
pub use error::{HarnessError, Result};
pub use process::pid_alive;
pub use tool::CommandOutput;
pub use wait::wait_for;
pub use workspace::{built_binary, workspace_root};
