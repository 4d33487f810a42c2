//! The runtime's exit codes and what each means: one table for the runtime, which exits with them,
//! and the operator, which reads them off a pod and says them in a service's conditions.

pub const USAGE: u8 = 2;
pub const MODEL_MISSING: u8 = 3;
pub const MODEL_CORRUPT: u8 = 4;
pub const INPUT_MISMATCH: u8 = 5;
pub const UNKNOWN_BUILTIN: u8 = 6;
pub const METER_UNAVAILABLE: u8 = 7;
pub const NOTHING_MEASURED: u8 = 8;
pub const OUTPUT_NOT_WRITABLE: u8 = 9;
pub const KUBERNETES_API: u8 = 10;
pub const UNSUPPORTED: u8 = 11;
pub const BAD_CANDIDATES: u8 = 12;
pub const MODEL_FETCH: u8 = 13;
pub const DIGEST_MISMATCH: u8 = 14;
pub const MODEL_UNREACHABLE: u8 = 15;

/// Each code in words, as a condition says it.
const MEANINGS: [(u8, &str); 14] = [
    (USAGE, "bad argument"),
    (MODEL_MISSING, "model file missing"),
    (MODEL_CORRUPT, "model not loadable"),
    (INPUT_MISMATCH, "model rejects the declared input"),
    (UNKNOWN_BUILTIN, "unknown builtin model"),
    (METER_UNAVAILABLE, "requested meter unavailable"),
    (
        NOTHING_MEASURED,
        "nothing could be measured (out of memory, or past the time limit)",
    ),
    (OUTPUT_NOT_WRITABLE, "output not writable"),
    (
        KUBERNETES_API,
        "Kubernetes API error (check the runtime service account's RBAC)",
    ),
    (UNSUPPORTED, "not supported on this device"),
    (BAD_CANDIDATES, "bad batch sizes"),
    (MODEL_FETCH, "model download failed"),
    (
        DIGEST_MISMATCH,
        "model file does not have the digest asked for",
    ),
    (MODEL_UNREACHABLE, "model store unreachable (may pass)"),
];

/// What exit code `code` means, for a code the runtime exits with.
pub fn meaning(code: i32) -> Option<&'static str> {
    MEANINGS
        .iter()
        .find(|(c, _)| i32::from(*c) == code)
        .map(|(_, words)| *words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_words() {
        for (code, words) in MEANINGS {
            assert_eq!(meaning(i32::from(code)), Some(words));
            assert_eq!(MEANINGS.iter().filter(|(c, _)| *c == code).count(), 1);
        }
        assert_eq!(
            meaning(14),
            Some("model file does not have the digest asked for")
        );
        for unknown in [0, 1, 16, 101, 137] {
            assert_eq!(meaning(unknown), None, "{unknown}");
        }
    }
}
