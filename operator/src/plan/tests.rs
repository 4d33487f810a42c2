//! Table-driven tests of the planner: each case is a service, what the cluster shows, and what the
//! plan must say.

use super::*;
use crate::load::{LoadObservation, ThreadReading};
use crate::observe::{DeploymentObservation, JobObservation, JobState, Observed};
use crate::testutil::{service, table};
use greenbatch_core::energy_model::predict_config;
use greenbatch_crds::inference_service::BatchingMode;
use greenbatch_crds::{EnergyProfileStatus, InferenceService, Precision};

const NOW: &str = "2025-01-01T00:00:00Z";

fn cfg() -> OperatorConfig {
    OperatorConfig {
        runtime_image: "runtime:test".into(),
        ..Default::default()
    }
}

fn profile_for(is: &InferenceService, status: Option<EnergyProfileStatus>) -> EnergyProfile {
    let mut p = plan(is, &Observed::default(), &cfg(), NOW)
        .profile
        .expect("a new service plans a profile");
    p.metadata.uid = Some("ep-uid".into());
    p.status = status;
    p
}

fn complete(sizes: &[u32]) -> Option<EnergyProfileStatus> {
    Some(EnergyProfileStatus::complete(table(sizes)))
}

fn cond<'a>(p: &'a Plan, t: &str) -> &'a Condition {
    let c = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", p.status.conditions));
    // The operator's metrics count services by these reasons, from a list of their own.
    if t == PROFILED {
        assert!(
            crate::metrics::PROFILED_REASONS.contains(&c.reason.as_str()),
            "Profiled reason {} is missing in metrics::PROFILED_REASONS",
            c.reason
        );
    }
    c
}

/// The runtime container of the Deployment a plan applies.
fn container(p: &Plan) -> &k8s_openapi::api::core::v1::Container {
    match &p.serving {
        Serving::Apply(b) => {
            &b.0.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("a pod template")
                .containers[0]
        }
        other => panic!("expected Apply, got {other:?}"),
    }
}

fn args(p: &Plan) -> Vec<String> {
    container(p).args.clone().unwrap_or_default()
}

fn flag(args: &[String], name: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} missing in {args:?}"));
    args[i + 1].clone()
}

fn rolled_out_obs(p: &Plan) -> DeploymentObservation {
    let Serving::Apply(objects) = &p.serving else {
        panic!("expected Apply, got {:?}", p.serving)
    };
    DeploymentObservation {
        controlled_by_us: true,
        args: args(p),
        profile_env: crate::observe::container_env(&objects.0, PROFILE_INLINE_ENV),
        generation: 1,
        observed_generation: 1,
        replicas: 1,
        updated_replicas: 1,
        ready_replicas: 1,
        available_replicas: 1,
        pod_failure: None,
        replica_failure: None,
        spec_generation: objects
            .0
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok()),
        pod_template_hash: crate::resources::annotated_pod_template_hash(&objects.0.metadata)
            .map(str::to_string),
    }
}

struct Case {
    what: &'static str,
    edit: fn(&mut InferenceService),
    observe: fn(&InferenceService) -> Observed,
    phase: Phase,
    ready_reason: &'static str,
    check: fn(&Plan),
}

fn none(_: &InferenceService) -> Observed {
    Observed::default()
}
fn profile_no_job(is: &InferenceService) -> Observed {
    Observed {
        profile: Some(profile_for(is, None)),
        ..Default::default()
    }
}
/// The Job fields a test leaves alone: no template digest (a Job made before they were
/// recorded), created long ago, not being deleted.
fn job_extra() -> JobObservation {
    JobObservation {
        name: String::new(),
        owner_uid: None,
        state: JobState::Active,
        waiting: None,
        pod_template_hash: None,
        resource_version: Some("7".into()),
        created: Some("2024-12-31T00:00:00Z".into()),
        deleting: false,
        failed_pods: 0,
        built_for: None,
        builder_gone: false,
        builder_name: None,
    }
}
/// The template digest of the Job the operator would make for `is` now.
fn todays_template(is: &InferenceService) -> Option<String> {
    let p = plan(is, &profile_no_job(is), &cfg(), NOW);
    let job = p.job.expect("a planned Job");
    crate::resources::recorded_pod_template_hash(&job).map(str::to_string)
}
fn job(is: &InferenceService, state: JobState) -> Observed {
    let p = profile_for(is, None);
    let name = observed_job_name(&p.metadata.name.clone().unwrap(), Some(&p));
    Observed {
        profile: Some(p),
        job: Some(JobObservation {
            owner_uid: Some("ep-uid".into()),
            name,
            state,
            waiting: None,
            pod_template_hash: todays_template(is),
            built_for: is.metadata.uid.clone(),
            ..job_extra()
        }),
        ..Default::default()
    }
}
/// A complete profile, made before any re-profile request (so without the service's token).
fn done(is: &InferenceService) -> Observed {
    let mut first = is.clone();
    first.metadata.annotations = None;
    Observed {
        profile: Some(profile_for(&first, complete(&[1, 2, 4, 8, 16, 32]))),
        ..Default::default()
    }
}

#[test]
fn the_flow_table() {
    let cases = [
        Case {
            what: "new service: create the profile, wait for its uid",
            edit: |_| {},
            observe: none,
            phase: Phase::Pending,
            ready_reason: "Profiling",
            check: |p| {
                assert!(p.profile.is_some());
                assert!(p.job.is_none());
            },
        },
        Case {
            what: "profile without Job: create the Job",
            edit: |_| {},
            observe: profile_no_job,
            phase: Phase::Pending,
            ready_reason: "Profiling",
            check: |p| {
                let job = p.job.as_ref().expect("job");
                let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
                let a = pod.containers[0].args.clone().unwrap();
                assert_eq!(a[0], "profile");
                assert_eq!(flag(&a, "--model"), "builtin:resnet50");
                assert_eq!(flag(&a, "--candidates"), "1,2,4,8,16,32,64,128,256");
                assert_eq!(
                    flag(&a, "--output-profile"),
                    p.status.profile_ref.clone().unwrap()
                );
                assert_eq!(flag(&a, "--namespace"), "ns");
                let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
                assert_eq!(
                    (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
                    ("EnergyProfile", "ep-uid", Some(true))
                );
                assert!(event(p, "ProfilingStarted").is_some());
            },
        },
        Case {
            what: "Job running",
            edit: |_| {},
            observe: |is| job(is, JobState::Active),
            phase: Phase::Profiling,
            ready_reason: "Profiling",
            check: |p| {
                assert!(p.job.is_none() && p.profile.is_none());
                assert_eq!(cond(p, PROFILED).status, ConditionStatus::False);
            },
        },
        Case {
            what: "Job failed: the pod's reason surfaces",
            edit: |_| {},
            observe: |is| {
                job(
                    is,
                    JobState::Failed {
                        reason: "Error".into(),
                        message: "exit code 3 (model file missing)".into(),
                    },
                )
            },
            phase: Phase::Failed,
            ready_reason: "ProfilingFailed",
            check: |p| {
                assert!(
                    cond(p, PROFILED)
                        .message
                        .contains("exit code 3 (model file missing)")
                );
                assert_eq!(p.requeue, Requeue::AwaitChange);
                assert!(p.job.is_none(), "no new Job without a change");
                assert!(
                    p.events
                        .iter()
                        .any(|e| e.warning && e.reason == "ProfilingFailed")
                );
            },
        },
        Case {
            what: "profile complete: deploy the choice",
            edit: |_| {},
            observe: done,
            phase: Phase::Pending,
            ready_reason: "DeploymentNotAvailable",
            check: |p| {
                let a = args(p);
                assert_eq!(a[0], "serve");
                assert_eq!(
                    flag(&a, "--max-batch-size"),
                    p.status.selected.as_ref().unwrap().batch_size.to_string()
                );
                assert_eq!(flag(&a, "--slo-ms"), "50");
                assert_eq!(flag(&a, "--percentile"), "99");
                assert_eq!(cond(p, SLO_ATTAINABLE).status, ConditionStatus::True);
                assert_eq!(cond(p, PROFILED).reason, "ProfileComplete");
                assert!(
                    p.status
                        .selected
                        .as_ref()
                        .unwrap()
                        .batch1_joules_per_inference
                        .is_some()
                );
                assert!(event(p, "ConfigSelected").is_some());
            },
        },
        Case {
            what: "rolled out: Serving",
            edit: |_| {},
            observe: |is| {
                let mut o = done(is);
                let p = plan(is, &o, &cfg(), NOW);
                o.deployment = Some(rolled_out_obs(&p));
                o
            },
            phase: Phase::Serving,
            ready_reason: "DeploymentAvailable",
            check: |p| {
                assert_eq!(
                    p.status.replicas,
                    Some(ReplicaStatus {
                        desired: 1,
                        ready: 1,
                        reason: Some("1: spec.replicas fixes the count".into()),
                        measured_capacity_per_replica: None,
                        scale_down: None,
                    })
                );
                assert!(event(p, "Serving").is_some());
            },
        },
        Case {
            what: "SLO unattainable, DoNotServe: no Deployment",
            edit: |s| s.spec.slo.latency_ms = 1.0,
            observe: done,
            phase: Phase::Degraded,
            ready_reason: "SLOUnattainable",
            check: |p| {
                assert_eq!(p.serving, Serving::Remove);
                let c = cond(p, SLO_ATTAINABLE);
                assert_eq!(c.status, ConditionStatus::False);
                assert!(
                    c.message.contains("closest configuration is batch 1"),
                    "{}",
                    c.message
                );
                assert!(c.message.contains("p99"), "{}", c.message);
            },
        },
        Case {
            what: "SLO unattainable, ServeClosest: serve the closest, Degraded",
            edit: |s| {
                s.spec.slo.latency_ms = 1.0;
                s.spec.slo.when_unattainable = UnattainablePolicy::ServeClosest;
            },
            observe: done,
            phase: Phase::Degraded,
            ready_reason: "DeploymentNotAvailable",
            check: |p| assert_eq!(flag(&args(p), "--max-batch-size"), "1"),
        },
        Case {
            what: "fixed mode: serve the fixed size, still profiled",
            edit: |s| {
                s.spec.batching.mode = BatchingMode::Fixed;
                s.spec.batching.batch_size = Some(2);
            },
            observe: done,
            phase: Phase::Pending,
            ready_reason: "DeploymentNotAvailable",
            check: |p| {
                assert_eq!(flag(&args(p), "--max-batch-size"), "2");
                let reason = &p.status.selected.as_ref().unwrap().reason;
                assert!(reason.contains("the best feasible batch size"), "{reason}");
                // Without the profile a pod's adaptive batching stays off: it keeps batch 2.
                let env = container(p).env.clone().unwrap_or_default();
                assert!(!env.iter().any(|e| e.name == PROFILE_INLINE_ENV), "{env:?}");
            },
        },
        Case {
            what: "a two-minute SLO asks the pods for no more delay than they take",
            edit: |s| s.spec.slo.latency_ms = 120_000.0,
            observe: done,
            phase: Phase::Pending,
            ready_reason: "DeploymentNotAvailable",
            check: |p| {
                let delay: f64 = flag(&args(p), "--max-queue-delay-ms").parse().unwrap();
                assert_eq!(delay, greenbatch_core::select::MAX_QUEUE_DELAY_MS);
            },
        },
        Case {
            what: "a bf16 profile is served at bf16",
            edit: |s| s.spec.profiling.precision = Precision::Bf16,
            observe: done,
            phase: Phase::Pending,
            ready_reason: "DeploymentNotAvailable",
            check: |p| assert_eq!(flag(&args(p), "--precision"), "bf16"),
        },
        Case {
            what: "fixed size the profile lacks: a condition, no loop",
            edit: |s| {
                s.spec.batching.mode = BatchingMode::Fixed;
                s.spec.batching.batch_size = Some(64);
            },
            observe: |is| {
                let mut is2 = is.clone();
                is2.spec.batching.mode = BatchingMode::Auto;
                is2.spec.batching.batch_size = None;
                done(&is2)
            },
            phase: Phase::Failed,
            ready_reason: "NoConfiguration",
            check: |p| {
                assert!(cond(p, READY).message.contains("batchSize 64"));
                assert_eq!(p.requeue, Requeue::AwaitChange);
            },
        },
        Case {
            what: "invalid spec: a condition naming the field, wait for a change",
            edit: |s| s.spec.batching.mode = BatchingMode::Fixed,
            observe: none,
            phase: Phase::Failed,
            ready_reason: "InvalidSpec",
            check: |p| {
                assert!(cond(p, READY).message.contains("spec.batching.batchSize"));
                assert_eq!(p.requeue, Requeue::AwaitChange);
                assert_eq!(p.serving, Serving::Keep);
                assert!(p.profile.is_none() && p.job.is_none());
            },
        },
        Case {
            what: "re-profile token: record it, new Job, keep serving from the old table",
            edit: |s| {
                s.metadata.annotations =
                    Some([(REPROFILE_ANNOTATION.to_string(), "t1".to_string())].into());
            },
            observe: done,
            phase: Phase::Pending,
            ready_reason: "DeploymentNotAvailable",
            check: |p| {
                let ep = p.profile.as_ref().expect("annotated profile");
                let a = ep.metadata.annotations.as_ref().unwrap();
                assert_eq!(a[REPROFILE_TOKENS_ANNOTATION], "t1");
                assert_eq!(
                    a[PROFILING_JOB_ANNOTATION],
                    job_name(p.status.profile_ref.as_deref().unwrap(), Some("t1"))
                );
                assert_eq!(cond(p, PROFILED).reason, "Reprofiling");
            },
        },
        Case {
            what: "Deployment of the same name owned by someone else",
            edit: |_| {},
            observe: |is| {
                let mut o = done(is);
                o.deployment = Some(DeploymentObservation {
                    controlled_by_us: false,
                    args: vec![],
                    profile_env: None,
                    generation: 1,
                    observed_generation: 1,
                    replicas: 1,
                    updated_replicas: 1,
                    ready_replicas: 1,
                    available_replicas: 1,
                    pod_failure: None,
                    replica_failure: None,
                    spec_generation: None,
                    pod_template_hash: None,
                });
                o
            },
            phase: Phase::Failed,
            ready_reason: "NameConflict",
            check: |p| assert_eq!(p.serving, Serving::Keep),
        },
        Case {
            what: "Service of the same name owned by someone else",
            edit: |_| {},
            observe: |is| {
                let mut o = done(is);
                o.foreign_namesakes = vec!["Service"];
                o
            },
            phase: Phase::Failed,
            ready_reason: "NameConflict",
            check: |p| {
                assert_eq!(p.serving, Serving::Keep);
                let ready = cond(p, READY);
                assert!(
                    ready.message.starts_with("a Service named svc exists"),
                    "{}",
                    ready.message
                );
                assert_eq!(
                    p.requeue,
                    Requeue::After(RESYNC),
                    "a namesake is not watched"
                );
            },
        },
    ];
    for c in cases {
        let mut is = service("svc");
        (c.edit)(&mut is);
        let observed = (c.observe)(&is);
        let p = plan(&is, &observed, &cfg(), NOW);
        assert_eq!(p.status.phase, Some(c.phase), "{}: {:?}", c.what, p.status);
        assert_eq!(
            cond(&p, READY).reason,
            c.ready_reason,
            "{}: {:?}",
            c.what,
            p.status.conditions
        );
        assert_eq!(p.status.observed_generation, Some(1), "{}", c.what);
        (c.check)(&p);
    }
}

#[test]
fn profile_keys() {
    let cfg = cfg();
    let base = service("a");
    let key = |edit: fn(&mut InferenceService)| {
        let mut s = base.clone();
        edit(&mut s);
        profile_key(&s, &cfg)
    };
    let k0 = key(|_| {});
    assert_eq!(k0.gpu_product, ANY_GPU_PRODUCT);
    assert_eq!(k0.model_digest, base.spec.model.identity());
    assert_eq!(k0.runtime_version, cfg.runtime_version);
    // Same model, another service and another SLO: the same profile.
    assert_eq!(
        key(|s| {
            s.metadata.name = Some("b".into());
            s.spec.slo.latency_ms = 7.0
        }),
        k0
    );
    assert_eq!(key(|s| { s.spec.gpu.count = 0 }).gpu_product, "cpu");
    let h100 = key(|s| s.spec.gpu.product = Some("NVIDIA-H100-80GB-HBM3".into()));
    let h200 = key(|s| s.spec.gpu.product = Some("NVIDIA-H200".into()));
    assert_ne!(h100.object_name(), h200.object_name());
    let other_model =
        key(|s| s.spec.model.source.builtin = Some(greenbatch_crds::BuiltinModel::Resnet18));
    assert_ne!(other_model.object_name(), k0.object_name());
    let fp16 = key(|s| s.spec.profiling.precision = greenbatch_crds::Precision::Fp16);
    assert_ne!(fp16.object_name(), k0.object_name());
    // A MIG slice keeps its GPU's product label, not its speed: a profile of its own. A whole
    // GPU named explicitly is the default's profile (names made before the resource was keyed).
    let mig = key(|s| s.spec.gpu.resource = "nvidia.com/mig-1g.10gb".into());
    assert_eq!(mig.gpu_resource.as_deref(), Some("nvidia.com/mig-1g.10gb"));
    assert_ne!(mig.object_name(), k0.object_name());
    assert_eq!(key(|s| s.spec.gpu.resource = "nvidia.com/gpu".into()), k0);
    assert_eq!(k0.gpu_resource, None);
}

#[test]
fn a_second_service_reuses_a_complete_profile_without_a_job() {
    let first = service("first");
    let mut second = service("second");
    second.spec.slo.latency_ms = 20.0;
    let observed = done(&first);
    let p = plan(&second, &observed, &cfg(), NOW);
    assert_eq!(
        p.status.profile_ref,
        observed.profile.as_ref().unwrap().metadata.name
    );
    assert!(p.job.is_none() && p.profile.is_none());
    assert!(event(&p, "ProfileReused").is_some(), "{:?}", p.events);
}

/// A profiled service asking for a re-profile with token `t1`, observed after the operator
/// recorded the token (and the new Job's name) on the profile.
fn token_recorded() -> (InferenceService, Observed) {
    let mut is = service("svc");
    is.metadata.annotations = Some([(REPROFILE_ANNOTATION.to_string(), "t1".to_string())].into());
    let mut observed = done(&is);
    let first = plan(&is, &observed, &cfg(), NOW);
    let mut ep = first
        .profile
        .clone()
        .expect("the profile, annotated with the new Job");
    ep.metadata.uid = Some("ep-uid".into());
    ep.status = observed.profile.as_ref().and_then(|p| p.status.clone());
    observed.profile = Some(ep);
    (is, observed)
}

#[test]
fn an_honoured_token_does_nothing_more_and_the_plan_is_stable() {
    let (mut is, observed) = token_recorded();
    let second = plan(&is, &observed, &cfg(), NOW);
    assert!(second.profile.is_none(), "token already honoured");
    assert!(second.job.is_some(), "the re-profile Job is created");
    // Applying the status and planning again changes nothing: no status write, no event storm.
    is.status = Some(second.status.clone());
    let third = plan(&is, &observed, &cfg(), "2030-01-01T00:00:00Z");
    assert_eq!(third.status, second.status);
}

#[test]
fn status_is_stable_across_reconciles() {
    let mut is = service("svc");
    let observed = done(&is);
    let p1 = plan(&is, &observed, &cfg(), NOW);
    is.status = Some(p1.status.clone());
    let p2 = plan(&is, &observed, &cfg(), "2030-01-01T00:00:00Z");
    assert_eq!(p1.status, p2.status, "same inputs, same status: no write");
    assert!(p2.events.is_empty(), "{:?}", p2.events);
}

#[test]
fn job_names_are_dns_labels_and_distinct_per_token() {
    let long = "x".repeat(60);
    for profile in ["resnet50-nvidia-h100-abcdef0123", long.as_str()] {
        let a = job_name(profile, None);
        let b = job_name(profile, Some("t"));
        assert_ne!(a, b);
        for n in [a, b] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
        }
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn arb_service() -> impl Strategy<Value = serde_json::Value> {
        let source = prop_oneof![
            Just(serde_json::json!({"builtin": "resnet18"})),
            Just(serde_json::json!({"uri": "file:///m.pt"})),
            Just(serde_json::json!({"uri": "pvc://claim"})),
            Just(serde_json::json!({"uri": "pvc://claim/../x.pt"})),
            Just(serde_json::json!({"uri": "file://"})),
            Just(serde_json::json!({"uri": "file:///a.pt", "builtin": "alexnet"})),
            Just(serde_json::json!({})),
            Just(serde_json::json!({"builtin": "vgg16", "digest": "sha256:ABC"})),
            "[a-z/.]{1,40}".prop_map(|p| serde_json::json!({"uri": format!("pvc://c/{p}")})),
        ];
        let shape = prop::collection::vec(prop_oneof![Just(-1i64), Just(0), 1i64..300_000], 0..6);
        let mode = prop_oneof![Just("auto"), Just("fixed")];
        let batch_size = prop::option::of(prop_oneof![Just(0u32), 1u32..5000]);
        let candidates = prop::collection::vec(prop_oneof![Just(0u32), 1u32..5000], 0..36);
        let latency = prop_oneof![Just(0.0f64), Just(-1.0), Just(f64::MAX), 0.001f64..10_000.0];
        let percentile = prop_oneof![Just(50u32), Just(95), Just(99), Just(90), Just(0)];
        let gpu = (
            0u32..3,
            prop::option::of("[A-Za-z0-9-]{1,20}"),
            prop_oneof![Just("nvidia.com/gpu".to_string()), Just(" ".to_string())],
        );
        let replicas = (0u32..5, 0u32..5);
        let profiling = (0u32..60, -1.0f64..100.0, -1.0f64..400.0, -1.0f64..20.0);
        let name = prop_oneof![Just("svc".to_string()), "[a-z0-9.-]{1,70}"];
        let token = prop::option::of("[a-z,0-9 ]{0,70}");
        (name, token, source, shape, (mode, batch_size, candidates), (latency, percentile), gpu, replicas, profiling).prop_map(
            |(name, token, source, shape, (mode, bs, cands), (lat, pct), (count, product, resource), (min, max), (w, ws, wu, ms))| {
                let mut batching = serde_json::json!({"mode": mode, "candidates": cands});
                if let Some(b) = bs { batching["batchSize"] = b.into(); }
                let mut gpu = serde_json::json!({"count": count, "resource": resource});
                if let Some(p) = product { gpu["product"] = p.into(); }
                let mut meta = serde_json::json!({"name": name, "namespace": "ns", "uid": "u", "generation": 1});
                if let Some(t) = token { meta["annotations"] = serde_json::json!({REPROFILE_ANNOTATION: t}); }
                serde_json::json!({
                    "apiVersion": "greenbatch.dev/v1alpha1", "kind": "InferenceService", "metadata": meta,
                    "spec": {
                        "model": {"source": source, "input": {"shape": shape}},
                        "slo": {"latencyMs": lat, "percentile": pct},
                        "batching": batching, "gpu": gpu, "replicas": {"min": min, "max": max},
                        "profiling": {"windows": w, "windowSeconds": ws, "warmupSeconds": wu, "maxSpread": ms},
                    }
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
        #[test]
        fn malformed_specs_never_panic_and_name_their_fields(value in arb_service(), with_profile in any::<bool>()) {
            let is: InferenceService = serde_json::from_value(value).expect("the generator builds well-typed objects");
            let observed = if with_profile && validate::validate(&is).is_ok() { done(&is) } else { Observed::default() };
            let p = plan(&is, &observed, &cfg(), NOW);
            match validate::validate(&is) {
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert_eq!(p.status.phase, Some(Phase::Failed));
                    let ready = cond(&p, READY);
                    prop_assert_eq!(ready.reason.as_str(), "InvalidSpec");
                    for e in &errors {
                        prop_assert!(ready.message.contains(&e.field), "{} lacks {}", ready.message, e.field);
                        prop_assert!(e.field.starts_with("spec.") || e.field.starts_with("metadata."), "{}", e.field);
                    }
                    prop_assert_eq!(p.requeue, Requeue::AwaitChange);
                }
                Ok(_) => {
                    prop_assert!(p.status.profile_ref.is_some());
                    prop_assert!(p.status.phase.is_some());
                }
            }
        }
    }
}

fn load(rate: f64, complete: bool) -> LoadObservation {
    LoadObservation {
        requests_per_second: rate,
        inferences_per_second: rate,
        served_per_second: rate,
        refused_per_second: 0.0,
        refusing_pod_served_per_second: None,
        busiest_pod_served_per_second: rate,
        joules_per_inference: Some(0.2),
        energy_meter: Some("nvml-counter".into()),
        latency_p99_ms: Some(31.5),
        latency_buckets: vec![],
        max_batch_size: Some(32),
        max_queue_delay_ms: Some(3.5),
        forward_ms_per_batch: None,
        run_batch_size: None,
        executor_busy: None,
        threads: vec![],
        pods: 1,
        window_seconds: 30.0,
        complete,
    }
}

fn desired(p: &Plan) -> (u32, String) {
    let r = p.status.replicas.clone().expect("replica status");
    (r.desired, r.reason.unwrap_or_default())
}

/// A profiled service whose Deployment has rolled out, with the status of that plan: Serving.
fn serving(is: &mut InferenceService) -> Observed {
    let mut o = done(is);
    let p = plan(is, &o, &cfg(), NOW);
    o.deployment = Some(rolled_out_obs(&p));
    is.status = Some(plan(is, &o, &cfg(), NOW).status);
    o
}

/// The plan serves (phase Serving, Ready true) and its Ready message ends with `says`.
fn assert_serving_with(p: &Plan, says: &str) {
    assert_eq!(p.status.phase, Some(Phase::Serving));
    let ready = cond(p, READY);
    assert_eq!(ready.status, ConditionStatus::True);
    assert!(ready.message.ends_with(says), "{}", ready.message);
}

/// The plan's desired replicas are `n`, for a reason that says `says`.
fn assert_desired(p: &Plan, n: u32, says: &str) {
    let (got, why) = desired(p);
    assert!(
        got == n && why.contains(says),
        "want {n} saying {says:?}, got {got}: {why}"
    );
}

/// `n` replicas running: the observed Deployment's count, and the status that decided it.
fn running(is: &mut InferenceService, o: &mut Observed, n: u32) {
    if let Some(r) = is.status.as_mut().and_then(|s| s.replicas.as_mut()) {
        r.desired = n;
    }
    if let Some(d) = o.deployment.as_mut() {
        d.replicas = n as i32;
    }
}

/// A service (1..8 replicas) serving on `n`.
fn serving_on(n: u32) -> (InferenceService, Observed) {
    let mut is = service("svc");
    is.spec.replicas.max = 8;
    let mut o = serving(&mut is);
    running(&mut is, &mut o, n);
    (is, o)
}

fn deployment_replicas(p: &Plan) -> i32 {
    match &p.serving {
        Serving::Apply(b) => b.0.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
        other => panic!("expected Apply, got {other:?}"),
    }
}

#[test]
fn serving_pods_that_cannot_be_created_say_why_in_the_ready_condition() {
    // spec.pod asks for a PriorityClass that does not exist (or a quota refuses the pods): the
    // ReplicaSet creates none, and the Deployment's ReplicaFailure says why.
    let is = service("svc");
    let mut o = done(&is);
    let p = plan(&is, &o, &cfg(), NOW);
    let mut refused = rolled_out_obs(&p);
    refused.ready_replicas = 0;
    refused.available_replicas = 0;
    refused.replica_failure = Some(
        "FailedCreate: pods \"svc-1\" is forbidden: no PriorityClass with name inference was found"
            .into(),
    );
    o.deployment = Some(refused);
    let p = plan(&is, &o, &cfg(), NOW);
    let ready = cond(&p, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "ServingPodsFailing")
    );
    assert!(
        ready.message.ends_with(
            "0/1 ready; its pods cannot be created: FailedCreate: pods \"svc-1\" is forbidden: no PriorityClass with name inference was found"
        ),
        "{}",
        ready.message
    );
}

#[test]
fn a_serving_pod_that_fails_says_why_in_the_ready_condition() {
    let is = service("svc");
    let mut o = done(&is);
    let p = plan(&is, &o, &cfg(), NOW);
    let failure = "pod svc-7d9-x2: exit code 14 (model file does not have the digest asked for)";
    // The planned pods, none ready, one of them exited: not ready, and why.
    let mut starting = rolled_out_obs(&p);
    starting.ready_replicas = 0;
    starting.available_replicas = 0;
    starting.pod_failure = Some(failure.into());
    o.deployment = Some(starting.clone());
    let p = plan(&is, &o, &cfg(), NOW);
    let ready = cond(&p, READY);
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, "ServingPodsFailing");
    assert!(
        ready
            .message
            .ends_with(&format!("0/1 ready; a serving pod failed: {failure}")),
        "{}",
        ready.message
    );
    // A Warning Event when it starts, not on every reconcile after.
    assert_eq!(
        event(&p, "ServingPodsFailing").map(|e| e.warning),
        Some(true)
    );
    let mut failing = is.clone();
    failing.status = Some(p.status.clone());
    assert!(event(&plan(&failing, &o, &cfg(), NOW), "ServingPodsFailing").is_none());
    // Without a failure seen, the plain rollout reason.
    starting.pod_failure = None;
    o.deployment = Some(starting);
    assert_eq!(
        cond(&plan(&is, &o, &cfg(), NOW), READY).reason,
        "DeploymentNotAvailable"
    );
}

#[test]
fn replicas_follow_the_observed_load_and_the_service_keeps_serving_while_scaling() {
    let mut is = service("svc");
    is.spec.replicas.min = 1;
    is.spec.replicas.max = 4;
    let mut o = done(&is);

    // Nothing observed yet: the minimum; rolled out, Serving, looking again after one window.
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(desired(&p).0, 1);
    assert!(
        desired(&p).1.contains("until a load is observed"),
        "{:?}",
        desired(&p)
    );
    o.deployment = Some(rolled_out_obs(&p));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.status.phase, Some(Phase::Serving));
    assert_eq!(p.requeue, Requeue::After(cfg().observe_interval));
    // The pods get the profile, for their own adaptive batching within the chosen cap.
    let env = container(&p).env.clone().unwrap_or_default();
    let handed: EnergyProfileStatus =
        serde_json::from_str(env[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(env[0].name, PROFILE_INLINE_ENV);
    let (handed, measured) = (
        handed.table.unwrap(),
        o.profile
            .as_ref()
            .unwrap()
            .status
            .clone()
            .unwrap()
            .table
            .unwrap(),
    );
    assert_eq!(handed.rows.len(), measured.rows.len());
    for (h, m) in handed.rows.iter().zip(&measured.rows) {
        // JSON numbers come back within an ulp (serde_json's fast float parsing).
        let (hj, mj) = (
            h.joules_per_inference.unwrap(),
            m.joules_per_inference.unwrap(),
        );
        assert!(
            h.batch_size == m.batch_size && (hj - mj).abs() <= 1e-12 * mj,
            "{h:?} vs {m:?}"
        );
    }
    is.status = Some(p.status.clone());

    // A load beyond one replica: more replicas at once, the numbers in status, a Scaled event; the
    // service stays Serving while the new pods start.
    o.load = Some(load(1e6, true));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_desired(
        &p,
        4,
        "(spec.replicas.max) for 1000000 inferences/s observed",
    );
    assert_eq!(deployment_replicas(&p), 4);
    assert_serving_with(&p, "1/4 replicas ready");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "Scaled" && e.note.starts_with("replicas 1 -> 4")),
        "{:?}",
        p.events
    );
    let seen = p.status.observed.clone().expect("status.observed");
    assert_eq!(seen.inferences_per_second, Some(1e6));
    assert_eq!(seen.latency_p99_ms, Some(31.5));
    assert_eq!(seen.observed_at.as_deref(), Some(NOW));
    is.status = Some(p.status.clone());
    running(&mut is, &mut o, 4);

    // A partial observation (a pod starting) never scales down, whatever rate it shows; and without
    // a new observation the last one stays in status.
    o.load = Some(load(0.0, false));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(desired(&p).0, 4, "{:?}", desired(&p));
    o.load = None;
    let p = plan(&is, &o, &cfg(), "2030-01-01T00:00:00Z");
    assert_eq!(desired(&p).0, 4);
    assert_eq!(p.status.observed, Some(seen));
    // ...but a partial rate is a lower bound: enough to scale up on.
    running(&mut is, &mut o, 1);
    o.load = Some(load(1e6, false));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_desired(
        &p,
        4,
        "for at least 1000000 inferences/s (measured on 1 pod(s), not all of them)",
    );
    running(&mut is, &mut o, 4);

    // The load gone: back to the minimum — once it has stayed gone for the scale-down delay
    // (300 s), so a lull does not stop pods that take minutes to start again.
    o.load = Some(load(0.0, true));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_desired(
        &p,
        4,
        "kept at 4: the load has asked for 1 since 2025-01-01T00:00:00Z",
    );
    assert!(event(&p, "Scaled").is_none());
    is.status = Some(p.status.clone());
    // A burst meanwhile that needs 2 raises where it will go, not when.
    // (One replica serves 3556/s here, kept below 80% busy: 4096/s needs 2, with the 25%
    // scale-down headroom too.)
    o.load = Some(load(4096.0, true));
    let p = plan(&is, &o, &cfg(), "2025-01-01T00:02:00Z");
    assert_desired(&p, 4, "the load has asked for 2 since 2025-01-01T00:00:00Z");
    is.status = Some(p.status.clone());
    o.load = Some(load(0.0, true));
    let p = plan(&is, &o, &cfg(), "2025-01-01T00:05:00Z");
    assert_desired(
        &p,
        2,
        "2: the most the load asked for over the scale-down delay (300 s)",
    );
    assert!(event(&p, "Scaled").is_some());
    assert_eq!(p.status.replicas.as_ref().unwrap().scale_down, None);
    // With no delay configured, down at once; a load that needs the replicas again clears a wait.
    let at_once = OperatorConfig {
        scale_down_delay: Duration::ZERO,
        ..cfg()
    };
    assert_eq!(desired(&plan(&is, &o, &at_once, NOW)).0, 1);
    o.load = Some(load(1e6, true));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.status.replicas.as_ref().unwrap().scale_down, None);

    // A fixed count is never changed by the load.
    is.spec.replicas.max = 1;
    o.load = Some(load(1e6, true));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(
        desired(&p),
        (1, "1: spec.replicas fixes the count".to_string())
    );
}

#[test]
fn a_new_pod_template_rolls_out_while_a_missing_replica_keeps_serving() {
    let mut is = service("svc");
    let mut o = done(&is);
    let p = plan(&is, &o, &cfg(), NOW);
    is.status = Some(InferenceServiceStatus {
        phase: Some(Phase::Serving),
        ..Default::default()
    });
    // Another pod template — other args, only another profile (a re-profile), or only what its
    // digest covers besides (the Secret its keys come from, the account) — is a rollout, so
    // Pending until it is done, even for a service that was Serving. A Deployment applied before
    // digests were recorded is judged by its args and profile.
    let mut other_digest = rolled_out_obs(&p);
    other_digest.pod_template_hash = Some("0123456789abcdef".into());
    let mut stale_args = other_digest.clone();
    stale_args.args.push("--stale".into());
    let mut stale_profile = other_digest.clone();
    stale_profile.profile_env = Some("{}".into());
    let mut unrecorded = rolled_out_obs(&p);
    unrecorded.pod_template_hash = None;
    unrecorded.args.push("--stale".into());
    for obs in [other_digest, stale_args, stale_profile, unrecorded] {
        o.deployment = Some(obs);
        let p = plan(&is, &o, &cfg(), NOW);
        assert_eq!(p.status.phase, Some(Phase::Pending));
        assert_eq!(cond(&p, READY).reason, "DeploymentNotAvailable");
    }
    // The planned template with one of two pods not ready (a scale, or a crashing pod): still
    // serving, and the condition says how many are ready.
    is.spec.replicas.min = 2;
    is.spec.replicas.max = 2;
    let p = plan(&is, &o, &cfg(), NOW);
    let mut one_of_two = rolled_out_obs(&p);
    one_of_two.replicas = 2;
    o.deployment = Some(one_of_two);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_serving_with(&p, "1/2 replicas ready");
}

#[test]
fn observations_are_checked_against_the_profiles_prediction() {
    let mut is = service("svc");
    let mut o = serving(&mut is);
    let table = o
        .profile
        .as_ref()
        .unwrap()
        .status
        .clone()
        .unwrap()
        .table
        .unwrap();
    let load = load(500.0, true);
    let predicted = predict_config(
        &table,
        greenbatch_core::Percentile::P99,
        32,
        0.0035,
        1,
        500.0,
    )
    .unwrap()
    .joules_per_inference
    .unwrap();

    // Close to the prediction: the prediction shown, no Event.
    o.load = Some(LoadObservation {
        joules_per_inference: Some(predicted * 1.3),
        ..load.clone()
    });
    let p = plan(&is, &o, &cfg(), NOW);
    let seen = p.status.observed.clone().unwrap();
    assert_eq!(seen.predicted_joules_per_inference, Some(predicted));
    assert!(event(&p, "PredictionDrift").is_none());
    is.status = Some(p.status);

    // Three times the prediction: a Warning naming both numbers and how to re-profile...
    o.load = Some(LoadObservation {
        joules_per_inference: Some(predicted * 3.0),
        ..load.clone()
    });
    let p = plan(&is, &o, &cfg(), NOW);
    let drift = event(&p, "PredictionDrift").expect("a PredictionDrift Event");
    assert!(drift.warning);
    assert!(
        drift.note.contains("(3x)") && drift.note.contains(REPROFILE_ANNOTATION),
        "{}",
        drift.note
    );
    is.status = Some(p.status);
    // ...once, not on every window that follows...
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(event(&p, "PredictionDrift").is_none());
    // ...unless the profile was measured again since and the new table drifts too.
    let mut remeasured = o.clone();
    if let Some(status) = remeasured.profile.as_mut().and_then(|p| p.status.as_mut()) {
        status.finished_at = Some("2099-01-01T00:00:00Z".into());
    }
    let p = plan(&is, &remeasured, &cfg(), NOW);
    assert!(event(&p, "PredictionDrift").is_some());

    // Without the batching the pods ran (an older runtime's metrics), nothing is predicted.
    o.load = Some(LoadObservation {
        max_batch_size: None,
        ..load
    });
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(
        p.status.observed.unwrap().predicted_joules_per_inference,
        None
    );
}

/// The plan's Event of this reason, if it emits one.
fn event<'a>(p: &'a Plan, reason: &str) -> Option<&'a PlannedEvent> {
    p.events.iter().find(|e| e.reason == reason)
}

/// The capacity per replica a plan learnt from refusals.
fn learnt(p: &Plan) -> Option<f64> {
    p.status
        .replicas
        .as_ref()
        .and_then(|r| r.measured_capacity_per_replica)
}

/// A window in which one pod served `served` items/s and refused `refused` more (429).
fn overloaded(served: f64, refused: f64, complete: bool) -> LoadObservation {
    LoadObservation {
        inferences_per_second: served + refused,
        served_per_second: served,
        refused_per_second: refused,
        refusing_pod_served_per_second: Some(served),
        busiest_pod_served_per_second: served,
        ..load(served + refused, complete)
    }
}

#[test]
fn pods_refusing_work_teach_the_capacity_replicas_are_sized_with() {
    // The profile says one replica serves thousands per second (the device); the pod serves 500/s
    // and refuses the rest (its host path): sizing follows what it served, and keeps following
    // it once more replicas stop the refusals.
    let mut is = service("svc");
    is.spec.replicas.max = 8;
    let mut o = serving(&mut is);
    o.load = Some(load(1000.0, true));
    let by_profile = plan(&is, &o, &cfg(), NOW);
    assert_eq!(
        desired(&by_profile).0,
        1,
        "1000/s fits one replica by the profile"
    );

    // Refusals seen in a partial window teach nothing (old pods, a rollout).
    o.load = Some(overloaded(500.0, 500.0, false));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(learnt(&p), None);

    // One complete window of refusals is a burst as far as anyone can tell: the mean a pod
    // served over it says little of what it can do. Nothing is learnt; the refusals are shown.
    o.load = Some(overloaded(500.0, 500.0, true));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(learnt(&p), None);
    assert_eq!(
        p.status.observed.clone().unwrap().refused_per_second,
        Some(500.0)
    );
    assert_eq!(desired(&p).0, 1, "sized by the profile still");
    is.status = Some(p.status);

    // Refusals again in the next window: the pod is past its capacity.
    let p = plan(&is, &o, &cfg(), NOW);
    // 1000/s at 500/s per replica, kept below 80% busy: 3.
    assert_desired(&p, 3, "500/s at batch 32 (measured in the serving pods)");
    assert_eq!(learnt(&p), Some(500.0));
    is.status = Some(p.status);

    // Three replicas serve everything: no refusals, but the measured capacity stays...
    o.load = Some(LoadObservation {
        busiest_pod_served_per_second: 340.0,
        ..load(1000.0, true)
    });
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(desired(&p).0, 3, "{:?}", desired(&p));
    assert_eq!(learnt(&p), Some(500.0));
    // ...and rises when a pod serves more without refusing (it was a low reading): the load grew
    // to 1500/s over the three pods, one of them getting 600/s.
    o.load = Some(LoadObservation {
        busiest_pod_served_per_second: 600.0,
        ..load(1500.0, true)
    });
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(learnt(&p), Some(600.0));

    // A new batch size is another capacity: what was measured at the old one is dropped.
    is.spec.batching.mode = BatchingMode::Fixed;
    is.spec.batching.batch_size = Some(8);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(learnt(&p), None);
}

#[test]
fn a_new_measurement_alone_never_takes_a_running_service_down() {
    // Serving at the profile's choice; a re-measurement (a drift re-profile on a throttled GPU,
    // another service's token, a new runtime) finds every batch size far slower than the SLO.
    let mut is = service("svc");
    let mut o = serving(&mut is);
    let before = is.status.clone().unwrap();
    let was = before.selected.clone().expect("selected");
    if let Some(profile) = o.profile.as_mut() {
        slower(profile, 1000.0);
    }
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.serving, Serving::Keep, "the Deployment and Service stay");
    assert_eq!(p.status.phase, Some(Phase::Degraded));
    let ready = cond(&p, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::True, "ServingPreviousConfig")
    );
    assert!(
        ready.message.contains("still serving at batch"),
        "{}",
        ready.message
    );
    assert_eq!(cond(&p, SLO_ATTAINABLE).status, ConditionStatus::False);
    // Status describes what serves: the previous choice and replicas.
    assert_eq!(p.status.selected.as_ref(), Some(&was));
    assert_eq!(p.status.replicas, before.replicas);
    assert!(event(&p, "SLOUnattainable").is_some_and(|e| e.warning));
    assert!(event(&p, "ConfigSelected").is_none());

    // A change of the spec is the user's decision: DoNotServe then stops serving.
    is.status = Some(p.status);
    is.metadata.generation = Some(2);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.serving, Serving::Remove);
}

/// Every row of a profile's table `factor` times slower.
fn slower(p: &mut EnergyProfile, factor: f64) {
    for row in p
        .status
        .as_mut()
        .and_then(|s| s.table.as_mut())
        .map(|t| t.rows.iter_mut())
        .into_iter()
        .flatten()
    {
        row.latency_ms.p50 *= factor;
        row.latency_ms.p95 *= factor;
        row.latency_ms.p99 = row.latency_ms.p99.map(|ms| ms * factor);
    }
}

#[test]
fn a_new_runtime_measuring_afresh_never_takes_a_running_service_down_either() {
    // A new runtime version is a new profile key: measured from scratch while the old
    // Deployment serves on, and the service says what serves meanwhile.
    let mut is = service("svc");
    let mut o = serving(&mut is);
    let was = is.status.as_ref().and_then(|s| s.selected.clone());
    let upgraded = OperatorConfig {
        runtime_version: "9.9.9".into(),
        ..cfg()
    };
    o.profile = None;
    let p = plan(&is, &o, &upgraded, NOW);
    let mut fresh = p.profile.clone().expect("a profile for the new key");
    assert_eq!(p.serving, Serving::Keep);
    assert_eq!(p.status.selected, was, "what serves stays in status");
    is.status = Some(p.status);
    // The new runtime's table finds the SLO unattainable: served on, Degraded.
    fresh.metadata.uid = Some("ep-new".into());
    fresh.status = complete(&[1, 2, 4, 8, 16, 32]);
    slower(&mut fresh, 1000.0);
    o.profile = Some(fresh);
    let p = plan(&is, &o, &upgraded, NOW);
    assert_eq!(p.serving, Serving::Keep);
    assert_eq!(cond(&p, READY).reason, "ServingPreviousConfig");
}

#[test]
fn a_spec_edit_answered_by_no_configuration_is_still_the_user_s_decision() {
    // An edit (generation 2) first finds no configuration (the old Deployment, applied for
    // generation 1, serves on); a re-measurement then finds the SLO unattainable: the running
    // Deployment answers an older spec, so DoNotServe removes it.
    let mut is = service("svc");
    let mut o = serving(&mut is);
    is.metadata.generation = Some(2);
    is.spec.batching.mode = BatchingMode::Fixed;
    is.spec.batching.batch_size = Some(64);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(cond(&p, READY).reason, "NoConfiguration");
    is.status = Some(p.status);
    is.spec.batching.mode = BatchingMode::Auto;
    is.spec.batching.batch_size = None;
    if let Some(profile) = o.profile.as_mut() {
        slower(profile, 1000.0);
    }
    assert_eq!(
        o.deployment.as_ref().and_then(|d| d.spec_generation),
        Some(1)
    );
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.serving, Serving::Remove);
}

#[test]
fn a_profiling_pod_that_cannot_run_says_why_and_is_looked_at_again() {
    let mut is = service("svc");
    let mut o = job(&is, JobState::Active);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.status.phase, Some(Phase::Profiling));
    assert_eq!(cond(&p, PROFILED).reason, "Profiling");
    is.status = Some(p.status);
    let stuck =
        "pod svc-x: cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.";
    if let Some(j) = o.job.as_mut() {
        j.waiting = Some(stuck.into());
    }
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.status.phase, Some(Phase::Pending));
    let profiled = cond(&p, PROFILED);
    assert_eq!(profiled.reason, "ProfilingWaiting");
    assert!(
        profiled.message.ends_with(&format!("it waits: {stuck}")),
        "{}",
        profiled.message
    );
    assert!(
        cond(&p, READY)
            .message
            .contains("Insufficient nvidia.com/gpu")
    );
    assert!(event(&p, "ProfilingWaiting").is_some_and(|e| e.warning));
    // Pod changes trigger no reconcile: it looks again after an observe interval.
    assert_eq!(p.requeue, Requeue::After(cfg().observe_interval));
    // Said once.
    is.status = Some(p.status);
    assert!(event(&plan(&is, &o, &cfg(), NOW), "ProfilingWaiting").is_none());
}

#[test]
fn a_paused_service_is_left_as_it_is_until_the_annotation_goes() {
    let (mut is, mut o) = serving_on(3);
    let before = is.status.clone().unwrap();
    is.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    // A load that would scale it, a spec change that would roll it out: neither happens.
    o.load = Some(load(1e6, true));
    is.spec.batching.mode = BatchingMode::Fixed;
    is.spec.batching.batch_size = Some(2);
    is.metadata.generation = Some(2);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.serving, Serving::Keep);
    assert!(p.profile.is_none() && p.job.is_none());
    assert_eq!(p.requeue, Requeue::AwaitChange);
    assert_eq!(cond(&p, PAUSED).status, ConditionStatus::True);
    assert_eq!(p.status.replicas, before.replicas);
    assert_eq!(p.status.selected, before.selected);
    assert_eq!(p.status.phase, before.phase);
    assert_eq!(
        p.status
            .observed
            .as_ref()
            .and_then(|s| s.inferences_per_second),
        Some(1e6),
        "what the pods measure is still shown"
    );
    assert!(event(&p, "Paused").is_some());
    is.status = Some(p.status);
    assert!(
        event(&plan(&is, &o, &cfg(), NOW), "Paused").is_none(),
        "said once"
    );
    // Resumed: managed again at once (here: the fixed batch size rolls out).
    is.metadata.annotations = None;
    let p = plan(&is, &o, &cfg(), NOW);
    let paused = cond(&p, PAUSED);
    assert_eq!(
        (paused.status, paused.reason.as_str()),
        (ConditionStatus::False, "Resumed")
    );
    assert_eq!(flag(&args(&p), "--max-batch-size"), "2");
}

#[test]
fn a_re_profile_job_that_cannot_run_says_why() {
    let (is, mut o) = token_recorded();
    let job = o
        .profile
        .as_ref()
        .unwrap()
        .metadata
        .annotations
        .as_ref()
        .unwrap()[PROFILING_JOB_ANNOTATION]
        .clone();
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: job,
        state: JobState::Active,
        waiting: Some("pod svc-x: cannot be scheduled: 0/1 nodes are available".into()),
        ..job_extra()
    });
    let p = plan(&is, &o, &cfg(), NOW);
    let profiled = cond(&p, PROFILED);
    assert_eq!(profiled.reason, "Reprofiling");
    assert!(
        profiled
            .message
            .contains("(it waits: pod svc-x: cannot be scheduled"),
        "{}",
        profiled.message
    );
    // Made before Jobs recorded their template (no digest): replaced like one made otherwise,
    // while the service serves on from the table it has.
    assert_eq!(
        p.replace_job.as_ref().map(|r| r.name.as_str()),
        o.job.as_ref().map(|j| j.name.as_str())
    );
    assert!(matches!(p.serving, Serving::Apply(_)), "{:?}", p.serving);
}

/// A service whose profiling pod no node takes (its `spec.pod` selects a node pool that does
/// not exist), observed with its Job active and stuck.
fn stuck_on_a_pool() -> (InferenceService, Observed) {
    let mut is = service("svc");
    is.spec.pod = Some(greenbatch_crds::RuntimePodSpec {
        node_selector: Some([("pool".to_string(), "none".to_string())].into()),
        ..Default::default()
    });
    let mut o = job(&is, JobState::Active);
    if let Some(j) = o.job.as_mut() {
        j.waiting = Some("pod svc-x: cannot be scheduled: 0/3 nodes are available".into());
    }
    (is, o)
}

#[test]
fn a_profiling_job_that_cannot_run_is_made_anew_once_the_pod_settings_change() {
    let (mut is, mut o) = stuck_on_a_pool();
    // Made as asked: it waits, and says why.
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.replace_job, None);
    assert_eq!(cond(&p, PROFILED).reason, "ProfilingWaiting");
    assert!(event(&p, "ProfilingJobReplaced").is_none());

    // The user fixes spec.pod: the Job is deleted (the version judged), not created yet.
    is.spec.pod = None;
    is.metadata.generation = Some(2);
    let p = plan(&is, &o, &cfg(), NOW);
    let replaced = p.replace_job.clone().expect("the stuck Job is replaced");
    assert_eq!(Some(&replaced.name), o.job.as_ref().map(|j| &j.name));
    assert_eq!(replaced.resource_version.as_deref(), Some("7"));
    assert!(replaced.waiting.contains("cannot be scheduled"));
    assert!(p.job.is_none() && p.profile.is_none());
    assert_eq!(p.status.phase, Some(Phase::Pending));
    let profiled = cond(&p, PROFILED);
    assert!(
        profiled
            .message
            .ends_with("it is made anew with the pod settings asked for now"),
        "{}",
        profiled.message
    );
    let note = &event(&p, "ProfilingJobReplaced").expect("an Event").note;
    assert!(note.contains("cannot be scheduled"), "{note}");

    // Its deletion under way: nothing more is asked of it, nothing is created beside it.
    let mut going = o.clone();
    if let Some(j) = going.job.as_mut() {
        j.deleting = true;
    }
    let p = plan(&is, &going, &cfg(), NOW);
    assert_eq!((p.replace_job, p.job), (None, None));

    // Gone: made anew under the same name, without the selector, with the new digest.
    let name = o.job.as_ref().map(|j| j.name.clone());
    o.job = None;
    let p = plan(&is, &o, &cfg(), NOW);
    let job = p.job.expect("the Job made anew");
    assert_eq!(job.metadata.name, name);
    let pod = job.spec.and_then(|s| s.template.spec).expect("a pod spec");
    assert!(
        pod.node_selector
            .as_ref()
            .is_none_or(|s| !s.contains_key("pool")),
        "{:?}",
        pod.node_selector
    );
}

/// The names of the Secrets a planned Job's container reads its environment from.
fn secrets_read(job: &k8s_openapi::api::batch::v1::Job) -> Vec<String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|pod| {
            pod.containers[0]
                .env
                .iter()
                .flatten()
                .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
                .map(|r| r.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_profiling_job_reads_the_model_as_its_service_says_and_is_remade_when_that_is_fixed() {
    let mut is = service("svc");
    is.spec.model.source = crate::testutil::s3_source("old-keys", "ab");
    let mut o = job(&is, JobState::Active);
    if let Some(j) = o.job.as_mut() {
        j.waiting =
            Some("pod svc-x: CreateContainerConfigError: secret \"old-keys\" not found".into());
    }
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.replace_job, None, "made as asked: it waits");
    assert!(
        cond(&p, PROFILED)
            .message
            .contains("secret \"old-keys\" not found"),
        "{}",
        cond(&p, PROFILED).message
    );

    // The service names the Secret that exists: the Job is remade, though the shared profile's
    // spec still holds the old name (the service that made it is this one, as it was then).
    is.spec.model.source.s3 = Some(greenbatch_crds::S3Source {
        credentials_secret: Some("model-store".into()),
        ..Default::default()
    });
    is.metadata.generation = Some(2);
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(p.replace_job.is_some(), "the stuck Job is replaced");
    o.job = None;
    let p = plan(&is, &o, &cfg(), NOW);
    let made = p.job.expect("the Job made anew");
    assert_eq!(secrets_read(&made), ["model-store"; 3]);

    // Another service sharing the profile (same digest) builds its Job with its own access.
    let mut other = service("other");
    other.metadata.uid = Some("other-uid".into());
    other.spec.model.source = greenbatch_crds::ModelSource {
        uri: Some("https://models.example/r50.pt".into()),
        ..is.spec.model.source.clone()
    };
    other.spec.model.source.s3 = None;
    let p = plan(&other, &o, &cfg(), NOW);
    let made = p.job.expect("a Job for the shared profile");
    assert!(secrets_read(&made).is_empty());
    let args = made.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"https://models.example/r50.pt".to_string()),
        "{args:?}"
    );
}

#[test]
fn a_profiling_job_is_replaced_only_when_stuck_made_otherwise_and_by_the_service_it_was_built_for()
{
    let (mut is, o) = stuck_on_a_pool();
    is.spec.pod = None;
    let replaced = |o: &Observed| plan(&is, o, &cfg(), NOW).replace_job.is_some();
    assert!(replaced(&o));
    let with = |f: fn(&mut JobObservation)| {
        let mut o = o.clone();
        f(o.job.as_mut().expect("a Job"));
        o
    };
    // Its pod runs (or the waiting cleared): a measurement under way is never thrown away.
    assert!(!replaced(&with(|j| j.waiting = None)));
    // Finished: recorded, not replaced.
    assert!(!replaced(&with(|j| j.state = JobState::Succeeded)));
    // A pod of it ran and failed: its retries and log stay (a re-profile token replaces it).
    assert!(!replaced(&with(|j| j.failed_pods = 1)));
    // Built for another service sharing the profile, with its own pod settings: that service's
    // Job waits for a GPU as this one's would — not replaced, or the two would take turns for
    // ever. Once that service no longer uses the profile, any may.
    let theirs = with(|j| {
        j.built_for = Some("uid-other".into());
        j.builder_name = Some("ns/other".into());
    });
    assert!(!replaced(&theirs));
    // Whose settings to fix, then, the condition says.
    let p = plan(&is, &theirs, &cfg(), NOW);
    assert!(
        cond(&p, PROFILED).message.ends_with(
            "; it was built with the pod settings (spec.pod) of InferenceService ns/other"
        ),
        "{}",
        cond(&p, PROFILED).message
    );
    assert!(replaced(&with(|j| {
        j.built_for = Some("uid-other".into());
        j.builder_gone = true;
    })));
    // Built before Jobs recorded for whom: whoever looks first.
    assert!(replaced(&with(|j| j.built_for = None)));
    // A Job of a deleted profile of the same name is not this profile's to replace: its garbage
    // collection is under way.
    assert!(!replaced(&with(
        |j| j.owner_uid = Some("another-uid".into())
    )));
    // One with no owner at all was orphaned: nothing but its TTL would remove it, and the
    // service would wait till then — deleted, and said so.
    let orphan = with(|j| j.owner_uid = None);
    let p = plan(&is, &orphan, &cfg(), NOW);
    assert!(
        p.replace_job.as_ref().is_some_and(|r| r.orphaned),
        "{:?}",
        p.replace_job
    );
    let note = &event(&p, "ProfilingJobReplaced").expect("an Event").note;
    assert!(note.contains("has no owner"), "{note}");
    // Being deleted already.
    assert!(!replaced(&with(|j| j.deleting = true)));
}

#[test]
fn a_job_being_deleted_says_so_and_is_looked_at_again() {
    let (is, mut o) = stuck_on_a_pool();
    if let Some(j) = o.job.as_mut() {
        j.deleting = true;
    }
    let p = plan(&is, &o, &cfg(), NOW);
    let profiled = cond(&p, PROFILED);
    assert!(
        profiled
            .message
            .contains("is being deleted (its pods first)"),
        "{}",
        profiled.message
    );
    assert_eq!(p.status.phase, Some(Phase::Pending));
    assert_eq!(p.requeue, Requeue::After(cfg().observe_interval));
    // Not a new reason to warn about.
    assert!(event(&p, "ProfilingWaiting").is_none());
}

#[test]
fn the_job_built_for_a_service_names_it() {
    let is = service("svc");
    let p = plan(&is, &profile_no_job(&is), &cfg(), NOW);
    let job = p.job.expect("a Job");
    assert_eq!(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(BUILT_FOR_ANNOTATION))
            .map(String::as_str),
        Some("uid-svc")
    );
}

#[test]
fn the_count_running_is_the_deployment_s_not_a_stale_status() {
    // The last reconcile scaled the Deployment to 4, but the status this reconcile reads still
    // says 1 (the cache has not seen the write yet, or the write failed).
    let (mut is, mut o) = serving_on(4);
    if let Some(r) = is.status.as_mut().and_then(|s| s.replicas.as_mut()) {
        r.desired = 1;
    }
    // A partial observation with little traffic can only hold or raise: it holds the 4 running,
    // instead of applying the stale 1 again.
    o.load = Some(load(10.0, false));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(desired(&p).0, 4, "{:?}", desired(&p));
    assert_eq!(deployment_replicas(&p), 4);
    assert!(event(&p, "Scaled").is_none(), "{:?}", p.events);
}

#[test]
fn a_running_service_without_a_configuration_keeps_its_replicas_and_choice() {
    // Serving on 3 replicas; an edit asks for a fixed batch size the profile lacks.
    let (mut is, o) = serving_on(3);
    let before = is.status.clone().unwrap();
    is.spec.batching.mode = BatchingMode::Fixed;
    is.spec.batching.batch_size = Some(64);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(cond(&p, READY).reason, "NoConfiguration");
    assert_eq!(p.serving, Serving::Keep);
    assert_eq!(p.status.replicas.as_ref().map(|r| r.desired), Some(3));
    assert_eq!(p.status.selected, before.selected);
}

/// The capacity per replica a service's status holds as learnt.
fn set_learnt(is: &mut InferenceService, capacity: Option<f64>) {
    if let Some(r) = is.status.as_mut().and_then(|s| s.replicas.as_mut()) {
        r.measured_capacity_per_replica = capacity;
    }
}

/// A window in which one pod served `rate` items/s, its model thread busy `busy` of the time
/// running `per_batch` items per batch at a cap of `cap`.
fn thread_load(rate: f64, busy: f64, per_batch: f64, cap: u32) -> LoadObservation {
    LoadObservation {
        executor_busy: Some(busy),
        threads: vec![ThreadReading {
            busy,
            served_per_busy_second: rate / busy,
            items_per_batch: Some(per_batch),
            max_batch_size: Some(cap),
        }],
        ..load(rate, true)
    }
}

#[test]
fn a_model_thread_running_full_batches_teaches_the_capacity_before_any_request_is_refused() {
    // The profile says one replica serves thousands per second at batch 32; in the pod a full
    // batch takes longer (copying and answering batches cost what the profile's device time does
    // not show): 900/s with the thread 90% busy on full batches is 1000/s with it never idle.
    let mut is = service("svc");
    is.spec.replicas.max = 8;
    let mut o = serving(&mut is);
    let selected = is.status.as_ref().and_then(|s| s.selected.as_ref());
    assert_eq!(selected.map(|s| s.batch_size), Some(32));

    // Busy but on small batches (the batcher runs them back to back when its delay is shorter
    // than a batch): the thread is busy at a fraction of what it could serve. Nothing learnt.
    o.load = Some(thread_load(900.0, 0.96, 1.5, 32));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(learnt(&p), None);
    assert_eq!(desired(&p).0, 1);
    assert_eq!(p.status.observed.clone().unwrap().executor_busy, Some(0.96));
    // Full batches, but under another cap (an old pod of a rollout): nothing learnt.
    o.load = Some(thread_load(900.0, 0.9, 16.0, 16));
    assert_eq!(learnt(&plan(&is, &o, &cfg(), NOW)), None);
    // Full batches at the cap, thread mostly idle (a device that idles runs slower): nothing.
    o.load = Some(thread_load(300.0, 0.3, 32.0, 32));
    assert_eq!(learnt(&plan(&is, &o, &cfg(), NOW)), None);

    // Full batches at the cap, thread busy: 900/s at 1000/s per replica, kept below 80% busy, is
    // 2 replicas — before a single 429.
    o.load = Some(thread_load(900.0, 0.9, 31.0, 32));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(learnt(&p), Some(1000.0));
    assert_desired(&p, 2, "1000/s at batch 32 (measured in the serving pods)");
    // The same with a target utilisation of 1: the bar to read the thread stops at 90% busy.
    let full_target = OperatorConfig {
        target_utilisation: 1.0,
        ..cfg()
    };
    assert_eq!(learnt(&plan(&is, &o, &full_target, NOW)), Some(1000.0));
    is.status = Some(p.status);

    // Two pods share the load on smaller batches: the count and what was learnt stay.
    o.load = Some(LoadObservation {
        busiest_pod_served_per_second: 450.0,
        ..thread_load(900.0, 0.45, 8.0, 32)
    });
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!((desired(&p).0, learnt(&p)), (2, Some(1000.0)));
    is.status = Some(p.status);

    // A limit outside the thread learnt from refusals (HTTP) stays when lower than what the
    // thread could do: the thread reading bounds what is known from above.
    set_learnt(&mut is, Some(600.0));
    o.load = Some(LoadObservation {
        busiest_pod_served_per_second: 500.0,
        ..thread_load(1000.0, 0.9, 32.0, 32)
    });
    assert_eq!(learnt(&plan(&is, &o, &cfg(), NOW)), Some(600.0));

    // A thread reading at or above the profile's capacity teaches nothing: the profile stands.
    set_learnt(&mut is, None);
    o.load = Some(thread_load(900.0, 0.9, 32.0, 32));
    if let Some(t) = o.load.as_mut().and_then(|l| l.threads.first_mut()) {
        t.served_per_busy_second = 1e9;
    }
    assert_eq!(learnt(&plan(&is, &o, &cfg(), NOW)), None);
}

#[test]
fn a_service_missing_its_slo_in_service_says_so_once() {
    // SLO p99 <= 50 ms; the pods' histogram over the window puts p99 at 92 ms.
    let mut is = service("svc");
    let mut o = serving(&mut is);
    let slow = LoadObservation {
        latency_buckets: vec![(0.02, 90.0), (0.1, 100.0), (f64::INFINITY, 100.0)],
        ..load(100.0, true)
    };
    let fast = LoadObservation {
        latency_buckets: vec![(0.02, 100.0), (0.1, 100.0), (f64::INFINITY, 100.0)],
        ..load(100.0, true)
    };
    o.load = Some(fast);
    let p = plan(&is, &o, &cfg(), NOW);
    let seen = p.status.observed.clone().unwrap();
    assert!(
        seen.latency_at_slo_percentile_ms
            .is_some_and(|ms| ms <= 20.0),
        "{seen:?}"
    );
    assert!(event(&p, "SLOMissed").is_none());
    is.status = Some(p.status);

    o.load = Some(slow);
    let p = plan(&is, &o, &cfg(), NOW);
    let ms = p
        .status
        .observed
        .clone()
        .unwrap()
        .latency_at_slo_percentile_ms
        .unwrap();
    assert!((ms - 92.0).abs() < 1e-9, "{ms}");
    let missed = event(&p, "SLOMissed").expect("an SLOMissed Event");
    assert!(missed.warning);
    assert!(
        missed.note.contains("observed p99 latency 92 ms")
            && missed.note.contains("above the SLO p99 <= 50.0 ms"),
        "{}",
        missed.note
    );
    is.status = Some(p.status);
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(event(&p, "SLOMissed").is_none(), "once, not every window");
}

/// The planned profile, applied: what the next reconcile observes (uid and table kept).
fn applied(planned: &EnergyProfile, before: &EnergyProfile) -> EnergyProfile {
    let mut ep = planned.clone();
    ep.metadata.uid = before.metadata.uid.clone();
    ep.status = before.status.clone();
    ep
}

#[test]
fn a_sustained_drift_reprofiles_at_most_once_a_day_when_the_spec_asks() {
    let mut is = service("svc");
    is.spec.on_drift = DriftAction::Reprofile;
    let mut o = serving(&mut is);
    // The pods measure 20x what the profile predicts for their load.
    o.load = Some(LoadObservation {
        joules_per_inference: Some(5.0),
        ..load(500.0, true)
    });
    let reprofiles = |p: &Plan| {
        p.events
            .iter()
            .filter(|e| e.reason == "ReprofilingOnDrift")
            .count()
    };

    // The first drifted window: the Warning only (one window can be a fluke).
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(event(&p, "PredictionDrift").is_some());
    assert_eq!((reprofiles(&p), p.profile.is_none()), (0, true));
    is.status = Some(p.status);

    // The second: measure again, as a token would, and go on serving meanwhile.
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(reprofiles(&p), 1, "{:?}", p.events);
    assert_eq!(p.status.phase, Some(Phase::Serving));
    let before = o.profile.clone().unwrap();
    let planned = p
        .profile
        .clone()
        .expect("the profile asks for a new measurement");
    let a = planned.metadata.annotations.clone().unwrap();
    let token = a[REPROFILE_TOKENS_ANNOTATION].clone();
    assert!(token.starts_with(DRIFT_TOKEN_PREFIX), "{token}");
    let profile_name = before.metadata.name.clone().unwrap();
    assert_eq!(
        a[PROFILING_JOB_ANNOTATION],
        job_name(&profile_name, Some(&token))
    );
    is.status = Some(p.status);

    // Applied: the next reconcile creates that Job, still serving, and asks nothing more.
    o.profile = Some(applied(&planned, &before));
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(p.job.is_some(), "the re-profile Job");
    assert_eq!((reprofiles(&p), p.profile.is_none()), (0, true));
    assert_eq!(p.status.phase, Some(Phase::Serving));
    is.status = Some(p.status);

    // Had that Job died before writing (killed, past its deadline), the table stays and the
    // Profiled condition says what happened.
    let mut died = o.clone();
    died.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: a[PROFILING_JOB_ANNOTATION].clone(),
        state: JobState::Failed {
            reason: "DeadlineExceeded".into(),
            message: "Job was active longer than specified deadline".into(),
        },
        waiting: None,
        ..job_extra()
    });
    let p = plan(&is, &died, &cfg(), NOW);
    let profiled = cond(&p, PROFILED);
    assert_eq!(profiled.status, ConditionStatus::True);
    assert!(
        profiled.message.contains("measuring again failed (Job")
            && profiled.message.contains("DeadlineExceeded"),
        "{}",
        profiled.message
    );
    assert_eq!(p.status.phase, Some(Phase::Serving));

    // The Job done, a new table in, and it drifts as well: the prediction is what is off. No
    // second measurement the same day — the Warning stands.
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: a[PROFILING_JOB_ANNOTATION].clone(),
        state: JobState::Succeeded,
        waiting: None,
        ..job_extra()
    });
    if let Some(s) = o.profile.as_mut().and_then(|p| p.status.as_mut()) {
        s.finished_at = Some("2025-01-01T00:05:00Z".into());
    }
    for _ in 0..3 {
        let p = plan(&is, &o, &cfg(), "2025-01-01T06:00:00Z");
        assert_eq!((reprofiles(&p), p.profile.is_none()), (0, true));
        is.status = Some(p.status);
    }
    // A day later (the model file replaced again, say), a drift that holds measures again.
    let later = "2025-01-02T01:00:00Z";
    let p = plan(&is, &o, &cfg(), later);
    assert_eq!(
        reprofiles(&p),
        0,
        "the reading before is hours old: not 'in a row'"
    );
    is.status = Some(p.status);
    let p = plan(&is, &o, &cfg(), later);
    assert_eq!(reprofiles(&p), 1, "{:?}", p.events);
    let tokens =
        p.profile.unwrap().metadata.annotations.unwrap()[REPROFILE_TOKENS_ANNOTATION].clone();
    assert_eq!(
        tokens,
        format!("{token},{DRIFT_TOKEN_PREFIX}20250102T010000Z"),
        "both automatic measurements recorded"
    );

    // Without the opt-in a sustained drift only warns.
    let mut is = service("quiet");
    let mut o = serving(&mut is);
    o.load = Some(LoadObservation {
        joules_per_inference: Some(5.0),
        ..load(500.0, true)
    });
    for _ in 0..3 {
        let p = plan(&is, &o, &cfg(), NOW);
        assert_eq!((reprofiles(&p), p.profile.is_none()), (0, true));
        is.status = Some(p.status);
    }
}

#[test]
fn a_gpu_without_a_product_says_which_type_was_measured() {
    // The Profiled message of a service with `gpu` as given, profiled on an H200.
    let profiled = |count: u32, product: Option<&str>| {
        let mut is = service("svc");
        is.spec.gpu.count = count;
        is.spec.gpu.product = product.map(String::from);
        let mut o = done(&is);
        if let Some(s) = o.profile.as_mut().and_then(|p| p.status.as_mut()) {
            s.measured_on = Some(greenbatch_crds::energy_profile::MeasuredOn {
                device: "cuda:0".into(),
                device_name: Some("NVIDIA H200".into()),
                ..Default::default()
            });
        }
        let p = plan(&is, &o, &cfg(), NOW);
        let c = cond(&p, PROFILED);
        assert_eq!(c.reason, "ProfileComplete", "{}", c.message);
        c.message.clone()
    };
    let unpinned = profiled(1, None);
    assert!(
        unpinned.contains("measured on NVIDIA H200, and spec.gpu.product is unset"),
        "{unpinned}"
    );
    // Pinned to a product, or on the CPU: nothing to say.
    for (count, product) in [(1, Some("NVIDIA-H200")), (0, None)] {
        let m = profiled(count, product);
        assert!(!m.contains("spec.gpu.product"), "{m}");
    }
}

/// `is` serving, with a user's token `t1` honoured and its re-profile Job running: what the
/// cluster shows then, and that Job's name.
fn measuring_again_for_t1(is: &mut InferenceService) -> (Observed, String) {
    is.metadata.annotations = Some([(REPROFILE_ANNOTATION.to_string(), "t1".to_string())].into());
    let mut o = serving(is);
    let first = plan(is, &o, &cfg(), NOW);
    if let Some(planned) = first.profile {
        o.profile = Some(applied(&planned, o.profile.as_ref().unwrap()));
    }
    let profile_name = o.profile.as_ref().unwrap().metadata.name.clone().unwrap();
    let job = job_name(&profile_name, Some("t1"));
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: job.clone(),
        state: JobState::Active,
        waiting: None,
        ..job_extra()
    });
    (o, job)
}

#[test]
fn a_drift_reprofile_measures_the_shared_table_again_and_waits_for_a_running_one() {
    let mut is = service("svc");
    is.spec.on_drift = DriftAction::Reprofile;
    let mut o = serving(&mut is);
    let shared = o.profile.clone().unwrap();
    // This service now asks for fewer batch sizes than the profile others share was measured
    // with (candidates are not part of the key: same profile).
    is.spec.batching.candidates = vec![1, 2];
    o.load = Some(LoadObservation {
        joules_per_inference: Some(5.0),
        ..load(500.0, true)
    });
    let p = plan(&is, &o, &cfg(), NOW);
    is.status = Some(p.status);
    let p = plan(&is, &o, &cfg(), NOW);
    let planned = p.profile.expect("a drift re-profile");
    assert_eq!(
        planned.spec, shared.spec,
        "the same table measured again, not this service's candidates"
    );

    // A user's re-profile running (its Job active): drift waits for its table.
    let mut is = service("busy");
    is.spec.on_drift = DriftAction::Reprofile;
    let (mut o, _) = measuring_again_for_t1(&mut is);
    o.load = Some(LoadObservation {
        joules_per_inference: Some(5.0),
        ..load(500.0, true)
    });
    for _ in 0..3 {
        let p = plan(&is, &o, &cfg(), NOW);
        assert!(event(&p, "ReprofilingOnDrift").is_none(), "{:?}", p.events);
        assert!(p.profile.is_none());
        is.status = Some(p.status);
    }
}

#[test]
fn a_new_token_waits_for_the_measurement_running() {
    // t1's re-profile Job runs; the user sets t2 meanwhile.
    let mut is = service("svc");
    let (mut o, t1_job) = measuring_again_for_t1(&mut is);
    let profile_name = o.profile.as_ref().unwrap().metadata.name.clone().unwrap();
    is.metadata.annotations = Some([(REPROFILE_ANNOTATION.to_string(), "t2".to_string())].into());
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(
        p.profile.is_none() && p.job.is_none(),
        "no second Job racing the first to write the table"
    );
    assert!(
        cond(&p, PROFILED).message.contains(&t1_job),
        "{}",
        cond(&p, PROFILED).message
    );
    assert_eq!(p.status.phase, Some(Phase::Serving));

    // t1's Job done: t2 is honoured.
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: t1_job,
        state: JobState::Succeeded,
        waiting: None,
        ..job_extra()
    });
    let p = plan(&is, &o, &cfg(), NOW);
    let a = p
        .profile
        .expect("t2 asks for a measurement")
        .metadata
        .annotations
        .unwrap();
    assert!(a[REPROFILE_TOKENS_ANNOTATION].ends_with("t1,t2"), "{a:?}");
    assert_eq!(
        a[PROFILING_JOB_ANNOTATION],
        job_name(&profile_name, Some("t2"))
    );
}

#[test]
fn a_model_slower_than_profiled_drifts_and_reprofiles_without_an_energy_meter() {
    let mut is = service("svc");
    is.spec.on_drift = DriftAction::Reprofile;
    let mut o = serving(&mut is);
    let unmetered = |forward_ms: f64| LoadObservation {
        joules_per_inference: None,
        forward_ms_per_batch: Some(forward_ms),
        run_batch_size: Some(24.0),
        ..load(500.0, true)
    };
    // What the profile says a 24-row batch takes (between its 16 and 32 rows).
    o.load = Some(unmetered(1.0));
    let p = plan(&is, &o, &cfg(), NOW);
    let predicted = p
        .status
        .observed
        .as_ref()
        .and_then(|s| s.predicted_forward_ms_per_batch)
        .expect("a prediction at 24 rows");
    let table = o
        .profile
        .as_ref()
        .unwrap()
        .status
        .as_ref()
        .unwrap()
        .table
        .clone()
        .unwrap();
    let at = |b: u32| {
        table
            .rows
            .iter()
            .find(|r| r.batch_size == b)
            .unwrap()
            .latency_ms
            .p50
    };
    assert!(
        (predicted - (at(16) + at(32)) / 2.0).abs() < 1e-9,
        "{predicted}: halfway between 16 and 32 rows"
    );
    // Within 2x of it: no drift.
    o.load = Some(unmetered(predicted * 1.5));
    assert!(event(&plan(&is, &o, &cfg(), NOW), "PredictionDrift").is_none());

    // Three times slower, twice in a row: a Warning, then a measurement, with no meter at all.
    o.load = Some(unmetered(predicted * 3.0));
    let p = plan(&is, &o, &cfg(), NOW);
    let warned = event(&p, "PredictionDrift").expect("a PredictionDrift Event");
    assert!(
        warned.note.contains("the model ran")
            && warned.note.contains("per batch of 24 rows")
            && warned.note.contains("(3x)"),
        "{}",
        warned.note
    );
    is.status = Some(p.status);
    let p = plan(&is, &o, &cfg(), NOW);
    let again = event(&p, "ReprofilingOnDrift").expect("a re-profile");
    assert!(
        again
            .note
            .starts_with("the model's time per batch has stayed 3x the prediction"),
        "{}",
        again.note
    );
    assert!(
        p.profile.is_some(),
        "the profile asks for a new measurement"
    );
}

/// The re-profile Job of `token_recorded`, observed in `state`.
fn reprofile_job(o: &mut Observed, state: JobState) -> String {
    let profile = o.profile.as_ref().expect("a profile");
    let name = observed_job_name(profile.metadata.name.as_deref().unwrap(), Some(profile));
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: name.clone(),
        state,
        waiting: None,
        ..job_extra()
    });
    name
}

/// The profile as it is once the controller wrote the plan's record of its Job.
fn record(o: &mut Observed, p: &Plan) {
    let record = p
        .job_record
        .clone()
        .expect("the plan records how the Job ended");
    let status = o.profile.as_mut().unwrap().status.get_or_insert_default();
    status.last_job = Some(record);
}

#[test]
fn a_finished_re_profile_job_is_recorded_and_not_run_again_once_it_is_gone() {
    let (is, mut o) = token_recorded();
    // Running: nothing to record.
    let job = reprofile_job(&mut o, JobState::Active);
    assert_eq!(plan(&is, &o, &cfg(), NOW).job_record, None);
    // Succeeded: recorded once; the same record is not written again.
    reprofile_job(&mut o, JobState::Succeeded);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(
        p.job_record,
        Some(ProfilingJobRecord {
            name: job.clone(),
            outcome: JobOutcome::Succeeded,
            reason: None,
            message: None,
        })
    );
    record(&mut o, &p);
    assert_eq!(plan(&is, &o, &cfg(), NOW).job_record, None);
    // Gone (its TTL, or by hand): not created again, the service serves on from the table.
    o.job = None;
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(p.job.is_none(), "a recorded Job does not run again");
    assert_eq!(
        p.status.phase,
        Some(Phase::Pending),
        "first rollout pending"
    );
    assert_eq!(cond(&p, PROFILED).status, ConditionStatus::True);
    // Without the record (an operator before this one, a TTL shorter than an outage) it would.
    o.profile
        .as_mut()
        .unwrap()
        .status
        .as_mut()
        .unwrap()
        .last_job = None;
    assert!(plan(&is, &o, &cfg(), NOW).job.is_some());
}

#[test]
fn a_failed_job_gone_keeps_its_failure_and_does_not_run_again() {
    // A first measurement whose Job failed without the runtime writing anything (past its
    // deadline): the record keeps why once the Job is gone.
    let is = service("svc");
    let failed = JobState::Failed {
        reason: "DeadlineExceeded".into(),
        message: "Job was active longer than specified deadline".into(),
    };
    let mut o = job(&is, failed);
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(p.status.phase, Some(Phase::Failed));
    let before = cond(&p, READY).message.clone();
    let recorded = p.job_record.clone().expect("recorded");
    assert_eq!(
        (recorded.outcome, recorded.reason.as_deref()),
        (JobOutcome::Failed, Some("DeadlineExceeded"))
    );
    record(&mut o, &p);
    o.job = None;
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(
        p.job.is_none(),
        "a failed Job is not run again by its absence"
    );
    assert_eq!(p.status.phase, Some(Phase::Failed));
    assert_eq!(
        cond(&p, READY).message,
        before,
        "the same reason as with the Job"
    );
    assert_eq!(p.job_record, None);

    // A re-profile that failed: the table serves on, the failure stays in the Profiled condition.
    let (is, mut o) = token_recorded();
    reprofile_job(
        &mut o,
        JobState::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "exit code 13 (model download failed)".into(),
        },
    );
    let p = plan(&is, &o, &cfg(), NOW);
    record(&mut o, &p);
    o.job = None;
    let p = plan(&is, &o, &cfg(), NOW);
    assert!(p.job.is_none());
    let profiled = cond(&p, PROFILED);
    assert!(
        profiled.message.contains("measuring again failed")
            && profiled.message.contains("exit code 13"),
        "{}",
        profiled.message
    );
}

#[test]
fn a_job_recorded_as_succeeded_without_a_table_runs_again() {
    // The table edited away after the Job succeeded and went: measure again rather than wait
    // for a table nothing will write.
    let is = service("svc");
    let mut o = job(&is, JobState::Succeeded);
    let p = plan(&is, &o, &cfg(), NOW);
    record(&mut o, &p);
    o.job = None;
    assert!(plan(&is, &o, &cfg(), NOW).job.is_some());
}

#[test]
fn only_the_profile_s_current_job_is_recorded() {
    let (is, mut o) = token_recorded();
    // The first Job (the profile now names the re-profile one) finished long ago.
    let first = job_name(
        o.profile
            .as_ref()
            .unwrap()
            .metadata
            .name
            .as_deref()
            .unwrap(),
        None,
    );
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: first,
        state: JobState::Succeeded,
        waiting: None,
        ..job_extra()
    });
    assert_eq!(plan(&is, &o, &cfg(), NOW).job_record, None);
}

#[test]
fn a_job_of_a_deleted_profile_of_the_same_name_is_neither_recorded_nor_replaced_yet() {
    // `kubectl delete gep` after a failed first measurement: the service makes the profile again
    // (a new uid) while the garbage collector has not yet removed the old, failed Job.
    let is = service("svc");
    let mut o = job(
        &is,
        JobState::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "exit code 4".into(),
        },
    );
    o.job.as_mut().unwrap().owner_uid = Some("the-deleted-profile".into());
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(
        p.job_record, None,
        "the old Job's end is not this profile's"
    );
    assert!(p.job.is_none(), "no Job applied over the old one");
    assert_ne!(p.status.phase, Some(Phase::Failed));
    assert_eq!(cond(&p, PROFILED).status, ConditionStatus::False);
    // Once it is gone, this profile gets its own Job.
    o.job = None;
    assert!(plan(&is, &o, &cfg(), NOW).job.is_some());
}

#[test]
fn an_object_the_api_server_refuses_is_said_in_the_ready_condition_once() {
    let is = service("svc");
    let o = done(&is);
    let planned = plan(&is, &o, &cfg(), NOW);
    let message =
        "Deployment.apps \"svc\" is invalid: spec.template.spec.priorityClassName: Invalid value";
    let p = refused(planned.clone(), &is, "serving Deployment", message, NOW);
    let ready = cond(&p, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "Refused")
    );
    assert!(ready.message.contains(message), "{}", ready.message);
    assert_eq!(event(&p, "Refused").map(|e| e.warning), Some(true));
    assert_eq!(p.requeue, Requeue::After(RESYNC));
    // The rest of what was planned stands (what is served, the profile's state).
    assert_eq!(p.status.selected, planned.status.selected);
    // Refused again for the same reason: no second Event.
    let mut refused_before = is.clone();
    refused_before.status = Some(p.status.clone());
    assert!(
        event(
            &refused(planned, &refused_before, "serving Deployment", message, NOW),
            "Refused"
        )
        .is_none()
    );
}

#[test]
fn a_refusal_that_lasts_keeps_its_transition_time_and_a_refused_re_profile_leaves_ready() {
    // Each pass planned Ready True, then the refusal set it False: the time moved to every
    // resync's, and "Ready False for 15 minutes" never held.
    let mut is = service("svc");
    let o = serving(&mut is);
    assert!(
        is.status.as_ref().is_some_and(|s| s
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == ConditionStatus::True)),
        "serving"
    );
    let later = "2099-01-01T00:05:00Z";
    let message = "admission webhook denied the request";
    let first = refused(
        plan(&is, &o, &cfg(), NOW),
        &is,
        "serving Deployment",
        message,
        NOW,
    );
    is.status = Some(first.status);
    let again = refused(
        plan(&is, &o, &cfg(), later),
        &is,
        "serving Deployment",
        message,
        later,
    );
    let ready = cond(&again, READY);
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.last_transition_time, NOW);

    // A refused re-profile Job: the pods serve on, Ready stays; Profiled says it.
    let mut is = service("svc");
    let o = serving(&mut is);
    let p = refused(
        plan(&is, &o, &cfg(), later),
        &is,
        REFUSED_PROFILING_JOB,
        message,
        later,
    );
    assert_eq!(cond(&p, READY).status, ConditionStatus::True);
    let profiled = cond(&p, PROFILED);
    assert_eq!(
        (profiled.status, profiled.reason.as_str()),
        (ConditionStatus::False, "Refused")
    );
}

#[test]
fn a_job_that_wrote_the_table_is_finishing_not_measuring_again() {
    let is = service("svc");
    // The first Job's table arrives a moment before the Job completes.
    let mut o = job(&is, JobState::Active);
    let mut status = complete(&[1, 2, 4]).expect("a status");
    status.started_at = Some("2024-12-31T00:00:05Z".into());
    if let Some(p) = o.profile.as_mut() {
        p.status = Some(status);
    }
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(cond(&p, PROFILED).reason, "ProfileComplete");
    assert!(!cond(&p, PROFILED).message.contains("re-profiling"));
    // A Job made after the table was measured is measuring it again.
    if let Some(j) = o.job.as_mut() {
        j.created = Some("2024-12-31T00:01:00Z".into());
    }
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(cond(&p, PROFILED).reason, "Reprofiling");
}

#[test]
fn a_profile_waits_for_a_free_place_when_max_profiling_jobs_run() {
    let mut is = service("svc");
    let capped = OperatorConfig {
        max_profiling_jobs: Some(2),
        ..cfg()
    };
    let mut o = profile_no_job(&is);
    // Counted only when a Job is planned: without a count, the Job is planned.
    assert!(plan(&is, &o, &capped, NOW).job.is_some());
    o.profiling_jobs_running = Some(taken(1));
    assert!(plan(&is, &o, &capped, NOW).job.is_some());
    // No limit: any count.
    o.profiling_jobs_running = Some(taken(100));
    assert!(plan(&is, &o, &cfg(), NOW).job.is_some());

    o.profiling_jobs_running = Some(taken(2));
    let p = plan(&is, &o, &capped, NOW);
    assert!(p.job.is_none());
    assert_eq!(p.status.phase, Some(Phase::Pending));
    let profiled = cond(&p, PROFILED);
    assert_eq!(profiled.reason, "ProfilingQueued");
    assert!(
        profiled.message.contains(
            "the profiling Jobs running (2: other/job-0, other/job-1) are as many as --max-profiling-jobs allows (2)"
        ),
        "{}",
        profiled.message
    );
    assert_eq!(cond(&p, READY).reason, "ProfilingQueued");
    assert!(event(&p, "ProfilingQueued").is_some_and(|e| !e.warning));
    // Looked at again: another profile's Job ending triggers no reconcile of this service.
    assert_eq!(p.requeue, Requeue::After(cfg().observe_interval));
    // Said once, though the count changes.
    is.status = Some(p.status);
    o.profiling_jobs_running = Some(taken(3));
    let p = plan(&is, &o, &capped, NOW);
    assert_eq!(cond(&p, PROFILED).reason, "ProfilingQueued");
    assert!(event(&p, "ProfilingQueued").is_none());
}

/// `n` profiling Jobs running elsewhere.
fn taken(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("other/job-{i}")).collect()
}

#[test]
fn a_queued_re_profile_serves_on_from_the_table_and_is_looked_at_again() {
    let (mut is, mut o) = token_recorded();
    let capped = OperatorConfig {
        max_profiling_jobs: Some(1),
        ..cfg()
    };
    o.profiling_jobs_running = Some(taken(1));
    let queued = |is: &InferenceService, o: &Observed| {
        let p = plan(is, o, &capped, NOW);
        assert!(p.job.is_none());
        let profiled = cond(&p, PROFILED);
        assert_eq!(profiled.reason, "Reprofiling");
        assert!(
            profiled
                .message
                .contains("(queued: the profiling Jobs running (1: other/job-0)"),
            "{}",
            profiled.message
        );
        p
    };
    let p = queued(&is, &o);
    assert!(matches!(p.serving, Serving::Apply(_)), "{:?}", p.serving);
    // The SLO unattainable from the table, say: the service is Degraded, which waits for a change
    // — but its queued Job must still be created once a place is free.
    is.spec.slo.latency_ms = 0.5;
    o.profiling_jobs_running = None;
    assert_eq!(plan(&is, &o, &cfg(), NOW).requeue, Requeue::AwaitChange);
    o.profiling_jobs_running = Some(taken(1));
    assert_eq!(
        queued(&is, &o).requeue,
        Requeue::After(cfg().observe_interval)
    );
}

#[test]
fn without_a_count_in_status_the_running_deployment_s_count_stands() {
    // Six pods run; the status lost its replica count (a failed write, an older operator). A
    // partial observation asking for little must not drop them to `min` without the delay.
    let mut is = service("svc");
    is.spec.replicas.min = 1;
    is.spec.replicas.max = 8;
    let mut o = serving(&mut is);
    if let Some(d) = o.deployment.as_mut() {
        d.replicas = 6;
        d.ready_replicas = 6;
        d.available_replicas = 6;
        d.updated_replicas = 6;
    }
    if let Some(status) = is.status.as_mut() {
        status.replicas = None;
    }
    o.load = Some(load(10.0, false));
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(desired(&p).0, 6, "{:?}", desired(&p));
}

#[test]
fn a_re_profile_request_is_written_only_over_the_profile_as_read() {
    // Two services asking at once must not each name their own Job: the request carries the
    // resourceVersion it was planned from, so the later write gets a 409 and plans again.
    let mut is = service("svc");
    let mut o = done(&is);
    if let Some(p) = o.profile.as_mut() {
        p.metadata.resource_version = Some("42".into());
    }
    is.metadata.annotations = Some([(REPROFILE_ANNOTATION.to_string(), "t1".to_string())].into());
    let p = plan(&is, &o, &cfg(), NOW);
    let planned = p.profile.expect("a re-profile request");
    assert_eq!(planned.metadata.resource_version.as_deref(), Some("42"));
}

#[test]
fn a_token_the_profile_has_let_go_is_not_honoured_again() {
    // The service's token t1 was honoured; 16 newer tokens (other services', daily drift
    // re-profiles') have since pushed it out of the profile's list. It must not run again.
    let mut is = service("svc");
    is.metadata.annotations = Some([(REPROFILE_ANNOTATION.to_string(), "t1".to_string())].into());
    let mut o = done(&is);
    let first = plan(&is, &o, &cfg(), NOW);
    let requested = first.profile.expect("t1 is asked for");
    // Recorded for the service once the profile as read holds it (the controller plans again
    // after applying the request).
    o.profile = Some(applied(&requested, o.profile.as_ref().unwrap()));
    let after = plan(&is, &o, &cfg(), NOW);
    assert_eq!(after.status.reprofile_token.as_deref(), Some("t1"));
    is.status = Some(after.status);
    // t1's Job ran to its end.
    let profile_name = o.profile.as_ref().unwrap().metadata.name.clone().unwrap();
    o.job = Some(JobObservation {
        owner_uid: Some("ep-uid".into()),
        name: job_name(&profile_name, Some("t1")),
        state: JobState::Succeeded,
        waiting: None,
        ..job_extra()
    });
    let newer: Vec<String> = (0..TOKENS_KEPT).map(|i| format!("drift-{i}")).collect();
    if let Some(p) = o.profile.as_mut() {
        p.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REPROFILE_TOKENS_ANNOTATION.to_string(), newer.join(","));
    }
    let again = plan(&is, &o, &cfg(), NOW);
    assert!(
        again.profile.is_none() && again.job.is_none(),
        "t1 ran again"
    );
    assert_eq!(again.status.reprofile_token.as_deref(), Some("t1"));
}

#[test]
fn runtime_pods_request_a_cpu_and_4_gib_unless_told_otherwise() {
    // Without requests a GPU pod is BestEffort: the first evicted, measured with the CPU left.
    let requests = |p: &Plan| {
        let Serving::Apply(objects) = &p.serving else {
            panic!("expected Apply, got {:?}", p.serving)
        };
        let pod = objects
            .0
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        pod.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "nvidia.com/gpu")
            .map(|(k, q)| (k, q.0))
            .collect::<Vec<_>>()
    };
    let is = service("svc");
    let p = plan(&is, &done(&is), &cfg(), NOW);
    assert_eq!(
        requests(&p),
        [("cpu".into(), "1".into()), ("memory".into(), "4Gi".into())]
    );
    // A service's own resources replace them whole.
    let mut is = service("svc");
    is.spec.pod =
        serde_json::from_value(serde_json::json!({"resources": {"requests": {"memory": "16Gi"}}}))
            .unwrap();
    let p = plan(&is, &done(&is), &cfg(), NOW);
    assert_eq!(requests(&p), [("memory".into(), "16Gi".into())]);
}

#[test]
fn what_a_service_waiting_for_a_fix_shows_is_what_runs_now() {
    // An invalid edit while serving keeps the replica count, but the ready count is the
    // Deployment's now (it stayed at the last written while pods died), and an observation of
    // pods that no longer run is not shown.
    let mut is = service("svc");
    let mut o = serving(&mut is);
    is.spec.replicas.min = 3;
    is.spec.replicas.max = 2;
    is.metadata.generation = Some(2);
    if let Some(d) = o.deployment.as_mut() {
        d.ready_replicas = 0;
    }
    let p = plan(&is, &o, &cfg(), NOW);
    assert_eq!(cond(&p, READY).reason, "InvalidSpec");
    assert_eq!(p.status.replicas.as_ref().map(|r| r.ready), Some(0));
    let mut was = is.status.clone().unwrap();
    was.observed = Some(Default::default());
    is.status = Some(was);
    o.deployment = None;
    assert_eq!(plan(&is, &o, &cfg(), NOW).status.observed, None);
    o.deployment = serving(&mut service("svc")).deployment;
    assert!(plan(&is, &o, &cfg(), NOW).status.observed.is_some());
}
