//! `hab depot serve` and `hab pkg upload|promote|demote|channels` as users run them: the
//! built `hab` binary on both sides, real signed .harts, a token file, and the same depot
//! directory read back through `file://`. Addresses in 127.0.150.0/24.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use habitat_e2e::*;
use habitat_sidecar::pkg::hart::build_hart_with_preset;
use habitat_sidecar::pkg::keys::{render_sig_public_key, SigSecretKey};

const BLOCK_DEPOT: u8 = 150;
const TOKEN: &str = "e2e-depot-token";

/// A `hab depot serve` process, killed when dropped.
struct DepotProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl DepotProcess {
    fn start(dir: &Path, token_file: &Path, log: PathBuf) -> DepotProcess {
        let addr = SocketAddr::from((ip(BLOCK_DEPOT, 1), 9636));
        let child = Command::new(hab_binary())
            .args(["depot", "serve", dir.to_str().unwrap(), "--listen"])
            .arg(addr.to_string())
            .arg("--token-file")
            .arg(token_file)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("start hab depot serve");
        let mut depot = DepotProcess { child, addr, log };
        wait_until(Duration::from_secs(30), "the depot listens", || {
            assert!(
                depot.child.try_wait().unwrap().is_none(),
                "hab depot serve exited: {}",
                depot.logs()
            );
            TcpStream::connect_timeout(&depot.addr, Duration::from_millis(200)).is_ok()
        });
        depot
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn logs(&self) -> String {
        let out = fs::read_to_string(&self.log).unwrap_or_default();
        let err = fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("{out}{err}")
    }
}

impl Drop for DepotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed .hart of `ident` in `dir`.
fn hart(dir: &Path, ident: &str) -> PathBuf {
    let pkg = tempfile::tempdir().unwrap();
    fs::write(pkg.path().join("IDENT"), format!("{ident}\n")).unwrap();
    fs::write(pkg.path().join("run"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    let origin = ident.split('/').next().unwrap();
    let key = SigSecretKey::from_seed(origin, "20260101000000", [9; 32]);
    build_hart_with_preset(pkg.path(), &key, dir, 0).unwrap()
}

/// `hab ARGS` against `url` with `token`: (exit code, stdout, stderr).
fn hab_pkg(args: &[&str], url: &str, token: &str) -> (i32, String, String) {
    let (status, out, err) = run_hab(args, &[("HAB_BLDR_URL", url), ("HAB_AUTH_TOKEN", token)]);
    (status.code().unwrap_or(-1), out, err)
}

fn assert_ok((code, out, err): &(i32, String, String)) {
    assert_eq!(*code, 0, "stdout: {out}\nstderr: {err}");
}

fn assert_fails_naming((code, out, err): &(i32, String, String), names: &[&str]) {
    assert_eq!(*code, 1, "stdout: {out}\nstderr: {err}");
    for name in names {
        assert!(err.contains(name), "stderr does not name {name:?}: {err}");
    }
    assert!(
        !err.contains(TOKEN) && !out.contains(TOKEN),
        "the token leaked: {err}"
    );
}

#[test]
fn upload_promote_demote_and_channels_through_hab_depot_serve() {
    let work = tempfile::tempdir().unwrap();
    let depot_dir = work.path().join("depot");
    let token_file = work.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
    let harts = work.path().join("harts");
    fs::create_dir(&harts).unwrap();
    let old = hart(&harts, "acme/app/1.0.0/20260101000000");
    let new = hart(&harts, "acme/app/1.10.0/20260102000000");
    let depot = DepotProcess::start(&depot_dir, &token_file, work.path().join("depot.log"));
    let url = depot.url();
    let (old_id, new_id) = (
        "acme/app/1.0.0/20260101000000",
        "acme/app/1.10.0/20260102000000",
    );

    // The signer's public key in the key cache goes up with the first upload.
    let keys = work.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let public = SigSecretKey::from_seed("acme", "20260101000000", [9; 32]).public_key();
    let key_text = render_sig_public_key(&public);
    fs::write(keys.join("acme-20260101000000.pub"), &key_text).unwrap();
    let uploaded = hab_pkg(
        &[
            "pkg",
            "upload",
            old.to_str().unwrap(),
            "--channel",
            "stable",
        ]
        .into_iter()
        .chain(["--cache-key-path", keys.to_str().unwrap()])
        .collect::<Vec<_>>(),
        &url,
        TOKEN,
    );
    assert_ok(&uploaded);
    assert_eq!(
        fs::read_to_string(depot_dir.join("keys/acme-20260101000000.pub")).unwrap(),
        key_text
    );
    assert!(
        uploaded.2.contains(&format!("Upload of {old_id} complete")),
        "{}",
        uploaded.2
    );
    assert_ok(&hab_pkg(
        &["pkg", "upload", new.to_str().unwrap()],
        &url,
        TOKEN,
    ));
    let stored = depot_dir.join(new.file_name().unwrap());
    assert_eq!(fs::read(&stored).unwrap(), fs::read(&new).unwrap());

    let channels = hab_pkg(&["pkg", "channels", old_id], &url, "");
    assert_ok(&channels);
    assert_eq!(channels.1, "unstable\nstable\n");
    assert_eq!(
        hab_pkg(&["pkg", "channels", new_id], &url, "").1,
        "unstable\n"
    );

    // Latest in stable, as the depot's API answers it: 1.0.0 until 1.10.0 is promoted.
    let latest = || http_get(depot.addr, "/v1/depot/channels/acme/stable/pkgs/app/latest").unwrap();
    assert!(latest().contains("\"version\":\"1.0.0\""), "{}", latest());
    assert_ok(&hab_pkg(&["pkg", "promote", new_id, "stable"], &url, TOKEN));
    assert!(latest().contains("\"version\":\"1.10.0\""), "{}", latest());
    assert_ok(&hab_pkg(&["pkg", "demote", new_id, "stable"], &url, TOKEN));
    assert!(latest().contains("\"version\":\"1.0.0\""), "{}", latest());

    // The directory itself is the same depot.
    let file_url = format!("file://{}", depot_dir.display());
    assert_eq!(
        hab_pkg(&["pkg", "channels", old_id], &file_url, "").1,
        "unstable\nstable\n"
    );

    // Clear errors: demote from unstable, an unknown release, a wrong or missing token, no
    // depot named, no depot there.
    assert_fails_naming(
        &hab_pkg(&["pkg", "demote", old_id, "unstable"], &url, TOKEN),
        &["cannot be demoted from unstable"],
    );
    assert_fails_naming(
        &hab_pkg(
            &["pkg", "promote", "acme/app/9.9.9/20260101000000", "stable"],
            &url,
            TOKEN,
        ),
        &["acme/app/9.9.9/20260101000000", "not found"],
    );
    assert_fails_naming(
        &hab_pkg(&["pkg", "promote", new_id, "stable"], &url, "not-the-token"),
        &["401", "HAB_AUTH_TOKEN"],
    );
    assert_fails_naming(
        &hab_pkg(
            &["pkg", "upload", new.to_str().unwrap(), "--channel", "beta"],
            &url,
            "",
        ),
        &["401", "--auth"],
    );
    assert_eq!(
        hab_pkg(&["pkg", "channels", new_id], &url, "").1,
        "unstable\n",
        "nothing changed"
    );
    assert_fails_naming(
        &hab_pkg(&["pkg", "channels", new_id], "", ""),
        &["--url", "HAB_BLDR_URL"],
    );
    assert_fails_naming(
        &hab_pkg(
            &["pkg", "channels", new_id],
            &format!("http://{}:1", ip(BLOCK_DEPOT, 2)),
            "",
        ),
        &["cannot reach the depot"],
    );
    let logs = depot.logs();
    assert!(logs.contains("write refused"), "{logs}");
    assert!(
        !logs.contains(TOKEN) && !logs.contains("not-the-token"),
        "{logs}"
    );
}

#[test]
fn a_token_file_others_can_read_is_refused_at_start() {
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("token");
    fs::write(&token_file, TOKEN).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o644)).unwrap();
    let depot_dir = work.path().join("depot");
    let listen = SocketAddr::from((ip(BLOCK_DEPOT, 3), 9636)).to_string();
    let args = [
        "depot",
        "serve",
        depot_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--token-file",
    ];
    let mut args = args.to_vec();
    args.push(token_file.to_str().unwrap());
    let (status, _, err) = run_hab(&args, &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("chmod 600") && !err.contains(TOKEN), "{err}");
}
