//! Loading a model (a TorchScript file, or a tch::vision architecture with random weights) and
//! running one batch through it. Errors from libtorch — which tch turns into panics in its
//! non-`f_` API — are caught here and classified (out of memory vs. anything else), so one bad batch
//! size becomes a row in the report instead of a crash.

mod script;

use crate::error::{Result, RuntimeError, torch_message};
use greenbatch_crds::{BuiltinModel, Dtype, Precision};
use script::ScriptModule;
pub use script::{GraphOptimization, cuda_graphs_supported};
use std::path::{Path, PathBuf};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor, nn};

#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    TorchScript(PathBuf),
    Builtin(BuiltinModel),
}

impl ModelSource {
    /// Parses `builtin:<name>`, `file://<path>` or a plain path.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(name) = s.strip_prefix("builtin:") {
            return BuiltinModel::from_name(name)
                .map(ModelSource::Builtin)
                .ok_or_else(|| RuntimeError::UnknownBuiltin {
                    name: name.to_string(),
                    known: BuiltinModel::ALL
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            return Err(RuntimeError::Usage {
                arg: "--model",
                message: "empty model path".into(),
            });
        }
        Ok(ModelSource::TorchScript(PathBuf::from(path)))
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::TorchScript(p) => format!("TorchScript {}", p.display()),
            ModelSource::Builtin(b) => format!("builtin {b} (random weights)"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub source: ModelSource,
    /// One item's shape, without the batch dimension.
    pub item_shape: Vec<i64>,
    pub dtype: Dtype,
    pub precision: Precision,
    pub device: Device,
    /// How a TorchScript graph is prepared (builtins are native modules and ignore it).
    pub graph: GraphOptimization,
    /// Replay each batch shape as a captured CUDA graph (TorchScript on CUDA only).
    pub cuda_graphs: bool,
}

enum Net {
    Script(ScriptModule),
    Native {
        _vars: nn::VarStore,
        net: Box<dyn ModuleT>,
    },
}

/// Why a batch failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ForwardError {
    OutOfMemory(String),
    Failed(String),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::OutOfMemory(m) => write!(f, "out of memory: {m}"),
            ForwardError::Failed(m) => f.write_str(m),
        }
    }
}

pub struct LoadedModel {
    net: Net,
    pub config: ModelConfig,
    input_kind: Kind,
    /// One item's output shape, from the load-time probe.
    output_item_shape: Vec<i64>,
}

fn input_kind(dtype: Dtype, precision: Precision) -> Kind {
    match (dtype, precision) {
        (Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16, Precision::Fp16) => Kind::Half,
        (Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16, Precision::Bf16) => Kind::BFloat16,
        (Dtype::Float32, Precision::Fp32) => Kind::Float,
        (Dtype::Float16, Precision::Fp32) => Kind::Half,
        (Dtype::Bfloat16, Precision::Fp32) => Kind::BFloat16,
        (Dtype::Int64, _) => Kind::Int64,
        (Dtype::Int32, _) => Kind::Int,
        (Dtype::Uint8, _) => Kind::Uint8,
    }
}

fn build_native(model: BuiltinModel, p: &nn::Path) -> Box<dyn ModuleT> {
    use tch::vision::*;
    const CLASSES: i64 = 1000;
    match model {
        BuiltinModel::Resnet18 => Box::new(resnet::resnet18(p, CLASSES)),
        BuiltinModel::Resnet34 => Box::new(resnet::resnet34(p, CLASSES)),
        BuiltinModel::Resnet50 => Box::new(resnet::resnet50(p, CLASSES)),
        BuiltinModel::Resnet101 => Box::new(resnet::resnet101(p, CLASSES)),
        BuiltinModel::Alexnet => Box::new(alexnet::alexnet(p, CLASSES)),
        BuiltinModel::Vgg16 => Box::new(vgg::vgg16(p, CLASSES)),
        BuiltinModel::Densenet121 => Box::new(densenet::densenet121(p, CLASSES)),
        BuiltinModel::MobilenetV2 => Box::new(mobilenet::v2(p, CLASSES)),
        BuiltinModel::EfficientnetB0 => Box::new(efficientnet::b0(p, CLASSES)),
        BuiltinModel::Squeezenet1_1 => Box::new(squeezenet::v1_1(p, CLASSES)),
    }
}

fn example_tensor(
    batch: u32,
    item_shape: &[i64],
    kind: Kind,
    device: Device,
) -> std::result::Result<Tensor, ForwardError> {
    let mut shape = vec![i64::from(batch)];
    shape.extend_from_slice(item_shape);
    catch_torch(|| match kind {
        Kind::Float | Kind::Half | Kind::BFloat16 => {
            Tensor::randn(shape.as_slice(), (kind, device))
        }
        _ => Tensor::zeros(shape.as_slice(), (kind, device)),
    })
}

/// Loads a TorchScript model prepared as `config.graph` says. With more than one candidate
/// preparation (`auto` on the CPU: freezing alone, or freezing + `optimize_for_inference`) each is
/// loaded and timed and the faster is kept: `optimize_for_inference` converts activations to and
/// from MKLDNN's layout around each convolution, which makes real-sized convnets faster (resnet18 on
/// our CPU: 14–38%, the gain growing with the batch) and tiny models slower (a 3x16x16 CNN: 0.018 →
/// 0.058 ms). The score is batch-1 latency plus the per-item time at batch 4, so a model is not
/// judged on one batch size alone.
fn load_script(path: &Path, config: &ModelConfig, kind: Kind) -> Result<ScriptModule> {
    let meta = std::fs::metadata(path).map_err(|e| RuntimeError::ModelMissing {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(RuntimeError::ModelMissing {
            path: path.to_path_buf(),
            message: "not a regular file".into(),
        });
    }
    // Unreadable (a file on a volume written by root with mode 0600, read as uid 65532): said
    // as such, not as a corrupt model, which is what libtorch's failure would read as.
    std::fs::File::open(path).map_err(|e| RuntimeError::ModelMissing {
        path: path.to_path_buf(),
        message: format!(
            "cannot be read: {e} (the runtime runs as uid 65532: make the file readable to it)"
        ),
    })?;
    let cast = if config.precision == Precision::Fp32 {
        Kind::Float
    } else {
        kind
    };
    let load = |graph| {
        let loaded = ScriptModule::load(path, config.device, cast, graph, config.cuda_graphs)
            .map_err(|e| match classify(&e.to_string()) {
                ForwardError::OutOfMemory(m) => out_of_memory_loading(&m),
                ForwardError::Failed(_) => RuntimeError::ModelCorrupt {
                    path: path.to_path_buf(),
                    message: torch_message(&e),
                },
            })?;
        if let Some(why) = &loaded.warning {
            tracing::warn!("{}", torch_message(why));
        }
        Ok::<_, RuntimeError>(loaded.module)
    };
    let candidates = config.graph.candidates(config.device);
    let mut chosen: Option<(f64, ScriptModule)> = None;
    for graph in candidates.iter().copied() {
        let module = load(graph)?;
        if candidates.len() == 1 || module.applied() != graph {
            // Nothing to compare, or this preparation failed (the warning says why) and the
            // later ones build on it.
            chosen = Some((f64::NAN, module));
            break;
        }
        // A module that rejects the example loses; if all do, the load-time probe says why.
        let time = |batch: u32| {
            example_tensor(batch, &config.item_shape, kind, config.device)
                .ok()
                .and_then(|x| median_forward_ms(&module, &x))
                .unwrap_or(f64::INFINITY)
        };
        let (batch1_ms, batch4_ms) = (time(1), time(4));
        let ms = batch1_ms + batch4_ms / 4.0;
        tracing::info!(
            graph = graph.as_str(),
            batch1_ms,
            batch4_ms,
            score_ms = ms,
            "timed graph preparation"
        );
        if chosen.as_ref().is_none_or(|(best, _)| ms < *best) {
            chosen = Some((ms, module));
        }
    }
    let (_, module) = chosen.ok_or_else(|| RuntimeError::ModelCorrupt {
        path: path.to_path_buf(),
        message: "no graph preparation to load".into(),
    })?;
    tracing::info!(
        graph = module.applied().as_str(),
        "TorchScript graph prepared"
    );
    Ok(module)
}

/// Median of three timed forwards after an untimed one (a new shape may make the TorchScript
/// executor re-specialise); None if the module rejects the input. Host timing without a device
/// synchronisation: preparations are only compared on the CPU (`GraphOptimization::candidates`).
fn median_forward_ms(module: &ScriptModule, input: &Tensor) -> Option<f64> {
    let _ = module.forward(input).ok()?;
    let mut ms: Vec<f64> = (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            module
                .forward(input)
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2).copied()
}

thread_local! {
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that stays quiet for panics this module catches on purpose (libtorch
/// errors surfaced by tch as panics) and reports every other panic as usual.
pub fn install_panic_filter() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !CATCHING.with(|c| c.get()) {
            default(info);
        }
    }));
}

/// Runs `f`, turning a panic (a libtorch exception via tch) into a classified error.
pub fn catch_torch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, ForwardError> {
    CATCHING.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libtorch error".to_string());
        classify(&msg)
    })
}

/// Out of memory while loading the model or running its first batches (exit code 8: nothing can
/// be measured or served): not a corrupt model nor a wrong input, which the message would
/// otherwise say.
fn out_of_memory_loading(message: &str) -> RuntimeError {
    RuntimeError::NothingMeasured(format!(
        "out of memory loading the model or running its first batch: {message} (free the device's memory, or try a smaller --shape, or --precision fp16/bf16 on CUDA)"
    ))
}

fn classify(msg: &str) -> ForwardError {
    let short = torch_message(&msg);
    if msg.contains("out of memory")
        || msg.contains("CUBLAS_STATUS_ALLOC_FAILED")
        || msg.contains("CUDNN_STATUS_ALLOC_FAILED")
        || msg.contains("DefaultCPUAllocator: can't allocate")
    {
        ForwardError::OutOfMemory(short)
    } else {
        ForwardError::Failed(short)
    }
}

impl LoadedModel {
    /// Loads the model and proves it accepts the declared input by running batches of 1 and 2.
    pub fn load(config: ModelConfig) -> Result<Self> {
        let is_float = matches!(
            config.dtype,
            Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16
        );
        if config.precision != Precision::Fp32 && !config.device.is_cuda() {
            return Err(RuntimeError::Unsupported(
                format!("precision {}", config.precision.as_str()),
                "fp16/bf16 are offered on CUDA only; use fp32 on CPU".into(),
            ));
        }
        if config.precision != Precision::Fp32 && !is_float {
            return Err(RuntimeError::Usage {
                arg: "--precision",
                message: format!(
                    "{} applies to float inputs, not {:?}",
                    config.precision.as_str(),
                    config.dtype
                ),
            });
        }
        if config.cuda_graphs {
            let why = if !config.device.is_cuda() {
                Some("CUDA graphs need a CUDA device")
            } else if !matches!(config.source, ModelSource::TorchScript(_)) {
                Some("CUDA graphs are offered for TorchScript models, not builtin architectures")
            } else if !cuda_graphs_supported() {
                Some(
                    "this binary was built without CUDA graph support (no CUDA headers at build time; see docs/architecture.md)",
                )
            } else {
                None
            };
            if let Some(why) = why {
                return Err(RuntimeError::Unsupported(
                    "--cuda-graphs".into(),
                    why.into(),
                ));
            }
        }
        let kind = input_kind(config.dtype, config.precision);
        let net = match &config.source {
            ModelSource::TorchScript(path) => Net::Script(load_script(path, &config, kind)?),
            ModelSource::Builtin(b) => {
                // tch's layer builders panic on a libtorch error (out of memory for the weights).
                let built = catch_torch(|| {
                    let mut vars = nn::VarStore::new(config.device);
                    let net = build_native(*b, &vars.root());
                    match config.precision {
                        Precision::Fp32 => {}
                        Precision::Fp16 => vars.half(),
                        Precision::Bf16 => vars.bfloat16(),
                    }
                    (vars, net)
                });
                let (vars, net) = built.map_err(|e| match e {
                    ForwardError::OutOfMemory(m) => out_of_memory_loading(&m),
                    ForwardError::Failed(m) => RuntimeError::Unsupported(
                        format!("builtin:{}", b.name()),
                        format!("building it failed: {m}"),
                    ),
                })?;
                Net::Native { _vars: vars, net }
            }
        };
        let mut model = LoadedModel {
            net,
            config,
            input_kind: kind,
            output_item_shape: vec![],
        };
        // Out of memory is no mismatch: the declared input may be right and the device full.
        let probe_failure = |model: &LoadedModel, e: ForwardError| match e {
            ForwardError::OutOfMemory(m) => out_of_memory_loading(&m),
            ForwardError::Failed(m) => model.mismatch(m),
        };
        for batch in [1, 2] {
            let input = model
                .example_input(batch)
                .map_err(|e| probe_failure(&model, e))?;
            let output = model
                .forward(&input)
                .map_err(|e| probe_failure(&model, e))?;
            // Responses are split per request along the first dimension: it must be the batch.
            let leading = output.size().first().copied();
            if leading != Some(i64::from(batch)) {
                return Err(model.mismatch(format!(
                    "output shape {:?} does not keep the batch dimension {batch} first",
                    output.size()
                )));
            }
            model.output_item_shape = output.size().into_iter().skip(1).collect();
        }
        Ok(model)
    }

    fn mismatch(&self, message: String) -> RuntimeError {
        RuntimeError::InputMismatch {
            shape: self.config.item_shape.clone(),
            dtype: format!("{:?}", self.config.dtype),
            message,
        }
    }

    /// The tensor kind the model's input is fed as (the declared dtype at the chosen precision).
    pub fn input_kind(&self) -> Kind {
        self.input_kind
    }

    /// The output shape of one item (without the batch dimension), recorded by the load-time probe.
    pub fn output_item_shape(&self) -> &[i64] {
        &self.output_item_shape
    }

    /// True while a TorchScript model replays CUDA graphs.
    pub fn cuda_graphs_active(&self) -> bool {
        matches!(&self.net, Net::Script(m) if m.cuda_graphs_active())
    }

    /// How the model's graph was prepared, as recorded in a profile's `measuredOn.graph`.
    pub fn graph(&self) -> String {
        match &self.net {
            Net::Script(m) if m.cuda_graphs_active() => {
                format!("{}+cuda-graphs", m.applied().as_str())
            }
            // Some rows may have replayed graphs before a capture failed: say so.
            Net::Script(m) if m.cuda_graphs_requested() => {
                format!("{}+cuda-graphs-abandoned", m.applied().as_str())
            }
            Net::Script(m) => m.applied().as_str().to_string(),
            Net::Native { .. } => "native-tch-vision".to_string(),
        }
    }

    pub fn random_weights(&self) -> bool {
        matches!(self.config.source, ModelSource::Builtin(_))
    }

    /// A batch of `batch` items of the declared shape: standard-normal floats, or zeros for
    /// integer inputs (token ids and the like must stay in range).
    pub fn example_input(&self, batch: u32) -> std::result::Result<Tensor, ForwardError> {
        example_tensor(
            batch,
            &self.config.item_shape,
            self.input_kind,
            self.config.device,
        )
    }

    /// Runs one batch and waits for the device to finish it.
    pub fn forward(&self, input: &Tensor) -> std::result::Result<Tensor, ForwardError> {
        let out = match &self.net {
            // The C++ side catches libtorch's exceptions itself and returns them as messages.
            Net::Script(m) => m.forward(input).map_err(|e| classify(&e)),
            Net::Native { net, .. } => catch_torch(|| {
                let _guard = tch::no_grad_guard();
                net.forward_t(input, false)
            }),
        }?;
        self.synchronize()?;
        Ok(out)
    }

    /// Waits for the device to finish its queued work; a CUDA error surfacing here is the batch's
    /// error, not a panic.
    pub fn synchronize(&self) -> std::result::Result<(), ForwardError> {
        match self.config.device {
            Device::Cuda(i) => catch_torch(|| tch::Cuda::synchronize(i as i64)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_sources() {
        assert_eq!(
            ModelSource::parse("builtin:resnet18").unwrap(),
            ModelSource::Builtin(BuiltinModel::Resnet18)
        );
        assert_eq!(
            ModelSource::parse("file:///m.pt").unwrap(),
            ModelSource::TorchScript("/m.pt".into())
        );
        assert_eq!(
            ModelSource::parse("m.pt").unwrap(),
            ModelSource::TorchScript("m.pt".into())
        );
        let err = ModelSource::parse("builtin:resnet9000").unwrap_err();
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("resnet50"), "{err}");
        assert_eq!(ModelSource::parse("file://").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn classifies_out_of_memory() {
        assert!(matches!(
            classify("CUDA out of memory. Tried to allocate 2.00 GiB"),
            ForwardError::OutOfMemory(_)
        ));
        // cuDNN's workspace allocation for a large batch fails this way.
        assert!(matches!(
            classify("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
            ForwardError::OutOfMemory(_)
        ));
        assert!(matches!(
            classify("shape mismatch"),
            ForwardError::Failed(_)
        ));
    }
}
