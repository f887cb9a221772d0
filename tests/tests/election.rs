//! Leader elections across real `hab sup run` processes on loopback (issue 3, first slice: the
//! engine wired into the supervisor; the partition tests with network namespaces come later).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use habitat_e2e::{start_ring, wait_for, Supervisor, HELLO_GROUP};

const BLOCK_LEADER: u8 = 30;
const SOON: Duration = Duration::from_secs(30);

/// (election status, leader id) as one supervisor's /census shows its group.
fn election_of(sup: &Supervisor) -> Option<(String, Option<String>)> {
    let doc = sup.census().ok()?;
    let group = &doc["census_groups"][HELLO_GROUP];
    let status = group["election_status"].as_str()?.to_string();
    let leader = group["leader_id"].as_str().map(str::to_string);
    Some((status, leader))
}

/// The one leader every supervisor agrees on, once all report a finished election.
fn agreed_leader(ring: &[&Supervisor]) -> Option<String> {
    let views: BTreeSet<(String, Option<String>)> =
        ring.iter().map(|s| election_of(s)).collect::<Option<_>>()?;
    match views.into_iter().collect::<Vec<_>>().as_slice() {
        [(status, Some(leader))] if status == "ElectionFinished" => Some(leader.clone()),
        _ => None,
    }
}

#[test]
fn a_leader_topology_elects_one_leader_and_fails_over_when_it_is_killed() {
    let mut ring = start_ring(BLOCK_LEADER, 3, |_, b| b.args(["--topology", "leader"]));
    let all: Vec<&Supervisor> = ring.iter().collect();
    let leader = wait_for(SOON, "all three agree on one finished leader", || {
        agreed_leader(&all).ok_or_else(|| {
            format!(
                "{:?}",
                all.iter().map(|s| election_of(s)).collect::<Vec<_>>()
            )
        })
    });
    let ids: Vec<String> = ring.iter().map(Supervisor::member_id).collect();
    assert!(
        ids.contains(&leader),
        "leader {leader} is not a member: {ids:?}"
    );

    let position = ids.iter().position(|id| *id == leader).unwrap();
    let mut killed = ring.remove(position);
    killed.kill();
    let survivors: Vec<&Supervisor> = ring.iter().collect();
    let successor = wait_for(SOON, "the two survivors agree on a new leader", || {
        agreed_leader(&survivors)
            .filter(|l| *l != leader)
            .ok_or_else(|| {
                format!(
                    "{:?}",
                    survivors.iter().map(|s| election_of(s)).collect::<Vec<_>>()
                )
            })
    });
    assert_ne!(successor, leader);
    assert!(ids.contains(&successor));
}
