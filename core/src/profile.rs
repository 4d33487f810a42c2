//! The measured profile of one model on one GPU type: the table every decision is made from.
//!
//! These types are embedded verbatim in the `EnergyProfile` status, so their serde names are the API.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A latency percentile an SLO may be stated at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Percentile {
    P50,
    P95,
    P99,
}

impl Percentile {
    pub const ALL: [Percentile; 3] = [Percentile::P50, Percentile::P95, Percentile::P99];

    pub fn as_u32(self) -> u32 {
        match self {
            Percentile::P50 => 50,
            Percentile::P95 => 95,
            Percentile::P99 => 99,
        }
    }

    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_u32() == value)
    }

    /// The quantile in [0, 1].
    pub fn quantile(self) -> f64 {
        f64::from(self.as_u32()) / 100.0
    }
}

impl std::fmt::Display for Percentile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.as_u32())
    }
}

/// Where the energy numbers of a profile came from. Consumers must treat anything but the
/// NVML counter as less trustworthy, and `synthetic` as not a measurement at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MeterKind {
    /// NVML total-energy counter (Volta and newer): the preferred meter.
    NvmlCounter,
    /// Integrated NVML power samples: an averaged reading, can under-count; flagged.
    NvmlPower,
    /// Linux powercap RAPL (CPU package energy) for CPU hosts.
    Rapl,
    /// A deterministic power model for tests. Never a measurement.
    Synthetic,
    /// No meter was available: energy fields are null.
    None,
}

impl MeterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MeterKind::NvmlCounter => "nvml-counter",
            MeterKind::NvmlPower => "nvml-power",
            MeterKind::Rapl => "rapl",
            MeterKind::Synthetic => "synthetic",
            MeterKind::None => "none",
        }
    }
}

impl std::fmt::Display for MeterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Latency of one forward pass of a whole batch, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    /// Absent in data that did not record it (e.g. imported reference sweeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

impl LatencyMs {
    pub fn at(&self, percentile: Percentile) -> Option<f64> {
        match percentile {
            Percentile::P50 => Some(self.p50),
            Percentile::P95 => Some(self.p95),
            Percentile::P99 => self.p99,
        }
    }
}

/// One measured batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchRow {
    pub batch_size: u32,
    pub latency_ms: LatencyMs,
    /// Inferences (items, not batches) per second while running back-to-back batches.
    pub throughput_per_second: f64,
    /// Board power: the median over windows of each window's mean; null without a meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_watts: Option<f64>,
    /// Median over windows of joules per inference (total board energy, idle included); null without a meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joules_per_inference: Option<f64>,
    /// Relative spread of joules per inference over the windows: (max - min) / median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joules_spread: Option<f64>,
    /// Number of measurement windows the medians are taken over.
    pub windows: u32,
}

/// A candidate batch size that could not be measured, and why (e.g. out of memory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedBatch {
    pub batch_size: u32,
    pub reason: String,
}

/// The measured table of one (model, GPU type, runtime, precision).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileTable {
    pub meter: MeterKind,
    /// Why energy is null or approximate, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_note: Option<String>,
    /// Board power with the model loaded and no work running; null without a meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_watts: Option<f64>,
    pub rows: Vec<BatchRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedBatch>,
}

impl ProfileTable {
    pub fn row(&self, batch_size: u32) -> Option<&BatchRow> {
        self.rows.iter().find(|r| r.batch_size == batch_size)
    }

    /// The row with the least joules per inference, if energy was measured.
    pub fn most_efficient_row(&self) -> Option<&BatchRow> {
        self.rows
            .iter()
            .filter(|r| {
                r.joules_per_inference
                    .is_some_and(|j| j.is_finite() && j > 0.0)
            })
            .min_by(|a, b| {
                let (ja, jb) = (
                    a.joules_per_inference.unwrap_or(f64::INFINITY),
                    b.joules_per_inference.unwrap_or(f64::INFINITY),
                );
                ja.total_cmp(&jb).then(a.batch_size.cmp(&b.batch_size))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_round_trips_through_integers() {
        for p in Percentile::ALL {
            assert_eq!(Percentile::from_u32(p.as_u32()), Some(p));
        }
        assert_eq!(Percentile::from_u32(90), None);
        assert_eq!(Percentile::P99.to_string(), "p99");
    }

    fn row(batch_size: u32, joules: Option<f64>) -> BatchRow {
        BatchRow {
            batch_size,
            latency_ms: LatencyMs {
                p50: 1.0,
                p95: 1.0,
                p99: None,
            },
            throughput_per_second: 1.0,
            avg_watts: None,
            joules_per_inference: joules,
            joules_spread: None,
            windows: 5,
        }
    }

    #[test]
    fn the_most_efficient_row_is_the_least_energy_the_smaller_batch_on_a_tie() {
        let table = |rows: Vec<BatchRow>| ProfileTable {
            meter: MeterKind::Synthetic,
            meter_note: None,
            idle_watts: None,
            rows,
            skipped: vec![],
        };
        let t = table(vec![
            row(1, Some(0.5)),
            row(32, Some(0.08)),
            row(8, Some(0.08)),
            row(64, Some(f64::NAN)),
            row(128, Some(0.0)),
            row(256, None),
        ]);
        // 8 and 32 tie; NaN, 0 and missing energy are no measurement of the least.
        assert_eq!(t.most_efficient_row().map(|r| r.batch_size), Some(8));
        assert_eq!(table(vec![row(4, None)]).most_efficient_row(), None);
    }

    #[test]
    fn meter_kind_serialises_kebab_case() {
        let json = serde_json::to_string(&MeterKind::NvmlCounter).unwrap();
        assert_eq!(json, "\"nvml-counter\"");
        let back: MeterKind = serde_json::from_str("\"synthetic\"").unwrap();
        assert_eq!(back, MeterKind::Synthetic);
    }
}
