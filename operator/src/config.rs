//! The operator's settings that shape the objects it builds (pure data; `main` fills it from flags).

use k8s_openapi::api::apps::v1::RollingUpdateDeployment;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the pure planner and builders need to know about the installation.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorConfig {
    /// Image holding `greenbatch-runtime` (profiling Jobs and serving Deployments).
    pub runtime_image: String,
    /// `Always`, `IfNotPresent`, `Never`, or the cluster default when `None`.
    pub image_pull_policy: Option<String>,
    /// Service account of profiling pods, in each service's namespace: it needs `get` on
    /// `energyprofiles` and `patch` on `energyprofiles/status` (the Helm chart creates it, bound,
    /// in each namespace of `runtime.namespaces`).
    pub runtime_service_account: String,
    /// Version of the runtime in `runtime_image`: part of every profile key, so a new runtime
    /// measures afresh instead of reusing numbers an older one took.
    pub runtime_version: String,
    /// Pod retries of a profiling Job before it counts as failed (the Job controller backs off
    /// exponentially between them: 10 s, 20 s, 40 s, ...).
    pub job_backoff_limit: i32,
    /// Time limit of one measurement, kept by the runtime from its start (the pod's deadline and
    /// the Job's are backstops past it: `resources::pod_deadline_seconds`).
    pub job_active_deadline_seconds: i64,
    /// Most profiling Jobs running at once in the operator's scope (each holds a GPU, which serving
    /// does not get meanwhile); a service needing one more waits until one ends. `None`: no limit.
    pub max_profiling_jobs: Option<u32>,
    /// A finished profiling Job (and its pod, with its log) is deleted this long after it ended
    /// (`ttlSecondsAfterFinished`); `None` keeps it until a new Job of its profile starts. Safe
    /// because the operator records how each Job ended in the profile's `status.lastJob` first.
    pub job_ttl_seconds_after_finished: Option<i32>,
    /// An EnergyProfile the operator made and no InferenceService has used for this long is
    /// deleted (`prune`); `None` keeps every profile.
    pub unused_profile_ttl: Option<std::time::Duration>,
    /// How often the pruner looks for unused profiles (when `unused_profile_ttl` is set).
    pub prune_interval: std::time::Duration,
    /// How often a serving service's pods are scraped (their `/metrics`): the measurement window of
    /// `status.observed`, and the period at which replicas follow the load.
    pub observe_interval: std::time::Duration,
    /// Replicas are sized to keep each one's device busy at most this fraction of the time at the
    /// observed arrival rate (headroom for bursts and for the rate to grow before the next look).
    pub target_utilisation: f64,
    /// Replicas go down only once the load has asked for fewer this long on end (to the most it
    /// asked for meanwhile); up at once. Zero: down at the first observation that allows it.
    pub scale_down_delay: std::time::Duration,
    /// ConfigMap (key `ca.crt`, in each service's namespace) of CA certificates that runtime pods
    /// trust for https and s3 model downloads besides the public roots; mounted only into pods of
    /// services whose model is an http(s) or s3 URI.
    pub model_ca_config_map: Option<String>,
    /// Scheduling and resources of runtime pods (profiling and serving) for services whose
    /// `spec.pod` leaves a field out: the platform's GPU-node tolerations, a default memory
    /// request, a priority class.
    pub runtime_pod: greenbatch_crds::RuntimePodSpec,
    /// How a serving Deployment rolls out (`maxSurge`, `maxUnavailable`); `None`: Kubernetes'
    /// default (25% each: one more pod — one more GPU — for services of 1 to 3 replicas).
    pub serving_rollout: Option<RollingUpdateDeployment>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            runtime_image: format!("ghcr.io/greenbatch/runtime:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: None,
            runtime_service_account: "greenbatch-runtime".to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            job_backoff_limit: 2,
            job_active_deadline_seconds: 3600,
            max_profiling_jobs: None,
            job_ttl_seconds_after_finished: Some(86_400),
            unused_profile_ttl: None,
            prune_interval: std::time::Duration::from_secs(600),
            observe_interval: std::time::Duration::from_secs(30),
            target_utilisation: greenbatch_core::Policy::default().target_utilisation,
            scale_down_delay: std::time::Duration::from_secs(300),
            model_ca_config_map: None,
            runtime_pod: baseline_runtime_pod(),
            serving_rollout: None,
        }
    }
}

/// A rolling update's step: a count (`1`) or a percentage of the replicas (`25%`; a surge may
/// exceed 100%, what goes unavailable may not: `serving_rollout` checks that).
pub fn rollout_step(text: &str) -> Result<IntOrString, String> {
    let bad = || format!("{text:?} is not a count or a percentage (1, 25%)");
    match text.strip_suffix('%') {
        Some(p) => p
            .parse::<u32>()
            .ok()
            .map(|_| IntOrString::String(text.to_string()))
            .ok_or_else(bad),
        None => text
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .map(IntOrString::Int)
            .ok_or_else(bad),
    }
}

/// The serving Deployments' rolling update from the operator's flags; `None` when neither is
/// set. Both zero would never roll out (the API server refuses it): an error.
pub fn serving_rollout(
    max_surge: Option<IntOrString>,
    max_unavailable: Option<IntOrString>,
) -> Result<Option<RollingUpdateDeployment>, String> {
    let zero = |s: &Option<IntOrString>| {
        matches!(s, Some(IntOrString::Int(0)))
            || matches!(s, Some(IntOrString::String(p)) if p.trim_end_matches('%').parse::<u32>() == Ok(0))
    };
    if zero(&max_surge) && zero(&max_unavailable) {
        return Err(
            "--serving-max-surge and --serving-max-unavailable cannot both be 0: no pod could be replaced".into(),
        );
    }
    if let Some(IntOrString::String(p)) = &max_unavailable
        && p.trim_end_matches('%')
            .parse::<u32>()
            .is_ok_and(|p| p > 100)
    {
        return Err(format!(
            "--serving-max-unavailable {p}: at most 100% of the pods can be unavailable"
        ));
    }
    Ok(
        (max_surge.is_some() || max_unavailable.is_some()).then_some(RollingUpdateDeployment {
            max_surge,
            max_unavailable,
        }),
    )
}

/// What runtime pods request when neither the operator's `--runtime-pod-defaults` nor a
/// service's `spec.pod` sets `resources`: a CPU and 4 GiB. Without requests a GPU pod is
/// BestEffort — the first evicted under memory pressure, and measured with whatever CPU is
/// left — while a CUDA context and a model's weights take gigabytes of host memory. No limit: a
/// large model is not OOM-killed.
pub fn baseline_runtime_pod() -> greenbatch_crds::RuntimePodSpec {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    greenbatch_crds::RuntimePodSpec {
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), Quantity("1".into())),
                    ("memory".to_string(), Quantity("4Gi".into())),
                ]
                .into(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_steps_are_counts_or_percentages_and_not_both_zero() {
        assert_eq!(rollout_step("1"), Ok(IntOrString::Int(1)));
        assert_eq!(rollout_step("0"), Ok(IntOrString::Int(0)));
        assert_eq!(rollout_step("25%"), Ok(IntOrString::String("25%".into())));
        assert_eq!(rollout_step("150%"), Ok(IntOrString::String("150%".into())));
        for bad in ["-1", "one", "%", "1.5"] {
            assert!(rollout_step(bad).is_err(), "{bad}");
        }
        assert_eq!(serving_rollout(None, None), Ok(None));
        // No spare GPU for a surge: replace one pod at a time in place.
        let in_place = serving_rollout(Some(IntOrString::Int(0)), Some(IntOrString::Int(1)));
        assert_eq!(
            in_place,
            Ok(Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::Int(1)),
            }))
        );
        assert!(
            serving_rollout(
                Some(IntOrString::Int(0)),
                Some(IntOrString::String("0%".into()))
            )
            .is_err()
        );
        assert!(serving_rollout(None, Some(IntOrString::String("101%".into()))).is_err());
    }
}
