//! What the controller remembers about each service between its reconciles — error and conflict
//! streaks, the last snapshot of its pods' counters — in memory, keyed `namespace/name`, and
//! forgotten when the service goes: a long-running operator must not grow with every service it
//! has ever seen (a service deleted while failing used to leave its streak behind for good).

use crate::load::Snapshot;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct ServiceMemory {
    /// Failed reconciles in a row, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// 409 Conflicts in a row: looked at again without backoff, up to a few.
    conflicts: Mutex<HashMap<String, u32>>,
    /// Each serving service's last snapshot (the start of its next observation window).
    snapshots: Mutex<HashMap<String, Snapshot>>,
}

/// Adds one to `key`'s streak and says how long it is now.
fn lengthen(streaks: &Mutex<HashMap<String, u32>>, key: &str) -> u32 {
    streaks.lock().map_or(1, |mut m| {
        let n = m.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        *n
    })
}

fn end(streaks: &Mutex<HashMap<String, u32>>, key: &str) {
    if let Ok(mut m) = streaks.lock() {
        m.remove(key);
    }
}

impl ServiceMemory {
    /// One more failed reconcile of `key`: the failures in a row now.
    pub fn failed(&self, key: &str) -> u32 {
        lengthen(&self.failures, key)
    }

    pub fn succeeded(&self, key: &str) {
        end(&self.failures, key);
    }

    /// One more reconcile of `key` that met a conflict: the conflicts in a row now.
    pub fn conflicted(&self, key: &str) -> u32 {
        lengthen(&self.conflicts, key)
    }

    pub fn no_conflict(&self, key: &str) {
        end(&self.conflicts, key);
    }

    /// When `key`'s last snapshot was taken, if there is one.
    pub fn snapshot_taken_at(&self, key: &str) -> Option<f64> {
        let snapshots = self.snapshots.lock().ok()?;
        snapshots.get(key).map(|s| s.at_seconds)
    }

    /// Keeps `snapshot` as `key`'s latest and gives back the one before it. Snapshots older than
    /// `stale_after` seconds (services that stopped serving without a reconcile to say so) go.
    pub fn replace_snapshot(
        &self,
        key: &str,
        snapshot: Snapshot,
        stale_after: f64,
    ) -> Option<Snapshot> {
        let mut snapshots = self.snapshots.lock().ok()?;
        let at = snapshot.at_seconds;
        snapshots.retain(|_, s| at - s.at_seconds < stale_after);
        snapshots.insert(key.to_string(), snapshot)
    }

    pub fn drop_snapshot(&self, key: &str) {
        if let Ok(mut s) = self.snapshots.lock() {
            s.remove(key);
        }
    }

    /// Forgets every service `exists` says is gone.
    pub fn keep_only(&self, exists: impl Fn(&str) -> bool) {
        for streaks in [&self.failures, &self.conflicts] {
            if let Ok(mut m) = streaks.lock() {
                m.retain(|k, _| exists(k));
            }
        }
        if let Ok(mut s) = self.snapshots.lock() {
            s.retain(|k, _| exists(k));
        }
    }

    /// The services anything is remembered about, sorted.
    #[cfg(test)]
    fn remembered(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for streaks in [&self.failures, &self.conflicts] {
            if let Ok(m) = streaks.lock() {
                keys.extend(m.keys().cloned());
            }
        }
        if let Ok(s) = self.snapshots.lock() {
            keys.extend(s.keys().cloned());
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceMemory;
    use crate::load::Snapshot;

    fn at(seconds: f64) -> Snapshot {
        Snapshot {
            at_seconds: seconds,
            ..Snapshot::default()
        }
    }

    #[test]
    fn streaks_count_up_and_end() {
        let memory = ServiceMemory::default();
        assert_eq!(memory.failed("a/x"), 1);
        assert_eq!(memory.failed("a/x"), 2);
        assert_eq!(memory.failed("a/y"), 1);
        memory.succeeded("a/x");
        assert_eq!(memory.failed("a/x"), 1, "a success ends the streak");
        assert_eq!(memory.conflicted("a/x"), 1);
        assert_eq!(memory.conflicted("a/x"), 2);
        memory.no_conflict("a/x");
        assert_eq!(memory.conflicted("a/x"), 1);
    }

    #[test]
    fn a_snapshot_replaces_the_last_and_stale_ones_go() {
        let memory = ServiceMemory::default();
        assert_eq!(memory.replace_snapshot("a/x", at(0.0), 100.0), None);
        assert_eq!(memory.replace_snapshot("a/y", at(5.0), 100.0), None);
        assert_eq!(memory.snapshot_taken_at("a/x"), Some(0.0));
        assert_eq!(
            memory.replace_snapshot("a/x", at(30.0), 100.0),
            Some(at(0.0))
        );
        // a/y has not been seen for over 100 s when a/x is scraped at 120.
        memory.replace_snapshot("a/x", at(120.0), 100.0);
        assert_eq!(memory.snapshot_taken_at("a/y"), None);
        memory.drop_snapshot("a/x");
        assert_eq!(memory.snapshot_taken_at("a/x"), None);
    }

    #[test]
    fn a_gone_service_leaves_nothing_behind() {
        let memory = ServiceMemory::default();
        for key in ["a/gone", "a/kept", "b/missed"] {
            memory.failed(key);
            memory.conflicted(key);
            memory.replace_snapshot(key, at(1.0), 100.0);
        }
        memory.keep_only(|key| key != "a/gone");
        assert_eq!(memory.remembered(), ["a/kept", "b/missed"]);
        // A deletion the watch missed: only the services that still exist stay.
        memory.keep_only(|key| key == "a/kept");
        assert_eq!(memory.remembered(), ["a/kept"]);
        assert_eq!(memory.failed("a/kept"), 2, "what is kept is kept whole");
    }
}
