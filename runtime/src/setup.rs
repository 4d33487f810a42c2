//! Arguments into real components: the model on its device, the energy meter, the measurement
//! protocol's settings. Shared by the commands (`profile`, `tune`, `serve`); each check fails with
//! the flag it is about.

use crate::cli::{ExecutionArgs, ProtocolArgs, SourceArgs};
use crate::clock::Clock;
use crate::error::{Result, RuntimeError};
use crate::fetch::{CredentialSource, DEFAULT_REGION, FetchSettings, default_cache_dir};
use crate::meter::nvml::{GpuSelector, NvmlCounter, NvmlPower};
use crate::meter::rapl::Rapl;
use crate::meter::synthetic::{BusyTime, Synthetic};
use crate::meter::{EnergyMeter, MeterChoice};
use crate::model::{LoadedModel, ModelConfig, ModelSource};
use crate::protocol::ProtocolConfig;
use greenbatch_crds::inference_service::MAX_BATCH_SIZE;
use greenbatch_crds::{Dtype, Precision};
use std::rc::Rc;
use std::time::Duration;
use tch::Device;

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

/// How `--model` is made local and checked.
pub fn fetch_settings(args: &SourceArgs) -> Result<FetchSettings> {
    if args.model_max_mib == 0 || args.model_max_mib > 1024 * 1024 {
        return Err(RuntimeError::Usage {
            arg: "--model-max-mib",
            message: format!("{} is outside 1..=1048576", args.model_max_mib),
        });
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let s3_region = args
        .s3_region
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    // Checked when an s3:// model is asked for: a stray AWS_REGION must not stop other runs.
    Ok(FetchSettings {
        ca_file: args.model_ca_file.clone(),
        max_bytes: args.model_max_mib * 1024 * 1024,
        s3_endpoint: args
            .s3_endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .or_else(|| env("AWS_ENDPOINT_URL")),
        s3_region,
        s3_credentials: CredentialSource::from_env(env),
        s3_send_pod_identity: args.s3_send_pod_identity,
        ..FetchSettings::new(
            args.model_digest.clone(),
            args.model_cache.clone().unwrap_or_else(default_cache_dir),
        )
    })
}

/// Loads the model, logging the device and why. On CUDA, cuDNN autotuning is on: profiling runs fixed
/// batch shapes, and serving runs only warmed-up padded shapes (`serve::executor::padded_size`).
pub fn load_model(model: &str, args: &ExecutionArgs) -> Result<LoadedModel> {
    let model = crate::fetch::resolve(model, &fetch_settings(&args.source)?)?;
    let source = ModelSource::parse(&model)?;
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
    // The GPU the model runs on (on CPU the NVML meters are not offered anyway).
    let sel = GpuSelector::for_cuda(match device {
        Device::Cuda(i) => i,
        _ => 0,
    });
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

#[cfg(test)]
mod tests {
    use super::*;

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
