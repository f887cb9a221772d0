//! The HTTP side of `Depot`: Builder's API paths (as `hab depot serve` answers them) over
//! hyper, one connection per request. Bounded: a connect timeout, a deadline on progress (no
//! byte sent or received for `stall_timeout` fails the request, so a large upload may take as
//! long as it keeps moving), and caps on what an answer may hold (JSON, downloads).
//! Invariants: the token is sent only as a bearer header and never reaches a message or `Debug`;
//! a download is visible under its name only once complete.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::server::{checksum_file, IdentJson, TARGET};
use super::{hart, store, DepotError};
use crate::error::{Error, Result};
use crate::package::PackageIdent;

/// How long and how much.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// A request fails when nothing moved (sent or received) for this long.
    pub stall_timeout: Duration,
    /// The largest JSON answer read.
    pub max_json_bytes: u64,
    /// The largest download accepted.
    pub max_download_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(120),
            max_json_bytes: 4 * 1024 * 1024,
            max_download_bytes: super::server::DEFAULT_MAX_UPLOAD_BYTES,
        }
    }
}

/// An HTTP depot: `http://HOST[:PORT][/PATH]` (PATH `/v1` when none, as Habitat's client).
#[derive(Clone)]
pub struct HttpDepot {
    url: String,
    authority: String,
    base: String,
    token: Option<String>,
    options: ClientOptions,
}

impl fmt::Debug for HttpDepot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDepot")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

type ReqBody = BoxBody<Bytes, std::io::Error>;

/// When a request last moved, in milliseconds since it started.
#[derive(Clone)]
struct Progress {
    start: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: tokio::time::Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn moved(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Returns once nothing moved for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

#[derive(Deserialize)]
struct PackageJson {
    ident: IdentJson,
}

#[derive(Deserialize)]
struct ChannelJson {
    name: String,
}

#[derive(Deserialize)]
struct NetError {
    msg: String,
}

impl HttpDepot {
    /// `None` when `url` is not an http URL with a usable host and port.
    pub fn new(url: &str, token: Option<String>) -> Option<HttpDepot> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') || path.contains(['?', '#', '%', ' ']) {
            return None;
        }
        let authority = crate::workstation::host_port(authority, 80)?;
        let path = path.trim_end_matches('/');
        let base = if path.is_empty() { "/v1" } else { path };
        Some(HttpDepot {
            url: url.to_string(),
            authority,
            base: base.to_string(),
            token,
            options: ClientOptions::default(),
        })
    }

    pub fn with_options(mut self, options: ClientOptions) -> HttpDepot {
        self.options = options;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn depot_error(&self, problem: impl Into<String>) -> Error {
        DepotError::Protocol {
            depot: self.url.clone(),
            problem: problem.into(),
        }
        .into()
    }

    /// Sends one request on a new connection and returns the answer once its headers are in.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_length: Option<u64>,
        progress: &Progress,
    ) -> Result<Response<Incoming>> {
        let unreachable = |detail: String| -> Error {
            DepotError::Unreachable {
                depot: self.url.clone(),
                detail,
            }
            .into()
        };
        let stream = match tokio::time::timeout(
            self.options.connect_timeout,
            TcpStream::connect(&self.authority),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no connection within {:?}",
                    self.options.connect_timeout
                )))
            }
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::USER_AGENT, "hab (habitat-rs)")
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(len) = content_length {
            request = request.header(hyper::header::CONTENT_LENGTH, len);
        }
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(body)
            .map_err(|e| self.depot_error(format!("cannot build the request: {e}")))?;
        tokio::select! {
            answer = sender.send_request(request) => {
                progress.moved();
                answer.map_err(|e| self.depot_error(format!("the request failed: {e}")))
            }
            () = progress.stalled(self.options.stall_timeout) => Err(self.depot_error(format!(
                "no answer: nothing moved for {:?}", self.options.stall_timeout
            ))),
        }
    }

    /// A request without a body; its answer checked (2xx) and read (JSON size cap).
    async fn call(&self, method: Method, path: &str, what: &str) -> Result<Vec<u8>> {
        let progress = Progress::new();
        let body = Empty::<Bytes>::new().map_err(|e| match e {}).boxed();
        let answer = self.send(method, path, body, None, &progress).await?;
        let answer = self.check(answer, what, &progress).await?;
        self.read_body(answer.into_body(), self.options.max_json_bytes, &progress)
            .await
    }

    /// Turns an answer that is not 2xx into the error it means.
    async fn check(
        &self,
        answer: Response<Incoming>,
        what: &str,
        progress: &Progress,
    ) -> Result<Response<Incoming>> {
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        let body = self
            .read_body(answer.into_body(), 64 * 1024, progress)
            .await
            .unwrap_or_default();
        let message = serde_json::from_slice::<NetError>(&body)
            .map(|e| e.msg)
            .unwrap_or_else(|_| {
                String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(500)
                    .collect()
            });
        let depot = self.url.clone();
        let problem = if message.is_empty() {
            status.to_string()
        } else {
            message.clone()
        };
        Err(match status {
            StatusCode::UNAUTHORIZED => DepotError::Unauthorized {
                depot,
                token_sent: self.token.is_some(),
            },
            StatusCode::NOT_FOUND => DepotError::NotFound {
                depot,
                what: if message.is_empty() {
                    what.to_string()
                } else {
                    message
                },
            },
            StatusCode::CONFLICT => DepotError::Conflict { depot, problem },
            StatusCode::UNPROCESSABLE_ENTITY => DepotError::BadHart { depot, problem },
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                DepotError::BadRequest { depot, problem }
            }
            _ => DepotError::Rejected {
                depot,
                status: status.as_u16(),
                message: problem,
            },
        }
        .into())
    }

    /// Reads a whole body of at most `limit` bytes.
    async fn read_body(
        &self,
        mut body: Incoming,
        limit: u64,
        progress: &Progress,
    ) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        while let Some(bytes) = self.next_chunk(&mut body, progress).await? {
            let total = u64::try_from(data.len() + bytes.len()).unwrap_or(u64::MAX);
            if total > limit {
                return Err(self.depot_error(format!("the answer is larger than {limit} bytes")));
            }
            data.extend_from_slice(&bytes);
        }
        Ok(data)
    }

    /// The next data of a body, `None` at its end; fails when it stalls.
    async fn next_chunk(&self, body: &mut Incoming, progress: &Progress) -> Result<Option<Bytes>> {
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = progress.stalled(self.options.stall_timeout) => {
                    return Err(self.depot_error(format!(
                        "the answer stalled: nothing for {:?}", self.options.stall_timeout
                    )))
                }
            };
            progress.moved();
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(self.depot_error(format!("reading the answer: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    pub async fn latest(
        &self,
        ident: &PackageIdent,
        channel: &str,
    ) -> Result<Option<PackageIdent>> {
        store::check_ident(ident)?;
        store::check_channel(channel)?;
        let mut path = format!(
            "/depot/channels/{}/{channel}/pkgs/{}",
            ident.origin, ident.name
        );
        match (&ident.version, &ident.release) {
            (Some(version), Some(release)) => path.push_str(&format!("/{version}/{release}")),
            (Some(version), None) => path.push_str(&format!("/{version}/latest")),
            _ => path.push_str("/latest"),
        }
        path.push_str(&format!("?target={TARGET}"));
        let body = match self.call(Method::GET, &path, &ident.to_string()).await {
            Ok(body) => body,
            Err(Error::Depot(DepotError::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(e),
        };
        let package: PackageJson = serde_json::from_slice(&body).map_err(|e| {
            self.depot_error(format!("GET {path}: expected a package document: {e}"))
        })?;
        let found = package.ident.to_ident();
        store::check_qualified(&found)?;
        Ok(Some(found))
    }

    pub async fn fetch(&self, ident: &PackageIdent, dest_dir: &Path) -> Result<PathBuf> {
        let path = format!("{}/download?target={TARGET}", pkg_path(ident));
        let name = hart::hart_file_name(ident);
        let limit = self.options.max_download_bytes;
        self.download(&path, &format!("package {ident}"), dest_dir, &name, limit)
            .await
    }

    /// `GET path` into `dest_dir/name` through a temporary file renamed into place.
    async fn download(
        &self,
        path: &str,
        what: &str,
        dest_dir: &Path,
        name: &str,
        limit: u64,
    ) -> Result<PathBuf> {
        let progress = Progress::new();
        let body = Empty::<Bytes>::new().map_err(|e| match e {}).boxed();
        let answer = self.send(Method::GET, path, body, None, &progress).await?;
        let answer = self.check(answer, what, &progress).await?;
        tokio::fs::create_dir_all(dest_dir)
            .await
            .map_err(|e| Error::io(dest_dir, e))?;
        let dest = dest_dir.join(name);
        let temp = dest_dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let written = self
            .body_to_file(answer.into_body(), &temp, limit, &progress)
            .await;
        let placed = match written {
            Ok(()) => tokio::fs::rename(&temp, &dest)
                .await
                .map_err(|e| Error::io(&dest, e)),
            Err(e) => Err(e),
        };
        if placed.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        placed.map(|()| dest)
    }

    /// Stores an origin public key; `false` when the depot already has one of that name.
    pub async fn upload_origin_key(
        &self,
        origin: &str,
        revision: &str,
        content: Vec<u8>,
    ) -> Result<bool> {
        let path = format!("/depot/origins/{origin}/keys/{revision}");
        let progress = Progress::new();
        let len = u64::try_from(content.len()).unwrap_or(u64::MAX);
        let body = http_body_util::Full::new(Bytes::from(content))
            .map_err(|e| match e {})
            .boxed();
        let answer = self
            .send(Method::POST, &path, body, Some(len), &progress)
            .await?;
        match self
            .check(
                answer,
                &format!("origin key {origin}-{revision}"),
                &progress,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Depot(DepotError::Conflict { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Downloads origin public key `<origin>-<revision>.pub` into `dest_dir`.
    pub async fn fetch_origin_key(
        &self,
        origin: &str,
        revision: &str,
        dest_dir: &Path,
    ) -> Result<PathBuf> {
        let path = format!("/depot/origins/{origin}/keys/{revision}");
        let name = format!("{origin}-{revision}.pub");
        let limit = store::MAX_KEY_BYTES as u64;
        self.download(
            &path,
            &format!("origin key {origin}-{revision}"),
            dest_dir,
            &name,
            limit,
        )
        .await
    }

    /// Writes a body of at most `limit` bytes to a new file `temp`, synced.
    async fn body_to_file(
        &self,
        mut body: Incoming,
        temp: &Path,
        limit: u64,
        progress: &Progress,
    ) -> Result<()> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
            .await
            .map_err(|e| Error::io(temp, e))?;
        let mut received: u64 = 0;
        while let Some(bytes) = self.next_chunk(&mut body, progress).await? {
            received = u64::try_from(bytes.len())
                .ok()
                .and_then(|n| received.checked_add(n))
                .filter(|total| *total <= limit)
                .ok_or_else(|| {
                    self.depot_error(format!("the download is larger than {limit} bytes"))
                })?;
            file.write_all(&bytes)
                .await
                .map_err(|e| Error::io(temp, e))?;
        }
        file.sync_all().await.map_err(|e| Error::io(temp, e))
    }

    pub async fn upload(&self, hart_file: &Path) -> Result<PackageIdent> {
        let file_path = hart_file.to_path_buf();
        let (ident, checksum, len) = tokio::task::spawn_blocking(move || {
            let ident = hart::read_ident(&file_path)?;
            store::check_qualified(&ident)?;
            let len = std::fs::metadata(&file_path)
                .map_err(|e| Error::io(&file_path, e))?
                .len();
            Ok::<_, Error>((ident, checksum_file(&file_path)?, len))
        })
        .await
        .map_err(|e| Error::invalid("upload", e.to_string()))??;
        let file = tokio::fs::File::open(hart_file)
            .await
            .map_err(|e| Error::io(hart_file, e))?;
        let progress = Progress::new();
        let moving = progress.clone();
        let chunks = futures::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        })
        .inspect(move |_| moving.moved());
        let body = BodyExt::boxed(StreamBody::new(chunks));
        let path = format!(
            "{}?checksum={checksum}&target={TARGET}&forced=false",
            pkg_path(&ident)
        );
        let answer = self
            .send(Method::POST, &path, body, Some(len), &progress)
            .await?;
        self.check(answer, &format!("package {ident}"), &progress)
            .await?;
        Ok(ident)
    }

    /// `action`: `promote` or `demote`.
    pub async fn promote_or_demote(
        &self,
        ident: &PackageIdent,
        channel: &str,
        action: &str,
    ) -> Result<()> {
        let path = format!(
            "/depot/channels/{}/{channel}/pkgs/{}/{}/{}/{action}?target={TARGET}",
            ident.origin,
            ident.name,
            ident.version.as_deref().unwrap_or_default(),
            ident.release.as_deref().unwrap_or_default()
        );
        self.call(Method::PUT, &path, &format!("package {ident}"))
            .await?;
        Ok(())
    }

    pub async fn channels(&self, ident: &PackageIdent) -> Result<Vec<String>> {
        let path = format!("{}/channels?target={TARGET}", pkg_path(ident));
        let body = self
            .call(Method::GET, &path, &format!("package {ident}"))
            .await?;
        let channels: Vec<ChannelJson> = serde_json::from_slice(&body).map_err(|e| {
            self.depot_error(format!("GET {path}: expected a list of channels: {e}"))
        })?;
        Ok(channels.into_iter().map(|c| c.name).collect())
    }
}

/// `/depot/pkgs/ORIGIN/NAME/VERSION/RELEASE` of a fully qualified ident.
fn pkg_path(ident: &PackageIdent) -> String {
    format!(
        "/depot/pkgs/{}/{}/{}/{}",
        ident.origin,
        ident.name,
        ident.version.as_deref().unwrap_or_default(),
        ident.release.as_deref().unwrap_or_default()
    )
}
