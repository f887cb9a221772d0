//! The HTTP gateway (axum), Habitat's paths and JSON: `/butterfly`, `/census`, `/metrics`
//! (Prometheus text), and `/healthz` for Kubernetes' liveness probe. With
//! `HAB_SUP_GATEWAY_AUTH_TOKEN` set, every route requires `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::extract::{Request, State};
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
