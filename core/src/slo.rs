//! A validated latency service-level objective: "the pN of end-to-end request latency (queueing
//! plus execution) stays at or below L milliseconds".

use crate::profile::Percentile;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slo {
    latency_ms: f64,
    percentile: Percentile,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    #[error(
        "slo.latencyMs must be a number of milliseconds from {MIN_SLO_MS} to {MAX_SLO_MS} (an hour), got {0}"
    )]
    Latency(f64),
    #[error("slo.percentile must be one of 50, 95, 99, got {0}")]
    Percentile(u32),
}

/// The tightest SLO taken: a microsecond (a tighter one would be written `0` in the pods' arguments,
/// and no request is served in less).
pub const MIN_SLO_MS: f64 = 0.001;
/// The loosest SLO taken: an hour (the InferenceService schema's maximum); beyond it numbers stop
/// meaning anything (an SLO of 1e308 ms overflowed the profiler's stop latency and hung the plot).
pub const MAX_SLO_MS: f64 = 3_600_000.0;

impl Slo {
    pub fn new(latency_ms: f64, percentile: Percentile) -> Result<Self, SloError> {
        if !(MIN_SLO_MS..=MAX_SLO_MS).contains(&latency_ms) {
            return Err(SloError::Latency(latency_ms));
        }
        Ok(Slo {
            latency_ms,
            percentile,
        })
    }

    pub fn from_parts(latency_ms: f64, percentile: u32) -> Result<Self, SloError> {
        let p = Percentile::from_u32(percentile).ok_or(SloError::Percentile(percentile))?;
        Slo::new(latency_ms, p)
    }

    pub fn latency_ms(&self) -> f64 {
        self.latency_ms
    }

    pub fn percentile(&self) -> Percentile {
        self.percentile
    }
}

impl std::fmt::Display for Slo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <= {} ms", self.percentile, fmt_ms(self.latency_ms))
    }
}

pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_positive_and_non_finite_latency_naming_the_field() {
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e308,
            3_600_001.0,
            0.0009,
        ] {
            let err = Slo::new(bad, Percentile::P99).unwrap_err();
            assert!(err.to_string().contains("slo.latencyMs"), "{err}");
        }
        assert!(Slo::new(MAX_SLO_MS, Percentile::P99).is_ok());
        assert!(Slo::new(MIN_SLO_MS, Percentile::P99).is_ok());
        let err = Slo::from_parts(10.0, 90).unwrap_err();
        assert!(err.to_string().contains("slo.percentile"), "{err}");
        assert_eq!(
            Slo::from_parts(10.0, 95).unwrap().to_string(),
            "p95 <= 10.0 ms"
        );
    }
}
