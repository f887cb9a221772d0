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
        (
            habitat_yaml("bad-grace", 1, "    name: app\n")
                + "  pod:\n    terminationGracePeriodSeconds: -1\n",
            "pod.terminationGracePeriodSeconds must not be negative",
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

#[test]
fn the_volume_claim_template_cannot_change_but_retention_and_mount_path_can() {
    let cp = control_plane();
    let ns = cp.namespace("storage");
    let with = |storage: &str| habitat_yaml("db", 1, "    name: app\n") + storage;
    let immutable = "persistentStorage.size and persistentStorage.storageClassName are immutable";
    let fixed = "persistentStorage cannot be added or removed";
    let original = with("  persistentStorage:\n    size: 1Gi\n");
    let out = apply_yaml(&ns, &original);
    assert!(out.status.success(), "{}", stderr(&out));
    for (yaml, message) in [
        (with("  persistentStorage:\n    size: 2Gi\n"), immutable),
        (
            with("  persistentStorage:\n    size: 1Gi\n    storageClassName: fast\n"),
            immutable,
        ),
        (habitat_yaml("db", 1, "    name: app\n"), fixed),
        (
            habitat_yaml("db", 1, "    name: app\n    group: blue\n")
                + "  persistentStorage:\n    size: 1Gi\n",
            "service.group cannot change with persistentStorage",
        ),
    ] {
        let out = apply_yaml(&ns, &yaml);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        assert!(
            stderr(&out).contains(message),
            "expected {message:?} in: {}",
            stderr(&out)
        );
    }
    // What the StatefulSet lets change is accepted.
    let out = apply_yaml(
        &ns,
        &with("  persistentStorage:\n    size: 1Gi\n    mountPath: /data\n    retentionPolicy:\n      whenDeleted: Delete\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = apply_yaml(
        &ns,
        &with(
            "  persistentStorage:\n    size: 1Gi\n    retentionPolicy:\n      whenDeleted: Never\n",
        ),
    );
    assert!(
        stderr(&out).contains("whenDeleted must be Retain or Delete"),
        "{}",
        stderr(&out)
    );
    // Nor can storage be added to a resource created without it.
    let plain = habitat_yaml("plain", 1, "    name: app\n");
    assert!(apply_yaml(&ns, &plain).status.success());
    let out = apply_yaml(&ns, &(plain + "  persistentStorage:\n    size: 1Gi\n"));
    assert!(stderr(&out).contains(fixed), "{}", stderr(&out));
    // Without volumes the group may change.
    let regrouped = habitat_yaml("plain", 1, "    name: app\n    group: blue\n");
    let out = apply_yaml(&ns, &regrouped);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn a_new_resource_gets_children_with_the_expected_spec() {
    let cp = control_plane();
    let ns = cp.namespace("children");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let mut hab = Habitat::test("db")
        .leader()
        .count(3)
        .package("core/postgresql")
        .config("port = 5432\n")
        .ring_key("prod-20260101000000");
    hab.spec.service.name = "postgresql".into();
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
    // Placement: the leader group's default anti-affinity, as stored.
    assert!(pod.affinity.is_some());
    assert_eq!(pod.affinity, want_pod.affinity);
    let terms = pod
        .affinity
        .clone()
        .unwrap()
        .pod_anti_affinity
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(terms[0].weight, 100);
    assert_eq!(
        terms[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
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
    // The ctl secret and the gateway token: random, owned, given to the pods.
    for (name, key) in [("db-ctl", "ctl-secret"), ("db-gateway", "token")] {
        let secret = secrets.get(name).await.unwrap();
        assert_eq!(secret.owner_references()[0].uid, created.uid().unwrap());
        let value = secret.data.unwrap()[key].0.clone();
        assert_eq!(value.len(), 64, "{name}");
        assert!(value.iter().all(u8::is_ascii_hexdigit), "{name}");
    }

    let status = eventually(WAIT, "status with observedGeneration", || async {
        let hab = habs.get("db").await.unwrap();
        hab.status.filter(|s| s.observed_generation == Some(1))
    })
    .await;
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
    assert_eq!(status.selector.as_deref(), Some("habitat.sh/habitat=db"));
    // No finalizer: a delete never waits for the operator.
    assert!(habs.get("db").await.unwrap().finalizers().is_empty());

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
        meta.shift_remove(volatile);
    }
    meta["namespace"] = json!("NAMESPACE");
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
    // The same StatefulSet, updated in place; it updates OnDelete: the operator replaces the
    // pods in election-aware order (tests/rollout.rs).
    assert_eq!(after.uid(), before.uid());
    let strategy = after.spec.unwrap().update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    assert_eq!(strategy.rolling_update, None);
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

async fn observed(habs: &Api<Habitat>, name: &str, generation: i64) -> Habitat {
    eventually(
        WAIT,
        &format!("{name} at observedGeneration {generation}"),
        || async {
            let hab = habs.get(name).await.unwrap();
            let seen = hab.status.as_ref()?.observed_generation;
            (seen == Some(generation)).then_some(hab)
        },
    )
    .await
}

async fn degraded(habs: &Api<Habitat>, name: &str, reason: &str) -> String {
    eventually(WAIT, &format!("{name} Degraded with {reason}"), || async {
        let status = habs.get(name).await.unwrap().status?;
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == reason)
            .map(|c| c.message.clone())
    })
    .await
}

#[tokio::test]
async fn deleting_keeps_the_volumes_and_never_waits_for_the_operator() {
    let cp = control_plane();
    let ns = cp.namespace("delete");
    let mut operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let hab = Habitat::test("gone").storage("1Gi");
    create(&habs, &hab).await;
    // A resource from an earlier version, which put a finalizer on every resource.
    let mut legacy = Habitat::test("legacy").storage("1Gi").delete_claims();
    legacy.metadata.finalizers = Some(vec!["habitat.sh/cleanup".to_owned()]);
    create(&habs, &legacy).await;
    for name in ["gone", "legacy"] {
        let hab = observed(&habs, name, 1).await;
        assert!(
            hab.finalizers().is_empty(),
            "{name}: {:?}",
            hab.finalizers()
        );
    }
    // The StatefulSet controller keeps or deletes the volumes, as the spec says.
    let policy = |sts: StatefulSet| {
        let p = sts
            .spec
            .unwrap()
            .persistent_volume_claim_retention_policy
            .unwrap();
        (p.when_deleted.unwrap(), p.when_scaled.unwrap())
    };
    assert_eq!(
        policy(stss.get("gone").await.unwrap()),
        ("Retain".into(), "Retain".into())
    );
    assert_eq!(
        policy(stss.get("legacy").await.unwrap()),
        ("Delete".into(), "Delete".into())
    );
    // What the StatefulSet controller would create from the volume claim template.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-gone-0", "labels": build::selector_labels(&hab)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();

    // With the operator down, deletes still complete.
    let exit = operator.stop(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{}", operator.log());
    for name in ["gone", "legacy"] {
        habs.delete(name, &DeleteParams::default()).await.unwrap();
        eventually(WAIT, &format!("Habitat {name} deleted"), || async {
            habs.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    let pvc = pvcs.get("data-gone-0").await.unwrap();
    assert!(
        pvc.metadata.deletion_timestamp.is_none(),
        "the volume is being deleted"
    );
}

#[tokio::test]
async fn a_secret_the_resource_does_not_own_is_neither_deleted_nor_overwritten() {
    let cp = control_plane();
    let ns = cp.namespace("config");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mine: Secret = serde_json::from_value(json!({
        "metadata": {"name": "web-config"},
        "stringData": {"user.toml": "mine = true\n"}
    }))
    .unwrap();
    let mine = secrets.create(&PostParams::default(), &mine).await.unwrap();
    create(&habs, &Habitat::test("web")).await;
    observed(&habs, "web", 1).await;
    let still = secrets.get("web-config").await.unwrap();
    assert_eq!(still.resource_version(), mine.resource_version());

    // Asking for service.config would need that name: refused, the user's Secret untouched.
    habs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"service": {"config": "port = 1\n"}}})),
    )
    .await
    .unwrap();
    let message = degraded(&habs, "web", "ConfigSecretNotOwned").await;
    assert!(message.contains("is not owned by Habitat"), "{message}");
    let still = secrets.get("web-config").await.unwrap();
    assert_eq!(still.resource_version(), mine.resource_version());

    // The resource's own config Secret goes when service.config goes.
    create(&habs, &Habitat::test("own").config("port = 2\n")).await;
    observed(&habs, "own", 1).await;
    assert!(secrets.get_opt("own-config").await.unwrap().is_some());
    habs.patch(
        "own",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"service": {"config": null}}})),
    )
    .await
    .unwrap();
    observed(&habs, "own", 2).await;
    assert!(secrets.get_opt("own-config").await.unwrap().is_none());
}

#[tokio::test]
async fn missing_or_foreign_secrets_and_invalid_config_apply_nothing() {
    let cp = control_plane();
    let ns = cp.namespace("inputs");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);

    // A user's Secret under the name of the ctl secret is neither used nor overwritten.
    let mine: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken-ctl"},
        "stringData": {"ctl-secret": "mine"}
    }))
    .unwrap();
    let mine = secrets.create(&PostParams::default(), &mine).await.unwrap();
    create(&habs, &Habitat::test("taken")).await;
    let message = degraded(&habs, "taken", "SecretNotOwned").await;
    assert!(message.contains("ctl gateway's secret"), "{message}");
    let still = secrets.get("taken-ctl").await.unwrap();
    assert_eq!(still.resource_version(), mine.resource_version());

    // configSecretName naming a missing Secret, then one holding invalid TOML.
    let mut hab = Habitat::test("cfg");
    hab.spec.service.config_secret_name = Some("cfg-user".into());
    create(&habs, &hab).await;
    let message = degraded(&habs, "cfg", "SecretMissing").await;
    assert!(
        message.contains("cfg-user") && message.contains("configSecretName"),
        "{message}"
    );
    let bad: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cfg-user"},
        "stringData": {"user.toml": "port = \n"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &bad).await.unwrap();
    // Secrets are not watched: a spec change brings the resource back at once.
    habs.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"count": 2}})),
    )
    .await
    .unwrap();
    let message = degraded(&habs, "cfg", "InvalidConfig").await;
    assert!(message.contains("key user.toml of Secret"), "{message}");
    assert!(message.contains("line 1"), "{message}");

    // service.name other than the package's name: the ring would never show it.
    let misnamed = Habitat::test("misnamed").package("core/redis");
    create(&habs, &misnamed).await;
    let message = degraded(&habs, "misnamed", "ServiceNameMismatch").await;
    assert!(
        message.contains("set service.name to \"redis\""),
        "{message}"
    );
    for name in ["taken", "cfg", "misnamed"] {
        assert!(stss.get_opt(name).await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn a_ring_key_is_shared_unowned_and_never_generated_again() {
    let cp = control_plane();
    let ns = cp.namespace("ring");
    let _operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key = "ring-20260101000000";
    create(&habs, &Habitat::test("a").ring_key(key)).await;
    let a = observed(&habs, "a", 1).await;
    assert_eq!(a.status.unwrap().ring_key_secret.as_deref(), Some(key));
    let secret = secrets.get(key).await.unwrap();
    // Not owned: deleting one of the resources sharing it must not delete the key.
    assert!(
        secret.owner_references().is_empty(),
        "{:?}",
        secret.owner_references()
    );
    create(&habs, &Habitat::test("b").ring_key(key)).await;
    let b = observed(&habs, "b", 1).await;
    assert_eq!(b.status.unwrap().ring_key_secret.as_deref(), Some(key));
    assert_eq!(
        secrets.get(key).await.unwrap().resource_version(),
        secret.resource_version()
    );

    // The key vanishes: no new key, a Degraded condition and a warning event instead.
    secrets.delete(key, &DeleteParams::default()).await.unwrap();
    habs.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"count": 2}})),
    )
    .await
    .unwrap();
    let message = degraded(&habs, "a", "RingKeyMissing").await;
    assert!(message.contains("does not generate a new key"), "{message}");
    // A resource that never saw the key does not generate it either: b recorded it.
    create(&habs, &Habitat::test("c").ring_key(key)).await;
    let message = degraded(&habs, "c", "RingKeyMissing").await;
    assert!(message.contains("status of Habitat"), "{message}");
    assert!(secrets.get_opt(key).await.unwrap().is_none());
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, "a RingKeyMissing event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RingKeyMissing"))
            .then_some(())
    })
    .await;

    // A key generated by an earlier version is owned by its resource: the owner is dropped.
    let old = "old-20260101000000";
    let d = create(&habs, &Habitat::test("d").ring_key(old).paused()).await;
    let owned: Secret = serde_json::from_value(json!({
        "metadata": {"name": old, "ownerReferences": [build::owner_reference(&d)]},
        "stringData": {"ring-key": "SYM-SEC-1\nold-20260101000000\n\nAAAA\n"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &owned)
        .await
        .unwrap();
    habs.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    observed(&habs, "d", 2).await;
    let secret = secrets.get(old).await.unwrap();
    assert!(
        secret.owner_references().is_empty(),
        "{:?}",
        secret.owner_references()
    );
    assert_eq!(
        secret.data.unwrap()["ring-key"].0,
        b"SYM-SEC-1\nold-20260101000000\n\nAAAA\n"
    );
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
    // Secrets: a's config, ctl and gateway; b's ring key, ctl and gateway.
    assert_eq!(before.len(), 2 + 2 + 4 + 2 + 6, "{before:?}");

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
        ("get", "secrets"),
        ("create", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("list", "habitats.habitat.sh"),
        ("patch", "poddisruptionbudgets.policy"),
        ("create", "events.events.k8s.io"),
        ("delete", "pods"),
        ("update", "leases.coordination.k8s.io"),
    ] {
        // `kind/x` would name an object x to kubectl: subresources go in --subresource.
        let (kind, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let sub = format!("--subresource={sub}");
        let out = cp.kubectl(&["auth", "can-i", verb, kind, &sub, "-n", &ns, "--as", &sa]);
        assert_eq!(stdout(&out).trim(), "yes", "{sa} cannot {verb} {resource}");
    }
    // Nor more: no reading every Secret, no deleting volumes.
    for (verb, resource) in [
        ("list", "secrets"),
        ("watch", "secrets"),
        ("delete", "persistentvolumeclaims"),
        ("deletecollection", "persistentvolumeclaims"),
        ("deletecollection", "pods"),
        ("create", "pods"),
    ] {
        let out = cp.kubectl(&["auth", "can-i", verb, resource, "-n", &ns, "--as", &sa]);
        assert_eq!(stdout(&out).trim(), "no", "{sa} can {verb} {resource}");
    }
    let out = cp.helm(&["uninstall", "habitat-operator", "--namespace", &ns]);
    assert!(out.status.success(), "helm uninstall: {}", stderr(&out));
}
