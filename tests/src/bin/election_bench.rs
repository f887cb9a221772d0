//! Election benchmark: five real supervisors (`--topology leader`) with DEFAULT timings on
//! 127.0.201.1..5, `RUNS` times (fresh roots each run). Per run it measures
//! - first election: last start -> all five report the same finished leader (target <= 2 s);
//! - SIGKILL of the leader -> the four survivors agree on a new leader (target: median <= 6 s);
//! - SIGTERM of that leader -> the three left agree on a new leader (target <= 2 s).
//!
//! Prints one JSON line per run and a summary line with medians and maxima (seconds).
//! `cargo run -p habitat-e2e --bin election-bench` (debug `hab`; `--release` uses release).
//! `ELECTION_BENCH_RUNS` overrides the number of runs; `ELECTION_BENCH_ARGS` adds `hab sup run`
//! flags (space-separated), e.g. `--suspicion-mult 3` to try other ring timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{agreed_leader, median, round3, start_ring, Supervisor, HELLO_GROUP};
use serde_json::json;

const BLOCK_BENCH: u8 = 201;
const DEADLINE: Duration = Duration::from_secs(60);
/// Finer than the test harness's poll: the figures are the point here.
const POLL: Duration = Duration::from_millis(20);

/// Polls until `ring` agrees on a leader other than `not`; returns it and the time since `from`.
fn agreed_after(ring: &[Supervisor], not: Option<&str>, from: Instant) -> (String, f64) {
    let all: Vec<&Supervisor> = ring.iter().collect();
    loop {
        match agreed_leader(&all, HELLO_GROUP) {
            Ok(leader) if Some(leader.as_str()) != not => {
                return (leader, from.elapsed().as_secs_f64());
            }
            Ok(_) | Err(_) if from.elapsed() > DEADLINE => {
                panic!("no agreed leader after {DEADLINE:?}")
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

fn position_of(ring: &[Supervisor], id: &str) -> usize {
    ring.iter().position(|s| s.member_id() == id).unwrap()
}

fn main() {
    let runs: usize = std::env::var("ELECTION_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let extra: Vec<String> = std::env::var("ELECTION_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    eprintln!("hab: {} {extra:?}", habitat_e2e::hab_binary().display());
    let (mut first, mut killed, mut graceful) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let mut ring = start_ring(BLOCK_BENCH, 5, |_, b| {
            b.default_timings()
                .args(["--topology", "leader"])
                .args(extra.clone())
        });
        let last_start = ring.iter().map(Supervisor::started).max().unwrap();
        let (leader, first_s) = agreed_after(&ring, None, last_start);

        let mut dead = ring.remove(position_of(&ring, &leader));
        let kill_at = Instant::now();
        dead.kill();
        let (second, kill_s) = agreed_after(&ring, Some(&leader), kill_at);

        let stopping = ring.remove(position_of(&ring, &second));
        let term_at = Instant::now();
        let pid = stopping.pid().unwrap();
        let signal = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(signal.success());
        let (_, term_s) = agreed_after(&ring, Some(&second), term_at);
        drop(stopping);

        println!(
            "{}",
            json!({
                "run": run,
                "first_election_s": round3(first_s),
                "sigkill_failover_s": round3(kill_s),
                "sigterm_handover_s": round3(term_s),
            })
        );
        first.push(first_s);
        killed.push(kill_s);
        graceful.push(term_s);
    }
    let max = |v: &[f64]| round3(v.iter().copied().fold(0.0, f64::max));
    println!(
        "{}",
        json!({
            "runs": runs,
            "first_election_s": {"median": round3(median(first.clone())), "max": max(&first), "target": 2.0},
            "sigkill_failover_s": {"median": round3(median(killed.clone())), "max": max(&killed), "target_median": 6.0},
            "sigterm_handover_s": {"median": round3(median(graceful.clone())), "max": max(&graceful), "target": 2.0},
        })
    );
}
