//! Ring benchmark: five real supervisors with DEFAULT timings on 127.0.200.1..5. Measures the
//! time from the last start until all five see five alive members with `hello.default` in their
//! census (target: under 10 s), then each supervisor's resident memory after 30 s idle.
//! Prints one JSON line: `{"ring_formed_s":..., "rss_mb":[...], "max_rss_mb":...}`.
//!
//! `cargo run --release -p habitat-e2e --bin ring-bench` (uses target/release/hab).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{ring_is_whole, start_ring, wait_for, Supervisor, HELLO_GROUP};

const BLOCK_BENCH: u8 = 200;
const IDLE: Duration = Duration::from_secs(30);

/// VmRSS of a process, in MiB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb / 1024.0
}

fn main() {
    eprintln!("hab: {}", habitat_e2e::hab_binary().display());
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
