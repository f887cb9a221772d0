//! Issue 16: peers named by a host name whose resolver hangs. Three supervisors with default
//! timings, each in its own network namespace whose DNS server (a black hole on 127.0.0.1:53)
//! never answers, each given the other two by address and `peers.hab-dns.test` by name. Every
//! lookup of that name hangs for minutes; the supervisor gives each up after 5 s and tries again
//! 5 s later, off its loop. The ring forms, and through 30 s of hanging lookups nobody suspects
//! anybody and `/healthz` answers. Without root or `ip` the test says why and passes as skipped.
//! `dns-bench` runs the same setup for longer and prints the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use habitat_e2e::{hanging_dns_lab, holds_throughout, ring_is_whole, wait_for, HANGING_PEER};

const SUBNET: u8 = 16;
const HOSTS: [u8; 3] = [1, 2, 3];
/// Dozens of probe rounds at default timings, and three lookups of the hanging name (a 5 s
/// deadline, then 5 s until the next).
const WINDOW: Duration = Duration::from_secs(30);
/// The first lookup alone holds a supervisor's start for its 5 s deadline; the rest is slack
/// for a loaded machine.
const SOON: Duration = Duration::from_secs(30);

#[test]
fn a_peer_whose_dns_hangs_causes_no_false_death_and_the_ring_keeps_working() {
    let blackhole = Path::new(env!("CARGO_BIN_EXE_udp-blackhole"));
    // Declared first so it is dropped last, after the supervisors are killed.
    let lab = match hanging_dns_lab(SUBNET, &HOSTS, blackhole) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("SKIPPED: cannot build network namespaces with hanging DNS ({why})");
            return;
        }
    };
    let ring = lab.start_ring(&HOSTS, |_, b| {
        b.default_timings().args(["--peer", HANGING_PEER])
    });
    // Nothing else in these namespaces asks DNS: the lookups the black holes see are the
    // supervisors' own.
    wait_for(
        SOON,
        "every supervisor's lookup reached its black hole",
        || match HOSTS
            .iter()
            .find(|&&h| lab.dns_lookups(h, HANGING_PEER) == 0)
        {
            Some(h) => Err(format!("none yet from host {h}")),
            None => Ok(()),
        },
    );
    wait_for(SOON, "all three see each other Alive", || {
        ring_is_whole(&ring, None)
    });

    let before: Vec<usize> = HOSTS
        .iter()
        .map(|&h| lab.dns_lookups(h, HANGING_PEER))
        .collect();
    holds_throughout(
        WINDOW,
        "every member sees every other Alive and /healthz answers",
        || {
            ring_is_whole(&ring, None)?;
            for sup in &ring {
                sup.get("/healthz")?;
            }
            Ok(())
        },
    );
    // The window saw lookups start and hang, not a quiet resolver.
    for (&h, before) in HOSTS.iter().zip(before) {
        let after = lab.dns_lookups(h, HANGING_PEER);
        assert!(
            after >= before + 2,
            "host {h}: {before} lookups before the window, {after} after: expected new ones every 10 s"
        );
    }
    // A member confirmed down and back between two looks would show only in the logs.
    for sup in &ring {
        assert!(
            !sup.log().contains("member confirmed down"),
            "{} confirmed a member down",
            sup.name()
        );
    }
}
