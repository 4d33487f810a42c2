//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (the controller has found the CRDs and cached the services; a leader-election standby
//! while it can read the lease — see `Operator::is_ready`).

use crate::controller::{Operator, Role};
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
    let role = op.role();
    let ready = op.is_ready();
    let body = match (&role, ready) {
        (Role::Sole, true) => "ok".to_string(),
        (Role::Leader, true) => "ok: leader".to_string(),
        (Role::Standby { holder }, _) => format!(
            "ok: standby (lease held by {})",
            holder.as_deref().unwrap_or("unknown")
        ),
        (Role::StandbyLeaseUnreadable, _) => "not ready: standby cannot read the lease".into(),
        (Role::Stopped, _) => "not ready: stopping".into(),
        (Role::Sole | Role::Leader, false) => {
            "not ready: CRDs not found yet or services not cached".into()
        }
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
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
