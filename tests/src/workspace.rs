//! Where the workspace and its built binaries are.

use std::path::PathBuf;

/// The root of the cargo workspace (where `crds/`, `examples/` and `charts/` are).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// A binary of this workspace, built by cargo: `$<env_override>` when set, else `debug/<name>` in
/// `$CARGO_TARGET_DIR` (or the workspace's `target/`). Tests that run one say which `cargo build`
/// makes it when it is missing.
pub fn built_binary(name: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join(name)
}
