//! Prometheus metrics of the operator: its own work (reconciles, errors, scrapes, leadership), and
//! per service the numbers it decided from and on, read from the services' status at scrape time
//! (one series per service and number, like kube-state-metrics; a deleted service's series go with
//! it). The in-process reconcile counter per service is for tests and logs only (forgotten with
//! the service).

use greenbatch_crds::{InferenceService, Phase};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type Labels = Vec<(String, String)>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Per service: what the operator chose, and what it predicted and saw.
#[derive(Default)]
struct ServiceGauges {
    batch_size: FloatGauges,
    max_queue_delay: FloatGauges,
    expected_latency: FloatGauges,
    slo: FloatGauges,
    joules: FloatGauges,
    batch1_joules: FloatGauges,
    predicted_joules_at_load: FloatGauges,
    observed_joules: FloatGauges,
    forward_time: FloatGauges,
    executor_busy: FloatGauges,
    measured_capacity: FloatGauges,
    replicas: FloatGauges,
}

impl ServiceGauges {
    fn register(&self, r: &mut Registry) {
        let g = |r: &mut Registry, name: &str, help: &str, f: &FloatGauges| {
            r.register(name, help, f.clone())
        };
        g(
            r,
            "service_max_batch_size",
            "The batch size chosen for each service: its pods' batch cap",
            &self.batch_size,
        );
        g(
            r,
            "service_max_queue_delay_seconds",
            "The max queue delay chosen for each service",
            &self.max_queue_delay,
        );
        g(
            r,
            "service_expected_latency_seconds",
            "Latency at the SLO's percentile the profile predicts for the choice",
            &self.expected_latency,
        );
        g(
            r,
            "service_slo_seconds",
            "Each service's latency SLO, with its percentile",
            &self.slo,
        );
        g(
            r,
            "service_joules_per_inference",
            "Energy per inference the profile predicts for the choice (batches full)",
            &self.joules,
        );
        g(
            r,
            "service_batch1_joules_per_inference",
            "Energy per inference the profile measured at batch 1, for comparison",
            &self.batch1_joules,
        );
        g(
            r,
            "service_predicted_joules_per_inference_at_observed_load",
            "Energy per inference the energy model predicts at the load the pods saw",
            &self.predicted_joules_at_load,
        );
        g(
            r,
            "service_observed_joules_per_inference",
            "Energy per inference the serving pods measured (last observation window)",
            &self.observed_joules,
        );
        g(
            r,
            "service_forward_seconds_per_batch",
            "The model's time per batch: what the pods measured (source=observed) and the profile's at that batch size (source=profile)",
            &self.forward_time,
        );
        g(
            r,
            "service_executor_busy_ratio",
            "Share of the last observation window the serving pods' model threads were busy (mean over pods)",
            &self.executor_busy,
        );
        g(
            r,
            "service_measured_capacity_per_replica",
            "Inferences per second one serving pod was measured to sustain, when below the profile's and used for sizing replicas",
            &self.measured_capacity,
        );
        g(
            r,
            "service_replicas",
            "Replicas of each service: desired and ready",
            &self.replicas,
        );
    }

    fn clear(&self) {
        for f in [
            &self.batch_size,
            &self.max_queue_delay,
            &self.expected_latency,
            &self.slo,
            &self.joules,
            &self.batch1_joules,
            &self.predicted_joules_at_load,
            &self.observed_joules,
            &self.forward_time,
            &self.executor_busy,
            &self.measured_capacity,
            &self.replicas,
        ] {
            f.clear();
        }
    }

    fn describe(&self, s: &InferenceService) {
        let id = vec![
            (
                "namespace".to_string(),
                s.metadata.namespace.clone().unwrap_or_default(),
            ),
            (
                "name".to_string(),
                s.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        let set = |f: &FloatGauges, labels: &Labels, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                f.get_or_create(labels).set(v);
            }
        };
        let with = |k: &str, v: String| {
            let mut l = id.clone();
            l.push((k.to_string(), v));
            l
        };
        set(
            &self.slo,
            &with("percentile", s.spec.slo.percentile.to_string()),
            Some(s.spec.slo.latency_ms / 1000.0),
        );
        let Some(status) = s.status.as_ref() else {
            return;
        };
        if let Some(sel) = &status.selected {
            set(&self.batch_size, &id, Some(f64::from(sel.batch_size)));
            set(
                &self.max_queue_delay,
                &id,
                Some(sel.max_queue_delay_ms / 1000.0),
            );
            set(
                &self.expected_latency,
                &with("percentile", sel.percentile.to_string()),
                Some(sel.expected_latency_ms / 1000.0),
            );
            set(&self.joules, &id, sel.joules_per_inference);
            set(&self.batch1_joules, &id, sel.batch1_joules_per_inference);
        }
        if let Some(seen) = &status.observed {
            set(
                &self.predicted_joules_at_load,
                &id,
                seen.predicted_joules_per_inference,
            );
            set(&self.observed_joules, &id, seen.joules_per_inference);
            let ms = |v: Option<f64>| v.map(|ms| ms / 1000.0);
            set(
                &self.forward_time,
                &with("source", "observed".into()),
                ms(seen.forward_ms_per_batch),
            );
            set(
                &self.forward_time,
                &with("source", "profile".into()),
                ms(seen.predicted_forward_ms_per_batch),
            );
            set(&self.executor_busy, &id, seen.executor_busy);
        }
        if let Some(r) = &status.replicas {
            set(
                &self.measured_capacity,
                &id,
                r.measured_capacity_per_replica,
            );
            set(
                &self.replicas,
                &with("state", "desired".into()),
                Some(f64::from(r.desired)),
            );
            set(
                &self.replicas,
                &with("state", "ready".into()),
                Some(f64::from(r.ready)),
            );
        }
    }
}

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<Labels, Counter>,
    duration: Histogram,
    services: Family<Labels, Gauge>,
    profiling: Family<Labels, Gauge>,
    leading: Gauge,
    scrapes: Family<Labels, Counter>,
    profiles_pruned: Counter,
    unused_profiles: Gauge,
    per_service_gauges: ServiceGauges,
    /// One scrape at a time rebuilds and encodes the per-service series: two at once would see
    /// each other's half-rebuilt families.
    rendering: Mutex<()>,
    per_service: Mutex<HashMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const PHASES: [Phase; 5] = [
    Phase::Pending,
    Phase::Profiling,
    Phase::Serving,
    Phase::Degraded,
    Phase::Failed,
];

/// The reasons of the Profiled condition the planner sets (its tests check each they see is here).
pub const PROFILED_REASONS: [&str; 7] = [
    "Profiling",
    "ProfilingQueued",
    "ProfilingWaiting",
    "ProfileComplete",
    "Reprofiling",
    "ProfilingFailed",
    "Refused",
];

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "Pending",
        Phase::Profiling => "Profiling",
        Phase::Serving => "Serving",
        Phase::Degraded => "Degraded",
        Phase::Failed => "Failed",
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("greenbatch_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by the kind of object involved",
            errors.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile",
            duration.clone(),
        );
        let services = Family::<Labels, Gauge>::default();
        registry.register(
            "inference_services",
            "InferenceServices by status phase (\"None\" before the first status)",
            services.clone(),
        );
        let profiling = Family::<Labels, Gauge>::default();
        registry.register(
            "inference_services_profiling",
            "InferenceServices by the reason of their Profiled condition (ProfilingQueued: a first measurement waiting for a place among --max-profiling-jobs; ProfilingWaiting: the profiling pod cannot run; a re-profile that waits is Reprofiling, serving on)",
            profiling.clone(),
        );
        let leading = Gauge::default();
        // 1 from start: without leader election the one replica runs the controller.
        leading.set(1);
        registry.register(
            "leader",
            "1 while this replica runs the controller (holds the lease, or leader election is off)",
            leading.clone(),
        );
        let scrapes = Family::<Labels, Counter>::default();
        registry.register(
            "pod_scrapes",
            "Reads of serving pods' /metrics, by result (ok, failed)",
            scrapes.clone(),
        );
        let profiles_pruned = Counter::default();
        registry.register(
            "profiles_pruned",
            "EnergyProfiles deleted because no InferenceService used them for --unused-profile-ttl-seconds",
            profiles_pruned.clone(),
        );
        let unused_profiles = Gauge::default();
        registry.register(
            "unused_profiles",
            "EnergyProfiles made by the operator that no InferenceService uses, at the last pruning pass",
            unused_profiles.clone(),
        );
        let per_service_gauges = ServiceGauges::default();
        per_service_gauges.register(&mut registry);
        Metrics {
            per_service_gauges,
            rendering: Mutex::new(()),
            registry,
            leading,
            scrapes,
            profiles_pruned,
            unused_profiles,
            reconciles,
            errors,
            duration,
            services,
            profiling,
            per_service: Mutex::new(HashMap::new()),
        }
    }

    pub fn reconciled(&self, key: &str, took: Duration, error_kind: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(kind) = error_kind {
            self.errors
                .get_or_create(&vec![("kind".to_string(), kind.to_string())])
                .inc();
        }
        if let Ok(mut m) = self.per_service.lock() {
            *m.entry(key.to_string()).or_default() += 1;
        }
    }

    /// Counts one round of serving-pod scrapes.
    pub fn scraped(&self, ok: usize, failed: usize) {
        for (result, n) in [("ok", ok), ("failed", failed)] {
            self.scrapes
                .get_or_create(&vec![("result".to_string(), result.to_string())])
                .inc_by(n as u64);
        }
    }

    /// One pruning pass: `unused` profiles unused now (stamped, or being deleted), `deleted` of them
    /// deleted in it.
    pub fn pruned(&self, unused: usize, deleted: usize) {
        self.unused_profiles
            .set(i64::try_from(unused).unwrap_or(i64::MAX));
        self.profiles_pruned.inc_by(deleted as u64);
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    /// Reconciles of `namespace/name` since start.
    pub fn reconciles_of(&self, key: &str) -> u64 {
        self.per_service
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Forgets the reconciles of services gone: `exists` says which still are.
    pub fn keep_services(&self, exists: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.per_service.lock() {
            m.retain(|key, _| exists(key));
        }
    }

    pub fn reconciles_total(&self) -> u64 {
        self.reconciles.get()
    }

    pub fn errors_total(&self) -> u64 {
        // Family offers no iteration; the known kinds are few.
        [
            "metadata",
            "InferenceService",
            "EnergyProfile",
            "Job",
            "Pod",
            "Deployment",
            "Service",
        ]
        .iter()
        .map(|k| {
            self.errors
                .get_or_create(&vec![("kind".to_string(), k.to_string())])
                .get()
        })
        .sum()
    }

    /// The exposition for a scrape: services counted by phase and each service's numbers, rebuilt
    /// from the controller's cache (always current, and a deleted service has no series left),
    /// then everything encoded, one scrape at a time.
    pub fn render(&self, services: &[std::sync::Arc<InferenceService>]) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh_services(services);
        self.encode()
    }

    fn refresh_services(&self, services: &[std::sync::Arc<InferenceService>]) {
        self.per_service_gauges.clear();
        for s in services {
            self.per_service_gauges.describe(s);
        }
        let mut counts: HashMap<&str, i64> = PHASES.iter().map(|p| (phase_name(*p), 0)).collect();
        counts.insert("None", 0);
        for s in services {
            let phase = s
                .status
                .as_ref()
                .and_then(|st| st.phase)
                .map(phase_name)
                .unwrap_or("None");
            *counts.entry(phase).or_default() += 1;
        }
        for (phase, n) in counts {
            self.services
                .get_or_create(&vec![("phase".to_string(), phase.to_string())])
                .set(n);
        }
        // The reasons the operator sets always have a series (0 included), so an alert on one
        // has something to read; another (a hand-edited status) is counted as it is.
        let mut reasons: HashMap<&str, i64> = PROFILED_REASONS.iter().map(|r| (*r, 0)).collect();
        for s in services {
            let profiled = s
                .status
                .as_ref()
                .and_then(|st| st.conditions.iter().find(|c| c.type_ == "Profiled"));
            if let Some(c) = profiled {
                *reasons.entry(c.reason.as_str()).or_default() += 1;
            }
        }
        self.profiling.clear();
        for (reason, n) in reasons {
            self.profiling
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .set(n);
        }
    }

    /// The OpenMetrics text of everything as it stands (`render` for a scrape).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn service(name: &str, status: serde_json::Value) -> Arc<InferenceService> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "greenbatch.dev/v1alpha1", "kind": "InferenceService",
                "metadata": {"name": name, "namespace": "vision"},
                "spec": {"model": {"source": {"builtin": "resnet50"}, "input": {"shape": [3, 224, 224]}},
                         "slo": {"latencyMs": 50, "percentile": 99}},
                "status": status,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn each_service_s_decision_is_exported_and_goes_with_the_service() {
        let m = Metrics::new();
        let serving = service(
            "resnet50",
            serde_json::json!({
                "phase": "Serving",
                "selected": {"batchSize": 32, "maxQueueDelayMs": 8, "expectedLatencyMs": 31, "percentile": 99,
                             "joulesPerInference": 0.084, "batch1JoulesPerInference": 0.594,
                             "sloAttainable": true, "meter": "nvml-counter", "reason": "least energy"},
                "replicas": {"desired": 2, "ready": 1, "measuredCapacityPerReplica": 950.5},
                "observed": {"joulesPerInference": 0.13, "predictedJoulesPerInference": 0.12,
                             "forwardMsPerBatch": 7.5, "runBatchSize": 32, "predictedForwardMsPerBatch": 5.0,
                             "executorBusy": 0.85},
            }),
        );
        let pending = service("new", serde_json::json!({}));
        let text = m.render(&[serving, pending.clone()]);
        let id = r#"namespace="vision",name="resnet50""#;
        for want in [
            format!("greenbatch_operator_service_max_batch_size{{{id}}} 32.0"),
            format!("greenbatch_operator_service_max_queue_delay_seconds{{{id}}} 0.008"),
            format!(
                "greenbatch_operator_service_expected_latency_seconds{{{id},percentile=\"99\"}} 0.031"
            ),
            format!("greenbatch_operator_service_slo_seconds{{{id},percentile=\"99\"}} 0.05"),
            format!("greenbatch_operator_service_joules_per_inference{{{id}}} 0.084"),
            format!("greenbatch_operator_service_batch1_joules_per_inference{{{id}}} 0.594"),
            format!(
                "greenbatch_operator_service_predicted_joules_per_inference_at_observed_load{{{id}}} 0.12"
            ),
            format!("greenbatch_operator_service_observed_joules_per_inference{{{id}}} 0.13"),
            format!(
                "greenbatch_operator_service_forward_seconds_per_batch{{{id},source=\"observed\"}} 0.0075"
            ),
            format!(
                "greenbatch_operator_service_forward_seconds_per_batch{{{id},source=\"profile\"}} 0.005"
            ),
            format!("greenbatch_operator_service_executor_busy_ratio{{{id}}} 0.85"),
            format!("greenbatch_operator_service_measured_capacity_per_replica{{{id}}} 950.5"),
            format!("greenbatch_operator_service_replicas{{{id},state=\"desired\"}} 2.0"),
            format!("greenbatch_operator_service_replicas{{{id},state=\"ready\"}} 1.0"),
        ] {
            assert!(text.contains(&want), "{want} missing in\n{text}");
        }
        // A service not decided on yet has only its SLO; nothing is made up for it.
        assert!(text.contains(r#"greenbatch_operator_service_slo_seconds{namespace="vision",name="new",percentile="99"} 0.05"#));
        assert!(!text.contains(r#"service_max_batch_size{namespace="vision",name="new"}"#));
        // Deleted: its series go at the next refresh.
        let after = m.render(&[pending]);
        assert!(!after.contains("resnet50"), "{after}");
    }

    #[test]
    fn services_are_counted_by_the_reason_of_their_profiled_condition() {
        let m = Metrics::new();
        let profiled = |name: &str, reason: &str| {
            service(
                name,
                serde_json::json!({"conditions": [{"type": "Profiled", "status": "False", "reason": reason,
                    "message": "", "lastTransitionTime": "2026-11-27T10:00:00Z"}]}),
            )
        };
        let text = m.render(&[
            profiled("a", "ProfilingQueued"),
            profiled("b", "ProfilingQueued"),
            profiled("c", "ProfilingWaiting"),
            service("new", serde_json::json!({})),
        ]);
        let series = |reason: &str| {
            format!("greenbatch_operator_inference_services_profiling{{reason=\"{reason}\"}} ")
        };
        assert!(
            text.contains(&format!("{}2", series("ProfilingQueued"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}1", series("ProfilingWaiting"))),
            "{text}"
        );
        // None failed: the series is there, at 0, for an alert to read.
        assert!(
            text.contains(&format!("{}0", series("ProfilingFailed"))),
            "{text}"
        );
        // The queue drained: counted again at each scrape.
        let text = m.render(&[profiled("a", "ProfileComplete")]);
        assert!(
            text.contains(&format!("{}0", series("ProfilingQueued"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}1", series("ProfileComplete"))),
            "{text}"
        );
    }
}
