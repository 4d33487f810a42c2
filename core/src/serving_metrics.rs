//! The contract between a serving runtime's Prometheus `/metrics` and whoever reads it (the operator
//! sizing replicas, the load generator reading energy): the series names, and a parser from the
//! classic text exposition to the counters that matter. One definition, so a renamed series fails
//! the runtime's own test instead of silently blinding the operator.

/// Inference requests answered, by HTTP status code (label `code`).
pub const REQUESTS: &str = "greenbatch_requests_total";
/// Items inferred (a request may carry several).
pub const INFERENCES: &str = "greenbatch_inferences_total";
/// Items in every decoded infer request, served or refused for capacity: the arrival rate.
pub const REQUESTED_ITEMS: &str = "greenbatch_requested_items_total";
/// Items refused because the server's queue was full (429): past its capacity.
pub const REFUSED_ITEMS: &str = "greenbatch_refused_items_total";
/// Device energy while serving; stays 0 without a meter.
pub const ENERGY: &str = "greenbatch_energy_joules_total";
/// Request-duration histogram buckets (label `le`, seconds).
pub const LATENCY_BUCKET: &str = "greenbatch_request_duration_seconds_bucket";
/// The batch cap the server runs now.
pub const MAX_BATCH: &str = "greenbatch_max_batch_size";
/// The max queue delay the server runs now, seconds.
pub const MAX_DELAY: &str = "greenbatch_max_queue_delay_seconds";
/// Batches the server's model ran.
pub const BATCHES: &str = "greenbatch_batches_total";
/// Time the server's model thread spent per stage (label `stage`; `forward` is the model's run).
pub const EXECUTOR_SECONDS: &str = "greenbatch_executor_seconds_total";
/// The stages of [`EXECUTOR_SECONDS`] in which the model thread works on a batch (a stage added
/// later — waiting, say — does not count as busy unless listed here).
pub const BUSY_STAGES: [&str; 3] = ["assemble", "forward", "respond"];
/// Rows added to batches to reach a warmed-up shape (so batches ran at (items + padding) rows).
pub const PADDING_ITEMS: &str = "greenbatch_padding_items_total";
/// 1, labelled `kind` with the meter behind [`ENERGY`] (`nvml-counter`, …, `synthetic`: a test
/// double, not a measurement; `none`).
pub const ENERGY_METER_INFO: &str = "greenbatch_energy_meter_info";

/// The counters and gauges of one server at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerCounters {
    /// Inference requests answered, any status.
    pub requests: f64,
    pub inferences: f64,
    /// Items asked for, including refused ones; `None` from a server that does not count them.
    pub requested_items: Option<f64>,
    /// Items refused for capacity (429); `None` from a server that does not count them.
    pub refused_items: Option<f64>,
    /// `None` from a server without an energy meter (the series is absent).
    pub energy_joules: Option<f64>,
    /// Request-duration histogram: (upper bound in seconds, cumulative count), `+Inf` included,
    /// ascending.
    pub latency_buckets: Vec<(f64, f64)>,
    pub max_batch_size: Option<f64>,
    pub max_queue_delay_seconds: Option<f64>,
    /// Batches run; `None` from a server that does not count them.
    pub batches: Option<f64>,
    /// Seconds the model spent running those batches (the `forward` stage).
    pub forward_seconds: Option<f64>,
    /// Seconds the model thread was busy, every stage (assembling, running and answering batches):
    /// over a window, how close a server is to what its one model thread can do.
    pub executor_seconds: Option<f64>,
    /// Padding rows those batches ran with.
    pub padding_items: Option<f64>,
    /// The meter behind `energy_joules` (its `kind` label), when the server says.
    pub energy_meter: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no {0} sample: not a greenbatch runtime's /metrics")]
    Missing(&'static str),
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// The value of label `name` in a `{a="x",b="y"}` label set (the runtime's label values hold no
/// quotes or commas).
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

const WANTED: [&str; 11] = [
    REQUESTS,
    INFERENCES,
    REQUESTED_ITEMS,
    REFUSED_ITEMS,
    ENERGY,
    LATENCY_BUCKET,
    MAX_BATCH,
    MAX_DELAY,
    BATCHES,
    EXECUTOR_SECONDS,
    PADDING_ITEMS,
];

/// Reads the series above from a classic Prometheus text exposition. Other series are skipped
/// whatever they hold; a series of ours with a value that is not a count is an error naming the
/// line. Several series of one name (labels) are summed — per bound for histogram buckets.
pub fn parse(text: &str) -> Result<ServerCounters, MetricsError> {
    let mut sums: [Option<f64>; 11] = [None; 11];
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut executor_busy: Option<f64> = None;
    let mut energy_meter: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name == ENERGY_METER_INFO {
            let rest = &line[name_end..];
            let labels = rest.find('}').map_or("", |end| &rest[..=end]);
            energy_meter = label(labels, "kind").map(str::to_string);
            continue;
        }
        let Some(slot) = WANTED.iter().position(|w| *w == name) else {
            continue;
        };
        let malformed = |message: String| MetricsError::Malformed {
            line: i + 1,
            message,
        };
        let rest = &line[name_end..];
        let (labels, value_part) = if rest.starts_with('{') {
            let end = rest
                .find('}')
                .ok_or_else(|| malformed(format!("{name}: unclosed labels")))?;
            (&rest[..=end], &rest[end + 1..])
        } else {
            ("", rest)
        };
        // A sample may carry a timestamp after its value.
        let value = value_part
            .split_whitespace()
            .next()
            .and_then(parse_value)
            // Counters and gauges here are finite and non-negative: `+Inf` or `1e309` would turn
            // every rate computed from them into NaN or infinity.
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| malformed(format!("{name}: not a count: {:?}", value_part.trim())))?;
        if name == LATENCY_BUCKET {
            // The latency of requests served (2xx): an overloaded server answers 429 at once, and
            // counting those would make its percentiles look better exactly when they are worst.
            if label(labels, "code").is_some_and(|code| !code.starts_with('2')) {
                continue;
            }
            let le = label(labels, "le")
                .and_then(parse_value)
                .filter(|le| !le.is_nan())
                .ok_or_else(|| malformed(format!("{name}: no numeric `le` label")))?;
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(bucket) => bucket.1 += value,
                None => buckets.push((le, value)),
            }
        } else if name == EXECUTOR_SECONDS {
            let stage = label(labels, "stage");
            if stage.is_some_and(|s| BUSY_STAGES.contains(&s)) {
                *executor_busy.get_or_insert(0.0) += value;
            }
            if stage == Some("forward") {
                *sums[slot].get_or_insert(0.0) += value;
            }
        } else {
            *sums[slot].get_or_insert(0.0) += value;
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let [
        requests,
        inferences,
        requested_items,
        refused_items,
        energy,
        _,
        max_batch,
        max_delay,
        batches,
        forward,
        padding,
    ] = sums;
    Ok(ServerCounters {
        // A server that has answered nothing yet exposes no requests series.
        requests: requests.unwrap_or(0.0),
        inferences: inferences.ok_or(MetricsError::Missing(INFERENCES))?,
        requested_items,
        refused_items,
        energy_joules: energy,
        latency_buckets: buckets,
        max_batch_size: max_batch,
        max_queue_delay_seconds: max_delay,
        batches,
        forward_seconds: forward,
        executor_seconds: executor_busy,
        padding_items: padding,
        energy_meter,
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
    let (mut lower, mut below, mut finite_bound) = (0.0, 0.0, false);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Only a `+Inf` bucket below the rank says nothing about the latency (Prometheus
                // answers NaN): no number rather than 0 ms.
                return finite_bound.then_some(lower);
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
            finite_bound = true;
        }
        below = count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_summed_over_codes_ignoring_timestamps_and_other_series() {
        let text = "# HELP x\nweird_line_without_value\ngreenbatch_requests_total{code=\"200\"} 10\ngreenbatch_requests_total{code=\"429\"} 5 1700000000000\ngreenbatch_inferences_total 12\ngreenbatch_requested_items_total 17\ngreenbatch_refused_items_total 5\nup{job=\"x\"} 1\n";
        let c = parse(text).unwrap();
        assert_eq!(
            (c.requests, c.inferences, c.requested_items, c.energy_joules),
            (15.0, 12.0, Some(17.0), None)
        );
        assert_eq!(c.refused_items, Some(5.0));
        assert!(c.latency_buckets.is_empty());
        // A fresh server has answered nothing: no requests series yet; an older one counts no
        // requested items.
        let fresh = parse("greenbatch_inferences_total 0").unwrap();
        assert_eq!((fresh.requests, fresh.requested_items), (0.0, None));
    }

    #[test]
    fn the_meter_behind_the_energy_is_read_from_its_info_series() {
        let text =
            "greenbatch_inferences_total 1\ngreenbatch_energy_meter_info{kind=\"synthetic\"} 1\n";
        assert_eq!(
            parse(text).unwrap().energy_meter.as_deref(),
            Some("synthetic")
        );
        // A runtime from before it says nothing: unknown, not a meter.
        let old = parse("greenbatch_inferences_total 1\n").unwrap();
        assert_eq!(old.energy_meter, None);
    }

    #[test]
    fn the_model_s_own_time_is_the_forward_stage_and_the_thread_s_is_every_stage() {
        let text = "greenbatch_inferences_total 90\ngreenbatch_batches_total 30\ngreenbatch_padding_items_total 6\ngreenbatch_executor_seconds_total{stage=\"assemble\"} 0.5\ngreenbatch_executor_seconds_total{stage=\"forward\"} 1.5\ngreenbatch_executor_seconds_total{stage=\"respond\"} 0.25\ngreenbatch_executor_seconds_total{stage=\"idle\"} 9\n";
        let c = parse(text).unwrap();
        assert_eq!(
            (c.batches, c.forward_seconds, c.padding_items),
            (Some(30.0), Some(1.5), Some(6.0))
        );
        // The thread's busy time is its working stages (not an unknown `idle` one).
        assert_eq!(c.executor_seconds, Some(2.25));
        // An older runtime without these series: none, not zero.
        let c = parse("greenbatch_inferences_total 1\n").unwrap();
        assert_eq!(
            (
                c.batches,
                c.forward_seconds,
                c.padding_items,
                c.executor_seconds
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn buckets_of_served_requests_are_summed_per_bound_and_sorted() {
        let text = "greenbatch_inferences_total 1\ngreenbatch_request_duration_seconds_bucket{le=\"+Inf\",code=\"200\"} 4\ngreenbatch_request_duration_seconds_bucket{code=\"200\",le=\"0.1\"} 3\ngreenbatch_request_duration_seconds_bucket{code=\"204\",le=\"0.1\"} 1\ngreenbatch_request_duration_seconds_bucket{code=\"204\",le=\"+Inf\"} 1\ngreenbatch_request_duration_seconds_bucket{code=\"429\",le=\"0.1\"} 7\ngreenbatch_request_duration_seconds_bucket{code=\"429\",le=\"+Inf\"} 7\ngreenbatch_request_duration_seconds_bucket{code=\"400\",le=\"+Inf\"} 2\n";
        let c = parse(text).unwrap();
        // Refused (429) and bad (400) requests are not in the latency of what was served.
        assert_eq!(c.latency_buckets, vec![(0.1, 4.0), (f64::INFINITY, 5.0)]);
    }

    #[test]
    fn anything_else_is_refused_with_the_line() {
        assert_eq!(
            parse("# nothing\nup 1\n"),
            Err(MetricsError::Missing(INFERENCES))
        );
        let bad = [
            ("greenbatch_inferences_total\n", 1),
            ("greenbatch_inferences_total lots\n", 1),
            (
                "greenbatch_inferences_total 3\ngreenbatch_energy_joules_total -1\n",
                2,
            ),
            ("greenbatch_inferences_total NaN\n", 1),
            ("greenbatch_inferences_total +Inf\n", 1),
            ("greenbatch_inferences_total 1e309\n", 1),
            (
                "greenbatch_inferences_total 1\ngreenbatch_request_duration_seconds_bucket{code=\"200\",le=\"NaN\"} 1\n",
                2,
            ),
            (
                "greenbatch_inferences_total 1\ngreenbatch_request_duration_seconds_bucket{code=\"200\"} 1\n",
                2,
            ),
            (
                "greenbatch_inferences_total 1\ngreenbatch_requests_total{code=\"200\" 1\n",
                2,
            ),
        ];
        for (text, line) in bad {
            match parse(text) {
                Err(MetricsError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let b = [
            (0.01, 50.0),
            (0.02, 90.0),
            (0.05, 100.0),
            (f64::INFINITY, 100.0),
        ];
        // Rank 99 of 100 lies 9/10 of the way through the 0.02-0.05 bucket.
        let p99 = histogram_quantile(0.99, &b).unwrap();
        assert!((p99 - 0.047).abs() < 1e-12, "{p99}");
        let p50 = histogram_quantile(0.5, &b).unwrap();
        assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
        // Beyond the last finite bound: that bound (what Prometheus answers).
        let tail = [(0.01, 10.0), (f64::INFINITY, 20.0)];
        assert_eq!(histogram_quantile(0.99, &tail), Some(0.01));
        assert_eq!(histogram_quantile(0.99, &[(f64::INFINITY, 0.0)]), None);
        // Only a +Inf bucket: no latency to tell, not 0 ms.
        assert_eq!(histogram_quantile(0.99, &[(f64::INFINITY, 5.0)]), None);
        assert_eq!(histogram_quantile(0.99, &[]), None);
    }
}
