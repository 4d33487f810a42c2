//! Which device runs the model, and why: the log says so, because "it silently ran on the CPU" is
//! the most expensive misconfiguration a GPU runtime can have.

use crate::error::{Result, RuntimeError};
use tch::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceArg::Auto),
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceArg::Cuda)
                .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, got {other:?}")),
        }
    }
}

/// A device as profiles and metrics name it: `cuda:N` or `cpu`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    }
}

/// True when this binary was linked against a libtorch with CUDA support (see build.rs).
pub fn linked_with_cuda() -> bool {
    env!("GREENBATCH_LIBTORCH_CUDA") == "1"
}

pub fn select(arg: DeviceArg) -> Result<(Device, String)> {
    let available = tch::Cuda::is_available();
    let count = if available {
        tch::Cuda::device_count()
    } else {
        0
    };
    match arg {
        DeviceArg::Cpu => Ok((Device::Cpu, "CPU requested".to_string())),
        DeviceArg::Cuda(i) if available && i64::try_from(i).is_ok_and(|i| i < count) => Ok((
            Device::Cuda(i),
            format!("cuda:{i} requested; {count} CUDA device(s) visible"),
        )),
        DeviceArg::Cuda(i) => Err(RuntimeError::Unsupported(
            format!("cuda:{i}"),
            format!(
                "CUDA available: {available}, devices: {count}, libtorch linked with CUDA: {}",
                linked_with_cuda()
            ),
        )),
        DeviceArg::Auto if available => Ok((
            Device::Cuda(0),
            format!("CUDA available ({count} device(s)): using cuda:0"),
        )),
        DeviceArg::Auto => {
            let why = if linked_with_cuda() {
                "no CUDA device visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)"
            } else {
                "this binary's libtorch has no CUDA support"
            };
            Ok((Device::Cpu, format!("using CPU: {why}")))
        }
    }
}
