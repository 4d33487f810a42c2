//! The CUDA link trap (see docs/architecture.md): torch-sys asks for `-Wl,--no-as-needed -ltorch`,
//! but cargo does not pass a dependency's link arguments to the final binary, so with the default
//! `--as-needed` the linker drops `libtorch_cuda.so` (nothing references its symbols directly) and on
//! a GPU host `tch::Cuda::is_available()` is false. Force it in whenever libtorch has CUDA support.
//!
//! Also compiles `cpp/script_module.cpp` (the frozen, inference-optimised TorchScript module, see
//! src/model/script.rs) against the same libtorch headers and C++ ABI as torch-sys.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=cpp/script_module.cpp");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB (the libtorch lib directory)");
    let lib = Path::new(&dir);
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    let cuda_include = if has_cuda {
        cuda_include_dir(lib)
    } else {
        None
    };
    if has_cuda && cuda_include.is_none() {
        println!(
            "cargo:warning=libtorch has CUDA but no CUDA headers were found (CUDA_HOME, the wheel's nvidia/*/include with nvidia-cuda-crt, /usr/local/cuda): --cuda-graphs is unavailable in this build"
        );
    }
    compile_script_module(lib, cuda_include.as_deref());
    // An rpath to the build's libtorch so the binary runs here without LD_LIBRARY_PATH; on another
    // host LD_LIBRARY_PATH (searched first) points at that host's libtorch.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        // CUDA graph capture (cpp/script_module.cpp) calls into c10_cuda.
        println!("cargo:rustc-link-arg=-lc10_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-env=GREENBATCH_LIBTORCH_CUDA=1");
    } else {
        println!("cargo:rustc-env=GREENBATCH_LIBTORCH_CUDA=0");
    }
    println!("cargo:rustc-env=GREENBATCH_LIBTORCH_LIB={}", lib.display());
}

/// The headers sit beside `lib/` in both layouts torch-sys accepts (a libtorch zip, or the `torch`
/// package of a PyPI wheel). torch-sys's default ABI is the C++11 one, as in the PyPI wheels since
/// torch 2.7; `LIBTORCH_CXX11_ABI=0` overrides it for both.
fn compile_script_module(lib: &Path, cuda_include: Option<&Path>) {
    let root = lib
        .parent()
        .expect("the libtorch lib directory has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    let mut build = cc::Build::new();
    if let Some(dir) = cuda_include {
        build.include(dir).define("GREENBATCH_CUDA_GRAPHS", None);
    }
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        // libtorch's own headers warn under -Wall; our file is kept warning-free by hand.
        .warnings(false)
        .file("cpp/script_module.cpp")
        .compile("greenbatch_script_module");
}

/// CUDA runtime headers for CUDA graph capture: `CUDA_HOME`/`CUDA_PATH`, the CUDA wheels beside a
/// PyPI torch (`site-packages/nvidia/<cuXY>/include`; `crt/host_config.h` comes from the
/// `nvidia-cuda-crt` wheel, which scripts/setup-libtorch.sh installs), or /usr/local/cuda.
fn cuda_include_dir(lib: &Path) -> Option<std::path::PathBuf> {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    let mut candidates: Vec<std::path::PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|d| Path::new(&d).join("include"))
        .collect();
    if let Some(site) = lib.parent().and_then(Path::parent) {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut wheels: Vec<_> = entries
                .flatten()
                .map(|e| e.path().join("include"))
                .collect();
            wheels.sort();
            candidates.extend(wheels);
        }
    }
    candidates.push("/usr/local/cuda/include".into());
    candidates
        .into_iter()
        .find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())
}
