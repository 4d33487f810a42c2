//! The load a service's serving pods report on their Prometheus `/metrics`: which pods to ask,
//! the counters read from each answer, and two scrapes differenced into rates, joules per
//! inference and p99 latency. Pure: text and API objects in, numbers out; `scrape` does the asking.

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// The runtime's metric names (classic Prometheus text, as `greenbatch-runtime serve` exposes them).
const REQUESTS: &str = "greenbatch_requests_total";
const INFERENCES: &str = "greenbatch_inferences_total";
const ENERGY: &str = "greenbatch_energy_joules_total";
const LATENCY_BUCKET: &str = "greenbatch_request_duration_seconds_bucket";
const MAX_BATCH: &str = "greenbatch_max_batch_size";
const MAX_DELAY: &str = "greenbatch_max_queue_delay_seconds";

/// The cumulative counters of one pod at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct PodCounters {
    /// Inference requests answered, any status.
    pub requests: f64,
    /// Items inferred.
    pub inferences: f64,
    /// Device energy; stays 0 on a pod without a meter.
    pub energy_joules: f64,
    /// Request-duration histogram: (upper bound in seconds, cumulative count), `+Inf` included.
    pub latency_buckets: Vec<(f64, f64)>,
    /// The batching the pod runs now (gauges; its adaptive batching moves them).
    pub max_batch_size: Option<f64>,
    pub max_queue_delay_seconds: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no {0} sample: not a greenbatch runtime's /metrics")]
    Missing(&'static str),
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
}

/// Every pod's counters from one round of scrapes, at one (monotonic) time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub at_seconds: f64,
    /// By pod uid: a restarted or replaced pod is a different key.
    pub pods: BTreeMap<String, PodCounters>,
    /// Serving pods asked that did not answer (their traffic is missing from `pods`).
    pub unanswered: usize,
}

/// What the pods served between two snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadObservation {
    pub requests_per_second: f64,
    pub inferences_per_second: f64,
    /// `None` without energy (no meter) or without inferences.
    pub joules_per_inference: Option<f64>,
    /// `None` without requests in the window.
    pub latency_p99_ms: Option<f64>,
    /// The largest batch cap among the pods measured, at the window's end.
    pub max_batch_size: Option<u32>,
    /// Their mean max queue delay at the window's end.
    pub max_queue_delay_ms: Option<f64>,
    /// Pods in both snapshots whose counters did not go back.
    pub pods: u32,
    pub window_seconds: f64,
    /// Both snapshots saw the same pods, every pod answered and none restarted: the rate is the
    /// whole service's and may size replicas. Otherwise part of the traffic went to pods measured
    /// once or not at all.
    pub complete: bool,
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// The value of label `name` in a `{a="x",b="y"}` label set (label values here hold no quotes).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// Reads the counters `plan` needs from a runtime's `/metrics` text.
pub fn parse(text: &str) -> Result<PodCounters, MetricsError> {
    let (mut requests, mut inferences, mut energy) = (None::<f64>, None, None);
    let (mut max_batch, mut max_delay) = (None, None);
    let mut buckets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |message: &str| MetricsError::Malformed {
            line: i + 1,
            message: message.to_string(),
        };
        let (series, rest) = match line.find('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => line
                .split_once(char::is_whitespace)
                .map(|(s, r)| (s, r.trim()))
                .ok_or_else(|| malformed("a sample without a value"))?,
        };
        let (name, labels) = match series.find('{') {
            Some(start) => (&series[..start], &series[start..]),
            None => (series, ""),
        };
        if ![
            REQUESTS,
            INFERENCES,
            ENERGY,
            LATENCY_BUCKET,
            MAX_BATCH,
            MAX_DELAY,
        ]
        .contains(&name)
        {
            continue;
        }
        // A sample may carry a timestamp after its value.
        let value = rest
            .split_whitespace()
            .next()
            .and_then(parse_value)
            .filter(|v| !v.is_nan() && *v >= 0.0)
            .ok_or_else(|| malformed(&format!("{name}: not a count: {rest:?}")))?;
        match name {
            REQUESTS => *requests.get_or_insert(0.0) += value,
            INFERENCES => inferences = Some(value),
            ENERGY => energy = Some(value),
            MAX_BATCH => max_batch = Some(value),
            MAX_DELAY => max_delay = Some(value),
            _ => {
                let le = label(labels, "le")
                    .and_then(parse_value)
                    .ok_or_else(|| malformed(&format!("{name}: no numeric `le` label")))?;
                buckets.push((le, value));
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(PodCounters {
        // A server that has answered nothing yet exposes no requests_total series.
        requests: requests.unwrap_or(0.0),
        inferences: inferences.ok_or(MetricsError::Missing(INFERENCES))?,
        energy_joules: energy.unwrap_or(0.0),
        latency_buckets: buckets,
        max_batch_size: max_batch,
        max_queue_delay_seconds: max_delay,
    })
}

/// The `q` quantile of a cumulative histogram, interpolated linearly inside the bucket it falls in
/// (as Prometheus' `histogram_quantile` does); in the `+Inf` bucket, the largest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let fraction = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * fraction);
        }
        if le.is_finite() {
            lower = le;
        }
        below = count;
    }
    Some(lower)
}

fn went_back(before: &PodCounters, after: &PodCounters) -> bool {
    after.requests < before.requests
        || after.inferences < before.inferences
        || after.energy_joules < before.energy_joules
}

/// What the pods served between `before` and `after`. `None` when the window is empty or no pod
/// was measured twice.
pub fn observe(before: &Snapshot, after: &Snapshot) -> Option<LoadObservation> {
    let window = after.at_seconds - before.at_seconds;
    if !(window.is_finite() && window > 0.0) {
        return None;
    }
    let (mut requests, mut inferences, mut energy) = (0.0, 0.0, 0.0);
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let mut pods = 0u32;
    let (mut cap, mut delays) = (None::<f64>, Vec::new());
    for (uid, now) in &after.pods {
        let Some(then) = before.pods.get(uid).filter(|then| !went_back(then, now)) else {
            continue;
        };
        pods += 1;
        if let Some(b) = now.max_batch_size {
            cap = Some(cap.map_or(b, |c| c.max(b)));
        }
        delays.extend(now.max_queue_delay_seconds);
        requests += now.requests - then.requests;
        inferences += now.inferences - then.inferences;
        energy += now.energy_joules - then.energy_joules;
        for &(le, count) in &now.latency_buckets {
            let earlier = then
                .latency_buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c);
            // Keyed by the bound's bits so that f64 bounds can index a map; ordered below.
            buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += (count - earlier).max(0.0);
        }
    }
    if pods == 0 {
        return None;
    }
    let mut merged: Vec<(f64, f64)> = buckets.into_values().collect();
    merged.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(LoadObservation {
        requests_per_second: requests / window,
        inferences_per_second: inferences / window,
        joules_per_inference: (energy > 0.0 && inferences > 0.0).then(|| energy / inferences),
        latency_p99_ms: histogram_quantile(0.99, &merged).map(|s| s * 1000.0),
        // Gauges hold whole batch sizes; the cast only drops a fraction that is not there.
        max_batch_size: cap.map(|c| c.round().clamp(0.0, f64::from(u32::MAX)) as u32),
        max_queue_delay_ms: (!delays.is_empty())
            .then(|| 1000.0 * delays.iter().sum::<f64>() / delays.len() as f64),
        pods,
        window_seconds: window,
        complete: pods as usize == after.pods.len()
            && pods as usize == before.pods.len()
            && before.unanswered == 0
            && after.unanswered == 0,
    })
}

/// A pod to scrape: its uid (the key of its counters), name (for logs) and `/metrics` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub uid: String,
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
            Some(Target {
                uid: p.metadata.uid.clone()?,
                name: p.metadata.name.clone().unwrap_or_default(),
                url: format!("http://{host}:{port}/metrics"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
