//! The daemon's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/status` and the status
//! page at `/`.
//!
//! Listens on loopback unless configured otherwise. With `[daemon].token` set, every path
//! but `/healthz` requires `Authorization: Bearer <token>` (the page reads the token from
//! its URL fragment, which browsers never send to the server). Nothing served here contains
//! a secret: `/status` is built from [`StatusBoard`], which holds positions, counts and
//! error messages, never connection strings or passwords.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tandem_core::config::Secret;
use tandem_core::telemetry::{StatusBoard, VerifyBoard};

const PAGE: &str = include_str!("page.html");

#[derive(Clone)]
pub struct HttpState {
    pub board: StatusBoard,
    /// The daemon's last `[verify]` run (`null` in `/status` when verify is off).
    pub verify: VerifyBoard,
    pub prometheus: PrometheusHandle,
    pub token: Option<Arc<Secret>>,
    pub ready_lag_seconds: f64,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

fn authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let expected = format!("Bearer {}", token.expose());
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| constant_time_eq(h.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "bearer token required\n",
    )
        .into_response()
}

async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when every direction is streaming within the lag threshold.
async fn readyz(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let dirs = s.board.snapshot();
    let mut problems = Vec::new();
    if dirs.is_empty() {
        problems.push("no direction is running".to_owned());
    }
    for (name, d) in &dirs {
        if d.state != "streaming" {
            problems.push(format!("{name}: {}", d.state));
        } else if d.lag_seconds.is_some_and(|l| l > s.ready_lag_seconds) {
            problems.push(format!(
                "{name}: lag {:.1}s above {}s",
                d.lag_seconds.unwrap_or_default(),
                s.ready_lag_seconds
            ));
        }
        if !d.halted_mappings.is_empty() {
            problems.push(format!(
                "{name}: halted mappings {:?}",
                d.halted_mappings.keys().collect::<Vec<_>>()
            ));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned()).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
            .into_response()
    }
}

async fn status(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": s.started_at,
        "now": chrono::Utc::now(),
        "directions": s.board.snapshot(),
        "verify": s.verify.snapshot(),
    }))
    .into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

/// Bind and serve until `stop` fires.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "http endpoint listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await
}
