//! The supervisor: one task (`run`, the loop) owns the gossip `Node` and feeds it socket
//! input and timers, builds what the HTTP gateway serves when asked (`gateway`), persists
//! identity and rumors (atomically, debounced, written off the loop), reloads ring keys and the
//! peer watch file and looks peers up (`peers`, `ring_keys`), supervises the loaded services
//! (`services`, persisted in `specs`), answers the ctl gateway (`ctl_answers`), and leaves the
//! ring cleanly on SIGTERM.
//!
//! Nothing else holds gossip state: other tasks talk to this one through channels. The files:
//! `config` (what `hab sup run` was given), `identity` (directories, member id, incarnation),
//! `ring_keys`, `peers` (lookups and the loop's slow chores), `gateway` (the HTTP documents),
//! `lock` (one supervisor per root).

mod config;
mod ctl_answers;
pub mod ctl_gateway;
mod gateway;
mod identity;
pub mod lock;
mod peers;
mod ring_keys;
mod services;
pub mod specs;
mod updates;

pub use config::{PeerSpec, SupervisorConfig, SUP_VERSION};
use identity::{advertised_ip, persist_incarnation};
pub use identity::{hostname, load_identity, SupDirs};
use peers::Housekeeping;
use ring_keys::RingKeys;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};

use crate::binds::{self};
use crate::census::{self, CensusInput};
use crate::deadline::Deadline;
use crate::gossip::member::Identity;
use crate::gossip::node::{Node, NodeEvent, NodeTimer, Output, SessionId};
use crate::gossip::rumor::RumorKey;
use crate::gossip::store;
use crate::gossip::transport::{self, Inbound, Outgoing};
use crate::metrics::Metrics;
use crate::package::Package;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The rumor store is written at most this often...
const PERSIST_DEBOUNCE: Duration = Duration::from_secs(1);
/// ... and, when a snapshot takes long to make (a large store), at most a 1/PERSIST_TIME_SHARE
/// share of the loop's time goes to making them: one that took `t` waits `t * 20` for the
/// next. (The write itself, ending in an fsync, runs off the loop.)
const PERSIST_TIME_SHARE: u32 = 20;
/// The longest wait between writes of a changed store.
const PERSIST_MAX_WAIT: Duration = Duration::from_secs(60);

/// How long after a write that took `took` the next one may start.
fn persist_wait(took: Duration) -> Duration {
    took.saturating_mul(PERSIST_TIME_SHARE)
        .clamp(PERSIST_DEBOUNCE, PERSIST_MAX_WAIT)
}

/// Timers the node asked for, in due order.
#[derive(Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    timers: HashMap<u64, NodeTimer>,
    seq: u64,
}

impl TimerQueue {
    fn push(&mut self, at: Instant, timer: NodeTimer) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.timers.insert(self.seq, timer);
    }

    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<NodeTimer> {
        let Reverse((at, seq)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.timers.remove(&seq)
    }
}

/// How the supervisor ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT.
    Stopped,
    /// `hab sup restart`: the caller starts the supervisor again, same binary and arguments.
    Restart,
}

/// Runs the supervisor until SIGTERM/SIGINT or a restart request. Returns once its services
/// stopped and the departure has been sent.
pub async fn run(config: SupervisorConfig) -> anyhow::Result<Exit> {
    let dirs = SupDirs::new(&config.root);
    let (member_id, incarnation) = load_identity(&dirs)?;
    let mut ring_keys = RingKeys::new(&config)?;
    let keyring = ring_keys.keyring(true)?;
    // A bad PKG or --bind fails before anything listens.
    match &config.package {
        Some(ident) => {
            binds::validate(&Package::resolve(&config.root, ident)?, &config.binds)?;
        }
        None if !config.binds.is_empty() => {
            anyhow::bail!("--bind needs a package to bind (hab sup run PKG --bind ...)")
        }
        None => {}
    }
    if let Some(problem) = specs::update_settings(&services::spec_from_run(&config, "")).problem() {
        anyhow::bail!(problem);
    }

    let udp = UdpSocket::bind(config.listen_gossip)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-gossip {}: {e}", config.listen_gossip))?;
    let tcp = TcpListener::bind(config.listen_gossip)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-gossip {} (tcp): {e}", config.listen_gossip))?;
    let ctl_listener = TcpListener::bind(config.listen_ctl)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-ctl {}: {e}", config.listen_ctl))?;
    let http_listener = TcpListener::bind(config.listen_http)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-http {}: {e}", config.listen_http))?;
    // `try_send_to` sends only once the reactor has seen the socket writable; on one thread
    // it polls only when the loop waits, so the first announces were dropped (a fast join
    // then waited for a heal).
    udp.writable().await?;
    let gossip_port = udp.local_addr()?.port();
    let identity = Identity {
        id: member_id,
        incarnation,
        node: Arc::from(config.node_name.clone().unwrap_or_else(hostname).as_str()),
        addr: SocketAddr::new(advertised_ip(&config), gossip_port),
        persistent: config.permanent_peer,
        named: config.node_name.is_some(),
    };
    let span = tracing::info_span!("sup", member = %identity.id);
    let _entered = span.enter();
    tracing::info!(
        addr = %identity.addr, node = %identity.node, incarnation,
        encrypted = keyring.is_encrypted(), "supervisor starting"
    );

    let (mut store, quarantined) = store::load_or_quarantine(&dirs.rumor_file(), now_ms());
    if let Some(aside) = quarantined {
        tracing::warn!(moved_to = %aside.display(), "corrupt rumor store moved aside");
    }
    // Our own rumors from an earlier life are re-published fresh below.
    store.forget_member(identity.id);
    let mut node = Node::new(
        identity.clone(),
        config.gossip.clone(),
        keyring,
        store,
        rand::rng().random(),
    );

    let (inbound_tx, mut inbound_rx) = mpsc::channel::<Inbound>(4096);
    let udp = Arc::new(udp);
    transport::spawn_udp_receiver(Arc::clone(&udp), inbound_tx.clone());
    // Peers' frames wait in a queue of their own: a TCP flood never crowds out SWIM.
    let (frames_tx, mut frames_rx) = mpsc::channel::<Inbound>(transport::FRAME_QUEUE);
    let (keys_tx, keys_rx) = tokio::sync::watch::channel(node.keyring().clone());
    transport::spawn_tcp_listener(tcp, frames_tx, transport::TcpLimits::default(), keys_rx);
    let (mut gateway, snapshot) = crate::http::snapshot::channel();
    crate::http::spawn(http_listener, snapshot, config.http_auth_token.clone());
    let ctl_secret = ctl_gateway::load_or_create_secret(
        &dirs.sup.join("CTL_SECRET"),
        config.ctl_secret.as_deref(),
    )?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ctl_gateway::Ask>(16);
    let ctl_counters = Arc::new(ctl_gateway::CtlCounters::default());
    ctl_gateway::spawn(
        ctl_listener,
        ctl_secret,
        ctl_tx,
        Arc::clone(&ctl_counters),
        ctl_gateway::CtlLimits::default(),
    );

    let mut housekeeping = Housekeeping::new(&config, ring_keys, keys_tx);
    housekeeping.resolve_at_start().await;
    node.start(now_ms(), housekeeping.resolved.clone());
    let store_writer = store::StoreWriter::spawn(dirs.rumor_file());
    let election_tick = config.gossip.swim.gossip_interval;
    let (update_events, mut update_rx) = mpsc::channel::<updates::UpdateEvent>(64);
    let mut loop_state = LoopState {
        node,
        udp,
        inbound: inbound_tx,
        sessions: HashMap::new(),
        timers: TimerQueue::default(),
        metrics: Metrics::new(),
        ctl_counters,
        dirs,
        store_dirty: false,
        last_persist: Instant::now(),
        persist_wait: PERSIST_DEBOUNCE,
        store_writer,
        config: Arc::new(config),
        services: BTreeMap::new(),
        stopping: Vec::new(),
        service_events: Arc::new(Notify::new()),
        restart_requested: false,
        census_changes: gateway.census_changes(),
        view_dirty: true,
        // The first step starts the engines' clocks.
        election_dirty: true,
        election_at: None,
        election_tick,
        membership_seen: None,
        persist_at: None,
        update_events,
    };
    // `hab sup run PKG` loads PKG with the flags given (and saves its spec, replacing any
    // earlier one); the services saved before come back as they were.
    if let Some(ident) = &loop_state.config.package {
        let spec = services::spec_from_run(&loop_state.config, ident);
        let service = loop_state.prepare_service(spec.clone())?;
        specs::save(&loop_state.specs_dir(), service.name(), &spec)?;
        loop_state.insert_service(service);
    }
    loop_state.load_saved_specs();
    loop_state.after_input();

    // Created once: a signal stream made anew each turn would re-register every time.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    // Habitat's SIGHUP restarts the supervisor under its launcher, services kept; we have no
    // launcher, and user.toml applies by itself: log it rather than die (the default action).
    let mut sighup = signal(SignalKind::hangup())?;
    // One timer for everything the loop waits on, armed only when something is due.
    let mut deadline = Deadline::new();
    loop {
        let due = [
            loop_state.timers.next_due(),
            loop_state.persist_at,
            loop_state.election_at,
            loop_state.update_due(),
            housekeeping.next_due(),
            gateway.next_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        deadline.set(due);
        tokio::select! {
            Some(message) = inbound_rx.recv() => loop_state.on_inbound(message),
            Some(message) = frames_rx.recv() => loop_state.on_inbound(message),
            () = gateway.asked() => gateway.serve(Instant::now(), &mut loop_state),
            Some(ask) = ctl_rx.recv() => {
                let replies = loop_state.answer_ctl(ask.request);
                let _ = ask.reply.send(replies);
                if loop_state.restart_requested {
                    break;
                }
            }
            resolved = housekeeping.lookup_done() => {
                housekeeping.apply_lookup(&resolved, &mut loop_state.node);
            }
            () = deadline.expired() => {
                let now = Instant::now();
                loop_state.on_due(now);
                if housekeeping.next_due().is_some_and(|at| at <= now) {
                    housekeeping.run(now, &mut loop_state.node);
                }
                if gateway.next_due().is_some_and(|at| at <= now) {
                    gateway.serve(now, &mut loop_state);
                }
            }
            () = loop_state.service_events.notified() => loop_state.on_service_events(),
            Some(event) = update_rx.recv() => loop_state.on_update_event(event),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => tracing::info!("SIGHUP received: ignored, the supervisor runs on"),
        }
        if loop_state.after_input() {
            housekeeping.on_membership_change(&loop_state.node.members());
        }
    }
    loop_state.shut_down(&mut inbound_rx).await;
    tracing::info!("shutting down: leaving the ring");
    loop_state.node.leave(now_ms());
    loop_state.process_outputs();
    // The last word on disk, whatever the debounce says, after any write under way.
    let last = loop_state.node.store().snapshot();
    loop_state.store_writer.finish(last).await;
    Ok(if loop_state.restart_requested {
        Exit::Restart
    } else {
        Exit::Stopped
    })
}

struct LoopState {
    node: Node,
    /// What the ctl gateway's tasks counted (brought into `/metrics` when it is built).
    ctl_counters: Arc<ctl_gateway::CtlCounters>,
    config: Arc<SupervisorConfig>,
    /// The loaded services by name (the package's).
    services: BTreeMap<String, services::Service>,
    /// Tasks of stopped or unloaded services that have not ended yet.
    stopping: Vec<services::Stopping>,
    /// Woken when a service's task reports a status or ends.
    service_events: Arc<Notify>,
    /// `hab sup restart` asked: the loop ends once the answer is on its way.
    restart_requested: bool,
    /// Wakes HTTP requests waiting for the census to change.
    census_changes: crate::http::snapshot::CensusChanges,
    /// The census changed since the services last saw it.
    view_dirty: bool,
    /// An election rumor changed since the engines last stepped.
    election_dirty: bool,
    udp: Arc<UdpSocket>,
    inbound: mpsc::Sender<Inbound>,
    sessions: HashMap<SessionId, mpsc::Sender<Outgoing>>,
    timers: TimerQueue,
    metrics: Metrics,
    dirs: SupDirs,
    store_dirty: bool,
    last_persist: Instant,
    /// The wait after the last write (see `persist_wait`).
    persist_wait: Duration,
    store_writer: store::StoreWriter,
    /// When the dirty store is written (at most once per `PERSIST_DEBOUNCE`).
    persist_at: Option<Instant>,
    /// When the elections need a step with no input changed (see `Election::next_step`).
    election_at: Option<Instant>,
    /// A running election is stepped this often (the gossip interval).
    election_tick: Duration,
    /// The membership fingerprint and `knows_ring` as the census and elections last saw them.
    membership_seen: Option<(u64, bool)>,
    /// What update polls and installs report back (see `updates`).
    update_events: mpsc::Sender<updates::UpdateEvent>,
}

impl LoopState {
    fn on_inbound(&mut self, message: Inbound) {
        let now = now_ms();
        match message {
            Inbound::Datagram { from, bytes } => self.node.handle_datagram(now, from, &bytes),
            Inbound::Frame {
                opened,
                len,
                reply,
                budget,
                ..
            } => {
                let answer = self.node.handle_opened_frame(now, opened, len);
                drop(budget);
                let _ = reply.send(answer);
            }
            Inbound::FrameRefused { from, reason, len } => {
                self.node.frame_refused(now, from, reason, len);
            }
            Inbound::Reply { session, bytes } => {
                self.node.handle_reply(now, session, &bytes);
                // A conversation the node does not continue is over.
                let continues = self.node_outputs_mention(session);
                if !continues {
                    self.sessions.remove(&session);
                }
            }
            Inbound::SessionFailed { session } => {
                self.sessions.remove(&session);
                self.node.session_failed(session);
            }
            Inbound::Oversized => {
                // Counted like any other oversized input (the node never saw it).
                self.node.count_drop("too_big");
            }
            Inbound::ConnectionRefused => self.node.count_drop("connection_cap"),
        }
    }

    /// Brings what is derived from the node up to date after the loop handled an input: sends
    /// what the node produced, steps the elections when one of their inputs changed, refreshes
    /// the service's census and arms the persist deadline. Whether the membership changed.
    fn after_input(&mut self) -> bool {
        self.process_outputs();
        let membership_changed = self.notice_membership();
        // A rumor we publish is an input too (a declaration seen back settles the election):
        // answered now, within a few rounds, the rest at the next election deadline.
        for _ in 0..4 {
            if !std::mem::take(&mut self.election_dirty) {
                break;
            }
            self.step_elections();
            self.process_outputs();
        }
        if std::mem::take(&mut self.election_dirty) {
            self.election_at = Some(Instant::now());
        }
        if self.view_dirty {
            self.census_changes.notify();
        }
        self.refresh_service_views();
        if self.store_dirty && self.persist_at.is_none() {
            self.persist_at = Some((self.last_persist + self.persist_wait).max(Instant::now()));
        }
        membership_changed
    }

    /// Handles what is due: the node's timers, the debounced persist, an election deadline.
    fn on_due(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            self.node.handle_timer(now_ms(), timer);
        }
        if self.persist_at.is_some_and(|at| at <= now) {
            self.persist();
        }
        if self.election_at.is_some_and(|at| at <= now) {
            self.election_at = None;
            self.election_dirty = true;
        }
        self.poll_updates(now);
    }

    /// Member health moves without rumor changes (foca marks suspects silently): the census
    /// and the elections follow the node's membership fingerprint. Whether it moved.
    fn notice_membership(&mut self) -> bool {
        let seen = (self.node.membership_fingerprint(), self.node.knows_ring());
        if self.membership_seen == Some(seen) {
            return false;
        }
        self.membership_seen = Some(seen);
        self.view_dirty = true;
        self.election_dirty = true;
        true
    }

    /// `build` given what the census is made from: the members and rumors as this node
    /// knows them.
    fn with_census_input<T>(&self, build: impl FnOnce(&CensusInput<'_>) -> T) -> T {
        let members = self.node.members();
        build(&CensusInput {
            local: self.node.identity(),
            members: &members,
            store: self.node.store(),
        })
    }

    /// The census as this member sees it, its own election view included.
    fn census_groups(&self) -> Vec<census::CensusGroup> {
        self.with_census_input(|input| census::census_groups_with(input, &self.local_elections()))
    }

    fn node_outputs_mention(&self, session: SessionId) -> bool {
        self.node
            .pending_outputs()
            .iter()
            .any(|o| matches!(o, Output::Frame { session: s, .. } if *s == session))
    }

    fn process_outputs(&mut self) {
        let outputs: Vec<Output> = self.node.drain_outputs().collect();
        for output in outputs {
            match output {
                Output::Datagram { to, bytes } => {
                    if let Err(e) = self.udp.try_send_to(&bytes, to) {
                        tracing::debug!(%to, error = %e, "udp send");
                    }
                }
                Output::Schedule { after, timer } => {
                    self.timers.push(Instant::now() + after, timer);
                }
                Output::Frame {
                    to,
                    session,
                    bytes,
                    expect_reply,
                } => {
                    let sender = self.sessions.entry(session).or_insert_with(|| {
                        transport::spawn_session(to, session, self.inbound.clone())
                    });
                    let outgoing = Outgoing {
                        bytes,
                        expect_reply,
                    };
                    if sender.try_send(outgoing).is_err() {
                        self.node.session_failed(session);
                    }
                    if !expect_reply || session == 0 {
                        self.sessions.remove(&session);
                    }
                }
            }
        }
        let events: Vec<NodeEvent> = self.node.drain_events().collect();
        for event in events {
            match event {
                NodeEvent::RumorChanged(key) => {
                    self.store_dirty = true;
                    self.view_dirty = true;
                    // A vote or a declaration is answered now, not at the next tick; a
                    // service rumor or a retirement changes the electorate.
                    if matches!(
                        key,
                        RumorKey::Election { .. }
                            | RumorKey::ElectionUpdate { .. }
                            | RumorKey::Service { .. }
                            | RumorKey::Retirement { .. }
                    ) {
                        self.election_dirty = true;
                    }
                }
                NodeEvent::Rejoined(identity) => {
                    if let Err(e) = persist_incarnation(&self.dirs, identity.incarnation) {
                        tracing::warn!(error = %e, "cannot persist the incarnation");
                    }
                }
                NodeEvent::MemberUp(identity) => {
                    tracing::info!(member = %identity.id, addr = %identity.addr, node = %identity.node, "member alive");
                }
                NodeEvent::MemberDown(identity) => {
                    tracing::info!(member = %identity.id, addr = %identity.addr, "member confirmed down");
                }
                NodeEvent::MemberReplaced { old, new } => {
                    tracing::info!(old = %old.id, new = %new.id, node = %new.node, "member replaced by a newer one with the same node name");
                }
                NodeEvent::NodeNameConflict { name, ids } => {
                    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                    tracing::warn!(node = %name, ?ids, "members that all answer share a node name; all are kept (give each a distinct --node-name)");
                }
                NodeEvent::DepartedSelf => {
                    tracing::error!("this supervisor was departed from the ring");
                }
            }
        }
    }

    /// Hands a snapshot of the rumor store to its writer (see `persist_at` for the debounce;
    /// the wait grows with the time the snapshot took, which grows with the store).
    fn persist(&mut self) {
        self.store_dirty = false;
        self.persist_at = None;
        let started = Instant::now();
        self.store_writer.write(self.node.store().snapshot());
        self.last_persist = Instant::now();
        self.persist_wait = persist_wait(self.last_persist - started);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_slow_store_write_is_repeated_less_often() {
        assert_eq!(persist_wait(Duration::from_millis(2)), PERSIST_DEBOUNCE);
        assert_eq!(
            persist_wait(Duration::from_millis(500)),
            Duration::from_secs(10)
        );
        assert_eq!(persist_wait(Duration::from_secs(30)), PERSIST_MAX_WAIT);
    }
}
