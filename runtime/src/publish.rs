//! Writing a profile into the cluster: server-side apply of the EnergyProfile's status (idempotent:
//! the same result applied twice changes nothing), retrying transient API errors.

use crate::error::{Result, RuntimeError};
use greenbatch_crds::{EnergyProfile, EnergyProfileStatus};
use kube::api::{Api, Patch, PatchParams};
use std::time::Duration;

const FIELD_MANAGER: &str = "greenbatch-runtime";
const ATTEMPTS: u32 = 6;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Cluster(format!("cannot start the async runtime: {e}")))
}

async fn api(namespace: Option<&str>) -> Result<Api<EnergyProfile>> {
    let client = kube::Client::try_default().await.map_err(|e| {
        RuntimeError::Cluster(format!(
            "no Kubernetes credentials (in-cluster or kubeconfig): {e}"
        ))
    })?;
    Ok(match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    })
}

/// Errors worth retrying: the server or the network, not our request.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "{what}: transient API error, retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(RuntimeError::Cluster(format!("{what}: {e}"))),
        }
    }
    unreachable!("the last attempt returns")
}

/// Checks, before measuring, that the EnergyProfile exists and is readable; returns the status it
/// has (a re-profile finds the table it is measuring again).
pub fn preflight(name: &str, namespace: Option<&str>) -> Result<Option<EnergyProfileStatus>> {
    runtime()?.block_on(async {
        let api = api(namespace).await?;
        with_retries(&format!("get energyprofile {name}"), || api.get(name))
            .await
            .map(|p| p.status)
    })
}

pub fn write_status(
    name: &str,
    namespace: Option<&str>,
    status: &EnergyProfileStatus,
) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "greenbatch.dev/v1alpha1",
        "kind": "EnergyProfile",
        "status": status,
    });
    runtime()?.block_on(async {
        let api = api(namespace).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&body);
        with_retries(&format!("write status of energyprofile {name}"), || {
            api.patch_status(name, &params, &patch)
        })
        .await
        .map(|_| ())
    })
}
