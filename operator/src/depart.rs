//! Scale-down departures: the members of pods a scale-down removed leave the ring as
//! `Departed`, not dead, so the election's quorum counts only the members that remain.
//!
//! Which members to depart is a pure decision (`departures`) over the census, the resource's
//! `count` and the pods that exist; it keeps no state, so it is idempotent and an operator
//! restart makes the same decision. It never departs a member whose pod exists (terminating or
//! not), whose ordinal is below `count` (its pod comes back: a rolling restart, a pod deleted by
//! the user), or that the ring does not yet confirm dead (a departure is final for a member id).

use std::time::Duration;

use habitat_sidecar::census::doc::GroupDoc;
use habitat_sidecar::ctl::client::{request, ClientOptions};
use habitat_sidecar::ctl::messages::SupDepart;
use habitat_sidecar::ctl::Error as CtlError;
use habitat_sidecar::gossip::member::Health;

use crate::census::PodView;
use crate::crd::CensusStatus;

/// What the decision needs of one member of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    /// The pod the member ran in: its host name (a pod's host name is its name), else the pod
    /// `status.census` mapped it to.
    pub pod: Option<String>,
    pub health: Option<Health>,
}

/// The members of `group`, each with its pod from its host name or, failing that, from the
/// mapping `written` (the status written before) recorded.
pub fn member_views(
    group: &GroupDoc,
    written: Option<&CensusStatus>,
    name: &str,
) -> Vec<MemberView> {
    group
        .population
        .values()
        .map(|m| {
            let by_host = Some(m.sys.hostname.clone()).filter(|h| ordinal(h, name).is_some());
            let by_status = || {
                written?
                    .members
                    .iter()
                    .find(|w| w.member_id == m.member_id)?
                    .pod
                    .clone()
            };
            MemberView {
                member_id: m.member_id.clone(),
                pod: by_host.or_else(by_status),
                health: m.health(),
            }
        })
        .collect()
}

/// The ordinal of pod `pod` of the StatefulSet `name` (`<name>-<N>`).
pub fn ordinal(pod: &str, name: &str) -> Option<i32> {
    let digits = pod.strip_prefix(name)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Member ids to depart: members confirmed dead whose pod (`<name>-<N>`) has an ordinal of at
/// least `count` and no longer exists among `pods`. Sorted, without duplicates.
pub fn departures(name: &str, count: i32, members: &[MemberView], pods: &[PodView]) -> Vec<String> {
    let mut ids: Vec<String> = members
        .iter()
        .filter(|m| m.health == Some(Health::Confirmed))
        .filter(|m| {
            m.pod.as_deref().is_some_and(|pod| {
                ordinal(pod, name).is_some_and(|n| n >= count)
                    && !pods.iter().any(|p| p.name == pod)
            })
        })
        .map(|m| m.member_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Departs `member_id` through the ctl gateway at `addr` (`hab sup depart`).
pub async fn send_departure(addr: &str, secret: &str, member_id: &str) -> Result<(), CtlError> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let message = SupDepart {
        member_id: Some(member_id.to_owned()),
    };
    request(addr, secret, message, &options).await.map(drop)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn member(id: &str, pod: Option<&str>, health: Health) -> MemberView {
        MemberView {
            member_id: id.into(),
            pod: pod.map(str::to_owned),
            health: Some(health),
        }
    }

    fn pods(names: &[&str]) -> Vec<PodView> {
        names
            .iter()
            .map(|n| PodView {
                name: (*n).into(),
                ip: None,
                ready: true,
            })
            .collect()
    }

    #[test]
    fn members_of_pods_removed_by_a_scale_down_are_departed_once_confirmed_dead() {
        let members = [
            member("a", Some("db-0"), Health::Alive),
            member("b", Some("db-1"), Health::Alive),
            member("c", Some("db-2"), Health::Alive),
            member("d", Some("db-3"), Health::Confirmed),
            member("e", Some("db-4"), Health::Confirmed),
        ];
        assert_eq!(
            departures("db", 3, &members, &pods(&["db-0", "db-1", "db-2"])),
            ["d", "e"]
        );
    }

    #[test]
    fn a_member_whose_pod_still_exists_is_never_departed() {
        // Scaled down, but the pod is still terminating: wait for it to be gone.
        let members = [member("d", Some("db-3"), Health::Confirmed)];
        assert!(departures("db", 3, &members, &pods(&["db-0", "db-3"])).is_empty());
    }

    #[test]
    fn a_member_of_an_ordinal_below_count_is_never_departed() {
        // A rolling restart or a pod deleted by the user: the pod comes back.
        let members = [member("b", Some("db-1"), Health::Confirmed)];
        assert!(departures("db", 3, &members, &pods(&["db-0", "db-2"])).is_empty());
        // Scaled down and up again before the departure: the pod comes back too.
        let members = [member("d", Some("db-3"), Health::Confirmed)];
        assert!(departures("db", 5, &members, &pods(&["db-0"])).is_empty());
    }

    #[test]
    fn only_members_the_ring_confirms_dead_are_departed() {
        let members = [
            member("d", Some("db-3"), Health::Alive),
            member("e", Some("db-4"), Health::Suspect),
            member("f", Some("db-5"), Health::Departed),
        ];
        assert!(departures("db", 3, &members, &pods(&[])).is_empty());
    }

    #[test]
    fn members_of_other_resources_or_unknown_pods_are_left_alone() {
        let members = [
            member("x", Some("dbx-7"), Health::Confirmed),
            member("y", Some("web-4"), Health::Confirmed),
            member("z", None, Health::Confirmed),
        ];
        assert!(departures("db", 3, &members, &pods(&[])).is_empty());
    }

    #[test]
    fn ordinals_are_the_statefulsets_pod_suffixes() {
        assert_eq!(ordinal("db-12", "db"), Some(12));
        assert_eq!(ordinal("db-a-1", "db-a"), Some(1));
        assert_eq!(ordinal("db-a-1", "db"), None);
        assert_eq!(ordinal("db-", "db"), None);
        assert_eq!(ordinal("db-+1", "db"), None);
        assert_eq!(ordinal("db", "db"), None);
    }
}
