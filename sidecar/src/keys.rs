//! Ring key files in Habitat's `SYM-SEC-1` format, under `<root>/cache/keys`.
//!
//! A key file is never overwritten: a new key is a new revision (its UTC creation second), written
//! atomically with mode 0600. Errors name the file and the expected form, and never echo text that
//! could be key material.
//!
//! Box (encryption) key pairs, `BOX-SEC-1` / `BOX-PUB-1`, live in the submodule `box_key`.

mod box_key;

pub use box_key::*;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::error::{Error, Result};
use crate::gossip::crypto::{RingKey, KEY_LEN};

/// First line of a ring key file.
pub const SYM_KEY_HEADER: &str = "SYM-SEC-1";
/// Ring key file names end with this.
pub const SYM_KEY_SUFFIX: &str = ".sym.key";
const REVISION_LEN: usize = 14;
const MAX_NAME_LEN: usize = 255;

/// `<root>/cache/keys`, where Habitat keeps its keys.
pub fn keys_dir(root: &Path) -> PathBuf {
    root.join("cache").join("keys")
}

/// `<keys_dir>/<name>-<revision>.sym.key`.
pub fn sym_key_path(keys_dir: &Path, key: &RingKey) -> PathBuf {
    keys_dir.join(format!("{}{SYM_KEY_SUFFIX}", key.name_with_rev()))
}

/// Habitat names: 1 to 255 characters from `A-Z a-z 0-9 _ -`.
pub fn validate_key_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(Error::invalid(
            format!("key name {:?}", truncated(name)),
            "expected 1 to 255 characters from A-Z a-z 0-9 _ -",
        ));
    }
    Ok(())
}

/// Parses a `SYM-SEC-1` file. `source_name` (a path, or `HAB_RING_KEY`) appears in every error.
/// Accepts CRLF line ends and trailing blank lines.
pub fn parse_sym_key(content: &str, source_name: &str) -> Result<RingKey> {
    let (name, revision, secret) = parse_key_text(content, source_name, SYM_KEY_HEADER, |name| {
        validate_key_name(name).is_ok()
    })?;
    Ok(RingKey::new(name, revision, secret))
}

/// The four lines every Habitat key file has: `header`, `<name>-<YYYYMMDDhhmmss>`, an empty line,
/// an `N`-byte key in base64 (32 for ring and box keys, 32 or 64 for signing keys). Returns (name,
/// revision, key bytes); `name_ok` judges the name.
pub(crate) fn parse_key_text<'a, const N: usize>(
    content: &'a str,
    source_name: &str,
    header: &str,
    name_ok: impl Fn(&str) -> bool,
) -> Result<(&'a str, &'a str, [u8; N])> {
    let problem = |problem: String| Error::KeyFile {
        source_name: source_name.to_owned(),
        problem,
    };
    let mut lines = content.lines().map(str::trim_end);

    match lines.next() {
        Some(line) if line == header => {}
        Some(other) => {
            return Err(problem(format!(
                "expected first line {header}, found {}",
                describe(other, false)
            )))
        }
        None => {
            return Err(problem(format!(
                "expected first line {header}, found an empty file"
            )))
        }
    }

    let Some(name_with_rev) = lines.next() else {
        return Err(problem(
            "line 2: expected <name>-<YYYYMMDDhhmmss>, found end of file".to_owned(),
        ));
    };
    let bad_line_2 = || {
        problem(format!(
            "line 2: expected <name>-<YYYYMMDDhhmmss>, found {}",
            describe(name_with_rev, true)
        ))
    };
    let (name, revision) = name_with_rev.rsplit_once('-').ok_or_else(bad_line_2)?;
    if !is_revision(revision) || !name_ok(name) {
        return Err(bad_line_2());
    }

    match lines.next() {
        Some("") => {}
        Some(other) => {
            return Err(problem(format!(
                "line 3: expected an empty line, found {}",
                describe(other, true)
            )))
        }
        None => {
            return Err(problem(
                "line 3: expected an empty line, found end of file".to_owned(),
            ))
        }
    }

    let Some(encoded) = lines.next().map(str::trim_start) else {
        return Err(problem(
            "line 4: expected the key in base64, found end of file".to_owned(),
        ));
    };
    // The decoder's message would quote the offending byte of a secret; keep it out of logs.
    let key = STANDARD.decode(encoded).map_err(|_| {
        problem("line 4: key is not valid base64 (standard alphabet, padded)".to_owned())
    })?;
    let key: [u8; N] = key
        .as_slice()
        .try_into()
        .map_err(|_| problem(format!("line 4: key is {} bytes, expected {N}", key.len())))?;

    if let Some((index, _)) = lines.enumerate().find(|(_, line)| !line.is_empty()) {
        return Err(problem(format!(
            "line {}: expected end of file after the key, found more text",
            index + 5
        )));
    }
    Ok((name, revision, key))
}

/// The file content for `key`, with a trailing newline.
pub fn render_sym_key(key: &RingKey) -> String {
    format!(
        "{SYM_KEY_HEADER}\n{}\n\n{}\n",
        key.name_with_rev(),
        STANDARD.encode(key.secret())
    )
}

/// `YYYYMMDDhhmmss` in UTC. Times before 1970 are clamped to the epoch.
pub fn revision_from_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Creates a new revision of ring key `name` from `random`, revision `now`.
pub fn generate_ring_key(
    keys_dir: &Path,
    name: &str,
    now: SystemTime,
    random: [u8; KEY_LEN],
) -> Result<(RingKey, PathBuf)> {
    validate_key_name(name)?;
    let key = RingKey::new(name, &revision_from_time(now), random);
    let path = sym_key_path(keys_dir, &key);
    write_new_key_file(keys_dir, &path, render_sym_key(&key).as_bytes(), 0o600)?;
    Ok((key, path))
}

/// Writes `content` to `path` (in `keys_dir`) with `mode`: first to a temporary file in
/// `keys_dir`, synced, then linked into place, so readers see either no file or the whole key; an
/// existing file (same name, same second) is never replaced.
pub(crate) fn write_new_key_file(
    keys_dir: &Path,
    path: &Path,
    content: &[u8],
    mode: u32,
) -> Result<()> {
    fs::create_dir_all(keys_dir).map_err(|e| Error::io(keys_dir, e))?;
    if path.exists() {
        return Err(already_exists(path));
    }

    static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = keys_dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written =
        write_new_file(&temp, content, mode).and_then(|()| link_without_overwrite(&temp, path));
    // The temporary name is never needed again, whatever happened.
    let _ = fs::remove_file(&temp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(already_exists(path)),
        Err(e) => return Err(Error::io(path, e)),
    }
    sync_dir(keys_dir).map_err(|e| Error::io(keys_dir, e))
}

pub(crate) fn already_exists(path: &Path) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "key file already exists; refusing to overwrite it (one revision per second)",
        ),
    )
}

fn write_new_file(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Moves `from` to `to` unless `to` exists. A hard link refuses atomically; where the file system
/// has no hard links, fall back to check-then-rename.
fn link_without_overwrite(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if to.exists() => Err(io::ErrorKind::AlreadyExists.into()),
        Err(_) => fs::rename(from, to),
    }
}

/// Makes the new directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Every revision of ring key `name` in `keys_dir`, newest first.
///
/// Only files named `<name>-<YYYYMMDDhhmmss>.sym.key` count, and line 2 of each must repeat that
/// name and revision. A malformed file is an error naming it, rather than silently skipped.
pub fn load_ring_keys(keys_dir: &Path, name: &str) -> Result<Vec<RingKey>> {
    validate_key_name(name)?;
    let mut keys = Vec::new();
    for (revision, path) in key_files(keys_dir, name, SYM_KEY_SUFFIX)? {
        let source_name = path.display().to_string();
        let content = read_key_text(&path, SYM_KEY_HEADER)?;
        let key = parse_sym_key(&content, &source_name)?;
        check_matches_file_name(&source_name, key.name(), key.revision(), name, &revision)?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(Error::KeyNotFound {
            kind: "ring",
            name: name.to_owned(),
            dir: keys_dir.to_owned(),
        });
    }
    Ok(keys)
}

/// (revision, path) of every file `<name>-<YYYYMMDDhhmmss><suffix>` in `keys_dir`, newest first;
/// none when the directory does not exist.
pub(crate) fn key_files(
    keys_dir: &Path,
    name: &str,
    suffix: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(keys_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(keys_dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(keys_dir, e))?;
        let file_name = entry.file_name();
        if let Some(revision) = file_name
            .to_str()
            .and_then(|f| revision_in_file_name(f, name, suffix))
        {
            files.push((revision.to_owned(), entry.path()));
        }
    }
    files.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(files)
}

pub(crate) fn read_key_text(path: &Path, header: &str) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::KeyFile {
        source_name: path.display().to_string(),
        problem: format!("expected UTF-8 text starting with {header}"),
    })
}

/// Line 2 of a key file must repeat the name and revision its file name gives.
pub(crate) fn check_matches_file_name(
    source_name: &str,
    name: &str,
    revision: &str,
    file_name: &str,
    file_revision: &str,
) -> Result<()> {
    if name == file_name && revision == file_revision {
        return Ok(());
    }
    Err(Error::KeyFile {
        source_name: source_name.to_owned(),
        problem: format!(
            "line 2 says {name}-{revision}, expected {file_name}-{file_revision} to match the file \
             name"
        ),
    })
}

/// The revision in `<name>-<14 digits><suffix>`, if `file_name` has that form for `name`.
fn revision_in_file_name<'a>(file_name: &'a str, name: &str, suffix: &str) -> Option<&'a str> {
    let revision = file_name
        .strip_suffix(suffix)?
        .strip_prefix(name)?
        .strip_prefix('-')?;
    is_revision(revision).then_some(revision)
}

pub(crate) fn is_revision(s: &str) -> bool {
    s.len() == REVISION_LEN && s.bytes().all(|b| b.is_ascii_digit())
}

/// Shows a line in an error only when it looks like a header or a name, never like key material
/// (base64 of a 32-byte key always ends in `=`, outside the alphabet shown).
pub(crate) fn describe(line: &str, quoted: bool) -> String {
    let safe = line.len() <= 64
        && !line.is_empty()
        && line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    match (safe, quoted) {
        (true, true) => format!("{line:?}"),
        (true, false) => line.to_owned(),
        (false, _) if line.is_empty() => "an empty line".to_owned(),
        (false, _) => format!("a {}-character line", line.chars().count()),
    }
}

pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    const SECRET_B64: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn revision_is_utc_yyyymmddhhmmss() {
        assert_eq!(revision_from_time(at(0)), "19700101000000");
        assert_eq!(revision_from_time(at(1_700_000_000)), "20231114221320");
        // 2024-02-29 12:34:56 UTC, a leap day, and the day after.
        assert_eq!(revision_from_time(at(1_709_210_096)), "20240229123456");
        assert_eq!(revision_from_time(at(1_709_251_200)), "20240301000000");
        // 2000 is a leap year (divisible by 400), 2100 is not.
        assert_eq!(revision_from_time(at(951_782_400)), "20000229000000");
        assert_eq!(revision_from_time(at(4_107_542_400)), "21000301000000");
        assert_eq!(revision_from_time(at(1_767_225_599)), "20251231235959");
        assert_eq!(
            revision_from_time(UNIX_EPOCH - Duration::from_secs(5)),
            "19700101000000"
        );
    }

    #[test]
    fn render_then_parse_round_trips() {
        let key = RingKey::new("prod", "20260101000000", [1; KEY_LEN]);
        let text = render_sym_key(&key);
        assert_eq!(
            text,
            format!("SYM-SEC-1\nprod-20260101000000\n\n{SECRET_B64}\n")
        );
        let parsed = parse_sym_key(&text, "HAB_RING_KEY").unwrap();
        assert_eq!(parsed.name_with_rev(), "prod-20260101000000");
        assert_eq!(parsed.secret(), key.secret());
        assert_eq!(parsed.id(), key.id());
    }

    #[test]
    fn parse_accepts_crlf_and_missing_trailing_newline() {
        let crlf = format!("SYM-SEC-1\r\nprod-20260101000000\r\n\r\n{SECRET_B64}\r\n");
        assert_eq!(parse_sym_key(&crlf, "x").unwrap().secret(), &[1; KEY_LEN]);
        let bare = format!("SYM-SEC-1\nprod-20260101000000\n\n{SECRET_B64}");
        assert_eq!(parse_sym_key(&bare, "x").unwrap().name(), "prod");
        let dashed = format!("SYM-SEC-1\nmy-ring-20260101000000\n\n{SECRET_B64}\n\n");
        assert_eq!(parse_sym_key(&dashed, "x").unwrap().name(), "my-ring");
    }

    #[test]
    fn wrong_header_is_named() {
        let text = format!("BOX-SEC-1\nprod-20260101000000\n\n{SECRET_B64}\n");
        assert_eq!(
            message(parse_sym_key(
                &text,
                "/hab/cache/keys/prod-20260101000000.sym.key"
            )),
            "key /hab/cache/keys/prod-20260101000000.sym.key: \
             expected first line SYM-SEC-1, found BOX-SEC-1"
        );
        assert_eq!(
            message(parse_sym_key("", "HAB_RING_KEY")),
            "key HAB_RING_KEY: expected first line SYM-SEC-1, found an empty file"
        );
    }

    #[test]
    fn malformed_name_line_is_named() {
        let text = format!("SYM-SEC-1\nfoo\n\n{SECRET_B64}\n");
        assert_eq!(
            message(parse_sym_key(&text, "k")),
            "key k: line 2: expected <name>-<YYYYMMDDhhmmss>, found \"foo\""
        );
        let short_rev = format!("SYM-SEC-1\nprod-2026\n\n{SECRET_B64}\n");
        assert!(message(parse_sym_key(&short_rev, "k")).contains("line 2"));
        let bad_name = format!("SYM-SEC-1\npr od-20260101000000\n\n{SECRET_B64}\n");
        assert!(message(parse_sym_key(&bad_name, "k")).contains("line 2"));
        let no_blank = format!("SYM-SEC-1\nprod-20260101000000\n{SECRET_B64}\n");
        assert_eq!(
            message(parse_sym_key(&no_blank, "k")),
            "key k: line 3: expected an empty line, found a 44-character line"
        );
    }

    #[test]
    fn bad_base64_is_named_without_echoing_the_key() {
        let text = "SYM-SEC-1\nprod-20260101000000\n\nnot*base64!\n";
        assert_eq!(
            message(parse_sym_key(text, "k")),
            "key k: line 4: key is not valid base64 (standard alphabet, padded)"
        );
        let missing = "SYM-SEC-1\nprod-20260101000000\n\n";
        assert!(message(parse_sym_key(missing, "k")).contains("line 4"));
        // A key pasted where the name belongs is not repeated into logs.
        let swapped = format!("SYM-SEC-1\n{SECRET_B64}\n\nprod-20260101000000\n");
        let err = message(parse_sym_key(&swapped, "k"));
        assert!(!err.contains(SECRET_B64), "{err}");
    }

    #[test]
    fn wrong_key_length_is_named() {
        let text = format!(
            "SYM-SEC-1\nprod-20260101000000\n\n{}\n",
            STANDARD.encode([7u8; 16])
        );
        assert_eq!(
            message(parse_sym_key(&text, "k")),
            "key k: line 4: key is 16 bytes, expected 32"
        );
        let trailing = format!("SYM-SEC-1\nprod-20260101000000\n\n{SECRET_B64}\n\nextra\n");
        assert_eq!(
            message(parse_sym_key(&trailing, "k")),
            "key k: line 6: expected end of file after the key, found more text"
        );
    }

    #[test]
    fn key_names_follow_habitat_rules() {
        for good in ["prod", "my_ring-2", "A", &"x".repeat(255)] {
            assert!(validate_key_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "has space",
            "dot.ted",
            "slash/es",
            "ünï",
            &"x".repeat(256),
        ] {
            assert!(validate_key_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            message(validate_key_name("a b")),
            "key name \"a b\": expected 1 to 255 characters from A-Z a-z 0-9 _ -"
        );
    }

    #[test]
    fn generated_key_loads_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = keys_dir(root.path());
        let (key, path) = generate_ring_key(&dir, "prod", at(1_700_000_000), [5; KEY_LEN]).unwrap();
        assert_eq!(path, dir.join("prod-20231114221320.sym.key"));
        assert_eq!(fs::read_to_string(&path).unwrap(), render_sym_key(&key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = load_ring_keys(&dir, "prod").unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].name_with_rev(), "prod-20231114221320");
        assert_eq!(loaded[0].secret(), &[5; KEY_LEN]);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn load_returns_newest_revision_first_and_ignores_other_names() {
        let dir = tempfile::tempdir().unwrap();
        generate_ring_key(dir.path(), "prod", at(1_600_000_000), [1; KEY_LEN]).unwrap();
        generate_ring_key(dir.path(), "prod", at(1_700_000_000), [2; KEY_LEN]).unwrap();
        generate_ring_key(dir.path(), "prod-east", at(1_800_000_000), [3; KEY_LEN]).unwrap();
        fs::write(dir.path().join("prod-20260101000000.box.key"), "x").unwrap();
        let keys = load_ring_keys(dir.path(), "prod").unwrap();
        let revisions: Vec<_> = keys.iter().map(RingKey::revision).collect();
        assert_eq!(revisions, ["20231114221320", "20200913122640"]);
        assert_eq!(load_ring_keys(dir.path(), "prod-east").unwrap().len(), 1);
    }

    #[test]
    fn load_without_keys_is_key_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_ring_keys(dir.path(), "prod").unwrap_err();
        assert!(
            matches!(err, Error::KeyNotFound { kind: "ring", .. }),
            "{err}"
        );
        let missing = dir.path().join("nope");
        assert!(matches!(
            load_ring_keys(&missing, "prod"),
            Err(Error::KeyNotFound { .. })
        ));
    }

    #[test]
    fn malformed_file_in_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prod-20260101000000.sym.key");
        fs::write(&path, "BOX-SEC-1\n").unwrap();
        let err = message(load_ring_keys(dir.path(), "prod"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("found BOX-SEC-1"), "{err}");
    }

    #[test]
    fn file_name_must_match_line_2() {
        let dir = tempfile::tempdir().unwrap();
        let key = RingKey::new("prod", "20250101000000", [1; KEY_LEN]);
        let path = dir.path().join("prod-20260101000000.sym.key");
        fs::write(&path, render_sym_key(&key)).unwrap();
        let err = message(load_ring_keys(dir.path(), "prod"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("line 2 says prod-20250101000000, expected prod-20260101000000"),
            "{err}"
        );
    }

    #[test]
    fn existing_key_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) =
            generate_ring_key(dir.path(), "prod", at(1_700_000_000), [1; KEY_LEN]).unwrap();
        let before = fs::read_to_string(&path).unwrap();
        let err =
            generate_ring_key(dir.path(), "prod", at(1_700_000_000), [2; KEY_LEN]).unwrap_err();
        match &err {
            Error::Io { source, .. } => assert_eq!(source.kind(), io::ErrorKind::AlreadyExists),
            other => panic!("unexpected error {other}"),
        }
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn generate_refuses_invalid_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(generate_ring_key(dir.path(), "../evil", at(0), [1; KEY_LEN]).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
