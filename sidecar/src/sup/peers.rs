//! Finding peers: `--peer` and the peer watch file, looked up by DNS in a task of their own
//! (never on the loop: during an outage SWIM goes on), each name on its own deadline, a peer
//! that stops resolving keeping its last known address; and the loop's other slow chores (ring
//! key and watch file reloads), paced by whether every configured peer is an up member.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::now_ms;
use super::ring_keys::{FileStamp, RingKeys, KEY_RELOAD_INTERVAL};
use super::{PeerSpec, SupervisorConfig};
use crate::gossip::crypto::Keyring;
use crate::gossip::member::MemberView;
use crate::gossip::node::Node;

/// How often configured peers are resolved again while one of them is not an up member.
const PEER_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// ... and while every one is: the ring already holds them, so a lookup only matters when a
/// name moves to a new address, and its old member going down brings the retry pace back.
const PEER_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// A peer's lookup gives up after this: a resolver that hangs must not hold the next lookup
/// back for ever.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);
/// A whole lookup (every peer at once) is given up this long after `LOOKUP_DEADLINE`, in
/// case a resolver ignores its own deadline.
const LOOKUP_GRACE: Duration = Duration::from_secs(1);

/// Resolves every peer at once, each within `LOOKUP_DEADLINE` (a name whose lookup hangs does
/// not hold back the others, nor literal addresses): its IPv4 address when it has one, else its
/// IPv6 one (pods may be IPv6-only). `None` for a peer that did not resolve, in `specs`' order.
async fn resolve_peers(specs: &[PeerSpec]) -> Vec<Option<SocketAddr>> {
    resolve_each(specs, |spec| async move {
        match tokio::net::lookup_host((spec.host.as_str(), spec.port)).await {
            Ok(addrs) => addrs.into_iter().min_by_key(SocketAddr::is_ipv6),
            Err(e) => {
                tracing::debug!(peer = %spec.host, error = %e, "peer does not resolve yet");
                None
            }
        }
    })
    .await
}

/// Looks every peer up at once with `lookup_one`, each within `LOOKUP_DEADLINE`.
async fn resolve_each<'a, F, Fut>(specs: &'a [PeerSpec], lookup_one: F) -> Vec<Option<SocketAddr>>
where
    F: Fn(&'a PeerSpec) -> Fut,
    Fut: std::future::Future<Output = Option<SocketAddr>>,
{
    futures::future::join_all(specs.iter().map(|spec| {
        let lookup = lookup_one(spec);
        async move {
            let found = tokio::time::timeout(LOOKUP_DEADLINE, lookup).await;
            if found.is_err() {
                tracing::debug!(peer = %spec.host, "peer lookup timed out");
            }
            found.ok().flatten()
        }
    }))
    .await
}

/// Each peer looked up, with its address or `None`.
type Found = Vec<(PeerSpec, Option<SocketAddr>)>;

/// Looks `specs` up with `resolver`, within `LOOKUP_DEADLINE` and its grace; each peer with
/// its address, or `None`.
fn lookup(
    resolver: &Resolver,
    specs: Vec<PeerSpec>,
) -> impl std::future::Future<Output = Found> + Send + 'static {
    let running = resolver(specs.clone());
    async move {
        let found = tokio::time::timeout(LOOKUP_DEADLINE + LOOKUP_GRACE, running)
            .await
            .unwrap_or_default();
        let found = found.into_iter().chain(std::iter::repeat(None));
        specs.into_iter().zip(found).collect()
    }
}

/// How `Housekeeping` looks peers up (a task of its own; tests give one that hangs): an
/// address or `None` per peer, in order.
type Resolver = Arc<dyn Fn(Vec<PeerSpec>) -> PeerLookup + Send + Sync>;
type PeerLookup =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Option<SocketAddr>>> + Send>>;

fn dns_resolver() -> Resolver {
    Arc::new(|specs: Vec<PeerSpec>| Box::pin(async move { resolve_peers(&specs).await }))
}

fn read_peer_watch_file(path: &Path) -> Vec<PeerSpec> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| match l.parse::<PeerSpec>() {
            Ok(p) => Some(p),
            Err(problem) => {
                tracing::warn!(file = %path.display(), %problem, "ignoring a peer line");
                None
            }
        })
        .collect()
}

/// Whether every configured peer resolved to the address of an up member (this one counts).
fn peers_all_up(configured: usize, resolved: &[SocketAddr], members: &[MemberView]) -> bool {
    resolved.len() == configured
        && resolved.iter().all(|peer| {
            members
                .iter()
                .any(|m| m.health.is_up() && m.identity.addr == *peer)
        })
}

/// The loop's slow chores, each with a deadline armed only when it has work: checking ring keys
/// and the peer watch file (when there are any) every `KEY_RELOAD_INTERVAL`, and resolving the
/// configured peers (see `PEER_RETRY_INTERVAL`).
pub(super) struct Housekeeping {
    ring_keys: RingKeys,
    /// The keys as the gossip connection tasks hold them.
    keys: tokio::sync::watch::Sender<Keyring>,
    configured: Vec<PeerSpec>,
    /// The peer watch file and its stamp when last read.
    watch_file: Option<(PathBuf, Option<FileStamp>)>,
    /// `--peer` and the watch file's peers.
    specs: Vec<PeerSpec>,
    /// Each peer's address as last resolved: a lookup that fails (a DNS outage) keeps it.
    known: HashMap<PeerSpec, SocketAddr>,
    /// The known addresses of `specs`, in order.
    pub(super) resolved: Vec<SocketAddr>,
    /// When the last lookup ran.
    resolved_at: Instant,
    files_at: Option<Instant>,
    resolve_at: Option<Instant>,
    resolver: Resolver,
    /// A lookup running in its own task: DNS is never awaited on the loop, so an outage
    /// cannot stall SWIM (every member at once would declare false deaths).
    lookup: Option<oneshot::Receiver<Found>>,
}

impl Housekeeping {
    pub(super) fn new(
        config: &SupervisorConfig,
        ring_keys: RingKeys,
        keys: tokio::sync::watch::Sender<Keyring>,
    ) -> Housekeeping {
        let now = Instant::now();
        let watch_file = config.peer_watch_file.clone().map(|path| (path, None));
        let has_files = ring_keys.name.is_some() || watch_file.is_some();
        let mut housekeeping = Housekeeping {
            ring_keys,
            keys,
            configured: config.peers.clone(),
            watch_file,
            specs: config.peers.clone(),
            known: HashMap::new(),
            resolved: Vec::new(),
            resolved_at: now,
            files_at: has_files.then(|| now + KEY_RELOAD_INTERVAL),
            resolve_at: None,
            resolver: dns_resolver(),
            lookup: None,
        };
        housekeeping.read_watch_file(true);
        housekeeping
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        [self.files_at, self.resolve_at].into_iter().flatten().min()
    }

    /// Re-reads the peer watch file when forced or its stamp moved; whether the peers changed.
    fn read_watch_file(&mut self, force: bool) -> bool {
        let Some((path, stamp)) = self.watch_file.as_mut() else {
            return false;
        };
        let now = FileStamp::of(path);
        if *stamp == now && !force {
            return false;
        }
        *stamp = now;
        let mut specs = self.configured.clone();
        specs.extend(read_peer_watch_file(path));
        let changed = specs != self.specs;
        self.specs = specs;
        changed
    }

    /// The first lookup, before the ring starts: awaited, within `LOOKUP_DEADLINE` (a start
    /// during a DNS outage goes on without the peers; the next lookups find them).
    pub(super) async fn resolve_at_start(&mut self) {
        let found = lookup(&self.resolver, self.specs.clone()).await;
        self.learn(&found);
        self.resolved_at = Instant::now();
        self.resolve_at = (!self.specs.is_empty()).then(|| self.resolved_at + PEER_RETRY_INTERVAL);
    }

    /// Starts a lookup in a task of its own, unless one runs; its answer comes through
    /// `lookup_done`.
    fn start_lookup(&mut self) {
        if self.lookup.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let found = lookup(&self.resolver, self.specs.clone());
        tokio::spawn(async move {
            let _ = tx.send(found.await);
        });
        self.lookup = Some(rx);
        self.resolve_at = None;
    }

    /// The answer of the running lookup (pending while none runs).
    pub(super) async fn lookup_done(&mut self) -> Found {
        let Some(rx) = self.lookup.as_mut() else {
            return std::future::pending().await;
        };
        let resolved = rx.await.unwrap_or_default();
        self.lookup = None;
        resolved
    }

    /// Takes a lookup's answer: new peers go to the node; the next lookup is paced.
    pub(super) fn apply_lookup(&mut self, found: &Found, node: &mut Node) {
        self.resolved_at = Instant::now();
        let before = self.resolved.clone();
        self.learn(found);
        if self.resolved != before {
            node.set_peers(now_ms(), self.resolved.clone());
        }
        self.resolve_at = Some(self.resolved_at + PEER_RETRY_INTERVAL);
        self.on_membership_change(&node.members());
    }

    pub(super) fn run(&mut self, now: Instant, node: &mut Node) {
        if self.files_at.is_some_and(|at| at <= now) {
            self.files_at = Some(now + KEY_RELOAD_INTERVAL);
            match self.ring_keys.reload() {
                Some(Ok(keyring)) => {
                    // Connection tasks open peers' frames with the same keys.
                    self.keys.send_replace(keyring.clone());
                    node.set_keyring(keyring);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "ring keys"),
                None => {}
            }
            if self.read_watch_file(false) {
                self.resolve_at = Some(now);
            }
        }
        if self.resolve_at.is_some_and(|at| at <= now) {
            self.start_lookup();
        }
    }

    /// Takes in a lookup's answers (`None` where a peer did not resolve): a peer that did not
    /// resolve keeps its last known address; peers no longer configured (the watch file may
    /// have changed while the lookup ran) are forgotten.
    fn learn(&mut self, found: &Found) {
        for (spec, addr) in found {
            if let Some(addr) = addr {
                self.known.insert(spec.clone(), *addr);
            }
        }
        let specs = &self.specs;
        self.known.retain(|spec, _| specs.contains(spec));
        self.resolved = specs
            .iter()
            .filter_map(|spec| self.known.get(spec).copied())
            .collect();
    }

    /// Paces the lookups by whether every configured peer is an up member.
    pub(super) fn on_membership_change(&mut self, members: &[MemberView]) {
        if self.specs.is_empty() || self.lookup.is_some() {
            return;
        }
        let pace = if peers_all_up(self.specs.len(), &self.resolved, members) {
            PEER_REFRESH_INTERVAL
        } else {
            PEER_RETRY_INTERVAL
        };
        self.resolve_at = Some(self.resolved_at + pace);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Housekeeping for `peers`, looking them up with `resolver`.
    fn housekeeping(peers: &[&str], resolver: Resolver) -> Housekeeping {
        let specs: Vec<PeerSpec> = peers.iter().map(|p| p.parse().unwrap()).collect();
        Housekeeping {
            ring_keys: RingKeys::none(),
            keys: tokio::sync::watch::channel(Keyring::cleartext()).0,
            configured: specs.clone(),
            watch_file: None,
            specs,
            known: HashMap::new(),
            resolved: Vec::new(),
            resolved_at: Instant::now(),
            files_at: None,
            resolve_at: Some(Instant::now()),
            resolver,
            lookup: None,
        }
    }

    /// A resolver whose lookups never finish (a DNS server that does not answer), counting them.
    fn hanging(calls: Arc<std::sync::atomic::AtomicUsize>) -> Resolver {
        Arc::new(move |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(std::future::pending())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_resolver_never_holds_the_loop_and_one_lookup_runs_at_a_time() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut hk = housekeeping(&["peer.invalid:9638"], hanging(Arc::clone(&calls)));
        // Due: the lookup starts in a task of its own; nothing here waits for it.
        hk.start_lookup();
        hk.start_lookup();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(hk.next_due().is_none(), "no new lookup while one runs");
        // It gives up after LOOKUP_DEADLINE (virtual time) with nothing found.
        let resolved = tokio::time::timeout(2 * LOOKUP_DEADLINE, hk.lookup_done()).await;
        let spec: PeerSpec = "peer.invalid:9638".parse().unwrap();
        assert_eq!(resolved.ok(), Some(vec![(spec, None)]));
        assert!(hk.lookup.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_resolving_keeps_its_address_and_one_that_hangs_holds_back_none() {
        // The first lookup finds both; in later ones "b" never answers, and "a" resolves.
        let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let resolver: Resolver = {
            let lookups = Arc::clone(&lookups);
            Arc::new(move |specs: Vec<PeerSpec>| {
                let first = lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                Box::pin(async move {
                    resolve_each(&specs, |spec| async move {
                        if spec.host == "b.test" && !first {
                            std::future::pending::<()>().await;
                        }
                        let ip = if spec.host == "a.test" { 1 } else { 2 };
                        Some(SocketAddr::from(([10, 0, 0, ip], spec.port)))
                    })
                    .await
                })
            })
        };
        let mut hk = housekeeping(&["a.test", "b.test"], resolver);
        let both: Vec<SocketAddr> = vec![
            "10.0.0.1:9638".parse().unwrap(),
            "10.0.0.2:9638".parse().unwrap(),
        ];
        hk.resolve_at_start().await;
        assert_eq!(hk.resolved, both);
        hk.start_lookup();
        let found = tokio::time::timeout(2 * LOOKUP_DEADLINE, hk.lookup_done())
            .await
            .unwrap();
        // "b" hangs: the grace ends the lookup, "a" came through, and "b" keeps its address.
        assert_eq!(found[0].1, Some(both[0]));
        hk.learn(&found);
        assert_eq!(hk.resolved, both, "a failed lookup lost a peer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_during_a_dns_outage_goes_on_without_its_peers() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut hk = housekeeping(&["peer.invalid:9638"], hanging(calls));
        let started = tokio::time::timeout(2 * LOOKUP_DEADLINE, hk.resolve_at_start()).await;
        assert!(started.is_ok() && hk.resolved.is_empty());
        assert!(hk.next_due().is_some(), "never looks again");
    }

    #[tokio::test]
    async fn peers_resolve_to_ipv4_first_and_to_ipv6_when_that_is_all_they_have() {
        let specs: Vec<PeerSpec> = ["127.0.0.1:9638", "[::1]:9638"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            resolve_peers(&specs).await,
            vec![
                Some("127.0.0.1:9638".parse::<SocketAddr>().unwrap()),
                Some("[::1]:9638".parse().unwrap())
            ]
        );
    }

    #[test]
    fn peers_are_all_up_only_when_every_configured_peer_resolved_to_an_up_member() {
        use crate::gossip::member::{Health, Identity, MemberId};
        let member = |n: u8, health: Health| MemberView {
            identity: Identity {
                id: MemberId([n; 16]),
                incarnation: 1,
                node: Arc::from(format!("node-{n}").as_str()),
                addr: SocketAddr::from(([10, 0, 0, n], 9638)),
                persistent: false,
                named: true,
            },
            health,
        };
        let peer = |n: u8| SocketAddr::from(([10, 0, 0, n], 9638));
        let members = [member(1, Health::Alive), member(2, Health::Suspect)];
        assert!(peers_all_up(2, &[peer(1), peer(2)], &members));
        assert!(
            !peers_all_up(3, &[peer(1), peer(2)], &members),
            "one did not resolve"
        );
        assert!(!peers_all_up(1, &[peer(3)], &members), "no member there");
        let down = [member(1, Health::Alive), member(2, Health::Confirmed)];
        assert!(!peers_all_up(2, &[peer(1), peer(2)], &down), "one is down");
        assert!(peers_all_up(0, &[], &members));
    }
}
