//! `greenbatch-runtime serve`: the KServe v2 server with energy-aware dynamic batching.
//!
//! Threads: the HTTP server and, with `--grpc-port`, the gRPC server (tokio), the executor (owns the model), the energy accounting (owns the
//! meter), and the adaptive controller (a tokio task). Lifecycle: the port opens at once and
//! readiness is false until the model has loaded (or forever, with the reason, if it fails); on
//! SIGTERM/SIGINT readiness turns false, new requests get 503, queued and in-flight ones are
//! answered, then the process exits.

pub mod adaptive;
pub mod batcher;
pub mod energy;
pub mod executor;
pub mod grpc;
pub mod inference;
pub mod metrics;
pub mod server;
pub mod staging;
pub mod tensor;
pub mod v2;
pub mod v2_grpc;
pub mod wire;

use crate::cli::ServeArgs;
use crate::error::{Result, RuntimeError};
use adaptive::{AdaptiveConfig, AdaptiveController};
use batcher::BatchPolicy;
use executor::Shared;
use greenbatch_core::select::MAX_QUEUE_DELAY_MS;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a gRPC connection lives before the server asks the client to reconnect.
const GRPC_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// How long its calls may still take after that.
const GRPC_MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);
/// How long shutdown waits for gRPC connections to close once the drain has answered every call.
const GRPC_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

fn usage(arg: &'static str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Usage {
        arg,
        message: message.into(),
    }
}

/// A listening socket on `addr` (within the tokio runtime), and the address it listens on. On
/// `::` (the default) one dual-stack socket takes IPv6 and IPv4 alike, whatever the host's
/// `net.ipv6.bindv6only` says, so pods answer their kubelet and the operator in IPv6-only and
/// IPv4 clusters alike; where the host has no IPv6 it falls back to `0.0.0.0`.
fn listen(
    addr: SocketAddr,
) -> std::result::Result<(tokio::net::TcpListener, SocketAddr), (SocketAddr, std::io::Error)> {
    let std_listener = if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        match dual_stack(addr) {
            Ok(l) => Ok((l, addr)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err((addr, e)),
            Err(e) => {
                let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
                tracing::info!(error = %e, "no IPv6 here: listening on IPv4 only");
                std::net::TcpListener::bind(v4)
                    .map(|l| (l, v4))
                    .map_err(|e| (v4, e))
            }
        }
    } else {
        std::net::TcpListener::bind(addr)
            .map(|l| (l, addr))
            .map_err(|e| (addr, e))
    }?;
    let (l, at) = std_listener;
    l.set_nonblocking(true).map_err(|e| (at, e))?;
    // The actual port when 0 was asked for.
    let at = l.local_addr().unwrap_or(at);
    tokio::net::TcpListener::from_std(l)
        .map(|l| (l, at))
        .map_err(|e| (at, e))
}

fn dual_stack(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Items the queue holds: as asked, never less than one full batch (a batch is dispatched when
/// the queue holds `max_batch` items: a smaller queue would make every batch wait its whole delay
/// and refuse the largest requests for ever).
fn queue_capacity(asked: Option<usize>, max_batch: u32) -> Result<usize> {
    let batch = max_batch as usize;
    match asked {
        None => Ok(DEFAULT_QUEUE_CAPACITY.max(2 * batch)),
        Some(asked) if asked < batch => Err(usage(
            "--queue-capacity",
            format!(
                "{asked} is below --max-batch-size {batch}: the queue could never hold a full batch"
            ),
        )),
        Some(asked) => Ok(asked),
    }
}

const DEFAULT_QUEUE_CAPACITY: usize = 1024;

pub fn run(args: &ServeArgs) -> Result<()> {
    if !(1..=greenbatch_crds::inference_service::MAX_BATCH_SIZE).contains(&args.max_batch_size) {
        return Err(usage(
            "--max-batch-size",
            format!("{} is outside 1..=4096", args.max_batch_size),
        ));
    }
    if !(args.max_queue_delay_ms.is_finite()
        && (0.0..=MAX_QUEUE_DELAY_MS).contains(&args.max_queue_delay_ms))
    {
        return Err(usage(
            "--max-queue-delay-ms",
            format!(
                "{} is outside 0..={MAX_QUEUE_DELAY_MS}",
                args.max_queue_delay_ms
            ),
        ));
    }
    let dtype = crate::setup::parse_dtype(&args.model.exec.dtype)?;
    let datatype = v2::Datatype::from_dtype(dtype).ok_or_else(|| {
        usage(
            "--dtype",
            "the server accepts float32, int64, int32 or uint8 inputs (fp16/bf16 via --precision)",
        )
    })?;
    let policy = BatchPolicy {
        max_batch: args.max_batch_size,
        max_queue_delay: Duration::from_secs_f64(args.max_queue_delay_ms / 1000.0),
    };
    let profile = match (&args.profile, &args.profile_json) {
        (Some(path), _) => Some((
            crate::profile_input::read_profile(path, "--profile")?,
            "--profile",
        )),
        (None, Some(json)) => Some((
            crate::profile_input::parse_profile(json, "--profile-json")?,
            "--profile-json",
        )),
        (None, None) => None,
    };
    let controller = match (profile, args.slo_ms) {
        (Some((status, arg)), Some(slo_ms)) => {
            let table = status
                .table
                .ok_or_else(|| usage(arg, "the profile has no table"))?;
            let slo = greenbatch_core::Slo::from_parts(slo_ms, args.percentile)
                .map_err(|e| usage("--slo-ms", e.to_string()))?;
            if !(args.target_utilisation > 0.0 && args.target_utilisation <= 1.0) {
                return Err(usage(
                    "--target-utilisation",
                    format!("{} is outside (0, 1]", args.target_utilisation),
                ));
            }
            let usable = table
                .rows
                .iter()
                .filter(|r| r.batch_size <= args.max_batch_size)
                .count();
            if usable == 0 {
                tracing::warn!(
                    source = arg,
                    max_batch_size = args.max_batch_size,
                    "no profiled batch size is within --max-batch-size: adaptive batching stays off"
                );
                None
            } else {
                tracing::info!(
                    source = arg,
                    batch_sizes = usable,
                    slo_ms,
                    percentile = args.percentile,
                    target_utilisation = args.target_utilisation,
                    "adaptive batching from the profile"
                );
                Some(AdaptiveController::new(
                    table,
                    slo,
                    args.max_batch_size,
                    policy,
                    AdaptiveConfig {
                        policy: greenbatch_core::Policy {
                            target_utilisation: args.target_utilisation,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                ))
            }
        }
        (Some((_, arg)), None) => return Err(usage(arg, "adaptive batching needs --slo-ms too")),
        _ => None,
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| model_name(&args.model.model));
    let shared = Arc::new(Shared::new(
        policy,
        queue_capacity(args.queue_capacity, args.max_batch_size)?,
        args.pad_batches,
    ));
    let app = Arc::new(inference::App {
        shared: shared.clone(),
        model_name: name.clone(),
        signature: v2::Signature {
            input_name: "input__0".into(),
            datatype,
            item_shape: args.model.exec.shape.clone(),
            max_batch: args.max_batch_size,
        },
        max_body_bytes: args.max_body_bytes,
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads)
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Output {
            path: "tokio runtime".into(),
            message: e.to_string(),
        })?;
    rt.block_on(async move {
        let (listener, addr) = listen(std::net::SocketAddr::from((args.bind, args.port)))
            .map_err(|(addr, e)| RuntimeError::Output { path: format!("listen {addr}"), message: e.to_string() })?;
        tracing::info!(%addr, model = %name, max_batch = policy.max_batch, max_queue_delay_ms = args.max_queue_delay_ms, "listening");
        // gRPC beside HTTP: it stops taking calls when the drain starts (as HTTP does) and
        // answers the ones in flight.
        let (stop_grpc, grpc_stopped) = tokio::sync::watch::channel(false);
        let grpc = match args.grpc_port {
            None => None,
            Some(port) => {
                let (listener, addr) = listen(std::net::SocketAddr::from((args.bind, port)))
                    .map_err(|(addr, e)| RuntimeError::Output { path: format!("listen {addr} (gRPC)"), message: e.to_string() })?;
                tracing::info!(%addr, "listening (KServe v2 gRPC)");
                let service = grpc::InferenceService::new(app.clone());
                let mut stopped = grpc_stopped.clone();
                Some(tokio::spawn(
                    tonic::transport::Server::builder()
                        // A gRPC client keeps one HTTP/2 connection: ended after a while (its
                        // calls finish first), a client reconnects through the Service and
                        // spreads over the replicas the operator adds. Pings find dead peers,
                        // which would otherwise hold the graceful shutdown open.
                        .max_connection_age(GRPC_MAX_CONNECTION_AGE)
                        .max_connection_age_grace(GRPC_MAX_CONNECTION_AGE_GRACE)
                        .http2_keepalive_interval(Some(Duration::from_secs(30)))
                        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                        // Image tensors are hundreds of kilobytes: in HTTP/2's default 16 KB
                        // frames and 1 MiB connection window, 32 requests in flight on one
                        // connection crawl through flow control (measured: 0.49x HTTP's
                        // throughput at 602 KB, 0.65x with these; benchmarks/grpc_host_path.sh).
                        // A connection may then hold 16 MiB in flight.
                        .max_frame_size(Some(1 << 20))
                        .initial_stream_window_size(Some(4 << 20))
                        .initial_connection_window_size(Some(16 << 20))
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            // Without TCP_NODELAY a small response waits for the client's
                            // delayed ACK: a measured ~40 ms p99 on loopback.
                            tonic::transport::server::TcpIncoming::from(listener)
                                .with_nodelay(Some(true)),
                            async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            },
                        ),
                ))
            }
        };

        let model_args = args.model.clone();
        let exec_shared = shared.clone();
        let (device_tx, device_rx) = std::sync::mpsc::channel();
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<RuntimeError>();
        let executor = std::thread::Builder::new()
            .name("executor".into())
            .spawn(move || {
                executor::run(
                    || {
                        let m = crate::setup::load_model(&model_args.model, &model_args.exec);
                        let _ = device_tx.send(m.as_ref().map(|m| m.config.device).ok());
                        m.map_err(|e| {
                            let message = e.to_string();
                            let _ = failed_tx.send(e);
                            message
                        })
                    },
                    exec_shared,
                )
            })
            .map_err(|e| RuntimeError::Output { path: "executor thread".into(), message: e.to_string() })?;
        let meter = args.meter;
        let energy_shared = shared.clone();
        std::thread::Builder::new()
            .name("energy".into())
            .spawn(move || {
                if let Ok(Some(device)) = device_rx.recv() {
                    energy::run(energy_shared, meter, device, Duration::from_millis(250));
                }
            })
            .map_err(|e| RuntimeError::Output { path: "energy thread".into(), message: e.to_string() })?;
        if let Some(c) = controller {
            tokio::spawn(adapt(shared.clone(), c));
        }

        let drain_shared = shared.clone();
        let (load_error_tx, load_error_rx) = tokio::sync::oneshot::channel::<RuntimeError>();
        let exit_after = args.exit_after_load_failure_seconds;
        let shutdown_delay = Duration::from_secs(args.shutdown_delay_seconds);
        let shutdown = async move {
            tokio::select! {
                () = shutdown_signal() => {
                    // Not ready at once, so the endpoints let go of this pod; answer what still
                    // arrives meanwhile instead of refusing it, then drain. Only a server that
                    // was serving has endpoints to wait for; a second signal (Ctrl-C twice)
                    // drains at once.
                    drain_shared.terminating.store(true, Ordering::Relaxed);
                    if drain_shared.ready.load(Ordering::Relaxed) && !shutdown_delay.is_zero() {
                        tracing::info!(delay_seconds = shutdown_delay.as_secs(), "shutdown requested: not ready; serving on for the shutdown delay (a second signal drains at once)");
                        tokio::select! {
                            () = tokio::time::sleep(shutdown_delay) => {}
                            () = shutdown_signal() => tracing::info!("second signal"),
                        }
                    }
                    tracing::info!("draining");
                }
                Some(e) = exit_after_load_failure(failed_rx, exit_after) => {
                    tracing::error!("exiting: the model could not be loaded ({e})");
                    let _ = load_error_tx.send(e);
                }
            }
            drain_shared.draining.store(true, Ordering::Relaxed);
            drain_shared.wake.notify_all();
            let _ = stop_grpc.send(true);
        };
        axum::serve(listener, server::router(app))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| RuntimeError::Output { path: "http server".into(), message: e.to_string() })?;
        shared.draining.store(true, Ordering::Relaxed);
        shared.wake.notify_all();
        if let Some(grpc) = grpc {
            // Its calls were answered with HTTP's drain; what is left is connections closing,
            // which a peer that vanished could hold open: not past this.
            match tokio::time::timeout(GRPC_CLOSE_TIMEOUT, grpc).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!("the gRPC server failed: {e}"),
                Ok(Err(e)) => tracing::error!("the gRPC server task failed: {e}"),
                Err(_) => tracing::warn!(
                    "gRPC connections still open {} s after the drain: closing them",
                    GRPC_CLOSE_TIMEOUT.as_secs()
                ),
            }
        }
        let _ = tokio::task::spawn_blocking(move || executor.join()).await;
        tracing::info!("stopped");
        match load_error_rx.await {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
        }
    })
}

/// A v2 model name from the model argument: the builtin name or the file stem.
fn model_name(model: &str) -> String {
    let base = model.strip_prefix("builtin:").unwrap_or(model);
    // A URL's query (a presigned URL's secret) is no part of a name.
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let file = base.rsplit('/').next().unwrap_or(base);
    let stem = file.split('.').next().unwrap_or(file);
    if stem.is_empty() {
        "model".into()
    } else {
        stem.to_string()
    }
}

/// The load failure, once it has been reported on the readiness endpoints for `seconds`; never
/// when the model loaded, or when `seconds` is 0 (the server then stays up, not ready).
async fn exit_after_load_failure(
    failed: tokio::sync::oneshot::Receiver<RuntimeError>,
    seconds: u64,
) -> Option<RuntimeError> {
    match failed.await {
        Ok(e) if seconds > 0 => {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            Some(e)
        }
        _ => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Every second: the arrival rate (EWMA) into the controller; its adjustments into the batcher.
async fn adapt(shared: Arc<Shared>, mut controller: AdaptiveController) {
    let mut last = shared.arrivals.load(Ordering::Relaxed);
    let mut rate: Option<f64> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let now_count = shared.arrivals.load(Ordering::Relaxed);
        let observed = (now_count - last) as f64;
        last = now_count;
        let r = rate.map_or(observed, |r| 0.7 * r + 0.3 * observed);
        rate = Some(r);
        if let Some(adj) = controller.observe(shared.origin.elapsed(), r) {
            tracing::info!(
                rate = format!("{:.0}", adj.rate),
                max_batch = adj.policy.max_batch,
                max_queue_delay_ms =
                    format!("{:.2}", adj.policy.max_queue_delay.as_secs_f64() * 1000.0),
                "adaptive batching: {}",
                adj.reason
            );
            shared.metrics.adjustments.inc();
            shared.set_policy(adj.policy);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_queue_always_holds_a_full_batch() {
        use super::queue_capacity;
        assert_eq!(queue_capacity(None, 8).unwrap(), 1024);
        // Batch sizes the API allows beyond 1024 (to 4096) still fill.
        assert_eq!(queue_capacity(None, 2048).unwrap(), 4096);
        assert_eq!(queue_capacity(Some(64), 64).unwrap(), 64);
        let err = queue_capacity(Some(1024), 2048).unwrap_err().to_string();
        assert!(
            err.contains("--queue-capacity") && err.contains("2048"),
            "{err}"
        );
    }

    #[test]
    fn model_names_come_from_the_model_argument() {
        assert_eq!(super::model_name("builtin:resnet50"), "resnet50");
        assert_eq!(super::model_name("/models/classifier.pt"), "classifier");
        assert_eq!(super::model_name("/models/"), "model");
        assert_eq!(
            super::model_name("https://store.example/r50.pt?X-Amz-Signature=s3cr3t"),
            "r50"
        );
    }
}
