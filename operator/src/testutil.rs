//! Builders for unit tests.

use greenbatch_core::{BatchRow, LatencyMs, MeterKind, ProfileTable};
use greenbatch_crds::inference_service::SloSpec;
use greenbatch_crds::{
    BuiltinModel, InferenceService, InferenceServiceSpec, InputSpec, ModelSource, ModelSpec,
};

/// An `s3://` model on AWS read with the keys of `secret`, its digest `sha256:<hex_pair x 32>`.
pub fn s3_source(secret: &str, hex_pair: &str) -> ModelSource {
    ModelSource {
        uri: Some("s3://models/r50.pt".into()),
        digest: Some(format!("sha256:{}", hex_pair.repeat(32))),
        s3: Some(greenbatch_crds::S3Source {
            credentials_secret: Some(secret.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(name: &str) -> InferenceService {
    let mut s = InferenceService::new(
        name,
        InferenceServiceSpec {
            model: ModelSpec {
                source: ModelSource {
                    builtin: Some(BuiltinModel::Resnet50),
                    ..Default::default()
                },
                format: None,
                input: InputSpec {
                    shape: vec![3, 224, 224],
                    dtype: Default::default(),
                },
            },
            slo: SloSpec {
                latency_ms: 50.0,
                percentile: 99,
                when_unattainable: Default::default(),
            },
            batching: Default::default(),
            gpu: Default::default(),
            replicas: Default::default(),
            profiling: Default::default(),
            on_drift: Default::default(),
            pod: None,
        },
    );
    s.metadata.namespace = Some("ns".into());
    s.metadata.uid = Some(format!("uid-{name}"));
    s.metadata.generation = Some(1);
    s
}

/// A table where batch b takes 2 + b/4 ms (p99) and costs 0.5 / b^0.7 J per inference.
pub fn table(sizes: &[u32]) -> ProfileTable {
    ProfileTable {
        meter: MeterKind::Synthetic,
        meter_note: None,
        idle_watts: Some(50.0),
        rows: sizes
            .iter()
            .map(|&b| {
                let t = 2.0 + f64::from(b) / 4.0;
                BatchRow {
                    batch_size: b,
                    latency_ms: LatencyMs {
                        p50: t * 0.9,
                        p95: t * 0.97,
                        p99: Some(t),
                    },
                    throughput_per_second: f64::from(b) / t * 1000.0,
                    avg_watts: Some(200.0),
                    joules_per_inference: Some(0.5 / f64::from(b).powf(0.7)),
                    joules_spread: Some(0.01),
                    windows: 5,
                }
            })
            .collect(),
        skipped: vec![],
    }
}
