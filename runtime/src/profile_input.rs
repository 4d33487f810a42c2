//! Reading a saved profile: the EnergyProfile status `profile --json` writes, or a whole
//! EnergyProfile object as `kubectl get energyprofile <name> -o json` prints it. `tune` and
//! `serve` both read one.

use crate::error::{Result, RuntimeError};
use greenbatch_crds::EnergyProfileStatus;

/// A saved profile (EnergyProfile status JSON); `arg` names the flag that gave it, for errors.
pub fn read_profile(path: &std::path::Path, arg: &'static str) -> Result<EnergyProfileStatus> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::Usage {
        arg,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    parse_profile(&text, arg).map_err(|e| match e {
        RuntimeError::Usage { arg, message } => RuntimeError::Usage {
            arg,
            message: format!("{}: {message}", path.display()),
        },
        other => other,
    })
}

/// A profile from its JSON text: an EnergyProfile status (what `profile --json` writes), or a
/// whole EnergyProfile object as `kubectl get energyprofile <name> -o json` prints it — what-if
/// questions (another SLO, another rate) on a profile measured in the cluster.
pub fn parse_profile(text: &str, arg: &'static str) -> Result<EnergyProfileStatus> {
    let invalid = |e: serde_json::Error| RuntimeError::Usage {
        arg,
        message: format!(
            "not a profile JSON (an EnergyProfile, or its status as `profile --json` writes it): {e}"
        ),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
    let status = if value.get("kind").and_then(serde_json::Value::as_str) == Some("EnergyProfile") {
        value
            .get("status")
            .cloned()
            .ok_or_else(|| RuntimeError::Usage {
                arg,
                message: "the EnergyProfile has no status yet (not measured)".into(),
            })?
    } else {
        value
    };
    serde_json::from_value(status).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_its_status_or_from_the_whole_object() {
        let status = serde_json::json!({
            "phase": "Complete",
            "table": {"meter": "synthetic", "rows": [{"batchSize": 1, "latencyMs": {"p50": 1.0, "p95": 1.1},
                      "throughputPerSecond": 1000.0, "windows": 5}]},
        });
        let from_status = parse_profile(&status.to_string(), "--from-profile").unwrap();
        let object = serde_json::json!({
            "apiVersion": "greenbatch.dev/v1alpha1", "kind": "EnergyProfile",
            "metadata": {"name": "p", "namespace": "vision"},
            "spec": {"modelName": "m"},
            "status": status,
        });
        let from_object = parse_profile(&object.to_string(), "--from-profile").unwrap();
        assert_eq!(from_object, from_status);
        assert_eq!(from_object.table.map(|t| t.rows.len()), Some(1));

        let unmeasured = serde_json::json!({"kind": "EnergyProfile", "spec": {}});
        let e = parse_profile(&unmeasured.to_string(), "--from-profile").unwrap_err();
        assert!(e.to_string().contains("no status yet"), "{e}");
        let e = parse_profile("{oops", "--from-profile").unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
