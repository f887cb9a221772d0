//! Update strategies as decisions without I/O: when to poll the depot (period with jitter, time
//! passed in), whether a release is newer, and what one member does next (`Updater::decide`):
//! at-once installs the channel's newest release as soon as it is seen; rolling follows the
//! target the group's update leader announces, one member at a time in the census's roll order
//! (`CensusGroup::roll`), and a member whose health check turns critical on the new release
//! marks it failed (which stops the roll for everyone) and rolls back to the release it ran.
//!
//! Invariants: at most one install is in flight per member; a release this member failed on is
//! never installed again by it; nothing here sleeps, reads a clock or touches a file.

use std::time::{Duration, Instant};

use super::UpdateStrategy;
use crate::census::{release_at_least, CensusGroup, Roll};
use crate::gossip::member::MemberId;
use crate::gossip::rumor::CheckHealth;
use crate::package::{compare_versions, PackageIdent};

/// Seconds between depot polls when none is named (`--update-period`).
pub const DEFAULT_UPDATE_PERIOD: Duration = Duration::from_secs(60);
/// Each wait is the period +- this share, so a fleet started together does not poll together.
pub const PERIOD_JITTER: f64 = 0.1;

/// How a service follows new releases, as its spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateSettings {
    pub strategy: UpdateStrategy,
    pub channel: String,
    /// The depot (`file:///dir` or `http://host:port`); required unless the strategy is none.
    pub url: Option<String>,
    pub period: Duration,
}

impl UpdateSettings {
    /// Why these settings cannot work, naming the flag to give.
    pub fn problem(&self) -> Option<String> {
        (self.strategy != UpdateStrategy::None && self.url.as_deref().is_none_or(str::is_empty))
            .then(|| {
                format!(
                    "--strategy {} needs a depot to update from: give --url URL (or set \
                     HAB_BLDR_URL)",
                    self.strategy
                )
            })
    }
}

/// `period` +- `PERIOD_JITTER`, with `unit` drawn uniformly from [0, 1).
pub fn jittered(period: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    period.mul_f64(1.0 - PERIOD_JITTER + 2.0 * PERIOD_JITTER * unit)
}

/// Whether `candidate` is a later release of `running`'s package (version, then release).
pub fn is_newer(candidate: &PackageIdent, running: &PackageIdent) -> bool {
    if (&candidate.origin, &candidate.name) != (&running.origin, &running.name) {
        return false;
    }
    let version = match (&candidate.version, &running.version) {
        (Some(a), Some(b)) => compare_versions(a, b),
        _ => return false,
    };
    version
        .then_with(|| candidate.release.cmp(&running.release))
        .is_gt()
}

/// When the depot is polled next.
#[derive(Clone, Debug)]
pub struct PollClock {
    period: Duration,
    next: Instant,
}

impl PollClock {
    /// The first poll is due at once: a supervisor that starts behind catches up.
    pub fn new(now: Instant, period: Duration) -> PollClock {
        PollClock { period, next: now }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    pub fn next(&self) -> Instant {
        self.next
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// A poll was made at `now`: the next one is a jittered period later.
    pub fn polled(&mut self, now: Instant, unit: f64) {
        self.next = now + jittered(self.period, unit);
    }

    /// A new period applies from the next wait on (and shortens the current one).
    pub fn set_period(&mut self, now: Instant, period: Duration, unit: f64) {
        self.period = period;
        self.next = self.next.min(now + jittered(period, unit));
    }
}

/// What a member's updater asks the supervisor to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Install this release and restart the service into it.
    Update(String),
    /// Tell the group this release is the target of the roll (the update leader only).
    Announce(String),
    /// The health check failed on `failed`: tell the group, and restart into `to`.
    RollBack { failed: String, to: String },
}

/// After a restart into a new release, until its health check says how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Probation {
    from: String,
    to: String,
    /// When this member was first seen running `to`.
    since: Option<Instant>,
}

/// One member's update state for one service.
#[derive(Clone, Debug, Default)]
pub struct Updater {
    /// The newest release the last poll found in the channel.
    latest: Option<String>,
    /// A release being fetched and installed.
    installing: Option<String>,
    /// A release whose install failed: not tried again before the next poll.
    blocked: Option<String>,
    probation: Option<Probation>,
    /// The release this member failed on (rolled back from).
    failed: Option<String>,
}

/// What the updater sees of its own service and group when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub me: MemberId,
    /// The release the service runs (fully qualified).
    pub running: &'a str,
    /// Its health check on that release.
    pub health: CheckHealth,
    /// The service's group in the census (rolling); `None` before its rumor came back.
    pub group: Option<&'a CensusGroup>,
    pub now: Instant,
    /// How long a new release may take to pass its first health check before it counts as
    /// failed.
    pub probation: Duration,
}

impl Updater {
    /// The release this member failed on, for its update rumor.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn installing(&self) -> Option<&str> {
        self.installing.as_deref()
    }

    /// The poll's answer: the channel's newest release, if it has one.
    pub fn on_latest(&mut self, latest: Option<String>) {
        self.latest = latest;
        self.blocked = None;
    }

    /// The supervisor started installing `release`.
    pub fn on_installing(&mut self, release: &str) {
        self.installing = Some(release.to_string());
    }

    /// `to` is installed and the service restarts into it from `from`.
    pub fn on_installed(&mut self, from: &str, to: &str) {
        self.installing = None;
        self.probation = Some(Probation {
            from: from.to_string(),
            to: to.to_string(),
            since: None,
        });
    }

    /// Installing `release` failed: tried again after the next poll.
    pub fn on_install_failed(&mut self, release: &str) {
        self.installing = None;
        self.blocked = Some(release.to_string());
    }

    /// What to do now, in order. An `Update` or `RollBack` must be followed by
    /// `on_installing` / a restart before the next call, or it is asked again.
    pub fn decide(&mut self, strategy: UpdateStrategy, seen: Seen<'_>) -> Vec<Action> {
        if strategy == UpdateStrategy::None || self.installing.is_some() {
            return Vec::new();
        }
        if let Some(probation) = &mut self.probation {
            if seen.running != probation.to {
                // The restart has not happened yet.
                return Vec::new();
            }
            let since = *probation.since.get_or_insert(seen.now);
            // A release that never passes (a crash loop, a hanging check) fails too, or the
            // roll would wait for it for ever.
            let overdue = seen.now.saturating_duration_since(since) >= seen.probation;
            if seen.health.passing() {
                self.probation = None;
            } else if seen.health == CheckHealth::Critical || overdue {
                let failed = probation.to.clone();
                let to = probation.from.clone();
                self.probation = None;
                self.failed = Some(failed.clone());
                return vec![Action::RollBack { failed, to }];
            } else {
                return Vec::new();
            }
        }
        let wanted = |release: &str, this: &Updater| {
            this.failed.as_deref() != Some(release)
                && this.blocked.as_deref() != Some(release)
                && newer_text(release, seen.running)
        };
        match strategy {
            UpdateStrategy::None => Vec::new(),
            UpdateStrategy::AtOnce => self
                .latest
                .clone()
                .filter(|latest| wanted(latest, self))
                .map(Action::Update)
                .into_iter()
                .collect(),
            UpdateStrategy::Rolling => {
                let Some(group) = seen.group else {
                    return Vec::new();
                };
                let mut actions = Vec::new();
                let target = group.update_target();
                if group.update_leader_id == Some(seen.me) {
                    if let Some(latest) = &self.latest {
                        if target.is_none_or(|t| newer_text(latest, t)) {
                            actions.push(Action::Announce(latest.clone()));
                            // The roll follows once the announcement is in the census.
                            return actions;
                        }
                    }
                }
                if let Some(target) = target {
                    let my_turn = group.roll(target) == Roll::Rolling { member: seen.me };
                    if my_turn && !release_at_least(seen.running, target) && wanted(target, self) {
                        actions.push(Action::Update(target.to_string()));
                    }
                }
                actions
            }
        }
    }
}

/// `is_newer` over ident text; text that is not an ident is never newer.
fn newer_text(candidate: &str, running: &str) -> bool {
    match (candidate.parse(), running.parse()) {
        (Ok(c), Ok(r)) => is_newer(&c, &r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::census::{CensusMember, MemberUpdate};
    use crate::gossip::member::Health;
    use crate::gossip::rumor::{ServiceGroup, SysInfo};

    const V1: &str = "core/web/1.0.0/20260101000000";
    const V2: &str = "core/web/1.1.0/20260102000000";
    const V3: &str = "core/web/1.2.0/20260103000000";

    fn id(n: u8) -> MemberId {
        MemberId([n; 16])
    }

    const PROBATION: Duration = Duration::from_secs(60);

    /// A simulated group: member n runs `packages[n-1]`, with health `ok` on it; member
    /// `leader` is the application leader, `update_leader` announces `target`.
    struct Sim {
        group: CensusGroup,
        /// The simulated clock.
        now: Instant,
    }

    impl Sim {
        fn new(n: u8, leader: Option<u8>, update_leader: u8, target: Option<&str>) -> Sim {
            let mut group = CensusGroup::empty(ServiceGroup::parse("web.default").unwrap(), id(1));
            for i in 1..=n {
                group.members.push(CensusMember::new(
                    id(i),
                    V1,
                    toml::Table::new(),
                    SysInfo::default(),
                ));
                group.updates.insert(
                    id(i),
                    MemberUpdate {
                        package: V1.to_string(),
                        health: CheckHealth::Ok,
                        target: None,
                        failed: None,
                    },
                );
            }
            group.leader_id = leader.map(id);
            group.update_leader_id = Some(id(update_leader));
            group.updates.get_mut(&id(update_leader)).unwrap().target = target.map(String::from);
            Sim {
                group,
                now: Instant::now(),
            }
        }

        fn run(&mut self, n: u8, package: &str, health: CheckHealth) {
            let m = self
                .group
                .members
                .iter_mut()
                .find(|m| m.member_id == id(n))
                .unwrap();
            m.package = package.to_string();
            let u = self.group.updates.get_mut(&id(n)).unwrap();
            u.package = package.to_string();
            u.health = health;
        }

        fn seen(&self, n: u8) -> Seen<'_> {
            let m = self.group.member(id(n)).unwrap();
            Seen {
                me: id(n),
                running: &m.package,
                health: self.group.health_check(m),
                group: Some(&self.group),
                now: self.now,
                probation: PROBATION,
            }
        }
    }

    #[test]
    fn the_period_defaults_to_a_minute_and_each_wait_is_jittered_by_ten_percent() {
        assert_eq!(DEFAULT_UPDATE_PERIOD, Duration::from_secs(60));
        let p = DEFAULT_UPDATE_PERIOD;
        assert_eq!(jittered(p, 0.0), Duration::from_secs(54));
        assert_eq!(jittered(p, 0.5), Duration::from_secs(60));
        assert!(jittered(p, 0.999_999) <= Duration::from_secs(66));
        assert_eq!(jittered(p, f64::NAN), p);

        let start = Instant::now();
        let mut clock = PollClock::new(start, p);
        assert!(clock.due(start), "the first poll is at once");
        clock.polled(start, 0.0);
        assert!(!clock.due(start + Duration::from_secs(53)));
        assert!(clock.due(start + Duration::from_secs(54)));
        clock.polled(start + Duration::from_secs(54), 1.0);
        assert_eq!(clock.next(), start + Duration::from_secs(54 + 66));
        clock.set_period(start + Duration::from_secs(60), Duration::from_secs(1), 0.5);
        assert_eq!(clock.next(), start + Duration::from_secs(61));
    }

    #[test]
    fn a_strategy_other_than_none_needs_a_url_and_the_error_names_the_flag() {
        let mut s = UpdateSettings {
            strategy: UpdateStrategy::Rolling,
            channel: "stable".into(),
            url: None,
            period: DEFAULT_UPDATE_PERIOD,
        };
        assert!(s.problem().unwrap().contains("--url"));
        s.url = Some("file:///depot".into());
        assert_eq!(s.problem(), None);
        s.url = None;
        s.strategy = UpdateStrategy::None;
        assert_eq!(s.problem(), None);
    }

    #[test]
    fn newer_means_a_later_version_then_a_later_release_of_the_same_package() {
        let p = |s: &str| s.parse::<PackageIdent>().unwrap();
        assert!(is_newer(&p(V2), &p(V1)));
        assert!(!is_newer(&p(V1), &p(V2)));
        assert!(!is_newer(&p(V1), &p(V1)));
        assert!(is_newer(&p("core/web/1.10.0/1"), &p("core/web/1.9.0/2")));
        assert!(is_newer(&p("core/web/1.0.0/2"), &p("core/web/1.0.0/1")));
        assert!(!is_newer(&p("core/other/2.0.0/1"), &p(V1)));
    }

    #[test]
    fn at_once_installs_the_newest_release_as_soon_as_a_poll_sees_it() {
        let mut u = Updater::default();
        let seen = Seen {
            me: id(1),
            running: V1,
            health: CheckHealth::Ok,
            group: None,
            now: Instant::now(),
            probation: PROBATION,
        };
        assert!(u.decide(UpdateStrategy::AtOnce, seen).is_empty());
        u.on_latest(Some(V1.into()));
        assert!(u.decide(UpdateStrategy::AtOnce, seen).is_empty());
        u.on_latest(Some(V2.into()));
        assert_eq!(u.decide(UpdateStrategy::None, seen), []);
        assert_eq!(
            u.decide(UpdateStrategy::AtOnce, seen),
            [Action::Update(V2.into())]
        );
        u.on_installing(V2);
        assert!(
            u.decide(UpdateStrategy::AtOnce, seen).is_empty(),
            "one install at a time"
        );
        u.on_install_failed(V2);
        assert!(
            u.decide(UpdateStrategy::AtOnce, seen).is_empty(),
            "not before the next poll"
        );
        u.on_latest(Some(V2.into()));
        assert_eq!(
            u.decide(UpdateStrategy::AtOnce, seen),
            [Action::Update(V2.into())]
        );
        u.on_installed(V1, V2);
        let now = Seen {
            running: V2,
            ..seen
        };
        assert!(u.decide(UpdateStrategy::AtOnce, now).is_empty());
    }

    #[test]
    fn the_update_leader_announces_a_newer_release_once() {
        let mut sim = Sim::new(3, None, 2, None);
        let mut leader = Updater::default();
        leader.on_latest(Some(V2.into()));
        assert_eq!(
            leader.decide(UpdateStrategy::Rolling, sim.seen(2)),
            [Action::Announce(V2.into())]
        );
        let mut follower = Updater::default();
        follower.on_latest(Some(V2.into()));
        assert!(
            follower
                .decide(UpdateStrategy::Rolling, sim.seen(3))
                .is_empty(),
            "only the update leader announces, and nobody moves before it did"
        );
        sim.group.updates.get_mut(&id(2)).unwrap().target = Some(V2.into());
        leader.on_latest(Some(V2.into()));
        assert_ne!(
            leader.decide(UpdateStrategy::Rolling, sim.seen(2)).first(),
            Some(&Action::Announce(V2.into()))
        );
    }

    /// Drives a whole roll: at each step every member decides; each `Update` is applied (the
    /// member runs the target with health unknown), then its health check passes. Records who
    /// updates when, and checks nobody else moved while one was not yet healthy.
    #[test]
    fn rolling_updates_one_member_at_a_time_in_id_order_with_the_leader_last() {
        // Member 2 leads the application; member 3 leads the update election.
        let mut sim = Sim::new(4, Some(2), 3, Some(V2));
        let mut updaters: Vec<Updater> = (0..4).map(|_| Updater::default()).collect();
        let mut order = Vec::new();
        for _ in 0..20 {
            let mut moved = Vec::new();
            for n in 1..=4u8 {
                let actions =
                    updaters[usize::from(n - 1)].decide(UpdateStrategy::Rolling, sim.seen(n));
                for action in actions {
                    match action {
                        Action::Update(to) => {
                            assert_eq!(to, V2);
                            moved.push(n);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            assert!(moved.len() <= 1, "two members updating at once: {moved:?}");
            let Some(&n) = moved.first() else { break };
            order.push(n);
            updaters[usize::from(n - 1)].on_installed(V1, V2);
            sim.run(n, V2, CheckHealth::Unknown);
            // Nobody moves while the updated member's check has not passed.
            for m in 1..=4u8 {
                assert!(updaters[usize::from(m - 1)]
                    .decide(UpdateStrategy::Rolling, sim.seen(m))
                    .is_empty());
            }
            sim.run(n, V2, CheckHealth::Ok);
        }
        assert_eq!(
            order,
            [1, 3, 4, 2],
            "member id order, the application leader last"
        );
        assert_eq!(sim.group.roll(V2), Roll::Done);
    }

    #[test]
    fn a_release_that_never_passes_its_health_check_fails_after_the_probation() {
        let mut sim = Sim::new(2, None, 2, Some(V2));
        let mut u1 = Updater::default();
        assert_eq!(
            u1.decide(UpdateStrategy::Rolling, sim.seen(1)),
            [Action::Update(V2.into())]
        );
        u1.on_installed(V1, V2);
        sim.run(1, V2, CheckHealth::Unknown);
        assert!(u1.decide(UpdateStrategy::Rolling, sim.seen(1)).is_empty());
        sim.now += PROBATION - Duration::from_secs(1);
        assert!(u1.decide(UpdateStrategy::Rolling, sim.seen(1)).is_empty());
        sim.now += Duration::from_secs(1);
        assert_eq!(
            u1.decide(UpdateStrategy::Rolling, sim.seen(1)),
            [Action::RollBack {
                failed: V2.into(),
                to: V1.into()
            }]
        );
    }

    #[test]
    fn a_dead_member_is_skipped_and_a_departed_one_too() {
        let mut sim = Sim::new(3, None, 3, Some(V2));
        sim.group.members[0].health = Health::Confirmed;
        let mut u2 = Updater::default();
        assert_eq!(
            u2.decide(UpdateStrategy::Rolling, sim.seen(2)),
            [Action::Update(V2.into())]
        );
        sim.group.members[0].health = Health::Suspect;
        assert!(
            u2.decide(UpdateStrategy::Rolling, sim.seen(2)).is_empty(),
            "a suspect may still answer: waited for"
        );
        sim.group.members[0].health = Health::Departed;
        sim.run(2, V2, CheckHealth::Ok);
        assert_eq!(sim.group.roll(V2), Roll::Rolling { member: id(3) });
    }

    #[test]
    fn a_failed_health_check_rolls_the_member_back_and_stops_the_roll_until_a_newer_target() {
        let mut sim = Sim::new(3, None, 3, Some(V2));
        let mut u1 = Updater::default();
        assert_eq!(
            u1.decide(UpdateStrategy::Rolling, sim.seen(1)),
            [Action::Update(V2.into())]
        );
        u1.on_installing(V2);
        u1.on_installed(V1, V2);
        sim.run(1, V2, CheckHealth::Unknown);
        assert!(u1.decide(UpdateStrategy::Rolling, sim.seen(1)).is_empty());
        sim.run(1, V2, CheckHealth::Critical);
        assert_eq!(
            u1.decide(UpdateStrategy::Rolling, sim.seen(1)),
            [Action::RollBack {
                failed: V2.into(),
                to: V1.into()
            }]
        );
        assert_eq!(u1.failed(), Some(V2));
        // The member publishes its failure and runs V1 again.
        sim.group.updates.get_mut(&id(1)).unwrap().failed = Some(V2.into());
        sim.run(1, V1, CheckHealth::Ok);
        assert_eq!(sim.group.roll(V2), Roll::Failed { member: id(1) });
        let doc = sim.group.update_doc().unwrap();
        assert_eq!(
            (doc.status.as_str(), doc.member),
            ("failed", Some(id(1).to_string()))
        );
        for n in 1..=3u8 {
            let mut u = if n == 1 {
                u1.clone()
            } else {
                Updater::default()
            };
            assert!(
                u.decide(UpdateStrategy::Rolling, sim.seen(n)).is_empty(),
                "member {n} moved after the failure"
            );
        }
        // A newer release starts a new roll, from the first member again.
        sim.group.updates.get_mut(&id(3)).unwrap().target = Some(V3.into());
        assert_eq!(sim.group.roll(V3), Roll::Rolling { member: id(1) });
        assert_eq!(
            u1.decide(UpdateStrategy::Rolling, sim.seen(1)),
            [Action::Update(V3.into())]
        );
    }
}
