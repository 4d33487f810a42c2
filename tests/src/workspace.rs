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

/// A file's content digest as the API writes it (`sha256:<hex>`), for specs and `--model-digest`.
pub fn file_digest(path: &std::path::Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}
