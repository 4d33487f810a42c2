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
    /// The pods' RuntimeClass, e.g. `nvidia` where the NVIDIA container runtime is not the nodes'
    /// default (k3s, RKE2, some GPU operator installs): without it the container sees no GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub runtime_class_name: Option<String>,
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
            runtime_class_name: self
                .runtime_class_name
                .clone()
                .or_else(|| defaults.runtime_class_name.clone()),
        }
    }
}

/// The node label the GPU product pins pods with (NVIDIA GPU feature discovery).
const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

/// The fields of [`RuntimePodSpec`] as JSON names: what a defaults document may hold.
pub const FIELDS: [&str; 5] = [
    "resources",
    "tolerations",
    "nodeSelector",
    "priorityClassName",
    "runtimeClassName",
];

impl RuntimePodSpec {
    /// What the API server would refuse in the pods built from these settings, or what would
    /// contradict `spec.gpu` (`gpu_resource`: the extended resource the pods' GPU is requested
    /// as, when they get one): each error names its field under `at` (`spec.pod`, or the
    /// operator's flag for its defaults).
    pub fn check(&self, at: &str, gpu_resource: Option<&str>) -> Vec<FieldError> {
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
            } else if k == GPU_PRODUCT_LABEL {
                // Pinned here, the pods would run on one product while the profile's key says
                // another (or any): spec.gpu.product sets both.
                errors.push(FieldError::new(
                    &field,
                    "the GPU product is set by spec.gpu.product, which also keys the profile",
                ));
            }
        }
        if let Some(name) = &self.priority_class_name
            && !dns_subdomain(name)
        {
            errors.push(FieldError::new(
                &format!("{at}.priorityClassName"),
                format!(
                    "{name:?} is not a PriorityClass name (dot-separated lowercase DNS labels)"
                ),
            ));
        }
        if let Some(name) = &self.runtime_class_name
            && !dns_subdomain(name)
        {
            errors.push(FieldError::new(
                &format!("{at}.runtimeClassName"),
                format!("{name:?} is not a RuntimeClass name (dot-separated lowercase DNS labels)"),
            ));
        }
        errors
    }
}

/// Whether a resource name is one a container may request: `cpu`, `memory`,
/// `ephemeral-storage`, `hugepages-<size>`, or a domain-prefixed extended resource
/// (`example.com/foo`; `kubernetes.io/` names are the system's own).
fn resource_name(name: &str) -> Option<ResourceKind> {
    match name {
        "cpu" | "memory" | "ephemeral-storage" => Some(ResourceKind::Standard),
        n if n.starts_with("hugepages-") && quantity(&n["hugepages-".len()..]).is_some() => {
            Some(ResourceKind::Standard)
        }
        n => match n.split_once('/') {
            Some((prefix, rest))
                if dns_subdomain(prefix)
                    && label_name(rest)
                    && !prefix.ends_with("kubernetes.io") =>
            {
                Some(ResourceKind::Extended)
            }
            _ => None,
        },
    }
}

/// Whether `name` is a domain-prefixed extended resource (`nvidia.com/gpu`,
/// `nvidia.com/mig-1g.10gb`): what a GPU is requested as.
pub(crate) fn is_extended_resource(name: &str) -> bool {
    resource_name(name) == Some(ResourceKind::Extended)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    Standard,
    /// Requested in whole units, with its request equal to its limit (or only a limit).
    Extended,
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
            let value = quantity(&q.0);
            if gpu_resource == Some(name.as_str()) || name == "nvidia.com/gpu" {
                errors.push(FieldError::new(
                    &field,
                    "GPUs are set by spec.gpu (resource and count)",
                ));
            } else if resource_name(name).is_none() {
                errors.push(FieldError::new(&field, "not a resource name: cpu, memory, ephemeral-storage, hugepages-<size>, or a domain-prefixed extended resource"));
            } else if value.is_none() {
                errors.push(FieldError::new(
                    &field,
                    format!("{:?} is not a quantity (e.g. 500m, 4, 8Gi)", q.0),
                ));
            } else if value.is_some_and(|v| v < 0) {
                errors.push(FieldError::new(&field, format!("{} is negative", q.0)));
            } else if resource_name(name) == Some(ResourceKind::Extended)
                && value.is_some_and(|v| v % NANO != 0)
            {
                errors.push(FieldError::new(
                    &field,
                    format!("{}: an extended resource comes in whole units", q.0),
                ));
            }
        }
    }
    for (name, request) in requests {
        // The API server holds extended resources and hugepages to request = limit, and
        // hugepages to a limit.
        let extended = resource_name(name) == Some(ResourceKind::Extended);
        let hugepages = name.starts_with("hugepages-");
        let limit = limits.get(name);
        if (extended || hugepages) && limit.is_none_or(|l| quantity(&l.0) != quantity(&request.0)) {
            let rule = if hugepages {
                "hugepages need a limit equal to the request"
            } else {
                "an extended resource's request must equal its limit (or set only the limit)"
            };
            errors.push(FieldError::new(&format!("{at}.requests[{name:?}]"), rule));
            continue;
        }
        let (Some(limit), Some(r)) = (limit, quantity(&request.0)) else {
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
    let hugepages = requests
        .keys()
        .chain(limits.keys())
        .any(|n| n.starts_with("hugepages-"));
    if hugepages
        && !["cpu", "memory"]
            .iter()
            .any(|n| requests.contains_key(*n) || limits.contains_key(*n))
    {
        errors.push(FieldError::new(
            at,
            "hugepages need a cpu or memory request or limit too",
        ));
    }
}

fn check_toleration(t: &Toleration, at: &str, errors: &mut Vec<FieldError>) {
    // The API server reads an empty operator as Equal.
    let operator = t
        .operator
        .as_deref()
        .filter(|o| !o.is_empty())
        .unwrap_or("Equal");
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
    } else if !label_value(value) {
        errors.push(FieldError::new(
            &format!("{at}.value"),
            format!("{value:?} is not a label value (up to 63 alphanumerics, '-', '_', '.')"),
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

/// A DNS-1123 subdomain: dot-separated labels of lowercase alphanumerics and '-', each beginning
/// and ending with an alphanumeric, 253 characters at most.
pub(crate) fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

fn label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && label_name(name),
        None => label_name(s),
    }
}

/// Nano-units in one unit: quantities are compared exactly as integers of nano-units.
const NANO: i128 = 1_000_000_000;

/// A Kubernetes quantity's value in nano-units (`500m` is 500_000_000, `1Ki` is 1024 × 10^9),
/// exactly: `700m` and `0.7` are equal. `None` when it is not a quantity, or beyond what
/// the API server represents.
pub fn quantity(s: &str) -> Option<i128> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    // (power of ten, power of 1024) the suffix scales by.
    let (pow10, pow1024): (i32, u32) = match suffix {
        "" => (0, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        e if e.starts_with(['e', 'E']) => {
            (e[1..].parse::<i32>().ok().filter(|x| x.abs() <= 30)?, 0)
        }
        _ => return None,
    };
    let mantissa: i128 = format!("{whole}{fraction}")
        .trim_start_matches('0')
        .parse()
        .unwrap_or(0);
    let exponent = pow10 + 9 - i32::try_from(fraction.len()).ok()?;
    let scaled = if exponent >= 0 {
        mantissa.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?
    } else {
        // Below a nano-unit: the API server rounds up.
        let div = 10i128.checked_pow(exponent.unsigned_abs())?;
        (mantissa + div - 1) / div
    };
    let value = scaled.checked_mul(1024i128.checked_pow(pow1024)?)?;
    // The API server's limit: 2^63 - 1 units.
    (value <= i128::from(i64::MAX) * NANO).then_some(if negative { -value } else { value })
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
        let units = |x: i128| Some(x * NANO);
        assert_eq!(quantity("4"), units(4));
        assert_eq!(quantity("500m"), Some(500_000_000));
        assert_eq!(quantity("8Gi"), units(8 * 1024 * 1024 * 1024));
        assert_eq!(quantity("1.5G"), units(1_500_000_000));
        assert_eq!(quantity("1e3"), units(1000));
        assert_eq!(quantity("1E3"), units(1000));
        assert_eq!(quantity("1e-3"), Some(1_000_000));
        assert_eq!(quantity("+2k"), units(2000));
        assert_eq!(quantity(".5"), Some(500_000_000));
        assert_eq!(quantity("5."), units(5));
        assert_eq!(quantity("-1"), units(-1));
        // Exactly, where floats are not: 700m is 0.7, not more.
        assert_eq!(quantity("700m"), quantity("0.7"));
        assert_eq!(quantity("1400m"), quantity("1.4"));
        for bad in [
            "", "Gi", "8GB", "1.2.3", "four", "1e", "--1", ".", "1e99", " 1",
        ] {
            assert_eq!(quantity(bad), None, "{bad:?}");
        }
    }

    fn fields(pod: &RuntimePodSpec) -> Vec<String> {
        pod.check("spec.pod", Some("nvidia.com/gpu"))
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
                &[("cpu", "700m"), ("memory", "8Gi"), ("example.com/nic", "1")],
                &[("cpu", "0.7"), ("memory", "16Gi"), ("example.com/nic", "1")],
            )),
            tolerations: Some(vec![Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }]),
            node_selector: Some(BTreeMap::from([("pool".into(), "inference".into())])),
            priority_class_name: Some("inference-high".into()),
            runtime_class_name: Some("nvidia".into()),
        };
        assert_eq!(fields(&good), Vec::<String>::new());

        let cases: Vec<(RuntimePodSpec, &str)> = vec![
            (
                RuntimePodSpec {
                    runtime_class_name: Some("NVIDIA Runtime".into()),
                    ..Default::default()
                },
                "spec.pod.runtimeClassName",
            ),
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
            (
                RuntimePodSpec {
                    priority_class_name: Some("a..b".into()),
                    ..Default::default()
                },
                "spec.pod.priorityClassName",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[("cpu", "-1")], &[])),
                    ..Default::default()
                },
                "spec.pod.resources.requests[\"cpu\"]",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[("CPU", "2")], &[])),
                    ..Default::default()
                },
                "spec.pod.resources.requests[\"CPU\"]",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[("example.com/nic", "1")], &[])),
                    ..Default::default()
                },
                "spec.pod.resources.requests[\"example.com/nic\"]",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[], &[("example.com/nic", "500m")])),
                    ..Default::default()
                },
                "spec.pod.resources.limits[\"example.com/nic\"]",
            ),
            (
                RuntimePodSpec {
                    resources: Some(resources(&[], &[("hugepages-2Mi", "1Gi")])),
                    ..Default::default()
                },
                "spec.pod.resources",
            ),
            (
                RuntimePodSpec {
                    tolerations: Some(vec![Toleration {
                        key: Some("gpu".into()),
                        value: Some("a b".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "spec.pod.tolerations[0].value",
            ),
            (
                RuntimePodSpec {
                    node_selector: Some(BTreeMap::from([(
                        "nvidia.com/gpu.product".into(),
                        "".into(),
                    )])),
                    ..Default::default()
                },
                "spec.pod.nodeSelector[\"nvidia.com/gpu.product\"]",
            ),
        ];
        // An empty operator is Equal to the API server.
        let equal = RuntimePodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("gpu".into()),
                operator: Some(String::new()),
                value: Some("yes".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(fields(&equal), Vec::<String>::new());
        for (pod, field) in cases {
            let got = fields(&pod);
            assert!(
                got.iter().any(|f| f == field),
                "{field} not in {got:?} for {pod:?}"
            );
        }
    }
}
