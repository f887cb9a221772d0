//! Election-aware rollouts with pods that really run (as `e2e.rs`: the real API server and
//! kube-controller-manager, the test node agent, the operator binary, real `hab sup run`
//! supervisors). The StatefulSet updates `OnDelete`; the operator deletes the outdated pods.
//! A watch on the pods records, from their UIDs, the order in which pods were deleted and
//! how many were unavailable at any moment.
//!
//! The operator is restarted in the middle of the rolling update: the order and the
//! one-at-a-time rule hold across it (all the rollout's state is in the cluster).
//!
//! Needs root (namespaces); without it the test skips. Waits with deadlines, never sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use habitat_operator::crd::{Habitat, RolloutStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use support::eventually;
use support::pods::{complete, is_ready, Cluster, APP_IMAGE_2, BROKEN_IMAGE};

/// Deadlines for what takes seconds on an idle machine: generous for a loaded 2-core one.
const WAIT: Duration = Duration::from_secs(240);

/// What the pod watch saw.
#[derive(Default)]
struct Seen {
    /// Pods by name: (uid, available = Ready and not terminating).
    pods: BTreeMap<String, (String, bool)>,
    /// Names of pods in the order their (old) UIDs were first seen terminating or gone.
    deleted: Vec<(String, String)>,
    /// Most pods unavailable (missing, terminating or not Ready) at once.
    max_unavailable: usize,
    /// For each deletion, how many pods were available then; and the first moment a pod
    /// created after the watch started was Ready (index into `deleted` at that time).
    deleted_before_first_new_ready: Option<usize>,
    initial: BTreeMap<String, String>,
}

/// Watches the pods of `name` (of which there should be `count`), recording into `seen`.
fn watch_pods(
    cluster: &Cluster,
    name: &str,
    count: usize,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = watcher::Config::default().labels(&format!("habitat.sh/habitat={name}"));
    let stream = watcher(cluster.pods(), config);
    let record = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut initialised = false;
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let mut s = record.lock().unwrap();
            let (pod, gone) = match event {
                watcher::Event::InitApply(pod) => {
                    let uid = pod.uid().unwrap_or_default();
                    s.initial.insert(pod.name_any(), uid);
                    (pod, false)
                }
                watcher::Event::Apply(pod) => (pod, false),
                watcher::Event::Delete(pod) => (pod, true),
                watcher::Event::InitDone => {
                    initialised = true;
                    continue;
                }
                watcher::Event::Init => continue,
            };
            let name = pod.name_any();
            let uid = pod.uid().unwrap_or_default();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if (gone || terminating) && !s.deleted.iter().any(|(_, u)| *u == uid) {
                s.deleted.push((name.clone(), uid.clone()));
            }
            let new = !s.initial.values().any(|u| *u == uid);
            if new && is_ready(&pod) && !terminating && s.deleted_before_first_new_ready.is_none() {
                s.deleted_before_first_new_ready = Some(s.deleted.len());
            }
            if gone {
                if s.pods.get(&name).is_some_and(|(u, _)| *u == uid) {
                    s.pods.remove(&name);
                }
            } else {
                s.pods.insert(name, (uid, is_ready(&pod) && !terminating));
            }
            if initialised {
                let available = s.pods.values().filter(|(_, ok)| *ok).count();
                let unavailable = count.saturating_sub(available);
                s.max_unavailable = s.max_unavailable.max(unavailable);
            }
        }
    });
    (seen, task)
}

async fn rollout(cluster: &Cluster, name: &str) -> Option<RolloutStatus> {
    cluster.habs().get(name).await.ok()?.status?.rollout
}

/// Waits until `name`'s rollout satisfies `check`.
async fn rollout_where(
    cluster: &Cluster,
    name: &str,
    what: &str,
    check: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let started = Instant::now();
    let found = eventually(WAIT, &format!("{name}: rollout {what}"), || async {
        rollout(cluster, name).await.filter(|r| check(r))
    })
    .await;
    eprintln!(
        "{name}: rollout {what} after {:?}: {found:?}",
        started.elapsed()
    );
    found
}

/// The StatefulSet's `updateRevision` once it differs from `previous` (the operator applied
/// the new template and the StatefulSet controller saw it).
async fn sts_revision(cluster: &Cluster, name: &str, previous: &str) -> String {
    let api: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(cluster.client.clone(), &cluster.ns);
    eventually(WAIT, "the StatefulSet to see the new template", || async {
        let sts = api.get(name).await.ok()?;
        let status = sts.status?;
        (status.observed_generation >= sts.metadata.generation)
            .then_some(status.update_revision)
            .flatten()
            .filter(|r| r != previous)
    })
    .await
}

/// Reasons and notes of the events about the resource `name`.
async fn events(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

async fn wait_for_events(cluster: &Cluster, name: &str, wanted: &[&str]) -> Vec<(String, String)> {
    let started = Instant::now();
    loop {
        let events = events(cluster, name).await;
        let found = |w: &&str| {
            events
                .iter()
                .any(|(r, n)| format!("{r} {n}").starts_with(w))
        };
        if wanted.iter().all(found) {
            return events;
        }
        assert!(
            started.elapsed() < WAIT,
            "events {wanted:?} not all published; found {events:#?}\n{}",
            cluster.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn patch_spec(cluster: &Cluster, name: &str, spec: serde_json::Value) {
    cluster
        .habs()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

async fn pod_uids(cluster: &Cluster, name: &str) -> BTreeMap<String, (String, bool)> {
    let params = ListParams::default().labels(&format!("habitat.sh/habitat={name}"));
    cluster
        .pods()
        .list(&params)
        .await
        .unwrap()
        .items
        .iter()
        .map(|p: &Pod| {
            (
                p.name_any(),
                (
                    p.uid().unwrap_or_default(),
                    p.metadata.deletion_timestamp.is_some(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_template_change_rolls_followers_first_and_the_leader_last_at_once_replaces_all_and_a_failing_release_stalls(
) {
    let Some(mut cluster) = Cluster::start("rollout").await else {
        return;
    };
    let hab = Habitat::test("hello")
        .leader()
        .count(3)
        .package("habitat-rs/hello");
    cluster.create(hab).await;
    cluster.pods_ready("hello", 3, WAIT).await;
    let first = cluster
        .census_where("hello", WAIT, "3 alive and a leader", |c| complete(c, 3))
        .await;
    let initial = rollout_where(&cluster, "hello", "complete at creation", |r| {
        r.phase == "Complete"
    })
    .await;
    assert_eq!((initial.updated, initial.total), (3, 3));
    assert_eq!(initial.started_at, None, "a new resource rolls nothing");
    let leader = first.leader.clone().unwrap().pod.unwrap();

    // 1. Rolling: a new image tag (the same directory on the node agent).
    let (seen, watch) = watch_pods(&cluster, "hello", 3);
    let started = Instant::now();
    patch_spec(&cluster, "hello", json!({ "image": APP_IMAGE_2 })).await;
    let target = sts_revision(&cluster, "hello", &initial.target_revision).await;
    // An operator restart after the first replacement: the next one picks up from what the
    // cluster shows (pod revisions, the census, status.rollout).
    eventually(WAIT, "the first pod replaced", || async {
        (!seen.lock().unwrap().deleted.is_empty()).then_some(())
    })
    .await;
    let log = cluster.operator.log.clone();
    let exit = cluster.operator.stop(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    cluster.operator = support::Operator::start(
        cluster.cp,
        Some(&cluster.ns),
        &["--sidecar-image", support::pods::SIDECAR_IMAGE],
    );
    let done = rollout_where(&cluster, "hello", "complete at the new revision", |r| {
        r.target_revision == target && r.phase == "Complete"
    })
    .await;
    let took = started.elapsed();
    assert_eq!((done.updated, done.total), (3, 3));
    assert!(done.started_at.is_some());
    cluster.pods_ready("hello", 3, WAIT).await;
    watch.abort();
    let (order, max_unavailable) = {
        let s = seen.lock().unwrap();
        let order: Vec<String> = s.deleted.iter().map(|(n, _)| n.clone()).collect();
        (order, s.max_unavailable)
    };
    eprintln!(
        "rolling: deleted {order:?} (leader {leader}), at most {max_unavailable} down, {took:?}"
    );
    let mut unique = order.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (order.len(), unique.len()),
        (3, 3),
        "each pod replaced once: {order:?}"
    );
    assert_eq!(order.last(), Some(&leader), "the leader last: {order:?}");
    let mut followers: Vec<String> = (0..3)
        .map(|n| format!("hello-{n}"))
        .filter(|p| *p != leader)
        .collect();
    followers.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        &order[..2],
        &followers[..],
        "followers from the highest ordinal"
    );
    assert!(max_unavailable <= 1, "{max_unavailable} pods down at once");
    // Every pod runs the new template.
    for pod in cluster
        .pods()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        assert_eq!(
            pod.labels().get("controller-revision-hash"),
            Some(&target),
            "{}",
            pod.name_any()
        );
        assert_eq!(
            pod.spec.unwrap().containers[0].image.as_deref(),
            Some(APP_IMAGE_2)
        );
    }
    let mut wanted = vec!["RolloutStarted".to_owned()];
    wanted.extend(order.iter().map(|p| format!("PodReplaced {p}")));
    wanted.push("RolloutComplete".to_owned());
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    wait_for_events(&cluster, "hello", &wanted).await;
    cluster
        .census_where("hello", WAIT, "3 alive after the roll", |c| complete(c, 3))
        .await;

    // 2. at-once: every outdated pod deleted before any new one is up.
    let (seen, watch) = watch_pods(&cluster, "hello", 3);
    patch_spec(
        &cluster,
        "hello",
        json!({
            "service": { "strategy": "at-once" },
            "env": [{ "name": "GREETING", "value": "at once" }],
        }),
    )
    .await;
    let target = sts_revision(&cluster, "hello", &done.target_revision).await;
    let at_once = rollout_where(&cluster, "hello", "at-once complete", |r| {
        r.target_revision == target && r.phase == "Complete"
    })
    .await;
    assert!(at_once.started_at.is_some(), "{at_once:?}");
    cluster.pods_ready("hello", 3, WAIT).await;
    watch.abort();
    {
        let s = seen.lock().unwrap();
        eprintln!(
            "at-once: deleted {:?}, {:?} deleted before the first new pod was Ready",
            s.deleted, s.deleted_before_first_new_ready
        );
        assert_eq!(s.deleted.len(), 3, "{:?}", s.deleted);
        assert_eq!(s.deleted_before_first_new_ready, Some(3));
    }
    cluster
        .census_where("hello", WAIT, "3 alive after at-once", |c| complete(c, 3))
        .await;

    // 3. A release whose health check fails: one follower replaced, then the rollout stops.
    let census = cluster
        .census_where("hello", WAIT, "a leader in a pod", |c| complete(c, 3))
        .await;
    let leader = census.leader.unwrap().pod.unwrap();
    let victim = (0..3)
        .rev()
        .map(|n| format!("hello-{n}"))
        .find(|p| *p != leader)
        .unwrap();
    let before = pod_uids(&cluster, "hello").await;
    patch_spec(
        &cluster,
        "hello",
        json!({
            "image": BROKEN_IMAGE,
            "service": { "strategy": "rolling" },
            "rollout": { "progressDeadlineSeconds": 20 },
        }),
    )
    .await;
    let target = sts_revision(&cluster, "hello", &at_once.target_revision).await;
    let stalled = rollout_where(&cluster, "hello", "stalled", |r| {
        r.target_revision == target && r.phase == "Stalled"
    })
    .await;
    assert_eq!((stalled.updated, stalled.total), (1, 3));
    assert!(
        stalled.message.contains(&format!("pod {victim}")) && stalled.message.contains("not Ready"),
        "{stalled:?}"
    );
    let hab = cluster.habs().get("hello").await.unwrap();
    let degraded = hab
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "RolloutStalled"),
        "{degraded:?}"
    );
    assert!(degraded.message.contains(&victim), "{degraded:?}");
    wait_for_events(
        &cluster,
        "hello",
        &[&format!("PodReplaced {victim}"), "RolloutStalled"],
    )
    .await;
    // A reconcile after the stall (a metadata change brings one) deletes nothing more.
    let reconciles = cluster
        .operator
        .counter("habitat_operator_reconcile_duration_seconds_count");
    cluster
        .habs()
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": "1"}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "another reconcile", || async {
        (cluster
            .operator
            .counter("habitat_operator_reconcile_duration_seconds_count")
            > reconciles)
            .then_some(())
    })
    .await;
    let after = pod_uids(&cluster, "hello").await;
    for (pod, (uid, _)) in &before {
        if *pod == victim {
            assert_ne!(after[pod].0, *uid, "{victim} was replaced");
        } else {
            assert_eq!(
                after[pod],
                (uid.clone(), false),
                "{pod} untouched\n{}",
                cluster.diagnostics()
            );
        }
    }
    assert_eq!(rollout(&cluster, "hello").await.unwrap().phase, "Stalled");
}
