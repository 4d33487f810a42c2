//! HTTP: the KServe v2 endpoints (plus the Triton `config` extension perf_analyzer asks for),
//! `/metrics`, and errors as `{"error": "..."}` with a 4xx/5xx status. Handlers only translate:
//! decoding is `v2`, admission and queueing are `inference`.

use super::inference::{App, Failure, OUTPUT_NAME};
use super::v2::{self, EncodedResponse, InferResponse, OutputTensor};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

type AppState = State<Arc<App>>;

fn error(status: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// A failure as a response: `{"error": ...}`, with `Retry-After` when retrying is worth it (429,
/// 503).
fn failed(f: Failure) -> Response {
    let mut r = error(f.status, f.message);
    if matches!(f.status, 429 | 503) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2/health/live", get(server_live))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_versioned),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_versioned),
        )
        .route("/v2/models/{name}/config", get(model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(model_config_versioned),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_versioned),
        )
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async {
            error(
                405,
                "method not allowed on this endpoint (infer takes POST, the others GET)",
            )
        })
        .fallback(|| async { error(404, "no such endpoint") })
        .with_state(app)
}

/// A 404 for a model name or version this server does not serve.
fn unknown_model(app: &App, name: &str, version: Option<&str>) -> Option<Response> {
    app.check_model(name, version).err().map(failed)
}

/// Live unless the model has failed batch after batch ([`Shared::broken`](super::executor::Shared)):
/// then 503 with why, for the kubelet's liveness probe to restart the container.
async fn server_live(State(app): AppState) -> Response {
    if app.is_live() {
        return Json(json!({"live": true})).into_response();
    }
    let why = app
        .shared
        .not_ready_reason()
        .unwrap_or_else(|| "broken".into());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"live": false, "error": why})),
    )
        .into_response()
}

async fn server_ready(State(app): AppState) -> Response {
    if app.is_ready() {
        Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false})),
        )
            .into_response()
    }
}

async fn server_metadata() -> Response {
    Json(json!({"name": "greenbatch-runtime", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]})).into_response()
}

fn metadata(app: &App) -> Result<serde_json::Value, Failure> {
    let mut input_shape = vec![-1i64];
    input_shape.extend_from_slice(&app.signature.item_shape);
    let mut output_shape = vec![-1i64];
    output_shape.extend(app.output_item_shape()?);
    Ok(json!({
        "name": app.model_name,
        "versions": ["1"],
        "platform": "pytorch_libtorch",
        "inputs": [{"name": app.signature.input_name, "datatype": app.signature.datatype.name(), "shape": input_shape}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": output_shape}],
    }))
}

/// `body` as a JSON answer, or the failure as one.
fn answered(body: Result<serde_json::Value, Failure>) -> Response {
    body.map_or_else(failed, |v| Json(v).into_response())
}

async fn model_metadata(State(app): AppState, Path(name): Path<String>) -> Response {
    unknown_model(&app, &name, None).unwrap_or_else(|| answered(metadata(&app)))
}

async fn model_metadata_versioned(
    State(app): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    unknown_model(&app, &name, Some(&version)).unwrap_or_else(|| answered(metadata(&app)))
}

fn ready_response(app: &App) -> Response {
    if app.is_ready() {
        return Json(json!({"name": app.model_name, "ready": true})).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"name": app.model_name, "ready": false, "reason": app.not_ready_reason()})),
    )
        .into_response()
}

async fn model_ready(State(app): AppState, Path(name): Path<String>) -> Response {
    unknown_model(&app, &name, None).unwrap_or_else(|| ready_response(&app))
}

async fn model_ready_versioned(
    State(app): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    unknown_model(&app, &name, Some(&version)).unwrap_or_else(|| ready_response(&app))
}

/// Triton's model configuration extension: perf_analyzer needs `max_batch_size` to batch.
fn config(app: &App) -> Result<serde_json::Value, Failure> {
    let out_item = app.output_item_shape()?;
    Ok(json!({
        "name": app.model_name,
        "platform": "pytorch_libtorch",
        "max_batch_size": app.signature.max_batch,
        "input": [{"name": app.signature.input_name, "data_type": app.signature.datatype.triton_config_name(), "dims": app.signature.item_shape}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": out_item}],
        "dynamic_batching": {"max_queue_delay_microseconds": app.shared.policy().max_queue_delay.as_micros() as u64},
    }))
}

async fn model_config(State(app): AppState, Path(name): Path<String>) -> Response {
    unknown_model(&app, &name, None).unwrap_or_else(|| answered(config(&app)))
}

async fn model_config_versioned(
    State(app): AppState,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    unknown_model(&app, &name, Some(&version)).unwrap_or_else(|| answered(config(&app)))
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
async fn metrics(State(app): AppState, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) =
        greenbatch_core::exposition::negotiate(app.shared.metrics.encode(), accept);
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn infer(
    State(app): AppState,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_inner(app, name, None, headers, body).await
}

async fn infer_versioned(
    State(app): AppState,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_inner(app, name, Some(version), headers, body).await
}

async fn infer_inner(
    app: Arc<App>,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    let response =
        match infer_response(&app, &name, version.as_deref(), &headers, body, arrived).await {
            Ok(r) => r,
            Err(f) => failed(f),
        };
    app.record(response.status().as_u16(), arrived);
    response
}

/// Bodies up to this size are decoded on the HTTP worker that read them.
const DECODE_INLINE_BYTES: usize = 256 * 1024;

async fn infer_response(
    app: &App,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    arrived: Instant,
) -> Result<Response, Failure> {
    app.check_model(name, version)?;
    app.admit()?;
    let bytes: Bytes = axum::body::to_bytes(body, app.max_body_bytes)
        .await
        .map_err(|e| {
            // Over the limit is the client's size; anything else (a connection cut mid-body,
            // broken chunked encoding) is no size at all.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Failure {
                    status: 413,
                    message: format!("request body exceeds the {} byte limit", app.max_body_bytes),
                }
            } else {
                Failure {
                    status: 400,
                    message: format!("the request body could not be read: {e}"),
                }
            }
        })?;
    let json_len = match headers
        .get("inference-header-content-length")
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<usize>().ok()))
    {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => {
            return Err(v2::V2Error::bad(
                "Inference-Header-Content-Length must be a byte count",
            ));
        }
    };
    // A large body takes a while to decode (a 64 MiB JSON ~0.3 s): off the few HTTP workers,
    // which also answer the kubelet's probes.
    let request = if bytes.len() > DECODE_INLINE_BYTES {
        let signature = app.signature.clone();
        tokio::task::spawn_blocking(move || v2::decode(&bytes, json_len, &signature))
            .await
            .map_err(|e| Failure {
                status: 500,
                message: format!("decoding the request failed: {e}"),
            })??
    } else {
        v2::decode(&bytes, json_len, &app.signature)?
    };
    let answer = app.infer(request, arrived).await?;
    let response = InferResponse {
        model_name: app.model_name.clone(),
        model_version: "1".into(),
        id: answer.id,
        outputs: vec![OutputTensor {
            name: OUTPUT_NAME.into(),
            shape: answer.shape,
            data: answer.data,
            binary: answer.binary,
        }],
    };
    Ok(encoded_response(response.encode()?))
}

/// A 200 with the encoded body: JSON, or the binary extension's JSON header + raw bytes with the
/// header's length in `Inference-Header-Content-Length`.
fn encoded_response(encoded: EncodedResponse) -> Response {
    let content_type = if encoded.json_len.is_some() {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut r = Response::new(Body::from(encoded.body));
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(n) = encoded.json_len {
        headers.insert("inference-header-content-length", HeaderValue::from(n));
    }
    r
}
