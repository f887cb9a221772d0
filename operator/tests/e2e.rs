//! End to end with pods that really run: the real API server and kube-controller-manager
//! (StatefulSet, garbage collector, disruption), the test node agent running every pod as
//! processes in its own network and mount namespaces, the operator binary, and the workspace's
//! `hab` as the sidecar image's `/bin/hab` (`support::pods`). Nothing plays a kubelet's or a
//! controller's part: the operator's StatefulSet makes the pods, its init container copies `hab`
//! in, `hab sup run` forms the ring over the pods' IPs, and the operator follows the census.
//!
//! The tests run one at a time (each brings up a ring of 3 to 5 supervisors, which is what a
//! loaded 2-core machine takes without flakes) and wait with deadlines, never sleeps. Needs
//! root (namespaces); without it the tests skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use habitat_e2e::run_hab;
use habitat_operator::crd::{CensusStatus, Habitat, NetworkPolicySpec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::eventually;
use support::pods::{alive, complete, Cluster};

/// Deadlines for what takes seconds on an idle machine: generous for a loaded 2-core one.
const WAIT: Duration = Duration::from_secs(180);

/// One test at a time (see the module's comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn leader_pod(census: &CensusStatus) -> String {
    census.leader.clone().unwrap().pod.unwrap()
}

fn leader_id(census: &CensusStatus) -> String {
    census.leader.clone().unwrap().member_id
}

async fn set_config(cluster: &Cluster, name: &str, config: &str) {
    cluster
        .habs()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"service": {"config": config}}})),
        )
        .await
        .unwrap();
}

/// Waits until every pod of `pods` rendered `hello.conf` containing `text`.
async fn rendered_everywhere(cluster: &Cluster, pods: &[String], text: &str) {
    for pod in pods {
        eventually(WAIT, &format!("{pod} renders {text:?}"), || async {
            cluster
                .container_file(pod, "/hab/svc/hello/config/hello.conf")
                .filter(|c| c.contains(text))
                .map(drop)
        })
        .await;
    }
}

fn hello(name: &str, count: i32) -> Habitat {
    Habitat::test(name)
        .leader()
        .count(count)
        .package("habitat-rs/hello")
        .config("message = \"from the spec\"\n")
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn a_leader_group_runs_in_pods_its_status_names_the_leader_and_follows_failovers() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("e2e-leader").await else {
        return;
    };
    cluster.create(hello("hello", 3)).await;
    cluster.pods_ready("hello", 3, WAIT).await;
    let first = cluster
        .census_where("hello", WAIT, "3 alive members and a leader", |c| {
            complete(c, 3)
        })
        .await;
    let mut pods: Vec<String> = first.members.iter().filter_map(|m| m.pod.clone()).collect();
    pods.sort();
    assert_eq!(pods, names("hello", 3), "{first:?}");
    let leaders = first
        .members
        .iter()
        .filter(|m| m.role.as_deref() == Some("leader"))
        .count();
    assert_eq!(leaders, 1, "{first:?}");
    assert_eq!(first.ready.as_deref(), Some("3/3"));
    rendered_everywhere(&cluster, &pods, "from the spec").await;

    // The printer columns.
    let old_leader = leader_pod(&first);
    let out = cluster
        .cp
        .kubectl(&["get", "hab", "hello", "-n", &cluster.ns]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert!(
        header.contains(&"LEADER") && header.contains(&"READY"),
        "{text}"
    );
    let row = text.lines().nth(1).unwrap();
    assert!(row.contains(&old_leader) && row.contains("3/3"), "{text}");

    // SIGKILL of the leader pod's processes: a new leader in status.
    let killed_id = leader_id(&first);
    let killed = Instant::now();
    cluster.kill_pod_processes(&old_leader);
    let after_kill = cluster
        .census_where("hello", WAIT, "a new leader after SIGKILL", |c| {
            c.leader
                .as_ref()
                .is_some_and(|l| l.member_id != killed_id && l.pod.is_some())
        })
        .await;
    eprintln!(
        "SIGKILL of {old_leader}: new leader {} in status after {:?}",
        leader_pod(&after_kill),
        killed.elapsed()
    );
    // The killed pod's container restarts (a new member under the same pod name).
    cluster
        .census_where("hello", WAIT, "3 alive again", |c| complete(c, 3))
        .await;

    // Deleting the leader's pod: it resigns on SIGTERM and the ring elects another at once.
    let current = cluster.census("hello").await.unwrap();
    let deleted_pod = leader_pod(&current);
    let deleted_id = leader_id(&current);
    let deleted = Instant::now();
    cluster
        .pods()
        .delete(&deleted_pod, &DeleteParams::default())
        .await
        .unwrap();
    let handed = cluster
        .census_where("hello", WAIT, "a new leader after deleting its pod", |c| {
            c.leader
                .as_ref()
                .is_some_and(|l| l.member_id != deleted_id && l.pod.is_some())
        })
        .await;
    let handover = deleted.elapsed();
    eprintln!(
        "deleting {deleted_pod}: new leader {} in status after {handover:?}",
        leader_pod(&handed)
    );
    // `kubectl describe hab` tells the handover: an event on the resource naming the new
    // leader's pod and the election's term, read back through the API server. The census read
    // again each time, so a later write (a next term) is matched too.
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.ns);
    let note = eventually(
        WAIT,
        "a LeaderElected event naming the new leader",
        || async {
            let census = cluster.census("hello").await?;
            let leader = census.leader.clone()?;
            if leader.member_id == deleted_id {
                return None;
            }
            let expected = format!("{}, term {}", leader.pod?, census.election_term?);
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("LeaderElected"))
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("hello"))
                .find_map(|e| e.note.clone().filter(|n| *n == expected))
        },
    )
    .await;
    eprintln!("event: LeaderElected {note}");
    // The wide columns show the election and the config incarnation.
    let out = cluster
        .cp
        .kubectl(&["get", "hab", "hello", "-n", &cluster.ns, "-o", "wide"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert!(
        header.contains(&"ELECTION") && header.contains(&"CONFIG"),
        "{text}"
    );
    let row = text.lines().nth(1).unwrap();
    assert!(row.contains("ElectionFinished"), "{text}");
    // The StatefulSet brings the pod back, as a new member replacing the old one.
    cluster.pods_ready("hello", 3, WAIT).await;
    cluster
        .census_where("hello", WAIT, "3 alive after the pod came back", |c| {
            complete(c, 3)
        })
        .await;
    // SIGTERM reached `hab` (not the 60 s grace period's SIGKILL and a failure detector).
    assert!(
        handover < Duration::from_secs(10),
        "leadership handed over {handover:?} after the delete\n{}",
        cluster.diagnostics()
    );
}

#[tokio::test]
async fn config_from_the_spec_and_a_workstation_reaches_every_pod_and_an_operator_restart_changes_nothing(
) {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start("e2e-config").await else {
        return;
    };
    cluster.create(hello("hello", 3)).await;
    cluster.pods_ready("hello", 3, WAIT).await;
    let first = cluster
        .census_where("hello", WAIT, "complete with the spec's config", |c| {
            complete(c, 3) && c.config_incarnation.is_some()
        })
        .await;
    let pods = names("hello", 3);
    rendered_everywhere(&cluster, &pods, "from the spec").await;

    // A spec change: a higher incarnation, rendered on every member.
    let before = first.config_incarnation.unwrap();
    let changed_at = Instant::now();
    set_config(&cluster, "hello", "message = \"changed in the spec\"\n").await;
    rendered_everywhere(&cluster, &pods, "changed in the spec").await;
    eprintln!(
        "spec config rendered on 3 pods after {:?}",
        changed_at.elapsed()
    );
    let changed = cluster
        .census_where("hello", WAIT, "a higher config incarnation", |c| {
            c.config_incarnation > Some(before)
        })
        .await
        .config_incarnation
        .unwrap();

    // `hab config apply` from the host to a pod's ctl gateway, the secret read from
    // `<name>-ctl` with kubectl as the README shows.
    let out = cluster.cp.kubectl(&[
        "get",
        "secret",
        "hello-ctl",
        "-n",
        &cluster.ns,
        "-o",
        "jsonpath={.data.ctl-secret}",
    ]);
    use base64::Engine;
    let ctl = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(out.stdout.trim_ascii())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ctl, cluster.secret("hello-ctl", "ctl-secret").await);
    let applied = changed + 10;
    let file = cluster.images.dir.path().join("workstation.toml");
    std::fs::write(&file, "message = \"from a workstation\"\n").unwrap();
    let remote = format!("{}:9632", cluster.pod_ip("hello-1").unwrap());
    let (status, stdout, stderr) = run_hab(
        &[
            "config",
            "apply",
            "hello.default",
            &applied.to_string(),
            file.to_str().unwrap(),
            "--remote-sup",
            &remote,
        ],
        &[("HAB_CTL_SECRET", &ctl)],
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    cluster
        .census_where("hello", WAIT, "the workstation's incarnation", |c| {
            c.config_incarnation == Some(applied)
        })
        .await;
    rendered_everywhere(&cluster, &pods, "from a workstation").await;

    // An operator restart: no write, nothing sent to the ring, the ring's config kept.
    let operator_log = cluster.operator.log.clone();
    let exit = cluster.operator.stop(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{}",
        std::fs::read_to_string(&operator_log).unwrap_or_default()
    );
    let version = cluster
        .habs()
        .get("hello")
        .await
        .unwrap()
        .resource_version();
    cluster.operator = support::Operator::start(
        cluster.cp,
        Some(&cluster.ns),
        &["--sidecar-image", support::pods::SIDECAR_IMAGE],
    );
    eventually(
        WAIT,
        "the new operator's stream to read the census",
        || async {
            let reconciled = cluster
                .operator
                .counter("habitat_operator_reconcile_duration_seconds_count");
            let answers = cluster
                .operator
                .counter("habitat_operator_census_answers_total");
            (reconciled >= 1.0 && answers >= 1.0).then_some(())
        },
    )
    .await;
    let operator = &cluster.operator;
    assert_eq!(operator.counter("habitat_operator_ring_applies_total"), 0.0);
    assert_eq!(operator.counter("habitat_operator_departures_total"), 0.0);
    assert_eq!(
        operator.counter("habitat_operator_census_status_writes_total"),
        0.0,
        "{}",
        cluster.diagnostics()
    );
    assert_eq!(
        cluster
            .habs()
            .get("hello")
            .await
            .unwrap()
            .resource_version(),
        version
    );
    assert_eq!(
        cluster.census("hello").await.unwrap().config_incarnation,
        Some(applied)
    );
    assert!(cluster
        .container_file("hello-0", "/hab/svc/hello/config/hello.conf")
        .unwrap()
        .contains("from a workstation"));
}

#[tokio::test]
async fn scaling_down_departs_the_removed_members_and_a_delete_leaves_the_rest_to_the_garbage_collector(
) {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("e2e-scale").await else {
        return;
    };
    cluster.create(hello("hello", 3).storage("1Gi")).await;
    cluster.pods_ready("hello", 3, WAIT).await;
    cluster
        .census_where("hello", WAIT, "3 alive and a leader", |c| complete(c, 3))
        .await;

    let scale = |n: &str| {
        let out = cluster.cp.kubectl(&[
            "scale",
            "hab/hello",
            "-n",
            &cluster.ns,
            &format!("--replicas={n}"),
        ]);
        assert!(out.status.success(), "{out:?}");
    };
    scale("5");
    cluster.pods_ready("hello", 5, WAIT).await;
    let five = cluster
        .census_where("hello", WAIT, "5 alive and a leader", |c| complete(c, 5))
        .await;
    let removed: Vec<String> = five
        .members
        .iter()
        .filter(|m| matches!(m.pod.as_deref(), Some("hello-3" | "hello-4")))
        .map(|m| m.member_id.clone())
        .collect();
    assert_eq!(removed.len(), 2, "{five:?}");

    scale("3");
    let scaled = Instant::now();
    let three = cluster
        .census_where("hello", WAIT, "the removed members departed", |c| {
            removed.iter().all(|id| {
                c.members
                    .iter()
                    .any(|m| &m.member_id == id && m.health.as_deref() == Some("Departed"))
            })
        })
        .await;
    // Departed as the pods go, not at the census stream's next resync (60 s).
    assert!(
        scaled.elapsed() < Duration::from_secs(45),
        "departed {:?} after the scale-down",
        scaled.elapsed()
    );
    // Quorum counts the three that remain: the election stays finished, no NoQuorum.
    let settled = cluster
        .census_where("hello", WAIT, "3 alive, election finished", |c| {
            complete(c, 3)
        })
        .await;
    assert_eq!(settled.ready.as_deref(), Some("3/3"));
    assert!(
        !settled
            .members
            .iter()
            .any(|m| m.health.as_deref() == Some("Confirmed")),
        "{three:?}"
    );
    assert_eq!(
        cluster
            .operator
            .counter("habitat_operator_departures_total"),
        2.0
    );
    // The reconciler derives the condition from the census in a write of its own.
    let habs = cluster.habs();
    eventually(
        WAIT,
        "Degraded False once the dead are departed",
        || async {
            let hab = habs.get("hello").await.ok()?;
            let conditions = hab.status?.conditions;
            conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.status == "False")
                .then_some(())
        },
    )
    .await;

    // Delete: the garbage collector takes what the resource owns; the volumes stay.
    cluster
        .habs()
        .delete("hello", &DeleteParams::background())
        .await
        .unwrap();
    let ns = &cluster.ns;
    let client = &cluster.client;
    eventually(
        WAIT,
        "children removed by the garbage collector",
        || async {
            let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            let svc: Api<Service> = Api::namespaced(client.clone(), ns);
            let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
            let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
            let all = ListParams::default();
            let empty = sts.list(&all).await.ok()?.items.is_empty()
                && svc.list(&all).await.ok()?.items.is_empty()
                && pdb.list(&all).await.ok()?.items.is_empty()
                && cluster.pods().list(&all).await.ok()?.items.is_empty()
                && secrets
                    .list(&all)
                    .await
                    .ok()?
                    .items
                    .iter()
                    .all(|s| !s.name_any().starts_with("hello-"));
            empty.then_some(())
        },
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut kept: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    kept.sort();
    assert_eq!(kept, names("data-hello", 5));
    assert!(cluster.agent.pod(ns, "hello-0").is_none());
}

#[tokio::test]
async fn a_web_group_bound_to_a_db_group_renders_the_db_leaders_address_and_the_dbs_policy_selects_the_ring(
) {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("e2e-binds").await else {
        return;
    };
    // The db group: resource `db` running the hello package (which exports `port`) as
    // service group hello.default.
    let mut db = hello("db", 3);
    db.spec.service.name = "hello".into();
    db.spec.network_policy = Some(NetworkPolicySpec {
        enabled: true,
        ..NetworkPolicySpec::default()
    });
    cluster.create(db).await;
    let web = Habitat::test("web")
        .count(2)
        .package("habitat-rs/web")
        .bind("database", "hello", "default");
    cluster.create(web).await;
    cluster.pods_ready("db", 3, WAIT).await;
    cluster.pods_ready("web", 2, WAIT).await;
    cluster
        .census_where("db", WAIT, "3 alive and a leader", |c| complete(c, 3))
        .await;
    cluster
        .census_where("web", WAIT, "2 alive standalone members", |c| alive(c) == 2)
        .await;
    // The leader as the db's status names it when the render is read (an election may still
    // move it while two rings meet).
    for pod in names("web", 2) {
        eventually(WAIT, &format!("{pod} renders the db leader"), || async {
            let db = cluster.census("db").await?;
            let leader_ip = cluster.pod_ip(&db.leader?.pod?)?;
            cluster
                .container_file(&pod, "/hab/svc/web/config/web.conf")
                .filter(|c| c.contains(&format!("\"{leader_ip}:8080\"")))
                .map(drop)
        })
        .await;
    }

    // The db's NetworkPolicy as the API server stores it selects the running db pods, and lets
    // gossip in from the pods of both resources of the ring (web binds to db). The node agent
    // does not enforce policies: the selectors are checked against the pods instead.
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), &cluster.ns);
    let policy = eventually(WAIT, "NetworkPolicy db", || async {
        policies.get_opt("db").await.ok().flatten()
    })
    .await;
    assert_eq!(policy.owner_references()[0].name, "db");
    let spec = policy.spec.clone().unwrap();
    let selected = pod_names(&cluster, spec.pod_selector.as_ref().unwrap()).await;
    assert_eq!(selected, names("db", 3));
    let rules = spec.ingress.unwrap();
    let gossip = rules
        .iter()
        .find(|r| {
            r.ports.iter().flatten().any(|p| {
                p.port == Some(IntOrString::Int(9638)) && p.protocol.as_deref() == Some("UDP")
            })
        })
        .unwrap();
    let from = gossip.from.clone().unwrap();
    let mut peers = pod_names(&cluster, from[0].pod_selector.as_ref().unwrap()).await;
    peers.sort();
    let mut ring = names("db", 3);
    ring.extend(names("web", 2));
    assert_eq!(peers, ring);
    // Turned off: the policy goes.
    cluster
        .habs()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"networkPolicy": {"enabled": false}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "NetworkPolicy db deleted", || async {
        policies.get_opt("db").await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Names of the pods of the test's namespace that `selector` selects, sorted, listed by the
/// API server with the selector as a label selector string.
async fn pod_names(cluster: &Cluster, selector: &LabelSelector) -> Vec<String> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        assert_eq!(e.operator, "In", "{e:?}");
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(format!("{} in ({values})", e.key));
    }
    assert!(!terms.is_empty(), "an empty selector selects everything");
    let list = cluster
        .pods()
        .list(&ListParams::default().labels(&terms.join(",")))
        .await
        .unwrap();
    let mut names: Vec<String> = list.items.iter().map(ResourceExt::name_any).collect();
    names.sort();
    names
}
