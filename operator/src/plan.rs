//! The plan step: from a service, what the cluster shows about its objects, and the operator's
//! settings, decide everything a reconcile does — the EnergyProfile and profiling Job to ensure,
//! the serving Deployment and Service to apply or remove, the status to write, the Events to emit,
//! and when to look again. Pure: no I/O, the time comes in as an argument.

use crate::config::OperatorConfig;
use crate::load::LoadObservation;
use crate::names::*;
use crate::observe::{self, DeploymentObservation, JobObservation, JobState, Observed};
use crate::resources::{self, PodPlacement, ServeSettings};
use crate::sizing::{
    ReplicaDecision, Stabilised, drift, drift_note, observed_serving, past_capacity,
    predicted_forward_ms, predicted_joules, previous_observation, replicas_for, slo_note,
    stabilise_scale_down,
};
use crate::validate::{self, Valid};
use greenbatch_core::{BatchingMode as CoreMode, Policy, ProfileTable, Selection, choose};
use greenbatch_crds::energy_profile::{EnergyProfileSpec, EnergyProfileStatus};
use greenbatch_crds::inference_service::{
    DriftAction, InferenceServiceStatus, ObservedServing, PendingScaleDown, ReplicaStatus,
    SelectedConfig, UnattainablePolicy,
};
use greenbatch_crds::{
    Condition, ConditionStatus, EnergyProfile, InferenceService, JobOutcome, ModelSpec, Phase,
    ProfileKey, ProfilePhase, ProfilingJobRecord, RuntimePodSpec, condition::set_condition,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;
use std::time::Duration;

pub const PROFILED: &str = "Profiled";
pub const SLO_ATTAINABLE: &str = "SLOAttainable";
pub const READY: &str = "Ready";
pub const PAUSED: &str = "Paused";
/// Re-profile tokens remembered per profile: enough that a token is never honoured twice in practice.
const TOKENS_KEPT: usize = 16;
/// Safety net beside the watches: look again this often while something is in progress.
pub const RESYNC: Duration = Duration::from_secs(300);

/// What to do about the serving Deployment and Service.
#[derive(Clone, Debug, PartialEq)]
pub enum Serving {
    /// Leave whatever exists alone (nothing to serve yet, or an invalid edit of a running service).
    Keep,
    Apply(Box<(Deployment, Service)>),
    /// Delete them if they exist (the SLO cannot be met and the spec says not to serve).
    Remove,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Requeue {
    /// Nothing will change until the service or one of its objects does: the watches will say.
    AwaitChange,
    After(Duration),
}

impl Requeue {
    /// This, or after `at_most` when that is sooner.
    fn at_most(self, at_most: Duration) -> Requeue {
        match self {
            Requeue::After(d) if d <= at_most => Requeue::After(d),
            _ => Requeue::After(at_most),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// A profiling Job whose pod cannot run (no node takes it, its image cannot be pulled) and that
/// the service it was built for would now build otherwise: its `spec.pod` fixed since, another
/// runtime image or pod defaults. Nothing ran, so nothing is lost: it is deleted (its pod first)
/// and the reconcile its deletion brings makes it anew under the same name. A Job that runs, or
/// has a failed pod, is never replaced.
#[derive(Clone, Debug, PartialEq)]
pub struct JobReplacement {
    pub name: String,
    /// Deleted only while it is the version judged: one that changed since (its pod started)
    /// is left.
    pub resource_version: Option<String>,
    /// Why its pod does not run.
    pub waiting: String,
    /// No owner at all (orphaned by hand), rather than stuck: deleted for that.
    pub orphaned: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The EnergyProfile to server-side apply (create it, or record a re-profile on it).
    pub profile: Option<EnergyProfile>,
    /// The profiling Job to create (owned by the EnergyProfile, see `job_owner`).
    pub job: Option<Job>,
    /// How the profile's current Job ended, to write into the profile's `status.lastJob` (the
    /// profile named by `Observed::profile`): once recorded, the Job may go without running again.
    pub job_record: Option<ProfilingJobRecord>,
    /// The profile's Job to delete so that it is made anew (see [`JobReplacement`]).
    pub replace_job: Option<JobReplacement>,
    pub serving: Serving,
    pub status: InferenceServiceStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue: Requeue,
}

impl Plan {
    /// Touches nothing but the service's status (and the record of how its profile's Job ended,
    /// an observation), and waits for a change: a paused service, an invalid spec.
    fn hands_off(
        job_record: Option<ProfilingJobRecord>,
        status: InferenceServiceStatus,
        events: Vec<PlannedEvent>,
    ) -> Plan {
        Plan {
            profile: None,
            job: None,
            job_record,
            replace_job: None,
            serving: Serving::Keep,
            status,
            events,
            requeue: Requeue::AwaitChange,
        }
    }
}

/// The extended resource a whole NVIDIA GPU is requested as.
const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The profile key of a valid service: model identity, GPU product (`cpu` for CPU-only) and the
/// resource it is requested as when that is not a whole GPU (a MIG slice), runtime version,
/// precision.
pub fn profile_key(is: &InferenceService, cfg: &OperatorConfig) -> ProfileKey {
    let gpu = &is.spec.gpu;
    let product = if gpu.count == 0 {
        CPU_PRODUCT.to_string()
    } else {
        gpu.product
            .clone()
            .unwrap_or_else(|| ANY_GPU_PRODUCT.to_string())
    };
    ProfileKey {
        model_name: is.spec.model.display_name(),
        model_digest: is.spec.model.identity(),
        gpu_product: product,
        gpu_resource: (gpu.count > 0 && gpu.resource != DEFAULT_GPU_RESOURCE)
            .then(|| gpu.resource.clone()),
        runtime_version: cfg.runtime_version.clone(),
        precision: is.spec.profiling.precision,
    }
}

/// The EnergyProfile name of a service, or `None` when its spec is invalid.
pub fn profile_name(is: &InferenceService, cfg: &OperatorConfig) -> Option<String> {
    validate::validate(is)
        .ok()
        .map(|_| profile_key(is, cfg).object_name())
}

/// The Job measuring `profile` for a re-profile `token` (none for the first measurement): a
/// DNS label of at most 63 characters, distinct per token.
pub fn job_name(profile: &str, token: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(profile.as_bytes());
    h.update([0u8]);
    h.update(token.unwrap_or("").as_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut prefix: String = profile.chars().take(50).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    format!("{prefix}-{hex}")
}

/// The Job the cluster should be asked about for this service: the one the profile names, or the
/// one a first measurement would create.
pub fn observed_job_name(profile_name: &str, profile: Option<&EnergyProfile>) -> String {
    profile
        .and_then(|p| p.metadata.annotations.as_ref())
        .and_then(|a| a.get(PROFILING_JOB_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| job_name(profile_name, None))
}

/// How the profile's current Job ended, when the profile does not record that yet.
fn job_record(observed: &Observed) -> Option<ProfilingJobRecord> {
    let profile = observed.profile.as_ref()?;
    let job = observed.job.as_ref()?;
    if job.name != observed_job_name(profile.metadata.name.as_deref()?, Some(profile))
        || job.owner_uid != profile.metadata.uid
    {
        return None;
    }
    let record = match &job.state {
        JobState::Active => return None,
        JobState::Succeeded => ProfilingJobRecord {
            name: job.name.clone(),
            outcome: JobOutcome::Succeeded,
            reason: None,
            message: None,
        },
        JobState::Failed { reason, message } => ProfilingJobRecord {
            name: job.name.clone(),
            outcome: JobOutcome::Failed,
            reason: Some(reason.clone()),
            message: Some(message.clone()),
        },
    };
    let recorded = profile.status.as_ref().and_then(|s| s.last_job.as_ref());
    (recorded != Some(&record)).then_some(record)
}

/// How the named Job ended, from the profile's record of it (the Job itself may be gone).
fn recorded_end(profile: &EnergyProfile, job: &str) -> Option<JobState> {
    let record = profile
        .status
        .as_ref()
        .and_then(|s| s.last_job.as_ref())
        .filter(|r| r.name == job)?;
    Some(match record.outcome {
        JobOutcome::Succeeded => JobState::Succeeded,
        JobOutcome::Failed => JobState::Failed {
            reason: record.reason.clone().unwrap_or_else(|| "Failed".into()),
            message: record.message.clone().unwrap_or_default(),
        },
    })
}

fn honoured_tokens(profile: &EnergyProfile) -> Vec<String> {
    profile
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REPROFILE_TOKENS_ANNOTATION))
        .map(|s| {
            s.split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The owner reference a profiling Job gets: its EnergyProfile, once that exists (has a uid).
fn job_owner(profile: &EnergyProfile) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "greenbatch.dev/v1alpha1".into(),
        kind: "EnergyProfile".into(),
        name: profile.metadata.name.clone()?,
        uid: profile.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The runtime pods' scheduling and resources: the service's `spec.pod` over the operator's
/// defaults.
fn runtime_pod(is: &InferenceService, cfg: &OperatorConfig) -> RuntimePodSpec {
    is.spec
        .pod
        .clone()
        .unwrap_or_default()
        .over(&cfg.runtime_pod)
}

fn service_owner(is: &InferenceService) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "greenbatch.dev/v1alpha1".into(),
        kind: "InferenceService".into(),
        name: is.metadata.name.clone()?,
        uid: is.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Where the profile stands for this service.
enum ProfileState<'a> {
    /// The EnergyProfile or its Job is created by this plan: nothing runs yet.
    Starting {
        job: String,
    },
    /// The Job exists and has not finished (or finished a moment before the table arrived).
    Measuring {
        job: String,
    },
    Failed {
        reason: String,
        message: String,
    },
    Complete {
        table: &'a ProfileTable,
        reprofiling: Option<String>,
        /// What went wrong when the table was last measured again (the table stays).
        last_failure: Option<String>,
    },
}

impl<'a> ProfileState<'a> {
    /// While `job` measures: a complete table serves on (a re-profile), else the profile is
    /// `without_table` (Starting or Measuring) until the Job writes one.
    fn while_measuring(
        complete_table: Option<&'a ProfileTable>,
        job: String,
        without_table: fn(String) -> ProfileState<'a>,
    ) -> Self {
        match complete_table {
            Some(table) => ProfileState::Complete {
                table,
                reprofiling: Some(job),
                last_failure: None,
            },
            None => without_table(job),
        }
    }
}

/// What a plan writes as it goes, for the parts of it that write: the conditions, the status and
/// the Events.
struct Written<'a> {
    conds: Conditions<'a>,
    status: InferenceServiceStatus,
    events: Vec<PlannedEvent>,
}

struct Conditions<'a> {
    now: &'a str,
    generation: Option<i64>,
    list: Vec<Condition>,
    /// The conditions as read: a transition is a change from these, however often a pass sets a
    /// condition on its way (a plan that sets Ready True, then `refused` False, leaves a Ready
    /// False as read with its time).
    read: &'a [Condition],
}

impl Conditions<'_> {
    fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) {
        let last_transition_time = self
            .read
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| self.now.to_string(), |c| c.last_transition_time.clone());
        set_condition(
            &mut self.list,
            Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message: message.into(),
                last_transition_time,
                observed_generation: self.generation,
            },
        );
    }
}

/// What [`refused`] calls a refused profiling Job.
pub const REFUSED_PROFILING_JOB: &str = "profiling Job";

/// `plan` after the API server refused an object it creates or applies (`kind`): an admission
/// webhook or policy, a quota, a field the validation here let through. The service says so in
/// its Ready condition (with a Warning Event when that is new) instead of failing reconcile after
/// reconcile with the reason only in the operator's log; nothing else of the plan changes, and
/// the next look is the resync's (a policy may change without the service changing).
pub fn refused(
    mut plan: Plan,
    is: &InferenceService,
    kind: &str,
    message: &str,
    now: &str,
) -> Plan {
    let note = format!("the API server refused the {kind}: {message}");
    // A refused re-measurement leaves what serves serving: it is the profile's trouble.
    let serving = plan
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == ConditionStatus::True);
    let which = if kind == REFUSED_PROFILING_JOB && serving {
        PROFILED
    } else {
        READY
    };
    let old = is
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == which))
        .map(|c| (c.reason.clone(), c.message.clone()));
    if old != Some(("Refused".to_string(), note.clone())) {
        plan.events.push(PlannedEvent {
            warning: true,
            reason: "Refused",
            note: note.clone(),
        });
    }
    let read = is
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conds = Conditions {
        now,
        generation: is.metadata.generation,
        list: std::mem::take(&mut plan.status.conditions),
        read: &read,
    };
    conds.set(which, ConditionStatus::False, "Refused", note);
    plan.status.conditions = conds.list;
    plan.requeue = Requeue::After(RESYNC);
    plan
}

fn selected_config(
    sel: &Selection,
    table: &ProfileTable,
    percentile: u32,
    profile: &str,
) -> SelectedConfig {
    SelectedConfig {
        profile: Some(profile.to_string()),
        batch_size: sel.choice.batch_size,
        max_queue_delay_ms: sel.choice.max_queue_delay_ms,
        expected_latency_ms: sel.choice.expected_latency_ms,
        percentile,
        joules_per_inference: sel.choice.joules_per_inference,
        batch1_joules_per_inference: sel.batch1_joules_per_inference,
        slo_attainable: sel.slo_attainable,
        meter: table.meter,
        reason: sel.reason.clone(),
    }
}

fn condition<'a>(status: &'a InferenceServiceStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The runtime container's args of a planned Deployment.
fn planned_args(planned: &Deployment) -> Vec<String> {
    planned
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

/// Whether the observed Deployment's pod template is the planned one: by the digest each records
/// (any change: args, the model's keys, the account, resources), or on a Deployment applied
/// before digests were recorded, by what changes between plans (the runtime's args, its profile).
fn same_template(d: &DeploymentObservation, planned: &Deployment) -> bool {
    match (
        d.pod_template_hash.as_deref(),
        resources::annotated_pod_template_hash(&planned.metadata),
    ) {
        (Some(seen), Some(wanted)) => seen == wanted,
        _ => {
            d.args == planned_args(planned)
                && d.profile_env == observe::container_env(planned, PROFILE_INLINE_ENV)
        }
    }
}

/// Whether the observed Deployment runs the planned pods, all of them available.
fn rolled_out(d: &DeploymentObservation, planned: &Deployment) -> bool {
    let want = planned.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    same_template(d, planned)
        && d.replicas == want
        && d.observed_generation >= d.generation
        && d.updated_replicas >= want
        && d.available_replicas >= want
}

/// Whether the observed Deployment runs the planned pod template with some of its pods serving,
/// though not all it should (a scale, or a pod that is not ready): the service serves meanwhile.
fn partly_available(d: &DeploymentObservation, planned: &Deployment) -> bool {
    same_template(d, planned) && d.available_replicas >= 1
}

/// The replica status carried through a reconcile that does not size replicas: the count and
/// what was measured stay; a scale-down wait does not (its clock would run on through the
/// interruption and end at the first observation after it); the ready count is the Deployment's
/// as observed now (0 without one of ours), not the one last written — pods die while a service
/// waits for a fix of its spec.
fn kept_replicas(old: &InferenceServiceStatus, observed: &Observed) -> Option<ReplicaStatus> {
    let ready = observed
        .deployment
        .as_ref()
        .filter(|d| d.controlled_by_us)
        .map_or(0, DeploymentObservation::ready);
    old.replicas.clone().map(|r| ReplicaStatus {
        scale_down: None,
        ready,
        ..r
    })
}

pub fn plan(is: &InferenceService, observed: &Observed, cfg: &OperatorConfig, now: &str) -> Plan {
    let old = is.status.clone().unwrap_or_default();
    let generation = is.metadata.generation;
    let mut conds = Conditions {
        now,
        generation,
        list: old.conditions.clone(),
        read: &old.conditions,
    };
    let mut status = InferenceServiceStatus {
        observed_generation: generation,
        // A fresh observation replaces the last one; without one the last stays, with its time
        // — while pods of this service run: with none (removed, a name taken) there is nothing
        // served to have observed.
        observed: observed
            .load
            .as_ref()
            .map(|load| observed_serving(load, now))
            .or_else(|| {
                observed
                    .deployment
                    .as_ref()
                    .filter(|d| d.controlled_by_us)
                    .and(old.observed.clone())
            }),
        ..Default::default()
    };
    let mut events = Vec::new();
    let name = is.metadata.name.clone().unwrap_or_default();
    let namespace = is.metadata.namespace.clone().unwrap_or_default();
    let job_record = job_record(observed);

    let paused = is
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v == "true");
    if paused {
        // Hands off: status keeps what it said (with what the pods measure now), nothing is
        // created, rolled out, scaled or removed until the annotation goes.
        conds.set(
            PAUSED,
            ConditionStatus::True,
            "PausedByAnnotation",
            format!("{PAUSED_ANNOTATION}: \"true\": greenbatch profiles, rolls out, scales and removes nothing of this service until the annotation is removed"),
        );
        if condition(&old, PAUSED).map(|c| c.status) != Some(ConditionStatus::True) {
            events.push(PlannedEvent {
                warning: false,
                reason: "Paused",
                note: format!("{PAUSED_ANNOTATION} set: greenbatch leaves this service as it is"),
            });
        }
        return Plan::hands_off(
            job_record,
            InferenceServiceStatus {
                conditions: conds.list,
                observed: status.observed,
                observed_generation: old.observed_generation,
                ..old
            },
            events,
        );
    }
    if condition(&old, PAUSED).is_some_and(|c| c.status == ConditionStatus::True) {
        conds.set(
            PAUSED,
            ConditionStatus::False,
            "Resumed",
            format!("{PAUSED_ANNOTATION} removed: greenbatch manages this service again"),
        );
    }

    let valid = match validate::validate(is) {
        Ok(v) => v,
        Err(errors) => {
            let message = validate::message(&errors);
            conds.set(
                READY,
                ConditionStatus::False,
                "InvalidSpec",
                message.clone(),
            );
            status.phase = Some(Phase::Failed);
            // What was chosen before stays visible: a bad edit does not tear down a running service.
            status.selected = old.selected.clone();
            status.replicas = kept_replicas(&old, observed);
            status.profile_ref = old.profile_ref.clone();
            status.reprofile_token = old.reprofile_token.clone();
            status.conditions = conds.list;
            if condition(&old, READY).map(|c| (&c.reason, &c.message))
                != Some((&"InvalidSpec".to_string(), &message))
            {
                events.push(PlannedEvent {
                    warning: true,
                    reason: "InvalidSpec",
                    note: message,
                });
            }
            // Waiting for the user: a new generation (or annotation) triggers the next look.
            return Plan::hands_off(job_record, status, events);
        }
    };

    let key = profile_key(is, cfg);
    let profile_name = key.object_name();
    status.profile_ref = Some(profile_name.clone());
    status.reprofile_token = old.reprofile_token.clone();
    let mut planned = Planned::default();

    let state = profile_state(
        is,
        &valid,
        &key,
        &profile_name,
        &namespace,
        observed,
        cfg,
        &mut planned,
    );
    // The service's token, once the profile as read records it (the controller plans again
    // after applying a request, so this is the written one, not merely a planned one), is this
    // service's for good: the profile keeps only the last 16.
    if let Some(t) = &valid.reprofile_token
        && observed
            .profile
            .as_ref()
            .is_some_and(|p| honoured_tokens(p).contains(t))
    {
        status.reprofile_token = Some(t.clone());
    }
    if let Some(r) = &planned.replacement {
        let note = if r.orphaned {
            format!(
                "profiling Job {} has no owner (an EnergyProfile of this name was deleted leaving it, e.g. with --cascade=orphan): it is deleted and this profile's own made",
                r.name
            )
        } else {
            format!(
                "profiling Job {} does not run ({}) and the operator makes it otherwise now (spec.pod, the model source's access, the operator's runtime image or pod defaults): it is deleted and made anew",
                r.name, r.waiting
            )
        };
        events.push(PlannedEvent {
            warning: false,
            reason: "ProfilingJobReplaced",
            note,
        });
    }

    let mut serving = Serving::Keep;
    let requeue;
    let mut out = Written {
        conds,
        status,
        events,
    };
    match state {
        ProfileState::Starting { job } | ProfileState::Measuring { job } => {
            requeue = while_profiling(
                job,
                &planned,
                is,
                &valid,
                &profile_name,
                observed,
                &old,
                cfg,
                &mut out,
            );
        }
        ProfileState::Failed { reason, message } => {
            let msg = format!(
                "profiling EnergyProfile {profile_name} failed: {reason}: {message}; set a new {REPROFILE_ANNOTATION} token to try again (or change what keys the profile: model, GPU product, precision)"
            );
            out.conds.set(
                PROFILED,
                ConditionStatus::False,
                "ProfilingFailed",
                msg.clone(),
            );
            out.conds.set(
                SLO_ATTAINABLE,
                ConditionStatus::Unknown,
                "NotProfiled",
                "the profile failed",
            );
            out.conds.set(
                READY,
                ConditionStatus::False,
                "ProfilingFailed",
                msg.clone(),
            );
            out.status.phase = Some(Phase::Failed);
            out.status.selected = old.selected.clone();
            out.status.replicas = kept_replicas(&old, observed);
            if old.phase != Some(Phase::Failed)
                || condition(&old, READY).map(|c| c.message.as_str()) != Some(msg.as_str())
            {
                out.events.push(PlannedEvent {
                    warning: true,
                    reason: "ProfilingFailed",
                    note: msg,
                });
            }
            // Job retries (with the Job controller's backoff) are spent; a change brings the next try.
            requeue = Requeue::AwaitChange;
        }
        ProfileState::Complete {
            table,
            reprofiling,
            last_failure,
        } => {
            say_profiled(
                table,
                reprofiling.as_deref(),
                last_failure,
                &profile_name,
                &planned,
                is,
                observed,
                &old,
                &mut out,
            );
            (serving, requeue) = serve_from_table(
                table,
                is,
                &valid,
                observed,
                &old,
                cfg,
                now,
                (&name, &namespace, &profile_name),
                &mut planned.profile,
                &mut out,
            );
        }
    }
    let Written {
        conds,
        mut status,
        events,
    } = out;
    status.conditions = conds.list;
    // The profile's Job waits (queued for a place, its pod stuck, being deleted): what moves it on
    // — another profile's Job ending, a pod scheduled — triggers no reconcile of this service, so
    // it looks again, whatever the rest of the plan waits for.
    let job_waits = planned.queue.is_some()
        || observed
            .job
            .as_ref()
            .is_some_and(|j| j.state == JobState::Active && (j.waiting.is_some() || j.deleting));
    let requeue = if job_waits {
        requeue.at_most(cfg.observe_interval.min(RESYNC))
    } else {
        requeue
    };
    Plan {
        profile: planned.profile,
        job: planned.job,
        job_record,
        replace_job: planned.replacement,
        serving,
        status,
        events,
        requeue,
    }
}

/// The profile is complete: the configuration chosen from its table, sized to the load, and
/// served (or not, when the SLO cannot be met and the spec says so); what the serving pods
/// measure judged against it. `names`: the service's name, its namespace, the profile's name.
#[allow(clippy::too_many_arguments)]
fn serve_from_table(
    table: &ProfileTable,
    is: &InferenceService,
    valid: &Valid,
    observed: &Observed,
    old: &InferenceServiceStatus,
    cfg: &OperatorConfig,
    now: &str,
    names: (&str, &str, &str),
    planned_profile: &mut Option<EnergyProfile>,
    out: &mut Written<'_>,
) -> (Serving, Requeue) {
    let (name, namespace, profile_name) = names;
    let generation = is.metadata.generation;
    let mut serving = Serving::Keep;
    let requeue;
    let mode = valid.spec.mode;
    match choose(
        table,
        valid.spec.slo,
        mode,
        None,
        valid.spec.replicas,
        &Policy {
            target_utilisation: cfg.target_utilisation,
            ..Policy::default()
        },
    ) {
        Err(e) => {
            let msg =
                format!("no configuration can be chosen from EnergyProfile {profile_name}: {e}");
            out.conds.set(
                SLO_ATTAINABLE,
                ConditionStatus::Unknown,
                "NoConfiguration",
                msg.clone(),
            );
            out.conds.set(
                READY,
                ConditionStatus::False,
                "NoConfiguration",
                msg.clone(),
            );
            out.status.phase = Some(Phase::Failed);
            // A running Deployment is kept as it is (Serving::Keep): its configuration
            // and replica count stay in status, so a later choice starts from them
            // instead of `spec.replicas.min`.
            out.status.selected = old.selected.clone();
            out.status.replicas = kept_replicas(old, observed);
            if condition(old, READY).map(|c| c.message.as_str()) != Some(msg.as_str()) {
                out.events.push(PlannedEvent {
                    warning: true,
                    reason: "NoConfiguration",
                    note: msg,
                });
            }
            requeue = Requeue::AwaitChange;
        }
        Ok(sel) => {
            let selected = selected_config(&sel, table, is.spec.slo.percentile, profile_name);
            let fixed = matches!(mode, CoreMode::Fixed(_));
            if sel.slo_attainable {
                out.conds.set(
                    SLO_ATTAINABLE,
                    ConditionStatus::True,
                    "SLOAttainable",
                    sel.reason.clone(),
                );
            } else {
                out.conds.set(
                    SLO_ATTAINABLE,
                    ConditionStatus::False,
                    "SLOUnattainable",
                    sel.reason.clone(),
                );
            }
            let serve = sel.slo_attainable
                || is.spec.slo.when_unattainable == UnattainablePolicy::ServeClosest;
            // The window before this one, when status holds it (not a reading kept
            // through a rollout or a leader change).
            let previous = previous_observation(old.observed.as_ref(), now, cfg.observe_interval);
            let Sizing {
                old_desired,
                count: replicas,
                reason: replica_reason,
                scale_down,
                measured_capacity,
            } = size_replicas(&sel, valid, profile_name, previous, observed, old, cfg, now);
            let settings = ServeSettings {
                spec_generation: generation,
                batch_size: sel.choice.batch_size,
                max_queue_delay_ms: sel.choice.max_queue_delay_ms,
                replicas,
                slo_ms: is.spec.slo.latency_ms,
                percentile: is.spec.slo.percentile,
                precision: is.spec.profiling.precision,
                target_utilisation: cfg.target_utilisation,
                // Fixed mode serves at the size asked for: without the profile, a pod's adaptive
                // batching (which would choose among all sizes) stays off.
                profile_json: (!fixed)
                    .then(|| {
                        serde_json::to_string(&EnergyProfileStatus::complete(table.clone())).ok()
                    })
                    .flatten(),
            };
            let desired = if serve { replicas } else { 0 };
            let changed = old
                .selected
                .as_ref()
                .map(|s| (s.batch_size, s.max_queue_delay_ms))
                != Some((selected.batch_size, selected.max_queue_delay_ms));
            if changed {
                out.events.push(PlannedEvent {
                    warning: false,
                    reason: "ConfigSelected",
                    note: format!("{}{}", if fixed { "fixed " } else { "" }, sel.reason),
                });
            }
            out.status.selected = Some(selected);
            // Any Job of the profile still active — measuring again, or the one that wrote
            // this table while its pod finishes (or retries): a second would race it.
            let profile_job_active = observed
                .job
                .as_ref()
                .is_some_and(|j| j.state == JobState::Active);
            if let (Some(load), Some(seen)) = (observed.load.as_ref(), out.status.observed.as_mut())
                && let Some(planned) = judge_observation(
                    is,
                    seen,
                    load,
                    table,
                    valid,
                    old,
                    previous,
                    observed,
                    (profile_name, namespace),
                    !profile_job_active && planned_profile.is_none(),
                    now,
                    &mut out.events,
                )
            {
                *planned_profile = Some(planned);
            }
            if serve {
                let built = service_owner(is)
                    .ok_or_else(|| "the InferenceService has no uid yet".to_string())
                    .and_then(|owner| {
                        let d = resources::deployment(
                            name,
                            namespace,
                            &is.spec.model,
                            PodPlacement {
                                gpu: &is.spec.gpu,
                                pod: &runtime_pod(is, cfg),
                            },
                            &settings,
                            owner.clone(),
                            cfg,
                        )
                        .map_err(|e| e.to_string())?;
                        Ok((d, resources::service(name, namespace, owner)))
                    });
                match (built, name_taken_by(observed)) {
                    (Err(e), _) => {
                        out.conds
                            .set(READY, ConditionStatus::False, "BuildFailed", e.clone());
                        out.status.phase = Some(Phase::Failed);
                        out.status.replicas = kept_replicas(old, observed);
                        requeue = Requeue::AwaitChange;
                    }
                    (Ok(_), Some(kind)) => {
                        let msg = format!(
                            "a {kind} named {name} exists and is not controlled by this InferenceService: rename one of them (the operator neither changes nor deletes it)"
                        );
                        out.conds
                            .set(READY, ConditionStatus::False, "NameConflict", msg.clone());
                        out.status.phase = Some(Phase::Failed);
                        out.status.replicas = kept_replicas(old, observed);
                        if condition(old, READY).map(|c| c.reason.as_str()) != Some("NameConflict")
                        {
                            out.events.push(PlannedEvent {
                                warning: true,
                                reason: "NameConflict",
                                note: msg,
                            });
                        }
                        // Looked at again: a namesake is not watched (a hand-made one, a
                        // disruption budget), and the one in the way may be the garbage of a
                        // service of the same name deleted a moment ago.
                        requeue = Requeue::After(RESYNC);
                    }
                    (Ok(built), None) => {
                        (serving, requeue) = roll_out(
                            built,
                            ReplicaStatus {
                                desired,
                                ready: 0,
                                reason: Some(replica_reason.clone()),
                                measured_capacity_per_replica: measured_capacity,
                                scale_down,
                            },
                            old_desired,
                            &settings,
                            &sel,
                            observed,
                            old,
                            cfg,
                            out,
                        );
                    }
                }
            } else {
                (serving, requeue) =
                    hold_unattainable(&sel, profile_name, generation, observed, old, out);
            }
        }
    }
    (serving, requeue)
}

/// The profile is complete: the Profiled condition says what it holds (and a re-profile under
/// way, or the last one that failed); the Events of a re-profile started or a profile reused.
#[allow(clippy::too_many_arguments)]
fn say_profiled(
    table: &ProfileTable,
    reprofiling: Option<&str>,
    last_failure: Option<String>,
    profile_name: &str,
    planned: &Planned,
    is: &InferenceService,
    observed: &Observed,
    old: &InferenceServiceStatus,
    out: &mut Written<'_>,
) {
    let last_attempt = last_failure.map(|m| format!("; {m}")).unwrap_or_default();
    let profiled_msg = format!(
        "EnergyProfile {profile_name}: {} batch sizes measured, meter {}{last_attempt}{}{}",
        table.rows.len(),
        table.meter,
        unpinned_gpu_note(is, observed.profile.as_ref()),
        reprofiling
            .map(|j| {
                // Its pod stuck (the service's own pods holding every GPU, say): why.
                let waiting = observed
                    .job
                    .as_ref()
                    .filter(|o| o.name == j)
                    .and_then(|o| o.waiting.as_deref())
                    .map(|w| format!(" (it waits: {w}{})", built_for_another(is, observed)))
                    .or_else(|| planned.queue.as_ref().map(|q| format!(" (queued: {q})")))
                    .unwrap_or_default();
                format!("; re-profiling with Job {j}{waiting}")
            })
            .unwrap_or_default()
    );
    out.conds.set(
        PROFILED,
        ConditionStatus::True,
        if reprofiling.is_some() {
            "Reprofiling"
        } else {
            "ProfileComplete"
        },
        profiled_msg,
    );
    if reprofiling.is_some() && planned.job.is_some() {
        out.events.push(PlannedEvent {
            warning: false,
            reason: "ProfilingStarted",
            note: format!("re-profiling EnergyProfile {profile_name}"),
        });
    }
    if old.profile_ref.as_deref() != Some(profile_name)
        && planned.job.is_none()
        && reprofiling.is_none()
    {
        out.events.push(PlannedEvent {
            warning: false,
            reason: "ProfileReused",
            note: format!("using the existing EnergyProfile {profile_name}"),
        });
    }
}

/// How many replicas serve `sel` now: sized from the observed load (`replicas_for`), a lower
/// count held for the scale-down delay (`stabilise_scale_down`), from the count the Deployment
/// runs (read fresh: status can lag it).
#[allow(clippy::too_many_arguments)]
fn size_replicas(
    sel: &Selection,
    valid: &Valid,
    profile_name: &str,
    previous: Option<&ObservedServing>,
    observed: &Observed,
    old: &InferenceServiceStatus,
    cfg: &OperatorConfig,
    now: &str,
) -> Sizing {
    // The count running is the Deployment's own (read fresh this reconcile): status can lag it
    // (a cache not yet showing the last status write, or a write that failed after the
    // Deployment was applied), and sizing from a stale count would apply it again.
    let running = observed
        .deployment
        .as_ref()
        .filter(|d| d.controlled_by_us && d.replicas > 0)
        .and_then(|d| u32::try_from(d.replicas).ok());
    // Without a count in status (lost, or a status written by an older operator) the running
    // Deployment's count still stands: sizing from `min` would drop it without the delay.
    let old_replicas = match (old.replicas.clone(), running) {
        (Some(mut r), Some(n)) => {
            r.desired = n;
            Some(r)
        }
        (None, Some(n)) => Some(ReplicaStatus {
            desired: n,
            ready: 0,
            reason: None,
            measured_capacity_per_replica: None,
            scale_down: None,
        }),
        (r, None) => r,
    };
    // A capacity measured with this profile at this batch size still holds; with
    // another model, GPU or batch size it does not.
    let measured = old
        .replicas
        .as_ref()
        .and_then(|r| r.measured_capacity_per_replica)
        .filter(|_| {
            old.profile_ref.as_deref() == Some(profile_name)
                && old.selected.as_ref().map(|s| s.batch_size) == Some(sel.choice.batch_size)
        });
    let ReplicaDecision {
        count: decided_replicas,
        reason: decided_reason,
        measured_capacity,
        at_least,
    } = replicas_for(
        valid.spec.replicas,
        sel,
        observed.load.as_ref(),
        old_replicas.as_ref(),
        measured,
        previous.is_some_and(|before| {
            past_capacity(before)
                && before.max_batch_size == observed.load.as_ref().and_then(|l| l.max_batch_size)
        }),
        cfg.target_utilisation,
    );
    let Stabilised {
        count: replicas,
        reason: replica_reason,
        pending: scale_down,
    } = stabilise_scale_down(
        decided_replicas,
        decided_reason,
        old_replicas.as_ref().map(|r| r.desired).filter(|d| *d > 0),
        valid.spec.replicas.max(),
        old.replicas.as_ref().and_then(|r| r.scale_down.as_ref()),
        observed.load.as_ref().is_some_and(|l| l.complete),
        at_least,
        now,
        cfg.scale_down_delay,
    );
    Sizing {
        old_desired: old_replicas.as_ref().map(|r| r.desired),
        count: replicas,
        reason: replica_reason,
        scale_down,
        measured_capacity,
    }
}

/// What `size_replicas` decided, and the count it started from.
struct Sizing {
    old_desired: Option<u32>,
    count: u32,
    reason: String,
    scale_down: Option<PendingScaleDown>,
    measured_capacity: Option<f64>,
}

/// While the profile is measured (its Job starting, queued, waiting, running or being remade):
/// the conditions and phase that say so, the Events of a start, a queue and a wait; a running
/// Deployment serves on at its configuration meanwhile.
#[allow(clippy::too_many_arguments)]
fn while_profiling(
    job: String,
    planned: &Planned,
    is: &InferenceService,
    valid: &Valid,
    profile_name: &str,
    observed: &Observed,
    old: &InferenceServiceStatus,
    cfg: &OperatorConfig,
    out: &mut Written<'_>,
) -> Requeue {
    let starting = planned.job.is_some() || planned.profile.is_some();
    // Its pod stuck (no node with a free GPU, an image it cannot pull): say so, and look
    // again soon — pod changes trigger no reconcile.
    let waiting = observed
        .job
        .as_ref()
        .filter(|j| j.name == job && j.state == JobState::Active)
        .and_then(|j| j.waiting.clone())
        .map(|w| format!("{w}{}", built_for_another(is, observed)));
    let what = format!(
        "profiling Job {job} measures batch sizes {:?} for EnergyProfile {profile_name}",
        valid.spec.candidates
    );
    let deleting = observed
        .job
        .as_ref()
        .is_some_and(|j| j.name == job && j.deleting);
    let (reason, what) = match (&planned.queue, &waiting) {
        _ if deleting => (
            "ProfilingWaiting",
            format!(
                "profiling Job {job} is being deleted (its pods first) and is made anew once it is gone; a pod that cannot terminate (its node unreachable) holds it: kubectl delete pod --force"
            ),
        ),
        (Some(q), _) => ("ProfilingQueued", format!("{what}; it is queued: {q}")),
        (None, Some(w)) if planned.replacement.is_some() => (
            "ProfilingWaiting",
            format!("{what}; it waits: {w}; it is made anew with the pod settings asked for now"),
        ),
        (None, Some(w)) => ("ProfilingWaiting", format!("{what}; it waits: {w}")),
        (None, None) => ("Profiling", what),
    };
    // A queued service looks again each observe interval: another profile's Job ending
    // triggers no reconcile of this one.
    let requeue = Requeue::After(cfg.observe_interval.min(RESYNC));
    if planned.queue.is_some()
        && condition(old, PROFILED).map(|c| c.reason.as_str()) != Some("ProfilingQueued")
    {
        out.events.push(PlannedEvent {
            warning: false,
            reason: "ProfilingQueued",
            note: what.clone(),
        });
    }
    // Said once per reason it waits for; not for a Job being replaced (its own Event).
    if waiting.is_some()
        && planned.replacement.is_none()
        && !deleting
        && condition(old, PROFILED).map(|c| c.message.as_str()) != Some(what.as_str())
    {
        out.events.push(PlannedEvent {
            warning: true,
            reason: "ProfilingWaiting",
            note: what.clone(),
        });
    }
    out.conds
        .set(PROFILED, ConditionStatus::False, reason, what.clone());
    out.conds.set(
        SLO_ATTAINABLE,
        ConditionStatus::Unknown,
        "NotProfiled",
        "waiting for the profile",
    );
    out.conds.set(
        READY,
        ConditionStatus::False,
        reason,
        format!("{what}; the service is deployed once it is complete"),
    );
    out.status.phase = Some(
        if starting || waiting.is_some() || deleting || planned.queue.is_some() {
            Phase::Pending
        } else {
            Phase::Profiling
        },
    );
    if planned.job.is_some() {
        out.events.push(PlannedEvent {
            warning: false,
            reason: "ProfilingStarted",
            note: what,
        });
    }
    // A running Deployment serves on at its configuration while the profile is measured
    // (a new model digest, GPU product or runtime version): status says what serves.
    out.status.selected = old.selected.clone();
    out.status.replicas = kept_replicas(old, observed);
    requeue
}

/// The serving objects applied (`built`): the replicas planned (`planned`, its `ready` filled
/// in), the Ready condition and the phase from how far the rollout is, and the Events of a
/// scale, of failing pods and of a phase reached.
#[allow(clippy::too_many_arguments)]
fn roll_out(
    built: (Deployment, Service),
    planned: ReplicaStatus,
    old_desired: Option<u32>,
    settings: &ServeSettings,
    sel: &Selection,
    observed: &Observed,
    old: &InferenceServiceStatus,
    cfg: &OperatorConfig,
    out: &mut Written<'_>,
) -> (Serving, Requeue) {
    let (deployment, svc) = built;
    let desired = planned.desired;
    let replica_reason = planned.reason.clone().unwrap_or_default();
    let ready = observed
        .deployment
        .as_ref()
        .map_or(0, DeploymentObservation::ready);
    let done = observed
        .deployment
        .as_ref()
        .is_some_and(|d| rolled_out(d, &deployment));
    // A service that served keeps serving (and its phase) while the planned pods are only partly
    // available: a scale, or a pod that is not ready. A new pod template is a rollout.
    let partly = !done
        && matches!(old.phase, Some(Phase::Serving | Phase::Degraded))
        && observed
            .deployment
            .as_ref()
            .is_some_and(|d| partly_available(d, &deployment));
    if let Some(before) = old_desired
        && before > 0
        && before != desired
    {
        out.events.push(PlannedEvent {
            warning: false,
            reason: "Scaled",
            note: format!("replicas {before} -> {desired}: {replica_reason}"),
        });
    }
    out.status.replicas = Some(ReplicaStatus { ready, ..planned });

    let config = format!(
        "batch {} with max queue delay {} ms on {desired} replica(s)",
        settings.batch_size,
        resources::fmt_num(settings.max_queue_delay_ms)
    );
    // A failing pod says most; with none at all, why they cannot
    // be created (a quota, a LimitRange, a missing PriorityClass).
    let pod_failure = observed
        .deployment
        .as_ref()
        .and_then(|d| {
            d.pod_failure
                .as_deref()
                .map(|f| format!("; a serving pod failed: {f}"))
                .or_else(|| {
                    d.replica_failure
                        .as_deref()
                        .map(|f| format!("; its pods cannot be created: {f}"))
                })
        })
        .unwrap_or_default();
    if done || partly {
        out.conds.set(
            READY,
            ConditionStatus::True,
            "DeploymentAvailable",
            if partly {
                format!("serving at {config}; {ready}/{desired} replicas ready{pod_failure}")
            } else {
                format!("serving at {config}")
            },
        );
    } else {
        let failing = !pod_failure.is_empty();
        let was_failing = old
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.reason == "ServingPodsFailing");
        if failing && !was_failing {
            out.events.push(PlannedEvent {
                warning: true,
                reason: "ServingPodsFailing",
                note: format!("rolling out {config}: {ready}/{desired} ready{pod_failure}"),
            });
        }
        out.conds.set(
            READY,
            ConditionStatus::False,
            if failing {
                "ServingPodsFailing"
            } else {
                "DeploymentNotAvailable"
            },
            format!("rolling out {config}: {ready}/{desired} ready{pod_failure}"),
        );
    }
    out.status.phase = Some(match (sel.slo_attainable, done || partly) {
        (true, true) => Phase::Serving,
        (true, false) => Phase::Pending,
        (false, _) => Phase::Degraded,
    });

    if done && out.status.phase != old.phase {
        out.events.push(PlannedEvent {
            warning: !sel.slo_attainable,
            reason: if sel.slo_attainable {
                "Serving"
            } else {
                "Degraded"
            },
            note: format!(
                "serving at {config}{}",
                if sel.slo_attainable {
                    String::new()
                } else {
                    format!(" although the SLO is not attainable: {}", sel.reason)
                }
            ),
        });
    }
    // Look again after one observation window: replicas follow the load.
    (
        Serving::Apply(Box::new((deployment, svc))),
        Requeue::After(cfg.observe_interval.min(RESYNC)),
    )
}

/// The kind of an object under the service's name that is someone else's (a Deployment, Service
/// or PodDisruptionBudget it does not control), which serving would apply over.
fn name_taken_by(observed: &Observed) -> Option<&'static str> {
    observed
        .deployment
        .as_ref()
        .filter(|d| !d.controlled_by_us)
        .map(|_| "Deployment")
        .or_else(|| observed.foreign_namesakes.first().copied())
}

/// The choice does not meet the SLO and the spec says not to serve then (DoNotServe): pods
/// already serving this very spec serve on at their last configuration, Degraded; otherwise
/// nothing is served.
fn hold_unattainable(
    sel: &Selection,
    profile_name: &str,
    generation: Option<i64>,
    observed: &Observed,
    old: &InferenceServiceStatus,
    out: &mut Written<'_>,
) -> (Serving, Requeue) {
    let mut serving = Serving::Keep;
    // Serving, and the spec did not change: the verdict comes from a new measurement (a drift
    // re-profile on a throttled GPU, another service's re-profile token, a new runtime version).
    // A measurement alone never takes a running service down: it serves on at the last
    // configuration, Degraded, until the user changes the spec.
    // Ours, running, and applied for this very spec (the Deployment's own record; one applied
    // before it kept one: status's generation).
    let deployment = observed.deployment.as_ref().filter(|d| {
        d.controlled_by_us
            && d.replicas > 0
            && d.spec_generation
                .map_or(old.observed_generation == generation, |g| {
                    Some(g) == generation
                })
    });
    let keep = deployment
        .and(old.selected.clone())
        .zip(old.replicas.clone());
    let pods_ready = deployment.is_some_and(|d| d.ready_replicas > 0);
    let msg = match &keep {
        Some((was, _)) => format!(
            "still serving at batch {} with max queue delay {} ms (chosen from the previous table), although EnergyProfile {profile_name} now says the SLO is not attainable: {}; spec.slo.whenUnattainable is DoNotServe, so a change of the spec stops serving (or set ServeClosest to serve at the closest configuration)",
            was.batch_size,
            resources::fmt_num(was.max_queue_delay_ms),
            sel.reason
        ),
        None => format!(
            "not serving: {}; spec.slo.whenUnattainable is DoNotServe (set ServeClosest to serve at the closest configuration)",
            sel.reason
        ),
    };
    match keep {
        Some((was, replicas)) => {
            out.conds.set(
                READY,
                if pods_ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                "ServingPreviousConfig",
                msg.clone(),
            );
            out.status.selected = Some(was);
            out.status.replicas = Some(ReplicaStatus {
                ready: deployment.map_or(0, DeploymentObservation::ready),
                ..replicas
            });
            // Nothing new is served: no ConfigSelected for the unattainable
            // choice.
            out.events.retain(|e| e.reason != "ConfigSelected");
        }
        None => {
            out.conds.set(
                READY,
                ConditionStatus::False,
                "SLOUnattainable",
                msg.clone(),
            );
            out.status.replicas = Some(ReplicaStatus {
                desired: 0,
                ready: 0,
                reason: Some("not serving: the SLO is not attainable".into()),
                measured_capacity_per_replica: None,
                scale_down: None,
            });
            serving = Serving::Remove;
        }
    }
    out.status.phase = Some(Phase::Degraded);
    if old.phase != Some(Phase::Degraded) {
        out.events.push(PlannedEvent {
            warning: true,
            reason: "SLOUnattainable",
            note: msg,
        });
    }
    (serving, Requeue::AwaitChange)
}

/// Sets what the profile predicts beside what the serving pods measured (`seen`, from `load`),
/// and says what that calls for: a drift or a missed SLO, as Events; and — with
/// `spec.onDrift: Reprofile`, a drift that held for two complete observations, no Job of the
/// profile active (`may_reprofile`) — the profile to measure again, returned for the plan.
#[allow(clippy::too_many_arguments)]
fn judge_observation(
    is: &InferenceService,
    seen: &mut ObservedServing,
    load: &LoadObservation,
    table: &ProfileTable,
    valid: &Valid,
    old: &InferenceServiceStatus,
    previous: Option<&ObservedServing>,
    observed: &Observed,
    names: (&str, &str),
    may_reprofile: bool,
    now: &str,
    events: &mut Vec<PlannedEvent>,
) -> Option<EnergyProfile> {
    let (profile_name, namespace) = names;
    let reprofiles_on_drift = is.spec.on_drift == DriftAction::Reprofile;
    let mut reprofile = None;
    seen.predicted_joules_per_inference =
        predicted_joules(table, valid.spec.slo.percentile(), load);
    seen.predicted_forward_ms_per_batch = load
        .run_batch_size
        .and_then(|rows| predicted_forward_ms(table, rows));
    seen.profile_measured_at = observed
        .profile
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.finished_at.clone());
    // A drift judged against another table (before a re-profile) is not this one's: a new
    // table that still drifts is said again.
    if let Some(note) = drift_note(
        seen,
        old.observed
            .as_ref()
            .filter(|before| before.profile_measured_at == seen.profile_measured_at),
        load,
        profile_name,
        reprofiles_on_drift,
    ) {
        events.push(PlannedEvent {
            warning: true,
            reason: "PredictionDrift",
            note,
        });
    }
    // Opted in, a drift that holds for a second complete observation measures the model again
    // (as a user's token would), at most once a day.
    if may_reprofile
        && reprofiles_on_drift
        && load.complete
        && let Some(drifted) = drift(seen)
        && previous
            .filter(|before| before.profile_measured_at == seen.profile_measured_at)
            .and_then(drift)
            .is_some()
        && let Some(profile) = observed.profile.as_ref()
        && let Some(token) = drift_token(profile, now)
    {
        // The same table measured again, for every service sharing it: the profile's own spec,
        // not this service's candidates.
        let (planned, job) = reprofile_request(
            profile_name,
            namespace,
            profile.spec.clone(),
            profile,
            &token,
        );
        reprofile = Some(planned);
        events.push(PlannedEvent {
            warning: false,
            reason: "ReprofilingOnDrift",
            note: format!(
                "{} has stayed {}x the prediction for two observations: measuring EnergyProfile {profile_name} again with Job {job} (spec.onDrift: Reprofile, token {token}); serving goes on from the current table meanwhile",
                drifted.what(),
                resources::fmt_num(drifted.ratio())
            ),
        });
    }
    let slo = valid.spec.slo;
    seen.latency_at_slo_percentile_ms = load.latency_ms(slo.percentile().quantile());
    if let Some(note) = slo_note(seen, old.observed.as_ref(), &slo, load) {
        events.push(PlannedEvent {
            warning: true,
            reason: "SLOMissed",
            note,
        });
    }
    reprofile
}

/// When a GPU is requested without a product, the profile holds for the GPU type its Job happened
/// to run on, and serving pods may be scheduled on another: say which type was measured.
fn unpinned_gpu_note(is: &InferenceService, profile: Option<&EnergyProfile>) -> String {
    if is.spec.gpu.count == 0 || is.spec.gpu.product.is_some() {
        return String::new();
    }
    let device = profile
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.measured_on.as_ref())
        .map(|m| m.display_name().to_string());
    match device {
        Some(d) => format!(
            "; measured on {d}, and spec.gpu.product is unset: pods on another GPU type serve at numbers this profile does not describe"
        ),
        None => String::new(),
    }
}

/// The profile spec this service would measure with (its key, model, candidates and protocol).
fn profile_spec(is: &InferenceService, valid: &Valid, key: &ProfileKey) -> EnergyProfileSpec {
    EnergyProfileSpec {
        model_name: key.model_name.clone(),
        model_digest: key.model_digest.clone(),
        gpu_product: key.gpu_product.clone(),
        gpu_resource: key.gpu_resource.clone(),
        runtime_version: key.runtime_version.clone(),
        precision: key.precision,
        model: is.spec.model.clone(),
        candidates: valid.spec.candidates.clone(),
        protocol: is.spec.profiling.clone(),
    }
}

/// The profile as a re-profile with `token` leaves it: naming the Job that measures again (created
/// on the next reconcile, once this is applied) and recording `token` as honoured (the last
/// `TOKENS_KEPT`). Returns it with that Job's name.
fn reprofile_request(
    profile_name: &str,
    namespace: &str,
    spec: EnergyProfileSpec,
    read: &EnergyProfile,
    token: &str,
) -> (EnergyProfile, String) {
    let mut honoured = honoured_tokens(read);
    let job = job_name(profile_name, Some(token));
    honoured.push(token.to_string());
    let skip = honoured.len().saturating_sub(TOKENS_KEPT);
    let annotations = BTreeMap::from([
        (PROFILING_JOB_ANNOTATION.to_string(), job.clone()),
        (
            REPROFILE_TOKENS_ANNOTATION.to_string(),
            honoured[skip..].join(","),
        ),
    ]);
    let mut profile = resources::energy_profile(profile_name, namespace, spec, annotations);
    // Written only over the profile as read: two services asking at once (their reconciles run
    // side by side) would otherwise each name its own Job, the later write hiding the earlier's
    // running measurement and token. The second gets a 409 and plans again from the first's.
    profile.metadata.resource_version = read.metadata.resource_version.clone();
    (profile, job)
}

/// How long after an automatic re-profile another may start for the same profile. Measuring again
/// fixes a table that no longer describes the model; when the prediction itself is off (a host
/// path the energy model does not describe), the new table drifts as well, and this bounds the GPU
/// time spent finding that out again to one measurement a day.
pub const DRIFT_REPROFILE_COOLDOWN: chrono::Duration = chrono::Duration::hours(24);

const DRIFT_TOKEN_TIME: &str = "%Y%m%dT%H%M%SZ";

/// The token of an automatic re-profile asked for at `now` (RFC 3339), unless one was asked for
/// within `DRIFT_REPROFILE_COOLDOWN` (the time is in the honoured tokens).
fn drift_token(profile: &EnergyProfile, now: &str) -> Option<String> {
    let now = chrono::DateTime::parse_from_rfc3339(now).ok()?.to_utc();
    let last_asked = honoured_tokens(profile)
        .iter()
        .filter_map(|t| t.strip_prefix(DRIFT_TOKEN_PREFIX))
        .filter_map(|stamp| chrono::NaiveDateTime::parse_from_str(stamp, DRIFT_TOKEN_TIME).ok())
        .map(|t| t.and_utc())
        .max();
    if last_asked.is_some_and(|t| now - t < DRIFT_REPROFILE_COOLDOWN) {
        return None;
    }
    Some(format!(
        "{DRIFT_TOKEN_PREFIX}{}",
        now.format(DRIFT_TOKEN_TIME)
    ))
}

/// `; it was built with the pod settings (spec.pod) of InferenceService ns/x` when the profile's
/// Job was built for another service sharing the profile: the one whose settings to fix when the
/// pod cannot run (only it remakes the Job while it uses the profile).
fn built_for_another(is: &InferenceService, observed: &Observed) -> String {
    observed
        .job
        .as_ref()
        .filter(|j| j.built_for.is_some() && j.built_for != is.metadata.uid)
        .and_then(|j| j.builder_name.as_deref())
        .map(|name| {
            format!("; it was built with the pod settings (spec.pod) of InferenceService {name}")
        })
        .unwrap_or_default()
}

/// What the plan decides to create or remove about the profile, beside the state
/// [`profile_state`] returns; the parts that word the conditions read it.
#[derive(Default)]
struct Planned {
    profile: Option<EnergyProfile>,
    job: Option<Job>,
    replacement: Option<JobReplacement>,
    /// Why the Job the profile needs is not created yet (`--max-profiling-jobs` reached).
    queue: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn profile_state<'a>(
    is: &InferenceService,
    valid: &Valid,
    key: &ProfileKey,
    profile_name: &str,
    namespace: &str,
    observed: &'a Observed,
    cfg: &OperatorConfig,
    planned: &mut Planned,
) -> ProfileState<'a> {
    let Planned {
        profile: planned_profile,
        job: planned_job,
        replacement: planned_replacement,
        queue: planned_queue,
    } = planned;
    let token = valid.reprofile_token.as_deref();
    let Some(profile) = &observed.profile else {
        // First service with this key: create the profile now; its Job follows on the next
        // reconcile, when the profile's uid (the Job's owner) is known. The profile's creation
        // triggers that reconcile through the EnergyProfile watch.
        let job = job_name(profile_name, token);
        let mut annotations = BTreeMap::from([(PROFILING_JOB_ANNOTATION.to_string(), job.clone())]);
        if let Some(t) = token {
            annotations.insert(REPROFILE_TOKENS_ANNOTATION.to_string(), t.to_string());
        }
        *planned_profile = Some(resources::energy_profile(
            profile_name,
            namespace,
            profile_spec(is, valid, key),
            annotations,
        ));
        return ProfileState::Starting { job };
    };

    let tokens = honoured_tokens(profile);
    let complete_table = profile
        .status
        .as_ref()
        .filter(|s| s.phase == Some(ProfilePhase::Complete))
        .and_then(|s| s.table.as_ref())
        .filter(|t| !t.rows.is_empty());
    let current_job = observed_job_name(profile_name, Some(profile));

    let job_obs = observed.job.as_ref().filter(|j| j.name == current_job);
    if let Some(j) = job_obs.filter(|j| j.owner_uid != profile.metadata.uid) {
        // A Job of a profile of the same name deleted a moment ago (by hand, or pruned), not yet
        // garbage-collected: neither its end nor its absence is this profile's. Its deletion
        // (the Job watch) brings the next reconcile, which creates this profile's own. One with
        // no owner at all was orphaned (`--cascade=orphan`): nothing would ever delete it but
        // its TTL, so it is deleted here.
        if j.owner_uid.is_none() && !j.deleting {
            *planned_replacement = Some(JobReplacement {
                name: j.name.clone(),
                resource_version: j.resource_version.clone(),
                waiting: "no owner".into(),
                orphaned: true,
            });
        }
        return ProfileState::Starting { job: current_job };
    }
    // Measures what the profile's spec says (the settings of the service that created it or last
    // asked for a re-profile), placed as this service's `spec.pod` says and reading the model
    // the way this service's source does — its URI, store and keys' Secret, which a user fixes on
    // the service (the content is the same: the key holds its digest) — and records so.
    let measured = EnergyProfileSpec {
        model: ModelSpec {
            source: is.spec.model.source.clone(),
            ..profile.spec.model.clone()
        },
        ..profile.spec.clone()
    };
    let build_job = || {
        job_owner(profile)
            .ok_or_else(|| "the EnergyProfile has no uid yet".to_string())
            .and_then(|owner| {
                resources::profiling_job(
                    &current_job,
                    profile_name,
                    namespace,
                    &measured,
                    PodPlacement {
                        gpu: &is.spec.gpu,
                        pod: &runtime_pod(is, cfg),
                    },
                    owner,
                    cfg,
                )
                .map_err(|e| e.to_string())
            })
            .map(|mut job| {
                if let Some(uid) = &is.metadata.uid {
                    job.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(BUILT_FOR_ANNOTATION.to_string(), uid.clone());
                }
                job
            })
    };
    // A Job whose pod cannot run, and that the service it was built for would build otherwise now
    // (its `spec.pod` or its model source's access fixed — a Secret name, an S3 endpoint —, the
    // operator's runtime image or pod defaults changed), is replaced.
    // Only by that service — or by any once it no longer uses the profile: two services sharing
    // the profile with different pod settings must not replace each other's Job while it waits
    // for a GPU. Never one with a failed pod: its retries and logs would go with it.
    let stuck =
        job_obs.filter(|j| j.state == JobState::Active && !j.deleting && j.failed_pods == 0);
    if let Some((j, waiting)) = stuck.and_then(|j| Some((j, j.waiting.as_ref()?))) {
        let ours = match j.built_for.as_deref() {
            // Built before Jobs recorded it: whoever looks first.
            None => true,
            Some(uid) => is.metadata.uid.as_deref() == Some(uid) || j.builder_gone,
        };
        let made_otherwise = build_job().is_ok_and(|want| {
            j.pod_template_hash.as_deref() != resources::recorded_pod_template_hash(&want)
        });
        if ours && made_otherwise {
            *planned_replacement = Some(JobReplacement {
                name: j.name.clone(),
                resource_version: j.resource_version.clone(),
                waiting: waiting.clone(),
                orphaned: false,
            });
            return ProfileState::while_measuring(complete_table, current_job, |job| {
                ProfileState::Starting { job }
            });
        }
    }
    let running = job_obs
        .filter(|j| j.state == JobState::Active)
        .map(|j| j.name.clone());
    let already_ours = is
        .status
        .as_ref()
        .and_then(|s| s.reprofile_token.as_deref());
    if let Some(t) = token.filter(|t| !tokens.iter().any(|x| x == t) && already_ours != Some(*t)) {
        // A new request while a measurement runs waits for it: two Jobs would race to write the
        // profile's table, the older one possibly last. Honoured on the reconcile after it ends.
        if let Some(job) = running {
            return ProfileState::while_measuring(complete_table, job, |job| {
                ProfileState::Measuring { job }
            });
        }
        // A re-profile request this profile has not honoured yet: record it with the new Job's name,
        // measure with this service's settings, and keep serving from the old table meanwhile.
        let (planned, job) = reprofile_request(
            profile_name,
            namespace,
            profile_spec(is, valid, key),
            profile,
            t,
        );
        *planned_profile = Some(planned);
        return ProfileState::while_measuring(complete_table, job, |job| ProfileState::Starting {
            job,
        });
    }

    // Where the current Job stands: the Job says, or — once it is gone (its TTL, by hand) — the
    // profile's record of how it ended.
    let job_state = match job_obs {
        Some(j) => Some(j.state.clone()),
        None => recorded_end(profile, &current_job),
    };
    // A missing Job is created when it has not run: there is no table yet, or the profile names a
    // re-profile Job (not the first one) with no record of its end. One recorded as succeeded
    // without leaving a table (its status edited away) runs again; one recorded as failed does
    // not — the service is Failed with why, until a new spec or re-profile request.
    let needs_job = job_obs.is_none()
        && match &job_state {
            None => complete_table.is_none() || current_job != job_name(profile_name, None),
            Some(JobState::Succeeded) => complete_table.is_none(),
            Some(_) => false,
        };
    let slots_taken = cfg
        .max_profiling_jobs
        .zip(observed.profiling_jobs_running.as_ref())
        .filter(|(max, running)| u32::try_from(running.len()).unwrap_or(u32::MAX) >= *max);
    if let Some((max, running)) = slots_taken.filter(|_| needs_job) {
        // Named, a few: one that never gets to run (a pod pulling an image that does not exist)
        // holds its place until its deadline, and this is where a user finds it.
        let mut named = running
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if running.len() > 3 {
            named.push_str(", …");
        }
        *planned_queue = Some(format!(
            "the profiling Jobs running ({}: {named}) are as many as --max-profiling-jobs allows ({max}); it is created when one ends",
            running.len()
        ));
        return ProfileState::while_measuring(complete_table, current_job, |job| {
            ProfileState::Starting { job }
        });
    }
    if needs_job {
        return match build_job() {
            Ok(job) => {
                *planned_job = Some(job);
                ProfileState::while_measuring(complete_table, current_job, |job| {
                    ProfileState::Starting { job }
                })
            }
            Err(message) => ProfileState::Failed {
                reason: "BuildFailed".into(),
                message,
            },
        };
    }
    // A Job that wrote the table (its measurement started after the Job was made) is finishing,
    // not measuring again: the table arrives a moment before the Job completes.
    let wrote_the_table = |j: &JobObservation| {
        let parse = |t: Option<&str>| t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let started = parse(
            profile
                .status
                .as_ref()
                .and_then(|s| s.started_at.as_deref()),
        );
        matches!((started, parse(j.created.as_deref())), (Some(s), Some(c)) if s >= c)
    };
    let reprofiling = running.filter(|_| !job_obs.is_some_and(wrote_the_table));
    if let Some(table) = complete_table {
        // A failed re-measurement leaves the table: the runtime says why in the profile's message,
        // or, when it died before writing (killed, past its deadline), the Job does.
        let last_failure = profile
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .or_else(|| match &job_state {
                Some(JobState::Failed { reason, message }) => Some(format!(
                    "measuring again failed (Job {current_job}: {reason}: {message}): the table stays"
                )),
                _ => None,
            });
        return ProfileState::Complete {
            table,
            reprofiling,
            last_failure,
        };
    }
    // The Job is authoritative while it exists: the runtime marks the profile Failed just before
    // it exits, and the pod's exit code (from the Job) says more than the profile's message.
    let profile_failure = profile
        .status
        .as_ref()
        .filter(|s| s.phase == Some(ProfilePhase::Failed))
        .map(|s| {
            s.message
                .clone()
                .unwrap_or_else(|| "the runtime marked the profile Failed".into())
        });
    match (job_state.as_ref(), profile_failure) {
        (Some(JobState::Failed { reason, message }), note) => ProfileState::Failed {
            reason: reason.clone(),
            message: format!(
                "Job {current_job}: {message}{}",
                note.map(|n| format!("; the runtime reported: {n}"))
                    .unwrap_or_default()
            ),
        },
        (None, Some(note)) => ProfileState::Failed {
            reason: "ProfileFailed".into(),
            message: note,
        },
        // Succeeded without a complete table: the runtime's status write and the Job's
        // completion race; the EnergyProfile watch brings the table.
        _ => ProfileState::Measuring { job: current_job },
    }
}

#[cfg(test)]
mod tests;
