use super::*;
use crate::inference_service::{
    BatchingSpec, GpuSpec, ProfilingSpec, ReplicasSpec, SloSpec, UnattainablePolicy,
};
use crate::model::{BuiltinModel, Dtype, InputSpec, ModelSource, ModelSpec};

fn valid() -> InferenceServiceSpec {
    InferenceServiceSpec {
        model: ModelSpec {
            source: ModelSource {
                builtin: Some(BuiltinModel::Resnet50),
                ..Default::default()
            },
            format: None,
            input: InputSpec {
                shape: vec![3, 224, 224],
                dtype: Dtype::Float32,
            },
        },
        slo: SloSpec {
            latency_ms: 50.0,
            percentile: 99,
            when_unattainable: UnattainablePolicy::DoNotServe,
        },
        batching: BatchingSpec::default(),
        gpu: GpuSpec::default(),
        replicas: ReplicasSpec { min: 1, max: 4 },
        profiling: ProfilingSpec::default(),
        on_drift: Default::default(),
        pod: None,
    }
}

fn fields(spec: &InferenceServiceSpec) -> Vec<String> {
    validate_spec(spec)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn a_valid_spec_becomes_core_terms() {
    let v = validate_spec(&valid()).unwrap();
    assert_eq!(v.slo.latency_ms(), 50.0);
    assert_eq!(v.mode, CoreMode::Auto);
    assert_eq!((v.replicas.min(), v.replicas.max()), (1, 4));
    assert_eq!(v.candidates, vec![1, 2, 4, 8, 16, 32, 64, 128, 256]);
}

#[test]
fn a_model_file_may_say_it_is_torchscript() {
    let mut s = valid();
    s.model.source.builtin = None;
    s.model.source.uri = Some("pvc://models/resnet50.pt".into());
    s.model.format = Some(crate::ModelFormat::Torchscript);
    assert!(validate_spec(&s).is_ok());
    // A claim written after a slash, as the operator's mount reads it, is the same claim.
    s.model.source.uri = Some("pvc:///models/resnet50.pt".into());
    assert!(validate_spec(&s).is_ok());
    let json = serde_json::to_value(&s.model).unwrap();
    assert_eq!(json["format"], "torchscript");
    // Any other format is refused by the schema's enum, and by serde here.
    let other = serde_json::json!({"source": {"uri": "pvc://m/r.onnx"}, "format": "onnx",
        "input": {"shape": [3]}});
    assert!(serde_json::from_value::<crate::ModelSpec>(other).is_err());
}

#[test]
fn fixed_mode_adds_its_size_to_the_candidates() {
    let mut s = valid();
    s.batching = BatchingSpec {
        mode: BatchingMode::Fixed,
        candidates: vec![4, 1, 4],
        batch_size: Some(12),
    };
    let v = validate_spec(&s).unwrap();
    assert_eq!(v.mode, CoreMode::Fixed(12));
    assert_eq!(v.candidates, vec![1, 4, 12]);
}

type Mutation = fn(&mut InferenceServiceSpec);

#[test]
fn each_bad_field_is_named() {
    let cases: Vec<(Mutation, &str)> = vec![
        (
            |s| {
                s.pod = Some(crate::RuntimePodSpec {
                    priority_class_name: Some("Not A Name".into()),
                    ..Default::default()
                })
            },
            "spec.pod.priorityClassName",
        ),
        (
            |s| {
                // The GPU resource named by spec.gpu (not only nvidia.com/gpu) is spec.gpu's.
                s.gpu.resource = "amd.com/gpu".into();
                s.pod = serde_json::from_value(
                    serde_json::json!({"resources": {"limits": {"amd.com/gpu": 2}}}),
                )
                .unwrap();
            },
            "spec.pod.resources.limits[\"amd.com/gpu\"]",
        ),
        (
            |s| s.model.source.uri = Some("file:///m.pt".into()),
            "spec.model.source",
        ),
        (|s| s.model.source.builtin = None, "spec.model.source"),
        (
            |s| s.model.format = Some(crate::ModelFormat::Torchscript),
            "spec.model.format",
        ),
        (
            |s| s.model.input.dtype = Dtype::Float16,
            "spec.model.input.dtype",
        ),
        (
            |s| s.model.input.dtype = Dtype::Bfloat16,
            "spec.model.input.dtype",
        ),
        (
            |s| {
                s.profiling.precision = crate::Precision::Fp16;
                s.gpu.count = 0;
                s.gpu.product = None;
            },
            "spec.profiling.precision",
        ),
        (
            |s| {
                s.profiling.precision = crate::Precision::Bf16;
                s.model.input.dtype = Dtype::Int64;
            },
            "spec.profiling.precision",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("http://x/m.pt".into())
            },
            "spec.model.source.digest",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("s3://bucket/m.pt".into())
            },
            "spec.model.source.digest",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.uri = Some("s3://Bad_Bucket/m.pt".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.uri = Some("s3://models/vision/".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.uri = Some("s3://models".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.uri = Some("https://models.example/r50.pt".into())
            },
            "spec.model.source.s3",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.s3.as_mut().unwrap().endpoint = Some("minio:9000".into())
            },
            "spec.model.source.s3.endpoint",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.s3.as_mut().unwrap().endpoint =
                    Some("http://minio:9000/prefix".into())
            },
            "spec.model.source.s3.endpoint",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.s3.as_mut().unwrap().endpoint = Some("http://minio:70000".into())
            },
            "spec.model.source.s3.endpoint",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.uri = Some("s3://models/../other/r50.pt".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.s3.as_mut().unwrap().region = Some("EU West".into())
            },
            "spec.model.source.s3.region",
        ),
        (
            |s| {
                s3_model(s);
                s.model.source.s3.as_mut().unwrap().credentials_secret = Some("Keys!".into())
            },
            "spec.model.source.s3.credentialsSecret",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("https:///m.pt".into());
                s.model.source.digest = Some(format!("sha256:{}", "a".repeat(64)));
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("https://models.example/?file=m.pt".into());
                s.model.source.digest = Some(format!("sha256:{}", "a".repeat(64)));
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("file://../etc/passwd".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("pvc://claim-only".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("pvc://models/".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("pvc://models/dir/".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| {
                s.model.source.builtin = None;
                s.model.source.uri = Some("pvc://Bad_Claim/m.pt".into())
            },
            "spec.model.source.uri",
        ),
        (
            |s| s.model.source.digest = Some("sha256:XYZ".into()),
            "spec.model.source.digest",
        ),
        (|s| s.model.input.shape = vec![], "spec.model.input.shape"),
        (
            |s| s.model.input.shape = vec![3, 0, 224],
            "spec.model.input.shape[1]",
        ),
        (
            |s| s.model.input.shape = vec![1 << 20, 1 << 20],
            "spec.model.input.shape",
        ),
        (
            |s| s.model.input.shape = vec![i64::MAX, 3],
            "spec.model.input.shape",
        ),
        (|s| s.slo.latency_ms = 0.0, "spec.slo.latencyMs"),
        (|s| s.slo.latency_ms = f64::NAN, "spec.slo.latencyMs"),
        (|s| s.slo.percentile = 90, "spec.slo.percentile"),
        (
            |s| s.batching.candidates = vec![],
            "spec.batching.candidates",
        ),
        (
            |s| s.batching.candidates = vec![1, 0],
            "spec.batching.candidates[1]",
        ),
        (
            |s| s.batching.candidates = vec![1, 5000],
            "spec.batching.candidates[1]",
        ),
        (
            |s| s.batching.mode = BatchingMode::Fixed,
            "spec.batching.batchSize",
        ),
        (
            |s| {
                s.batching.mode = BatchingMode::Fixed;
                s.batching.batch_size = Some(0)
            },
            "spec.batching.batchSize",
        ),
        (
            |s| s.replicas = ReplicasSpec { min: 3, max: 2 },
            "spec.replicas",
        ),
        (
            |s| s.replicas = ReplicasSpec { min: 0, max: 2 },
            "spec.replicas",
        ),
        (|s| s.gpu.resource = " ".into(), "spec.gpu.resource"),
        // Not an extended resource: refused by the API server in the pods, or (cpu, memory)
        // overwriting the pod's own limit.
        (|s| s.gpu.resource = "gpu".into(), "spec.gpu.resource"),
        (|s| s.gpu.resource = "memory".into(), "spec.gpu.resource"),
        // Ignored in auto mode, it would look like the size served.
        (
            |s| s.batching.batch_size = Some(8),
            "spec.batching.batchSize",
        ),
        (
            |s| {
                s.pod = serde_json::from_value(serde_json::json!({"resources": {
                    "requests": {"hugepages-2Mi": "1Gi", "memory": "1Gi"},
                    "limits": {"hugepages-2Mi": "2Gi"}}}))
                .unwrap();
            },
            "spec.pod.resources.requests[\"hugepages-2Mi\"]",
        ),
        (|s| s.gpu.count = 2, "spec.gpu.count"),
        (
            |s| {
                s.gpu.count = 0;
                s.gpu.product = Some("NVIDIA-H100".into())
            },
            "spec.gpu.product",
        ),
        (|s| s.profiling.windows = 1, "spec.profiling.windows"),
        (
            |s| s.profiling.window_seconds = f64::INFINITY,
            "spec.profiling.windowSeconds",
        ),
        (
            |s| s.profiling.warmup_seconds = -1.0,
            "spec.profiling.warmupSeconds",
        ),
        (
            |s| s.profiling.max_spread = f64::NAN,
            "spec.profiling.maxSpread",
        ),
    ];
    for (i, (mutate, field)) in cases.into_iter().enumerate() {
        let mut s = valid();
        mutate(&mut s);
        let got = fields(&s);
        assert!(
            got.iter().any(|f| f == field),
            "case {i}: expected an error on {field}, got {got:?}"
        );
        let msg = describe(&validate_spec(&s).unwrap_err());
        assert!(msg.contains(field), "case {i}: {msg}");
    }
}

#[test]
fn several_errors_are_all_reported() {
    let mut s = valid();
    s.slo.latency_ms = -1.0;
    s.replicas = ReplicasSpec { min: 5, max: 1 };
    s.batching.candidates = vec![];
    let got = fields(&s);
    assert_eq!(got.len(), 3, "{got:?}");
}

/// A valid `s3://` model on an S3-compatible store, with keys.
fn s3_model(s: &mut InferenceServiceSpec) {
    s.model.source = ModelSource {
        uri: Some("s3://models/vision/r50 v2.pt".into()),
        digest: Some(format!("sha256:{}", "0".repeat(64))),
        s3: Some(crate::S3Source {
            endpoint: Some("http://minio.storage.svc:9000/".into()),
            region: Some("eu-west-3".into()),
            credentials_secret: Some("model-store-keys".into()),
        }),
        builtin: None,
    };
}

#[test]
fn credentials_in_an_s3_uri_are_refused_without_being_shown() {
    let mut s = valid();
    s3_model(&mut s);
    for uri in [
        "s3://AKIA1:s3cr3t@models/r50.pt",
        "s3://AKIA1:s3cr3t@models",
    ] {
        s.model.source.uri = Some(uri.into());
        let message = describe(&validate_spec(&s).unwrap_err());
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}

#[test]
fn an_s3_model_with_its_digest_is_valid_with_or_without_settings() {
    let mut s = valid();
    s3_model(&mut s);
    assert!(validate_spec(&s).is_ok(), "{:?}", validate_spec(&s));
    s.model.source.s3 = None;
    assert!(
        validate_spec(&s).is_ok(),
        "AWS, anonymously: {:?}",
        validate_spec(&s)
    );
}

#[test]
fn an_https_or_http_model_with_its_digest_is_valid() {
    for uri in [
        "https://models.example/vision/r50.pt",
        "http://minio.models.svc:9000/bucket/r50.pt?X-Amz-Signature=abc",
    ] {
        let mut s = valid();
        s.model.source.builtin = None;
        s.model.source.uri = Some(uri.into());
        s.model.source.digest = Some(format!("sha256:{}", "0".repeat(64)));
        assert!(validate_spec(&s).is_ok(), "{uri}: {:?}", validate_spec(&s));
    }
}
