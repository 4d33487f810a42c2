//! Runtime errors and the process exit code each maps to. Distinct codes let a Job's controller (and
//! a person reading `kubectl describe pod`) tell a bad model from a bad argument from a broken GPU.

use greenbatch_core::exit_codes;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid argument {arg}: {message}")]
    Usage { arg: &'static str, message: String },
    #[error("cannot read model file {path}: {message}")]
    ModelMissing { path: PathBuf, message: String },
    #[error("cannot load TorchScript model {path}: {message}")]
    ModelCorrupt { path: PathBuf, message: String },
    #[error("model rejects the declared input {shape:?} ({dtype}): {message}")]
    InputMismatch {
        shape: Vec<i64>,
        dtype: String,
        message: String,
    },
    #[error("unknown builtin model {name:?}; known: {known}")]
    UnknownBuiltin { name: String, known: String },
    #[error("energy meter {kind} unavailable: {message}")]
    Meter { kind: String, message: String },
    #[error("no batch size could be measured: {0}")]
    NothingMeasured(String),
    #[error("cannot write {path}: {message}")]
    Output { path: String, message: String },
    #[error("Kubernetes API: {0}")]
    Cluster(String),
    #[error("{0} is not supported on this device: {1}")]
    Unsupported(String, String),
    #[error("invalid batch sizes: {0}")]
    Candidates(String),
    #[error("cannot download model {url}: {message}")]
    ModelFetch { url: String, message: String },
    #[error("cannot download model {url}, the store could not be reached: {message}")]
    ModelUnreachable { url: String, message: String },
    #[error("model {what} has digest {actual}, not the {expected} asked for")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
}

impl RuntimeError {
    /// Exit codes: 2 usage, 3 model file missing, 4 model corrupt, 5 input mismatch, 6 unknown
    /// builtin, 7 meter unavailable, 8 nothing measured (e.g. out of memory at every size),
    /// 9 output not writable, 10 Kubernetes API failure, 11 unsupported on this device,
    /// 12 invalid candidate batch sizes, 13 model download failed, 14 model file does not have the
    /// digest asked for, 15 model store unreachable through every try (may pass).
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::Usage { .. } => exit_codes::USAGE,
            RuntimeError::ModelMissing { .. } => exit_codes::MODEL_MISSING,
            RuntimeError::ModelCorrupt { .. } => exit_codes::MODEL_CORRUPT,
            RuntimeError::InputMismatch { .. } => exit_codes::INPUT_MISMATCH,
            RuntimeError::UnknownBuiltin { .. } => exit_codes::UNKNOWN_BUILTIN,
            RuntimeError::Meter { .. } => exit_codes::METER_UNAVAILABLE,
            RuntimeError::NothingMeasured(_) => exit_codes::NOTHING_MEASURED,
            RuntimeError::Output { .. } => exit_codes::OUTPUT_NOT_WRITABLE,
            RuntimeError::Cluster(_) => exit_codes::KUBERNETES_API,
            RuntimeError::Unsupported(..) => exit_codes::UNSUPPORTED,
            RuntimeError::Candidates(_) => exit_codes::BAD_CANDIDATES,
            RuntimeError::ModelFetch { .. } => exit_codes::MODEL_FETCH,
            RuntimeError::DigestMismatch { .. } => exit_codes::DIGEST_MISMATCH,
            RuntimeError::ModelUnreachable { .. } => exit_codes::MODEL_UNREACHABLE,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The first line(s) of a libtorch error: its C++ backtraces are noise for a user. Handles both
/// real newlines and the escaped `\n` of an error that went through `Debug` (tch's panics). A
/// longer message (a TorchScript traceback) keeps its first two lines and the last that names an
/// error (`…Error: …`, where the interpreter says what the model raised; CUDA adds advice after
/// it), else its last.
pub fn torch_message(e: &impl std::fmt::Display) -> String {
    let full = e.to_string().replace("\\n", "\n");
    let full = full
        .strip_prefix("called `Result::unwrap()` on an `Err` value: ")
        .map(|rest| rest.trim_start_matches("Torch(\"").to_string())
        .unwrap_or(full);
    let lines: Vec<&str> = full
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Exception raised from")
                && !l.starts_with("frame #")
                // What is left of the `Debug` wrapping of a panic.
                && !l.trim_matches(|c| c == '"' || c == ')').is_empty()
        })
        .collect();
    let shown = if lines.len() > 4 {
        let named = |l: &&&str| l.contains("Error: ") || l.contains("Exception: ");
        let last = lines[2..]
            .iter()
            .rev()
            .find(named)
            .or(lines.last())
            .copied()
            .unwrap_or_default();
        vec![lines[0], lines[1], "…", last]
    } else {
        lines
    };
    shown.join(" | ").trim_end_matches("\")").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_exits_with_a_code_the_operator_can_say() {
        let s = || String::from("x");
        let errors = [
            RuntimeError::Usage {
                arg: "--x",
                message: s(),
            },
            RuntimeError::ModelMissing {
                path: "m".into(),
                message: s(),
            },
            RuntimeError::ModelCorrupt {
                path: "m".into(),
                message: s(),
            },
            RuntimeError::InputMismatch {
                shape: vec![1],
                dtype: s(),
                message: s(),
            },
            RuntimeError::UnknownBuiltin {
                name: s(),
                known: s(),
            },
            RuntimeError::Meter {
                kind: s(),
                message: s(),
            },
            RuntimeError::NothingMeasured(s()),
            RuntimeError::Output {
                path: s(),
                message: s(),
            },
            RuntimeError::Cluster(s()),
            RuntimeError::Unsupported(s(), s()),
            RuntimeError::Candidates(s()),
            RuntimeError::ModelFetch {
                url: s(),
                message: s(),
            },
            RuntimeError::ModelUnreachable {
                url: s(),
                message: s(),
            },
            RuntimeError::DigestMismatch {
                what: s(),
                expected: s(),
                actual: s(),
            },
        ];
        let mut codes: Vec<u8> = errors.iter().map(RuntimeError::exit_code).collect();
        for code in &codes {
            assert!(exit_codes::meaning(i32::from(*code)).is_some(), "{code}");
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len(), "each error its own code");
    }

    #[test]
    fn torch_messages_lose_backtraces_and_debug_wrapping() {
        let panic = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 256.00 GiB.\\nException raised from malloc at x.cpp:1 (most recent call first):\\nframe #0: c10::Error\")";
        assert_eq!(
            torch_message(&panic),
            "CUDA out of memory. Tried to allocate 256.00 GiB."
        );
        assert_eq!(torch_message(&"bad shape\nframe #1: foo"), "bad shape");
        // A TorchScript traceback: where it failed, and (last) what the model raised.
        let script = "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript, serialized code (most recent call last):\n  File \"code/__torch__.py\", line 10, in forward\n    x: Tensor) -> Tensor:\n    if bool(torch.gt(torch.max(x), 1000.)):\n      ops.prim.RaiseException(\"poisoned input\")\nbuiltins.RuntimeError: poisoned input\n\nException raised from x at y.cpp:1";
        assert_eq!(
            torch_message(&script),
            "The following operation failed in the TorchScript interpreter. | Traceback of TorchScript, serialized code (most recent call last): | … | builtins.RuntimeError: poisoned input"
        );
        // CUDA's advice after the error, and a panic's `")` ending, do not hide it.
        let cuda = format!(
            "{}\nRuntimeError: CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported.\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n\")",
            script.lines().take(6).collect::<Vec<_>>().join("\n")
        );
        assert!(
            torch_message(&cuda).ends_with(
                "| … | RuntimeError: CUDA error: an illegal memory access was encountered"
            ),
            "{}",
            torch_message(&cuda)
        );
    }
}
