//! The CUDA link trap (see docs/architecture.md): torch-sys asks for `-Wl,--no-as-needed -ltorch`,
//! but cargo does not pass a dependency's link arguments to the final binary, so with the default
//! `--as-needed` the linker drops `libtorch_cuda.so` (nothing references its symbols directly) and on
//! a GPU host `tch::Cuda::is_available()` is false. Force it in whenever libtorch has CUDA support.
//!
//! Also compiles `cpp/script_module.cpp` (the frozen, inference-optimised TorchScript module, see
//! src/model/script.rs) against the same libtorch headers and C++ ABI as torch-sys.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=cpp/script_module.cpp");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB (the libtorch lib directory)");
    let lib = Path::new(&dir);
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    let cuda_include = if has_cuda {
        cuda_include_dirs(lib)
    } else {
        None
    };
    if has_cuda && cuda_include.is_none() {
        println!(
            "cargo:warning=libtorch has CUDA but no CUDA headers of its CUDA release were found (the wheel's nvidia/*/include with nvidia-cuda-crt, CUDA_HOME, CUDA_PATH, /usr/local/cuda): --cuda-graphs is unavailable in this build"
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
    println!(
        "cargo:rustc-env=GREENBATCH_BUILT_WITH_CUDA_GRAPHS={}",
        if cuda_include.is_some() { "yes" } else { "no" }
    );
}

/// The headers sit beside `lib/` in both layouts torch-sys accepts (a libtorch zip, or the `torch`
/// package of a PyPI wheel). torch-sys's default ABI is the C++11 one, as in the PyPI wheels since
/// torch 2.7; `LIBTORCH_CXX11_ABI=0` overrides it for both.
fn compile_script_module(lib: &Path, cuda_include: Option<&[PathBuf]>) {
    let root = lib
        .parent()
        .expect("the libtorch lib directory has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    let mut build = cc::Build::new();
    if let Some(dirs) = cuda_include {
        build
            .includes(dirs)
            .define("GREENBATCH_WITH_CUDA_GRAPHS", None);
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

/// CUDA runtime headers for CUDA graph capture, from the CUDA release libtorch was built with:
/// `at::cuda::CUDAGraph`'s layout depends on `CUDA_VERSION`, so headers of another release could
/// make our code and libtorch disagree on the object's size. Where libtorch's CUDA version is known
/// (`version.py` of a PyPI torch, `build-version` of a libtorch zip) a header set must match it.
/// Searched in order: the CUDA wheels beside a PyPI torch (`site-packages/nvidia/*/include`; CUDA 13
/// keeps everything in `nvidia/cu13/include`, CUDA 12 spreads it over several wheels, and
/// `crt/host_config.h` comes from the `nvidia-cuda-crt` wheel that scripts/setup-libtorch.sh
/// installs), then `CUDA_HOME`, `CUDA_PATH` and /usr/local/cuda.
fn cuda_include_dirs(lib: &Path) -> Option<Vec<PathBuf>> {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    let root = lib.parent()?;
    let torch_cuda = libtorch_cuda_version(root);
    let mut sets: Vec<Vec<PathBuf>> = Vec::new();
    // Built again when the CUDA wheels change: headers installed after a first build that found
    // none (a download that failed once) would otherwise never be used by this cached build.
    if let Some(site) = root.parent() {
        let wheels = site.join("nvidia");
        let watched = if wheels.is_dir() {
            wheels
        } else {
            site.to_path_buf()
        };
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    if let Some(site) = root.parent()
        && let Ok(entries) = std::fs::read_dir(site.join("nvidia"))
    {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("include"))
            .collect();
        dirs.sort();
        let runtime = dirs.iter().find(|d| d.join("cuda_runtime_api.h").exists());
        let crt = dirs.iter().find(|d| d.join("crt/host_config.h").exists());
        if let (Some(runtime), Some(crt)) = (runtime, crt) {
            let mut set = vec![runtime.clone()];
            if crt != runtime {
                set.push(crt.clone());
            }
            sets.push(set);
        }
    }
    let system = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|d| Path::new(&d).join("include"))
        .chain([PathBuf::from("/usr/local/cuda/include")])
        .filter(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists());
    sets.extend(system.map(|d| vec![d]));
    sets.into_iter().find(|set| {
        let headers = set.iter().find_map(|d| header_cuda_version(d));
        match (&torch_cuda, &headers) {
            (Some(t), Some(h)) if t != h => {
                println!(
                    "cargo:warning=CUDA headers in {} are CUDA {h}, libtorch was built with CUDA {t}: not used",
                    set[0].display()
                );
                false
            }
            (_, None) => false,
            _ => true,
        }
    })
}

/// "13.0" from a PyPI torch's `version.py` (`cuda: Optional[str] = '13.0'`) or a libtorch zip's
/// `build-version` (`2.11.0+cu130`).
fn libtorch_cuda_version(root: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.trim_start().starts_with("cuda"))?;
        return line.split('\'').nth(1).map(str::to_string);
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    let digits = text.trim().split("+cu").nth(1)?;
    let (major, minor) = digits.split_at(digits.len().checked_sub(1)?);
    Some(format!("{major}.{minor}"))
}

/// "13.0" from `#define CUDA_VERSION 13000` in `cuda.h`.
fn header_cuda_version(include: &Path) -> Option<String> {
    let text = std::fs::read_to_string(include.join("cuda.h")).ok()?;
    let n: u32 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define CUDA_VERSION "))?
        .trim()
        .parse()
        .ok()?;
    Some(format!("{}.{}", n / 1000, (n % 1000) / 10))
}
