//! The selection policy: the batching configuration with the least (predicted) energy per
//! inference whose latency at the SLO percentile stays within the SLO, or — when none does — the
//! closest configuration and a reason a person can act on.
//!
//! Latency budget. A request waits at most the max queue delay `D` for its batch to fill, then runs
//! for `t_b` (at the SLO percentile). A share of the SLO (`Policy::headroom_fraction`, default 10%)
//! is held back for what the table does not see: waiting behind a batch already running, request
//! decoding, the network. A configuration is feasible iff `D + t_b <= SLO * (1 - headroom)`.
//!
//! Without a known arrival rate the pick is the feasible batch size with the least measured joules
//! per inference at full batches, with `D` as large as the budget allows (so batches can fill).
//! With a rate, every (batch cap, replicas, delay) is predicted with [`crate::energy_model`] and the
//! feasible one with the least predicted joules per inference wins; delays are chosen from a set that
//! does not depend on the SLO, so a looser SLO can only widen the choice, never make it cost more.

use crate::energy_model::{self, OperatingPoint};
use crate::profile::ProfileTable;
use crate::slo::{Slo, fmt_ms};

/// Most replica counts enumerated per decision; far beyond any real `max`, it bounds the work on
/// absurd input.
const MAX_REPLICAS_ENUMERATED: u32 = 4096;

/// The longest max queue delay chosen, and the longest the runtime takes: a minute for a batch to
/// fill is already more than any service waits for; a longer SLO leaves the rest unused.
pub const MAX_QUEUE_DELAY_MS: f64 = 60_000.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Share of the SLO held back for effects the profile does not measure, in [0, 0.9].
    pub headroom_fraction: f64,
    /// Highest fraction of time a replica may be busy at the predicted load, in (0, 1].
    pub target_utilisation: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            headroom_fraction: 0.1,
            target_utilisation: 0.8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaRange {
    min: u32,
    max: u32,
}

impl ReplicaRange {
    pub fn new(min: u32, max: u32) -> Result<Self, DecisionError> {
        if min == 0 || max < min {
            return Err(DecisionError::Replicas { min, max });
        }
        Ok(ReplicaRange { min, max })
    }
    pub fn single() -> Self {
        ReplicaRange { min: 1, max: 1 }
    }
    pub fn min(&self) -> u32 {
        self.min
    }
    pub fn max(&self) -> u32 {
        self.max
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchingMode {
    /// Choose among all profiled batch sizes.
    Auto,
    /// Serve at this batch size; the selection still reports what the best feasible one would cost.
    Fixed(u32),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    #[error("the profile has no rows: nothing was measured")]
    EmptyProfile,
    #[error(
        "no profile row has usable latencies at {percentile} (batch sizes dropped: {dropped:?})"
    )]
    NoUsableRows {
        percentile: crate::profile::Percentile,
        dropped: Vec<u32>,
    },
    #[error(
        "batching.batchSize {0} was not profiled: profile it or pick one of the measured sizes"
    )]
    FixedSizeNotProfiled(u32),
    #[error("replicas.min must be >= 1 and <= replicas.max, got min {min}, max {max}")]
    Replicas { min: u32, max: u32 },
    #[error("policy.{field} out of range: {value}")]
    Policy { field: &'static str, value: f64 },
}

/// What the energy comparison rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnergyBasis {
    /// Joules measured by a meter (see the profile's meter kind).
    Measured,
    /// No energy was measured: device time per inference stands in as the proxy, and all joule fields
    /// are `None`.
    LatencyProxy,
}

/// A batching configuration and what it is expected to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub batch_size: u32,
    pub max_queue_delay_ms: f64,
    /// Expected latency at the SLO percentile: queue delay plus execution.
    pub expected_latency_ms: f64,
    /// Expected joules per inference (at full batches, or at the given load).
    pub joules_per_inference: Option<f64>,
    pub replicas: u32,
    /// Inferences per second one replica sustains at full batches.
    pub capacity_per_replica: f64,
    /// Only with a load: expected items per batch and busy fraction per replica.
    pub realised_batch: Option<f64>,
    pub utilisation: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub choice: Choice,
    pub slo_attainable: bool,
    pub energy_basis: EnergyBasis,
    /// Joules per inference at batch 1, what the choice saves against: measured at full batches
    /// without a rate; with one, batch 1 predicted at that rate as the choice is (idle share
    /// included), so the two compare like for like.
    pub batch1_joules_per_inference: Option<f64>,
    /// In fixed mode: the best feasible automatic choice, for comparison.
    pub best_alternative: Option<Choice>,
    /// Batch sizes ignored because their row was unusable (non-finite latency, duplicate, ...).
    pub ignored_batch_sizes: Vec<u32>,
    /// One or two sentences saying why, with the numbers.
    pub reason: String,
}

impl Selection {
    /// How many times less energy per inference than batch 1, when both are known.
    pub fn saving_vs_batch1(&self) -> Option<f64> {
        let chosen = self.choice.joules_per_inference?;
        let b1 = self.batch1_joules_per_inference?;
        (chosen > 0.0).then(|| b1 / chosen)
    }
}

struct Candidate {
    choice: Choice,
    feasible: bool,
    /// Lower is better; joules or the latency proxy.
    cost: f64,
    /// How far outside the constraints, 0 when feasible.
    violation: f64,
}

/// Chooses a batching configuration. `arrival_rate` (inferences per second) is optional: without it,
/// or when it is not a positive finite number, the choice is made from full-batch costs alone.
pub fn choose(
    profile: &ProfileTable,
    slo: Slo,
    mode: BatchingMode,
    arrival_rate: Option<f64>,
    replicas: ReplicaRange,
    policy: &Policy,
) -> Result<Selection, DecisionError> {
    if !(0.0..=0.9).contains(&policy.headroom_fraction) {
        return Err(DecisionError::Policy {
            field: "headroomFraction",
            value: policy.headroom_fraction,
        });
    }
    if !(policy.target_utilisation > 0.0 && policy.target_utilisation <= 1.0) {
        return Err(DecisionError::Policy {
            field: "targetUtilisation",
            value: policy.target_utilisation,
        });
    }
    if profile.rows.is_empty() {
        return Err(DecisionError::EmptyProfile);
    }
    let (points, ignored) = energy_model::operating_points(&profile.rows, slo.percentile());
    if points.is_empty() {
        return Err(DecisionError::NoUsableRows {
            percentile: slo.percentile(),
            dropped: ignored,
        });
    }
    let basis = if points.iter().all(|p| p.joules_per_inference.is_some()) {
        EnergyBasis::Measured
    } else {
        EnergyBasis::LatencyProxy
    };
    let idle_watts = profile
        .idle_watts
        .filter(|w| w.is_finite() && *w >= 0.0)
        .unwrap_or(0.0);
    let rate = arrival_rate.filter(|r| r.is_finite() && *r > 0.0);
    let budget_ms = slo.latency_ms() * (1.0 - policy.headroom_fraction);
    let ctx = Ctx {
        points: &points,
        basis,
        idle_watts,
        budget_ms,
        replicas,
        policy,
    };

    let all: Vec<Candidate> = match rate {
        None => points.iter().map(|p| ctx.static_candidate(p)).collect(),
        Some(rate) => points
            .iter()
            .flat_map(|p| ctx.load_candidates(p, rate))
            .collect(),
    };
    let batch1_joules = match rate {
        None => points
            .iter()
            .find(|p| p.batch_size == 1)
            .and_then(|p| p.joules_per_inference),
        Some(_) => {
            let batch1: Vec<&Candidate> = all.iter().filter(|c| c.choice.batch_size == 1).collect();
            best(batch1.iter().copied())
                .or_else(|| (!batch1.is_empty()).then(|| closest(batch1.iter().copied())))
                .and_then(|c| c.choice.joules_per_inference)
        }
    };

    let (pool, best_alternative): (Vec<&Candidate>, Option<Choice>) = match mode {
        BatchingMode::Auto => (all.iter().collect(), None),
        BatchingMode::Fixed(size) => {
            let pool: Vec<&Candidate> =
                all.iter().filter(|c| c.choice.batch_size == size).collect();
            if pool.is_empty() {
                return Err(DecisionError::FixedSizeNotProfiled(size));
            }
            (pool, best(all.iter()).map(|c| c.choice.clone()))
        }
    };
    let picked = best(pool.iter().copied()).unwrap_or_else(|| closest(pool.iter().copied()));
    let reason = explain(
        picked,
        &slo,
        &ctx,
        rate,
        batch1_joules,
        best_alternative.as_ref(),
    );
    Ok(Selection {
        choice: picked.choice.clone(),
        slo_attainable: picked.feasible,
        energy_basis: basis,
        batch1_joules_per_inference: batch1_joules,
        best_alternative,
        ignored_batch_sizes: ignored,
        reason,
    })
}

struct Ctx<'a> {
    points: &'a [OperatingPoint],
    basis: EnergyBasis,
    idle_watts: f64,
    budget_ms: f64,
    replicas: ReplicaRange,
    policy: &'a Policy,
}

impl Ctx<'_> {
    fn static_candidate(&self, p: &OperatingPoint) -> Candidate {
        let headroom = self.budget_ms - p.exec_pct_ms;
        let feasible = headroom >= 0.0;
        // A batch of one is full the moment its request arrives: a max queue delay would never be
        // used, and reporting one would overstate the expected latency.
        let delay = if p.batch_size <= 1 {
            0.0
        } else {
            headroom.clamp(0.0, MAX_QUEUE_DELAY_MS)
        };
        let cost = match self.basis {
            EnergyBasis::Measured => p.joules_per_inference.unwrap_or(f64::INFINITY),
            EnergyBasis::LatencyProxy => p.exec_s / f64::from(p.batch_size),
        };
        Candidate {
            choice: Choice {
                batch_size: p.batch_size,
                max_queue_delay_ms: delay,
                expected_latency_ms: delay + p.exec_pct_ms,
                joules_per_inference: self.joules(p.joules_per_inference),
                replicas: self.replicas.min,
                capacity_per_replica: p.capacity_per_second(),
                realised_batch: None,
                utilisation: None,
            },
            feasible,
            cost,
            violation: (-headroom).max(0.0) / self.budget_ms.max(f64::MIN_POSITIVE),
        }
    }

    /// Candidates for one batch cap at a known rate: each replica count in range, each with two
    /// delays — none, and just long enough to fill the cap — both independent of the SLO.
    fn load_candidates(&self, cap: &OperatingPoint, rate: f64) -> Vec<Candidate> {
        let hi = self
            .replicas
            .max
            .min(self.replicas.min.saturating_add(MAX_REPLICAS_ENUMERATED));
        let mut out = Vec::new();
        for replicas in self.replicas.min..=hi {
            let per_replica = rate / f64::from(replicas);
            let fill_s = (f64::from(cap.batch_size) / per_replica - cap.exec_s)
                .min(MAX_QUEUE_DELAY_MS / 1000.0);
            let delays: &[f64] = if fill_s > 0.0 && fill_s.is_finite() {
                &[0.0, fill_s]
            } else {
                &[0.0]
            };
            for &delay_s in delays {
                let pred = energy_model::predict_at_rate(
                    self.points,
                    cap,
                    delay_s,
                    replicas,
                    rate,
                    self.idle_watts,
                );
                let delay_ms = delay_s * 1000.0;
                let latency = delay_ms + cap.exec_pct_ms;
                let over_latency =
                    (latency - self.budget_ms).max(0.0) / self.budget_ms.max(f64::MIN_POSITIVE);
                let over_util = (pred.utilisation - self.policy.target_utilisation).max(0.0);
                let cost = match (self.basis, pred.joules_per_inference) {
                    (EnergyBasis::Measured, Some(j)) => j,
                    _ => pred.utilisation * f64::from(replicas) / rate,
                };
                out.push(Candidate {
                    choice: Choice {
                        batch_size: cap.batch_size,
                        max_queue_delay_ms: delay_ms,
                        expected_latency_ms: latency,
                        joules_per_inference: self.joules(pred.joules_per_inference),
                        replicas,
                        capacity_per_replica: cap.capacity_per_second(),
                        realised_batch: Some(pred.realised_batch),
                        utilisation: Some(pred.utilisation),
                    },
                    feasible: over_latency == 0.0 && over_util == 0.0,
                    cost,
                    violation: over_latency + over_util,
                });
            }
        }
        out
    }

    fn joules(&self, j: Option<f64>) -> Option<f64> {
        match self.basis {
            EnergyBasis::Measured => j,
            EnergyBasis::LatencyProxy => None,
        }
    }
}

fn cmp_f64(a: f64, b: f64) -> std::cmp::Ordering {
    a.total_cmp(&b)
}

/// The feasible candidate with the least cost; ties go to lower latency, then the smaller batch,
/// then fewer replicas (deterministic for equal inputs).
fn best<'a>(candidates: impl Iterator<Item = &'a Candidate>) -> Option<&'a Candidate> {
    candidates
        .filter(|c| c.feasible && c.cost.is_finite())
        .min_by(|a, b| {
            cmp_f64(a.cost, b.cost)
                .then(cmp_f64(
                    a.choice.expected_latency_ms,
                    b.choice.expected_latency_ms,
                ))
                .then(a.choice.batch_size.cmp(&b.choice.batch_size))
                .then(a.choice.replicas.cmp(&b.choice.replicas))
        })
}

/// The candidate nearest to feasibility; callers guarantee a non-empty pool.
fn closest<'a>(candidates: impl Iterator<Item = &'a Candidate>) -> &'a Candidate {
    candidates
        .min_by(|a, b| {
            cmp_f64(a.violation, b.violation)
                .then(cmp_f64(
                    a.choice.expected_latency_ms,
                    b.choice.expected_latency_ms,
                ))
                .then(cmp_f64(a.cost, b.cost))
                .then(a.choice.batch_size.cmp(&b.choice.batch_size))
        })
        .expect("closest() is only called on a non-empty pool")
}

fn fmt_joules(j: f64) -> String {
    if j < 1.0 {
        format!("{:.1} mJ", j * 1000.0)
    } else {
        format!("{j:.3} J")
    }
}

/// A rate for people, with the digits that matter: whole numbers from 100 up, one decimal from
/// 10, else up to three (0.01/s is not "0").
pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        fmt_num(r)
    }
}

/// A number with at most three decimals and no trailing zeros (`3.625`, `50`, `0.0001` → `0`):
/// how numbers go into arguments and messages.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn explain(
    picked: &Candidate,
    slo: &Slo,
    ctx: &Ctx<'_>,
    rate: Option<f64>,
    batch1_joules: Option<f64>,
    alternative: Option<&Choice>,
) -> String {
    let c = &picked.choice;
    let load = match (rate, c.utilisation, c.realised_batch) {
        (Some(r), Some(u), Some(rb)) => format!(
            " at {} inferences/s on {} replica(s) (~{rb:.1} items per batch, {:.0}% busy)",
            fmt_rate(r),
            c.replicas,
            u * 100.0
        ),
        _ => String::new(),
    };
    let energy = match (c.joules_per_inference, ctx.basis) {
        (Some(j), _) => {
            let at_rate = if rate.is_some() { " at this rate" } else { "" };
            let saving = batch1_joules
                .filter(|b1| *b1 > 0.0 && j > 0.0 && c.batch_size != 1)
                .map(|b1| {
                    if b1 >= j {
                        format!(
                            ", {:.1}x less than batch 1{at_rate} ({})",
                            b1 / j,
                            fmt_joules(b1)
                        )
                    } else {
                        // Cheaper but not chosen: it does not fit the SLO or the load.
                        format!(
                            "; batch 1{at_rate} would take {} but is not feasible",
                            fmt_joules(b1)
                        )
                    }
                })
                .unwrap_or_default();
            format!("{} per inference{saving}", fmt_joules(j))
        }
        (None, EnergyBasis::LatencyProxy) => {
            "no energy measured, so chosen by device time per inference (the batch's latency / its size)".to_string()
        }
        (None, EnergyBasis::Measured) => "energy unknown at this point".to_string(),
    };
    let head = format!(
        "batch {} with max queue delay {} ms: expected {} {} ms{load}",
        c.batch_size,
        fmt_ms(c.max_queue_delay_ms),
        slo.percentile(),
        fmt_ms(c.expected_latency_ms),
    );
    if picked.feasible {
        let mut s = format!(
            "{head}, meets {slo} (budget {} ms after headroom); {energy}",
            fmt_ms(ctx.budget_ms)
        );
        if let Some(alt) = alternative.filter(|a| a.batch_size != c.batch_size)
            && let (Some(ja), Some(jc)) = (alt.joules_per_inference, c.joules_per_inference)
        {
            s.push_str(&format!(
                "; the best feasible batch size, {}, would cost {} ({:.2}x less)",
                alt.batch_size,
                fmt_joules(ja),
                jc / ja
            ));
        }
        s
    } else {
        let why = match c.utilisation.filter(|u| *u > ctx.policy.target_utilisation) {
            Some(u) if c.expected_latency_ms <= ctx.budget_ms => format!(
                "would run {:.0}% busy, above the {:.0}% target: more replicas (max {}) or a bigger GPU are needed",
                u * 100.0,
                ctx.policy.target_utilisation * 100.0,
                ctx.replicas.max
            ),
            _ => format!(
                "exceeds the {} ms budget ({slo} minus {:.0}% headroom)",
                fmt_ms(ctx.budget_ms),
                ctx.policy.headroom_fraction * 100.0
            ),
        };
        // Fixed mode: the size asked for misses, but another meets the SLO — say so, or the
        // service reads as if its SLO could not be met at all.
        if let Some(alt) = alternative.filter(|a| a.batch_size != c.batch_size) {
            let cost = alt
                .joules_per_inference
                .map(|j| format!(", {} per inference", fmt_joules(j)))
                .unwrap_or_default();
            return format!(
                "the fixed {head} does not meet {slo}: it {why}; batch {} would (expected {} {} ms{cost}); {energy}",
                alt.batch_size,
                slo.percentile(),
                fmt_ms(alt.expected_latency_ms),
            );
        }
        format!(
            "SLO {slo} is not attainable; the closest configuration is {head}, which {why}; {energy}"
        )
    }
}

#[cfg(test)]
mod tests;
