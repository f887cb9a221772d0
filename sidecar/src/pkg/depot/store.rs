//! A depot over a directory, shared by `hab depot serve DIR` and `--url file:///DIR`, so both
//! behave the same. Layout (see docs/depot.md):
//!
//! ```text
//! DIR/<origin>-<name>-<version>-<release>-<target>.hart   the packages, named as Habitat names them
//! DIR/channels/<channel>/<origin>/<name>/<version>/<release>
//!                                      a release is in a channel; holds the promotion time
//! DIR/keys/<origin>-<revision>.pub     origin public keys uploaded with the packages
//! DIR/.<anything>                      temporary files of writes in progress: never read
//! ```
//!
//! Invariants: every hart counts as `unstable` (so a plain directory of .hart files is a
//! depot) and nothing can demote from it; a file becomes visible only whole (written to a
//! temporary file, synced, then linked or renamed into place, directory synced); a release
//! already present is never replaced by different bytes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::{hart, DepotError};
use crate::error::{Error, Result};
use crate::package::{compare_versions, PackageIdent};

/// Where every upload lands; holds every release and cannot be demoted from.
pub const UNSTABLE: &str = "unstable";
/// The channel Builder creates for every origin.
pub const STABLE: &str = "stable";
const CHANNELS_DIR: &str = "channels";
const KEYS_DIR: &str = "keys";
/// Habitat's package targets, longest first (one is a prefix of another).
const TARGETS: [&str; 5] = [
    "x86_64-linux-kernel2",
    "x86_64-linux",
    "aarch64-linux",
    "aarch64-darwin",
    "x86_64-windows",
];
/// The largest origin public key accepted (they are about 100 bytes).
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Idents read from inside harts, remembered by file; forgotten all at once past this.
const MAX_CACHED_IDENTS: usize = 16 * 1024;

/// One channel a release is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelEntry {
    pub name: String,
    /// `YYYYMMDDhhmmss` (UTC) when it was promoted there; for `unstable`, when it was uploaded.
    pub promoted_at: Option<String>,
}

/// File name -> (length, mtime, the ident read from the file).
type IdentCache = HashMap<String, (u64, Option<SystemTime>, Option<PackageIdent>)>;

/// The depot in one directory. Cheap to share: it holds only a cache of idents read from harts
/// whose file names do not tell theirs unambiguously.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// File name -> (length, mtime, ident read from the hart, `None` when it is not one).
    read_idents: Mutex<IdentCache>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            read_idents: Mutex::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(&self) -> String {
        self.dir.display().to_string()
    }

    fn not_found(&self, what: impl Into<String>) -> Error {
        DepotError::NotFound {
            depot: self.name(),
            what: what.into(),
        }
        .into()
    }

    /// The newest release of `ident` (origin/name, with version or release when given) in
    /// `channel`: highest version, then highest release. `None` when the channel has none.
    pub fn latest(&self, ident: &PackageIdent, channel: &str) -> Result<Option<PackageIdent>> {
        check_ident(ident)?;
        check_channel(channel)?;
        let mut found = if channel == UNSTABLE {
            self.releases(&ident.origin, &ident.name, ident.version.as_deref())?
        } else {
            self.channel_releases(channel, ident)?
        };
        if let Some(release) = &ident.release {
            found.retain(|f| f.release.as_ref() == Some(release));
        }
        Ok(found.into_iter().max_by(newer))
    }

    /// The hart of a fully qualified ident.
    pub fn hart_path(&self, ident: &PackageIdent) -> Result<PathBuf> {
        check_qualified(ident)?;
        let name = hart::hart_file_name(ident);
        let path = self.dir.join(&name);
        if path.is_file() && self.ident_of(&path, &name).as_ref() == Some(ident) {
            Ok(path)
        } else {
            Err(self.not_found(format!("package {ident}")))
        }
    }

    /// A new temporary file in the directory (invisible to readers: its name starts with a
    /// dot), for an upload to be written into and then handed to `add`.
    pub fn temp_file(&self) -> Result<(File, PathBuf)> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        create_temp(&self.dir, "upload")
    }

    /// Puts a complete temporary file (from `temp_file`, already synced) in place as the hart
    /// of the ident inside it, and removes the temporary file in any case. With `expected`,
    /// refuses a hart holding another ident. Returns the ident and whether it was new (an
    /// identical copy already there is fine; different bytes under the same release are
    /// refused, whoever wins a race).
    pub fn add(
        &self,
        temp: &Path,
        expected: Option<&PackageIdent>,
    ) -> Result<(PackageIdent, bool)> {
        let added = self.add_inner(temp, expected);
        let _ = fs::remove_file(temp);
        added
    }

    fn add_inner(
        &self,
        temp: &Path,
        expected: Option<&PackageIdent>,
    ) -> Result<(PackageIdent, bool)> {
        let ident = hart::read_ident(temp).map_err(|e| DepotError::BadHart {
            depot: self.name(),
            problem: e.to_string(),
        })?;
        check_qualified(&ident)?;
        if let Some(expected) = expected {
            if *expected != ident {
                return Err(DepotError::BadHart {
                    depot: self.name(),
                    problem: format!(
                        "the archive holds {ident}, not {expected} as the request says"
                    ),
                }
                .into());
            }
        }
        let path = self.dir.join(hart::hart_file_name(&ident));
        // A link never replaces: of two concurrent uploads of one release exactly one creates
        // the file, and the other compares.
        match fs::hard_link(temp, &path) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok((ident, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if same_bytes(temp, &path)? {
                    Ok((ident, false))
                } else {
                    Err(DepotError::Conflict {
                        depot: self.name(),
                        problem: format!(
                            "{ident} is already in the depot with other content ({}); a \
                             release is never replaced",
                            path.display()
                        ),
                    }
                    .into())
                }
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Copies a local hart into the depot (`add`).
    pub fn upload(&self, hart_file: &Path) -> Result<(PackageIdent, bool)> {
        let (mut temp, temp_path) = self.temp_file()?;
        let copied = File::open(hart_file)
            .and_then(|mut from| io::copy(&mut from, &mut temp))
            .and_then(|_| temp.sync_all());
        drop(temp);
        if let Err(e) = copied {
            let _ = fs::remove_file(&temp_path);
            return Err(Error::io(hart_file, e));
        }
        self.add(&temp_path, None)
    }

    /// Puts a release in a channel (creating the channel). It must be in the depot; promoting
    /// to `unstable`, or to a channel it is already in, changes nothing.
    pub fn promote(&self, ident: &PackageIdent, channel: &str) -> Result<()> {
        check_channel(channel)?;
        self.hart_path(ident)?;
        if channel == UNSTABLE {
            return Ok(());
        }
        let record = self.record_path(channel, ident);
        if record.is_file() {
            return Ok(());
        }
        let now = crate::keys::revision_from_time(SystemTime::now());
        write_file(&record, now.as_bytes())
    }

    /// Takes a release out of a channel. Never from `unstable`; a release not in the channel
    /// is an error.
    pub fn demote(&self, ident: &PackageIdent, channel: &str) -> Result<()> {
        check_channel(channel)?;
        if channel == UNSTABLE {
            return Err(DepotError::DemoteUnstable {
                depot: self.name(),
                ident: ident.to_string(),
            }
            .into());
        }
        self.hart_path(ident)?;
        let record = self.record_path(channel, ident);
        match fs::remove_file(&record) {
            Ok(()) => record.parent().map_or(Ok(()), sync_dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(self.not_found(format!("package {ident} in channel {channel}")))
            }
            Err(e) => Err(Error::io(&record, e)),
        }
    }

    /// The channels a release is in: `unstable` first, then the others by name.
    pub fn channels(&self, ident: &PackageIdent) -> Result<Vec<ChannelEntry>> {
        let hart_path = self.hart_path(ident)?;
        let uploaded = fs::metadata(&hart_path)
            .and_then(|m| m.modified())
            .ok()
            .map(crate::keys::revision_from_time);
        let mut entries = vec![ChannelEntry {
            name: UNSTABLE.to_string(),
            promoted_at: uploaded,
        }];
        let mut others = Vec::new();
        for channel in visible_names(&self.dir.join(CHANNELS_DIR))? {
            if channel == UNSTABLE || check_channel(&channel).is_err() {
                continue;
            }
            let record = self.record_path(&channel, ident);
            if let Ok(text) = fs::read_to_string(&record) {
                let at = text.trim();
                let valid = at.len() == 14 && at.bytes().all(|b| b.is_ascii_digit());
                others.push(ChannelEntry {
                    promoted_at: valid.then(|| at.to_string()),
                    name: channel,
                });
            }
        }
        others.sort_by(|a, b| a.name.cmp(&b.name));
        entries.extend(others);
        Ok(entries)
    }

    /// Creates an origin's channel (Builder's `POST /depot/channels/{origin}/{channel}`).
    /// Returns whether it was new; `unstable` and `stable` always exist.
    pub fn create_channel(&self, origin: &str, channel: &str) -> Result<bool> {
        check_part("origin", origin)?;
        check_channel(channel)?;
        if channel == UNSTABLE || channel == STABLE {
            return Ok(false);
        }
        let path = self.dir.join(CHANNELS_DIR).join(channel).join(origin);
        if path.is_dir() {
            return Ok(false);
        }
        fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        Ok(true)
    }

    /// An origin's channels: `unstable`, `stable`, then those promoted to or created.
    pub fn origin_channels(&self, origin: &str) -> Result<Vec<String>> {
        check_part("origin", origin)?;
        let mut names = vec![UNSTABLE.to_string(), STABLE.to_string()];
        for channel in visible_names(&self.dir.join(CHANNELS_DIR))? {
            let has_origin = self
                .dir
                .join(CHANNELS_DIR)
                .join(&channel)
                .join(origin)
                .is_dir();
            if has_origin && !names.contains(&channel) && check_channel(&channel).is_ok() {
                names.push(channel);
            }
        }
        Ok(names)
    }

    /// Stores an origin public key (`SIG-PUB-1`, named `<origin>-<revision>`). Returns whether
    /// it was new; the same key again is fine, another under the same name is refused.
    pub fn put_origin_key(&self, origin: &str, revision: &str, content: &[u8]) -> Result<bool> {
        check_part("origin", origin)?;
        check_part("key revision", revision)?;
        let expected_head = format!("SIG-PUB-1\n{origin}-{revision}\n");
        if content.len() > MAX_KEY_BYTES || !content.starts_with(expected_head.as_bytes()) {
            return Err(DepotError::BadRequest {
                depot: self.name(),
                problem: format!(
                    "origin key {origin}-{revision}: expected a public signing key file \
                     (first lines SIG-PUB-1 and {origin}-{revision}) of at most {MAX_KEY_BYTES} \
                     bytes"
                ),
            }
            .into());
        }
        let path = self.key_path(origin, revision);
        match fs::read(&path) {
            Ok(existing) if existing == content => return Ok(false),
            Ok(_) => {
                return Err(DepotError::Conflict {
                    depot: self.name(),
                    problem: format!("another key {origin}-{revision} is already stored"),
                }
                .into())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        write_file(&path, content)?;
        Ok(true)
    }

    /// An origin public key's file.
    pub fn origin_key(&self, origin: &str, revision: &str) -> Result<PathBuf> {
        check_part("origin", origin)?;
        check_part("key revision", revision)?;
        let path = self.key_path(origin, revision);
        if path.is_file() {
            Ok(path)
        } else {
            Err(self.not_found(format!("origin key {origin}-{revision}")))
        }
    }

    /// Removes temporary files older than `age` that crashed writers left behind.
    pub fn remove_stale_temps(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if is_temp_name(&name) && old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn key_path(&self, origin: &str, revision: &str) -> PathBuf {
        self.dir
            .join(KEYS_DIR)
            .join(format!("{origin}-{revision}.pub"))
    }

    fn record_path(&self, channel: &str, ident: &PackageIdent) -> PathBuf {
        let mut path = self.dir.join(CHANNELS_DIR).join(channel);
        path.push(&ident.origin);
        path.push(&ident.name);
        path.push(ident.version.as_deref().unwrap_or_default());
        path.push(ident.release.as_deref().unwrap_or_default());
        path
    }

    /// Every hart of origin/name (of `version`, when given) in the directory.
    fn releases(
        &self,
        origin: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<PackageIdent>> {
        let prefix = format!("{origin}-{name}-");
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.not_found("the depot directory"))
            }
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !file_name.starts_with(&prefix) || !file_name.ends_with(".hart") {
                continue;
            }
            if let Some(ident) = self.ident_of(&entry.path(), &file_name) {
                let matches = ident.origin == origin
                    && ident.name == name
                    && version.is_none_or(|v| ident.version.as_deref() == Some(v));
                if matches {
                    found.push(ident);
                }
            }
        }
        Ok(found)
    }

    /// The releases of `ident`'s package recorded in `channel` whose hart is present.
    fn channel_releases(&self, channel: &str, ident: &PackageIdent) -> Result<Vec<PackageIdent>> {
        let package_dir = self
            .dir
            .join(CHANNELS_DIR)
            .join(channel)
            .join(&ident.origin)
            .join(&ident.name);
        let versions = match &ident.version {
            Some(version) => vec![version.clone()],
            None => visible_names(&package_dir)?,
        };
        let mut found = Vec::new();
        for version in versions {
            for release in visible_names(&package_dir.join(&version))? {
                let candidate = PackageIdent {
                    origin: ident.origin.clone(),
                    name: ident.name.clone(),
                    version: Some(version.clone()),
                    release: Some(release),
                };
                if check_ident(&candidate).is_ok() && self.hart_path(&candidate).is_ok() {
                    found.push(candidate);
                }
            }
        }
        Ok(found)
    }

    /// The ident of the hart at `path`: from its file name when that tells it unambiguously,
    /// else read from the archive (remembered); `None` for a file that is no hart, or whose
    /// name is not the one Habitat gives its ident.
    fn ident_of(&self, path: &Path, file_name: &str) -> Option<PackageIdent> {
        if let Some(ident) = parse_hart_name(file_name) {
            return Some(ident);
        }
        let meta = fs::metadata(path).ok()?;
        let stamp = (meta.len(), meta.modified().ok());
        let cache = self
            .read_idents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((len, mtime, ident)) = cache.get(file_name) {
            if (*len, *mtime) == stamp {
                return ident.clone();
            }
        }
        drop(cache);
        let ident = match hart::read_ident(path) {
            Ok(ident)
                if hart::hart_file_name(&ident) == file_name && check_qualified(&ident).is_ok() =>
            {
                Some(ident)
            }
            Ok(ident) => {
                tracing::warn!(file = %path.display(), %ident, "depot: ignoring a hart not named after its ident");
                None
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "depot: ignoring an unreadable hart");
                None
            }
        };
        let mut cache = self
            .read_idents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_IDENTS {
            cache.clear();
        }
        cache.insert(file_name.to_string(), (stamp.0, stamp.1, ident.clone()));
        ident
    }
}

/// Orders releases: version first (`compare_versions`), then release.
pub fn newer(a: &PackageIdent, b: &PackageIdent) -> Ordering {
    let part = |x: &Option<String>, y: &Option<String>| {
        compare_versions(
            x.as_deref().unwrap_or_default(),
            y.as_deref().unwrap_or_default(),
        )
    };
    part(&a.version, &b.version).then_with(|| part(&a.release, &b.release))
}

/// The ident a hart's file name gives, when only one reading is possible: exactly three
/// dash-separated parts before a numeric release and a known target
/// (`core-redis-7.2.4-20240101000000-x86_64-linux.hart`). Names with more dashes
/// (`core-busybox-static-...`) could be split several ways: `None`.
pub fn parse_hart_name(file_name: &str) -> Option<PackageIdent> {
    if file_name.starts_with('.') {
        return None;
    }
    let stem = file_name.strip_suffix(".hart")?;
    let rest = TARGETS
        .iter()
        .find_map(|target| stem.strip_suffix(target)?.strip_suffix('-'))?;
    let (head, release) = rest.rsplit_once('-')?;
    if release.is_empty() || !release.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = head.split('-').collect();
    let [origin, name, version] = parts.as_slice() else {
        return None;
    };
    let ident = PackageIdent {
        origin: origin.to_string(),
        name: name.to_string(),
        version: Some(version.to_string()),
        release: Some(release.to_string()),
    };
    check_ident(&ident).is_ok().then_some(ident)
}

/// Whether a name in the directory is a write in progress (never read as data).
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// A part of a path built from a request: an ident part, a channel, a key revision. Only
/// Habitat's ident characters, and no leading dot (no `..`, and no clash with temporary files).
fn check_part(what: &str, part: &str) -> Result<()> {
    let valid = !part.is_empty()
        && part.len() <= 255
        && !part.starts_with('.')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!(
                "expected 1 to 255 letters, digits, '-', '_', '.' or '+', not starting with '.', \
                 found {part:?}"
            ),
        ))
    }
}

pub fn check_channel(channel: &str) -> Result<()> {
    check_part("channel", channel)
}

pub(crate) fn check_ident(ident: &PackageIdent) -> Result<()> {
    check_part("package origin", &ident.origin)?;
    check_part("package name", &ident.name)?;
    if let Some(version) = &ident.version {
        check_part("package version", version)?;
    }
    if let Some(release) = &ident.release {
        check_part("package release", release)?;
    }
    Ok(())
}

/// A fully qualified ident (origin/name/version/release), safe as path parts.
pub fn check_qualified(ident: &PackageIdent) -> Result<()> {
    if !ident.is_fully_qualified() {
        return Err(Error::invalid(
            format!("package ident {ident}"),
            "expected a fully qualified ident ORIGIN/NAME/VERSION/RELEASE",
        ));
    }
    check_ident(ident)
}

/// The names in `dir` that are not hidden (temporary) files; none when it does not exist.
fn visible_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// `.<prefix>-<random>.tmp` in `dir`, created new (0644).
fn create_temp(dir: &Path, prefix: &str) -> Result<(File, PathBuf)> {
    loop {
        let path = dir.join(format!(".{prefix}-{:016x}.tmp", rand::random::<u64>()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
}

/// Writes a small file whole: a temporary file of its own (so concurrent writers never share
/// one), synced, renamed into place, the directory synced.
fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (mut file, temp) = create_temp(dir, "write")?;
    let written = file
        .write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&temp, e))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
        return written;
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let open = |p: &Path| File::open(p).map_err(|e| Error::io(p, e));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let len = |f: &File, p: &Path| f.metadata().map(|m| m.len()).map_err(|e| Error::io(p, e));
    if len(&fa, a)? != len(&fb, b)? {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| Error::io(a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| Error::io(b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end: how many bytes.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
