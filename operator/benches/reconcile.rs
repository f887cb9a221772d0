//! Operator benchmarks against the test control plane (the targets):
//! 1. a new Habitat -> its StatefulSet exists: median <= 1 s;
//! 2. 500 Habitats created at once -> all reconciled (status.observedGeneration = 1) <= 60 s
//!    on 2 cores, with the operator's peak RSS <= 60 MB.
//!
//! `cargo bench -p habitat-operator --bench reconcile` (needs `tests/k8s/build.sh`).
//! `HABITAT_BENCH_COUNT` changes the 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use habitat_operator::crd::Habitat;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{ListParams, PostParams};
use kube::Api;
use support::{control_plane, Operator};

fn for_create(hab: Habitat) -> Habitat {
    let mut hab = hab;
    hab.metadata.uid = None;
    hab.metadata.generation = None;
    hab.metadata.namespace = None;
    hab
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let cp = control_plane();
    let client = cp.client().await;

    // 1. Latency of one new resource.
    let ns = cp.namespace("bench-latency");
    let operator = Operator::start(cp, Some(&ns), &[]);
    while operator.get("/readyz").map(|r| r.0) != Some(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let mut latencies = Vec::new();
    for i in 0..30 {
        let name = format!("lat-{i}");
        let start = Instant::now();
        habs.create(&PostParams::default(), &for_create(Habitat::test(&name)))
            .await
            .unwrap();
        while stss.get_metadata_opt(&name).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    println!(
        "new Habitat -> StatefulSet exists ({} resources, one at a time): median {:?}, p90 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        latencies[latencies.len() - 1]
    );
    drop(operator);

    // 2. Many resources at once.
    let count: usize = std::env::var("HABITAT_BENCH_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    let ns = cp.namespace("bench-bulk");
    let operator = Operator::start(cp, Some(&ns), &[]);
    while operator.get("/readyz").map(|r| r.0) != Some(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_rss = operator.peak_rss_kib().unwrap_or(0);
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let habs = habs.clone();
            async move {
                let hab = for_create(Habitat::test(&format!("bulk-{i}")).count(3));
                habs.create(&PostParams::default(), &hab).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let created = start.elapsed();
    loop {
        let list = habs.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|h| h.status.as_ref().and_then(|s| s.observed_generation) == Some(1))
            .count();
        if done == count {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "only {done}/{count} reconciled after 300 s; operator log ends with:\n{}",
            tail(&operator.log(), 20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reconciled = start.elapsed();
    let peak = operator.peak_rss_kib().unwrap_or(0);
    println!(
        "{count} Habitats created at once (created in {created:?}): all reconciled (children applied, status written) in {reconciled:?}"
    );
    println!(
        "operator RSS: {:.1} MB idle, {:.1} MB peak (VmHWM)",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "reconciles: {}, failures: {}",
        operator.counter("habitat_operator_reconciles_total"),
        operator.counter("habitat_operator_reconcile_failures_total")
    );
}
