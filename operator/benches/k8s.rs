//! Kubernetes end to end, measured (issue 14's targets): pods that really run on the test node
//! agent, the real API server and controller-manager, the operator binary and `hab` (this
//! profile's build) as the sidecar image's `/bin/hab` (`tests/support/pods.rs`).
//!
//! 1. `pods_ready_s`: a 3-member leader resource applied -> all pods Ready;
//! 2. `status_complete_s`: pods Ready -> status shows 3 alive members and a leader (<= 5 s);
//! 3. `status_failover_s`: SIGKILL of the leader pod's processes -> status shows a new leader
//!    (<= ring failover + 1 s);
//! 4. `spec_config_rendered_s`: `spec.service.config` changed -> rendered on all 3 (<= 2 s);
//! 5. `rollout_5_s`: the image of a 5-member leader resource changed -> `status.rollout`
//!    Complete (issue 15: one pod at a time, the leader last), beside `pod_start_s`: the same
//!    resource created -> 5 pods Ready and alive in the census (the pods' and services' own
//!    start, the readiness probe's period included);
//! 6. `hundred_resources_status_s`: 100 one-member resources created at once -> every status
//!    shows its alive member (<= 30 s), with `operator_rss_mb` (peak) <= 60.
//!
//! `cargo bench -p habitat-operator --bench k8s` (root, `tests/k8s/build.sh`). It lives in the
//! operator crate, not habitat-e2e, because the control-plane harness is the operator's test
//! support and habitat-e2e is the operator's dev-dependency (the other way round is a cycle).
//! `HABITAT_BENCH_RESOURCES` changes the 100. The last line printed is one JSON object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use habitat_operator::crd::Habitat;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::eventually;
use support::pods::{alive, complete, Cluster};

const WAIT: Duration = Duration::from_secs(300);

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let Some(cluster) = Cluster::start("bench-k8s").await else {
        eprintln!("the k8s bench needs root (the node agent)");
        std::process::exit(2);
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load before: {}", load.trim());

    // 1-2. A leader resource of 3.
    let applied = Instant::now();
    cluster
        .create(
            Habitat::test("hello")
                .leader()
                .count(3)
                .package("habitat-rs/hello")
                .config("message = \"first\"\n"),
        )
        .await;
    cluster.pods_ready("hello", 3, WAIT).await;
    let pods_ready = applied.elapsed();
    let census = cluster
        .census_where("hello", WAIT, "complete", |c| complete(c, 3))
        .await;
    let status_complete = applied.elapsed() - pods_ready;

    // 3. Failover after SIGKILL of the leader's processes.
    let old = census.leader.clone().unwrap();
    let killed = Instant::now();
    cluster.kill_pod_processes(old.pod.as_deref().unwrap());
    cluster
        .census_where("hello", WAIT, "a new leader", |c| {
            c.leader
                .as_ref()
                .is_some_and(|l| l.member_id != old.member_id && l.pod.is_some())
        })
        .await;
    let failover = killed.elapsed();
    cluster
        .census_where("hello", WAIT, "3 alive again", |c| complete(c, 3))
        .await;
    cluster.pods_ready("hello", 3, WAIT).await;

    // 4. A spec config change rendered on every member.
    let changed = Instant::now();
    cluster
        .habs()
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"service": {"config": "message = \"second\"\n"}}})),
        )
        .await
        .unwrap();
    for pod in ["hello-0", "hello-1", "hello-2"] {
        eventually(WAIT, &format!("{pod} renders the change"), || async {
            cluster
                .container_file(pod, "/hab/svc/hello/config/hello.conf")
                .filter(|c| c.contains("second"))
                .map(drop)
        })
        .await;
    }
    let rendered = changed.elapsed();
    eprintln!("spec config rendered on 3 pods after {rendered:?}");

    // 5. A rollout of 5 members (a new image tag, the same directory on the agent).
    let (rollout, pod_start) = rollout_of_five(&cluster).await;

    // 6. Many one-member resources at once.
    let n: usize = std::env::var("HABITAT_BENCH_RESOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let created = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let cluster = &cluster;
            async move {
                // The service is the package's name: the ring names the group after it.
                let mut hab = Habitat::test(&format!("one-{i}")).package("habitat-rs/hello");
                hab.spec.service.name = "hello".into();
                cluster.create(hab).await;
            }
        })
        .await;
    eprintln!("{n} resources created in {:?}", created.elapsed());
    let (habs, pods_api) = (&cluster.habs(), &cluster.pods());
    let hundred_pods = std::cell::Cell::new(None::<Duration>);
    let hundred_pods = &hundred_pods;
    eventually(WAIT, &format!("{n} statuses complete"), || async move {
        if hundred_pods.get().is_none() {
            let pods = pods_api.list(&Default::default()).await.ok()?;
            let ready = pods
                .items
                .iter()
                .filter(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("one-"))
                })
                .filter(|p| support::pods::is_ready(p))
                .count();
            if ready == n {
                hundred_pods.set(Some(created.elapsed()));
                eprintln!("{n} pods Ready after {:?}", created.elapsed());
            }
        }
        let list = habs.list(&Default::default()).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|h| {
                h.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("one-"))
            })
            .filter(|h| {
                h.status
                    .as_ref()
                    .and_then(|s| s.census.as_ref())
                    .is_some_and(|c| alive(c) == 1 && c.members.iter().all(|m| m.pod.is_some()))
            })
            .count();
        (done == n).then_some(())
    })
    .await;
    let hundred = created.elapsed();
    let rss_mb = cluster.operator.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load after: {}", load.trim());

    println!(
        "{}",
        json!({
            "pods_ready_s": secs(pods_ready),
            "status_complete_s": secs(status_complete),
            "status_failover_s": secs(failover),
            "spec_config_rendered_s": secs(rendered),
            "rollout_5_s": secs(rollout),
            "pod_start_s": secs(pod_start),
            "hundred_resources_status_s": secs(hundred),
            "resources": n,
            "hundred_pods_ready_s": hundred_pods.get().map(secs),
            "operator_rss_mb": (rss_mb * 10.0).round() / 10.0,
        })
    );
}

/// Creates the 5-member resource `roll`, rolls it to a new image, and deletes it again: the
/// time from the image change to `status.rollout` Complete, and the time its 5 pods took to
/// start (created -> Ready and alive in the census).
async fn rollout_of_five(cluster: &Cluster) -> (Duration, Duration) {
    use support::pods::APP_IMAGE_2;
    let rollout = |cluster: &Cluster| {
        let habs = cluster.habs();
        async move { habs.get("roll").await.ok()?.status?.rollout }
    };
    // The service is the package's name (the ring names the group after it); its own ring.
    let mut hab = Habitat::test("roll")
        .leader()
        .count(5)
        .package("habitat-rs/hello");
    hab.spec.service.name = "hello".into();
    cluster.create(hab).await;
    let started = Instant::now();
    cluster.pods_ready("roll", 5, WAIT).await;
    cluster
        .census_where("roll", WAIT, "5 alive and a leader", |c| complete(c, 5))
        .await;
    let pod_start = started.elapsed();
    let before = eventually(WAIT, "roll: rollout complete at creation", || async {
        rollout(cluster).await.filter(|r| r.phase == "Complete")
    })
    .await;
    let changed = Instant::now();
    cluster
        .habs()
        .patch(
            "roll",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": APP_IMAGE_2}})),
        )
        .await
        .unwrap();
    let done = eventually(WAIT, "roll: rollout complete at the new image", || async {
        rollout(cluster)
            .await
            .filter(|r| r.target_revision != before.target_revision && r.phase == "Complete")
    })
    .await;
    let took = changed.elapsed();
    eprintln!("5 pods rolled in {took:?} ({done:?}); 5 pods started in {pod_start:?}");
    cluster
        .habs()
        .delete("roll", &Default::default())
        .await
        .unwrap();
    eventually(WAIT, "roll's pods gone", || async {
        let params = kube::api::ListParams::default().labels("habitat.sh/habitat=roll");
        cluster
            .pods()
            .list(&params)
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    (took, pod_start)
}
