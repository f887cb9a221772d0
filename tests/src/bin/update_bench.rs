//! Rolling update benchmark (issue 15): five real supervisors (`--topology leader`, strategy
//! rolling, default ring timings) on 127.0.99.x follow a `file://` depot polled every second;
//! a new release (health check passing) is uploaded to stable, and every member's `/services`
//! is sampled until all run it. Per run:
//! - `detect`: upload to the first member going down (poll period, jitter, announcement);
//! - `roll`: first member down to the last one up on the new release;
//! - `restarts`: the sum of the members' down spans (stop, start, first passing health check:
//!   the services' own start times), and `overhead` = `roll` - `restarts` (target <= 5 s);
//! - `max_down`: the most members down at once (target 1), and whether the leader went last.
//!
//! Prints one JSON line per run and a summary line (seconds).
//! `cargo run --release -p habitat-e2e --bin update-bench`; `UPDATE_BENCH_RUNS` sets the number
//! of runs (default 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::update::{all_up_on, ring_with, Depot, Recording, GROUP, V1, V2};
use habitat_e2e::{agreed_leader, median, round3, wait_for, Supervisor};
use serde_json::json;

const BLOCK_BENCH: u8 = 99;
const MEMBERS: u8 = 5;
const DEADLINE: Duration = Duration::from_secs(180);

fn main() {
    let runs: usize = std::env::var("UPDATE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    eprintln!("hab: {}", habitat_e2e::hab_binary().display());
    let (mut rolls, mut overheads, mut restarts_all, mut max_downs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let depot = Depot::new();
        let sups = ring_with(BLOCK_BENCH, MEMBERS, |b| b.default_timings());
        for sup in &sups {
            depot.load(sup, "rolling", "leader");
        }
        let ring: Vec<&Supervisor> = sups.iter().collect();
        wait_for(DEADLINE, "V1 up everywhere", || all_up_on(&ring, V1));
        let leader = wait_for(DEADLINE, "one leader", || agreed_leader(&ring, GROUP));

        let uploaded = Instant::now();
        depot.upload_to_stable(V2);
        let mut recording = Recording::default();
        wait_for(DEADLINE, "V2 up everywhere", || recording.take(&ring, V2));
        let spans = recording.down_spans();
        let first_down = spans.iter().map(|(_, from, _)| *from).min().unwrap();
        let last_up = recording.first_up_on(V2).into_values().max().unwrap();
        let roll = last_up.duration_since(first_down).as_secs_f64();
        let restarts: f64 = spans
            .iter()
            .map(|(_, from, to)| to.duration_since(*from).as_secs_f64())
            .sum();
        let order = recording.order_up_on(V2);
        let leader_last = order.last() == Some(&leader);
        let max_down = recording.max_down_at_once();
        let line = json!({
            "run": run,
            "members": MEMBERS,
            "detect_s": round3(first_down.duration_since(uploaded).as_secs_f64()),
            "roll_s": round3(roll),
            "restarts_s": round3(restarts),
            "overhead_s": round3(roll - restarts),
            "max_down": max_down,
            "leader_last": leader_last,
        });
        println!("{line}");
        rolls.push(roll);
        overheads.push(roll - restarts);
        restarts_all.push(restarts);
        max_downs.push(max_down);
    }
    println!(
        "{}",
        json!({
            "summary": "median over runs (s)",
            "runs": runs,
            "roll_s": round3(median(rolls)),
            "restarts_s": round3(median(restarts_all)),
            "overhead_s": round3(median(overheads)),
            "max_down": max_downs.iter().max(),
        })
    );
}
