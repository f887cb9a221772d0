//! Leader (and update) elections over the group's election rumor: a pure engine per member and
//! service group. Inputs: the ring's members with health, the rumor store and `now`; outputs:
//! the rumor to publish (a vote, a candidacy, a Finished declaration) and an `ElectionView`.
//!
//! Invariants: every term belongs to exactly one candidate (its low 32 bits are the candidate's
//! tag), and only that candidate declares it Finished, so one term never has two leaders even
//! though the rumor merge moves votes to the better candidate of a term; a member that does not
//! see quorum (up members > half of the electorate) never nominates, votes nor declares.
//!
//! A candidate or leader that stops (unload, shutdown) resigns: it publishes a rumor in a new
//! term of its own with status `NoQuorum` ("withdrawn"), which nobody votes for or obeys, so
//! the others elect a successor at once instead of waiting for failure detection. The finished
//! term (`ElectionView::term` while `Finished`) is the leader's fencing token, exported to hooks
//! as the environment variable `HAB_ELECTION_TERM` (`TERM_ENV_VAR`) and to templates as
//! `svc.me.term` (both from the census: `service::runtime`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::gossip::member::{Health, MemberId, MemberView};
use crate::gossip::node::GossipConfig;
use crate::gossip::rumor::election::MAX_ROUND;
use crate::gossip::rumor::{
    ElectionRumor, ElectionStatus, RetirementRumor, Rumor, RumorKey, ServiceGroup,
};
use crate::gossip::store::Store;

/// The environment variable that carries the finished term (fencing token) to hooks.
pub const TERM_ENV_VAR: &str = "HAB_ELECTION_TERM";

/// Which of the group's two elections an engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElectionKind {
    /// The application leader (`Rumor::Election`).
    Leader,
    /// The rolling-update leader (`Rumor::ElectionUpdate`).
    Update,
}

impl ElectionKind {
    pub fn key(self, group: &ServiceGroup) -> RumorKey {
        match self {
            ElectionKind::Leader => RumorKey::Election {
                group: group.clone(),
            },
            ElectionKind::Update => RumorKey::ElectionUpdate {
                group: group.clone(),
            },
        }
    }

    /// The group's current rumor of this kind in `store`.
    pub fn current<'a>(self, store: &'a Store, group: &ServiceGroup) -> Option<&'a ElectionRumor> {
        match (self, store.get(&self.key(group))?) {
            (ElectionKind::Leader, Rumor::Election(r))
            | (ElectionKind::Update, Rumor::ElectionUpdate(r)) => Some(r),
            _ => None,
        }
    }

    pub const fn wrap(self, rumor: ElectionRumor) -> Rumor {
        match self {
            ElectionKind::Leader => Rumor::Election(rumor),
            ElectionKind::Update => Rumor::ElectionUpdate(rumor),
        }
    }
}

/// Habitat's update-election suitability: in the leader topology the application leader gets the
/// lowest suitability (it updates last) and followers the highest; otherwise everyone is equal.
pub const fn update_suitability(leader_topology: bool, is_app_leader: bool) -> u64 {
    match (leader_topology, is_app_leader) {
        (true, true) => u64::MIN,
        (true, false) => u64::MAX,
        (false, _) => 0,
    }
}

/// A candidate's 32-bit tag: the low half of every term it runs in (FNV-1a of its id).
pub fn candidate_tag(id: MemberId) -> u32 {
    id.0.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The term of `candidate`'s campaign in `round`: `round << 32 | tag`. Terms of later rounds
/// are greater whoever runs them, so the term is a fencing token.
pub fn term_for(round: u64, candidate: MemberId) -> u64 {
    // Rounds past `MAX_ROUND` never arrive (dropped on receipt); capping here keeps the shift
    // from losing bits whatever happens.
    (round.min(MAX_ROUND + 1) << 32) | u64::from(candidate_tag(candidate))
}

pub const fn term_round(term: u64) -> u64 {
    term >> 32
}

/// Whether `term` belongs to `candidate` (only such rumors are voted for or obeyed).
pub fn term_belongs_to(term: u64, candidate: MemberId) -> bool {
    term as u32 == candidate_tag(candidate)
}

/// Every timing of the election, derived from the ring's by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// After the engine starts, how long it waits before nominating into a group that has no
    /// election rumor yet (time to learn the ring's rumors; a lone member then elects itself).
    /// A member that has learned the group (see `stable`) nominates earlier.
    pub settle: Duration,
    /// Ends `settle` early while no live leader is known (no election rumor, a running
    /// election, a dead leader): once this member has
    /// completed an anti-entropy exchange, heard of every configured peer, holds the group's service rumor of every member the
    /// ring shows up, and that view (the up members and the electorate) has not changed for
    /// this long.
    pub stable: Duration,
    /// Once a candidate holds a majority, how long it waits for the remaining up members' votes
    /// before declaring (a better candidate gets to counter-nominate first).
    pub finish_grace: Duration,
    /// A member confirmed dead this long leaves the electorate.
    pub electorate_expiry: Duration,
    /// The leader, holding quorum, retires a member confirmed dead this long from the
    /// electorate (a `RetirementRumor`), and retires the next one no sooner than this after the
    /// previous (see `Election::retirement`).
    pub retire_after: Duration,
}

/// A minute: far longer than failure detection (a crashed member is confirmed dead within
/// seconds) and than the spread of a retirement to every connected member (seconds), so one
/// retirement is known everywhere before the next is decided; short enough that a group whose
/// members are replaced one by one keeps its quorum when replacements come minutes apart.
pub const DEFAULT_RETIRE_AFTER: Duration = Duration::from_secs(60);

impl ElectionConfig {
    pub fn for_gossip(gossip: &GossipConfig) -> ElectionConfig {
        ElectionConfig {
            settle: gossip.swim.probe_period * 2,
            stable: gossip.swim.gossip_interval * 2,
            finish_grace: gossip.swim.gossip_interval * 4,
            electorate_expiry: gossip.swim.dead_member_ttl,
            retire_after: DEFAULT_RETIRE_AFTER,
        }
    }

    pub fn lan() -> ElectionConfig {
        ElectionConfig::for_gossip(&GossipConfig::lan())
    }
}

/// The group's election as this member sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViewStatus {
    /// No election rumor yet.
    None,
    InProgress,
    /// This member does not see quorum: nobody here leads.
    NoQuorum,
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElectionView {
    pub status: ViewStatus,
    /// Set only when `status` is `Finished`.
    pub leader: Option<MemberId>,
    /// The current term (0 before any rumor): the fencing token for the leader's work.
    pub term: u64,
}

impl ElectionView {
    pub const NONE: ElectionView = ElectionView {
        status: ViewStatus::None,
        leader: None,
        term: 0,
    };

    pub fn is_leader(&self, me: MemberId) -> bool {
        self.leader == Some(me)
    }
}

/// Whether `rumor` is a candidate's withdrawal (see `Election::resign`): status `NoQuorum` in a
/// term of the candidate's own.
pub fn is_withdrawal(rumor: &ElectionRumor) -> bool {
    rumor.status == ElectionStatus::NoQuorum && term_belongs_to(rumor.term, rumor.member_id)
}

/// The members whose votes count: non-departed members of the group (a live service rumor),
/// minus those confirmed dead past the expiry and those whose node name a newer member took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Electorate {
    voters: BTreeMap<MemberId, Health>,
    /// Members of the group a retirement record keeps out (see `RetirementRumor`).
    retired: Vec<MemberId>,
}

impl Electorate {
    pub fn new(voters: impl IntoIterator<Item = (MemberId, Health)>) -> Electorate {
        Electorate {
            voters: voters.into_iter().collect(),
            retired: Vec::new(),
        }
    }

    /// Members of the group that no longer count because a leader retired them.
    pub fn retired(&self) -> &[MemberId] {
        &self.retired
    }

    pub fn len(&self) -> usize {
        self.voters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    pub fn contains(&self, id: MemberId) -> bool {
        self.voters.contains_key(&id)
    }

    pub fn health(&self, id: MemberId) -> Option<Health> {
        self.voters.get(&id).copied()
    }

    /// Alive or suspect (not yet confirmed dead).
    pub fn is_up(&self, id: MemberId) -> bool {
        self.health(id).is_some_and(Health::is_up)
    }

    pub fn ids(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.voters.keys().copied()
    }

    pub fn up(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.voters
            .iter()
            .filter(|(_, h)| h.is_up())
            .map(|(id, _)| *id)
    }

    /// More than half of the electorate in `count`.
    pub fn is_majority(&self, count: usize) -> bool {
        2 * count > self.voters.len()
    }

    /// Quorum: up members are more than half of the electorate.
    pub fn has_quorum(&self) -> bool {
        self.is_majority(self.up().count())
    }

    /// Distinct voters of the electorate among `votes` (a voter listed twice counts once).
    pub fn count_votes(&self, votes: &[MemberId]) -> usize {
        let distinct: std::collections::BTreeSet<&MemberId> = votes.iter().collect();
        distinct.into_iter().filter(|v| self.contains(**v)).count()
    }
}

/// What one step of the engine wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Publish this rumor at this member (it merges into the store and spreads).
    pub publish: Option<Rumor>,
    pub view: ElectionView,
}

/// When an engine needs its next step if nothing it reads changes (the ring's members and their
/// health, the rumor store, `synced`, its suitability): the supervisor steps it on every such
/// change and, in between, only as this says, so an idle ring has no election timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NextStep {
    /// Every gossip interval: a running election's delays (settle, stable, a nomination's
    /// turn, the finish grace) end with time alone.
    Tick,
    /// At this time (ms): a confirmed-dead voter leaves the electorate, which may restore quorum.
    At(u64),
    /// Only when an input changes: the outcome does not depend on the time.
    OnChange,
}

/// One member's election engine for one service group.
#[derive(Clone, Debug)]
pub struct Election {
    kind: ElectionKind,
    group: ServiceGroup,
    me: MemberId,
    suitability: u64,
    config: ElectionConfig,
    started_ms: Option<u64>,
    /// When each member was first seen confirmed dead (for the electorate expiry).
    down_since: HashMap<MemberId, u64>,
    /// Whether this engine may retire dead members when it leads (one engine per group does,
    /// see `GroupElections::new`).
    retires: bool,
    /// Retirement records seen, and when the newest of them was first seen here.
    retirements_seen: HashSet<(MemberId, u64)>,
    last_retirement_ms: Option<u64>,
    /// When this member, leading, may retire its next dead member if nothing changes.
    retire_at: Option<u64>,
    /// The members counted for quorum at the last step (for the census).
    electorate_ids: Vec<MemberId>,
    /// (term, time) this member, as candidate, first held a majority.
    majority_since: Option<(u64, u64)>,
    /// The newest finished rumor seen: its leader stays leader while healthy.
    last_finished: Option<ElectionRumor>,
    /// Since when this member has seen quorum without a break.
    quorum_since: Option<u64>,
    /// The highest term seen in any rumor (a resignation runs in the round after it).
    highest_term: u64,
    /// Members seen withdrawing (resigned) in a term above their last finished one.
    withdrawn: HashMap<MemberId, u64>,
    /// This member resigned: it never nominates, votes nor declares again.
    resigned: bool,
    /// The group's current rumor is a running candidacy of ours.
    candidate_now: bool,
    /// This member knows the group (see `ElectionConfig::stable`): the view it knows, since when.
    informed: Option<(GroupKnowledge, u64)>,
    /// The last step found a finished election whose leader is up: until an input changes, no
    /// delay can change the outcome (see `next_step`).
    settled: bool,
    view: ElectionView,
}

/// What a member knows of its group, compared step to step: the ring's up members and the
/// electorate with health.
type GroupKnowledge = (Vec<MemberId>, Vec<(MemberId, Health)>);

impl Election {
    pub fn new(
        kind: ElectionKind,
        group: ServiceGroup,
        me: MemberId,
        suitability: u64,
        config: ElectionConfig,
    ) -> Election {
        Election {
            kind,
            group,
            me,
            suitability,
            config,
            started_ms: None,
            down_since: HashMap::new(),
            retires: true,
            retirements_seen: HashSet::new(),
            last_retirement_ms: None,
            retire_at: None,
            electorate_ids: Vec::new(),
            majority_since: None,
            last_finished: None,
            quorum_since: None,
            highest_term: 0,
            withdrawn: HashMap::new(),
            resigned: false,
            candidate_now: false,
            informed: None,
            settled: false,
            view: ElectionView::NONE,
        }
    }

    pub const fn kind(&self) -> ElectionKind {
        self.kind
    }

    pub const fn group(&self) -> &ServiceGroup {
        &self.group
    }

    pub const fn member_id(&self) -> MemberId {
        self.me
    }

    pub const fn suitability(&self) -> u64 {
        self.suitability
    }

    /// The members counted for quorum at the last step, sorted.
    pub fn electorate_ids(&self) -> &[MemberId] {
        &self.electorate_ids
    }

    /// The suitability hook's latest answer. A running candidacy of ours with another
    /// suitability is re-run in the next round (so a better member can counter it, or we can
    /// counter a worse one); a finished leader is kept (leadership is sticky).
    pub fn set_suitability(&mut self, suitability: u64) {
        self.suitability = suitability;
    }

    pub const fn has_resigned(&self) -> bool {
        self.resigned
    }

    /// Stands down before this member stops running the service (unload, shutdown): when it
    /// leads or runs as candidate, returns the withdrawal to publish (a `NoQuorum` rumor in a
    /// new term of ours), so the others start a new term without waiting for failure
    /// detection. From now on this engine never nominates, votes nor declares.
    pub fn resign(&mut self) -> Option<Rumor> {
        self.resigned = true;
        let leading = self.view.is_leader(self.me);
        let candidate = self.candidate_now;
        if !leading && !candidate {
            return None;
        }
        let mut rumor = ElectionRumor::new(
            self.me,
            self.group.clone(),
            term_for(term_round(self.highest_term) + 1, self.me),
            self.suitability,
        );
        rumor.status = ElectionStatus::NoQuorum;
        rumor.votes = Vec::new();
        self.highest_term = rumor.term;
        self.last_finished = None;
        self.view = ElectionView {
            status: ViewStatus::InProgress,
            leader: None,
            term: rumor.term,
        };
        Some(self.kind.wrap(rumor))
    }

    /// The view computed by the last step.
    pub const fn view(&self) -> ElectionView {
        self.view
    }

    /// When this engine needs a step if none of its inputs changes (see `NextStep`).
    pub fn next_step(&self, now_ms: u64) -> NextStep {
        if self.resigned {
            return NextStep::OnChange;
        }
        if self.settled {
            return self.retire_at.map_or(NextStep::OnChange, NextStep::At);
        }
        if self.view.status == ViewStatus::NoQuorum {
            // Without quorum nothing but the electorate expiry moves with time. An entry of a
            // member gone from the group meanwhile costs at most one needless step.
            let expiry = self.config.electorate_expiry.as_millis() as u64;
            return self
                .down_since
                .values()
                .map(|since| since.saturating_add(expiry))
                .filter(|at| *at > now_ms)
                .min()
                .map_or(NextStep::OnChange, NextStep::At);
        }
        NextStep::Tick
    }

    /// Builds the electorate from the ring (and tracks how long members have been dead).
    pub fn electorate(&mut self, now_ms: u64, members: &[MemberView], store: &Store) -> Electorate {
        let in_group: Vec<MemberId> = store
            .iter()
            .filter_map(|r| match r {
                Rumor::Service(s) if s.service_group == self.group && !s.tombstone => {
                    Some(s.member_id)
                }
                _ => None,
            })
            .collect();
        // A node name belongs to its newest member; an older id under it is gone.
        let mut newest: HashMap<Arc<str>, &MemberView> = HashMap::new();
        for m in members {
            let entry = newest.entry(Arc::clone(&m.identity.node)).or_insert(m);
            if m.identity.is_newer_than(&entry.identity) {
                *entry = m;
            }
        }
        let known: HashMap<MemberId, &MemberView> =
            members.iter().map(|m| (m.identity.id, m)).collect();
        let expiry = self.config.electorate_expiry.as_millis() as u64;
        let mut voters = Vec::new();
        let mut retired = Vec::new();
        for id in in_group {
            if let Some(record) = store.retirement(&self.group, id) {
                if self.retirements_seen.insert((id, record.incarnation)) {
                    self.last_retirement_ms = Some(now_ms);
                }
                let seen_up_as = known
                    .get(&id)
                    .filter(|m| m.health.is_up())
                    .map(|m| m.identity.incarnation);
                if record.applies_to(seen_up_as) {
                    retired.push(id);
                    continue;
                }
            }
            // A service rumor of a member the ring has not told us about counts as down: it
            // weighs on quorum until it expires, as a confirmed-dead member does.
            let health = match known.get(&id) {
                Some(m) => {
                    let node = &m.identity.node;
                    let replaced =
                        !node.is_empty() && newest.get(node).is_some_and(|n| n.identity.id != id);
                    if replaced {
                        continue;
                    }
                    m.health
                }
                None => Health::Confirmed,
            };
            if health == Health::Departed || store.departed(id) {
                continue;
            }
            if health == Health::Confirmed {
                let since = *self.down_since.entry(id).or_insert(now_ms);
                if now_ms.saturating_sub(since) >= expiry {
                    continue;
                }
            } else {
                self.down_since.remove(&id);
            }
            voters.push((id, health));
        }
        let mut electorate = Electorate::new(voters);
        electorate.retired = retired;
        electorate
    }

    /// One step from the ring's state: `members` as `Node::members()` lists them, the store,
    /// and whether the node has synced with a peer and heard of every configured peer
    /// (`Node::knows_ring`).
    pub fn step(
        &mut self,
        now_ms: u64,
        members: &[MemberView],
        store: &Store,
        synced: bool,
    ) -> Step {
        let electorate = self.electorate(now_ms, members, store);
        self.electorate_ids = electorate.ids().collect();
        self.observe(now_ms, members, &electorate, synced);
        let current = self.kind.current(store, &self.group).cloned();
        let mut step = self.decide(now_ms, &electorate, current.as_ref());
        self.retire_at = None;
        if step.publish.is_none() {
            step.publish = self.retirement(now_ms, members, &electorate);
        }
        step
    }

    /// Quorum-led retirement: the finished leader of a group that holds quorum retires the
    /// member confirmed dead the longest, once it has been dead for `retire_after` and the
    /// previous retirement is that old too. Only a side holding quorum shrinks the electorate,
    /// so a partitioned minority never shrinks its way to a majority; one member at a time,
    /// each known everywhere before the next, so the majorities of the electorate before and
    /// after a retirement always overlap (Raft's single-server membership change). The dead
    /// member is counted when quorum is checked, so retirement never shrinks the electorate below
    /// two members.
    fn retirement(
        &mut self,
        now_ms: u64,
        members: &[MemberView],
        electorate: &Electorate,
    ) -> Option<Rumor> {
        if !self.retires
            || self.resigned
            || !self.view.is_leader(self.me)
            || !electorate.has_quorum()
        {
            return None;
        }
        let after = self.config.retire_after.as_millis() as u64;
        let (since, id) = electorate
            .voters
            .iter()
            .filter(|(_, health)| **health == Health::Confirmed)
            .filter_map(|(id, _)| self.down_since.get(id).map(|since| (*since, *id)))
            .min()?;
        let due = since.saturating_add(after).max(
            self.last_retirement_ms
                .map_or(0, |t| t.saturating_add(after)),
        );
        if now_ms < due {
            self.retire_at = Some(due);
            return None;
        }
        let incarnation = members
            .iter()
            .find(|m| m.identity.id == id)
            .map_or(0, |m| m.identity.incarnation);
        tracing::info!(member = %id, group = %self.group, term = self.view.term, "retiring a dead member from the electorate");
        Some(Rumor::Retirement(RetirementRumor {
            service_group: self.group.clone(),
            member_id: id,
            incarnation,
            retired_by: self.me,
            term: self.view.term,
        }))
    }

    /// Tracks whether this member knows its group: it has pulled a peer's whole store and heard
    /// of every configured peer (`synced`), it
    /// holds this group's service rumor of every member the ring shows up, and since when
    /// neither the up members nor the electorate changed. Knowing the ring's members is not
    /// knowing the group: membership spreads faster than service rumors, and a member that
    /// counted only the services it had heard of could win with a majority of that part. In a
    /// ring shared with other groups some up member is never in the electorate: `settle` then
    /// applies.
    pub fn observe(
        &mut self,
        now_ms: u64,
        members: &[MemberView],
        electorate: &Electorate,
        synced: bool,
    ) {
        let mut up: Vec<MemberId> = members
            .iter()
            .filter(|m| m.health.is_up())
            .map(|m| m.identity.id)
            .collect();
        up.sort_unstable();
        let complete = up.iter().all(|id| electorate.contains(*id));
        if !synced || !complete {
            self.informed = None;
            return;
        }
        let known = (
            up,
            electorate.voters.iter().map(|(i, h)| (*i, *h)).collect(),
        );
        if self.informed.as_ref().is_none_or(|(k, _)| *k != known) {
            self.informed = Some((known, now_ms));
        }
    }

    /// Whether the member has known its group, unchanged, for `ElectionConfig::stable`.
    fn knows_group(&self, now_ms: u64) -> bool {
        let stable = self.config.stable.as_millis() as u64;
        self.informed
            .as_ref()
            .is_some_and(|(_, since)| now_ms.saturating_sub(*since) >= stable)
    }

    /// The rules, given the electorate and the group's current election rumor.
    pub fn decide(
        &mut self,
        now_ms: u64,
        electorate: &Electorate,
        current: Option<&ElectionRumor>,
    ) -> Step {
        let mut step = self.rules(now_ms, electorate, current);
        if self.resigned {
            step.publish = None;
        }
        step
    }

    fn rules(
        &mut self,
        now_ms: u64,
        electorate: &Electorate,
        current: Option<&ElectionRumor>,
    ) -> Step {
        self.settled = false;
        let started = *self.started_ms.get_or_insert(now_ms);
        let term = current.map_or(0, |c| c.term);
        self.highest_term = self.highest_term.max(term);
        self.candidate_now = current.is_some_and(|c| {
            c.member_id == self.me
                && c.status == ElectionStatus::Running
                && term_belongs_to(c.term, self.me)
        });
        if let Some(c) = current {
            if is_withdrawal(c) {
                let since = self.withdrawn.entry(c.member_id).or_insert(c.term);
                *since = (*since).max(c.term);
                if self
                    .last_finished
                    .as_ref()
                    .is_some_and(|l| l.member_id == c.member_id && l.term < c.term)
                {
                    self.last_finished = None;
                }
            } else if self
                .withdrawn
                .get(&c.member_id)
                .is_some_and(|t| c.term > *t && term_belongs_to(c.term, c.member_id))
            {
                // Running again in a later term of its own (a restarted process): back in.
                self.withdrawn.remove(&c.member_id);
            }
            if c.status == ElectionStatus::Finished
                && term_belongs_to(c.term, c.member_id)
                && self.last_finished.as_ref().is_none_or(|l| c.term >= l.term)
            {
                self.last_finished = Some(c.clone());
            }
            if self.majority_since.is_some_and(|(t, _)| t != c.term) {
                self.majority_since = None;
            }
        }
        if !electorate.contains(self.me) {
            // Not (or no longer) a member of the group: no say, no leader here.
            self.quorum_since = None;
            return self.done(None, ViewStatus::None, None, term);
        }
        if !electorate.has_quorum() {
            self.quorum_since = None;
            return self.done(None, ViewStatus::NoQuorum, None, term);
        }
        let quorum_since = *self.quorum_since.get_or_insert(now_ms);
        // Starting a term needs a settled view: quorum held for `settle`, a majority alive.
        let settle = self.config.settle.as_millis() as u64;
        let alive = electorate
            .ids()
            .filter(|id| electorate.health(*id) == Some(Health::Alive))
            .count();
        let may_nominate = now_ms.saturating_sub(quorum_since) >= settle
            && now_ms.saturating_sub(started) >= settle
            && electorate.is_majority(alive);
        // A member that knows its group need not wait out `settle` to act: to nominate, to
        // counter a worse candidate (who may have learned the group first), or, as the last
        // finished leader, to declare itself again (seed 1552: a leader restarted beside a
        // restarted candidate waited the fixed settle while everyone waited for it). Knowing
        // the group means having synced with a peer, not having seen every newer term: a
        // restarted old leader whose peer was stale too may still re-declare over a newer
        // leader, as it could after `settle`; terms keep growing, so the term stays a fencing
        // token (30,000 chaos seeds per mode found no violation).
        let may_run = may_nominate || (self.knows_group(now_ms) && electorate.is_majority(alive));
        let Some(c) = current else {
            let nomination = may_run
                .then(|| self.nominate_if_first(now_ms, electorate, 0))
                .flatten();
            let status = if nomination.is_some() {
                ViewStatus::InProgress
            } else {
                ViewStatus::None
            };
            return self.done(nomination, status, None, 0);
        };
        let candidate = c.member_id;
        let acceptable =
            term_belongs_to(c.term, candidate) && electorate.is_up(candidate) && !is_withdrawal(c);
        if c.status == ElectionStatus::Finished && acceptable {
            // Time alone cannot undo this: the electorate expiry only drops confirmed-dead
            // voters, never the up leader, and dropping them never costs quorum.
            self.settled = true;
            return self.done(None, ViewStatus::Finished, Some(candidate), term);
        }
        // The last finished leader, while it is healthy, stays leader until a newer term
        // finishes, and nobody votes against it (a member coming back from isolation cannot
        // depose it). It answers a stray newer term by declaring itself again in a term of its
        // own, with the votes that elected it: no running phase, so nothing to counter.
        let incumbent = self
            .last_finished
            .as_ref()
            .filter(|l| electorate.is_up(l.member_id))
            .map(|l| (l.term, l.member_id));
        if let Some((incumbent_term, leader)) = incumbent {
            if candidate != leader || c.status == ElectionStatus::Finished {
                let reassert = (leader == self.me && may_run)
                    .then(|| self.reassertion(term_round(c.term) + 1))
                    .flatten();
                return self.done(reassert, ViewStatus::Finished, Some(leader), incumbent_term);
            }
        }
        if !acceptable {
            // Leader or candidate dead, departed, gone from the group, replaced or expired.
            let nomination = may_run
                .then(|| self.nominate_if_first(now_ms, electorate, term_round(c.term)))
                .flatten();
            return self.done(nomination, ViewStatus::InProgress, None, term);
        }
        // A running election with a live candidate.
        let (status, leader, view_term) = match incumbent {
            Some((t, leader)) => (ViewStatus::Finished, Some(leader), t),
            None => (ViewStatus::InProgress, None, term),
        };
        if candidate == self.me {
            if incumbent.is_none() && may_run && c.suitability != self.suitability {
                // Our suitability changed while we run: run again with the new one, so the
                // others compare against what the hook says now.
                let rumor = self.candidacy(term_round(c.term) + 1);
                return self.done(Some(rumor), ViewStatus::InProgress, None, term);
            }
            let publish = self.maybe_finish(now_ms, electorate, c);
            return self.done(publish, status, leader, view_term);
        }
        if incumbent.is_none()
            && may_run
            && (self.suitability, self.me) > (c.suitability, candidate)
        {
            // We are the better candidate: run in the next round (Habitat's "better candidate
            // wins", across terms rather than inside one).
            let rumor = self.candidacy(term_round(c.term) + 1);
            return self.done(Some(rumor), ViewStatus::InProgress, None, term);
        }
        if incumbent.is_none() && self.suitability > c.suitability {
            // Better suited but not yet free to run: no vote for a worse candidate, which
            // could otherwise finish before we counter (the suitability hook's or the update
            // election's preference would be lost). A tie on suitability is broken by id,
            // which is no preference: then we vote.
            return self.done(None, ViewStatus::InProgress, None, term);
        }
        let vote = (!c.votes.contains(&self.me)).then(|| {
            self.kind.wrap(ElectionRumor {
                from_id: self.me,
                member_id: candidate,
                service_group: self.group.clone(),
                term: c.term,
                suitability: c.suitability,
                status: ElectionStatus::Running,
                votes: vec![self.me],
            })
        });
        self.done(vote, status, leader, view_term)
    }

    fn done(
        &mut self,
        publish: Option<Rumor>,
        status: ViewStatus,
        leader: Option<MemberId>,
        term: u64,
    ) -> Step {
        self.view = ElectionView {
            status,
            leader,
            term,
        };
        Step {
            publish,
            view: self.view,
        }
    }

    fn candidacy(&self, round: u64) -> Rumor {
        self.kind.wrap(ElectionRumor::new(
            self.me,
            self.group.clone(),
            term_for(round, self.me),
            self.suitability,
        ))
    }

    /// The last finished rumor, re-declared by its leader (us) in a term of ours in `round`.
    fn reassertion(&self, round: u64) -> Option<Rumor> {
        let mut again = self.last_finished.clone()?;
        again.term = term_for(round, self.me);
        again.from_id = self.me;
        again.suitability = self.suitability;
        again.status = ElectionStatus::Finished;
        Some(self.kind.wrap(again))
    }

    /// A new term is needed: the alive member with the highest id runs first (better-suited
    /// members then counter-nominate); the others wait for its rumor.
    ///
    /// A member that knows its group does not wait forever for those above it: the member of
    /// rank r below the first runs once it has known the group for `stable` + r `finish_grace`
    /// (the first may be a restarted member that never heard of a peer crashed long ago, so it
    /// waits the fixed `settle`). A better member still counters a running candidacy; a
    /// finished one stands.
    fn nominate_if_first(&self, now_ms: u64, electorate: &Electorate, round: u64) -> Option<Rumor> {
        let rank = electorate
            .ids()
            .filter(|id| {
                *id > self.me
                    && electorate.health(*id) == Some(Health::Alive)
                    && !self.withdrawn.contains_key(id)
            })
            .count() as u64;
        let stable = self.config.stable.as_millis() as u64;
        let step = self.config.finish_grace.as_millis() as u64;
        let known_for = self
            .informed
            .as_ref()
            .map(|(_, since)| now_ms.saturating_sub(*since));
        let my_turn = rank == 0 || known_for.is_some_and(|k| k >= stable + step * rank);
        // Two members with one tag would share terms: the lower id stands aside.
        let tag_taken = electorate
            .ids()
            .any(|id| id > self.me && candidate_tag(id) == candidate_tag(self.me));
        let runs = electorate.health(self.me) == Some(Health::Alive)
            && !self.withdrawn.contains_key(&self.me);
        (my_turn && runs && !tag_taken).then(|| self.candidacy(round + 1))
    }

    fn maybe_finish(
        &mut self,
        now_ms: u64,
        electorate: &Electorate,
        c: &ElectionRumor,
    ) -> Option<Rumor> {
        if !electorate.is_majority(electorate.count_votes(&c.votes)) {
            return None;
        }
        let since = match self.majority_since {
            Some((t, since)) if t == c.term => since,
            _ => {
                self.majority_since = Some((c.term, now_ms));
                now_ms
            }
        };
        // A member that resigned will not vote: waiting for it would only cost the grace.
        let all_up_voted = electorate
            .up()
            .filter(|id| !self.withdrawn.contains_key(id))
            .all(|id| c.votes.contains(&id));
        let grace_over =
            now_ms.saturating_sub(since) >= self.config.finish_grace.as_millis() as u64;
        (all_up_voted || grace_over).then(|| {
            let mut finished = c.clone();
            finished.status = ElectionStatus::Finished;
            finished.from_id = self.me;
            // We lead from now on, whatever the next step sees first: a newer candidacy that
            // overtook our declaration in the store must meet an incumbent that declares
            // itself again, not a voter (seed 9350 with pauses: the new leader voted for it,
            // everyone else kept the leader, and the two camps never met).
            self.last_finished = Some(finished.clone());
            self.kind.wrap(finished)
        })
    }
}

/// The views of one group's two elections at this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupViews {
    pub leader: Option<ElectionView>,
    pub update: Option<ElectionView>,
    /// The members counted for quorum at the last step, sorted (both elections count the same).
    pub electorate: Vec<MemberId>,
}

/// Both elections of one service group at this member, as the manager runs them: the leader
/// election (leader and initializer topologies) and the update election (rolling updates). The
/// update election's suitability follows Habitat's rule from the leader election's view on
/// every step (in the leader topology the application leader updates last).
#[derive(Clone, Debug)]
pub struct GroupElections {
    leader: Option<Election>,
    update: Option<Election>,
}

impl GroupElections {
    /// `leader_topology`: run the leader election; `rolling`: run the update election.
    /// `suitability` is the suitability hook's answer for the leader election.
    pub fn new(
        group: &ServiceGroup,
        me: MemberId,
        config: &ElectionConfig,
        leader_topology: bool,
        rolling: bool,
        suitability: u64,
    ) -> GroupElections {
        let engine =
            |kind, suitability| Election::new(kind, group.clone(), me, suitability, config.clone());
        GroupElections {
            leader: leader_topology.then(|| engine(ElectionKind::Leader, suitability)),
            update: rolling.then(|| {
                let mut update = engine(
                    ElectionKind::Update,
                    update_suitability(leader_topology, false),
                );
                // One engine retires for the group (both count the same electorate): two
                // leaders' records of one member would otherwise conflict.
                update.retires = !leader_topology;
                update
            }),
        }
    }

    pub const fn leader(&self) -> Option<&Election> {
        self.leader.as_ref()
    }

    pub const fn update(&self) -> Option<&Election> {
        self.update.as_ref()
    }

    /// The suitability hook's latest answer (leader election only: the update election's is
    /// Habitat's fixed rule).
    pub fn set_suitability(&mut self, suitability: u64) {
        if let Some(e) = self.leader.as_mut() {
            e.set_suitability(suitability);
        }
    }

    pub fn views(&self) -> GroupViews {
        GroupViews {
            leader: self.leader.as_ref().map(Election::view),
            update: self.update.as_ref().map(Election::view),
            electorate: self
                .leader
                .as_ref()
                .or(self.update.as_ref())
                .map(|e| e.electorate_ids().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Steps both engines; returns the rumors to publish and the new views.
    pub fn step(
        &mut self,
        now_ms: u64,
        members: &[MemberView],
        store: &Store,
        synced: bool,
    ) -> (Vec<Rumor>, GroupViews) {
        let mut publish = Vec::new();
        let mut app_leader = false;
        if let Some(e) = self.leader.as_mut() {
            let step = e.step(now_ms, members, store, synced);
            app_leader = step.view.is_leader(e.member_id());
            publish.extend(step.publish);
        }
        let leader_topology = self.leader.is_some();
        if let Some(u) = self.update.as_mut() {
            u.set_suitability(update_suitability(leader_topology, app_leader));
            publish.extend(u.step(now_ms, members, store, synced).publish);
        }
        (publish, self.views())
    }

    /// The sooner of both engines' `Election::next_step`.
    pub fn next_step(&self, now_ms: u64) -> NextStep {
        [self.leader.as_ref(), self.update.as_ref()]
            .into_iter()
            .flatten()
            .map(|e| e.next_step(now_ms))
            .min()
            .unwrap_or(NextStep::OnChange)
    }

    /// Resigns from both elections (see `Election::resign`); the rumors to publish.
    pub fn resign(&mut self) -> Vec<Rumor> {
        let leader = self.leader.as_mut().and_then(Election::resign);
        let update = self.update.as_mut().and_then(Election::resign);
        leader.into_iter().chain(update).collect()
    }

    /// Starts or ends the update election when the strategy changes while the service runs
    /// (`hab svc update`), leaving the leader election alone; the rumors to publish (a
    /// withdrawal from the update election).
    pub fn set_rolling(
        &mut self,
        group: &ServiceGroup,
        me: MemberId,
        config: &ElectionConfig,
        rolling: bool,
    ) -> Vec<Rumor> {
        match (rolling, self.update.is_some()) {
            (true, false) => {
                let leader_topology = self.leader.is_some();
                self.update =
                    GroupElections::new(group, me, config, leader_topology, true, 0).update;
                Vec::new()
            }
            (false, true) => self
                .update
                .take()
                .and_then(|mut e| e.resign())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether neither election runs.
    pub const fn is_empty(&self) -> bool {
        self.leader.is_none() && self.update.is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn id(n: u8) -> MemberId {
        MemberId([n; 16])
    }

    fn group() -> ServiceGroup {
        ServiceGroup::parse("pg.default").unwrap()
    }

    fn config() -> ElectionConfig {
        ElectionConfig {
            settle: Duration::from_millis(100),
            stable: Duration::from_millis(30),
            finish_grace: Duration::from_millis(100),
            electorate_expiry: Duration::from_secs(60),
            retire_after: Duration::from_secs(10),
        }
    }

    fn engine(me: u8, suitability: u64) -> Election {
        Election::new(ElectionKind::Leader, group(), id(me), suitability, config())
    }

    fn alive(ids: &[u8]) -> Electorate {
        Electorate::new(ids.iter().map(|n| (id(*n), Health::Alive)))
    }

    fn election(rumor: &Option<Rumor>) -> ElectionRumor {
        match rumor {
            Some(Rumor::Election(r)) => r.clone(),
            other => panic!("expected an election rumor, found {other:?}"),
        }
    }

    #[test]
    fn a_voter_listed_twice_counts_once() {
        let electorate = alive(&[1, 2, 3, 4, 5]);
        assert_eq!(electorate.count_votes(&[id(1), id(1), id(1)]), 1);
        assert!(!electorate.is_majority(electorate.count_votes(&[id(1), id(1), id(1)])));
    }

    #[test]
    fn the_round_never_loses_bits_in_a_term() {
        let huge = term_for(u64::MAX, id(1));
        assert!(huge > term_for(MAX_ROUND, id(1)));
        assert!(term_belongs_to(huge, id(1)));
    }

    #[test]
    fn terms_belong_to_one_candidate_and_grow_with_the_round() {
        let (a, b) = (id(1), id(2));
        assert!(term_belongs_to(term_for(3, a), a));
        assert!(!term_belongs_to(term_for(3, a), b));
        assert!(term_for(4, a) > term_for(3, b));
        assert_eq!(term_round(term_for(7, b)), 7);
    }

    /// Steps once at 0 and returns the step at 1 s (settled).
    fn settled(e: &mut Election, electorate: &Electorate, current: Option<&ElectionRumor>) -> Step {
        e.decide(0, electorate, current);
        e.decide(1_000, electorate, current)
    }

    fn finished(candidate: u8, round: u64) -> ElectionRumor {
        let mut r = ElectionRumor::new(id(candidate), group(), term_for(round, id(candidate)), 0);
        r.status = ElectionStatus::Finished;
        r
    }

    #[test]
    fn a_group_of_one_elects_itself_after_settling() {
        let mut e = engine(1, 0);
        let electorate = alive(&[1]);
        assert_eq!(e.decide(0, &electorate, None).publish, None);
        let run = election(&e.decide(100, &electorate, None).publish);
        assert_eq!(run.member_id, id(1));
        let done = election(&e.decide(101, &electorate, Some(&run)).publish);
        assert_eq!(done.status, ElectionStatus::Finished);
        let view = e.decide(102, &electorate, Some(&done)).view;
        assert_eq!(view.leader, Some(id(1)));
        assert_eq!(view.status, ViewStatus::Finished);
    }

    #[test]
    fn a_majority_finishes_without_waiting_for_a_confirmed_dead_member() {
        let mut e = engine(3, 0);
        let electorate = Electorate::new([
            (id(1), Health::Alive),
            (id(2), Health::Confirmed),
            (id(3), Health::Alive),
        ]);
        let mut run = ElectionRumor::new(id(3), group(), term_for(1, id(3)), 0);
        run.votes = vec![id(1), id(3)];
        let done = election(&e.decide(0, &electorate, Some(&run)).publish);
        assert_eq!(done.status, ElectionStatus::Finished);
    }

    #[test]
    fn a_majority_waits_the_grace_for_an_up_member_that_has_not_voted() {
        let mut e = engine(3, 0);
        let electorate = alive(&[1, 2, 3]);
        let mut run = ElectionRumor::new(id(3), group(), term_for(1, id(3)), 0);
        run.votes = vec![id(1), id(3)];
        assert_eq!(e.decide(0, &electorate, Some(&run)).publish, None);
        assert!(e.decide(100, &electorate, Some(&run)).publish.is_some());
    }

    #[test]
    fn without_quorum_nothing_is_published_and_nobody_leads() {
        let mut e = engine(1, 0);
        let electorate = Electorate::new([
            (id(1), Health::Alive),
            (id(2), Health::Confirmed),
            (id(3), Health::Confirmed),
        ]);
        let step = settled(&mut e, &electorate, Some(&finished(1, 1)));
        assert_eq!(step.publish, None);
        assert_eq!(step.view.status, ViewStatus::NoQuorum);
        assert_eq!(step.view.leader, None);
    }

    #[test]
    fn a_healthy_leader_is_kept_against_a_stray_newer_term_and_declares_itself_again() {
        let all = alive(&[1, 2, 3]);
        let stray = ElectionRumor::new(id(3), group(), term_for(2, id(3)), 0);
        // A follower keeps the leader and does not vote for the stray candidate.
        let mut follower = engine(2, 0);
        follower.decide(0, &all, Some(&finished(1, 1)));
        let step = follower.decide(1, &all, Some(&stray));
        assert_eq!(step.publish, None);
        assert_eq!(step.view.leader, Some(id(1)));
        assert_eq!(step.view.term, term_for(1, id(1)));
        // The leader declares itself again, in a newer term of its own.
        let mut leader = engine(1, 0);
        leader.decide(0, &all, Some(&finished(1, 1)));
        let again = election(&leader.decide(1_000, &all, Some(&stray)).publish);
        assert_eq!((again.member_id, term_round(again.term)), (id(1), 3));
        assert_eq!(again.status, ElectionStatus::Finished);
        assert!(term_belongs_to(again.term, id(1)));
    }

    /// Seed 9350 (with pauses): a better member's candidacy in a newer term overtook our
    /// declaration in our own store before we saw the declaration back. We lead: we declare
    /// ourselves again rather than vote for it (everyone else keeps us as leader).
    #[test]
    fn a_candidate_that_declared_leads_though_a_newer_candidacy_comes_first() {
        let all = alive(&[1, 2, 3]);
        let mut leader = engine(2, 0);
        let mut run = ElectionRumor::new(id(2), group(), term_for(1, id(2)), 0);
        run.votes = vec![id(1), id(2), id(3)];
        let done = election(&leader.decide(0, &all, Some(&run)).publish);
        assert_eq!(done.status, ElectionStatus::Finished);
        let counter = ElectionRumor::new(id(3), group(), term_for(2, id(3)), 5);
        let step = leader.decide(1_000, &all, Some(&counter));
        let again = election(&step.publish);
        assert_eq!(
            (again.member_id, again.status, term_round(again.term)),
            (id(2), ElectionStatus::Finished, 3)
        );
        assert_eq!(step.view.leader, Some(id(2)));
    }

    #[test]
    fn a_better_candidate_counter_nominates_in_the_next_round() {
        let run = ElectionRumor::new(id(3), group(), term_for(1, id(3)), 0);
        let mut better = engine(1, 5);
        let counter = election(&settled(&mut better, &alive(&[1, 2, 3]), Some(&run)).publish);
        assert_eq!(counter.member_id, id(1));
        assert_eq!(term_round(counter.term), 2);
        let mut worse = engine(2, 0);
        let vote = election(&settled(&mut worse, &alive(&[1, 2, 3]), Some(&run)).publish);
        assert_eq!((vote.member_id, vote.votes), (id(3), vec![id(2)]));
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_highest_alive_id_in_the_next_round() {
        let done = finished(3, 4);
        let electorate = Electorate::new([
            (id(1), Health::Alive),
            (id(2), Health::Alive),
            (id(3), Health::Confirmed),
        ]);
        assert_eq!(
            settled(&mut engine(1, 0), &electorate, Some(&done)).publish,
            None
        );
        let run = election(&settled(&mut engine(2, 0), &electorate, Some(&done)).publish);
        assert_eq!((run.member_id, term_round(run.term)), (id(2), 5));
    }

    #[test]
    fn nobody_nominates_without_an_alive_majority() {
        let electorate = Electorate::new([
            (id(1), Health::Alive),
            (id(2), Health::Suspect),
            (id(3), Health::Confirmed),
        ]);
        let step = settled(&mut engine(1, 0), &electorate, Some(&finished(3, 1)));
        assert_eq!(step.publish, None);
        assert_eq!(step.view.status, ViewStatus::InProgress);
    }

    #[test]
    fn a_rumor_whose_term_is_not_its_candidates_is_never_obeyed() {
        let mut forged = ElectionRumor::new(id(2), group(), term_for(1, id(9)), 0);
        forged.status = ElectionStatus::Finished;
        let view = engine(1, 0).decide(0, &alive(&[1, 2]), Some(&forged)).view;
        assert_eq!(view.leader, None);
    }

    #[test]
    fn the_app_leader_updates_last() {
        assert!(update_suitability(true, false) > update_suitability(true, true));
        assert_eq!(
            update_suitability(false, true),
            update_suitability(false, false)
        );
    }

    #[test]
    fn a_resigning_leader_publishes_a_withdrawal_in_a_new_term_of_its_own_then_stays_silent() {
        let all = alive(&[1, 2, 3]);
        let done = finished(3, 1);
        let mut leader = engine(3, 0);
        assert_eq!(
            settled(&mut leader, &all, Some(&done)).view.leader,
            Some(id(3))
        );
        let withdrawal = election(&leader.resign());
        assert!(is_withdrawal(&withdrawal));
        assert_eq!(
            (withdrawal.member_id, term_round(withdrawal.term)),
            (id(3), 2)
        );
        assert!(withdrawal.votes.is_empty());
        assert!(leader.view().leader.is_none());
        // Resigned: it neither votes nor runs again, whatever it sees.
        let run = ElectionRumor::new(id(2), group(), term_for(3, id(2)), 0);
        assert_eq!(leader.decide(2_000, &all, Some(&run)).publish, None);
        assert_eq!(leader.decide(3_000, &all, Some(&withdrawal)).publish, None);
    }

    #[test]
    fn a_follower_that_never_led_resigns_without_a_rumor() {
        let all = alive(&[1, 2, 3]);
        let mut follower = engine(1, 0);
        settled(&mut follower, &all, Some(&finished(3, 1)));
        assert_eq!(follower.resign(), None);
        assert!(follower.has_resigned());
    }

    #[test]
    fn on_a_withdrawal_the_next_highest_member_runs_at_once_and_nobody_votes_for_the_resigner() {
        // The resigner (3) is still alive: the others do not wait for it to be seen down.
        let all = alive(&[1, 2, 3]);
        let mut withdrawal = ElectionRumor::new(id(3), group(), term_for(2, id(3)), 0);
        withdrawal.status = ElectionStatus::NoQuorum;
        withdrawal.votes.clear();
        let mut next = engine(2, 0);
        next.decide(0, &all, Some(&finished(3, 1)));
        let step = next.decide(1_000, &all, Some(&withdrawal));
        let run = election(&step.publish);
        assert_eq!((run.member_id, term_round(run.term)), (id(2), 3));
        assert_eq!(step.view.leader, None);
        let mut other = engine(1, 0);
        other.decide(0, &all, Some(&finished(3, 1)));
        let step = other.decide(1_000, &all, Some(&withdrawal));
        assert_eq!(step.publish, None, "no vote for a withdrawn candidate");
        assert_eq!(step.view.status, ViewStatus::InProgress);
        // The successor finishes once every member but the resigner voted.
        let mut run = run;
        run.votes = vec![id(1), id(2)];
        let done = election(&next.decide(1_001, &all, Some(&run)).publish);
        assert_eq!(done.status, ElectionStatus::Finished);
    }

    #[test]
    fn a_candidate_whose_suitability_changes_runs_again_and_a_better_member_then_counters() {
        let all = alive(&[1, 2, 3]);
        let mut candidate = engine(3, 5);
        let run = ElectionRumor::new(id(3), group(), term_for(1, id(3)), 5);
        settled(&mut candidate, &all, Some(&run));
        candidate.set_suitability(0);
        let again = election(&candidate.decide(1_100, &all, Some(&run)).publish);
        assert_eq!((again.member_id, term_round(again.term)), (id(3), 2));
        assert_eq!(again.suitability, 0);
        // Member 2 (suitability 1) was voting for the old candidacy and counters the new one.
        let mut better = engine(2, 1);
        assert_ne!(settled(&mut better, &all, Some(&run)).publish, None);
        let counter = election(&better.decide(1_100, &all, Some(&again)).publish);
        assert_eq!((counter.member_id, term_round(counter.term)), (id(2), 3));
    }

    #[test]
    fn a_finished_leader_stays_when_its_suitability_drops() {
        let all = alive(&[1, 2, 3]);
        let mut leader = engine(3, 5);
        settled(&mut leader, &all, Some(&finished(3, 1)));
        leader.set_suitability(0);
        let step = leader.decide(2_000, &all, Some(&finished(3, 1)));
        assert_eq!((step.publish, step.view.leader), (None, Some(id(3))));
    }

    #[test]
    fn the_view_carries_the_finished_term_and_no_leader_while_running() {
        let all = alive(&[1, 2, 3]);
        let mut e = engine(1, 0);
        let view = settled(&mut e, &all, Some(&finished(3, 4))).view;
        assert_eq!(
            (view.status, view.leader, view.term),
            (ViewStatus::Finished, Some(id(3)), term_for(4, id(3)))
        );
        let running = ElectionRumor::new(id(3), group(), term_for(5, id(3)), 0);
        let view = engine(1, 0).decide(0, &all, Some(&running)).view;
        assert_eq!((view.status, view.leader), (ViewStatus::InProgress, None));
    }

    fn ring(up: &[u8]) -> Vec<MemberView> {
        up.iter()
            .map(|n| MemberView {
                identity: crate::gossip::member::Identity {
                    id: id(*n),
                    incarnation: 1,
                    node: format!("node-{n}").into(),
                    addr: ([127, 0, 0, *n], 9638).into(),
                    persistent: false,
                    named: true,
                },
                health: Health::Alive,
            })
            .collect()
    }

    /// One step at `now` after `observe`, as `step` does.
    fn observe_and_decide(
        e: &mut Election,
        now: u64,
        members: &[MemberView],
        electorate: &Electorate,
        synced: bool,
    ) -> Step {
        e.observe(now, members, electorate, synced);
        e.decide(now, electorate, None)
    }

    #[test]
    fn a_member_that_knows_its_group_nominates_before_settle() {
        // `stable` is 30 ms, `settle` 100 ms.
        let (members, all) = (ring(&[1, 2, 3]), alive(&[1, 2, 3]));
        let mut e = engine(3, 0);
        assert_eq!(
            observe_and_decide(&mut e, 0, &members, &all, true).publish,
            None
        );
        assert_eq!(
            observe_and_decide(&mut e, 29, &members, &all, true).publish,
            None
        );
        let run = election(&observe_and_decide(&mut e, 30, &members, &all, true).publish);
        assert_eq!((run.member_id, term_round(run.term)), (id(3), 1));
    }

    /// Seed 119: the highest-id member (restarted, never told of a long-crashed peer) waits the
    /// fixed settle; the next one runs once it has known the group for `stable` + `finish_grace`.
    #[test]
    fn the_next_member_runs_when_the_first_has_not() {
        // `stable` is 30 ms, `finish_grace` 100 ms.
        let (members, all) = (ring(&[1, 2, 3]), alive(&[1, 2, 3]));
        let (mut second, mut third) = (engine(2, 0), engine(1, 0));
        for now in [0, 129] {
            assert_eq!(
                observe_and_decide(&mut second, now, &members, &all, true).publish,
                None
            );
        }
        let run = election(&observe_and_decide(&mut second, 130, &members, &all, true).publish);
        assert_eq!((run.member_id, term_round(run.term)), (id(2), 1));
        // The third in line waits one more `finish_grace`.
        for now in [0, 130, 229] {
            assert_eq!(
                observe_and_decide(&mut third, now, &members, &all, true).publish,
                None
            );
        }
        let run = election(&observe_and_decide(&mut third, 230, &members, &all, true).publish);
        assert_eq!(run.member_id, id(1));
    }

    /// Seed 674: the ring showed all members up, but this member held the service rumors of
    /// only some of them; counting only those, it would have won with a minority of the group.
    #[test]
    fn a_member_missing_service_rumors_of_up_members_waits_for_settle() {
        let members = ring(&[1, 2, 3, 4, 5]);
        let known = alive(&[1, 5]);
        let mut e = engine(5, 0);
        for now in [0, 50, 99] {
            let step = observe_and_decide(&mut e, now, &members, &known, true);
            assert_eq!(step.publish, None, "nominated at {now} ms");
        }
        // The fixed settle still lets a member of a ring shared with other groups run.
        assert!(observe_and_decide(&mut e, 100, &members, &known, true)
            .publish
            .is_some());
    }

    #[test]
    fn a_member_that_never_synced_or_whose_group_changed_waits() {
        let (members, all) = (ring(&[1, 2, 3]), alive(&[1, 2, 3]));
        let mut unsynced = engine(3, 0);
        for now in [0, 50, 99] {
            let step = observe_and_decide(&mut unsynced, now, &members, &all, false);
            assert_eq!(step.publish, None, "unsynced nominated at {now} ms");
        }
        // A change of the up members restarts the stable period.
        let mut e = engine(3, 0);
        observe_and_decide(&mut e, 0, &ring(&[2, 3]), &alive(&[2, 3]), true);
        let step = observe_and_decide(&mut e, 20, &members, &all, true);
        assert_eq!(step.publish, None);
        assert_eq!(
            observe_and_decide(&mut e, 49, &members, &all, true).publish,
            None
        );
        assert!(observe_and_decide(&mut e, 50, &members, &all, true)
            .publish
            .is_some());
    }

    #[test]
    fn a_better_member_that_knows_its_group_counters_before_settle() {
        let (members, all) = (ring(&[1, 2, 3]), alive(&[1, 2, 3]));
        let run = ElectionRumor::new(id(3), group(), term_for(1, id(3)), 0);
        let mut better = engine(1, 5);
        better.observe(0, &members, &all, true);
        // Not free to run yet: it does not vote for a worse candidate either.
        assert_eq!(better.decide(0, &all, Some(&run)).publish, None);
        better.observe(30, &members, &all, true);
        let counter = election(&better.decide(30, &all, Some(&run)).publish);
        assert_eq!((counter.member_id, term_round(counter.term)), (id(1), 2));
    }

    #[test]
    fn a_dead_leader_is_replaced_before_settle_by_a_member_that_knows_its_group() {
        let members = ring(&[1, 2]);
        let electorate = Electorate::new([
            (id(1), Health::Alive),
            (id(2), Health::Alive),
            (id(3), Health::Confirmed),
        ]);
        let done = finished(3, 4);
        let mut e = engine(2, 0);
        e.observe(0, &members, &electorate, true);
        assert_eq!(e.decide(0, &electorate, Some(&done)).publish, None);
        e.observe(30, &members, &electorate, true);
        let run = election(&e.decide(30, &electorate, Some(&done)).publish);
        assert_eq!((run.member_id, term_round(run.term)), (id(2), 5));
    }

    #[test]
    fn group_elections_give_the_app_leader_the_lowest_update_suitability() {
        let all_members: Vec<MemberView> = Vec::new();
        let store = Store::default();
        let mut both = GroupElections::new(&group(), id(1), &config(), true, true, 0);
        let (publish, views) = both.step(0, &all_members, &store, false);
        assert!(publish.is_empty());
        assert!(views.leader.is_some() && views.update.is_some());
        assert_eq!(
            both.update().map(Election::suitability),
            Some(update_suitability(true, false))
        );
        let standalone = GroupElections::new(&group(), id(1), &config(), false, true, 0);
        assert!(standalone.leader().is_none());
        assert_eq!(
            standalone.update().map(Election::kind),
            Some(ElectionKind::Update)
        );
    }

    #[test]
    fn an_engine_needs_ticks_while_its_election_runs_and_none_once_a_live_leader_is_declared() {
        let one = alive(&[1]);
        let mut e = engine(1, 0);
        assert_eq!(e.next_step(0), NextStep::Tick, "before its first step");
        e.decide(0, &one, None);
        assert_eq!(e.next_step(0), NextStep::Tick, "settling");
        let run = election(&e.decide(100, &one, None).publish);
        assert_eq!(e.next_step(100), NextStep::Tick, "running");
        let done = election(&e.decide(101, &one, Some(&run)).publish);
        assert_eq!(
            e.next_step(101),
            NextStep::Tick,
            "declared, not yet seen back"
        );
        e.decide(102, &one, Some(&done));
        assert_eq!(e.next_step(102), NextStep::OnChange);

        let all = alive(&[1, 2, 3]);
        let mut follower = engine(2, 0);
        follower.decide(0, &all, Some(&finished(1, 1)));
        assert_eq!(follower.next_step(0), NextStep::OnChange);
        // A stray newer term: the incumbent stays, but re-declaring waits on timers.
        let stray = ElectionRumor::new(id(3), group(), term_for(2, id(3)), 0);
        follower.decide(1, &all, Some(&stray));
        assert_eq!(follower.next_step(1), NextStep::Tick);
        // The leader confirmed dead: a new term runs on timers.
        let leader_dead = Electorate::new([
            (id(1), Health::Confirmed),
            (id(2), Health::Alive),
            (id(3), Health::Alive),
        ]);
        follower.decide(2, &leader_dead, Some(&finished(1, 1)));
        assert_eq!(follower.next_step(2), NextStep::Tick);
    }

    #[test]
    fn without_quorum_an_engine_wakes_only_when_a_dead_voter_leaves_the_electorate() {
        let store = group_store(&[1, 2, 3], None);
        let mut members = ring(&[1, 2, 3]);
        members[1].health = Health::Confirmed;
        members[2].health = Health::Confirmed;
        let mut e = engine(1, 0);
        let step = e.step(1_000, &members, &store, true);
        assert_eq!(step.view.status, ViewStatus::NoQuorum);
        // `electorate_expiry` is 60 s: both dead voters leave at 61 s.
        assert_eq!(e.next_step(1_000), NextStep::At(61_000));
        assert_eq!(e.next_step(30_000), NextStep::At(61_000));
        let step = e.step(61_000, &members, &store, true);
        assert_eq!(
            step.view.status,
            ViewStatus::None,
            "alone, quorum, settling"
        );
        assert_eq!(e.next_step(61_000), NextStep::Tick);
    }

    /// A store with the service rumors of `members` and `leader`'s finished election, if any.
    fn group_store(members: &[u8], leader: Option<u8>) -> Store {
        let mut store = Store::default();
        for n in members {
            let rumor = crate::gossip::rumor::ServiceRumor {
                member_id: id(*n),
                service_group: group(),
                incarnation: 1,
                package: "core/pg/1.0.0/20260101000000".into(),
                initialized: true,
                sys: Default::default(),
                cfg: Vec::new(),
                tombstone: false,
            };
            store.insert(Rumor::Service(rumor), 0);
        }
        if let Some(leader) = leader {
            store.insert(Rumor::Election(finished(leader, 1)), 0);
        }
        store
    }

    fn dead(members: &mut [MemberView], n: u8) {
        for m in members.iter_mut().filter(|m| m.identity.id == id(n)) {
            m.health = Health::Confirmed;
        }
    }

    fn retirement(step: &Step) -> Option<RetirementRumor> {
        match &step.publish {
            Some(Rumor::Retirement(r)) => Some(r.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_leader_with_quorum_retires_a_member_dead_past_the_grace_and_it_stops_counting() {
        let mut store = group_store(&[1, 2, 3], Some(1));
        let mut members = ring(&[1, 2, 3]);
        dead(&mut members, 3);
        let mut leader = engine(1, 0);
        let step = leader.step(1_000, &members, &store, true);
        assert_eq!(step.view.leader, Some(id(1)));
        assert_eq!(retirement(&step), None, "dead for less than the grace");
        assert_eq!(leader.next_step(1_000), NextStep::At(11_000));
        let step = leader.step(11_000, &members, &store, true);
        let retired = retirement(&step).expect("member 3 retired");
        assert_eq!(
            (retired.member_id, retired.incarnation, retired.retired_by),
            (id(3), 1, id(1))
        );
        assert_eq!(retired.term, finished(1, 1).term);
        store.insert(Rumor::Retirement(retired), 11_000);
        let electorate = leader.electorate(11_001, &members, &store);
        assert_eq!(electorate.len(), 2);
        assert_eq!(electorate.retired(), &[id(3)]);
        // Now 1 of 2 dead would be no quorum; the group keeps electing with 2 of 2.
        let step = leader.step(11_001, &members, &store, true);
        assert_eq!((step.view.leader, retirement(&step)), (Some(id(1)), None));
        // A follower never retires anyone.
        let mut follower = engine(2, 0);
        let store = group_store(&[1, 2, 3], Some(1));
        follower.step(1_000, &members, &store, true);
        assert_eq!(
            retirement(&follower.step(60_000, &members, &store, true)),
            None
        );
    }

    #[test]
    fn without_quorum_nobody_is_ever_retired() {
        let store = group_store(&[1, 2, 3], Some(1));
        let mut members = ring(&[1, 2, 3]);
        dead(&mut members, 2);
        dead(&mut members, 3);
        let mut leader = engine(1, 0);
        for now in [1_000, 11_000, 59_000] {
            let step = leader.step(now, &members, &store, true);
            assert_eq!(step.view.status, ViewStatus::NoQuorum);
            assert_eq!(retirement(&step), None, "at {now} ms");
        }
    }

    #[test]
    fn a_retired_member_back_under_a_renewed_identity_counts_again() {
        let mut store = group_store(&[1, 2, 3], Some(1));
        store.insert(
            Rumor::Retirement(RetirementRumor {
                service_group: group(),
                member_id: id(3),
                incarnation: 1,
                retired_by: id(1),
                term: finished(1, 1).term,
            }),
            0,
        );
        let mut members = ring(&[1, 2, 3]);
        let mut e = engine(2, 0);
        assert_eq!(e.electorate(0, &members, &store).len(), 2, "retired");
        members[2].identity.incarnation = 2;
        let electorate = e.electorate(0, &members, &store);
        assert_eq!((electorate.len(), electorate.retired().len()), (3, 0));
    }

    #[test]
    fn dead_members_are_retired_one_at_a_time_a_grace_apart() {
        let mut store = group_store(&[1, 2, 3, 4, 5], Some(1));
        let mut members = ring(&[1, 2, 3, 4, 5]);
        dead(&mut members, 4);
        dead(&mut members, 5);
        let mut leader = engine(1, 0);
        leader.step(1_000, &members, &store, true);
        let first = retirement(&leader.step(11_000, &members, &store, true)).expect("one");
        store.insert(Rumor::Retirement(first.clone()), 11_000);
        let step = leader.step(11_001, &members, &store, true);
        assert_eq!(retirement(&step), None, "the next waits");
        assert_eq!(leader.next_step(11_001), NextStep::At(21_001));
        let second = retirement(&leader.step(21_001, &members, &store, true)).expect("two");
        assert_ne!(first.member_id, second.member_id);
        assert!([id(4), id(5)].contains(&second.member_id));
    }

    #[test]
    fn only_one_engine_of_a_group_retires() {
        let both = GroupElections::new(&group(), id(1), &config(), true, true, 0);
        assert!(both.leader().is_some_and(|e| e.retires));
        assert!(both.update().is_some_and(|e| !e.retires));
        let standalone = GroupElections::new(&group(), id(1), &config(), false, true, 0);
        assert!(standalone.update().is_some_and(|e| e.retires));
    }

    #[test]
    fn group_elections_wake_for_the_sooner_engine() {
        let members: Vec<MemberView> = Vec::new();
        let store = Store::default();
        let mut both = GroupElections::new(&group(), id(1), &config(), true, true, 0);
        assert_eq!(both.next_step(0), NextStep::Tick);
        both.resign();
        assert_eq!(both.next_step(0), NextStep::OnChange);
        both.step(0, &members, &store, false);
        assert_eq!(
            both.next_step(0),
            NextStep::OnChange,
            "a resigned engine has no timers"
        );
        assert!(NextStep::Tick < NextStep::At(0) && NextStep::At(u64::MAX) < NextStep::OnChange);
    }
}
