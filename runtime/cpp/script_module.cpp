// A TorchScript module loaded, frozen and optimised for inference — the C++ half of
// runtime/src/model/script.rs. tch's CModule cannot freeze a module, and a module optimised for
// inference cannot be saved and reloaded (its MKLDNN constants do not serialise), so the runtime keeps
// the optimised module here and calls it through this small C ABI.
//
// Every entry point catches every exception: an error crosses the boundary as a malloc'd message in
// `*err` (freed with gb_string_free), never as an unwinding exception.
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <string>

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
    for (const c10::IValue e : v.toListRef()) {
      if (first_tensor(e, out)) return true;
    }
    return false;
  }
  return false;
}

}  // namespace

extern "C" {

struct gb_module {
  torch::jit::Module module;
};

// Loads `path` onto `device`, casts floating-point parameters to `half` (1) or bfloat16 (2) when
// asked (0 keeps them), puts the module in eval mode and applies `level`: 0 nothing, 1 freeze,
// 2 freeze + optimize_for_inference. A failure to freeze or optimise is not fatal: the module is
// kept at the last level that worked and `*warning` says why. Returns null with `*err` set when the
// file cannot be loaded at all. `*applied` receives the level actually applied.
gb_module* gb_module_load(const char* path, int device, int cast, int level, int* applied,
                          char** err, char** warning) {
  *err = nullptr;
  *warning = nullptr;
  *applied = 0;
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device_of(device));
    if (cast == 1) {
      module.to(at::kHalf);
    } else if (cast == 2) {
      module.to(at::kBFloat16);
    }
    module.eval();
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
    return nullptr;
  } catch (...) {
    *err = copy_string("unknown C++ exception while loading the TorchScript module");
    return nullptr;
  }
  if (level >= 1) {
    try {
      module = torch::jit::freeze(module);
      *applied = 1;
    } catch (const std::exception& e) {
      *warning = copy_string(std::string("freezing failed, serving the module unfrozen: ") + e.what());
    }
  }
  if (level >= 2 && *applied == 1) {
    try {
      module = torch::jit::optimize_for_inference(module);
      *applied = 2;
    } catch (const std::exception& e) {
      *warning = copy_string(
          std::string("optimize_for_inference failed, serving the frozen module: ") + e.what());
    }
  }
  try {
    return new gb_module{std::move(module)};
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
    return nullptr;
  }
}

// Runs forward on one input under InferenceMode and returns the first tensor output as a new
// heap-allocated at::Tensor (tch's C_tensor, owned by the caller: tch::Tensor::from_ptr frees it).
at::Tensor* gb_module_forward(gb_module* m, const at::Tensor* input, char** err) {
  *err = nullptr;
  try {
    c10::InferenceMode guard;
    std::vector<c10::IValue> inputs{*input};
    c10::IValue out = m->module.forward(inputs);
    at::Tensor t;
    if (!first_tensor(out, &t)) {
      *err = copy_string("the model returned no tensor");
      return nullptr;
    }
    return new at::Tensor(std::move(t));
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
    return nullptr;
  } catch (...) {
    *err = copy_string("unknown C++ exception in forward");
    return nullptr;
  }
}

void gb_module_free(gb_module* m) { delete m; }

void gb_string_free(char* s) { std::free(s); }

}  // extern "C"
