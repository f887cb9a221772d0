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
//! `cargo bench -p habitat-operator --bench footprint` (no root needed) measures this profile's
//! `hab`; `FOOTPRINT_HAB=/path/to/hab` measures that binary instead (e.g. a release build with
//! the bench itself run as `cargo bench --profile dev`). The last line printed is one JSON
//! object. Only the supervisor's own pid is read: the service it runs (the example's run hook)
//! is the application's share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use habitat_e2e::{wait_until, CTL_PORT, HELLO_GROUP};

const BLOCK: u8 = 220;
const SOON: Duration = Duration::from_secs(60);
const MEMBERS: u8 = 3;

/// One `hab sup run` of the example package at 127.0.BLOCK.`host`, default timings.
struct Member {
    ip: Ipv4Addr,
    root: tempfile::TempDir,
    child: Child,
}

impl Member {
    fn start(hab: &Path, host: u8) -> Member {
        let ip = Ipv4Addr::new(127, 0, BLOCK, host);
        let root = tempfile::Builder::new()
            .prefix("hab-footprint-")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(root.path().join("hab.log")).unwrap();
        let mut cmd = Command::new(hab);
        cmd.args(["sup", "run"])
            .arg(habitat_e2e::hello_package())
            .arg("--root")
            .arg(root.path())
            .args(["--listen-gossip", &format!("{ip}:9638")])
            .args(["--listen-http", &format!("{ip}:9631")])
            .args(["--listen-ctl", &format!("{ip}:{CTL_PORT}")])
            .args(["--node-name", &format!("footprint-{host}")]);
        for peer in (1..=MEMBERS).filter(|&h| h != host) {
            cmd.args(["--peer", &format!("127.0.{BLOCK}.{peer}:9638")]);
        }
        for key in [
            "HAB_ROOT",
            "HAB_RING_KEY",
            "HAB_NODE_NAME",
            "HAB_CTL_SECRET",
        ] {
            cmd.env_remove(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", hab.display()));
        Member { ip, root, child }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn rendered(sup: &Member) -> String {
    std::fs::read_to_string(sup.root().join("svc/hello/config/hello.conf")).unwrap_or_default()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn main() {
    let idle_secs = env_u64("FOOTPRINT_IDLE_SECS", 30);
    let configs = env_u64("FOOTPRINT_CONFIGS", 10);
    let hz = ticks_per_second();
    let hab: PathBuf = std::env::var_os("FOOTPRINT_HAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| habitat_e2e::hab_binary().to_owned());
    let ring: Vec<Member> = (1..=MEMBERS).map(|h| Member::start(&hab, h)).collect();
    let first = &ring[0];
    let pid = first.child.id();
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
    let remote = format!("{}:{CTL_PORT}", first.ip);
    let config_start = (Instant::now(), cpu_ticks(pid));
    for n in 1..=configs {
        let marker = format!("footprint {n}");
        let path = scratch.path().join(format!("{n}.toml"));
        std::fs::write(&path, format!("message = \"{marker}\"\n")).unwrap();
        let version = (n + 100).to_string();
        let out = Command::new(&hab)
            .args(["config", "apply", HELLO_GROUP, &version])
            .arg(&path)
            .args(["--remote-sup", &remote])
            .env("HAB_CTL_SECRET", &secret)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "config apply {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
    // The profile of the measured binary, as cargo lays out its target directory.
    let profile = if hab.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug"
    };

    println!(
        "hab {} ({profile}), member pid {pid}, CLK_TCK {hz}",
        hab.display()
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
