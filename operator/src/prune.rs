//! Which EnergyProfiles no service uses any more, and which of them to delete. Pure: the pruner
//! (`pruner`) lists the profiles and hands the cached services in; the time comes in as an
//! argument.
//!
//! A profile is **used** by a service of its namespace that names it in `status.profileRef` (the
//! profile of its current key) or `status.selected.profile` (the one its running configuration
//! was chosen from: while a new key is measured, the older one), or whose spec keys to it now. An
//! unused profile made by the operator is stamped with when it was first seen unused
//! ([`UNUSED_SINCE_ANNOTATION`]); used again, the stamp goes; unused for the whole TTL, the profile
//! is deleted (its Jobs go with it). Profiles the operator did not make (applied by hand, written
//! with `greenbatch-runtime profile --output`) are never touched.

use crate::config::OperatorConfig;
use crate::names::{MANAGED_BY, MANAGED_BY_LABEL, UNUSED_SINCE_ANNOTATION};
use crate::plan;
use chrono::{DateTime, Utc};
use greenbatch_crds::{EnergyProfile, InferenceService};
use std::collections::BTreeSet;
use std::time::Duration;

/// One thing to do to one profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// No service uses it: stamp it with `since` (now).
    MarkUnused { since: String },
    /// A service uses it again: remove the stamp.
    MarkUsed,
    /// Unused since `since`, longer than the TTL: delete it (only at `resource_version`, so a
    /// profile touched since it was read — a service re-profiling it — stays).
    Delete {
        since: String,
        resource_version: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileAction {
    pub namespace: String,
    pub name: String,
    pub action: Action,
}

/// (namespace, profile name) of every profile some service uses.
pub fn used_profiles<S: std::borrow::Borrow<InferenceService>>(
    services: &[S],
    cfg: &OperatorConfig,
) -> BTreeSet<(String, String)> {
    let mut used = BTreeSet::new();
    for is in services.iter().map(std::borrow::Borrow::borrow) {
        let Some(namespace) = is.metadata.namespace.clone() else {
            continue;
        };
        let status = is.status.as_ref();
        let referenced = status.and_then(|s| s.profile_ref.clone());
        let serving = status
            .and_then(|s| s.selected.as_ref())
            .and_then(|s| s.profile.clone());
        for name in referenced
            .into_iter()
            .chain(serving)
            .chain(plan::profile_name(is, cfg))
        {
            used.insert((namespace.clone(), name));
        }
    }
    used
}

fn managed(profile: &EnergyProfile) -> bool {
    profile
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// What to do to `profiles` given the profiles in use, `ttl` and `now`.
pub fn plan_pruning(
    profiles: &[EnergyProfile],
    used: &BTreeSet<(String, String)>,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Vec<ProfileAction> {
    let mut actions = Vec::new();
    for p in profiles.iter().filter(|p| managed(p)) {
        let (Some(namespace), Some(name)) = (&p.metadata.namespace, &p.metadata.name) else {
            continue;
        };
        // A profile being deleted already: nothing to do.
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let stamp = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(UNUSED_SINCE_ANNOTATION));
        let is_used = used.contains(&(namespace.clone(), name.clone()));
        let action = match (is_used, stamp) {
            (true, Some(_)) => Some(Action::MarkUsed),
            (true, None) => None,
            (false, None) => Some(Action::MarkUnused {
                since: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            (false, Some(since)) => match DateTime::parse_from_rfc3339(since) {
                Ok(t) => {
                    let unused_for = now.signed_duration_since(t.with_timezone(&Utc));
                    let expired = unused_for.to_std().is_ok_and(|d| d >= ttl);
                    expired.then(|| Action::Delete {
                        since: since.clone(),
                        resource_version: p.metadata.resource_version.clone(),
                    })
                }
                // Edited into something else: start the count again rather than guess.
                Err(_) => Some(Action::MarkUnused {
                    since: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                }),
            },
        };
        if let Some(action) = action {
            actions.push(ProfileAction {
                namespace: namespace.clone(),
                name: name.clone(),
                action,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::service;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const NOW: &str = "2026-11-27T12:00:00Z";

    fn now() -> DateTime<Utc> {
        NOW.parse().unwrap()
    }

    fn profile(ns: &str, name: &str, managed: bool, since: Option<&str>) -> EnergyProfile {
        let mut p = EnergyProfile::new(
            name,
            serde_json::from_value(serde_json::json!({
                "modelName": "m", "modelDigest": "d", "gpuProduct": "cpu", "runtimeVersion": "1",
                "model": {"source": {"builtin": "resnet18"}, "input": {"shape": [3, 8, 8]}},
                "candidates": [1],
            }))
            .unwrap(),
        );
        p.metadata.namespace = Some(ns.into());
        p.metadata.resource_version = Some("42".into());
        if managed {
            p.metadata.labels = Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )]));
        }
        if let Some(s) = since {
            p.metadata.annotations = Some(BTreeMap::from([(
                UNUSED_SINCE_ANNOTATION.to_string(),
                s.to_string(),
            )]));
        }
        p
    }

    fn actions(profiles: &[EnergyProfile], used: &[(&str, &str)]) -> Vec<(String, Action)> {
        let used = used
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        plan_pruning(profiles, &used, Duration::from_secs(86_400), now())
            .into_iter()
            .map(|a| (format!("{}/{}", a.namespace, a.name), a.action))
            .collect()
    }

    #[test]
    fn a_service_uses_the_profile_it_serves_from_and_the_one_its_spec_keys_to() {
        let cfg = OperatorConfig::default();
        let mut is = service("svc");
        let first = plan::profile_name(&is, &cfg).expect("a valid spec has a key");
        assert_eq!(
            used_profiles(&[Arc::new(is.clone())], &cfg),
            BTreeSet::from([("ns".to_string(), first.clone())])
        );
        // Profiled and configured from it, as the planner writes the status.
        let mut profile = plan::plan(&is, &Default::default(), &cfg, NOW)
            .profile
            .expect("a profile for a new service");
        profile.metadata.uid = Some("ep-uid".into());
        profile.status = Some(greenbatch_crds::EnergyProfileStatus::complete(
            crate::testutil::table(&[1, 2, 4, 8]),
        ));
        let observed = crate::observe::Observed {
            profile: Some(profile),
            ..Default::default()
        };
        is.status = Some(plan::plan(&is, &observed, &cfg, NOW).status);
        // A new runtime version keys a new profile, not measured yet: the pods run on at the
        // configuration chosen from the first, which stays in use beside the new one.
        let upgraded = OperatorConfig {
            runtime_version: "9.9.9".into(),
            ..cfg.clone()
        };
        let second = plan::profile_name(&is, &upgraded).expect("a key");
        is.status = Some(plan::plan(&is, &Default::default(), &upgraded, NOW).status);
        assert_eq!(
            is.status.as_ref().and_then(|s| s.profile_ref.clone()),
            Some(second.clone())
        );
        let used = used_profiles(&[Arc::new(is.clone())], &upgraded);
        assert_eq!(
            used,
            BTreeSet::from([
                ("ns".to_string(), first.clone()),
                ("ns".to_string(), second)
            ])
        );
        // An invalid edit has no key: what its status names stays in use.
        is.spec.slo.latency_ms = -1.0;
        assert!(used_profiles(&[Arc::new(is)], &upgraded).contains(&("ns".to_string(), first)));
    }

    #[test]
    fn unused_profiles_are_stamped_then_deleted_after_the_ttl() {
        let fresh = profile("ns", "a", true, None);
        assert_eq!(
            actions(&[fresh], &[]),
            vec![(
                "ns/a".into(),
                Action::MarkUnused {
                    since: NOW.to_string()
                }
            )]
        );
        // Not yet a day.
        let recent = profile("ns", "a", true, Some("2026-11-26T12:00:01Z"));
        assert_eq!(actions(&[recent], &[]), vec![]);
        // A day.
        let old = profile("ns", "a", true, Some("2026-11-26T12:00:00Z"));
        assert_eq!(
            actions(&[old], &[]),
            vec![(
                "ns/a".into(),
                Action::Delete {
                    since: "2026-11-26T12:00:00Z".into(),
                    resource_version: Some("42".into())
                }
            )]
        );
        // A stamp from the future (clock skew between leaders) waits.
        let future = profile("ns", "a", true, Some("2026-11-28T00:00:00Z"));
        assert_eq!(actions(&[future], &[]), vec![]);
        // A stamp edited into nonsense starts the count again.
        let garbled = profile("ns", "a", true, Some("yesterday"));
        assert_eq!(
            actions(&[garbled], &[]),
            vec![(
                "ns/a".into(),
                Action::MarkUnused {
                    since: NOW.to_string()
                }
            )]
        );
    }

    #[test]
    fn used_profiles_lose_their_stamp_and_others_are_never_touched() {
        let stamped = profile("ns", "a", true, Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            actions(std::slice::from_ref(&stamped), &[("ns", "a")]),
            vec![("ns/a".into(), Action::MarkUsed)]
        );
        assert_eq!(
            actions(&[profile("ns", "a", true, None)], &[("ns", "a")]),
            vec![]
        );
        // The same name in another namespace is another profile.
        assert_eq!(
            actions(std::slice::from_ref(&stamped), &[("other", "a")]).len(),
            1,
            "ns/a is unused"
        );
        // Not made by the operator: never stamped, never deleted.
        let by_hand = profile("ns", "a", false, Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            actions(&[by_hand, profile("ns", "b", false, None)], &[]),
            vec![]
        );
        // Being deleted already.
        let mut going = stamped;
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(NOW.parse().expect("a timestamp")),
        );
        assert_eq!(actions(&[going], &[]), vec![]);
    }
}
