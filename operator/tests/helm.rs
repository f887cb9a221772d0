//! The Helm chart: `helm lint` passes and `helm template` renders exactly the golden
//! manifests, cluster-wide and namespaced. `UPDATE_GOLDEN=1` rewrites the golden files.
//! (`helm install` into the test API server is in `k8s.rs`, next to the control plane.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

fn chart() -> String {
    support::repo_root()
        .join("charts/habitat-operator")
        .to_str()
        .unwrap()
        .to_owned()
}

fn helm(args: &[&str]) -> String {
    let out = support::helm_command(args).output().unwrap();
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_GOLDEN=1 creates it", path.display()));
    assert!(
        expected == actual,
        "{} differs from `helm template` (UPDATE_GOLDEN=1 rewrites it):\n{actual}",
        path.display()
    );
}

#[test]
fn chart_passes_helm_lint() {
    let chart = chart();
    let out = helm(&["lint", "--strict", &chart]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    helm(&["lint", "--strict", &chart, "--set", "watchNamespace=apps"]);
}

#[test]
fn cluster_wide_template_matches_golden() {
    let out = helm(&[
        "template",
        "habitat-operator",
        &chart(),
        "--namespace",
        "habitat-system",
    ]);
    assert_golden("helm-cluster.yaml", &out);
}

#[test]
fn namespaced_template_matches_golden() {
    let out = helm(&[
        "template",
        "ops",
        &chart(),
        "--namespace",
        "habitat-system",
        "--set",
        "watchNamespace=apps,replicaCount=2,serviceAccount.name=habitat",
    ]);
    assert_golden("helm-namespaced.yaml", &out);
    assert!(out.contains("kind: Role\n") && !out.contains("kind: ClusterRole\n"));
    assert!(out.contains("- --namespace=apps"));
}

#[test]
fn several_replicas_need_leader_election() {
    let out = support::helm_command(&[
        "template",
        "x",
        &chart(),
        "--set",
        "replicaCount=2,leaderElection.enabled=false",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs leaderElection.enabled=true"));
}

#[test]
fn chart_crd_is_the_generated_crd() {
    let crd = std::fs::read_to_string(
        support::repo_root().join("charts/habitat-operator/crds/habitat.yaml"),
    )
    .unwrap();
    assert_eq!(crd, habitat_operator::crd::crd_yaml());
}
