//! The CUDA link trap (see docs/architecture.md): torch-sys asks for `-Wl,--no-as-needed -ltorch`,
//! but cargo does not pass a dependency's link arguments to the final binary, so with the default
//! `--as-needed` the linker drops `libtorch_cuda.so` (nothing references its symbols directly) and on
//! a GPU host `tch::Cuda::is_available()` is false. Force it in whenever libtorch has CUDA support.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB unset: cannot check for libtorch_cuda");
        return;
    };
    let lib = Path::new(&dir);
    // An rpath to the build's libtorch so the binary runs here without LD_LIBRARY_PATH; on another
    // host LD_LIBRARY_PATH (searched first) points at that host's libtorch.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-env=GREENBATCH_LIBTORCH_CUDA=1");
    } else {
        println!("cargo:rustc-env=GREENBATCH_LIBTORCH_CUDA=0");
    }
    println!("cargo:rustc-env=GREENBATCH_LIBTORCH_LIB={}", lib.display());
}
