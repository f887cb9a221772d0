//! Replacement benchmark (issue 18): three real supervisors (`--topology leader`) with DEFAULT
//! timings on 127.0.203.x, `RUNS` times (fresh roots each run). Per run the leader is killed
//! (SIGKILL) and a replacement started at once at a new address with a fresh root and its own
//! node name, as a re-imaged VM or a new container comes up. Measured from the kill:
//! - the three live members (two survivors and the replacement) agree on a finished leader
//!   (target: within the failover time, <= 6 s);
//! - every live member's electorate (`/census`) is those three again: the dead member was
//!   retired by the leader after `--retire-after` (default 60 s).
//!
//! Prints one JSON line per run and a summary line (seconds).
//! `cargo run --release -p habitat-e2e --bin replace-bench`; `REPLACE_BENCH_RUNS` overrides the
//! number of runs (default 3); `REPLACE_BENCH_ARGS` adds `hab sup run` flags (space-separated),
//! e.g. `--retire-after 10`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{agreed_leader, median, round3, start_ring, Supervisor, HELLO_GROUP};
use serde_json::json;

const BLOCK_BENCH: u8 = 203;
const DEADLINE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(20);

fn main() {
    let runs: usize = std::env::var("REPLACE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let extra: Vec<String> = std::env::var("REPLACE_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    eprintln!("hab: {} {extra:?}", habitat_e2e::hab_binary().display());
    let (mut elected, mut whole) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let configure = |b: habitat_e2e::SupervisorBuilder| {
            b.default_timings()
                .args(["--topology", "leader"])
                .args(extra.clone())
        };
        let mut ring = start_ring(BLOCK_BENCH, 3, |_, b| configure(b));
        let all: Vec<&Supervisor> = ring.iter().collect();
        let start = Instant::now();
        let leader = loop {
            if let Ok(leader) = agreed_leader(&all, HELLO_GROUP) {
                break leader;
            }
            assert!(start.elapsed() < DEADLINE, "no first election");
            std::thread::sleep(POLL);
        };
        let at = ring.iter().position(|s| s.member_id() == leader).unwrap();
        let mut dead = ring.remove(at);
        let kill_at = Instant::now();
        dead.kill();
        let peers: Vec<_> = ring.iter().map(Supervisor::ip).collect();
        ring.push(configure(Supervisor::at(BLOCK_BENCH, 4).peers(peers)).spawn());
        let all: Vec<&Supervisor> = ring.iter().collect();
        let elected_s = loop {
            match agreed_leader(&all, HELLO_GROUP) {
                Ok(new) if new != leader => break kill_at.elapsed().as_secs_f64(),
                _ => {
                    assert!(kill_at.elapsed() < DEADLINE, "no election among the 3 live");
                    std::thread::sleep(POLL);
                }
            }
        };
        let mut live: Vec<String> = ring.iter().map(Supervisor::member_id).collect();
        live.sort();
        let whole_s = loop {
            let whole =
                |s: &Supervisor| s.census_ids(HELLO_GROUP, "electorate") == Ok(live.clone());
            if ring.iter().all(whole) {
                break kill_at.elapsed().as_secs_f64();
            }
            assert!(
                kill_at.elapsed() < DEADLINE,
                "the dead member was never retired"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        println!(
            "{}",
            json!({
                "run": run,
                "elected_among_live_s": round3(elected_s),
                "electorate_whole_again_s": round3(whole_s),
            })
        );
        elected.push(elected_s);
        whole.push(whole_s);
    }
    let max = |v: &[f64]| round3(v.iter().copied().fold(0.0, f64::max));
    println!(
        "{}",
        json!({
            "runs": runs,
            "elected_among_live_s": {"median": round3(median(elected.clone())), "max": max(&elected), "target": 6.0},
            "electorate_whole_again_s": {"median": round3(median(whole.clone())), "max": max(&whole)},
        })
    );
}
