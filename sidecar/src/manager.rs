//! The supervisor loop: one task owns the gossip `Node` and feeds it socket input, timers and
//! requests from the HTTP gateway; it persists identity and rumors (atomically, debounced),
//! reloads ring keys, re-reads the peer watch file, and leaves the ring cleanly on SIGTERM.
//!
//! Nothing else holds gossip state: other tasks talk to this one through channels.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::RngExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::binds::{self, BindSpec, BindingMode};
use crate::census::{self, CensusInput, LocalElections};
use crate::cli::Topology;
use crate::deadline::Deadline;
use crate::election::{ElectionConfig, ElectionView, GroupElections, NextStep, ViewStatus};
use crate::error::{Error, Result};
use crate::gossip::crypto::{Keyring, RingKey};
use crate::gossip::member::{Identity, MemberId, MemberView, MAX_INCARNATION};
use crate::gossip::node::{GossipConfig, Node, NodeEvent, NodeTimer, Output, SessionId};
use crate::gossip::rumor::{Rumor, RumorKey, ServiceGroup, ServiceRumor, SysInfo};
use crate::gossip::store;
use crate::gossip::transport::{self, Inbound, Outgoing};
use crate::http::snapshot;
use crate::keys;
use crate::metrics::Metrics;
use crate::package::Package;
use crate::service::gateway as service_gateway;
use crate::service::hooks::HookKind;
use crate::service::runtime::{self as service_runtime, RingView, ServiceSpec};
use crate::service::status::ServiceStatus;
use crate::template::context::{PkgContext, SysContext};

/// Everything `hab sup run` was told.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub root: PathBuf,
    pub listen_gossip: SocketAddr,
    pub listen_http: SocketAddr,
    pub listen_ctl: SocketAddr,
    pub peers: Vec<PeerSpec>,
    pub peer_watch_file: Option<PathBuf>,
    pub permanent_peer: bool,
    pub ring: Option<String>,
    /// Content of a key file given through `HAB_RING_KEY`.
    pub ring_key_env: Option<String>,
    /// A newly appeared ring key is only accepted (not sealed with) for this long.
    pub ring_key_activation: Duration,
    pub package: Option<String>,
    pub group: String,
    pub topology: Topology,
    pub binds: Vec<BindSpec>,
    pub binding_mode: BindingMode,
    pub health_check_interval: Duration,
    pub node_name: Option<String>,
    pub sys_ip: Option<IpAddr>,
    pub gossip: GossipConfig,
    /// See `ElectionConfig::retire_after`.
    pub retire_after: Duration,
    pub http_auth_token: Option<String>,
}

/// `IP[:PORT]` or `HOST[:PORT]` (port defaults to 9638).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for PeerSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(PeerSpec {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerSpec {
                host: ip.to_string(),
                port: 9638,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>().map_err(|_| {
                    format!("peer {text:?}: expected IP[:PORT] or HOST[:PORT] with a port 1-65535")
                })?,
            ),
            None => (text, 9638),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_host || port == 0 {
            return Err(format!(
                "peer {text:?}: expected IP[:PORT] or HOST[:PORT] with a port 1-65535"
            ));
        }
        Ok(PeerSpec {
            host: host.to_string(),
            port,
        })
    }
}

/// The supervisor's version as `sys.version` shows it.
pub const SUP_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "/habitat-rs");

/// A loaded service: its task and the two channels the loop talks to it through.
struct LoadedService {
    spec: ServiceSpec,
    pkg_ctx: PkgContext,
    view: tokio::sync::watch::Sender<RingView>,
    status: tokio::sync::watch::Receiver<ServiceStatus>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The service rumor as last published.
    rumor: ServiceRumor,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The data dir layout of the supervisor.
pub struct SupDirs {
    pub sup: PathBuf,
    pub data: PathBuf,
}

impl SupDirs {
    pub fn new(root: &Path) -> SupDirs {
        let sup = root.join("sup").join("default");
        SupDirs {
            data: sup.join("data"),
            sup,
        }
    }

    fn member_id_file(&self) -> PathBuf {
        self.sup.join("MEMBER_ID")
    }

    fn incarnation_file(&self) -> PathBuf {
        self.sup.join("INCARNATION")
    }

    pub fn rumor_file(&self) -> PathBuf {
        self.data.join("rumors.dat")
    }
}

/// Loads the persisted member id (or makes one) and the next incarnation, which is above every
/// earlier one and at least the current wall-clock second.
pub fn load_identity(dirs: &SupDirs) -> Result<(MemberId, u64)> {
    std::fs::create_dir_all(&dirs.data).map_err(|e| Error::io(&dirs.data, e))?;
    let id_file = dirs.member_id_file();
    let id = match std::fs::read_to_string(&id_file) {
        Ok(text) => match text.parse::<MemberId>() {
            Ok(id) => id,
            Err(problem) => {
                let aside = id_file.with_extension(format!("corrupt-{}", now_ms()));
                tracing::warn!(file = %id_file.display(), %problem, moved_to = %aside.display(),
                    "member id file is corrupt; moved aside, starting as a new member");
                let _ = std::fs::rename(&id_file, &aside);
                new_member_id(&id_file)?
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_member_id(&id_file)?,
        Err(e) => return Err(Error::io(&id_file, e)),
    };
    let inc_file = dirs.incarnation_file();
    let previous = std::fs::read_to_string(&inc_file)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|previous| *previous < MAX_INCARNATION)
        .unwrap_or(0);
    let incarnation = previous.saturating_add(1).max(now_ms() / 1000);
    persist_incarnation(dirs, incarnation)?;
    Ok((id, incarnation))
}

fn new_member_id(path: &Path) -> Result<MemberId> {
    let id = MemberId::random(&mut rand::rng());
    crate::files::write_atomically(path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}

fn persist_incarnation(dirs: &SupDirs, incarnation: u64) -> Result<()> {
    crate::files::write_atomically(
        &dirs.incarnation_file(),
        format!("{incarnation}\n").as_bytes(),
        0o600,
    )
}

/// How often ring keys and the peer watch file are checked: a `stat` per file, and a read only
/// when one changed (or a new key is pending).
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How often configured peers are resolved again while one of them is not an up member.
const PEER_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// ... and while every one is: the ring already holds them, so a lookup only matters when a
/// name moves to a new address, and its old member going down brings the retry pace back.
const PEER_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
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

/// Ring keys: `--ring NAME` from the keys dir (reloaded while running) and/or `HAB_RING_KEY`.
struct RingKeys {
    name: Option<String>,
    env_key: Option<RingKey>,
    dir: PathBuf,
    activation: Duration,
    loaded: Vec<String>,
    /// The key files as last read (see `key_files_stamp`).
    stamp: Vec<FileStamp>,
    /// The last keyring held a pending key: it turns active with time, not with a file change.
    pending: bool,
}

impl RingKeys {
    fn new(config: &SupervisorConfig) -> Result<RingKeys> {
        let env_key = config
            .ring_key_env
            .as_deref()
            .map(|content| keys::parse_sym_key(content, "HAB_RING_KEY"))
            .transpose()?;
        let name = config
            .ring
            .clone()
            .or_else(|| env_key.as_ref().map(|k| k.name().to_string()));
        Ok(RingKeys {
            name,
            env_key,
            dir: keys::keys_dir(&config.root),
            // A key must stay pending until every member has re-read its keys at least once.
            activation: config
                .ring_key_activation
                .max(KEY_RELOAD_INTERVAL + Duration::from_secs(1)),
            loaded: Vec::new(),
            stamp: Vec::new(),
            pending: false,
        })
    }

    /// The keyring again when a key file changed or a pending key may have become active;
    /// `None` while nothing did (then this costs one directory listing and a `stat` per key).
    fn reload(&mut self) -> Option<Result<Keyring>> {
        let name = self.name.as_deref()?;
        let stamp = key_files_stamp(&self.dir, name);
        if stamp == self.stamp && !self.pending {
            return None;
        }
        Some(self.keyring(false))
    }

    /// Every revision held; revisions whose file is younger than the activation delay are only
    /// accepted, so a key copied to all members is not sealed with before they all hold it.
    fn keyring(&mut self, strict: bool) -> Result<Keyring> {
        let Some(name) = self.name.clone() else {
            return Ok(Keyring::cleartext());
        };
        // Taken before the read: a file changing in between is read again at the next check.
        self.stamp = key_files_stamp(&self.dir, &name);
        let mut keys = match keys::load_ring_keys(&self.dir, &name) {
            Ok(keys) => keys,
            Err(Error::KeyNotFound { .. }) if self.env_key.is_some() || !strict => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut pending = Vec::new();
        for key in &keys {
            let age = std::fs::metadata(keys::sym_key_path(&self.dir, key))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or(Duration::MAX);
            if age < self.activation {
                pending.push(key.revision().to_string());
            }
        }
        if let Some(env_key) = &self.env_key {
            keys.retain(|k| k.revision() != env_key.revision());
            keys.push(env_key.clone());
        }
        if keys.is_empty() {
            return Err(Error::KeyNotFound {
                kind: "ring",
                name,
                dir: self.dir.clone(),
            });
        }
        let mut names: Vec<String> = keys
            .iter()
            .map(|k| {
                let state = if pending.contains(&k.revision().to_string()) {
                    "pending"
                } else {
                    "active"
                };
                format!("{}:{state}", k.name_with_rev())
            })
            .collect();
        names.sort();
        self.pending = !pending.is_empty();
        if names != self.loaded {
            tracing::info!(keys = ?names, "ring keys loaded");
            self.loaded = names;
        }
        Ok(Keyring::with_pending(keys, &pending))
    }
}

/// Picks the address peers reach this member at.
fn advertised_ip(config: &SupervisorConfig) -> IpAddr {
    if let Some(ip) = config.sys_ip {
        return ip;
    }
    if !config.listen_gossip.ip().is_unspecified() {
        return config.listen_gossip.ip();
    }
    // The host name resolving to a non-loopback address is how pods and most VMs find theirs.
    let host = hostname();
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() && !a.ip().is_loopback()))
        .map(|a| a.ip());
    resolved.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

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

/// What a `stat` says of a file: enough to notice a change without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    name: std::ffi::OsString,
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            name: path.file_name().unwrap_or_default().to_owned(),
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// The ring key files of `name` in `dir` (`<name>-*.sym.key`), sorted; empty when there is
/// no such directory.
fn key_files_stamp(dir: &Path, name: &str) -> Vec<FileStamp> {
    let prefix = format!("{name}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stamps: Vec<FileStamp> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            file_name.starts_with(&prefix) && file_name.ends_with(".sym.key")
        })
        .filter_map(|entry| FileStamp::of(&entry.path()))
        .collect();
    stamps.sort_by(|a, b| a.name.cmp(&b.name));
    stamps
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

/// The service rumor for the loaded package, if any.
fn service_rumor(
    config: &SupervisorConfig,
    identity: &Identity,
    package: &Package,
) -> Result<ServiceRumor> {
    let group = ServiceGroup::new(package.name(), &config.group)
        .map_err(|problem| Error::invalid("--group", problem))?;
    let exported = package.exported_cfg(&package.default_toml);
    let ip = identity.addr.ip().to_string();
    Ok(ServiceRumor {
        member_id: identity.id,
        service_group: group,
        incarnation: identity.incarnation,
        package: package.ident.to_string(),
        initialized: false,
        sys: SysInfo {
            ip: ip.clone(),
            hostname: hostname(),
            gossip_ip: config.listen_gossip.ip().to_string(),
            gossip_port: identity.addr.port(),
            http_gateway_ip: config.listen_http.ip().to_string(),
            http_gateway_port: config.listen_http.port(),
            ctl_gateway_ip: config.listen_ctl.ip().to_string(),
            ctl_gateway_port: config.listen_ctl.port(),
        },
        cfg: toml::to_string(&exported).unwrap_or_default().into_bytes(),
        tombstone: false,
    })
}

/// The loop's slow chores, each with a deadline armed only when it has work: checking ring keys
/// and the peer watch file (when there are any) every `KEY_RELOAD_INTERVAL`, and resolving the
/// configured peers (see `PEER_RETRY_INTERVAL`).
struct Housekeeping {
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
    resolved: Vec<SocketAddr>,
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
    fn new(
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

    fn next_due(&self) -> Option<Instant> {
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
    async fn resolve_at_start(&mut self) {
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
    async fn lookup_done(&mut self) -> Found {
        let Some(rx) = self.lookup.as_mut() else {
            return std::future::pending().await;
        };
        let resolved = rx.await.unwrap_or_default();
        self.lookup = None;
        resolved
    }

    /// Takes a lookup's answer: new peers go to the node; the next lookup is paced.
    fn apply_lookup(&mut self, found: &Found, node: &mut Node) {
        self.resolved_at = Instant::now();
        let before = self.resolved.clone();
        self.learn(found);
        if self.resolved != before {
            node.set_peers(now_ms(), self.resolved.clone());
        }
        self.resolve_at = Some(self.resolved_at + PEER_RETRY_INTERVAL);
        self.on_membership_change(&node.members());
    }

    fn run(&mut self, now: Instant, node: &mut Node) {
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
    fn on_membership_change(&mut self, members: &[MemberView]) {
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

/// Runs the supervisor until SIGTERM/SIGINT. Returns once the departure has been sent.
pub async fn run(config: SupervisorConfig) -> anyhow::Result<()> {
    let dirs = SupDirs::new(&config.root);
    let (member_id, incarnation) = load_identity(&dirs)?;
    let mut ring_keys = RingKeys::new(&config)?;
    let keyring = ring_keys.keyring(true)?;
    let package = config
        .package
        .as_deref()
        .map(|spec| Package::resolve(&config.root, spec))
        .transpose()?;
    let bindings = match &package {
        Some(package) => binds::validate(package, &config.binds)?,
        None if !config.binds.is_empty() => {
            anyhow::bail!("--bind needs a package to bind (hab sup run PKG --bind ...)")
        }
        None => Vec::new(),
    };

    let udp = UdpSocket::bind(config.listen_gossip)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-gossip {}: {e}", config.listen_gossip))?;
    let tcp = TcpListener::bind(config.listen_gossip)
        .await
        .map_err(|e| anyhow::anyhow!("--listen-gossip {} (tcp): {e}", config.listen_gossip))?;
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

    let mut housekeeping = Housekeeping::new(&config, ring_keys, keys_tx);
    housekeeping.resolve_at_start().await;
    node.start(now_ms(), housekeeping.resolved.clone());
    let mut election = None;
    let mut service = None;
    if let Some(package) = &package {
        let rumor = service_rumor(&config, &identity, package)?;
        tracing::info!(service_group = %rumor.service_group, package = %rumor.package, "service loaded");
        if config.topology != Topology::Standalone {
            // Until the suitability hook answers, every member is equally suitable and ties
            // break by member id.
            election = Some(GroupElections::new(
                &rumor.service_group,
                identity.id,
                &ElectionConfig {
                    retire_after: config.retire_after,
                    ..ElectionConfig::for_gossip(&config.gossip)
                },
                true,
                false,
                0,
            ));
        }
        node.publish(now_ms(), Rumor::Service(rumor.clone()))?;
        let sys = SysContext::new(SUP_VERSION, identity.id, &rumor.sys, config.permanent_peer);
        let spec = ServiceSpec {
            package: package.clone(),
            service_group: rumor.service_group.clone(),
            topology: config.topology,
            bindings: bindings.clone(),
            binding_mode: config.binding_mode,
            health_check_interval: config.health_check_interval,
            root: config.root.clone(),
            sys,
            env_layer: std::env::var(crate::config::env_var_name(package.name())).ok(),
            hook_timeouts: Default::default(),
            backoff: Default::default(),
        };
        service = Some(LoadedService::spawn(spec, rumor));
    }

    let store_writer = store::StoreWriter::spawn(dirs.rumor_file());
    let mut loop_state = LoopState {
        node,
        udp,
        inbound: inbound_tx,
        sessions: HashMap::new(),
        timers: TimerQueue::default(),
        metrics: Metrics::new(),
        dirs,
        store_dirty: false,
        last_persist: Instant::now(),
        persist_wait: PERSIST_DEBOUNCE,
        store_writer,
        election,
        service,
        view_dirty: true,
        // The first step starts the engines' clocks.
        election_dirty: true,
        election_at: None,
        election_tick: config.gossip.swim.gossip_interval,
        membership_seen: None,
        persist_at: None,
    };
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
            Ok(()) = service_status_changed(&mut loop_state.service) => loop_state.on_service_status(),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => tracing::info!("SIGHUP received: ignored, the supervisor runs on"),
        }
        if loop_state.after_input() {
            housekeeping.on_membership_change(&loop_state.node.members());
        }
    }
    loop_state.shut_down(&mut inbound_rx, &config).await;
    tracing::info!("shutting down: leaving the ring");
    loop_state.node.leave(now_ms());
    loop_state.process_outputs();
    // The last word on disk, whatever the debounce says, after any write under way.
    loop_state.store_writer.finish().await;
    let bytes = loop_state.node.store().snapshot();
    if let Err(e) = crate::files::write_atomically(&loop_state.dirs.rumor_file(), &bytes, 0o600) {
        tracing::warn!(error = %e, "cannot persist the rumor store");
    }
    Ok(())
}

/// Resolves when the service reported a new status (never without a service).
async fn service_status_changed(
    service: &mut Option<LoadedService>,
) -> std::result::Result<(), tokio::sync::watch::error::RecvError> {
    match service {
        Some(service) => service.status.changed().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the service task has ended (never without a service).
async fn service_stopped(service: &mut Option<LoadedService>) {
    match service {
        Some(service) => {
            let _ = (&mut service.task).await;
        }
        None => std::future::pending().await,
    }
}

impl LoadedService {
    fn spawn(spec: ServiceSpec, rumor: ServiceRumor) -> LoadedService {
        let (view, view_rx) = tokio::sync::watch::channel(RingView::default());
        let (status_tx, status) = tokio::sync::watch::channel(ServiceStatus::default());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let pkg_ctx = service_runtime::pkg_context(&spec);
        let task = tokio::spawn(service_runtime::run(
            spec.clone(),
            view_rx,
            status_tx,
            stop_rx,
        ));
        LoadedService {
            spec,
            pkg_ctx,
            view,
            status,
            stop,
            task,
            rumor,
        }
    }
}

struct LoopState {
    node: Node,
    /// The loaded service, if `hab sup run` was given a package.
    service: Option<LoadedService>,
    /// The census changed since the service last saw it.
    view_dirty: bool,
    /// An election rumor changed since the engines last stepped.
    election_dirty: bool,
    /// The elections of the loaded service group (leader and initializer topologies).
    election: Option<GroupElections>,
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
            self.step_election();
            self.process_outputs();
        }
        if std::mem::take(&mut self.election_dirty) {
            self.election_at = Some(Instant::now());
        }
        self.refresh_service_view();
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

    /// Runs the election engines over the current ring view and publishes what they decide.
    fn step_election(&mut self) {
        let Some(elections) = self.election.as_mut() else {
            return;
        };
        let now = now_ms();
        let before = elections.views();
        let members = self.node.members();
        let synced = self.node.knows_ring();
        let (rumors, views) = elections.step(now, &members, self.node.store(), synced);
        self.election_at = match elections.next_step(now) {
            NextStep::Tick => Some(Instant::now() + self.election_tick),
            NextStep::At(at_ms) => {
                Some(Instant::now() + Duration::from_millis(at_ms.saturating_sub(now)))
            }
            NextStep::OnChange => None,
        };
        for rumor in rumors {
            if let Err(e) = self.node.publish(now, rumor) {
                tracing::warn!(error = %e, "cannot publish an election rumor");
            }
        }
        if views != before {
            self.view_dirty = true;
        }
        let me = self.node.identity().id;
        for (kind, view, was) in [
            ("election", views.leader, before.leader),
            ("update election", views.update, before.update),
        ] {
            let Some(view) = view.filter(|v| Some(*v) != was) else {
                continue;
            };
            match view.status {
                ViewStatus::Finished => tracing::info!(
                    leader = ?view.leader, term = view.term, am_leader = view.is_leader(me),
                    "{kind} finished"
                ),
                status => tracing::info!(?status, term = view.term, "{kind}"),
            }
        }
    }

    /// This member's own election views, which the census prefers over the rumors.
    fn local_elections(&self) -> LocalElections {
        match (&self.election, &self.service) {
            (Some(elections), Some(service)) => {
                LocalElections::of_group(&service.spec.service_group, elections.views())
            }
            _ => LocalElections::default(),
        }
    }

    fn leader_view(&self) -> Option<ElectionView> {
        self.election.as_ref().and_then(|e| e.views().leader)
    }

    /// Sends the service the current census when it changed.
    fn refresh_service_view(&mut self) {
        if !self.view_dirty {
            return;
        }
        self.view_dirty = false;
        let Some(service) = &self.service else {
            return;
        };
        let groups = self.census_groups();
        service.view.send_if_modified(|view| {
            if view.groups == groups {
                return false;
            }
            view.groups = groups;
            true
        });
    }

    /// The census as this member sees it, its own election view included.
    fn census_groups(&self) -> Vec<census::CensusGroup> {
        let members = self.node.members();
        let input = CensusInput {
            local: self.node.identity(),
            members: &members,
            store: self.node.store(),
        };
        census::census_groups_with(&input, &self.local_elections())
    }

    /// Publishes what the service's status changes for the ring: exports and the initialized
    /// flag go into the service rumor, the suitability into the election.
    fn on_service_status(&mut self) {
        let Some(service) = self.service.as_mut() else {
            return;
        };
        let status = service.status.borrow_and_update().clone();
        if let (Some(election), Some(suitability)) = (self.election.as_mut(), status.suitability) {
            election.set_suitability(suitability);
            self.election_dirty = true;
        }
        let cfg = toml::to_string(&status.exported)
            .unwrap_or_default()
            .into_bytes();
        let rumor = &mut service.rumor;
        if rumor.cfg != cfg || rumor.initialized != status.initialized {
            rumor.cfg = cfg;
            rumor.initialized = status.initialized;
            rumor.incarnation += 1;
            let rumor = rumor.clone();
            if let Err(e) = self.node.publish(now_ms(), Rumor::Service(rumor)) {
                tracing::warn!(error = %e, "cannot publish the service rumor");
            }
        }
    }

    /// Whether Kubernetes should send traffic: the service runs and passes its health check,
    /// and in leader topologies the election finished as this member sees it.
    fn readiness(&self) -> std::result::Result<(), String> {
        let Some(service) = &self.service else {
            return Ok(());
        };
        let status = service.status.borrow();
        if let Some(reason) = &status.waiting_for {
            return Err(format!("{}: {reason}", service.spec.service_group));
        }
        if status.pid.is_none() {
            return Err(format!(
                "{}: the process is not running",
                service.spec.service_group
            ));
        }
        if !status.health.passing() {
            return Err(format!(
                "{}: health check {}",
                service.spec.service_group,
                status.health.as_str()
            ));
        }
        if let Some(view) = self.leader_view() {
            if view.status != ViewStatus::Finished {
                return Err(format!(
                    "{}: election {:?}",
                    service.spec.service_group, view.status
                ));
            }
        }
        Ok(())
    }

    /// Stops the service (signal, timeout, SIGKILL, post-stop) and resigns from the elections
    /// at once, while the ring keeps running: a leader's withdrawal must go out with rumor
    /// gossip (which leaving stops), so the others elect a successor without waiting for
    /// failure detection, and the service's last rumors still flow.
    async fn shut_down(
        &mut self,
        inbound_rx: &mut mpsc::Receiver<Inbound>,
        config: &SupervisorConfig,
    ) {
        let mut service = self.service.take();
        let started = Instant::now();
        let mut deadline = started;
        if let Some(service) = &service {
            let _ = service.stop.send(true);
            deadline += service.spec.package.shutdown_timeout
                + service.spec.hook_timeouts.get(HookKind::PostStop)
                + Duration::from_secs(2);
        }
        let withdrawals = self
            .election
            .as_mut()
            .map(GroupElections::resign)
            .unwrap_or_default();
        // Two gossip intervals carry a withdrawal to every member of a LAN ring.
        let gossip_until = if withdrawals.is_empty() {
            started
        } else {
            tracing::info!("shutting down: resigning from the election");
            started + config.gossip.swim.gossip_interval * 2
        };
        deadline = deadline.max(gossip_until);
        for rumor in withdrawals {
            if let Err(e) = self.node.publish(now_ms(), rumor) {
                tracing::warn!(error = %e, "cannot publish the election withdrawal");
            }
        }
        self.process_outputs();
        loop {
            let now = Instant::now();
            if service.is_none() && now >= gossip_until {
                break;
            }
            if now >= deadline {
                if let Some(service) = service.take() {
                    tracing::warn!("the service did not stop in time");
                    service.task.abort();
                }
                break;
            }
            let next = self.timers.next_due().unwrap_or(deadline).min(deadline);
            tokio::select! {
                _ = service_stopped(&mut service) => service = None,
                Some(message) = inbound_rx.recv() => self.on_inbound(message),
                _ = tokio::time::sleep_until(next.into()) => {
                    while let Some(timer) = self.timers.pop_due(Instant::now()) {
                        self.node.handle_timer(now_ms(), timer);
                    }
                }
            }
            self.process_outputs();
        }
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

/// What the HTTP gateway shows, built on the loop when a request asks (at most once per
/// `snapshot::MIN_REBUILD`), served by the gateway's own tasks.
impl snapshot::Source for LoopState {
    fn butterfly(&mut self) -> Bytes {
        let members = self.node.members();
        let input = CensusInput {
            local: self.node.identity(),
            members: &members,
            store: self.node.store(),
        };
        json_bytes(&census::butterfly(&input))
    }

    fn census(&mut self) -> Bytes {
        let members = self.node.members();
        let input = CensusInput {
            local: self.node.identity(),
            members: &members,
            store: self.node.store(),
        };
        // This member's own election view wins over the rumor (NoQuorum is not gossiped).
        json_bytes(&census::census_with(&input, &self.local_elections()))
    }

    fn services(&mut self) -> Vec<serde_json::Value> {
        let groups = self.census_groups();
        self.service
            .iter()
            .map(|service| {
                let status = service.status.borrow();
                let election = groups
                    .iter()
                    .find(|g| g.service_group == service.spec.service_group)
                    .map_or(census::ELECTION_NONE, |g| g.election_status);
                service_gateway::service_json(
                    &service.spec,
                    &status,
                    &service.pkg_ctx,
                    &self.dirs.sup,
                    election,
                )
            })
            .collect()
    }

    fn statuses(&mut self) -> Vec<(String, ServiceStatus)> {
        self.service
            .iter()
            .map(|s| (s.spec.service_group.to_string(), s.status.borrow().clone()))
            .collect()
    }

    fn ready(&mut self) -> std::result::Result<(), String> {
        self.readiness()
    }

    fn metrics(&mut self) -> Bytes {
        let members = self.node.members();
        let text = self.metrics.render(
            self.node.stats(),
            &members,
            self.node.local_health(),
            self.node.store(),
        );
        Bytes::from(text)
    }
}

fn json_bytes(doc: &serde_json::Value) -> Bytes {
    // Serialising a Value cannot fail (its keys are strings).
    serde_json::to_vec(doc).map_or_else(|_| Bytes::from_static(b"null"), Bytes::from)
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

    /// Housekeeping for `peers`, looking them up with `resolver`.
    fn housekeeping(peers: &[&str], resolver: Resolver) -> Housekeeping {
        let specs: Vec<PeerSpec> = peers.iter().map(|p| p.parse().unwrap()).collect();
        Housekeeping {
            ring_keys: RingKeys {
                name: None,
                env_key: None,
                dir: PathBuf::from("/nonexistent"),
                activation: Duration::from_secs(60),
                loaded: Vec::new(),
                stamp: Vec::new(),
                pending: false,
            },
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
    fn peers_parse_in_habitat_forms_and_bad_ones_are_named() {
        let p: PeerSpec = "10.0.0.1".parse().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 9638));
        let p: PeerSpec = "10.0.0.1:9000".parse().unwrap();
        assert_eq!(p.port, 9000);
        let p: PeerSpec = "web-0.web-peers:9638".parse().unwrap();
        assert_eq!(p.host, "web-0.web-peers");
        for bad in ["", "host:99999", "host:0", "a b", "host:port"] {
            let err = bad.parse::<PeerSpec>().unwrap_err();
            assert!(err.contains("IP[:PORT]"), "{bad}: {err}");
        }
    }

    #[test]
    fn incarnation_grows_across_restarts_and_member_id_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let dirs = SupDirs::new(root.path());
        let (id1, inc1) = load_identity(&dirs).unwrap();
        let (id2, inc2) = load_identity(&dirs).unwrap();
        assert_eq!(id1, id2);
        assert!(inc2 > inc1);
    }

    #[test]
    fn a_corrupt_member_id_file_is_moved_aside() {
        let root = tempfile::tempdir().unwrap();
        let dirs = SupDirs::new(root.path());
        std::fs::create_dir_all(&dirs.sup).unwrap();
        std::fs::write(dirs.member_id_file(), "garbage").unwrap();
        let (id, _) = load_identity(&dirs).unwrap();
        assert!(!id.is_nil());
        let moved = std::fs::read_dir(&dirs.sup)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(moved);
    }

    fn ring_keys(dir: &Path, activation: Duration) -> RingKeys {
        RingKeys {
            name: Some("prod".into()),
            env_key: None,
            dir: dir.to_path_buf(),
            activation,
            loaded: Vec::new(),
            stamp: Vec::new(),
            pending: false,
        }
    }

    #[test]
    fn ring_keys_are_read_again_only_when_a_key_file_changed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        let old = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        keys::generate_ring_key(&dir, "prod", old, [1; 32]).unwrap();
        let mut keys = ring_keys(&dir, Duration::ZERO);
        assert!(keys.keyring(true).unwrap().is_encrypted());
        assert!(keys.reload().is_none(), "nothing changed");
        std::fs::write(dir.join("other-20240101000000.sym.key"), "not ours").unwrap();
        assert!(keys.reload().is_none(), "another ring's file");
        keys::generate_ring_key(&dir, "prod", old + Duration::from_secs(60), [2; 32]).unwrap();
        assert!(matches!(keys.reload(), Some(Ok(_))), "a new key file");
        assert!(keys.reload().is_none());
    }

    #[test]
    fn a_pending_ring_key_is_read_again_until_it_is_active() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        // Just written, so younger than the activation delay: pending.
        keys::generate_ring_key(&dir, "prod", SystemTime::now(), [1; 32]).unwrap();
        let mut keys = ring_keys(&dir, Duration::from_secs(3600));
        keys.keyring(true).unwrap();
        assert!(matches!(keys.reload(), Some(Ok(_))));
        assert!(matches!(keys.reload(), Some(Ok(_))), "still pending");
        keys.activation = Duration::ZERO;
        assert!(matches!(keys.reload(), Some(Ok(_))), "turns active now");
        assert!(keys.reload().is_none(), "active: nothing left to wait for");
    }

    #[test]
    fn peers_are_all_up_only_when_every_configured_peer_resolved_to_an_up_member() {
        use crate::gossip::member::Health;
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
