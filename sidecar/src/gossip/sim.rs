//! A deterministic network and clock for many `Node`s in one process: seeded loss and delay,
//! partitions, blocked links, paused and crashed members. Tests assert protocol behaviour in
//! simulated time; `gossip-sim` measures convergence at 1,000+ members. Same seed, same run.
//!
//! UDP datagrams may be lost; TCP frames are not (TCP retransmits), but both stop at a partition,
//! a blocked link or a crashed or paused member.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::crypto::Keyring;
use super::member::{Identity, MemberId};
use super::node::{GossipConfig, Node, NodeEvent, NodeTimer, Output, SessionId};
use super::rumor::Rumor;
use super::store::{Insert, Store};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub members: usize,
    /// Probability that a UDP datagram is lost.
    pub loss: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub seed: u64,
    pub gossip: GossipConfig,
}

impl SimConfig {
    pub fn new(members: usize, seed: u64) -> SimConfig {
        SimConfig {
            members,
            loss: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            seed,
            gossip: GossipConfig::lan(),
        }
    }
}

enum Delivery {
    Timer {
        node: usize,
        epoch: u64,
        timer: NodeTimer,
    },
    Datagram {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Frame {
        to: usize,
        from: usize,
        session: SessionId,
        bytes: Vec<u8>,
        expect_reply: bool,
    },
    Reply {
        to: usize,
        session: SessionId,
        bytes: Vec<u8>,
    },
    SessionFailed {
        to: usize,
        session: SessionId,
    },
}

/// Called for every node event: (time ms, member index, event).
pub type Observer = Box<dyn FnMut(u64, usize, &NodeEvent)>;

/// The application beside each member (an election engine, a census): called with (time ms,
/// member index, its node) after every delivery to a running, unpaused member and after it
/// starts; the rumors it returns are published at that member.
pub type AppHook = Box<dyn FnMut(u64, usize, &Node) -> Vec<Rumor>>;

pub struct Sim {
    config: SimConfig,
    now_ms: u64,
    nodes: Vec<Option<Node>>,
    identities: Vec<Identity>,
    epochs: Vec<u64>,
    /// Timers delivered to each member: its wake-ups, had it no other input.
    timers_fired: Vec<u64>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    deliveries: HashMap<u64, Delivery>,
    seq: u64,
    rng: StdRng,
    keyrings: Vec<Keyring>,
    group: Vec<u32>,
    blocked: HashSet<(usize, usize)>,
    paused: HashSet<usize>,
    observer: Option<Observer>,
    app: Option<AppHook>,
    /// The rumor store of each crashed member as it was at the crash (its data dir).
    disk: Vec<Option<Vec<u8>>>,
    /// Members standing in for ones that predate envelope v2 (see `set_wire_v2`).
    without_v2: HashSet<usize>,
    /// Datagrams dropped by the simulated loss.
    pub lost: u64,
}

/// Member `i` as first created: a fresh id, node name `m<i>` given explicitly (as pod names
/// are), and an incarnation above every earlier member's (they start at the wall-clock second).
fn new_identity(rng: &mut StdRng, i: usize) -> Identity {
    Identity {
        id: MemberId::random(rng),
        // Realistic size on the wire.
        incarnation: 1_790_000_000 + i as u64,
        node: Arc::from(format!("m{i}").as_str()),
        addr: sim_addr(i),
        persistent: false,
        named: true,
    }
}

/// The loopback address of member `i` (distinct per member; never a real target).
pub fn sim_addr(i: usize) -> SocketAddr {
    let n = i as u32 + 1;
    let ip = Ipv4Addr::new(127, (n >> 16) as u8 + 1, (n >> 8) as u8, n as u8);
    SocketAddr::new(ip.into(), 9638)
}

impl Sim {
    /// Creates the members (not started: see `start_all` / `start`).
    pub fn new(config: SimConfig) -> Sim {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.members;
        let mut identities = Vec::with_capacity(n);
        for i in 0..n {
            identities.push(new_identity(&mut rng, i));
        }
        let by_addr = identities
            .iter()
            .enumerate()
            .map(|(i, id)| (id.addr, i))
            .collect();
        Sim {
            now_ms: 1_000_000,
            nodes: (0..n).map(|_| None).collect(),
            identities,
            epochs: vec![0; n],
            timers_fired: vec![0; n],
            by_addr,
            queue: BinaryHeap::new(),
            deliveries: HashMap::new(),
            seq: 0,
            rng,
            keyrings: vec![Keyring::cleartext(); n],
            group: vec![0; n],
            blocked: HashSet::new(),
            paused: HashSet::new(),
            observer: None,
            app: None,
            disk: vec![None; n],
            without_v2: HashSet::new(),
            lost: 0,
            config,
        }
    }

    pub const fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub const fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn set_observer(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Installs the application run beside every member (see `AppHook`).
    pub fn set_app_hook(&mut self, hook: AppHook) {
        self.app = Some(hook);
    }

    /// Runs the application hook of member `i` now (also done after every delivery).
    pub fn run_app(&mut self, i: usize) {
        let now = self.now_ms;
        if self.paused.contains(&i) {
            return;
        }
        let (Some(hook), Some(node)) = (self.app.as_mut(), self.nodes[i].as_mut()) else {
            return;
        };
        let rumors = hook(now, i, node);
        if rumors.is_empty() {
            return;
        }
        for rumor in rumors {
            if let Err(e) = node.publish(now, rumor) {
                tracing::warn!(member = i, error = %e, "sim application rumor refused");
            }
        }
        self.collect(i);
    }

    /// Whether members `a` and `b` can currently exchange messages (both running and unpaused,
    /// same side of any partition, link not blocked).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        if a == b {
            return self.nodes[a].is_some() && !self.paused.contains(&a);
        }
        self.reachable(a, b) && self.reachable(b, a)
    }

    /// Timers delivered to member `i` so far.
    pub fn timers_fired(&self, i: usize) -> u64 {
        self.timers_fired[i]
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.paused.contains(&i)
    }

    pub fn identity(&self, i: usize) -> &Identity {
        &self.identities[i]
    }

    pub fn set_persistent(&mut self, i: usize, persistent: bool) {
        self.identities[i].persistent = persistent;
    }

    /// Sets the node name member `i` starts with next; `named`: given explicitly, not a
    /// default host name.
    pub fn set_node_name(&mut self, i: usize, name: &str, named: bool) {
        self.identities[i].node = Arc::from(name);
        self.identities[i].named = named;
    }

    /// Adds a member at a new address (not started), with a fresh id and an incarnation above
    /// every existing member's, on a cleartext ring until `set_keyring`; returns its index.
    pub fn add_member(&mut self) -> usize {
        let i = self.nodes.len();
        let mut identity = new_identity(&mut self.rng, i);
        let newest = self.identities.iter().map(|id| id.incarnation).max();
        identity.incarnation = identity.incarnation.max(newest.unwrap_or(0) + 1);
        self.by_addr.insert(identity.addr, i);
        self.identities.push(identity);
        self.nodes.push(None);
        self.epochs.push(0);
        self.timers_fired.push(0);
        self.keyrings.push(Keyring::cleartext());
        self.group.push(0);
        self.disk.push(None);
        i
    }

    /// Whether member `i`, from its next start, advertises and uses envelope v2 and compact
    /// SWIM headers (on by default); off, it stands in for a member predating them.
    pub fn set_wire_v2(&mut self, i: usize, on: bool) {
        if on {
            self.without_v2.remove(&i);
        } else {
            self.without_v2.insert(i);
        }
    }

    pub fn set_keyring(&mut self, i: usize, keyring: Keyring) {
        if let Some(node) = self.nodes[i].as_mut() {
            node.set_keyring(keyring.clone());
        }
        self.keyrings[i] = keyring;
        self.collect(i);
    }

    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].as_ref()
    }

    pub fn node_mut(&mut self, i: usize) -> Option<&mut Node> {
        self.nodes[i].as_mut()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// Starts member `i`, joining through `peers` (member indices).
    pub fn start(&mut self, i: usize, peers: &[usize]) {
        self.start_with_store(i, peers, Store::new());
    }

    fn start_with_store(&mut self, i: usize, peers: &[usize], store: Store) {
        let seed = self.rng.random();
        let mut config = self.config.gossip.clone();
        config.swim.wire_v2 &= !self.without_v2.contains(&i);
        let mut node = Node::new(
            self.identities[i].clone(),
            config,
            self.keyrings[i].clone(),
            store,
            seed,
        );
        let peers = peers.iter().map(|&p| self.identities[p].addr).collect();
        node.start(self.now_ms, peers);
        self.epochs[i] += 1;
        self.nodes[i] = Some(node);
        self.collect(i);
        self.run_app(i);
    }

    /// Starts every member; each joins through member 0 and one random earlier member.
    pub fn start_all(&mut self) {
        for i in 0..self.len() {
            let mut peers = vec![0];
            if i > 1 {
                peers.push(self.rng.random_range(1..i));
            }
            self.start(i, &peers);
        }
    }

    /// Starts every member with a membership table already filled, as after a completed join
    /// (for large rings, where the join storm itself is not what is being measured).
    pub fn start_all_formed(&mut self) {
        let all = self.identities.clone();
        for i in 0..self.len() {
            self.start(i, &[0]);
            let now = self.now_ms;
            if let Some(node) = self.nodes[i].as_mut() {
                node.assume_members(now, &all);
            }
            self.collect(i);
        }
    }

    /// Crashes member `i` (no goodbye; its timers and in-flight messages are lost). Its rumor
    /// store is kept as its data dir would (see `restart_from_disk`).
    pub fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            self.disk[i] = Some(node.store().snapshot());
        }
        self.epochs[i] += 1;
    }

    /// Restarts a crashed member with the same id and a higher incarnation.
    pub fn restart(&mut self, i: usize, peers: &[usize]) {
        self.identities[i].incarnation += 1;
        self.start(i, peers);
    }

    /// Restarts a crashed member like `restart`, with the rumor store it had when it crashed
    /// (a supervisor that reloads its persisted store).
    pub fn restart_from_disk(&mut self, i: usize, peers: &[usize]) {
        let now = self.now_ms;
        let store = self.disk[i]
            .take()
            .and_then(|bytes| Store::from_snapshot(&bytes, now).ok())
            .unwrap_or_default();
        self.identities[i].incarnation += 1;
        self.start_with_store(i, peers, store);
    }

    /// Replaces member `i` with a new member under the same node name and address: a fresh id
    /// and a higher incarnation, as when a host is rebuilt and its data dir is lost. Returns the
    /// old id.
    pub fn replace_member(&mut self, i: usize, peers: &[usize]) -> MemberId {
        let old = self.identities[i].id;
        self.crash(i);
        self.identities[i].id = MemberId::random(&mut self.rng);
        self.identities[i].incarnation += 1;
        self.start(i, peers);
        old
    }

    /// Publishes a rumor at member `i` and sends whatever that triggers at once.
    pub fn publish(&mut self, i: usize, rumor: Rumor) -> crate::error::Result<Insert> {
        let now = self.now_ms;
        let Some(node) = self.nodes[i].as_mut() else {
            return Err(crate::error::Error::invalid(
                format!("sim member {i}"),
                "expected a running member to publish at, found it stopped",
            ));
        };
        let outcome = node.publish(now, rumor);
        self.collect(i);
        outcome
    }

    /// Graceful shutdown.
    pub fn leave(&mut self, i: usize) {
        let now = self.now_ms;
        if let Some(node) = self.nodes[i].as_mut() {
            node.leave(now);
        }
        self.collect(i);
    }

    /// A paused member neither receives nor acts until resumed (a stopped process).
    pub fn pause(&mut self, i: usize) {
        self.paused.insert(i);
    }

    pub fn resume(&mut self, i: usize) {
        self.paused.remove(&i);
    }

    /// Splits members into groups that cannot reach each other.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (g, members) in groups.iter().enumerate() {
            for &m in *members {
                self.group[m] = g as u32 + 1;
            }
        }
    }

    pub fn heal_partition(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    /// Blocks the link between two members in both directions.
    pub fn block(&mut self, a: usize, b: usize) {
        self.blocked.insert((a.min(b), a.max(b)));
    }

    pub fn unblock(&mut self, a: usize, b: usize) {
        self.blocked.remove(&(a.min(b), a.max(b)));
    }

    fn reachable(&self, from: usize, to: usize) -> bool {
        self.group[from] == self.group[to]
            && !self.blocked.contains(&(from.min(to), from.max(to)))
            && !self.paused.contains(&to)
            && self.nodes[to].is_some()
    }

    fn delay_ms(&mut self) -> u64 {
        let min = self.config.min_delay.as_millis() as u64;
        let max = self.config.max_delay.as_millis() as u64;
        if max <= min {
            min
        } else {
            self.rng.random_range(min..=max)
        }
    }

    fn push(&mut self, at: u64, delivery: Delivery) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.deliveries.insert(self.seq, delivery);
    }

    /// Moves a node's outputs into the network and its events to the observer.
    fn collect(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let outputs: Vec<Output> = node.drain_outputs().collect();
        let events: Vec<NodeEvent> = node.drain_events().collect();
        let from_addr = self.identities[i].addr;
        for output in outputs {
            match output {
                Output::Schedule { after, timer } => {
                    let at = self.now_ms + after.as_millis() as u64;
                    let epoch = self.epochs[i];
                    self.push(
                        at,
                        Delivery::Timer {
                            node: i,
                            epoch,
                            timer,
                        },
                    );
                }
                Output::Datagram { to, bytes } => {
                    let Some(&to) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
                        self.lost += 1;
                        continue;
                    }
                    let at = self.now_ms + self.delay_ms();
                    self.push(
                        at,
                        Delivery::Datagram {
                            to,
                            from: from_addr,
                            bytes,
                        },
                    );
                }
                Output::Frame {
                    to,
                    session,
                    bytes,
                    expect_reply,
                } => {
                    let at = self.now_ms + self.delay_ms();
                    match self.by_addr.get(&to) {
                        Some(&to) => self.push(
                            at,
                            Delivery::Frame {
                                to,
                                from: i,
                                session,
                                bytes,
                                expect_reply,
                            },
                        ),
                        None => self.push(at, Delivery::SessionFailed { to: i, session }),
                    }
                }
            }
        }
        if let Some(observer) = self.observer.as_mut() {
            for event in &events {
                observer(self.now_ms, i, event);
            }
        }
    }

    /// Processes everything due up to `until_ms`.
    pub fn run_until_ms(&mut self, until_ms: u64) {
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > until_ms {
                break;
            }
            self.queue.pop();
            self.now_ms = self.now_ms.max(at);
            let Some(delivery) = self.deliveries.remove(&seq) else {
                continue;
            };
            self.deliver(delivery);
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    pub fn run_for(&mut self, duration: Duration) {
        self.run_until_ms(self.now_ms + duration.as_millis() as u64);
    }

    /// Runs until `done` holds (checked every `step`) or `limit` passes; returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let deadline = self.now_ms + limit.as_millis() as u64;
        while self.now_ms < deadline {
            if done(self) {
                return true;
            }
            self.run_for(step);
        }
        done(self)
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now_ms;
        let target = match &delivery {
            Delivery::Timer { node, .. } => *node,
            Delivery::Datagram { to, .. }
            | Delivery::Frame { to, .. }
            | Delivery::Reply { to, .. }
            | Delivery::SessionFailed { to, .. } => *to,
        };
        let _span = tracing::debug_span!("sim", member = target, t = now).entered();
        self.deliver_to_node(delivery);
        self.run_app(target);
    }

    fn deliver_to_node(&mut self, delivery: Delivery) {
        let now = self.now_ms;
        match delivery {
            Delivery::Timer { node, epoch, timer } => {
                if epoch != self.epochs[node] {
                    return;
                }
                if self.paused.contains(&node) {
                    // A paused process acts on its timers when it resumes.
                    self.push(now + 100, Delivery::Timer { node, epoch, timer });
                    return;
                }
                if let Some(n) = self.nodes[node].as_mut() {
                    self.timers_fired[node] += 1;
                    n.handle_timer(now, timer);
                    self.collect(node);
                }
            }
            Delivery::Datagram { to, from, bytes } => {
                let Some(&from_idx) = self.by_addr.get(&from) else {
                    return;
                };
                if !self.reachable(from_idx, to) {
                    return;
                }
                if let Some(n) = self.nodes[to].as_mut() {
                    n.handle_datagram(now, from, &bytes);
                    self.collect(to);
                }
            }
            Delivery::Frame {
                to,
                from,
                session,
                bytes,
                expect_reply,
            } => {
                if !self.reachable(from, to) {
                    if expect_reply {
                        self.push(now + 1, Delivery::SessionFailed { to: from, session });
                    }
                    return;
                }
                let from_addr = self.identities[from].addr;
                let reply = match self.nodes[to].as_mut() {
                    Some(n) => n.handle_frame(now, from_addr, &bytes),
                    None => None,
                };
                self.collect(to);
                if expect_reply {
                    let at = now + self.delay_ms();
                    match reply {
                        Some(bytes) if self.reachable(to, from) => self.push(
                            at,
                            Delivery::Reply {
                                to: from,
                                session,
                                bytes,
                            },
                        ),
                        _ => self.push(at, Delivery::SessionFailed { to: from, session }),
                    }
                }
            }
            Delivery::Reply { to, session, bytes } => {
                if let Some(n) = self.nodes[to].as_mut() {
                    n.handle_reply(now, session, &bytes);
                    self.collect(to);
                }
            }
            Delivery::SessionFailed { to, session } => {
                if let Some(n) = self.nodes[to].as_mut() {
                    n.session_failed(session);
                }
            }
        }
    }

    /// How member `observer` sees member `subject`.
    pub fn health(&self, observer: usize, subject: usize) -> Option<super::member::Health> {
        self.nodes[observer]
            .as_ref()?
            .health_of(self.identities[subject].id)
    }

    /// Whether every running member in `members` sees every other one of them alive.
    pub fn all_see_alive(&self, members: &[usize]) -> bool {
        members.iter().all(|&a| {
            members.iter().all(|&b| {
                a == b
                    || !self.is_running(a)
                    || self.health(a, b) == Some(super::member::Health::Alive)
            })
        })
    }
}
