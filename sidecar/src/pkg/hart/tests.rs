#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pkg::keys::{generate_origin_key_pair, render_sig_public_key};
use std::time::{Duration, UNIX_EPOCH};

const IDENT: &str = "acme/web/1.2.3/20260101000000";

/// A key cache holding `acme`'s pair, and the secret key.
fn key_cache() -> (tempfile::TempDir, SigSecretKey) {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_origin_key_pair(
        dir.path(),
        "acme",
        UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        [11; 32],
    )
    .unwrap();
    (dir, pair.secret)
}

/// A package directory with a hook, config, a subdirectory and an internal symlink.
fn package_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("web");
    fs::create_dir_all(dir.join("hooks")).unwrap();
    fs::create_dir_all(dir.join("config")).unwrap();
    fs::create_dir_all(dir.join("share/doc")).unwrap();
    fs::write(dir.join("IDENT"), format!("{IDENT}\n")).unwrap();
    fs::write(dir.join("default.toml"), "port = 8080\n").unwrap();
    fs::write(dir.join("hooks/run"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    fs::set_permissions(dir.join("hooks/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("config/web.conf"), "port={{cfg.port}}\n").unwrap();
    fs::write(dir.join("share/doc/README"), "hello\n").unwrap();
    std::os::unix::fs::symlink("doc/README", dir.join("share/README")).unwrap();
    dir
}

fn built(key: &SigSecretKey) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let pkg = package_dir(work.path());
    let hart = build_hart(&pkg, key, &work.path().join("out")).unwrap();
    (work, hart)
}

fn message(r: Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().to_string()
}

/// Nothing at all under `root` (a refused install leaves no trace).
fn assert_empty(root: &Path) {
    let left: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A .hart signed by `key` around any payload bytes (an xz stream, or garbage).
fn sign_payload(payload: &[u8], key: &SigSecretKey, path: &Path) {
    let hash = lower_hex(&Hasher::digest(payload));
    let mut bytes = header_text(key.name_rev(), &key.sign_combined(hash.as_bytes())).into_bytes();
    bytes.extend_from_slice(payload);
    fs::write(path, bytes).unwrap();
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Tar entries written byte for byte, so that the test can put in what `tar::Builder` refuses
/// to write (`..`, absolute paths, devices).
struct RawTar(tar::Builder<Vec<u8>>);

impl RawTar {
    fn new() -> Self {
        RawTar(tar::Builder::new(Vec::new()))
    }

    fn entry(&mut self, path: &str, kind: tar::EntryType, data: &[u8], link: &str) -> &mut Self {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..path.len()].copy_from_slice(path.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn file(&mut self, path: &str, data: &str) -> &mut Self {
        self.entry(path, tar::EntryType::Regular, data.as_bytes(), "")
    }

    fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(path, tar::EntryType::Directory, b"", "")
    }

    /// The start of a valid package: its directory and IDENT.
    fn package(&mut self) -> &mut Self {
        self.dir(&format!("hab/pkgs/{IDENT}/"))
            .file(&format!("hab/pkgs/{IDENT}/IDENT"), IDENT)
    }

    fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// Signs `tar` (xz-compressed) with `key`, installs it into a fresh root and returns the error,
/// having checked that the root stayed empty.
fn install_refused(tar: Vec<u8>, key: &SigSecretKey, cache: &Path) -> String {
    let work = tempfile::tempdir().unwrap();
    let hart = work.path().join("bad.hart");
    sign_payload(&xz(&tar), key, &hart);
    let root = tempfile::tempdir().unwrap();
    let err = message(install(&hart, root.path(), cache));
    assert_empty(root.path());
    err
}

#[test]
fn file_names_follow_habitat() {
    let ident: PackageIdent = IDENT.parse().unwrap();
    assert_eq!(
        hart_file_name(&ident),
        "acme-web-1.2.3-20260101000000-x86_64-linux.hart"
    );
}

#[test]
fn a_built_package_verifies_and_installs_with_its_modes_and_links() {
    let (cache, key) = key_cache();
    let (work, hart) = built(&key);
    assert_eq!(
        hart.file_name().unwrap(),
        "acme-web-1.2.3-20260101000000-x86_64-linux.hart"
    );
    // Nothing but the .hart in the output directory.
    assert_eq!(fs::read_dir(hart.parent().unwrap()).unwrap().count(), 1);

    let header = read_header(&hart).unwrap();
    assert_eq!(header.signer, "acme-20260101000000");
    assert_eq!(header.signature.len(), 128);
    let text = fs::read(&hart).unwrap();
    assert!(text.starts_with(
        format!(
            "HART-1\nacme-20260101000000\nBLAKE2b\n{}\n\n",
            header.encoded_signature()
        )
        .as_bytes()
    ));
    // The payload is an xz stream.
    assert_eq!(
        &text[header.payload_offset as usize..][..6],
        b"\xfd7zXZ\x00"
    );

    let ident: PackageIdent = IDENT.parse().unwrap();
    assert_eq!(read_ident(&hart).unwrap(), ident);
    assert_eq!(verify(&hart, cache.path()).unwrap(), ident);

    let root = tempfile::tempdir().unwrap();
    let dest = install(&hart, root.path(), cache.path()).unwrap();
    assert_eq!(dest, root.path().join("pkgs").join(IDENT));
    let src = work.path().join("web");
    for file in [
        "IDENT",
        "default.toml",
        "hooks/run",
        "config/web.conf",
        "share/doc/README",
    ] {
        assert_eq!(
            fs::read(dest.join(file)).unwrap(),
            fs::read(src.join(file)).unwrap(),
            "{file}"
        );
    }
    // Habitat's tools need TARGET; the build adds it when the directory has none.
    assert_eq!(
        fs::read_to_string(dest.join("TARGET")).unwrap(),
        "x86_64-linux\n"
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest.join("hooks/run")), 0o755);
    assert_eq!(mode(&dest.join("default.toml")), 0o644);
    assert_eq!(
        fs::read_link(dest.join("share/README")).unwrap(),
        Path::new("doc/README")
    );
    assert_eq!(
        fs::read_to_string(dest.join("share/README")).unwrap(),
        "hello\n"
    );
    // Only the package: no staging directory left beside it.
    assert_eq!(fs::read_dir(root.path().join("pkgs")).unwrap().count(), 1);
    // It loads as a package.
    assert_eq!(Package::load(&dest).unwrap().ident, ident);

    // Installing again is fine and changes nothing.
    fs::write(dest.join("marker"), "kept").unwrap();
    assert_eq!(install(&hart, root.path(), cache.path()).unwrap(), dest);
    assert_eq!(fs::read_to_string(dest.join("marker")).unwrap(), "kept");
}

#[test]
fn staging_left_by_a_crashed_install_is_removed_once_old() {
    let (cache, key) = key_cache();
    let (_work, hart) = built(&key);
    let root = tempfile::tempdir().unwrap();
    let pkgs = root.path().join("pkgs");
    let old = pkgs.join(".install-1-0.hab-tmp");
    let recent = pkgs.join(".install-2-0.hab-tmp");
    for dir in [&old, &recent] {
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/f"), "x").unwrap();
    }
    // Read-only inside, as a crash after the modes were applied would leave it.
    fs::set_permissions(old.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    File::open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    install(&hart, root.path(), cache.path()).unwrap();
    assert!(!old.exists(), "the old staging directory is gone");
    assert!(
        recent.exists(),
        "a recent one may belong to an install still running"
    );
}

#[test]
fn builds_are_reproducible_for_the_same_tree() {
    let (_cache, key) = key_cache();
    let work = tempfile::tempdir().unwrap();
    let pkg = package_dir(work.path());
    let a = fs::read(build_hart(&pkg, &key, &work.path().join("a")).unwrap()).unwrap();
    let b = fs::read(build_hart(&pkg, &key, &work.path().join("b")).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn build_needs_a_fully_qualified_ident_and_a_key_of_its_origin() {
    let (_cache, key) = key_cache();
    let work = tempfile::tempdir().unwrap();
    let pkg = package_dir(work.path());
    fs::write(pkg.join("IDENT"), "acme/web\n").unwrap();
    let err = message(build_hart(&pkg, &key, work.path()));
    assert!(err.contains("fully qualified ident"), "{err}");
    fs::write(pkg.join("IDENT"), "other/web/1/2\n").unwrap();
    let err = message(build_hart(&pkg, &key, work.path()));
    assert!(
        err.contains("origin is other") && err.contains("acme-20260101000000"),
        "{err}"
    );
    assert!(!work.path().join("other-web-1-2-x86_64-linux.hart").exists());
}

#[test]
fn a_tampered_payload_is_refused_before_anything_is_unpacked() {
    let (cache, key) = key_cache();
    let (_work, hart) = built(&key);
    let mut bytes = fs::read(&hart).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x40;
    fs::write(&hart, &bytes).unwrap();
    let err = message(verify(&hart, cache.path()));
    assert!(
        err.contains("BLAKE2b hash is") && err.contains(&hart.display().to_string()),
        "{err}"
    );
    let root = tempfile::tempdir().unwrap();
    let err = message(install(&hart, root.path(), cache.path()));
    assert!(err.contains("changed or truncated after signing"), "{err}");
    assert_empty(root.path());
}

#[test]
fn a_truncated_file_is_refused() {
    let (cache, key) = key_cache();
    let (_work, hart) = built(&key);
    let bytes = fs::read(&hart).unwrap();
    let root = tempfile::tempdir().unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 200, 30, 0] {
        fs::write(&hart, &bytes[..cut]).unwrap();
        let err = message(install(&hart, root.path(), cache.path()));
        assert!(err.contains(&hart.display().to_string()), "{cut}: {err}");
        assert_empty(root.path());
    }
}

#[test]
fn a_signed_but_truncated_archive_is_refused_and_leaves_nothing() {
    let (cache, key) = key_cache();
    let mut tar = RawTar::new();
    tar.package()
        .file(&format!("hab/pkgs/{IDENT}/big"), &"x".repeat(100_000));
    let compressed = xz(&tar.finish());
    let work = tempfile::tempdir().unwrap();
    let hart = work.path().join("cut.hart");
    // Signed after cutting, so the signature is good and the unpacker must notice.
    sign_payload(&compressed[..compressed.len() - 30], &key, &hart);
    verify_signature(&hart, cache.path()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let err = message(install(&hart, root.path(), cache.path()));
    assert!(err.contains("not a complete xz-compressed tar"), "{err}");
    assert_empty(root.path());
}

#[test]
fn a_signature_by_another_key_of_the_same_name_is_refused() {
    let (cache, _key) = key_cache();
    // Same origin and revision, other key material: what a forger would try.
    let forger = SigSecretKey::from_seed("acme", "20260101000000", [66; 32]);
    let (_work, hart) = built(&forger);
    let err = message(verify(&hart, cache.path()));
    assert!(
        err.contains("does not verify with public key acme-20260101000000"),
        "{err}"
    );
    let root = tempfile::tempdir().unwrap();
    assert!(install(&hart, root.path(), cache.path()).is_err());
    assert_empty(root.path());
}

#[test]
fn an_unknown_key_is_named_with_how_to_import_it() {
    let (_cache, key) = key_cache();
    let (_work, hart) = built(&key);
    let empty = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let err = message(install(&hart, root.path(), empty.path()));
    assert!(
        err.contains(&format!(
            "public key acme-20260101000000 not in {}; import it with `hab origin key import",
            empty.path().display()
        )),
        "{err}"
    );
    assert_empty(root.path());
    // Once imported, it installs.
    let public = render_sig_public_key(&key.public_key());
    crate::pkg::keys::import_key(&public, "test", empty.path()).unwrap();
    install(&hart, root.path(), empty.path()).unwrap();
}

#[test]
fn entries_escaping_the_package_directory_are_refused() {
    let (cache, key) = key_cache();
    let p = |rest: &str| format!("hab/pkgs/{IDENT}/{rest}");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            RawTar::new()
                .package()
                .file(&p("../../../../../../etc/evil"), "x")
                .finish(),
            "contains \"..\"",
        ),
        (
            RawTar::new().package().file("/etc/evil", "x").finish(),
            "is an absolute path",
        ),
        (
            RawTar::new().package().file("etc/evil", "x").finish(),
            "is outside hab/pkgs/",
        ),
        (
            RawTar::new().file("hab/pkgs/acme", "x").package().finish(),
            "is outside hab/pkgs/",
        ),
        (
            RawTar::new()
                .package()
                .entry(
                    &p("lib"),
                    tar::EntryType::Symlink,
                    b"",
                    "../../../../../../etc",
                )
                .finish(),
            "a symlink to \"../../../../../../etc\", outside the package directory",
        ),
        (
            RawTar::new()
                .package()
                .entry(&p("passwd"), tar::EntryType::Symlink, b"", "/etc/passwd")
                .finish(),
            "outside the package directory",
        ),
        (
            // `up -> ..` stays inside, but `x -> up/..` would climb out through it.
            RawTar::new()
                .package()
                .dir(&p("sub/"))
                .entry(&p("sub/up"), tar::EntryType::Symlink, b"", "..")
                .entry(&p("sub/x"), tar::EntryType::Symlink, b"", "up/..")
                .finish(),
            "a symlink to \"up/..\"",
        ),
        (
            // A symlink inside the package, then a file written "through" it.
            RawTar::new()
                .package()
                .dir(&p("real/"))
                .entry(&p("lnk"), tar::EntryType::Symlink, b"", "real")
                .file(&p("lnk/file"), "x")
                .finish(),
            "lnk is not a directory",
        ),
        (
            RawTar::new()
                .package()
                .entry(&p("shadow"), tar::EntryType::Link, b"", "/etc/shadow")
                .finish(),
            "is an absolute path",
        ),
        (
            RawTar::new()
                .package()
                .entry(
                    &p("shadow"),
                    tar::EntryType::Link,
                    b"",
                    "hab/pkgs/acme/other/1/2/IDENT",
                )
                .finish(),
            "a hard link to \"hab/pkgs/acme/other/1/2/IDENT\", outside the package directory",
        ),
        (
            RawTar::new()
                .package()
                .entry(&p("null"), tar::EntryType::Char, b"", "")
                .finish(),
            "devices, fifos and sparse files are not allowed",
        ),
        (
            RawTar::new()
                .package()
                .entry(&p("fifo"), tar::EntryType::Fifo, b"", "")
                .finish(),
            "devices, fifos and sparse files are not allowed",
        ),
        (
            RawTar::new()
                .package()
                .dir("hab/pkgs/acme/other/1.0/20260101000000/")
                .finish(),
            "more than one package",
        ),
        (
            RawTar::new()
                .dir(&p(""))
                .file(&p("IDENT"), "acme/web/9/9")
                .finish(),
            "IDENT says acme/web/9/9",
        ),
        (RawTar::new().dir(&p("")).finish(), "no IDENT file"),
        (RawTar::new().dir("hab/pkgs/").finish(), "holds no package"),
    ];
    for (tar, expected) in cases {
        let err = install_refused(tar, &key, cache.path());
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}

#[test]
fn hard_links_and_symlinks_within_the_package_are_kept() {
    let (cache, key) = key_cache();
    let p = |rest: &str| format!("hab/pkgs/{IDENT}/{rest}");
    let tar = RawTar::new()
        .package()
        .dir(&p("bin/"))
        .file(&p("bin/tool"), "#!/bin/sh\n")
        .entry(&p("bin/alias"), tar::EntryType::Link, b"", &p("bin/tool"))
        .entry(&p("bin/up"), tar::EntryType::Symlink, b"", "../IDENT")
        .finish();
    let work = tempfile::tempdir().unwrap();
    let hart = work.path().join("ok.hart");
    sign_payload(&xz(&tar), &key, &hart);
    let root = tempfile::tempdir().unwrap();
    let dest = install(&hart, root.path(), cache.path()).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("bin/alias")).unwrap(),
        "#!/bin/sh\n"
    );
    assert_eq!(fs::read_to_string(dest.join("bin/up")).unwrap(), IDENT);
}

#[test]
fn malformed_headers_name_the_line() {
    let work = tempfile::tempdir().unwrap();
    let hart = work.path().join("x.hart");
    let cases: [(&[u8], &str); 6] = [
        (b"HART-2\n", "line 1: expected HART-1, found \"HART-2\""),
        (b"HART-1\nnot a key\n", "line 2: expected the signing key"),
        (
            b"HART-1\nacme-20260101000000\nSHA256\n",
            "line 3: expected BLAKE2b",
        ),
        (
            b"HART-1\nacme-20260101000000\nBLAKE2b\n!!\n\n",
            "not valid base64",
        ),
        (
            b"HART-1\nacme-20260101000000\nBLAKE2b\nAAAA\n\n",
            "the signature is 3 bytes",
        ),
        (b"HART-1\nacme", "end of file in the middle of the line"),
    ];
    for (bytes, expected) in cases {
        fs::write(&hart, bytes).unwrap();
        let err = message(read_header(&hart));
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}

/// Habitat's `hab pkg sign` made this one (testdata/README.md).
const FIXTURE: &str = "habinterop-hello-0.1.0-20261206140000-x86_64-linux.hart";
const FIXTURE_KEY: &str = "habinterop-20261206140906";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/pkg/testdata")
        .join(name)
}

/// A key cache with only the fixture's public key, imported as a user would.
fn fixture_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let public = fs::read_to_string(testdata(&format!("{FIXTURE_KEY}.pub"))).unwrap();
    crate::pkg::keys::import_key(&public, "fixture", cache.path()).unwrap();
    cache
}

#[test]
fn a_hart_signed_by_habitat_verifies_and_installs() {
    let cache = fixture_cache();
    let hart = testdata(FIXTURE);
    let header = read_header(&hart).unwrap();
    assert_eq!(header.signer, FIXTURE_KEY);
    let ident: PackageIdent = "habinterop/hello/0.1.0/20261206140000".parse().unwrap();
    assert_eq!(verify(&hart, cache.path()).unwrap(), ident);
    let (signer, hash) = check_signature(&hart, cache.path()).unwrap();
    assert_eq!(signer, FIXTURE_KEY);
    assert_eq!(header.signed_hash(), Some(hash.as_str()));

    let root = tempfile::tempdir().unwrap();
    let dest = install(&hart, root.path(), cache.path()).unwrap();
    assert_eq!(
        dest,
        root.path()
            .join("pkgs/habinterop/hello/0.1.0/20261206140000")
    );
    assert_eq!(
        fs::read_to_string(dest.join("TARGET")).unwrap(),
        "x86_64-linux\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("config/hello.conf")).unwrap(),
        "message={{cfg.message}}\n"
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest.join("hooks/run")), 0o755);
    assert_eq!(mode(&dest.join("bin/hello")), 0o755);
    assert_eq!(mode(&dest.join("default.toml")), 0o644);
    assert_eq!(
        fs::read_link(dest.join("bin/hi")).unwrap(),
        Path::new("hello")
    );
    let package = Package::load(&dest).unwrap();
    assert_eq!(package.ident, ident);
    assert_eq!(package.default_toml["port"].as_integer(), Some(8080));
}

#[test]
fn a_habitat_hart_with_one_byte_changed_is_refused() {
    let cache = fixture_cache();
    let original = fs::read(testdata(FIXTURE)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let hart = work.path().join(FIXTURE);
    let root = tempfile::tempdir().unwrap();

    // A byte of the payload.
    let mut bytes = original.clone();
    let payload_byte = bytes.len() - 100;
    bytes[payload_byte] ^= 1;
    fs::write(&hart, &bytes).unwrap();
    assert!(message(verify(&hart, cache.path())).contains("BLAKE2b hash is"));
    assert!(install(&hart, root.path(), cache.path()).is_err());
    assert_empty(root.path());

    // A byte of the signature (base64 'A' <-> 'B').
    let mut bytes = original;
    let signature_byte = read_header(&testdata(FIXTURE)).unwrap().payload_offset as usize - 60;
    bytes[signature_byte] = if bytes[signature_byte] == b'A' {
        b'B'
    } else {
        b'A'
    };
    fs::write(&hart, &bytes).unwrap();
    let err = message(verify(&hart, cache.path()));
    assert!(err.contains("does not verify"), "{err}");
    assert!(install(&hart, root.path(), cache.path()).is_err());
    assert_empty(root.path());
}
