//! The plan's decisions from what the serving pods measured (pure): how many replicas to run and
//! why, the observed numbers for status, and whether they have drifted from the profile's
//! prediction.

use crate::load::LoadObservation;
use crate::names::REPROFILE_ANNOTATION;
use crate::resources;
use greenbatch_core::energy_model::{predict_config, resize_replicas, size_replicas};
use greenbatch_core::select::fmt_rate;
use greenbatch_core::{ProfileTable, ReplicaRange, Selection};
use greenbatch_crds::inference_service::{ObservedServing, PendingScaleDown, ReplicaStatus};

/// Observed joules per inference this many times above (or below 1/this of) the profile's prediction
/// for the same load and batching is a drift worth a Warning Event.
pub const DRIFT_FACTOR: f64 = 2.0;

pub fn observed_serving(load: &LoadObservation, now: &str) -> ObservedServing {
    ObservedServing {
        requests_per_second: Some(load.requests_per_second),
        inferences_per_second: Some(load.inferences_per_second),
        refused_per_second: Some(load.refused_per_second),
        joules_per_inference: load.joules_per_inference,
        energy_meter: load.energy_meter.clone(),
        // Filled in once the profile and the SLO are known (see `predicted_joules`, `slo_note`).
        predicted_joules_per_inference: None,
        profile_measured_at: None,
        latency_at_slo_percentile_ms: None,
        latency_p99_ms: load.latency_p99_ms,
        max_batch_size: load.max_batch_size,
        max_queue_delay_ms: load.max_queue_delay_ms,
        forward_ms_per_batch: load.forward_ms_per_batch,
        run_batch_size: load.run_batch_size,
        // Filled in once the profile is known (see `predicted_forward_ms`).
        predicted_forward_ms_per_batch: None,
        executor_busy: load.executor_busy,
        pods: Some(load.pods),
        window_seconds: Some(load.window_seconds),
        observed_at: Some(now.to_string()),
    }
}

/// What the profile predicts for the batching the pods ran (their cap and mean delay), the pods
/// measured and the rate they served.
pub fn predicted_joules(
    table: &ProfileTable,
    percentile: greenbatch_core::Percentile,
    load: &LoadObservation,
) -> Option<f64> {
    predict_config(
        table,
        percentile,
        load.max_batch_size?,
        load.max_queue_delay_ms? / 1000.0,
        load.pods,
        // Served, not asked for: the measured joules are divided by the items served.
        load.served_per_second,
    )?
    .joules_per_inference
}

/// The observation in status before this one, if it is the window just before: at most
/// `PREVIOUS_WINDOWS` observe intervals old. A reading kept through a rollout, a leader change or
/// a quiet spell says nothing about whether a condition holds "two windows in a row".
pub fn previous_observation<'a>(
    old: Option<&'a ObservedServing>,
    now: &str,
    interval: std::time::Duration,
) -> Option<&'a ObservedServing> {
    let old = old?;
    let at = chrono::DateTime::parse_from_rfc3339(old.observed_at.as_deref()?).ok()?;
    let now = chrono::DateTime::parse_from_rfc3339(now).ok()?;
    let age = (now - at).to_std().ok()?;
    (age <= interval.mul_f64(PREVIOUS_WINDOWS)).then_some(old)
}

/// How many observe intervals back "the window before" may lie (reconciles run late, not early).
const PREVIOUS_WINDOWS: f64 = 2.5;

/// What parted from the profile, and by how much (observed over predicted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Drift {
    /// Joules per inference (needs an energy meter).
    Energy(f64),
    /// The model's own time per batch (needs none): another GPU than profiled, a throttled or
    /// shared one, another driver.
    ModelTime(f64),
}

impl Drift {
    pub fn ratio(self) -> f64 {
        match self {
            Drift::Energy(r) | Drift::ModelTime(r) => r,
        }
    }

    /// What drifted, as a note says it.
    pub fn what(self) -> &'static str {
        match self {
            Drift::Energy(_) => "joules per inference",
            Drift::ModelTime(_) => "the model's time per batch",
        }
    }
}

/// The model's time per batch drifts only when it is also this far off the profile, in ms.
pub const MODEL_TIME_DRIFT_MIN_MS: f64 = 1.0;

/// Measured over predicted, when they part by more than `DRIFT_FACTOR`.
fn out_of_band(measured: f64, predicted: f64) -> Option<f64> {
    let ratio = measured / predicted;
    (predicted > 0.0 && ratio.is_finite() && !(1.0 / DRIFT_FACTOR..=DRIFT_FACTOR).contains(&ratio))
        .then_some(ratio)
}

/// What the pods measured that parts from the profile by more than `DRIFT_FACTOR`: energy per
/// inference first, else the model's time per batch.
pub fn drift(seen: &ObservedServing) -> Option<Drift> {
    let energy = || {
        out_of_band(
            seen.joules_per_inference?,
            seen.predicted_joules_per_inference?,
        )
        .map(Drift::Energy)
    };
    let time = || {
        let (measured, predicted) = (
            seen.forward_ms_per_batch?,
            seen.predicted_forward_ms_per_batch?,
        );
        // A sub-millisecond model pays a fixed cost per call in a server that its profile's
        // back-to-back runs do not (cold caches between requests): a ratio alone would call that
        // drift.
        if (measured - predicted).abs() < MODEL_TIME_DRIFT_MIN_MS {
            return None;
        }
        out_of_band(measured, predicted).map(Drift::ModelTime)
    };
    energy().or_else(time)
}

/// The profile's median latency of one batch of `rows` (fractional: a mean), interpolated linearly
/// between the two sizes it measured around it; `None` outside the sizes it measured.
pub fn predicted_forward_ms(table: &ProfileTable, rows: f64) -> Option<f64> {
    let mut measured: Vec<(f64, f64)> = table
        .rows
        .iter()
        .map(|r| (f64::from(r.batch_size), r.latency_ms.p50))
        .collect();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(&(_, ms)) = measured.iter().find(|(b, _)| *b == rows) {
        return Some(ms);
    }
    measured.windows(2).find_map(|pair| {
        let ((b0, t0), (b1, t1)) = (pair[0], pair[1]);
        (b0 < rows && rows < b1).then(|| t0 + (t1 - t0) * (rows - b0) / (b1 - b0))
    })
}

/// The Event note when observation and prediction have just parted (not on every window after).
pub fn drift_note(
    seen: &ObservedServing,
    before: Option<&ObservedServing>,
    load: &LoadObservation,
    profile: &str,
    reprofiles_on_drift: bool,
) -> Option<String> {
    let drifted = drift(seen)?;
    if before.and_then(drift).is_some() {
        return None;
    }
    let next = if reprofiles_on_drift {
        "spec.onDrift: Reprofile measures again if the next observation drifts too".to_string()
    } else {
        format!("set a new {REPROFILE_ANNOTATION} token to measure again")
    };
    let ratio = resources::fmt_num(drifted.ratio());
    Some(match drifted {
        Drift::Energy(_) => format!(
            "observed {} J/inference serving {} inferences/s on {} pod(s) (batch cap {}, max queue delay {} ms); EnergyProfile {profile} predicts {} ({ratio}x): the profile may no longer describe this model or hardware; {next}",
            resources::fmt_num(seen.joules_per_inference?),
            fmt_rate(load.served_per_second),
            load.pods,
            load.max_batch_size?,
            resources::fmt_num(load.max_queue_delay_ms?),
            resources::fmt_num(seen.predicted_joules_per_inference?),
        ),
        Drift::ModelTime(_) => format!(
            "the model ran {} ms per batch of {} rows on {} pod(s); EnergyProfile {profile} measured {} ms at that size ({ratio}x): the profile may no longer describe this hardware (another GPU, a throttled or shared one, another driver); {next}",
            resources::fmt_num(seen.forward_ms_per_batch?),
            resources::fmt_num(seen.run_batch_size?),
            load.pods,
            resources::fmt_num(seen.predicted_forward_ms_per_batch?),
        ),
    })
}

/// The Event note when the observed latency at the SLO's percentile has just gone over the SLO
/// (not on every window after).
pub fn slo_note(
    seen: &ObservedServing,
    before: Option<&ObservedServing>,
    slo: &greenbatch_core::Slo,
    load: &LoadObservation,
) -> Option<String> {
    let over = |o: &ObservedServing| {
        o.latency_at_slo_percentile_ms
            .is_some_and(|ms| ms > slo.latency_ms())
    };
    if !over(seen) || before.is_some_and(over) {
        return None;
    }
    Some(format!(
        "observed {} latency {} ms over the last {} s, above the SLO {slo}, at {} inferences/s on {} pod(s) (batch cap {}, max queue delay {} ms)",
        slo.percentile(),
        resources::fmt_num(seen.latency_at_slo_percentile_ms?),
        resources::fmt_num(load.window_seconds),
        fmt_rate(load.inferences_per_second),
        load.pods,
        load.max_batch_size
            .map_or("?".to_string(), |b| b.to_string()),
        load.max_queue_delay_ms
            .map_or("?".to_string(), resources::fmt_num),
    ))
}

/// A pod's model thread is read for its capacity only when busy at least this share of the window
/// (or the target utilisation, when higher, up to [`MAX_BUSY_TO_LEARN_CAPACITY`]): a device that
/// mostly idles runs slower per batch (clocks down) than it does near capacity.
pub const MIN_BUSY_TO_LEARN_CAPACITY: f64 = 0.5;
/// ...and the bar never rises above this, so a target utilisation of 1 does not switch it off.
pub const MAX_BUSY_TO_LEARN_CAPACITY: f64 = 0.9;
/// Batches with at least this share of the cap in items count as full.
pub const FULL_BATCH_SHARE: f64 = 0.9;

/// What one pod serves at `batch_size` with its model thread never idle, from the pods whose
/// threads ran full batches at that cap and were busy enough (mean over them): the time a full
/// batch takes there, host work included. `None` when no pod qualifies — in particular when
/// batches are small, where a thread can be busy at a fraction of what it could serve (the
/// batcher runs batches back to back whenever its queue delay is shorter than a batch).
pub fn thread_capacity(
    load: &LoadObservation,
    batch_size: u32,
    target_utilisation: f64,
) -> Option<f64> {
    let busy_enough =
        target_utilisation.clamp(MIN_BUSY_TO_LEARN_CAPACITY, MAX_BUSY_TO_LEARN_CAPACITY);
    let full = FULL_BATCH_SHARE * f64::from(batch_size);
    let readings: Vec<f64> = load
        .threads
        .iter()
        .filter(|t| {
            t.busy >= busy_enough
                && t.max_batch_size == Some(batch_size)
                && t.items_per_batch.is_some_and(|n| n >= full)
        })
        .map(|t| t.served_per_busy_second)
        .filter(|c| c.is_finite() && *c > 0.0)
        .collect();
    (!readings.is_empty()).then(|| readings.iter().sum::<f64>() / readings.len() as f64)
}

/// Pods refusing (429, queue full) more than this share of the items asked for are past their
/// capacity.
const REFUSED_SHARE: f64 = 0.02;

/// Pods refusing `refused` of `asked` items per second are past their capacity.
fn refusing(refused: f64, asked: f64) -> bool {
    refused > REFUSED_SHARE * asked
}

/// The pods refused work for capacity in this observation (`REFUSED_SHARE` of the demand or more).
pub fn past_capacity(seen: &ObservedServing) -> bool {
    match (seen.refused_per_second, seen.inferences_per_second) {
        (Some(refused), Some(asked)) => refusing(refused, asked),
        _ => false,
    }
}

/// A replica count after the scale-down delay: what to run, why, and the scale-down still waiting.
#[derive(Debug, PartialEq)]
pub struct Stabilised {
    pub count: u32,
    pub reason: String,
    pub pending: Option<PendingScaleDown>,
}

/// Holds a scale-down back until the load has asked for fewer replicas `delay` on end, then goes
/// to the most it asked for meanwhile; more replicas, a lower `spec.replicas.max` (the count is
/// cut to it at once, the rest waits) or a delay of zero pass at once. `decided` is
/// [`replicas_for`]'s count for this reconcile, `current` the count running (`None`: not serving
/// yet) and `fresh` whether this reconcile measured the whole load (a complete observation):
/// without one nothing new is known, and a wait goes on as it was. Without a parsable time the
/// decision passes as it is (nothing to measure the delay by).
#[allow(clippy::too_many_arguments)]
pub fn stabilise_scale_down(
    decided: u32,
    reason: String,
    current: Option<u32>,
    max: u32,
    pending: Option<&PendingScaleDown>,
    fresh: bool,
    at_least: Option<u32>,
    now: &str,
    delay: std::time::Duration,
) -> Stabilised {
    let pass = |reason: String| Stabilised {
        count: decided,
        reason,
        pending: None,
    };
    let delay_text = format!("{} s", delay.as_secs());
    let wait = |current: u32, to: u32, since: String, reason: &str| Stabilised {
        count: current,
        reason: format!(
            "kept at {current}: the load has asked for {to} since {since}; down once it has for {delay_text} (now {reason})"
        ),
        pending: Some(PendingScaleDown { to, since }),
    };
    let Some(current) = current.map(|c| c.min(max)) else {
        return pass(reason);
    };
    if decided > current || delay.is_zero() {
        return pass(reason);
    }
    if decided == current {
        // The whole load measured and asking for what runs: a wait ends. Not measured: it goes on,
        // down to no fewer than a partial window's lower bound asked for meanwhile ("the most
        // the load asked for"), and ends if that is what runs.
        return match pending.filter(|p| !fresh && p.to < current) {
            Some(p) => {
                let to = p.to.max(at_least.unwrap_or(0));
                if to >= current {
                    pass(reason)
                } else {
                    wait(current, to, p.since.clone(), &reason)
                }
            }
            None => pass(reason),
        };
    }
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let Some(at) = parse(now) else {
        return pass(reason);
    };
    // The wait goes on from when the load first asked for fewer (a time that does not parse, or
    // lies ahead, starts it afresh). Never above what runs (a `kubectl scale` below it meanwhile).
    let started = pending.and_then(|p| {
        parse(&p.since)
            .filter(|since| *since <= at)
            .map(|since| (p, since))
    });
    let (to, since, since_text) = match started {
        Some((p, since)) => (p.to.max(decided).min(current), since, p.since.clone()),
        None => (decided, at, now.to_string()),
    };
    let waited = (at - since).to_std().unwrap_or_default();
    if waited >= delay {
        return Stabilised {
            count: to,
            reason: if to == decided {
                reason
            } else {
                format!(
                    "{to}: the most the load asked for over the scale-down delay ({delay_text}); now {reason}"
                )
            },
            pending: None,
        };
    }
    if to == current {
        // The load asked for all that runs during the wait: nothing to go down to.
        return Stabilised {
            count: current,
            reason: format!("kept at {current} (now {reason})"),
            pending: None,
        };
    }
    wait(current, to, since_text, &reason)
}

/// The serving replicas to run, why, and the capacity learnt from pods refusing work.
pub struct ReplicaDecision {
    pub count: u32,
    pub reason: String,
    pub measured_capacity: Option<f64>,
    /// What a partial observation's rate (a lower bound) asks for, when it did not raise the
    /// count: a pending scale-down must not go below it.
    pub at_least: Option<u32>,
}

/// How many serving replicas, and why. Sized from the observed arrival rate when this reconcile
/// observed every serving pod twice (`core::energy_model::resize_replicas`: up at once, down with
/// headroom); a partial observation's rate is a lower bound and can only raise the count; without
/// one the count stays where it was, within the spec's range.
///
/// One replica's capacity is the profile's (the device's), unless the pods showed less:
/// - their model threads ran full batches at the selected cap while busy ([`thread_capacity`]):
///   the time a full batch takes in the pod, host work included, learnt before any request is
///   refused. One window suffices (a ratio of items to busy seconds does not depend on how much of
///   the window a burst filled). It bounds what is known from above — a limit outside the model
///   thread learnt from refusals stays when lower — and never goes below what a pod served;
/// - they refused work for capacity (429): then what each refusing pod served — a limit outside
///   the model thread (HTTP, decoding) that it does not measure. Learnt only when the pods refused
///   work in this complete observation *and* the one before (`refused_before`): a burst that fills
///   the queues for a moment refuses in one window, and the mean it served over that window says
///   little of what a pod can do — learnt from it, a low capacity would over-provision for good,
///   since pods sized to it never serve more.
///
/// That measurement (`measured`, carried in status while the profile and batch size stay) keeps
/// the count from falling back to the profile's optimism once more replicas spread the load. It is
/// raised whenever a pod serves more without refusing, and dropped once it reaches the profile's.
pub fn replicas_for(
    range: ReplicaRange,
    sel: &Selection,
    load: Option<&LoadObservation>,
    old: Option<&ReplicaStatus>,
    measured: Option<f64>,
    refused_before: bool,
    target_utilisation: f64,
) -> ReplicaDecision {
    // 0: not serving before (SLO unattainable, not yet deployed): nothing to keep.
    let current = old.map(|r| r.desired).filter(|d| *d > 0);
    let (min, max) = (range.min(), range.max());
    let kept = current.unwrap_or(min).clamp(min, max);
    let profiled = sel.choice.capacity_per_replica;
    let measured = match load.filter(|l| l.complete) {
        Some(l) if refusing(l.refused_per_second, l.inferences_per_second) => {
            if refused_before {
                l.refusing_pod_served_per_second.or(measured)
            } else {
                measured
            }
        }
        Some(l) => {
            // Served that much without refusing: a pod can do at least that.
            let served = l.busiest_pod_served_per_second;
            match thread_capacity(l, sel.choice.batch_size, target_utilisation) {
                Some(thread) => Some(measured.map_or(thread, |m| m.min(thread)).max(served)),
                None => measured.map(|m| m.max(served)),
            }
        }
        None => measured,
    }
    .filter(|m| m.is_finite() && *m > 0.0 && *m < profiled);
    let decision = |count: u32, reason: String| ReplicaDecision {
        count,
        reason,
        measured_capacity: measured,
        at_least: None,
    };
    if min == max {
        return decision(min, format!("{min}: spec.replicas fixes the count"));
    }
    let capacity = measured.unwrap_or(profiled);
    let sized = |n: u32, rate_value: f64, rate: String| {
        let bound = if n == max && rate_value > capacity * target_utilisation * f64::from(max) {
            " (spec.replicas.max)"
        } else if n == min {
            " (spec.replicas.min)"
        } else {
            ""
        };
        let source = if measured.is_some() {
            "measured in the serving pods"
        } else {
            "profiled"
        };
        format!(
            "{n}{bound} for {rate}: one replica serves up to {}/s at batch {} ({source}), kept below {}% busy",
            fmt_rate(capacity),
            sel.choice.batch_size,
            resources::fmt_num(target_utilisation * 100.0)
        )
    };
    match load {
        Some(load) if load.complete => {
            let rate = load.inferences_per_second;
            let current = current.unwrap_or(min);
            let n = resize_replicas(rate, capacity, target_utilisation, min, max, current);
            decision(
                n,
                sized(n, rate, format!("{} inferences/s observed", fmt_rate(rate))),
            )
        }
        // Part of the traffic unmeasured (pods starting, restarting or not answering): the rate is
        // a lower bound — enough to scale up on under a growing load, never to scale down.
        Some(load) => {
            let rate = load.inferences_per_second;
            let up = size_replicas(rate, capacity, target_utilisation, min, max);
            if up > kept {
                let what = format!(
                    "at least {} inferences/s (measured on {} pod(s), not all of them)",
                    fmt_rate(rate),
                    load.pods
                );
                decision(up, sized(up, rate, what))
            } else {
                ReplicaDecision {
                    at_least: Some(up),
                    ..decision(
                        kept,
                        format!(
                            "kept at {kept}: the last observation measured {} pod(s) twice, not all of them (pods starting, restarting or not answering)",
                            load.pods
                        ),
                    )
                }
            }
        }
        // Between observations the count and its reason stand (no status write for nothing new).
        None if current == Some(kept) => decision(
            kept,
            old.and_then(|r| r.reason.clone())
                .unwrap_or_else(|| format!("kept at {kept} until the next observation")),
        ),
        None if current.is_some() => decision(
            kept,
            format!("{kept}: spec.replicas changed; sized again at the next observation"),
        ),
        None => decision(
            kept,
            format!("{kept} (spec.replicas.min) until a load is observed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenbatch_core::{BatchRow, LatencyMs, MeterKind};

    fn table(rows: &[(u32, f64)]) -> ProfileTable {
        ProfileTable {
            meter: MeterKind::None,
            meter_note: None,
            idle_watts: None,
            rows: rows
                .iter()
                .map(|&(b, p50)| BatchRow {
                    batch_size: b,
                    latency_ms: LatencyMs {
                        p50,
                        p95: p50,
                        p99: None,
                    },
                    throughput_per_second: f64::from(b) / p50 * 1000.0,
                    avg_watts: None,
                    joules_per_inference: None,
                    joules_spread: None,
                    windows: 5,
                })
                .collect(),
            skipped: vec![],
        }
    }

    #[test]
    fn the_profile_s_time_per_batch_is_read_between_the_sizes_it_measured() {
        let t = table(&[(8, 3.0), (1, 2.0), (32, 6.0)]);
        assert_eq!(predicted_forward_ms(&t, 8.0), Some(3.0));
        assert_eq!(predicted_forward_ms(&t, 4.5), Some(2.5));
        assert_eq!(predicted_forward_ms(&t, 20.0), Some(4.5));
        // Outside what was measured: no guess.
        assert_eq!(predicted_forward_ms(&t, 0.5), None);
        assert_eq!(predicted_forward_ms(&t, 64.0), None);
    }

    #[test]
    fn a_scale_down_waits_unless_the_range_or_a_zero_delay_imposes_it() {
        let five_min = std::time::Duration::from_secs(300);
        let at = "2025-01-01T00:10:00Z";
        let go_partial =
            |at_least: Option<u32>, decided, current, pending: Option<PendingScaleDown>| {
                stabilise_scale_down(
                    decided,
                    "r".into(),
                    current,
                    8,
                    pending.as_ref(),
                    false,
                    at_least,
                    at,
                    five_min,
                )
            };
        let go_when = |fresh, decided, current, max, pending: Option<PendingScaleDown>, delay| {
            stabilise_scale_down(
                decided,
                "r".into(),
                current,
                max,
                pending.as_ref(),
                fresh,
                None,
                at,
                delay,
            )
        };
        let go = |decided, current, max, pending, delay| {
            go_when(true, decided, current, max, pending, delay)
        };
        let waiting = |to, since: &str| {
            Some(PendingScaleDown {
                to,
                since: since.into(),
            })
        };
        // Up, steady, or nothing running yet: as decided, no wait.
        assert_eq!(go(5, Some(3), 8, waiting(1, at), five_min).count, 5);
        assert_eq!(go(3, Some(3), 8, None, five_min).pending, None);
        assert_eq!(go(1, None, 8, None, five_min).count, 1);
        // spec.replicas.max lowered below the running count: cut to it at once, the rest waits.
        let s = go(2, Some(6), 4, None, five_min);
        assert_eq!((s.count, s.pending), (4, waiting(2, at)));
        assert_eq!(go(4, Some(6), 4, None, five_min).count, 4);
        assert_eq!(go(2, Some(6), 8, None, std::time::Duration::ZERO).count, 2);
        // Down: the wait starts now...
        let s = go(2, Some(6), 8, None, five_min);
        assert_eq!((s.count, s.pending), (6, waiting(2, at)));
        // ...goes on from when it started, at the most asked for meanwhile...
        let s = go(1, Some(6), 8, waiting(3, "2025-01-01T00:06:00Z"), five_min);
        assert_eq!(
            (s.count, s.pending),
            (6, waiting(3, "2025-01-01T00:06:00Z"))
        );
        // ...and ends after the delay.
        let s = go(1, Some(6), 8, waiting(3, "2025-01-01T00:05:00Z"), five_min);
        assert_eq!((s.count, s.pending), (3, None));
        // A reconcile that measured nothing new (no observation, a partial one: `replicas_for`
        // keeps the count) leaves a wait as it was; a complete one asking for what runs ends it.
        let on = waiting(2, "2025-01-01T00:06:00Z");
        let s = go_when(false, 6, Some(6), 8, on.clone(), five_min);
        assert_eq!((s.count, s.pending), (6, on.clone()));
        assert!(
            s.reason.starts_with("kept at 6: the load has asked for 2"),
            "{}",
            s.reason
        );
        assert_eq!(
            go_when(true, 6, Some(6), 8, on.clone(), five_min).pending,
            None
        );
        // A partial window meanwhile (one pod unanswered) whose rate alone asks for 5: the wait
        // goes on towards 5, not 2 — a burst that hit partial windows is not forgotten...
        let s = go_partial(Some(5), 6, Some(6), on.clone());
        assert_eq!(
            (s.count, s.pending),
            (6, waiting(5, "2025-01-01T00:06:00Z"))
        );
        // ...and one asking for what runs ends the wait.
        assert_eq!(go_partial(Some(6), 6, Some(6), on.clone()).pending, None);
        assert_eq!(go_partial(Some(1), 6, Some(6), on.clone()).pending, on);
        // Scaled below the wait's target meanwhile (kubectl scale): never a "scale-down" up.
        let s = go(1, Some(3), 8, waiting(4, "2025-01-01T00:05:00Z"), five_min);
        assert_eq!(s.count, 3);
        // A start time that does not parse, or lies ahead (a clock step), starts it afresh.
        for bad in ["yesterday", "2025-01-01T01:00:00Z"] {
            let s = go(2, Some(6), 8, waiting(4, bad), five_min);
            assert_eq!((s.count, s.pending), (6, waiting(2, at)), "{bad}");
        }
    }

    #[test]
    fn energy_drift_is_named_first_and_time_drift_needs_no_meter() {
        let seen = |j: Option<f64>, ms: Option<f64>| ObservedServing {
            joules_per_inference: j,
            predicted_joules_per_inference: Some(1.0),
            forward_ms_per_batch: ms,
            predicted_forward_ms_per_batch: Some(10.0),
            ..Default::default()
        };
        assert_eq!(
            drift(&seen(Some(3.0), Some(30.0))),
            Some(Drift::Energy(3.0))
        );
        assert_eq!(drift(&seen(None, Some(30.0))), Some(Drift::ModelTime(3.0)));
        assert_eq!(
            drift(&seen(Some(1.5), Some(4.0))),
            Some(Drift::ModelTime(0.4))
        );
        assert_eq!(drift(&seen(Some(1.5), Some(15.0))), None);
        assert_eq!(drift(&seen(None, None)), None);
        // 25x, but half a millisecond: the per-call cost of a tiny model, not another GPU.
        let tiny = ObservedServing {
            forward_ms_per_batch: Some(0.52),
            predicted_forward_ms_per_batch: Some(0.021),
            ..Default::default()
        };
        assert_eq!(drift(&tiny), None);
    }
}
