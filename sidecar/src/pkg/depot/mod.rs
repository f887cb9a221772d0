//! A package depot with channels: a directory (`file:///DIR`, `store`) or an HTTP depot
//! (`http://HOST:PORT`, served by `hab depot serve DIR`, `server`; reached with `client`).
//! Both go through the same `Store` code on the depot's side, so they behave the same.
//! Invariants: uploads land in `unstable` and nothing is ever demoted from it; a release is
//! never replaced by other bytes; a file is visible only whole; the token never reaches an
//! error or a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::package::PackageIdent;
use crate::pkg::hart;

pub mod client;
pub mod server;
pub mod store;

pub use store::{ChannelEntry, Store, STABLE, UNSTABLE};

/// What a depot can refuse or fail with. Messages name the depot and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DepotError {
    #[error("depot {depot}: {what} not found")]
    NotFound { depot: String, what: String },
    #[error(
        "depot {depot}: {ident} cannot be demoted from unstable (every uploaded release stays \
         there; demote it from a channel it was promoted to)"
    )]
    DemoteUnstable { depot: String, ident: String },
    #[error(
        "depot {depot} refused the request (401 Unauthorized): {}",
        if *.token_sent { "the token given (--auth or HAB_AUTH_TOKEN) is not the depot's" }
        else { "it wants a token: give it with --auth or HAB_AUTH_TOKEN" }
    )]
    Unauthorized { depot: String, token_sent: bool },
    #[error(
        "cannot reach the depot at {depot} ({detail}); start one with `hab depot serve DIR`, \
         or name another with --url or HAB_BLDR_URL"
    )]
    Unreachable { depot: String, detail: String },
    #[error("depot {depot}: {problem}")]
    Conflict { depot: String, problem: String },
    #[error("depot {depot}: not a usable .hart: {problem}")]
    BadHart { depot: String, problem: String },
    #[error("depot {depot}: {problem}")]
    BadRequest { depot: String, problem: String },
    #[error("depot {depot} answered {status}: {message}")]
    Rejected {
        depot: String,
        status: u16,
        message: String,
    },
    #[error("depot {depot}: {problem}")]
    Protocol { depot: String, problem: String },
    #[error(
        "depot URL {url:?}: {problem}; expected http://HOST:PORT[/PATH] (a depot served by \
         `hab depot serve`) or file:///ABSOLUTE/DIR"
    )]
    BadUrl { url: String, problem: String },
}

/// A package depot: a directory or an HTTP depot.
#[derive(Debug, Clone)]
pub enum Depot {
    /// `file:///abs/path`: the directory itself, through `Store`.
    Dir(Arc<Store>),
    /// `http://host:port[/path]`: a depot served by `hab depot serve` (Builder's API paths).
    Http(client::HttpDepot),
}

impl Depot {
    /// `file:///ABSOLUTE/DIR` or `http://HOST:PORT[/PATH]` (path `/v1` when none is given, as
    /// Habitat's client does). The token goes with writes to an HTTP depot.
    pub fn from_url(url: &str, token: Option<String>) -> Result<Depot> {
        let bad = |problem: &str| DepotError::BadUrl {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let trimmed = url.trim();
        if let Some(path) = trimmed.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file URL needs an absolute path (three slashes)").into());
            }
            if path.contains(['?', '#', '%']) {
                return Err(bad("a file URL here is a plain path, without ?, # or %").into());
            }
            return Ok(Depot::Dir(Arc::new(Store::new(path))));
        }
        if trimmed.starts_with("https://") {
            return Err(bad("https is not supported; use an http:// depot or a directory").into());
        }
        let token = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        client::HttpDepot::new(trimmed, token)
            .map(Depot::Http)
            .ok_or_else(|| bad("not a URL this client reads").into())
    }

    /// What messages call this depot.
    pub fn name(&self) -> String {
        match self {
            Depot::Dir(store) => format!("file://{}", store.dir().display()),
            Depot::Http(http) => http.url().to_string(),
        }
    }

    /// The newest release of `ident` (origin/name[/version]) in `channel`.
    pub async fn latest(
        &self,
        ident: &PackageIdent,
        channel: &str,
    ) -> Result<Option<PackageIdent>> {
        match self {
            Depot::Dir(store) => {
                let (ident, channel) = (ident.clone(), channel.to_string());
                blocking(store, move |s| s.latest(&ident, &channel)).await
            }
            Depot::Http(http) => http.latest(ident, channel).await,
        }
    }

    /// Downloads a release's hart into `dest_dir` (under Habitat's file name), atomically.
    pub async fn fetch(&self, ident: &PackageIdent, dest_dir: &Path) -> Result<PathBuf> {
        store::check_qualified(ident)?;
        match self {
            Depot::Dir(store) => {
                let (ident, dest_dir) = (ident.clone(), dest_dir.to_path_buf());
                blocking(store, move |s| {
                    let from = s.hart_path(&ident)?;
                    copy_into(&from, &dest_dir, &hart::hart_file_name(&ident))
                })
                .await
            }
            Depot::Http(http) => http.fetch(ident, dest_dir).await,
        }
    }

    /// Uploads a hart: it lands in `unstable`, and with `channel` is promoted there too.
    /// The same release already there with the same bytes is fine.
    pub async fn upload(&self, hart_file: &Path, channel: Option<&str>) -> Result<PackageIdent> {
        if let Some(channel) = channel {
            store::check_channel(channel)?;
        }
        let ident = match self {
            Depot::Dir(store) => {
                let hart_file = hart_file.to_path_buf();
                blocking(store, move |s| s.upload(&hart_file).map(|(ident, _)| ident)).await?
            }
            Depot::Http(http) => http.upload(hart_file).await?,
        };
        if let Some(channel) = channel {
            self.promote(&ident, channel).await?;
        }
        Ok(ident)
    }

    /// Puts a release in a channel (created if need be). The release must be in the depot.
    pub async fn promote(&self, ident: &PackageIdent, channel: &str) -> Result<()> {
        store::check_qualified(ident)?;
        store::check_channel(channel)?;
        match self {
            Depot::Dir(store) => {
                let (ident, channel) = (ident.clone(), channel.to_string());
                blocking(store, move |s| s.promote(&ident, &channel)).await
            }
            Depot::Http(http) => http.promote_or_demote(ident, channel, "promote").await,
        }
    }

    /// Takes a release out of a channel; never out of `unstable`.
    pub async fn demote(&self, ident: &PackageIdent, channel: &str) -> Result<()> {
        store::check_qualified(ident)?;
        store::check_channel(channel)?;
        if channel == UNSTABLE {
            return Err(DepotError::DemoteUnstable {
                depot: self.name(),
                ident: ident.to_string(),
            }
            .into());
        }
        match self {
            Depot::Dir(store) => {
                let (ident, channel) = (ident.clone(), channel.to_string());
                blocking(store, move |s| s.demote(&ident, &channel)).await
            }
            Depot::Http(http) => http.promote_or_demote(ident, channel, "demote").await,
        }
    }

    /// The channels a release is in, `unstable` first.
    pub async fn channels(&self, ident: &PackageIdent) -> Result<Vec<String>> {
        store::check_qualified(ident)?;
        match self {
            Depot::Dir(store) => {
                let ident = ident.clone();
                let entries = blocking(store, move |s| s.channels(&ident)).await?;
                Ok(entries.into_iter().map(|e| e.name).collect())
            }
            Depot::Http(http) => http.channels(ident).await,
        }
    }
}

impl Depot {
    /// Stores origin public key `<origin>-<revision>` (its `SIG-PUB-1` file's content) so that
    /// installers can fetch it; `false` when the depot already has a key of that name.
    pub async fn upload_origin_key(&self, name_rev: &str, content: Vec<u8>) -> Result<bool> {
        let (origin, revision) = split_key_name(name_rev)?;
        match self {
            Depot::Dir(store) => {
                let name_rev = name_rev.to_string();
                blocking(store, move |s| {
                    let (origin, revision) = split_key_name(&name_rev)?;
                    match s.put_origin_key(origin, revision, &content) {
                        Err(Error::Depot(DepotError::Conflict { .. })) => Ok(false),
                        other => other,
                    }
                })
                .await
            }
            Depot::Http(http) => http.upload_origin_key(origin, revision, content).await,
        }
    }

    /// Downloads origin public key `<origin>-<revision>` into `dest_dir` (a key cache) as
    /// `<origin>-<revision>.pub`, atomically.
    pub async fn fetch_origin_key(&self, name_rev: &str, dest_dir: &Path) -> Result<PathBuf> {
        let (origin, revision) = split_key_name(name_rev)?;
        match self {
            Depot::Dir(store) => {
                let (name_rev, dest_dir) = (name_rev.to_string(), dest_dir.to_path_buf());
                blocking(store, move |s| {
                    let (origin, revision) = split_key_name(&name_rev)?;
                    let from = s.origin_key(origin, revision)?;
                    copy_into(&from, &dest_dir, &format!("{name_rev}.pub"))
                })
                .await
            }
            Depot::Http(http) => http.fetch_origin_key(origin, revision, dest_dir).await,
        }
    }
}

/// `(origin, revision)` of a key name `<origin>-<YYYYMMDDhhmmss>`.
fn split_key_name(name_rev: &str) -> Result<(&str, &str)> {
    crate::pkg::keys::split_name_rev(name_rev).ok_or_else(|| {
        Error::invalid(
            format!("origin key {name_rev:?}"),
            "expected <origin>-<YYYYMMDDhhmmss>",
        )
    })
}

/// Runs a store operation off the async threads (it does blocking file I/O).
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    op: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || op(&store))
        .await
        .map_err(|e| Error::invalid("depot", format!("the file operation failed: {e}")))?
}

/// Copies `from` to `dest_dir/name` through a synced temporary file renamed into place.
fn copy_into(from: &Path, dest_dir: &Path, name: &str) -> Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dest_dir).map_err(|e| Error::io(dest_dir, e))?;
    let dest = dest_dir.join(name);
    let temp = dest_dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let copied = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io(&temp, e))?;
        let mut input = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
        std::io::copy(&mut input, &mut out).map_err(|e| Error::io(&temp, e))?;
        out.flush().map_err(|e| Error::io(&temp, e))?;
        out.sync_all().map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, &dest).map_err(|e| Error::io(&dest, e))?;
        std::fs::File::open(dest_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dest_dir, e))
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(dest)
}

/// Harts for tests: real, signed .harts of a package holding one file.
#[cfg(test)]
pub(crate) mod test_harts {
    #![allow(clippy::unwrap_used)]
    use std::path::{Path, PathBuf};

    use crate::pkg::keys::SigSecretKey;

    /// A hart of `ident` (fully qualified) in `dir`, under Habitat's file name.
    pub fn make_hart(dir: &Path, ident: &str) -> PathBuf {
        make_hart_with(dir, ident, format!("payload of {ident}").as_bytes())
    }

    /// A hart of `ident` whose package holds `payload` (in a file `payload`).
    pub fn make_hart_with(dir: &Path, ident: &str, payload: &[u8]) -> PathBuf {
        let parsed: crate::package::PackageIdent = ident.parse().unwrap();
        let pkg = tempfile::tempdir().unwrap();
        std::fs::write(pkg.path().join("IDENT"), format!("{ident}\n")).unwrap();
        std::fs::write(pkg.path().join("payload"), payload).unwrap();
        let key = SigSecretKey::from_seed(&parsed.origin, "20260101000000", [7; 32]);
        // xz preset 0: fast, and tests want sizes near the payload's.
        crate::pkg::hart::build_hart_with_preset(pkg.path(), &key, dir, 0).unwrap()
    }

    /// `len` bytes that do not compress.
    pub fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::test_harts::make_hart;
    use super::*;

    #[test]
    fn urls_name_a_directory_or_an_http_depot_and_anything_else_is_refused() {
        assert!(matches!(
            Depot::from_url("file:///srv/depot", None).unwrap(),
            Depot::Dir(_)
        ));
        let http = Depot::from_url("http://127.0.0.1:9636", Some("t".into())).unwrap();
        assert_eq!(http.name(), "http://127.0.0.1:9636");
        assert!(!format!("{http:?}").contains("\"t\""), "{http:?}");
        for bad in [
            "file://relative/dir",
            "https://bldr.habitat.sh",
            "ftp://host",
            "http://host:99999",
            "http://user@host:1",
            "bldr.habitat.sh",
            "",
        ] {
            let err = Depot::from_url(bad, None).unwrap_err().to_string();
            assert!(err.contains("expected http://HOST:PORT"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_directory_depot_uploads_promotes_and_fetches_whole_files() {
        let work = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let depot = Depot::from_url(&url, None).unwrap();
        let hart = make_hart(work.path(), "core/app/1.0/20260101000000");
        let ident = depot.upload(&hart, Some("stable")).await.unwrap();
        let id: PackageIdent = "core/app".parse().unwrap();
        assert_eq!(
            depot.latest(&id, "stable").await.unwrap(),
            Some(ident.clone())
        );
        assert_eq!(
            depot.channels(&ident).await.unwrap(),
            ["unstable", "stable"]
        );
        let err = depot.demote(&ident, "unstable").await.unwrap_err();
        assert!(
            matches!(err, Error::Depot(DepotError::DemoteUnstable { .. })),
            "{err}"
        );
        let dest = tempfile::tempdir().unwrap();
        let fetched = depot.fetch(&ident, dest.path()).await.unwrap();
        assert_eq!(
            std::fs::read(&fetched).unwrap(),
            std::fs::read(&hart).unwrap()
        );
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 1);
        let missing: PackageIdent = "core/app/2.0/20260101000000".parse().unwrap();
        assert!(depot.fetch(&missing, dest.path()).await.is_err());
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 1);
    }
}
