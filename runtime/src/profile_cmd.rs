//! `greenbatch-runtime profile`: load the model, measure every candidate batch size with the
//! protocol, and write the result as an EnergyProfile status (JSON file, stdout, or the cluster).

use crate::cli::{ExecutionArgs, ProfileArgs, ProtocolArgs};
use crate::clock::{Clock, SystemClock};
use crate::error::{Result, RuntimeError};
use crate::meter::nvml::{GpuSelector, NvmlCounter, NvmlPower, gpu_info};
use crate::meter::rapl::Rapl;
use crate::meter::synthetic::{BusyTime, Synthetic};
use crate::meter::{EnergyMeter, MeterChoice};
use crate::model::{ForwardError, LoadedModel, ModelConfig, ModelSource};
use crate::output::JsonSink;
use crate::protocol::{Observer, Protocol, ProtocolConfig, Workload};
use crate::{publish, table};
use greenbatch_core::{BatchRow, SkippedBatch};
use greenbatch_crds::energy_profile::MeasuredOn;
use greenbatch_crds::inference_service::MAX_BATCH_SIZE;
use greenbatch_crds::{Dtype, EnergyProfileStatus, Precision, ProfilePhase};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tch::{Device, Tensor};

pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn parse_dtype(s: &str) -> Result<Dtype> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        RuntimeError::Usage {
            arg: "--dtype",
            message: format!("{s:?}: expected float32, float16, bfloat16, int64, int32 or uint8"),
        }
    })
}

fn parse_precision(s: &str) -> Result<Precision> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        RuntimeError::Usage {
            arg: "--precision",
            message: format!("{s:?}: expected fp32, fp16 or bf16"),
        }
    })
}

/// Checks the batch-size list: non-empty, each in 1..=4096, at most 32 sizes.
pub fn check_candidates(c: &[u32]) -> Result<Vec<u32>> {
    if c.is_empty() {
        return Err(RuntimeError::Candidates("the list is empty".into()));
    }
    if c.len() > 32 {
        return Err(RuntimeError::Candidates(format!(
            "{} sizes; at most 32",
            c.len()
        )));
    }
    if let Some(bad) = c.iter().find(|b| **b == 0 || **b > MAX_BATCH_SIZE) {
        return Err(RuntimeError::Candidates(format!(
            "{bad} is outside 1..={MAX_BATCH_SIZE}"
        )));
    }
    let mut v = c.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

pub fn protocol_config(p: &ProtocolArgs) -> Result<ProtocolConfig> {
    let secs = |arg: &'static str, v: f64, min: f64| {
        if v.is_finite() && v >= min && v <= 3600.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(RuntimeError::Usage {
                arg,
                message: format!("{v} is outside {min}..=3600 seconds"),
            })
        }
    };
    if !(1..=50).contains(&p.windows) {
        return Err(RuntimeError::Usage {
            arg: "--windows",
            message: format!("{} is outside 1..=50", p.windows),
        });
    }
    if !(p.max_spread.is_finite() && p.max_spread >= 0.0) {
        return Err(RuntimeError::Usage {
            arg: "--max-spread",
            message: format!("{} must be >= 0", p.max_spread),
        });
    }
    if p.stop_latency_ms
        .is_some_and(|l| !(l.is_finite() && l > 0.0))
    {
        return Err(RuntimeError::Usage {
            arg: "--stop-latency-ms",
            message: "must be a positive number".into(),
        });
    }
    Ok(ProtocolConfig {
        windows: p.windows,
        window: secs("--window-seconds", p.window_seconds, 0.01)?,
        warmup: secs("--warmup-seconds", p.warmup_seconds, 0.0)?,
        max_spread: p.max_spread,
        stop_latency_ms: p.stop_latency_ms,
        ..ProtocolConfig::default()
    })
}

/// Loads the model, logging the device and why. On CUDA, cuDNN autotuning is on: profiling runs fixed
/// batch shapes, and serving runs only warmed-up padded shapes (`serve::executor::padded_size`).
pub fn load_model(model: &str, args: &ExecutionArgs) -> Result<LoadedModel> {
    let source = ModelSource::parse(model)?;
    let dtype = parse_dtype(&args.dtype)?;
    let precision = parse_precision(&args.precision)?;
    if args.shape.is_empty() || args.shape.iter().any(|d| *d < 1) || args.shape.len() > 8 {
        return Err(RuntimeError::Usage {
            arg: "--shape",
            message: format!("{:?}: 1 to 8 dimensions, each >= 1", args.shape),
        });
    }
    let elements = args.shape.iter().try_fold(1i64, |a, d| a.checked_mul(*d));
    if elements.is_none_or(|n| n > greenbatch_crds::validate::MAX_ITEM_ELEMENTS) {
        return Err(RuntimeError::Usage {
            arg: "--shape",
            message: format!("{:?} is absurdly large for one item", args.shape),
        });
    }
    if let Some(t) = args.threads {
        if !(1..=1024).contains(&t) {
            return Err(RuntimeError::Usage {
                arg: "--threads",
                message: format!("{t} is outside 1..=1024"),
            });
        }
        tch::set_num_threads(t);
    }
    let (device, why) = crate::device::select(args.device)?;
    tracing::info!(device = ?device, "{why}");
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tracing::info!(model = %source.describe(), shape = ?args.shape, dtype = ?dtype, precision = precision.as_str(), "loading model");
    let model = LoadedModel::load(ModelConfig {
        source,
        item_shape: args.shape.clone(),
        dtype,
        precision,
        device,
        graph: args.graph,
        cuda_graphs: args.cuda_graphs,
    })?;
    if model.random_weights() {
        tracing::info!(
            "builtin architecture with random weights: exact for latency and energy, not for predictions"
        );
    }
    Ok(model)
}

/// A meter, or why there is none.
type Metering = (Option<Box<dyn EnergyMeter>>, Option<String>);

/// Opens the meter asked for; with `auto`, the best one this host has (or none, with the reason).
pub fn open_meter(
    choice: MeterChoice,
    device: Device,
    clock: Rc<dyn Clock>,
    busy: BusyTime,
) -> Result<Metering> {
    let sel = GpuSelector::from_env();
    let fail = |kind: &str, e: crate::meter::MeterError| RuntimeError::Meter {
        kind: kind.into(),
        message: e.0,
    };
    Ok(match choice {
        MeterChoice::None => (None, Some("energy metering disabled (--meter none)".into())),
        MeterChoice::Synthetic => {
            let m = Synthetic::new(
                clock,
                busy,
                Synthetic::DEFAULT_IDLE_WATTS,
                Synthetic::DEFAULT_BUSY_WATTS,
            );
            (Some(Box::new(m)), None)
        }
        MeterChoice::NvmlCounter => (
            Some(Box::new(
                NvmlCounter::open(sel).map_err(|e| fail("nvml-counter", e))?,
            )),
            None,
        ),
        MeterChoice::NvmlPower => (
            Some(Box::new(
                NvmlPower::open(sel).map_err(|e| fail("nvml-power", e))?,
            )),
            None,
        ),
        MeterChoice::Rapl => (
            Some(Box::new(Rapl::open().map_err(|e| fail("rapl", e))?)),
            None,
        ),
        MeterChoice::Auto if device.is_cuda() => match NvmlCounter::open(sel.clone()) {
            Ok(m) => (Some(Box::new(m)), None),
            Err(counter_err) => match NvmlPower::open(sel) {
                Ok(m) => {
                    tracing::warn!(
                        "NVML energy counter unavailable ({counter_err}); falling back to power sampling"
                    );
                    (Some(Box::new(m)), None)
                }
                Err(e) => (
                    None,
                    Some(format!(
                        "no GPU energy meter: {counter_err}; power sampling: {e}"
                    )),
                ),
            },
        },
        MeterChoice::Auto => match Rapl::open() {
            Ok(m) => (Some(Box::new(m)), None),
            Err(e) => (
                None,
                Some(format!(
                    "CPU run and RAPL is not readable ({e}): energy not measured"
                )),
            ),
        },
    })
}

/// Runs batches of the loaded model; inputs are made once per batch size, outside the timing.
struct TorchWorkload<'a> {
    model: &'a LoadedModel,
    inputs: BTreeMap<u32, Tensor>,
    busy: BusyTime,
}

impl Workload for TorchWorkload<'_> {
    fn run(&mut self, batch: u32) -> std::result::Result<(), ForwardError> {
        if !self.inputs.contains_key(&batch) {
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
        let info = gpu_info(&GpuSelector::from_env()).unwrap_or_default();
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

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The profile's status when it holds a complete table a failed re-measurement must not lose.
fn kept_table(existing: Option<&EnergyProfileStatus>) -> Option<&EnergyProfileStatus> {
    existing.filter(|s| {
        s.phase == Some(ProfilePhase::Complete)
            && s.table.as_ref().is_some_and(|t| !t.rows.is_empty())
    })
}

/// The status a failed measurement leaves. A first measurement fails the profile. A re-profile
/// (the profile has a complete table already) keeps that table and says what failed: losing it
/// would take every service serving from it down, for a measurement that changed nothing.
pub fn failure_status(
    existing: Option<&EnergyProfileStatus>,
    error: &str,
    now: &str,
) -> EnergyProfileStatus {
    match kept_table(existing) {
        Some(kept) => EnergyProfileStatus {
            message: Some(format!(
                "measuring again failed at {now}: {error}; the table measured at {} stays",
                kept.finished_at.as_deref().unwrap_or("an earlier run")
            )),
            ..kept.clone()
        },
        None => EnergyProfileStatus {
            phase: Some(ProfilePhase::Failed),
            message: Some(error.to_string()),
            runtime_version: Some(RUNTIME_VERSION.into()),
            ..Default::default()
        },
    }
}

pub fn run(args: &ProfileArgs) -> Result<()> {
    // Check every destination before the measurement, which can take many minutes.
    check_candidates(&args.protocol.candidates)?;
    protocol_config(&args.protocol)?;
    let sink = args.json.as_deref().map(JsonSink::prepare).transpose()?;
    let existing = match &args.output_profile {
        Some(name) => publish::preflight(name, args.namespace.as_deref())?,
        None => None,
    };
    let outcome = load_model(&args.model.model, &args.model.exec)
        .and_then(|model| measure(&model, &args.protocol));
    let status = match outcome {
        Ok(s) => s,
        Err(e) => {
            if let Some(name) = &args.output_profile {
                let failed = failure_status(existing.as_ref(), &e.to_string(), &now_rfc3339());
                if let Err(pe) = publish::write_status(name, args.namespace.as_deref(), &failed) {
                    tracing::error!("could not record the failure in the cluster: {pe}");
                }
            }
            return Err(e);
        }
    };
    let failed = status.phase == Some(ProfilePhase::Failed);
    // Nothing measured this time: for a re-profile, the table measured before stays (a first
    // measurement keeps its own status: the batch sizes skipped and why).
    let status = if failed && kept_table(existing.as_ref()).is_some() {
        let why = status.message.as_deref().unwrap_or("nothing measured");
        failure_status(existing.as_ref(), why, &now_rfc3339())
    } else {
        status
    };
    let to_stdout = matches!(sink, Some(JsonSink::Stdout));
    if !to_stdout {
        if let Some(t) = &status.table {
            print!("{}", table::render(t));
        }
    }
    if let Some(name) = &args.output_profile {
        publish::write_status(name, args.namespace.as_deref(), &status)?;
        tracing::info!(profile = %name, "status written to the cluster");
    }
    if failed {
        return Err(RuntimeError::NothingMeasured(
            status.message.unwrap_or_default(),
        ));
    }
    if let Some(sink) = sink {
        sink.commit_json(&status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_re_measurement_keeps_the_table_a_first_one_fails_the_profile() {
        let now = "2026-11-27T02:00:00Z";
        let first = failure_status(None, "out of memory", now);
        assert_eq!(first.phase, Some(ProfilePhase::Failed));
        assert_eq!(first.message.as_deref(), Some("out of memory"));
        assert!(first.table.is_none());

        let row = greenbatch_core::BatchRow {
            batch_size: 1,
            latency_ms: greenbatch_core::LatencyMs {
                p50: 1.0,
                p95: 1.0,
                p99: None,
            },
            throughput_per_second: 1000.0,
            avg_watts: None,
            joules_per_inference: None,
            joules_spread: None,
            windows: 5,
        };
        let mut complete = EnergyProfileStatus::complete(greenbatch_core::ProfileTable {
            meter: greenbatch_core::MeterKind::None,
            meter_note: None,
            idle_watts: None,
            rows: vec![row],
            skipped: vec![],
        });
        complete.finished_at = Some("2026-11-20T10:00:00Z".into());
        let again = failure_status(Some(&complete), "out of memory", now);
        assert_eq!(again.phase, Some(ProfilePhase::Complete));
        assert_eq!(
            again.table, complete.table,
            "the table serving depends on stays"
        );
        assert_eq!(
            again.message.as_deref(),
            Some(
                "measuring again failed at 2026-11-27T02:00:00Z: out of memory; the table measured at 2026-11-20T10:00:00Z stays"
            )
        );
        // A profile that failed before has nothing to keep.
        let failed_before = failure_status(Some(&first), "again", now);
        assert_eq!(failed_before.phase, Some(ProfilePhase::Failed));
    }

    #[test]
    fn candidate_lists_are_checked() {
        assert_eq!(check_candidates(&[8, 1, 8]).unwrap(), vec![1, 8]);
        for bad in [
            vec![],
            vec![0],
            vec![1, 5000],
            (1..=40).collect::<Vec<u32>>(),
        ] {
            let e = check_candidates(&bad).unwrap_err();
            assert_eq!(e.exit_code(), 12, "{e}");
        }
    }

    #[test]
    fn dtype_and_precision_names_are_the_api_names() {
        assert_eq!(parse_dtype("bfloat16").unwrap(), Dtype::Bfloat16);
        assert_eq!(parse_dtype("float").unwrap_err().exit_code(), 2);
        assert_eq!(parse_precision("bf16").unwrap(), Precision::Bf16);
        assert!(parse_precision("fp8").is_err());
    }
}
