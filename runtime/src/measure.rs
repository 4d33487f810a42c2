//! Measuring a loaded model with the protocol, on the meter the arguments ask for, into an
//! EnergyProfile status that says what was measured, on what, and when.

use crate::cli::ProtocolArgs;
use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::meter::EnergyMeter;
use crate::meter::nvml::{GpuSelector, gpu_info};
use crate::meter::synthetic::BusyTime;
use crate::model::{ForwardError, LoadedModel};
use crate::protocol::{Observer, Protocol, Workload};
use crate::setup::{check_candidates, open_meter, protocol_config};
use greenbatch_core::{BatchRow, SkippedBatch};
use greenbatch_crds::energy_profile::MeasuredOn;
use greenbatch_crds::{EnergyProfileStatus, ProfilePhase};
use std::collections::BTreeMap;
use std::rc::Rc;
use tch::Tensor;

pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs batches of the loaded model; inputs are made once per batch size, outside the timing.
struct TorchWorkload<'a> {
    model: &'a LoadedModel,
    inputs: BTreeMap<u32, Tensor>,
    busy: BusyTime,
}

impl Workload for TorchWorkload<'_> {
    fn run(&mut self, batch: u32) -> std::result::Result<(), ForwardError> {
        if !self.inputs.contains_key(&batch) {
            // Sizes are measured in ascending order, never again: an earlier size's input would
            // only hold device memory the larger one may need.
            self.inputs.clear();
            let input = self.model.example_input(batch)?;
            self.inputs.insert(batch, input);
        }
        let input = &self.inputs[&batch];
        let start = std::time::Instant::now();
        let result = self.model.forward(input).map(|_| ());
        self.busy.add(start.elapsed());
        if result.is_err() {
            // Free the failed size's input so an out-of-memory error does not pin device memory.
            self.inputs.remove(&batch);
        }
        result
    }
}

struct LogObserver;

impl Observer for LogObserver {
    fn idle(&mut self, watts: Option<f64>) {
        match watts {
            Some(w) => tracing::info!(idle_watts = format!("{w:.1}"), "idle baseline"),
            None => tracing::info!("no meter: skipping the idle baseline"),
        }
    }
    fn row(&mut self, r: &BatchRow, rounds: u32) {
        tracing::info!(
            batch = r.batch_size,
            p50_ms = format!("{:.3}", r.latency_ms.p50),
            p99_ms = format!("{:.3}", r.latency_ms.p99.unwrap_or(f64::NAN)),
            per_s = format!("{:.1}", r.throughput_per_second),
            j_per_inf = r.joules_per_inference.map(|j| format!("{j:.5}")),
            spread = r.joules_spread.map(|s| format!("{s:.3}")),
            rounds,
            "measured"
        );
    }
    fn skipped(&mut self, s: &SkippedBatch) {
        tracing::warn!(batch = s.batch_size, "{}", s.reason);
    }
}

fn host_name() -> Option<String> {
    std::env::var("NODE_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
}

/// Measures and returns the status (complete, or failed with the reason).
pub fn measure(model: &LoadedModel, protocol: &ProtocolArgs) -> Result<EnergyProfileStatus> {
    let candidates = check_candidates(&protocol.candidates)?;
    let config = protocol_config(protocol)?;
    let clock: Rc<dyn Clock> = Rc::new(SystemClock::new());
    let busy = BusyTime::default();
    let device = model.config.device;
    let (mut meter, no_meter_reason) =
        open_meter(protocol.meter, device, clock.clone(), busy.clone())?;
    if let Some(m) = &meter {
        tracing::info!(meter = %m.kind(), note = m.note(), "energy meter");
    } else {
        tracing::warn!(
            "{}",
            no_meter_reason.as_deref().unwrap_or("no energy meter")
        );
    }
    let started = chrono::Utc::now();
    let mut workload = TorchWorkload {
        model,
        inputs: BTreeMap::new(),
        busy,
    };
    let table = {
        let meter: Option<&mut dyn EnergyMeter> = match meter.as_mut() {
            Some(m) => Some(m.as_mut()),
            None => None,
        };
        let mut proto = Protocol {
            config,
            clock: &*clock,
            meter,
            no_meter_reason,
        };
        proto.run(&mut workload, &candidates, &mut LogObserver)
    };
    drop(workload);

    let (device_name, driver) = if device.is_cuda() {
        let index = match device {
            tch::Device::Cuda(i) => i,
            _ => 0,
        };
        let info = gpu_info(&GpuSelector::for_cuda(index)).unwrap_or_default();
        (info.name, info.driver)
    } else {
        (cpu_model(), None)
    };
    let measured_on = MeasuredOn {
        device: crate::device::name(device),
        device_name,
        driver_version: driver,
        host: host_name(),
        torch_threads: u32::try_from(tch::get_num_threads()).ok(),
        graph: Some(model.graph()),
        random_weights: model.random_weights(),
    };
    let measured_anything = !table.rows.is_empty();
    let skipped: Vec<String> = table
        .skipped
        .iter()
        .map(|s| format!("batch {}: {}", s.batch_size, s.reason))
        .collect();
    let mut status = EnergyProfileStatus::complete(table);
    status.measured_on = Some(measured_on);
    status.started_at = Some(started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    status.finished_at = Some(now_rfc3339());
    status.runtime_version = Some(RUNTIME_VERSION.to_string());
    if !measured_anything {
        status.phase = Some(ProfilePhase::Failed);
        status.message = Some(format!(
            "no batch size could be measured: {}",
            skipped.join("; ")
        ));
    }
    Ok(status)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
