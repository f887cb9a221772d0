//! Box (encryption) key pairs in Habitat's `BOX-SEC-1` / `BOX-PUB-1` formats: a service group's,
//! named `SVC.GROUP@ORG` (or `SVC.GROUP` without an organization), and a user's, named `USER`.
//!
//! The keys are Curve25519 keys as libsodium's `crypto_box` makes them: 32 random secret bytes,
//! the public key their X25519 product with the base point. Both files of a pair share one
//! `<name>-<revision>`; neither is ever overwritten, and the secret one is created 0600.

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
}
