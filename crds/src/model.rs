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
    /// read-only), `https://…` / `http://…`, or `s3://<bucket>/<key>` (downloaded by each pod
    /// before it loads the model; `digest` is then required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^(file|pvc|https?|s3)://.+")
    )]
    pub uri: Option<String>,
    /// Where an `s3://` object is and the keys to read it with (unset: AWS, with the pod's AWS
    /// identity when it has one, else anonymously).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// A built-in architecture with random weights (for demos and measurements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinModel>,
    /// Content digest of the model file (`sha256:<hex>`). Keys the shared EnergyProfile, and the
    /// runtime checks the file against it before loading (a pod whose file differs fails instead
    /// of measuring or serving another model). Without it the URI stands in, so a changed file at
    /// the same URI needs a new digest or a re-profile. Required for http(s) and s3 URIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
}

/// How an `s3://` model is reached: the store, its region, and the Secret holding the keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// `http(s)://host[:port]` of an S3-compatible store (MinIO, Ceph, Cloudflare R2, GCS
    /// interoperability), addressed path-style. Unset: AWS (`<bucket>.s3.<region>.amazonaws.com`).
    /// A private CA is trusted through the operator's `--model-ca-configmap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$")
    )]
    pub endpoint: Option<String>,
    /// The region requests are signed for (default: the pod's `AWS_REGION`, else `us-east-1`;
    /// MinIO accepts that too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,
    /// A Secret in the service's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and optionally `AWS_SESSION_TOKEN`), handed to the runtime's
    /// pods as environment variables (the operator itself never reads it). Unset: for AWS S3 the
    /// pod's own AWS identity (IRSA or EKS Pod Identity on the runtime service account), else the
    /// object is read anonymously (a public bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

/// The environment variables a `credentialsSecret` must hold, and the optional one.
pub const S3_REQUIRED_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
pub const S3_OPTIONAL_KEYS: [&str; 1] = ["AWS_SESSION_TOKEN"];

/// Why `name` is not an S3 bucket name, if it is not one (3 to 63 lowercase letters, digits,
/// dots and hyphens, starting and ending with a letter or digit).
pub fn s3_bucket_problem(name: &str) -> Option<String> {
    if name.contains(['@', ':']) {
        // `s3://KEY:SECRET@bucket/…` as some tools write it: not echoed, it may hold a secret.
        return Some(
            "credentials in an s3:// URI are not supported (and not shown here): give them \
             through spec.model.source.s3.credentialsSecret (AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY in the runtime's environment)"
                .to_string(),
        );
    }
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        format!(
            "{name:?} is not a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, \
             starting and ending with a letter or digit"
        )
    })
}

/// The bucket and the key of `s3://<bucket>/<key>`, or what is wrong with it (without echoing
/// the URI: `s3://KEY:SECRET@bucket/…` would show its secret).
pub fn split_s3_uri(uri: &str) -> Result<(&str, &str), String> {
    let rest = uri.strip_prefix("s3://").ok_or("not an s3:// URI")?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or("names no object: expected s3://<bucket>/<key>")?;
    if let Some(problem) = s3_bucket_problem(bucket) {
        return Err(problem);
    }
    if let Some(problem) = s3_key_problem(key) {
        return Err(format!("the object key {problem}"));
    }
    Ok((bucket, key))
}

/// Why `key` cannot be the object key of an `s3://` model, if it cannot (taken literally, as
/// the AWS CLI takes it).
pub fn s3_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.ends_with('/') {
        Some("names a folder, not an object: expected s3://<bucket>/<key>")
    } else if key.len() > 1024 || key.chars().any(char::is_control) {
        Some("an object key is at most 1024 bytes, without control characters")
    } else if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        // A URL's path resolves them: the request would name another object, or bucket.
        Some("has a '.' or '..' segment, which a URL cannot carry as is")
    } else {
        None
    }
}

/// Why `region` is not a region name as AWS writes them (`eu-west-1`), if it is not.
pub fn s3_region_problem(region: &str) -> Option<String> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (!ok).then(|| format!("{region:?}: expected a region name such as eu-west-1"))
}

/// Why `endpoint` is not `http(s)://host[:port]` (a port in 1..=65535, an optional trailing
/// `/`), if it is not.
pub fn s3_endpoint_problem(endpoint: &str) -> Option<String> {
    // "" or ":<port>".
    let port_ok = |rest: &str| {
        rest.is_empty()
            || rest.strip_prefix(':').is_some_and(|p| {
                !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u16>().is_ok_and(|n| n > 0)
            })
    };
    let authority = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .map(|rest| rest.strip_suffix('/').unwrap_or(rest));
    let plain = authority.is_some_and(|a| match a.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(addr, rest)| {
            !addr.is_empty()
                && addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                && port_ok(rest)
        }),
        None => {
            let (host, rest) = a.find(':').map_or((a, ""), |i| (&a[..i], &a[i..]));
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && port_ok(rest)
        }
    });
    (!plain).then(|| {
        format!(
            "{endpoint:?}: expected http(s)://host[:port], without a path, query or credentials"
        )
    })
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

/// How a model file is stored. TorchScript (`torch.jit.save`) is the one format the runtime reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    #[default]
    Torchscript,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub source: ModelSource,
    /// The format of the file `source.uri` names: `torchscript`, the only one read (the default;
    /// optional). Not for a `builtin` model, which is built, not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ModelFormat>,
    pub input: InputSpec,
}

impl ModelSpec {
    /// A short human name: the builtin name or the file name of the URI.
    pub fn display_name(&self) -> String {
        if let Some(b) = self.source.builtin {
            return b.name().to_string();
        }
        let uri = self.source.uri.as_deref().unwrap_or("model");
        // A presigned URL's query (its signature) is no part of a name.
        let uri = if uri.starts_with("s3://") {
            uri
        } else {
            uri.split(['?', '#']).next().unwrap_or(uri)
        };
        let file = uri.rsplit('/').next().unwrap_or(uri);
        let stem = file
            .split('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("model");
        // Short enough for a column and an object name.
        stem.chars().take(63).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn named(uri: &str) -> String {
        let spec: ModelSpec = serde_json::from_value(serde_json::json!({
            "source": {"uri": uri}, "input": {"shape": [3]}
        }))
        .unwrap();
        spec.display_name()
    }

    #[test]
    fn a_model_s_name_is_its_file_s_stem_without_a_query_and_short() {
        assert_eq!(named("pvc://models/vision/resnet50.pt"), "resnet50");
        // A presigned URL: its signature is no part of the name.
        let presigned = format!(
            "https://b.s3.amazonaws.com/models/resnet?X-Amz-Signature={}",
            "a".repeat(300)
        );
        assert_eq!(named(&presigned), "resnet");
        assert_eq!(named("https://h/m/bert.pt#frag"), "bert");
        // An S3 key's `?` is the key's.
        assert_eq!(named("s3://b/models/a?b.pt"), "a?b");
        assert_eq!(named(&format!("pvc://m/{}.pt", "x".repeat(100))).len(), 63);
    }
}
