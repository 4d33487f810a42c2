// A TorchScript module loaded, frozen and optimised for inference — the C++ half of
// runtime/src/model/script.rs. tch's CModule cannot freeze a module, and a module optimised for
// inference cannot be saved and reloaded (its MKLDNN constants do not serialise), so the runtime keeps
// the optimised module here and calls it through this small C ABI.
//
// Every entry point catches every exception: an error crosses the boundary as a malloc'd message in
// `*err` (freed with gb_string_free), never as an unwinding exception.
//
// With GREENBATCH_WITH_CUDA_GRAPHS (build.rs defines it when libtorch has CUDA and the CUDA headers are
// installed), a module on CUDA can replay each input shape as one captured CUDA graph instead of
// launching its kernels one by one. Only out-of-line libtorch / c10_cuda functions are called (no
// CUDA-guard headers, whose inline code would reference libcudart directly), so the binary needs
// nothing beyond the libtorch libraries it already links.
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#ifdef GREENBATCH_WITH_CUDA_GRAPHS
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/core/StreamGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// The same device numbering as tch: -1 is the CPU, i >= 0 is CUDA device i.
c10::Device device_of(int d) {
  if (d < 0) {
    return c10::Device(c10::kCPU);
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(d));
}

// The model's first tensor output: models may return a tuple or a list.
bool first_tensor(const c10::IValue& v, at::Tensor* out) {
  if (v.isTensor()) {
    *out = v.toTensor();
    return true;
  }
  if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) {
      if (first_tensor(e, out)) return true;
    }
    return false;
  }
  if (v.isList()) {
    for (const c10::IValue& e : v.toListRef()) {
      if (first_tensor(e, out)) return true;
    }
    return false;
  }
  return false;
}

at::Tensor run_forward(torch::jit::Module& module, const at::Tensor& input) {
  std::vector<c10::IValue> inputs{input};
  c10::IValue out = module.forward(inputs);
  at::Tensor t;
  if (!first_tensor(out, &t)) {
    throw std::runtime_error("the model returned no tensor");
  }
  return t;
}

#ifdef GREENBATCH_WITH_CUDA_GRAPHS
// CUDAGraph's own cleanup releases its memory pool only once cudaStreamEndCapture succeeded; this
// exposes that flag so a failed capture can be cleaned up here (see abandon_capture).
struct Graph : at::cuda::CUDAGraph {
  bool capture_ended() const { return capture_ended_; }
};

// One input shape's forward pass captured as a CUDA graph: replaying it reads `input` and writes
// `output`, both allocated once.
struct Captured {
  at::Tensor input;
  at::Tensor output;
  std::unique_ptr<Graph> graph;
};

// A capture failed (what a capture may not do: synchronise with the host, run CPU ops).
struct CaptureFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// After a failed capture, undo what capture_begin registered and CUDAGraph will not undo itself: the
// allocators' routing of new allocations into the pool (whose filters point at the graph object
// about to be destroyed) and this capture's reference to the pool, so the pool is freed once the
// other graphs sharing it go. Each step may already have happened (capture_end got partway), so
// each may throw "not recording", which is fine. The host allocator's pool reference is left alone:
// whether this libtorch's capture took one is not visible from here, and a leaked reference only
// keeps some pinned host blocks cached.
void abandon_capture(Graph& graph, c10::DeviceIndex index, at::cuda::MempoolId_t pool) {
  try {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(index, pool);
  } catch (...) {
  }
  try {
    at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(pool);
  } catch (...) {
  }
  if (!graph.capture_ended()) {
    try {
      c10::cuda::CUDACachingAllocator::releasePool(index, pool);
    } catch (...) {
    }
  }
}

// Warm-up and capture run on a side stream (capture is not allowed on the default stream); replay
// runs on the caller's current stream, ordered with its copies. All captures of a module share one
// memory pool. PyTorch calls that safe when graphs replay in capture order; it is also safe here in
// any order because replays never overlap (one executor thread, one stream) and each replay's
// output is copied out before the next replay, while every static output stays allocated: one
// graph's intermediates may reuse another's, never a tensor that is read later.
//
// Errors in the eager warm-up (e.g. out of memory at a large batch) propagate as they are; only a
// failure of the capture itself is a CaptureFailed.
Captured capture(torch::jit::Module& module, const at::Tensor& example, bool* have_pool,
                 at::cuda::MempoolId_t* pool) {
  const c10::DeviceIndex index = example.device().index();
  c10::DeviceGuard device_guard(example.device());
  Captured c;
  c.input = example.clone();
  at::cuda::getCurrentCUDAStream(index).unwrap().synchronize();
  c10::Stream side = c10::cuda::getStreamFromPool(false, index).unwrap();
  c10::StreamGuard stream_guard(side);
  // Eager warm-up first: cuDNN autotuning, lazy initialisation, the TorchScript executor's
  // specialisation for this shape and first allocations must not happen inside the capture.
  for (int i = 0; i < 3; ++i) {
    run_forward(module, c.input);
  }
  side.synchronize();
  if (!*have_pool) {
    *pool = at::cuda::graph_pool_handle();
    *have_pool = true;
  }
  c.graph = std::make_unique<Graph>();
  // Global capture mode (the default): a CUDA call from another thread during the capture would
  // invalidate it. The runtime's other threads (HTTP, the energy meter) make none; NVML is not CUDA.
  c.graph->capture_begin(*pool);
  try {
    c.output = run_forward(module, c.input);
    c.graph->capture_end();
  } catch (const std::exception& e) {
    std::string why = e.what();
    // End the capture so the stream is usable again; the first error is the one to report.
    try {
      c.graph->capture_end();
    } catch (...) {
    }
    abandon_capture(*c.graph, index, *pool);
    throw CaptureFailed(why);
  }
  // A replay must reproduce an eager run of the same input before it is trusted: a capture that
  // recorded the wrong thing (a step the TorchScript executor specialised only later, say) must
  // not silently serve different numbers. Same kernels, so the tolerance only covers
  // non-deterministic reductions.
  try {
    at::Tensor expected = run_forward(module, c.input).clone();
    c.graph->replay();
    side.synchronize();
    const bool half = c.output.scalar_type() == at::kHalf || c.output.scalar_type() == at::kBFloat16;
    const double rtol = half ? 1e-2 : 1e-3;
    const double atol = half ? 1e-2 : 1e-4;
    if (!c.output.sizes().equals(expected.sizes()) ||
        !at::allclose(c.output, expected, rtol, atol, /*equal_nan=*/true)) {
      throw std::runtime_error("a replay of the captured graph differs from eager execution");
    }
  } catch (const std::exception& e) {
    throw CaptureFailed(e.what());
  }
  return c;
}
#endif

}  // namespace

extern "C" {

struct gb_module {
  torch::jit::Module module;
  bool cuda_graphs = false;
#ifdef GREENBATCH_WITH_CUDA_GRAPHS
  // Keyed by the input's shape (the dtype is fixed per module).
  std::map<std::vector<int64_t>, Captured> graphs;
  bool have_pool = false;
  at::cuda::MempoolId_t pool{0, 0};
#endif
};

// 1 when this build can capture CUDA graphs.
int gb_cuda_graphs_supported() {
#ifdef GREENBATCH_WITH_CUDA_GRAPHS
  return 1;
#else
  return 0;
#endif
}

// Loads `path` onto `device`, casts floating-point parameters to `half` (1) or bfloat16 (2) when
// asked (0 keeps them), puts the module in eval mode and applies `level`: 0 nothing, 1 freeze,
// 2 freeze + optimize_for_inference. A failure to freeze or optimise is not fatal: the module is
// kept at the last level that worked and `*warning` says why. Returns null with `*err` set when the
// file cannot be loaded at all. `*applied` receives the level actually applied.
//
// `cuda_graphs` (1) replays each input shape as a captured CUDA graph (CUDA devices, builds with
// GREENBATCH_WITH_CUDA_GRAPHS only; the caller checks both).
gb_module* gb_module_load(const char* path, int device, int cast, int level, int cuda_graphs,
                          int* applied, char** err, char** warning) {
  *err = nullptr;
  *warning = nullptr;
  *applied = 0;
  try {
    torch::jit::Module module = torch::jit::load(path, device_of(device));
    if (cast == 1) {
      module.to(at::kHalf);
    } else if (cast == 2) {
      module.to(at::kBFloat16);
    }
    module.eval();
    if (level >= 1) {
      try {
        module = torch::jit::freeze(module);
        *applied = 1;
      } catch (const std::exception& e) {
        *warning = copy_string(std::string("freezing failed, serving the module unfrozen: ") + e.what());
      }
    }
    if (level >= 2 && *applied == 1) {
      // optimize_for_inference rewrites a frozen module's graph in place: a pass that throws
      // midway would leave it half-rewritten, so it works on a copy.
      try {
        torch::jit::Module copy = module.clone();
        module = torch::jit::optimize_for_inference(copy);
        *applied = 2;
      } catch (const std::exception& e) {
        *warning = copy_string(
            std::string("optimize_for_inference failed, serving the frozen module: ") + e.what());
      }
    }
    auto* m = new gb_module;
    m->module = std::move(module);
    m->cuda_graphs = cuda_graphs != 0;
    return m;
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
  } catch (...) {
    *err = copy_string("unknown C++ exception while loading the TorchScript module");
  }
  return nullptr;
}

// Runs forward on one input under InferenceMode and returns the first tensor output as a new
// heap-allocated at::Tensor (tch's C_tensor, owned by the caller: tch::Tensor::from_ptr frees it).
// With CUDA graphs, the first call for a shape captures it; a shape that cannot be captured (the
// model synchronises with the host, or runs CPU ops) turns graphs off for the module, runs eagerly
// and says why in `*warning`.
at::Tensor* gb_module_forward(gb_module* m, const at::Tensor* input, char** err, char** warning) {
  *err = nullptr;
  *warning = nullptr;
  try {
    c10::InferenceMode guard;
#ifdef GREENBATCH_WITH_CUDA_GRAPHS
    if (m->cuda_graphs && input->is_cuda()) {
      // Replay uses the current device's current stream: make it the input's device.
      c10::DeviceGuard device_guard(input->device());
      std::vector<int64_t> key = input->sizes().vec();
      auto it = m->graphs.find(key);
      if (it == m->graphs.end()) {
        try {
          it = m->graphs.emplace(key, capture(m->module, *input, &m->have_pool, &m->pool)).first;
        } catch (const CaptureFailed& e) {
          m->cuda_graphs = false;
          m->graphs.clear();
          *warning = copy_string(
              std::string("CUDA graph capture failed, running eagerly from now on: ") + e.what());
        }
      }
      if (m->cuda_graphs) {
        Captured& c = it->second;
        c.input.copy_(*input);
        c.graph->replay();
        // The next replay overwrites the static output: hand out a copy.
        return new at::Tensor(c.output.clone());
      }
    }
#endif
    return new at::Tensor(run_forward(m->module, *input));
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
    return nullptr;
  } catch (...) {
    *err = copy_string("unknown C++ exception in forward");
    return nullptr;
  }
}

// 1 while forward replays CUDA graphs.
int gb_module_cuda_graphs_active(const gb_module* m) { return m->cuda_graphs ? 1 : 0; }

void gb_module_free(gb_module* m) { delete m; }

void gb_string_free(char* s) { std::free(s); }

}  // extern "C"
