//! The ctl gateway with real supervisors: `hab config apply`, `hab file upload`, `hab svc
//! status` and `hab sup depart` sent to one member change the whole ring; what the gateway
//! refuses (a stale version, a wrong secret) changes nothing anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use habitat_e2e::{run_hab, start_ring, wait_until, Supervisor, CTL_PORT, HELLO_GROUP};

const BLOCK_CONFIG: u8 = 80;
const BLOCK_FILE: u8 = 81;
const BLOCK_DEPART: u8 = 82;
const SOON: Duration = Duration::from_secs(30);

fn remote(sup: &Supervisor) -> String {
    format!("{}:{CTL_PORT}", sup.ip())
}

/// The supervisor's ctl secret, as a workstation would be given it.
fn secret(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("sup/default/CTL_SECRET"))
        .unwrap()
        .trim()
        .to_string()
}

/// `hab ARGS --remote-sup SUP` with SUP's secret: exit code, stdout, stderr.
fn ctl(sup: &Supervisor, args: &[&str], secret: &str) -> (i32, String, String) {
    let remote = remote(sup);
    let mut all = args.to_vec();
    all.extend(["--remote-sup", &remote]);
    let (status, out, err) = run_hab(&all, &[("HAB_CTL_SECRET", secret)]);
    (status.code().unwrap_or(-1), out, err)
}

fn rendered(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("svc/hello/config/hello.conf")).unwrap_or_default()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn config_applied_to_one_member_renders_on_all_and_a_refused_one_changes_nothing() {
    let ring = start_ring(BLOCK_CONFIG, 3, |_, b| b);
    let scratch = tempfile::tempdir().unwrap();
    let first_secret = secret(&ring[0]);
    let good = write(
        scratch.path(),
        "good.toml",
        "message = \"applied by ctl\"\n",
    );
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "5", &good],
        &first_secret,
    );
    assert_eq!(code, 0, "config apply: {err}");
    wait_until(SOON, "every member renders the applied config", || {
        ring.iter()
            .all(|s| rendered(s).contains("message = \"applied by ctl\""))
    });

    // A version not above the ring's, and a wrong secret: refused, nothing changes.
    let other = write(scratch.path(), "other.toml", "message = \"stale\"\n");
    let (code, _, err) = ctl(
        &ring[1],
        &["config", "apply", HELLO_GROUP, "5", &other],
        &secret(&ring[1]),
    );
    assert_ne!(code, 0, "a stale version was accepted");
    assert!(
        err.contains("version 5"),
        "the refusal names the current version: {err}"
    );
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "6", &other],
        "wrong",
    );
    assert_ne!(code, 0, "a wrong secret was accepted");
    assert!(err.to_lowercase().contains("secret"), "{err}");
    // Not TOML, and above 64 KiB: refused before anything is sent.
    let broken = write(scratch.path(), "broken.toml", "message = \"unclosed\n");
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "7", &broken],
        &first_secret,
    );
    assert_eq!(code, 1, "invalid TOML was accepted: {err}");
    assert!(
        err.contains("broken.toml") && err.contains("line 1"),
        "{err}"
    );
    let huge = write(
        scratch.path(),
        "huge.toml",
        &format!("message = \"{}\"\n", "x".repeat(70 * 1024)),
    );
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "8", &huge],
        &first_secret,
    );
    assert_eq!(code, 1, "an oversize config was accepted: {err}");
    assert!(err.contains("huge.toml"), "{err}");
    for sup in &ring {
        let census = sup.census().unwrap();
        let incarnation = &census["census_groups"][HELLO_GROUP]["service_config"]["incarnation"];
        assert_eq!(incarnation, 5, "{}: {census}", sup.member_id());
        assert!(rendered(sup).contains("applied by ctl"));
    }
}

#[test]
fn an_uploaded_file_lands_on_every_member_with_the_same_bytes() {
    let ring = start_ring(BLOCK_FILE, 3, |_, b| b);
    let scratch = tempfile::tempdir().unwrap();
    let body = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let file = write(scratch.path(), "server.crt", body);
    let (code, _, err) = ctl(
        &ring[2],
        &["file", "upload", HELLO_GROUP, "1", &file],
        &secret(&ring[2]),
    );
    assert_eq!(code, 0, "file upload: {err}");
    wait_until(SOON, "every member holds the file", || {
        ring.iter().all(|s| {
            std::fs::read_to_string(s.root().join("svc/hello/files/server.crt"))
                .ok()
                .as_deref()
                == Some(body)
        })
    });
    let (code, out, err) = ctl(&ring[0], &["svc", "status"], &secret(&ring[0]));
    assert_eq!(code, 0, "svc status: {err}");
    assert!(out.contains(HELLO_GROUP), "{out}");
}

#[test]
fn a_departed_member_is_shown_departed_everywhere() {
    let mut ring = start_ring(BLOCK_DEPART, 3, |_, b| b);
    let gone = ring[2].member_id();
    ring[2].kill();
    let (code, _, err) = ctl(&ring[0], &["sup", "depart", &gone], &secret(&ring[0]));
    assert_eq!(code, 0, "sup depart: {err}");
    wait_until(SOON, "both live members show it departed", || {
        ring[..2].iter().all(|s| {
            s.health()
                .is_ok_and(|h| h.get(&gone).map(String::as_str) == Some("Departed"))
        })
    });
}
