//! The `hab` command tree (clap), with Habitat's commands and flags. Parsing only: each command
//! is carried out in `main.rs`. Bad input exits 1 with a message naming the flag and the form.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::binds::{BindSpec, BindingMode};
use crate::gossip::node::GossipConfig;
use crate::service::{Topology, UpdateStrategy};
use crate::sup::PeerSpec;

#[derive(Parser, Debug)]
#[command(
    name = "hab",
    version,
    about = "Habitat supervisor and CLI (habitat-rs)"
)]
pub struct Cli {
    /// Root of the supervisor's files.
    #[arg(long, global = true, env = "HAB_ROOT", default_value = "/hab")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The supervisor.
    #[command(subcommand)]
    Sup(SupCommand),
    /// Ring (gossip) keys.
    #[command(subcommand)]
    Ring(RingCommand),
    /// Plan tools.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Services of a supervisor (through its ctl gateway).
    #[command(subcommand)]
    Svc(SvcCommand),
    /// Configuration shared by the members of a service group.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Files shared by the members of a service group.
    #[command(subcommand)]
    File(FileCommand),
    /// Every service group of the ring, from any member's HTTP gateway.
    Census(CensusArgs),
    /// User encryption keys.
    #[command(subcommand)]
    User(UserCommand),
    /// Origin signing keys.
    #[command(subcommand)]
    Origin(OriginCommand),
    /// Packages: .hart files (build, sign, install, verify, info), depots (upload, promote,
    /// demote, channels) and container images (export).
    #[command(subcommand)]
    Pkg(PkgCommand),
    /// A package depot with channels, served from a directory.
    #[command(subcommand)]
    Depot(DepotCommand),
}

#[derive(Subcommand, Debug)]
pub enum PkgExportCommand {
    /// Writes an OCI image of a package (no container daemon needed) that runs
    /// `hab sup run IDENT` with this hab as /bin/hab: an OCI image layout directory, or a
    /// `docker load` tarball when the output ends in .tar.
    #[command(
        after_help = "Layers: this hab with its ELF interpreter and shared libraries; the \
                      package's runtime dependencies (TDEPS/DEPS, installed under --root); the \
                      package and its origins' public keys from the key cache. Files are \
                      stamped with SOURCE_DATE_EPOCH (0 when unset): the same inputs give the \
                      same image digest. Load it with `skopeo copy oci:DIR:TAG \
                      docker-daemon:NAME:TAG`, `docker load < FILE.tar` or `kind load \
                      image-archive FILE.tar`."
    )]
    Container(PkgExportContainerArgs),
}

/// `hab pkg export container`.
#[derive(Args, Debug)]
pub struct PkgExportContainerArgs {
    /// ORIGIN/NAME[/VERSION[/RELEASE]] installed under --root (the newest matching), a
    /// package directory, or a .hart file.
    #[arg(value_name = "IDENT|FILE.hart")]
    pub package: String,
    /// Image name and tag, NAME:TAG (repeatable) [default: ORIGIN/NAME:VERSION-RELEASE and
    /// ORIGIN/NAME:latest].
    #[arg(long = "tag", value_name = "NAME:TAG")]
    pub tags: Vec<String>,
    /// An OCI image layout directory (created, or added to), or FILE.tar for a `docker load`
    /// tarball [default: ./ORIGIN-NAME-VERSION-RELEASE.oci].
    #[arg(long, short = 'o', value_name = "DIR|FILE.tar")]
    pub output: Option<PathBuf>,
    /// Leave out runtime dependencies that are not installed (with a warning) instead of
    /// failing.
    #[arg(long)]
    pub skip_missing_deps: bool,
    /// A busybox binary (e.g. /bin/busybox of Debian's busybox-static) put at /bin/busybox,
    /// with /bin/sh and its other applets linked to it, as Habitat's images have: hooks
    /// written for /bin/sh need it unless the package's dependencies bring a shell.
    #[arg(long, value_name = "FILE")]
    pub busybox: Option<PathBuf>,
    #[command(flatten)]
    pub keys: CacheKeyPathArgs,
}

/// The ctl gateway a workstation command talks to.
#[derive(Args, Debug)]
pub struct RemoteSupArgs {
    /// Address of a supervisor's ctl gateway, HOST[:PORT] (port 9632 when left out).
    /// The secret comes from HAB_CTL_SECRET, else `ctl_secret` in ~/.hab/etc/cli.toml, else the
    /// local supervisor's <root>/sup/default/CTL_SECRET.
    #[arg(
        long,
        short = 'r',
        env = "HAB_SUP_CTL_ADDR",
        default_value = "127.0.0.1:9632",
        value_name = "HOST[:PORT]"
    )]
    pub remote_sup: String,
}

#[derive(Subcommand, Debug)]
pub enum SvcCommand {
    /// Queries the status of the services a supervisor runs.
    #[command(
        after_help = "Exit codes: 0 success (also when no service is loaded), 1 any \
                            other error, 2 the service named is not loaded, 3 no supervisor \
                            answers at the address."
    )]
    Status {
        /// A package identifier (ex: core/redis, core/busybox-static/1.42.2).
        #[arg(value_name = "PKG_IDENT")]
        pkg_ident: Option<String>,
        #[command(flatten)]
        remote: RemoteSupArgs,
    },
    /// Loads a service into a supervisor and starts it. The package must be installed under
    /// the supervisor's root (<root>/pkgs/ORIGIN/NAME/VERSION/RELEASE); the service comes back
    /// after a supervisor restart.
    #[command(after_help = SVC_EXIT_CODES)]
    Load(Box<SvcLoadArgs>),
    /// Stops a service and unloads it (it no longer comes back after a restart).
    #[command(after_help = SVC_EXIT_CODES)]
    Unload(SvcIdentArgs),
    /// Starts a loaded service that was stopped.
    #[command(after_help = SVC_EXIT_CODES)]
    Start(SvcIdentArgs),
    /// Stops a service and keeps it loaded, down (also after a restart), until `hab svc start`.
    #[command(after_help = SVC_EXIT_CODES)]
    Stop(SvcIdentArgs),
    /// Changes how a loaded service follows new releases (strategy, channel, depot, period)
    /// without restarting it.
    #[command(after_help = SVC_EXIT_CODES)]
    Update(Box<SvcUpdateArgs>),
    /// Service group encryption keys.
    #[command(subcommand)]
    Key(SvcKeyCommand),
}

/// The service a `hab svc unload|start|stop` names, and its supervisor.
#[derive(Args, Debug)]
pub struct SvcIdentArgs {
    /// A package identifier (ex: core/redis).
    #[arg(value_name = "PKG_IDENT")]
    pub pkg_ident: String,
    #[command(flatten)]
    pub remote: RemoteSupArgs,
}

const SVC_EXIT_CODES: &str = "Exit codes: 0 success, 1 any other error, 2 the service named \
                              is not loaded (or its package not installed, for load), 3 no \
                              supervisor answers at the address.";

/// `hab svc load`. Flags left out keep the supervisor's defaults for a new service (group
/// default, standalone, strategy none, channel stable, binding mode strict, health checks
/// every 30 s), and the service's current settings with --force.
#[derive(Args, Debug)]
pub struct SvcLoadArgs {
    /// A package identifier (ex: core/redis, core/busybox-static/1.42.2).
    #[arg(value_name = "PKG_IDENT")]
    pub pkg_ident: String,
    /// Service group name.
    #[arg(long)]
    pub group: Option<String>,
    /// standalone, leader or initializer (initializer: our supervisors only).
    #[arg(long, short = 't', value_parser = parse_topology)]
    pub topology: Option<Topology>,
    /// How the service follows new releases: none, at-once or rolling.
    #[arg(long, short = 's', value_parser = parse_strategy)]
    pub strategy: Option<UpdateStrategy>,
    /// The release channel the service follows.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// The package depot the service updates from: file:///DIR or http://HOST:PORT (required
    /// with --strategy at-once or rolling).
    #[arg(long, short = 'u', value_name = "URL", env = "HAB_BLDR_URL")]
    pub url: Option<String>,
    /// Seconds between polls of the depot (whole seconds; each wait jittered by +-10%).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub update_period: Option<Duration>,
    /// Bind one of the package's binds to a service group (repeatable), NAME:SVC.GROUP.
    #[arg(long = "bind", value_name = "NAME:SVC.GROUP")]
    pub binds: Vec<BindSpec>,
    /// strict: wait until every bound group offers what the bind needs; relaxed: start at once.
    #[arg(long, value_enum)]
    pub binding_mode: Option<BindingMode>,
    /// Seconds between health checks (whole seconds).
    #[arg(long, short = 'i', value_name = "SECS", value_parser = parse_secs)]
    pub health_check_interval: Option<Duration>,
    /// Replace a loaded service's settings with the flags given. Only the update settings
    /// changed (strategy, channel, url, update period): the service keeps running; anything
    /// else: it restarts.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub remote: RemoteSupArgs,
}

/// `hab svc update`: flags left out keep the service's current settings.
#[derive(Args, Debug)]
pub struct SvcUpdateArgs {
    /// The loaded service's package identifier (ex: core/redis).
    #[arg(value_name = "PKG_IDENT")]
    pub pkg_ident: String,
    /// How the service follows new releases: none, at-once or rolling.
    #[arg(long, short = 's', value_parser = parse_strategy)]
    pub strategy: Option<UpdateStrategy>,
    /// The release channel the service follows.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// The package depot: file:///DIR or http://HOST:PORT.
    #[arg(long, short = 'u', value_name = "URL", env = "HAB_BLDR_URL")]
    pub url: Option<String>,
    /// Seconds between polls of the depot (whole seconds; each wait jittered by +-10%).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub update_period: Option<Duration>,
    #[command(flatten)]
    pub remote: RemoteSupArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Sets a configuration to be shared by members of a service group.
    #[command(
        after_help = "The config is at most 64 KiB of TOML, checked before anything is \
                            sent (and before it is encrypted, with --user; the encrypted text \
                            must fit in 64 KiB too). VERSION must be above the service group's \
                            current one."
    )]
    Apply(ConfigApplyArgs),
    /// Displays the default configuration of a loaded package (its default.toml, as the
    /// supervisor has it).
    Show {
        /// A package identifier (ex: core/redis).
        #[arg(value_name = "PKG_IDENT")]
        pkg_ident: String,
        #[command(flatten)]
        remote: RemoteSupArgs,
    },
}

#[derive(Args, Debug)]
pub struct ConfigApplyArgs {
    /// Target service group service.group[@organization] (ex: redis.default).
    #[arg(value_name = "SERVICE_GROUP")]
    pub service_group: String,
    /// A version number (positive integer) for this configuration (ex: 42).
    #[arg(value_name = "VERSION_NUMBER")]
    pub version: u64,
    /// Path to a TOML file, or "-" for standard input (the default).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Encrypt for the service group: sealed with USER's newest secret key for the group's
    /// newest public key (both in the key cache, see --cache-key-path). Members holding the
    /// group's secret key and USER's public key decrypt it; others keep their current config.
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub keys: CacheKeyPathArgs,
    #[command(flatten)]
    pub remote: RemoteSupArgs,
}

#[derive(Subcommand, Debug)]
pub enum FileCommand {
    /// Uploads a file (at most 64 KiB) to be shared between members of a service group.
    Upload(FileUploadArgs),
}

#[derive(Args, Debug)]
pub struct FileUploadArgs {
    /// Target service group service.group[@organization] (ex: redis.default).
    #[arg(value_name = "SERVICE_GROUP")]
    pub service_group: String,
    /// A version number (positive integer) for this file (ex: 42).
    #[arg(value_name = "VERSION_NUMBER")]
    pub version: u64,
    /// Path to the file; members see it under its base name.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Encrypt for the service group: sealed with USER's newest secret key for the group's
    /// newest public key (both in the key cache, see --cache-key-path). Members holding the
    /// group's secret key and USER's public key decrypt it; others keep their current copy of the file.
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub keys: CacheKeyPathArgs,
    #[command(flatten)]
    pub remote: RemoteSupArgs,
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Renders a config template with default.toml, user.toml and mock data.
    Render(crate::plan::RenderArgs),
}

#[derive(Subcommand, Debug)]
pub enum SupCommand {
    /// Runs a supervisor that joins a ring, optionally loading a package.
    Run(Box<RunArgs>),
    /// Permanently marks a member of the ring as departed.
    Depart {
        /// The member id of the supervisor to depart.
        #[arg(value_name = "MEMBER_ID")]
        member_id: String,
        #[command(flatten)]
        remote: RemoteSupArgs,
    },
    /// Restarts a supervisor: its services stop, it leaves the ring, and it starts again with
    /// the same binary and arguments (same pid), reloading its saved services.
    Restart {
        #[command(flatten)]
        remote: RemoteSupArgs,
    },
    /// Gracefully stops the supervisor of this root (--root, HAB_ROOT) and its services.
    #[command(
        after_help = "Exit codes: 0 stopped (or signalled, with --no-wait), 1 no \
                            supervisor runs on this root, or it did not stop in time."
    )]
    Term {
        /// Return once SIGTERM is sent, as Habitat's hab does, instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the supervisor to stop.
        #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum RingCommand {
    #[command(subcommand)]
    Key(RingKeyCommand),
}

#[derive(Subcommand, Debug)]
pub enum RingKeyCommand {
    /// Writes a new ring key `<root>/cache/keys/NAME-<YYYYMMDDhhmmss>.sym.key`.
    Generate {
        /// Ring name: letters, digits, '-' and '_'.
        name: String,
    },
}

// `hab svc key generate`, `hab user key generate`: box key pairs (keys.rs), written locally;
// `hab config apply --user`, `hab file upload --user` read them.

/// Where key files are written and read.
#[derive(Args, Debug)]
pub struct CacheKeyPathArgs {
    /// Directory of key files [default: <root>/cache/keys, or ~/.hab/cache/keys for a user
    /// other than root when neither --root nor HAB_ROOT is given].
    #[arg(long, env = "HAB_CACHE_KEY_PATH", value_name = "DIR")]
    pub cache_key_path: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SvcKeyCommand {
    /// Generates a service group's encryption key pair, SVC.GROUP@ORG-<YYYYMMDDhhmmss>.box.key
    /// (secret, 0600) and .pub.
    Generate {
        /// Target service group service.group[@organization] (ex: redis.default or
        /// foo.default@bazcorp).
        #[arg(value_name = "SERVICE_GROUP")]
        service_group: String,
        /// The service organization (left out: the key is named after SERVICE_GROUP alone).
        #[arg(value_name = "ORG", env = "HABITAT_ORG")]
        org: Option<String>,
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    #[command(subcommand)]
    Key(UserKeyCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserKeyCommand {
    /// Generates a user's encryption key pair, USER-<YYYYMMDDhhmmss>.box.key (secret, 0600) and
    /// .pub.
    Generate {
        /// Name of the user key.
        #[arg(value_name = "USER")]
        user: String,
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum OriginCommand {
    #[command(subcommand)]
    Key(OriginKeyCommand),
}

#[derive(Subcommand, Debug)]
pub enum OriginKeyCommand {
    /// Generates an origin signing key pair, ORIGIN-<YYYYMMDDhhmmss>.sig.key (secret, 0600) and
    /// .pub, in the key cache.
    Generate {
        /// The origin name (a-z 0-9 _ -).
        #[arg(value_name = "ORIGIN", env = "HAB_ORIGIN")]
        origin: String,
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
    /// Outputs the latest origin key contents to stdout.
    Export {
        /// The origin name.
        #[arg(value_name = "ORIGIN")]
        origin: String,
        /// Export either the 'public' or 'secret' key. The 'secret' key is the origin private key.
        #[arg(long = "type", short = 't', value_enum, default_value = "public")]
        key_type: crate::workstation::pkg::KeyType,
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
    /// Reads a stdin stream containing a public or secret origin key's contents and writes the
    /// key to disk.
    Import {
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
}

/// `hab pkg build`.
#[derive(Args, Debug)]
pub struct PkgBuildArgs {
    /// A package directory (Habitat layout, with a fully qualified IDENT).
    #[arg(value_name = "PKG_DIR")]
    pub dir: PathBuf,
    /// The signing key: ORIGIN for its newest key, or ORIGIN-<YYYYMMDDhhmmss> [default: the
    /// newest key of the package's origin].
    #[arg(long, short = 'k', value_name = "NAME")]
    pub origin_key: Option<String>,
    /// Where the .hart goes.
    #[arg(
        long = "output",
        short = 'o',
        value_name = "OUT_DIR",
        default_value = "results"
    )]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub keys: CacheKeyPathArgs,
}

/// `hab pkg install`.
#[derive(Args, Debug)]
pub struct PkgInstallArgs {
    /// One or more Habitat package identifiers (ex: acme/redis) and/or paths to a Habitat
    /// Artifact (ex: /home/acme-redis-3.0.7-21120102031201-x86_64-linux.hart).
    #[arg(value_name = "PKG_IDENT_OR_ARTIFACT", required = true)]
    pub targets: Vec<String>,
    /// Install from the specified release channel.
    #[arg(
        long,
        short = 'c',
        value_name = "CHANNEL",
        env = "HAB_BLDR_CHANNEL",
        default_value = "stable"
    )]
    pub channel: String,
    /// The depot idents are installed from (--url, HAB_BLDR_URL).
    #[command(flatten)]
    pub depot: DepotArgs,
    #[command(flatten)]
    pub keys: CacheKeyPathArgs,
}

fn parse_topology(text: &str) -> Result<Topology, String> {
    text.parse()
}

fn parse_strategy(text: &str) -> Result<UpdateStrategy, String> {
    text.parse()
}

fn parse_peer(text: &str) -> Result<PeerSpec, String> {
    text.parse()
}

/// The longest timing a flag takes: a year. Longer ones overflow deadlines (`Instant + d`),
/// and `1e20` made `Duration::from_secs_f64` panic.
const MAX_FLAG_SECS: f64 = 365.0 * 24.0 * 3600.0;

fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_FLAG_SECS)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            format!(
                "expected a positive number of seconds up to {MAX_FLAG_SECS} (a year), found \
                 {text:?}"
            )
        })
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A package directory (Habitat layout) or ORIGIN/NAME installed under <root>/pkgs.
    pub pkg: Option<String>,
    /// Where gossip (UDP and TCP) listens, IP:PORT.
    #[arg(long, default_value = "0.0.0.0:9638", value_name = "IP:PORT")]
    pub listen_gossip: SocketAddr,
    /// Where the HTTP gateway listens, IP:PORT.
    #[arg(long, default_value = "0.0.0.0:9631", value_name = "IP:PORT")]
    pub listen_http: SocketAddr,
    /// Where the control gateway listens, IP:PORT.
    #[arg(long, default_value = "127.0.0.1:9632", value_name = "IP:PORT")]
    pub listen_ctl: SocketAddr,
    /// A member of the ring to join through (repeatable), IP[:PORT] or HOST[:PORT].
    #[arg(long = "peer", value_name = "IP[:PORT]", value_parser = parse_peer)]
    pub peers: Vec<PeerSpec>,
    /// A file of peers, one IP[:PORT] per line, re-read while running.
    #[arg(long, value_name = "FILE")]
    pub peer_watch_file: Option<PathBuf>,
    /// This member is permanent: others keep contacting it while it is down.
    #[arg(long)]
    pub permanent_peer: bool,
    /// Ring key name: every revision in <root>/cache/keys is accepted, the newest sealed with.
    #[arg(long, value_name = "NAME")]
    pub ring: Option<String>,
    /// Content of a ring key file (alternative to --ring).
    #[arg(long, env = "HAB_RING_KEY", hide_env_values = true, hide = true)]
    pub ring_key: Option<String>,
    /// A ring key file younger than this is accepted but not yet sealed with, so a new key can
    /// be copied to every member before anyone depends on it (at least 6 s: keys are re-read
    /// every 5 s).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub ring_key_activation: Duration,
    /// Service group name.
    #[arg(long, default_value = "default")]
    pub group: String,
    /// standalone, leader or initializer.
    #[arg(long, short = 't', default_value = "standalone", value_parser = parse_topology)]
    pub topology: Topology,
    /// How the service follows new releases: none, at-once or rolling (rolling runs the
    /// group's update election).
    #[arg(long, short = 's', default_value = "none", value_parser = parse_strategy)]
    pub strategy: UpdateStrategy,
    /// The release channel the service follows.
    #[arg(long, default_value = "stable", value_name = "CHANNEL")]
    pub channel: String,
    /// The package depot the service updates from: file:///DIR or http://HOST:PORT (required
    /// with --strategy at-once or rolling).
    #[arg(long, short = 'u', value_name = "URL", env = "HAB_BLDR_URL")]
    pub url: Option<String>,
    /// Seconds between polls of the depot (each wait jittered by +-10%).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub update_period: Duration,
    /// Bind one of the package's binds to a service group (repeatable), NAME:SVC.GROUP.
    #[arg(long = "bind", value_name = "NAME:SVC.GROUP")]
    pub binds: Vec<BindSpec>,
    /// strict: the service waits until every bound group offers the exports it needs;
    /// relaxed: it starts at once.
    #[arg(long, value_enum, default_value = "strict")]
    pub binding_mode: BindingMode,
    /// Seconds between health checks.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub health_check_interval: Duration,
    /// This member's node name (host or pod name). Members sharing a name all stay members;
    /// only a name given here (not the default host name) lets a newer member replace an
    /// older one that no longer answers. Defaults to the host name.
    #[arg(long, env = "HAB_NODE_NAME")]
    pub node_name: Option<String>,
    /// The IP address peers reach this member at (default: the listen address, or the host
    /// name's address).
    #[arg(long, value_name = "IP")]
    pub sys_ip_address: Option<IpAddr>,
    #[command(flatten)]
    pub timing: TimingArgs,
}

/// Every timing of the ring, LAN profile by default.
#[derive(Args, Debug)]
pub struct TimingArgs {
    /// SWIM probe interval.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub probe_interval: Duration,
    /// SWIM probe timeout before indirect probes.
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_secs)]
    pub probe_timeout: Duration,
    /// Suspicion lasts MULT * max(1, log10 N) probe intervals.
    #[arg(long, value_name = "MULT", default_value_t = 3.0)]
    pub suspicion_mult: f64,
    /// Interval of rumor and membership gossip.
    #[arg(long, value_name = "SECS", default_value = "0.2", value_parser = parse_secs)]
    pub gossip_interval: Duration,
    /// Base interval of push-pull anti-entropy.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub sync_interval: Duration,
    /// How often configured and permanent peers that are down are re-contacted.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub heal_interval: Duration,
    /// Confirmed-dead members are forgotten after this long.
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = parse_secs)]
    pub dead_member_ttl: Duration,
    /// Tombstones of unloaded services are forgotten after this long.
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = parse_secs)]
    pub tombstone_ttl: Duration,
    /// Envelopes older or newer than this (clock skew) are rejected as replays.
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_secs)]
    pub replay_window: Duration,
    /// A group's leader, holding quorum, retires a member confirmed dead this long from the
    /// group's electorate (one at a time, at least this far apart).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub retire_after: Duration,
}

impl TimingArgs {
    pub fn gossip_config(&self) -> Result<GossipConfig, String> {
        if !(self.suspicion_mult.is_finite() && self.suspicion_mult > 0.0) {
            return Err(format!(
                "--suspicion-mult: expected a positive number, found {}",
                self.suspicion_mult
            ));
        }
        let mut config = GossipConfig::lan();
        config.swim.probe_period = self.probe_interval;
        config.swim.probe_timeout = self.probe_timeout;
        config.swim.suspicion_mult = self.suspicion_mult;
        config.swim.gossip_interval = self.gossip_interval;
        config.swim.dead_member_ttl = self.dead_member_ttl;
        config.sync_interval = self.sync_interval;
        config.heal_interval = self.heal_interval;
        config.maintenance_interval = self.heal_interval;
        config.tombstone_ttl = self.tombstone_ttl;
        config.replay_window = self.replay_window;
        Ok(config)
    }
}

/// `hab census`.
#[derive(Args, Debug)]
#[command(
    after_help = "The bearer token, when the gateway wants one, comes from \
                  HAB_SUP_GATEWAY_AUTH_TOKEN. Exit codes: 0 success, 1 any other error, 3 no \
                  gateway answers at the address."
)]
pub struct CensusArgs {
    /// Address of a supervisor's HTTP gateway, HOST[:PORT] (port 9631 when left out).
    #[arg(
        long,
        env = "HAB_SUP_HTTP_ADDR",
        default_value = "127.0.0.1:9631",
        value_name = "HOST[:PORT]"
    )]
    pub remote_http: String,
    /// Redraw whenever the census changes (polled every second) until Ctrl-C.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

// `hab pkg upload|promote|demote|channels` and `hab depot serve` (workstation/depot.rs).

#[derive(Subcommand, Debug)]
pub enum PkgCommand {
    /// Signs a package directory as it is (no studio) into
    /// OUT_DIR/<origin>-<name>-<version>-<release>-x86_64-linux.hart and prints its path.
    Build(PkgBuildArgs),
    /// Signs an archive with an origin key, generating a Habitat Artifact.
    Sign {
        /// Origin key used to create signature (ORIGIN for its newest key, or
        /// ORIGIN-<YYYYMMDDhhmmss>).
        #[arg(long, value_name = "ORIGIN", env = "HAB_ORIGIN")]
        origin: String,
        /// A path to a source archive file (ex: /home/acme-redis-3.0.7-21120102031201.tar.xz).
        #[arg(value_name = "SOURCE")]
        source: PathBuf,
        /// The destination path to the signed Habitat Artifact.
        #[arg(value_name = "DEST")]
        dest: PathBuf,
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
    /// Installs a package from a Habitat Artifact (verified against the origin's public key in
    /// the key cache before anything is unpacked) into <root>/pkgs, or by ident from a depot.
    Install(PkgInstallArgs),
    /// Verifies a Habitat Artifact with an origin key.
    Verify {
        /// A path to a Habitat Artifact (ex: /home/acme-redis-3.0.7-21120102031201-x86_64-linux.hart).
        #[arg(value_name = "SOURCE")]
        source: PathBuf,
        #[command(flatten)]
        keys: CacheKeyPathArgs,
    },
    /// Returns the Habitat Artifact's header and package ident (no signature check).
    Info {
        /// A path to a Habitat Artifact.
        #[arg(value_name = "SOURCE")]
        source: PathBuf,
    },
    #[command(flatten)]
    Depot(PkgDepotCommand),
    /// Exports a package to another format.
    #[command(subcommand)]
    Export(PkgExportCommand),
}

#[derive(Subcommand, Debug)]
pub enum PkgDepotCommand {
    /// Uploads .hart files to a depot: each lands in unstable (and with --channel there too).
    Upload(PkgUploadArgs),
    /// Promotes a release to a channel (created if it does not exist).
    Promote(PkgChannelArgs),
    /// Demotes a release from a channel (never from unstable).
    Demote(PkgChannelArgs),
    /// Lists the channels a release is in (one per line).
    Channels(PkgChannelsArgs),
}

/// The depot a `hab pkg` command talks to.
#[derive(Args, Debug)]
pub struct DepotArgs {
    /// The depot: http://HOST:PORT of a `hab depot serve`, or file:///DIR (a directory of .hart
    /// files).
    #[arg(long, short = 'u', env = "HAB_BLDR_URL", value_name = "BLDR_URL")]
    pub url: Option<String>,
    /// Token for writes to an HTTP depot (the one its --token-file holds).
    #[arg(
        long,
        short = 'z',
        env = "HAB_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "AUTH_TOKEN"
    )]
    pub auth: Option<String>,
}

#[derive(Args, Debug)]
pub struct PkgUploadArgs {
    /// One or more .hart files (ex: core-redis-7.2.4-20240101000000-x86_64-linux.hart).
    #[arg(value_name = "HART_FILE", required = true)]
    pub hart_files: Vec<PathBuf>,
    /// An additional release channel; packages always land in unstable.
    #[arg(long, short = 'c', value_name = "CHANNEL")]
    pub channel: Option<String>,
    #[command(flatten)]
    pub depot: DepotArgs,
    /// The signer's public key, when in the key cache, is uploaded too (for installers).
    #[command(flatten)]
    pub keys: CacheKeyPathArgs,
}

#[derive(Args, Debug)]
pub struct PkgChannelArgs {
    /// A fully qualified package identifier (ex: core/busybox-static/1.42.2/20170513215502).
    #[arg(value_name = "PKG_IDENT")]
    pub pkg_ident: String,
    /// The release channel.
    #[arg(value_name = "CHANNEL")]
    pub channel: String,
    #[command(flatten)]
    pub depot: DepotArgs,
}

#[derive(Args, Debug)]
pub struct PkgChannelsArgs {
    /// A fully qualified package identifier (ex: core/busybox-static/1.42.2/20170513215502).
    #[arg(value_name = "PKG_IDENT")]
    pub pkg_ident: String,
    #[command(flatten)]
    pub depot: DepotArgs,
}

#[derive(Subcommand, Debug)]
pub enum DepotCommand {
    /// Serves DIR (created if missing) as a depot over HTTP, with Builder's API paths, until
    /// SIGINT or SIGTERM. Layout and API: docs/depot.md.
    Serve(DepotServeArgs),
}

#[derive(Args, Debug)]
pub struct DepotServeArgs {
    /// The depot directory: .hart files and channels/ (a plain directory of .hart files works).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to listen, IP:PORT (9636 is Builder API's port).
    #[arg(long, default_value = "127.0.0.1:9636", value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// A file holding the token writes (upload, promote, demote) need; it must not be readable
    /// by others. Without it anyone who can connect may write. Reads are always open.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The largest .hart accepted.
    #[arg(long, value_name = "BYTES", default_value_t = 2 << 30)]
    pub max_upload_bytes: u64,
    /// Open connections at most (more are closed at once).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timings_are_positive_seconds_up_to_a_year_and_never_panic() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("31536000"), Ok(Duration::from_secs(31_536_000)));
        for bad in ["1e20", "31536001", "0", "-1", "NaN", "inf", "soon"] {
            let err = parse_secs(bad).unwrap_err();
            assert!(
                err.contains("positive number of seconds up to") && err.contains(bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn update_flags_default_to_no_url_and_a_minute_and_svc_update_parses() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["hab", "sup", "run", "core/web"]).unwrap();
        let Command::Sup(SupCommand::Run(run)) = cli.command else {
            panic!("not sup run")
        };
        assert_eq!(run.update_period, Duration::from_secs(60));
        assert_eq!(run.channel, "stable");
        let cli = Cli::try_parse_from([
            "hab",
            "sup",
            "run",
            "core/web",
            "--strategy",
            "rolling",
            "--url",
            "file:///d",
            "--update-period",
            "1",
        ])
        .unwrap();
        let Command::Sup(SupCommand::Run(run)) = cli.command else {
            panic!("not sup run")
        };
        assert_eq!(run.strategy, UpdateStrategy::Rolling);
        assert_eq!(run.url.as_deref(), Some("file:///d"));
        assert_eq!(run.update_period, Duration::from_secs(1));
        let cli = Cli::try_parse_from([
            "hab",
            "svc",
            "update",
            "core/web",
            "--channel",
            "beta",
            "--update-period",
            "5",
        ])
        .unwrap();
        let Command::Svc(SvcCommand::Update(update)) = cli.command else {
            panic!("not svc update")
        };
        assert_eq!(update.channel.as_deref(), Some("beta"));
        assert_eq!(update.update_period, Some(Duration::from_secs(5)));
        assert_eq!(update.strategy, None);
    }
}
