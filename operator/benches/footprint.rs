//! The supervisor's own footprint in a service pod (issue 20), for the README's resource
//! recommendation: a ring of 3 real `hab sup run` processes (this profile's build, the example
//! package, default timings, loopback addresses), and of the first member:
//!
//! 1. `idle_rss_mb`, `idle_cpu_millicores`: VmRSS after the ring settled, and CPU time
//!    (`/proc/<pid>/stat` utime + stime) over `FOOTPRINT_IDLE_SECS` (default 30) of idling;
//! 2. `config_cpu_millicores`, `config_rss_mb`, `peak_rss_mb`: the same over a window in which
//!    `hab config apply` sends `FOOTPRINT_CONFIGS` (default 10) new configs, one a second, each
//!    rendered by every member before the next; VmHWM for the peak.
//!
//! `cargo bench -p habitat-operator --bench footprint` (no root needed). The last line printed
//! is one JSON object. The figures include the supervised service (the example's run hook is
//! a shell loop) only as far as it is the supervisor's child: only the supervisor's own pid
//! is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use habitat_e2e::{run_hab, start_ring, wait_until, Supervisor, CTL_PORT, HELLO_GROUP};

const BLOCK: u8 = 220;
const SOON: Duration = Duration::from_secs(60);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/<pid>/status` field in kB, as MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kb / 1024.0
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), numbered from 3 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok());
    out.unwrap_or(100.0)
}

fn millicores(ticks: u64, over: Duration, hz: f64) -> f64 {
    let cpu_secs = ticks as f64 / hz;
    (cpu_secs / over.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

fn rendered(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("svc/hello/config/hello.conf")).unwrap_or_default()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn main() {
    let idle_secs = env_u64("FOOTPRINT_IDLE_SECS", 30);
    let configs = env_u64("FOOTPRINT_CONFIGS", 10);
    let hz = ticks_per_second();
    let ring = start_ring(BLOCK, 3, |_, b| b.default_timings());
    let first = &ring[0];
    let pid = first.pid().expect("the first member runs");
    wait_until(SOON, "every member renders the package's config", || {
        ring.iter().all(|s| !rendered(s).is_empty())
    });
    // Let the ring settle (joins, the first election's rumors) before idling is measured.
    let settle = Instant::now() + Duration::from_secs(10);
    wait_until(Duration::from_secs(20), "the ring settles", || {
        Instant::now() >= settle
    });

    let idle_start = (Instant::now(), cpu_ticks(pid));
    let idle_until = idle_start.0 + Duration::from_secs(idle_secs);
    wait_until(
        Duration::from_secs(idle_secs + 10),
        "the idle window ends",
        || Instant::now() >= idle_until,
    );
    let idle_over = idle_start.0.elapsed();
    let idle_ticks = cpu_ticks(pid) - idle_start.1;
    let idle_rss = status_mb(pid, "VmRSS:");

    let scratch = tempfile::tempdir().unwrap();
    let secret = std::fs::read_to_string(first.root().join("sup/default/CTL_SECRET"))
        .unwrap()
        .trim()
        .to_owned();
    let remote = format!("{}:{CTL_PORT}", first.ip());
    let config_start = (Instant::now(), cpu_ticks(pid));
    for n in 1..=configs {
        let marker = format!("footprint {n}");
        let path = scratch.path().join(format!("{n}.toml"));
        std::fs::write(&path, format!("message = \"{marker}\"\n")).unwrap();
        let version = (n + 100).to_string();
        let (status, _, err) = run_hab(
            &[
                "config",
                "apply",
                HELLO_GROUP,
                &version,
                path.to_str().unwrap(),
                "--remote-sup",
                &remote,
            ],
            &[("HAB_CTL_SECRET", &secret)],
        );
        assert!(status.success(), "config apply {n}: {err}");
        wait_until(SOON, &format!("every member renders config {n}"), || {
            ring.iter().all(|s| rendered(s).contains(&marker))
        });
        // One config a second: a burst rate no operator or person exceeds.
        let next = config_start.0 + Duration::from_secs(n);
        wait_until(Duration::from_secs(5), "the next second", || {
            Instant::now() >= next
        });
    }
    let config_over = config_start.0.elapsed();
    let config_ticks = cpu_ticks(pid) - config_start.1;
    let config_rss = status_mb(pid, "VmRSS:");
    let peak_rss = status_mb(pid, "VmHWM:");
    let binary = habitat_e2e::hab_binary();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };

    println!(
        "hab {} ({profile}), member pid {pid}, CLK_TCK {hz}",
        Path::new(binary).display()
    );
    println!(
        "idle: {idle_secs} s, RSS {idle_rss:.1} MB, CPU {} millicores ({idle_ticks} ticks over {:.1} s)",
        millicores(idle_ticks, idle_over, hz),
        idle_over.as_secs_f64()
    );
    println!(
        "config changes: {configs} over {:.1} s, RSS {config_rss:.1} MB, peak {peak_rss:.1} MB, CPU {} millicores ({config_ticks} ticks)",
        config_over.as_secs_f64(),
        millicores(config_ticks, config_over, hz)
    );
    println!(
        "{}",
        serde_json::json!({
            "profile": profile,
            "idle_rss_mb": round1(idle_rss),
            "idle_cpu_millicores": millicores(idle_ticks, idle_over, hz),
            "config_changes": configs,
            "config_cpu_millicores": millicores(config_ticks, config_over, hz),
            "config_rss_mb": round1(config_rss),
            "peak_rss_mb": round1(peak_rss),
        })
    );
}
