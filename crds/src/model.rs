//! What is served: the model source, its input, and the numeric precision it runs at.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Architectures the runtime builds natively (tch::vision) with random weights: for demos and
/// measurements, where the arithmetic — and so the energy — is the same as with trained weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BuiltinModel {
    #[serde(rename = "resnet18")]
    Resnet18,
    #[serde(rename = "resnet34")]
    Resnet34,
    #[serde(rename = "resnet50")]
    Resnet50,
    #[serde(rename = "resnet101")]
    Resnet101,
    #[serde(rename = "alexnet")]
    Alexnet,
    #[serde(rename = "vgg16")]
    Vgg16,
    #[serde(rename = "densenet121")]
    Densenet121,
    #[serde(rename = "mobilenet_v2")]
    MobilenetV2,
    #[serde(rename = "efficientnet_b0")]
    EfficientnetB0,
    #[serde(rename = "squeezenet1_1")]
    Squeezenet1_1,
}

impl BuiltinModel {
    pub const ALL: [BuiltinModel; 10] = [
        BuiltinModel::Resnet18,
        BuiltinModel::Resnet34,
        BuiltinModel::Resnet50,
        BuiltinModel::Resnet101,
        BuiltinModel::Alexnet,
        BuiltinModel::Vgg16,
        BuiltinModel::Densenet121,
        BuiltinModel::MobilenetV2,
        BuiltinModel::EfficientnetB0,
        BuiltinModel::Squeezenet1_1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::Resnet18 => "resnet18",
            BuiltinModel::Resnet34 => "resnet34",
            BuiltinModel::Resnet50 => "resnet50",
            BuiltinModel::Resnet101 => "resnet101",
            BuiltinModel::Alexnet => "alexnet",
            BuiltinModel::Vgg16 => "vgg16",
            BuiltinModel::Densenet121 => "densenet121",
            BuiltinModel::MobilenetV2 => "mobilenet_v2",
            BuiltinModel::EfficientnetB0 => "efficientnet_b0",
            BuiltinModel::Squeezenet1_1 => "squeezenet1_1",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for BuiltinModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the model comes from: exactly one of `uri` (a TorchScript file) or `builtin`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["uri"]}, {"required": ["builtin"]}]))]
pub struct ModelSource {
    /// A TorchScript file: `file:///path` (inside the pod), `pvc://<claim>/<path>` (mounted
    /// read-only), or `https://…` / `http://…` (downloaded by each pod before it loads the model;
    /// `digest` is then required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^(file|pvc|https?)://.+")
    )]
    pub uri: Option<String>,
    /// A built-in architecture with random weights (for demos and measurements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinModel>,
    /// Content digest of the model file (`sha256:<hex>`). Keys the shared EnergyProfile, and the
    /// runtime checks the file against it before loading (a pod whose file differs fails instead
    /// of measuring or serving another model). Without it the URI stands in, so a changed file at
    /// the same URI needs a new digest or a re-profile. Required for http(s) URIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    Float32,
    Float16,
    Bfloat16,
    Int64,
    Int32,
    Uint8,
}

impl Dtype {
    /// The KServe v2 / Triton datatype name.
    pub fn v2_name(self) -> &'static str {
        match self {
            Dtype::Float32 => "FP32",
            Dtype::Float16 => "FP16",
            Dtype::Bfloat16 => "BF16",
            Dtype::Int64 => "INT64",
            Dtype::Int32 => "INT32",
            Dtype::Uint8 => "UINT8",
        }
    }
}

/// The shape of one item (without the batch dimension) and its element type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputSpec {
    #[schemars(length(min = 1, max = 8), inner(range(min = 1, max = 1_000_000)))]
    pub shape: Vec<i64>,
    #[serde(default)]
    pub dtype: Dtype,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub source: ModelSource,
    pub input: InputSpec,
}

impl ModelSpec {
    /// A short human name: the builtin name or the file name of the URI.
    pub fn display_name(&self) -> String {
        if let Some(b) = self.source.builtin {
            return b.name().to_string();
        }
        let uri = self.source.uri.as_deref().unwrap_or("model");
        let file = uri.rsplit('/').next().unwrap_or(uri);
        file.split('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("model")
            .to_string()
    }

    /// The identity of the model's arithmetic for profile sharing: the digest when given, else the
    /// source itself (a builtin is fully determined by its name and input).
    pub fn identity(&self) -> String {
        let shape: Vec<String> = self.input.shape.iter().map(i64::to_string).collect();
        let what = match (&self.source.digest, &self.source.uri, self.source.builtin) {
            (Some(d), _, _) => d.clone(),
            (None, Some(u), _) => format!("uri:{u}"),
            (None, None, Some(b)) => format!("builtin:{b}"),
            (None, None, None) => "unknown".to_string(),
        };
        format!("{what};input={}x{:?}", shape.join("x"), self.input.dtype)
    }
}
