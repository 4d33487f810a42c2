//! `greenbatch-runtime serve` over HTTP with real libtorch on the CPU and a tiny TorchScript model:
//! the v2 endpoints, batching, every bad input as a 4xx `{"error"}` while the server keeps serving,
//! overload (429 + Retry-After), metrics (checked by promtool when installed), load failure, and
//! draining on SIGTERM.

mod common;
use common::fixture;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(model: &str, extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"))
        .args([
            "serve",
            "--model",
            model,
            "--shape",
            "3,16,16",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--threads", "1", "--meter", "synthetic"])
        .args(extra)
        .env("GREENBATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{}/v2/health/live", server.base))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not come up");
}

async fn wait_ready(base: &str, want: bool) {
    let client = reqwest::Client::new();
    for _ in 0..400 {
        let r = client
            .get(format!("{base}/v2/health/ready"))
            .send()
            .await
            .unwrap();
        if (r.status() == 200) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readiness never became {want}");
}

fn request(items: usize, id: &str) -> Value {
    json!({"id": id, "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [items, 3, 16, 16], "data": vec![0.25f32; items * 768]}]})
}

/// An infer request; the answer's status, raw body and headers.
async fn post_raw(
    base: &str,
    model: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let mut r = reqwest::Client::new()
        .post(format!("{base}/v2/models/{model}/infer"))
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, resp.bytes().await.unwrap().to_vec(), headers)
}

/// An infer request with a JSON answer (a string if the body is not JSON).
async fn post(
    base: &str,
    model: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let (status, bytes, headers) = post_raw(base, model, body, headers).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

/// `n` concurrent single-item requests with ids `<prefix>0..n`, answered in any order.
fn spawn_single_item_requests(
    base: &str,
    n: usize,
    prefix: &str,
) -> Vec<tokio::task::JoinHandle<(u16, Value, reqwest::header::HeaderMap)>> {
    (0..n)
        .map(|i| {
            let (base, body) = (
                base.to_string(),
                request(1, &format!("{prefix}{i}")).to_string().into_bytes(),
            );
            tokio::spawn(async move { post(&base, "tiny_cnn", body, &[]).await })
        })
        .collect()
}

async fn get(url: String) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The Grafana dashboard the chart ships (charts/greenbatch/dashboards/greenbatch.json) reads
/// this server's series under names it exports, in PromQL that parses: a renamed series or a typo
/// in a query fails here instead of drawing an empty panel.
fn dashboard_reads_these_series(metrics_text: &str) {
    let exprs = greenbatch_tests::chart::dashboard_queries();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let names: std::collections::BTreeSet<String> = exprs
        .iter()
        .flat_map(|q| greenbatch_tests::chart::series_names(q))
        .collect();
    let served: Vec<&String> = names
        .iter()
        .filter(|n| !n.starts_with("greenbatch_operator_"))
        .collect();
    assert!(served.len() >= 10, "{names:?}");
    for name in served {
        assert!(
            metrics_text.lines().any(|l| l
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))),
            "the dashboard reads {name}, which this server does not export"
        );
    }
    // Grafana's variables as Prometheus would see them once substituted; every query as a recording
    // rule, which `promtool check rules` parses.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$service", ".*");
            json!({"record": format!("greenbatch:dashboard_query_{i}"), "expr": e})
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    if let Some(o) =
        greenbatch_tests::tool::promtool(&["check", "rules", file.path().to_str().unwrap()], "")
    {
        assert!(
            o.status.success(),
            "the dashboard's queries do not parse: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.split_once(' ')
                .filter(|(n, _)| *n == name)
                .and_then(|(_, v)| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

/// (body, headers, model, expected status)
type BadCase<'a> = (Vec<u8>, Vec<(&'a str, String)>, &'a str, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_the_v2_protocol_with_dynamic_batching() {
    let s = start(
        &fixture("tiny_cnn.pt"),
        &[
            "--max-batch-size",
            "8",
            "--max-queue-delay-ms",
            "20",
            "--max-body-bytes",
            "200000",
        ],
    )
    .await;
    wait_ready(&s.base, true).await;
    let b = &s.base;

    assert_eq!(
        get(format!("{b}/v2/health/live")).await,
        (200, json!({"live": true}))
    );
    let (code, server) = get(format!("{b}/v2")).await;
    assert_eq!(
        (code, server["name"].as_str()),
        (200, Some("greenbatch-runtime"))
    );
    let (code, meta) = get(format!("{b}/v2/models/tiny_cnn")).await;
    assert_eq!(code, 200);
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "input__0", "datatype": "FP32", "shape": [-1, 3, 16, 16]})
    );
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 10]));
    assert_eq!(
        get(format!("{b}/v2/models/tiny_cnn/versions/1")).await.0,
        200
    );
    assert_eq!(get(format!("{b}/v2/models/tiny_cnn/ready")).await.0, 200);
    assert_eq!(
        get(format!("{b}/v2/models/tiny_cnn/versions/1/ready"))
            .await
            .0,
        200
    );
    let (code, config) = get(format!("{b}/v2/models/tiny_cnn/config")).await;
    assert_eq!((code, config["max_batch_size"].as_u64()), (200, Some(8)));
    assert_eq!(get(format!("{b}/v2/models/nope")).await.0, 404);
    assert_eq!(
        get(format!("{b}/v2/models/tiny_cnn/versions/7")).await.0,
        404
    );

    // One request with 2 items: output rows for both, id echoed.
    let (code, out, _) = post(
        b,
        "tiny_cnn",
        request(2, "r-1").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["id"], "r-1");
    assert_eq!(out["model_name"], "tiny_cnn");
    assert_eq!(out["outputs"][0]["shape"], json!([2, 10]));
    assert_eq!(out["outputs"][0]["data"].as_array().unwrap().len(), 20);

    // 24 concurrent single-item requests coalesce into far fewer batches; each gets its own row.
    let batches_before = metric(b, "greenbatch_batches_total").await;
    let tasks = spawn_single_item_requests(b, 24, "c");
    for (i, t) in tasks.into_iter().enumerate() {
        let (code, out, _) = t.await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(out["id"], format!("c{i}"));
        assert_eq!(out["outputs"][0]["shape"], json!([1, 10]));
    }
    let batches = metric(b, "greenbatch_batches_total").await - batches_before;
    assert!(
        batches <= 12.0,
        "24 concurrent requests ran in {batches} batches: no coalescing"
    );

    // The binary tensor extension (what perf_analyzer sends by default).
    let head = json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 3, 16, 16], "parameters": {"binary_data_size": 768 * 4}}]}).to_string();
    let mut body = head.clone().into_bytes();
    for _ in 0..768 {
        body.extend_from_slice(&0.5f32.to_le_bytes());
    }
    let (code, out, _) = post(
        b,
        "tiny_cnn",
        body,
        &[("Inference-Header-Content-Length", head.len().to_string())],
    )
    .await;
    assert_eq!(code, 200, "{out}");
    let json_rows: Vec<f32> = out["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();

    // Binary outputs, asked for per output or for the whole request: the JSON header names the byte
    // count, the same numbers follow as little-endian f32; a per-output `false` overrides the request.
    let with_head = |head: Value| {
        let head = head.to_string();
        let mut body = head.clone().into_bytes();
        for _ in 0..768 {
            body.extend_from_slice(&0.5f32.to_le_bytes());
        }
        (
            body,
            vec![("Inference-Header-Content-Length", head.len().to_string())],
        )
    };
    let input = json!([{"name": "input__0", "datatype": "FP32", "shape": [1, 3, 16, 16], "parameters": {"binary_data_size": 768 * 4}}]);
    for head in [
        json!({"inputs": input, "outputs": [{"name": "output__0", "parameters": {"binary_data": true}}]}),
        json!({"inputs": input, "parameters": {"binary_data_output": true}}),
    ] {
        let (body, headers) = with_head(head);
        let (code, bytes, reply_headers) = post_raw(b, "tiny_cnn", body, &headers).await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&bytes));
        let json_len: usize = reply_headers["inference-header-content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let header: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
        assert_eq!(
            header["outputs"][0],
            json!({"name": "output__0", "datatype": "FP32", "shape": [1, 10], "parameters": {"binary_data_size": 40}})
        );
        let rows: Vec<f32> = bytes[json_len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(rows, json_rows, "binary and JSON outputs differ");
    }
    let (body, headers) = with_head(
        json!({"inputs": input, "parameters": {"binary_data_output": true}, "outputs": [{"name": "output__0", "parameters": {"binary_data": false}}]}),
    );
    let (code, out, reply_headers) = post(b, "tiny_cnn", body, &headers).await;
    assert_eq!(code, 200, "{out}");
    assert!(!reply_headers.contains_key("inference-header-content-length"));
    assert_eq!(out["outputs"][0]["data"].as_array().unwrap().len(), 10);

    // Bad input: each a 4xx with {"error": ...}, and the server keeps serving.
    let mut nan_body = head.clone().into_bytes();
    for i in 0..768 {
        nan_body.extend_from_slice(&(if i == 5 { f32::NAN } else { 1.0 }).to_le_bytes());
    }
    let bad: Vec<BadCase> = vec![
        (b"{oops".to_vec(), vec![], "tiny_cnn", 400),
        (vec![], vec![], "tiny_cnn", 400),
        (json!({"inputs": [{"name": "input__0", "datatype": "INT64", "shape": [1, 3, 16, 16], "data": [1]}]}).to_string().into_bytes(), vec![], "tiny_cnn", 400),
        (json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": vec![0.0; 192]}]}).to_string().into_bytes(), vec![], "tiny_cnn", 400),
        (json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [1.0, 2.0]}]}).to_string().into_bytes(), vec![], "tiny_cnn", 400),
        (json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [1.0]}]}).to_string().into_bytes(), vec![], "tiny_cnn", 400),
        (json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [99999999, 3, 16, 16], "data": [1.0]}]}).to_string().into_bytes(), vec![], "tiny_cnn", 400),
        (request(9, "too-many").to_string().into_bytes(), vec![], "tiny_cnn", 400),
        (request(1, "x").to_string().into_bytes(), vec![], "other_model", 404),
        (nan_body, vec![("Inference-Header-Content-Length", head.len().to_string())], "tiny_cnn", 400),
        (vec![b' '; 300_000], vec![], "tiny_cnn", 413),
    ];
    for (i, (body, headers, model, want)) in bad.into_iter().enumerate() {
        let (code, out, _) = post(b, model, body, &headers).await;
        assert_eq!(code, want, "case {i}: {out}");
        assert!(
            out["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {i}: no error message in {out}"
        );
    }
    let (code, _, _) = post(
        b,
        "tiny_cnn",
        request(1, "after").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 200, "the server must keep serving after bad input");

    // A method an endpoint does not take: 405 with the endpoints' error body and `Allow`.
    let r = reqwest::get(format!("{b}/v2/models/tiny_cnn/infer"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let out: Value = r.json().await.unwrap();
    assert!(
        out["error"].as_str().is_some_and(|e| e.contains("POST")),
        "{out}"
    );
    // A body cut off by its client is no size over the limit: 400, not 413.
    let cut = {
        use std::io::{Read, Write};
        let addr = b.trim_start_matches("http://").to_string();
        tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"POST /v2/models/tiny_cnn/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"inputs\"")
                .unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            let _ = c.read_to_string(&mut answer);
            answer
        })
        .await
        .unwrap()
    };
    assert!(cut.starts_with("HTTP/1.1 400"), "{cut}");

    // Metrics: counts by code, the energy series, valid exposition format.
    let text = reqwest::get(format!("{b}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "greenbatch_requests_total{code=\"200\"}",
        "greenbatch_requests_total{code=\"400\"}",
        "greenbatch_requests_total{code=\"413\"}",
        "greenbatch_inferences_total",
        "greenbatch_batch_size_bucket",
        "greenbatch_queue_wait_seconds_bucket",
        "greenbatch_request_duration_seconds_bucket",
        "greenbatch_energy_joules_total",
        // The meter behind it, said: these tests' synthetic one is a test double.
        "greenbatch_energy_meter_info{kind=\"synthetic\"} 1",
        "greenbatch_power_watts",
        "greenbatch_queue_depth",
        "greenbatch_max_batch_size 8",
        "greenbatch_executor_seconds_total{stage=\"assemble\"}",
        "greenbatch_executor_seconds_total{stage=\"forward\"}",
        "greenbatch_executor_seconds_total{stage=\"respond\"}",
        // auto on the CPU: frozen, optimised for inference if that timed faster
        "greenbatch_model_info{device=\"cpu\",graph=\"torchscript-frozen",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(metric(b, "greenbatch_inferences_total").await >= 28.0);
    // Latency is of the requests served: the 400s and 413s above are not in it.
    assert_eq!(
        metric(b, "greenbatch_request_duration_seconds_count").await,
        metric(b, "greenbatch_requests_total{code=\"200\"}").await,
        "the request-duration histogram counts exactly the requests answered 200"
    );
    // The contract the operator reads (`greenbatch_core::serving_metrics`): every series it sizes
    // replicas and checks predictions from, under the names it looks for.
    let c = greenbatch_core::serving_metrics::parse(&text).expect("the operator reads these");
    assert!(c.inferences >= 28.0, "{c:?}");
    // Every decoded request here was served (refusals were at decoding), so asked == served.
    assert_eq!(c.requested_items, Some(c.inferences), "{c:?}");
    assert_eq!(c.refused_items, Some(0.0), "no queue was full: {c:?}");
    assert!(c.requests > c.inferences, "bad requests count too: {c:?}");
    let last = c.latency_buckets.last().copied().unwrap_or_default();
    assert_eq!(
        last,
        (
            f64::INFINITY,
            metric(b, "greenbatch_requests_total{code=\"200\"}").await
        ),
        "every request served is timed: {c:?}"
    );
    assert_eq!(
        (c.max_batch_size, c.max_queue_delay_seconds),
        (Some(8.0), Some(0.02))
    );
    assert!(metric(b, "greenbatch_executor_seconds_total{stage=\"forward\"}").await > 0.0);
    // The model's own time per batch, which the operator holds against the profile.
    assert!(
        c.batches.is_some_and(|n| n >= 1.0 && n <= c.inferences)
            && c.forward_seconds.is_some_and(|s| s > 0.0)
            && c.padding_items == Some(0.0),
        "{c:?}"
    );
    // The model thread's busy time, its working stages: what the operator learns a pod's capacity
    // from. The stages the runtime times are the ones the operator counts as busy.
    let stages: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("greenbatch_executor_seconds_total{stage=\""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        stages,
        greenbatch_core::serving_metrics::BUSY_STAGES
            .into_iter()
            .collect(),
        "the executor's stages and serving_metrics::BUSY_STAGES"
    );
    assert!(
        c.executor_seconds
            .zip(c.forward_seconds)
            .is_some_and(|(busy, forward)| busy > forward),
        "{c:?}"
    );
    dashboard_reads_these_series(&text);
    greenbatch_tests::tool::assert_promtool_accepts_metrics(&text, "the runtime's /metrics");
    let om = reqwest::Client::new()
        .get(format!("{b}/metrics"))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(om.trim_end().ends_with("# EOF"), "OpenMetrics on request");
}

/// A ready server whose batches of 4 wait up to 3 s to fill, in a queue of 4 items.
async fn start_waiting_for_4() -> Server {
    start_waiting_for_4_up_to("3000").await
}

/// A ready server whose batch of 4 waits up to `delay_ms` to fill, in a queue of 4 items.
async fn start_waiting_for_4_up_to(delay_ms: &str) -> Server {
    let s = start(
        &fixture("tiny_cnn.pt"),
        &[
            "--max-batch-size",
            "4",
            "--max-queue-delay-ms",
            delay_ms,
            "--queue-capacity",
            "4",
        ],
    )
    .await;
    wait_ready(&s.base, true).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after() {
    // Three items wait for a batch of 4 (the delay is long); a queue of 4 has no room for two more.
    let s = start_waiting_for_4().await;
    let tasks = spawn_single_item_requests(&s.base, 3, "q");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric(&s.base, "greenbatch_queue_depth").await, 3.0);
    let (code, out, headers) = post(
        &s.base,
        "tiny_cnn",
        request(2, "overflow").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 429, "{out}");
    assert_eq!(
        headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(out["error"].as_str().unwrap().contains("queue is full"));
    // Counted as refused for capacity (what the operator learns a pod's real capacity from).
    assert_eq!(metric(&s.base, "greenbatch_refused_items_total").await, 2.0);
    for t in tasks {
        assert_eq!(
            t.await.unwrap().0,
            200,
            "queued requests are served when their delay expires"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_client_left_is_not_run_and_frees_its_room() {
    // One request waits for a batch of 4 (3 s at most); its client gives up after 300 ms.
    let s = start_waiting_for_4().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/v2/models/tiny_cnn/infer", s.base))
        .body(request(3, "impatient").to_string())
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its 3 items would leave no room for 2 more; gone, they do not count.
    let (code, out, _) = post(
        &s.base,
        "tiny_cnn",
        request(2, "patient").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        metric(&s.base, "greenbatch_abandoned_requests_total").await,
        1.0
    );
    assert_eq!(metric(&s.base, "greenbatch_inferences_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_server_answers_on_ipv4_and_ipv6() {
    // A pod in an IPv6-only cluster is probed and scraped at its IPv6 address; elsewhere at IPv4.
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"))
        .args([
            "serve",
            "--model",
            &fixture("tiny_cnn.pt"),
            "--shape",
            "3,16,16",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--threads",
            "1",
            "--meter",
            "none",
        ])
        .env("GREENBATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let has_ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let mut hosts = vec!["127.0.0.1".to_string()];
    if has_ipv6 {
        hosts.push("[::1]".to_string());
    } else {
        eprintln!("no IPv6 loopback here: IPv4 only checked");
    }
    for host in hosts {
        let url = format!("http://{host}:{port}/v2/health/live");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match reqwest::get(&url).await {
                Ok(r) => {
                    assert_eq!(r.status().as_u16(), 200, "{url}");
                    break;
                }
                Err(e) if Instant::now() > deadline => panic!("{url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_to_load_is_not_ready_and_says_why() {
    // 0: the server stays up, not ready (the default reports for 30 s, then exits: below).
    let mut s = start(
        &fixture("corrupt.pt"),
        &["--exit-after-load-failure-seconds", "0"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, body) = get(format!("{}/v2/models/corrupt/ready", s.base)).await;
    assert_eq!(code, 503);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("model load failed"),
        "{body}"
    );
    assert_eq!(get(format!("{}/v2/health/ready", s.base)).await.0, 503);
    assert_eq!(get(format!("{}/v2/health/live", s.base)).await.0, 200);
    let (code, out, headers) = post(
        &s.base,
        "corrupt",
        request(1, "x").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 503, "{out}");
    assert!(headers.contains_key("retry-after"));
    // Its metadata cannot be told (its output shape is the model's): 503 saying why, not an
    // output of shape [-1].
    for what in ["", "/config"] {
        let (code, body) = get(format!("{}/v2/models/corrupt{what}", s.base)).await;
        assert_eq!(code, 503, "{what}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("model load failed")),
            "{body}"
        );
    }
    assert!(s.child.try_wait().unwrap().is_none(), "still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_is_reported_then_exits_with_its_code() {
    let mut s = start(
        &fixture("corrupt.pt"),
        &["--exit-after-load-failure-seconds", "3"],
    )
    .await;
    let started = Instant::now();
    // The port opens before the model loads: ask until the failure is known.
    let reported = loop {
        let (code, body) = get(format!("{}/v2/models/corrupt/ready", s.base)).await;
        assert_eq!(code, 503);
        if body.to_string().contains("model load failed")
            || started.elapsed() > Duration::from_millis(2500)
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        reported.to_string().contains("model load failed"),
        "{reported}"
    );
    let status = wait_exit(
        &mut s.child,
        started + Duration::from_secs(15),
        "did not exit after reporting the load failure",
    )
    .await;
    // 4: the model file is not loadable (the same code `profile` exits with).
    assert_eq!(status.code(), Some(4), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "reported first"
    );
}

/// The server process's exit status, once it exits before `deadline` (else fails saying `why`).
async fn wait_exit(child: &mut Child, deadline: Instant, why: &str) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_reports_not_ready_serves_on_for_the_delay_then_drains_and_exits() {
    let mut s = start(
        &fixture("tiny_cnn.pt"),
        &[
            "--max-batch-size",
            "64",
            "--max-queue-delay-ms",
            "5000",
            "--shutdown-delay-seconds",
            "1",
        ],
    )
    .await;
    wait_ready(&s.base, true).await;
    let mut tasks = spawn_single_item_requests(&s.base, 3, "d");
    // Queued before the signal (a fixed sleep would pass with them arriving after it).
    let queued = Instant::now() + Duration::from_secs(10);
    while metric(&s.base, "greenbatch_queue_depth").await < 3.0 {
        assert!(Instant::now() < queued, "the 3 requests were never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    // Not ready at once (the endpoints let go of the pod)...
    wait_ready(&s.base, false).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "not ready at once"
    );
    // ...while a request that still arrives in the shutdown delay is taken, not refused.
    tasks.extend(spawn_single_item_requests(&s.base, 1, "late"));
    for t in tasks {
        let (code, out, _) = t.await.unwrap();
        assert_eq!(
            code, 200,
            "queued requests are answered, not dropped: {out}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "draining must not wait out the 5 s queue delay"
    );
    let status = wait_exit(
        &mut s.child,
        started + Duration::from_secs(10),
        "did not exit after draining",
    )
    .await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bad_input_fails_its_own_request_not_the_batch_it_shared() {
    // poisoned.pt raises for any batch holding a value above 1000; four requests fill one batch.
    let s = start(
        &fixture("poisoned.pt"),
        &["--max-batch-size", "4", "--max-queue-delay-ms", "2000"],
    )
    .await;
    wait_ready(&s.base, true).await;
    let send = |value: f32| {
        let base = s.base.clone();
        tokio::spawn(async move {
            let body = serde_json::to_vec(&json!({"inputs": [{"name": "input__0",
                "datatype": "FP32", "shape": [1, 3, 16, 16], "data": vec![value; 768]}]}))
            .unwrap();
            post(&base, "poisoned", body, &[]).await
        })
    };
    let answers: Vec<_> = [0.5, 5000.0, 0.25, 0.75].into_iter().map(send).collect();
    let mut codes = Vec::new();
    for a in answers {
        codes.push(a.await.unwrap().0);
    }
    assert_eq!(codes, [200, 500, 200, 200]);
    // They did run as one batch first (4 items), then one by one.
    assert_eq!(metric(&s.base, "greenbatch_inferences_total").await, 3.0);
    assert_eq!(metric(&s.base, "greenbatch_batches_total").await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_failing_batch_after_batch_is_not_live_only_when_its_own_input_fails_too() {
    // serve::executor::BROKEN_AFTER_FAILED_BATCHES (the runtime is a binary: no crate to import).
    let threshold = 10;
    let with = |value: f32| {
        serde_json::to_vec(&json!({"inputs": [{"name": "input__0", "datatype": "FP32",
            "shape": [1, 3, 16, 16], "data": vec![value; 768]}]}))
        .unwrap()
    };
    let health = |base: &str, path: &str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    // poisoned.pt raises for any batch holding a value above 1000 (make_fixtures.py): clients
    // can make it fail batch after batch, but it still runs an input of its own, so it stays
    // live and ready — a client must not be able to get pods restarted.
    let s = start(
        &fixture("poisoned.pt"),
        &["--max-batch-size", "1", "--max-queue-delay-ms", "0"],
    )
    .await;
    wait_ready(&s.base, true).await;
    for _ in 0..threshold + 2 {
        let (code, body, _) = post(&s.base, "poisoned", with(5000.0), &[]).await;
        assert_eq!(code, 500, "{body}");
        assert!(body.to_string().contains("poisoned input"), "{body}");
    }
    assert_eq!(
        (
            health(&s.base, "/v2/health/live").await,
            health(&s.base, "/v2/health/ready").await
        ),
        (200, 200)
    );
    let (code, body, _) = post(&s.base, "poisoned", with(0.5), &[]).await;
    assert_eq!(code, 200, "{body}");

    // sticky_failure.pt fails every forward once it has seen such a value, as a device does after
    // a sticky CUDA error: after the threshold, its own example input fails too — not ready, not
    // live, and why.
    let s = start(
        &fixture("sticky_failure.pt"),
        &["--max-batch-size", "1", "--max-queue-delay-ms", "0"],
    )
    .await;
    wait_ready(&s.base, true).await;
    for i in 0..threshold {
        let value = if i == 0 { 5000.0 } else { 0.5 };
        let (code, body, _) = post(&s.base, "sticky_failure", with(value), &[]).await;
        assert_eq!(code, 500, "{body}");
    }
    assert_eq!(health(&s.base, "/v2/health/ready").await, 503);
    let live = reqwest::get(format!("{}/v2/health/live", s.base))
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 503);
    let why: Value = live.json().await.unwrap();
    assert!(
        why["error"]
            .as_str()
            .is_some_and(|e| e.contains("failed 10 batches in a row")
                && e.contains("the device is lost")
                && e.contains("an example input of its own")),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_shutdown_delay_short() {
    let mut s = start(&fixture("tiny_cnn.pt"), &["--shutdown-delay-seconds", "60"]).await;
    wait_ready(&s.base, true).await;
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    wait_ready(&s.base, false).await;
    // SAFETY: as above.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGINT) };
    let status = wait_exit(
        &mut s.child,
        started + Duration::from_secs(10),
        "a second signal did not end the 60 s shutdown delay",
    )
    .await;
    assert!(status.success(), "{status:?}");
}

/// Runs `greenbatch-runtime loadgen` against the tiny model on `base` (off the async workers).
async fn loadgen(base: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"));
    cmd.args(["loadgen", "--url", base, "--model", "tiny_cnn"])
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_reports_latency_throughput_and_energy_from_the_servers_metrics() {
    let grpc_port = free_port().to_string();
    let s = start(
        &fixture("tiny_cnn.pt"),
        &[
            "--max-batch-size",
            "16",
            "--max-queue-delay-ms",
            "2",
            "--grpc-port",
            &grpc_port,
        ],
    )
    .await;
    wait_ready(&s.base, true).await;
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("open.json");
    let csv_path = dir.path().join("open.csv");
    let (jp, cp) = (
        json_path.display().to_string(),
        csv_path.display().to_string(),
    );
    let open = loadgen(
        &s.base,
        &[
            "--rate",
            "100",
            "--duration-seconds",
            "2",
            "--slo-ms",
            "500",
            "--json",
            &jp,
            "--csv",
            &cp,
        ],
    )
    .await;
    assert!(
        open.status.success(),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["mode"], "open-loop-poisson");
    let requests = report["requests"].as_u64().unwrap();
    assert!(
        (120..=290).contains(&requests),
        "Poisson at 100/s for 2 s gave {requests} requests"
    );
    assert_eq!(report["ok"].as_u64().unwrap(), requests, "{report}");
    assert!(report["latency_p99_ms"].as_f64().unwrap() > 0.0);
    assert!(report["slo_attainment"].as_f64().unwrap() > 0.9);
    // Energy from the server's synthetic meter (a labelled test double), per inference, and
    // the report says which meter it was.
    assert!(
        report["joules_per_inference"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(report["energy_meter"], "synthetic", "{report}");
    assert!(
        std::fs::read_to_string(&csv_path)
            .unwrap()
            .starts_with("mode,protocol,offered_rate")
    );

    // Closed loop, over HTTP and over gRPC: the server counts both in the same metrics.
    let grpc = format!("127.0.0.1:{grpc_port}");
    for (protocol, extra) in [("http", vec![]), ("grpc", vec!["--grpc", grpc.as_str()])] {
        let args = [
            &[
                "--concurrency",
                "4",
                "--duration-seconds",
                "1",
                "--items",
                "2",
            ][..],
            &extra,
        ]
        .concat();
        let closed = loadgen(&s.base, &args).await;
        assert!(
            closed.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&closed.stderr)
        );
        let report: Value = serde_json::from_slice(&closed.stdout).unwrap();
        assert_eq!(
            (report["mode"].as_str(), report["protocol"].as_str()),
            (Some("closed-loop"), Some(protocol))
        );
        let ok = report["ok"].as_u64().unwrap();
        assert!(
            ok > 10 && report["errors"].as_object().unwrap().is_empty(),
            "{report}"
        );
        // 2 items each, counted by the server (its /metrics, read before and after).
        assert!(
            report["server_inferences"].as_f64().unwrap() >= 2.0 * ok as f64,
            "{report}"
        );
    }

    // A gRPC endpoint where nothing listens: a clear error, no report.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out = loadgen(
        &s.base,
        &[
            "--grpc",
            &nowhere,
            "--rate",
            "10",
            "--duration-seconds",
            "1",
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to the gRPC endpoint {nowhere}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_batches_return_only_the_real_rows() {
    let s = start(
        &fixture("tiny_cnn.pt"),
        &[
            "--max-batch-size",
            "8",
            "--max-queue-delay-ms",
            "1",
            "--pad-batches",
            "on",
        ],
    )
    .await;
    wait_ready(&s.base, true).await;
    // 3 items run as a batch of 4; the response has exactly the 3 real rows.
    let (code, out, _) = post(
        &s.base,
        "tiny_cnn",
        request(3, "pad").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["outputs"][0]["shape"], json!([3, 10]));
    assert_eq!(out["outputs"][0]["data"].as_array().unwrap().len(), 30);
    assert_eq!(metric(&s.base, "greenbatch_padding_items_total").await, 1.0);
    assert_eq!(metric(&s.base, "greenbatch_inferences_total").await, 3.0);
}

/// Freezing folds batch norm into the convolutions and `optimize_for_inference` swaps in MKLDNN
/// kernels: each graph preparation must still compute what eager PyTorch computes
/// (`fixtures/conv_bn.expected.json`, written by make_fixtures.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graph_preparation_computes_what_eager_pytorch_computes() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("conv_bn.expected.json")).unwrap())
            .unwrap();
    let expected: Vec<f64> = expected["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // torch.linspace(-1, 1, 768) in float32.
    let input: Vec<f32> = (0..768).map(|i| -1.0 + 2.0 * i as f32 / 767.0).collect();
    let body = json!({"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": input}]})
        .to_string()
        .into_bytes();
    for graph in ["none", "freeze", "optimize"] {
        let s = start(&fixture("conv_bn.pt"), &["--graph", graph]).await;
        wait_ready(&s.base, true).await;
        let (code, out, _) = post(&s.base, "conv_bn", body.clone(), &[]).await;
        assert_eq!(code, 200, "--graph {graph}: {out}");
        let got: Vec<f64> = out["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-4 + 1e-3 * e.abs(),
                "--graph {graph}: output {i} is {g}, eager PyTorch gave {e}"
            );
        }
    }
}

/// The peak resident memory of process `pid` (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test]
async fn a_json_body_of_millions_of_values_costs_memory_in_proportion_to_its_size() {
    // Read as a tree of JSON values, 16M zeros (32 MiB) took ~1 GiB before the element count
    // was checked; read value by value into the element type, past the shape only counted.
    let s = start(&fixture("tiny_cnn.pt"), &["--max-body-bytes", "40000000"]).await;
    wait_ready(&s.base, true).await;
    let values = 16 * 1024 * 1024;
    let mut body =
        br#"{"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": ["#
            .to_vec();
    body.extend("0,".repeat(values - 1).into_bytes());
    body.extend(b"0]}]}");
    let before = peak_kib(s.child.id());
    let (status, answer, _) = post(&s.base, "tiny_cnn", body, &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("needs 768 elements, got {values}"))),
        "{answer}"
    );
    let grown = peak_kib(s.child.id()) - before;
    // The body itself (32 MiB) is held while it is read.
    assert!(
        grown < 96 * 1024,
        "the server's peak memory grew {grown} KiB for a 32 MiB body"
    );
    let (status, _, _) = post(
        &s.base,
        "tiny_cnn",
        request(1, "after").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "the server serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_flat_while_a_full_queue_refuses_large_requests() {
    // Three items wait in a queue of 4 (their batch of 4 waits 30 s); then 100 requests of two
    // items, 512 KB each (51 MB in all, 8 at a time), find no room and are refused: none is held,
    // so the peak memory barely moves.
    let s = start_waiting_for_4_up_to("30000").await;
    let _held = spawn_single_item_requests(&s.base, 3, "held");
    let queued = Instant::now() + Duration::from_secs(10);
    while metric(&s.base, "greenbatch_queue_depth").await < 3.0 {
        assert!(Instant::now() < queued, "the queue never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut body = request(2, "large").to_string().into_bytes();
    body.resize(512 * 1024, b' ');
    let before = peak_kib(s.child.id());
    for wave in 0..(100 / 8) {
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let (base, body) = (s.base.clone(), body.clone());
                tokio::spawn(async move { post(&base, "tiny_cnn", body, &[]).await.0 })
            })
            .collect();
        for sender in senders {
            assert_eq!(sender.await.unwrap(), 429, "wave {wave}");
        }
    }
    let grown = peak_kib(s.child.id()) - before;
    assert!(
        grown < 16 * 1024,
        "peak memory grew {grown} KiB while refusing 51 MB of requests"
    );
}
