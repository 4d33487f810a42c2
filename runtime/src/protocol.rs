//! The measurement protocol: idle baseline, then per batch size a warm-up and repeated windows,
//! median and spread of joules per inference, and re-measurement while the spread is wide.
//!
//! Window edges are aligned to meter updates: the NVML counter moves only every ~100 ms, so a
//! window starts when the reading changes and ends, after at least `window` of work, at the next
//! change — the energy and the work counted then cover the same interval. The workload, meter and
//! clock are traits so the statistics are tested with fakes (`tests`), and the real runs use
//! libtorch, NVML and the system clock.

use crate::clock::Clock;
use crate::meter::EnergyMeter;
use crate::model::ForwardError;
use greenbatch_core::stats::{median, quantile, relative_spread};
use greenbatch_core::{BatchRow, LatencyMs, MeterKind, ProfileTable, SkippedBatch};
use std::time::Duration;

/// Something that runs one batch of a given size to completion (device synchronised).
pub trait Workload {
    fn run(&mut self, batch: u32) -> Result<(), ForwardError>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolConfig {
    pub windows: u32,
    pub window: Duration,
    pub warmup: Duration,
    /// Re-measure while (max - min) / median of J/inference exceeds this.
    pub max_spread: f64,
    /// Measurement rounds per batch size at most (each round adds `windows` windows).
    pub max_rounds: u32,
    /// Stop growing the batch once a batch's p50 exceeds this (e.g. 4x the SLO).
    pub stop_latency_ms: Option<f64>,
    /// Longest wait for a meter reading to change at a window edge.
    pub edge_timeout: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            windows: 5,
            window: Duration::from_millis(500),
            warmup: Duration::from_secs(1),
            max_spread: 0.1,
            max_rounds: 3,
            stop_latency_ms: None,
            edge_timeout: Duration::from_millis(300),
        }
    }
}

/// Progress reports for the log.
pub trait Observer {
    fn idle(&mut self, _watts: Option<f64>) {}
    fn row(&mut self, _row: &BatchRow, _rounds: u32) {}
    fn skipped(&mut self, _skip: &SkippedBatch) {}
}

struct Window {
    /// Inferences the window's energy paid for: whole batches, and the share of the last one the
    /// meter's reading covers (see [`Protocol::window`]).
    items: f64,
    seconds: f64,
    joules: Option<f64>,
}

pub struct Protocol<'a> {
    pub config: ProtocolConfig,
    pub clock: &'a dyn Clock,
    pub meter: Option<&'a mut dyn EnergyMeter>,
    /// Why there is no meter, when there is none.
    pub no_meter_reason: Option<String>,
}

impl Protocol<'_> {
    /// Measures every candidate (ascending) and returns the table.
    pub fn run(
        &mut self,
        workload: &mut dyn Workload,
        candidates: &[u32],
        observer: &mut dyn Observer,
    ) -> ProfileTable {
        let mut sizes: Vec<u32> = candidates.iter().copied().filter(|b| *b >= 1).collect();
        sizes.sort_unstable();
        sizes.dedup();

        let idle_watts = self.idle_baseline();
        observer.idle(idle_watts);
        let mut rows = Vec::new();
        let mut skipped = Vec::new();
        let mut stop: Option<String> = None;
        for &b in &sizes {
            if let Some(why) = &stop {
                let s = SkippedBatch {
                    batch_size: b,
                    reason: why.clone(),
                };
                observer.skipped(&s);
                skipped.push(s);
                continue;
            }
            match self.measure_batch(workload, b) {
                Ok((row, rounds)) => {
                    if let Some(limit) = self
                        .config
                        .stop_latency_ms
                        .filter(|l| row.latency_ms.p50 > *l)
                    {
                        stop = Some(format!(
                            "not measured: batch {b} already took p50 {:.1} ms, past the {limit:.0} ms stop limit",
                            row.latency_ms.p50
                        ));
                    }
                    observer.row(&row, rounds);
                    rows.push(row);
                }
                Err(e) => {
                    if let ForwardError::OutOfMemory(_) = e {
                        stop = Some(format!("not measured: batch {b} ran out of memory"));
                    }
                    let s = SkippedBatch {
                        batch_size: b,
                        reason: e.to_string(),
                    };
                    observer.skipped(&s);
                    skipped.push(s);
                }
            }
        }
        let (meter, meter_note) = match &self.meter {
            Some(m) => (m.kind(), m.note()),
            None => (
                MeterKind::None,
                Some(
                    self.no_meter_reason
                        .clone()
                        .unwrap_or_else(|| "no energy meter".into()),
                ),
            ),
        };
        ProfileTable {
            meter,
            meter_note,
            idle_watts,
            rows,
            skipped,
        }
    }

    /// Reads the meter until its value changes (or the edge timeout passes): the start of a tick.
    fn await_tick(&mut self) -> Option<(f64, Duration)> {
        let meter = self.meter.as_deref_mut()?;
        let first = meter.joules().ok()?;
        let start = self.clock.now();
        loop {
            let now = self.clock.now();
            let j = meter.joules().ok()?;
            if j != first || now - start >= self.config.edge_timeout {
                return Some((j, now));
            }
            self.clock.sleep(Duration::from_micros(200));
        }
    }

    fn idle_baseline(&mut self) -> Option<f64> {
        self.meter.as_ref()?;
        let mut watts = Vec::new();
        for _ in 0..self.config.windows {
            let Some((j0, t0)) = self.await_tick() else {
                continue;
            };
            self.clock.sleep(self.config.window);
            let Some((j1, t1)) = self.await_tick() else {
                continue;
            };
            let dt = (t1 - t0).as_secs_f64();
            if dt > 0.0 {
                watts.push((j1 - j0) / dt);
            }
        }
        median(&watts)
    }

    fn window(
        &mut self,
        workload: &mut dyn Workload,
        b: u32,
        latencies: &mut Vec<f64>,
    ) -> Result<Window, ForwardError> {
        let edge = self.await_tick();
        let t0 = edge.map_or_else(|| self.clock.now(), |e| e.1);
        let period = self
            .meter
            .as_deref()
            .map_or(Duration::ZERO, |m| m.update_period());
        let mut batches = 0u64;
        // The reading when the window's minimum length was reached; the window ends at the next change.
        let mut at_min_length: Option<f64> = None;
        let end = loop {
            let s = self.clock.now();
            workload.run(b)?;
            let e = self.clock.now();
            latencies.push((e - s).as_secs_f64() * 1000.0);
            batches += 1;
            if e - t0 < self.config.window {
                continue;
            }
            let (Some((j0, _)), Some(meter)) = (edge, self.meter.as_deref_mut()) else {
                break None;
            };
            let Ok(j) = meter.joules() else { break None };
            match at_min_length {
                None => at_min_length = Some(j),
                Some(previous) if j != previous => {
                    let moved = moved_within(s, e, period);
                    let share = if e > s {
                        (moved - s).as_secs_f64() / (e - s).as_secs_f64()
                    } else {
                        1.0
                    };
                    break Some((j - j0, moved, share));
                }
                // The meter stopped moving: use what it says if it moved at all in the window.
                Some(_) if e - t0 >= self.config.window + self.config.edge_timeout => {
                    break (j != j0).then_some((j - j0, e, 1.0));
                }
                Some(_) => {}
            }
        };
        let whole = (batches * u64::from(b)) as f64;
        Ok(match end {
            Some((joules, t_end, last_share)) => {
                // The reading covers the work up to `t_end`: the batches before the last, and
                // the share of the last one run by then.
                Window {
                    items: whole - f64::from(b) * (1.0 - last_share),
                    seconds: (t_end - t0).as_secs_f64(),
                    joules: Some(joules),
                }
            }
            None => Window {
                items: whole,
                seconds: (self.clock.now() - t0).as_secs_f64(),
                joules: None,
            },
        })
    }

    fn measure_batch(
        &mut self,
        workload: &mut dyn Workload,
        b: u32,
    ) -> Result<(BatchRow, u32), ForwardError> {
        let warm_start = self.clock.now();
        let mut warm_batches = 0;
        while warm_batches < 2 || self.clock.now() - warm_start < self.config.warmup {
            workload.run(b)?;
            warm_batches += 1;
        }
        // Each round is judged, and kept, on its own: pooled with an earlier round's outlier the
        // spread could never come back under the limit. When every round is wide, the row is the
        // tightest one's (its spread says it is wide).
        let mut rounds = 0;
        let mut tightest: Option<(f64, BatchRow)> = None;
        loop {
            rounds += 1;
            let mut windows = Vec::new();
            let mut latencies = Vec::new();
            for _ in 0..self.config.windows.max(1) {
                windows.push(self.window(workload, b, &mut latencies)?);
            }
            let row = summarise(b, &windows, &latencies);
            let Some(spread) = row.joules_spread.filter(|s| *s > self.config.max_spread) else {
                return Ok((row, rounds));
            };
            if tightest.as_ref().is_none_or(|(s, _)| spread < *s) {
                tightest = Some((spread, row));
            }
            if rounds >= self.config.max_rounds {
                let (_, row) = tightest.expect("a wide round was kept");
                return Ok((row, rounds));
            }
        }
    }
}

/// When a reading that moves every `period` last moved, given that it moved while the batch
/// `[s, e]` ran: somewhere in the batch's last `period` (all of it when shorter), so the middle of
/// that. Counting the whole batch instead (as if the reading covered it all) under-counts energy
/// per inference by up to a batch's share of the window — a bias towards large batches, whose
/// batches are long; the middle leaves an error of either sign that the windows' median evens out.
/// A meter that moves at every read (`period` zero) covered the whole batch.
fn moved_within(s: Duration, e: Duration, period: Duration) -> Duration {
    e - period.min(e - s) / 2
}

fn summarise(b: u32, windows: &[Window], latencies: &[f64]) -> BatchRow {
    let items: f64 = windows.iter().map(|w| w.items).sum();
    let seconds: f64 = windows.iter().map(|w| w.seconds).sum();
    let jpi: Vec<f64> = windows
        .iter()
        .filter_map(|w| w.joules.map(|j| j / w.items))
        .collect();
    let watts: Vec<f64> = windows
        .iter()
        .filter_map(|w| w.joules.filter(|_| w.seconds > 0.0).map(|j| j / w.seconds))
        .collect();
    // Energy is reported only when every window has it: a partial set would bias the median.
    let complete = jpi.len() == windows.len();
    BatchRow {
        batch_size: b,
        latency_ms: LatencyMs {
            p50: quantile(latencies, 0.50).unwrap_or(f64::NAN),
            p95: quantile(latencies, 0.95).unwrap_or(f64::NAN),
            p99: quantile(latencies, 0.99),
        },
        throughput_per_second: if seconds > 0.0 { items / seconds } else { 0.0 },
        avg_watts: if complete { median(&watts) } else { None },
        joules_per_inference: if complete { median(&jpi) } else { None },
        joules_spread: if complete {
            relative_spread(&jpi)
        } else {
            None
        },
        windows: windows.len() as u32,
    }
}

#[cfg(test)]
mod tests;
