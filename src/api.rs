//! The admin HTTP API (axum), JSON in and out, on a listener injected by the
//! caller: over mutual TLS ([`serve_tls`]), or plain HTTP on loopback when
//! explicitly enabled ([`serve`]).

mod approvals;
mod budget;
mod chat;
mod error;
mod events;
mod guard;
mod ids;
mod intake;
mod layers;
mod objectives;
mod pairings;
mod retrieval;
mod roles;
mod target;
pub use target::API_CONNECTOR;
mod tasks;
mod tls;
mod usage;
mod workspaces;

pub use intake::IntakeLimits;
pub use tls::{AdminClient, Caller, RefusedCertificate, TlsState, serve_tls};

pub use error::ApiError;

use crate::clock::SharedClock;
use crate::config::HttpConfig;
use crate::gateway::Gateway;
use crate::orchestrator::OrchestratorHandle;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What handlers share: one copy of [`ApiParts`]. axum clones the state
/// for each layer a request passes, so a clone is a reference count, not a
/// copy of every part.
#[derive(Clone)]
pub struct ApiState(std::sync::Arc<ApiParts>);

impl ApiState {
    /// The state over `parts`.
    pub fn new(parts: ApiParts) -> Self {
        Self(std::sync::Arc::new(parts))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiParts;
    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// What handlers share, by part.
pub struct ApiParts {
    /// The store (reads).
    pub store: Store,
    /// The gateway (chat).
    pub gateway: Gateway,
    /// Task submission and cancel.
    pub orchestrator: OrchestratorHandle,
    /// Time.
    pub clock: SharedClock,
    /// `AGENT_RUNTIME_ENV`.
    pub environment: String,
    /// Model prices for usage costs.
    pub prices: std::sync::Arc<Vec<crate::config::ModelPrice>>,
    /// Event-stream producers; shut down before the listener drains.
    pub streams: crate::runtime::Supervisor,
    /// `AGENT_RUNTIME_EVENTS_SLOW_CLIENT_SECONDS`.
    pub events_slow_client: std::time::Duration,
    /// Component health.
    pub health: crate::health::Health,
    /// `AGENT_RUNTIME_HEARTBEAT_ENABLED`.
    pub heartbeat_enabled: bool,
    /// When the process started (uptime).
    pub started: std::time::Instant,
    /// Fires objectives (run now).
    pub scheduler: crate::scheduler::Scheduler,
}

/// The router with every route, and the checks every request passes
/// (outermost first): counted; audited when not a `GET` (so every refusal
/// below is audited too); a refused certificate (403), a non-loopback `Host`
/// in plain mode (421), a browser's request (403), a body that is not JSON
/// (415) and an oversized body (413) are refused; then the route's least
/// role (403) and the handler.
pub fn router(state: ApiState, http: &HttpConfig) -> Router {
    let max_body_bytes = http.max_body_bytes;
    let idem = || axum::middleware::from_fn_with_state(state.clone(), layers::idempotency);
    let sse = axum::Extension(events::Subscribers::new(http.max_sse_subscribers));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/info", get(info))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/heartbeat", get(heartbeat))
        .route("/metrics", get(prometheus))
        .route("/api/v1/chat", post(chat::post_chat))
        .route("/api/v1/chat/messages", get(chat::messages))
        .route("/api/v1/tasks", get(tasks::list).post(tasks::create).layer(idem()))
        .route("/api/v1/tasks/{id}", get(tasks::get_one).patch(tasks::patch))
        .route("/api/v1/tasks/retry", post(tasks::retry_by_body))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/{id}/retry", post(tasks::retry))
        .route("/api/v1/approvals", get(approvals::list).post(approvals::propose).layer(idem()))
        .route("/api/v1/approvals/{id}", get(approvals::get_one))
        .route("/api/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/api/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/api/v1/objectives", get(objectives::list).post(objectives::create).layer(idem()))
        .route("/api/v1/objectives/{id}", get(objectives::get_one))
        .route("/api/v1/objectives/{id}/runs", get(objectives::runs))
        .route("/api/v1/objectives/{id}/run", post(objectives::run_now))
        .route("/api/v1/objectives/update", post(objectives::update))
        .route("/api/v1/objectives/active", post(objectives::set_active))
        .route("/api/v1/objectives/delete", post(objectives::delete))
        .route("/api/v1/workspaces", get(workspaces::list))
        .route("/api/v1/workspaces/{id}", get(workspaces::get_one))
        .route("/api/v1/contexts", get(workspaces::contexts))
        .route("/api/v1/contexts/{id}", get(workspaces::context))
        .route("/api/v1/contexts/{id}/admin", post(workspaces::set_admin))
        .route("/api/v1/contexts/{id}/prompt", get(workspaces::prompt))
        .route("/api/v1/search", get(retrieval::search))
        .route("/api/v1/documents", get(retrieval::document))
        .route("/api/v1/retrieval/status", get(retrieval::status))
        .route("/api/v1/retrieval/rebuild", post(retrieval::rebuild))
        .route("/api/v1/audit", get(approvals::audit))
        .route("/api/v1/usage", get(usage::usage))
        .route("/api/v1/agent", get(budget::status))
        .route("/api/v1/agent/pause", post(budget::pause))
        .route("/api/v1/agent/resume", post(budget::resume))
        .route("/api/v1/contexts/{id}/budget", post(budget::set_context))
        .route("/api/v1/events", get(events::stream).layer(sse))
        .route("/api/v1/events/log", get(events::log))
        .route("/api/v1/pairings", get(pairings::list))
        // No idempotency key here: a replay would need the token, which is
        // never stored; a retried start simply replaces the earlier request.
        .route("/api/v1/pairings/start", post(pairings::start))
        .route("/api/v1/pairings/lookup", post(pairings::lookup))
        .route("/api/v1/pairings/approve", post(pairings::approve))
        .route("/api/v1/pairings/deny", post(pairings::deny))
        // Only on matched routes: an unknown path stays 404, a wrong method 405.
        .route_layer(axum::middleware::from_fn(roles::authorize))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // `layer` (not `route_layer`) from here: these also wrap the 404 and
        // 405 fallbacks, so those refusals are audited too.
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(max_body_bytes, layers::reject_oversized))
        .layer(axum::middleware::from_fn_with_state(http.plain_http, guard::requests))
        .layer(axum::middleware::from_fn_with_state(state.clone(), layers::audit_mutations))
        .layer(axum::middleware::from_fn(layers::count_requests))
        .with_state(state)
}

/// The probe-only router (`/healthz`, `/readyz`) for `AGENT_RUNTIME_HEALTH_ADDR`.
pub fn probe_router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight
/// requests finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // As on the TLS path: no Nagle delay on small responses.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<ApiState>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "not-ready", "error": e.to_string()}))),
    }
}

async fn info(State(s): State<ApiState>, tls::Caller(caller): tls::Caller) -> impl IntoResponse {
    // Who the caller is to this daemon, so a client (the TUI) can show which
    // actions its certificate may take; the guards still decide every call.
    let role = caller.role.map_or("none", |r| r.as_str());
    axum::Json(json!({
        "name": "agent-runtime", "version": crate::VERSION, "environment": s.environment,
        "caller": {"subject": caller.platform_user_id, "role": role},
    }))
}

/// `GET /api/v1/heartbeat`: every component's health (the Go runtime's shape).
async fn heartbeat(State(s): State<ApiState>) -> axum::response::Response {
    if !s.heartbeat_enabled {
        let body = json!({"status": "unavailable", "error": "heartbeat is disabled (AGENT_RUNTIME_HEARTBEAT_ENABLED=false)"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let mut snapshot = s.health.snapshot();
    snapshot.database = s.store.db_size().await.ok();
    axum::Json(snapshot).into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn prometheus(State(s): State<ApiState>) -> Result<axum::response::Response, ApiError> {
    let counts = s.store.state_counts(s.clock.now_ms()).await?;
    let database = s.store.db_size().await?;
    let gauges = crate::metrics::Gauges {
        counts,
        database,
        health: s.health.snapshot().components.into_iter().map(|c| (c.name, c.state.as_str().to_string())).collect(),
        uptime_seconds: s.started.elapsed().as_secs_f64(),
        retrieval: s.gateway.retrieval().map(|r| crate::metrics::RetrievalGauges::of(&r.status())),
    };
    let body = crate::metrics::metrics().render(&gauges, &s.prices);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// The API reference (OpenAPI 3.1), checked against this router by tests.
pub const OPENAPI: &str = include_str!("api/openapi.json");

/// `GET /api/v1/openapi.json`.
async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (path, method) pairs registered in `router()`, read from this file's source.
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("api.rs");
        let start = src.find("pub fn router(").expect("router fn");
        let end = start + src[start..].find("\n}\n").expect("end of router");
        let text = src[start..end].split_whitespace().collect::<Vec<_>>().join(" ");
        let mut out = BTreeSet::new();
        // Each chunk runs from one `.route(` to the next (the last one also
        // holds the layers and fallbacks, which name no method).
        for chunk in text.split(".route(").skip(1) {
            let (path, call) = chunk.trim_start().trim_start_matches('"').split_once('"').expect("quoted path");
            for m in ["get", "post", "patch", "put", "delete"] {
                if call.contains(&format!(" {m}(")) || call.contains(&format!(".{m}(")) {
                    out.insert((path.to_string(), m.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in ["get", "post", "patch", "put", "delete"] {
                if let Some(op) = item.get(m) {
                    documented.insert((path.clone(), m.to_string()));
                    let role = op["x-min-role"].as_str().unwrap_or_else(|| panic!("{m} {path}: x-min-role"));
                    let method: axum::http::Method = m.to_uppercase().parse().expect("method");
                    assert_eq!(role, super::roles::required(&method, path).as_str(), "{m} {path}: x-min-role disagrees with roles.rs");
                }
            }
        }
        let routed = routed();
        assert!(routed.len() >= 40, "{routed:?}");
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty() && extra.is_empty(), "not documented: {missing:?}; documented but not routed: {extra:?}");
    }
}
