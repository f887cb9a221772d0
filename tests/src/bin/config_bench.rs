//! `hab config apply` benchmark (issue 13): N real supervisors (default 5, `--members N` up to
//! 60) with DEFAULT timings on 127.0.205.x, each running the hello package. Ten times, a new
//! config version is applied through member 1's ctl gateway with our `hab config apply`, and
//! the time from the command's start until every member has rendered the new value into
//! `svc/hello/config/hello.conf` is measured (target: median <= 0.25 s at N=5, <= 0.5 s at 50).
//!
//! Then `hab svc status` through member 1's gateway ten times: the whole command's time (a
//! process start, the handshake and the request; target: round trip <= 20 ms).
//!
//! Prints one JSON line. `cargo run --release -p habitat-e2e --bin config-bench [-- --members 50]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{median, round3, start_ring, Supervisor, CTL_PORT, HELLO_GROUP};
use serde_json::json;

const BLOCK: u8 = 205;
const ROUNDS: u64 = 10;
const DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let members: u8 = args
        .iter()
        .position(|a| a == "--members")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |n| n.parse().expect("--members N"));
    assert!((2..=60).contains(&members), "--members between 2 and 60");
    eprintln!("hab: {}", habitat_e2e::hab_binary().display());
    let ring = start_ring(BLOCK, members, |_, b| b.default_timings());
    let secret = std::fs::read_to_string(ring[0].root().join("sup/default/CTL_SECRET"))
        .unwrap()
        .trim()
        .to_string();
    let remote = format!("{}:{CTL_PORT}", ring[0].ip());
    let scratch = tempfile::tempdir().unwrap();
    let rendered = |s: &Supervisor| {
        std::fs::read_to_string(s.root().join("svc/hello/config/hello.conf")).unwrap_or_default()
    };
    let mut times = Vec::new();
    for round in 1..=ROUNDS {
        let message = format!("message = \"round {round}\"\n");
        let file = scratch.path().join(format!("round-{round}.toml"));
        std::fs::write(&file, &message).unwrap();
        let want = format!("message = \"round {round}\"");
        let start = Instant::now();
        // Run directly, not through `run_hab`, which polls for the exit every 75 ms.
        let out = std::process::Command::new(habitat_e2e::hab_binary())
            .args(["config", "apply", HELLO_GROUP, &round.to_string()])
            .arg(&file)
            .args(["--remote-sup", &remote])
            .env("HAB_CTL_SECRET", &secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "config apply: {out:?}");
        while !ring.iter().all(|s| rendered(s).contains(&want)) {
            assert!(
                start.elapsed() < DEADLINE,
                "round {round} never rendered everywhere"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(start.elapsed().as_secs_f64());
    }
    let mut status_times = Vec::new();
    for _ in 0..ROUNDS {
        // Run directly, not through `run_hab`, which polls for the exit every 75 ms.
        let start = Instant::now();
        let out = std::process::Command::new(habitat_e2e::hab_binary())
            .args(["svc", "status", "--remote-sup", &remote])
            .env("HAB_CTL_SECRET", &secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "svc status: {out:?}");
        status_times.push(start.elapsed().as_secs_f64());
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    println!(
        "{}",
        json!({
            "members": members,
            "applied_to_rendered_everywhere_s": {
                "median": round3(median(times.clone())),
                "max": round3(max),
                "runs": times.iter().copied().map(round3).collect::<Vec<_>>(),
            },
            "svc_status_command_ms": {
                "median": round3(median(status_times.clone()) * 1000.0),
                "max": round3(status_times.iter().copied().fold(0.0, f64::max) * 1000.0),
            },
        })
    );
}
