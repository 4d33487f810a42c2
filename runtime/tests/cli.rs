//! The runtime binary end to end on the CPU with real libtorch: tiny TorchScript fixtures (made by
//! `fixtures/make_fixtures.py`), the synthetic meter (a labelled test double) for energy, and every
//! bad input mapped to its own exit code with nothing half-written.

mod common;
use common::{FAST, dir_is_empty, fixture, output_text as text};
use greenbatch_core::MeterKind;
use greenbatch_crds::{EnergyProfileStatus, ProfilePhase};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"));
    c.env("GREENBATCH_LOG", "warn")
        .env_remove("GREENBATCH_METER");
    c
}

fn profile(model: &str, extra: &[&str]) -> Output {
    bin()
        .arg("profile")
        .args(["--model", model, "--shape", "3,16,16"])
        .args(FAST)
        .args(extra)
        .output()
        .unwrap()
}

/// `c` run with its data segment (heap and private mappings) limited to `kib`: the CPU's stand-in
/// for a GPU without room for the model.
fn with_memory_limit(c: &mut Command, kib: u64) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: kib * 1024,
        rlim_max: kib * 1024,
    };
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn a_measurement_past_its_time_limit_gives_up_saying_why() {
    // Four sizes of 20 windows of half a second: ~40 s, limited to 2.
    let started = std::time::Instant::now();
    let o = bin()
        .arg("profile")
        .args(["--model", &fixture("tiny_cnn.pt"), "--shape", "3,16,16"])
        .args([
            "--device",
            "cpu",
            "--meter",
            "synthetic",
            "--candidates",
            "1,2,4,8",
        ])
        .args([
            "--windows",
            "20",
            "--window-seconds",
            "0.5",
            "--warmup-seconds",
            "0",
        ])
        .args(["--time-limit-seconds", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    assert!(text(&o).contains("2 s time limit"), "{}", text(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn out_of_memory_while_loading_is_neither_a_panic_nor_a_wrong_input() {
    // A builtin's weights (vgg16: 528 MB) panicked inside tch's layer builders (exit 101); an
    // input too large for the memory was reported as the model rejecting it (exit 5, which
    // sends a user to the shape). Both: exit 8, out of memory, what to try.
    let cases: [(&[&str], u64); 2] = [
        (
            &["--model", "builtin:vgg16", "--shape", "3,32,32"],
            1_000_000,
        ),
        (
            &["--model", &fixture("tiny_cnn.pt"), "--shape", "3,9000,9000"],
            1_500_000,
        ),
    ];
    for (model, kib) in cases {
        let mut c = bin();
        c.arg("profile")
            .args(model)
            .args(["--device", "cpu", "--candidates", "1", "--meter", "none"])
            .args(FAST);
        let o = with_memory_limit(&mut c, kib).output().unwrap();
        let said = text(&o);
        assert!(!said.contains("panicked"), "{model:?}: {said}");
        assert_eq!(o.status.code(), Some(8), "{model:?}: {said}");
        assert!(said.contains("out of memory loading the model"), "{said}");
    }
}

#[test]
fn profiles_a_torchscript_model_into_the_energy_profile_schema() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("profile.json");
    let o = profile(
        &fixture("tiny_cnn.pt"),
        &[
            "--candidates",
            "4,1,2,8",
            "--meter",
            "synthetic",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("meter: synthetic") && stdout.contains("not a measurement"),
        "{stdout}"
    );
    let status: EnergyProfileStatus =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(status.phase, Some(ProfilePhase::Complete));
    let table = status.table.as_ref().unwrap();
    assert_eq!(table.meter, MeterKind::Synthetic);
    assert_eq!(
        table.rows.iter().map(|r| r.batch_size).collect::<Vec<_>>(),
        vec![1, 2, 4, 8]
    );
    for r in &table.rows {
        assert!(
            r.latency_ms.p50 > 0.0 && r.latency_ms.p95 >= r.latency_ms.p50,
            "{r:?}"
        );
        assert!(r.latency_ms.p99.unwrap() >= r.latency_ms.p95);
        assert!(
            r.joules_per_inference.unwrap() > 0.0 && r.windows >= 3,
            "{r:?}"
        );
        assert!(r.throughput_per_second > 0.0);
    }
    assert!(table.idle_watts.is_some());
    assert!(status.best_batch_size.is_some());
    let on = status.measured_on.unwrap();
    assert_eq!(on.device, "cpu");
    assert!(!on.random_weights);
    assert_eq!(
        status.runtime_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // The written JSON is valid as the EnergyProfile status of the CRD (same serde types).
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(raw["table"]["meter"], "synthetic");
    assert!(raw["table"]["rows"][0]["latencyMs"]["p50"].is_number());
}

#[test]
fn without_a_meter_energy_is_null_and_the_profile_says_why() {
    let o = profile(
        &fixture("tuple_out.pt"),
        &["--candidates", "2", "--meter", "none", "--json", "-"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let status: EnergyProfileStatus = serde_json::from_slice(&o.stdout).unwrap();
    let t = status.table.unwrap();
    assert_eq!(t.meter, MeterKind::None);
    assert!(t.meter_note.unwrap().contains("disabled"));
    assert_eq!(t.rows[0].joules_per_inference, None);
    assert_eq!(status.best_batch_size, None);
}

/// The graph preparation a profile measured is recorded, so the profile says what it measured.
fn measured_graph(model: &str, shape: &str, graph: &str) -> (Option<String>, String) {
    let o = bin()
        .args(["profile", "--model", model, "--shape", shape])
        .args(["--candidates", "1", "--meter", "none", "--json", "-"])
        .args(["--graph", graph])
        .args(FAST)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let status: EnergyProfileStatus = serde_json::from_slice(&o.stdout).unwrap();
    (
        status.measured_on.unwrap().graph,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_profile_records_how_the_graph_was_prepared() {
    let conv_bn = fixture("conv_bn.pt");
    for (graph, recorded) in [
        ("none", "torchscript"),
        ("freeze", "torchscript-frozen"),
        ("optimize", "torchscript-frozen-optimized"),
    ] {
        let (got, stderr) = measured_graph(&conv_bn, "3,16,16", graph);
        assert_eq!(got.as_deref(), Some(recorded), "--graph {graph}: {stderr}");
        assert!(!stderr.contains("failed"), "{stderr}");
    }
}

#[test]
fn auto_on_the_cpu_times_both_preparations_and_keeps_the_faster() {
    let o = bin()
        .env("GREENBATCH_LOG", "info")
        .args([
            "profile",
            "--model",
            &fixture("conv_bn.pt"),
            "--shape",
            "3,16,16",
        ])
        .args(["--candidates", "1", "--meter", "none", "--json", "-"])
        .args(FAST)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let timed: Vec<(String, f64)> = stderr
        .lines()
        .filter(|l| l.contains("timed graph preparation"))
        .map(|l| {
            let field = |k: &str| {
                l.split(&format!("{k}="))
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string()
            };
            (field("graph"), field("score_ms").parse().unwrap())
        })
        .collect();
    assert_eq!(
        timed.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(),
        vec!["torchscript-frozen", "torchscript-frozen-optimized"],
        "{stderr}"
    );
    let faster = if timed[0].1 <= timed[1].1 {
        &timed[0].0
    } else {
        &timed[1].0
    };
    let status: EnergyProfileStatus = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status.measured_on.unwrap().graph.as_ref(), Some(faster));
}

#[test]
fn a_model_that_cannot_be_frozen_runs_unfrozen_and_says_why() {
    let (got, stderr) = measured_graph(&fixture("unfreezable.pt"), "4", "optimize");
    assert_eq!(got.as_deref(), Some("torchscript"));
    assert!(
        stderr.contains("freezing failed") && stderr.contains("ModuleContainerIndex"),
        "{stderr}"
    );
}

#[test]
fn builtin_architectures_run_with_random_weights_flagged() {
    let o = bin()
        .args([
            "profile",
            "--model",
            "builtin:squeezenet1_1",
            "--shape",
            "3,64,64",
            "--candidates",
            "1",
            "--meter",
            "none",
            "--json",
            "-",
        ])
        .args(FAST)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let status: EnergyProfileStatus = serde_json::from_slice(&o.stdout).unwrap();
    let on = status.measured_on.unwrap();
    assert!(on.random_weights);
    assert_eq!(on.graph.as_deref(), Some("native-tch-vision"));
}

#[test]
fn each_bad_input_has_its_own_exit_code_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let j = json.to_str().unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--model".into(), fixture("missing.pt")],
            3,
            "cannot read model file",
        ),
        (
            vec!["--model".into(), fixture("corrupt.pt")],
            4,
            "cannot load TorchScript",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--shape".into(),
                "5,16,16".into(),
            ],
            5,
            "rejects the declared input",
        ),
        (
            vec!["--model".into(), fixture("no_batch_dim.pt")],
            5,
            "batch dimension",
        ),
        (
            vec!["--model".into(), "builtin:resnet9000".into()],
            6,
            "unknown builtin",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--model-digest".into(),
                "sha256:not-hex".into(),
            ],
            2,
            "--model-digest",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--model-digest".into(),
                format!("sha256:{}", "1".repeat(64)),
            ],
            14,
            "has digest sha256:",
        ),
        (
            vec![
                "--model".into(),
                "http://127.0.0.1:9/m.pt".into(),
                "--model-max-mib".into(),
                "0".into(),
            ],
            2,
            "--model-max-mib",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--meter".into(),
                "nvml".into(),
            ],
            7,
            "meter nvml-counter unavailable",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--precision".into(),
                "fp16".into(),
            ],
            11,
            "CUDA only",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--device".into(),
                "cpu".into(),
                "--cuda-graphs".into(),
            ],
            11,
            "CUDA graphs need a CUDA device",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--candidates".into(),
                "0".into(),
            ],
            12,
            "invalid batch sizes",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--candidates".into(),
                "1,99999".into(),
            ],
            12,
            "outside",
        ),
        (
            vec![
                "--model".into(),
                fixture("tiny_cnn.pt"),
                "--shape".into(),
                "3,0,16".into(),
            ],
            2,
            "--shape",
        ),
    ];
    // Where an NVIDIA driver is loaded the NVML meter is there: its absence is this host's case.
    let has_nvml = Path::new("/proc/driver/nvidia/version").exists();
    for (args, code, message) in cases
        .into_iter()
        .filter(|(args, _, _)| !(has_nvml && args.iter().any(|a| a == "nvml")))
    {
        let o = bin()
            .arg("profile")
            .args(["--shape", "3,16,16", "--candidates", "1", "--json", j])
            .args(FAST)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{args:?}\n{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?}\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(dir_is_empty(dir.path()), "{args:?} left files behind");
    }
    // An unwritable destination fails before any measurement.
    let o = profile(
        &fixture("tiny_cnn.pt"),
        &["--candidates", "1", "--json", "/nonexistent-dir/p.json"],
    );
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
}

/// A saved profile built from the H200 reference sweep (see core/fixtures/README.md).
fn h200_resnet50_profile(dir: &Path) -> PathBuf {
    let raw: serde_json::Value = serde_json::from_str(include_str!(
        "../../core/fixtures/h200_torch_eager_sweep.json"
    ))
    .unwrap();
    let rows: Vec<serde_json::Value> = raw["models"]["resnet50"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::json!({
                "batchSize": r["batch"], "latencyMs": {"p50": r["p50_ms"], "p95": r["p95_ms"]},
                "throughputPerSecond": r["img_per_s"], "avgWatts": r["avg_w"],
                "joulesPerInference": r["j_per_img_counter"], "windows": 1
            })
        })
        .collect();
    let status = serde_json::json!({
        "phase": "Complete",
        "table": {"meter": "nvml-counter", "idleWatts": raw["info"]["idle_w"], "rows": rows}
    });
    let path = dir.join("h200-resnet50.json");
    std::fs::write(&path, status.to_string()).unwrap();
    path
}

#[test]
fn tune_picks_from_a_known_profile_and_draws_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let profile = h200_resnet50_profile(dir.path());
    let svg = dir.path().join("tune.svg");
    let o = bin()
        .args([
            "tune",
            "--from-profile",
            profile.to_str().unwrap(),
            "--slo-ms",
            "10",
            "--percentile",
            "95",
        ])
        .args(["--plot", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("batch size        32"), "{stdout}");
    assert!(stdout.contains("saving vs batch 1 7.09x"), "{stdout}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("chosen: batch 32") && plot.contains("SLO 10 ms"),
        "{}",
        &plot[..200.min(plot.len())]
    );

    // With a rate: batch 1 at 2000 req/s cannot keep up; the pick batches.
    let o = bin()
        .args([
            "tune",
            "--from-profile",
            profile.to_str().unwrap(),
            "--slo-ms",
            "50",
            "--percentile",
            "95",
        ])
        .args([
            "--rate",
            "2000",
            "--max-replicas",
            "4",
            "--plot",
            svg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("at the given rate"),
        "{}",
        text(&o)
    );

    // A profile that is not JSON is a usage error naming the file.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let o = bin()
        .args([
            "tune",
            "--from-profile",
            bad.to_str().unwrap(),
            "--slo-ms",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.json"));

    // The reference table has no p99: the default percentile is a usage error naming the flag
    // (it read "no batch size could be measured", exit 8).
    let o = bin()
        .args(["tune", "--from-profile", profile.to_str().unwrap()])
        .args(["--slo-ms", "10", "--plot", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--percentile") && text(&o).contains("choose one it has (50, 95)"),
        "{}",
        text(&o)
    );

    // An SLO past an hour is a usage error (1e308 ms hung the plot), and no plot is left.
    let absurd = dir.path().join("absurd.svg");
    let mut child = bin()
        .args(["tune", "--from-profile", profile.to_str().unwrap()])
        .args(["--slo-ms", "1e308", "--percentile", "95"])
        .args(["--plot", absurd.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tune --slo-ms 1e308 did not end in 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2));
    assert!(!absurd.exists());
}

#[test]
fn tune_s_json_on_standard_output_is_all_that_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let profile = h200_resnet50_profile(dir.path());
    let svg = dir.path().join("tune.svg");
    let tune = |plot: &Path, json: &str| {
        bin()
            .args(["tune", "--from-profile", profile.to_str().unwrap()])
            .args(["--slo-ms", "10", "--percentile", "95"])
            .args(["--plot", plot.to_str().unwrap(), "--json", json])
            .output()
            .unwrap()
    };
    for json in ["-", "/dev/stdout"] {
        let o = tune(&svg, json);
        assert!(o.status.success(), "{}", text(&o));
        let status: EnergyProfileStatus = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{json}: stdout is not the profile alone: {e}"));
        assert_eq!(status.phase, Some(ProfilePhase::Complete));
        assert!(String::from_utf8_lossy(&o.stderr).contains("batch size        32"));
    }
    // One file for the plot and the JSON: refused before anything is written.
    let same = dir.path().join("same.out");
    let o = tune(&same, same.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!same.exists());
}

#[test]
fn a_reader_that_went_away_does_not_fail_the_run() {
    // `tune ... | head -1`: printing to the closed pipe panicked (exit 101) before the plot.
    let dir = tempfile::tempdir().unwrap();
    let profile = h200_resnet50_profile(dir.path());
    let svg = dir.path().join("tune.svg");
    let mut child = bin()
        .args(["tune", "--from-profile", profile.to_str().unwrap()])
        .args(["--slo-ms", "10", "--percentile", "95"])
        .args(["--plot", svg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    assert!(svg.exists());
}

#[test]
fn tune_measures_locally_when_given_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("t.svg");
    let o = bin()
        .args([
            "tune",
            "--model",
            &fixture("tiny_cnn.pt"),
            "--shape",
            "3,16,16",
            "--candidates",
            "1,4,16",
            "--meter",
            "synthetic",
        ])
        .args(FAST)
        .args(["--slo-ms", "1000", "--plot", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("meets it") && stdout.contains("mJ per inference"),
        "{stdout}"
    );
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .contains("meter: synthetic")
    );
}

#[test]
fn the_binary_links_libtorch_cuda_when_libtorch_has_it() {
    // The CUDA link trap (see build.rs): without the fix, `--as-needed` drops libtorch_cuda.so and a
    // GPU host reports no CUDA. The PyPI libtorch used here ships libtorch_cuda.so.
    let lib = Path::new(env!("GREENBATCH_LIBTORCH_LIB"));
    let o = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_greenbatch-runtime"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    if lib.join("libtorch_cuda.so").exists() {
        assert!(
            listing.contains("libtorch_cuda.so"),
            "libtorch_cuda.so missing from the binary's needs:\n{listing}"
        );
    } else {
        assert!(!listing.contains("libtorch_cuda.so"));
    }
}

#[test]
fn the_version_says_what_the_binary_was_built_with() {
    let o = bin().arg("--version").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    // This build's libtorch is the CUDA wheel with the CUDA headers installed (setup-libtorch.sh);
    // the binary must say what it has, and agree with what --cuda-graphs finds.
    let graphs = if out.contains("CUDA graphs (--cuda-graphs): yes") {
        true
    } else if out.contains("CUDA graphs (--cuda-graphs): no") {
        false
    } else {
        panic!("no CUDA graphs line in:\n{out}")
    };
    let lib = Path::new(env!("GREENBATCH_LIBTORCH_LIB"));
    let cuda = lib.join("libtorch_cuda.so").exists();
    assert!(
        out.contains(&format!("libtorch with CUDA: {}", u8::from(cuda))),
        "{out}"
    );
    assert!(!graphs || cuda, "graphs claimed without CUDA:\n{out}");
    // With the PyPI torch and the nvidia-cuda-crt wheel beside it (scripts/setup-libtorch.sh),
    // build.rs must find the headers: a regression there would silently drop --cuda-graphs.
    let wheel_headers = lib
        .parent()
        .and_then(Path::parent)
        .and_then(|site| std::fs::read_dir(site.join("nvidia")).ok())
        .is_some_and(|dirs| {
            dirs.flatten()
                .any(|d| d.path().join("include/crt/host_config.h").exists())
        });
    if cuda && wheel_headers {
        assert!(
            graphs,
            "CUDA headers are installed but the build has no graphs:\n{out}"
        );
    }
}

#[test]
fn a_serve_profile_that_cannot_be_read_is_a_usage_error_naming_its_flag() {
    // A server that wrongly accepted its profile would serve forever: bounded here.
    let run = |mut c: Command| {
        let mut child = c
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let serve_cmd = |extra: &[&str]| {
        let mut c = bin();
        c.args([
            "serve",
            "--model",
            &fixture("tiny_cnn.pt"),
            "--shape",
            "3,16,16",
        ])
        .args(["--port", "0", "--slo-ms", "50"])
        .args(extra);
        c
    };
    let serve = |extra: &[&str]| run(serve_cmd(extra));
    // Inline, as the operator hands it to serving pods (also through GREENBATCH_PROFILE_INLINE).
    let o = serve(&["--profile-json", "{not json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("--profile-json") && err.contains("not a profile JSON"),
        "{err}"
    );
    let mut c = serve_cmd(&[]);
    c.env("GREENBATCH_PROFILE_INLINE", "{\"table\": 3}");
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--profile-json"));
    // A file that is not there names the file; both at once are refused.
    let o = serve(&["--profile", "/nonexistent/profile.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/profile.json"));
    let o = serve(&["--profile", "p.json", "--profile-json", "{}"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}

/// `openssl s_server -WWW` serving the files of `root` over https on a loopback port, with the
/// test PKI's serving certificate (SAN 127.0.0.1): a real TLS server, not ours.
struct HttpsFileServer {
    child: std::process::Child,
    port: u16,
}

impl HttpsFileServer {
    fn start(root: &Path, pki: &greenbatch_tests::pki::Pki) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&pki.serving_cert)
            .arg("-key")
            .arg(&pki.serving_key)
            .current_dir(root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let up = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "openssl s_server did not listen on {port}");
        HttpsFileServer { child, port }
    }
}

impl Drop for HttpsFileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_model_url_is_downloaded_over_https_checked_against_its_digest_and_profiled() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = greenbatch_tests::pki::Pki::generate(&pki_dir).unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let model = www.join("tiny_cnn.pt");
    std::fs::copy(fixture("tiny_cnn.pt"), &model).unwrap();
    let digest = greenbatch_tests::workspace::file_digest(&model);
    let server = HttpsFileServer::start(&www, &pki);
    let url = format!("https://127.0.0.1:{}/tiny_cnn.pt", server.port);
    let ca = pki.ca_cert.to_str().unwrap().to_string();
    let cache = dir.path().join("cache");
    let json = dir.path().join("profile.json");
    let run = |digest: &str, cache: &Path, ca: Option<&str>| {
        let mut extra = vec![
            "--candidates",
            "1,2",
            "--meter",
            "synthetic",
            "--json",
            json.to_str().unwrap(),
            "--model-digest",
            digest,
            "--model-cache",
            cache.to_str().unwrap(),
        ];
        if let Some(ca) = ca {
            extra.extend(["--model-ca-file", ca]);
        }
        profile(&url, &extra)
    };

    let o = run(&digest, &cache, Some(&ca));
    assert!(o.status.success(), "{}", text(&o));
    let status: EnergyProfileStatus =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(status.phase, Some(ProfilePhase::Complete));
    let kept = cache.join(format!("sha256-{}.pt", &digest["sha256:".len()..]));
    assert_eq!(
        greenbatch_tests::workspace::file_digest(&kept),
        digest,
        "the download is the file served"
    );
    std::fs::remove_file(&json).unwrap();

    // Another digest: exit 14, nothing kept, no profile written.
    let other = format!("sha256:{}", "0".repeat(64));
    let fresh = dir.path().join("cache-2");
    let o = run(&other, &fresh, Some(&ca));
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&other) && stderr.contains(&digest),
        "{stderr}"
    );
    assert!(dir_is_empty(&fresh), "a refused download left files behind");
    assert!(!json.exists());

    // The server's certificate is checked: without the CA that signed it, exit 13.
    let o = run(&digest, &dir.path().join("cache-3"), None);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        stderr.contains("certificate") && !stderr.contains("tries"),
        "refused at once, not tried again: {stderr}"
    );
}
