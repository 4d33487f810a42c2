//! A deterministic power model for tests — NOT a measurement. Energy = idle watts x elapsed time +
//! (busy - idle) watts x time the workload reported busy. Every profile it produces says
//! `meter: synthetic`.

use super::{EnergyMeter, MeterError};
use crate::clock::Clock;
use greenbatch_core::MeterKind;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Busy time reported by a workload, in nanoseconds.
#[derive(Clone, Default)]
pub struct BusyTime(Arc<AtomicU64>);

impl BusyTime {
    pub fn add(&self, d: std::time::Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    pub fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e9
    }
}

pub struct Synthetic {
    clock: Rc<dyn Clock>,
    busy: BusyTime,
    idle_watts: f64,
    busy_watts: f64,
}

impl Synthetic {
    pub const DEFAULT_IDLE_WATTS: f64 = 60.0;
    pub const DEFAULT_BUSY_WATTS: f64 = 300.0;

    pub fn new(clock: Rc<dyn Clock>, busy: BusyTime, idle_watts: f64, busy_watts: f64) -> Self {
        Synthetic {
            clock,
            busy,
            idle_watts,
            busy_watts,
        }
    }
}

impl EnergyMeter for Synthetic {
    fn kind(&self) -> MeterKind {
        MeterKind::Synthetic
    }
    fn joules(&mut self) -> Result<f64, MeterError> {
        let t = self.clock.now().as_secs_f64();
        Ok(self.idle_watts * t + (self.busy_watts - self.idle_watts) * self.busy.seconds())
    }
    fn note(&self) -> Option<String> {
        Some(format!(
            "synthetic meter (a test double: {} W idle, {} W busy) — not a measurement",
            self.idle_watts, self.busy_watts
        ))
    }
}
