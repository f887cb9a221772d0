//! Leader (and update) elections over the group's election rumor: a pure engine per member and
//! service group. Inputs: the ring's members with health, the rumor store and `now`; outputs:
//! the rumor to publish (a vote, a candidacy, a Finished declaration) and an `ElectionView`.
//!
//! Invariants: every term belongs to exactly one candidate (its low 32 bits are the candidate's
//! tag), and only that candidate declares it Finished, so one term never has two leaders even
//! though the rumor merge moves votes to the better candidate of a term; a member that does not
//! see quorum (up members > half of the electorate) never nominates, votes nor declares.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::gossip::member::{Health, MemberId, MemberView};
use crate::gossip::node::GossipConfig;
use crate::gossip::rumor::{ElectionRumor, ElectionStatus, Rumor, RumorKey, ServiceGroup};
use crate::gossip::store::Store;

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
    (round << 32) | u64::from(candidate_tag(candidate))
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
    pub settle: Duration,
    /// Once a candidate holds a majority, how long it waits for the remaining up members' votes
    /// before declaring (a better candidate gets to counter-nominate first).
    pub finish_grace: Duration,
    /// A member confirmed dead this long leaves the electorate.
    pub electorate_expiry: Duration,
}

impl ElectionConfig {
    pub fn for_gossip(gossip: &GossipConfig) -> ElectionConfig {
        ElectionConfig {
            settle: gossip.swim.probe_period * 2,
            finish_grace: gossip.swim.gossip_interval * 4,
            electorate_expiry: gossip.swim.dead_member_ttl,
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

/// The members whose votes count: non-departed members of the group (a live service rumor),
/// minus those confirmed dead past the expiry and those whose node name a newer member took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Electorate {
    voters: BTreeMap<MemberId, Health>,
}

impl Electorate {
    pub fn new(voters: impl IntoIterator<Item = (MemberId, Health)>) -> Electorate {
        Electorate {
            voters: voters.into_iter().collect(),
        }
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

    pub fn count_votes(&self, votes: &[MemberId]) -> usize {
        votes.iter().filter(|v| self.contains(**v)).count()
    }
}

/// What one step of the engine wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Publish this rumor at this member (it merges into the store and spreads).
    pub publish: Option<Rumor>,
    pub view: ElectionView,
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
    /// (term, time) this member, as candidate, first held a majority.
    majority_since: Option<(u64, u64)>,
    /// The newest finished rumor seen: its leader stays leader while healthy.
    last_finished: Option<ElectionRumor>,
    /// Since when this member has seen quorum without a break.
    quorum_since: Option<u64>,
    view: ElectionView,
}

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
            majority_since: None,
            last_finished: None,
            quorum_since: None,
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

    /// The suitability hook's latest answer; used from the next candidacy on.
    pub fn set_suitability(&mut self, suitability: u64) {
        self.suitability = suitability;
    }

    /// The view computed by the last step.
    pub const fn view(&self) -> ElectionView {
        self.view
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
        for id in in_group {
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
        Electorate::new(voters)
    }

    /// One step from the ring's state: `members` as `Node::members()` lists them, the store.
    pub fn step(&mut self, now_ms: u64, members: &[MemberView], store: &Store) -> Step {
        let electorate = self.electorate(now_ms, members, store);
        let current = self.kind.current(store, &self.group).cloned();
        self.decide(now_ms, &electorate, current.as_ref())
    }

    /// The rules, given the electorate and the group's current election rumor.
    pub fn decide(
        &mut self,
        now_ms: u64,
        electorate: &Electorate,
        current: Option<&ElectionRumor>,
    ) -> Step {
        let started = *self.started_ms.get_or_insert(now_ms);
        let term = current.map_or(0, |c| c.term);
        if let Some(c) = current {
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
        let Some(c) = current else {
            let nomination = may_nominate
                .then(|| self.nominate_if_first(electorate, 0))
                .flatten();
            let status = if nomination.is_some() {
                ViewStatus::InProgress
            } else {
                ViewStatus::None
            };
            return self.done(nomination, status, None, 0);
        };
        let candidate = c.member_id;
        let acceptable = term_belongs_to(c.term, candidate) && electorate.is_up(candidate);
        if c.status == ElectionStatus::Finished && acceptable {
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
                let reassert = (leader == self.me && may_nominate)
                    .then(|| self.reassertion(term_round(c.term) + 1))
                    .flatten();
                return self.done(reassert, ViewStatus::Finished, Some(leader), incumbent_term);
            }
        }
        if !acceptable {
            // Leader or candidate dead, departed, gone from the group, replaced or expired.
            let nomination = may_nominate
                .then(|| self.nominate_if_first(electorate, term_round(c.term)))
                .flatten();
            return self.done(nomination, ViewStatus::InProgress, None, term);
        }
        // A running election with a live candidate.
        let (status, leader, view_term) = match incumbent {
            Some((t, leader)) => (ViewStatus::Finished, Some(leader), t),
            None => (ViewStatus::InProgress, None, term),
        };
        if candidate == self.me {
            let publish = self.maybe_finish(now_ms, electorate, c);
            return self.done(publish, status, leader, view_term);
        }
        if incumbent.is_none()
            && may_nominate
            && (self.suitability, self.me) > (c.suitability, candidate)
        {
            // We are the better candidate: run in the next round (Habitat's "better candidate
            // wins", across terms rather than inside one).
            let rumor = self.candidacy(term_round(c.term) + 1);
            return self.done(Some(rumor), ViewStatus::InProgress, None, term);
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
    fn nominate_if_first(&self, electorate: &Electorate, round: u64) -> Option<Rumor> {
        let first = electorate
            .ids()
            .filter(|id| electorate.health(*id) == Some(Health::Alive))
            .max()?;
        // Two members with one tag would share terms: the lower id stands aside.
        let tag_taken = electorate
            .ids()
            .any(|id| id > self.me && candidate_tag(id) == candidate_tag(self.me));
        (first == self.me && !tag_taken).then(|| self.candidacy(round + 1))
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
        let all_up_voted = electorate.up().all(|id| c.votes.contains(&id));
        let grace_over =
            now_ms.saturating_sub(since) >= self.config.finish_grace.as_millis() as u64;
        (all_up_voted || grace_over).then(|| {
            let mut finished = c.clone();
            finished.status = ElectionStatus::Finished;
            finished.from_id = self.me;
            self.kind.wrap(finished)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
            finish_grace: Duration::from_millis(100),
            electorate_expiry: Duration::from_secs(60),
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
}
