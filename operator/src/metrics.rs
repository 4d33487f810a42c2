//! Prometheus metrics of the operator, and an in-process reconcile counter per service (for tests
//! and logs; not exported, to keep label cardinality bounded).

use greenbatch_crds::{InferenceService, Phase};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<Labels, Counter>,
    duration: Histogram,
    services: Family<Labels, Gauge>,
    leading: Gauge,
    scrapes: Family<Labels, Counter>,
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
        Metrics {
            registry,
            leading,
            scrapes,
            reconciles,
            errors,
            duration,
            services,
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

    /// Recounts services by phase from the controller's cache (at scrape time: always current).
    pub fn count_phases(&self, services: &[std::sync::Arc<InferenceService>]) {
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
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
