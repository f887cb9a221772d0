//! Origin signing keys in Habitat's `SIG-SEC-1` / `SIG-PUB-1` formats, files
//! `<origin>-<rev>.sig.key` (0600) and `<origin>-<rev>.pub` in the key cache.
//!
//! The keys are Ed25519 keys as libsodium's `crypto_sign` writes them: the secret file holds 64
//! bytes (the 32-byte seed, then the public key), the public file 32. A secret key whose second
//! half is not its seed's public key is refused, and key files are never overwritten.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::error::{Error, Result};
use crate::keys::{
    already_exists, check_matches_file_name, is_revision, key_files, parse_key_text, read_key_text,
    revision_from_time, truncated, write_new_key_file,
};

/// First line of a secret origin signing key file.
pub const SIG_SECRET_HEADER: &str = "SIG-SEC-1";
/// First line of a public origin signing key file.
pub const SIG_PUBLIC_HEADER: &str = "SIG-PUB-1";
/// Secret signing key file names end with this.
pub const SIG_SECRET_SUFFIX: &str = ".sig.key";
/// Public signing key file names end with this (shared with public box keys, as in Habitat).
pub const SIG_PUBLIC_SUFFIX: &str = ".pub";
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
const SECRET_LEN: usize = 64;
const PUBLIC_LEN: usize = 32;
const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;
const MAX_ORIGIN_LEN: usize = 255;

/// Habitat's origin names: 1 to 255 characters from `a-z 0-9 _ -`, starting with a letter or a
/// digit.
pub fn validate_origin_name(origin: &str) -> Result<()> {
    let mut chars = origin.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || origin.len() > MAX_ORIGIN_LEN {
        return Err(Error::invalid(
            format!("origin {:?}", truncated(origin)),
            "expected 1 to 255 characters from a-z 0-9 _ -, starting with a letter or a digit",
        ));
    }
    Ok(())
}

fn origin_ok(name: &str) -> bool {
    validate_origin_name(name).is_ok()
}

/// `(origin, revision)` of a key id `<origin>-<YYYYMMDDhhmmss>`.
pub fn split_name_rev(name_rev: &str) -> Option<(&str, &str)> {
    let (name, revision) = name_rev.rsplit_once('-')?;
    (is_revision(revision) && origin_ok(name)).then_some((name, revision))
}

/// The secret half of an origin key pair. `Debug` shows the name and revision only.
#[derive(Clone)]
pub struct SigSecretKey {
    name_rev: String,
    origin_len: usize,
    key: SigningKey,
}

/// The public half of an origin key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct SigPublicKey {
    name_rev: String,
    origin_len: usize,
    key: VerifyingKey,
}

impl SigSecretKey {
    /// The key for `seed` (32 random bytes), named `<origin>-<revision>`.
    pub fn from_seed(origin: &str, revision: &str, seed: [u8; 32]) -> SigSecretKey {
        SigSecretKey {
            name_rev: format!("{origin}-{revision}"),
            origin_len: origin.len(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// `<origin>-<revision>`, as in the key's file name and a .hart header.
    pub fn name_rev(&self) -> &str {
        &self.name_rev
    }

    pub fn origin(&self) -> &str {
        &self.name_rev[..self.origin_len]
    }

    pub fn public_key(&self) -> SigPublicKey {
        SigPublicKey {
            name_rev: self.name_rev.clone(),
            origin_len: self.origin_len,
            key: self.key.verifying_key(),
        }
    }

    /// libsodium's combined form, as Habitat stores it in a .hart header: the signature over
    /// `message`, then `message` itself.
    pub fn sign_combined(&self, message: &[u8]) -> Vec<u8> {
        let mut out = self.key.sign(message).to_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }
}

impl SigPublicKey {
    pub fn name_rev(&self) -> &str {
        &self.name_rev
    }

    pub fn origin(&self) -> &str {
        &self.name_rev[..self.origin_len]
    }

    /// Opens libsodium's combined form: checks the signature and returns the signed message.
    pub fn open_combined<'a>(&self, signed: &'a [u8]) -> Option<&'a [u8]> {
        if signed.len() < SIGNATURE_LEN {
            return None;
        }
        let (signature, message) = signed.split_at(SIGNATURE_LEN);
        let signature = ed25519_dalek::Signature::from_slice(signature).ok()?;
        // Strict: libsodium also refuses non-canonical and small-order forms.
        self.key
            .verify_strict(message, &signature)
            .ok()
            .map(|()| message)
    }
}

impl fmt::Debug for SigSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigSecretKey {}", self.name_rev)
    }
}

impl fmt::Debug for SigPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigPublicKey {}", self.name_rev)
    }
}

/// Parses a `SIG-SEC-1` file; `source_name` (a path, or `standard input`) appears in every error.
/// Accepts CRLF line ends and a missing or extra trailing newline.
pub fn parse_sig_secret_key(content: &str, source_name: &str) -> Result<SigSecretKey> {
    let (origin, revision, bytes) =
        parse_key_text::<SECRET_LEN>(content, source_name, SIG_SECRET_HEADER, origin_ok)?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let key = SigSecretKey::from_seed(origin, revision, seed);
    if key.key.verifying_key().as_bytes()[..] != bytes[32..] {
        return Err(Error::KeyFile {
            source_name: source_name.to_owned(),
            problem: "line 4: the last 32 bytes are not the public key of the first 32 (expected \
                      libsodium's seed followed by its public key)"
                .to_owned(),
        });
    }
    Ok(key)
}

/// Parses a `SIG-PUB-1` file, as [`parse_sig_secret_key`] does.
pub fn parse_sig_public_key(content: &str, source_name: &str) -> Result<SigPublicKey> {
    let (origin, revision, bytes) =
        parse_key_text::<PUBLIC_LEN>(content, source_name, SIG_PUBLIC_HEADER, origin_ok)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::KeyFile {
        source_name: source_name.to_owned(),
        problem: "line 4: not an Ed25519 public key".to_owned(),
    })?;
    Ok(SigPublicKey {
        name_rev: format!("{origin}-{revision}"),
        origin_len: origin.len(),
        key,
    })
}

/// The `SIG-SEC-1` file content, exactly as Habitat writes it (no trailing newline).
pub fn render_sig_secret_key(key: &SigSecretKey) -> String {
    format!(
        "{SIG_SECRET_HEADER}\n{}\n\n{}",
        key.name_rev,
        STANDARD.encode(key.key.to_keypair_bytes())
    )
}

/// The `SIG-PUB-1` file content, exactly as Habitat writes it (no trailing newline).
pub fn render_sig_public_key(key: &SigPublicKey) -> String {
    format!(
        "{SIG_PUBLIC_HEADER}\n{}\n\n{}",
        key.name_rev,
        STANDARD.encode(key.key.as_bytes())
    )
}

/// A pair written by [`generate_origin_key_pair`], with where each half went.
#[derive(Debug)]
pub struct GeneratedSigPair {
    pub secret: SigSecretKey,
    pub public: SigPublicKey,
    pub secret_path: PathBuf,
    pub public_path: PathBuf,
}

/// Creates a new origin key pair in `cache`, revision now; returns its `<origin>-<revision>`.
pub fn generate_origin_key(origin: &str, cache: &Path) -> Result<String> {
    let mut seed = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
    Ok(
        generate_origin_key_pair(cache, origin, SystemTime::now(), seed)?
            .public
            .name_rev,
    )
}

/// Creates revision `now` of `origin`'s key pair from `seed`: the public file (0644), then the
/// secret file (0600); if the secret cannot be written the public one is removed again.
pub fn generate_origin_key_pair(
    cache: &Path,
    origin: &str,
    now: SystemTime,
    seed: [u8; 32],
) -> Result<GeneratedSigPair> {
    validate_origin_name(origin)?;
    let secret = SigSecretKey::from_seed(origin, &revision_from_time(now), seed);
    let public = secret.public_key();
    let secret_path = cache.join(format!("{}{SIG_SECRET_SUFFIX}", secret.name_rev));
    let public_path = cache.join(format!("{}{SIG_PUBLIC_SUFFIX}", public.name_rev));
    if secret_path.exists() {
        return Err(already_exists(&secret_path));
    }
    write_new_key_file(
        cache,
        &public_path,
        render_sig_public_key(&public).as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Err(e) = write_new_key_file(
        cache,
        &secret_path,
        render_sig_secret_key(&secret).as_bytes(),
        SECRET_MODE,
    ) {
        let _ = std::fs::remove_file(&public_path);
        return Err(e);
    }
    Ok(GeneratedSigPair {
        secret,
        public,
        secret_path,
        public_path,
    })
}

/// The newest revision of `origin`'s secret signing key in `cache`.
pub fn latest_secret_key(origin: &str, cache: &Path) -> Result<SigSecretKey> {
    let (path, revision) = newest_file(cache, origin, SIG_SECRET_SUFFIX, "secret origin signing")?;
    let source_name = path.display().to_string();
    let key = parse_sig_secret_key(&read_key_text(&path, SIG_SECRET_HEADER)?, &source_name)?;
    check_matches_file_name(
        &source_name,
        key.origin(),
        &revision_of(&key.name_rev),
        origin,
        &revision,
    )?;
    Ok(key)
}

/// The newest revision of `origin`'s public signing key in `cache`.
pub fn latest_public_key(origin: &str, cache: &Path) -> Result<SigPublicKey> {
    let (path, revision) = newest_file(cache, origin, SIG_PUBLIC_SUFFIX, "public origin signing")?;
    let source_name = path.display().to_string();
    let key = parse_sig_public_key(&read_key_text(&path, SIG_PUBLIC_HEADER)?, &source_name)?;
    check_matches_file_name(
        &source_name,
        key.origin(),
        &revision_of(&key.name_rev),
        origin,
        &revision,
    )?;
    Ok(key)
}

/// Public signing key `<origin>-<revision>` (exactly that revision) from `cache`.
pub fn public_key(name_rev: &str, cache: &Path) -> Result<SigPublicKey> {
    let path = key_file_at(cache, name_rev, SIG_PUBLIC_SUFFIX, "public origin signing")?;
    let source_name = path.display().to_string();
    let key = parse_sig_public_key(&read_key_text(&path, SIG_PUBLIC_HEADER)?, &source_name)?;
    check_id(&source_name, &key.name_rev, name_rev)?;
    Ok(key)
}

/// Secret signing key `<origin>-<revision>` (exactly that revision) from `cache`.
pub fn secret_key(name_rev: &str, cache: &Path) -> Result<SigSecretKey> {
    let path = key_file_at(cache, name_rev, SIG_SECRET_SUFFIX, "secret origin signing")?;
    let source_name = path.display().to_string();
    let key = parse_sig_secret_key(&read_key_text(&path, SIG_SECRET_HEADER)?, &source_name)?;
    check_id(&source_name, &key.name_rev, name_rev)?;
    Ok(key)
}

/// What [`import_key`] wrote.
#[derive(Debug, PartialEq, Eq)]
pub enum ImportedKey {
    Public { name_rev: String, path: PathBuf },
    Secret { name_rev: String, path: PathBuf },
}

/// Imports a `SIG-PUB-1` or `SIG-SEC-1` key text (what `hab origin key export` prints) into
/// `cache`. Importing a key already there with the same content succeeds and changes nothing; a
/// different key under the same name and revision is refused.
pub fn import_key(content: &str, source_name: &str, cache: &Path) -> Result<ImportedKey> {
    let first_line = content.lines().next().unwrap_or("").trim_end();
    let (name_rev, path, text, mode, secret) = if first_line == SIG_SECRET_HEADER {
        let key = parse_sig_secret_key(content, source_name)?;
        let path = cache.join(format!("{}{SIG_SECRET_SUFFIX}", key.name_rev));
        (
            key.name_rev.clone(),
            path,
            render_sig_secret_key(&key),
            SECRET_MODE,
            true,
        )
    } else if first_line == SIG_PUBLIC_HEADER {
        let key = parse_sig_public_key(content, source_name)?;
        let path = cache.join(format!("{}{SIG_PUBLIC_SUFFIX}", key.name_rev));
        (
            key.name_rev.clone(),
            path,
            render_sig_public_key(&key),
            PUBLIC_MODE,
            false,
        )
    } else {
        return Err(Error::KeyFile {
            source_name: source_name.to_owned(),
            problem: format!(
                "expected first line {SIG_PUBLIC_HEADER} or {SIG_SECRET_HEADER}, found {}",
                crate::keys::describe(first_line, false)
            ),
        });
    };
    match std::fs::read_to_string(&path) {
        // Compared as parsed keys: a copy with other line ends is the same key.
        Ok(existing) if same_key(&existing, &text, secret) => {}
        Ok(_) => {
            return Err(Error::KeyFile {
                source_name: path.display().to_string(),
                problem: format!(
                    "a different key named {name_rev} is already in the cache; refusing to \
                     overwrite it"
                ),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_new_key_file(cache, &path, text.as_bytes(), mode)?
        }
        Err(e) => return Err(Error::io(&path, e)),
    }
    Ok(if secret {
        ImportedKey::Secret { name_rev, path }
    } else {
        ImportedKey::Public { name_rev, path }
    })
}

fn same_key(existing: &str, new: &str, secret: bool) -> bool {
    if secret {
        match (
            parse_sig_secret_key(existing, ""),
            parse_sig_secret_key(new, ""),
        ) {
            (Ok(a), Ok(b)) => a.name_rev == b.name_rev && a.key.to_bytes() == b.key.to_bytes(),
            _ => false,
        }
    } else {
        match (
            parse_sig_public_key(existing, ""),
            parse_sig_public_key(new, ""),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

fn revision_of(name_rev: &str) -> String {
    name_rev
        .rsplit_once('-')
        .map(|(_, r)| r.to_owned())
        .unwrap_or_default()
}

fn newest_file(
    cache: &Path,
    origin: &str,
    suffix: &str,
    kind: &'static str,
) -> Result<(PathBuf, String)> {
    validate_origin_name(origin)?;
    match key_files(cache, origin, suffix)?.into_iter().next() {
        Some((revision, path)) => Ok((path, revision)),
        None => Err(Error::KeyNotFound {
            kind,
            name: origin.to_owned(),
            dir: cache.to_owned(),
        }),
    }
}

/// The path of `<origin>-<revision><suffix>` in `cache`, once `name_rev` is known to be a key id
/// (never a path of its own) and the file to exist.
fn key_file_at(cache: &Path, name_rev: &str, suffix: &str, kind: &'static str) -> Result<PathBuf> {
    if split_name_rev(name_rev).is_none() {
        return Err(Error::invalid(
            format!("key id {:?}", truncated(name_rev)),
            "expected <origin>-<YYYYMMDDhhmmss>",
        ));
    }
    let path = cache.join(format!("{name_rev}{suffix}"));
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::KeyNotFound {
            kind,
            name: name_rev.to_owned(),
            dir: cache.to_owned(),
        }),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn check_id(source_name: &str, found: &str, wanted: &str) -> Result<()> {
    match (split_name_rev(found), split_name_rev(wanted)) {
        (Some((name, revision)), Some((file_name, file_revision))) => {
            check_matches_file_name(source_name, name, revision, file_name, file_revision)
        }
        _ => Err(Error::invalid(
            format!("key id {:?}", truncated(wanted)),
            "expected <origin>-<YYYYMMDDhhmmss>",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A key pair Habitat's `hab` generated (libsodium), see testdata/README.md.
    const HABITAT_SECRET: &str = include_str!("testdata/habinterop-20261206140906.sig.key");
    const HABITAT_PUBLIC: &str = include_str!("testdata/habinterop-20261206140906.pub");

    #[test]
    fn a_libsodium_secret_key_parses_and_renders_back_byte_for_byte() {
        let key = parse_sig_secret_key(HABITAT_SECRET, "fixture").unwrap();
        assert_eq!(key.name_rev(), "habinterop-20261206140906");
        assert_eq!(key.origin(), "habinterop");
        assert_eq!(render_sig_secret_key(&key), HABITAT_SECRET);
        // The public file Habitat wrote is the public half of its secret key, byte for byte.
        assert_eq!(render_sig_public_key(&key.public_key()), HABITAT_PUBLIC);
        assert_eq!(
            parse_sig_public_key(HABITAT_PUBLIC, "x").unwrap(),
            key.public_key()
        );
    }

    #[test]
    fn a_secret_key_whose_halves_disagree_is_refused() {
        let mut bytes = STANDARD
            .decode(HABITAT_SECRET.lines().nth(3).unwrap())
            .unwrap();
        bytes[40] ^= 1;
        let text = format!(
            "SIG-SEC-1\ncore-20260101000000\n\n{}",
            STANDARD.encode(&bytes)
        );
        let err = parse_sig_secret_key(&text, "bad.sig.key")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.sig.key") && err.contains("not the public key"),
            "{err}"
        );
        assert!(!err.contains(&STANDARD.encode(&bytes)[..20]), "{err}");
    }

    #[test]
    fn a_box_key_is_not_a_signing_key() {
        let text = HABITAT_PUBLIC.replace("SIG-PUB-1", "BOX-PUB-1");
        let err = parse_sig_public_key(&text, "core.pub")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected first line SIG-PUB-1, found BOX-PUB-1"),
            "{err}"
        );
    }

    #[test]
    fn signatures_are_libsodium_combined_and_only_open_with_the_right_key() {
        let key = SigSecretKey::from_seed("core", "20260101000000", [7; 32]);
        let signed = key.sign_combined(b"hello");
        assert_eq!(signed.len(), SIGNATURE_LEN + 5);
        assert_eq!(&signed[SIGNATURE_LEN..], b"hello");
        assert_eq!(key.public_key().open_combined(&signed), Some(&b"hello"[..]));
        let other = SigSecretKey::from_seed("core", "20260101000000", [8; 32]);
        assert_eq!(other.public_key().open_combined(&signed), None);
        let mut tampered = signed.clone();
        tampered[SIGNATURE_LEN] ^= 1;
        assert_eq!(key.public_key().open_combined(&tampered), None);
        assert_eq!(key.public_key().open_combined(&signed[..10]), None);
    }

    #[test]
    fn generation_writes_both_files_and_lookups_find_them() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("keys");
        let pair = generate_origin_key_pair(&cache, "core", at(1_700_000_000), [3; 32]).unwrap();
        assert_eq!(pair.secret_path, cache.join("core-20231114221320.sig.key"));
        assert_eq!(pair.public_path, cache.join("core-20231114221320.pub"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pair.secret_path), 0o600);
        assert_eq!(mode(&pair.public_path), 0o644);
        let text = std::fs::read_to_string(&pair.public_path).unwrap();
        assert!(text.starts_with("SIG-PUB-1\ncore-20231114221320\n\n") && !text.ends_with('\n'));

        generate_origin_key_pair(&cache, "core", at(1_800_000_000), [4; 32]).unwrap();
        generate_origin_key_pair(&cache, "core-east", at(1_900_000_000), [5; 32]).unwrap();
        let latest = latest_secret_key("core", &cache).unwrap();
        assert_eq!(latest.name_rev(), "core-20270115080000");
        assert_eq!(
            latest_public_key("core", &cache).unwrap(),
            latest.public_key()
        );
        let old = public_key("core-20231114221320", &cache).unwrap();
        assert_eq!(old, pair.public);
        assert_eq!(
            secret_key("core-20231114221320", &cache)
                .unwrap()
                .name_rev(),
            "core-20231114221320"
        );
        // Same second: refused, nothing overwritten.
        assert!(generate_origin_key_pair(&cache, "core", at(1_700_000_000), [9; 32]).is_err());
        assert_eq!(
            public_key("core-20231114221320", &cache).unwrap(),
            pair.public
        );
    }

    #[test]
    fn missing_keys_and_bad_names_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = public_key("core-20260101000000", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("core-20260101000000") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
        let err = latest_secret_key("core", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no secret origin signing key named core"),
            "{err}"
        );
        for bad in ["../etc-20260101000000", "Core-20260101000000", "core-2026"] {
            assert!(public_key(bad, dir.path()).is_err(), "{bad}");
        }
        assert!(validate_origin_name("Core").is_err());
        assert!(validate_origin_name("-core").is_err());
        assert!(validate_origin_name("").is_err());
        assert!(validate_origin_name("core_1-x").is_ok());
    }

    #[test]
    fn import_writes_a_new_key_accepts_the_same_again_and_refuses_a_different_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigSecretKey::from_seed("acme", "20260101000000", [1; 32]);
        let public = render_sig_public_key(&key.public_key());
        let imported = import_key(&format!("{public}\n"), "stdin", dir.path()).unwrap();
        let path = dir.path().join("acme-20260101000000.pub");
        assert_eq!(
            imported,
            ImportedKey::Public {
                name_rev: "acme-20260101000000".into(),
                path: path.clone()
            }
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), public);
        import_key(&public, "stdin", dir.path()).unwrap();

        let other = SigSecretKey::from_seed("acme", "20260101000000", [2; 32]);
        let err = import_key(
            &render_sig_public_key(&other.public_key()),
            "stdin",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("different key named acme-20260101000000"),
            "{err}"
        );

        let secret = render_sig_secret_key(&key);
        assert!(matches!(
            import_key(&secret, "stdin", dir.path()).unwrap(),
            ImportedKey::Secret { .. }
        ));
        let mode = std::fs::metadata(dir.path().join("acme-20260101000000.sig.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = import_key("SYM-SEC-1\nx-20260101000000\n\nAAAA", "stdin", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected first line SIG-PUB-1 or SIG-SEC-1"),
            "{err}"
        );
    }
}
