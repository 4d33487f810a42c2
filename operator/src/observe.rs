//! What the cluster shows about a service's objects, reduced to what the planner decides on.
//! Pure conversions from API objects; the controller does the reading.

use crate::load::LoadObservation;
use greenbatch_crds::{EnergyProfile, InferenceService};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Everything `plan` needs besides the InferenceService itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The EnergyProfile under the service's profile key, if it exists.
    pub profile: Option<EnergyProfile>,
    /// The profiling Job the profile names (or would be measured by), if it exists.
    pub job: Option<JobObservation>,
    /// The Deployment named after the service, if it exists.
    pub deployment: Option<DeploymentObservation>,
    /// The kinds of the other objects the service would serve under its name (Service,
    /// PodDisruptionBudget) that exist and are not its own: someone else's, never applied over.
    pub foreign_namesakes: Vec<&'static str>,
    /// What the serving pods served since the previous scrape, when this reconcile scraped them.
    pub load: Option<LoadObservation>,
    /// The profiling Jobs running in the operator's scope (`namespace/name`): listed only when the
    /// plan would create one, `--max-profiling-jobs` is set and that many run.
    pub profiling_jobs_running: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobObservation {
    pub name: String,
    /// The uid of the EnergyProfile that owns it (its controller). A Job named like the profile's
    /// but owned by another uid belongs to a deleted profile of the same name, and is going.
    pub owner_uid: Option<String>,
    pub state: JobState,
    /// While active: why its pod does not run yet (`pod <name>: cannot be scheduled: …`, an image
    /// it cannot pull), when it is stuck.
    pub waiting: Option<String>,
    /// The digest of the pod template it was made with (`greenbatch.dev/pod-template-hash`);
    /// `None` on a Job made before the operator recorded one.
    pub pod_template_hash: Option<String>,
    /// Its `resourceVersion`: a replacement deletes exactly the Job it judged, not a newer one.
    pub resource_version: Option<String>,
    /// When it was created (RFC 3339).
    pub created: Option<String>,
    /// Its deletion has begun (replaced, or going with its profile).
    pub deleting: bool,
    /// Pods of it that ran and failed (`status.failed`).
    pub failed_pods: i32,
    /// The uid of the InferenceService it was built for (`greenbatch.dev/built-for`).
    pub built_for: Option<String>,
    /// That service no longer uses the Job's profile (or is gone), by the controller's cache
    /// ([`Builder::of`]); `false` when not known.
    pub builder_gone: bool,
    /// That service's name (`namespace/name`), for messages, when it is in the cache.
    pub builder_name: Option<String>,
}

/// `namespace/name` of an object, as messages name it.
fn namespaced_name(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// The service a Job was built for, as the controller's cache knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Builder {
    /// It is gone, or uses another profile now (`status.profileRef`). One whose status names no
    /// profile yet (it built the Job a moment ago and has not written its status) still uses it.
    pub gone: bool,
    pub name: Option<String>,
}

impl Builder {
    pub fn of(built_for: &str, profile: &str, services: &[&InferenceService]) -> Builder {
        let Some(s) = services
            .iter()
            .find(|s| s.metadata.uid.as_deref() == Some(built_for))
        else {
            return Builder {
                gone: true,
                name: None,
            };
        };
        let uses = s.status.as_ref().and_then(|st| st.profile_ref.as_deref());
        Builder {
            gone: uses.is_some_and(|p| p != profile),
            name: Some(namespaced_name(&s.metadata)),
        }
    }
}

/// What the plan needs to know of a profiling Job: `state` and `waiting` come from its pods,
/// the rest from the Job.
pub fn job_observation(job: &Job, state: JobState, waiting: Option<String>) -> JobObservation {
    JobObservation {
        name: job.metadata.name.clone().unwrap_or_default(),
        owner_uid: job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone()),
        state,
        waiting,
        pod_template_hash: crate::resources::recorded_pod_template_hash(job).map(str::to_string),
        resource_version: job.metadata.resource_version.clone(),
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        deleting: job.metadata.deletion_timestamp.is_some(),
        failed_pods: job.status.as_ref().and_then(|s| s.failed).unwrap_or(0),
        built_for: job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::names::BUILT_FOR_ANNOTATION))
            .cloned(),
        builder_gone: false,
        builder_name: None,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    /// Created, pods pending or running.
    Active,
    Succeeded,
    /// Out of retries (or past its deadline); `reason` and `message` come from the last failed pod
    /// when there is one, else from the Job's condition.
    Failed {
        reason: String,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentObservation {
    /// Whether this service's InferenceService is its controller (else it is someone else's).
    pub controlled_by_us: bool,
    /// The runtime container's args and profile (env), to tell whether the observed rollout is the
    /// planned one.
    pub args: Vec<String>,
    pub profile_env: Option<String>,
    pub generation: i64,
    pub observed_generation: i64,
    pub replicas: i32,
    pub updated_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// Why a serving pod last failed (`pod <name>: exit code 14 (...)...`), looked up only while
    /// fewer replicas are ready than asked for.
    pub pod_failure: Option<String>,
    /// Why its pods cannot even be created (its `ReplicaFailure` condition): a quota or
    /// LimitRange refusing them, a PriorityClass that does not exist.
    pub replica_failure: Option<String>,
    /// The service generation the Deployment was last applied for (its
    /// `greenbatch.dev/spec-generation` annotation); `None` on one applied before it existed.
    pub spec_generation: Option<i64>,
    /// The digest of the pod template it was last applied with
    /// (`greenbatch.dev/pod-template-hash`); `None` on one applied before it was recorded.
    pub pod_template_hash: Option<String>,
}

/// Runtime exit codes in words, for conditions (the runtime's own table:
/// `greenbatch_core::exit_codes`).
pub fn runtime_exit_reason(code: i32) -> Option<&'static str> {
    greenbatch_core::exit_codes::meaning(code)
}

/// Why a pod failed, from its runtime container's terminated state (or the pod's own reason).
pub fn pod_failure(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
        })
        .find(|t| t.exit_code != 0);
    if let Some(t) = terminated {
        let reason = t.reason.clone().unwrap_or_else(|| "Error".to_string());
        let words = runtime_exit_reason(t.exit_code)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        let detail = t
            .message
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .map(|m| format!(": {}", m.trim()))
            .unwrap_or_default();
        return Some((reason, format!("exit code {}{words}{detail}", t.exit_code)));
    }
    (status.phase.as_deref() == Some("Failed")).then(|| {
        (
            status.reason.clone().unwrap_or_else(|| "PodFailed".into()),
            status.message.clone().unwrap_or_default(),
        )
    })
}

/// Which of `jobs` (the operator's profiling Jobs) run, or wait to, as `namespace/name`: not
/// finished, not being deleted. One whose pod waits holds its place too (a pod pulling its
/// image holds its GPU already; an unschedulable one runs as soon as a GPU is free): the
/// services queued behind them name them.
pub fn running_profiling_jobs(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter(|j| job_state(j, &[]) == JobState::Active)
        .map(|j| namespaced_name(&j.metadata))
        .collect()
}

/// The profiling Jobs a new one supersedes: those of the same profile (`jobs`, listed by its
/// label) other than `current` that have finished. Their measurement is in the profile's history
/// already (or failed and was retried); kept, one Job and pod per re-profile would pile up for as
/// long as the profile lives. A Job still running is left to finish.
pub fn superseded_jobs(jobs: &[Job], current: &str) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.metadata.name.as_deref() != Some(current))
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter(|j| job_state(j, &[]) != JobState::Active)
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

/// The Job's state; `pods` are its pods (label `job-name`), used only when it failed.
pub fn job_state(job: &Job, pods: &[Pod]) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    let is_true = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if is_true("Complete").is_some() {
        return JobState::Succeeded;
    }
    let Some(failed) = is_true("Failed") else {
        return JobState::Active;
    };
    // The newest failed pod says why; the Job's condition says only that it ran out of retries.
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    let job_reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
    let job_message = failed.message.clone().unwrap_or_default();
    match pods.iter().rev().find_map(|p| pod_failure(p)) {
        Some((reason, message)) => JobState::Failed {
            reason,
            message: format!("{message} ({job_reason}: {job_message})"),
        },
        None => JobState::Failed {
            reason: job_reason,
            message: job_message,
        },
    }
}

/// The value of environment variable `name` of a Deployment's runtime container.
pub fn container_env(d: &Deployment, name: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// Whether the object with `meta` is controlled by the object of uid `owner_uid` (its
/// controller owner reference): what the operator made for that service, and may change or delete.
pub fn controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == owner_uid)
}

impl DeploymentObservation {
    /// Its ready pods as a count (the API's number is signed).
    pub fn ready(&self) -> u32 {
        u32::try_from(self.ready_replicas.max(0)).unwrap_or(0)
    }
}

pub fn deployment(d: &Deployment, owner_uid: &str) -> DeploymentObservation {
    let status = d.status.clone().unwrap_or_default();
    DeploymentObservation {
        controlled_by_us: controlled_by(&d.metadata, owner_uid),
        args: d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.args.clone())
            .unwrap_or_default(),
        profile_env: container_env(d, crate::names::PROFILE_INLINE_ENV),
        generation: d.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation.unwrap_or(0),
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        updated_replicas: status.updated_replicas.unwrap_or(0),
        ready_replicas: status.ready_replicas.unwrap_or(0),
        available_replicas: status.available_replicas.unwrap_or(0),
        pod_failure: None,
        replica_failure: replica_failure(&status),
        spec_generation: d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::names::SPEC_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok()),
        pod_template_hash: crate::resources::annotated_pod_template_hash(&d.metadata)
            .map(str::to_string),
    }
}

/// Why the Deployment's pods cannot even be created — its `ReplicaFailure` condition, copied
/// from the ReplicaSet — for the Ready condition.
fn replica_failure(status: &k8s_openapi::api::apps::v1::DeploymentStatus) -> Option<String> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| {
            format!(
                "{}: {}",
                c.reason.as_deref().unwrap_or("ReplicaFailure"),
                c.message.as_deref().unwrap_or("")
            )
        })
}

/// Why a Job has no pod, from the Job controller's Events on it: the newest `FailedCreate`'s
/// message (`Error creating: pods "…" is forbidden: …`) — unless a pod was created after it (a
/// pod since deleted or evicted, about to be made again: an old refusal is not why).
pub fn pod_creation_refused(events: &[CoreEvent]) -> Option<String> {
    let when = |e: &&CoreEvent| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
    };
    let newest = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .max_by_key(when)
    };
    let newest = match (newest("FailedCreate"), newest("SuccessfulCreate")) {
        (Some(failed), Some(created)) if when(&created) >= when(&failed) => return None,
        (failed, _) => failed?,
    };
    let message = newest
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    Some(format!(
        "cannot create its pod: {}",
        message.unwrap_or("the Job controller's FailedCreate Event gives no message")
    ))
}

/// Whether the serving pods are worth a look: fewer ready than the Deployment asks for.
pub fn short_of_ready(d: &DeploymentObservation) -> bool {
    d.controlled_by_us && d.ready_replicas < d.replicas
}

/// Why the newest of a Job's pods does not run, when it is stuck (unschedulable, image not pulled).
pub fn job_pod_waiting(pods: &[Pod]) -> Option<String> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    let newest = pods.last()?;
    let why = pod_stuck(newest)?;
    Some(format!(
        "pod {}: {why}",
        newest.metadata.name.as_deref().unwrap_or("?")
    ))
}

/// The newest failure among serving pods that are not ready now, as a condition would say it. A
/// pod that failed once and recovered (its container ready again) is no failure any more.
pub fn serving_pod_failure(pods: &[Pod]) -> Option<String> {
    let not_ready = |p: &&Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_none_or(|cs| cs.iter().any(|c| !c.ready))
    };
    let mut pods: Vec<&Pod> = pods.iter().filter(not_ready).collect();
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    pods.iter().rev().find_map(|p| {
        let message = pod_failure(p)
            .map(|(_, message)| message)
            .or_else(|| pod_stuck(p))?;
        Some(format!(
            "pod {}: {message}",
            p.metadata.name.as_deref().unwrap_or("?")
        ))
    })
}

/// Why a pod that has not failed does not run either: the scheduler finds no node for it (no free
/// GPU of the product asked for, say), or its container waits on what it cannot get (the image,
/// most often: greenbatch's images are not published, a cluster pulls them from where they were
/// pushed).
fn pod_stuck(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        return Some(format!(
            "cannot be scheduled: {}",
            c.message.as_deref().unwrap_or("no node fits it").trim()
        ));
    }
    status.container_statuses.iter().flatten().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        let stuck = matches!(
            reason,
            "ImagePullBackOff"
                | "ErrImagePull"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
        );
        stuck.then(|| match waiting.message.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_a_job_stops_at_has_words() {
        for code in crate::resources::PERMANENT_EXIT_CODES {
            assert!(runtime_exit_reason(code).is_some(), "exit code {code}");
        }
        // What may pass is tried again by the Job's next pod.
        for passing in [7, 9, 10, 15] {
            assert!(
                runtime_exit_reason(passing).is_some(),
                "exit code {passing}"
            );
            assert!(!crate::resources::PERMANENT_EXIT_CODES.contains(&passing));
        }
    }

    #[test]
    fn a_job_is_observed_with_its_owner_template_digest_age_and_deletion() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p-1a2b3c4d", "resourceVersion": "42",
              "creationTimestamp": "2026-11-27T10:00:00Z",
              "deletionTimestamp": "2026-11-27T10:05:00Z",
              "annotations": {"greenbatch.dev/pod-template-hash": "0123456789abcdef"},
              "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "not-controller"},
                {"apiVersion": "greenbatch.dev/v1alpha1", "kind": "EnergyProfile", "name": "p",
                 "uid": "ep-uid", "controller": true}]}
        }))
        .unwrap();
        let o = job_observation(&job, JobState::Active, Some("pod x: waits".into()));
        assert_eq!(o.name, "p-1a2b3c4d");
        assert_eq!(o.owner_uid.as_deref(), Some("ep-uid"));
        assert_eq!(o.pod_template_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(o.resource_version.as_deref(), Some("42"));
        let created = o.created.as_deref().expect("a creation time");
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(created).ok(),
            chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").ok()
        );
        assert!(o.deleting);
        assert_eq!(o.waiting.as_deref(), Some("pod x: waits"));
        // A Job made before digests were recorded, not being deleted, owned by nothing.
        let bare: Job =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "old"}})).unwrap();
        let o = job_observation(&bare, JobState::Succeeded, None);
        assert_eq!(
            (o.pod_template_hash, o.owner_uid, o.created, o.deleting),
            (None, None, None, false)
        );
    }

    #[test]
    fn running_profiling_jobs_are_those_not_finished_nor_going() {
        let job = |name: &str, extra: serde_json::Value| -> Job {
            let mut v = serde_json::json!({"metadata": {"name": name}});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                for (k, x) in e {
                    if k == "metadata" {
                        o["metadata"]["deletionTimestamp"] = x["deletionTimestamp"].clone();
                    } else {
                        o.insert(k.clone(), x.clone());
                    }
                }
            }
            serde_json::from_value(v).unwrap()
        };
        let done = |t: &str| serde_json::json!({"status": {"conditions": [{"type": t, "status": "True"}]}});
        let jobs = [
            job("pending", serde_json::json!({})),
            job("running", serde_json::json!({"status": {"active": 1}})),
            job("succeeded", done("Complete")),
            job("failed", done("Failed")),
            job(
                "going",
                serde_json::json!({"metadata": {"deletionTimestamp": "2026-11-27T10:00:00Z"}}),
            ),
        ];
        assert_eq!(running_profiling_jobs(&jobs), vec!["/pending", "/running"]);
        assert!(running_profiling_jobs(&[]).is_empty());
    }

    #[test]
    fn a_job_without_a_pod_says_why_from_the_newest_failed_create_event() {
        let event = |reason: &str, at: &str, message: &str| -> CoreEvent {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("j.{at}")}, "involvedObject": {"kind": "Job", "name": "j"},
                "reason": reason, "message": message, "lastTimestamp": at,
            }))
            .unwrap()
        };
        let events = [
            event(
                "FailedCreate",
                "2026-11-27T10:00:00Z",
                "Error creating: pods \"j-1\" is forbidden: exceeded quota: gpu",
            ),
            event(
                "FailedCreate",
                "2026-11-27T10:05:00Z",
                "Error creating: pods \"j-2\" is forbidden: error looking up service account ns/greenbatch-runtime: serviceaccount \"greenbatch-runtime\" not found",
            ),
            // A pod made before the refusals (and gone since): older, so they stand.
            event(
                "SuccessfulCreate",
                "2026-11-27T09:59:00Z",
                "Created pod: j-0",
            ),
        ];
        assert_eq!(
            pod_creation_refused(&events).as_deref(),
            Some(
                "cannot create its pod: Error creating: pods \"j-2\" is forbidden: error looking up service account ns/greenbatch-runtime: serviceaccount \"greenbatch-runtime\" not found"
            )
        );
        assert_eq!(pod_creation_refused(&events[2..]), None);
        assert_eq!(pod_creation_refused(&[]), None);
        // A pod created after the last refusal (and since deleted): that refusal is not why.
        let later = [
            events[0].clone(),
            event(
                "SuccessfulCreate",
                "2026-11-27T10:01:00Z",
                "Created pod: j-2",
            ),
        ];
        assert_eq!(pod_creation_refused(&later), None);
    }

    #[test]
    fn the_service_a_job_was_built_for_is_gone_only_when_the_cache_says_so() {
        let service = |uid: &str, profile_ref: Option<&str>| -> InferenceService {
            let mut s = crate::testutil::service("a");
            s.metadata.uid = Some(uid.into());
            s.status = Some(greenbatch_crds::InferenceServiceStatus {
                profile_ref: profile_ref.map(str::to_string),
                ..Default::default()
            });
            s
        };
        let uses = service("u1", Some("p"));
        let built_just_now = service("u1", None);
        let moved_on = service("u1", Some("q"));
        let of = |s: &InferenceService| Builder::of("u1", "p", &[s]);
        assert_eq!(
            of(&uses),
            Builder {
                gone: false,
                name: Some("ns/a".into())
            }
        );
        // Its status not written yet (it built the Job a moment ago): still its Job.
        assert!(!of(&built_just_now).gone);
        assert!(of(&moved_on).gone);
        assert_eq!(
            Builder::of("u1", "p", &[]),
            Builder {
                gone: true,
                name: None
            }
        );
    }

    #[test]
    fn failed_job_reports_the_pods_exit_code_in_words() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j-abc"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
              "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "model file /m.pt not found"}}}]}
        }))
        .unwrap();
        match job_state(&job, &[pod]) {
            JobState::Failed { reason, message } => {
                assert_eq!(reason, "Error");
                assert!(
                    message
                        .contains("exit code 3 (model file missing): model file /m.pt not found"),
                    "{message}"
                );
                assert!(message.contains("BackoffLimitExceeded"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(job_state(&Job::default(), &[]), JobState::Active);
    }

    #[test]
    fn a_new_profiling_job_supersedes_the_finished_ones_of_its_profile() {
        let job = |name: &str, condition: Option<&str>| -> Job {
            let conditions: Vec<serde_json::Value> = condition
                .map(|c| serde_json::json!({"type": c, "status": "True"}))
                .into_iter()
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"conditions": conditions}
            }))
            .unwrap()
        };
        let jobs = [
            job("p-first", Some("Complete")),
            job("p-retried", Some("Failed")),
            job("p-running", None),
            job("p-new", None),
        ];
        assert_eq!(
            superseded_jobs(&jobs, "p-new"),
            vec!["p-first".to_string(), "p-retried".to_string()]
        );
    }

    #[test]
    fn a_crash_looping_serving_pod_reports_its_last_exit() {
        let pod = |name: &str, created: &str, last_exit: Option<i32>| -> Pod {
            let last = last_exit.map(|code| {
                serde_json::json!({"terminated": {"exitCode": code, "reason": "Error",
                    "message": "model https://store.example/m.pt has digest sha256:aa, not the sha256:bb asked for"}})
            });
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": "Running", "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "",
                  "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                  "lastState": last}]}
            }))
            .unwrap()
        };
        let older = pod("svc-a", "2026-11-27T01:00:00Z", Some(3));
        let newer = pod("svc-b", "2026-11-27T02:00:00Z", Some(14));
        let healthy = pod("svc-c", "2026-11-27T03:00:00Z", None);
        // Failed once, ready again since: not reported.
        let mut recovered = pod("svc-d", "2026-11-27T04:00:00Z", Some(13));
        if let Some(c) = recovered
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
            .and_then(|cs| cs.first_mut())
        {
            c.ready = true;
            c.state = None;
        }
        assert_eq!(
            serving_pod_failure(&[newer.clone(), healthy.clone(), older.clone(), recovered])
                .as_deref(),
            Some(
                "pod svc-b: exit code 14 (model file does not have the digest asked for): model https://store.example/m.pt has digest sha256:aa, not the sha256:bb asked for"
            )
        );
        assert_eq!(serving_pod_failure(&[healthy]), None);
    }

    #[test]
    fn a_serving_pod_that_cannot_be_scheduled_or_pulled_says_why() {
        let pending: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "svc-a", "creationTimestamp": "2026-11-27T01:00:00Z"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
              "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}
        }))
        .unwrap();
        assert_eq!(
            serving_pod_failure(std::slice::from_ref(&pending)).as_deref(),
            Some(
                "pod svc-a: cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
            )
        );
        let pulling: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "svc-b", "creationTimestamp": "2026-11-27T02:00:00Z"},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "",
              "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
              "message": "Back-off pulling image \"ghcr.io/greenbatch/runtime:0.1.0\""}}}]}
        }))
        .unwrap();
        // The newest pod first.
        assert_eq!(
            serving_pod_failure(&[pending, pulling]).as_deref(),
            Some(
                "pod svc-b: ImagePullBackOff: Back-off pulling image \"ghcr.io/greenbatch/runtime:0.1.0\""
            )
        );
        // Merely starting (ContainerCreating) is no reason to complain.
        let starting: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "svc-c"},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "",
              "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }))
        .unwrap();
        assert_eq!(serving_pod_failure(&[starting]), None);
    }

    #[test]
    fn a_deployment_whose_pods_cannot_be_created_says_why() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "svc"},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"conditions": [
                {"type": "Available", "status": "False"},
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                 "message": "pods \"svc-1\" is forbidden: no PriorityClass with name inference was found"},
            ]},
        }))
        .unwrap();
        assert_eq!(
            deployment(&d, "uid").replica_failure.as_deref(),
            Some(
                "FailedCreate: pods \"svc-1\" is forbidden: no PriorityClass with name inference was found"
            )
        );
    }
}
