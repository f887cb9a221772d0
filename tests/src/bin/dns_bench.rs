//! DNS-hang benchmark (issue 16): the setup of `tests/dns.rs` for longer. Three supervisors with
//! default timings, each in its own network namespace whose DNS server never answers, each given
//! the other two by address and `peers.hab-dns.test` by name. Measures:
//! - ring formation: from the first spawn until all three see each other Alive (the first
//!   lookup holds a start for its 5 s deadline);
//! - false deaths: any member seen by any other as anything but Alive, looked at every second,
//!   and "member confirmed down" lines in the logs (target 0);
//! - `/healthz` of every member every second: answered and failed;
//! - lookups of the name that reached the black holes (one client socket each) and the queries
//!   they sent (A and AAAA, and glibc's retries 30 s later).
//!
//! Prints one JSON line. Needs root and `ip`. `cargo run -p habitat-e2e --bin dns-bench`;
//! `DNS_BENCH_SECS` sets how long it watches the formed ring (default 60);
//! `DNS_BENCH_BASELINE=1` runs the same ring without the name (no lookups at all), to compare
//! the formation time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{
    e2e_binary, hanging_dns_lab, ring_is_whole, round3, wait_for, NetnsLab, Supervisor,
    HANGING_PEER,
};
use serde_json::json;

/// Not the test's (16), so both can run at once.
const SUBNET: u8 = 17;
const HOSTS: [u8; 3] = [1, 2, 3];

fn main() {
    let secs: u64 = std::env::var("DNS_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let baseline = std::env::var("DNS_BENCH_BASELINE").is_ok_and(|v| v == "1");
    eprintln!("hab: {}", habitat_e2e::hab_binary().display());
    let built = if baseline {
        NetnsLab::new(SUBNET).and_then(|mut lab| {
            for &h in &HOSTS {
                lab.add_host(h)?;
            }
            Ok(lab)
        })
    } else {
        hanging_dns_lab(SUBNET, &HOSTS, &e2e_binary("udp-blackhole"))
    };
    let lab = match built {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("dns-bench: cannot build network namespaces ({why}); needs root and ip");
            std::process::exit(1);
        }
    };

    let start = Instant::now();
    let ring = lab.start_ring(&HOSTS, |_, b| {
        let b = b.default_timings();
        if baseline {
            b
        } else {
            b.args(["--peer", HANGING_PEER])
        }
    });
    wait_for(Duration::from_secs(120), "the ring formed", || {
        ring_is_whole(&ring, None)
    });
    let formed_s = start.elapsed().as_secs_f64();
    let lookups_at_formation: usize = HOSTS
        .iter()
        .map(|&h| lab.dns_lookups(h, HANGING_PEER))
        .sum();

    let ids: Vec<String> = ring.iter().map(Supervisor::member_id).collect();
    let watch = Instant::now();
    let mut false_deaths = Vec::new();
    let (mut healthz_ok, mut healthz_failed) = (0u64, 0u64);
    while watch.elapsed() < Duration::from_secs(secs) {
        for seer in &ring {
            if seer.get("/healthz").is_ok() {
                healthz_ok += 1;
            } else {
                healthz_failed += 1;
            }
            let Ok(health) = seer.health() else { continue };
            for id in &ids {
                match health.get(id).map(String::as_str) {
                    Some("Alive") => {}
                    other => false_deaths.push(json!({
                        "at_s": round3(watch.elapsed().as_secs_f64()),
                        "seer": seer.name(),
                        "member": id,
                        "health": other,
                    })),
                }
            }
        }
        // A sampling pace, not a synchronisation.
        std::thread::sleep(Duration::from_secs(1));
    }
    let confirmed_down: usize = ring
        .iter()
        .map(|s| s.log().matches("member confirmed down").count())
        .sum();
    let lookups: Vec<usize> = HOSTS
        .iter()
        .map(|&h| lab.dns_lookups(h, HANGING_PEER))
        .collect();
    let queries: usize = HOSTS.iter().map(|&h| lab.dns_queries(h).len()).sum();
    let watched_lookups = lookups.iter().sum::<usize>() - lookups_at_formation;
    println!(
        "{}",
        json!({
            "baseline": baseline,
            "members": HOSTS.len(),
            "watched_s": secs,
            "ring_formed_s": round3(formed_s),
            "false_deaths": false_deaths.len(),
            "false_death_samples": false_deaths.iter().take(5).collect::<Vec<_>>(),
            "confirmed_down_logged": confirmed_down,
            "healthz": { "answered": healthz_ok, "failed": healthz_failed },
            "dns": {
                "lookups_per_member": lookups,
                "lookups_while_watched": watched_lookups,
                "queries": queries,
            },
        })
    );
}
