//! The greenbatch.dev/v1alpha1 API against a real kube-apiserver: the CRDs install (from the checked-in
//! YAML with kubectl and from `all_crds()` with kube-rs), the examples are accepted with the defaults the
//! Rust types assume, the schema rejects invalid objects with field-level messages, the status
//! subresource behaves, and kubectl prints the declared columns.
//!
//! One cluster, one test function: the checks run in sequence and all failures are reported together.

use anyhow::{Context, Result, anyhow, bail, ensure};
use greenbatch_crds::{EnergyProfile, InferenceService, InferenceServiceSpec, Phase, all_crds};
use greenbatch_tests::{TestCluster, TestClusterOptions, workspace_root};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionSpec,
};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::path::PathBuf;

const NS: &str = "api-test";

#[tokio::test]
async fn greenbatch_api_on_a_real_apiserver() {
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("test cluster starts");
    let mut report = Report::default();

    report.check(
        "kubectl apply -f crds/ (fresh, then again: unchanged)",
        crds_apply_with_kubectl(&cluster).await,
    );
    report.check(
        "server-side apply of all_crds() with kube-rs (fresh, then again: no-op)",
        crds_apply_with_kube_rs(&cluster).await,
    );
    // Everything below needs the CRDs.
    report.stop_if_failed();

    cluster.create_namespace(NS).await.expect("namespace");
    report.check(
        "examples/*.yaml are accepted",
        examples_are_accepted(&cluster).await,
    );
    report.check(
        "invalid InferenceServices are rejected",
        invalid_inference_services(&cluster).await,
    );
    report.check(
        "invalid EnergyProfiles are rejected",
        invalid_energy_profiles(&cluster).await,
    );
    report.check(
        "kubectl shows the server's field errors",
        kubectl_rejections(&cluster).await,
    );
    report.check(
        "unknown fields are pruned",
        unknown_fields_are_pruned(&cluster).await,
    );
    report.check("status subresource", status_subresource(&cluster).await);
    report.check("printer columns", printer_columns(&cluster).await);
    report.finish();
}

#[derive(Default)]
struct Report {
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, name: &str, result: Result<()>) {
        match result {
            Ok(()) => eprintln!("ok: {name}"),
            Err(e) => {
                eprintln!("FAILED: {name}: {e:#}");
                self.failures.push(format!("{name}: {e:#}"));
            }
        }
    }

    fn stop_if_failed(&self) {
        assert!(
            self.failures.is_empty(),
            "the CRDs do not install, so nothing else was checked:\n\n{}",
            self.failures.join("\n\n")
        );
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} API check(s) failed:\n\n{}",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

fn crd_names() -> Vec<String> {
    all_crds()
        .into_iter()
        .map(|c| c.metadata.name.unwrap_or_default())
        .collect()
}

async fn crds_apply_with_kubectl(c: &TestCluster) -> Result<()> {
    let dir = workspace_root().join("crds").display().to_string();
    let out = c.kubectl(["apply", "-f", &dir]).await?;
    ensure!(out.success(), "{out}");
    for name in crd_names() {
        let created = format!("customresourcedefinition.apiextensions.k8s.io/{name} created");
        ensure!(
            out.stdout.contains(&created),
            "expected {created:?} in\n{out}"
        );
        let wait = c
            .kubectl([
                "wait",
                "--for=condition=Established",
                &format!("crd/{name}"),
                "--timeout=30s",
            ])
            .await?;
        ensure!(wait.success(), "{wait}");
    }
    let again = c.kubectl(["apply", "-f", &dir]).await?;
    ensure!(again.success(), "{again}");
    for name in crd_names() {
        let unchanged = format!("customresourcedefinition.apiextensions.k8s.io/{name} unchanged");
        ensure!(
            again.stdout.contains(&unchanged),
            "expected {unchanged:?} in\n{again}"
        );
    }
    // Remove them again, so the kube-rs apply below also starts from a cluster without them.
    let delete = c.kubectl(["delete", "--wait=true", "-f", &dir]).await?;
    ensure!(delete.success(), "{delete}");
    let api: Api<CustomResourceDefinition> = Api::all(c.client());
    for name in crd_names() {
        ensure!(
            api.get_opt(&name).await?.is_none(),
            "CRD {name} still exists after kubectl delete"
        );
    }
    Ok(())
}

async fn crds_apply_with_kube_rs(c: &TestCluster) -> Result<()> {
    let applied = c.apply_crds().await?;
    for (stored, generated) in applied.iter().zip(all_crds()) {
        let name = stored.name_any();
        let (s, g) = (&stored.spec, &generated.spec);
        ensure!(
            s.names.kind == g.names.kind && s.names.plural == g.names.plural,
            "{name}: names {:?}",
            s.names
        );
        ensure!(
            s.names.short_names == g.names.short_names,
            "{name}: short names {:?}",
            s.names.short_names
        );
        ensure!(
            s.names.categories == g.names.categories,
            "{name}: categories {:?}",
            s.names.categories
        );
        let columns = |crd: &CustomResourceDefinitionSpec| {
            crd.versions
                .iter()
                .flat_map(|v| v.additional_printer_columns.iter().flatten())
                .map(|col| (col.name.clone(), col.json_path.clone(), col.type_.clone()))
                .collect::<Vec<_>>()
        };
        ensure!(
            columns(s) == columns(g),
            "{name}: printer columns {:?} != {:?}",
            columns(s),
            columns(g)
        );
        ensure!(
            s.versions
                .iter()
                .all(|v| v.subresources.as_ref().is_some_and(|r| r.status.is_some())),
            "{name}: no status subresource"
        );
    }
    // Applying the same thing again changes nothing.
    let api: Api<CustomResourceDefinition> = Api::all(c.client());
    let before: Vec<Option<String>> = applied
        .iter()
        .map(|c| c.metadata.resource_version.clone())
        .collect();
    c.apply_crds().await?;
    let mut after = Vec::new();
    for name in crd_names() {
        after.push(api.get(&name).await?.metadata.resource_version);
    }
    ensure!(
        before == after,
        "a repeated apply changed the CRDs: resourceVersions {before:?} -> {after:?}"
    );
    Ok(())
}

fn example_files() -> Result<Vec<PathBuf>> {
    let dir = workspace_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no examples in {}", dir.display());
    Ok(files)
}

async fn examples_are_accepted(c: &TestCluster) -> Result<()> {
    let dir = workspace_root().join("examples").display().to_string();
    let out = c.kubectl(["apply", "-n", NS, "-f", &dir]).await?;
    ensure!(out.success(), "{out}");
    let api: Api<InferenceService> = Api::namespaced(c.client(), NS);
    let mut names = Vec::new();
    for file in example_files()? {
        let text = std::fs::read_to_string(&file)?;
        let doc: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        ensure!(
            doc["kind"] == "InferenceService",
            "{}: kind {}",
            file.display(),
            doc["kind"]
        );
        let name = doc["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: no name", file.display()))?
            .to_string();
        ensure!(
            out.stdout
                .contains(&format!("inferenceservice.greenbatch.dev/{name} created")),
            "{name} not created:\n{out}"
        );
        // The server's structural defaults are the defaults the Rust types fill in.
        let local: InferenceServiceSpec = serde_json::from_value(doc["spec"].clone())
            .with_context(|| format!("{}: spec does not parse", file.display()))?;
        let stored = api
            .get(&name)
            .await
            .with_context(|| format!("reading back {name}"))?;
        ensure!(
            stored.spec == local,
            "{}: server-defaulted spec differs from the serde-defaulted one:\nserver: {:?}\nlocal:  {:?}",
            file.display(),
            stored.spec,
            local
        );
        if let Err(errors) = greenbatch_crds::validate::validate_spec(&stored.spec) {
            bail!(
                "{}: fails greenbatch_crds::validate: {}",
                file.display(),
                greenbatch_crds::validate::describe(&errors)
            );
        }
        names.push(name);
    }
    let again = c.kubectl(["apply", "-n", NS, "-f", &dir]).await?;
    ensure!(again.success(), "{again}");
    for name in &names {
        ensure!(
            again
                .stdout
                .contains(&format!("inferenceservice.greenbatch.dev/{name} unchanged")),
            "re-apply:\n{again}"
        );
    }
    Ok(())
}

/// Sets the value at a JSON-pointer-like path, creating objects on the way.
fn set(v: &mut Value, path: &str, new: Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (last, parents) = parts.split_last().expect("non-empty path");
    let mut cur = v;
    for p in parents {
        cur = cur
            .as_object_mut()
            .expect("object on the path")
            .entry(p.to_string())
            .or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
        .expect("object at the end of the path")
        .insert(last.to_string(), new);
}

fn remove(v: &mut Value, path: &str) {
    let (parent, key) = path.rsplit_once('/').expect("path with a parent");
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent object")
        .remove(key);
}

/// One invalid object: how to break a valid one, and the field the server must name.
struct Case {
    what: &'static str,
    mutate: fn(&mut Value),
    field: &'static str,
    /// A piece of the server's message about it.
    says: &'static str,
    /// Whether a `details.causes[].field` must equal `field`. A 1.20 server reports a failed `oneOf` with
    /// the field only in the message (the cause's field is `<nil>`).
    structured: bool,
}

fn base_inference_service(name: &str) -> Value {
    json!({
        "apiVersion": "greenbatch.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": {"builtin": "resnet18"}, "input": {"shape": [3, 224, 224]}},
            "slo": {"latencyMs": 50},
        },
    })
}

fn base_energy_profile(name: &str) -> Value {
    json!({
        "apiVersion": "greenbatch.dev/v1alpha1",
        "kind": "EnergyProfile",
        "metadata": {"name": name},
        "spec": {
            "modelName": "resnet18",
            "modelDigest": "builtin:resnet18;input=3x224x224xFloat32",
            "gpuProduct": "NVIDIA-H100-80GB-HBM3",
            "runtimeVersion": "0.1.0",
            "model": {"source": {"builtin": "resnet18"}, "input": {"shape": [3, 224, 224]}},
            "candidates": [1, 2, 4, 8],
        },
    })
}

fn inference_service_cases() -> Vec<Case> {
    vec![
        Case {
            what: "latencyMs 0",
            mutate: |v| set(v, "/spec/slo/latencyMs", json!(0)),
            field: "spec.slo.latencyMs",
            says: "should be greater than 0",
            structured: true,
        },
        Case {
            what: "negative latencyMs",
            mutate: |v| set(v, "/spec/slo/latencyMs", json!(-5)),
            field: "spec.slo.latencyMs",
            says: "should be greater than 0",
            structured: true,
        },
        Case {
            what: "latencyMs over an hour",
            mutate: |v| set(v, "/spec/slo/latencyMs", json!(3_600_001)),
            field: "spec.slo.latencyMs",
            says: "should be less than or equal to 3600000",
            structured: true,
        },
        Case {
            what: "latencyMs as a string",
            mutate: |v| set(v, "/spec/slo/latencyMs", json!("50")),
            field: "spec.slo.latencyMs",
            says: "must be of type number",
            structured: true,
        },
        Case {
            what: "missing latencyMs",
            mutate: |v| remove(v, "/spec/slo/latencyMs"),
            field: "spec.slo.latencyMs",
            says: "Required value",
            structured: true,
        },
        Case {
            what: "percentile 90",
            mutate: |v| set(v, "/spec/slo/percentile", json!(90)),
            field: "spec.slo.percentile",
            says: "Unsupported value: 90",
            structured: true,
        },
        Case {
            what: "a model format the runtime cannot read",
            mutate: |v| set(v, "/spec/model/format", json!("onnx")),
            field: "spec.model.format",
            says: "Unsupported value: \"onnx\"",
            structured: true,
        },
        Case {
            what: "unknown whenUnattainable",
            mutate: |v| set(v, "/spec/slo/whenUnattainable", json!("Ignore")),
            field: "spec.slo.whenUnattainable",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "unknown onDrift",
            mutate: |v| set(v, "/spec/onDrift", json!("Ignore")),
            field: "spec.onDrift",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "empty candidates",
            mutate: |v| set(v, "/spec/batching/candidates", json!([])),
            field: "spec.batching.candidates",
            says: "at least 1 items",
            structured: true,
        },
        Case {
            what: "candidate 0",
            mutate: |v| set(v, "/spec/batching/candidates", json!([0, 8])),
            field: "spec.batching.candidates",
            says: "Invalid value: 0: spec.batching.candidates in body should be greater than or equal to 1",
            structured: true,
        },
        Case {
            what: "candidate 8192",
            mutate: |v| set(v, "/spec/batching/candidates", json!([1, 8192])),
            field: "spec.batching.candidates",
            says: "Invalid value: 8192: spec.batching.candidates in body should be less than or equal to 4096",
            structured: true,
        },
        Case {
            what: "33 candidates",
            mutate: |v| {
                set(
                    v,
                    "/spec/batching/candidates",
                    json!((1..=33).collect::<Vec<u32>>()),
                )
            },
            field: "spec.batching.candidates",
            says: "at most 32 items",
            structured: true,
        },
        Case {
            what: "unknown batching mode",
            mutate: |v| set(v, "/spec/batching/mode", json!("manual")),
            field: "spec.batching.mode",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "batchSize 0",
            mutate: |v| set(v, "/spec/batching/batchSize", json!(0)),
            field: "spec.batching.batchSize",
            says: "greater than or equal to 1",
            structured: true,
        },
        Case {
            what: "unknown builtin",
            mutate: |v| set(v, "/spec/model/source/builtin", json!("resnet9000")),
            field: "spec.model.source.builtin",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "gs:// uri",
            mutate: |v| {
                remove(v, "/spec/model/source/builtin");
                set(v, "/spec/model/source/uri", json!("gs://bucket/model.pt"));
            },
            field: "spec.model.source.uri",
            says: "should match",
            structured: true,
        },
        Case {
            what: "s3 endpoint with a path",
            mutate: |v| {
                remove(v, "/spec/model/source/builtin");
                set(v, "/spec/model/source/uri", json!("s3://models/model.pt"));
                set(
                    v,
                    "/spec/model/source/s3",
                    json!({"endpoint": "http://minio:9000/models"}),
                );
            },
            field: "spec.model.source.s3.endpoint",
            says: "should match",
            structured: true,
        },
        Case {
            what: "s3 region not a region name",
            mutate: |v| {
                remove(v, "/spec/model/source/builtin");
                set(v, "/spec/model/source/uri", json!("s3://models/model.pt"));
                set(v, "/spec/model/source/s3", json!({"region": "EU West"}));
            },
            field: "spec.model.source.s3.region",
            says: "should match",
            structured: true,
        },
        Case {
            what: "file:// uri without a path",
            mutate: |v| {
                remove(v, "/spec/model/source/builtin");
                set(v, "/spec/model/source/uri", json!("file://"));
            },
            field: "spec.model.source.uri",
            says: "should match",
            structured: true,
        },
        Case {
            what: "both uri and builtin",
            mutate: |v| set(v, "/spec/model/source/uri", json!("file:///models/m.pt")),
            field: "spec.model.source",
            says: "\"spec.model.source\" must validate one and only one schema (oneOf)",
            structured: false,
        },
        Case {
            what: "neither uri nor builtin",
            mutate: |v| set(v, "/spec/model/source", json!({})),
            field: "spec.model.source",
            says: "\"spec.model.source\" must validate one and only one schema (oneOf)",
            structured: false,
        },
        Case {
            what: "bad digest",
            mutate: |v| set(v, "/spec/model/source/digest", json!("md5:abc")),
            field: "spec.model.source.digest",
            says: "should match",
            structured: true,
        },
        Case {
            what: "empty shape",
            mutate: |v| set(v, "/spec/model/input/shape", json!([])),
            field: "spec.model.input.shape",
            says: "at least 1 items",
            structured: true,
        },
        Case {
            what: "shape dimension 0",
            mutate: |v| set(v, "/spec/model/input/shape", json!([3, 0, 224])),
            field: "spec.model.input.shape",
            says: "Invalid value: 0: spec.model.input.shape in body should be greater than or equal to 1",
            structured: true,
        },
        Case {
            what: "9 dimensions",
            mutate: |v| {
                set(
                    v,
                    "/spec/model/input/shape",
                    json!([1, 1, 1, 1, 1, 1, 1, 1, 1]),
                )
            },
            field: "spec.model.input.shape",
            says: "at most 8 items",
            structured: true,
        },
        Case {
            what: "unknown dtype",
            mutate: |v| set(v, "/spec/model/input/dtype", json!("float64")),
            field: "spec.model.input.dtype",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "missing shape",
            mutate: |v| remove(v, "/spec/model/input/shape"),
            field: "spec.model.input.shape",
            says: "Required value",
            structured: true,
        },
        Case {
            what: "replicas.min 0",
            mutate: |v| set(v, "/spec/replicas/min", json!(0)),
            field: "spec.replicas.min",
            says: "greater than or equal to 1",
            structured: true,
        },
        Case {
            what: "replicas.max 1001",
            mutate: |v| set(v, "/spec/replicas/max", json!(1001)),
            field: "spec.replicas.max",
            says: "less than or equal to 1000",
            structured: true,
        },
        Case {
            what: "gpu.count 2",
            mutate: |v| set(v, "/spec/gpu/count", json!(2)),
            field: "spec.gpu.count",
            says: "less than or equal to 1",
            structured: true,
        },
        Case {
            what: "negative gpu.count",
            mutate: |v| set(v, "/spec/gpu/count", json!(-1)),
            field: "spec.gpu.count",
            says: "greater than or equal to 0",
            structured: true,
        },
        Case {
            what: "gpu.product with a space",
            mutate: |v| set(v, "/spec/gpu/product", json!("NVIDIA H100")),
            field: "spec.gpu.product",
            says: "should match",
            structured: true,
        },
        Case {
            what: "empty gpu.resource",
            mutate: |v| set(v, "/spec/gpu/resource", json!("")),
            field: "spec.gpu.resource",
            says: "at least 1 chars long",
            structured: true,
        },
        Case {
            what: "profiling.windows 2",
            mutate: |v| set(v, "/spec/profiling/windows", json!(2)),
            field: "spec.profiling.windows",
            says: "greater than or equal to 3",
            structured: true,
        },
        Case {
            what: "profiling.windowSeconds 0.05",
            mutate: |v| set(v, "/spec/profiling/windowSeconds", json!(0.05)),
            field: "spec.profiling.windowSeconds",
            says: "greater than or equal to 0.1",
            structured: true,
        },
        Case {
            what: "negative profiling.maxSpread",
            mutate: |v| set(v, "/spec/profiling/maxSpread", json!(-0.1)),
            field: "spec.profiling.maxSpread",
            says: "greater than or equal to 0",
            structured: true,
        },
        Case {
            what: "unknown precision",
            mutate: |v| set(v, "/spec/profiling/precision", json!("int8")),
            field: "spec.profiling.precision",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "missing spec.model",
            mutate: |v| remove(v, "/spec/model"),
            field: "spec.model",
            says: "Required value",
            structured: true,
        },
        Case {
            what: "missing spec.slo",
            mutate: |v| remove(v, "/spec/slo"),
            field: "spec.slo",
            says: "Required value",
            structured: true,
        },
        Case {
            what: "missing spec",
            mutate: |v| remove(v, "/spec"),
            field: "spec",
            says: "Required value",
            structured: true,
        },
    ]
}

fn energy_profile_cases() -> Vec<Case> {
    vec![
        Case {
            what: "missing gpuProduct",
            mutate: |v| remove(v, "/spec/gpuProduct"),
            field: "spec.gpuProduct",
            says: "Required value",
            structured: true,
        },
        Case {
            what: "empty modelName",
            mutate: |v| set(v, "/spec/modelName", json!("")),
            field: "spec.modelName",
            says: "at least 1 chars long",
            structured: true,
        },
        Case {
            what: "gpuProduct over 63 chars",
            mutate: |v| set(v, "/spec/gpuProduct", json!("x".repeat(64))),
            field: "spec.gpuProduct",
            says: "at most 63 chars long",
            structured: true,
        },
        Case {
            what: "missing runtimeVersion",
            mutate: |v| remove(v, "/spec/runtimeVersion"),
            field: "spec.runtimeVersion",
            says: "Required value",
            structured: true,
        },
        Case {
            what: "empty candidates",
            mutate: |v| set(v, "/spec/candidates", json!([])),
            field: "spec.candidates",
            says: "at least 1 items",
            structured: true,
        },
        Case {
            what: "candidate 5000",
            mutate: |v| set(v, "/spec/candidates", json!([5000])),
            field: "spec.candidates",
            says: "Invalid value: 5000: spec.candidates in body should be less than or equal to 4096",
            structured: true,
        },
        Case {
            what: "unknown precision",
            mutate: |v| set(v, "/spec/precision", json!("int8")),
            field: "spec.precision",
            says: "Unsupported value",
            structured: true,
        },
        Case {
            what: "protocol.windows 51",
            mutate: |v| set(v, "/spec/protocol/windows", json!(51)),
            field: "spec.protocol.windows",
            says: "less than or equal to 50",
            structured: true,
        },
        Case {
            what: "both uri and builtin",
            mutate: |v| set(v, "/spec/model/source/uri", json!("pvc://models/m.pt")),
            field: "spec.model.source",
            says: "\"spec.model.source\" must validate one and only one schema (oneOf)",
            structured: false,
        },
        Case {
            what: "string candidate",
            mutate: |v| set(v, "/spec/candidates", json!(["8"])),
            field: "spec.candidates",
            says: "spec.candidates in body must be of type integer",
            structured: true,
        },
    ]
}

fn dynamic_api(client: Client, kind: &str) -> Api<DynamicObject> {
    let resource = if kind == "EnergyProfile" {
        ApiResource::erase::<EnergyProfile>(&())
    } else {
        ApiResource::erase::<InferenceService>(&())
    };
    Api::namespaced_with(client, NS, &resource)
}

/// Creates the base object (which must succeed: the cases break a valid object), then each case.
async fn check_rejections(
    c: &TestCluster,
    kind: &str,
    base: fn(&str) -> Value,
    cases: Vec<Case>,
) -> Result<()> {
    let api = dynamic_api(c.client(), kind);
    let prefix = kind.to_ascii_lowercase();
    let valid: DynamicObject = serde_json::from_value(base(&format!("{prefix}-valid")))?;
    api.create(&PostParams::default(), &valid)
        .await
        .context("the valid base object is rejected")?;

    let mut problems = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut obj = base(&format!("{prefix}-invalid-{i}"));
        (case.mutate)(&mut obj);
        let obj: DynamicObject = serde_json::from_value(obj)?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => problems.push(format!(
                "{}: ACCEPTED (expected a 422 naming {})",
                case.what, case.field
            )),
            Err(kube::Error::Api(status)) => {
                let causes: Vec<(String, String)> = status
                    .details
                    .as_ref()
                    .map(|d| {
                        d.causes
                            .iter()
                            .map(|c| (c.field.clone(), c.message.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let named = !case.structured || causes.iter().any(|(field, _)| field == case.field);
                if status.code != 422 || status.reason != "Invalid" {
                    problems.push(format!(
                        "{}: {} {} instead of 422 Invalid: {}",
                        case.what, status.code, status.reason, status.message
                    ));
                } else if !named
                    || !status.message.contains(case.field)
                    || !status.message.contains(case.says)
                {
                    problems.push(format!(
                        "{}: expected field {} and {:?} in the message; got {:?} with causes {causes:?}",
                        case.what, case.field, case.says, status.message
                    ));
                }
            }
            Err(e) => problems.push(format!("{}: unexpected error {e}", case.what)),
        }
    }
    ensure!(
        problems.is_empty(),
        "{} of {} cases:\n  {}",
        problems.len(),
        cases.len(),
        problems.join("\n  ")
    );
    Ok(())
}

async fn invalid_inference_services(c: &TestCluster) -> Result<()> {
    check_rejections(
        c,
        "InferenceService",
        base_inference_service,
        inference_service_cases(),
    )
    .await
}

async fn invalid_energy_profiles(c: &TestCluster) -> Result<()> {
    check_rejections(
        c,
        "EnergyProfile",
        base_energy_profile,
        energy_profile_cases(),
    )
    .await
}

/// `kubectl create` (server-side validation only, as the server's message is the point) fails and
/// prints the server's field error.
async fn kubectl_rejections(c: &TestCluster) -> Result<()> {
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut v = base_inference_service("kubectl-bad-latency");
                set(&mut v, "/spec/slo/latencyMs", json!(0));
                v
            },
            "spec.slo.latencyMs",
        ),
        (
            {
                let mut v = base_inference_service("kubectl-bad-percentile");
                set(&mut v, "/spec/slo/percentile", json!(90));
                v
            },
            "spec.slo.percentile",
        ),
        (
            {
                let mut v = base_energy_profile("kubectl-bad-candidates");
                set(&mut v, "/spec/candidates", json!([]));
                v
            },
            "spec.candidates",
        ),
    ];
    for (obj, field) in cases {
        let yaml = serde_yaml::to_string(&obj)?;
        let out = c
            .kubectl_with_stdin(["create", "--validate=false", "-n", NS, "-f", "-"], &yaml)
            .await?;
        ensure!(
            !out.success(),
            "kubectl accepted an object with a bad {field}:\n{out}"
        );
        ensure!(
            out.stderr.contains("is invalid") && out.stderr.contains(field),
            "stderr does not name {field}:\n{out}"
        );
    }
    Ok(())
}

/// A 1.20 server ignores `fieldValidation=Strict`: unknown fields are dropped, not rejected.
async fn unknown_fields_are_pruned(c: &TestCluster) -> Result<()> {
    let api = dynamic_api(c.client(), "InferenceService");
    let mut obj = base_inference_service("with-unknown-fields");
    set(&mut obj, "/spec/bogus", json!(1));
    set(&mut obj, "/spec/slo/latencyMS", json!(10));
    let created = api
        .create(&PostParams::default(), &serde_json::from_value(obj)?)
        .await?;
    let spec = &created.data["spec"];
    ensure!(
        spec.get("bogus").is_none() && spec["slo"].get("latencyMS").is_none(),
        "not pruned: {spec}"
    );
    ensure!(spec["slo"]["latencyMs"] == json!(50), "{spec}");
    Ok(())
}

fn status_patch(phase: &str, batch: u32, joules: f64) -> Value {
    json!({"status": {
        "phase": phase,
        "observedGeneration": 1,
        "profileRef": "resnet18-nvidia-h100-80gb-hbm3-0123456789",
        "selected": {
            "batchSize": batch,
            "maxQueueDelayMs": 4.5,
            "expectedLatencyMs": 31.5,
            "percentile": 99,
            "joulesPerInference": joules,
            "batch1JoulesPerInference": 0.61,
            "sloAttainable": true,
            "meter": "nvml-counter",
            "reason": "least energy per inference that meets p99 <= 40 ms",
        },
        "replicas": {"desired": 2, "ready": 2, "reason": "2 for 950 inferences/s observed"},
        "observed": {"requestsPerSecond": 950.0, "inferencesPerSecond": 950.0,
                     "joulesPerInference": 0.145, "latencyP99Ms": 28.5, "pods": 2,
                     "windowSeconds": 30.0, "observedAt": "2025-01-01T00:00:30Z"},
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Serving", "message": "2/2 replicas ready",
            "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1,
        }],
    }})
}

async fn status_subresource(c: &TestCluster) -> Result<()> {
    let api: Api<InferenceService> = Api::namespaced(c.client(), NS);
    let raw = dynamic_api(c.client(), "InferenceService");
    let name = "status-demo";
    let mut obj = base_inference_service(name);
    set(&mut obj, "/spec/slo/latencyMs", json!(40));
    raw.create(&PostParams::default(), &serde_json::from_value(obj)?)
        .await?;
    let created = api.get(name).await?;
    ensure!(
        created.metadata.generation == Some(1),
        "generation {:?} after create",
        created.metadata.generation
    );
    ensure!(
        created.status.is_none(),
        "a new object has status {:?}",
        created.status
    );

    // A status write does not bump the generation, and what was written reads back through the types.
    let patched = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(status_patch("Serving", 16, 0.123)),
        )
        .await?;
    ensure!(
        patched.metadata.generation == Some(1),
        "status patch bumped generation to {:?}",
        patched.metadata.generation
    );
    let status = patched
        .status
        .clone()
        .ok_or_else(|| anyhow!("no status after the status patch"))?;
    ensure!(
        status.phase == Some(Phase::Serving),
        "phase {:?}",
        status.phase
    );
    let selected = status
        .selected
        .as_ref()
        .ok_or_else(|| anyhow!("no status.selected"))?;
    ensure!(
        selected.batch_size == 16 && selected.joules_per_inference == Some(0.123),
        "{selected:?}"
    );
    ensure!(
        status.replicas.as_ref().is_some_and(|r| r.ready == 2) && status.conditions.len() == 1,
        "{status:?}"
    );

    // The status endpoint ignores spec changes, the main endpoint ignores status changes.
    let p = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"slo": {"latencyMs": 7}}, "status": {"phase": "Degraded"}}),
            ),
        )
        .await?;
    ensure!(
        p.spec.slo.latency_ms == 40.0,
        "a /status patch changed the spec: {:?}",
        p.spec.slo
    );
    ensure!(
        p.status.as_ref().and_then(|s| s.phase) == Some(Phase::Degraded),
        "{:?}",
        p.status
    );
    let p = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await?;
    ensure!(
        p.status.as_ref().and_then(|s| s.phase) == Some(Phase::Degraded),
        "the main endpoint changed status: {:?}",
        p.status
    );
    ensure!(
        p.metadata.generation == Some(1),
        "generation {:?}",
        p.metadata.generation
    );

    // Metadata changes do not bump the generation; spec changes do, and keep the status.
    let p = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "green"}}})),
        )
        .await?;
    ensure!(
        p.metadata.generation == Some(1),
        "a label change bumped generation to {:?}",
        p.metadata.generation
    );
    let p = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"slo": {"latencyMs": 45}}})),
        )
        .await?;
    ensure!(
        p.metadata.generation == Some(2),
        "a spec change left generation at {:?}",
        p.metadata.generation
    );
    ensure!(
        p.status.as_ref().and_then(|s| s.phase) == Some(Phase::Degraded),
        "a spec change lost the status: {:?}",
        p.status
    );
    let p = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"slo": {"latencyMs": 40}}})),
        )
        .await?;
    ensure!(
        p.metadata.generation == Some(3),
        "generation {:?}",
        p.metadata.generation
    );

    // The status schema is enforced on /status too.
    let bad = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Done"}})),
        )
        .await;
    match bad {
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("status.phase") => {}
        other => bail!("status.phase Done: expected a 422 naming status.phase, got {other:?}"),
    }
    let bad = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"selected": {"batchSize": "sixteen"}}})),
        )
        .await;
    match bad {
        Err(kube::Error::Api(s))
            if s.code == 422 && s.message.contains("status.selected.batchSize") => {}
        other => bail!("status.selected.batchSize string: expected a 422 naming it, got {other:?}"),
    }

    // Leave it Serving for the printer-column check.
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(status_patch("Serving", 16, 0.123)),
    )
    .await?;
    Ok(())
}

/// Whitespace-separated header and rows of `kubectl get` output.
fn table(stdout: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| anyhow!("empty kubectl output"))?
        .split_whitespace()
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    Ok((header, rows))
}

fn is_age(s: &str) -> bool {
    s.len() >= 2
        && s.ends_with(['s', 'm'])
        && s[..s.len() - 1]
            .chars()
            .all(|c| c.is_ascii_digit() || c == 'm')
}

async fn printer_columns(c: &TestCluster) -> Result<()> {
    // InferenceService `status-demo` was left Serving at batch 16, 0.123 J, SLO 40 ms, 2 ready replicas.
    for resource in [
        "gis",
        "inferenceservices",
        "inferenceservice.greenbatch.dev",
    ] {
        let out = c
            .kubectl(["get", resource, "status-demo", "-n", NS])
            .await?
            .ok()?;
        let (header, rows) = table(&out.stdout)?;
        ensure!(
            header == ["NAME", "PHASE", "BATCH", "SLO-MS", "J/INF", "AGE"],
            "kubectl get {resource}: header {header:?}"
        );
        ensure!(rows.len() == 1, "{out}");
        let row = &rows[0];
        ensure!(
            row.len() == 6
                && row[..5] == ["status-demo", "Serving", "16", "40", "0.123"]
                && is_age(&row[5]),
            "row {row:?}"
        );
    }
    let wide = c
        .kubectl(["get", "gis", "status-demo", "-n", NS, "-o", "wide"])
        .await?
        .ok()?;
    let (header, rows) = table(&wide.stdout)?;
    ensure!(
        header
            == [
                "NAME",
                "PHASE",
                "BATCH",
                "SLO-MS",
                "J/INF",
                "REPLICAS",
                "INF/S",
                "OBSERVED-J/INF",
                "AGE"
            ],
        "-o wide header {header:?}"
    );
    ensure!(
        rows.first()
            .is_some_and(|r| r.get(5..8).is_some_and(|c| c == ["2", "950", "0.145"])),
        "-o wide rows {rows:?}"
    );

    // An EnergyProfile with a complete status.
    let profiles: Api<EnergyProfile> = Api::namespaced(c.client(), NS);
    let raw = dynamic_api(c.client(), "EnergyProfile");
    let name = "resnet18-h100";
    raw.create(
        &PostParams::default(),
        &serde_json::from_value(base_energy_profile(name))?,
    )
    .await?;
    let status = json!({"status": {
        "phase": "Complete",
        "bestBatchSize": 32,
        "bestJoulesPerInference": 0.05,
        "table": {
            "meter": "nvml-counter",
            "idleWatts": 61.0,
            "rows": [{
                "batchSize": 32, "latencyMs": {"p50": 20.0, "p95": 22.0, "p99": 23.5},
                "throughputPerSecond": 1600.0, "windows": 5, "avgWatts": 80.0, "joulesPerInference": 0.05,
            }],
        },
        "measuredOn": {"device": "cuda:0", "deviceName": "NVIDIA H100 80GB HBM3", "randomWeights": true},
    }});
    let p = profiles
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    let st = p.status.ok_or_else(|| anyhow!("no EnergyProfile status"))?;
    ensure!(
        st.best_batch_size == Some(32) && st.table.as_ref().is_some_and(|t| t.rows.len() == 1),
        "{st:?}"
    );

    let mut outputs = Vec::new();
    for resource in ["energyprofiles", "gep"] {
        let out = c.kubectl(["get", resource, name, "-n", NS]).await?.ok()?;
        let (header, rows) = table(&out.stdout)?;
        ensure!(
            header
                == [
                    "NAME",
                    "MODEL",
                    "GPU",
                    "PHASE",
                    "BEST-BATCH",
                    "J/INF",
                    "METER",
                    "AGE"
                ],
            "kubectl get {resource}: header {header:?}"
        );
        let row = rows.first().ok_or_else(|| anyhow!("no rows:\n{out}"))?;
        ensure!(
            row.len() == 8
                && row[..7]
                    == [
                        name,
                        "resnet18",
                        "NVIDIA-H100-80GB-HBM3",
                        "Complete",
                        "32",
                        "0.05",
                        "nvml-counter"
                    ]
                && is_age(&row[7]),
            "kubectl get {resource}: row {row:?}"
        );
        outputs.push(row[..7].to_vec());
    }
    ensure!(
        outputs[0] == outputs[1],
        "energyprofiles and gep differ: {outputs:?}"
    );

    // The `greenbatch` category lists both kinds.
    let out = c
        .kubectl(["get", "greenbatch", "-n", NS, "-o", "name"])
        .await?
        .ok()?;
    ensure!(
        out.stdout
            .contains("inferenceservice.greenbatch.dev/status-demo")
            && out
                .stdout
                .contains(&format!("energyprofile.greenbatch.dev/{name}")),
        "kubectl get greenbatch:\n{out}"
    );
    Ok(())
}
