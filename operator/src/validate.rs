//! The validate step: the API's own rules (`greenbatch_crds::validate::validate_spec`) plus the few
//! the operator adds because of the objects it builds from a service (names that must be DNS labels,
//! a profile key that fits the EnergyProfile schema, a well-formed re-profile token). Pure.

use crate::names::{DRIFT_TOKEN_PREFIX, PAUSED_ANNOTATION, REPROFILE_ANNOTATION};
use greenbatch_crds::InferenceService;
use greenbatch_crds::validate::{FieldError, ValidatedSpec, describe, validate_spec};

/// Most batch sizes an EnergyProfile's `candidates` holds (its schema's `maxItems`).
pub const MAX_PROFILE_CANDIDATES: usize = 32;
/// Longest model identity an EnergyProfile's `modelDigest` holds (its schema's `maxLength`).
pub const MAX_MODEL_IDENTITY: usize = 1024;

/// A service the operator can act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Valid {
    pub spec: ValidatedSpec,
    /// The re-profile token, when the annotation is set.
    pub reprofile_token: Option<String>,
}

/// The validation failure as a condition message: every error, each naming its field.
pub fn message(errors: &[FieldError]) -> String {
    format!("invalid spec: {}", describe(errors))
}

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A DNS-1035 label: what a Service name must be (Deployment names allow more, Services do not).
fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_token(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

pub fn validate(is: &InferenceService) -> Result<Valid, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = is.metadata.name.as_deref().unwrap_or("");
    if !is_dns1035_label(name) {
        // The Service and the pods' label values carry the name verbatim.
        errors.push(field(
            "metadata.name",
            format!(
                "{name:?} must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter, at most 63 characters): the Service is named after it"
            ),
        ));
    }
    let token = is
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REPROFILE_ANNOTATION))
        .cloned();
    if let Some(t) = &token
        && !is_token(t)
    {
        errors.push(field(
            &format!("metadata.annotations[{REPROFILE_ANNOTATION}]"),
            format!("{t:?} must be 1-63 characters of [A-Za-z0-9._-]"),
        ));
    } else if let Some(t) = token
        .as_deref()
        .filter(|t| t.starts_with(DRIFT_TOKEN_PREFIX))
    {
        errors.push(field(
            &format!("metadata.annotations[{REPROFILE_ANNOTATION}]"),
            format!(
                "{t:?}: tokens starting with {DRIFT_TOKEN_PREFIX:?} are the operator's own (spec.onDrift: Reprofile)"
            ),
        ));
    }
    if let Some(v) = is
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .filter(|v| !matches!(v.as_str(), "true" | "false"))
    {
        // "True" or "yes" would be read as not paused while the user thinks it is.
        errors.push(field(
            &format!("metadata.annotations[{PAUSED_ANNOTATION}]"),
            format!("{v:?} must be \"true\" (or \"false\", or the annotation removed)"),
        ));
    }
    let identity = is.spec.model.identity();
    if identity.len() > MAX_MODEL_IDENTITY {
        errors.push(field(
            "spec.model.source.uri",
            format!(
                "too long to key a shared EnergyProfile ({} > {MAX_MODEL_IDENTITY} characters): set spec.model.source.digest",
                identity.len()
            ),
        ));
    }
    let spec = match validate_spec(&is.spec) {
        Ok(spec) => Some(spec),
        Err(mut api_errors) => {
            errors.append(&mut api_errors);
            None
        }
    };
    if let Some(spec) = &spec
        && spec.candidates.len() > MAX_PROFILE_CANDIDATES
    {
        // The fixed batch size is profiled too, so 32 candidates plus a new fixed size is one too many.
        errors.push(field(
            "spec.batching.candidates",
            format!(
                "{} batch sizes to profile (candidates plus the fixed batchSize) exceed {MAX_PROFILE_CANDIDATES}",
                spec.candidates.len()
            ),
        ));
    }
    match spec {
        Some(spec) if errors.is_empty() => Ok(Valid {
            spec,
            reprofile_token: token,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::service;

    #[test]
    fn table() {
        type Edit = fn(&mut InferenceService);
        let cases: &[(&str, Edit, Option<&str>)] = &[
            ("valid", |_| {}, None),
            (
                "service name not a DNS-1035 label",
                |s| s.metadata.name = Some("9lives".into()),
                Some("metadata.name"),
            ),
            (
                "dotted name",
                |s| s.metadata.name = Some("a.b".into()),
                Some("metadata.name"),
            ),
            (
                "fixed without batchSize",
                |s| s.spec.batching.mode = greenbatch_crds::inference_service::BatchingMode::Fixed,
                Some("spec.batching.batchSize"),
            ),
            (
                "min > max",
                |s| {
                    s.spec.replicas.min = 3;
                    s.spec.replicas.max = 2
                },
                Some("spec.replicas"),
            ),
            (
                "bad token",
                |s| {
                    s.metadata.annotations =
                        Some([(REPROFILE_ANNOTATION.to_string(), "a,b".to_string())].into());
                },
                Some("metadata.annotations[greenbatch.dev/reprofile]"),
            ),
            (
                "the operator's own token prefix",
                |s| {
                    s.metadata.annotations = Some(
                        [(
                            REPROFILE_ANNOTATION.to_string(),
                            "drift-20250101T000000Z".to_string(),
                        )]
                        .into(),
                    );
                },
                Some("are the operator's own"),
            ),
            (
                "paused with another word than true",
                |s| {
                    s.metadata.annotations =
                        Some([(PAUSED_ANNOTATION.to_string(), "True".to_string())].into());
                },
                Some("metadata.annotations[greenbatch.dev/paused]"),
            ),
            (
                "paused: false",
                |s| {
                    s.metadata.annotations =
                        Some([(PAUSED_ANNOTATION.to_string(), "false".to_string())].into());
                },
                None,
            ),
            (
                "huge uri",
                |s| {
                    s.spec.model.source.uri = Some(format!("file:///{}", "x".repeat(1100)));
                    s.spec.model.source.builtin = None;
                },
                Some("spec.model.source.uri"),
            ),
            (
                "33 sizes",
                |s| {
                    s.spec.batching.candidates = (1..=32).collect();
                    s.spec.batching.mode = greenbatch_crds::inference_service::BatchingMode::Fixed;
                    s.spec.batching.batch_size = Some(100);
                },
                Some("spec.batching.candidates"),
            ),
        ];
        for (what, edit, want) in cases {
            let mut s = service("svc");
            edit(&mut s);
            match (validate(&s), want) {
                (Ok(_), None) => {}
                (Err(errors), Some(field)) => {
                    assert!(message(&errors).contains(field), "{what}: {errors:?}");
                }
                (got, want) => panic!("{what}: got {got:?}, want error on {want:?}"),
            }
        }
    }

    #[test]
    fn token_is_returned() {
        let mut s = service("svc");
        s.metadata.annotations =
            Some([(REPROFILE_ANNOTATION.to_string(), "t-1".to_string())].into());
        assert_eq!(
            validate(&s).unwrap().reprofile_token.as_deref(),
            Some("t-1")
        );
    }
}
