//! What a node knows of the other members: the member table (identity, Habitat's health and
//! since when), the set of up members (O(1) random choice, shuffled gossip rounds), the indexes
//! by gossip address and by node name, node-name conflicts and challenges, membership imported
//! from peers, healing (re-contacting peers and permanent members that are not up), and the
//! views of it all that the supervisor reads. SWIM (`Membership`) decides who is up or down;
//! this file keeps the tables that follow from it. Invariants: a member is its id; a departed
//! member never comes back; a member that still answers is never evicted over its node name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::RngExt;

use super::{Node, NodeEvent, NodeTimer};
use crate::gossip::member::{Health, Identity, MemberId, MemberView};
use crate::gossip::membership::{MembershipEvent, MAX_NODE_NAME};
use crate::gossip::store;
use crate::gossip::wire::FRAME_SOFT_LIMIT;

/// Members listed in one membership frame: the soft frame limit over the largest identity
/// (id, incarnation, IPv6 address, a 253-byte name, postcard's lengths). A frame listing more
/// is dropped whole (`bad_member`): no peer grows our membership by more per exchange.
const MAX_MEMBERS_PER_FRAME: usize = FRAME_SOFT_LIMIT / 300;

/// Names reported in `NodeNameConflict` events are remembered up to this many: beyond, new ones
/// are not reported (`/butterfly` and `/metrics` still show every conflict).
const MAX_REPORTED_NAME_CONFLICTS: usize = 4096;

/// A newer member with an explicit node name asked us to drop the older holder of that name; the
/// older one is sent an Announce and keeps its place if it answers by `deadline_ms`.
#[derive(Debug)]
pub(super) struct NameChallenge {
    challenger: Identity,
    deadline_ms: u64,
}

/// What this node holds about a member: its latest identity and Habitat's health, since when.
#[derive(Debug, Clone)]
pub(super) struct MemberRecord {
    pub(super) identity: Identity,
    pub(super) health: Health,
    pub(super) since_ms: u64,
}

/// A set of member ids with O(1) insert, remove and uniform random choice.
#[derive(Debug, Default)]
pub(super) struct UpSet {
    ids: Vec<MemberId>,
    index: HashMap<MemberId, usize>,
    /// What is left of the current gossip round (see `gossip_targets`).
    round: Vec<MemberId>,
}

impl UpSet {
    fn insert(&mut self, id: MemberId) {
        if !self.index.contains_key(&id) {
            self.index.insert(id, self.ids.len());
            self.ids.push(id);
        }
    }

    pub(super) fn remove(&mut self, id: MemberId) {
        if let Some(i) = self.index.remove(&id) {
            self.ids.swap_remove(i);
            if let Some(moved) = self.ids.get(i) {
                self.index.insert(*moved, i);
            }
        }
    }

    pub(super) fn choose(&self, rng: &mut StdRng) -> Option<MemberId> {
        if self.ids.is_empty() {
            return None;
        }
        Some(self.ids[rng.random_range(0..self.ids.len())])
    }

    /// The next `amount` distinct members of a shuffled round over the up members (a new
    /// round, freshly shuffled, starts when one runs out): like SWIM's probe order, every
    /// member is chosen once per round.
    pub(super) fn gossip_targets(&mut self, rng: &mut StdRng, amount: usize) -> Vec<MemberId> {
        let wanted = amount.min(self.ids.len());
        let mut targets = Vec::with_capacity(wanted);
        let mut refilled = false;
        while targets.len() < wanted {
            match self.round.pop() {
                Some(id) if self.index.contains_key(&id) && !targets.contains(&id) => {
                    targets.push(id);
                }
                Some(_) => {}
                None if refilled => break,
                None => {
                    self.round.clone_from(&self.ids);
                    self.round.shuffle(rng);
                    refilled = true;
                }
            }
        }
        targets
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn contains(&self, id: &MemberId) -> bool {
        self.index.contains_key(id)
    }

    /// The members, in no meaningful order.
    pub(super) fn ids(&self) -> &[MemberId] {
        &self.ids
    }
}

impl Node {
    /// Every member we know, ourselves included, with Habitat's health.
    pub fn members(&self) -> Vec<MemberView> {
        let swim: HashMap<MemberId, Health> = self
            .membership
            .members()
            .map(|(identity, health)| (identity.id, health))
            .collect();
        self.members
            .values()
            .map(|r| {
                let health = match (r.health, swim.get(&r.identity.id)) {
                    (Health::Alive, Some(Health::Suspect)) => Health::Suspect,
                    (health, _) => health,
                };
                MemberView {
                    identity: r.identity.clone(),
                    health,
                }
            })
            .collect()
    }

    pub fn health_of(&self, id: MemberId) -> Option<Health> {
        let record = self.members.get(&id)?;
        if record.health == Health::Alive
            && self
                .membership
                .members()
                .any(|(i, h)| i.id == id && h == Health::Suspect)
        {
            return Some(Health::Suspect);
        }
        Some(record.health)
    }

    pub fn up_count(&self) -> usize {
        self.up.len()
    }

    /// A number that changes whenever `members()` would list other members, identities or
    /// health, suspicion included (foca marks a suspect without telling us): a supervisor that
    /// builds views from `members()` compares it instead of rebuilding them. O(members), no
    /// allocation; order-free, as it sums one hash per member.
    pub fn membership_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        fn hash_of(value: impl Hash) -> u64 {
            let mut hasher = std::hash::DefaultHasher::new();
            value.hash(&mut hasher);
            hasher.finish()
        }
        let records = self
            .members
            .values()
            .map(|r| hash_of((&r.identity, r.health)));
        let swim = self
            .membership
            .members()
            .map(|(identity, health)| hash_of((identity.id, health, 1u8)));
        records.chain(swim).fold(0, u64::wrapping_add)
    }

    /// A hash of the up members we know (id and incarnation), ourselves included; equal roots
    /// mean equal views, whatever order the members were met in.
    pub fn members_root(&self) -> u64 {
        let one = |i: &Identity| store::hash64(&[&i.id.0, &i.incarnation.to_be_bytes()]);
        self.up
            .ids
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|r| one(&r.identity))
            .fold(one(self.identity()), |root, h| root ^ h)
    }

    /// Fills the membership table as if the ring had been joined already (simulator warm
    /// start for large rings; joining itself is exercised by the ring tests).
    pub fn assume_members(&mut self, now_ms: u64, identities: &[Identity]) {
        self.now_ms = now_ms;
        self.import_members(identities.to_vec());
        self.flush_swim();
    }

    /// The up members we know, ourselves included, in id order (a simulation replays from its
    /// seed), as many as fit a frame under the soft limit.
    pub(super) fn up_identities(&self) -> Vec<Identity> {
        let mut up: Vec<Identity> = self
            .up
            .ids
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|r| r.identity.clone())
            .chain(std::iter::once(self.identity().clone()))
            .collect();
        up.sort_unstable_by_key(|i| i.id);
        up.truncate(MAX_MEMBERS_PER_FRAME);
        up
    }

    /// Takes members a peer holds up that we do not know (or know at an older incarnation)
    /// as alive, without gossiping them: SWIM then probes them like any other member, and
    /// membership anti-entropy, not a broadcast, carries them on. Known members are left to
    /// SWIM, so a peer's stale view never revives a member we hold down.
    pub(super) fn import_members(&mut self, members: Vec<Identity>) {
        if members.len() > MAX_MEMBERS_PER_FRAME {
            self.stats.drop("bad_member");
            return;
        }
        let me = self.identity().id;
        let mut fresh = Vec::new();
        for identity in members {
            let plausible = identity.addr.port() != 0
                && !identity.addr.ip().is_unspecified()
                && identity.node.len() <= MAX_NODE_NAME;
            if !plausible {
                self.stats.drop("bad_member");
                continue;
            }
            let known = self
                .members
                .get(&identity.id)
                .is_some_and(|r| r.identity.incarnation >= identity.incarnation);
            if identity.id != me && !known && !self.store.departed(identity.id) {
                fresh.push(identity);
            }
        }
        if !fresh.is_empty() {
            self.membership.assume_alive(fresh);
        }
    }

    pub(super) fn random_up_member(&mut self) -> Option<Identity> {
        let id = self.up.choose(&mut self.rng)?;
        self.members.get(&id).map(|r| r.identity.clone())
    }

    pub(super) fn on_membership_event(&mut self, event: MembershipEvent) {
        match event {
            MembershipEvent::Up(identity) => self.member_up(identity),
            MembershipEvent::Down(identity) => {
                let id = identity.id;
                if let Some(record) = self.members.get_mut(&id) {
                    // A renewed identity may be heard of only as down: it replaces the record.
                    let current = record.identity.incarnation <= identity.incarnation;
                    if current && record.health != Health::Departed {
                        let was_up = record.health != Health::Confirmed;
                        let previous = std::mem::replace(&mut record.identity, identity.clone());
                        record.health = Health::Confirmed;
                        if was_up {
                            record.since_ms = self.now_ms;
                            self.up.remove(id);
                            self.unreached.remove(&id);
                        }
                        self.index_name(id, Some(&previous.node), &identity.node);
                        if was_up {
                            self.events.push(NodeEvent::MemberDown(identity));
                        }
                    }
                }
            }
            MembershipEvent::Rejoined(identity) => {
                if let Some(record) = self.members.get_mut(&identity.id) {
                    record.identity = identity.clone();
                }
                self.events.push(NodeEvent::Rejoined(identity));
            }
            MembershipEvent::Unreached(identity) => {
                if self.up.contains(&identity.id) {
                    self.unreached.insert(identity.id);
                }
            }
            MembershipEvent::Isolated => {
                tracing::debug!("no peer is up; announcing to configured peers");
                for peer in self.peers.clone() {
                    self.membership.announce(peer);
                }
            }
        }
    }

    /// A member is its id. Another member with the same node name is a second member (several
    /// supervisors on one host, VMs cloned from one image: all stay, and the conflict is
    /// reported), unless both names were given explicitly, the new one is newer, and the old one
    /// is silent: then it is the same pod or host restarted without its data dir, and the old id
    /// goes at once (no ghost in the census or the electorate). Silent means held suspect or
    /// down, unreached by its last probe, or not answering a challenge (see `challenge_name`).
    /// Evicting an old member that still answers would make it rejoin newer and evict the other
    /// in turn, for ever.
    fn member_up(&mut self, identity: Identity) {
        let id = identity.id;
        if self.store.departed(id) {
            return;
        }
        if let Some(existing) = self.members.get(&id) {
            if existing.identity.incarnation > identity.incarnation {
                return;
            }
        }
        let me = self.identity().id;
        let holders: Vec<Identity> = self
            .by_node
            .get(&identity.node)
            .into_iter()
            .flatten()
            .filter(|&&holder| holder != id)
            .filter_map(|holder| self.members.get(holder))
            .filter(|r| r.health != Health::Departed)
            .map(|r| r.identity.clone())
            .collect();
        for old in holders.iter().filter(|h| h.id != me) {
            if old.may_be_replaced_by(&identity) {
                if self.seems_alive(old.id) {
                    self.challenge_name(old.clone(), &identity);
                } else {
                    self.replace_member(old.clone(), identity.clone());
                }
            }
        }
        self.insert_up(identity.clone());
        // News of an older holder, after its successor (ourselves, say): it may be a dead pod
        // that a member still gossips about, so it too has to answer.
        let successor = holders.iter().find(|h| {
            identity.may_be_replaced_by(h)
                && self
                    .members
                    .get(&h.id)
                    .is_some_and(|r| r.health == Health::Alive)
        });
        if let Some(newer) = successor.cloned() {
            self.challenge_name(identity.clone(), &newer);
        }
        self.report_name_conflict(&identity);
    }

    /// Up here, not suspected, and its last probe answered.
    fn seems_alive(&self, id: MemberId) -> bool {
        self.health_of(id) == Some(Health::Alive) && !self.unreached.contains(&id)
    }

    /// Asks `old` to prove it is alive: an Announce, which it answers with a Feed. Any datagram
    /// from its id before the deadline keeps it (`flush_swim`); the address alone proves
    /// nothing, since a pod's IP is reused.
    fn challenge_name(&mut self, old: Identity, challenger: &Identity) {
        if self.name_challenges.contains_key(&old.id) {
            return;
        }
        // Two probe timeouts: an answer that takes longer would fail a probe too. Stretched
        // like the probe timers while this node is slow (Lifeguard).
        let wait = self.config.swim.probe_timeout * 2 * (1 + self.local_health());
        self.name_challenges.insert(
            old.id,
            NameChallenge {
                challenger: challenger.clone(),
                deadline_ms: self.now_ms + wait.as_millis() as u64,
            },
        );
        tracing::debug!(old = %old.id, new = %challenger.id, node = %old.node, "name challenge");
        self.schedule(wait, NodeTimer::NameChallenge(old.id));
        self.membership.announce_to(old);
    }

    /// The challenged member did not answer in time: its challenger replaces it.
    pub(super) fn name_challenge_expired(&mut self, old_id: MemberId) {
        let Some(challenge) = self.name_challenges.get(&old_id) else {
            return; // Answered.
        };
        if self.now_ms < challenge.deadline_ms {
            // The timer of an earlier, answered challenge (or the clock went back): wait on.
            let after = Duration::from_millis(challenge.deadline_ms - self.now_ms);
            self.schedule(after, NodeTimer::NameChallenge(old_id));
            return;
        }
        let Some(challenge) = self.name_challenges.remove(&old_id) else {
            return;
        };
        // Both as they are now: either may have renewed or gone meanwhile.
        let current = |id| {
            self.members
                .get(&id)
                .filter(|r| r.health != Health::Departed)
                .map(|r| (r.identity.clone(), r.health))
        };
        let (Some((old, _)), Some((new, Health::Alive))) =
            (current(old_id), current(challenge.challenger.id))
        else {
            return;
        };
        if old.may_be_replaced_by(&new) {
            self.replace_member(old, new);
        }
    }

    /// Forgets `old` and its rumors, and tells the ring it is down.
    fn replace_member(&mut self, old: Identity, new: Identity) {
        self.members.remove(&old.id);
        self.unindex_name(old.id, &old.node);
        self.up.remove(old.id);
        self.unreached.remove(&old.id);
        self.name_challenges.remove(&old.id);
        let mut keys = self.store.forget_member_for_good(old.id, self.now_ms);
        keys.sort_unstable();
        self.membership.declare_down(old.clone());
        self.events.push(NodeEvent::MemberReplaced { old, new });
        for key in keys {
            self.events.push(NodeEvent::RumorChanged(key));
        }
    }

    /// Reports, once per name, that `identity` shares its node name with members that are up
    /// (ourselves included).
    fn report_name_conflict(&mut self, identity: &Identity) {
        if self.name_conflicts_reported.contains(&identity.node) {
            return;
        }
        let holders: Vec<MemberId> = self
            .by_node
            .get(&identity.node)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| {
                self.members
                    .get(id)
                    .is_some_and(|r| r.health.is_up() && r.identity.node == identity.node)
            })
            .collect();
        let shared = holders.iter().any(|&other| other != identity.id);
        let first_time = shared
            && self.name_conflicts_reported.len() < MAX_REPORTED_NAME_CONFLICTS
            && self
                .name_conflicts_reported
                .insert(Arc::clone(&identity.node));
        if first_time {
            self.events.push(NodeEvent::NodeNameConflict {
                name: Arc::clone(&identity.node),
                ids: holders,
            });
        }
    }

    /// Files `id` under `node` (and no longer under `previous`).
    fn index_name(&mut self, id: MemberId, previous: Option<&Arc<str>>, node: &Arc<str>) {
        if let Some(previous) = previous.filter(|p| *p != node) {
            self.unindex_name(id, previous);
        }
        if !node.is_empty() {
            self.by_node.entry(Arc::clone(node)).or_default().insert(id);
        }
    }

    pub(super) fn unindex_name(&mut self, id: MemberId, node: &Arc<str>) {
        if let Some(ids) = self.by_node.get_mut(node) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    fn insert_up(&mut self, identity: Identity) {
        let id = identity.id;
        if !self.up.contains(&id) {
            self.member_came_up = true;
            self.hasten_member_sync();
        }
        let was_down = self
            .members
            .get(&id)
            .is_some_and(|r| r.health == Health::Confirmed);
        self.by_addr.insert(identity.addr, id);
        let previous = self.members.insert(
            id,
            MemberRecord {
                identity: identity.clone(),
                health: Health::Alive,
                since_ms: self.now_ms,
            },
        );
        self.index_name(
            id,
            previous.as_ref().map(|r| &r.identity.node),
            &identity.node,
        );
        self.up.insert(id);
        self.arm_gossip();
        // Never synced (the peers given at start were not up yet, or the one asked first is
        // down): pull from the first member seen up rather than wait for the sync timer. One
        // exchange with an up member at a time, so a cold start is no sync storm.
        // A member we held down is back (a partition healed, it restarted): each side may hold
        // rumors newer than the other's, and backed-off anti-entropy could take up to
        // `sync_max_interval` to swap them, so swap them now. Only on down -> up (not at first
        // sight during a cold start), and by about `rumor_fanout` members per return (each
        // with that share of chance), so neither a partition heal nor a member returning to a
        // large ring is a sync storm. A session still open with another peer does not hold it
        // back (it may be with a dead one, kept for 4 sync intervals; seed 20601).
        let share = self.config.rumor_fanout as f64 / self.up.len().max(1) as f64;
        let resync =
            was_down && self.last_sync_ms.is_some() && self.rng.random_bool(share.min(1.0));
        let first_sync = self.last_sync_ms.is_none() && !self.syncing_with_an_up_member();
        if (first_sync || (resync && !self.syncing_with(identity.addr))) && !self.left {
            self.start_sync(identity.addr);
        }
        self.events.push(NodeEvent::MemberUp(identity));
    }

    pub(super) fn on_departure(&mut self, member: MemberId) {
        if member == self.identity().id {
            tracing::warn!("this member was departed from the ring; leaving for good");
            self.events.push(NodeEvent::DepartedSelf);
            self.membership.leave();
            self.left = true;
            return;
        }
        self.membership.ban(member);
        if let Some(record) = self.members.get_mut(&member) {
            record.health = Health::Departed;
            record.since_ms = self.now_ms;
            let identity = record.identity.clone();
            self.membership.declare_down(identity);
        }
        self.up.remove(member);
        self.unreached.remove(&member);
    }

    /// Until every configured peer has been heard of, heals come sooner: after one probe
    /// period, doubling up to `heal_interval`. A peer that started listening after our
    /// announces went out (pods of one StatefulSet start seconds apart) is otherwise met by
    /// the first regular heal, up to `heal_interval` later, and elections wait for it.
    pub(super) fn next_heal_delay(&mut self) -> Duration {
        let unheard = self.peers.iter().any(|p| !self.by_addr.contains_key(p));
        if !unheard {
            return self.config.heal_interval;
        }
        let delay = self
            .unheard_heal_delay
            .unwrap_or(self.config.swim.probe_period);
        self.unheard_heal_delay = Some((delay * 2).min(self.config.heal_interval));
        delay
    }

    /// Re-contacts configured peers and permanent members that are not up: partitions heal.
    pub(super) fn heal(&mut self) {
        if self.left {
            return;
        }
        for peer in self.peers.clone() {
            let peer_is_up = self
                .by_addr
                .get(&peer)
                .is_some_and(|id| self.up.contains(id));
            if !peer_is_up {
                self.membership.announce(peer);
            }
        }
        let mut down_permanent: Vec<Identity> = self
            .members
            .values()
            .filter(|r| r.identity.persistent && r.health == Health::Confirmed)
            .map(|r| r.identity.clone())
            .collect();
        // In a fixed order, not the map's: the simulator draws delays per datagram sent.
        down_permanent.sort_by_key(|i| i.id);
        for identity in down_permanent {
            self.membership.announce_to(identity);
        }
    }
}
