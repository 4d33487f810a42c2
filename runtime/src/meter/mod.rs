//! Energy meters behind one trait. Every meter reports a cumulative energy in joules since an
//! arbitrary origin; the protocol takes differences. Preference order on a GPU: the NVML
//! total-energy counter, then integrated NVML power samples (flagged: an averaged reading that can
//! under-count by up to ~30%); on a CPU host: RAPL where readable. The synthetic meter exists for
//! tests and is always labelled as such. No meter means no energy numbers — never invented ones.

pub mod nvml;
pub mod rapl;
pub mod synthetic;

use greenbatch_core::MeterKind;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MeterError(pub String);

pub trait EnergyMeter {
    fn kind(&self) -> MeterKind;
    /// Cumulative joules since an arbitrary origin.
    fn joules(&mut self) -> Result<f64, MeterError>;
    /// A caveat every profile from this meter must carry, if any.
    fn note(&self) -> Option<String> {
        None
    }
    /// How often the reading moves (zero: at every read). A change seen after a batch then
    /// happened somewhere in the last `update_period` of it, which the protocol's window edge
    /// accounts for.
    fn update_period(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// What the user asked for on the command line (`--meter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeterChoice {
    Auto,
    NvmlCounter,
    NvmlPower,
    Rapl,
    Synthetic,
    None,
}

impl std::str::FromStr for MeterChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => MeterChoice::Auto,
            "nvml" | "nvml-counter" => MeterChoice::NvmlCounter,
            "nvml-power" => MeterChoice::NvmlPower,
            "rapl" => MeterChoice::Rapl,
            "synthetic" => MeterChoice::Synthetic,
            "none" => MeterChoice::None,
            other => {
                return Err(format!(
                    "unknown meter {other:?}: auto, nvml, nvml-power, rapl, synthetic, none"
                ));
            }
        })
    }
}
