//! `spec.pod`: where a service's runtime pods may run and what they get besides the GPU — the
//! settings a platform team needs on a shared cluster (tainted GPU nodes, QoS, priorities).

use crate::field_error::FieldError;
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Scheduling and resources of a service's runtime pods: its profiling Job's and its serving
/// pods' alike, so the model is measured as it is served. Each field set here replaces the
/// operator's default for it (the chart's `runtime.pod`); a field left out takes the default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePodSpec {
    /// CPU, memory and other resources of the runtime container, e.g. `requests: {cpu: "4",
    /// memory: 8Gi}`. The GPU is not set here but by `spec.gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Taints the pods tolerate, e.g. the one a cluster puts on its GPU nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node labels the pods must match, besides the GPU product's (`spec.gpu.product`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

/// `requests` and `limits` as maps of quantities: the container's ResourceRequirements without
/// its (alpha) `claims` — which the API server therefore prunes — and without the Quantity
/// type's page-long description repeated in the CRD.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantities = serde_json::json!({
        "type": "object",
        "additionalProperties": {"x-kubernetes-int-or-string": true},
    });
    schemars::json_schema!({
        "description": "CPU, memory and other resources of the runtime container, e.g. `requests: {cpu: \"4\", memory: 8Gi}`, as in a container's `resources`. The GPU is not set here but by `spec.gpu`.",
        "type": "object",
        "nullable": true,
        "properties": {"requests": quantities, "limits": quantities},
    })
}

impl RuntimePodSpec {
    /// These settings over `defaults`: each field this one sets replaces the default's.
    pub fn over(&self, defaults: &RuntimePodSpec) -> RuntimePodSpec {
        RuntimePodSpec {
            resources: self
                .resources
                .clone()
                .or_else(|| defaults.resources.clone()),
            tolerations: self
                .tolerations
                .clone()
                .or_else(|| defaults.tolerations.clone()),
            node_selector: self
                .node_selector
                .clone()
                .or_else(|| defaults.node_selector.clone()),
            priority_class_name: self
                .priority_class_name
                .clone()
                .or_else(|| defaults.priority_class_name.clone()),
        }
    }
}

/// The node label the GPU product pins pods with (NVIDIA GPU feature discovery).
const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

impl RuntimePodSpec {
    /// What the API server would refuse in the pods built from these settings, or what would
    /// contradict `spec.gpu` (`gpu_resource` and `gpu_product` when the pods get a GPU): each
    /// error names its field under `at` (`spec.pod`, or the operator's flag for its defaults).
    pub fn check(
        &self,
        at: &str,
        gpu_resource: Option<&str>,
        gpu_product: Option<&str>,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(r) = &self.resources {
            check_resources(r, &format!("{at}.resources"), gpu_resource, &mut errors);
        }
        for (i, t) in self.tolerations.iter().flatten().enumerate() {
            check_toleration(t, &format!("{at}.tolerations[{i}]"), &mut errors);
        }
        for (k, v) in self.node_selector.iter().flatten() {
            let field = format!("{at}.nodeSelector[{k:?}]");
            if !label_key(k) {
                errors.push(FieldError::new(
                    &field,
                    "not a label key ([prefix/]name, name up to 63 alphanumerics, '-', '_', '.')",
                ));
            } else if !label_value(v) {
                errors.push(FieldError::new(
                    &field,
                    format!("{v:?} is not a label value (up to 63 alphanumerics, '-', '_', '.')"),
                ));
            } else if k == GPU_PRODUCT_LABEL && gpu_product.is_some_and(|p| p != v) {
                errors.push(FieldError::new(&field, format!("{v:?} contradicts spec.gpu.product, which pins the pods by this label: set the product there")));
            }
        }
        if let Some(name) = &self.priority_class_name
            && !dns_subdomain(name)
        {
            errors.push(FieldError::new(
                &format!("{at}.priorityClassName"),
                format!("{name:?} is not a PriorityClass name (lowercase alphanumerics, '-', '.')"),
            ));
        }
        errors
    }
}

fn check_resources(
    r: &ResourceRequirements,
    at: &str,
    gpu_resource: Option<&str>,
    errors: &mut Vec<FieldError>,
) {
    if r.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        errors.push(FieldError::new(
            &format!("{at}.claims"),
            "dynamic resource claims are not supported",
        ));
    }
    let empty = BTreeMap::new();
    let (requests, limits) = (
        r.requests.as_ref().unwrap_or(&empty),
        r.limits.as_ref().unwrap_or(&empty),
    );
    for (kind, map) in [("requests", requests), ("limits", limits)] {
        for (name, q) in map {
            let field = format!("{at}.{kind}[{name:?}]");
            if gpu_resource == Some(name.as_str()) || name == "nvidia.com/gpu" {
                errors.push(FieldError::new(
                    &field,
                    "GPUs are set by spec.gpu (resource and count)",
                ));
            } else if quantity(&q.0).is_none() {
                errors.push(FieldError::new(
                    &field,
                    format!("{:?} is not a quantity (e.g. 500m, 4, 8Gi)", q.0),
                ));
            }
        }
    }
    for (name, request) in requests {
        let (Some(limit), Some(r)) = (limits.get(name), quantity(&request.0)) else {
            continue;
        };
        if let Some(l) = quantity(&limit.0)
            && r > l
        {
            errors.push(FieldError::new(
                &format!("{at}.requests[{name:?}]"),
                format!("{} is more than its limit {}", request.0, limit.0),
            ));
        }
    }
}

fn check_toleration(t: &Toleration, at: &str, errors: &mut Vec<FieldError>) {
    let operator = t.operator.as_deref().unwrap_or("Equal");
    let effect = t.effect.as_deref().unwrap_or("");
    let key = t.key.as_deref().unwrap_or("");
    let value = t.value.as_deref().unwrap_or("");
    if !matches!(operator, "Equal" | "Exists") {
        errors.push(FieldError::new(
            &format!("{at}.operator"),
            format!("{operator:?}: use Equal or Exists"),
        ));
    }
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errors.push(FieldError::new(
            &format!("{at}.effect"),
            format!("{effect:?}: use NoSchedule, PreferNoSchedule or NoExecute (or none: all)"),
        ));
    }
    if operator == "Exists" && !value.is_empty() {
        errors.push(FieldError::new(
            &format!("{at}.value"),
            "must be empty with operator Exists",
        ));
    }
    if key.is_empty() && operator != "Exists" {
        errors.push(FieldError::new(
            &format!("{at}.key"),
            "an empty key (every taint) needs operator Exists",
        ));
    } else if !key.is_empty() && !label_key(key) {
        errors.push(FieldError::new(
            &format!("{at}.key"),
            format!("{key:?} is not a taint key"),
        ));
    }
    if t.toleration_seconds.is_some() && effect != "NoExecute" {
        errors.push(FieldError::new(
            &format!("{at}.tolerationSeconds"),
            "only with effect NoExecute",
        ));
    }
}

/// A name part of a label key, or a label value when not empty: up to 63 alphanumerics, '-',
/// '_', '.', beginning and ending with an alphanumeric.
fn label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn label_value(s: &str) -> bool {
    s.is_empty() || label_name(s)
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && label_name(name),
        None => label_name(s),
    }
}

/// A Kubernetes quantity's value (`500m`, `4`, `8Gi`, `1e3`), as a float: enough to compare a
/// request with its limit; `None` when it is not a quantity.
pub fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let digits = number.trim_start_matches(['+', '-']);
    if digits.is_empty()
        || digits.starts_with('.') && digits.len() == 1
        || digits.matches('.').count() > 1
        || digits.contains(['+', '-'])
        || number.len() - digits.len() > 1
    {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        e if e.starts_with(['e', 'E']) => {
            let exponent: i32 = e[1..].parse().ok()?;
            10f64.powi(exponent)
        }
        _ => return None,
    };
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn a_field_set_replaces_the_default_and_one_left_out_takes_it() {
        let defaults = RuntimePodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }]),
            priority_class_name: Some("inference".into()),
            ..Default::default()
        };
        let service = RuntimePodSpec {
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".into(), Quantity("4".into()))])),
                ..Default::default()
            }),
            // An explicit empty list: no tolerations, not the default's.
            tolerations: Some(vec![]),
            ..Default::default()
        };
        let merged = service.over(&defaults);
        assert_eq!(merged.resources, service.resources);
        assert_eq!(merged.tolerations, Some(vec![]));
        assert_eq!(merged.priority_class_name.as_deref(), Some("inference"));
        assert_eq!(merged.node_selector, None);
        assert_eq!(RuntimePodSpec::default().over(&defaults), defaults);
    }

    #[test]
    fn quantities_parse_as_the_api_server_reads_them() {
        assert_eq!(quantity("4"), Some(4.0));
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("8Gi"), Some(8.0 * 1024f64.powi(3)));
        assert_eq!(quantity("1.5G"), Some(1.5e9));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("+2k"), Some(2000.0));
        for bad in ["", "Gi", "8GB", "1.2.3", "four", "1e", "--1", "."] {
            assert_eq!(quantity(bad), None, "{bad:?}");
        }
    }

    fn fields(pod: &RuntimePodSpec) -> Vec<String> {
        pod.check(
            "spec.pod",
            Some("nvidia.com/gpu"),
            Some("NVIDIA-H100-80GB-HBM3"),
        )
        .into_iter()
        .map(|e| e.field)
        .collect()
    }

    fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        ResourceRequirements {
            requests: map(requests),
            limits: map(limits),
            ..Default::default()
        }
    }

    #[test]
    fn what_the_api_server_or_spec_gpu_would_refuse_is_named() {
        let good = RuntimePodSpec {
            resources: Some(resources(
                &[("cpu", "4"), ("memory", "8Gi")],
                &[("memory", "16Gi")],
            )),
            tolerations: Some(vec![Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }]),
            node_selector: Some(BTreeMap::from([
                ("pool".into(), "inference".into()),
                (
                    "nvidia.com/gpu.product".into(),
                    "NVIDIA-H100-80GB-HBM3".into(),
                ),
            ])),
            priority_class_name: Some("inference-high".into()),
        };
        assert_eq!(fields(&good), Vec::<String>::new());

        let cases: Vec<(RuntimePodSpec, &str)> = vec![
            (
                RuntimePodSpec {
                    resources: Some(resources(&[("memory", "32Gi")], &[("memory", "16Gi")])),
                    ..Default::default()
                },
                "spec.pod.resources.requests[\"memory\"]",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[], &[("nvidia.com/gpu", "1")])),
                    ..Default::default()
                },
                "spec.pod.resources.limits[\"nvidia.com/gpu\"]",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[("cpu", "four")], &[])),
                    ..Default::default()
                },
                "spec.pod.resources.requests[\"cpu\"]",
            ),
            (
                RuntimePodSpec {
                    tolerations: Some(vec![Toleration {
                        key: Some("gpu".into()),
                        operator: Some("Exists".into()),
                        value: Some("yes".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.pod.tolerations[0].value",
            ),
            (
                RuntimePodSpec {
                    tolerations: Some(vec![Toleration {
                        operator: Some("Equal".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.pod.tolerations[0].key",
            ),
            (
                RuntimePodSpec {
                    tolerations: Some(vec![Toleration {
                        key: Some("gpu".into()),
                        operator: Some("Exists".into()),
                        effect: Some("NoSchedule".into()),
                        toleration_seconds: Some(60),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.pod.tolerations[0].tolerationSeconds",
            ),
            (
                RuntimePodSpec {
                    tolerations: Some(vec![Toleration {
                        key: Some("gpu".into()),
                        operator: Some("In".into()),
                        effect: Some("Sometimes".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.pod.tolerations[0].operator",
            ),
            (
                RuntimePodSpec {
                    node_selector: Some(BTreeMap::from([(
                        "nvidia.com/gpu.product".into(),
                        "NVIDIA-A100".into(),
                    )])),
                    ..Default::default()
                },
                "spec.pod.nodeSelector[\"nvidia.com/gpu.product\"]",
            ),
            (
                RuntimePodSpec {
                    node_selector: Some(BTreeMap::from([("bad key!".into(), "x".into())])),
                    ..Default::default()
                },
                "spec.pod.nodeSelector[\"bad key!\"]",
            ),
            (
                RuntimePodSpec {
                    priority_class_name: Some("High_Priority".into()),
                    ..Default::default()
                },
                "spec.pod.priorityClassName",
            ),
        ];
        for (pod, field) in cases {
            let got = fields(&pod);
            assert!(
                got.iter().any(|f| f == field),
                "{field} not in {got:?} for {pod:?}"
            );
        }
    }
}
