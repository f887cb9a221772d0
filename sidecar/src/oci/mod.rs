//! OCI images written without a daemon: layers from file trees, an image config, and either an
//! OCI image layout directory or a `docker load` tarball holding the same blobs.
//!
//! Reproducible: the same inputs give byte-identical blobs and so the same manifest digest.
//! Every tar entry has one timestamp (the image's `created`, 0 or `SOURCE_DATE_EPOCH`), uid/gid
//! 0, no user or group names, a normalised mode (0755 directories and executables, 0644 other
//! files, unless a mode is given), and entries are sorted by path. Layers are uncompressed tars:
//! their bytes then depend only on the files, never on a compressor's version or settings, a
//! layer's digest is its diff id, and exporting costs no CPU for compression (registries and
//! `skopeo copy --dest-compress` compress when pushing; `docker save` writes them uncompressed
//! too). Writes are atomic: blobs are content-addressed and renamed into place before
//! `index.json` names them; a tarball is renamed into place whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub mod elf;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The index annotation naming a manifest's tag (what `oci:DIR:TAG` and `umoci --image
/// DIR:TAG` look up).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The full image name, as containerd (`ctr import`) and buildkit write it beside the tag.
pub const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The latest timestamp a layer can carry: tar's 11 octal digits (year 2242).
pub const MAX_EPOCH: u64 = 0o77_777_777_777;

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// `SOURCE_DATE_EPOCH` (whole seconds) when set, else 0: the timestamp of every file and of the
/// image, so a build can be reproduced at any later time.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => parse_epoch(&text),
        Err(std::env::VarError::NotPresent) => Ok(0),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(
            "SOURCE_DATE_EPOCH",
            "expected whole seconds since 1970, found non-UTF-8 text",
        )),
    }
}

fn parse_epoch(text: &str) -> Result<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|secs| *secs <= MAX_EPOCH)
        .ok_or_else(|| {
            Error::invalid(
                "SOURCE_DATE_EPOCH",
                format!("expected whole seconds since 1970 up to {MAX_EPOCH}, found {text:?}"),
            )
        })
}

/// `NAME:TAG`, e.g. `core/redis:4.0.14-20190319155852` or `registry:5000/app:latest`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    pub name: String,
    pub tag: String,
}

impl ImageRef {
    /// A tag made from any text (a version, say): characters a tag cannot hold become `_`, and
    /// it is cut to 128 characters.
    pub fn sanitized_tag(text: &str) -> String {
        let mut tag: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(128)
            .collect();
        if tag.starts_with(['.', '-']) || tag.is_empty() {
            tag.replace_range(0..tag.len().min(1), "_");
        }
        tag
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = Error;

    /// Docker's reference grammar, without digests: lowercase name components separated by
    /// `/` (the first may be a registry host with a port), then `:TAG`.
    fn from_str(text: &str) -> Result<Self> {
        let bad = |problem: &str| {
            Error::invalid(
                format!("image reference {text:?}"),
                format!("{problem}; expected NAME:TAG, e.g. core/redis:1.0.0-20260101000000"),
            )
        };
        let last_slash = text.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match text[last_slash..].rfind(':') {
            Some(i) => (&text[..last_slash + i], &text[last_slash + i + 1..]),
            None => return Err(bad("no tag")),
        };
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !tag_ok {
            return Err(bad(
                "the tag must be 1 to 128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        let components: Vec<&str> = name.split('/').collect();
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        let host_ok = |c: &str| {
            let (host, port) = c.split_once(':').unwrap_or((c, "1"));
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
                && port.parse::<u16>().is_ok()
        };
        let first_is_host = components.len() > 1
            && (components[0].contains(['.', ':']) || components[0] == "localhost");
        let valid = components.iter().enumerate().all(|(i, c)| {
            if i == 0 && first_is_host {
                host_ok(c)
            } else {
                component_ok(c)
            }
        });
        if name.len() > 255 || !valid {
            return Err(bad(
                "the name must be lowercase letters, digits and . _ - between / (a registry \
                 HOST[:PORT]/ may lead)",
            ));
        }
        Ok(ImageRef {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// What a container runs: the `config` object of an image config, with Docker's field names.
/// Empty fields are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `UID[:GID]` or a user name; left out, the container runs as root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `PORT/tcp` or `PORT/udp`.
    #[serde(
        skip_serializing_if = "BTreeSet::is_empty",
        serialize_with = "ports_as_object"
    )]
    pub exposed_ports: BTreeSet<String>,
    /// `NAME=VALUE`, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `{"9631/tcp": {}}`, as the image spec writes a set.
fn ports_as_object<S: serde::Serializer>(
    ports: &BTreeSet<String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(ports.len()))?;
    for port in ports {
        map.serialize_entry(port, &BTreeMap::<String, String>::new())?;
    }
    map.end()
}

/// One entry of a layer.
#[derive(Clone, Debug)]
enum Entry {
    Dir { mode: u32 },
    File { source: Source, mode: u32 },
    Symlink { target: PathBuf },
}

#[derive(Clone, Debug)]
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// A layer: paths in the image (absolute, without `.` or `..`) to directories, files and
/// symbolic links. Parent directories are added as 0755 when not given; adding a path twice
/// keeps the last. Files are read when the layer is written, not when added.
#[derive(Clone, Debug)]
pub struct Layer {
    description: String,
    entries: BTreeMap<PathBuf, Entry>,
}

/// 0755 for a directory or for a file someone may execute, else 0644.
fn normalized_mode(mode: u32, is_dir: bool) -> u32 {
    if is_dir || mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

impl Layer {
    /// An empty layer; `description` becomes its history entry's `created_by`.
    pub fn new(description: impl Into<String>) -> Layer {
        Layer {
            description: description.into(),
            entries: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The paths this layer holds, sorted (relative to `/`).
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.entries.keys().map(PathBuf::as_path)
    }

    /// A directory with `mode` (e.g. 0o1777 for `/tmp`).
    pub fn add_dir(&mut self, dest: impl AsRef<Path>, mode: u32) -> Result<()> {
        self.insert(
            dest.as_ref(),
            Entry::Dir {
                mode: mode & 0o7777,
            },
        )
    }

    /// A file holding `bytes`, with `mode`.
    pub fn add_bytes(&mut self, dest: impl AsRef<Path>, bytes: Vec<u8>, mode: u32) -> Result<()> {
        self.insert(
            dest.as_ref(),
            Entry::File {
                source: Source::Bytes(bytes),
                mode: mode & 0o7777,
            },
        )
    }

    /// The regular file at `src` (symbolic links followed) at `dest`, mode normalised.
    pub fn add_file(&mut self, src: &Path, dest: impl AsRef<Path>) -> Result<()> {
        let meta = fs::metadata(src).map_err(|e| Error::io(src, e))?;
        if !meta.is_file() {
            return Err(Error::invalid(
                src.display().to_string(),
                "expected a regular file to put in an image layer",
            ));
        }
        self.insert(
            dest.as_ref(),
            Entry::File {
                source: Source::Path(src.to_path_buf()),
                mode: normalized_mode(meta.mode(), false),
            },
        )
    }

    /// The executable `src` at `dest` and, when it is linked dynamically, what it needs to run
    /// from an otherwise empty root: its ELF interpreter and the shared libraries that
    /// interpreter loads for it on this host (`elf`), each copied as the file it resolves to at
    /// the path it was found at, so no symlink chain (Debian's `/lib64` -> `/usr/lib64`) has
    /// to be rebuilt. A static executable comes alone.
    pub fn add_executable(&mut self, src: &Path, dest: impl AsRef<Path>) -> Result<()> {
        self.add_file(src, dest)?;
        if let Some(interpreter) = elf::interpreter(src)? {
            for lib in elf::shared_libraries(&interpreter, src)? {
                self.add_file(&lib, &lib)?;
            }
            self.add_file(&interpreter, &interpreter)?;
        }
        Ok(())
    }

    /// A symbolic link at `dest` pointing to `target` (kept as written).
    pub fn add_symlink(
        &mut self,
        dest: impl AsRef<Path>,
        target: impl Into<PathBuf>,
    ) -> Result<()> {
        self.insert(
            dest.as_ref(),
            Entry::Symlink {
                target: target.into(),
            },
        )
    }

    /// The directory tree at `src` under `dest`: directories, regular files and symbolic links
    /// (not followed), modes normalised. Anything else (a socket, a device) is an error naming
    /// it.
    pub fn add_tree(&mut self, src: &Path, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        self.add_dir(dest, 0o755)?;
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(src)
            .map_err(|e| Error::io(src, e))?
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io(src, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let to = dest.join(entry.file_name());
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                self.add_tree(&path, &to)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                self.add_symlink(&to, target)?;
            } else if kind.is_file() {
                self.insert(
                    &to,
                    Entry::File {
                        source: Source::Path(path),
                        mode: normalized_mode(meta.permissions().mode(), false),
                    },
                )?;
            } else {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "expected a directory, regular file or symbolic link to put in an image \
                     layer, found a special file",
                ));
            }
        }
        Ok(())
    }

    fn insert(&mut self, dest: &Path, entry: Entry) -> Result<()> {
        let relative = layer_path(dest)?;
        let mut parent = relative.parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            match self.entries.get(dir) {
                None => {
                    self.entries
                        .insert(dir.to_path_buf(), Entry::Dir { mode: 0o755 });
                }
                Some(Entry::Dir { .. }) => {}
                Some(_) => {
                    return Err(Error::invalid(
                        format!("image path {}", dest.display()),
                        format!("/{} is already a file or link in this layer", dir.display()),
                    ))
                }
            }
            parent = dir.parent();
        }
        self.entries.insert(relative, entry);
        Ok(())
    }

    /// Writes the layer as a tar to `out`, every entry stamped `mtime`.
    fn write_tar<W: Write>(&self, out: W, mtime: u64) -> Result<W> {
        let mut tar = tar::Builder::new(out);
        let tar_error = |path: &Path, e: io::Error| Error::io(Path::new("/").join(path), e);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, path, io::empty())
                        .map_err(|e| tar_error(path, e))?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)
                        .map_err(|e| tar_error(path, e))?;
                }
                Entry::File {
                    source: Source::Bytes(bytes),
                    mode,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, path, bytes.as_slice())
                        .map_err(|e| tar_error(path, e))?;
                }
                Entry::File {
                    source: Source::Path(src),
                    mode,
                } => {
                    let file = fs::File::open(src).map_err(|e| Error::io(src, e))?;
                    let size = file.metadata().map_err(|e| Error::io(src, e))?.len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(size);
                    // The header promised `size` bytes: a file that changes meanwhile would
                    // leave a corrupt archive, so it is an error instead.
                    let mut reader = CountingReader {
                        inner: file.take(size),
                        count: 0,
                    };
                    tar.append_data(&mut header, path, &mut reader)
                        .map_err(|e| Error::io(src, e))?;
                    if reader.count != size {
                        return Err(Error::invalid(
                            src.display().to_string(),
                            format!(
                                "changed while being exported: {size} bytes expected, {} read",
                                reader.count
                            ),
                        ));
                    }
                }
            }
        }
        tar.into_inner()
            .map_err(|e| Error::io(Path::new("layer tar"), e))
    }
}

/// `dest` relative to `/`, checked: absolute, and only plain names in it.
fn layer_path(dest: &Path) -> Result<PathBuf> {
    let bad = || {
        Error::invalid(
            format!("image path {}", dest.display()),
            "expected an absolute path of plain names (no . or ..), not / itself",
        )
    };
    if !dest.is_absolute() {
        return Err(bad());
    }
    let mut out = PathBuf::new();
    for component in dest.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => out.push(name),
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Feeds everything written through it to SHA-256 and counts it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A blob: its media type, `sha256:<hex>` digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    /// The hex part of the digest: the blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenImage {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub refs: Vec<ImageRef>,
}

/// An image to write: layers in order (the first at the bottom), its run config, and the time
/// it is stamped with (seconds since 1970; every file in its layers carries it too).
#[derive(Clone, Debug)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    pub created: u64,
    /// The image spec's names: `amd64`, `arm64`, ...
    pub architecture: String,
    pub os: String,
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    config: &'a ImageConfig,
    rootfs: RootFs,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// `docker load`'s `manifest.json` entry.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The image spec's architecture name for this build.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// RFC 3339 in UTC, whole seconds.
fn rfc3339(secs: u64) -> String {
    let rev = crate::keys::revision_from_time(UNIX_EPOCH + Duration::from_secs(secs));
    // `YYYYMMDDhhmmss` (MAX_EPOCH keeps the year at four digits).
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &rev[0..4],
        &rev[4..6],
        &rev[6..8],
        &rev[8..10],
        &rev[10..12],
        &rev[12..14]
    )
}

/// Distinguishes temporary files of concurrent writers in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_name(prefix: &str) -> String {
    format!(
        ".{prefix}.hab-tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Content-addressed blobs under `<dir>/blobs/sha256/`, each renamed into place once whole.
struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    fn new(layout: &Path) -> Result<BlobStore> {
        let dir = layout.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(BlobStore { dir })
    }

    /// Streams what `fill` writes into a blob and names it by its digest.
    fn put_with(
        &self,
        media_type: &str,
        fill: impl FnOnce(&mut HashingWriter<BufWriter<fs::File>>) -> Result<()>,
    ) -> Result<Descriptor> {
        let tmp = self.dir.join(tmp_name("blob"));
        let result = (|| {
            let file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut writer = HashingWriter {
                inner: BufWriter::new(file),
                hasher: Sha256::new(),
                len: 0,
            };
            fill(&mut writer)?;
            let HashingWriter { inner, hasher, len } = writer;
            let file = inner
                .into_inner()
                .map_err(|e| Error::io(&tmp, e.into_error()))?;
            file.set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io(&tmp, e))?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
            let descriptor = Descriptor {
                media_type: media_type.to_string(),
                digest: format!("sha256:{}", hex(&hasher.finalize())),
                size: len,
            };
            let path = self.dir.join(descriptor.hex());
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            Ok(descriptor)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn put(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let tmp = self.dir.clone();
        self.put_with(media_type, |w| {
            w.write_all(bytes).map_err(|e| Error::io(&tmp, e))
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Image {
    /// An image for this host's architecture on Linux.
    pub fn new(config: ImageConfig, created: u64) -> Image {
        Image {
            layers: Vec::new(),
            config,
            created,
            architecture: host_architecture().to_string(),
            os: "linux".to_string(),
        }
    }

    /// Writes the layers, config and manifest into `store`.
    fn write_blobs(&self, store: &BlobStore) -> Result<(Descriptor, Descriptor, Vec<Descriptor>)> {
        if self.created > MAX_EPOCH {
            return Err(Error::invalid(
                "image creation time",
                format!(
                    "expected seconds since 1970 up to {MAX_EPOCH}, found {}",
                    self.created
                ),
            ));
        }
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let descriptor = store.put_with(MEDIA_TYPE_LAYER, |w| {
                layer.write_tar(w, self.created)?;
                Ok(())
            })?;
            layers.push(descriptor);
        }
        let created = rfc3339(self.created);
        let config = ConfigFile {
            created: &created,
            architecture: &self.architecture,
            os: &self.os,
            config: &self.config,
            rootfs: RootFs {
                kind: "layers",
                // Uncompressed layers: the diff id is the blob's digest.
                diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
            },
            history: self
                .layers
                .iter()
                .map(|l| History {
                    created: &created,
                    created_by: &l.description,
                })
                .collect(),
        };
        let config = store.put(MEDIA_TYPE_CONFIG, &to_json(&config)?)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST,
            config: &config,
            layers: &layers,
        };
        let manifest = store.put(MEDIA_TYPE_MANIFEST, &to_json(&manifest)?)?;
        Ok((manifest, config, layers))
    }

    /// Writes the image into the OCI image layout `dir` (created if missing), tagged with each
    /// of `refs`. An existing layout keeps its other images; an entry with the same tag is
    /// replaced. `index.json` is replaced last and atomically, so a reader or a crash sees the
    /// old index or the new one, both complete.
    pub fn write_oci_layout(&self, dir: &Path, refs: &[ImageRef]) -> Result<WrittenImage> {
        check_refs(refs)?;
        let index_path = dir.join("index.json");
        let layout_path = dir.join("oci-layout");
        let mut manifests: Vec<serde_json::Value> = match fs::read_dir(dir) {
            Ok(mut entries) => {
                if layout_path.is_file() {
                    existing_manifests(&index_path)?
                } else if entries.next().is_some() {
                    return Err(Error::invalid(
                        dir.display().to_string(),
                        "expected a new or empty directory or an OCI image layout (with an \
                         oci-layout file); refusing to write into another directory",
                    ));
                } else {
                    Vec::new()
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let store = BlobStore::new(dir)?;
        crate::files::write_atomically(&layout_path, OCI_LAYOUT, 0o644)?;
        let (manifest, config, layers) = self.write_blobs(&store)?;
        let tags: BTreeSet<&str> = refs.iter().map(|r| r.tag.as_str()).collect();
        manifests.retain(|m| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(|v| v.as_str())
                .is_none_or(|name| !tags.contains(name))
        });
        manifests.extend(index_entries(&manifest, refs)?);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": manifests,
        });
        crate::files::write_atomically(&index_path, &to_json(&index)?, 0o644)?;
        remove_unreferenced_blobs(&store.dir, &manifests)?;
        Ok(WrittenImage {
            manifest,
            config,
            layers,
            refs: refs.to_vec(),
        })
    }

    /// Writes a tarball `docker load` reads (`manifest.json`, `repositories`) that is also an
    /// OCI image layout (`oci-layout`, `index.json`) over the same blobs, as `docker save`
    /// writes since Docker 25. Staged beside `file` and renamed into place whole.
    pub fn write_docker_archive(&self, file: &Path, refs: &[ImageRef]) -> Result<WrittenImage> {
        check_refs(refs)?;
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let stage = dir.join(tmp_name("stage"));
        let tmp_tar = dir.join(tmp_name("tar"));
        let result = (|| {
            fs::create_dir(&stage).map_err(|e| Error::io(&stage, e))?;
            let store = BlobStore::new(&stage)?;
            let (manifest, config, layers) = self.write_blobs(&store)?;
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_INDEX,
                "manifests": index_entries(&manifest, refs)?,
            });
            let docker = [DockerManifest {
                config: config.blob_path(),
                repo_tags: refs.iter().map(ImageRef::to_string).collect(),
                layers: layers.iter().map(Descriptor::blob_path).collect(),
            }];
            // The legacy map of names to tags to the top layer's id; `docker load` reads
            // manifest.json first, older tools this.
            let mut repositories: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
            if let Some(top) = layers.last() {
                for r in refs {
                    repositories
                        .entry(r.name.as_str())
                        .or_default()
                        .insert(r.tag.as_str(), top.hex());
                }
            }
            let mut archive = Layer::new("docker archive");
            let blobs = store.dir.clone();
            for descriptor in [&manifest, &config].into_iter().chain(&layers) {
                archive.add_file(
                    &blobs.join(descriptor.hex()),
                    Path::new("/").join(descriptor.blob_path()),
                )?;
            }
            archive.add_bytes("/oci-layout", OCI_LAYOUT.to_vec(), 0o644)?;
            archive.add_bytes("/index.json", to_json(&index)?, 0o644)?;
            archive.add_bytes("/manifest.json", to_json(&docker)?, 0o644)?;
            archive.add_bytes("/repositories", to_json(&repositories)?, 0o644)?;
            let out = fs::File::create(&tmp_tar).map_err(|e| Error::io(&tmp_tar, e))?;
            let out = archive.write_tar(BufWriter::new(out), self.created)?;
            let out = out
                .into_inner()
                .map_err(|e| Error::io(&tmp_tar, e.into_error()))?;
            out.set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io(&tmp_tar, e))?;
            out.sync_all().map_err(|e| Error::io(&tmp_tar, e))?;
            fs::rename(&tmp_tar, file).map_err(|e| Error::io(file, e))?;
            Ok(WrittenImage {
                manifest,
                config,
                layers,
                refs: refs.to_vec(),
            })
        })();
        let _ = fs::remove_dir_all(&stage);
        if result.is_err() {
            let _ = fs::remove_file(&tmp_tar);
        }
        result
    }
}

fn check_refs(refs: &[ImageRef]) -> Result<()> {
    if refs.is_empty() {
        return Err(Error::invalid(
            "image references",
            "expected at least one NAME:TAG",
        ));
    }
    let mut tags = BTreeSet::new();
    if let Some(dup) = refs.iter().find(|r| !tags.insert(r.tag.as_str())) {
        return Err(Error::invalid(
            format!("image reference {dup}"),
            "its tag is given twice; an OCI layout names an image by its tag alone",
        ));
    }
    Ok(())
}

/// Removes the blobs no image of the index refers to (those of a replaced tag), so exporting
/// again and again into one layout does not grow it for ever. Nothing is removed when an entry
/// is anything but an image manifest found in `blobs` (a nested index, another tool's
/// artefact): what it refers to is not known. Blob names only: a writer's temporary files
/// (named `.…`) are left alone. One writer at a time per layout.
fn remove_unreferenced_blobs(blobs: &Path, manifests: &[serde_json::Value]) -> Result<()> {
    let mut keep = BTreeSet::new();
    for entry in manifests {
        if entry.get("mediaType").and_then(|m| m.as_str()) != Some(MEDIA_TYPE_MANIFEST) {
            return Ok(());
        }
        let Some(hex) = entry
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(|d| d.strip_prefix("sha256:"))
        else {
            return Ok(());
        };
        let Ok(manifest) = fs::read(blobs.join(hex))
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            })
        else {
            return Ok(());
        };
        keep.insert(hex.to_string());
        let referenced = manifest
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .chain(manifest.get("config"));
        for descriptor in referenced {
            match descriptor
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.strip_prefix("sha256:"))
            {
                Some(hex) => keep.insert(hex.to_string()),
                None => return Ok(()),
            };
        }
    }
    for entry in fs::read_dir(blobs).map_err(|e| Error::io(blobs, e))? {
        let entry = entry.map_err(|e| Error::io(blobs, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_blob = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_blob && !keep.contains(&name) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(entry.path(), e)),
            }
        }
    }
    Ok(())
}

/// The manifests of an existing `index.json` (none when it is missing).
fn existing_manifests(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let index: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        Error::invalid(
            path.display().to_string(),
            format!("expected an OCI image index: {e}"),
        )
    })?;
    match index.get("manifests") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(manifests)) => Ok(manifests.clone()),
        Some(_) => Err(Error::invalid(
            path.display().to_string(),
            "expected \"manifests\" to be an array",
        )),
    }
}

/// One index entry per reference, each naming the manifest by tag and full name.
fn index_entries(manifest: &Descriptor, refs: &[ImageRef]) -> Result<Vec<serde_json::Value>> {
    refs.iter()
        .map(|r| {
            let mut entry = serde_json::to_value(manifest)
                .map_err(|e| Error::invalid("image index", e.to_string()))?;
            entry["annotations"] = serde_json::json!({
                IMAGE_NAME_ANNOTATION: r.to_string(),
                REF_NAME_ANNOTATION: r.tag,
            });
            Ok(entry)
        })
        .collect()
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::invalid("image JSON", e.to_string()))
}

#[cfg(test)]
mod tests;
