//! What a batching configuration costs at a given arrival rate.
//!
//! A GPU draws its idle power whether or not it is busy, so the energy of serving splits into a
//! static part, `replicas * P_idle / rate` per inference, and a dynamic part, the extra energy a batch
//! of size `b` costs over idling for its execution time: `E_b / b - P_idle * t_b / b` per inference,
//! where `E_b / b` is the measured joules per inference at full batches. At low load the static
//! part dominates whatever the batch size; at high load batching cuts the dynamic part and keeps a
//! replica out of overload.
//!
//! The realised batch at rate `λ` per replica with max queue delay `D` is about
//! `min(b, λ (D + t_b))`: requests arriving while the previous batch runs plus those arriving while
//! the batcher waits. Between measured batch sizes quantities are interpolated linearly.

use crate::profile::BatchRow;

/// One measured batch size with the numbers the model needs, all finite and positive.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatingPoint {
    pub batch_size: u32,
    /// Median execution time of one batch, seconds.
    pub exec_s: f64,
    /// Execution time at the SLO percentile, milliseconds: the most of this batch size's and every
    /// smaller one's, since a batcher capped at this size also runs smaller batches (at low load,
    /// mostly) — a table whose percentile falls with the batch size (launch-bound small batches,
    /// noise) would otherwise promise a latency the smaller batches miss.
    pub exec_pct_ms: f64,
    /// Measured joules per inference at full batches (idle power included).
    pub joules_per_inference: Option<f64>,
}

impl OperatingPoint {
    /// Inferences per second one replica sustains running full batches back to back.
    pub fn capacity_per_second(&self) -> f64 {
        f64::from(self.batch_size) / self.exec_s
    }

    /// The energy above idle that one inference costs at this batch size, never negative (a
    /// measured total below the idle baseline is noise, not negative work).
    pub fn dynamic_joules_per_inference(&self, idle_watts: f64) -> Option<f64> {
        let total = self.joules_per_inference?;
        Some((total - idle_watts * self.exec_s / f64::from(self.batch_size)).max(0.0))
    }
}

/// Builds the usable operating points of a table for a latency percentile: rows with a batch size of
/// at least one and finite, positive latencies. Duplicate batch sizes keep their first row. Sorted by
/// batch size. Returns the points and the batch sizes that were dropped.
pub fn operating_points(
    rows: &[BatchRow],
    percentile: crate::profile::Percentile,
) -> (Vec<OperatingPoint>, Vec<u32>) {
    let mut points: Vec<OperatingPoint> = Vec::with_capacity(rows.len());
    let mut dropped = Vec::new();
    for row in rows {
        let p50 = row.latency_ms.p50;
        let pct = row.latency_ms.at(percentile);
        let usable = row.batch_size >= 1
            && p50.is_finite()
            && p50 > 0.0
            && pct.is_some_and(|v| v.is_finite() && v > 0.0)
            && !points.iter().any(|p| p.batch_size == row.batch_size);
        if !usable {
            dropped.push(row.batch_size);
            continue;
        }
        let joules = row
            .joules_per_inference
            .filter(|j| j.is_finite() && *j > 0.0);
        points.push(OperatingPoint {
            batch_size: row.batch_size,
            exec_s: p50 / 1000.0,
            exec_pct_ms: pct.unwrap_or(p50),
            joules_per_inference: joules,
        });
    }
    points.sort_by_key(|p| p.batch_size);
    let mut slowest = 0.0f64;
    for p in &mut points {
        slowest = slowest.max(p.exec_pct_ms);
        p.exec_pct_ms = slowest;
    }
    (points, dropped)
}

/// Piecewise-linear interpolation of `f` over the points' batch sizes at a fractional batch `x`,
/// clamped to the first and last point outside their range. `points` must be sorted and non-empty.
pub fn interpolate(points: &[OperatingPoint], x: f64, f: impl Fn(&OperatingPoint) -> f64) -> f64 {
    let first = &points[0];
    if x <= f64::from(first.batch_size) {
        return f(first);
    }
    for pair in points.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (xa, xb) = (f64::from(a.batch_size), f64::from(b.batch_size));
        if x <= xb {
            let t = (x - xa) / (xb - xa);
            return f(a) + (f(b) - f(a)) * t;
        }
    }
    f(&points[points.len() - 1])
}

/// What one configuration does at a given load.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPrediction {
    /// Expected items per executed batch.
    pub realised_batch: f64,
    /// Fraction of time each replica's GPU is executing.
    pub utilisation: f64,
    /// Predicted joules per inference, static (idle) share included; `None` without energy data.
    pub joules_per_inference: Option<f64>,
}

/// Predicts a configuration (batch cap `point`, max queue delay `delay_s`, `replicas`) at `rate`
/// inferences per second spread evenly over the replicas. `points` are all operating points
/// (for interpolation at the realised batch); `idle_watts` of zero means "unknown" and yields
/// dynamic energy only. `rate` and `replicas` must be positive.
pub fn predict_at_rate(
    points: &[OperatingPoint],
    cap: &OperatingPoint,
    delay_s: f64,
    replicas: u32,
    rate: f64,
    idle_watts: f64,
) -> LoadPrediction {
    let per_replica = rate / f64::from(replicas);
    let realised = (per_replica * (delay_s + cap.exec_s)).clamp(1.0, f64::from(cap.batch_size));
    let below_cap: Vec<OperatingPoint> = points
        .iter()
        .filter(|p| p.batch_size <= cap.batch_size)
        .cloned()
        .collect();
    let exec_s = interpolate(&below_cap, realised, |p| p.exec_s);
    let utilisation = per_replica * exec_s / realised;
    let joules = if below_cap.iter().all(|p| p.joules_per_inference.is_some()) {
        let dynamic_of =
            |p: &OperatingPoint| p.dynamic_joules_per_inference(idle_watts).unwrap_or(0.0);
        let first = &below_cap[0];
        let dynamic = if realised < f64::from(first.batch_size) {
            // Below the smallest measured size a batch is taken to cost what that size's does
            // (the same time, as `exec_s` above): per item, more the fewer items share it.
            // Priced per item as if full, waiting to fill would look no cheaper than not waiting.
            dynamic_of(first) * f64::from(first.batch_size) / realised
        } else {
            interpolate(&below_cap, realised, dynamic_of)
        };
        Some(f64::from(replicas) * idle_watts / rate + dynamic)
    } else {
        None
    };
    LoadPrediction {
        realised_batch: realised,
        utilisation,
        joules_per_inference: joules,
    }
}

/// Replicas needed to keep each below `target_utilisation` at `rate`, given one replica's capacity,
/// clamped to `[min, max]`. Non-finite or non-positive inputs give `min`.
pub fn size_replicas(
    rate: f64,
    capacity_per_replica: f64,
    target_utilisation: f64,
    min: u32,
    max: u32,
) -> u32 {
    let max = max.max(min);
    if !(rate.is_finite()
        && rate > 0.0
        && capacity_per_replica.is_finite()
        && capacity_per_replica > 0.0)
    {
        return min;
    }
    let target = if target_utilisation.is_finite() && target_utilisation > 0.0 {
        target_utilisation.min(1.0)
    } else {
        1.0
    };
    let needed = (rate / (capacity_per_replica * target)).ceil();
    if needed >= f64::from(max) {
        max
    } else {
        (needed as u32).clamp(min, max)
    }
}

/// What a profile predicts for a configuration that ran: batch cap `cap`, max queue delay
/// `delay_s`, `replicas` sharing `rate` inferences per second. `None` when the table has no usable
/// row for that cap, or the rate or replicas are not positive. To check a prediction against what
/// serving measured.
pub fn predict_config(
    table: &crate::profile::ProfileTable,
    percentile: crate::profile::Percentile,
    cap: u32,
    delay_s: f64,
    replicas: u32,
    rate: f64,
) -> Option<LoadPrediction> {
    if !(rate.is_finite() && rate > 0.0 && replicas > 0 && delay_s.is_finite() && delay_s >= 0.0) {
        return None;
    }
    let (points, _) = operating_points(&table.rows, percentile);
    let point = points.iter().find(|p| p.batch_size == cap)?;
    let idle = table
        .idle_watts
        .filter(|w| w.is_finite() && *w >= 0.0)
        .unwrap_or(0.0);
    Some(predict_at_rate(
        &points, point, delay_s, replicas, rate, idle,
    ))
}

/// Fewer replicas only once they would stay under the target utilisation with this much more load
/// than observed: a rate hovering at a threshold must not flap the replica count (each flap starts
/// or stops a pod, and a new pod warms up before it serves).
pub const SCALE_DOWN_HEADROOM: f64 = 0.25;

/// [`size_replicas`] with hysteresis around the `current` count: more replicas as soon as the rate
/// needs them; fewer only when `(1 + SCALE_DOWN_HEADROOM) x rate` still fits in fewer. A rate of
/// zero (no traffic) scales down to `min`.
pub fn resize_replicas(
    rate: f64,
    capacity_per_replica: f64,
    target_utilisation: f64,
    min: u32,
    max: u32,
    current: u32,
) -> u32 {
    let needed = size_replicas(rate, capacity_per_replica, target_utilisation, min, max);
    let current = current.clamp(min, max.max(min));
    if needed >= current {
        return needed;
    }
    size_replicas(
        rate * (1.0 + SCALE_DOWN_HEADROOM),
        capacity_per_replica,
        target_utilisation,
        min,
        max,
    )
    .min(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_scale_up_at_once_and_down_only_with_headroom() {
        // 100 inferences/s per replica at 0.8 utilisation: 80/s each.
        let resize = |rate, current| resize_replicas(rate, 100.0, 0.8, 1, 5, current);
        assert_eq!(resize(170.0, 1), 3, "up at once");
        assert_eq!(resize(170.0, 3), 3);
        // 150/s needs 2 (1.875), but 150 x 1.25 = 187.5 needs 3: stay at 3.
        assert_eq!(resize(150.0, 3), 3, "no flap just under a threshold");
        // 120/s: 120 x 1.25 = 150 fits in 2.
        assert_eq!(resize(120.0, 3), 2);
        assert_eq!(resize(0.0, 4), 1, "no traffic: down to min");
        assert_eq!(resize(10_000.0, 1), 5, "capped at max");
        // A current count outside the range is brought into it.
        assert_eq!(resize(10.0, 9), 1);
        assert_eq!(resize_replicas(10.0, 100.0, 0.8, 2, 4, 0), 2);
    }

    fn point(b: u32, ms: f64, joules: f64) -> OperatingPoint {
        OperatingPoint {
            batch_size: b,
            exec_s: ms / 1000.0,
            exec_pct_ms: ms,
            joules_per_inference: Some(joules),
        }
    }

    #[test]
    fn interpolation_is_linear_between_points_and_clamped_outside() {
        let pts = [point(1, 1.0, 1.0), point(3, 3.0, 0.5)];
        assert_eq!(interpolate(&pts, 0.5, |p| p.exec_s * 1000.0), 1.0);
        assert!((interpolate(&pts, 2.0, |p| p.exec_s * 1000.0) - 2.0).abs() < 1e-12);
        assert_eq!(interpolate(&pts, 10.0, |p| p.exec_s * 1000.0), 3.0);
    }

    #[test]
    fn idle_power_dominates_at_low_load() {
        // resnet50 on an H200, batch 32: 5.36 ms, 0.0837 J/inference; idle 83 W.
        let pts = [point(1, 3.47, 0.594), point(32, 5.36, 0.0837)];
        let low = predict_at_rate(&pts, &pts[1], 0.005, 1, 100.0, 83.2);
        let high = predict_at_rate(&pts, &pts[1], 0.005, 1, 2000.0, 83.2);
        // 100 req/s: ~0.83 J of idle energy per request whatever the batch size.
        assert!(low.joules_per_inference.unwrap() > 0.8, "{low:?}");
        assert!(high.joules_per_inference.unwrap() < 0.2, "{high:?}");
        assert!(low.realised_batch < high.realised_batch);
        assert!(high.utilisation < 1.0);
    }

    #[test]
    fn a_configuration_that_ran_is_predicted_from_its_table() {
        use crate::profile::{LatencyMs, MeterKind, ProfileTable};
        let row = |b: u32, ms: f64, j: f64| BatchRow {
            batch_size: b,
            latency_ms: LatencyMs {
                p50: ms,
                p95: ms,
                p99: Some(ms),
            },
            throughput_per_second: f64::from(b) / ms * 1000.0,
            avg_watts: None,
            joules_per_inference: Some(j),
            joules_spread: None,
            windows: 5,
        };
        let table = ProfileTable {
            meter: MeterKind::NvmlCounter,
            meter_note: None,
            idle_watts: Some(83.2),
            rows: vec![row(1, 3.47, 0.594), row(32, 5.36, 0.0837)],
            skipped: vec![],
        };
        let p99 = crate::profile::Percentile::P99;
        let predicted = predict_config(&table, p99, 32, 0.005, 1, 100.0).unwrap();
        // By hand: batches of 100/s x (5 + 5.36) ms = 1.036 items; idle 83.2 W / 100/s = 0.832 J
        // plus the dynamic energy interpolated at 1.036 items (0.3053 J at batch 1) = 1.1370 J.
        assert!(
            (predicted.realised_batch - 1.036).abs() < 1e-9,
            "{predicted:?}"
        );
        let j = predicted.joules_per_inference.unwrap();
        assert!((j - 1.137_022_5).abs() < 1e-6, "{j}");
        let pts = [point(1, 3.47, 0.594), point(32, 5.36, 0.0837)];
        assert_eq!(
            predicted,
            predict_at_rate(&pts, &pts[1], 0.005, 1, 100.0, 83.2)
        );
        // Two replicas share the rate: each idles more, so more joules per inference.
        let two = predict_config(&table, p99, 32, 0.005, 2, 100.0).unwrap();
        assert!(two.joules_per_inference > predicted.joules_per_inference);
        assert_eq!(
            predict_config(&table, p99, 8, 0.005, 1, 100.0),
            None,
            "no row for 8"
        );
        assert_eq!(predict_config(&table, p99, 32, 0.005, 0, 100.0), None);
        assert_eq!(predict_config(&table, p99, 32, 0.005, 1, 0.0), None);
        assert_eq!(predict_config(&table, p99, 32, f64::NAN, 1, 10.0), None);
    }

    #[test]
    fn replica_sizing_respects_bounds_and_bad_inputs() {
        assert_eq!(size_replicas(1000.0, 500.0, 0.8, 1, 10), 3);
        assert_eq!(size_replicas(1e9, 500.0, 0.8, 1, 4), 4);
        assert_eq!(size_replicas(1.0, 500.0, 0.8, 2, 4), 2);
        assert_eq!(size_replicas(f64::NAN, 500.0, 0.8, 1, 4), 1);
        assert_eq!(size_replicas(100.0, 0.0, 0.8, 1, 4), 1);
        assert_eq!(size_replicas(100.0, 10.0, f64::NAN, 1, 40), 10);
    }
}
