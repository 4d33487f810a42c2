//! Writes the CRD YAML of the greenbatch API into a directory (default: both `crds/` of the
//! workspace and the Helm chart's `charts/greenbatch/files/crds/`), or with `--check` fails when the
//! checked-in files differ from what the types generate.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chart_crds = crds.with_file_name("charts").join("greenbatch/files/crds");
    let mut dirs = vec![crds, chart_crds];
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!(
                    "usage: crdgen [--check] [DIR]\n  writes (or checks) the CRD YAML files in DIR (default: crds/ and charts/greenbatch/files/crds/)"
                );
                return ExitCode::SUCCESS;
            }
            other => dirs = vec![PathBuf::from(other)],
        }
    }
    let mut stale = Vec::new();
    let files = dirs.iter().flat_map(|dir| {
        greenbatch_crds::all_crds()
            .into_iter()
            .map(move |crd| (dir.join(greenbatch_crds::crd_file_name(&crd)), crd))
    });
    for (path, crd) in files {
        let yaml = match greenbatch_crds::crd_yaml(&crd) {
            Ok(y) => y,
            Err(e) => {
                eprintln!("crdgen: cannot render {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(yaml.as_str()) {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        } else {
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "crdgen: out of date: {} (run `cargo run -p greenbatch-crds --bin crdgen`)",
            stale.join(", ")
        );
        ExitCode::from(1)
    }
}
