//! The reconcile loop: a kube-rs `Controller` on InferenceServices that reads what a service needs,
//! runs the pure validate + plan, applies the plan, and writes status and Events.
//!
//! Triggers: the InferenceService itself, filtered to generation and annotation changes (its
//! status — which this controller writes — does not retrigger); the Deployments and Services it
//! owns; the EnergyProfiles and profiling Jobs of the profiles it uses (mapped back through
//! `status.profileRef` in the controller's cache). A periodic resync backs the watches up.

use crate::apply;
use crate::config::OperatorConfig;
use crate::error::{OperatorError, ReconcileError};
use crate::load::{self, LoadObservation};
use crate::memory::ServiceMemory;
use crate::metrics::Metrics;
use crate::names::*;
use crate::observe::{self, JobObservation, Observed};
use crate::plan::{self, Requeue, Serving};
use crate::pruner;
use crate::resources;
use crate::scrape::Scraper;
use futures::{StreamExt, TryStreamExt};
use greenbatch_crds::{EnergyProfile, InferenceService};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectList,
};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::{Predicate, WatchStreamExt, predicates};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Which namespaces the operator manages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match self {
            Scope::All => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub config: OperatorConfig,
    pub scope: Scope,
    /// Most reconciles running at once (over all services; one service never runs twice at once).
    pub concurrency: u16,
    /// `reportingInstance` of Events (the pod name in a cluster).
    pub instance: Option<String>,
}

/// Where this replica stands in leader election (see `leader`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// No leader election (a single replica): runs the controller.
    #[default]
    Sole,
    /// Waits for the lease, held by `holder` (`None`: not known yet); reads it fine.
    Standby { holder: Option<String> },
    /// Waits for the lease but has not read it yet, or cannot read or write it (API unreachable,
    /// RBAC): could not take over, so not ready (a rollout must not count on it).
    StandbyLeaseUnreadable,
    /// Holds the lease and runs the controller.
    Leader,
    /// Stopped leading (shutdown or lost lease); the process is about to exit.
    Stopped,
}

/// The running operator's shared state: metrics, readiness, the cache of services.
#[derive(Default)]
pub struct Operator {
    pub metrics: Metrics,
    ready: AtomicBool,
    store: OnceLock<Store<InferenceService>>,
    role: Mutex<Role>,
    /// The one namespace the operator watches (`--namespace`), if any: the HTTP side answers
    /// for nothing outside it.
    watched_namespace: OnceLock<String>,
}

struct Context {
    client: Client,
    config: OperatorConfig,
    recorder: Recorder,
    operator: Arc<Operator>,
    /// Failure and conflict streaks, and each serving service's last snapshot of its pods'
    /// counters (the start of the next window). In memory: a new leader starts afresh and
    /// observes after two scrapes.
    memory: Arc<ServiceMemory>,
    scraper: Scraper,
    /// The monotonic clock snapshots are stamped with.
    origin: Instant,
    /// The PodDisruptionBudget API the cluster serves (`policy/v1`, or `v1beta1` before 1.21);
    /// `None`: neither, serving pods get none.
    disruption_budgets: Option<ApiResource>,
    /// The operator's profiling Jobs in its scope, counted against `--max-profiling-jobs`.
    profiling_jobs: Api<Job>,
    /// Held from counting the running profiling Jobs to creating one.
    profiling_slots: tokio::sync::Mutex<()>,
    /// The namespace the operator watches, or `*` for all (in messages).
    scope_namespace: String,
}

/// Whether an object `name` of `kind` exists that the service of uid `owner_uid` does not control.
async fn someone_elses<K>(
    api: &Api<K>,
    (ns, name): (&str, &str),
    owner_uid: &str,
    kind: &'static str,
) -> Result<bool, ReconcileError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .get_opt(name)
        .await
        .map_err(api_err("get", kind, ns, name))?
        .is_some_and(|o| !observe::controlled_by(o.meta(), owner_uid)))
}

/// Which PodDisruptionBudget API the cluster serves, through discovery: `policy/v1` (Kubernetes
/// 1.21 and later), else `policy/v1beta1`.
async fn disruption_budget_api(client: &Client) -> Option<ApiResource> {
    for version in ["v1", "v1beta1"] {
        // Asked again while the API server is unreachable or failing, as the CRD check is: one
        // failed answer at start would leave every serving Deployment without a budget until
        // the operator restarts.
        let mut pause = Duration::from_secs(1);
        let mut tries = 0;
        let served = loop {
            tries += 1;
            match client
                .list_api_group_resources(&format!("policy/{version}"))
                .await
            {
                Ok(list) => {
                    break list
                        .resources
                        .iter()
                        .any(|r| r.name == "poddisruptionbudgets");
                }
                Err(e) if tries < DISCOVERY_TRIES && transient(&e) && !not_found(&e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "discovering policy/{version}: trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(_) => break false,
            }
        };
        if served {
            let gvk = GroupVersionKind::gvk("policy", version, "PodDisruptionBudget");
            return Some(ApiResource::from_gvk_with_plural(
                &gvk,
                "poddisruptionbudgets",
            ));
        }
    }
    tracing::warn!("the cluster serves no PodDisruptionBudget API: serving pods get none");
    None
}

/// A scrape answers within this, or the pod is left out of the snapshot.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Discovery tries at start, 1 s apart and doubling (about a minute in all): an API server that
/// restarts (an upgrade, a control-plane node replaced) answers again within that, and a pod that
/// exited instead would come back only after its restart back-off (up to 5 minutes).
const DISCOVERY_TRIES: u32 = 7;

/// The API group version is not served (an answer, not a failure).
fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a failed discovery is worth another try: the server unreachable, overloaded or
/// failing; not a refusal (401, 403) or an answer.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        _ => true,
    }
}

/// Checks through discovery (no CRD read permission needed) that both kinds are served, trying
/// again while the API server is unreachable or failing.
pub async fn check_crds(client: &Client) -> Result<(), OperatorError> {
    let want = ["inferenceservices", "energyprofiles"];
    let mut pause = Duration::from_secs(1);
    let mut tries = 0;
    let served: Vec<String> = loop {
        tries += 1;
        match client
            .list_api_group_resources("greenbatch.dev/v1alpha1")
            .await
        {
            Ok(list) => break list.resources.into_iter().map(|r| r.name).collect(),
            Err(kube::Error::Api(s)) if s.code == 404 => break Vec::new(),
            Err(source) if tries < DISCOVERY_TRIES && transient(&source) => {
                tracing::warn!(error = %source, retry_in = ?pause, "the API server does not answer discovery: trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(source) => {
                return Err(OperatorError::Kube {
                    context: "discovering API group greenbatch.dev/v1alpha1".into(),
                    source,
                });
            }
        }
    };
    let missing: Vec<&str> = want
        .into_iter()
        .filter(|w| !served.iter().any(|s| s == w))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(OperatorError::CrdsMissing {
            missing: missing.join(", "),
        })
    }
}

impl Operator {
    /// Whether `/readyz` answers 200. Running the controller (sole or leader): once the CRDs were
    /// found and the first list of services is cached. A standby: while it can read the lease,
    /// i.e. it is healthy and would take over — a standby that never reported ready would stall
    /// every rolling update of a multi-replica Deployment. Nothing routes traffic by it.
    pub fn is_ready(&self) -> bool {
        match self.role() {
            Role::Sole | Role::Leader => self.ready.load(Ordering::Relaxed),
            Role::Standby { .. } => true,
            Role::StandbyLeaseUnreadable | Role::Stopped => false,
        }
    }

    /// Confines what the operator answers for over HTTP to `namespace` (set once, at start).
    pub fn watch_only(&self, namespace: &str) {
        let _ = self.watched_namespace.set(namespace.to_string());
    }

    /// Whether `namespace` is within the operator's scope.
    pub fn watches(&self, namespace: &str) -> bool {
        self.watched_namespace
            .get()
            .is_none_or(|only| only == namespace)
    }

    /// This replica's leader-election role.
    pub fn role(&self) -> Role {
        self.role.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_role(&self, role: Role) {
        self.metrics
            .set_leading(matches!(role, Role::Sole | Role::Leader));
        if let Ok(mut r) = self.role.lock() {
            *r = role;
        }
    }

    /// Whether this replica runs the controller now.
    pub fn is_leading(&self) -> bool {
        matches!(self.role(), Role::Sole | Role::Leader)
    }

    /// The cached services (empty before start).
    pub fn services(&self) -> Vec<Arc<InferenceService>> {
        self.store.get().map(Store::state).unwrap_or_default()
    }

    /// Runs the controller until `shutdown` resolves (then finishes the reconciles in flight).
    pub async fn run(
        self: Arc<Self>,
        client: Client,
        settings: Settings,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), OperatorError> {
        check_crds(&client).await?;
        let services: Api<InferenceService> = settings.scope.api(&client);
        let (reader, writer) = reflector::store();
        let _ = self.store.set(reader.clone());
        // Status writes bump resourceVersion but not generation: filtered out here, so the
        // controller's own status patches never trigger another reconcile. Annotations pass (the
        // re-profile request is one).
        let memory = Arc::new(ServiceMemory::default());
        let (forgetting, existing, operator) = (memory.clone(), reader.clone(), self.clone());
        let trigger = watcher(services, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .inspect_ok(move |event| forget_gone(&forgetting, &operator.metrics, &existing, event))
            .applied_objects()
            .predicate_filter(
                predicates::generation.combine(predicates::annotations),
                Default::default(),
            );
        let managed =
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let jobs_cfg = watcher::Config::default()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY},{PROFILE_LABEL}"));
        let (by_job, by_profile) = (reader.clone(), reader.clone());
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: settings.instance.clone(),
            },
        );
        let ctx = Arc::new(Context {
            client: client.clone(),
            config: settings.config.clone(),
            recorder,
            operator: self.clone(),
            memory: memory.clone(),
            scraper: Scraper::new(SCRAPE_TIMEOUT).map_err(OperatorError::ScrapeClient)?,
            origin: Instant::now(),
            disruption_budgets: disruption_budget_api(&client).await,
            profiling_jobs: settings.scope.api::<Job>(&client),
            profiling_slots: tokio::sync::Mutex::new(()),
            scope_namespace: match &settings.scope {
                Scope::All => "*".to_string(),
                Scope::Namespace(ns) => ns.clone(),
            },
        });
        let ready_flag = self.clone();
        let ready_reader = reader.clone();
        tokio::spawn(async move {
            // Re-polled with a timeout: the store's one-shot readiness signal wakes only one
            // waiter reliably, and the controller's runner waits on it too.
            loop {
                match tokio::time::timeout(
                    Duration::from_millis(500),
                    ready_reader.wait_until_ready(),
                )
                .await
                {
                    Ok(Ok(())) => {
                        ready_flag.ready.store(true, Ordering::Relaxed);
                        break;
                    }
                    Ok(Err(_)) => break,
                    Err(_) => {}
                }
            }
        });
        let (pruning_metrics, pruning_leader) = (self.clone(), self.clone());
        let pruner = tokio::spawn(pruner::run(
            settings.scope.api::<EnergyProfile>(&client),
            reader.clone(),
            settings.config.clone(),
            ctx.recorder.clone(),
            move || pruning_leader.is_leading(),
            move |pass| pruning_metrics.metrics.pruned(pass.unused, pass.deleted),
        ));
        tracing::info!(scope = ?settings.scope, concurrency = settings.concurrency, image = %settings.config.runtime_image, "starting the InferenceService controller");
        Controller::for_stream(trigger, reader)
            .owns(settings.scope.api::<Deployment>(&client), managed.clone())
            .owns(settings.scope.api::<Service>(&client), managed.clone())
            .watches(
                settings.scope.api::<Job>(&client),
                jobs_cfg,
                move |job: Job| {
                    let profile = job.labels().get(PROFILE_LABEL).cloned();
                    users_of(&by_job, job.namespace(), profile)
                },
            )
            .watches(
                settings.scope.api::<EnergyProfile>(&client),
                managed,
                move |ep: EnergyProfile| users_of(&by_profile, ep.namespace(), Some(ep.name_any())),
            )
            .with_config(ControllerConfig::default().concurrency(settings.concurrency))
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                match result {
                    // A trigger for a service deleted a moment ago: expected, nothing to do.
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        tracing::debug!(%obj, "trigger for a deleted service");
                    }
                    // Watch hiccups; reconcile errors themselves are logged by error_policy.
                    Err(e) => tracing::warn!(error = %e, "controller stream error"),
                    Ok(_) => {}
                }
            })
            .await;
        pruner.abort();
        if let Err(e) = pruner.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "the profile pruner panicked");
        }
        self.ready.store(false, Ordering::Relaxed);
        tracing::info!("controller stopped");
        Ok(())
    }
}

/// Forgets what the controller remembers of services that are gone: one deleted, or — after a
/// watch restart, whose fresh list tells no deletions — every one the store no longer holds.
fn forget_gone(
    memory: &ServiceMemory,
    metrics: &Metrics,
    store: &Store<InferenceService>,
    event: &watcher::Event<InferenceService>,
) {
    match event {
        watcher::Event::Delete(is) => forget(memory, metrics, &service_key(is)),
        watcher::Event::InitDone => {
            let exists = |key: &str| {
                key.split_once('/')
                    .is_some_and(|(ns, name)| store.get(&ObjectRef::new(name).within(ns)).is_some())
            };
            memory.keep_only(exists);
            metrics.keep_services(exists);
        }
        _ => {}
    }
}

/// Forgets `is` if it went while being reconciled: its deletion event came before what the
/// reconcile (or its error) counted.
fn forget_if_gone(ctx: &Context, is: &InferenceService) {
    if let Some(store) = ctx.operator.store.get()
        && store.get(&ObjectRef::from_obj(is)).is_none()
    {
        forget(&ctx.memory, &ctx.operator.metrics, &service_key(is));
    }
}

fn forget(memory: &ServiceMemory, metrics: &Metrics, gone: &str) {
    memory.keep_only(|key| key != gone);
    metrics.keep_services(|key| key != gone);
}

/// `namespace/name`: what the controller's memory and logs know a service by.
fn service_key(is: &InferenceService) -> String {
    format!("{}/{}", is.namespace().unwrap_or_default(), is.name_any())
}

/// The services whose status names `profile` in `namespace`.
fn users_of(
    store: &Store<InferenceService>,
    namespace: Option<String>,
    profile: Option<String>,
) -> Vec<ObjectRef<InferenceService>> {
    let Some(profile) = profile else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|s| s.namespace() == namespace)
        .filter(|s| {
            s.status.as_ref().and_then(|st| st.profile_ref.as_deref()) == Some(profile.as_str())
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn api_err(
    action: &'static str,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ReconcileError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| ReconcileError::Api {
        action,
        kind,
        namespace,
        name,
        source,
    }
}

async fn observe_job(
    ctx: &Context,
    (jobs, pods): (&Api<Job>, &Api<Pod>),
    ns: &str,
    (profile, name): (&str, &str),
) -> Result<Option<JobObservation>, ReconcileError> {
    let Some(job) = jobs
        .get_opt(name)
        .await
        .map_err(api_err("get", "Job", ns, name))?
    else {
        return Ok(None);
    };
    let mut state = observe::job_state(&job, &[]);
    let mut waiting = None;
    if state != observe::JobState::Succeeded {
        // A failed Job's pods say why it failed; an active one's, why it does not run yet.
        let pods = pods
            .list(&ListParams::default().labels(&format!("job-name={name}")))
            .await
            .map_err(api_err("list", "Pod", ns, name))?;
        if state == observe::JobState::Active {
            waiting = observe::job_pod_waiting(&pods.items);
            if pods.items.is_empty() {
                waiting = pod_creation_refused(ctx, ns, &job).await;
            }
        } else {
            state = observe::job_state(&job, &pods.items);
        }
    }
    let mut observation = observe::job_observation(&job, state, waiting);
    // Whether the service it was built for still uses its profile: only asked while it waits
    // (whether another service may replace it).
    if let (Some(built_for), true) = (&observation.built_for, observation.waiting.is_some()) {
        let cached = ctx.operator.services();
        let services: Vec<&InferenceService> = cached.iter().map(AsRef::as_ref).collect();
        let builder = observe::Builder::of(built_for, profile, &services);
        observation.builder_gone = builder.gone;
        observation.builder_name = builder.name;
    }
    Ok(Some(observation))
}

/// Why the Job controller cannot create a Job's pod, from its `FailedCreate` Events on this Job
/// (its uid: not those of a Job of the same name replaced before): no runtime service account in
/// the namespace, a pod quota, a missing PriorityClass, a webhook. Without it such a Job would
/// say only "Profiling" until its deadline. Best effort: unreadable Events are logged, not fatal.
async fn pod_creation_refused(ctx: &Context, ns: &str, job: &Job) -> Option<String> {
    let uid = job.metadata.uid.as_deref()?;
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), ns);
    // All of the Job's Events: a pod created after a refusal says the refusal is old.
    let selector = format!("involvedObject.uid={uid}");
    match events.list(&ListParams::default().fields(&selector)).await {
        Ok(list) => observe::pod_creation_refused(&list.items),
        Err(e) => {
            tracing::warn!(job = %job.name_any(), namespace = %ns, error = %e, "cannot read the profiling Job's Events (RBAC: list on events) to say why it has no pod");
            None
        }
    }
}

/// The operator's profiling Jobs running in its scope, `namespace/name` (see
/// [`observe::running_profiling_jobs`]).
async fn running_profiling_jobs(ctx: &Context) -> Result<Vec<String>, ReconcileError> {
    let listed = ctx
        .profiling_jobs
        .list(&ListParams::default().labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}=profiler"
        )))
        .await
        .map_err(api_err(
            "list",
            "Job",
            &ctx.scope_namespace,
            "(the profiling Jobs counted against --max-profiling-jobs)",
        ))?;
    Ok(observe::running_profiling_jobs(&listed.items))
}

/// Writes the record of how a profiling Job ended. Best effort: a failure is logged and the next
/// reconcile plans the record again (it differs from what the profile holds); it never fails the
/// reconcile, whose serving work does not depend on it.
async fn record_profiling_job(
    profiles: &Api<EnergyProfile>,
    profile: &str,
    record: &greenbatch_crds::ProfilingJobRecord,
) {
    match apply::record_profiling_job(profiles, profile, record).await {
        Ok(written)
            if written.status.as_ref().and_then(|s| s.last_job.as_ref()) == Some(record) =>
        {
            tracing::info!(%profile, job = %record.name, outcome = ?record.outcome, "recorded how the profiling Job ended");
        }
        // Accepted and dropped: the API server prunes a field its CRD schema lacks.
        Ok(_) => tracing::warn!(
            %profile,
            "the EnergyProfile CRD has no status.lastJob: it is older than this operator (with crds.install=false, apply the CRDs of this release); finished re-profile Jobs may run again once deleted"
        ),
        Err(e) => tracing::warn!(
            %profile, error = %e,
            "cannot record how the profiling Job ended (RBAC: patch on energyprofiles/status); trying again next reconcile"
        ),
    }
}

/// Deletes the finished profiling Jobs of the profile a new Job measures (and, through the
/// garbage collector, their pods). Best effort: a Job left behind is clutter, not a fault, so a
/// failure is logged and the reconcile goes on.
async fn delete_superseded_jobs(jobs: &Api<Job>, new: &Job, new_name: &str) {
    let Some(profile) = new.labels().get(PROFILE_LABEL) else {
        return;
    };
    let listed = match jobs
        .list(&ListParams::default().labels(&format!("{PROFILE_LABEL}={profile}")))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(profile = %profile, error = %e, "cannot list the profile's Jobs to delete superseded ones");
            return;
        }
    };
    for old in observe::superseded_jobs(&listed, new_name) {
        match jobs.delete(&old, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(job = %old, superseded_by = %new_name, "deleted a superseded profiling Job")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(job = %old, error = %e, "cannot delete a superseded profiling Job")
            }
        }
    }
}

/// Scrapes a serving service's pods when a window has passed since the last scrape, and says what
/// they served in that window. Best effort: a failure to list or reach the pods is logged and
/// yields no observation (replicas then stay where they are), never a failed reconcile.
async fn observe_load(
    ctx: &Context,
    pods: &Api<Pod>,
    key: &str,
    service: &str,
) -> Option<LoadObservation> {
    let interval = ctx.config.observe_interval.as_secs_f64();
    let now = || ctx.origin.elapsed().as_secs_f64();
    let last = ctx.memory.snapshot_taken_at(key);
    // Reconciles come in bursts (rollouts, status events): a window shorter than the interval
    // would be noise. The 10% slack lets the periodic requeue itself through.
    if last.is_some_and(|at| now() - at < 0.9 * interval) {
        return None;
    }
    let list = match serving_pods(pods, service).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(service = %key, error = %e, "cannot list the serving pods to read their metrics");
            return None;
        }
    };
    let targets = load::targets(&list.items, HTTP_PORT);
    let snapshot = ctx.scraper.snapshot(&targets, now).await;
    ctx.operator
        .metrics
        .scraped(snapshot.pods.len(), snapshot.unanswered);
    let before = ctx
        .memory
        .replace_snapshot(key, snapshot.clone(), 10.0 * interval)?;
    load::observe(&before, &snapshot, 0.5 * interval)
}

async fn reconcile(is: Arc<InferenceService>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let result = reconcile_counted(&is, &ctx).await;
    // Deleted while it ran (a conflict is often that): what it just counted would stay for good.
    forget_if_gone(&ctx, &is);
    result
}

async fn reconcile_counted(is: &InferenceService, ctx: &Context) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let key = service_key(is);
    let result = reconcile_inner(is, ctx).await;
    // A conflict is a race (the object changed or went between read and write): looked at again
    // at once, neither counted nor backing off — unless it keeps coming back, which is a failure.
    let conflicts = match &result {
        Err(e) if e.is_conflict() => ctx.memory.conflicted(&key),
        _ => {
            ctx.memory.no_conflict(&key);
            0
        }
    };
    let result = match result {
        Err(e) if conflicts > 0 && conflicts <= CONFLICTS_RETRIED => {
            tracing::info!(service = %key, conflicts, error = %e, "the cluster changed under this reconcile: looking again");
            // A reconcile all the same (in the count and the durations), not a failed one.
            ctx.operator
                .metrics
                .reconciled(&key, started.elapsed(), None);
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
        result => result,
    };
    ctx.operator.metrics.reconciled(
        &key,
        started.elapsed(),
        result.as_ref().err().map(ReconcileError::kind),
    );
    if result.is_ok() {
        ctx.memory.succeeded(&key);
    }
    result
}

/// The pods of a service's Deployment, by all the labels the operator gives them: another pod that
/// merely carries the service label is not one of them (it would never answer a scrape).
async fn serving_pods(pods: &Api<Pod>, service: &str) -> kube::Result<ObjectList<Pod>> {
    let selector = resources::serving_labels(service)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    pods.list(&ListParams::default().labels(&selector)).await
}

async fn reconcile_inner(is: &InferenceService, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = is
        .namespace()
        .ok_or(ReconcileError::MissingMetadata("namespace"))?;
    let name = is.name_any();
    let uid = is.uid().ok_or(ReconcileError::MissingMetadata("uid"))?;
    let client = &ctx.client;
    let profiles: Api<EnergyProfile> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let inference: Api<InferenceService> = Api::namespaced(client.clone(), &ns);

    // Read.
    let mut observed = Observed::default();
    let profile_name = plan::profile_name(is, &ctx.config);
    if let Some(pn) = &profile_name {
        observed.profile =
            profiles
                .get_opt(pn)
                .await
                .map_err(api_err("get", "EnergyProfile", &ns, pn))?;
        let job = plan::observed_job_name(pn, observed.profile.as_ref());
        observed.job = observe_job(ctx, (&jobs, &pods), &ns, (pn, &job)).await?;
    }
    observed.deployment = deployments
        .get_opt(&name)
        .await
        .map_err(api_err("get", "Deployment", &ns, &name))?
        .map(|d| observe::deployment(&d, &uid));
    // The Service and disruption budget serving would apply under the same name: someone else's
    // are named in the status and never applied over (nor, below, deleted).
    if someone_elses(&services, (&ns, &name), &uid, "Service").await? {
        observed.foreign_namesakes.push("Service");
    }
    if let Some(ar) = &ctx.disruption_budgets {
        let budgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
        if someone_elses(&budgets, (&ns, &name), &uid, "PodDisruptionBudget").await? {
            observed.foreign_namesakes.push("PodDisruptionBudget");
        }
    }
    if let Some(d) = observed.deployment.as_mut()
        && observe::short_of_ready(d)
    {
        // Why pods are not ready (a model that fails to load exits with its code), for the Ready
        // condition; best effort: without it the condition still counts ready replicas.
        match serving_pods(&pods, &name).await {
            Ok(list) => d.pod_failure = observe::serving_pod_failure(&list.items),
            Err(e) => {
                tracing::warn!(service = %name, "cannot list serving pods to say why they are not ready: {e}")
            }
        }
    }
    let key = format!("{ns}/{name}");
    if observed
        .deployment
        .as_ref()
        .is_some_and(|d| d.controlled_by_us)
    {
        observed.load = observe_load(ctx, &pods, &key, &name).await;
    } else {
        ctx.memory.drop_snapshot(&key);
    }

    // Plan; a profile created (or annotated) by the plan is applied first and the plan made again
    // with it, because its uid owns the profiling Job.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut plan = plan::plan(is, &observed, &ctx.config, &now);
    // Events of the passes planned again below (a profile created, say), said before the last's.
    let mut earlier_events = Vec::new();
    for _ in 0..2 {
        let Some(profile) = plan.profile.take() else {
            break;
        };
        let pn = profile.name_any();
        let applied = apply::apply(&profiles, &pn, &profile)
            .await
            .map_err(api_err("apply", "EnergyProfile", &ns, &pn))?;
        let job = plan::observed_job_name(&pn, Some(&applied));
        observed.profile = Some(applied);
        observed.job = observe_job(ctx, (&jobs, &pods), &ns, (&pn, &job)).await?;
        earlier_events.append(&mut plan.events);
        plan = plan::plan(is, &observed, &ctx.config, &now);
    }
    // Apply. First what was observed, before anything else can fail the reconcile: how the
    // profile's Job ended, needed before its TTL deletes it.
    if let (Some(record), Some(pn)) = (
        &plan.job_record,
        observed
            .profile
            .as_ref()
            .and_then(|p| p.metadata.name.as_deref()),
    ) {
        record_profiling_job(&profiles, pn, record).await;
    }
    if let Some(stuck) = &plan.replace_job {
        let deleted =
            apply::delete_version_foreground(&jobs, &stuck.name, stuck.resource_version.as_deref())
                .await
                .map_err(api_err("delete", "Job", &ns, &stuck.name))?;
        if deleted && stuck.orphaned {
            tracing::info!(service = %name, namespace = %ns, job = %stuck.name, "deleted an orphaned profiling Job, to make the profile's own");
        } else if deleted {
            tracing::info!(service = %name, namespace = %ns, job = %stuck.name, waiting = %stuck.waiting, "deleted a profiling Job that could not run, to make it anew with the current pod settings");
        } else {
            tracing::debug!(job = %stuck.name, "the stuck profiling Job changed or went before its replacement; looking again");
            plan.events.retain(|e| e.reason != "ProfilingJobReplaced");
        }
    }
    // With --max-profiling-jobs, a Job is created only while fewer run: counted (one LIST, only
    // when a Job is planned) and created under one lock, so reconciles running at once cannot
    // both take the last place. Planned again without the Job when none is free.
    let profiling_slot = match (ctx.config.max_profiling_jobs, &plan.job) {
        (Some(max), Some(job)) => {
            let slot = ctx.profiling_slots.lock().await;
            let mut running = running_profiling_jobs(ctx).await?;
            // Created a moment ago by a service sharing the profile: this reconcile creates
            // nothing (the create finds it), so it takes no place.
            let planned = format!("{ns}/{}", job.name_any());
            if !running.contains(&planned)
                && u32::try_from(running.len()).unwrap_or(u32::MAX) >= max
            {
                running.sort();
                observed.profiling_jobs_running = Some(running);
                plan = plan::plan(is, &observed, &ctx.config, &now);
            }
            Some(slot)
        }
        _ => None,
    };
    // Queued (no Job to create after all): the place is not held for the rest of the reconcile.
    let profiling_slot = profiling_slot.filter(|_| plan.job.is_some());
    plan.events.splice(0..0, earlier_events);
    if let Some(job) = plan.job.clone() {
        let jn = job.name_any();
        let created = match apply::create_if_absent(&jobs, &job).await {
            Ok(created) => created,
            Err(e) => match refusal(&e) {
                Some(message) => {
                    tracing::warn!(service = %name, namespace = %ns, job = %jn, %message, "the API server refused the profiling Job");
                    plan = plan::refused(plan, is, plan::REFUSED_PROFILING_JOB, &message, &now);
                    false
                }
                None => return Err(api_err("create", "Job", &ns, &jn)(e)),
            },
        };
        drop(profiling_slot);
        if created {
            tracing::info!(service = %name, namespace = %ns, job = %jn, "created profiling Job");
            delete_superseded_jobs(&jobs, &job, &jn).await;
        }
    }
    match plan.serving.clone() {
        Serving::Keep => {}
        Serving::Apply(objects) => {
            let (deployment, service) = objects.as_ref();
            if let Err(e) = apply::apply(&deployments, &name, deployment).await {
                let Some(message) = refusal(&e) else {
                    return Err(api_err("apply", "Deployment", &ns, &name)(e));
                };
                tracing::warn!(service = %name, namespace = %ns, %message, "the API server refused the serving Deployment");
                plan = plan::refused(plan, is, "serving Deployment", &message, &now);
                return finish(is, ctx, &inference, &name, &ns, plan).await;
            }
            apply::apply(&services, &name, service)
                .await
                .map_err(api_err("apply", "Service", &ns, &name))?;
            if let (Some(ar), Some(owner)) = (
                &ctx.disruption_budgets,
                deployment
                    .metadata
                    .owner_references
                    .as_ref()
                    .and_then(|o| o.first()),
            ) {
                let budget =
                    resources::disruption_budget(&name, &ns, owner.clone(), &ar.api_version);
                let budgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
                apply::apply(&budgets, &name, &budget)
                    .await
                    .map_err(api_err("apply", "PodDisruptionBudget", &ns, &name))?;
            }
        }
        // Only what this service made goes: an object of the same name someone else made (a
        // hand-made Deployment the service is replacing) is left as it is.
        Serving::Remove => {
            if let Some(ar) = &ctx.disruption_budgets {
                let budgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
                apply::delete_if_controlled_by(&budgets, &name, &uid)
                    .await
                    .map_err(api_err("delete", "PodDisruptionBudget", &ns, &name))?;
            }
            apply::delete_if_controlled_by(&deployments, &name, &uid)
                .await
                .map_err(api_err("delete", "Deployment", &ns, &name))?;
            apply::delete_if_controlled_by(&services, &name, &uid)
                .await
                .map_err(api_err("delete", "Service", &ns, &name))?;
        }
    }
    finish(is, ctx, &inference, &name, &ns, plan).await
}

/// The end of a reconcile: the planned status written (when it changed), its Events published,
/// and when to look again.
async fn finish(
    is: &InferenceService,
    ctx: &Context,
    inference: &Api<InferenceService>,
    name: &str,
    ns: &str,
    plan: plan::Plan,
) -> Result<Action, ReconcileError> {
    if is.status.as_ref() != Some(&plan.status) {
        match apply::apply_status(inference, name, &plan.status).await {
            Ok(_) => {}
            // Deleted while this reconcile ran (the cache still had it): nothing left to report
            // on, and what it owns goes with it.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::debug!(service = %name, namespace = %ns, "deleted during its reconcile");
                return Ok(Action::await_change());
            }
            Err(e) => {
                return Err(api_err("apply status of", "InferenceService", ns, name)(e));
            }
        }
    }
    let reference = is.object_ref(&());
    for ev in &plan.events {
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.to_string(),
            note: Some(ev.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        // An Event is a courtesy: failing to publish one must not fail (and retry) the reconcile.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(service = %name, namespace = %ns, reason = ev.reason, error = %e, "could not publish Event");
        }
    }
    tracing::info!(
        service = %name, namespace = %ns,
        phase = ?plan.status.phase,
        batch = plan.status.selected.as_ref().map(|s| s.batch_size),
        "reconciled"
    );
    Ok(match plan.requeue {
        Requeue::AwaitChange => Action::await_change(),
        Requeue::After(d) => Action::requeue(d),
    })
}

/// The API server's reason when it refused an object for what it is — 422 invalid, 403 from an
/// admission webhook, a policy or a quota — rather than for a moment (conflicts, timeouts, 5xx):
/// worth telling the service's owner, not retrying in a loop. A 403 from RBAC (`User … cannot
/// …`) is the operator's own misconfiguration and stays a failed reconcile.
fn refusal(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 422 => Some(s.message.clone()),
        kube::Error::Api(s)
            if s.code == 403
                && !(s.message.contains("User ") && s.message.contains(" cannot ")) =>
        {
            Some(s.message.clone())
        }
        _ => None,
    }
}

/// When a reconcile that met a 409 Conflict looks again (not a failure: no backoff).
const CONFLICT_RETRY: Duration = Duration::from_secs(1);
/// Conflicts in a row looked at again so; the next is a failed reconcile (with backoff).
const CONFLICTS_RETRIED: u32 = 5;

/// Exponential backoff per service: 1 s, 2 s, 4 s ... capped at 5 minutes; reset by a success.
fn error_policy(is: Arc<InferenceService>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = service_key(&is);
    let n = ctx.memory.failed(&key);
    forget_if_gone(&ctx, &is);
    let delay =
        Duration::from_secs(1u64 << n.min(9).saturating_sub(1)).min(Duration::from_secs(300));
    tracing::warn!(service = %key, failures = n, retry_in = ?delay, error = %error, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use crate::error::ReconcileError;

    #[test]
    fn a_conflict_is_looked_at_again_not_counted_as_a_failure() {
        let during = |code: u16, reason: &str| {
            ReconcileError::Api {
            action: "apply",
            kind: "Service",
            namespace: "e2e".into(),
            name: "queued".into(),
            source: kube::Error::Api(
                serde_json::from_value(serde_json::json!({
                    "status": "Failure", "code": code, "reason": reason,
                    "message": "Operation cannot be fulfilled on services \"queued\": Precondition failed: UID in precondition",
                }))
                .expect("a Status"),
            ),
        }
        };
        assert!(during(409, "Conflict").is_conflict());
        assert!(!during(409, "AlreadyExists").is_conflict());
        assert!(!during(422, "Invalid").is_conflict() && !during(500, "").is_conflict());
        assert!(!ReconcileError::MissingMetadata("uid").is_conflict());
    }

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "message": message, "reason": "", "code": code,
            }))
            .expect("a Status"),
        )
    }

    #[test]
    fn refusals_are_told_from_what_a_retry_or_the_operator_s_rbac_fixes() {
        let invalid = "Deployment.apps \"svc\" is invalid: spec.template.spec.tolerations[0].key: Invalid value";
        assert_eq!(refusal(&api_error(422, invalid)).as_deref(), Some(invalid));
        let webhook = "admission webhook \"validation.gatekeeper.sh\" denied the request: images must come from registry.example";
        assert_eq!(refusal(&api_error(403, webhook)).as_deref(), Some(webhook));
        let quota =
            "jobs.batch \"j\" is forbidden: exceeded quota: compute, requested: count/jobs.batch=1";
        assert_eq!(refusal(&api_error(403, quota)).as_deref(), Some(quota));
        // The chart's RBAC lacking a verb: a failed reconcile, counted as such.
        let rbac = "jobs.batch is forbidden: User \"system:serviceaccount:greenbatch-system:greenbatch-operator\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"e2e\"";
        assert_eq!(refusal(&api_error(403, rbac)), None);
        assert_eq!(refusal(&api_error(409, "conflict")), None);
        assert_eq!(
            refusal(&api_error(500, "etcdserver: request timed out")),
            None
        );
    }
}
