//! The apply step: server-side apply with the operator's field manager, forced (the operator
//! owns the fields it sets; a human's `kubectl edit` of them is reverted on the next reconcile),
//! and the status through the `/status` subresource.

use crate::names::{FIELD_MANAGER, JOB_RECORD_FIELD_MANAGER};
use greenbatch_crds::{
    EnergyProfile, InferenceService, InferenceServiceStatus, ProfilingJobRecord,
};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies `obj` (which must carry apiVersion, kind and name) and returns the result.
pub async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    api.patch(name, &params(), &Patch::Apply(obj)).await
}

/// Server-side applies the status of an InferenceService. Fields the operator set before and
/// leaves out now (e.g. `selected` after an invalid edit) are removed, which a merge patch
/// would not do.
pub async fn apply_status(
    api: &Api<InferenceService>,
    name: &str,
    status: &InferenceServiceStatus,
) -> Result<InferenceService, kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "greenbatch.dev/v1alpha1",
        "kind": "InferenceService",
        "status": status,
    });
    api.patch_status(name, &params(), &Patch::Apply(&body))
        .await
}

/// Records on an EnergyProfile how its profiling Job ended (`status.lastJob`, the one status
/// field the operator owns, under its own field manager; the runtime's owns the rest).
pub async fn record_profiling_job(
    api: &Api<EnergyProfile>,
    name: &str,
    record: &ProfilingJobRecord,
) -> Result<EnergyProfile, kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "greenbatch.dev/v1alpha1",
        "kind": "EnergyProfile",
        "status": {"lastJob": record},
    });
    let params = PatchParams::apply(JOB_RECORD_FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(&body)).await
}

/// Creates `obj` unless an object of its name exists; whether it created it. For what is made
/// once and never changed — a profiling Job: two services sharing a profile may both plan its
/// Job in the same moment, each with its own pod settings, and a Job's template is immutable, so
/// the second must leave the first's alone rather than apply over it.
pub async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let params = kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api.create(&params, obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes `name` as it was at `resource_version` (any version when `None`), its dependents
/// first: it stays, being deleted, until its pods are gone, so no pod of it runs once it is. `false`
/// when it is gone already or has changed since (left as it is now).
pub async fn delete_version_foreground<K>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<&str>,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            resource_version: resource_version.map(str::to_string),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes `name` if it exists and the object of uid `owner_uid` controls it — exactly the
/// object read (a uid precondition), not one made since under the same name; pods go with their
/// owner in the background. Whether it deleted it: an object of that name someone else made is
/// left alone.
pub async fn delete_if_controlled_by<K>(
    api: &Api<K>,
    name: &str,
    owner_uid: &str,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(found) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if !crate::observe::controlled_by(found.meta(), owner_uid) {
        tracing::info!(
            object = %name,
            "not deleting an object of this name that another owner controls"
        );
        return Ok(false);
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: found.meta().uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
