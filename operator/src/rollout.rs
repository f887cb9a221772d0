//! Election-aware rollouts: the StatefulSet updates `OnDelete`, and the operator decides which
//! outdated pod to delete next. A pure function of what the cluster shows (pods with their
//! revisions and state, the ring's census, the strategy, the previous `status.rollout`): no
//! I/O, no clock (pod ages come in), no memory between reconciles, so an operator restart
//! picks up where the last one stopped. `reconcile` gathers the inputs and does the deletes.
//!
//! Invariants of `plan`: rolling (any strategy but `at-once`) deletes at most one pod per step
//! and only while every pod at the target revision is settled (Ready, alive in the ring, its
//! service healthy), so at most one pod is ever down; followers go first (pods that are not
//! Ready before those that are, highest ordinal first), the census' leader last; a pod at the
//! target revision that fails (crash loop, image error, past the progress deadline) stops the
//! rollout (`Stalled`) and nothing more is deleted until the template changes again.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{CensusStatus, RolloutStatus, Strategy};

/// Phase of a rollout that replaces pods.
pub const PROGRESSING: &str = "Progressing";
/// Phase once every pod runs the target revision and settled.
pub const COMPLETE: &str = "Complete";
/// Phase once a replaced pod failed.
pub const STALLED: &str = "Stalled";

/// Restarts of a container of a new pod that count as a crash loop.
pub const CRASH_RESTARTS: i32 = 3;

/// Waiting reasons of a container that no waiting cures.
const FATAL_WAITING: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What the rollout needs of one pod of the StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodState {
    pub name: String,
    /// Ordinal from the name (`<sts>-N`).
    pub ordinal: i32,
    /// `controller-revision-hash` label: the StatefulSet revision the pod was made from.
    pub revision: Option<String>,
    /// Has a deletion timestamp.
    pub terminating: bool,
    /// Ready condition True (the supervisor's `/readyz`: its service runs, its health check
    /// passes and its election finished).
    pub ready: bool,
    /// The census shows this pod's member (the one at its current IP, in a census written
    /// after the pod was created) `Alive`.
    pub alive_in_ring: bool,
    /// The member's service health check, `ok`/`warning`/`critical`/`unknown`, if known.
    pub service_health: Option<String>,
    /// Seconds since the pod was created.
    pub age_seconds: i64,
    /// Most restarts of any of its containers.
    pub restarts: i32,
    /// A container's waiting reason and message (e.g. `CrashLoopBackOff`), if one waits.
    pub waiting: Option<(String, String)>,
}

/// Everything `plan` decides from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The StatefulSet's `updateRevision`.
    pub target: &'a str,
    /// `spec.count`: pods with a higher ordinal are being scaled away and ignored.
    pub count: i32,
    pub strategy: Strategy,
    /// The topology elects a leader (so the leader goes last).
    pub elects_leader: bool,
    /// Pod of the census' leader.
    pub leader: Option<&'a str>,
    /// A service runs in the pods, so the ring's census and the service's health count
    /// (without a package only readiness does).
    pub has_service: bool,
    /// `spec.rollout.progressDeadlineSeconds`.
    pub deadline_seconds: i64,
    /// The previous `status.rollout` already says this target is complete: failures after
    /// that are the census' business (MemberDead), not a rollout's.
    pub completed: bool,
    pub pods: &'a [PodState],
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every pod runs the target revision and settled.
    Complete,
    /// Nothing to delete yet, and why.
    Wait(String),
    /// Delete these pods (one when rolling), each with why it goes now.
    Delete(Vec<Step>),
    /// A pod at the target revision failed: delete nothing more.
    Stalled { pod: String, why: String },
}

/// One pod to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub pod: String,
    /// `follower`, `leader`, `not ready`, `standalone` or `at-once`.
    pub role: &'static str,
}

/// The decision, with the counts for `status.rollout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    /// Pods at the target revision (not terminating).
    pub updated: i32,
    /// `count`.
    pub total: i32,
}

impl PodState {
    /// Ready, alive in the ring and its service healthy.
    fn settled(&self, has_service: bool) -> bool {
        self.ready
            && !self.terminating
            && (!has_service
                || self.alive_in_ring
                    && matches!(self.service_health.as_deref(), Some("ok" | "warning")))
    }

    /// What keeps it from being settled.
    fn missing(&self, has_service: bool) -> String {
        let mut missing = Vec::new();
        if !self.ready {
            missing.push("not Ready".to_owned());
        }
        if has_service {
            if !self.alive_in_ring {
                missing.push("not alive in the ring's census".to_owned());
            }
            match self.service_health.as_deref() {
                Some("ok" | "warning") => {}
                Some(health) => missing.push(format!("service health {health}")),
                None => missing.push("service health not known".to_owned()),
            }
        }
        missing.join(", ")
    }

    /// Why it has failed for good, if it has.
    fn failure(&self, deadline_seconds: i64, has_service: bool) -> Option<String> {
        if let Some((reason, message)) = &self.waiting {
            if FATAL_WAITING.contains(&reason.as_str()) {
                return Some(format!("container waiting: {reason}: {message}"));
            }
        }
        if self.restarts >= CRASH_RESTARTS {
            let last = self
                .waiting
                .as_ref()
                .map(|(reason, _)| format!(" ({reason})"))
                .unwrap_or_default();
            return Some(format!("crash-looping: {} restarts{last}", self.restarts));
        }
        (self.age_seconds > deadline_seconds).then(|| {
            format!(
                "{} after {deadline_seconds} s (rollout.progressDeadlineSeconds)",
                self.missing(has_service)
            )
        })
    }
}

/// The next step of the rollout `input` describes.
pub fn plan(input: &Input<'_>) -> Plan {
    let pods: Vec<&PodState> = input
        .pods
        .iter()
        .filter(|p| p.ordinal < input.count)
        .collect();
    let at_target = |p: &&PodState| p.revision.as_deref() == Some(input.target);
    let updated = pods
        .iter()
        .filter(|p| !p.terminating && at_target(p))
        .count();
    let outcome = |decision| Plan {
        decision,
        updated: i32::try_from(updated).unwrap_or(i32::MAX),
        total: input.count,
    };
    let outdated: Vec<&PodState> = pods
        .iter()
        .copied()
        .filter(|p| !p.terminating && !at_target(p))
        .collect();
    if input.completed && outdated.is_empty() {
        return outcome(Decision::Complete);
    }

    // A new pod that failed stops everything.
    let unsettled: Vec<&PodState> = pods
        .iter()
        .copied()
        .filter(|p| !p.terminating && at_target(p) && !p.settled(input.has_service))
        .collect();
    if let Some((pod, why)) = unsettled.iter().find_map(|p| {
        p.failure(input.deadline_seconds, input.has_service)
            .map(|why| (p.name.clone(), why))
    }) {
        return outcome(Decision::Stalled { pod, why });
    }

    if input.strategy == Strategy::AtOnce && !outdated.is_empty() {
        let steps = outdated
            .iter()
            .map(|p| Step {
                pod: p.name.clone(),
                role: "at-once",
            })
            .collect();
        return outcome(Decision::Delete(steps));
    }
    if let Some(p) = pods.iter().find(|p| p.terminating) {
        return outcome(Decision::Wait(format!(
            "waiting for {} to terminate",
            p.name
        )));
    }
    let present: BTreeSet<i32> = pods.iter().map(|p| p.ordinal).collect();
    if let Some(n) = (0..input.count).find(|n| !present.contains(n)) {
        return outcome(Decision::Wait(format!(
            "waiting for the StatefulSet to create pod ordinal {n}"
        )));
    }
    if let Some(p) = unsettled.first() {
        return outcome(Decision::Wait(format!(
            "waiting for {} at the new revision: {}",
            p.name,
            p.missing(input.has_service)
        )));
    }
    if outdated.is_empty() {
        return outcome(Decision::Complete);
    }

    // Pods already down first (replacing them takes nothing more away), then followers from
    // the highest ordinal down, the leader last.
    let leader = input.leader.filter(|_| input.elects_leader);
    if input.elects_leader && leader.is_none() && outdated.len() > 1 {
        return outcome(Decision::Wait(
            "waiting for the census to name the leader (it is replaced last)".to_owned(),
        ));
    }
    let mut order = outdated.clone();
    order.sort_by_key(|p| (p.ready, Some(p.name.as_str()) == leader, -p.ordinal));
    let next = order[0];
    let role = if !next.ready {
        "not ready"
    } else if Some(next.name.as_str()) == leader {
        "leader"
    } else if input.elects_leader {
        "follower"
    } else {
        "standalone"
    };
    outcome(Decision::Delete(vec![Step {
        pod: next.name.clone(),
        role,
    }]))
}

/// `status.rollout` after `plan`, given the previous one, at `now`.
pub fn rollout_status(
    previous: Option<&RolloutStatus>,
    target: &str,
    plan: &Plan,
    now: &Time,
) -> RolloutStatus {
    let same = previous.filter(|p| p.target_revision == target);
    let (phase, message) = match &plan.decision {
        Decision::Complete => (COMPLETE, format!("{} pods at {target}", plan.total)),
        Decision::Wait(why) => (PROGRESSING, why.clone()),
        Decision::Delete(steps) => (
            PROGRESSING,
            format!(
                "replacing {}",
                steps
                    .iter()
                    .map(|s| format!("{} ({})", s.pod, s.role))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Decision::Stalled { pod, why } => (STALLED, format!("pod {pod}: {why}")),
    };
    // Started once some pod was behind this revision (or stays started).
    let behind = plan.updated < plan.total && matches!(plan.decision, Decision::Delete(_));
    let started_at = same
        .and_then(|p| p.started_at.clone())
        .or_else(|| behind.then(|| now.clone()));
    RolloutStatus {
        target_revision: target.to_owned(),
        updated: plan.updated,
        total: plan.total,
        phase: phase.to_owned(),
        message,
        started_at,
    }
}

/// An event about the rollout to publish: type is Warning when `warning`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: &'static str,
    pub note: String,
    pub warning: bool,
    /// The pod it is about (PodReplaced), if any.
    pub pod: Option<String>,
}

/// The events that going from `previous` to `next` (and deleting `deleted`) publishes:
/// RolloutStarted, PodReplaced per pod, RolloutComplete, RolloutStalled.
pub fn notes(previous: Option<&RolloutStatus>, next: &RolloutStatus, plan: &Plan) -> Vec<Note> {
    let same = previous.filter(|p| p.target_revision == next.target_revision);
    let mut notes = Vec::new();
    if next.started_at.is_some() && same.is_none_or(|p| p.started_at.is_none()) {
        notes.push(Note {
            reason: "RolloutStarted",
            note: format!(
                "rolling {} pods to revision {} ({} outdated)",
                next.total,
                next.target_revision,
                next.total - next.updated
            ),
            warning: false,
            pod: None,
        });
    }
    if let Decision::Delete(steps) = &plan.decision {
        for step in steps {
            notes.push(Note {
                reason: "PodReplaced",
                note: format!(
                    "{} ({}) deleted for revision {}",
                    step.pod, step.role, next.target_revision
                ),
                warning: false,
                pod: Some(step.pod.clone()),
            });
        }
    }
    let was = same.map(|p| p.phase.as_str());
    if next.phase == COMPLETE && next.started_at.is_some() && was != Some(COMPLETE) {
        notes.push(Note {
            reason: "RolloutComplete",
            note: format!(
                "all {} pods run revision {}",
                next.total, next.target_revision
            ),
            warning: false,
            pod: None,
        });
    }
    if next.phase == STALLED && was != Some(STALLED) {
        notes.push(Note {
            reason: "RolloutStalled",
            note: format!(
                "rollout to revision {} stopped: {}",
                next.target_revision, next.message
            ),
            warning: true,
            pod: None,
        });
    }
    notes
}

/// The ordinal of pod `name` of StatefulSet `sts` (`<sts>-N`).
pub fn ordinal(sts: &str, name: &str) -> Option<i32> {
    name.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

/// What `plan` needs of `pod` of StatefulSet `sts`, at `now`, with the resource's `census`;
/// `service_health` from the census or the pod's own gateway.
pub fn pod_state(
    sts: &str,
    pod: &Pod,
    census: Option<&CensusStatus>,
    service_health: Option<String>,
    now: &Time,
) -> Option<PodState> {
    let name = pod.name_any();
    let ordinal = ordinal(sts, &name)?;
    let status = pod.status.as_ref();
    let ip = status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
    let created = pod.metadata.creation_timestamp.as_ref();
    let alive_in_ring = census.is_some_and(|c| {
        // A census written before the pod existed describes its predecessor.
        let fresh = match (&c.observed_at, created) {
            (Some(seen), Some(created)) => seen.0 >= created.0,
            _ => false,
        };
        fresh
            && c.members.iter().any(|m| {
                m.pod.as_deref() == Some(name.as_str())
                    && m.health.as_deref() == Some("Alive")
                    && !ip.is_empty()
                    && m.ip.as_deref() == Some(ip)
            })
    });
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten();
    let mut restarts = 0;
    let mut waiting = None;
    for c in containers {
        restarts = restarts.max(c.restart_count);
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if !reason.is_empty() && reason != "ContainerCreating" && reason != "PodInitializing" {
                waiting = Some((reason, w.message.clone().unwrap_or_default()));
            }
        }
    }
    let age_seconds = created
        .map(|c| now.0.as_second().saturating_sub(c.0.as_second()))
        .unwrap_or(0);
    Some(PodState {
        ordinal,
        revision: pod.labels().get("controller-revision-hash").cloned(),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        alive_in_ring,
        service_health,
        age_seconds,
        restarts,
        waiting,
        name,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    const OLD: &str = "db-old";
    const NEW: &str = "db-new";

    fn pod(n: i32, revision: &str) -> PodState {
        PodState {
            name: format!("db-{n}"),
            ordinal: n,
            revision: Some(revision.to_owned()),
            terminating: false,
            ready: true,
            alive_in_ring: true,
            service_health: Some("ok".to_owned()),
            age_seconds: 1000,
            restarts: 0,
            waiting: None,
        }
    }

    fn input<'a>(pods: &'a [PodState], leader: Option<&'a str>) -> Input<'a> {
        Input {
            target: NEW,
            count: i32::try_from(pods.len()).unwrap(),
            strategy: Strategy::Rolling,
            elects_leader: true,
            leader,
            has_service: true,
            deadline_seconds: 600,
            completed: false,
            pods,
        }
    }

    fn deletes(plan: &Plan) -> Vec<&str> {
        match &plan.decision {
            Decision::Delete(steps) => steps.iter().map(|s| s.pod.as_str()).collect(),
            other => panic!("expected a delete, got {other:?}"),
        }
    }

    /// Drives `plan` to the end the way the cluster would (the deleted pod comes back at the
    /// new revision and settles), returning the deletion order.
    fn simulate(mut pods: Vec<PodState>, leader: &str, strategy: Strategy) -> Vec<String> {
        let mut order = Vec::new();
        for _ in 0..20 {
            let mut i = input(&pods, Some(leader));
            i.strategy = strategy;
            let plan = plan(&i);
            match plan.decision {
                Decision::Complete => return order,
                Decision::Delete(steps) => {
                    // Never more than one pod down while rolling.
                    if strategy != Strategy::AtOnce {
                        assert_eq!(steps.len(), 1);
                        assert!(pods.iter().filter(|p| !p.ready).count() <= 1);
                    }
                    for step in steps {
                        let p = pods.iter_mut().find(|p| p.name == step.pod).unwrap();
                        *p = PodState {
                            age_seconds: 5,
                            ..pod(p.ordinal, NEW)
                        };
                        order.push(step.pod);
                    }
                }
                other => panic!("stuck: {other:?}"),
            }
        }
        panic!("no end");
    }

    #[test]
    fn rolling_replaces_followers_from_the_highest_ordinal_and_the_leader_last() {
        let pods: Vec<_> = (0..5).map(|n| pod(n, OLD)).collect();
        let order = simulate(pods, "db-3", Strategy::Rolling);
        assert_eq!(order, ["db-4", "db-2", "db-1", "db-0", "db-3"]);
    }

    #[test]
    fn strategy_none_rolls_like_rolling_and_at_once_deletes_every_outdated_pod() {
        let pods: Vec<_> = (0..3).map(|n| pod(n, OLD)).collect();
        assert_eq!(
            simulate(pods.clone(), "db-0", Strategy::None),
            ["db-2", "db-1", "db-0"]
        );
        let mut mixed = pods.clone();
        mixed[1] = pod(1, NEW);
        let mut i = input(&mixed, Some("db-0"));
        i.strategy = Strategy::AtOnce;
        assert_eq!(deletes(&plan(&i)), ["db-0", "db-2"]);
    }

    #[test]
    fn standalone_rolls_from_the_highest_ordinal() {
        let pods: Vec<_> = (0..3).map(|n| pod(n, OLD)).collect();
        let mut i = input(&pods, None);
        i.elects_leader = false;
        let plan = plan(&i);
        assert_eq!(deletes(&plan), ["db-2"]);
        match plan.decision {
            Decision::Delete(steps) => assert_eq!(steps[0].role, "standalone"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_pod_that_is_already_down_goes_first_even_if_it_leads() {
        let mut pods: Vec<_> = (0..3).map(|n| pod(n, OLD)).collect();
        pods[0].ready = false;
        assert_eq!(deletes(&plan(&input(&pods, Some("db-0")))), ["db-0"]);
    }

    #[test]
    fn nothing_is_deleted_while_a_new_pod_settles_or_a_pod_terminates() {
        let mut pods = vec![pod(0, OLD), pod(1, OLD), pod(2, NEW)];
        for (change, expect) in [
            (
                (|p: &mut PodState| p.ready = false) as fn(&mut PodState),
                "not Ready",
            ),
            (|p| p.alive_in_ring = false, "not alive in the ring"),
            (|p| p.service_health = Some("critical".into()), "critical"),
            (|p| p.service_health = None, "not known"),
        ] {
            let mut new = pod(2, NEW);
            new.age_seconds = 10;
            change(&mut new);
            pods[2] = new;
            match plan(&input(&pods, Some("db-0"))).decision {
                Decision::Wait(why) => assert!(why.contains(expect), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        pods[2] = pod(2, NEW);
        pods[1].terminating = true;
        assert!(matches!(
            plan(&input(&pods, Some("db-0"))).decision,
            Decision::Wait(w) if w.contains("db-1 to terminate")
        ));
        // A pod the StatefulSet has not yet recreated.
        let missing = [pod(0, OLD), pod(2, NEW)];
        let mut i = input(&missing, Some("db-0"));
        i.count = 3;
        assert!(matches!(plan(&i).decision, Decision::Wait(w) if w.contains("ordinal 1")));
    }

    #[test]
    fn a_new_pod_past_the_deadline_or_crash_looping_stalls_the_rollout() {
        let mut pods = vec![pod(0, OLD), pod(1, OLD), pod(2, NEW)];
        pods[2].ready = false;
        pods[2].age_seconds = 601;
        let plan_ = plan(&input(&pods, Some("db-0")));
        assert_eq!(plan_.updated, 1);
        match &plan_.decision {
            Decision::Stalled { pod, why } => {
                assert_eq!(pod, "db-2");
                assert!(why.contains("not Ready after 600 s"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        pods[2].age_seconds = 5;
        pods[2].restarts = 3;
        pods[2].waiting = Some(("CrashLoopBackOff".into(), "back-off".into()));
        assert!(matches!(
            plan(&input(&pods, Some("db-0"))).decision,
            Decision::Stalled { why, .. } if why.contains("crash-looping: 3 restarts (CrashLoopBackOff)")
        ));
        pods[2].restarts = 0;
        pods[2].waiting = Some(("ErrImagePull".into(), "no such image".into()));
        assert!(matches!(
            plan(&input(&pods, Some("db-0"))).decision,
            Decision::Stalled { why, .. } if why.contains("ErrImagePull")
        ));
        // Even with at-once, nothing more is deleted.
        let mut i = input(&pods, Some("db-0"));
        i.strategy = Strategy::AtOnce;
        assert!(matches!(plan(&i).decision, Decision::Stalled { .. }));
    }

    #[test]
    fn the_leader_waits_until_the_census_names_it() {
        let pods = vec![pod(0, OLD), pod(1, OLD)];
        assert!(matches!(
            plan(&input(&pods, None)).decision,
            Decision::Wait(_)
        ));
        // The last outdated pod goes whoever leads.
        let last = vec![pod(0, NEW), pod(1, OLD)];
        assert_eq!(deletes(&plan(&input(&last, None))), ["db-1"]);
    }

    #[test]
    fn pods_being_scaled_away_are_ignored_and_without_a_service_readiness_is_enough() {
        let pods = vec![pod(0, NEW), pod(1, NEW), pod(2, OLD)];
        let mut i = input(&pods, Some("db-0"));
        i.count = 2;
        assert_eq!(plan(&i).decision, Decision::Complete);
        let mut bare = vec![pod(0, NEW)];
        bare[0].alive_in_ring = false;
        bare[0].service_health = None;
        let mut i = input(&bare, None);
        i.has_service = false;
        assert_eq!(plan(&i).decision, Decision::Complete);
    }

    #[test]
    fn a_completed_rollout_stays_complete_when_a_pod_fails_later() {
        let mut pods = vec![pod(0, NEW), pod(1, NEW)];
        pods[1].ready = false;
        pods[1].age_seconds = 5000;
        let mut i = input(&pods, Some("db-0"));
        assert!(matches!(plan(&i).decision, Decision::Stalled { .. }));
        i.completed = true;
        assert_eq!(plan(&i).decision, Decision::Complete);
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn status_and_events_follow_the_rollout() {
        let old: Vec<_> = (0..3).map(|n| pod(n, OLD)).collect();
        let first = plan(&input(&old, Some("db-0")));
        let started = rollout_status(None, NEW, &first, &at(10));
        assert_eq!(started.phase, PROGRESSING);
        assert_eq!((started.updated, started.total), (0, 3));
        assert_eq!(started.started_at, Some(at(10)));
        assert_eq!(started.message, "replacing db-2 (follower)");
        let reasons = |n: &[Note]| n.iter().map(|n| n.reason).collect::<Vec<_>>();
        assert_eq!(
            reasons(&notes(None, &started, &first)),
            ["RolloutStarted", "PodReplaced"]
        );
        // The next step keeps the start time and publishes only the replacement.
        let mut two = old.clone();
        two[2] = pod(2, NEW);
        let second = plan(&input(&two, Some("db-0")));
        let next = rollout_status(Some(&started), NEW, &second, &at(20));
        assert_eq!(next.started_at, Some(at(10)));
        assert_eq!(
            reasons(&notes(Some(&started), &next, &second)),
            ["PodReplaced"]
        );
        // Done.
        let all: Vec<_> = (0..3).map(|n| pod(n, NEW)).collect();
        let done = plan(&input(&all, Some("db-0")));
        let complete = rollout_status(Some(&next), NEW, &done, &at(30));
        assert_eq!(complete.phase, COMPLETE);
        assert_eq!(
            reasons(&notes(Some(&next), &complete, &done)),
            ["RolloutComplete"]
        );
        assert!(notes(Some(&complete), &complete, &done).is_empty());
        // A new resource (every pod born at the target) completes without events.
        let fresh = rollout_status(None, NEW, &done, &at(5));
        assert_eq!(fresh.started_at, None);
        assert!(notes(None, &fresh, &done).is_empty());
        // A stall warns once.
        let mut bad = two.clone();
        bad[2].ready = false;
        bad[2].age_seconds = 700;
        let stalled_plan = plan(&input(&bad, Some("db-0")));
        let stalled = rollout_status(Some(&next), NEW, &stalled_plan, &at(40));
        assert_eq!(stalled.phase, STALLED);
        assert!(stalled.message.starts_with("pod db-2: not Ready"));
        let n = notes(Some(&next), &stalled, &stalled_plan);
        assert_eq!(reasons(&n), ["RolloutStalled"]);
        assert!(n[0].warning);
        assert!(notes(Some(&stalled), &stalled, &stalled_plan).is_empty());
    }

    #[test]
    fn pod_state_reads_revision_readiness_restarts_and_the_census() {
        use crate::crd::CensusMember;
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "db-1",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"controller-revision-hash": "db-new"}
            },
            "status": {
                "podIP": "10.0.0.2",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "habitat", "image": "x", "imageID": "", "ready": true,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
                }]
            }
        }))
        .unwrap();
        let created = Timestamp::from_second(1_767_225_600).unwrap();
        let census = |observed: i64, ip: &str| CensusStatus {
            members: vec![CensusMember {
                member_id: "a".repeat(32),
                pod: Some("db-1".into()),
                ip: Some(ip.into()),
                health: Some("Alive".into()),
                ..CensusMember::default()
            }],
            observed_at: Some(Time(
                Timestamp::from_second(created.as_second() + observed).unwrap(),
            )),
            ..CensusStatus::default()
        };
        let now = Time(Timestamp::from_second(created.as_second() + 30).unwrap());
        let state = pod_state("db", &pod, Some(&census(5, "10.0.0.2")), None, &now).unwrap();
        assert_eq!(state.ordinal, 1);
        assert_eq!(state.revision.as_deref(), Some("db-new"));
        assert!(state.ready && state.alive_in_ring);
        assert_eq!((state.restarts, state.age_seconds), (2, 30));
        assert_eq!(state.waiting.unwrap().0, "CrashLoopBackOff");
        // A census from before the pod, or naming another IP, is its predecessor's.
        for stale in [census(-5, "10.0.0.2"), census(5, "10.0.0.9")] {
            let state = pod_state("db", &pod, Some(&stale), None, &now).unwrap();
            assert!(!state.alive_in_ring);
        }
        assert_eq!(ordinal("db", "db-12"), Some(12));
        assert_eq!(ordinal("db", "dbx-1"), None);
        assert_eq!(ordinal("db", "db-"), None);
    }
}
