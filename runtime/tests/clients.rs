//! Unmodified standard v2 clients against `greenbatch-runtime serve`: Triton's Python
//! `tritonclient` (HTTP with JSON and binary tensors; gRPC) and Triton's `perf_analyzer`
//! (concurrency and Poisson request-rate modes, batch 4, over HTTP and over gRPC). Both come from PyPI via `scripts/setup-v2-clients.sh`.
//! Without them the test says so and passes, unless `GREENBATCH_REQUIRE_V2_CLIENTS` is set (as
//! `scripts/test.sh` does), so CI cannot silently skip it.

mod common;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cache() -> PathBuf {
    std::env::var_os("GREENBATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/greenbatch")
        })
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let python = std::env::var_os("GREENBATCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("venv"))
        .join("bin/python");
    let pa = std::env::var_os("GREENBATCH_PERF_ANALYZER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("v2-clients/perf_analyzer"));
    let has_tritonclient = Command::new(&python)
        .args(["-c", "import tritonclient.http, tritonclient.grpc"])
        .status()
        .is_ok_and(|s| s.success());
    (has_tritonclient && pa.exists()).then_some((python, pa))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server on an HTTP port and a gRPC port.
fn start() -> (Server, u16, u16) {
    let (port, grpc_port) = (free_port(), free_port());
    let model = common::fixture("tiny_cnn.pt");
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"))
            .args([
                "serve",
                "--model",
                &model,
                "--shape",
                "3,16,16",
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--grpc-port",
                &grpc_port.to_string(),
                "--max-batch-size",
                "8",
                "--max-queue-delay-ms",
                "2",
                "--threads",
                "1",
                "--meter",
                "none",
                "--max-body-bytes",
                "1048576",
            ])
            .env("GREENBATCH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /v2/health/ready HTTP/1.0\r\n\r\n").ok()?;
                let mut buf = String::new();
                s.read_to_string(&mut buf).ok()?;
                Some(buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if ok {
            return (server, port, grpc_port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("server did not become ready");
}

const TRITONCLIENT: &str = r#"
import sys, numpy as np
import tritonclient.http as http
c = http.InferenceServerClient(url=sys.argv[1])
assert c.is_server_live() and c.is_server_ready(), "server not live/ready"
assert c.is_model_ready("tiny_cnn"), "model not ready"
meta = c.get_model_metadata("tiny_cnn")
assert meta["inputs"][0]["name"] == "input__0", meta
cfg = c.get_model_config("tiny_cnn")
assert cfg["max_batch_size"] == 8, cfg
assert "max_queue_delay_microseconds" in cfg["dynamic_batching"], cfg
x = np.random.rand(3, 3, 16, 16).astype(np.float32)
answers = []
for binary_in in (False, True):
    for binary_out in (False, True, None):
        inp = http.InferInput("input__0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary_in)
        # None: no outputs named, so tritonclient asks for all of them as binary (binary_data_output).
        outs = None if binary_out is None else [http.InferRequestedOutput("output__0", binary_data=binary_out)]
        rid = "req-%d-%s" % (binary_in, binary_out)
        r = c.infer("tiny_cnn", [inp], outputs=outs, request_id=rid)
        y = r.as_numpy("output__0")
        assert y is not None and y.shape == (3, 10), y
        assert r.get_response()["id"] == rid
        assert ("binary_data_size" in r.get_output("output__0").get("parameters", {})) == (binary_out is not False), r.get_response()
        answers.append(y)
for y in answers[1:]:
    assert np.array_equal(y, answers[0]), "JSON and binary tensors disagree"
try:
    c.infer("tiny_cnn", [http.InferInput("nope", [1, 3, 16, 16], "FP32").set_data_from_numpy(x[:1])])
    raise SystemExit("an unknown input must fail")
except http.InferenceServerException as e:
    assert "unknown input" in str(e), e
print("tritonclient ok")
"#;

/// The same over gRPC: raw tensors both ways, the answers equal to HTTP's, errors as gRPC codes.
const TRITONCLIENT_GRPC: &str = r#"
import sys, numpy as np
import tritonclient.grpc as grpc
import tritonclient.http as http
c = grpc.InferenceServerClient(url=sys.argv[1])
assert c.is_server_live() and c.is_server_ready(), "server not live/ready"
assert c.is_model_ready("tiny_cnn") and c.is_model_ready("tiny_cnn", "1"), "model not ready"
meta = c.get_model_metadata("tiny_cnn")
assert meta.inputs[0].name == "input__0" and list(meta.inputs[0].shape) == [-1, 3, 16, 16], meta
assert list(meta.outputs[0].shape) == [-1, 10], meta
cfg = c.get_model_config("tiny_cnn").config
assert cfg.max_batch_size == 8 and list(cfg.input[0].dims) == [3, 16, 16], cfg
# The dynamic batcher, as over HTTP (perf_analyzer reads the scheduler from it).
assert cfg.HasField("dynamic_batching"), cfg
x = np.random.rand(3, 3, 16, 16).astype(np.float32)
inp = grpc.InferInput("input__0", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
r = c.infer("tiny_cnn", [inp], outputs=[grpc.InferRequestedOutput("output__0")], request_id="g-1")
y = r.as_numpy("output__0")
assert y is not None and y.shape == (3, 10), y
assert r.get_response().id == "g-1"
h = http.InferenceServerClient(url=sys.argv[2])
hi = http.InferInput("input__0", list(x.shape), "FP32")
hi.set_data_from_numpy(x)
assert np.array_equal(h.infer("tiny_cnn", [hi]).as_numpy("output__0"), y), "gRPC and HTTP disagree"
def code_of(call):
    try:
        call()
    except grpc.InferenceServerException as e:
        return e.status(), e.message()
    raise SystemExit("expected an error")
status, message = code_of(lambda: c.infer("nope", [inp]))
assert status == "StatusCode.NOT_FOUND" and "unknown model" in message, (status, message)
bad = grpc.InferInput("input__0", [1, 3, 16, 15], "FP32")
bad.set_data_from_numpy(np.zeros((1, 3, 16, 15), np.float32))
status, message = code_of(lambda: c.infer("tiny_cnn", [bad]))
assert status == "StatusCode.INVALID_ARGUMENT" and "item shape" in message, (status, message)
big = grpc.InferInput("input__0", [9, 3, 16, 16], "FP32")
big.set_data_from_numpy(np.zeros((9, 3, 16, 16), np.float32))
status, message = code_of(lambda: c.infer("tiny_cnn", [big]))
assert status == "StatusCode.INVALID_ARGUMENT" and "max batch size" in message, (status, message)
# Messages no client library would send: bytes that are no ModelInferRequest, and one over the
# server's 1 MiB limit.
import grpc as grpcio
raw = grpcio.insecure_channel(sys.argv[1]).unary_unary("/inference.GRPCInferenceService/ModelInfer")
def raw_code(body):
    try:
        raw(body)
    except grpcio.RpcError as e:
        return e.code(), e.details()
    raise SystemExit("expected an error")
status, message = raw_code(b"\xff\xff\xff\xff")
assert status == grpcio.StatusCode.INVALID_ARGUMENT and "not a well-formed ModelInferRequest" in message, (status, message)
# 500,000 empty `inputs` entries (1 MB; ~108 MB once decoded): refused as counted on the wire,
# the server's peak memory (argv[3] is its pid) no higher for it.
def peak_kib():
    with open(f"/proc/{sys.argv[3]}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
peak = peak_kib()
status, message = raw_code(b"\x0a\x08tiny_cnn" + b"\x2a\x00" * 500_000)
assert status == grpcio.StatusCode.INVALID_ARGUMENT and "takes 1 input" in message and "got 500000" in message, (status, message)
grown = peak_kib() - peak
assert grown < 40 * 1024, f"the server's peak memory grew {grown} KiB for a 1 MB message"

status, message = raw_code(bytes(2 * 1024 * 1024))
assert status == grpcio.StatusCode.OUT_OF_RANGE and "too large" in message, (status, message)
assert c.is_server_live(), "the server went down"
print("tritonclient grpc ok")
"#;

/// `greenbatch_requests_total{code}` from the server's /metrics.
fn requests_with_code(port: u16, code: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let series = format!("greenbatch_requests_total{{code=\"{code}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn tritonclient_and_perf_analyzer_work_unmodified() {
    let Some((python, perf_analyzer)) = tools() else {
        assert!(
            std::env::var_os("GREENBATCH_REQUIRE_V2_CLIENTS").is_none(),
            "tritonclient/perf_analyzer required but missing: run scripts/setup-v2-clients.sh"
        );
        eprintln!(
            "SKIPPED: tritonclient or perf_analyzer not installed (scripts/setup-v2-clients.sh)"
        );
        return;
    };
    let (server, port, grpc_port) = start();
    let url = format!("127.0.0.1:{port}");
    let grpc_url = format!("127.0.0.1:{grpc_port}");

    let o = Command::new(&python)
        .args(["-c", TRITONCLIENT, &url])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tritonclient: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // gRPC: the same server, counted in the same metrics (the operator sizes from them).
    let before = |code| requests_with_code(port, code);
    let (not_found_before, invalid_before, too_large_before) =
        (before("404"), before("400"), before("413"));
    let pid = server.0.id().to_string();
    let o = Command::new(&python)
        .args(["-c", TRITONCLIENT_GRPC, &grpc_url, &url, &pid])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tritonclient grpc: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        requests_with_code(port, "404") - not_found_before,
        1.0,
        "the unknown model over gRPC is counted as a 404"
    );
    // A wrong shape, a batch over the max, a malformed message, one of 500,000 inputs; one
    // message over the limit.
    assert_eq!(requests_with_code(port, "400") - invalid_before, 4.0);
    assert_eq!(requests_with_code(port, "413") - too_large_before, 1.0);

    let dir = tempfile::tempdir().unwrap();
    let runs: [(&str, Vec<&str>); 2] = [
        ("concurrency", vec!["--concurrency-range", "1:4:3"]),
        (
            "poisson",
            vec![
                "--async",
                "--request-rate-range",
                "100",
                "--request-distribution",
                "poisson",
            ],
        ),
    ];
    for ((name, mode), (protocol, target)) in runs
        .into_iter()
        .flat_map(|run| [("http", &url), ("grpc", &grpc_url)].map(|p| (run.clone(), p)))
    {
        let name = format!("{name} over {protocol}");
        let csv = dir.path().join(format!("{name}.csv"));
        let o = Command::new(&perf_analyzer)
            // perf_analyzer's default "random" data is random bytes, which include NaN bit patterns
            // the server rightly refuses; zeros are valid FP32.
            .args([
                "-m",
                "tiny_cnn",
                "-u",
                target,
                "-i",
                protocol,
                "-b",
                "4",
                "--input-data",
                "zero",
            ])
            .args(["--measurement-mode", "count_windows"])
            .args([
                "--measurement-request-count",
                "40",
                "--max-trials",
                "10",
                "--stability-percentage",
                "999",
                "-f",
                csv.to_str().unwrap(),
            ])
            .args(&mode)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(0), "perf_analyzer {name}:\n{text}");
        assert!(text.contains("Throughput"), "perf_analyzer {name}:\n{text}");
        let rows = std::fs::read_to_string(&csv).unwrap();
        assert!(
            rows.lines().count() >= 2,
            "perf_analyzer {name} wrote no measurements:\n{rows}"
        );
    }
}
