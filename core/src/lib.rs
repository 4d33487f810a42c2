//! The pure decision core of greenbatch.
//!
//! Nothing here touches Kubernetes, torch, a GPU, a clock or a file: every function maps values to
//! values, so the operator, the runtime and the tests all share one definition of "the best batching
//! configuration". The modules, bottom-up:
//!
//! - [`profile`]: the measured table (per batch size: latency percentiles, throughput, watts,
//!   joules per inference) and its vocabulary (meters, percentiles).
//! - [`stats`]: order statistics used to summarise repeated measurement windows.
//! - [`slo`]: a validated latency objective.
//! - [`energy_model`]: what a batch size costs at a given arrival rate (idle vs. dynamic energy).
//! - [`select`]: the selection policy: the least-energy configuration that meets the SLO, or the
//!   closest one with a reason when none does.
//! - [`exposition`]: the two Prometheus text formats (OpenMetrics, classic), and which to answer with.
//! - [`serving_metrics`]: the contract of a serving runtime's `/metrics` (series names, a parser).

pub mod energy_model;
pub mod exit_codes;
pub mod exposition;
pub mod profile;
pub mod select;
pub mod serving_metrics;
pub mod slo;
pub mod stats;

pub use profile::{BatchRow, LatencyMs, MeterKind, Percentile, ProfileTable, SkippedBatch};
pub use select::{
    BatchingMode, Choice, DecisionError, EnergyBasis, Policy, ReplicaRange, Selection, choose,
};
pub use slo::{Slo, SloError};
