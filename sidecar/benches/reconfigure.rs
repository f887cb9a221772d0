//! From a config change in the census to the reconfigure hook started (target <= 50 ms).
//! Runs one service with the real runtime, hooks and processes, sends it 30 new gossiped config
//! incarnations, and prints the latency percentiles. The hook records its own start time
//! (`date +%s%N`, the first thing it does), so the figure covers the runtime noticing the
//! change, layering, rendering, writing the files and spawning the hook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use habitat_sidecar::binds::BindingMode;
use habitat_sidecar::census::{CensusGroup, CensusMember, GossipedConfig};
use habitat_sidecar::gossip::member::MemberId;
use habitat_sidecar::gossip::rumor::{ServiceGroup, SysInfo};
use habitat_sidecar::package::Package;
use habitat_sidecar::service::runtime::{self, RingView, ServiceSpec};
use habitat_sidecar::service::status::ServiceStatus;
use habitat_sidecar::service::Topology;
use habitat_sidecar::template::context::SysContext;
use tokio::sync::watch;

const ROUNDS: u64 = 30;

fn nanos_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg_dir = tmp.path().join("pkg");
    let marks = tmp.path().join("marks");
    std::fs::create_dir_all(pkg_dir.join("hooks")).unwrap();
    std::fs::create_dir_all(pkg_dir.join("config")).unwrap();
    std::fs::write(pkg_dir.join("IDENT"), "bench/app/1.0.0/20260101000000").unwrap();
    std::fs::write(pkg_dir.join("default.toml"), "round = 0\n").unwrap();
    for n in 0..5 {
        std::fs::write(
            pkg_dir.join(format!("config/file{n}.conf")),
            "round={{cfg.round}}\n{{#eachAlive svc.members as |m|}}{{m.sys.ip}} {{/eachAlive}}\n",
        )
        .unwrap();
    }
    for (hook, text) in [
        ("run", "#!/bin/sh\nexec sleep 1000\n".to_string()),
        (
            "reconfigure",
            format!("#!/bin/sh\ndate +%s%N >> {}\n", marks.display()),
        ),
    ] {
        let path = pkg_dir.join("hooks").join(hook);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let package = Package::load(&pkg_dir).unwrap();
    let me = MemberId([1; 16]);
    let spec = ServiceSpec {
        service_group: ServiceGroup::new("app", "default").unwrap(),
        package,
        topology: Topology::Standalone,
        bindings: Vec::new(),
        binding_mode: BindingMode::Strict,
        health_check_interval: Duration::from_secs(3600),
        root: tmp.path().to_path_buf(),
        sys: SysContext::new("bench", me, &SysInfo::default(), false),
        env_layer: None,
        hook_timeouts: Default::default(),
        backoff: Default::default(),
    };
    let members: Vec<CensusMember> = (1..=10u8)
        .map(|n| CensusMember {
            incarnation: 1,
            initialized: true,
            ..CensusMember::new(
                MemberId([n; 16]),
                "bench/app/1.0.0/20260101000000",
                toml::Table::new(),
                SysInfo {
                    ip: format!("10.0.0.{n}"),
                    ..SysInfo::default()
                },
            )
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (view_tx, view_rx) = watch::channel(RingView::default());
        let (status_tx, status) = watch::channel(ServiceStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(runtime::run(spec, view_rx, status_tx, stop_rx));
        let deadline = Instant::now() + Duration::from_secs(30);
        while status.borrow().pid.is_none() {
            assert!(Instant::now() < deadline, "service did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut latencies = Vec::new();
        for round in 1..=ROUNDS {
            let mut group = CensusGroup::empty(ServiceGroup::new("app", "default").unwrap(), me);
            group.members = members.clone();
            group.service_config = Some(GossipedConfig::plain(
                round,
                toml::from_str(&format!("round = {round}")).unwrap(),
            ));
            let sent = nanos_now();
            view_tx.send_replace(RingView {
                groups: vec![group],
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            let started = loop {
                let text = std::fs::read_to_string(&marks).unwrap_or_default();
                if text.lines().count() as u64 >= round {
                    break text.lines().last().unwrap().trim().parse::<u128>().unwrap();
                }
                assert!(Instant::now() < deadline, "reconfigure did not run");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            latencies.push(Duration::from_nanos(started.saturating_sub(sent) as u64));
            // Let the hook finish before the next change.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "config change -> reconfigure hook started ({ROUNDS} rounds, 5 templates, 10 members): \
             median {:.1} ms, p95 {:.1} ms, max {:.1} ms (target <= 50 ms)",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.95).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3,
        );
        stop.send_replace(true);
        let _ = task.await;
    });
}
