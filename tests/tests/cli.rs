//! `hab` on the command line: bad input exits 1 with a message naming what is wrong, and
//! `hab ring key generate` writes a key file where and how Habitat does.
//! Supervisors that should not start get addresses in 127.0.19.0/24, in case they do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use habitat_e2e::*;

const BLOCK_CLI: u8 = 19;

/// `hab sup run` with loopback addresses of the CLI block, an empty root and `extra` flags.
fn sup_run(
    root: &std::path::Path,
    host: u8,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, String) {
    let gossip = format!("{}:{GOSSIP_PORT}", ip(BLOCK_CLI, host));
    let http = format!("{}:{HTTP_PORT}", ip(BLOCK_CLI, host));
    let ctl = format!("{}:{CTL_PORT}", ip(BLOCK_CLI, host));
    let mut args = vec!["sup", "run", "--root", root.to_str().unwrap()];
    args.extend(["--listen-http", &http, "--listen-ctl", &ctl]);
    if !extra.contains(&"--listen-gossip") {
        args.extend(["--listen-gossip", &gossip]);
    }
    args.extend(extra);
    let (status, _, stderr) = run_hab(&args, env);
    (status.code().unwrap_or(-1), stderr)
}

fn assert_exit_1_naming(result: (i32, String), names: &[&str]) {
    let (code, stderr) = result;
    assert_eq!(code, 1, "exit code; stderr: {stderr}");
    for name in names {
        assert!(
            stderr.contains(name),
            "stderr does not name {name:?}: {stderr}"
        );
    }
}

#[test]
fn an_unknown_flag_exits_1_naming_the_flag() {
    let root = tempfile::tempdir().unwrap();
    assert_exit_1_naming(
        sup_run(root.path(), 1, &["--no-such-flag"], &[]),
        &["--no-such-flag"],
    );
}

#[test]
fn a_bad_listen_address_exits_1_naming_the_flag_and_the_value() {
    let root = tempfile::tempdir().unwrap();
    assert_exit_1_naming(
        sup_run(root.path(), 2, &["--listen-gossip", "nope"], &[]),
        &["--listen-gossip", "nope"],
    );
}

#[test]
fn a_missing_ring_key_exits_1_naming_the_key_and_the_keys_dir() {
    let root = tempfile::tempdir().unwrap();
    let keys_dir = root.path().join("cache").join("keys");
    assert_exit_1_naming(
        sup_run(root.path(), 3, &["--ring", "missing"], &[]),
        &["missing", keys_dir.to_str().unwrap()],
    );
}

#[test]
fn a_garbage_hab_ring_key_exits_1_naming_hab_ring_key() {
    let root = tempfile::tempdir().unwrap();
    assert_exit_1_naming(
        sup_run(root.path(), 4, &[], &[("HAB_RING_KEY", "garbage")]),
        &["HAB_RING_KEY"],
    );
}

#[test]
fn a_peer_with_a_port_out_of_range_exits_1_naming_the_peer() {
    let root = tempfile::tempdir().unwrap();
    assert_exit_1_naming(
        sup_run(root.path(), 5, &["--peer", "host:99999"], &[]),
        &["--peer", "host:99999"],
    );
}

#[test]
fn ring_key_generate_writes_a_sym_sec_1_file_named_by_its_revision() {
    let root = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_hab(
        &[
            "ring",
            "key",
            "generate",
            "prod",
            "--root",
            root.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(status.success(), "{status}: {stderr}");
    let keys_dir = root.path().join("cache").join("keys");
    let files: Vec<String> = fs::read_dir(&keys_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = &files[0];
    let revision = name
        .strip_prefix("prod-")
        .and_then(|rest| rest.strip_suffix(".sym.key"))
        .unwrap_or_else(|| panic!("unexpected key file name {name}"));
    assert!(
        revision.len() == 14 && revision.bytes().all(|b| b.is_ascii_digit()),
        "revision {revision:?} is not YYYYMMDDhhmmss"
    );
    let content = fs::read_to_string(keys_dir.join(name)).unwrap();
    assert_eq!(content.lines().next(), Some("SYM-SEC-1"), "{content}");
    assert_eq!(
        content.lines().nth(1),
        Some(&format!("prod-{revision}")[..])
    );
    assert!(stdout.contains(&format!("prod-{revision}")), "{stdout}");
}
