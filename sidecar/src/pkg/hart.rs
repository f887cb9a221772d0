//! Habitat's `.hart` package files: a five-line header (`HART-1`, the signing key's
//! `<origin>-<revision>`, `BLAKE2b`, the base64 signature, an empty line) and then an xz-compressed
//! tar of `hab/pkgs/<origin>/<name>/<version>/<release>/`.
//!
//! The signature is libsodium's combined form (64-byte Ed25519 signature, then the signed text)
//! over the lowercase hex BLAKE2b-256 hash of everything after the header, as Habitat signs.
//! `install` checks it before anything is unpacked, unpacks into a staging directory beside the
//! destination and renames it into place, so a refused archive leaves nothing behind.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

use super::keys::{self as sig, SigSecretKey, SIGNATURE_LEN};
use crate::error::{Error, Result};
use crate::package::{Package, PackageIdent};

/// First header line.
pub const HART_FORMAT: &str = "HART-1";
/// Third header line: the hash the signature covers.
pub const HASH_TYPE: &str = "BLAKE2b";
/// The target Habitat names our packages for.
pub const TARGET: &str = "x86_64-linux";
/// A header line longer than this is not a header (the longest real one, the signature, is 172).
const MAX_HEADER_LINE: u64 = 1024;
/// Memory the xz decoder may use: Habitat builds with `xz -9` at most (a 64 MiB dictionary).
const XZ_MEMLIMIT: u64 = 256 << 20;
/// xz preset of `build_hart`, xz's own default.
const XZ_PRESET: u32 = 6;
/// Length of a hex BLAKE2b-256 hash, the text a .hart signature covers.
const HEX_HASH_LEN: usize = 64;
/// An IDENT file is one short line.
const MAX_IDENT_LEN: u64 = 1024;

type Hasher = Blake2b<U32>;

/// The header of a .hart file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HartHeader {
    /// `<origin>-<revision>` of the key that signed it.
    pub signer: String,
    /// libsodium's combined form: 64-byte signature, then the signed hex hash.
    pub signature: Vec<u8>,
    /// Where the xz payload starts.
    pub payload_offset: u64,
}

impl HartHeader {
    /// The signature as the header writes it.
    pub fn encoded_signature(&self) -> String {
        STANDARD.encode(&self.signature)
    }

    /// The hash the signature claims, as signed (unverified).
    pub fn signed_hash(&self) -> Option<&str> {
        self.signature
            .get(SIGNATURE_LEN..)
            .and_then(|h| std::str::from_utf8(h).ok())
    }
}

fn hart_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::Hart {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// `<origin>-<name>-<version>-<release>-x86_64-linux.hart`.
pub fn hart_file_name(ident: &PackageIdent) -> String {
    format!(
        "{}-{}-{}-{}-{TARGET}.hart",
        ident.origin,
        ident.name,
        ident.version.as_deref().unwrap_or(""),
        ident.release.as_deref().unwrap_or("")
    )
}

/// Reads and checks the header of `hart`.
pub fn read_header(hart: &Path) -> Result<HartHeader> {
    let mut reader = BufReader::new(File::open(hart).map_err(|e| Error::io(hart, e))?);
    parse_header(&mut reader, hart)
}

/// Parses the five header lines from `reader`, leaving it at the payload.
fn parse_header(reader: &mut impl BufRead, path: &Path) -> Result<HartHeader> {
    let mut offset = 0u64;
    let mut line = |what: &str| -> Result<String> {
        let mut buf = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if buf.last() != Some(&b'\n') {
            let found = if n == 0 {
                "end of file".to_owned()
            } else if n as u64 >= MAX_HEADER_LINE {
                format!("a line longer than {MAX_HEADER_LINE} bytes")
            } else {
                "end of file in the middle of the line".to_owned()
            };
            return Err(hart_error(
                path,
                format!("header: expected {what}, found {found} (not a .hart file, or truncated)"),
            ));
        }
        offset += n as u64;
        // Habitat trims each header line.
        String::from_utf8(buf)
            .map(|s| s.trim().to_owned())
            .map_err(|_| {
                hart_error(
                    path,
                    format!("header: expected {what}, found non-UTF-8 bytes"),
                )
            })
    };
    let format = line(&format!("line 1 {HART_FORMAT}"))?;
    if format != HART_FORMAT {
        return Err(hart_error(
            path,
            format!(
                "header line 1: expected {HART_FORMAT}, found {}",
                crate::keys::describe(&format, true)
            ),
        ));
    }
    let signer = line("line 2 <origin>-<YYYYMMDDhhmmss>")?;
    if sig::split_name_rev(&signer).is_none() {
        return Err(hart_error(
            path,
            format!(
                "header line 2: expected the signing key <origin>-<YYYYMMDDhhmmss>, found {}",
                crate::keys::describe(&signer, true)
            ),
        ));
    }
    let hash_type = line(&format!("line 3 {HASH_TYPE}"))?;
    if hash_type != HASH_TYPE {
        return Err(hart_error(
            path,
            format!(
                "header line 3: expected {HASH_TYPE}, found {}",
                crate::keys::describe(&hash_type, true)
            ),
        ));
    }
    let encoded = line("line 4, the signature in base64")?;
    let signature = STANDARD.decode(&encoded).map_err(|_| {
        hart_error(
            path,
            "header line 4: the signature is not valid base64 (standard, padded)",
        )
    })?;
    if signature.len() != SIGNATURE_LEN + HEX_HASH_LEN {
        return Err(hart_error(
            path,
            format!(
                "header line 4: the signature is {} bytes, expected {} (a 64-byte signature and \
                 the 64-character hash it signs)",
                signature.len(),
                SIGNATURE_LEN + HEX_HASH_LEN
            ),
        ));
    }
    let blank = line("line 5, an empty line")?;
    if !blank.is_empty() {
        return Err(hart_error(path, "header line 5: expected an empty line"));
    }
    Ok(HartHeader {
        signer,
        signature,
        payload_offset: offset,
    })
}

fn lower_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn parse_hex_hash(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != HEX_HASH_LEN {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        // Habitat parses the signed hash case-insensitively.
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks the signature of `hart` against the key cache and returns the header and the verified
/// payload hash. Nothing is decompressed.
fn verify_signature(hart: &Path, cache: &Path) -> Result<(HartHeader, [u8; 32])> {
    let mut reader =
        BufReader::with_capacity(1 << 16, File::open(hart).map_err(|e| Error::io(hart, e))?);
    let header = parse_header(&mut reader, hart)?;
    let key = match sig::public_key(&header.signer, cache) {
        Ok(key) => key,
        Err(Error::KeyNotFound { .. }) => {
            return Err(hart_error(
                hart,
                format!(
                    "public key {signer} not in {cache}; import it with `hab origin key import < \
                     {signer}.pub` (or `hab origin key export {origin} --type public` where it \
                     was made)",
                    signer = header.signer,
                    cache = cache.display(),
                    origin = header.signer.rsplit_once('-').map_or("", |(o, _)| o),
                ),
            ))
        }
        Err(e) => return Err(e),
    };
    let signed = key.open_combined(&header.signature).ok_or_else(|| {
        hart_error(
            hart,
            format!(
                "the signature does not verify with public key {} (tampered, or signed by \
                 another key of that name)",
                header.signer
            ),
        )
    })?;
    let expected = parse_hex_hash(signed).ok_or_else(|| {
        hart_error(
            hart,
            "the signed text is not a 64-character hex BLAKE2b-256 hash",
        )
    })?;
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Hasher::new(),
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::io(hart, e))?;
    let computed: [u8; 32] = hashing.hasher.finalize().into();
    if computed != expected {
        return Err(hart_error(
            hart,
            format!(
                "the payload's BLAKE2b hash is {}, but the signature is for {} (the file was \
                 changed or truncated after signing)",
                lower_hex(&computed),
                lower_hex(&expected)
            ),
        ));
    }
    Ok((header, expected))
}

/// Checks only the signature of `hart` (any signed file, as `hab pkg verify` does): returns the
/// signing key's `<origin>-<revision>` and the verified lowercase hex hash.
pub fn check_signature(hart: &Path, cache: &Path) -> Result<(String, String)> {
    let (header, hash) = verify_signature(hart, cache)?;
    Ok((header.signer, lower_hex(&hash)))
}

/// Checks the signature of `hart` against the public keys in `cache`; returns the package's
/// fully qualified ident.
pub fn verify(hart: &Path, cache: &Path) -> Result<PackageIdent> {
    verify_signature(hart, cache)?;
    read_ident(hart)
}

/// The fully qualified ident in the archive's `IDENT` (no signature check).
pub fn read_ident(hart: &Path) -> Result<PackageIdent> {
    let mut reader = BufReader::new(File::open(hart).map_err(|e| Error::io(hart, e))?);
    parse_header(&mut reader, hart)?;
    let mut archive = tar::Archive::new(xz_decoder(reader)?);
    let entries = archive.entries().map_err(|e| archive_error(hart, e))?;
    let mut seen: Option<PackageIdent> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error(hart, e))?;
        let place = place_of(&entry.path_bytes(), hart)?;
        let (ident, rel) = match place {
            Place::Ancestor => continue,
            Place::Package(ident, rel) => (ident, rel),
        };
        one_package(&mut seen, &ident, hart)?;
        if rel == Path::new("IDENT") && entry.header().entry_type().is_file() {
            let mut text = String::new();
            entry
                .by_ref()
                .take(MAX_IDENT_LEN)
                .read_to_string(&mut text)
                .map_err(|e| archive_error(hart, e))?;
            return check_ident_text(&text, &ident, hart);
        }
    }
    Err(hart_error(
        hart,
        match seen {
            Some(ident) => format!("no IDENT file in the package ({ident})"),
            None => "the archive holds no package (expected hab/pkgs/<origin>/<name>/<version>/\
                     <release>/)"
                .to_owned(),
        },
    ))
}

fn xz_decoder<R: Read>(reader: R) -> Result<liblzma::read::XzDecoder<R>> {
    let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
        .map_err(|e| Error::invalid("xz decoder", e.to_string()))?;
    Ok(liblzma::read::XzDecoder::new_stream(reader, stream))
}

fn archive_error(path: &Path, e: io::Error) -> Error {
    hart_error(
        path,
        format!("the payload is not a complete xz-compressed tar (truncated or corrupt): {e}"),
    )
}

/// The IDENT text must name the package the paths name.
fn check_ident_text(text: &str, by_path: &PackageIdent, hart: &Path) -> Result<PackageIdent> {
    let ident: PackageIdent = text
        .parse()
        .map_err(|e: String| hart_error(hart, format!("IDENT: {e}")))?;
    if !ident.is_fully_qualified() || ident != *by_path {
        return Err(hart_error(
            hart,
            format!(
                "IDENT says {ident}, but the archive's paths are for {by_path} (expected the \
                 same fully qualified ident)"
            ),
        ));
    }
    Ok(ident)
}

fn one_package(seen: &mut Option<PackageIdent>, ident: &PackageIdent, hart: &Path) -> Result<()> {
    match seen {
        None => {
            *seen = Some(ident.clone());
            Ok(())
        }
        Some(first) if first == ident => Ok(()),
        Some(first) => Err(hart_error(
            hart,
            format!("the archive holds more than one package ({first} and {ident}); expected one"),
        )),
    }
}

/// Where an archive path lands.
enum Place {
    /// `hab/`, `hab/pkgs/`, ... down to `hab/pkgs/<o>/<n>/<v>/`: directories that already
    /// exist on any installed system, skipped.
    Ancestor,
    /// Inside `hab/pkgs/<o>/<n>/<v>/<r>/` (an empty path: that directory).
    Package(PackageIdent, PathBuf),
}

/// Splits an archive path into the package it belongs to and the path inside it. Absolute
/// paths, `..` and anything outside `hab/pkgs/` are refused.
fn place_of(raw: &[u8], hart: &Path) -> Result<Place> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let shown = String::from_utf8_lossy(raw);
    let refuse = |why: &str| {
        hart_error(
            hart,
            format!(
                "archive entry {shown:?} {why}; expected every entry inside \
                 hab/pkgs/<origin>/<name>/<version>/<release>/"
            ),
        )
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("contains \"..\"")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is an absolute path")),
        }
    }
    if parts.len() < 6 {
        let expected = ["hab", "pkgs"];
        if parts.iter().zip(expected).all(|(p, e)| *p == e) {
            return Ok(Place::Ancestor);
        }
        return Err(refuse("is outside hab/pkgs/"));
    }
    if parts[0] != "hab" || parts[1] != "pkgs" {
        return Err(refuse("is outside hab/pkgs/"));
    }
    let ident_text: Vec<&str> = parts[2..6]
        .iter()
        .map(|p| p.to_str())
        .collect::<Option<_>>()
        .ok_or_else(|| refuse("has a package ident that is not UTF-8"))?;
    let ident: PackageIdent = ident_text
        .join("/")
        .parse()
        .map_err(|e: String| refuse(&format!("does not name a package: {e}")))?;
    let rel: PathBuf = parts[6..].iter().collect();
    Ok(Place::Package(ident, rel))
}

/// Builds a signed .hart of the package directory `pkg_dir` (its IDENT must be fully
/// qualified) in `out_dir`, named by [`hart_file_name`]; written through a temporary file, so
/// `out_dir` never holds half a package.
pub fn build_hart(pkg_dir: &Path, key: &SigSecretKey, out_dir: &Path) -> Result<PathBuf> {
    build_hart_with_preset(pkg_dir, key, out_dir, XZ_PRESET)
}

/// [`build_hart`] with an xz preset (0 fastest to 9 smallest), for tests and benchmarks.
pub fn build_hart_with_preset(
    pkg_dir: &Path,
    key: &SigSecretKey,
    out_dir: &Path,
    preset: u32,
) -> Result<PathBuf> {
    let package = Package::load(pkg_dir)?;
    let ident = package.ident;
    if !ident.is_fully_qualified() {
        return Err(Error::Package {
            path: pkg_dir.to_path_buf(),
            problem: format!(
                "IDENT says {ident}; a .hart needs a fully qualified ident \
                 ORIGIN/NAME/VERSION/RELEASE"
            ),
        });
    }
    if ident.origin != key.origin() {
        return Err(Error::Package {
            path: pkg_dir.to_path_buf(),
            problem: format!(
                "the package's origin is {}, but the signing key is {} (expected a key of the \
                 package's origin)",
                ident.origin,
                key.name_rev()
            ),
        });
    }
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let file_name = hart_file_name(&ident);
    let dest = out_dir.join(&file_name);
    let tmp = out_dir.join(format!(".{file_name}.{}.hab-tmp", std::process::id()));
    let written = write_hart(&tmp, pkg_dir, &ident, key, preset).and_then(|()| {
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        sync_dir(out_dir)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| dest)
}

/// Signs any file (Habitat's `hab pkg sign`: a `.tar.xz` made by hand) into a .hart at `dest`,
/// written through a temporary file beside it.
pub fn sign_archive(src: &Path, key: &SigSecretKey, dest: &Path) -> Result<()> {
    let mut hashing = HashingReader {
        inner: File::open(src).map_err(|e| Error::io(src, e))?,
        hasher: Hasher::new(),
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::io(src, e))?;
    let hash = lower_hex(&hashing.hasher.finalize());
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.{}.hab-tmp", std::process::id()));
    let written = (|| {
        let io_err = |e| Error::io(&tmp, e);
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io_err)?;
        out.write_all(header_text(key.name_rev(), &key.sign_combined(hash.as_bytes())).as_bytes())
            .map_err(io_err)?;
        io::copy(
            &mut File::open(src).map_err(|e| Error::io(src, e))?,
            &mut out,
        )
        .map_err(io_err)?;
        out.sync_all().map_err(io_err)?;
        fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn header_text(signer: &str, signature: &[u8]) -> String {
    format!(
        "{HART_FORMAT}\n{signer}\n{HASH_TYPE}\n{}\n\n",
        STANDARD.encode(signature)
    )
}

/// Writes the whole .hart to `tmp`: a placeholder header of the final length (the signature has
/// a fixed size), the payload hashed as it streams out, then the real header over the
/// placeholder.
fn write_hart(
    tmp: &Path,
    pkg_dir: &Path,
    ident: &PackageIdent,
    key: &SigSecretKey,
    preset: u32,
) -> Result<()> {
    let io_err = |e| Error::io(tmp, e);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp)
        .map_err(io_err)?;
    let placeholder = header_text(key.name_rev(), &[0; SIGNATURE_LEN + HEX_HASH_LEN]);
    file.write_all(placeholder.as_bytes()).map_err(io_err)?;
    let hashing = HashingWriter {
        inner: io::BufWriter::with_capacity(1 << 16, &mut file),
        hasher: Hasher::new(),
    };
    let xz = liblzma::write::XzEncoder::new(hashing, preset);
    let mut tar = tar::Builder::new(xz);
    tar.follow_symlinks(false);
    let prefix = PathBuf::from("hab/pkgs")
        .join(&ident.origin)
        .join(&ident.name)
        .join(ident.version.as_deref().unwrap_or_default())
        .join(ident.release.as_deref().unwrap_or_default());
    append_tree(&mut tar, pkg_dir, &prefix)?;
    let xz = tar.into_inner().map_err(io_err)?;
    let HashingWriter { mut inner, hasher } = xz.finish().map_err(io_err)?;
    inner.flush().map_err(io_err)?;
    drop(inner);
    let hash = lower_hex(&hasher.finalize());
    let header = header_text(key.name_rev(), &key.sign_combined(hash.as_bytes()));
    debug_assert_eq!(header.len(), placeholder.len());
    file.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
    file.write_all(header.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// Appends `dir` and everything under it, as `prefix/...`, in sorted order (reproducible), with
/// the files' modes and times, owner root; and a `TARGET` file when `dir` has none.
fn append_tree<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> Result<()> {
    let mut stack = vec![(dir.to_path_buf(), prefix.to_path_buf())];
    while let Some((src, name)) = stack.pop() {
        let meta = fs::symlink_metadata(&src).map_err(|e| Error::io(&src, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_uid(0);
        header.set_gid(0);
        let _ = header.set_username("root");
        let _ = header.set_groupname("root");
        let io_err = |e| Error::io(&src, e);
        let file_type = meta.file_type();
        if file_type.is_dir() {
            header.set_size(0);
            tar.append_data(&mut header, &name, io::empty())
                .map_err(io_err)?;
            if src == dir && fs::symlink_metadata(dir.join("TARGET")).is_err() {
                // Habitat's tools refuse a package without TARGET; Habitat's build writes it.
                let content = format!("{TARGET}\n");
                let mut target = header.clone();
                target.set_entry_type(tar::EntryType::Regular);
                target.set_mode(0o644);
                target.set_size(content.len() as u64);
                tar.append_data(&mut target, name.join("TARGET"), content.as_bytes())
                    .map_err(io_err)?;
            }
            let mut children: Vec<_> = fs::read_dir(&src)
                .map_err(io_err)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(io_err)?;
            // Reversed onto the stack so they come off in order.
            children.sort_unstable_by(|a, b| b.cmp(a));
            stack.extend(children.into_iter().map(|c| (src.join(&c), name.join(&c))));
        } else if file_type.is_file() {
            let file = File::open(&src).map_err(io_err)?;
            tar.append_data(&mut header, &name, file).map_err(io_err)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(&src).map_err(io_err)?;
            header.set_size(0);
            tar.append_link(&mut header, &name, &target)
                .map_err(io_err)?;
        } else {
            return Err(Error::Package {
                path: src,
                problem: "not a file, a directory or a symlink (sockets, fifos and devices \
                          cannot go into a .hart)"
                    .to_owned(),
            });
        }
    }
    tar.finish().map_err(|e| Error::io(dir, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Verifies `hart` against the public keys in `cache`, then unpacks it into
/// `<root>/pkgs/<origin>/<name>/<version>/<release>/` and returns that directory. A package
/// already installed there is left as it is (Ok). Refused archives leave nothing behind.
pub fn install(hart: &Path, root: &Path, cache: &Path) -> Result<PathBuf> {
    let (_, verified) = verify_signature(hart, cache)?;
    let pkgs = root.join("pkgs");
    let created_pkgs = !pkgs.exists();
    fs::create_dir_all(&pkgs).map_err(|e| Error::io(&pkgs, e))?;
    remove_stale_staging(&pkgs, STALE_STAGING_AGE);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let staging = pkgs.join(format!(
        "{STAGING_PREFIX}{}-{}{STAGING_SUFFIX}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = unpack_staged(hart, &pkgs, &staging, &verified);
    if fs::symlink_metadata(&staging).is_ok() {
        let _ = make_writable(&staging);
        let _ = fs::remove_dir_all(&staging);
    }
    if result.is_err() && created_pkgs {
        // Only when empty: another install may have put something there meanwhile.
        let _ = fs::remove_dir(&pkgs);
    }
    result
}

const STAGING_PREFIX: &str = ".install-";
const STAGING_SUFFIX: &str = ".hab-tmp";
/// A staging directory untouched this long was left by an install that crashed (an install
/// writes into its staging directory all along, and takes seconds, not hours).
const STALE_STAGING_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes staging directories in `pkgs` older than `age`; best effort.
fn remove_stale_staging(pkgs: &Path, age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(pkgs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(STAGING_PREFIX) && name.ends_with(STAGING_SUFFIX)) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed >= age);
        if old {
            let path = entry.path();
            let _ = make_writable(&path);
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Directories made read-only by their archive modes would keep `remove_dir_all` out.
fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        make_writable(&entry?.path())?;
    }
    Ok(())
}

fn unpack_staged(hart: &Path, pkgs: &Path, staging: &Path, verified: &[u8; 32]) -> Result<PathBuf> {
    fs::create_dir(staging).map_err(|e| Error::io(staging, e))?;
    let mut reader =
        BufReader::with_capacity(1 << 16, File::open(hart).map_err(|e| Error::io(hart, e))?);
    parse_header(&mut reader, hart)?;
    // Hashed again as it is unpacked: the bytes unpacked are the bytes verified, even if the
    // file changes between the two reads.
    let hashing = HashingReader {
        inner: reader,
        hasher: Hasher::new(),
    };
    let mut archive = tar::Archive::new(xz_decoder(hashing)?);
    let dest_of = |ident: &PackageIdent| {
        pkgs.join(&ident.origin)
            .join(&ident.name)
            .join(ident.version.as_deref().unwrap_or_default())
            .join(ident.release.as_deref().unwrap_or_default())
    };
    let mut unpacker = Unpacker {
        hart,
        staging,
        known_dirs: HashSet::new(),
        dir_modes: Vec::new(),
        ident: None,
    };
    let entries = archive.entries().map_err(|e| archive_error(hart, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| archive_error(hart, e))?;
        let new_package = unpacker.ident.is_none();
        unpacker.entry(entry)?;
        if let (true, Some(ident)) = (new_package, &unpacker.ident) {
            let dest = dest_of(ident);
            if dest.is_dir() {
                // Already installed; the signature was good, the content is that release's.
                return Ok(dest);
            }
        }
    }
    let Some(ident) = unpacker.ident.clone() else {
        return Err(hart_error(
            hart,
            "the archive holds no package (expected hab/pkgs/<origin>/<name>/<version>/<release>/)",
        ));
    };
    let ident_path = staging.join("IDENT");
    let ident_text = match fs::symlink_metadata(&ident_path) {
        Ok(meta) if meta.is_file() => {
            let mut text = String::new();
            File::open(&ident_path)
                .and_then(|f| f.take(MAX_IDENT_LEN).read_to_string(&mut text))
                .map_err(|e| Error::io(&ident_path, e))?;
            text
        }
        _ => {
            return Err(hart_error(
                hart,
                format!("no IDENT file in the package ({ident})"),
            ))
        }
    };
    check_ident_text(&ident_text, &ident, hart)?;
    // The rest of the stream: trailing tar padding, the xz footer, anything after it.
    let mut xz = archive.into_inner();
    io::copy(&mut xz, &mut io::sink()).map_err(|e| archive_error(hart, e))?;
    let mut hashing = xz.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::io(hart, e))?;
    let unpacked: [u8; 32] = hashing.hasher.finalize().into();
    if unpacked != *verified {
        return Err(hart_error(
            hart,
            "the file changed while it was being installed (its hash no longer matches the \
             signature)",
        ));
    }
    unpacker.finish()?;
    nix::unistd::syncfs(File::open(staging).map_err(|e| Error::io(staging, e))?)
        .map_err(|e| Error::io(staging, io::Error::from(e)))?;
    let dest = dest_of(&ident);
    let parent = dest.parent().unwrap_or(pkgs);
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    match fs::rename(staging, &dest) {
        Ok(()) => {}
        // Another install of the same release won the race.
        Err(_) if dest.is_dir() => return Ok(dest),
        Err(e) => return Err(Error::io(&dest, e)),
    }
    sync_dir(parent)?;
    Ok(dest)
}

/// Writes archive entries under the staging directory, never through a symlink.
struct Unpacker<'a> {
    hart: &'a Path,
    staging: &'a Path,
    /// Directories (relative) known to be real directories, not symlinks.
    known_dirs: HashSet<PathBuf>,
    /// Modes of directory entries, applied once everything is written.
    dir_modes: Vec<(PathBuf, u32)>,
    ident: Option<PackageIdent>,
}

impl Unpacker<'_> {
    fn refuse(&self, rel: &Path, why: impl std::fmt::Display) -> Error {
        hart_error(
            self.hart,
            format!("archive entry {:?}: {why}", rel.display().to_string()),
        )
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let entry_type = entry.header().entry_type();
        if matches!(
            entry_type,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let (ident, rel) = match place_of(&entry.path_bytes(), self.hart)? {
            Place::Ancestor if entry_type.is_dir() => return Ok(()),
            Place::Ancestor => {
                return Err(hart_error(
                    self.hart,
                    format!(
                        "archive entry {:?} is outside hab/pkgs/<origin>/<name>/<version>/\
                         <release>/",
                        String::from_utf8_lossy(&entry.path_bytes())
                    ),
                ))
            }
            Place::Package(ident, rel) => (ident, rel),
        };
        one_package(&mut self.ident, &ident, self.hart)?;
        let mode = entry
            .header()
            .mode()
            .map_err(|e| archive_error(self.hart, e))?
            & 0o7777;
        let target = self.staging.join(&rel);
        match entry_type {
            tar::EntryType::Directory => {
                self.ensure_dir(&rel)?;
                self.dir_modes.push((rel, mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.prepare_leaf(&rel)?;
                let io_err = |e| Error::io(&target, e);
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err)?;
                io::copy(&mut entry, &mut file).map_err(|e| archive_error(self.hart, e))?;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&rel, "a symlink without a target"))?;
                let link = PathBuf::from(std::ffi::OsStr::from_bytes(&link));
                if !stays_inside(&rel, &link) {
                    return Err(self.refuse(
                        &rel,
                        format!(
                            "a symlink to {:?}, outside the package directory",
                            link.display().to_string()
                        ),
                    ));
                }
                self.prepare_leaf(&rel)?;
                std::os::unix::fs::symlink(&link, &target).map_err(|e| Error::io(&target, e))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&rel, "a hard link without a target"))?;
                let source_rel = match place_of(&link, self.hart)? {
                    Place::Package(link_ident, source_rel)
                        if link_ident == ident && !source_rel.as_os_str().is_empty() =>
                    {
                        source_rel
                    }
                    _ => {
                        return Err(self.refuse(
                            &rel,
                            format!(
                                "a hard link to {:?}, outside the package directory",
                                String::from_utf8_lossy(&link)
                            ),
                        ))
                    }
                };
                // The source must be a file this archive already unpacked, reached through real
                // directories only.
                self.check_dirs_only(&source_rel)?;
                let source = self.staging.join(&source_rel);
                match fs::symlink_metadata(&source) {
                    Ok(meta) if meta.is_file() => {}
                    _ => {
                        return Err(self.refuse(
                            &rel,
                            "a hard link to something that is not a file unpacked before it",
                        ))
                    }
                }
                self.prepare_leaf(&rel)?;
                fs::hard_link(&source, &target).map_err(|e| Error::io(&target, e))?;
            }
            other => {
                return Err(self.refuse(
                    &rel,
                    format!(
                        "entry type {:?} (devices, fifos and sparse files are not allowed in a \
                         package)",
                        other
                    ),
                ))
            }
        }
        Ok(())
    }

    /// Makes `rel` and its parents real directories.
    fn ensure_dir(&mut self, rel: &Path) -> Result<()> {
        let mut current = PathBuf::new();
        for part in rel.components() {
            current.push(part);
            if self.known_dirs.contains(&current) {
                continue;
            }
            let path = self.staging.join(&current);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(
                        rel,
                        format!(
                            "{} is not a directory (a file or a symlink)",
                            current.display()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&path)
                        .map_err(|e| Error::io(&path, e))?;
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
            self.known_dirs.insert(current.clone());
        }
        Ok(())
    }

    /// Every parent of `rel` must already be a real directory.
    fn check_dirs_only(&self, rel: &Path) -> Result<()> {
        let mut current = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for part in parent.components() {
                current.push(part);
                if !self.known_dirs.contains(&current) {
                    return Err(self.refuse(rel, "reached through something not a directory"));
                }
            }
        }
        Ok(())
    }

    /// Makes the parents of `rel` and clears its place (a later entry of the same path wins, as
    /// in tar). A directory in the way is an error.
    fn prepare_leaf(&mut self, rel: &Path) -> Result<()> {
        if rel.as_os_str().is_empty() {
            return Err(self.refuse(rel, "the package directory itself must be a directory"));
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent)?;
        }
        let path = self.staging.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(self.refuse(rel, "a file over a directory")),
            Ok(_) => fs::remove_file(&path).map_err(|e| Error::io(&path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Applies directory modes, deepest first (a read-only directory cannot be written into).
    fn finish(&mut self) -> Result<()> {
        self.dir_modes
            .sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, mode) in &self.dir_modes {
            let path = self.staging.join(rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

/// Whether a symlink at `rel` (inside the package) pointing to `target` resolves inside the
/// package: relative, with its `..` only at the start and no more of them than the link is deep.
/// A `..` after a name could climb out through another symlink (`a -> ..`, then `b -> a/..`),
/// so it is refused even where it would stay inside; with `..` only first, climbing starts at
/// the link's own directory, a real one, and every link reached on the way down is itself held
/// to this rule.
fn stays_inside(rel: &Path, target: &Path) -> bool {
    let mut climb_left: usize = rel.parent().map_or(0, |p| p.components().count());
    let mut named = false;
    for component in target.components() {
        match component {
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            Component::ParentDir if named => return false,
            Component::ParentDir => match climb_left.checked_sub(1) {
                Some(left) => climb_left = left,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty()
}

#[cfg(test)]
mod tests;
