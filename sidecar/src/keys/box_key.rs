//! Box (encryption) key pairs in Habitat's `BOX-SEC-1` / `BOX-PUB-1` formats: a service group's,
//! named `SVC.GROUP@ORG` (or `SVC.GROUP` without an organization), and a user's, named `USER`.
//!
//! The keys are Curve25519 keys as libsodium's `crypto_box` makes them: 32 random secret bytes,
//! the public key their X25519 product with the base point. Both files of a pair share one
//! `<name>-<revision>`; neither is ever overwritten, and the secret one is created 0600.
//!
//! A user seals config or a file for a service group (`hab config apply --user`) into a `BOX-1`
//! message (NaCl `crypto_box`: the user's secret key, the group's public key, a fresh nonce);
//! members holding the group's secret key and the user's public key open it. Sealing and opening
//! are pure; key lookups by exact revision are the only I/O, passed in or done by `*_at`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{
    check_matches_file_name, key_files, parse_key_text, read_key_text, revision_from_time,
    write_new_key_file,
};
use crate::error::{Error, Result};
use crate::gossip::rumor::ServiceGroup;

/// First line of a secret box key file.
pub const BOX_SECRET_HEADER: &str = "BOX-SEC-1";
/// First line of a public box key file.
pub const BOX_PUBLIC_HEADER: &str = "BOX-PUB-1";
/// Secret box key file names end with this.
pub const BOX_SECRET_SUFFIX: &str = ".box.key";
/// Public box key file names end with this.
pub const BOX_PUBLIC_SUFFIX: &str = ".pub";
/// Bytes in a box key, secret or public.
pub const BOX_KEY_LEN: usize = 32;
const MAX_NAME_LEN: usize = 255;
const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// A box key name: 1 to 255 characters from `A-Z a-z 0-9 _ - . @`, starting with a letter, a
/// digit or `_` (so never a hidden file, never a path). Covers `USER` and `SVC.GROUP@ORG`.
pub fn validate_box_key_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@');
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(Error::invalid(
            format!("key name {:?}", name.chars().take(64).collect::<String>()),
            "expected 1 to 255 characters from A-Z a-z 0-9 _ - . @, starting with a letter, a \
             digit or _",
        ));
    }
    Ok(())
}

/// The key name of a service group's pair, as Habitat names it: `SVC.GROUP@ORG`, or `SVC.GROUP`
/// when no organization is given. The organization comes either with the group or as `org`, not
/// both (Habitat would name that key `SVC.GROUP@ORG1@ORG2`, which no lookup ever finds).
pub fn service_key_name(service_group: &str, org: Option<&str>) -> Result<String> {
    ServiceGroup::parse(service_group).map_err(|e| Error::invalid("SERVICE_GROUP", e))?;
    let name = match org {
        None => service_group.to_owned(),
        Some(_) if service_group.contains('@') => {
            return Err(Error::invalid(
                "ORG",
                format!(
                    "{service_group:?} already names its organization: give it either as \
                     SERVICE.GROUP@ORG or as ORG, not both"
                ),
            ))
        }
        Some(org) => {
            let name = format!("{service_group}@{org}");
            ServiceGroup::parse(&name).map_err(|e| Error::invalid("ORG", e))?;
            name
        }
    };
    validate_box_key_name(&name)?;
    Ok(name)
}

/// The directory keys are written to and read from when `--cache-key-path`/`HAB_CACHE_KEY_PATH`
/// is not given: `<root>/cache/keys`, except that, like Habitat, a user other than root who chose
/// no root (neither `--root` nor `HAB_ROOT`) keeps keys in `~/.hab/cache/keys`.
pub fn default_keys_dir(
    root: &Path,
    root_is_default: bool,
    user_is_root: bool,
    home: Option<&Path>,
) -> PathBuf {
    match home {
        Some(home) if root_is_default && !user_is_root => {
            home.join(".hab").join("cache").join("keys")
        }
        _ => super::keys_dir(root),
    }
}

/// The secret half of a box key pair. `Debug` shows the name and revision only.
#[derive(Clone)]
pub struct BoxSecretKey {
    name: String,
    revision: String,
    key: crypto_box::SecretKey,
}

/// The public half of a box key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct BoxPublicKey {
    name: String,
    revision: String,
    key: crypto_box::PublicKey,
}

impl BoxSecretKey {
    pub fn new(name: &str, revision: &str, secret: [u8; BOX_KEY_LEN]) -> BoxSecretKey {
        BoxSecretKey {
            name: name.to_owned(),
            revision: revision.to_owned(),
            key: crypto_box::SecretKey::from(secret),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// `<name>-<revision>`, as line 2 of the file and the file name have it.
    pub fn name_with_rev(&self) -> String {
        format!("{}-{}", self.name, self.revision)
    }

    pub fn key(&self) -> &crypto_box::SecretKey {
        &self.key
    }

    /// The matching public key, same name and revision.
    pub fn public_key(&self) -> BoxPublicKey {
        BoxPublicKey {
            name: self.name.clone(),
            revision: self.revision.clone(),
            key: self.key.public_key(),
        }
    }
}

impl fmt::Debug for BoxSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxSecretKey({})", self.name_with_rev())
    }
}

impl BoxPublicKey {
    pub fn new(name: &str, revision: &str, public: [u8; BOX_KEY_LEN]) -> BoxPublicKey {
        BoxPublicKey {
            name: name.to_owned(),
            revision: revision.to_owned(),
            key: crypto_box::PublicKey::from(public),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn name_with_rev(&self) -> String {
        format!("{}-{}", self.name, self.revision)
    }

    pub fn key(&self) -> &crypto_box::PublicKey {
        &self.key
    }
}

impl fmt::Debug for BoxPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxPublicKey({})", self.name_with_rev())
    }
}

fn box_name_ok(name: &str) -> bool {
    validate_box_key_name(name).is_ok()
}

/// Parses a `BOX-SEC-1` file; `source_name` (a path) appears in every error. Accepts CRLF line
/// ends and a missing or extra trailing newline (Habitat writes none).
pub fn parse_box_secret_key(content: &str, source_name: &str) -> Result<BoxSecretKey> {
    let (name, revision, key) =
        parse_key_text(content, source_name, BOX_SECRET_HEADER, box_name_ok)?;
    Ok(BoxSecretKey::new(name, revision, key))
}

/// Parses a `BOX-PUB-1` file, as [`parse_box_secret_key`] does.
pub fn parse_box_public_key(content: &str, source_name: &str) -> Result<BoxPublicKey> {
    let (name, revision, key) =
        parse_key_text(content, source_name, BOX_PUBLIC_HEADER, box_name_ok)?;
    Ok(BoxPublicKey::new(name, revision, key))
}

/// The `BOX-SEC-1` file content for `key`, with a trailing newline.
pub fn render_box_secret_key(key: &BoxSecretKey) -> String {
    format!(
        "{BOX_SECRET_HEADER}\n{}\n\n{}\n",
        key.name_with_rev(),
        STANDARD.encode(key.key.to_bytes())
    )
}

/// The `BOX-PUB-1` file content for `key`, with a trailing newline.
pub fn render_box_public_key(key: &BoxPublicKey) -> String {
    format!(
        "{BOX_PUBLIC_HEADER}\n{}\n\n{}\n",
        key.name_with_rev(),
        STANDARD.encode(key.key.as_bytes())
    )
}

/// `<keys_dir>/<name>-<revision>.box.key`.
pub fn box_secret_key_path(keys_dir: &Path, key: &BoxSecretKey) -> PathBuf {
    keys_dir.join(format!("{}{BOX_SECRET_SUFFIX}", key.name_with_rev()))
}

/// `<keys_dir>/<name>-<revision>.pub`.
pub fn box_public_key_path(keys_dir: &Path, key: &BoxPublicKey) -> PathBuf {
    keys_dir.join(format!("{}{BOX_PUBLIC_SUFFIX}", key.name_with_rev()))
}

/// A pair written by [`generate_box_key_pair`], with where each half went.
#[derive(Debug)]
pub struct GeneratedBoxPair {
    pub secret: BoxSecretKey,
    pub public: BoxPublicKey,
    pub secret_path: PathBuf,
    pub public_path: PathBuf,
}

/// Creates a new revision (`now`) of box key pair `name` from the secret bytes `random`: the
/// public file (0644), then the secret file (0600). If the secret cannot be written the public
/// file just written is removed again, so a pair is never left half made by us.
pub fn generate_box_key_pair(
    keys_dir: &Path,
    name: &str,
    now: SystemTime,
    random: [u8; BOX_KEY_LEN],
) -> Result<GeneratedBoxPair> {
    validate_box_key_name(name)?;
    let secret = BoxSecretKey::new(name, &revision_from_time(now), random);
    let public = secret.public_key();
    let secret_path = box_secret_key_path(keys_dir, &secret);
    let public_path = box_public_key_path(keys_dir, &public);
    if secret_path.exists() {
        return Err(super::already_exists(&secret_path));
    }
    write_new_key_file(
        keys_dir,
        &public_path,
        render_box_public_key(&public).as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Err(e) = write_new_key_file(
        keys_dir,
        &secret_path,
        render_box_secret_key(&secret).as_bytes(),
        SECRET_MODE,
    ) {
        let _ = std::fs::remove_file(&public_path);
        return Err(e);
    }
    Ok(GeneratedBoxPair {
        secret,
        public,
        secret_path,
        public_path,
    })
}

/// The newest revision of secret box key `name` in `keys_dir`.
///
/// Only files named exactly `<name>-<YYYYMMDDhhmmss>.box.key` count (Habitat globs `<name>-*`,
/// so its lookup of `ruby` may pick `ruby-east`'s key); line 2 must repeat the file's name.
pub fn latest_box_secret_key(keys_dir: &Path, name: &str) -> Result<BoxSecretKey> {
    let (path, revision) = newest_file(keys_dir, name, BOX_SECRET_SUFFIX, "secret box")?;
    let source_name = path.display().to_string();
    let key = parse_box_secret_key(&read_key_text(&path, BOX_SECRET_HEADER)?, &source_name)?;
    check_matches_file_name(&source_name, key.name(), key.revision(), name, &revision)?;
    Ok(key)
}

/// The newest revision of public box key `name` in `keys_dir`, as [`latest_box_secret_key`].
pub fn latest_box_public_key(keys_dir: &Path, name: &str) -> Result<BoxPublicKey> {
    let (path, revision) = newest_file(keys_dir, name, BOX_PUBLIC_SUFFIX, "public box")?;
    let source_name = path.display().to_string();
    let key = parse_box_public_key(&read_key_text(&path, BOX_PUBLIC_HEADER)?, &source_name)?;
    check_matches_file_name(&source_name, key.name(), key.revision(), name, &revision)?;
    Ok(key)
}

fn newest_file(
    keys_dir: &Path,
    name: &str,
    suffix: &str,
    kind: &'static str,
) -> Result<(PathBuf, String)> {
    validate_box_key_name(name)?;
    match key_files(keys_dir, name, suffix)?.into_iter().next() {
        Some((revision, path)) => Ok((path, revision)),
        None => Err(Error::KeyNotFound {
            kind,
            name: name.to_owned(),
            dir: keys_dir.to_owned(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Boxes: a payload sealed by one key pair for another (Habitat's `SignedBox`)

/// First line of a message a user sealed for a service group: `BOX-1`, the sender's key
/// `<name>-<revision>`, the recipient's, the nonce and the ciphertext in base64.
pub const BOX_HEADER: &str = "BOX-1";
/// First line of Habitat's anonymous boxes (sealed for an origin by nobody in particular). They
/// cannot name a sender, so service group config and files never take them.
pub const ANONYMOUS_BOX_HEADER: &str = "ANONYMOUS-BOX-1";
/// Bytes in a box nonce (XSalsa20).
pub const BOX_NONCE_LEN: usize = 24;
/// Bytes the Poly1305 tag adds to every ciphertext.
const BOX_TAG_LEN: usize = 16;

/// A parsed `BOX-1` message. `Debug` shows the key names and sizes, never the ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBox {
    /// The sender's key pair, `<name>-<revision>` (a user's).
    pub encryptor: String,
    /// The recipient's key pair, `<name>-<revision>` (a service group's).
    pub decryptor: String,
    pub nonce: [u8; BOX_NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedBox({} -> {}, {} bytes)",
            self.encryptor,
            self.decryptor,
            self.ciphertext.len()
        )
    }
}

/// What an opened box held, and who sealed it. `Debug` hides the plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's key, `<name>-<revision>`: only the holder of its secret half could have
    /// sealed the box.
    pub sender: String,
    pub plaintext: Vec<u8>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Opened(from {}, {} bytes)",
            self.sender,
            self.plaintext.len()
        )
    }
}

fn decrypt_error(problem: impl Into<String>) -> Error {
    Error::Decrypt {
        problem: problem.into(),
    }
}

/// `(name, revision)` of a `<name>-<YYYYMMDDhhmmss>` box key id, if it is one.
fn split_box_key_id(name_with_rev: &str) -> Option<(&str, &str)> {
    let (name, revision) = name_with_rev.rsplit_once('-')?;
    (super::is_revision(revision) && box_name_ok(name)).then_some((name, revision))
}

/// Parses a `BOX-1` message as Habitat writes it (five lines, no trailing newline; CRLF and a
/// trailing newline are accepted too). Errors name the line and never quote the payload.
pub fn parse_sealed_box(text: &[u8]) -> Result<SealedBox> {
    let text = std::str::from_utf8(text).map_err(|e| {
        decrypt_error(format!(
            "expected {BOX_HEADER} text, found a byte that is not UTF-8 at offset {}",
            e.valid_up_to()
        ))
    })?;
    let mut lines = text.lines().map(str::trim_end);
    let mut line = |number: usize, expected: &str| {
        lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| decrypt_error(format!("line {number}: expected {expected}, found none")))
    };
    let header = line(1, BOX_HEADER)?;
    if header == ANONYMOUS_BOX_HEADER {
        return Err(decrypt_error(format!(
            "an {ANONYMOUS_BOX_HEADER} message names no sender; service group config and files \
             must be {BOX_HEADER}, sealed with a user's key (hab config apply --user USER)"
        )));
    }
    if header != BOX_HEADER {
        return Err(decrypt_error(format!(
            "expected first line {BOX_HEADER}, found {}",
            super::describe(header, false)
        )));
    }
    let mut key_id = |number: usize, whose: &str| -> Result<String> {
        let id = line(
            number,
            &format!("the {whose} key as <name>-<YYYYMMDDhhmmss>"),
        )?;
        split_box_key_id(id).ok_or_else(|| {
            decrypt_error(format!(
                "line {number}: expected the {whose} key as <name>-<YYYYMMDDhhmmss>, found {}",
                super::describe(id, true)
            ))
        })?;
        Ok(id.to_owned())
    };
    let encryptor = key_id(2, "sender's")?;
    let decryptor = key_id(3, "recipient's")?;
    let nonce = STANDARD
        .decode(line(4, "the nonce in base64")?)
        .map_err(|_| decrypt_error("line 4: the nonce is not valid base64 (standard, padded)"))?;
    let nonce: [u8; BOX_NONCE_LEN] = nonce.as_slice().try_into().map_err(|_| {
        decrypt_error(format!(
            "line 4: the nonce is {} bytes, expected {BOX_NONCE_LEN}",
            nonce.len()
        ))
    })?;
    let ciphertext = STANDARD
        .decode(line(5, "the ciphertext in base64")?)
        .map_err(|_| {
            decrypt_error("line 5: the ciphertext is not valid base64 (standard, padded)")
        })?;
    if ciphertext.len() < BOX_TAG_LEN {
        return Err(decrypt_error(format!(
            "line 5: the ciphertext is {} bytes, shorter than its {BOX_TAG_LEN}-byte tag",
            ciphertext.len()
        )));
    }
    if let Some((index, _)) = lines.enumerate().find(|(_, l)| !l.is_empty()) {
        return Err(decrypt_error(format!(
            "line {}: expected the end of the message after the ciphertext, found more text",
            index + 6
        )));
    }
    Ok(SealedBox {
        encryptor,
        decryptor,
        nonce,
        ciphertext,
    })
}

/// The `BOX-1` text of `sealed`, as Habitat writes it (no trailing newline).
pub fn render_sealed_box(sealed: &SealedBox) -> String {
    format!(
        "{BOX_HEADER}\n{}\n{}\n{}\n{}",
        sealed.encryptor,
        sealed.decryptor,
        STANDARD.encode(sealed.nonce),
        STANDARD.encode(&sealed.ciphertext)
    )
}

/// Seals `plaintext` from `sender` (a user's secret key) for `recipient` (a service group's
/// public key) with `nonce`, which must never be used twice with the same keys: take it fresh
/// from a secure random source. Returns the `BOX-1` text.
pub fn seal_box(
    plaintext: &[u8],
    sender: &BoxSecretKey,
    recipient: &BoxPublicKey,
    nonce: [u8; BOX_NONCE_LEN],
) -> Result<String> {
    use crypto_box::aead::{generic_array::GenericArray, Aead};
    let ciphertext = crypto_box::SalsaBox::new(recipient.key(), sender.key())
        .encrypt(GenericArray::from_slice(&nonce), plaintext)
        .map_err(|_| {
            Error::invalid(
                format!("a {}-byte payload", plaintext.len()),
                format!(
                    "cannot be sealed from {} for {}",
                    sender.name_with_rev(),
                    recipient.name_with_rev()
                ),
            )
        })?;
    Ok(render_sealed_box(&SealedBox {
        encryptor: sender.name_with_rev(),
        decryptor: recipient.name_with_rev(),
        nonce,
        ciphertext,
    }))
}

/// Opens a `BOX-1` message sealed for key pair `recipient_name` (a service group's key name,
/// `SVC.GROUP@ORG`): parses it, fetches the recipient's secret key and the sender's public key
/// at exactly the revisions the message names, checks the ciphertext was sealed by that sender
/// for that recipient, and returns the plaintext. A message for another recipient is refused
/// before any key is looked up.
pub fn open_box(
    text: &[u8],
    recipient_name: &str,
    secret_key: impl FnOnce(&str) -> Result<BoxSecretKey>,
    public_key: impl FnOnce(&str) -> Result<BoxPublicKey>,
) -> Result<Opened> {
    use crypto_box::aead::{generic_array::GenericArray, Aead};
    let sealed = parse_sealed_box(text)?;
    let for_name = split_box_key_id(&sealed.decryptor).map_or("", |(name, _)| name);
    if for_name != recipient_name {
        return Err(decrypt_error(format!(
            "sealed for {}, not for {recipient_name}",
            sealed.decryptor
        )));
    }
    let missing = |e: Error, kind: &str, suffix: &str, purpose: &str| match e {
        Error::KeyNotFound { name, dir, .. } => decrypt_error(format!(
            "no {kind} key {name} in {} {purpose} (expected the file {name}{suffix} there)",
            dir.display()
        )),
        Error::Decrypt { .. } => e,
        other => decrypt_error(other.to_string()),
    };
    let recipient = secret_key(&sealed.decryptor)
        .map_err(|e| missing(e, "secret", BOX_SECRET_SUFFIX, "to open it with"))?;
    let sender = public_key(&sealed.encryptor)
        .map_err(|e| missing(e, "public", BOX_PUBLIC_SUFFIX, "to verify the sender with"))?;
    for (asked, got) in [
        (&sealed.decryptor, recipient.name_with_rev()),
        (&sealed.encryptor, sender.name_with_rev()),
    ] {
        if *asked != got {
            return Err(decrypt_error(format!(
                "asked for key {asked}, the key cache gave {got}"
            )));
        }
    }
    let plaintext = crypto_box::SalsaBox::new(sender.key(), recipient.key())
        .decrypt(
            GenericArray::from_slice(&sealed.nonce),
            sealed.ciphertext.as_slice(),
        )
        .map_err(|_| {
            decrypt_error(format!(
                "the message does not authenticate as sealed by {} for {}: it was altered, \
                 or the keys in the cache are not the ones it was sealed with",
                sealed.encryptor, sealed.decryptor
            ))
        })?;
    Ok(Opened {
        sender: sealed.encryptor,
        plaintext,
    })
}

/// [`open_box`] with the keys of `keys_dir`, looked up at exactly the revisions named.
pub fn open_box_with_keys(keys_dir: &Path, text: &[u8], recipient_name: &str) -> Result<Opened> {
    open_box(
        text,
        recipient_name,
        |id| box_secret_key_at(keys_dir, id),
        |id| box_public_key_at(keys_dir, id),
    )
}

/// Secret box key `<name>-<revision>` from `keys_dir`: exactly that revision, or
/// `Error::KeyNotFound` when its file is absent.
pub fn box_secret_key_at(keys_dir: &Path, name_with_rev: &str) -> Result<BoxSecretKey> {
    let path = key_file_at(keys_dir, name_with_rev, BOX_SECRET_SUFFIX, "secret box")?;
    let source_name = path.display().to_string();
    let key = parse_box_secret_key(&read_key_text(&path, BOX_SECRET_HEADER)?, &source_name)?;
    check_id(&source_name, key.name(), key.revision(), name_with_rev)?;
    Ok(key)
}

/// Public box key `<name>-<revision>` from `keys_dir`, as [`box_secret_key_at`].
pub fn box_public_key_at(keys_dir: &Path, name_with_rev: &str) -> Result<BoxPublicKey> {
    let path = key_file_at(keys_dir, name_with_rev, BOX_PUBLIC_SUFFIX, "public box")?;
    let source_name = path.display().to_string();
    let key = parse_box_public_key(&read_key_text(&path, BOX_PUBLIC_HEADER)?, &source_name)?;
    check_id(&source_name, key.name(), key.revision(), name_with_rev)?;
    Ok(key)
}

/// The path of key `<name>-<revision><suffix>` in `keys_dir`, once it is known to be a key id
/// (so never a path of its own: names hold no `/` and never start with `.`) and to exist.
fn key_file_at(
    keys_dir: &Path,
    name_with_rev: &str,
    suffix: &str,
    kind: &'static str,
) -> Result<PathBuf> {
    if split_box_key_id(name_with_rev).is_none() {
        return Err(Error::invalid(
            format!("key id {:?}", super::truncated(name_with_rev)),
            "expected <name>-<YYYYMMDDhhmmss>",
        ));
    }
    let path = keys_dir.join(format!("{name_with_rev}{suffix}"));
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::KeyNotFound {
            kind,
            name: name_with_rev.to_owned(),
            dir: keys_dir.to_owned(),
        }),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn check_id(source_name: &str, name: &str, revision: &str, wanted: &str) -> Result<()> {
    match split_box_key_id(wanted) {
        Some((file_name, file_revision)) => {
            check_matches_file_name(source_name, name, revision, file_name, file_revision)
        }
        None => Err(Error::invalid(
            format!("key id {:?}", super::truncated(wanted)),
            "expected <name>-<YYYYMMDDhhmmss>",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::fs;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn message(r: Result<impl fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    // Generated by Habitat's own `hab` 2.1.78 (`hab svc key generate redis.default acme`,
    // `hab user key generate ruby`): throwaway keys, kept byte for byte (no trailing newline).
    const HAB_SVC_SECRET: &str = include_str!("testdata/redis.default@acme-20261206100228.box.key");
    const HAB_SVC_PUBLIC: &str = include_str!("testdata/redis.default@acme-20261206100228.pub");
    const HAB_USER_SECRET: &str = include_str!("testdata/ruby-20261206100228.box.key");
    const HAB_USER_PUBLIC: &str = include_str!("testdata/ruby-20261206100228.pub");

    // Generated by our `hab` (same commands), then used by Habitat's `hab config apply
    // redis.default@acme 1 cfg.toml --user ruby`: the box it sent (`BOX-1`, encryptor,
    // decryptor, nonce, ciphertext) as our supervisor stored it.
    const OUR_SVC_SECRET: &str = include_str!("testdata/redis.default@acme-20261206100918.box.key");
    const OUR_USER_PUBLIC: &str = include_str!("testdata/ruby-20261206100918.pub");
    const HAB_BOX_FOR_OUR_KEYS: &str = include_str!("testdata/habitat-encrypted-for-ours.box");

    #[test]
    fn a_box_habitat_sealed_for_keys_we_generated_opens_with_them() {
        use crypto_box::aead::{generic_array::GenericArray, Aead};
        let service = parse_box_secret_key(OUR_SVC_SECRET, "service").unwrap();
        let user = parse_box_public_key(OUR_USER_PUBLIC, "user").unwrap();
        let lines: Vec<&str> = HAB_BOX_FOR_OUR_KEYS.lines().collect();
        assert_eq!(
            lines[..3],
            ["BOX-1", &user.name_with_rev(), &service.name_with_rev()]
        );
        let nonce = STANDARD.decode(lines[3]).unwrap();
        let ciphertext = STANDARD.decode(lines[4]).unwrap();
        let plain = crypto_box::SalsaBox::new(user.key(), service.key())
            .decrypt(GenericArray::from_slice(&nonce), ciphertext.as_slice())
            .unwrap();
        assert_eq!(plain, b"port = 6380\n");
    }

    #[test]
    fn render_then_parse_round_trips() {
        let secret = BoxSecretKey::new("redis.default@acme", "20260101000000", [1; BOX_KEY_LEN]);
        let text = render_box_secret_key(&secret);
        assert_eq!(
            text,
            "BOX-SEC-1\nredis.default@acme-20260101000000\n\n\
             AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
        );
        let parsed = parse_box_secret_key(&text, "k").unwrap();
        assert_eq!(parsed.name(), "redis.default@acme");
        assert_eq!(parsed.revision(), "20260101000000");
        assert_eq!(parsed.key().to_bytes(), [1; BOX_KEY_LEN]);

        let public = secret.public_key();
        let text = render_box_public_key(&public);
        assert!(text.starts_with("BOX-PUB-1\nredis.default@acme-20260101000000\n\n"));
        assert_eq!(parse_box_public_key(&text, "k").unwrap(), public);
    }

    #[test]
    fn habitat_generated_keys_parse_and_pairs_match() {
        for (secret, public, name) in [
            (HAB_SVC_SECRET, HAB_SVC_PUBLIC, "redis.default@acme"),
            (HAB_USER_SECRET, HAB_USER_PUBLIC, "ruby"),
        ] {
            let secret = parse_box_secret_key(secret, "habitat secret").unwrap();
            let public = parse_box_public_key(public, "habitat public").unwrap();
            assert_eq!(secret.name(), name);
            assert_eq!(secret.revision(), "20261206100228");
            // libsodium's public key is X25519(secret, base point), as crypto_box's.
            assert_eq!(secret.public_key(), public);
        }
    }

    #[test]
    fn rendering_a_habitat_key_gives_its_text_plus_a_newline() {
        let secret = parse_box_secret_key(HAB_SVC_SECRET, "k").unwrap();
        assert_eq!(
            render_box_secret_key(&secret),
            format!("{HAB_SVC_SECRET}\n")
        );
        let public = parse_box_public_key(HAB_USER_PUBLIC, "k").unwrap();
        assert_eq!(
            render_box_public_key(&public),
            format!("{HAB_USER_PUBLIC}\n")
        );
    }

    #[test]
    fn a_public_key_where_a_secret_belongs_is_named() {
        assert_eq!(
            message(parse_box_secret_key(
                HAB_USER_PUBLIC,
                "/hab/cache/keys/ruby-20261206100228.box.key"
            )),
            "key /hab/cache/keys/ruby-20261206100228.box.key: expected first line BOX-SEC-1, \
             found BOX-PUB-1"
        );
        assert_eq!(
            message(parse_box_public_key("SYM-SEC-1\n", "p")),
            "key p: expected first line BOX-PUB-1, found SYM-SEC-1"
        );
    }

    #[test]
    fn malformed_box_files_name_the_line_and_never_echo_the_key() {
        let b64 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        assert_eq!(
            message(parse_box_secret_key(
                &format!("BOX-SEC-1\nruby\n\n{b64}\n"),
                "k"
            )),
            "key k: line 2: expected <name>-<YYYYMMDDhhmmss>, found \"ruby\""
        );
        assert_eq!(
            message(parse_box_secret_key(
                &format!("BOX-SEC-1\n../x-20260101000000\n\n{b64}\n"),
                "k"
            )),
            "key k: line 2: expected <name>-<YYYYMMDDhhmmss>, found a 19-character line"
        );
        assert_eq!(
            message(parse_box_secret_key(
                &format!("BOX-SEC-1\nruby-20260101000000\n{b64}\n"),
                "k"
            )),
            "key k: line 3: expected an empty line, found a 44-character line"
        );
        assert_eq!(
            message(parse_box_secret_key(
                "BOX-SEC-1\nruby-20260101000000\n\nAAAA\n",
                "k"
            )),
            "key k: line 4: key is 3 bytes, expected 32"
        );
        let swapped = format!("BOX-SEC-1\n{b64}\n\nruby-20260101000000\n");
        let err = message(parse_box_secret_key(&swapped, "k"));
        assert!(err.contains("line 2") && !err.contains(b64), "{err}");
    }

    #[test]
    fn service_key_names_follow_habitat() {
        assert_eq!(
            service_key_name("redis.default", Some("acme")).unwrap(),
            "redis.default@acme"
        );
        assert_eq!(
            service_key_name("redis.default@acme", None).unwrap(),
            "redis.default@acme"
        );
        assert_eq!(
            service_key_name("redis.default", None).unwrap(),
            "redis.default"
        );
        let both = message(service_key_name("redis.default@acme", Some("acme")));
        assert!(both.contains("not both"), "{both}");
        let bad = message(service_key_name("redis", Some("acme")));
        assert!(bad.starts_with("SERVICE_GROUP: "), "{bad}");
        assert!(service_key_name("redis.default", Some("a/b")).is_err());
        for bad in ["", ".hidden", "a/b", "a b", "-x"] {
            assert!(validate_box_key_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "ruby",
            "first.last",
            "bob@example.com",
            "_x",
            "redis.default@acme",
        ] {
            assert!(validate_box_key_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn keys_dir_is_home_for_non_root_users_only_without_a_chosen_root() {
        let root = Path::new("/hab");
        let home = Some(Path::new("/home/ruby"));
        assert_eq!(
            default_keys_dir(root, true, false, home),
            Path::new("/home/ruby/.hab/cache/keys")
        );
        assert_eq!(
            default_keys_dir(root, true, true, home),
            Path::new("/hab/cache/keys")
        );
        assert_eq!(
            default_keys_dir(Path::new("/srv/hab"), false, false, home),
            Path::new("/srv/hab/cache/keys")
        );
        assert_eq!(
            default_keys_dir(root, true, false, None),
            Path::new("/hab/cache/keys")
        );
    }

    #[test]
    fn generation_writes_a_0600_secret_and_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("cache").join("keys");
        let pair =
            generate_box_key_pair(&keys, "ruby", at(1_700_000_000), [9; BOX_KEY_LEN]).unwrap();
        assert_eq!(pair.secret_path, keys.join("ruby-20231114221320.box.key"));
        assert_eq!(pair.public_path, keys.join("ruby-20231114221320.pub"));
        assert_eq!(pair.public, pair.secret.public_key());
        assert_eq!(
            fs::read_to_string(&pair.secret_path).unwrap(),
            render_box_secret_key(&pair.secret)
        );
        assert_eq!(
            fs::read_to_string(&pair.public_path).unwrap(),
            render_box_public_key(&pair.public)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&pair.secret_path), 0o600);
            // The public key is readable by others (umask permitting), never writable by them.
            assert_eq!(mode(&pair.public_path) & 0o022, 0);
            assert_ne!(mode(&pair.public_path) & 0o400, 0);
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&keys).unwrap().count(), 2);
        let loaded = latest_box_secret_key(&keys, "ruby").unwrap();
        assert_eq!(loaded.key().to_bytes(), [9; BOX_KEY_LEN]);
        assert_eq!(latest_box_public_key(&keys, "ruby").unwrap(), pair.public);
    }

    #[test]
    fn an_existing_pair_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            generate_box_key_pair(dir.path(), "ruby", at(1_700_000_000), [1; BOX_KEY_LEN]).unwrap();
        let before = fs::read_to_string(&first.secret_path).unwrap();
        let err = message(generate_box_key_pair(
            dir.path(),
            "ruby",
            at(1_700_000_000),
            [2; BOX_KEY_LEN],
        ));
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(fs::read_to_string(&first.secret_path).unwrap(), before);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn the_newest_revision_of_exactly_that_name_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        generate_box_key_pair(d, "ruby", at(1_600_000_000), [1; BOX_KEY_LEN]).unwrap();
        generate_box_key_pair(d, "ruby", at(1_700_000_000), [2; BOX_KEY_LEN]).unwrap();
        // Newer, but another name that starts with "ruby-": Habitat's glob would take it.
        generate_box_key_pair(d, "ruby-east", at(1_800_000_000), [3; BOX_KEY_LEN]).unwrap();
        // Files that are not revisions of ruby's keys are ignored.
        fs::write(d.join("ruby-2026.box.key"), "junk").unwrap();
        fs::write(d.join("ruby-20991231235959.sym.key"), "junk").unwrap();
        let secret = latest_box_secret_key(d, "ruby").unwrap();
        assert_eq!(secret.revision(), "20231114221320");
        assert_eq!(secret.key().to_bytes(), [2; BOX_KEY_LEN]);
        assert_eq!(
            latest_box_public_key(d, "ruby").unwrap().revision(),
            "20231114221320"
        );
        assert_eq!(
            latest_box_secret_key(d, "ruby-east").unwrap().revision(),
            "20270115080000"
        );
    }

    #[test]
    fn missing_keys_and_mismatched_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = latest_box_secret_key(dir.path(), "ruby").unwrap_err();
        assert!(
            matches!(
                err,
                Error::KeyNotFound {
                    kind: "secret box",
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            latest_box_public_key(&dir.path().join("nope"), "ruby"),
            Err(Error::KeyNotFound { .. })
        ));

        let path = dir.path().join("ruby-20261206100228.box.key");
        fs::write(&path, HAB_SVC_SECRET).unwrap();
        let err = message(latest_box_secret_key(dir.path(), "ruby"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains(
                "line 2 says redis.default@acme-20261206100228, expected ruby-20261206100228"
            ),
            "{err}"
        );
    }

    // ---- boxes ----

    fn user_pair() -> (BoxSecretKey, BoxPublicKey) {
        let secret = BoxSecretKey::new("ruby", "20260101000000", [7; BOX_KEY_LEN]);
        let public = secret.public_key();
        (secret, public)
    }

    fn service_pair() -> (BoxSecretKey, BoxPublicKey) {
        let secret = BoxSecretKey::new("redis.default@acme", "20260101000001", [8; BOX_KEY_LEN]);
        let public = secret.public_key();
        (secret, public)
    }

    fn open_with(text: &[u8], recipient: &BoxSecretKey, sender: &BoxPublicKey) -> Result<Opened> {
        open_box(
            text,
            recipient.name(),
            |_| Ok(recipient.clone()),
            |_| Ok(sender.clone()),
        )
    }

    #[test]
    fn what_we_seal_opens_with_our_open_and_names_the_sender() {
        let (user, user_public) = user_pair();
        let (service, service_public) = service_pair();
        let text = seal_box(b"password = \"hunter2\"\n", &user, &service_public, [3; 24]).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(
            lines[..4],
            [
                "BOX-1",
                "ruby-20260101000000",
                "redis.default@acme-20260101000001",
                "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD",
            ]
        );
        assert_eq!(lines.len(), 5, "five lines, no trailing newline: {text:?}");
        assert!(!text.contains("hunter2"));
        let opened = open_with(text.as_bytes(), &service, &user_public).unwrap();
        assert_eq!(opened.plaintext, b"password = \"hunter2\"\n");
        assert_eq!(opened.sender, "ruby-20260101000000");
        assert!(!format!("{opened:?}").contains("hunter2"));
        // A trailing newline or CRLF line ends (a file edited elsewhere) still open.
        let crlf = format!("{}\r\n", text.replace('\n', "\r\n"));
        assert_eq!(
            open_with(crlf.as_bytes(), &service, &user_public)
                .unwrap()
                .plaintext,
            opened.plaintext
        );
        // Parsing and rendering round-trip.
        let parsed = parse_sealed_box(text.as_bytes()).unwrap();
        assert_eq!(render_sealed_box(&parsed), text);
        assert_eq!(
            format!("{parsed:?}"),
            "SealedBox(ruby-20260101000000 -> redis.default@acme-20260101000001, 37 bytes)"
        );
    }

    #[test]
    fn a_box_habitat_sealed_opens_through_open_box_with_the_key_cache() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("redis.default@acme-20261206100918.box.key"),
            OUR_SVC_SECRET,
        )
        .unwrap();
        fs::write(dir.path().join("ruby-20261206100918.pub"), OUR_USER_PUBLIC).unwrap();
        // Newer revisions of both keys are not the ones the box names: they must not be used.
        generate_box_key_pair(dir.path(), "ruby", at(1_900_000_000), [1; BOX_KEY_LEN]).unwrap();
        generate_box_key_pair(
            dir.path(),
            "redis.default@acme",
            at(1_900_000_000),
            [2; BOX_KEY_LEN],
        )
        .unwrap();
        let opened = open_box_with_keys(
            dir.path(),
            HAB_BOX_FOR_OUR_KEYS.as_bytes(),
            "redis.default@acme",
        )
        .unwrap();
        assert_eq!(opened.plaintext, b"port = 6380\n");
        assert_eq!(opened.sender, "ruby-20261206100918");
    }

    #[test]
    fn tampered_boxes_and_other_keys_are_refused() {
        let (user, user_public) = user_pair();
        let (service, service_public) = service_pair();
        let text = seal_box(b"a = 1\n", &user, &service_public, [5; 24]).unwrap();
        let sealed = parse_sealed_box(text.as_bytes()).unwrap();

        let mut flipped = sealed.clone();
        flipped.ciphertext[20] ^= 1;
        let mut other_nonce = sealed.clone();
        other_nonce.nonce[0] ^= 1;
        let mut cut = sealed.clone();
        cut.ciphertext.truncate(cut.ciphertext.len() - 1);
        for tampered in [flipped, other_nonce, cut] {
            let err = message(open_with(
                render_sealed_box(&tampered).as_bytes(),
                &service,
                &user_public,
            ));
            assert!(err.starts_with("cannot decrypt: "), "{err}");
            assert!(err.contains("does not authenticate"), "{err}");
        }

        // Another user's public key under the sender's name: the sender is not verified.
        let impostor = BoxSecretKey::new("ruby", "20260101000000", [9; BOX_KEY_LEN]).public_key();
        let err = message(open_with(text.as_bytes(), &service, &impostor));
        assert!(err.contains("does not authenticate"), "{err}");

        // A key cache answering with another revision than the one asked for.
        let newer = BoxSecretKey::new("redis.default@acme", "20270101000000", [8; BOX_KEY_LEN]);
        let err = message(open_with(text.as_bytes(), &newer, &user_public));
        assert!(
            err.contains("asked for key redis.default@acme-20260101000001"),
            "{err}"
        );
    }

    #[test]
    fn a_box_for_another_service_group_is_refused_before_any_key_is_read() {
        let (user, _) = user_pair();
        let (_, service_public) = service_pair();
        let text = seal_box(b"a = 1\n", &user, &service_public, [5; 24]).unwrap();
        let err = message(open_box(
            text.as_bytes(),
            "redis.prod@acme",
            |_| panic!("no key may be read"),
            |_| panic!("no key may be read"),
        ));
        assert_eq!(
            err,
            "cannot decrypt: sealed for redis.default@acme-20260101000001, not for \
             redis.prod@acme"
        );
    }

    #[test]
    fn missing_keys_are_named_with_the_file_expected() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path();
        let err = message(open_box_with_keys(
            keys,
            HAB_BOX_FOR_OUR_KEYS.as_bytes(),
            "redis.default@acme",
        ));
        assert_eq!(
            err,
            format!(
                "cannot decrypt: no secret key redis.default@acme-20261206100918 in {} to open \
                 it with (expected the file redis.default@acme-20261206100918.box.key there)",
                keys.display()
            )
        );
        fs::write(
            keys.join("redis.default@acme-20261206100918.box.key"),
            OUR_SVC_SECRET,
        )
        .unwrap();
        // Another revision of the user's key is no substitute.
        fs::write(keys.join("ruby-20261206100228.pub"), HAB_USER_PUBLIC).unwrap();
        let err = message(open_box_with_keys(
            keys,
            HAB_BOX_FOR_OUR_KEYS.as_bytes(),
            "redis.default@acme",
        ));
        assert_eq!(
            err,
            format!(
                "cannot decrypt: no public key ruby-20261206100918 in {} to verify the sender \
                 with (expected the file ruby-20261206100918.pub there)",
                keys.display()
            )
        );
        // A file under the right name holding another key is named, not trusted.
        fs::write(keys.join("ruby-20261206100918.pub"), HAB_USER_PUBLIC).unwrap();
        let err = message(open_box_with_keys(
            keys,
            HAB_BOX_FOR_OUR_KEYS.as_bytes(),
            "redis.default@acme",
        ));
        assert!(err.contains("ruby-20261206100918.pub"), "{err}");
        assert!(err.contains("line 2 says ruby-20261206100228"), "{err}");
    }

    #[test]
    fn keys_are_looked_up_at_exactly_the_revision_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        generate_box_key_pair(d, "ruby", at(1_600_000_000), [1; BOX_KEY_LEN]).unwrap();
        generate_box_key_pair(d, "ruby", at(1_700_000_000), [2; BOX_KEY_LEN]).unwrap();
        let old = box_secret_key_at(d, "ruby-20200913122640").unwrap();
        assert_eq!(old.key().to_bytes(), [1; BOX_KEY_LEN]);
        assert_eq!(
            box_public_key_at(d, "ruby-20231114221320").unwrap(),
            BoxSecretKey::new("ruby", "20231114221320", [2; BOX_KEY_LEN]).public_key()
        );
        assert!(matches!(
            box_secret_key_at(d, "ruby-20991231235959"),
            Err(Error::KeyNotFound {
                kind: "secret box",
                ..
            })
        ));
        for bad in [
            "ruby",
            "../ruby-20200913122640",
            "ruby-2020",
            ".x-20200913122640",
        ] {
            let err = message(box_secret_key_at(d, bad));
            assert!(
                err.contains("expected <name>-<YYYYMMDDhhmmss>"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn malformed_boxes_are_errors_naming_the_line() {
        let (user, _) = user_pair();
        let (_, service_public) = service_pair();
        let good = seal_box(b"a = 1\n", &user, &service_public, [5; 24]).unwrap();
        let lines: Vec<&str> = good.split('\n').collect();
        let with_line = |index: usize, replacement: &str| {
            let mut l = lines.clone();
            l[index] = replacement;
            l.join("\n")
        };
        let cases = [
            (String::new(), "line 1: expected BOX-1, found none"),
            (
                with_line(0, "BOX-2"),
                "expected first line BOX-1, found BOX-2",
            ),
            (
                "ANONYMOUS-BOX-1\nfhloston-paradise-20200813211603\nAAAA".to_owned(),
                "names no sender",
            ),
            (
                lines[..3].join("\n"),
                "line 4: expected the nonce in base64, found none",
            ),
            (
                lines[..4].join("\n"),
                "line 5: expected the ciphertext in base64, found none",
            ),
            (
                with_line(1, "ruby"),
                "line 2: expected the sender's key as <name>-<YYYYMMDDhhmmss>, found \"ruby\"",
            ),
            (
                with_line(2, "../../etc/passwd-20260101000000"),
                "line 3: expected the recipient's key as <name>-<YYYYMMDDhhmmss>, found a",
            ),
            (
                with_line(3, "!!!!"),
                "line 4: the nonce is not valid base64",
            ),
            (
                with_line(3, "AAAAAAAAAAAAAAAA"),
                "line 4: the nonce is 12 bytes, expected 24",
            ),
            (
                with_line(4, "%%%"),
                "line 5: the ciphertext is not valid base64",
            ),
            (
                with_line(4, "AAAA"),
                "line 5: the ciphertext is 3 bytes, shorter",
            ),
            (
                format!("{good}\nmore"),
                "line 6: expected the end of the message",
            ),
        ];
        for (text, expected) in cases {
            let err = message(parse_sealed_box(text.as_bytes()));
            assert!(err.starts_with("cannot decrypt: "), "{err}");
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = message(parse_sealed_box(b"BOX-1\n\xff\n"));
        assert!(err.contains("not UTF-8 at offset 6"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_or_opening_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let (_, user_public) = user_pair();
            let (service, _) = service_pair();
            let _ = open_with(&bytes, &service, &user_public);
        }

        #[test]
        fn a_bit_flipped_anywhere_in_a_box_is_refused_or_changes_nothing(index in 0usize..200, bit in 0u8..8) {
            let (user, user_public) = user_pair();
            let (service, service_public) = service_pair();
            let text = seal_box(b"secret = 1\n", &user, &service_public, [5; 24]).unwrap();
            let mut bytes = text.into_bytes();
            let index = index % bytes.len();
            bytes[index] ^= 1 << bit;
            let opened = open_with(&bytes, &service, &user_public);
            // Some flips keep the same meaning (a base64 padding bit, CR before a line end).
            if let Ok(opened) = opened {
                proptest::prop_assert_eq!(opened.plaintext, b"secret = 1\n".to_vec());
            }
        }
    }
}
