//! `.hart` packages through the real `hab` binary: an origin key made on one machine (key
//! cache), a package built and signed there, the public key exported and imported on another,
//! then verified and installed under a root; a tampered copy and an unknown key exit 1 naming
//! the problem, with nothing installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use habitat_e2e::*;

fn hab(args: &[&str]) -> (i32, String, String) {
    let (status, stdout, stderr) = run_hab(args, &[]);
    (status.code().unwrap_or(-1), stdout, stderr)
}

fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = hab(args);
    assert_eq!(code, 0, "hab {args:?}: {stderr}");
    stdout
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_package_built_here_installs_there_and_a_tampered_copy_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let maker_keys = work.path().join("maker-keys");
    let keys = work.path().join("keys");
    let root = work.path().join("root");

    let out = ok(&[
        "origin",
        "key",
        "generate",
        "acme",
        "--cache-key-path",
        s(&maker_keys),
    ]);
    assert!(out.contains("★ Generated origin key pair acme-"), "{out}");

    let pkg = work.path().join("web");
    fs::create_dir_all(pkg.join("hooks")).unwrap();
    fs::write(pkg.join("IDENT"), "acme/web/1.0.0/20260101000000\n").unwrap();
    fs::write(pkg.join("default.toml"), "port = 8080\n").unwrap();
    fs::write(pkg.join("hooks/run"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    fs::set_permissions(pkg.join("hooks/run"), fs::Permissions::from_mode(0o755)).unwrap();
    let results = work.path().join("results");
    let out = ok(&[
        "pkg",
        "build",
        s(&pkg),
        "-o",
        s(&results),
        "--cache-key-path",
        s(&maker_keys),
    ]);
    let hart = results.join("acme-web-1.0.0-20260101000000-x86_64-linux.hart");
    assert_eq!(out.lines().last(), Some(s(&hart)), "{out}");

    // Without the public key: refused, with how to get it.
    let (code, _, stderr) = hab(&[
        "--root",
        s(&root),
        "pkg",
        "install",
        s(&hart),
        "--cache-key-path",
        s(&keys),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not in") && stderr.contains("hab origin key import"),
        "{stderr}"
    );
    assert!(!root.join("pkgs").exists());

    // Export on the maker, import from standard input here.
    let public = ok(&[
        "origin",
        "key",
        "export",
        "acme",
        "--type",
        "public",
        "--cache-key-path",
        s(&maker_keys),
    ]);
    assert!(public.starts_with("SIG-PUB-1\nacme-"), "{public}");
    let public_file = work.path().join("acme.pub");
    fs::write(&public_file, &public).unwrap();
    let import = Command::new(hab_binary())
        .args(["origin", "key", "import", "--cache-key-path", s(&keys)])
        .stdin(Stdio::from(fs::File::open(&public_file).unwrap()))
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains("★ Imported public origin key acme-"));

    let out = ok(&["pkg", "verify", s(&hart), "--cache-key-path", s(&keys)]);
    assert!(out.contains("★ Verified artifact"), "{out}");
    let out = ok(&["pkg", "info", s(&hart)]);
    assert!(
        out.contains("Ident          : acme/web/1.0.0/20260101000000"),
        "{out}"
    );

    // A copy with one payload byte changed: refused before anything is unpacked.
    let tampered = work.path().join("tampered.hart");
    let mut bytes = fs::read(&hart).unwrap();
    let at = bytes.len() - 50;
    bytes[at] ^= 0x10;
    fs::write(&tampered, bytes).unwrap();
    let (code, _, stderr) = hab(&["pkg", "verify", s(&tampered), "--cache-key-path", s(&keys)]);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = hab(&[
        "--root",
        s(&root),
        "pkg",
        "install",
        s(&tampered),
        "--cache-key-path",
        s(&keys),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(s(&tampered)) && stderr.contains("BLAKE2b hash"),
        "{stderr}"
    );
    assert!(!root.join("pkgs").exists());

    let out = ok(&[
        "--root",
        s(&root),
        "pkg",
        "install",
        s(&hart),
        "--cache-key-path",
        s(&keys),
    ]);
    assert!(
        out.contains("complete with 1 new packages installed"),
        "{out}"
    );
    let dest = root.join("pkgs/acme/web/1.0.0/20260101000000");
    assert_eq!(
        fs::read_to_string(dest.join("default.toml")).unwrap(),
        "port = 8080\n"
    );
    let mode = fs::metadata(dest.join("hooks/run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}
