//! Leader elections across real `hab sup run` processes on loopback: five supervisors elect one
//! leader; SIGKILL of the leader (failure detection) and SIGTERM of the next one (graceful
//! step-down: a withdrawal, then leaving the ring) each give one new leader all survivors agree
//! on. Partitions with network namespaces are in `partition.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use habitat_e2e::{agreed_leader, election_of, start_ring, wait_for, Supervisor, HELLO_GROUP};

const BLOCK_LEADER: u8 = 30;
const SOON: Duration = Duration::from_secs(30);
/// With the fast test timings a graceful handover takes well under a second; failure
/// detection alone (probe, suspicion 0.8 s) would take longer than this on an idle machine.
/// The bound leaves room for a loaded CI machine.
const HANDOVER: Duration = Duration::from_secs(5);

/// Waits until `ring` agrees on a leader other than `not`; returns it and how long it took.
fn new_leader(ring: &[Supervisor], not: Option<&str>, deadline: Duration) -> (String, Duration) {
    let all: Vec<&Supervisor> = ring.iter().collect();
    let start = Instant::now();
    let leader = wait_for(deadline, "the supervisors agree on a new leader", || {
        let leader = agreed_leader(&all, HELLO_GROUP)?;
        if Some(leader.as_str()) == not {
            return Err(format!("still {leader}"));
        }
        Ok(leader)
    });
    (leader, start.elapsed())
}

fn position_of(ring: &[Supervisor], id: &str) -> usize {
    ring.iter()
        .position(|s| s.member_id() == id)
        .unwrap_or_else(|| panic!("leader {id} is not one of the supervisors"))
}

#[test]
fn five_supervisors_elect_one_leader_and_fail_over_on_sigkill_and_on_sigterm() {
    let mut ring = start_ring(BLOCK_LEADER, 5, |_, b| b.args(["--topology", "leader"]));
    let (first, _) = new_leader(&ring, None, SOON);
    let ids: Vec<String> = ring.iter().map(Supervisor::member_id).collect();
    assert!(
        ids.contains(&first),
        "leader {first} is not a member: {ids:?}"
    );
    for sup in &ring {
        let me = sup.census().unwrap()["census_groups"][HELLO_GROUP]["population"][sup.member_id()]
            .clone();
        assert_eq!(me["leader"], sup.member_id() == first, "{}", sup.name());
        assert_eq!(me["follower"], sup.member_id() != first, "{}", sup.name());
    }

    // SIGKILL: no goodbye; the survivors wait for failure detection.
    let mut killed = ring.remove(position_of(&ring, &first));
    killed.kill();
    let (second, took) = new_leader(&ring, Some(&first), SOON);
    eprintln!("after SIGKILL of the leader: new leader in {took:?}");
    assert_ne!(second, first);

    // SIGTERM: the leader resigns and leaves; the survivors elect without waiting.
    let mut stopped = ring.remove(position_of(&ring, &second));
    let stop = Instant::now();
    let status = stopped.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(
        stopped.log().contains("resigning from the election"),
        "the leader did not resign on SIGTERM"
    );
    let (third, took) = new_leader(&ring, Some(&second), HANDOVER);
    eprintln!(
        "after SIGTERM of the leader: new leader {:?} after the signal",
        stop.elapsed()
    );
    assert!(took <= HANDOVER);
    assert!(![first.as_str(), second.as_str()].contains(&third.as_str()));
    // The remaining three of five still have quorum: nobody reports NoQuorum.
    for sup in &ring {
        let (status, leader) = election_of(sup, HELLO_GROUP).unwrap();
        assert_eq!(
            (status.as_str(), leader.as_deref()),
            ("ElectionFinished", Some(third.as_str())),
            "{}",
            sup.name()
        );
    }
}

const BLOCK_REPLACED: u8 = 32;

/// Issue 18 (Habitat's #1994 and #5188): a leader group of 3 whose members are replaced one at
/// a time (SIGKILL, then a new supervisor at a new address, with a fresh root and its own node
/// name, as a re-imaged VM or a new container gets), six times, with a 2 s grace: after every
/// replacement the 3 live members agree on a leader, and the dead member is retired, so every
/// member's electorate is those 3 again and the next replacement keeps quorum. Without
/// retirement the third replacement leaves 3 alive of 6 and no election.
#[test]
fn three_supervisors_replaced_one_at_a_time_six_times_keep_electing() {
    let args = ["--topology", "leader", "--retire-after", "2"];
    let mut ring = start_ring(BLOCK_REPLACED, 3, |_, b| b.args(args));
    new_leader(&ring, None, SOON);
    for round in 0..6u8 {
        let mut dead = ring.remove(0);
        let dead_id = dead.member_id();
        dead.kill();
        let peers: Vec<_> = ring.iter().map(Supervisor::ip).collect();
        let mut fresh = Supervisor::at(BLOCK_REPLACED, 4 + round)
            .peers(peers)
            .args(args)
            .spawn();
        fresh.wait_ready();
        ring.push(fresh);
        let (leader, took) = new_leader(&ring, None, SOON);
        eprintln!("replacement {round}: leader {leader} agreed after {took:?}");
        let mut live: Vec<String> = ring.iter().map(Supervisor::member_id).collect();
        live.sort();
        wait_for(SOON, "the dead member is retired everywhere", || {
            for sup in &ring {
                let electorate = sup.census_ids(HELLO_GROUP, "electorate")?;
                if electorate != live {
                    return Err(format!("{}: electorate {electorate:?}", sup.name()));
                }
                let retired = sup.census_ids(HELLO_GROUP, "retired_members")?;
                if !retired.contains(&dead_id) {
                    return Err(format!("{}: retired {retired:?}", sup.name()));
                }
            }
            Ok(())
        });
    }
    let metrics = ring[0].metrics().unwrap();
    assert!(
        habitat_e2e::metric_sum(&metrics, "hab_gossip_retirements_total") >= 1.0,
        "{metrics}"
    );
}
