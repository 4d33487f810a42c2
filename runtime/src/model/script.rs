//! A TorchScript module prepared for inference — frozen (parameters folded into the graph as
//! constants, conv + batch-norm fused) and optionally `optimize_for_inference` (MKLDNN kernels on the
//! CPU, conv + add + relu fusion for cuDNN). tch's `CModule` can do neither, and an optimised module
//! cannot be saved and reloaded (its MKLDNN constants do not serialise), so the module lives in
//! `runtime/cpp/script_module.cpp` and is called through a small C ABI. This file is the only place
//! that touches that ABI: every pointer it returns is owned by a Rust value with a `Drop`.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// How the runtime prepares a TorchScript model's graph before profiling or serving it. Profile and
/// serve load models the same way, so a profile measures the graph that is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphOptimization {
    /// On the CPU the faster of `freeze` and `optimize` (timed at load); `freeze` on CUDA.
    Auto,
    /// `torch.jit.freeze` then `torch.jit.optimize_for_inference`.
    Optimize,
    /// `torch.jit.freeze` only.
    Freeze,
    /// The module as saved (eval mode).
    None,
}

impl GraphOptimization {
    /// The preparations to try on a device, in order. `Auto` on the CPU tries freezing alone and
    /// freezing + `optimize_for_inference` and keeps the faster (model/mod.rs); on CUDA it freezes
    /// only: conv + batch-norm folding is the well-trodden path there, and `optimize_for_inference`
    /// has not yet been measured on our GPUs (docs/benchmarks.md).
    pub fn candidates(self, device: Device) -> Vec<GraphOptimization> {
        match (self, device) {
            (GraphOptimization::Auto, Device::Cpu) => {
                vec![GraphOptimization::Freeze, GraphOptimization::Optimize]
            }
            (GraphOptimization::Auto, _) => vec![GraphOptimization::Freeze],
            (other, _) => vec![other],
        }
    }

    /// The C side's level. `Auto` is resolved by the caller ([`GraphOptimization::candidates`]);
    /// were it passed here, it would mean the most a module can get.
    fn level(self) -> c_int {
        match self {
            GraphOptimization::None => 0,
            GraphOptimization::Freeze => 1,
            GraphOptimization::Optimize | GraphOptimization::Auto => 2,
        }
    }

    fn from_level(level: c_int) -> GraphOptimization {
        match level {
            2 => GraphOptimization::Optimize,
            1 => GraphOptimization::Freeze,
            _ => GraphOptimization::None,
        }
    }

    /// How the graph is described in a profile's `measuredOn.graph`.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphOptimization::Auto => "auto",
            GraphOptimization::Optimize => "torchscript-frozen-optimized",
            GraphOptimization::Freeze => "torchscript-frozen",
            GraphOptimization::None => "torchscript",
        }
    }
}

#[repr(C)]
struct GbModule {
    _opaque: [u8; 0],
}

unsafe extern "C" {
    fn gb_module_load(
        path: *const c_char,
        device: c_int,
        cast: c_int,
        level: c_int,
        cuda_graphs: c_int,
        applied: *mut c_int,
        err: *mut *mut c_char,
        warning: *mut *mut c_char,
    ) -> *mut GbModule;
    fn gb_module_forward(
        module: *mut GbModule,
        input: *const torch_sys::C_tensor,
        err: *mut *mut c_char,
        warning: *mut *mut c_char,
    ) -> *mut torch_sys::C_tensor;
    fn gb_module_cuda_graphs_active(module: *const GbModule) -> c_int;
    fn gb_cuda_graphs_supported() -> c_int;
    fn gb_module_free(module: *mut GbModule);
    fn gb_string_free(s: *mut c_char);
}

/// Takes ownership of a message the C++ side allocated.
fn take_message(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null pointers in `err`/`warning` are NUL-terminated strings malloc'd by
    // script_module.cpp and handed to us; we free each exactly once, here.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { gb_string_free(p) };
    Some(s)
}

/// True when this build can capture CUDA graphs (libtorch with CUDA and the CUDA headers were
/// present when it was compiled, see build.rs).
pub fn cuda_graphs_supported() -> bool {
    // SAFETY: a pure query with no arguments.
    unsafe { gb_cuda_graphs_supported() == 1 }
}

/// A loaded TorchScript module and how its graph was prepared.
pub struct ScriptModule {
    ptr: *mut GbModule,
    applied: GraphOptimization,
    cuda_graphs: bool,
}

/// What loading produced besides the module: a reason the asked-for optimisation was not applied.
pub struct Loaded {
    pub module: ScriptModule,
    pub warning: Option<String>,
}

impl ScriptModule {
    /// Loads `path` onto `device`, casts floating-point parameters to `cast` (Half or BFloat16; any
    /// other kind keeps them), evaluates it in eval mode and applies `optimization` (one of
    /// [`GraphOptimization::candidates`]; `Auto` here means `Optimize`). Fails only when the file cannot be loaded; an optimisation that fails falls back to
    /// the last level that worked and says why in `warning`. With `cuda_graphs` (the caller checks
    /// the device is CUDA and [`cuda_graphs_supported`]), each input shape is captured as a CUDA
    /// graph on its first forward and replayed after that.
    pub fn load(
        path: &Path,
        device: Device,
        cast: Kind,
        optimization: GraphOptimization,
        cuda_graphs: bool,
    ) -> Result<Loaded, String> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| "the path contains a NUL byte".to_string())?;
        let level = optimization.level();
        let device = match device {
            Device::Cuda(i) => {
                c_int::try_from(i).map_err(|_| format!("cuda:{i} is out of range"))?
            }
            _ => -1,
        };
        let cast = match cast {
            Kind::Half => 1,
            Kind::BFloat16 => 2,
            _ => 0,
        };
        let (mut applied, mut err, mut warning) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: all pointers are valid for the call; the returned module (if any) is owned below.
        let ptr = unsafe {
            gb_module_load(
                cpath.as_ptr(),
                device,
                cast,
                level,
                c_int::from(cuda_graphs),
                &mut applied,
                &mut err,
                &mut warning,
            )
        };
        let err = take_message(err);
        let warning = take_message(warning);
        if ptr.is_null() {
            return Err(err.unwrap_or_else(|| "loading failed without a message".into()));
        }
        Ok(Loaded {
            module: ScriptModule {
                ptr,
                applied: GraphOptimization::from_level(applied),
                cuda_graphs,
            },
            warning,
        })
    }

    /// The optimisation actually applied.
    pub fn applied(&self) -> GraphOptimization {
        self.applied
    }

    /// True when the module was loaded to replay CUDA graphs.
    pub fn cuda_graphs_requested(&self) -> bool {
        self.cuda_graphs
    }

    /// True while forward replays CUDA graphs (a failed capture turns them off for good).
    pub fn cuda_graphs_active(&self) -> bool {
        // SAFETY: `self.ptr` is a live module.
        unsafe { gb_module_cuda_graphs_active(self.ptr) == 1 }
    }

    /// Runs `forward` on one input tensor under InferenceMode; the first tensor of the output.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, String> {
        let (mut err, mut warning) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: `self.ptr` is a live module (freed only in Drop) and `input.as_ptr()` a live tensor
        // borrowed for the call.
        let out = unsafe { gb_module_forward(self.ptr, input.as_ptr(), &mut err, &mut warning) };
        if let Some(why) = take_message(warning) {
            tracing::warn!("{}", crate::error::torch_message(&why));
        }
        let err = take_message(err);
        if out.is_null() {
            return Err(err.unwrap_or_else(|| "forward failed without a message".into()));
        }
        // SAFETY: a non-null result is a `new at::Tensor` handed to us; tch frees it on drop.
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

impl Drop for ScriptModule {
    fn drop(&mut self) {
        // SAFETY: the pointer came from gb_module_load and is freed once.
        unsafe { gb_module_free(self.ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compares_two_preparations_on_the_cpu_and_freezes_on_cuda() {
        use GraphOptimization::*;
        assert_eq!(Auto.candidates(Device::Cpu), vec![Freeze, Optimize]);
        assert_eq!(Auto.candidates(Device::Cuda(0)), vec![Freeze]);
        assert_eq!(None.candidates(Device::Cpu), vec![None]);
        for g in [None, Freeze, Optimize] {
            assert_eq!(GraphOptimization::from_level(g.level()), g);
        }
    }
}
