//! The imports read as the architecture (docs/architecture.md): the API types and the pure decision
//! core at the bottom, importing nothing of ours above them; no two files of a crate importing
//! each other, directly or around a loop; and the operator's pure modules never reaching its
//! I/O modules. Read from the sources, so a new import that breaks the layering fails here.

use greenbatch_tests::imports::{ImportGraph, display};
use greenbatch_tests::workspace_root;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Every crate root of the workspace: each library, binary and extra binary target.
fn crate_roots() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut roots = Vec::new();
    for member in ["core", "crds", "plot", "runtime", "operator", "tests"] {
        let src = root.join(member).join("src");
        for file in ["lib.rs", "main.rs"] {
            if src.join(file).is_file() {
                roots.push(src.join(file));
            }
        }
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            let mut bins: Vec<PathBuf> = bins.filter_map(|e| e.ok().map(|e| e.path())).collect();
            bins.sort();
            roots.extend(
                bins.into_iter()
                    .filter(|p| p.extension() == Some("rs".as_ref())),
            );
        }
    }
    roots
}

#[test]
fn no_files_of_a_crate_import_each_other() {
    let roots = crate_roots();
    assert!(roots.len() >= 9, "crate roots found: {roots:?}");
    let mut failures = Vec::new();
    let mut files = 0;
    for root in &roots {
        let graph = ImportGraph::of_crate(root).unwrap_or_else(|e| panic!("{e}"));
        files += graph.modules().count();
        for cycle in graph.cycles() {
            let members: Vec<String> = cycle.iter().map(|m| display(m)).collect();
            failures.push(format!(
                "{}: {} import each other:\n{}",
                root.display(),
                members.join(", "),
                graph.explain(&cycle)
            ));
        }
    }
    assert!(
        files > 60,
        "only {files} files read: is the module walk broken?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The workspace crates (`greenbatch-*`) that a member's Cargo.toml depends on, in any section.
fn workspace_dependencies(member: &str) -> BTreeSet<String> {
    let path = workspace_root().join(member).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut found = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
        } else if section.ends_with("dependencies")
            && let Some(name) = line.split(['=', '.', ' ']).next()
            && name.starts_with("greenbatch-")
        {
            found.insert(name.to_string());
        }
    }
    found
}

#[test]
fn the_api_types_and_the_decision_core_import_nothing_of_ours_above_them() {
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(workspace_dependencies("core"), set(&[]));
    assert_eq!(workspace_dependencies("crds"), set(&["greenbatch-core"]));
    assert_eq!(workspace_dependencies("plot"), set(&["greenbatch-core"]));
    // The operator never links libtorch; the runtime never the controller.
    assert!(!workspace_dependencies("operator").contains("greenbatch-runtime"));
    assert!(!workspace_dependencies("runtime").contains("greenbatch-operator"));
    // The check reads what it claims to: the operator does use the API crate.
    assert!(workspace_dependencies("operator").contains("greenbatch-crds"));
}

/// Checks that each module of a crate imports only modules of the layers before its own (not even
/// one beside it). Every module must be placed, so a new module is placed deliberately. A file of
/// tests (`x::tests`) sits in `x`'s layer and may also use `x`.
fn assert_layered(crate_root: &str, layers: &[&[&str]]) {
    let graph =
        ImportGraph::of_crate(&workspace_root().join(crate_root)).unwrap_or_else(|e| panic!("{e}"));
    let layer_of = |module: &str| layers.iter().position(|layer| layer.contains(&module));
    let mut problems = Vec::new();
    for module in graph.modules() {
        let name = display(module);
        let owner = name.strip_suffix("::tests").unwrap_or(&name).to_string();
        let Some(layer) = layer_of(&owner) else {
            problems.push(format!("{name} is in no layer: place it"));
            continue;
        };
        for (target, example) in graph.imports(module) {
            let target = display(target);
            if target == owner {
                continue;
            }
            match layer_of(&target) {
                Some(t) if t < layer => {}
                Some(_) => problems.push(format!(
                    "{name} (layer {layer}) imports {target}, which is not below it (`{example}`)"
                )),
                None => problems.push(format!("{target} is in no layer: place it")),
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{crate_root}: imports break the documented layers (docs/architecture.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_operator_s_pure_modules_never_reach_its_io() {
    // names/config → validate → resources → load → observe → sizing → plan → plot/prune (all
    // pure) → apply/scrape/pruner (the API and the pods) → controller → leader/server → the
    // library's root.
    assert_layered(
        "operator/src/lib.rs",
        &[
            &["names", "config", "error", "metrics", "testutil"],
            &["validate"],
            &["resources::model_mount"],
            &["resources"],
            &["load"],
            &["memory"],
            &["observe"],
            &["sizing"],
            &["plan"],
            &["plot", "prune"],
            &["apply", "scrape", "pruner"],
            &["controller"],
            &["leader", "server"],
            &["crate"],
        ],
    );
}

#[test]
fn the_runtime_s_commands_build_on_shared_parts_and_never_on_each_other() {
    // The pure parts at the bottom (the v2 decoding, the batch queue, the adaptive controller, the
    // table); then the devices, meters and models; the measurement protocol; `setup` (arguments
    // into components); then the model thread and the HTTP side; the commands on top, importing
    // none of each other.
    assert_layered(
        "runtime/src/main.rs",
        &[
            &[
                "error",
                "clock",
                "table",
                "serve::tensor",
                "serve::wire",
                "serve::batcher",
                "serve::metrics",
                "fetch::aws",
                "fetch::tries",
            ],
            &["serve::v2::json_data"],
            &["serve::v2"],
            &[
                "serve::v2_grpc",
                "fetch::s3",
                "fetch::http_client",
                "fetch::redact",
            ],
            &["fetch::credentials", "fetch::settings"],
            &["fetch::remote"],
            &[
                "device",
                "fetch",
                "output",
                "publish",
                "profile_input",
                "meter",
                "model::script",
                "serve::adaptive",
            ],
            &["meter::nvml", "meter::rapl", "meter::synthetic", "model"],
            &["cli", "protocol", "serve::staging"],
            &["setup"],
            &["measure", "serve::executor"],
            &["serve::energy", "serve::inference"],
            &["serve::server", "serve::grpc"],
            &["profile_cmd", "tune_cmd", "loadgen", "serve"],
            &["crate"],
        ],
    );
}
