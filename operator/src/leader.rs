//! Leader election on a coordination.k8s.io/v1 Lease: of several operator replicas only the lease
//! holder runs the controller (reconciles, applies, writes status); the others wait as standbys and
//! take over when the holder releases the lease or stops renewing it.
//!
//! The decision (create / renew / take over / wait) is the pure [`decide`]; [`Elector`] is the thin
//! API end (get, create, replace with the read `resourceVersion` so that of two racing candidates
//! exactly one write wins, the other gets 409 Conflict); [`run_elected`] drives the controller.
//!
//! Losing the lease (another holder, or no successful renewal within `renew_deadline`) stops the
//! controller and returns [`OperatorError::LeadershipLost`], so the process exits and the pod
//! restarts as a fresh standby. Exiting rather than stepping down in-process because the
//! controller's caches, queues and backoff state belong to one leadership term: a restart rebuilds
//! them from the API, and no half-torn-down state can leak into a later term.
//!
//! Expiry is judged from the lease's `renewTime` against this replica's clock, so the replicas'
//! clocks must agree to well under the lease duration (NTP-synced nodes do); a skew shortens or
//! lengthens the effective lease by that much.

use crate::controller::{Operator, Role, Settings, check_crds};
use crate::error::OperatorError;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the lease lives and how it is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's holder identity (the pod name in a cluster); unique among the replicas.
    pub identity: String,
    /// How long a lease stays valid after its last renewal (`spec.leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How often the holder renews, and how often a standby checks the lease.
    pub renew_interval: Duration,
    /// The holder gives up when it has not renewed for this long (less than `lease_duration`, so
    /// it stops before a standby may take over).
    pub renew_deadline: Duration,
}

impl LeaseSettings {
    /// Checks `renew_interval < renew_deadline < lease_duration` and a whole number of seconds
    /// (at least 1) for the duration, which the API stores in seconds.
    pub fn validate(&self) -> Result<(), OperatorError> {
        let invalid = |reason: String| Err(OperatorError::InvalidLeaseSettings { reason });
        if self.name.is_empty() || self.namespace.is_empty() || self.identity.is_empty() {
            return invalid("lease name, namespace and identity must not be empty".into());
        }
        if self.lease_duration.subsec_nanos() != 0
            || self.lease_duration.as_secs() == 0
            || i32::try_from(self.lease_duration.as_secs()).is_err()
        {
            return invalid(format!(
                "lease duration {:?} is not a whole number of seconds (1 or more)",
                self.lease_duration
            ));
        }
        if self.renew_interval.is_zero()
            || self.renew_interval >= self.renew_deadline
            || self.renew_deadline >= self.lease_duration
        {
            return invalid(format!(
                "need 0 < renew interval ({:?}) < renew deadline ({:?}) < lease duration ({:?})",
                self.renew_interval, self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }

    fn duration_secs(&self) -> i32 {
        // validate() bounds it; saturating keeps an unvalidated value from wrapping.
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Why a candidate may take over a lease someone else wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeOver {
    /// No holder: released on its holder's graceful shutdown (or never held).
    Released,
    /// The holder did not renew within the lease duration.
    Expired,
}

/// What a candidate does with the lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease object yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else wrote it but it is free: write ourselves in.
    TakeOver(TakeOver),
    /// Someone else holds it until `expires`.
    Wait { holder: String, expires: Timestamp },
}

/// Decides from the lease's current spec (`None`: no lease object) and `now`. A lease without a
/// duration counts with `fallback_secs` (ours); one without renew or acquire time is expired.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp, fallback_secs: i32) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = match spec.holder_identity.as_deref() {
        None | Some("") => return Decision::TakeOver(TakeOver::Released),
        Some(h) if h == me => return Decision::Renew,
        Some(h) => h,
    };
    let secs = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .unwrap_or(fallback_secs);
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    let expires = last.and_then(|t| t.0.checked_add(SignedDuration::from_secs(secs.into())).ok());
    match expires {
        Some(expires) if expires > now => Decision::Wait {
            holder: holder.to_string(),
            expires,
        },
        _ => Decision::TakeOver(TakeOver::Expired),
    }
}

/// The lease spec a decision writes (`current`: what was read).
pub fn next_spec(
    decision: &Decision,
    current: Option<&LeaseSpec>,
    settings: &LeaseSettings,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let fresh = |transitions: i32| LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.duration_secs()),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match decision {
        Decision::Create => Some(fresh(0)),
        Decision::TakeOver(_) => {
            let before = current.and_then(|c| c.lease_transitions).unwrap_or(0);
            Some(fresh(before.saturating_add(1)))
        }
        Decision::Renew => {
            let mut spec = current.cloned().unwrap_or_else(|| fresh(0));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(settings.duration_secs());
            Some(spec)
        }
        Decision::Wait { .. } => None,
    }
}

/// The outcome of one attempt to acquire or renew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Leading,
    /// Someone else holds the lease (`None`: we lost a write race and do not know to whom yet).
    Standby {
        holder: Option<String>,
    },
}

/// The API end of the election.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// Another holder's lease record as last read, and since when (our monotonic clock) it has
    /// read so: its expiry is judged by how long *we* have seen it unchanged, as client-go does,
    /// so replicas' wall clocks need not agree.
    seen: std::sync::Mutex<Option<(LeaseRecord, Instant)>>,
}

/// What changes when a holder renews (or another takes over).
type LeaseRecord = (
    Option<String>,
    Option<MicroTime>,
    Option<MicroTime>,
    Option<i32>,
);

/// Judges another holder's lease by how long it has been seen unchanged (`unchanged_for`), not by
/// its renewTime against our wall clock: expired once that reaches its duration. Other decisions
/// pass as they are.
pub fn judged_by_observation(
    decision: Decision,
    spec: Option<&LeaseSpec>,
    unchanged_for: Duration,
    now: Timestamp,
    fallback_secs: i32,
) -> Decision {
    let held_by_other = matches!(
        decision,
        Decision::Wait { .. } | Decision::TakeOver(TakeOver::Expired)
    );
    let (Some(spec), true) = (spec, held_by_other) else {
        return decision;
    };
    let Some(holder) = spec.holder_identity.clone().filter(|h| !h.is_empty()) else {
        return decision;
    };
    let secs = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .unwrap_or(fallback_secs);
    let duration = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    match duration.checked_sub(unchanged_for) {
        Some(left) if !left.is_zero() => Decision::Wait {
            holder,
            expires: now
                .checked_add(SignedDuration::try_from(left).unwrap_or(SignedDuration::ZERO))
                .unwrap_or(now),
        },
        _ => Decision::TakeOver(TakeOver::Expired),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    // 409: AlreadyExists on create, Conflict on a stale resourceVersion.
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            seen: std::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// How long the lease has read as it does now (zero the first time it reads so).
    fn unchanged_for(&self, spec: Option<&LeaseSpec>) -> Duration {
        let record: LeaseRecord = spec.map_or((None, None, None, None), |s| {
            (
                s.holder_identity.clone(),
                s.renew_time.clone(),
                s.acquire_time.clone(),
                s.lease_transitions,
            )
        });
        let Ok(mut seen) = self.seen.lock() else {
            return Duration::ZERO;
        };
        match seen.as_ref() {
            Some((last, since)) if *last == record => since.elapsed(),
            _ => {
                *seen = Some((record, Instant::now()));
                Duration::ZERO
            }
        }
    }

    fn err(&self, action: &str) -> impl FnOnce(kube::Error) -> OperatorError {
        let context = format!(
            "{action} Lease {}/{}",
            self.settings.namespace, self.settings.name
        );
        move |source| OperatorError::Kube { context, source }
    }

    /// Reads the lease and acquires, renews or takes it over when [`decide`] says so.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, OperatorError> {
        let s = &self.settings;
        let current = self.api.get_opt(&s.name).await.map_err(self.err("get"))?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let now = Timestamp::now();
        let decision = judged_by_observation(
            decide(spec, &s.identity, now, s.duration_secs()),
            spec,
            self.unchanged_for(spec),
            now,
            s.duration_secs(),
        );
        let Some(next) = next_spec(&decision, spec, s, now) else {
            let holder = match decision {
                Decision::Wait { holder, .. } => Some(holder),
                _ => None,
            };
            return Ok(Attempt::Standby { holder });
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(s.name.clone()),
                        namespace: Some(s.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(next),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // Replace carries the resourceVersion just read: a concurrent writer makes this 409.
                lease.spec = Some(next);
                self.api
                    .replace(&s.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                if let Decision::TakeOver(why) = decision {
                    tracing::info!(identity = %s.identity, lease = %s.name, reason = ?why, "took over the lease");
                } else if decision == Decision::Create {
                    tracing::info!(identity = %s.identity, lease = %s.name, "created the lease");
                }
                Ok(Attempt::Leading)
            }
            Err(e) if is_conflict(&e) => Ok(Attempt::Standby { holder: None }),
            Err(e) => Err(self.err("write")(e)),
        }
    }

    /// Clears `holderIdentity` if we still hold the lease, so a standby takes over at once instead
    /// of waiting for it to expire.
    pub async fn release(&self) -> Result<(), OperatorError> {
        let s = &self.settings;
        let Some(mut lease) = self.api.get_opt(&s.name).await.map_err(self.err("get"))? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&s.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(identity = %s.identity, lease = %s.name, "released the lease");
                Ok(())
            }
            // Someone wrote it since: it is no longer ours to release.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(self.err("release")(e)),
        }
    }

    /// One attempt bounded by `limit`; a slow API server counts as a failed attempt.
    async fn attempt(&self, limit: Duration) -> Result<Attempt, OperatorError> {
        self.within(limit, self.try_acquire_or_renew()).await
    }

    /// `call` on the lease, or a [`OperatorError::LeaseTimeout`] once `limit` has passed.
    async fn within<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = Result<T, OperatorError>>,
    ) -> Result<T, OperatorError> {
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(OperatorError::LeaseTimeout {
                lease: self.settings.name.clone(),
                after: limit,
            })
        })
    }
}

/// After a renewal attempt: the lease still ours (renewed, or a failure with time left to retry),
/// or lost.
enum Renewal {
    Held,
    Lost(String),
}

/// One renewal, bounded by what is left of the renew deadline; `last_renewed` moves to the
/// moment it began when it succeeds.
async fn renew(elector: &Elector, lease: &LeaseSettings, last_renewed: &mut Instant) -> Renewal {
    let began = Instant::now();
    let left = lease.renew_deadline.saturating_sub(last_renewed.elapsed());
    match elector.attempt(left.max(Duration::from_millis(1))).await {
        Ok(Attempt::Leading) => {
            *last_renewed = began;
            Renewal::Held
        }
        // Includes a 409 on renewal: while our lease is valid nobody else may write it, so a
        // concurrent write means someone judged it expired — step down.
        Ok(Attempt::Standby { holder }) => {
            Renewal::Lost(format!("the lease was taken over (holder {holder:?})"))
        }
        Err(e) if last_renewed.elapsed() >= lease.renew_deadline => {
            Renewal::Lost(format!("no renewal within {:?}: {e}", lease.renew_deadline))
        }
        Err(e) => {
            tracing::warn!(error = %e, "renewing the lease failed; retrying");
            Renewal::Held
        }
    }
}

/// Hands the lease over, waiting no longer than `limit` (a hung API server would otherwise hold
/// the shutdown until the kubelet kills the pod; the lease then simply expires).
async fn release_within(elector: &Elector, limit: Duration) -> Result<(), OperatorError> {
    elector.within(limit, elector.release()).await
}

enum Ended {
    Shutdown,
    Controller(Result<Result<(), OperatorError>, tokio::task::JoinError>),
    Lost(String),
}

/// Runs `operator` as one of several replicas: waits as a standby until it holds the lease, then
/// runs the controller while renewing. Returns `Ok` on `shutdown` (after releasing the lease),
/// [`OperatorError::LeadershipLost`] when the lease is lost (the caller exits; see the module doc).
pub async fn run_elected(
    operator: Arc<Operator>,
    client: Client,
    settings: Settings,
    lease: LeaseSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    lease.validate()?;
    // Not leading until the lease says so (the default role, Sole, would count as leading), and
    // not ready until it has been read: a new pod in a rollout that cannot read it must not let
    // the old leader go with nobody able to take over.
    operator.set_role(Role::StandbyLeaseUnreadable);
    // A missing CRD is reported by every replica, not only by the one that becomes leader.
    check_crds(&client).await?;
    let elector = Elector::new(client.clone(), lease.clone());
    let mut shutdown = Box::pin(shutdown);
    let mut last_holder: Option<String> = None;
    loop {
        match elector.attempt(lease.renew_interval).await {
            Ok(Attempt::Leading) => break,
            Ok(Attempt::Standby { holder }) => {
                if holder.is_some() && holder != last_holder {
                    tracing::info!(identity = %lease.identity, holder = ?holder, "standby: the lease is held by another replica");
                    last_holder = holder.clone();
                }
                operator.set_role(Role::Standby { holder });
            }
            Err(e) => {
                tracing::warn!(error = %e, "standby: cannot read or write the lease");
                operator.set_role(Role::StandbyLeaseUnreadable);
            }
        }
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shut down while standby");
                return Ok(());
            }
            _ = tokio::time::sleep(lease.renew_interval) => {}
        }
    }

    tracing::info!(identity = %lease.identity, lease = %lease.name, "leading: starting the controller");
    operator.set_role(Role::Leader);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut controller = tokio::spawn(operator.clone().run(client, settings, async move {
        let _ = stop_rx.await;
    }));
    // When the lease was last known renewed: the moment before the write that renewed it (its
    // renewTime is stamped then, so the write's own latency does not extend our term).
    let mut last_renewed = Instant::now();
    let mut ticker = tokio::time::interval(lease.renew_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate: we just wrote the lease
    let ended = loop {
        let deadline = tokio::time::Instant::from_std(last_renewed + lease.renew_deadline);
        tokio::select! {
            _ = &mut shutdown => break Ended::Shutdown,
            r = &mut controller => break Ended::Controller(r),
            // Not only at the next tick: a renewal that failed fast just before the deadline
            // would otherwise leave us leading up to an interval past it.
            _ = tokio::time::sleep_until(deadline) => {
                break Ended::Lost(format!("no renewal within {:?}", lease.renew_deadline));
            }
            _ = ticker.tick() => {
                match renew(&elector, &lease, &mut last_renewed).await {
                    Renewal::Held => {}
                    Renewal::Lost(why) => break Ended::Lost(why),
                }
            }
        }
    };
    let join = |r: Result<Result<(), OperatorError>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Err(OperatorError::Task(e.to_string())))
    };
    match ended {
        Ended::Shutdown => {
            let _ = stop_tx.send(());
            // Reconciles in flight finish while we still hold the lease — renewing it meanwhile,
            // and no longer than the renew deadline — then hand it over.
            let drained = tokio::time::Instant::now() + lease.renew_deadline;
            let result = loop {
                let deadline = tokio::time::Instant::from_std(last_renewed + lease.renew_deadline);
                tokio::select! {
                    r = &mut controller => break join(r),
                    _ = tokio::time::sleep_until(drained.min(deadline)) => {
                        tracing::warn!("the controller did not stop in time: stopping it");
                        controller.abort();
                        let _ = (&mut controller).await;
                        break Ok(());
                    }
                    _ = ticker.tick() => {
                        if let Renewal::Lost(why) = renew(&elector, &lease, &mut last_renewed).await {
                            tracing::warn!(%why, "lost the lease while stopping: stopping the controller");
                            controller.abort();
                            let _ = (&mut controller).await;
                            break Ok(());
                        }
                    }
                }
            };
            operator.set_role(Role::Stopped);
            if let Err(e) = release_within(&elector, lease.renew_interval).await {
                tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires");
            }
            result
        }
        Ended::Controller(r) => {
            operator.set_role(Role::Stopped);
            if let Err(e) = release_within(&elector, lease.renew_interval).await {
                tracing::warn!(error = %e, "could not release the lease");
            }
            join(r)
        }
        Ended::Lost(reason) => {
            operator.set_role(Role::Stopped);
            tracing::error!(identity = %lease.identity, %reason, "lost the lease: stopping the controller");
            let _ = stop_tx.send(());
            // At once: the new leader may already be reconciling, and two writers must not
            // overlap (dropping the handle would not stop the task).
            controller.abort();
            let _ = controller.await;
            Err(OperatorError::LeadershipLost {
                lease: format!("{}/{}", lease.namespace, lease.name),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn spec(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renewed.map(|s| MicroTime(t(s))),
            acquire_time: Some(MicroTime(t(0))),
            lease_duration_seconds: duration,
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    fn settings() -> LeaseSettings {
        LeaseSettings {
            name: "greenbatch-operator".into(),
            namespace: "greenbatch-system".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }

    #[test]
    fn another_holder_s_lease_expires_by_how_long_we_saw_it_unchanged() {
        // Renewed "an hour ago" by our clock (a skewed holder clock, or ours): seen changing a
        // second ago, it is alive.
        let held = spec(Some("other"), Some(-3600), Some(15));
        let by_clock = decide(Some(&held), "me", t(0), 15);
        assert_eq!(by_clock, Decision::TakeOver(TakeOver::Expired));
        let judged = |unchanged: u64| {
            judged_by_observation(
                by_clock.clone(),
                Some(&held),
                Duration::from_secs(unchanged),
                t(0),
                15,
            )
        };
        assert!(
            matches!(judged(1), Decision::Wait { ref holder, expires } if holder == "other" && expires == t(14)),
            "{:?}",
            judged(1)
        );
        // Unchanged for its whole duration: expired, whatever its renewTime says.
        assert_eq!(judged(15), Decision::TakeOver(TakeOver::Expired));
        // Renewed "in the future" by our clock: still only its duration from when we saw it.
        let ahead = spec(Some("other"), Some(3600), Some(15));
        let wait = decide(Some(&ahead), "me", t(0), 15);
        assert_eq!(
            judged_by_observation(wait, Some(&ahead), Duration::from_secs(20), t(0), 15),
            Decision::TakeOver(TakeOver::Expired)
        );
        // Ours, released, or absent: as decided.
        let ours = spec(Some("me"), Some(0), Some(15));
        assert_eq!(
            judged_by_observation(Decision::Renew, Some(&ours), Duration::ZERO, t(0), 15),
            Decision::Renew
        );
    }

    #[test]
    fn decisions() {
        let wait = |expires| Decision::Wait {
            holder: "other".into(),
            expires: t(expires),
        };
        let cases: Vec<(&str, Option<LeaseSpec>, i64, Decision)> = vec![
            ("no lease", None, 100, Decision::Create),
            (
                "ours, fresh",
                Some(spec(Some("me"), Some(99), Some(15))),
                100,
                Decision::Renew,
            ),
            // Our own record (e.g. restarted with the same pod name): renew, nobody else took it.
            (
                "ours, expired",
                Some(spec(Some("me"), Some(0), Some(15))),
                100,
                Decision::Renew,
            ),
            (
                "other, fresh",
                Some(spec(Some("other"), Some(90), Some(15))),
                100,
                wait(105),
            ),
            (
                "other, 1 s before expiry",
                Some(spec(Some("other"), Some(86), Some(15))),
                100,
                wait(101),
            ),
            (
                "other, at expiry",
                Some(spec(Some("other"), Some(85), Some(15))),
                100,
                Decision::TakeOver(TakeOver::Expired),
            ),
            (
                "other, expired",
                Some(spec(Some("other"), Some(10), Some(15))),
                100,
                Decision::TakeOver(TakeOver::Expired),
            ),
            (
                "released",
                Some(spec(None, Some(99), Some(15))),
                100,
                Decision::TakeOver(TakeOver::Released),
            ),
            (
                "released, empty holder",
                Some(spec(Some(""), Some(99), Some(15))),
                100,
                Decision::TakeOver(TakeOver::Released),
            ),
            // The holder's own duration rules, not ours.
            (
                "other, long lease",
                Some(spec(Some("other"), Some(50), Some(60))),
                100,
                wait(110),
            ),
            (
                "other, no duration: ours (15 s)",
                Some(spec(Some("other"), Some(90), None)),
                100,
                wait(105),
            ),
            (
                "other, zero duration: ours",
                Some(spec(Some("other"), Some(90), Some(0))),
                100,
                wait(105),
            ),
            (
                "other, no renew time: from acquire",
                Some(spec(Some("other"), None, Some(15))),
                10,
                wait(15),
            ),
            (
                "other, no times at all",
                Some(LeaseSpec {
                    holder_identity: Some("other".into()),
                    ..Default::default()
                }),
                100,
                Decision::TakeOver(TakeOver::Expired),
            ),
        ];
        for (name, lease, now, want) in cases {
            assert_eq!(decide(lease.as_ref(), "me", t(now), 15), want, "{name}");
        }
    }

    #[test]
    fn specs_written() {
        let s = settings();
        let now = t(100);
        let created = next_spec(&Decision::Create, None, &s, now).unwrap();
        assert_eq!(created.holder_identity.as_deref(), Some("me"));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.renew_time, Some(MicroTime(now)));

        let old = spec(Some("other"), Some(10), Some(30));
        let taken = next_spec(&Decision::TakeOver(TakeOver::Expired), Some(&old), &s, now).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let mine = spec(Some("me"), Some(90), Some(15));
        let renewed = next_spec(&Decision::Renew, Some(&mine), &s, now).unwrap();
        assert_eq!(
            renewed.acquire_time, mine.acquire_time,
            "renewal keeps acquireTime"
        );
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        let w = Decision::Wait {
            holder: "other".into(),
            expires: now,
        };
        assert_eq!(next_spec(&w, Some(&old), &s, now), None);
    }

    #[test]
    fn settings_validation() {
        assert!(settings().validate().is_ok());
        let bad: Vec<(&str, LeaseSettings)> = vec![
            (
                "empty identity",
                LeaseSettings {
                    identity: String::new(),
                    ..settings()
                },
            ),
            (
                "fractional duration",
                LeaseSettings {
                    lease_duration: Duration::from_millis(15_500),
                    ..settings()
                },
            ),
            (
                "zero interval",
                LeaseSettings {
                    renew_interval: Duration::ZERO,
                    ..settings()
                },
            ),
            (
                "interval >= deadline",
                LeaseSettings {
                    renew_interval: Duration::from_secs(10),
                    ..settings()
                },
            ),
            (
                "deadline >= duration",
                LeaseSettings {
                    renew_deadline: Duration::from_secs(15),
                    ..settings()
                },
            ),
        ];
        for (name, s) in bad {
            assert!(s.validate().is_err(), "{name}");
        }
    }
}
