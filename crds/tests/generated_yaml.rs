//! The checked-in `crds/*.yaml` (what `kubectl apply -f crds/` installs) and the Helm chart's copy in
//! `charts/greenbatch/files/crds/` (which the chart renders as templates) must be exactly what the Rust types generate.

use std::collections::BTreeSet;
use std::path::PathBuf;

const REGENERATE: &str = "run `cargo run -p greenbatch-crds --bin crdgen` and commit the result";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the CRD YAML is checked in: beside the types, and in the chart (Helm cannot read files
/// outside a chart, so it holds a copy).
fn crd_dirs() -> [PathBuf; 2] {
    [
        crds_dir(),
        crds_dir()
            .with_file_name("charts")
            .join("greenbatch/files/crds"),
    ]
}

#[test]
fn checked_in_crd_yaml_matches_the_types() {
    let mut stale = Vec::new();
    for (dir, crd) in crd_dirs().into_iter().flat_map(|dir| {
        greenbatch_crds::all_crds()
            .into_iter()
            .map(move |c| (dir.clone(), c))
    }) {
        let file = dir.join(greenbatch_crds::crd_file_name(&crd));
        let generated = greenbatch_crds::crd_yaml(&crd).expect("CRD renders as YAML");
        match std::fs::read_to_string(&file) {
            Ok(checked_in) if checked_in == generated => {}
            Ok(checked_in) => {
                let first_diff = checked_in
                    .lines()
                    .zip(generated.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
                stale.push(format!(
                    "{} differs from the generated YAML from line {} on:\n  checked in: {:?}\n  generated:  {:?}",
                    file.display(),
                    first_diff + 1,
                    checked_in.lines().nth(first_diff).unwrap_or("<end of file>"),
                    generated.lines().nth(first_diff).unwrap_or("<end of file>"),
                ));
            }
            Err(e) => stale.push(format!("{} cannot be read: {e}", file.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "the checked-in CRDs are out of date ({REGENERATE}):\n{}",
        stale.join("\n")
    );
}

#[test]
fn no_stray_crd_yaml_is_checked_in() {
    let expected: BTreeSet<String> = greenbatch_crds::all_crds()
        .iter()
        .map(greenbatch_crds::crd_file_name)
        .collect();
    for dir in crd_dirs() {
        let present: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
            .collect();
        assert_eq!(
            present,
            expected,
            "{} must hold exactly one YAML file per CRD of all_crds() (a stray file would still be applied by \
             `kubectl apply -f crds/` or rendered by the chart); {REGENERATE} and delete files of removed CRDs",
            dir.display()
        );
    }
}

/// `null` inside an `enum` (what schemars emits for an `Option<SomeEnum>` field) breaks the CRDs on a
/// Kubernetes 1.20 API server: creating or applying them fails with "spec.versions: Invalid value: ...
/// per-version schemas may not all be set to identical values (top-level validation should be used
/// instead)", and kubectl's client-side validation refuses them with `unknown object type "nil"`.
#[test]
fn schemas_have_no_null_in_enums() {
    fn walk(v: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(values)) = map.get("enum")
                    && values.iter().any(serde_json::Value::is_null)
                {
                    found.push(path.to_string());
                }
                for (k, child) in map {
                    walk(child, &format!("{path}.{k}"), found);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for crd in greenbatch_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let v = serde_json::to_value(&crd.spec).expect("CRD spec serializes");
        walk(&v, &format!("{name}: spec"), &mut found);
    }
    assert!(
        found.is_empty(),
        "enum lists containing null (rejected by a 1.20 API server and by kubectl validation):\n  {}",
        found.join("\n  ")
    );
}
