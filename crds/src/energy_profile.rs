//! `EnergyProfile`: the measured table of one model on one GPU product, shared by every
//! InferenceService that serves the same model there.

use crate::inference_service::ProfilingSpec;
use crate::model::{ModelSpec, Precision};
use greenbatch_core::ProfileTable;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "greenbatch.dev",
    version = "v1alpha1",
    kind = "EnergyProfile",
    namespaced,
    shortname = "gep",
    category = "greenbatch",
    status = "EnergyProfileStatus",
    derive = "PartialEq",
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.modelName"),
    printcolumn(name = "GPU", type_ = "string", json_path = ".spec.gpuProduct"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Best-batch",
        type_ = "integer",
        json_path = ".status.bestBatchSize"
    ),
    printcolumn(
        name = "J/inf",
        type_ = "number",
        json_path = ".status.bestJoulesPerInference"
    ),
    printcolumn(name = "Meter", type_ = "string", json_path = ".status.table.meter"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EnergyProfileSpec {
    /// Human name of the model (display only).
    #[schemars(length(min = 1, max = 253))]
    pub model_name: String,
    /// Identity of the model's arithmetic: its digest, or its source and input when no digest is given.
    #[schemars(length(min = 1, max = 1024))]
    pub model_digest: String,
    /// GPU product the table is valid for; `cpu` for CPU-only profiles.
    #[schemars(length(min = 1, max = 63))]
    pub gpu_product: String,
    /// The extended resource the GPU was requested as, when not a whole `nvidia.com/gpu`: a MIG
    /// slice (`nvidia.com/mig-1g.10gb`) keeps its GPU's product label but not its speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub gpu_resource: Option<String>,
    #[schemars(length(min = 1, max = 63))]
    pub runtime_version: String,
    #[serde(default)]
    pub precision: Precision,
    pub model: ModelSpec,
    #[schemars(length(min = 1, max = 32), inner(range(min = 1, max = 4096)))]
    pub candidates: Vec<u32>,
    #[serde(default)]
    pub protocol: ProfilingSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProfilePhase {
    Pending,
    Measuring,
    Complete,
    Failed,
}

/// Where the profile was measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasuredOn {
    /// `cuda:0` or `cpu`.
    pub device: String,
    /// GPU name as NVML reports it, or the CPU model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_threads: Option<u32>,
    /// How the runtime prepared the model's graph: `torchscript`, `torchscript-frozen`,
    /// `torchscript-frozen-optimized` or `native-tch-vision`. Serving prepares it the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// True when the model has random weights (builtin architectures): fine for energy, not for answers.
    #[serde(default)]
    pub random_weights: bool,
}

impl MeasuredOn {
    /// The device for people: its product name when the runtime read one, else `cpu` / `cuda:0`.
    pub fn display_name(&self) -> &str {
        self.device_name.as_deref().unwrap_or(&self.device)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnergyProfileStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ProfilePhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<ProfileTable>,
    /// The row with the least joules per inference (null without energy data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_joules_per_inference: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_on: Option<MeasuredOn>,
    /// RFC 3339 start and end of the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Why the profile failed or is incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How the profile's last profiling Job ended, recorded by the operator when it saw it finish
    /// (the runtime writes the rest of the status). With this record the Job itself can go
    /// (`ttlSecondsAfterFinished`, or by hand) without being run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<ProfilingJobRecord>,
}

/// How a profiling Job ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfilingJobRecord {
    /// The Job's name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    pub outcome: JobOutcome,
    /// Why it failed: the reason of its last failed pod (or of the Job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JobOutcome {
    Succeeded,
    Failed,
}

impl EnergyProfileStatus {
    /// A complete status for a measured table, with the best row filled in.
    pub fn complete(table: ProfileTable) -> Self {
        let best = table
            .most_efficient_row()
            .map(|r| (r.batch_size, r.joules_per_inference));
        EnergyProfileStatus {
            phase: Some(ProfilePhase::Complete),
            best_batch_size: best.map(|b| b.0),
            best_joules_per_inference: best.and_then(|b| b.1),
            table: Some(table),
            ..Default::default()
        }
    }
}

/// What makes two profiles interchangeable. Equal keys share one EnergyProfile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileKey {
    pub model_name: String,
    pub model_digest: String,
    pub gpu_product: String,
    /// `None` for a whole `nvidia.com/gpu` (and the CPU): the names of such profiles do not
    /// depend on it, as before it was part of the key.
    pub gpu_resource: Option<String>,
    pub runtime_version: String,
    pub precision: Precision,
}

impl ProfileKey {
    /// A stable, DNS-1123 object name: `<model>-<gpu>-<hash>` where the hash covers the whole key.
    pub fn object_name(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            &self.model_digest,
            &self.gpu_product,
            &self.runtime_version,
            self.precision.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        if let Some(resource) = &self.gpu_resource {
            h.update(resource.as_bytes());
            h.update([0u8]);
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(5)
            .map(|b| format!("{b:02x}"))
            .collect();
        let slug = |s: &str, max: usize| -> String {
            let mut out: String = s
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            out.truncate(max);
            out.trim_matches('-').to_string()
        };
        let name = format!(
            "{}-{}-{hex}",
            slug(&self.model_name, 24),
            slug(&self.gpu_product, 24)
        );
        name.split('-')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(gpu: &str) -> ProfileKey {
        ProfileKey {
            model_name: "ResNet_50".into(),
            model_digest: "builtin:resnet50;input=3x224x224xFloat32".into(),
            gpu_product: gpu.into(),
            gpu_resource: None,
            runtime_version: "0.1.0".into(),
            precision: Precision::Fp32,
        }
    }

    #[test]
    fn object_names_are_dns_labels_and_differ_by_key() {
        let a = key("NVIDIA-H100-80GB-HBM3").object_name();
        let b = key("NVIDIA-H200").object_name();
        assert_ne!(a, b);
        assert_eq!(a, key("NVIDIA-H100-80GB-HBM3").object_name());
        for n in [&a, &b] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(
                !n.starts_with('-') && !n.ends_with('-') && !n.contains("--"),
                "{n}"
            );
        }
        assert!(a.starts_with("resnet-50-nvidia-h100"), "{a}");
    }
}
