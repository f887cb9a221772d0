//! The HTTP gateway (axum), Habitat's paths and JSON: `/butterfly`, `/census`, `/services`,
//! `/services/{svc}/{group}[/{org}]` with `/config` and `/health`, `/metrics` (Prometheus
//! text), and `/healthz` (liveness) and `/readyz` (readiness) for Kubernetes' probes. With
//! `HAB_SUP_GATEWAY_AUTH_TOKEN` set, every route but the two probes requires
//! `Authorization: Bearer <token>` (compared in constant time): a kubelet's probe carries no
//! token, and a failing liveness probe restarts the pod.
//!
//! Every connection is bounded (`Limits`): a cap on open connections (more are closed on
//! accept), a deadline for the request headers (slowloris), a deadline for the whole
//! connection, and a deadline for the supervisor loop's answer. Documents come from a snapshot
//! the loop publishes (`snapshot`): no request runs on the loop, and a flood costs it a
//! bounded number of builds.

pub mod services;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::connection_slots::{ConnectionSlots, SlotLimits};

use snapshot::{Built, Doc, Reader, View};

/// How much the gateway gives any one client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections (more are closed as soon as they are accepted), and each source's
    /// share once half are open.
    pub connections: SlotLimits,
    /// A client must have sent its request headers within this.
    pub header_read_timeout: Duration,
    /// A connection (keep-alive included) is closed after this, whatever it does.
    pub connection_deadline: Duration,
    /// A request waits at most this long for the supervisor loop's snapshot (then 503).
    pub answer_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: SlotLimits {
                max: 512,
                per_source: 32,
            },
            header_read_timeout: Duration::from_secs(10),
            connection_deadline: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
struct Gateway {
    snapshot: Reader,
    token: Option<Arc<str>>,
    answer_timeout: Duration,
}

impl Gateway {
    /// A document built after this request arrived; `None` when the supervisor loop is gone or
    /// did not build it in time.
    async fn get<T: Clone>(&self, doc: Doc, pick: impl Fn(&View) -> &Built<T>) -> Option<T> {
        self.snapshot.get(doc, pick, self.answer_timeout).await
    }
}

fn json(bytes: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the supervisor did not answer (shutting down or busy)\n",
    )
        .into_response()
}

async fn butterfly(State(gw): State<Gateway>) -> Response {
    match gw.get(Doc::Butterfly, |v| &v.butterfly).await {
        Some(doc) => json(doc),
        None => unavailable(),
    }
}

/// The longest a `GET /census?wait=SECS` waits for a change (below the connection deadline).
pub const MAX_CENSUS_WAIT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct CensusQuery {
    wait: Option<u64>,
}

/// The census's entity tag: a hash of its bytes (opaque; only compared for equality).
fn census_etag(doc: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    doc.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// `/census`, with an `ETag`. A conditional request (`If-None-Match` with the ETag the client
/// has) gets 304 when nothing changed, at once, or with `?wait=SECS` (at most
/// `MAX_CENSUS_WAIT`) as soon as the census changes within that time: the operator follows a
/// ring by change, not by polling.
async fn census(
    State(gw): State<Gateway>,
    query: Result<Query<CensusQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let wait = match query {
        Ok(Query(CensusQuery { wait })) => Duration::from_secs(wait.unwrap_or(0)),
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("{rejection}; expected ?wait=SECS, 0 to {MAX_CENSUS_WAIT:?}\n"),
            )
                .into_response()
        }
    };
    if wait > MAX_CENSUS_WAIT {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "wait={}: expected 0 to {} seconds\n",
                wait.as_secs(),
                MAX_CENSUS_WAIT.as_secs()
            ),
        )
            .into_response();
    }
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let deadline = tokio::time::Instant::now() + wait;
    // Watched from before the first build: a change made after it is never missed.
    let mut changes = gw.snapshot.census_changes();
    loop {
        changes.borrow_and_update();
        let Some(doc) = gw.get(Doc::Census, |v| &v.census).await else {
            return unavailable();
        };
        let etag = census_etag(&doc);
        if known.as_deref() != Some(etag.as_str()) {
            return ([(header::ETAG, etag)], json(doc)).into_response();
        }
        let changed = tokio::select! {
            changed = changes.changed() => changed.is_ok(),
            () = tokio::time::sleep_until(deadline) => false,
        };
        if !changed {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
    }
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    match gw.get(Doc::Metrics, |v| &v.metrics).await {
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
    match gw.get(Doc::Services, |v| &v.services).await {
        Some(list) => Json(&*list).into_response(),
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
        .get(Doc::Services, |v| &v.services)
        .await
        .ok_or_else(unavailable)?;
    list.iter()
        .find(|entry| entry.get("service_group").and_then(|g| g.as_str()) == Some(wanted.as_str()))
        .cloned()
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
    let Some(statuses) = gw.get(Doc::Statuses, |v| &v.statuses).await else {
        return unavailable();
    };
    let Some((_, status)) = statuses.iter().find(|(g, _)| *g == wanted) else {
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
    match gw.get(Doc::Ready, |v| &v.ready).await {
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

/// Whether `presented` is the token (or the ctl gateway's secret), in time independent of
/// where they differ (both are hashed first, so their lengths do not show either).
pub(crate) fn token_matches(token: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|presented| {
        let (a, b) = (Sha256::digest(token), Sha256::digest(presented));
        bool::from(a.as_slice().ct_eq(b.as_slice()))
    })
}

async fn require_token(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    if let Some(token) = &gw.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !token_matches(token, presented) {
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

pub fn router(snapshot: Reader, token: Option<String>, limits: Limits) -> Router {
    let gw = Gateway {
        snapshot,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
        answer_timeout: limits.answer_timeout,
    };
    let protected = Router::new()
        .route("/butterfly", get(butterfly))
        .route("/census", get(census))
        .route("/metrics", get(metrics))
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
        .layer(middleware::from_fn_with_state(gw.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(gw)
}

pub fn spawn(listener: TcpListener, snapshot: Reader, token: Option<String>) {
    serve(
        listener,
        router(snapshot, token, Limits::default()),
        Limits::default(),
    );
}

/// Serves `app` on `listener` within `limits` (see `Limits`).
fn serve(listener: TcpListener, app: Router, limits: Limits) {
    serve_http1(
        listener,
        app,
        limits.connections,
        limits.header_read_timeout,
        limits.connection_deadline,
        "http gateway",
    );
}

/// Serves `app` on `listener` over HTTP/1 with the limits every listener of ours keeps: at most
/// `connections` open (each source its share), headers within `header_read_timeout`, and any
/// connection closed after `connection_deadline`. `what` names the listener in logs.
pub(crate) fn serve_http1(
    listener: TcpListener,
    app: Router,
    connections: SlotLimits,
    header_read_timeout: Duration,
    connection_deadline: Duration,
    what: &'static str,
) {
    let slots = ConnectionSlots::new(connections);
    tokio::spawn(async move {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::debug!(error = %e, "{what} accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match slots.take(from.ip()) {
                Ok(slot) => slot,
                Err(refused) => {
                    tracing::debug!(%from, ?refused, "{what}: connection refused");
                    continue;
                }
            };
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(connection_deadline, connection).await;
                drop(permit);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::gossip::transport::closed_by_server;

    /// Answers every document with an empty one.
    struct Empty;

    impl snapshot::Source for Empty {
        fn butterfly(&mut self) -> bytes::Bytes {
            bytes::Bytes::from_static(b"{}")
        }
        fn census(&mut self) -> bytes::Bytes {
            bytes::Bytes::from_static(br#"{"census_groups":{}}"#)
        }
        fn services(&mut self) -> Vec<serde_json::Value> {
            Vec::new()
        }
        fn statuses(&mut self) -> Vec<(String, crate::service::status::ServiceStatus)> {
            Vec::new()
        }
        fn ready(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn metrics(&mut self) -> bytes::Bytes {
            bytes::Bytes::new()
        }
    }

    /// A gateway on a loopback port whose supervisor loop builds every document asked for, or
    /// builds nothing at all.
    async fn gateway(token: Option<&str>, limits: Limits, answers: bool) -> SocketAddr {
        let (publisher, reader) = snapshot::channel();
        snapshot::spawn_test_loop(publisher, Empty, answers);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = token.map(str::to_string);
        serve(listener, router(reader, token, limits), limits);
        addr
    }

    /// The status of `GET path`, or `None` when the connection is refused or cut.
    async fn status(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: hab\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.ok()?;
        reply.split_whitespace().nth(1)?.parse().ok()
    }

    /// `GET path` with `headers` (each `Name: value\r\n`): the status and the ETag.
    async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> (u16, Option<String>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: hab\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        let status = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
        let etag = reply
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .map(str::to_string);
        (status, etag)
    }

    /// A census the test changes.
    #[derive(Clone)]
    struct Changing(Arc<std::sync::Mutex<&'static str>>);

    impl snapshot::Source for Changing {
        fn census(&mut self) -> bytes::Bytes {
            bytes::Bytes::from_static(self.0.lock().unwrap().as_bytes())
        }
        fn butterfly(&mut self) -> bytes::Bytes {
            Empty.butterfly()
        }
        fn services(&mut self) -> Vec<serde_json::Value> {
            Vec::new()
        }
        fn statuses(&mut self) -> Vec<(String, crate::service::status::ServiceStatus)> {
            Vec::new()
        }
        fn ready(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn metrics(&mut self) -> bytes::Bytes {
            bytes::Bytes::new()
        }
    }

    #[tokio::test]
    async fn a_census_request_waits_for_a_change_and_not_longer() {
        let census = Changing(Arc::new(std::sync::Mutex::new(r#"{"census_groups":{}}"#)));
        let (publisher, reader) = snapshot::channel();
        let changes = publisher.census_changes();
        snapshot::spawn_test_loop(publisher, census.clone(), true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve(
            listener,
            router(reader, None, Limits::default()),
            Limits::default(),
        );

        let (code, etag) = get_with(addr, "/census", "").await;
        assert_eq!(code, 200);
        let etag = etag.unwrap();
        let known = format!("If-None-Match: {etag}\r\n");
        // Unchanged: 304 at once without `wait`, after the wait with it.
        assert_eq!(
            get_with(addr, "/census", &known).await,
            (304, Some(etag.clone()))
        );
        let started = std::time::Instant::now();
        assert_eq!(get_with(addr, "/census?wait=1", &known).await.0, 304);
        assert!(started.elapsed() >= Duration::from_secs(1));
        // A change wakes a waiting request long before its wait is over; a signal that
        // changed nothing does not.
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            (
                get_with(addr, "/census?wait=30", &known).await,
                started.elapsed(),
            )
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        changes.notify();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "answered though nothing changed");
        *census.0.lock().unwrap() = r#"{"census_groups":{"a":{}}}"#;
        changes.notify();
        let ((code, new_etag), took) = waiting.await.unwrap();
        assert_eq!(code, 200);
        assert_ne!(new_etag.unwrap(), etag);
        assert!(took < Duration::from_secs(10), "{took:?}");

        assert_eq!(get_with(addr, "/census?wait=31", "").await.0, 400);
        assert_eq!(get_with(addr, "/census?wait=soon", "").await.0, 400);
    }

    #[test]
    fn a_token_matches_only_itself_whole() {
        assert!(token_matches("s3cret", Some("s3cret")));
        for other in [Some("s3cre"), Some("s3cret "), Some(""), None] {
            assert!(!token_matches("s3cret", other), "{other:?}");
        }
    }

    #[tokio::test]
    async fn the_token_guards_every_route_but_the_probes() {
        let addr = gateway(Some("s3cret"), Limits::default(), true).await;
        assert_eq!(status(addr, "/census", None).await, Some(401));
        assert_eq!(status(addr, "/census", Some("s3cre")).await, Some(401));
        assert_eq!(status(addr, "/census", Some("s3cret")).await, Some(200));
        // A kubelet's probes carry no token.
        assert_eq!(status(addr, "/healthz", None).await, Some(200));
        assert_eq!(status(addr, "/readyz", None).await, Some(200));
    }

    #[tokio::test]
    async fn a_supervisor_that_does_not_answer_gives_503_not_a_hung_request() {
        let limits = Limits {
            answer_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let addr = gateway(None, limits, false).await;
        let answered = tokio::time::timeout(Duration::from_secs(10), status(addr, "/census", None));
        assert_eq!(answered.await.ok().flatten(), Some(503));
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let addr = gateway(None, limits, true).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /census HTTP/1.1\r\nHost: hab\r\n")
            .await
            .unwrap();
        assert!(closed_by_server(&mut slow).await, "still open after 10 s");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once_and_served_again_later() {
        let limits = Limits {
            connections: SlotLimits {
                max: 2,
                per_source: 2,
            },
            ..Limits::default()
        };
        let addr = gateway(None, limits, true).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET /census HTTP/1.1\r\n").await.unwrap();
            held.push(stream);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_server(&mut third).await,
            "over the cap, still open"
        );
        held.clear();
        let served = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if status(addr, "/healthz", None).await == Some(200) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(
            served.await.is_ok(),
            "never served again after the others left"
        );
    }
}
