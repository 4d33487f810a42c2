//! Deletes the EnergyProfiles no InferenceService has used for `--unused-profile-ttl-seconds`:
//! every `prune_interval`, lists the operator's profiles, asks `prune` what to do with the
//! services in the controller's cache, and does it. Runs beside the controller, so only on the
//! leader. Best effort: a failed pass is logged and the next one tries again; nothing here fails
//! a reconcile.

use crate::config::OperatorConfig;
use crate::names::{MANAGED_BY, MANAGED_BY_LABEL, UNUSED_SINCE_ANNOTATION};
use crate::prune::{self, Action, ProfileAction};
use greenbatch_crds::{EnergyProfile, InferenceService};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// The operator's profiles no service uses, left after the pass (waiting out the TTL).
    pub unused: usize,
    pub deleted: usize,
}

/// Prunes every `cfg.prune_interval` until dropped (the controller aborts it when it stops);
/// `done` hears about each pass. Does nothing without `cfg.unused_profile_ttl`.
pub async fn run(
    profiles: Api<EnergyProfile>,
    services: Store<InferenceService>,
    cfg: OperatorConfig,
    recorder: Recorder,
    leading: impl Fn() -> bool + Send + 'static,
    done: impl Fn(Pass) + Send + 'static,
) {
    let Some(ttl) = cfg.unused_profile_ttl else {
        return;
    };
    // A profile is judged unused only against a full cache of services. Re-polled with a
    // timeout: the store's one-shot readiness signal wakes only one waiter reliably, and the
    // controller's runner waits on it too.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), services.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
    tracing::info!(ttl = ?ttl, every = ?cfg.prune_interval, "pruning EnergyProfiles no service uses");
    loop {
        // Leadership is checked before the pass and before each of its writes: a pass under way
        // when the lease is lost makes no more.
        if leading() {
            match pass(&profiles, &services, &cfg, ttl, &recorder, &leading).await {
                Ok(p) => done(p),
                Err(e) => {
                    tracing::warn!(error = %e, "pruning pass failed; trying again next interval")
                }
            }
        }
        tokio::time::sleep(cfg.prune_interval).await;
    }
}

async fn pass(
    api: &Api<EnergyProfile>,
    services: &Store<InferenceService>,
    cfg: &OperatorConfig,
    ttl: Duration,
    recorder: &Recorder,
    leading: &impl Fn() -> bool,
) -> Result<Pass, kube::Error> {
    let listed = api
        .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")))
        .await?
        .items;
    let used = prune::used_profiles(&services.state(), cfg);
    let actions = prune::plan_pruning(&listed, &used, ttl, chrono::Utc::now());
    let unused = listed
        .iter()
        .filter(|p| !used.contains(&(p.namespace().unwrap_or_default(), p.name_any())))
        .count();
    let mut deleted = 0;
    // The cache can lag (a watch reconnecting): before deleting in a namespace, the services
    // there are listed from the API server itself, and a profile one of them uses stays.
    let mut live_used: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for a in actions {
        if !leading() {
            break;
        }
        if matches!(a.action, Action::Delete { .. }) {
            let now_used = match live_used.get(&a.namespace) {
                Some(u) => u,
                None => {
                    let services: Api<InferenceService> =
                        Api::namespaced(api.clone().into_client(), &a.namespace);
                    let listed = services.list(&ListParams::default()).await?.items;
                    live_used
                        .entry(a.namespace.clone())
                        .or_insert(prune::used_profiles(&listed, cfg))
                }
            };
            if now_used.contains(&(a.namespace.clone(), a.name.clone())) {
                tracing::info!(profile = %a.name, namespace = %a.namespace, "used by a service the cache had not seen yet: kept");
                continue;
            }
        }
        let Some(profile) = listed
            .iter()
            .find(|p| p.namespace().as_deref() == Some(&a.namespace) && p.name_any() == a.name)
        else {
            continue;
        };
        let namespaced: Api<EnergyProfile> =
            Api::namespaced(api.clone().into_client(), &a.namespace);
        match act(&namespaced, &a, ttl).await {
            Ok(note) => {
                if matches!(a.action, Action::Delete { .. }) {
                    deleted += 1;
                }
                if let Some((reason, note)) = note {
                    let event = Event {
                        type_: EventType::Normal,
                        reason: reason.into(),
                        note: Some(note),
                        action: "Prune".into(),
                        secondary: None,
                    };
                    if let Err(e) = recorder.publish(&event, &profile.object_ref(&())).await {
                        tracing::warn!(profile = %a.name, error = %e, "could not publish Event");
                    }
                }
            }
            // Changed since it was listed (a service re-profiling it), or gone: next pass.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                tracing::info!(profile = %a.name, namespace = %a.namespace, "changed since listed; looked at again next pass");
            }
            Err(e) => {
                tracing::warn!(profile = %a.name, namespace = %a.namespace, error = %e, "pruning action failed")
            }
        }
    }
    Ok(Pass {
        unused: unused - deleted,
        deleted,
    })
}

/// Does one action; the Event to publish about it, if any.
async fn act(
    api: &Api<EnergyProfile>,
    a: &ProfileAction,
    ttl: Duration,
) -> Result<Option<(&'static str, String)>, kube::Error> {
    // A merge patch, not an apply: an apply of this one annotation under the operator's field
    // manager would drop every other field it owns on the profile (spec, annotations).
    let annotate = |value: serde_json::Value| serde_json::json!({"metadata": {"annotations": {UNUSED_SINCE_ANNOTATION: value}}});
    match &a.action {
        Action::MarkUnused { since } => {
            api.patch(
                &a.name,
                &PatchParams::default(),
                &Patch::Merge(annotate(since.as_str().into())),
            )
            .await?;
            tracing::info!(profile = %a.name, namespace = %a.namespace, "no service uses this profile");
            Ok(Some((
                "Unused",
                format!(
                    "no InferenceService uses this profile since {since}: it is deleted after {} s unless one does",
                    ttl.as_secs()
                ),
            )))
        }
        Action::MarkUsed => {
            api.patch(
                &a.name,
                &PatchParams::default(),
                &Patch::Merge(annotate(serde_json::Value::Null)),
            )
            .await?;
            tracing::info!(profile = %a.name, namespace = %a.namespace, "used again");
            Ok(None)
        }
        Action::Delete {
            since,
            resource_version,
        } => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::background()
            };
            api.delete(&a.name, &params).await?;
            tracing::info!(profile = %a.name, namespace = %a.namespace, unused_since = %since, "deleted an unused profile");
            Ok(Some((
                "Pruned",
                format!(
                    "no InferenceService used this profile since {since} ({} s or more): deleted, with its Jobs",
                    ttl.as_secs()
                ),
            )))
        }
    }
}
