//! The HTTP gateway (axum), Habitat's paths and JSON: `/butterfly`, `/census`, `/services`,
//! `/services/{svc}/{group}[/{org}]` with `/config` and `/health`, `/metrics` (Prometheus
//! text), and `/healthz` (liveness) and `/readyz` (readiness) for Kubernetes' probes. With
//! `HAB_SUP_GATEWAY_AUTH_TOKEN` set, every route requires `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::manager::{Request as SupRequest, SupervisorHandle};

#[derive(Clone)]
struct Gateway {
    sup: SupervisorHandle,
    token: Option<Arc<str>>,
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "supervisor is shutting down\n",
    )
        .into_response()
}

async fn butterfly(State(gw): State<Gateway>) -> Response {
    match gw.sup.ask(SupRequest::Butterfly).await {
        Some(doc) => Json(doc).into_response(),
        None => unavailable(),
    }
}

async fn census(State(gw): State<Gateway>) -> Response {
    match gw.sup.ask(SupRequest::Census).await {
        Some(doc) => Json(doc).into_response(),
        None => unavailable(),
    }
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    match gw.sup.ask(SupRequest::Metrics).await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => unavailable(),
    }
}

async fn services(State(gw): State<Gateway>) -> Response {
    match gw.sup.ask(SupRequest::Services).await {
        Some(list) => Json(list).into_response(),
        None => unavailable(),
    }
}

fn not_loaded(service_group: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("service {service_group} is not loaded on this supervisor\n"),
    )
        .into_response()
}

/// The `/services` entry of `svc.group` (the organisation part, Habitat's `@org`, is accepted
/// and ignored: groups here are unique without it).
async fn service_entry(
    gw: &Gateway,
    svc: &str,
    group: &str,
) -> Result<serde_json::Value, Response> {
    let wanted = format!("{svc}.{group}");
    let list = gw
        .sup
        .ask(SupRequest::Services)
        .await
        .ok_or_else(unavailable)?;
    list.into_iter()
        .find(|entry| entry.get("service_group").and_then(|g| g.as_str()) == Some(wanted.as_str()))
        .ok_or_else(|| not_loaded(&wanted))
}

async fn service(
    State(gw): State<Gateway>,
    Path((svc, group)): Path<(String, String)>,
) -> Response {
    match service_entry(&gw, &svc, &group).await {
        Ok(entry) => Json(entry).into_response(),
        Err(response) => response,
    }
}

async fn service_org(
    State(gw): State<Gateway>,
    Path((svc, group, _org)): Path<(String, String, String)>,
) -> Response {
    service(State(gw), Path((svc, group))).await
}

async fn service_config(
    State(gw): State<Gateway>,
    Path((svc, group)): Path<(String, String)>,
) -> Response {
    match service_entry(&gw, &svc, &group).await {
        Ok(entry) => Json(entry.get("cfg").cloned().unwrap_or_default()).into_response(),
        Err(response) => response,
    }
}

async fn service_config_org(
    State(gw): State<Gateway>,
    Path((svc, group, _org)): Path<(String, String, String)>,
) -> Response {
    service_config(State(gw), Path((svc, group))).await
}

/// Habitat's health endpoint: 200 for ok and warning, 503 critical, 500 unknown, with the last
/// health check's output.
async fn service_health(
    State(gw): State<Gateway>,
    Path((svc, group)): Path<(String, String)>,
) -> Response {
    let wanted = format!("{svc}.{group}");
    let Some(statuses) = gw.sup.ask(SupRequest::ServiceStatus).await else {
        return unavailable();
    };
    let Some((_, status)) = statuses.into_iter().find(|(g, _)| *g == wanted) else {
        return not_loaded(&wanted);
    };
    let code = StatusCode::from_u16(status.health.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "status": status.health.as_str(),
        "stdout": status.health_stdout,
        "stderr": "",
    });
    (code, Json(body)).into_response()
}

async fn service_health_org(
    State(gw): State<Gateway>,
    Path((svc, group, _org)): Path<(String, String, String)>,
) -> Response {
    service_health(State(gw), Path((svc, group))).await
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    match gw.sup.ask(SupRequest::Ready).await {
        Some(Ok(())) => "ready\n".into_response(),
        Some(Err(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
        None => unavailable(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn require_token(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    if let Some(token) = &gw.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

pub fn router(sup: SupervisorHandle, token: Option<String>) -> Router {
    let gw = Gateway {
        sup,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
    };
    Router::new()
        .route("/butterfly", get(butterfly))
        .route("/census", get(census))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/services", get(services))
        .route("/services/{svc}/{group}", get(service))
        .route("/services/{svc}/{group}/config", get(service_config))
        .route("/services/{svc}/{group}/health", get(service_health))
        .route("/services/{svc}/{group}/{org}", get(service_org))
        .route(
            "/services/{svc}/{group}/{org}/config",
            get(service_config_org),
        )
        .route(
            "/services/{svc}/{group}/{org}/health",
            get(service_health_org),
        )
        .layer(middleware::from_fn_with_state(gw.clone(), require_token))
        .with_state(gw)
}

pub fn spawn(listener: TcpListener, sup: SupervisorHandle, token: Option<String>) {
    let app = router(sup, token);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http gateway stopped");
        }
    });
}
