//! The committed CRD copies are exactly what `habitat-operator crd` prints; regenerate them with
//! `cargo run -p habitat-operator -- crd > crds/habitat.yaml` (and the chart's copy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn printed_by_the_binary() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_habitat-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success(), "habitat-operator crd failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn crd_command_prints_the_generated_crd() {
    assert_eq!(printed_by_the_binary(), habitat_operator::crd::crd_yaml());
}

#[test]
fn committed_crds_match_the_generated_crd() {
    let generated = habitat_operator::crd::crd_yaml();
    for path in [
        "crds/habitat.yaml",
        "charts/habitat-operator/crds/habitat.yaml",
    ] {
        assert!(
            repo_file(path) == generated,
            "{path} drifted from the Rust types; regenerate it with \
             `cargo run -p habitat-operator -- crd > {path}`"
        );
    }
}
