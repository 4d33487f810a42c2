//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (the controller has found the CRDs and cached the services).

use crate::controller::Operator;
use crate::error::OperatorError;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

async fn metrics(State(op): State<Arc<Operator>>) -> impl IntoResponse {
    op.metrics.count_phases(&op.services());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        op.metrics.encode(),
    )
}

async fn readyz(State(op): State<Arc<Operator>>) -> impl IntoResponse {
    if op.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: CRDs not found yet or services not cached",
        )
    }
}

pub fn router(op: Arc<Operator>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(op)
}

/// Binds `addr`; returns the bound address (port 0 picks one) and the server future.
pub async fn bind(
    addr: SocketAddr,
    op: Arc<Operator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), OperatorError>>), OperatorError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OperatorError::Io {
            context: format!("binding the metrics/health address {addr}"),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| OperatorError::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    let fut = async move {
        axum::serve(listener, router(op))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| OperatorError::Io {
                context: format!("serving HTTP on {local}"),
                source,
            })
    };
    Ok((local, fut))
}
