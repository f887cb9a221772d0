//! The operator against a real kube-apiserver + etcd (see `support`): the CRD installs, the
//! examples apply with kubectl, the API server enforces the CEL rules, and the operator binary
//! creates, scales, rolls, pauses and cleans up children, and changes nothing on restart.
//!
//! The control plane binaries come from `tests/k8s/build.sh`; without them these tests fail
//! with a message that says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use habitat_operator::build::{self, BuildConfig};
use habitat_operator::crd::Habitat;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{control_plane, eventually, Operator};

const WAIT: Duration = Duration::from_secs(30);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn create(api: &Api<Habitat>, hab: &Habitat) -> Habitat {
    let mut hab = hab.clone();
    hab.metadata.uid = None;
    hab.metadata.generation = None;
    hab.metadata.namespace = None;
    api.create(&PostParams::default(), &hab).await.unwrap()
}

async fn statefulset(api: &Api<StatefulSet>, name: &str) -> StatefulSet {
    eventually(WAIT, &format!("StatefulSet {name}"), || async {
        api.get_opt(name).await.unwrap()
    })
    .await
}

#[test]
fn crd_is_installed_and_established() {
    let cp = control_plane();
    let out = cp.kubectl(&[
        "get",
        "crd/habitats.habitat.sh",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    ]);
    assert_eq!(stdout(&out), "True", "{}", stderr(&out));
    let out = cp.kubectl(&["api-resources", "--api-group=habitat.sh"]);
    let text = stdout(&out);
    assert!(text.contains("habitats") && text.contains("hab "), "{text}");
}

#[test]
fn every_example_applies_with_kubectl() {
    let cp = control_plane();
    let ns = cp.namespace("examples");
    let dir = support::repo_root().join("examples/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the six examples in {}",
        dir.display()
    );
    let mut expected = 0;
    for file in files {
        expected += std::fs::read_to_string(&file)
            .unwrap()
            .matches("\nkind: Habitat\n")
            .count();
        let out = cp.kubectl(&["apply", "-n", &ns, "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "kubectl apply -f {}: {}",
            file.display(),
            stderr(&out)
        );
    }
    let out = cp.kubectl(&["get", "hab", "-n", &ns, "-o", "name"]);
    assert_eq!(stdout(&out).lines().count(), expected, "{}", stdout(&out));
}

fn apply_yaml(ns: &str, yaml: &str) -> std::process::Output {
    control_plane().kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml)
}

fn habitat_yaml(name: &str, count: i32, service: &str) -> String {
    format!(
        "apiVersion: habitat.sh/v1\nkind: Habitat\nmetadata:\n  name: {name}\nspec:\n  image: example/app:1\n  count: {count}\n  service:\n{service}"
    )
}

#[test]
fn invalid_resources_are_rejected_with_the_cel_message() {
    let cp = control_plane();
    let ns = cp.namespace("invalid");
    let cases = [
        (
            habitat_yaml("bad-topology", 1, "    name: app\n    topology: mesh\n"),
            "service.topology must be one of standalone, leader, initializer",
        ),
        (
            habitat_yaml("zero", 0, "    name: app\n"),
            "count must be at least 1",
        ),
        (
            habitat_yaml(
                "bad-ring",
                1,
                "    name: app\n    ringSecretName: my-ring-key\n",
            ),
            "service.ringSecretName must be <ring>-<YYYYMMDDhhmmss>",
        ),
        (
            habitat_yaml(
                "both-configs",
                1,
                "    name: app\n    config: 'a = 1'\n    configSecretName: app-config\n",
            ),
            "set service.config or service.configSecretName, not both",
        ),
    ];
    for (yaml, message) in cases {
        let out = apply_yaml(&ns, &yaml);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        assert!(
            stderr(&out).contains(message),
            "expected {message:?} in: {}",
            stderr(&out)
        );
    }

    let good = habitat_yaml("rename", 1, "    name: app\n");
    assert!(apply_yaml(&ns, &good).status.success());
    let out = cp.kubectl(&["scale", "hab/rename", "--replicas=0", "-n", &ns]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("count must be at least 1"),
        "{}",
        stderr(&out)
    );
    let renamed = habitat_yaml("rename", 1, "    name: other\n");
    let out = apply_yaml(&ns, &renamed);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("service.name is immutable"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_new_resource_gets_children_with_the_expected_spec() {
    let cp = control_plane();
    let ns = cp.namespace("children");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let hab = Habitat::test("db")
        .leader()
        .count(3)
        .package("core/postgresql")
        .config("port = 5432\n")
        .ring_key("prod-20260101000000");
    let created = create(&habs, &hab).await;

    let sts = statefulset(&Api::namespaced(client.clone(), &ns), "db").await;
    // The server's copy has the builder's spec (plus the API server's defaults).
    let mut expected = hab.clone().in_namespace(&ns);
    expected.metadata.uid = created.metadata.uid.clone();
    let built = build::statefulset::statefulset(&expected, &BuildConfig::default());
    let (got, want) = (sts.spec.clone().unwrap(), built.spec.unwrap());
    assert_eq!(got.replicas, Some(3));
    assert_eq!(got.service_name, want.service_name);
    assert_eq!(got.selector, want.selector);
    assert_eq!(got.pod_management_policy.as_deref(), Some("Parallel"));
    let (pod, want_pod) = (got.template.spec.unwrap(), want.template.spec.unwrap());
    assert_eq!(pod.containers[0].args, want_pod.containers[0].args);
    assert_eq!(pod.containers[0].image, want_pod.containers[0].image);
    assert_eq!(
        pod.init_containers.unwrap()[0].command,
        want_pod.init_containers.unwrap()[0].command
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let owner = &sts.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Habitat", "db")
    );
    assert_eq!(Some(owner.uid.clone()), created.metadata.uid);
    assert_eq!(owner.controller, Some(true));
    let managers: Vec<_> = sts
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"habitat-operator".to_owned()),
        "{managers:?}"
    );

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let peers = services.get("db-peers").await.unwrap().spec.unwrap();
    assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peers.publish_not_ready_addresses, Some(true));
    let client_svc = services.get("db").await.unwrap().spec.unwrap();
    assert_eq!(client_svc.ports.unwrap().len(), 2);
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let pdb = pdb.get("db").await.unwrap().spec.unwrap();
    assert_eq!(
        pdb.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2))
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ring = secrets.get("prod-20260101000000").await.unwrap();
    let key = String::from_utf8(ring.data.unwrap()["ring-key"].0.clone()).unwrap();
    assert!(
        key.starts_with("SYM-SEC-1\nprod-20260101000000\n\n"),
        "{key}"
    );
    let config = secrets.get("db-config").await.unwrap();
    assert_eq!(config.data.unwrap()["user.toml"].0, b"port = 5432\n");

    let status = eventually(WAIT, "status with observedGeneration", || async {
        let hab = habs.get("db").await.unwrap();
        hab.status.filter(|s| s.observed_generation == Some(1))
    })
    .await;
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
    assert_eq!(status.selector.as_deref(), Some("habitat.sh/habitat=db"));
    let finalizers = habs.get("db").await.unwrap().finalizers().to_vec();
    assert_eq!(finalizers, ["habitat.sh/cleanup"]);

    // The StatefulSet as the API server stores it (builder output + server defaults), with
    // what differs between runs masked.
    let mut stored = serde_json::to_value(stss_get(&client, &ns, "db").await).unwrap();
    let meta = stored["metadata"].as_object_mut().unwrap();
    for volatile in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "generation",
    ] {
        meta.remove(volatile);
    }
    meta.insert("namespace".into(), json!("NAMESPACE"));
    stored["metadata"]["ownerReferences"][0]["uid"] = json!("UID");
    stored.as_object_mut().unwrap().remove("status");
    golden(
        "server-statefulset.yaml",
        &serde_yaml::to_string(&stored).unwrap(),
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let reasons = eventually(WAIT, "an Applied event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        reasons.iter().any(|r| r == "Applied").then_some(reasons)
    })
    .await;
    assert!(
        reasons.iter().any(|r| r == "RingKeyGenerated"),
        "{reasons:?}"
    );
}

async fn stss_get(client: &kube::Client, ns: &str, name: &str) -> StatefulSet {
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

/// Compares with `operator/tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert!(
        expected == actual,
        "{} differs from the server's object (UPDATE_GOLDEN=1 rewrites it):\n{actual}",
        path.display()
    );
}

#[tokio::test]
async fn status_follows_the_statefulsets_ready_pods() {
    let cp = control_plane();
    let ns = cp.namespace("status");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    create(&habs, &Habitat::test("web").count(2)).await;
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = statefulset(&stss, "web").await;
    // No kubelet or StatefulSet controller here: play their part in the status.
    stss.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "observedGeneration": sts.metadata.generation,
            "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
            "currentRevision": "web-1", "updateRevision": "web-1"
        }})),
    )
    .await
    .unwrap();
    let status = eventually(WAIT, "Ready=True", || async {
        let status = habs.get("web").await.unwrap().status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(status)
    })
    .await;
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "Stable");
    let out = cp.kubectl(&["get", "hab", "web", "-n", &ns]);
    let table = stdout(&out);
    assert!(
        table.contains("TOPOLOGY") && table.contains("standalone"),
        "{table}"
    );
}

#[tokio::test]
async fn kubectl_scale_reaches_the_statefulset_and_a_spec_change_rolls_it() {
    let cp = control_plane();
    let ns = cp.namespace("scale");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    create(&habs, &Habitat::test("x")).await;
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let before = statefulset(&stss, "x").await;

    let out = cp.kubectl(&["scale", "hab/x", "--replicas=5", "-n", &ns]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "StatefulSet scaled to 5", || async {
        let sts = stss.get("x").await.unwrap();
        (sts.spec?.replicas == Some(5)).then_some(())
    })
    .await;

    habs.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "example/x:2.0"}})),
    )
    .await
    .unwrap();
    let after = eventually(WAIT, "new image in the pod template", || async {
        let sts = stss.get("x").await.unwrap();
        let image = sts.spec.clone()?.template.spec?.containers[0].image.clone();
        (image.as_deref() == Some("example/x:2.0")).then_some(sts)
    })
    .await;
    // The same StatefulSet, updated in place: its controller rolls the pods one at a time.
    assert_eq!(after.uid(), before.uid());
    let strategy = after.spec.unwrap().update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
}

#[tokio::test]
async fn a_paused_resource_is_left_alone() {
    let cp = control_plane();
    let ns = cp.namespace("paused");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);

    create(&habs, &Habitat::test("idle").paused()).await;
    eventually(WAIT, "Paused condition", || async {
        let status = habs.get("idle").await.unwrap().status?;
        status
            .conditions
            .iter()
            .any(|c| c.reason == "Paused")
            .then_some(())
    })
    .await;
    assert!(stss.get_opt("idle").await.unwrap().is_none());

    create(&habs, &Habitat::test("live")).await;
    let sts = statefulset(&stss, "live").await;
    habs.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true, "count": 4}})),
    )
    .await
    .unwrap();
    eventually(WAIT, "Paused condition", || async {
        let status = habs.get("live").await.unwrap().status?;
        (status.observed_generation == Some(2)
            && status.conditions.iter().any(|c| c.reason == "Paused"))
        .then_some(())
    })
    .await;
    let still = stss.get("live").await.unwrap();
    assert_eq!(still.resource_version(), sts.resource_version());
    assert_eq!(still.spec.unwrap().replicas, Some(1));

    habs.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    eventually(WAIT, "count applied after unpausing", || async {
        (stss.get("live").await.unwrap().spec?.replicas == Some(4)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn delete_removes_the_finalizer_and_the_volumes() {
    let cp = control_plane();
    let ns = cp.namespace("delete");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let hab = Habitat::test("gone").storage("1Gi");
    create(&habs, &hab).await;
    statefulset(&Api::namespaced(client.clone(), &ns), "gone").await;
    // What the StatefulSet controller would create from the volume claim template.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-gone-0", "labels": build::selector_labels(&hab)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();

    habs.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "Habitat deleted", || async {
        habs.get_opt("gone").await.unwrap().is_none().then_some(())
    })
    .await;
    // Deleted (or, held by the pvc-protection finalizer of a controller that does not run
    // here, being deleted).
    let pvc = pvcs.get_opt("data-gone-0").await.unwrap();
    assert!(pvc.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
}

/// Waits until `operator` has finished at least `finished` reconciles and has none running.
async fn idle(operator: &Operator, finished: f64) {
    eventually(WAIT, "the operator to finish its reconciles", || async {
        let started = operator.counter("habitat_operator_reconciles_total");
        let done = operator.counter("habitat_operator_reconcile_duration_seconds_count");
        (done >= finished && done == started).then_some(())
    })
    .await;
}

fn resource_versions(cp: &support::ControlPlane, ns: &str) -> BTreeMap<String, String> {
    let out = cp.kubectl(&[
        "get",
        "habitats,statefulsets,services,poddisruptionbudgets,secrets",
        "-n",
        ns,
        "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn an_operator_restart_changes_nothing() {
    let cp = control_plane();
    let ns = cp.namespace("restart");
    let mut operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    create(
        &habs,
        &Habitat::test("a").leader().count(3).config("x = 1\n"),
    )
    .await;
    create(&habs, &Habitat::test("b").ring_key("ring-20260101000000")).await;
    for name in ["a", "b"] {
        eventually(WAIT, "status", || async {
            let status = habs.get(name).await.unwrap().status?;
            (status.observed_generation == Some(1)).then_some(())
        })
        .await;
    }
    // Snapshot once no reconcile is running: every one started has finished.
    idle(&operator, 2.0).await;
    let before = resource_versions(cp, &ns);
    assert_eq!(before.len(), 2 + 2 + 4 + 2 + 2, "{before:?}");

    let exit = operator.stop(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "graceful shutdown: {exit:?}\n{}",
        operator.log()
    );
    let restarted = Operator::start(cp, Some(&ns), &[]);
    // Both resources reconciled by the new process (its first list starts both at once, so
    // two finished with none running means both), and nothing changed.
    idle(&restarted, 2.0).await;
    assert_eq!(resource_versions(cp, &ns), before);
    let (code, body) = restarted.get("/healthz").unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    assert_eq!(restarted.get("/readyz").unwrap().0, 200);
    assert_eq!(
        restarted.counter("habitat_operator_reconcile_failures_total"),
        0.0
    );
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_another_takes_over() {
    let cp = control_plane();
    let ns = cp.namespace("leader");
    let args = [
        "--leader-election",
        "--lease-duration",
        "3",
        "--lease-namespace",
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.push(&ns);
    let mut first = Operator::start(cp, Some(&ns), &args);
    let client = cp.client().await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let holder = eventually(WAIT, "a Lease holder", || async {
        leases
            .get_opt("habitat-operator")
            .await
            .unwrap()?
            .spec?
            .holder_identity
    })
    .await;
    let second = Operator::start(cp, Some(&ns), &args);
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    create(&habs, &Habitat::test("one")).await;
    statefulset(&Api::namespaced(client.clone(), &ns), "one").await;
    assert_eq!(second.counter("habitat_operator_leader"), 0.0);

    let exit = first.stop(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{}", first.log());
    let new_holder = eventually(WAIT, "a new Lease holder", || async {
        let holder = leases
            .get_opt("habitat-operator")
            .await
            .unwrap()?
            .spec?
            .holder_identity?;
        (!holder.is_empty()).then_some(holder)
    })
    .await;
    assert_ne!(new_holder, holder);
    create(&habs, &Habitat::test("two")).await;
    statefulset(&Api::namespaced(client.clone(), &ns), "two").await;
    assert_eq!(second.counter("habitat_operator_leader"), 1.0);
}

#[tokio::test]
async fn helm_install_creates_the_operators_objects() {
    let cp = control_plane();
    let ns = cp.namespace("helm");
    let chart = support::repo_root().join("charts/habitat-operator");
    let out = cp.helm(&[
        "install",
        "habitat-operator",
        chart.to_str().unwrap(),
        "--namespace",
        &ns,
        "--set",
        &format!("watchNamespace={ns}"),
    ]);
    assert!(
        out.status.success(),
        "helm install: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = cp.kubectl(&[
        "get",
        "deployment,serviceaccount,role,rolebinding,service",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/instance=habitat-operator",
        "-o",
        "name",
    ]);
    let names = stdout(&out);
    for expected in [
        "deployment.apps/habitat-operator",
        "serviceaccount/habitat-operator",
        "role.rbac.authorization.k8s.io/habitat-operator",
        "role.rbac.authorization.k8s.io/habitat-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/habitat-operator",
        "service/habitat-operator-metrics",
    ] {
        assert!(
            names.lines().any(|l| l == expected),
            "{expected} missing in:\n{names}"
        );
    }
    // The chart's RBAC is enough for what the operator does.
    let sa = format!("system:serviceaccount:{ns}:habitat-operator");
    for (verb, resource) in [
        ("watch", "habitats.habitat.sh"),
        ("patch", "habitats.habitat.sh/status"),
        ("update", "habitats.habitat.sh/finalizers"),
        ("patch", "statefulsets.apps"),
        ("patch", "services"),
        ("create", "secrets"),
        ("patch", "poddisruptionbudgets.policy"),
        ("deletecollection", "persistentvolumeclaims"),
        ("create", "events.events.k8s.io"),
        ("update", "leases.coordination.k8s.io"),
    ] {
        let out = cp.kubectl(&["auth", "can-i", verb, resource, "-n", &ns, "--as", &sa]);
        assert_eq!(stdout(&out).trim(), "yes", "{sa} cannot {verb} {resource}");
    }
    let out = cp.helm(&["uninstall", "habitat-operator", "--namespace", &ns]);
    assert!(out.status.success(), "helm uninstall: {}", stderr(&out));
}
