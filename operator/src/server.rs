//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (the controller has found the CRDs and cached the services; a leader-election standby
//! while it can read the lease — see `Operator::is_ready`), and `/plots/{namespace}/{name}` (a
//! service's plot, SVG: see `plot`).

use crate::controller::{Operator, Role};
use crate::error::OperatorError;
use crate::plot::{ServicePlotError, service_plot};
use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use greenbatch_crds::{EnergyProfile, InferenceService};
use kube::{Api, Client};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the handlers share: the operator (metrics, readiness) and, for plots, a client to read the
/// service and its profile with (any replica answers, leader or standby).
#[derive(Clone)]
struct AppState {
    op: Arc<Operator>,
    client: Option<Client>,
    /// Plots drawn at once: each reads the API twice on the client reconciles use, and the port
    /// has no authentication, so a burst of plot requests must not crowd out reconciling.
    plots: Arc<tokio::sync::Semaphore>,
}

const PLOTS_AT_ONCE: usize = 4;

/// A namespace or object name as the API server allows them (DNS-1123 subdomain: lowercase
/// letters, digits, '-' and '.', at most 253): anything else is not a name and never reaches a
/// request path.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && s.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

impl FromRef<AppState> for Arc<Operator> {
    fn from_ref(state: &AppState) -> Self {
        state.op.clone()
    }
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// How long a plot waits for each API read.
const PLOT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// GET `/plots/{namespace}/{name}`: 200 SVG; 400 for what is not a Kubernetes name; 404 with the
/// reason when there is no such service or nothing measured yet; 429 when `PLOTS_AT_ONCE` are being
/// drawn; 502 when the API server cannot be read; 503 without a client.
async fn plot(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    if !is_object_name(&namespace) || !is_object_name(&name) {
        return text(
            StatusCode::BAD_REQUEST,
            "usage: /plots/{namespace}/{name} with Kubernetes names (lowercase letters, digits, '-', '.')".into(),
        );
    }
    // Outside the operator's scope there is nothing of its own to show (and its port has no
    // authentication): answered before any API read.
    if !state.op.watches(&namespace) {
        return text(
            StatusCode::NOT_FOUND,
            format!("no InferenceService {namespace}/{name} in the operator's scope"),
        );
    }
    let Some(client) = state.client else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "plots need the operator's API client".into(),
        );
    };
    let Ok(_permit) = state.plots.try_acquire() else {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{PLOTS_AT_ONCE} plots are being drawn; try again"),
        );
    };
    // Each read is bounded (a stalled API connection would hold every plot slot) and its error
    // logged, not shown: it can name the operator's service account and the API server.
    let unreadable = |what: String, e: String| {
        tracing::warn!(object = %what, error = %e, "plot: cannot read the API server");
        text(
            StatusCode::BAD_GATEWAY,
            format!("cannot read {what} from the API server (the operator's log says why)"),
        )
    };
    let services: Api<InferenceService> = Api::namespaced(client.clone(), &namespace);
    let service = match tokio::time::timeout(PLOT_READ_TIMEOUT, services.get_opt(&name)).await {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no InferenceService {namespace}/{name}"),
            );
        }
        Ok(Err(e)) => {
            return unreadable(
                format!("InferenceService {namespace}/{name}"),
                e.to_string(),
            );
        }
        Err(_) => {
            return unreadable(
                format!("InferenceService {namespace}/{name}"),
                "timed out".into(),
            );
        }
    };
    let profile_name = service.status.as_ref().and_then(|s| s.profile_ref.clone());
    let profile = match profile_name {
        None => None,
        Some(p) => {
            let read = Api::<EnergyProfile>::namespaced(client, &namespace);
            match tokio::time::timeout(PLOT_READ_TIMEOUT, read.get_opt(&p)).await {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => {
                    return unreadable(format!("EnergyProfile {namespace}/{p}"), e.to_string());
                }
                Err(_) => {
                    return unreadable(
                        format!("EnergyProfile {namespace}/{p}"),
                        "timed out".into(),
                    );
                }
            }
        }
    };
    match service_plot(&service, profile.as_ref()) {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                // An image, never a page: no scripts, no sniffing it into HTML.
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            svg,
        )
            .into_response(),
        Err(e @ ServicePlotError::NotMeasured(_)) => text(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ ServicePlotError::Draw(_)) => {
            tracing::warn!(service = %format!("{namespace}/{name}"), error = %e, "plot");
            text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
async fn metrics(State(op): State<Arc<Operator>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) =
        greenbatch_core::exposition::negotiate(op.metrics.render(&op.services()), accept);
    ([(header::CONTENT_TYPE, content_type)], body)
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
        (Role::StandbyLeaseUnreadable, _) => {
            "not ready: standby has not read the lease (yet, or cannot)".into()
        }
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

/// The routes; `client` serves the plots (without one they answer 503).
pub fn router(op: Arc<Operator>, client: Option<Client>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/plots/{namespace}/{name}", get(plot))
        .with_state(AppState {
            op,
            client,
            plots: Arc::new(tokio::sync::Semaphore::new(PLOTS_AT_ONCE)),
        })
}

/// Binds `addr`; returns the bound address (port 0 picks one) and the server future.
pub async fn bind(
    addr: SocketAddr,
    op: Arc<Operator>,
    client: Option<Client>,
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
        axum::serve(listener, router(op, client))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| OperatorError::Io {
                context: format!("serving HTTP on {local}"),
                source,
            })
    };
    Ok((local, fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubernetes_names_reach_an_api_path() {
        for ok in ["vision", "resnet50", "a", "my-svc.v2", "0abc"] {
            assert!(is_object_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            "a?b=c",
            "Vision",
            "-a",
            "a-",
            ".a",
            "a b",
            "a%2Fb",
            &"x".repeat(254),
        ] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_plot_request_that_is_not_a_name_is_refused_before_any_api_call() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;
        let answers = |app: Router, cases: Vec<(&'static str, StatusCode)>| async move {
            for (path, want) in cases {
                let response = app
                    .clone()
                    .oneshot(Request::get(path).body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(response.status(), want, "{path}");
            }
        };
        // No client: a request that got past validation would answer 503, not 400.
        answers(
            router(Arc::new(Operator::default()), None),
            vec![
                ("/plots/vision/..%2Fsecrets", StatusCode::BAD_REQUEST),
                ("/plots/Vision/resnet50", StatusCode::BAD_REQUEST),
                ("/plots/vision/resnet50", StatusCode::SERVICE_UNAVAILABLE),
            ],
        )
        .await;
        // Watching one namespace: another's plots are not there, before any API read.
        let op = Arc::new(Operator::default());
        op.watch_only("vision");
        answers(
            router(op, None),
            vec![
                ("/plots/other/resnet50", StatusCode::NOT_FOUND),
                ("/plots/vision/resnet50", StatusCode::SERVICE_UNAVAILABLE),
            ],
        )
        .await;
    }
}
