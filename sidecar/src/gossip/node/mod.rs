//! One ring member as a pure state machine: SWIM membership (through `Membership`), the rumor
//! store, piggyback dissemination, push-pull anti-entropy and the envelope. The real transport
//! (`transport.rs`) and the simulator (`sim.rs`) drive the very same code: calls in with the
//! current time, `Output`s out (datagrams, TCP frames, timers to arm) plus `NodeEvent`s.
//!
//! This file holds the `Node` struct, its configuration, its inputs (`start`, the `handle_*`
//! methods, `leave`...), outputs, events and counters, timers and expiry. Each concern has a
//! file of its own, an `impl Node` block over the same private fields:
//! - `envelope`: sealing and opening, replay admission, peer keys and key rotation hints;
//! - `sync`: push-pull anti-entropy sessions (rumors and membership), asking and answering;
//! - `members`: the member table, up set, indexes, node-name conflicts, healing, member views;
//! - `dissemination`: publish and accept, piggybacking, gossip rounds, `flush_swim`.
//!
//! Every input starts with `advance_clock`; those that can set anything in motion end with
//! `flush_swim`, which turns it into outputs.
//!
//! Invariants: nothing here reads a clock or a socket; every datagram we accept passed the
//! envelope's authentication and the replay window; malformed input is counted, never a panic.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::broadcast::{retransmit_limit, BroadcastQueue};
use super::crypto::{KeyId, Keyring, Opened, ReplayGuard, ENVELOPE_OVERHEAD, VERSION_2};
use super::member::{Health, Identity, MemberId};
use super::membership::{Membership, SwimConfig, SwimTimer};
use super::rumor::{Rumor, RumorKey};
use super::store::{Insert, Store};
use super::wire::{self, Datagram, Frame, MAX_DATAGRAM};

mod dissemination;
mod envelope;
mod members;
mod sync;

use envelope::single_key_sealers;
use members::{MemberRecord, NameChallenge, UpSet};
use sync::SyncSession;

/// Every timing and limit of the ring.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub swim: SwimConfig,
    /// Rumors are sent this many times `* log10(N + 1)` by each member that learns them.
    pub rumor_retransmit_mult: u32,
    /// Members a rumor-only datagram (or a TCP push of a large rumor) goes to.
    pub rumor_fanout: usize,
    /// How often each member runs push-pull anti-entropy with a random peer while rumors are
    /// changing; each sync that finds nothing new doubles the pause, up to `sync_max_interval`.
    pub sync_interval: Duration,
    pub sync_max_interval: Duration,
    /// How often configured and permanent peers that are not up are re-contacted.
    pub heal_interval: Duration,
    /// How often expiry (tombstones, dead members) runs.
    pub maintenance_interval: Duration,
    pub tombstone_ttl: Duration,
    pub replay_window: Duration,
    pub max_datagram: usize,
}

impl GossipConfig {
    pub fn lan() -> GossipConfig {
        GossipConfig {
            swim: SwimConfig::lan(),
            rumor_retransmit_mult: 4,
            rumor_fanout: 3,
            sync_interval: Duration::from_secs(5),
            sync_max_interval: Duration::from_secs(60),
            heal_interval: Duration::from_secs(5),
            maintenance_interval: Duration::from_secs(5),
            tombstone_ttl: Duration::from_secs(60 * 60),
            replay_window: Duration::from_secs(120),
            max_datagram: MAX_DATAGRAM,
        }
    }

    /// Bytes free for piggybacked rumors in a datagram carrying `swim_len` bytes of SWIM.
    fn rumor_budget(&self, swim_len: usize) -> usize {
        self.max_datagram
            .saturating_sub(ENVELOPE_OVERHEAD + wire::datagram_overhead(swim_len))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeTimer {
    Swim(SwimTimer),
    RumorGossip,
    Sync,
    /// Membership anti-entropy (see `Node::next_member_sync_delay`); a timer whose generation
    /// is not the current one was superseded by an earlier one and does nothing.
    MemberSync(u64),
    Heal,
    Maintenance,
    /// The deadline of a name challenge to this member (see `Node::member_up`).
    NameChallenge(MemberId),
}

/// A TCP conversation started by this node; 0 means "no reply expected".
pub type SessionId = u64;

#[derive(Debug)]
pub enum Output {
    Datagram {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Send a frame on the TCP session (opening a connection to `to` if the session is new).
    /// When `expect_reply`, the transport reads one frame back and calls `handle_reply`.
    Frame {
        to: SocketAddr,
        session: SessionId,
        bytes: Vec<u8>,
        expect_reply: bool,
    },
    Schedule {
        after: Duration,
        timer: NodeTimer,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    MemberUp(Identity),
    MemberDown(Identity),
    /// A newer member took this one's explicit node name while it was silent; the old id is
    /// gone at once.
    MemberReplaced {
        old: Identity,
        new: Identity,
    },
    /// Members that both answer share a node name (several supervisors on one host, VMs cloned
    /// from one image): all are kept. Reported once per name, when it first becomes shared
    /// (once per pair would log O(N^2) lines when N supervisors share a host name); `ids` are
    /// the up members holding it then, ourselves included.
    NodeNameConflict {
        name: Arc<str>,
        ids: Vec<MemberId>,
    },
    RumorChanged(RumorKey),
    /// This node was declared down and rejoined with a higher incarnation (persist it).
    Rejoined(Identity),
    /// This node was departed (`hab sup depart`): it has left the ring for good.
    DepartedSelf,
}

/// Counters for `/metrics` and the simulator.
#[derive(Debug, Default, Clone)]
pub struct NodeStats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Datagrams sent in envelope version 2 (to members that advertise it).
    pub datagrams_sent_v2: u64,
    /// Rumor transmissions (one rumor in one datagram or frame counts one).
    pub rumors_sent: u64,
    /// Of `rumors_sent`, those forwarded at once by a member that had just learnt them from a
    /// datagram (see `Node::forward_fresh`).
    pub rumors_forwarded: u64,
    pub rumors_received: u64,
    pub rumors_accepted: u64,
    /// Dropped datagrams/frames/rumors by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

impl NodeStats {
    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }
}

/// One member of the ring (see the module documentation for where each part lives).
pub struct Node {
    config: GossipConfig,
    membership: Membership,
    keyring: Keyring,
    /// One single-key keyring per key held, to seal with a chosen key (see `seal`).
    sealers: Vec<Keyring>,
    /// Gossip address -> the ring key that peer last sealed a datagram to us with. Sealing to a
    /// peer with a key it is known to hold lets keys rotate without a flag day (see `seal`).
    peer_keys: HashMap<SocketAddr, KeyId>,
    replay: ReplayGuard,
    store: Store,
    queue: BroadcastQueue,
    rng: StdRng,
    members: HashMap<MemberId, MemberRecord>,
    /// Up members other than us, for O(1) random choice.
    up: UpSet,
    /// Node name -> every member whose record carries it, ourselves included.
    by_node: HashMap<Arc<str>, BTreeSet<MemberId>>,
    /// Challenged holder of a node name -> its pending challenge.
    name_challenges: HashMap<MemberId, NameChallenge>,
    /// Node names already reported as shared (bounded).
    name_conflicts_reported: HashSet<Arc<str>>,
    /// Gossip address -> the member last seen there.
    by_addr: HashMap<SocketAddr, MemberId>,
    peers: Vec<SocketAddr>,
    sessions: HashMap<SessionId, SyncSession>,
    next_session: SessionId,
    gossip_armed: bool,
    /// Anti-entropy runs no earlier than this; pushed out while syncs find nothing new.
    next_sync_ms: u64,
    sync_quiet_rounds: u32,
    /// Up members whose last probe went unanswered: when one is heard from again, rumors
    /// gossiped while it was cut off (a short partition that nobody was declared down over)
    /// are swapped with it at once instead of at the next anti-entropy round.
    unreached: HashSet<MemberId>,
    /// The next heal delay while a configured peer has never been heard of (see
    /// `next_heal_delay`).
    unheard_heal_delay: Option<Duration>,
    /// The pause before the next membership exchange, and whether a member came up since the
    /// last one (see `next_member_sync_delay`).
    member_sync_delay: Duration,
    member_sync_generation: u64,
    /// When this member last pulled from peers after a freeze: every timer is late after one,
    /// and the first late timer pulls for all of them.
    freeze_pull_ms: Option<u64>,
    member_came_up: bool,
    /// Timers scheduled and not fired yet, with when they are due (see `lateness`).
    timers_due: Vec<(NodeTimer, u64)>,
    /// When an anti-entropy exchange this node asked for last completed: from then on it held
    /// every rumor that peer had (the election engine's sign that it has learned the ring).
    last_sync_ms: Option<u64>,
    /// Hosts (not ports: each TCP connection has its own) already warned about as not sharing
    /// our ring key; at most `MAX_WRONG_KEY_LOGGED`, then further ones are only counted.
    wrong_key_logged: HashSet<IpAddr>,
    outputs: Vec<Output>,
    events: Vec<NodeEvent>,
    stats: NodeStats,
    now_ms: u64,
    left: bool,
}

impl Node {
    pub fn new(
        identity: Identity,
        config: GossipConfig,
        keyring: Keyring,
        store: Store,
        seed: u64,
    ) -> Node {
        let mut rng = StdRng::seed_from_u64(seed);
        let membership = Membership::new(identity.clone(), config.swim.clone(), rng.random());
        let mut members = HashMap::new();
        let by_node = HashMap::from([(Arc::clone(&identity.node), BTreeSet::from([identity.id]))]);
        members.insert(
            identity.id,
            MemberRecord {
                identity,
                health: Health::Alive,
                since_ms: 0,
            },
        );
        let replay = ReplayGuard::new(config.replay_window);
        let queue = BroadcastQueue::new(retransmit_limit(config.rumor_retransmit_mult, 1));
        let sealers = single_key_sealers(&keyring);
        let mut node = Node {
            config,
            membership,
            keyring,
            sealers,
            peer_keys: HashMap::new(),
            replay,
            store,
            queue,
            rng,
            members,
            up: UpSet::default(),
            by_node,
            name_challenges: HashMap::new(),
            name_conflicts_reported: HashSet::new(),
            by_addr: HashMap::new(),
            peers: Vec::new(),
            sessions: HashMap::new(),
            next_session: 1,
            gossip_armed: false,
            next_sync_ms: 0,
            sync_quiet_rounds: 0,
            last_sync_ms: None,
            unreached: HashSet::new(),
            unheard_heal_delay: None,
            member_sync_delay: Duration::ZERO,
            member_sync_generation: 0,
            freeze_pull_ms: None,
            member_came_up: false,
            timers_due: Vec::new(),
            wrong_key_logged: HashSet::new(),
            outputs: Vec::new(),
            events: Vec::new(),
            stats: NodeStats::default(),
            now_ms: 0,
            left: false,
        };
        let departed: Vec<MemberId> = node
            .store
            .iter()
            .filter_map(|r| match r {
                Rumor::Departure(d) => Some(d.member_id),
                _ => None,
            })
            .collect();
        for id in departed {
            node.membership.ban(id);
        }
        node
    }

    pub fn identity(&self) -> &Identity {
        self.membership.identity()
    }

    pub const fn config(&self) -> &GossipConfig {
        &self.config
    }

    pub const fn store(&self) -> &Store {
        &self.store
    }

    pub const fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// When an anti-entropy exchange with a peer last completed (`None`: never since start).
    pub const fn last_sync_ms(&self) -> Option<u64> {
        self.last_sync_ms
    }

    /// Whether this node has learned the ring as far as it can tell: it completed an
    /// anti-entropy exchange (it holds every rumor that peer had) and has heard of a member at
    /// every configured peer address (the election engine's early end of `settle`).
    pub fn knows_ring(&self) -> bool {
        if self.last_sync_ms.is_none() {
            return false;
        }
        let unheard = |p: &&SocketAddr| !self.by_addr.contains_key(*p);
        if !self.peers.iter().any(|p| unheard(&p)) {
            return true;
        }
        // A peer that crashed before we started is never seen up, but the ring may have told
        // us it is down, or a service rumor we hold (persisted from before a restart) names its
        // address: that is hearing of it too, and the election counts it as down (else we
        // would wait out the fixed settle).
        let from_ring = self.membership.members().map(|(identity, _)| identity.addr);
        let from_services = self.store.iter().filter_map(|rumor| match rumor {
            Rumor::Service(s) if !s.tombstone => s.sys.gossip_addr(),
            _ => None,
        });
        let known: HashSet<SocketAddr> = from_ring.chain(from_services).collect();
        self.peers.iter().filter(unheard).all(|p| known.contains(p))
    }

    pub const fn local_health(&self) -> u32 {
        self.membership.local_health()
    }

    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    pub fn drain_events(&mut self) -> std::vec::Drain<'_, NodeEvent> {
        self.events.drain(..)
    }

    /// Outputs produced but not yet drained.
    pub fn pending_outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Counts input the transport refused before the node saw it.
    pub fn count_drop(&mut self, reason: &'static str) {
        self.stats.drop(reason);
    }

    /// Joins the ring: contacts the peers, pulls their rumors once, arms the periodic timers.
    pub fn start(&mut self, now_ms: u64, peers: Vec<SocketAddr>) {
        self.now_ms = now_ms;
        let me = self.identity().addr;
        self.peers = peers.into_iter().filter(|p| *p != me).collect();
        for peer in self.peers.clone() {
            self.membership.announce(peer);
        }
        self.flush_swim();
        // The first peer hands us its rumors and every member it knows: with the membership in
        // one exchange, N members started together through one seed know each other after a
        // few membership exchanges, not after SWIM has met every pair (about N probe periods).
        if let Some(&first) = self.peers.first() {
            self.start_sync(first);
            self.start_member_sync(first);
        }
        self.member_sync_delay = self.config.swim.probe_period;
        for (timer, base) in [
            (NodeTimer::Sync, self.config.sync_interval),
            (
                NodeTimer::MemberSync(self.member_sync_generation),
                self.config.swim.probe_period,
            ),
            (NodeTimer::Heal, self.config.swim.probe_period),
            (NodeTimer::Maintenance, self.config.maintenance_interval),
        ] {
            // Spread the periodic work so members started together do not act in lockstep.
            let after = base.mul_f64(self.rng.random_range(0.5..1.0));
            self.schedule(after, timer);
        }
        self.queue_all_own_rumors();
    }

    /// Replaces the configured peers (from `--peer-watch-file`); new ones are announced to.
    pub fn set_peers(&mut self, now_ms: u64, peers: Vec<SocketAddr>) {
        self.now_ms = now_ms;
        let me = self.identity().addr;
        let fresh: Vec<SocketAddr> = peers
            .iter()
            .copied()
            .filter(|p| *p != me && !self.peers.contains(p))
            .collect();
        self.peers = peers.into_iter().filter(|p| *p != me).collect();
        if !fresh.is_empty() {
            // New peers get the quick heals too (see `next_heal_delay`).
            self.unheard_heal_delay = None;
        }
        for peer in fresh {
            self.membership.announce(peer);
        }
        self.flush_swim();
    }

    /// Leaves the ring gracefully (peers see this member confirmed down at once).
    pub fn leave(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.left = true;
        self.membership.leave();
        self.flush_swim();
    }

    pub fn handle_timer(&mut self, now_ms: u64, timer: NodeTimer) {
        let lateness = self.lateness(&timer, now_ms);
        self.advance_clock(now_ms);
        self.after_timer_fired_late(lateness);
        match timer {
            NodeTimer::Swim(t) => self.membership.handle_timer(t),
            NodeTimer::RumorGossip => self.gossip_tick(),
            NodeTimer::Sync => self.sync_timer(now_ms),
            NodeTimer::MemberSync(generation) => self.member_sync_timer(generation),
            NodeTimer::Heal => {
                let next = self.next_heal_delay();
                self.reschedule(NodeTimer::Heal, next);
                self.heal();
            }
            NodeTimer::Maintenance => {
                self.reschedule(NodeTimer::Maintenance, self.config.maintenance_interval);
                self.maintenance();
            }
            NodeTimer::NameChallenge(id) => self.name_challenge_expired(id),
        }
        self.flush_swim();
    }

    fn reschedule(&mut self, timer: NodeTimer, base: Duration) {
        if self.left {
            return;
        }
        let after = base.mul_f64(self.rng.random_range(0.9..1.1));
        self.schedule(after, timer);
    }

    /// A UDP datagram arrived.
    pub fn handle_datagram(&mut self, now_ms: u64, from: SocketAddr, bytes: &[u8]) {
        self.advance_clock(now_ms);
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if bytes.len() > self.config.max_datagram {
            self.stats.drop("too_big");
            return;
        }
        // A member standing in for one that predates envelope v2 refuses it as such a one does.
        if bytes.first() == Some(&VERSION_2) && !self.config.swim.wire_v2 {
            self.stats.drop("bad_version");
            return;
        }
        let Some((body, key)) = self.open(from, bytes) else {
            return;
        };
        if self.keyring.is_encrypted() {
            self.peer_keys.insert(from, key);
        }
        self.reached(from);
        let datagram = match Datagram::decode(&body) {
            Ok(d) => d,
            Err(e) => {
                self.stats.drop(e.reason());
                return;
            }
        };
        if let Some(swim) = datagram.swim {
            self.membership.set_now(now_ms);
            self.membership.set_source(from);
            if let Err(drop) = self.membership.handle_data(swim) {
                self.stats.drop(drop.reason());
                if drop.reason() == "departed_sender" {
                    return;
                }
            }
        }
        let mut fresh = Vec::new();
        for encoded in datagram.rumors {
            self.stats.rumors_received += 1;
            match wire::decode_rumor(encoded) {
                Ok(rumor) => {
                    let key = rumor.key();
                    if matches!(self.accept(rumor), Insert::New | Insert::Updated) {
                        fresh.push(key);
                    }
                }
                Err(_) => self.stats.drop("malformed_rumor"),
            }
        }
        self.forward_fresh(from, &fresh);
        self.flush_swim();
    }

    /// A TCP frame arrived on a connection a peer opened; returns the sealed reply, if any.
    pub fn handle_frame(&mut self, now_ms: u64, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        self.advance_clock(now_ms);
        match self.keyring.open(bytes) {
            Ok(opened) => self.handle_opened_frame(now_ms, opened, bytes.len()),
            Err(e) => {
                self.stats.frames_received += 1;
                self.stats.bytes_received += bytes.len() as u64;
                self.refused(from, e.reason());
                None
            }
        }
    }

    /// A frame a peer's connection task could not open (`reason`), `len` bytes long.
    pub fn frame_refused(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        reason: &'static str,
        len: usize,
    ) {
        self.advance_clock(now_ms);
        self.stats.frames_received += 1;
        self.stats.bytes_received += len as u64;
        self.refused(from, reason);
    }

    /// A frame the peer's connection task opened with our keyring (`len` bytes sealed);
    /// returns the sealed reply, if any.
    pub fn handle_opened_frame(
        &mut self,
        now_ms: u64,
        opened: Opened,
        len: usize,
    ) -> Option<Vec<u8>> {
        self.advance_clock(now_ms);
        self.stats.frames_received += 1;
        self.stats.bytes_received += len as u64;
        let (body, key) = self.admit(opened)?;
        let frame = match Frame::decode(&body) {
            Ok(f) => f,
            Err(e) => {
                self.stats.drop(e.reason());
                return None;
            }
        };
        let reply = self.answer_frame(frame);
        // Answered in the request's key: the asker surely holds it.
        let sealed = reply.map(|frame| self.seal_frame(Some(key), &frame));
        self.flush_swim();
        sealed
    }

    /// The reply to a frame this node sent on `session` arrived.
    pub fn handle_reply(&mut self, now_ms: u64, session: SessionId, bytes: &[u8]) {
        self.advance_clock(now_ms);
        self.stats.frames_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        let Some(state) = self.sessions.remove(&session) else {
            return;
        };
        let Some((body, _)) = self.open(state.peer, bytes) else {
            return;
        };
        let frame = match Frame::decode(&body) {
            Ok(f) => f,
            Err(e) => {
                self.stats.drop(e.reason());
                return;
            }
        };
        self.continue_session(now_ms, session, state, frame);
        self.flush_swim();
    }

    /// A TCP session could not be opened or broke.
    pub fn session_failed(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    /// Every input starts here.
    fn advance_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Every timer goes through here, so a late one can be told (see `after_timer_fired_late`).
    fn schedule(&mut self, after: Duration, timer: NodeTimer) {
        let due_ms = self.now_ms + after.as_millis() as u64;
        self.timers_due.push((timer.clone(), due_ms));
        self.outputs.push(Output::Schedule { after, timer });
    }

    /// How late `timer` fired: its earliest recorded due time is taken off the list.
    fn lateness(&mut self, timer: &NodeTimer, now_ms: u64) -> u64 {
        let earliest = self
            .timers_due
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| t == timer)
            .min_by_key(|(_, (_, due))| *due)
            .map(|(i, _)| i);
        earliest.map_or(0, |i| {
            now_ms.saturating_sub(self.timers_due.swap_remove(i).1)
        })
    }

    /// Expiry: members down past `dead_member_ttl` (with their rumors), tombstones past
    /// `tombstone_ttl`, sessions never answered, and the indexes and keys of what is gone.
    fn maintenance(&mut self) {
        let ttl = self.config.swim.dead_member_ttl.as_millis() as u64;
        let now = self.now_ms;
        let mut expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|r| r.health == Health::Confirmed && now.saturating_sub(r.since_ms) >= ttl)
            .map(|r| r.identity.id)
            .collect();
        // Events in a fixed order, not the maps' (same seed, same run).
        expired.sort_unstable();
        for id in expired {
            if let Some(record) = self.members.remove(&id) {
                self.unindex_name(id, &record.identity.node);
            }
            let mut keys = self.store.forget_member_for_good(id, now);
            keys.sort_unstable();
            for key in keys {
                self.events.push(NodeEvent::RumorChanged(key));
            }
        }
        let tombstone_ttl = self.config.tombstone_ttl.as_millis() as u64;
        let mut keys = self.store.expire_tombstones(now, tombstone_ttl);
        keys.sort_unstable();
        for key in keys {
            self.events.push(NodeEvent::RumorChanged(key));
        }
        self.expire_sessions(now);
        // A name is reported again if it becomes shared again after being held by one member.
        let by_node = &self.by_node;
        self.name_conflicts_reported
            .retain(|name| by_node.get(name).is_some_and(|ids| ids.len() > 1));
        // Addresses are indexed for known members only (expired and replaced ones go).
        let members = &self.members;
        self.by_addr.retain(|_, id| members.contains_key(id));
        // Keys are remembered for members and configured peers only.
        let (by_addr, peers) = (&self.by_addr, &self.peers);
        self.peer_keys
            .retain(|addr, _| by_addr.contains_key(addr) || peers.contains(addr));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(super) fn node() -> Node {
        let identity = Identity {
            id: MemberId([1; 16]),
            incarnation: 1,
            node: Arc::from("n1"),
            addr: SocketAddr::from(([127, 0, 0, 1], 9638)),
            persistent: false,
            named: true,
        };
        Node::new(
            identity,
            GossipConfig::lan(),
            Keyring::cleartext(),
            Store::new(),
            7,
        )
    }

    #[test]
    fn addresses_of_forgotten_members_are_unindexed() {
        let mut node = node();
        node.by_addr
            .insert(SocketAddr::from(([10, 0, 0, 9], 9638)), MemberId([9; 16]));
        node.maintenance();
        assert!(node.by_addr.is_empty());
    }
}
