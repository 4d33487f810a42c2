//! Energy accounting while serving: every `tick` the meter's cumulative joules are read; the delta
//! goes to `greenbatch_energy_joules_total`, power to `greenbatch_power_watts`; over a rolling window
//! (default 10 s) energy / inferences gives `greenbatch_joules_per_inference` (idle share included,
//! which is what a request really costs at the current load); a tick in which no batch finished
//! and none was running at its end (so none ran in it) updates `greenbatch_idle_power_watts`.

use super::executor::Shared;
use crate::clock::{Clock, SystemClock};
use crate::meter::{EnergyMeter, MeterChoice};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub struct Accounting {
    window: VecDeque<(f64, f64, u64)>, // (seconds, joules, inferences) samples
    window_len: Duration,
}

impl Accounting {
    pub fn new(window_len: Duration) -> Self {
        Accounting {
            window: VecDeque::new(),
            window_len,
        }
    }

    /// Adds a sample of cumulative (time, joules, inferences); returns J/inference over the window.
    pub fn sample(&mut self, t: f64, joules: f64, inferences: u64) -> Option<f64> {
        self.window.push_back((t, joules, inferences));
        while self.window.len() > 2
            && self
                .window
                .front()
                .is_some_and(|f| t - f.0 > self.window_len.as_secs_f64())
        {
            self.window.pop_front();
        }
        let (first, last) = (self.window.front()?, self.window.back()?);
        let items = last.2.saturating_sub(first.2);
        (items > 0).then(|| (last.1 - first.1) / items as f64)
    }
}

/// Reads in a row a meter may fail before the server says it has none (20 ticks: 5 s).
const METER_FAILURES_TO_NONE: u32 = 20;

/// Runs until the server stops. The meter is opened on this thread (meters need not be `Send`).
pub fn run(shared: Arc<Shared>, choice: MeterChoice, device: tch::Device, tick: Duration) {
    let clock: Rc<dyn Clock> = Rc::new(SystemClock::new());
    let (meter, why) =
        match crate::setup::open_meter(choice, device, clock.clone(), shared.busy.clone()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("energy accounting disabled: {e}");
                shared.metrics.set_energy_meter("none");
                return;
            }
        };
    let Some(mut meter): Option<Box<dyn EnergyMeter>> = meter else {
        tracing::warn!("energy accounting disabled: {}", why.unwrap_or_default());
        shared.metrics.set_energy_meter("none");
        return;
    };
    let kind = meter.kind().to_string();
    tracing::info!(meter = %kind, "energy accounting");
    shared.metrics.set_energy_meter(&kind);
    let mut acc = Accounting::new(Duration::from_secs(10));
    let mut last: Option<(f64, f64, u64)> = None;
    let mut failed_in_a_row = 0u32;
    while !shared.stopped.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        let j = match meter.joules() {
            Ok(j) => j,
            Err(e) => {
                // A meter that no longer reads is no meter behind the (still) energy counter.
                failed_in_a_row += 1;
                if failed_in_a_row == METER_FAILURES_TO_NONE {
                    tracing::warn!(meter = %kind, "the energy meter fails to read ({e}): said as none until it reads again");
                    shared.metrics.set_energy_meter("none");
                }
                continue;
            }
        };
        if failed_in_a_row >= METER_FAILURES_TO_NONE {
            shared.metrics.set_energy_meter(&kind);
        }
        failed_in_a_row = 0;
        let t = clock.now().as_secs_f64();
        let inferences = shared.metrics.inferences.get();
        let batches = shared.metrics.batches.get();
        let running = shared.executing.load(Ordering::Relaxed);
        if let Some((t0, j0, b0)) = last {
            let (dj, dt) = (j - j0, t - t0);
            if dj >= 0.0 && dt > 0.0 {
                shared.metrics.energy.inc_by(dj);
                shared.metrics.power.set(dj / dt);
                // A batch longer than the tick neither finished in it nor left it idle.
                if batches == b0 && !running && dj > 0.0 {
                    shared.metrics.idle_power.set(dj / dt);
                }
            }
        }
        last = Some((t, j, batches));
        if let Some(jpi) = acc.sample(t, j, inferences) {
            shared.metrics.joules_per_inference.set(jpi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joules_per_inference_over_a_rolling_window() {
        let mut a = Accounting::new(Duration::from_secs(10));
        assert_eq!(a.sample(0.0, 0.0, 0), None);
        assert_eq!(a.sample(1.0, 100.0, 0), None); // idle: no inference yet
        assert_eq!(a.sample(2.0, 300.0, 100), Some(3.0));
        // Old samples leave the window: only the last 10 s count.
        for s in 3u32..=20 {
            a.sample(
                f64::from(s),
                300.0 + 50.0 * f64::from(s - 2),
                100 + 100 * u64::from(s - 2),
            );
        }
        let j = a.sample(21.0, 300.0 + 50.0 * 19.0, 100 + 100 * 19).unwrap();
        assert!((j - 0.5).abs() < 1e-9, "{j}");
    }
}
