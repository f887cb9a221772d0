//! `hab depot serve DIR`: the directory depot (`Store`) over HTTP with Builder's API paths and
//! JSON, so our `hab` and Habitat's `hab pkg upload|promote|demote|channels --url` both work:
//!
//! ```text
//! GET  /v1/depot/channels/{origin}/{channel}/pkgs/{name}/latest            newest in a channel
//! GET  /v1/depot/channels/{origin}/{channel}/pkgs/{name}/{version}/latest  ... of one version
//! GET  /v1/depot/channels/{origin}/{channel}/pkgs/{name}/{version}/{release}  in the channel?
//! PUT  /v1/depot/channels/{origin}/{channel}/pkgs/{name}/{version}/{release}/promote|demote
//! GET  /v1/depot/channels/{origin}, POST /v1/depot/channels/{origin}/{channel}
//! POST /v1/depot/pkgs/{origin}/{name}/{version}/{release}[?checksum=BLAKE2B]  body: the .hart
//! GET  /v1/depot/pkgs/{origin}/{name}/{version}/{release}/download|channels
//! POST|GET /v1/depot/origins/{origin}/keys/{revision}                      origin public keys
//! GET  /metrics
//! ```
//!
//! Writes (POST, PUT) want `Authorization: Bearer <token>` when a token is set (compared in
//! constant time; refusals are counted, the token is never logged); reads are open. Bounded:
//! a connection cap, a deadline for request headers, for each upload chunk and for the whole
//! connection, a size cap on uploads, which are streamed to a temporary file (removed if the
//! client goes away) and only then checked and linked into place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::store::{self, ChannelEntry, Store};
use super::{hart, DepotError};
use crate::connection_slots::SlotLimits;
use crate::error::{Error, Result};
use crate::package::PackageIdent;

/// Builder API's port, which Habitat's tools know; loopback unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9636";
/// The largest .hart accepted by default.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 << 30;
/// The package target every hart here has (`hart_file_name`).
pub use crate::pkg::hart::TARGET;

type Blake2b256 = Blake2b<U32>;

/// How much the depot gives any one client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections (more are closed at once), and each source's share once half are open.
    pub connections: SlotLimits,
    /// A client must have sent its request headers within this.
    pub header_read_timeout: Duration,
    /// An upload that sends nothing for this long is dropped.
    pub body_idle_timeout: Duration,
    /// A connection is closed after this, whatever it does (bounds the slowest upload).
    pub connection_deadline: Duration,
    /// A store operation (listing, promoting, linking an upload) answers within this, or 503.
    pub operation_timeout: Duration,
    /// Uploads larger than this are refused (413), before or while they are read.
    pub max_upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: SlotLimits {
                max: 256,
                per_source: 64,
            },
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(60),
            connection_deadline: Duration::from_secs(3600),
            operation_timeout: Duration::from_secs(60),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }
}

/// What the depot counts (served at `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    pub unauthorized: AtomicU64,
    pub uploads: AtomicU64,
    pub uploads_refused: AtomicU64,
}

/// Hart file -> (length, mtime, BLAKE2b hex).
type ChecksumCache = HashMap<PathBuf, (u64, Option<SystemTime>, String)>;

#[derive(Clone)]
struct App {
    store: Arc<Store>,
    token: Option<Arc<str>>,
    limits: Limits,
    stats: Arc<Stats>,
    /// Hart file -> (length, mtime, BLAKE2b), so answers do not hash a file per request.
    checksums: Arc<Mutex<ChecksumCache>>,
}

/// Reads the write token from `path`: refused when others may read the file (mode & 0o004),
/// or when it is empty.
pub fn read_token_file(path: &FsPath) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(Error::invalid(
            format!("--token-file {}", path.display()),
            format!(
                "anyone can read it (mode {mode:04o}); make it private first: chmod 600 {}",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Error::invalid(
            format!("--token-file {}", path.display()),
            "expected one token (no spaces) on one line, found none",
        ));
    }
    Ok(token.to_string())
}

/// A running depot: its address and counters.
pub struct Served {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

/// Serves the depot in `dir` on `listener` until the runtime stops.
pub fn spawn(
    listener: TcpListener,
    dir: PathBuf,
    token: Option<String>,
    limits: Limits,
) -> Result<Served> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::invalid("depot listener", e.to_string()))?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let store = Arc::new(Store::new(dir));
    // Temporary files older than any upload may run are leftovers of a crash.
    let removed = store.remove_stale_temps(limits.connection_deadline);
    if removed > 0 {
        tracing::info!(
            removed,
            "depot: removed temporary files a crash left behind"
        );
    }
    let stats = Arc::new(Stats::default());
    let app = App {
        store,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
        limits,
        stats: Arc::clone(&stats),
        checksums: Arc::default(),
    };
    serve(listener, router(app), limits);
    Ok(Served { addr, stats })
}

fn router(app: App) -> Router {
    let channel_pkg = "/v1/depot/channels/{origin}/{channel}/pkgs/{name}";
    let pkg = "/v1/depot/pkgs/{origin}/{name}/{version}/{release}";
    Router::new()
        .route(&format!("{channel_pkg}/latest"), get(latest))
        .route(
            &format!("{channel_pkg}/{{version}}/latest"),
            get(latest_of_version),
        )
        .route(
            &format!("{channel_pkg}/{{version}}/{{release}}"),
            get(in_channel),
        )
        .route(
            &format!("{channel_pkg}/{{version}}/{{release}}/promote"),
            put(promote),
        )
        .route(
            &format!("{channel_pkg}/{{version}}/{{release}}/demote"),
            put(demote),
        )
        .route("/v1/depot/channels/{origin}", get(origin_channels))
        .route(
            "/v1/depot/channels/{origin}/{channel}",
            post(create_channel),
        )
        .route(pkg, post(upload).layer(DefaultBodyLimit::disable()))
        .route(&format!("{pkg}/download"), get(download))
        .route(&format!("{pkg}/channels"), get(channels))
        .route(
            "/v1/depot/origins/{origin}/keys/{revision}",
            post(put_origin_key)
                .get(origin_key)
                .layer(DefaultBodyLimit::max(store::MAX_KEY_BYTES)),
        )
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app)
}

/// Serves `app` on `listener` within `limits`.
fn serve(listener: TcpListener, app: Router, limits: Limits) {
    crate::http::serve_http1(
        listener,
        app,
        limits.connections,
        limits.header_read_timeout,
        limits.connection_deadline,
        "depot",
    );
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Builder's error body (`NetError`), which Habitat's client prints.
#[derive(Serialize)]
struct NetError {
    code: u16,
    msg: String,
}

fn fail(status: StatusCode, msg: impl Into<String>) -> Response {
    let body = NetError {
        code: status.as_u16(),
        msg: msg.into(),
    };
    (status, Json(body)).into_response()
}

impl App {
    /// An error as an answer; messages lose the depot's directory (clients need not see it).
    fn error(&self, e: Error) -> Response {
        let status = match &e {
            Error::Depot(DepotError::NotFound { what, .. }) => {
                return fail(StatusCode::NOT_FOUND, what.clone())
            }
            Error::Depot(DepotError::DemoteUnstable { .. }) => StatusCode::FORBIDDEN,
            Error::Depot(DepotError::Conflict { .. }) => StatusCode::CONFLICT,
            Error::Depot(DepotError::BadHart { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Depot(DepotError::BadRequest { .. }) | Error::InvalidInput { .. } => {
                StatusCode::BAD_REQUEST
            }
            _ => {
                tracing::warn!(error = %e, "depot: a request failed");
                return fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the depot could not read or write its files (see its log)",
                );
            }
        };
        let text = e.to_string();
        let prefix = format!("depot {}: ", self.store.dir().display());
        fail(status, text.strip_prefix(&prefix).unwrap_or(&text))
    }

    /// Runs a store operation off the async threads, within the operation timeout.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, Response> {
        let store = Arc::clone(&self.store);
        let task = tokio::task::spawn_blocking(move || op(&store));
        match tokio::time::timeout(self.limits.operation_timeout, task).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(self.error(e)),
            Ok(Err(e)) => Err(fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
            Err(_) => Err(fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the depot's disk did not answer within {:?}",
                    self.limits.operation_timeout
                ),
            )),
        }
    }

    /// The BLAKE2b checksum of a stored hart (hex), computed once per file version.
    fn checksum(&self, path: &FsPath) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let stamp = (meta.len(), meta.modified().ok());
        {
            let cache = self
                .checksums
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((len, mtime, sum)) = cache.get(path) {
                if (*len, *mtime) == stamp {
                    return Ok(sum.clone());
                }
            }
        }
        let sum = checksum_file(path)?;
        let mut cache = self
            .checksums
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= 16 * 1024 {
            cache.clear();
        }
        cache.insert(path.to_path_buf(), (stamp.0, stamp.1, sum.clone()));
        Ok(sum)
    }
}

/// BLAKE2b-256 of a file, lower-case hex: Habitat's package checksum.
pub fn checksum_file(path: &FsPath) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Blake2b256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdentJson {
    pub origin: String,
    pub name: String,
    pub version: String,
    pub release: String,
}

impl IdentJson {
    fn from_ident(ident: &PackageIdent) -> IdentJson {
        IdentJson {
            origin: ident.origin.clone(),
            name: ident.name.clone(),
            version: ident.version.clone().unwrap_or_default(),
            release: ident.release.clone().unwrap_or_default(),
        }
    }

    pub fn to_ident(&self) -> PackageIdent {
        PackageIdent {
            origin: self.origin.clone(),
            name: self.name.clone(),
            version: Some(self.version.clone()),
            release: Some(self.release.clone()),
        }
    }
}

/// Builder's package document, the fields Habitat's client reads (`Package`); the metadata
/// inside the hart (manifest, deps, config) is not read here and left empty.
#[derive(Serialize)]
struct PackageJson {
    ident: IdentJson,
    checksum: String,
    target: &'static str,
    manifest: &'static str,
    config: &'static str,
    deps: Vec<IdentJson>,
    tdeps: Vec<IdentJson>,
    build_deps: Vec<IdentJson>,
    exposes: Vec<u32>,
    channels: Vec<String>,
    visibility: &'static str,
    is_a_service: bool,
}

/// Builder's entry of `GET .../channels`.
#[derive(Serialize)]
struct ChannelJson {
    name: String,
    created_at: String,
    promoted_at: String,
}

/// `YYYYMMDDhhmmss` as Builder writes times (`YYYY-MM-DDThh:mm:ss`).
fn builder_time(rev: Option<&str>) -> String {
    match rev {
        Some(r) if r.len() == 14 && r.is_ascii() => format!(
            "{}-{}-{}T{}:{}:{}",
            &r[0..4],
            &r[4..6],
            &r[6..8],
            &r[8..10],
            &r[10..12],
            &r[12..14]
        ),
        _ => String::new(),
    }
}

async fn package_answer(app: &App, found: Option<PackageIdent>, what: String) -> Response {
    let Some(ident) = found else {
        return fail(StatusCode::NOT_FOUND, what);
    };
    let app2 = app.clone();
    let looked_up = app
        .run(move |s| {
            let path = s.hart_path(&ident)?;
            let checksum = app2.checksum(&path)?;
            let channels = s.channels(&ident)?.into_iter().map(|c| c.name).collect();
            Ok((ident, checksum, channels))
        })
        .await;
    match looked_up {
        Ok((ident, checksum, channels)) => Json(PackageJson {
            ident: IdentJson::from_ident(&ident),
            checksum,
            target: TARGET,
            manifest: "",
            config: "",
            deps: Vec::new(),
            tdeps: Vec::new(),
            build_deps: Vec::new(),
            exposes: Vec::new(),
            channels,
            visibility: "public",
            is_a_service: false,
        })
        .into_response(),
        Err(answer) => answer,
    }
}

async fn find_latest(app: &App, ident: PackageIdent, channel: String) -> Response {
    let what = format!("a release of {ident} in channel {channel}");
    match app.run(move |s| s.latest(&ident, &channel)).await {
        Ok(found) => package_answer(app, found, what).await,
        Err(answer) => answer,
    }
}

fn ident_of(
    origin: String,
    name: String,
    version: Option<String>,
    release: Option<String>,
) -> PackageIdent {
    PackageIdent {
        origin,
        name,
        version,
        release,
    }
}

async fn latest(
    State(app): State<App>,
    Path((origin, channel, name)): Path<(String, String, String)>,
) -> Response {
    find_latest(&app, ident_of(origin, name, None, None), channel).await
}

async fn latest_of_version(
    State(app): State<App>,
    Path((origin, channel, name, version)): Path<(String, String, String, String)>,
) -> Response {
    find_latest(&app, ident_of(origin, name, Some(version), None), channel).await
}

type ChannelPkgPath = Path<(String, String, String, String, String)>;

async fn in_channel(
    State(app): State<App>,
    Path((origin, channel, name, version, release)): ChannelPkgPath,
) -> Response {
    find_latest(
        &app,
        ident_of(origin, name, Some(version), Some(release)),
        channel,
    )
    .await
}

async fn promote(
    State(app): State<App>,
    Path((origin, channel, name, version, release)): ChannelPkgPath,
) -> Response {
    let ident = ident_of(origin, name, Some(version), Some(release));
    match app.run(move |s| s.promote(&ident, &channel)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(answer) => answer,
    }
}

async fn demote(
    State(app): State<App>,
    Path((origin, channel, name, version, release)): ChannelPkgPath,
) -> Response {
    let ident = ident_of(origin, name, Some(version), Some(release));
    match app.run(move |s| s.demote(&ident, &channel)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(answer) => answer,
    }
}

async fn origin_channels(State(app): State<App>, Path(origin): Path<String>) -> Response {
    #[derive(Serialize)]
    struct Name {
        name: String,
    }
    match app.run(move |s| s.origin_channels(&origin)).await {
        Ok(names) => Json(
            names
                .into_iter()
                .map(|name| Name { name })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(answer) => answer,
    }
}

async fn create_channel(
    State(app): State<App>,
    Path((origin, channel)): Path<(String, String)>,
) -> Response {
    let what = format!("channel {channel} of {origin}");
    match app.run(move |s| s.create_channel(&origin, &channel)).await {
        Ok(true) => StatusCode::CREATED.into_response(),
        Ok(false) => fail(StatusCode::CONFLICT, format!("{what} already exists")),
        Err(answer) => answer,
    }
}

type PkgPath = Path<(String, String, String, String)>;

async fn channels(
    State(app): State<App>,
    Path((origin, name, version, release)): PkgPath,
) -> Response {
    let ident = ident_of(origin, name, Some(version), Some(release));
    match app.run(move |s| s.channels(&ident)).await {
        Ok(entries) => Json(
            entries
                .into_iter()
                .map(|ChannelEntry { name, promoted_at }| ChannelJson {
                    name,
                    created_at: builder_time(promoted_at.as_deref()),
                    promoted_at: builder_time(promoted_at.as_deref()),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(answer) => answer,
    }
}

async fn download(
    State(app): State<App>,
    Path((origin, name, version, release)): PkgPath,
) -> Response {
    let ident = ident_of(origin, name, Some(version), Some(release));
    let file_name = hart::hart_file_name(&ident);
    let path = match app.run(move |s| s.hart_path(&ident)).await {
        Ok(path) => path,
        Err(answer) => return answer,
    };
    file_answer(&path, &file_name).await
}

/// A file streamed as the body, with Builder's `X-Filename`.
async fn file_answer(path: &FsPath, file_name: &str) -> Response {
    let opened = async {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        Ok::<_, std::io::Error>((file, len))
    };
    let (file, len) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "depot: cannot read a stored file");
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the depot cannot read the file",
            );
        }
    };
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(value) = HeaderValue::from_str(file_name) {
        headers.insert("x-filename", value.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[derive(Deserialize)]
struct UploadQuery {
    checksum: Option<String>,
}

/// Removes an upload's temporary file unless it was handed on: also when the client goes
/// away and the request's future is dropped mid-body.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn upload(
    State(app): State<App>,
    Path((origin, name, version, release)): PkgPath,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = receive_upload(
        &app,
        ident_of(origin, name, Some(version), Some(release)),
        query,
        &headers,
        body,
    )
    .await;
    let counter = if answer.status().is_success() {
        &app.stats.uploads
    } else {
        &app.stats.uploads_refused
    };
    counter.fetch_add(1, AtomicOrdering::Relaxed);
    answer
}

async fn receive_upload(
    app: &App,
    ident: PackageIdent,
    query: UploadQuery,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = store::check_qualified(&ident) {
        return app.error(e);
    }
    let max = app.limits.max_upload_bytes;
    let too_large = || {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a .hart may be at most {max} bytes (hab depot serve --max-upload-bytes)"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max) {
        return too_large();
    }
    let (file, temp) = match app.run(|s| s.temp_file()).await {
        Ok(created) => created,
        Err(answer) => return answer,
    };
    let mut guard = TempGuard(Some(temp.clone()));
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Blake2b256::new();
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(app.limits.body_idle_timeout, stream.next()).await {
            Err(_) => {
                return fail(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no data for {:?}", app.limits.body_idle_timeout),
                )
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return fail(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        match u64::try_from(chunk.len())
            .ok()
            .and_then(|n| received.checked_add(n))
        {
            Some(total) if total <= max => received = total,
            _ => return too_large(),
        }
        hasher.update(&chunk);
        if let Err(e) = file.write_all(&chunk).await {
            return app.error(Error::io(&temp, e));
        }
    }
    if let Err(e) = file.sync_all().await {
        return app.error(Error::io(&temp, e));
    }
    drop(file);
    if let Some(expected) = query.checksum {
        let actual = hex(&hasher.finalize());
        if !expected.trim().eq_ignore_ascii_case(&actual) {
            return fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body's BLAKE2b checksum is {actual}, the request says {expected}"),
            );
        }
    }
    // `add` removes the temporary file itself, whatever happens.
    guard.0 = None;
    match app.run(move |s| s.add(&temp, Some(&ident))).await {
        Ok((ident, true)) => {
            tracing::info!(%ident, bytes = received, "depot: uploaded");
            StatusCode::CREATED.into_response()
        }
        Ok((_, false)) => StatusCode::OK.into_response(),
        Err(answer) => answer,
    }
}

async fn put_origin_key(
    State(app): State<App>,
    Path((origin, revision)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let what = format!("origin key {origin}-{revision}");
    match app
        .run(move |s| s.put_origin_key(&origin, &revision, &body))
        .await
    {
        Ok(true) => StatusCode::CREATED.into_response(),
        Ok(false) => fail(StatusCode::CONFLICT, format!("{what} is already stored")),
        Err(answer) => answer,
    }
}

async fn origin_key(
    State(app): State<App>,
    Path((origin, revision)): Path<(String, String)>,
) -> Response {
    let file_name = format!("{origin}-{revision}.pub");
    match app.run(move |s| s.origin_key(&origin, &revision)).await {
        Ok(path) => file_answer(&path, &file_name).await,
        Err(answer) => answer,
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let stats = &app.stats;
    let text = format!(
        "# HELP hab_depot_unauthorized_total Writes refused for a missing or wrong token.\n\
         # TYPE hab_depot_unauthorized_total counter\n\
         hab_depot_unauthorized_total {}\n\
         # HELP hab_depot_uploads_total Uploads stored (or already there).\n\
         # TYPE hab_depot_uploads_total counter\n\
         hab_depot_uploads_total {}\n\
         # HELP hab_depot_uploads_refused_total Uploads refused.\n\
         # TYPE hab_depot_uploads_refused_total counter\n\
         hab_depot_uploads_refused_total {}\n",
        stats.unauthorized.load(AtomicOrdering::Relaxed),
        stats.uploads.load(AtomicOrdering::Relaxed),
        stats.uploads_refused.load(AtomicOrdering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Writes (POST, PUT, DELETE) need the token when one is set; reads are open.
async fn require_token(State(app): State<App>, request: Request, next: Next) -> Response {
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if let (Some(token), false) = (&app.token, is_read) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !crate::http::token_matches(token, presented) {
            let refused = app.stats.unauthorized.fetch_add(1, AtomicOrdering::Relaxed) + 1;
            tracing::warn!(
                method = %request.method(),
                path = %request.uri().path(),
                token_sent = presented.is_some(),
                refused,
                "depot: write refused (missing or wrong token)"
            );
            // A client still sending an upload would otherwise meet a reset connection instead
            // of this answer (hyper closes on an unread body), depending on timing.
            drain_refused_body(request.into_body(), app.limits.body_idle_timeout).await;
            let mut answer = fail(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            answer
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return answer;
        }
    }
    next.run(request).await
}

/// How much of a refused request's body is read (and dropped) so its client hears the answer.
const REFUSED_BODY_DRAIN_BYTES: u64 = 64 << 20;

async fn drain_refused_body(body: Body, idle: Duration) {
    let mut stream = body.into_data_stream();
    let mut read: u64 = 0;
    while read < REFUSED_BODY_DRAIN_BYTES {
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => read = read.saturating_add(chunk.len() as u64),
            _ => break,
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
