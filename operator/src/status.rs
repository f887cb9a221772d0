//! The resource's status as a pure function of the resource, its StatefulSet and the outcome
//! of the last apply: `observedGeneration`, `replicas`, `readyReplicas`, `selector` and the
//! conditions `Ready`, `Progressing` and `Degraded`, each with a reason. Degraded also
//! follows what the census stream wrote (`status.census`, `status.applied`): a failed apply
//! first, then config the ring refused, then the census (no quorum, a dead member).
//! `census` and `applied` are the census stream's to write: carried over here only so that
//! an unchanged status compares equal (`for_patch` leaves them out).
//!
//! A condition's `lastTransitionTime` only moves when its status changes, so a status that
//! did not change serializes identically and the operator need not write it.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::build::selector_string;
use crate::census::census_problem;
use crate::crd::{Habitat, HabitatStatus, RolloutStatus};
use crate::rollout;

/// Condition types, in the order they appear in the status.
pub const READY: &str = "Ready";
/// The StatefulSet is creating, scaling or rolling pods.
pub const PROGRESSING: &str = "Progressing";
/// The last apply failed.
pub const DEGRADED: &str = "Degraded";

/// What the controller saw when it applied the resource.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// Children applied; this is the StatefulSet the API server returned (None if paused
    /// before one was ever created).
    Applied(Option<&'a StatefulSet>),
    /// `spec.paused`: children left alone; the StatefulSet as it is, if any.
    Paused(Option<&'a StatefulSet>),
    /// Applying failed with this reason (`Error::reason`) and message; the StatefulSet as
    /// last seen, if any.
    Failed(&'static str, &'a str, Option<&'a StatefulSet>),
}

struct Cond {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

/// The status to write for `hab` after `outcome`, at time `now`. `ring_key_seen` names the
/// generated ring key Secret if this reconcile saw it exist; once recorded it stays recorded.
/// The rollout's progress is carried over as the status has it.
pub fn desired_status(
    hab: &Habitat,
    outcome: Outcome<'_>,
    ring_key_seen: Option<&str>,
    now: &Time,
) -> HabitatStatus {
    let rollout = hab.status.as_ref().and_then(|s| s.rollout.clone());
    desired_status_with_rollout(hab, outcome, ring_key_seen, rollout, now)
}

/// `desired_status` with `rollout` as the rollout's progress (`rollout::rollout_status`): a
/// stalled rollout is Degraded (reason RolloutStalled, naming the pod and why) and not
/// Progressing.
pub fn desired_status_with_rollout(
    hab: &Habitat,
    outcome: Outcome<'_>,
    ring_key_seen: Option<&str>,
    rollout: Option<RolloutStatus>,
    now: &Time,
) -> HabitatStatus {
    let stalled = rollout
        .as_ref()
        .filter(|r| r.phase == rollout::STALLED)
        .map(|r| r.message.clone());
    let rolling = rollout
        .as_ref()
        .filter(|r| r.phase == rollout::PROGRESSING && r.updated < r.total)
        .map(|r| format!("{} of {} pods updated: {}", r.updated, r.total, r.message));
    let generation = hab.metadata.generation;
    let count = hab.spec.count;
    let (sts, failure, paused) = match outcome {
        Outcome::Applied(sts) => (sts, None, false),
        Outcome::Paused(sts) => (sts, None, true),
        Outcome::Failed(reason, message, sts) => (sts, Some((reason, message)), false),
    };
    let sts_status = sts.and_then(|s| s.status.clone()).unwrap_or_default();
    let replicas = sts_status.replicas;
    let ready = sts_status.ready_replicas.unwrap_or(0);
    let updated = sts_status.updated_replicas.unwrap_or(0);
    let sts_generation = sts.and_then(|s| s.metadata.generation);
    let observed = sts_status.observed_generation;
    let desired = sts
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(count);

    let progressing = if let (Some(message), false) = (&stalled, paused) {
        Cond {
            type_: PROGRESSING,
            status: false,
            reason: "RolloutStalled",
            message: message.clone(),
        }
    } else if paused {
        Cond {
            type_: PROGRESSING,
            status: false,
            reason: "Paused",
            message: "spec.paused is true: the operator leaves the children alone".to_owned(),
        }
    } else if sts.is_none() {
        Cond {
            type_: PROGRESSING,
            status: true,
            reason: "Creating",
            message: "creating the StatefulSet".to_owned(),
        }
    } else if observed.is_none() || observed < sts_generation {
        Cond {
            type_: PROGRESSING,
            status: true,
            reason: "Updating",
            message: "the StatefulSet controller has not yet seen the latest spec".to_owned(),
        }
    } else if replicas != desired {
        Cond {
            type_: PROGRESSING,
            status: true,
            reason: "Scaling",
            message: format!("{replicas} of {desired} pods exist"),
        }
    } else if updated < desired
        || sts_status.update_revision.is_some()
            && sts_status.current_revision != sts_status.update_revision
    {
        Cond {
            type_: PROGRESSING,
            status: true,
            reason: "RollingUpdate",
            message: rolling.unwrap_or_else(|| format!("{updated} of {desired} pods updated")),
        }
    } else {
        Cond {
            type_: PROGRESSING,
            status: false,
            reason: "Stable",
            message: format!("{desired} pods at the current revision"),
        }
    };

    let ready_cond = if ready >= count && sts.is_some() {
        Cond {
            type_: READY,
            status: true,
            reason: "MembersReady",
            message: format!("{ready}/{count} members ready"),
        }
    } else {
        Cond {
            type_: READY,
            status: false,
            reason: "MembersNotReady",
            message: format!("{ready}/{count} members ready"),
        }
    };

    let previous = hab.status.as_ref();
    let not_applied = previous
        .and_then(|s| s.applied.as_ref())
        .and_then(|a| a.error.clone())
        .map(|message| ("ConfigNotApplied", message));
    let ring_problem = previous
        .and_then(|s| s.census.as_ref())
        .and_then(census_problem);
    let degraded = match failure
        .map(|(reason, message)| (reason, message.to_owned()))
        .or(stalled.map(|message| ("RolloutStalled", message)))
        .or(not_applied)
        .or(ring_problem)
    {
        Some((reason, message)) => Cond {
            type_: DEGRADED,
            status: true,
            reason,
            message,
        },
        None => Cond {
            type_: DEGRADED,
            status: false,
            reason: "AsExpected",
            message: "children applied".to_owned(),
        },
    };

    let conditions = [ready_cond, progressing, degraded]
        .into_iter()
        .map(|c| condition(c, previous, generation, now))
        .collect();

    HabitatStatus {
        // A failed apply has not brought the children to this generation yet.
        observed_generation: if failure.is_some() {
            previous.and_then(|s| s.observed_generation)
        } else {
            generation
        },
        conditions,
        replicas,
        ready_replicas: ready,
        selector: Some(selector_string(hab)),
        census: previous.and_then(|s| s.census.clone()),
        applied: previous.and_then(|s| s.applied.clone()),
        ring_key_secret: ring_key_seen
            .map(str::to_owned)
            .or_else(|| previous.and_then(|s| s.ring_key_secret.clone())),
        rollout,
    }
}

fn condition(
    c: Cond,
    previous: Option<&HabitatStatus>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if c.status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|old| old.type_ == c.type_))
        .filter(|old| old.status == status)
        .map(|old| old.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: c.type_.to_owned(),
        status,
        reason: c.reason.to_owned(),
        message: c.message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Whether the status of `hab` already says what `desired` says.
pub fn is_current(hab: &Habitat, desired: &HabitatStatus) -> bool {
    hab.status.as_ref() == Some(desired)
}

/// `status` as the reconciler applies it: without the census stream's fields, which it
/// neither owns nor may overwrite with what it read earlier.
pub fn for_patch(status: &HabitatStatus) -> HabitatStatus {
    HabitatStatus {
        census: None,
        applied: None,
        ..status.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn sts(replicas: i32, ready: i32, updated: i32) -> StatefulSet {
        let mut sts = StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                replicas,
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                current_revision: Some("r1".into()),
                update_revision: Some("r1".into()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        };
        sts.metadata.generation = Some(1);
        sts
    }

    fn get<'a>(status: &'a HabitatStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn all_pods_ready_means_ready_and_stable() {
        let hab = Habitat::test("web").count(3);
        let sts = sts(3, 3, 3);
        let status = desired_status(&hab, Outcome::Applied(Some(&sts)), None, &at(10));
        assert_eq!(get(&status, READY).status, "True");
        assert_eq!(get(&status, PROGRESSING).reason, "Stable");
        assert_eq!(get(&status, DEGRADED).status, "False");
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!((status.replicas, status.ready_replicas), (3, 3));
        assert_eq!(status.selector.as_deref(), Some("habitat.sh/habitat=web"));
    }

    #[test]
    fn a_new_resource_is_progressing_and_not_ready() {
        let hab = Habitat::test("web");
        let status = desired_status(&hab, Outcome::Applied(None), None, &at(10));
        assert_eq!(get(&status, READY).reason, "MembersNotReady");
        assert_eq!(get(&status, PROGRESSING).reason, "Creating");
    }

    #[test]
    fn missing_pods_mean_scaling_and_old_pods_mean_rolling() {
        let hab = Habitat::test("web").count(3);
        let scaling = desired_status(&hab, Outcome::Applied(Some(&sts(3, 1, 1))), None, &at(1));
        assert_eq!(get(&scaling, PROGRESSING).reason, "RollingUpdate");
        let mut fewer = sts(3, 2, 2);
        fewer.status.as_mut().unwrap().replicas = 2;
        let status = desired_status(&hab, Outcome::Applied(Some(&fewer)), None, &at(1));
        assert_eq!(get(&status, PROGRESSING).reason, "Scaling");
        assert_eq!(get(&status, READY).message, "2/3 members ready");
    }

    #[test]
    fn a_failed_apply_is_degraded_and_keeps_the_observed_generation() {
        let mut hab = Habitat::test("web").generation(2);
        hab.status = Some(HabitatStatus {
            observed_generation: Some(1),
            ..HabitatStatus::default()
        });
        let status = desired_status(
            &hab,
            Outcome::Failed("ApplyFailed", "apply StatefulSet: boom", None),
            None,
            &at(1),
        );
        let degraded = get(&status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ApplyFailed")
        );
        assert_eq!(degraded.message, "apply StatefulSet: boom");
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn a_ring_key_once_seen_stays_recorded() {
        let mut hab = Habitat::test("web").ring_key("prod-20260101000000");
        let seen = desired_status(
            &hab,
            Outcome::Applied(None),
            Some("prod-20260101000000"),
            &at(1),
        );
        assert_eq!(seen.ring_key_secret.as_deref(), Some("prod-20260101000000"));
        hab.status = Some(seen);
        let failed = desired_status(
            &hab,
            Outcome::Failed("RingKeyMissing", "gone", None),
            None,
            &at(2),
        );
        assert_eq!(
            failed.ring_key_secret.as_deref(),
            Some("prod-20260101000000")
        );
        assert_eq!(get(&failed, DEGRADED).reason, "RingKeyMissing");
    }

    fn with_census(hab: &mut Habitat, health: &str) {
        use crate::crd::{CensusMember, CensusStatus};
        hab.status = Some(HabitatStatus {
            census: Some(CensusStatus {
                election_status: Some("ElectionFinished".into()),
                members: vec![CensusMember {
                    member_id: "ab".repeat(16),
                    pod: Some("web-1".into()),
                    health: Some(health.into()),
                    ..CensusMember::default()
                }],
                ..CensusStatus::default()
            }),
            ..HabitatStatus::default()
        });
    }

    #[test]
    fn a_member_confirmed_dead_makes_the_resource_degraded_until_it_is_back() {
        let mut hab = Habitat::test("web").leader();
        let sts = sts(1, 1, 1);
        with_census(&mut hab, "Confirmed");
        let status = desired_status(&hab, Outcome::Applied(Some(&sts)), None, &at(1));
        let degraded = get(&status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "MemberDead")
        );
        assert!(
            degraded.message.contains("pod web-1"),
            "{}",
            degraded.message
        );
        with_census(&mut hab, "Alive");
        let status = desired_status(&hab, Outcome::Applied(Some(&sts)), None, &at(2));
        assert_eq!(get(&status, DEGRADED).reason, "AsExpected");
    }

    #[test]
    fn config_the_ring_refused_is_degraded_and_an_apply_failure_comes_first() {
        let mut hab = Habitat::test("web");
        with_census(&mut hab, "Confirmed");
        hab.status.as_mut().unwrap().applied = Some(crate::crd::AppliedStatus {
            error: Some("config at incarnation 3 through web-0: refused".into()),
            ..Default::default()
        });
        let status = desired_status(&hab, Outcome::Applied(None), None, &at(1));
        assert_eq!(get(&status, DEGRADED).reason, "ConfigNotApplied");
        let failed = desired_status(
            &hab,
            Outcome::Failed("InvalidConfig", "line 1, column 3", None),
            None,
            &at(1),
        );
        assert_eq!(get(&failed, DEGRADED).reason, "InvalidConfig");
    }

    #[test]
    fn the_reconciler_never_patches_the_census_streams_fields() {
        let mut hab = Habitat::test("web");
        with_census(&mut hab, "Alive");
        let status = desired_status(&hab, Outcome::Applied(None), None, &at(1));
        assert!(status.census.is_some());
        let patch = for_patch(&status);
        assert!(patch.census.is_none() && patch.applied.is_none());
        assert_eq!(patch.conditions, status.conditions);
    }

    #[test]
    fn a_stalled_rollout_is_degraded_and_not_progressing_and_a_rolling_one_says_how_far() {
        let hab = Habitat::test("db").count(3);
        let sts = sts(3, 2, 1);
        let stalled = RolloutStatus {
            target_revision: "db-2".into(),
            updated: 1,
            total: 3,
            phase: rollout::STALLED.into(),
            message: "pod db-2: not Ready after 600 s".into(),
            started_at: None,
        };
        let status = desired_status_with_rollout(
            &hab,
            Outcome::Applied(Some(&sts)),
            None,
            Some(stalled.clone()),
            &at(1),
        );
        let degraded = get(&status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "RolloutStalled")
        );
        assert_eq!(degraded.message, "pod db-2: not Ready after 600 s");
        let progressing = get(&status, PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "RolloutStalled")
        );
        assert_eq!(status.rollout.as_ref(), Some(&stalled));
        // Carried over by a reconcile that does not look at the rollout.
        let mut later = hab.clone();
        later.status = Some(status);
        let carried = desired_status(&later, Outcome::Paused(Some(&sts)), None, &at(2));
        assert_eq!(carried.rollout, Some(stalled.clone()));
        let rolling = RolloutStatus {
            phase: rollout::PROGRESSING.into(),
            message: "replacing db-1 (follower)".into(),
            ..stalled
        };
        let status = desired_status_with_rollout(
            &hab,
            Outcome::Applied(Some(&sts)),
            None,
            Some(rolling),
            &at(1),
        );
        assert_eq!(
            get(&status, PROGRESSING).message,
            "1 of 3 pods updated: replacing db-1 (follower)"
        );
        assert_eq!(get(&status, DEGRADED).status, "False");
    }

    #[test]
    fn a_paused_resource_says_so() {
        let hab = Habitat::test("web").paused();
        let status = desired_status(&hab, Outcome::Paused(None), None, &at(1));
        assert_eq!(get(&status, PROGRESSING).reason, "Paused");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut hab = Habitat::test("web");
        let sts = sts(1, 1, 1);
        let first = desired_status(&hab, Outcome::Applied(Some(&sts)), None, &at(100));
        hab.status = Some(first.clone());
        let again = desired_status(&hab, Outcome::Applied(Some(&sts)), None, &at(200));
        assert_eq!(first, again);
        assert!(is_current(&hab, &again));
        let failed = desired_status(
            &hab,
            Outcome::Failed("ApplyFailed", "x", Some(&sts)),
            None,
            &at(300),
        );
        assert_eq!(get(&failed, DEGRADED).last_transition_time, at(300));
        assert_eq!(get(&failed, READY).last_transition_time, at(100));
    }
}
