//! Conditions in the metav1.Condition style (type, status, reason, message, lastTransitionTime,
//! observedGeneration), with the transition rule Kubernetes tools expect: the timestamp changes only
//! when the status does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase condition type, e.g. `Profiled`, `SLOAttainable`, `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason.
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Sets `new` in `conditions`, keeping the old transition time when the status did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, time: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status,
            reason: "R".into(),
            message: "m".into(),
            last_transition_time: time.into(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = vec![];
        set_condition(&mut cs, cond(ConditionStatus::False, "t1"));
        set_condition(&mut cs, cond(ConditionStatus::False, "t2"));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, "t1");
        set_condition(&mut cs, cond(ConditionStatus::True, "t3"));
        assert_eq!(cs[0].last_transition_time, "t3");
    }
}
