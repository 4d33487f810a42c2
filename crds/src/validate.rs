//! Spec rules a Kubernetes 1.20 API server cannot express in a CRD schema (one-of, cross-field,
//! semantic checks), as a pure function. Every error names the field it is about, in the same
//! path syntax the API server uses (`spec.batching.batchSize`).

use crate::inference_service::{BatchingMode, InferenceServiceSpec, MAX_BATCH_SIZE};
use crate::model::{
    Dtype, Precision, S3Source, s3_endpoint_problem, s3_region_problem, split_s3_uri,
};
use crate::runtime_pod::dns_subdomain;
use greenbatch_core::{BatchingMode as CoreMode, ReplicaRange, Slo};

/// Elements in one item above which an input is refused: 2^28 floats is 1 GiB per item.
pub const MAX_ITEM_ELEMENTS: i64 = 1 << 28;

pub use crate::field_error::FieldError;

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

fn digest_required(with: &str) -> FieldError {
    err(
        "spec.model.source.digest",
        format!(
            "required with {with}: the download is checked against it, and it keys the shared \
             EnergyProfile (what a URL serves can change)"
        ),
    )
}

/// What the runtime can serve and run: the v2 server takes FP32, INT64, INT32 and UINT8 tensors
/// (half precision is the model's, chosen by `profiling.precision`, with float32 inputs), and
/// half precision runs on a GPU, for float inputs. Refused here, not after a profiling Job.
fn check_dtype_and_precision(spec: &InferenceServiceSpec, errors: &mut Vec<FieldError>) {
    let dtype = spec.model.input.dtype;
    if matches!(dtype, Dtype::Float16 | Dtype::Bfloat16) {
        errors.push(err(
            "spec.model.input.dtype",
            format!(
                "{} inputs cannot be served (the v2 server takes FP32, INT64, INT32 and UINT8): \
                 use float32, with spec.profiling.precision fp16 or bf16 to run the model in half precision",
                dtype.v2_name()
            ),
        ));
    }
    let precision = spec.profiling.precision;
    if precision != Precision::Fp32 {
        if spec.gpu.count == 0 {
            errors.push(err(
                "spec.profiling.precision",
                format!(
                    "{} runs on a GPU only, and spec.gpu.count is 0: use fp32",
                    precision.as_str()
                ),
            ));
        }
        if matches!(dtype, Dtype::Int64 | Dtype::Int32 | Dtype::Uint8) {
            errors.push(err(
                "spec.profiling.precision",
                format!(
                    "{} is for float inputs; {} inputs (indices, raw bytes) stay as they are: use fp32",
                    precision.as_str(),
                    dtype.v2_name()
                ),
            ));
        }
    }
}

/// `spec.model.source.s3`: only beside an `s3://` URI, an endpoint that is a plain origin, a
/// region name, a Secret name.
fn check_s3(s3: &S3Source, uri: Option<&str>, errors: &mut Vec<FieldError>) {
    if !uri.is_some_and(|u| u.starts_with("s3://")) {
        errors.push(err("spec.model.source.s3", "applies to an s3:// uri only"));
    }
    if let Some(problem) = s3.endpoint.as_deref().and_then(s3_endpoint_problem) {
        errors.push(err("spec.model.source.s3.endpoint", problem));
    }
    if let Some(problem) = s3.region.as_deref().and_then(s3_region_problem) {
        errors.push(err("spec.model.source.s3.region", problem));
    }
    if let Some(secret) = &s3.credentials_secret
        && !dns_subdomain(secret)
    {
        errors.push(err(
            "spec.model.source.s3.credentialsSecret",
            format!("{secret:?} is not a Secret name (lowercase DNS-1123 subdomain)"),
        ));
    }
}

/// All errors, joined for a condition message.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A spec that passed validation, in the decision core's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedSpec {
    pub slo: Slo,
    pub mode: CoreMode,
    pub replicas: ReplicaRange,
    /// Sorted, de-duplicated batch sizes to profile (in fixed mode the fixed size is included).
    pub candidates: Vec<u32>,
}

pub fn validate_spec(spec: &InferenceServiceSpec) -> Result<ValidatedSpec, Vec<FieldError>> {
    let mut errors = Vec::new();

    let source = &spec.model.source;
    match (&source.uri, &source.builtin) {
        (Some(_), Some(_)) => errors.push(err(
            "spec.model.source",
            "set exactly one of uri or builtin, not both",
        )),
        (None, None) => errors.push(err(
            "spec.model.source",
            "set exactly one of uri or builtin",
        )),
        (Some(uri), None) if uri.starts_with("https://") || uri.starts_with("http://") => {
            let rest = uri.split_once("://").map_or("", |(_, rest)| rest);
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let path = rest[host.len()..].split(['?', '#']).next().unwrap_or("");
            // The URL is not echoed: a presigned one carries its secret in the query, and these
            // messages go into conditions and Events.
            if host.is_empty() || uri.contains(char::is_whitespace) {
                errors.push(err(
                    "spec.model.source.uri",
                    "the URL has no host, or has spaces",
                ));
            } else if path.trim_start_matches('/').is_empty() {
                errors.push(err("spec.model.source.uri", "the URL names no file"));
            }
            if source.digest.is_none() {
                errors.push(digest_required("an http(s) uri"));
            }
        }
        (Some(uri), None) if uri.starts_with("s3://") => {
            if let Err(problem) = split_s3_uri(uri) {
                errors.push(err("spec.model.source.uri", problem));
            }
            if source.digest.is_none() {
                errors.push(digest_required("an s3 uri"));
            }
        }
        (Some(uri), None) => {
            let rest = uri
                .strip_prefix("file://")
                .or_else(|| uri.strip_prefix("pvc://"));
            match rest {
                None => errors.push(err(
                    "spec.model.source.uri",
                    format!(
                        "unsupported scheme in {uri:?}: use file://, pvc://, https://, http:// or s3://"
                    ),
                )),
                Some(path) if path.is_empty() || path.split('/').any(|seg| seg == "..") => errors
                    .push(err(
                        "spec.model.source.uri",
                        format!("{uri:?} has an empty path or a '..' segment"),
                    )),
                Some(path) if uri.starts_with("pvc://") => {
                    // The operator mounts the claim and reads the file at the path in it.
                    // `pvc:///claim/file` too, as the operator's mount reads it.
                    let path = path.trim_start_matches('/');
                    let (claim, file) = path.split_once('/').unwrap_or((path, ""));
                    if !crate::runtime_pod::dns_subdomain(claim)
                        || file.is_empty()
                        || file.ends_with('/')
                    {
                        errors.push(err(
                            "spec.model.source.uri",
                            format!(
                                "{uri:?} must be pvc://<claim>/<path-in-claim>: a claim name (lowercase letters, digits, '-', '.') and a file in it"
                            ),
                        ))
                    }
                }
                Some(_) => {}
            }
        }
        (None, Some(_)) => {}
    }
    if let Some(s3) = &source.s3 {
        check_s3(s3, source.uri.as_deref(), &mut errors);
    }
    if spec.model.format.is_some() && source.builtin.is_some() {
        errors.push(err(
            "spec.model.format",
            "a builtin model is built, not read from a file: remove format (it is for source.uri)",
        ));
    }
    if let Some(d) = &source.digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64
            || !hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            errors.push(err(
                "spec.model.source.digest",
                format!("{d:?} is not sha256:<64 lowercase hex digits>"),
            ));
        }
    }

    check_dtype_and_precision(spec, &mut errors);

    let shape = &spec.model.input.shape;
    if shape.is_empty() {
        errors.push(err(
            "spec.model.input.shape",
            "must have at least one dimension",
        ));
    } else if let Some((i, d)) = shape.iter().enumerate().find(|(_, d)| **d < 1) {
        errors.push(err(
            &format!("spec.model.input.shape[{i}]"),
            format!("dimension must be >= 1, got {d}"),
        ));
    } else {
        let elements = shape.iter().try_fold(1i64, |acc, d| acc.checked_mul(*d));
        if elements.is_none_or(|n| n > MAX_ITEM_ELEMENTS) {
            errors.push(err(
                "spec.model.input.shape",
                format!("{shape:?} has more than {MAX_ITEM_ELEMENTS} elements per item"),
            ));
        }
    }

    let slo = Slo::from_parts(spec.slo.latency_ms, spec.slo.percentile)
        .map_err(|e| {
            let field = if matches!(e, greenbatch_core::SloError::Percentile(_)) {
                "spec.slo.percentile"
            } else {
                "spec.slo.latencyMs"
            };
            errors.push(err(field, e.to_string()));
        })
        .ok();

    let b = &spec.batching;
    let mut candidates: Vec<u32> = b.candidates.clone();
    if candidates.is_empty() {
        errors.push(err(
            "spec.batching.candidates",
            "must list at least one batch size",
        ));
    }
    if let Some((i, c)) = candidates
        .iter()
        .enumerate()
        .find(|(_, c)| **c < 1 || **c > MAX_BATCH_SIZE)
    {
        errors.push(err(
            &format!("spec.batching.candidates[{i}]"),
            format!("must be in 1..={MAX_BATCH_SIZE}, got {c}"),
        ));
    }
    let mode = match (b.mode, b.batch_size) {
        (BatchingMode::Auto, None) => Some(CoreMode::Auto),
        (BatchingMode::Auto, Some(size)) => {
            // Ignored, it would look like the size served.
            errors.push(err(
                "spec.batching.batchSize",
                format!(
                    "{size} is only used with mode: fixed (mode auto chooses the size): set mode: fixed, or remove batchSize"
                ),
            ));
            None
        }
        (BatchingMode::Fixed, None) => {
            errors.push(err(
                "spec.batching.batchSize",
                "required when mode is fixed",
            ));
            None
        }
        (BatchingMode::Fixed, Some(size)) if !(1..=MAX_BATCH_SIZE).contains(&size) => {
            errors.push(err(
                "spec.batching.batchSize",
                format!("must be in 1..={MAX_BATCH_SIZE}, got {size}"),
            ));
            None
        }
        (BatchingMode::Fixed, Some(size)) => {
            candidates.push(size);
            Some(CoreMode::Fixed(size))
        }
    };
    candidates.sort_unstable();
    candidates.dedup();

    let replicas = ReplicaRange::new(spec.replicas.min, spec.replicas.max)
        .map_err(|_| {
            errors.push(err(
                "spec.replicas",
                format!(
                    "min must be >= 1 and <= max, got min {}, max {}",
                    spec.replicas.min, spec.replicas.max
                ),
            ))
        })
        .ok();

    if spec.gpu.count > 0 && !crate::runtime_pod::is_extended_resource(&spec.gpu.resource) {
        errors.push(err(
            "spec.gpu.resource",
            format!(
                "{:?} must name an extended resource (a domain-prefixed name such as nvidia.com/gpu) when count > 0",
                spec.gpu.resource
            ),
        ));
    }
    if spec.gpu.count > 1 {
        errors.push(err(
            "spec.gpu.count",
            format!(
                "{}: a runtime pod serves on one GPU (the others would sit idle, drawing power); scale out with spec.replicas.max",
                spec.gpu.count
            ),
        ));
    }
    if spec.gpu.count == 0 && spec.gpu.product.is_some() {
        errors.push(err(
            "spec.gpu.product",
            "set with gpu.count 0: a CPU service cannot be pinned to a GPU product",
        ));
    }

    let p = &spec.profiling;
    if !(3..=50).contains(&p.windows) {
        errors.push(err(
            "spec.profiling.windows",
            format!("must be in 3..=50, got {}", p.windows),
        ));
    }
    if !(p.window_seconds.is_finite() && (0.1..=60.0).contains(&p.window_seconds)) {
        errors.push(err(
            "spec.profiling.windowSeconds",
            format!("must be in 0.1..=60, got {}", p.window_seconds),
        ));
    }
    if !(p.warmup_seconds.is_finite() && (0.0..=300.0).contains(&p.warmup_seconds)) {
        errors.push(err(
            "spec.profiling.warmupSeconds",
            format!("must be in 0..=300, got {}", p.warmup_seconds),
        ));
    }
    if !(p.max_spread.is_finite() && (0.0..=10.0).contains(&p.max_spread)) {
        errors.push(err(
            "spec.profiling.maxSpread",
            format!("must be in 0..=10, got {}", p.max_spread),
        ));
    }

    if let Some(pod) = &spec.pod {
        errors.extend(pod.check(
            "spec.pod",
            (spec.gpu.count > 0).then_some(spec.gpu.resource.as_str()),
        ));
    }

    match (slo, mode, replicas) {
        (Some(slo), Some(mode), Some(replicas)) if errors.is_empty() => Ok(ValidatedSpec {
            slo,
            mode,
            replicas,
            candidates,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
