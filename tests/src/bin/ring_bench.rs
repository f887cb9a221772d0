//! Ring benchmark: five real supervisors with DEFAULT timings on 127.0.200.1..5. Measures the
//! time from the last start until all five see five alive members with `hello.default` in their
//! census (target: under 10 s), then each supervisor's resident memory after 30 s idle.
//! Prints one JSON line: `{"ring_formed_s":..., "rss_mb":[...], "max_rss_mb":...}`.
//!
//! With `--members N` (N up to 250), a mass join instead: N supervisors without a service or
//! `--node-name` (all share the host name), default timings, started together on 127.0.202.1..N, each given only the first as its peer.
//! For each member, the time from the last start until it first saw all N alive in
//! `/butterfly` (target for 50: all within 3 s). Prints
//! `{"members":N, "all_see_all_s":max, "median_s":..., "per_member_s":[...]}`.
//!
//! `cargo run --release -p habitat-e2e --bin ring-bench [-- --members 50]` (uses
//! target/release/hab).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{
    ip, member_ids, ring_is_whole, rss_mb, start_ring, wait_for, Supervisor, HELLO_GROUP,
};

const BLOCK_BENCH: u8 = 200;
const BLOCK_MASS: u8 = 202;
const IDLE: Duration = Duration::from_secs(30);

fn main() {
    eprintln!("hab: {}", habitat_e2e::hab_binary().display());
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--members")
        .and_then(|i| args.get(i + 1))
    {
        let n: u8 = n.parse().expect("--members takes a number of 1 to 250");
        assert!(
            (1..=250).contains(&n),
            "--members takes a number of 1 to 250"
        );
        return mass_join(n);
    }
    let ring: Vec<Supervisor> = start_ring(BLOCK_BENCH, 5, |_, b| b.default_timings());
    let last_start = ring.iter().map(Supervisor::started).max().unwrap();
    wait_for(
        Duration::from_secs(60),
        "all five see five alive members with the service in the census",
        || ring_is_whole(&ring, Some(HELLO_GROUP)),
    );
    let formed = last_start.elapsed();

    let idle_from = Instant::now();
    // Idle is what is measured here: nothing to wait for but the clock.
    std::thread::sleep(IDLE.saturating_sub(idle_from.elapsed()));
    ring_is_whole(&ring, Some(HELLO_GROUP)).expect("the ring stayed whole while idle");
    let rss: Vec<f64> = ring
        .iter()
        .map(|s| (rss_mb(s.pid().unwrap()) * 10.0).round() / 10.0)
        .collect();
    let max = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "{}",
        serde_json::json!({
            "ring_formed_s": (formed.as_secs_f64() * 1000.0).round() / 1000.0,
            "rss_mb": rss,
            "max_rss_mb": max,
        })
    );
}

fn mass_join(n: u8) {
    let seed = ip(BLOCK_MASS, 1);
    let mut ring: Vec<Supervisor> = (1..=n)
        .map(|host| {
            let builder = Supervisor::at(BLOCK_MASS, host)
                .default_timings()
                .without_node_name()
                .without_service();
            let builder = if host == 1 {
                builder
            } else {
                builder.peer(seed)
            };
            builder.spawn()
        })
        .collect();
    let last_start = ring.iter().map(Supervisor::started).max().unwrap();
    for sup in &mut ring {
        sup.wait_ready();
    }
    let everyone = member_ids(&ring);
    let mut saw_all: Vec<Option<Duration>> = vec![None; ring.len()];
    let deadline = Instant::now() + Duration::from_secs(120);
    while saw_all.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "after 120 s, {} of {n} members had not seen all the others alive",
            saw_all.iter().filter(|s| s.is_none()).count()
        );
        for (sup, first) in ring.iter().zip(saw_all.iter_mut()) {
            if first.is_some() {
                continue;
            }
            let alive = sup.health().map_or(0, |health| {
                everyone
                    .iter()
                    .filter(|id| health.get(*id).is_some_and(|h| h == "Alive"))
                    .count()
            });
            if alive == everyone.len() {
                *first = Some(last_start.elapsed());
            }
        }
        // A polling interval: 50 gateways are asked in turn, without starving the members.
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut secs: Vec<f64> = saw_all
        .iter()
        .map(|d| (d.unwrap_or_default().as_secs_f64() * 1000.0).round() / 1000.0)
        .collect();
    secs.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "members": n,
            "all_see_all_s": secs.last(),
            "median_s": secs[secs.len() / 2],
            "per_member_s": secs,
        })
    );
}
