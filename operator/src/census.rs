//! The ring's census as the resource's `status.census`: a pure function from one member's
//! `/census` (parsed with the supervisor's own types, `habitat_sidecar::census::doc`) and the
//! resource's pods to what the status shows, and the Degraded reason it implies. No I/O, no
//! clock (the time comes in); `follow` does the streaming and the writes.
//!
//! Members map to pods by IP (a member gossips from its pod's IP) or, failing that, by host
//! name (a pod's host name is its name, and the StatefulSet gives `--node-name` the pod name).

use std::collections::BTreeMap;

use habitat_sidecar::census::doc::{GroupDoc, MemberDoc};
use habitat_sidecar::census::{ELECTION_FINISHED, ELECTION_NONE, ELECTION_NO_QUORUM};
use habitat_sidecar::gossip::member::Health;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{CensusLeader, CensusMember, CensusStatus};

/// What the census needs of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub ip: Option<String>,
    /// The pod's Ready condition is True.
    pub ready: bool,
}

impl PodView {
    /// The view of `pod` (a pod not yet given an IP has none).
    pub fn of(pod: &Pod) -> PodView {
        let status = pod.status.as_ref();
        PodView {
            name: pod.name_any(),
            ip: status
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
        }
    }
}

/// Where a census came from: the member's id and the health of its own service (from its
/// `/services`, when known).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reporter {
    pub member_id: String,
    pub service_health: Option<String>,
}

fn pod_of<'a>(member: &MemberDoc, pods: &'a [PodView]) -> Option<&'a PodView> {
    let sys = &member.sys;
    let by_ip = |ip: &str| {
        (!ip.is_empty() && ip != "0.0.0.0")
            .then(|| pods.iter().find(|p| p.ip.as_deref() == Some(ip)))
            .flatten()
    };
    by_ip(&sys.gossip_ip)
        .or_else(|| by_ip(&sys.ip))
        .or_else(|| pods.iter().find(|p| p.name == sys.hostname))
}

fn member_ip(member: &MemberDoc) -> Option<String> {
    [&member.sys.gossip_ip, &member.sys.ip]
        .into_iter()
        .find(|ip| !ip.is_empty() && *ip != "0.0.0.0")
        .cloned()
}

fn role(member: &MemberDoc, election_status: &str) -> Option<&'static str> {
    if member.leader {
        Some("leader")
    } else if member.follower {
        Some("follower")
    } else if election_status == ELECTION_NONE {
        Some("standalone")
    } else {
        None
    }
}

/// `status.census` for `group` (from the census `reporter` answered), the resource's `pods`
/// and its desired `count`, observed at `now`.
pub fn census_status(
    group: &GroupDoc,
    pods: &[PodView],
    count: i32,
    reporter: &Reporter,
    now: &Time,
) -> CensusStatus {
    let mut members: Vec<CensusMember> = group
        .population
        .values()
        .map(|m| CensusMember {
            member_id: m.member_id.clone(),
            pod: pod_of(m, pods).map(|p| p.name.clone()),
            ip: member_ip(m),
            health: m.health().map(|h| h.as_str().to_owned()),
            role: role(m, &group.election_status).map(str::to_owned),
            service_health: (m.member_id == reporter.member_id)
                .then(|| reporter.service_health.clone())
                .flatten(),
        })
        .collect();
    members.sort_by(|a, b| {
        (a.pod.is_none(), &a.pod, &a.member_id).cmp(&(b.pod.is_none(), &b.pod, &b.member_id))
    });
    let leader = group.leader_id.as_ref().map(|id| CensusLeader {
        member_id: id.clone(),
        pod: members
            .iter()
            .find(|m| &m.member_id == id)
            .and_then(|m| m.pod.clone()),
    });
    let alive = group
        .population
        .values()
        .filter(|m| m.health() == Some(Health::Alive))
        .count();
    CensusStatus {
        election_status: Some(group.election_status.clone()),
        leader,
        election_term: group
            .election_term
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
        ready: Some(format!("{alive}/{count}")),
        config_incarnation: group
            .service_config
            .as_ref()
            .map(|c| i64::try_from(c.incarnation).unwrap_or(i64::MAX)),
        file_incarnations: group
            .service_files
            .values()
            .map(|f| {
                (
                    f.filename.clone(),
                    i64::try_from(f.incarnation).unwrap_or(i64::MAX),
                )
            })
            .collect::<BTreeMap<_, _>>(),
        members,
        reported_by: Some(reporter.member_id.clone()).filter(|id| !id.is_empty()),
        // A member answered.
        unreachable: None,
        observed_at: Some(now.clone()),
    }
}

/// Whether `a` and `b` say the same, `observedAt` aside.
pub fn same_census(a: Option<&CensusStatus>, b: Option<&CensusStatus>) -> bool {
    let strip = |c: Option<&CensusStatus>| {
        c.map(|c| CensusStatus {
            observed_at: None,
            ..c.clone()
        })
    };
    strip(a) == strip(b)
}

/// What the census says is wrong with the service group, as a Degraded reason and message:
/// `RingUnreachable` when no member's gateway answered (naming why), `NoQuorum` when the
/// reporting member's election has no quorum, `MemberDead` when a member is confirmed dead
/// (naming it and its pod).
pub fn census_problem(census: &CensusStatus) -> Option<(&'static str, String)> {
    if let Some(why) = &census.unreachable {
        return Some((
            "RingUnreachable",
            format!("no member's gateway answered: {why}"),
        ));
    }
    if census.election_status.as_deref() == Some(ELECTION_NO_QUORUM) {
        let alive = census
            .members
            .iter()
            .filter(|m| m.health.as_deref() == Some(Health::Alive.as_str()))
            .count();
        let counted = census
            .members
            .iter()
            .filter(|m| m.health.as_deref() != Some(Health::Departed.as_str()))
            .count();
        return Some((
            "NoQuorum",
            format!(
                "the election has no quorum: {alive} of {counted} members alive (more than half must be)"
            ),
        ));
    }
    let dead: Vec<String> = census
        .members
        .iter()
        .filter(|m| m.health.as_deref() == Some(Health::Confirmed.as_str()))
        .map(|m| match &m.pod {
            Some(pod) => format!("{} (pod {pod})", m.member_id),
            None => m.member_id.clone(),
        })
        .collect();
    if !dead.is_empty() {
        let noun = if dead.len() == 1 { "member" } else { "members" };
        return Some((
            "MemberDead",
            format!("{noun} {} confirmed dead by the ring", dead.join(", ")),
        ));
    }
    None
}

/// An event about the resource that a change of its census tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CensusEvent {
    /// `LeaderElected`, `MemberDead` or `ConfigApplied`.
    pub reason: &'static str,
    /// What `kubectl describe` shows, e.g. `db-1, term 7`.
    pub note: String,
    /// The pod the event is about, when one is.
    pub pod: Option<String>,
    /// A Warning (a member confirmed dead) rather than Normal.
    pub warning: bool,
}

/// The events going from the census `previous` (as status had it, so an operator restart
/// starts from what was written and repeats nothing) to `next`: `LeaderElected <pod>, term
/// <t>` when the leader is another member, `MemberDead <pod or member id>` for each member
/// newly confirmed dead, `ConfigApplied incarnation <n>` when the config incarnation rose.
pub fn census_events(previous: Option<&CensusStatus>, next: &CensusStatus) -> Vec<CensusEvent> {
    let mut events = Vec::new();
    if let Some(leader) = &next.leader {
        let before = previous.and_then(|p| p.leader.as_ref());
        if before.is_none_or(|b| b.member_id != leader.member_id) {
            let who = leader
                .pod
                .clone()
                .unwrap_or_else(|| leader.member_id.clone());
            let note = match next.election_term {
                Some(term) => format!("{who}, term {term}"),
                None => who,
            };
            events.push(CensusEvent {
                reason: "LeaderElected",
                note,
                pod: leader.pod.clone(),
                warning: false,
            });
        }
    }
    let confirmed = Some(Health::Confirmed.as_str());
    for member in &next.members {
        if member.health.as_deref() != confirmed {
            continue;
        }
        let was_dead = previous
            .into_iter()
            .flat_map(|p| &p.members)
            .any(|m| m.member_id == member.member_id && m.health.as_deref() == confirmed);
        if !was_dead {
            events.push(CensusEvent {
                reason: "MemberDead",
                note: member
                    .pod
                    .clone()
                    .unwrap_or_else(|| member.member_id.clone()),
                pod: member.pod.clone(),
                warning: true,
            });
        }
    }
    if let Some(incarnation) = next.config_incarnation {
        let before = previous.and_then(|p| p.config_incarnation);
        if before.is_none_or(|b| incarnation > b) {
            events.push(CensusEvent {
                reason: "ConfigApplied",
                note: format!("incarnation {incarnation}"),
                pod: None,
                warning: false,
            });
        }
    }
    events
}

/// Whether an election of the group has finished with a leader.
pub fn has_leader(census: &CensusStatus) -> bool {
    census.election_status.as_deref() == Some(ELECTION_FINISHED) && census.leader.is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use habitat_sidecar::census::doc::{ServiceConfigDoc, ServiceFileDoc};
    use habitat_sidecar::census::CensusPkg;
    use habitat_sidecar::gossip::rumor::SysInfo;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(16)
    }

    fn member(n: u8, health: Health, ip: &str) -> MemberDoc {
        MemberDoc {
            member_id: id(n),
            pkg: CensusPkg::default(),
            pkg_incarnation: 0,
            package: "core/redis/1/2".into(),
            service: "redis".into(),
            group: "default".into(),
            org: None,
            persistent: false,
            leader: false,
            follower: false,
            update_leader: false,
            update_follower: false,
            election_is_running: false,
            election_is_no_quorum: false,
            election_is_finished: false,
            update_election_is_running: false,
            update_election_is_no_quorum: false,
            update_election_is_finished: false,
            sys: SysInfo {
                ip: ip.into(),
                hostname: format!("host-{n}"),
                gossip_ip: ip.into(),
                gossip_port: 9638,
                http_gateway_ip: "0.0.0.0".into(),
                http_gateway_port: 9631,
                ctl_gateway_ip: "0.0.0.0".into(),
                ctl_gateway_port: 9632,
            },
            alive: health == Health::Alive,
            suspect: health == Health::Suspect,
            confirmed: health == Health::Confirmed,
            departed: health == Health::Departed,
            cfg: json!({}),
        }
    }

    fn group(members: Vec<MemberDoc>, status: &str, leader: Option<u8>) -> GroupDoc {
        let mut members = members;
        for m in &mut members {
            m.leader = leader.map(id) == Some(m.member_id.clone());
            m.follower = leader.is_some() && !m.leader;
        }
        GroupDoc {
            service_group: "redis.default".into(),
            election_status: status.into(),
            update_election_status: ELECTION_NONE.into(),
            pkg_incarnation: 0,
            leader_id: leader.map(id),
            service_config: Some(ServiceConfigDoc {
                incarnation: 4,
                value: json!({"port": 1}),
            }),
            local_member_id: id(1),
            population: members
                .into_iter()
                .map(|m| (m.member_id.clone(), m))
                .collect(),
            update_leader_id: None,
            changed_service_files: Vec::new(),
            service_files: [(
                "ca.pem".to_owned(),
                ServiceFileDoc {
                    body: Vec::new(),
                    filename: "ca.pem".into(),
                    incarnation: 2,
                },
            )]
            .into(),
            election_term: Some(1),
            update_election_term: None,
            electorate: None,
            retired_members: Vec::new(),
            update: None,
        }
    }

    fn pods() -> Vec<PodView> {
        (0..3)
            .map(|n| PodView {
                name: format!("redis-{n}"),
                ip: Some(format!("10.0.0.{}", n + 1)),
                ready: true,
            })
            .collect()
    }

    fn reporter() -> Reporter {
        Reporter {
            member_id: id(1),
            service_health: Some("ok".into()),
        }
    }

    fn three(leader: Option<u8>, third: Health) -> GroupDoc {
        group(
            vec![
                member(1, Health::Alive, "10.0.0.1"),
                member(2, Health::Alive, "10.0.0.2"),
                member(3, third, "10.0.0.3"),
            ],
            if leader.is_some() {
                ELECTION_FINISHED
            } else {
                "ElectionInProgress"
            },
            leader,
        )
    }

    #[test]
    fn an_unreachable_ring_is_the_problem_named_first_with_why() {
        let census = CensusStatus {
            election_status: Some(ELECTION_NO_QUORUM.to_string()),
            unreachable: Some("hello-0: connection refused".to_string()),
            ..CensusStatus::default()
        };
        let (reason, message) = census_problem(&census).unwrap();
        assert_eq!(reason, "RingUnreachable");
        assert!(message.contains("hello-0: connection refused"), "{message}");
        let answered = CensusStatus {
            unreachable: None,
            ..census
        };
        assert_eq!(census_problem(&answered).unwrap().0, "NoQuorum");
    }

    #[test]
    fn members_map_to_pods_by_ip_and_the_leader_is_named_with_its_pod() {
        let status = census_status(
            &three(Some(2), Health::Alive),
            &pods(),
            3,
            &reporter(),
            &at(5),
        );
        let pods: Vec<_> = status
            .members
            .iter()
            .map(|m| m.pod.clone().unwrap())
            .collect();
        assert_eq!(pods, ["redis-0", "redis-1", "redis-2"]);
        let leader = status.leader.clone().unwrap();
        assert_eq!(
            (leader.member_id, leader.pod),
            (id(2), Some("redis-1".into()))
        );
        let roles: Vec<_> = status
            .members
            .iter()
            .map(|m| m.role.clone().unwrap())
            .collect();
        assert_eq!(roles, ["follower", "leader", "follower"]);
        assert_eq!(status.ready.as_deref(), Some("3/3"));
        assert_eq!(status.config_incarnation, Some(4));
        assert_eq!(status.file_incarnations["ca.pem"], 2);
        assert_eq!(status.election_status.as_deref(), Some("ElectionFinished"));
        assert_eq!(status.reported_by, Some(id(1)));
        assert_eq!(status.observed_at, Some(at(5)));
    }

    #[test]
    fn service_health_is_known_only_for_the_reporting_member() {
        let status = census_status(
            &three(Some(2), Health::Alive),
            &pods(),
            3,
            &reporter(),
            &at(5),
        );
        let health: Vec<_> = status
            .members
            .iter()
            .map(|m| m.service_health.clone())
            .collect();
        assert_eq!(health, [Some("ok".into()), None, None]);
    }

    #[test]
    fn a_member_without_a_matching_ip_maps_by_host_name_or_not_at_all() {
        let mut g = three(Some(1), Health::Alive);
        let m = g.population.get_mut(&id(3)).unwrap();
        m.sys.ip = "192.168.9.9".into();
        m.sys.gossip_ip = "192.168.9.9".into();
        m.sys.hostname = "redis-2".into();
        let status = census_status(&g, &pods(), 3, &reporter(), &at(1));
        assert_eq!(status.members[2].pod.as_deref(), Some("redis-2"));
        g.population.get_mut(&id(3)).unwrap().sys.hostname = "elsewhere".into();
        let status = census_status(&g, &pods(), 3, &reporter(), &at(1));
        // Unmatched members come last.
        assert_eq!(status.members[2].member_id, id(3));
        assert_eq!(status.members[2].pod, None);
        assert_eq!(status.members[2].ip.as_deref(), Some("192.168.9.9"));
    }

    #[test]
    fn health_roles_and_ready_follow_the_census_while_an_election_runs() {
        let status = census_status(
            &three(None, Health::Confirmed),
            &pods(),
            3,
            &reporter(),
            &at(1),
        );
        assert!(status.leader.is_none());
        assert!(status.members.iter().all(|m| m.role.is_none()));
        assert_eq!(status.members[2].health.as_deref(), Some("Confirmed"));
        assert_eq!(status.ready.as_deref(), Some("2/3"));
        assert!(!has_leader(&status));
    }

    #[test]
    fn a_group_without_an_election_is_standalone() {
        let g = group(
            vec![member(1, Health::Alive, "10.0.0.1")],
            ELECTION_NONE,
            None,
        );
        let status = census_status(&g, &pods(), 1, &reporter(), &at(1));
        assert_eq!(status.members[0].role.as_deref(), Some("standalone"));
        assert_eq!(census_problem(&status), None);
    }

    #[test]
    fn a_confirmed_dead_member_is_degraded_naming_it_and_its_pod_and_recovery_clears_it() {
        let dead = census_status(
            &three(Some(1), Health::Confirmed),
            &pods(),
            3,
            &reporter(),
            &at(1),
        );
        let (reason, message) = census_problem(&dead).unwrap();
        assert_eq!(reason, "MemberDead");
        assert!(
            message.contains(&id(3)) && message.contains("pod redis-2"),
            "{message}"
        );
        let back = census_status(
            &three(Some(1), Health::Alive),
            &pods(),
            3,
            &reporter(),
            &at(2),
        );
        assert_eq!(census_problem(&back), None);
    }

    #[test]
    fn no_quorum_is_degraded_with_the_count() {
        let g = group(
            vec![
                member(1, Health::Alive, "10.0.0.1"),
                member(2, Health::Confirmed, "10.0.0.2"),
                member(3, Health::Confirmed, "10.0.0.3"),
            ],
            ELECTION_NO_QUORUM,
            None,
        );
        let status = census_status(&g, &pods(), 3, &reporter(), &at(1));
        let (reason, message) = census_problem(&status).unwrap();
        assert_eq!(reason, "NoQuorum");
        assert!(message.contains("1 of 3 members alive"), "{message}");
    }

    #[test]
    fn only_observed_at_changing_is_no_change() {
        let g = three(Some(2), Health::Alive);
        let first = census_status(&g, &pods(), 3, &reporter(), &at(1));
        let later = census_status(&g, &pods(), 3, &reporter(), &at(99));
        assert!(same_census(Some(&first), Some(&later)));
        let failed = census_status(
            &three(Some(2), Health::Suspect),
            &pods(),
            3,
            &reporter(),
            &at(99),
        );
        assert!(!same_census(Some(&first), Some(&failed)));
        assert!(!same_census(None, Some(&first)));
    }

    fn event_census(
        leader: Option<(&str, &str)>,
        term: Option<i64>,
        dead: &[&str],
        config: Option<i64>,
    ) -> CensusStatus {
        CensusStatus {
            leader: leader.map(|(id, pod)| CensusLeader {
                member_id: id.to_owned(),
                pod: Some(pod.to_owned()).filter(|p| !p.is_empty()),
            }),
            election_term: term,
            config_incarnation: config,
            members: ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(n, id)| CensusMember {
                    member_id: (*id).to_owned(),
                    pod: Some(format!("db-{n}")).filter(|_| *id != "c"),
                    health: Some(
                        if dead.contains(id) {
                            "Confirmed"
                        } else {
                            "Alive"
                        }
                        .to_owned(),
                    ),
                    ..CensusMember::default()
                })
                .collect(),
            ..CensusStatus::default()
        }
    }

    fn reasons_and_notes(events: &[CensusEvent]) -> Vec<(&str, &str)> {
        events.iter().map(|e| (e.reason, e.note.as_str())).collect()
    }

    #[test]
    fn a_new_leader_a_member_confirmed_dead_and_a_higher_config_are_events() {
        let before = event_census(Some(("a", "db-0")), Some(6), &[], Some(11));
        let after = event_census(Some(("b", "db-1")), Some(7), &["a", "c"], Some(12));
        let events = census_events(Some(&before), &after);
        assert_eq!(
            reasons_and_notes(&events),
            [
                ("LeaderElected", "db-1, term 7"),
                ("MemberDead", "db-0"),
                // A member no pod matches is named by its id.
                ("MemberDead", "c"),
                ("ConfigApplied", "incarnation 12"),
            ]
        );
        assert_eq!(events[0].pod.as_deref(), Some("db-1"));
        assert!(!events[0].warning && events[1].warning && !events[3].warning);
        // A leader without a pod or a term is named by its id alone.
        let bare = event_census(Some(("c", "")), None, &[], None);
        assert_eq!(
            reasons_and_notes(&census_events(Some(&before), &bare)),
            [("LeaderElected", "c")]
        );
    }

    #[test]
    fn an_unchanged_census_or_a_restart_from_the_written_status_tells_nothing_again() {
        let census = event_census(Some(("b", "db-1")), Some(7), &["a"], Some(12));
        assert!(census_events(Some(&census), &census).is_empty());
        // The same leader in a later term, a dead member still dead, a config incarnation
        // that did not rise (or fell, as read from a member that lags): nothing.
        let mut later = census.clone();
        later.election_term = Some(8);
        later.config_incarnation = Some(10);
        assert!(census_events(Some(&census), &later).is_empty());
        // Losing the leader is no event; its return is one.
        let none = event_census(None, Some(7), &["a"], Some(12));
        assert!(census_events(Some(&census), &none).is_empty());
        assert_eq!(
            reasons_and_notes(&census_events(Some(&none), &census)),
            [("LeaderElected", "db-1, term 7")]
        );
        // The first census of a resource tells what it found.
        let first = census_events(None, &census);
        assert_eq!(
            reasons_and_notes(&first),
            [
                ("LeaderElected", "db-1, term 7"),
                ("MemberDead", "db-0"),
                ("ConfigApplied", "incarnation 12")
            ]
        );
    }

    #[test]
    fn pod_view_reads_ip_and_readiness() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "redis-0"},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(
            PodView::of(&pod),
            PodView {
                name: "redis-0".into(),
                ip: Some("10.0.0.1".into()),
                ready: true
            }
        );
        let pending: Pod =
            serde_json::from_value(json!({"metadata": {"name": "redis-1"}})).unwrap();
        assert_eq!(PodView::of(&pending).ip, None);
        assert!(!PodView::of(&pending).ready);
    }
}
