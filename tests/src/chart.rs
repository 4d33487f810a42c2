//! The Helm chart (`charts/greenbatch`) in tests: rendered with `helm template`, installed with
//! `helm install` — the real helm binary, so the tests see what a user's `helm install` does.
//!
//! Installed as release [`RELEASE`] in [`OPERATOR_NAMESPACE`], the chart's service account is
//! [`OPERATOR_SERVICE_ACCOUNT`](crate::cluster::OPERATOR_SERVICE_ACCOUNT): the identity
//! [`Identity::operator`](crate::Identity::operator) authenticates as, so an operator run with
//! that identity has exactly the chart's RBAC.

use crate::binaries::Binaries;
use crate::cluster::{OPERATOR_NAMESPACE, TestCluster};
use crate::error::{HarnessError, IoContext, Result};
use crate::tool::{CommandOutput, run_tool};
use crate::workspace::workspace_root;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The release name the tests install under: the chart then names the operator's objects
/// `greenbatch-operator` (see `greenbatch.fullname` in the chart's `_helpers.tpl`).
pub const RELEASE: &str = "greenbatch";

const HELM_TIMEOUT: Duration = Duration::from_secs(120);

pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/greenbatch")
}

/// Writes `values` (JSON, which Helm reads as YAML) to a fresh file in `dir`, for `helm -f`.
fn values_file(dir: &Path, values: &serde_json::Value) -> Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = dir.join(format!(
        "values-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let text = serde_json::to_string_pretty(values).map_err(|e| HarnessError::Io {
        context: "serializing chart values".into(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs helm without a cluster (lint, template), with its cache and config in a scratch dir; `args`
/// get the path of `values` written to a file. The outcome is returned as is (a values error is an
/// unsuccessful output, not an `Err`).
async fn helm_offline(
    args: impl FnOnce(PathBuf) -> Vec<OsString>,
    values: &serde_json::Value,
) -> Result<CommandOutput> {
    let binaries = Binaries::locate()?;
    let helm = binaries.require_helm()?;
    let scratch = tempfile::tempdir().context(|| "a temp dir for helm".to_string())?;
    let file = values_file(scratch.path(), values)?;
    let home = scratch.path().join("helm");
    let envs = [
        ("HELM_CACHE_HOME", home.join("cache")),
        ("HELM_CONFIG_HOME", home.join("config")),
        ("HELM_DATA_HOME", home.join("data")),
    ];
    run_tool(helm, &args(file), &envs, None, HELM_TIMEOUT).await
}

/// `helm <verb> <release> <chart> --namespace OPERATOR_NAMESPACE --values <file> [extra...]`.
fn release_args(
    verb: &str,
    release: &str,
    chart: &Path,
    values_file: PathBuf,
    extra: &[&str],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        verb.into(),
        release.into(),
        chart.into(),
        "--namespace".into(),
        OPERATOR_NAMESPACE.into(),
        "--values".into(),
        values_file.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// `helm template RELEASE charts/greenbatch -n OPERATOR_NAMESPACE -f values [extra...]`.
pub async fn template(values: &serde_json::Value, extra: &[&str]) -> Result<CommandOutput> {
    template_release(RELEASE, values, extra).await
}

/// [`template`] under another release name.
pub async fn template_release(
    release: &str,
    values: &serde_json::Value,
    extra: &[&str],
) -> Result<CommandOutput> {
    helm_offline(
        |file| release_args("template", release, &chart_dir(), file, extra),
        values,
    )
    .await
}

/// [`template`] of another copy of the chart (an older version, other defaults).
pub async fn template_chart(
    chart: &Path,
    values: &serde_json::Value,
    extra: &[&str],
) -> Result<CommandOutput> {
    helm_offline(
        |file| release_args("template", RELEASE, chart, file, extra),
        values,
    )
    .await
}

/// `helm lint --strict charts/greenbatch -f values`.
pub async fn lint(values: &serde_json::Value) -> Result<CommandOutput> {
    helm_offline(
        |file| {
            vec![
                "lint".into(),
                "--strict".into(),
                chart_dir().into(),
                "--values".into(),
                file.into(),
            ]
        },
        values,
    )
    .await
}

/// The documents of a rendered chart, as JSON values (empty documents dropped). Parsed as YAML
/// first, which refuses a key given twice in one mapping (JSON keeps the last one silently, and so
/// would a test), as strict consumers of the output — kustomize, yq — do.
pub fn documents(rendered: &str) -> Result<Vec<serde_json::Value>> {
    let invalid = |e: String| HarnessError::Io {
        context: "parsing the rendered chart".into(),
        source: std::io::Error::other(e),
    };
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let yaml: serde_yaml::Value =
            serde::Deserialize::deserialize(doc).map_err(|e| invalid(e.to_string()))?;
        let value = serde_json::to_value(&yaml).map_err(|e| invalid(e.to_string()))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// `helm <verb> RELEASE charts/greenbatch -n OPERATOR_NAMESPACE -f values [extra...]` against the
/// cluster, as its admin (`verb`: install or upgrade). Fails unless helm exits 0.
pub async fn apply(
    cluster: &TestCluster,
    verb: &str,
    values: &serde_json::Value,
    extra: &[&str],
) -> Result<CommandOutput> {
    apply_chart(cluster, verb, &chart_dir(), values, extra).await
}

/// [`apply`] with another copy of the chart (e.g. an older version of it).
pub async fn apply_chart(
    cluster: &TestCluster,
    verb: &str,
    chart: &Path,
    values: &serde_json::Value,
    extra: &[&str],
) -> Result<CommandOutput> {
    let file = values_file(cluster.dir(), values)?;
    cluster
        .helm(release_args(verb, RELEASE, chart, file, extra))
        .await?
        .ok()
}

/// Installs the chart as [`RELEASE`] in [`OPERATOR_NAMESPACE`] (which must exist) with `values`,
/// and when it installs the CRDs, waits until the API server admits objects they own
/// ([`TestCluster::wait_until_greenbatch_owners_are_admitted`]).
pub async fn install(cluster: &TestCluster, values: &serde_json::Value) -> Result<CommandOutput> {
    let out = apply(cluster, "install", values, &[]).await?;
    if values["crds"]["install"] != serde_json::Value::Bool(false) {
        let started = std::time::Instant::now();
        cluster
            .wait_until_greenbatch_owners_are_admitted(OPERATOR_NAMESPACE, Duration::from_secs(60))
            .await?;
        let waited = started.elapsed();
        if waited > Duration::from_secs(1) {
            eprintln!(
                "[chart] the API server admitted objects owned by greenbatch kinds {:.1} s after helm install",
                waited.as_secs_f64()
            );
        }
    }
    Ok(out)
}

/// `helm uninstall RELEASE -n OPERATOR_NAMESPACE`, as the cluster's admin. Fails unless helm exits 0.
pub async fn uninstall(cluster: &TestCluster) -> Result<CommandOutput> {
    cluster
        .helm(["uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE])
        .await?
        .ok()
}

/// The PromQL of the chart's Grafana dashboard, `dashboards/greenbatch.json`: every panel's queries
/// (`expr`) and the variables' `query_result(…)` queries.
pub fn dashboard_queries() -> Vec<String> {
    let path = chart_dir().join("dashboards/greenbatch.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from));
    // The variables' `query_result(<PromQL>)` lists hold PromQL too.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["query"]["query"].as_str())
        .filter_map(|q| q.strip_prefix("query_result(")?.strip_suffix(')'))
        .map(String::from)
        .collect::<Vec<_>>();
    panels.chain(variables).collect()
}

/// The label the PodMonitor gives serving series (the pod label `greenbatch.dev/inference-service`).
pub const SERVICE_SERIES_LABEL: &str = "greenbatch_dev_inference_service";

/// The greenbatch series a query reads (`greenbatch_…` names, the service label excepted).
pub fn series_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(i) = rest.find("greenbatch_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        if name != SERVICE_SERIES_LABEL {
            names.push(name);
        }
    }
    names
}

/// `kubernetes-validate --strict -k <kubernetes_version>` on `manifests` (the API schemas of a
/// newer Kubernetes than the test cluster's 1.20): `Ok(None)` when the validator is not installed
/// (`scripts/setup-test-cluster.sh` installs it).
pub async fn validate_schemas(
    manifests: &str,
    kubernetes_version: &str,
) -> Result<Option<CommandOutput>> {
    let binaries = Binaries::locate()?;
    let Some(tool) = binaries.kubernetes_validate.as_deref() else {
        return Ok(None);
    };
    let scratch = tempfile::tempdir().context(|| "a temp dir for the manifests".to_string())?;
    let file = scratch.path().join("manifests.yaml");
    std::fs::write(&file, manifests).context(|| format!("writing {}", file.display()))?;
    let args: Vec<OsString> = vec![
        "--strict".into(),
        "--quiet".into(),
        "--kubernetes-version".into(),
        kubernetes_version.into(),
        file.into(),
    ];
    run_tool(tool, &args, &[], None, HELM_TIMEOUT)
        .await
        .map(Some)
}
