//! NVML meters: the total-energy counter (preferred) and integrated power samples (fallback).
//!
//! Which GPU: the one CUDA calls device 0. Inside a Kubernetes pod the NVIDIA container runtime
//! exposes only the allocated GPU, so NVML index 0 is it; outside, `CUDA_VISIBLE_DEVICES` (an index
//! or a `GPU-<uuid>`) is honoured.

use super::{EnergyMeter, MeterError};
use greenbatch_core::MeterKind;
use nvml_wrapper::Nvml;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn err(e: impl std::fmt::Display) -> MeterError {
    MeterError(e.to_string())
}

/// How the visible CUDA device 0 is named to NVML.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuSelector {
    Index(u32),
    Uuid(String),
}

impl GpuSelector {
    /// The GPU CUDA calls `cuda:<index>`, as NVML names it, under `CUDA_VISIBLE_DEVICES`.
    pub fn for_cuda(index: usize) -> Self {
        Self::for_cuda_among(index, std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref())
    }

    /// `cuda:<index>` is the index-th entry of `visible` (`CUDA_VISIBLE_DEVICES`: indices or
    /// `GPU-`/`MIG-` UUIDs), or with no such list the index-th GPU. (CUDA orders GPUs fastest
    /// first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, NVML by bus: on a host of mixed GPUs, set it.)
    pub fn for_cuda_among(index: usize, visible: Option<&str>) -> Self {
        let entry = visible.and_then(|v| v.split(',').map(str::trim).nth(index));
        match entry {
            Some(s) if s.starts_with("GPU-") || s.starts_with("MIG-") => {
                GpuSelector::Uuid(s.to_string())
            }
            Some(s) => s
                .parse()
                .map(GpuSelector::Index)
                .unwrap_or(GpuSelector::Index(0)),
            None => GpuSelector::Index(u32::try_from(index).unwrap_or(u32::MAX)),
        }
    }
}

/// Facts about the GPU for the profile's `measuredOn`.
#[derive(Clone, Debug, Default)]
pub struct GpuInfo {
    pub name: Option<String>,
    pub driver: Option<String>,
}

fn device<'a>(nvml: &'a Nvml, sel: &GpuSelector) -> Result<nvml_wrapper::Device<'a>, MeterError> {
    match sel {
        GpuSelector::Index(i) => nvml.device_by_index(*i).map_err(err),
        GpuSelector::Uuid(u) => nvml.device_by_uuid(u.as_str()).map_err(err),
    }
}

pub fn gpu_info(sel: &GpuSelector) -> Result<GpuInfo, MeterError> {
    let nvml = Nvml::init().map_err(err)?;
    let dev = device(&nvml, sel)?;
    Ok(GpuInfo {
        name: dev.name().ok(),
        driver: nvml.sys_driver_version().ok(),
    })
}

pub struct NvmlCounter {
    nvml: Nvml,
    sel: GpuSelector,
}

impl NvmlCounter {
    pub fn open(sel: GpuSelector) -> Result<Self, MeterError> {
        let nvml = Nvml::init().map_err(|e| MeterError(format!("NVML unavailable: {e}")))?;
        let m = NvmlCounter { nvml, sel };
        let dev = device(&m.nvml, &m.sel)?;
        dev.total_energy_consumption()
            .map_err(|e| MeterError(format!("total-energy counter unsupported: {e}")))?;
        Ok(m)
    }
}

impl EnergyMeter for NvmlCounter {
    fn kind(&self) -> MeterKind {
        MeterKind::NvmlCounter
    }
    /// Measured on an H200: the counter moves every ~100 ms (median gap 100 ms, max 103 ms),
    /// idle or busy (`docs/reference/gpu-energy.md`).
    fn update_period(&self) -> Duration {
        Duration::from_millis(100)
    }
    fn joules(&mut self) -> Result<f64, MeterError> {
        let mj = device(&self.nvml, &self.sel)?
            .total_energy_consumption()
            .map_err(err)?;
        Ok(mj as f64 / 1000.0)
    }
}

/// Integrates `nvmlDeviceGetPowerUsage` samples (every 10 ms, trapezoid rule) in a thread.
pub struct NvmlPower {
    joules_bits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NvmlPower {
    pub fn open(sel: GpuSelector) -> Result<Self, MeterError> {
        let nvml = Nvml::init().map_err(|e| MeterError(format!("NVML unavailable: {e}")))?;
        device(&nvml, &sel)?
            .power_usage()
            .map_err(|e| MeterError(format!("power readings unsupported: {e}")))?;
        let joules_bits = Arc::new(AtomicU64::new(0f64.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let (j, s) = (joules_bits.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("nvml-power".into())
            .spawn(move || {
                let mut last: Option<(Instant, f64)> = None;
                let mut total = 0.0;
                while !s.load(Ordering::Relaxed) {
                    if let Ok(mw) = device(&nvml, &sel).and_then(|d| d.power_usage().map_err(err)) {
                        let (now, watts) = (Instant::now(), f64::from(mw) / 1000.0);
                        if let Some((t0, w0)) = last {
                            total += (now - t0).as_secs_f64() * (w0 + watts) / 2.0;
                            j.store(total.to_bits(), Ordering::Relaxed);
                        }
                        last = Some((now, watts));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .map_err(err)?;
        Ok(NvmlPower {
            joules_bits,
            stop,
            thread: Some(thread),
        })
    }
}

impl EnergyMeter for NvmlPower {
    fn kind(&self) -> MeterKind {
        MeterKind::NvmlPower
    }
    /// The sampling thread adds a sample every 10 ms.
    fn update_period(&self) -> Duration {
        Duration::from_millis(10)
    }
    fn joules(&mut self) -> Result<f64, MeterError> {
        Ok(f64::from_bits(self.joules_bits.load(Ordering::Relaxed)))
    }
    fn note(&self) -> Option<String> {
        Some("integrated NVML power samples: an averaged reading, can under-count by up to ~30% (no energy counter on this GPU)".into())
    }
}

impl Drop for NvmlPower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_s_device_n_is_the_n_th_visible_gpu_as_nvml_names_it() {
        assert_eq!(GpuSelector::for_cuda_among(1, None), GpuSelector::Index(1));
        assert_eq!(
            GpuSelector::for_cuda_among(1, Some("3, 5")),
            GpuSelector::Index(5)
        );
        assert_eq!(
            GpuSelector::for_cuda_among(1, Some("GPU-a,GPU-b")),
            GpuSelector::Uuid("GPU-b".into())
        );
        assert_eq!(
            GpuSelector::for_cuda_among(0, Some("MIG-x")),
            GpuSelector::Uuid("MIG-x".into())
        );
        // An entry that is neither a number nor a UUID: the first GPU.
        assert_eq!(
            GpuSelector::for_cuda_among(0, Some("")),
            GpuSelector::Index(0)
        );
    }

    #[test]
    fn nvml_is_read_where_there_is_a_driver_and_a_clean_error_where_there_is_none() {
        if Nvml::init().is_err() {
            // This machine (and CI): opening fails with a message, not a panic.
            let e = NvmlCounter::open(GpuSelector::Index(0))
                .err()
                .expect("no NVML here");
            assert!(e.0.contains("NVML unavailable"), "{e}");
            assert!(NvmlPower::open(GpuSelector::Index(0)).is_err());
        } else {
            // A GPU host: the counter reads, and never goes back (idle power alone moves it).
            let mut m = NvmlCounter::open(GpuSelector::Index(0)).expect("NVML's counter");
            assert_eq!(m.kind(), MeterKind::NvmlCounter);
            let first = m.joules().expect("a reading");
            std::thread::sleep(Duration::from_millis(250));
            let second = m.joules().expect("a reading");
            assert!(second >= first, "{first} then {second}");
        }
    }
}
