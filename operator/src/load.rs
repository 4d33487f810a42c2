//! The load a service's serving pods report on their `/metrics`: which pods to ask, and two scrapes
//! differenced into rates, joules per inference, p99 latency and the batching the pods run. Pure:
//! API objects and counters in, numbers out; `scrape` does the asking, and
//! `greenbatch_core::serving_metrics` reads the text (the runtime's own tests hold it to that).

use greenbatch_core::serving_metrics::{ServerCounters, histogram_quantile};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// One pod's counters and when they were read (a monotonic clock, seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    pub at_seconds: f64,
    pub counters: ServerCounters,
}

/// Every pod's counters from one round of scrapes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// When the round started.
    pub at_seconds: f64,
    /// By [`Target::key`]: a replaced pod, or a restarted container, is a different key.
    pub pods: BTreeMap<String, PodSample>,
    /// Serving pods asked that did not answer (their traffic is missing from `pods`).
    pub unanswered: usize,
}

/// What the pods served between two snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadObservation {
    pub requests_per_second: f64,
    /// Items asked for per second, including those refused for capacity (429): the arrival rate.
    /// From a runtime that does not count refused items, the items served.
    pub inferences_per_second: f64,
    /// Items served per second.
    pub served_per_second: f64,
    /// Items refused for capacity (the pods' queues were full: 429) per second.
    pub refused_per_second: f64,
    /// The mean rate each refusing pod served at: what such a pod can really serve (its host path
    /// included), whatever the profile says. `None` when no pod refused work.
    pub refusing_pod_served_per_second: Option<f64>,
    /// The highest rate one pod served at: a pod's capacity is at least that.
    pub busiest_pod_served_per_second: f64,
    /// Energy over the inferences of the pods with a meter; `None` without energy (no meter) or
    /// without inferences.
    pub joules_per_inference: Option<f64>,
    /// The meters those joules come from, as the pods name them (sorted, comma-separated when
    /// they differ); `None` when no pod says.
    pub energy_meter: Option<String>,
    /// `None` without requests in the window.
    pub latency_p99_ms: Option<f64>,
    /// The window's request-duration histogram: (bound in seconds, cumulative count), summed over
    /// the pods, for other quantiles (the SLO's).
    pub latency_buckets: Vec<(f64, f64)>,
    /// The largest batch cap among the pods measured, at the window's end.
    pub max_batch_size: Option<u32>,
    /// Their mean max queue delay at the window's end.
    pub max_queue_delay_ms: Option<f64>,
    /// The model's own time per batch (the runtime's `forward` stage), milliseconds, over the
    /// window's batches; `None` below [`MIN_BATCHES_FOR_FORWARD_TIME`] batches (too few for a mean
    /// worth comparing) or from a runtime that does not export it.
    pub forward_ms_per_batch: Option<f64>,
    /// Rows per batch those batches ran with (items plus padding): where to read the profile.
    pub run_batch_size: Option<f64>,
    /// Share of the window the pods' model threads were busy (every stage), mean over the pods
    /// that export it; `None` from runtimes that do not.
    pub executor_busy: Option<f64>,
    /// Each pod's model thread over the window, for the pods that export its busy time.
    pub threads: Vec<ThreadReading>,
    /// Pods in both snapshots whose counters did not go back.
    pub pods: u32,
    /// The pods' mean time between their two reads.
    pub window_seconds: f64,
    /// Both snapshots saw the same pods, every pod answered and none restarted: the rate is the
    /// whole service's. Otherwise it covers only part of the traffic (a lower bound).
    pub complete: bool,
}

/// One pod's model thread over an observation window.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadReading {
    /// Share of the window it was busy (assembling, running and answering batches).
    pub busy: f64,
    /// Items it served per busy second. With full batches at a cap, what one pod serves at that
    /// cap with the thread never idle — its host path included, unlike the profile's device
    /// time. With small batches it says nothing of capacity: the batcher runs batches back to
    /// back whenever the queue delay is shorter than a batch, so a thread can be busy at a
    /// fraction of what it could serve.
    pub served_per_busy_second: f64,
    /// Mean items per batch; `None` from a runtime that does not count batches, or without any.
    pub items_per_batch: Option<f64>,
    /// Its batch cap at the window's end.
    pub max_batch_size: Option<u32>,
}

/// Fewer batches than this in a window say too little about the model's time per batch.
pub const MIN_BATCHES_FOR_FORWARD_TIME: f64 = 20.0;

fn went_back(before: &ServerCounters, after: &ServerCounters) -> bool {
    after.requests < before.requests
        || after.inferences < before.inferences
        || matches!((before.energy_joules, after.energy_joules), (Some(b), Some(a)) if a < b)
        || matches!((before.requested_items, after.requested_items), (Some(b), Some(a)) if a < b)
        || matches!((before.refused_items, after.refused_items), (Some(b), Some(a)) if a < b)
}

/// Cumulative histograms of pods summed over the union of their bounds. Pods of two runtime
/// versions (mid-rollout) can have different bounds: at a bound only some pods have, each other
/// pod counts what it had at its own largest bound below (all it knows to be that fast) — summing
/// only the pods that have the bound would make the cumulative counts dip, and the percentiles
/// jump.
fn merge_histograms(pods: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let mut bounds: Vec<f64> = pods.iter().flatten().map(|(le, _)| *le).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    bounds
        .into_iter()
        .map(|le| {
            let count = pods
                .iter()
                .map(|own| {
                    own.iter()
                        .take_while(|(l, _)| *l <= le)
                        .last()
                        .map_or(0.0, |(_, c)| *c)
                })
                .sum();
            (le, count)
        })
        .collect()
}

/// The share of its asked items a pod must refuse to count as at its capacity.
const REFUSING_SHARE: f64 = 0.02;

/// What the pods served between `before` and `after`. `None` when no pod was measured twice at
/// least `min_window_seconds` apart. A pod read twice in quick succession (its first answer came
/// late, its second early) is left out, and the window is then partial: one batch in a 50 ms gap
/// would read as a rate many times the real one.
pub fn observe(
    before: &Snapshot,
    after: &Snapshot,
    min_window_seconds: f64,
) -> Option<LoadObservation> {
    let (mut requests_rate, mut arrivals_rate, mut served_rate) = (0.0, 0.0, 0.0);
    let (mut refused_rate, mut refusing, mut busiest) = (0.0, Vec::new(), 0.0_f64);
    // Energy over the inferences of the pods that measure it: a pod without a meter adds none.
    let (mut metered_inferences, mut energy) = (0.0, 0.0);
    let mut meters: Vec<String> = Vec::new();
    // Each pod's latency histogram over the window (cumulative counts by bound).
    let mut pod_buckets: Vec<Vec<(f64, f64)>> = Vec::new();
    let (mut pods, mut window) = (0u32, 0.0);
    let (mut cap, mut delays) = (None::<f64>, Vec::new());
    // The model's time and the rows it ran, over the pods that export them.
    let (mut batches, mut forward_seconds, mut rows) = (0.0, 0.0, 0.0);
    let mut threads = Vec::new();
    for (key, now) in &after.pods {
        let Some(then) = before.pods.get(key) else {
            continue;
        };
        let dt = now.at_seconds - then.at_seconds;
        let (a, b) = (&now.counters, &then.counters);
        if !(dt.is_finite() && dt > 0.0 && dt >= min_window_seconds) || went_back(b, a) {
            continue;
        }
        pods += 1;
        window += dt;
        requests_rate += (a.requests - b.requests) / dt;
        let served = a.inferences - b.inferences;
        let asked = match (a.requested_items, b.requested_items) {
            (Some(a), Some(b)) => a - b,
            _ => served,
        };
        arrivals_rate += asked / dt;
        served_rate += served / dt;
        busiest = busiest.max(served / dt);
        if let (Some(a), Some(b)) = (a.refused_items, b.refused_items)
            && a > b
        {
            refused_rate += (a - b) / dt;
            // A pod that turned away a sliver of what it was asked (a burst on one connection)
            // was not at its capacity: counted in, its light load would pull the learnt
            // capacity down, and the extra replicas it brings would keep it down.
            if a - b >= REFUSING_SHARE * asked {
                refusing.push(served / dt);
            }
        }
        // A pod without a meter exports no energy series, or one that stays at 0 (the runtime's);
        // a pod with one always moves it (idle power alone does).
        if let (Some(a), Some(b)) = (a.energy_joules, b.energy_joules)
            && a > b
        {
            energy += a - b;
            metered_inferences += served;
            // The meters of the joules counted (a pod without energy says `none`: no part).
            if let Some(kind) = &now.counters.energy_meter
                && !meters.contains(kind)
            {
                meters.push(kind.clone());
            }
        }
        let mut own: Vec<(f64, f64)> = a
            .latency_buckets
            .iter()
            .map(|&(le, count)| {
                let earlier = b
                    .latency_buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0.0, |(_, c)| *c);
                (le, (count - earlier).max(0.0))
            })
            .collect();
        own.sort_by(|x, y| x.0.total_cmp(&y.0));
        pod_buckets.push(own);
        if let (Some(ab), Some(bb), Some(af), Some(bf)) =
            (a.batches, b.batches, a.forward_seconds, b.forward_seconds)
            && ab >= bb
            && af >= bf
        {
            batches += ab - bb;
            forward_seconds += af - bf;
            let padding = a.padding_items.unwrap_or(0.0) - b.padding_items.unwrap_or(0.0);
            rows += served + padding.max(0.0);
        }
        if let (Some(busy_after), Some(busy_before)) = (a.executor_seconds, b.executor_seconds)
            && busy_after > busy_before
        {
            let busy = busy_after - busy_before;
            let items_per_batch = match (a.batches, b.batches) {
                (Some(x), Some(y)) if x > y => Some(served / (x - y)),
                _ => None,
            };
            threads.push(ThreadReading {
                busy: (busy / dt).min(1.0),
                served_per_busy_second: served / busy,
                items_per_batch,
                // Gauges hold whole batch sizes; the cast only drops a fraction that is not there.
                max_batch_size: a
                    .max_batch_size
                    .map(|c| c.round().clamp(0.0, f64::from(u32::MAX)) as u32),
            });
        } else if a.executor_seconds.is_some() && b.executor_seconds.is_some() {
            // Exported, and idle all window.
            threads.push(ThreadReading {
                busy: 0.0,
                served_per_busy_second: 0.0,
                items_per_batch: None,
                max_batch_size: None,
            });
        }
        if let Some(c) = a.max_batch_size {
            cap = Some(cap.map_or(c, |m| m.max(c)));
        }
        delays.extend(a.max_queue_delay_seconds);
    }
    if pods == 0 {
        return None;
    }
    let buckets = merge_histograms(&pod_buckets);
    Some(LoadObservation {
        requests_per_second: requests_rate,
        inferences_per_second: arrivals_rate,
        served_per_second: served_rate,
        refused_per_second: refused_rate,
        refusing_pod_served_per_second: (!refusing.is_empty())
            .then(|| refusing.iter().sum::<f64>() / refusing.len() as f64),
        busiest_pod_served_per_second: busiest,
        joules_per_inference: (energy > 0.0 && metered_inferences > 0.0)
            .then(|| energy / metered_inferences),
        energy_meter: (!meters.is_empty()).then(|| {
            meters.sort();
            meters.join(",")
        }),
        latency_p99_ms: histogram_quantile(0.99, &buckets).map(|s| s * 1000.0),
        latency_buckets: buckets,
        // Gauges hold whole batch sizes; the cast only drops a fraction that is not there.
        max_batch_size: cap.map(|c| c.round().clamp(0.0, f64::from(u32::MAX)) as u32),
        max_queue_delay_ms: (!delays.is_empty())
            .then(|| 1000.0 * delays.iter().sum::<f64>() / delays.len() as f64),
        forward_ms_per_batch: (batches >= MIN_BATCHES_FOR_FORWARD_TIME)
            .then(|| 1000.0 * forward_seconds / batches),
        run_batch_size: (batches >= MIN_BATCHES_FOR_FORWARD_TIME).then(|| rows / batches),
        executor_busy: (!threads.is_empty())
            .then(|| threads.iter().map(|t| t.busy).sum::<f64>() / threads.len() as f64),
        threads,
        pods,
        window_seconds: window / f64::from(pods),
        complete: pods as usize == after.pods.len()
            && pods as usize == before.pods.len()
            && before.unanswered == 0
            && after.unanswered == 0,
    })
}

impl LoadObservation {
    /// Request latency at quantile `q` (0..=1) over the window, milliseconds; `None` without
    /// requests.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        histogram_quantile(q, &self.latency_buckets).map(|s| s * 1000.0)
    }
}

/// A pod to scrape: the key of its counters, its name (for logs) and its `/metrics` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The pod's uid and its containers' restart count: counters start again from zero after
    /// either changes, and a reset counter must not be read as less traffic.
    pub key: String,
    pub name: String,
    pub url: String,
}

/// The serving pods worth asking: running, ready, not being deleted, with an IP.
pub fn targets(pods: &[Pod], port: i32) -> Vec<Target> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if !(ready && status.phase.as_deref() == Some("Running")) {
                return None;
            }
            let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
            // An IPv6 address needs brackets in a URL.
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            let restarts: i64 = status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| i64::from(c.restart_count))
                .sum();
            Some(Target {
                key: format!("{}/{restarts}", p.metadata.uid.as_deref()?),
                name: p.metadata.name.clone().unwrap_or_default(),
                url: format!("http://{host}:{port}/metrics"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
