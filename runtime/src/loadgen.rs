//! `greenbatch-runtime loadgen`: drives a v2 server with open-loop Poisson arrivals (`--rate`) or a
//! closed loop (`--concurrency`), over HTTP (binary tensors) or gRPC (`--grpc`), and reports
//! latency percentiles, throughput, errors by status, SLO attainment, and joules per inference read
//! from the server's own `/metrics` (energy and inference counters before and after).

use crate::cli::LoadgenArgs;
use crate::error::{Result, RuntimeError};
use crate::serve::v2_grpc::{InferInputTensor, ModelInferRequest, ModelInferResponse};
use greenbatch_core::stats::quantile;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Serialize, Debug)]
pub struct Report {
    pub mode: String,
    /// `http` or `grpc`.
    pub protocol: String,
    pub offered_rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub duration_seconds: f64,
    pub requests: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, usize>,
    pub throughput_per_second: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub slo_ms: Option<f64>,
    pub slo_attainment: Option<f64>,
    pub server_inferences: Option<f64>,
    pub server_energy_joules: Option<f64>,
    pub joules_per_inference: Option<f64>,
    /// The meter behind the server's joules, as it says (`synthetic`: a test double, not a
    /// measurement).
    pub energy_meter: Option<String>,
}

fn err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Output {
        path: "loadgen".into(),
        message: e.to_string(),
    }
}

/// The server's (inferences, energy joules) counters, read as the operator reads them; energy 0
/// from a server without a meter (the J/inference it gives is then none).
async fn scrape(client: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let counters = server_counters(client, url).await?;
    Some((counters.inferences, counters.energy_joules.unwrap_or(0.0)))
}

async fn server_counters(
    client: &reqwest::Client,
    url: &str,
) -> Option<greenbatch_core::serving_metrics::ServerCounters> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    greenbatch_core::serving_metrics::parse(&text).ok()
}

/// A scrape taken just after the server's energy counter moved. The server adds energy once per
/// meter tick (250 ms) but counts inferences at once: read at an arbitrary moment, the energy
/// would lag the run's edges by up to a tick, swapping busy joules at the end for idle ones
/// before the start. Aligned at both edges, the energy covers the whole run (and at most one
/// tick after it). A server without a meter (its energy never moves) is read as it was, after
/// waiting out [`ENERGY_TICK_WAIT`].
async fn scrape_at_energy_tick(client: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let first = scrape(client, url).await?;
    let deadline = Instant::now() + ENERGY_TICK_WAIT;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        match scrape(client, url).await {
            Some(now) if now.1 != first.1 => return Some(now),
            Some(_) => {}
            None => break,
        }
    }
    Some(first)
}

/// Longest wait for the server's energy counter to move (its meter ticks every 250 ms).
const ENERGY_TICK_WAIT: Duration = Duration::from_millis(600);

/// A request body in the binary tensor extension (JSON header + raw little-endian tensor bytes),
/// as perf_analyzer sends it: decoding it costs the server far less than JSON numbers.
struct Body {
    /// Built once; every request sends the same buffer (a reference-counted clone, not a copy of
    /// hundreds of kilobytes per request on the client's cores).
    bytes: bytes::Bytes,
    header_len: usize,
}

/// The one input every request sends: what the model's metadata says it takes, `items` of it.
struct Input {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    /// Little-endian values.
    data: Vec<u8>,
}

impl Input {
    fn http_body(self) -> Body {
        // Outputs come back as binary too, as perf_analyzer and tritonclient ask by default.
        let header = serde_json::json!({"inputs": [{"name": self.name, "datatype": self.datatype,
            "shape": self.shape, "parameters": {"binary_data_size": self.data.len()}}],
            "parameters": {"binary_data_output": true}})
        .to_string()
        .into_bytes();
        let header_len = header.len();
        Body {
            bytes: bytes::Bytes::from([header, self.data].concat()),
            header_len,
        }
    }

    /// As Triton's gRPC clients send it: the tensor as raw bytes beside its head.
    fn grpc_request(self, model: &str) -> ModelInferRequest {
        ModelInferRequest {
            model_name: model.to_string(),
            inputs: vec![InferInputTensor {
                name: self.name,
                datatype: self.datatype,
                shape: self.shape,
                ..Default::default()
            }],
            raw_input_contents: vec![self.data.into()],
            ..Default::default()
        }
    }
}

async fn request_input(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    items: u32,
) -> Result<Input> {
    let meta: serde_json::Value = client
        .get(format!("{url}/v2/models/{model}"))
        .send()
        .await
        .map_err(err)?
        .error_for_status()
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let input = &meta["inputs"][0];
    let mut shape: Vec<i64> = input["shape"]
        .as_array()
        .ok_or_else(|| err("metadata has no input shape"))?
        .iter()
        .filter_map(|d| d.as_i64())
        .collect();
    if shape.is_empty() {
        return Err(err("metadata has an empty input shape"));
    }
    shape[0] = i64::from(items);
    let n = shape.iter().product::<i64>().max(0) as usize;
    let datatype = input["datatype"].as_str().unwrap_or("FP32");
    let data: Vec<u8> = match datatype {
        "FP32" => (0..n)
            .flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes())
            .collect(),
        "INT64" => (0..n)
            .flat_map(|i| ((i % 7) as i64).to_le_bytes())
            .collect(),
        "INT32" => (0..n)
            .flat_map(|i| ((i % 7) as i32).to_le_bytes())
            .collect(),
        "UINT8" => (0..n).map(|i| (i % 7) as u8).collect(),
        other => return Err(err(format!("unsupported input datatype {other}"))),
    };
    Ok(Input {
        name: input["name"].as_str().unwrap_or_default().to_string(),
        datatype: datatype.to_string(),
        shape,
        data,
    })
}

/// Where the requests go.
#[derive(Clone)]
enum Target {
    Http {
        client: reqwest::Client,
        url: String,
        body: Arc<Body>,
    },
    Grpc {
        /// One client per connection, taken in turn: one HTTP/2 connection would be served by
        /// one task on the server and share one flow-control window, which is not what many
        /// clients (or the HTTP side's connection pool) do.
        clients: Arc<Vec<tonic::client::Grpc<tonic::transport::Channel>>>,
        next: Arc<AtomicUsize>,
        request: Arc<ModelInferRequest>,
    },
}

/// How long one request may take before it counts as `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a request ended: `Ok`, or its error as the report counts it (an HTTP status, a gRPC code,
/// `connection`).
type Outcome = std::result::Result<(), String>;

impl Target {
    async fn send(&self) -> Outcome {
        match self {
            Target::Http { client, url, body } => {
                let label = |e: reqwest::Error| {
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection"
                    }
                    .to_string()
                };
                let response = client
                    .post(url)
                    .header("Inference-Header-Content-Length", body.header_len)
                    .body(body.bytes.clone())
                    .send()
                    .await
                    .map_err(label)?;
                let status = response.status();
                // The whole answer, as gRPC's is: a request is done when its outputs are in
                // (and the connection goes back to the pool for the next).
                response.bytes().await.map_err(label)?;
                if status.as_u16() == 200 {
                    Ok(())
                } else {
                    Err(status.as_u16().to_string())
                }
            }
            Target::Grpc {
                clients,
                next,
                request,
            } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % clients.len().max(1);
                let mut client = clients[i].clone();
                client.ready().await.map_err(|_| "connection".to_string())?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(INFER_PATH);
                let codec =
                    tonic_prost::ProstCodec::<ModelInferRequest, ModelInferResponse>::default();
                // The tensor is shared (`Bytes`), and copied once per request into the
                // encode buffer tonic sends (about 60 µs for 602 KB on one core).
                client
                    .unary(tonic::Request::new(request.as_ref().clone()), path, codec)
                    .await
                    .map(|_| ())
                    .map_err(|s| grpc_error_label(&s))
            }
        }
    }
}

/// A failed gRPC call as the report counts it: the server's answer by its code (`grpc
/// Unavailable`: a full queue or a server that is not ready), or — a status made on this side, with
/// the transport's error beneath it — `timeout` or `connection`.
fn grpc_error_label(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(e) if e.downcast_ref::<tonic::TimeoutExpired>().is_some() => "timeout".into(),
        Some(_) => "connection".into(),
        None => format!("grpc {:?}", status.code()),
    }
}

/// The v2 gRPC inference method.
const INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

async fn grpc_channel(address: &str) -> Result<tonic::transport::Channel> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| RuntimeError::Usage {
            arg: "--grpc",
            message: format!("{address:?} is not host:port: {e}"),
        })?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| {
            err(format!(
                "cannot connect to the gRPC endpoint {address}: {e}"
            ))
        })
}

pub fn run(args: &LoadgenArgs) -> Result<()> {
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(RuntimeError::Usage {
            arg: "--rate",
            message: "must be a positive number of requests per second".into(),
        });
    }
    if args.concurrency == Some(0)
        || !(args.duration_seconds.is_finite() && args.duration_seconds > 0.0)
    {
        return Err(RuntimeError::Usage {
            arg: "--concurrency/--duration-seconds",
            message: "must be positive".into(),
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(err)?;
    let report = rt.block_on(drive(args))?;
    let json = serde_json::to_string_pretty(&report).map_err(err)?;
    crate::output::show(&format!("{json}\n"));
    if let Some(p) = &args.json {
        crate::output::JsonSink::prepare(p)?.commit(&json)?;
    }
    if let Some(p) = &args.csv {
        let header = "mode,protocol,offered_rate,concurrency,requests,ok,throughput_per_second,p50_ms,p95_ms,p99_ms,slo_attainment,joules_per_inference";
        let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let row = format!(
            "{},{},{},{},{},{},{:.3},{},{},{},{},{}",
            report.mode,
            report.protocol,
            f(report.offered_rate),
            report
                .concurrency
                .map(|c| c.to_string())
                .unwrap_or_default(),
            report.requests,
            report.ok,
            report.throughput_per_second,
            f(report.latency_p50_ms),
            f(report.latency_p95_ms),
            f(report.latency_p99_ms),
            f(report.slo_attainment),
            f(report.joules_per_inference)
        );
        crate::output::JsonSink::prepare(p)?.commit(&format!("{header}\n{row}"))?;
    }
    Ok(())
}

type Outcomes = Arc<Mutex<Vec<(Outcome, f64)>>>;

/// Requests sent and the last moment one finished: what a run that ended with requests still
/// open is measured by.
#[derive(Default)]
struct Progress {
    sent: std::sync::atomic::AtomicUsize,
    last_done: Mutex<Option<Instant>>,
}

/// One request, its latency counted from `due`: the moment the schedule said to send it, so a
/// client that falls behind (busy threads, a late timer) does not hide the wait in its numbers.
async fn one(target: Target, out: Outcomes, due: Instant, progress: Arc<Progress>) {
    progress
        .sent
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let outcome = target.send().await;
    let done = Instant::now();
    let ms = (done - due).as_secs_f64() * 1000.0;
    out.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((outcome, ms));
    if let Ok(mut last) = progress.last_done.lock() {
        *last = Some(last.map_or(done, |l| l.max(done)));
    }
}

async fn drive(args: &LoadgenArgs) -> Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(err)?;
    let base = args.url.trim_end_matches('/').to_string();
    // The model's input from its metadata over HTTP (which serves /metrics too).
    let input = request_input(&client, &base, &args.model, args.items).await?;
    let target = match &args.grpc {
        None => Target::Http {
            client: client.clone(),
            url: format!("{base}/v2/models/{}/infer", args.model),
            body: Arc::new(input.http_body()),
        },
        Some(address) => {
            let mut clients = Vec::new();
            for _ in 0..args.grpc_connections.max(1) {
                // Responses as large as the server sends (tonic's default stops at 4 MiB).
                clients.push(
                    tonic::client::Grpc::new(grpc_channel(address).await?)
                        .max_decoding_message_size(usize::MAX),
                );
            }
            Target::Grpc {
                clients: Arc::new(clients),
                next: Arc::new(AtomicUsize::new(0)),
                request: Arc::new(input.grpc_request(&args.model)),
            }
        }
    };
    let before = scrape_at_energy_tick(&client, &base).await;
    let outcomes: Outcomes = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::new(Progress::default());
    let duration = Duration::from_secs_f64(args.duration_seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    match (args.rate, args.concurrency) {
        (Some(rate), _) => {
            let exp = Exp::new(rate).map_err(err)?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
            let mut next = Duration::ZERO;
            while next < duration {
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + next)).await;
                tasks.push(tokio::spawn(one(
                    target.clone(),
                    outcomes.clone(),
                    start + next,
                    progress.clone(),
                )));
                next += Duration::from_secs_f64(exp.sample(&mut rng));
            }
        }
        (None, Some(c)) => {
            for _ in 0..c {
                let (target, out, progress) = (target.clone(), outcomes.clone(), progress.clone());
                tasks.push(tokio::spawn(async move {
                    while start.elapsed() < duration {
                        one(
                            target.clone(),
                            out.clone(),
                            Instant::now(),
                            progress.clone(),
                        )
                        .await;
                    }
                }));
            }
        }
        (None, None) => {
            return Err(RuntimeError::Usage {
                arg: "--rate/--concurrency",
                message: "give one".into(),
            });
        }
    }
    let drain = Duration::try_from_secs_f64(args.drain_seconds.max(0.0)).unwrap_or(Duration::ZERO);
    let cut_off_at = tokio::time::Instant::from_std(start + duration + drain);
    for mut t in tasks {
        if tokio::time::timeout_at(cut_off_at, &mut t).await.is_err() {
            t.abort();
        }
    }
    // The run ends at its last answer (or its scheduled end): not at a cut-off straggler's.
    let ended = progress
        .last_done
        .lock()
        .ok()
        .and_then(|l| *l)
        .map_or(start + duration, |l| l.max(start + duration));
    let elapsed = (ended - start).as_secs_f64();
    let after = scrape_at_energy_tick(&client, &base).await;
    let mut outcomes = outcomes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let sent = progress.sent.load(std::sync::atomic::Ordering::Relaxed);
    let cut_off_ms = (duration + drain).as_secs_f64() * 1000.0;
    for _ in outcomes.len()..sent {
        outcomes.push((Err("unfinished".to_string()), cut_off_ms));
    }
    let ok_lat: Vec<f64> = outcomes
        .iter()
        .filter(|(o, _)| o.is_ok())
        .map(|(_, ms)| *ms)
        .collect();
    let mut errors = BTreeMap::new();
    for (o, _) in &outcomes {
        if let Err(label) = o {
            *errors.entry(label.clone()).or_insert(0) += 1;
        }
    }
    let (inferences, energy) = match (before, after) {
        (Some(b), Some(a)) => (Some(a.0 - b.0), Some(a.1 - b.1)),
        _ => (None, None),
    };
    let energy_meter = server_counters(&client, &base)
        .await
        .and_then(|c| c.energy_meter);
    Ok(Report {
        mode: if args.rate.is_some() {
            "open-loop-poisson".into()
        } else {
            "closed-loop".into()
        },
        protocol: if args.grpc.is_some() { "grpc" } else { "http" }.into(),
        offered_rate: args.rate,
        concurrency: args.concurrency,
        duration_seconds: elapsed,
        requests: outcomes.len(),
        ok: ok_lat.len(),
        errors,
        throughput_per_second: ok_lat.len() as f64 * f64::from(args.items) / elapsed,
        latency_p50_ms: quantile(&ok_lat, 0.5),
        latency_p95_ms: quantile(&ok_lat, 0.95),
        latency_p99_ms: quantile(&ok_lat, 0.99),
        slo_ms: args.slo_ms,
        slo_attainment: args.slo_ms.filter(|_| !outcomes.is_empty()).map(|slo| {
            outcomes
                .iter()
                .filter(|(o, ms)| o.is_ok() && *ms <= slo)
                .count() as f64
                / outcomes.len() as f64
        }),
        server_inferences: inferences,
        server_energy_joules: energy.filter(|e| *e > 0.0),
        joules_per_inference: match (energy, inferences) {
            (Some(e), Some(n)) if n > 0.0 && e > 0.0 => Some(e / n),
            _ => None,
        },
        energy_meter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_still_open_after_the_drain_are_cut_off_as_unfinished() {
        use clap::Parser;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A server whose metadata and metrics answer, and whose inference never does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = if head.starts_with("GET /v2/models/m ") {
                        r#"{"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}]}"#
                    } else if head.starts_with("GET /metrics") {
                        "greenbatch_inferences_total 0\n"
                    } else {
                        // Inference: hold the connection open, answer nothing.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    };
                    let _ = socket
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        let cli = crate::cli::Cli::try_parse_from([
            "greenbatch-runtime",
            "loadgen",
            "--url",
            &url,
            "--model",
            "m",
            "--rate",
            "20",
            "--duration-seconds",
            "0.3",
            "--drain-seconds",
            "0.5",
            "--slo-ms",
            "100",
        ])
        .unwrap();
        let crate::cli::Command::Loadgen(args) = cli.command else {
            panic!("not loadgen");
        };
        let started = Instant::now();
        let report = drive(&args).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the stragglers"
        );
        assert!(report.requests > 0 && report.ok == 0, "{report:?}");
        assert_eq!(report.errors.get("unfinished"), Some(&report.requests));
        assert_eq!(report.slo_attainment, Some(0.0));
        // The run ends at its scheduled end when nothing finished, not at the cut-off.
        assert!(report.duration_seconds < 0.4, "{}", report.duration_seconds);
    }

    #[tokio::test]
    async fn a_request_sent_late_counts_its_wait() {
        // A server that answers at once, and a request due 100 ms ago (the client fell behind).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/infer", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        });
        let target = Target::Http {
            client: reqwest::Client::new(),
            url,
            body: Arc::new(Body {
                bytes: bytes::Bytes::from_static(b"{}"),
                header_len: 2,
            }),
        };
        let out: Outcomes = Arc::default();
        let due = Instant::now() - Duration::from_millis(100);
        one(target, out.clone(), due, Arc::default()).await;
        let (outcome, ms) = out.lock().unwrap()[0].clone();
        assert_eq!(outcome, Ok(()));
        assert!(ms >= 100.0, "{ms} ms");
    }

    #[test]
    fn grpc_errors_are_told_apart_from_the_servers_answers() {
        // The server's answer (a full queue, say): its code.
        let answered = tonic::Status::unavailable("the queue is full");
        assert_eq!(grpc_error_label(&answered), "grpc Unavailable");
        // Made on this side from a transport failure: no answer came.
        let timed_out = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(grpc_error_label(&timed_out), "timeout");
        let reset = tonic::Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(grpc_error_label(&reset), "connection");
    }

    #[test]
    fn the_grpc_requests_go_to_the_v2_inference_method() {
        assert_eq!(
            INFER_PATH,
            format!("/{}/ModelInfer", crate::serve::v2_grpc::SERVICE)
        );
    }

    #[test]
    fn an_input_goes_out_as_binary_http_and_as_a_raw_grpc_tensor() {
        let input = || Input {
            name: "input__0".into(),
            datatype: "FP32".into(),
            shape: vec![2, 3],
            data: vec![7u8; 24],
        };
        let body = input().http_body();
        let (head, tensor) = body.bytes.split_at(body.header_len);
        let head: serde_json::Value = serde_json::from_slice(head).expect("a JSON head");
        assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 24);
        assert_eq!(head["inputs"][0]["shape"], serde_json::json!([2, 3]));
        assert_eq!(tensor, &[7u8; 24][..]);
        let r = input().grpc_request("m");
        assert_eq!(r.model_name, "m");
        assert_eq!(
            (r.inputs[0].name.as_str(), r.inputs[0].shape.as_slice()),
            ("input__0", &[2i64, 3][..])
        );
        assert_eq!(
            r.raw_input_contents,
            vec![bytes::Bytes::from(vec![7u8; 24])]
        );
        // What the server decodes from it.
        let sig = crate::serve::v2::Signature {
            input_name: "input__0".into(),
            datatype: crate::serve::v2::Datatype::Fp32,
            item_shape: vec![3],
            max_batch: 4,
        };
        assert_eq!(
            crate::serve::v2_grpc::decode_infer(&r, &sig)
                .expect("decodes")
                .items,
            2
        );
    }
}
