//! Runs real `hab sup run` processes side by side for end-to-end tests and the ring benchmark.
//! Each supervisor gets its own temp root and its own loopback address (127.0.X.n, one block X
//! per test, so tests run in parallel without port clashes); its log goes to `<root>/hab.log`
//! and the last lines are printed when a test fails. Waiting is always a condition with a
//! deadline (`wait_until`), never a bare sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod k8s;
pub mod node_agent;
pub mod update;

use serde_json::Value;

pub const GOSSIP_PORT: u16 = 9638;
pub const HTTP_PORT: u16 = 9631;
pub const CTL_PORT: u16 = 9632;
/// The service group of the example package.
pub const HELLO_GROUP: &str = "hello.default";
/// How often `wait_until` and friends look again.
const POLL: Duration = Duration::from_millis(75);
/// Ring timings fast enough for tests: a dead member is confirmed in about a second.
pub const FAST_TIMINGS: [&str; 10] = [
    "--probe-interval",
    "0.2",
    "--probe-timeout",
    "0.1",
    "--gossip-interval",
    "0.1",
    "--sync-interval",
    "1",
    "--heal-interval",
    "1",
];
/// Environment variables of the test process that must not leak into a supervisor.
const SCRUBBED_ENV: [&str; 7] = [
    "HAB_BLDR_URL",
    "HAB_CACHE_KEY_PATH",
    "HAB_RING_KEY",
    "HAB_ROOT",
    "HAB_NODE_NAME",
    "HAB_SUP_GATEWAY_AUTH_TOKEN",
    "RUST_LOG",
];

// ---------------------------------------------------------------------------------------------
// Locating the binary and the example package

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$CARGO_TARGET_DIR` (relative to the workspace if relative) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_dir().join(dir),
        None => workspace_dir().join("target"),
    }
}

/// The `hab` binary of the profile this crate was built with (`HAB_BIN` overrides). Brought up
/// to date once per process with `cargo build -p habitat-sidecar --bin hab` (a no-op when it is
/// fresh), so the tests never run a stale supervisor.
pub fn hab_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HAB_BIN") {
            return PathBuf::from(bin);
        }
        built_binary("habitat-sidecar", "hab")
    })
}

/// A binary of this crate (e.g. `udp-blackhole`), built as `hab_binary` is: for the bench
/// binaries, as `cargo run --bin X` builds X alone (tests have `CARGO_BIN_EXE_<name>`).
pub fn e2e_binary(name: &str) -> PathBuf {
    built_binary("habitat-e2e", name)
}

/// The `habitat-operator` binary, built as `hab_binary` is.
pub fn operator_binary() -> PathBuf {
    built_binary("habitat-operator", "habitat-operator")
}

/// The image builder `habitat-images` (tools/images), built as `hab_binary` is.
pub fn images_binary() -> PathBuf {
    built_binary("habitat-images", "habitat-images")
}

/// `bin` of `package` in the profile of this crate, after `cargo build` of it.
fn built_binary(package: &str, bin: &str) -> PathBuf {
    let release = !cfg!(debug_assertions);
    let path = target_dir()
        .join(if release { "release" } else { "debug" })
        .join(bin);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace_dir())
        .args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        build.arg("--release");
    }
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) if path.exists() => {
            eprintln!(
                "building {bin} failed ({status}); testing {}",
                path.display()
            );
        }
        Ok(status) => panic!("building {bin} failed: {status}"),
        Err(e) if path.exists() => {
            eprintln!("cannot run cargo ({e}); testing {}", path.display());
        }
        Err(e) => panic!("cannot run cargo to build {bin}: {e}"),
    }
    assert!(
        path.exists(),
        "{bin} binary not found at {}",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Reading images with standard tools (tests/tests/export.rs, tests/tests/images.rs)

/// A tool the image tests need (skopeo, umoci, busybox), by its path; missing is a failure
/// that says how to get it.
pub fn image_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in PATH: the image tests read images with skopeo and umoci \
                 and put busybox in them (scripts/test installs them: apt-get install skopeo \
                 umoci busybox-static)"
            )
        })
}

/// Runs `cmd` and returns its stdout; panics with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `skopeo ARGS` (an `inspect`), its JSON output parsed.
pub fn skopeo_json(args: &[&str]) -> Value {
    // No policy or registry configuration is read for local transports, but skopeo still
    // wants a policy file: an insecure-accept-anything one of our own keeps the host's out.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let text = run_ok(
        Command::new(image_tool("skopeo"))
            .arg("--policy")
            .arg(&policy)
            .args(args),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("skopeo {args:?}: {e}: {text}"))
}

/// The example package whose service group is `hello.default`.
pub fn hello_package() -> PathBuf {
    workspace_dir().join("examples/packages/hello")
}

/// Copies the directory tree `from` to `to`, keeping file modes (hooks stay executable).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `condition` until it holds; panics naming `what` when `deadline` has passed.
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(deadline, what, || {
        if condition() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
}

/// Polls `check` until it returns `Ok`; panics naming `what` and the last reason it gave when
/// `deadline` has passed. Returns the value and how long it took.
pub fn wait_for<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}; last: {last}");
        }
        std::thread::sleep(POLL);
    }
}

/// Checks `invariant` repeatedly for `window` and panics naming `what` the first time it fails.
/// For "never" statements: the window is an observation, not a synchronisation.
pub fn holds_throughout(
    window: Duration,
    what: &str,
    mut invariant: impl FnMut() -> Result<(), String>,
) {
    let start = Instant::now();
    loop {
        if let Err(reason) = invariant() {
            panic!(
                "{what} stopped holding after {:?}: {reason}",
                start.elapsed()
            );
        }
        if start.elapsed() > window {
            return;
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A blocking HTTP/1.0 GET. Returns the body of a 200 answer, or what went wrong.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("GET http://{addr}{path}: connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("GET http://{addr}{path}: write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("GET http://{addr}{path}: read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{addr}{path}: no header end in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET http://{addr}{path}: {status}: {body}"));
    }
    Ok(body.to_string())
}

/// A GET from inside network namespace `ns` (with curl there), for supervisors the test's own
/// namespace cannot reach.
pub fn netns_http_get(ns: &str, addr: SocketAddr, path: &str) -> Result<String, String> {
    let url = format!("http://{addr}{path}");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "-f",
            "--max-time",
            "3",
            &url,
        ])
        .output()
        .map_err(|e| format!("ip netns exec {ns} curl {url}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip netns exec {ns} curl {url}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The value of one series in Prometheus text, e.g. `hab_gossip_members{health="alive"}`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The sum of every series of a metric family, e.g. `hab_gossip_dropped_total`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

/// Every `hab_gossip_dropped_total` series as reason -> count.
pub fn dropped_by_reason(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("hab_gossip_dropped_total{reason=\""))
        .filter_map(|rest| {
            let (reason, rest) = rest.split_once("\"} ")?;
            Some((reason.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// SplitMix64: enough randomness for fuzzing input, and replayable from the printed seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `HAB_E2E_SEED` if set, else the clock; prints the seed so a run can be replayed.
    pub fn from_env_or_clock() -> Rng {
        let seed = std::env::var("HAB_E2E_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("random seed {seed} (replay with HAB_E2E_SEED={seed})");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Supervisors

/// The loopback address of host `host` in test block `block`: 127.0.block.host.
pub const fn ip(block: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, block, host)
}

/// What a supervisor is told its node name is.
#[derive(Clone, Debug)]
enum NodeName {
    /// `--node-name node-127-0-X-n`, unique per address.
    PerAddress,
    /// `--node-name NAME`.
    Given(String),
    /// No `--node-name`: the host name, which every supervisor here shares.
    HostName,
}

/// How a supervisor is started; kept so `restart` runs the very same command.
#[derive(Clone, Debug)]
pub struct SupervisorBuilder {
    ip: Ipv4Addr,
    node_name: NodeName,
    peers: Vec<Ipv4Addr>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    service: bool,
    fast: bool,
    files: Vec<(PathBuf, Vec<u8>, Duration)>,
    /// Runs inside this network namespace (`ip netns exec`); HTTP goes through curl there.
    netns: Option<String>,
}

impl SupervisorBuilder {
    /// Runs the supervisor inside network namespace `ns` (created by the test, e.g. with
    /// `NetnsLab`); its address must be one of that namespace's.
    pub fn in_netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_string());
        self
    }

    /// Joins through `peer` (repeatable).
    pub fn peer(mut self, peer: Ipv4Addr) -> Self {
        self.peers.push(peer);
        self
    }

    pub fn peers(mut self, peers: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.peers.extend(peers);
        self
    }

    /// Any further `hab sup run` flags.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes `contents` to `<root>/<relative>` before the first start.
    pub fn file(self, relative: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.file_modified_ago(relative, contents, Duration::ZERO)
    }

    /// Like `file`, with a modification time `ago` in the past (a key installed long ago).
    pub fn file_modified_ago(
        mut self,
        relative: impl Into<PathBuf>,
        contents: impl Into<Vec<u8>>,
        ago: Duration,
    ) -> Self {
        self.files.push((relative.into(), contents.into(), ago));
        self
    }

    /// `--node-name NAME` instead of the default one per address.
    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = NodeName::Given(name.to_string());
        self
    }

    /// No `--node-name`: the supervisor takes the host name, as every other one without it.
    pub fn without_node_name(mut self) -> Self {
        self.node_name = NodeName::HostName;
        self
    }

    /// Runs without loading the example package.
    pub fn without_service(mut self) -> Self {
        self.service = false;
        self
    }

    /// Habitat's default (LAN) timings instead of the fast test timings.
    pub fn default_timings(mut self) -> Self {
        self.fast = false;
        self
    }

    /// Starts the supervisor without waiting for it to answer.
    pub fn spawn(self) -> Supervisor {
        let root = self.new_root();
        let mut sup = Supervisor {
            spec: self,
            log: root.path().join("hab.log"),
            root,
            retired_roots: Vec::new(),
            child: None,
            started: Instant::now(),
        };
        sup.spawn_child();
        sup
    }

    /// A fresh temp root holding the files given with `file`.
    fn new_root(&self) -> tempfile::TempDir {
        let root = tempfile::Builder::new()
            .prefix(&format!("hab-e2e-{}-", self.ip))
            .tempdir()
            .expect("create a temp root");
        for (relative, contents, ago) in &self.files {
            let path = root.path().join(relative);
            write_atomically(&path, contents);
            if !ago.is_zero() {
                File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now() - *ago))
                    .unwrap_or_else(|e| panic!("{}: set mtime: {e}", path.display()));
            }
        }
        root
    }

    /// Starts the supervisor and waits until its HTTP gateway answers.
    pub fn start(self) -> Supervisor {
        let mut sup = self.spawn();
        sup.wait_ready();
        sup
    }
}

/// One `hab sup run` child process with its own root and address. Dropping it kills the process
/// (and prints its log tail if the test is failing).
pub struct Supervisor {
    spec: SupervisorBuilder,
    root: tempfile::TempDir,
    /// Roots of earlier lives (`restart_with_fresh_root`); the log stays in the first one.
    retired_roots: Vec<tempfile::TempDir>,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
}

impl Supervisor {
    /// A supervisor at 127.0.`block`.`host`, with the example package and fast timings.
    pub fn at(block: u8, host: u8) -> SupervisorBuilder {
        Supervisor::at_ip(ip(block, host))
    }

    /// A supervisor at `ip` (an address the test owns, e.g. inside a network namespace).
    pub fn at_ip(ip: Ipv4Addr) -> SupervisorBuilder {
        SupervisorBuilder {
            ip,
            node_name: NodeName::PerAddress,
            peers: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            service: true,
            fast: true,
            files: Vec::new(),
            netns: None,
        }
    }

    /// `hab sup run` arguments, from the spec.
    fn command(&self) -> Command {
        let spec = &self.spec;
        let ip = IpAddr::V4(spec.ip);
        let mut cmd = match &spec.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(hab_binary());
                cmd
            }
            None => Command::new(hab_binary()),
        };
        cmd.args(["sup", "run"]);
        if spec.service {
            cmd.arg(hello_package());
        }
        cmd.arg("--root").arg(self.root.path());
        cmd.arg("--listen-gossip")
            .arg(SocketAddr::new(ip, GOSSIP_PORT).to_string());
        cmd.arg("--listen-http")
            .arg(SocketAddr::new(ip, HTTP_PORT).to_string());
        cmd.arg("--listen-ctl")
            .arg(SocketAddr::new(ip, CTL_PORT).to_string());
        match &spec.node_name {
            NodeName::PerAddress => {
                cmd.arg("--node-name").arg(self.node_name());
            }
            NodeName::Given(name) => {
                cmd.arg("--node-name").arg(name);
            }
            NodeName::HostName => {}
        }
        for peer in &spec.peers {
            cmd.arg("--peer").arg(format!("{peer}:{GOSSIP_PORT}"));
        }
        if spec.fast {
            cmd.args(FAST_TIMINGS);
        }
        cmd.args(&spec.args);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn spawn_child(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the supervisor log");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        self.started = Instant::now();
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", hab_binary().display())),
        );
    }

    /// Waits until the HTTP gateway answers `/healthz`; panics if the process exits first.
    pub fn wait_ready(&mut self) {
        let what = format!("{} answers /healthz", self.name());
        wait_for(Duration::from_secs(30), &what, || {
            if let Some(status) = self.exit_status() {
                panic!("{} exited during start-up: {status}", self.name());
            }
            self.get("/healthz").map(drop)
        });
    }

    /// `sup <ip>`, how messages and log headers name this supervisor.
    pub fn name(&self) -> String {
        format!("sup {}", self.spec.ip)
    }

    /// `node-127-0-X-n`: unique per supervisor, as pod names are (every process here shares
    /// the host name, and members sharing a name are reported as a conflict).
    fn node_name(&self) -> String {
        format!("node-{}", self.spec.ip).replace('.', "-")
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.spec.ip
    }

    pub fn gossip_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.spec.ip), GOSSIP_PORT)
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.spec.ip), HTTP_PORT)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `<root>/cache/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root().join("cache").join("keys")
    }

    /// `<root>/sup/default/data/rumors.dat`.
    pub fn rumor_file(&self) -> PathBuf {
        self.root().join("sup/default/data/rumors.dat")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// When the child was last started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The member id persisted in `<root>/sup/default/MEMBER_ID`.
    pub fn member_id(&self) -> String {
        let path = self.root().join("sup/default/MEMBER_ID");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Everything the supervisor has logged so far (every life of it).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut()?.try_wait() {
            Ok(status) => status,
            Err(e) => panic!("{}: wait: {e}", self.name()),
        }
    }

    pub fn get(&self, path: &str) -> Result<String, String> {
        match &self.spec.netns {
            Some(ns) => netns_http_get(ns, self.http_addr(), path),
            None => http_get(self.http_addr(), path),
        }
    }

    pub fn get_json(&self, path: &str) -> Result<Value, String> {
        let body = self.get(path)?;
        serde_json::from_str(&body).map_err(|e| format!("{} {path}: {e}: {body}", self.name()))
    }

    pub fn butterfly(&self) -> Result<Value, String> {
        self.get_json("/butterfly")
    }

    pub fn census(&self) -> Result<Value, String> {
        self.get_json("/census")
    }

    /// The member ids `/census` lists under `field` of `group` (`electorate`,
    /// `retired_members`).
    pub fn census_ids(&self, group: &str, field: &str) -> Result<Vec<String>, String> {
        let census = self.census()?;
        let ids = census["census_groups"][group][field]
            .as_array()
            .ok_or_else(|| format!("{}: no {field} of {group} in the census", self.name()))?
            .iter()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect();
        Ok(ids)
    }

    pub fn metrics(&self) -> Result<String, String> {
        self.get("/metrics")
    }

    pub fn healthz(&self) -> bool {
        self.get("/healthz").is_ok()
    }

    /// `/butterfly`'s `member.health`: member id -> Alive/Suspect/Confirmed/Departed.
    pub fn health(&self) -> Result<BTreeMap<String, String>, String> {
        let doc = self.butterfly()?;
        let map = doc["member"]["health"]
            .as_object()
            .ok_or_else(|| format!("{}: /butterfly has no member.health: {doc}", self.name()))?;
        Ok(map
            .iter()
            .map(|(id, h)| (id.clone(), h.as_str().unwrap_or("?").to_string()))
            .collect())
    }

    /// A member's incarnation in `/butterfly`'s `member.members`.
    pub fn incarnation_of(&self, id: &str) -> Result<u64, String> {
        let doc = self.butterfly()?;
        doc["member"]["members"][id]["incarnation"]
            .as_u64()
            .ok_or_else(|| format!("{}: no incarnation for {id} in /butterfly", self.name()))
    }

    /// `/census`'s population of `group`: member id -> alive/suspect/confirmed/departed.
    pub fn population(&self, group: &str) -> Result<BTreeMap<String, String>, String> {
        let doc = self.census()?;
        let Some(population) = doc["census_groups"][group]["population"].as_object() else {
            return Ok(BTreeMap::new());
        };
        Ok(population
            .iter()
            .map(|(id, m)| {
                let state = ["alive", "suspect", "confirmed", "departed"]
                    .into_iter()
                    .find(|s| m[*s].as_bool() == Some(true))
                    .unwrap_or("unknown");
                (id.clone(), state.to_string())
            })
            .collect())
    }

    /// One series of `/metrics`; a series not rendered yet counts as 0.
    pub fn metric(&self, series: &str) -> Result<f64, String> {
        Ok(metric_value(&self.metrics()?, series).unwrap_or(0.0))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self
            .pid()
            .expect("terminate: the supervisor is not running");
        let status = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s TERM {pid}: {status}");
        let what = format!("{} exits after SIGTERM", self.name());
        let status = wait_for(Duration::from_secs(30), &what, || {
            self.exit_status()
                .ok_or_else(|| "still running".to_string())
        });
        self.child = None;
        status
    }

    /// Starts again with the same root, address and flags, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_child();
        self.wait_ready();
    }

    /// Starts again at the same address with the same flags but a new, empty root: a new member
    /// id, as a pod that lost its data dir. Waits until it answers.
    pub fn restart_with_fresh_root(&mut self) {
        self.kill();
        let root = self.spec.new_root();
        self.retired_roots
            .push(std::mem::replace(&mut self.root, root));
        self.spawn_child();
        self.wait_ready();
    }

    /// Prints the last `lines` lines of the log to stderr (shown by the test harness).
    pub fn print_log_tail(&self, lines: usize) {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        eprintln!(
            "----- {} ({}): last {} log lines -----",
            self.name(),
            self.log.display(),
            tail.len()
        );
        for line in tail {
            eprintln!("{line}");
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.print_log_tail(40);
            // Keep the root to look at; its path is in the header above.
            self.root.disable_cleanup(true);
            for root in &mut self.retired_roots {
                root.disable_cleanup(true);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rings

/// Starts `n` supervisors at 127.0.`block`.1..=n, each with every other one as `--peer`, all
/// spawned before any is waited for (so their timers run in step), then waits until each answers.
/// `configure` gets each host number (1..=n) and its builder.
pub fn start_ring(
    block: u8,
    n: u8,
    configure: impl Fn(u8, SupervisorBuilder) -> SupervisorBuilder,
) -> Vec<Supervisor> {
    let mut members: Vec<Supervisor> = (1..=n)
        .map(|host| {
            let peers = (1..=n).filter(|&h| h != host).map(|h| ip(block, h));
            configure(host, Supervisor::at(block, host).peers(peers)).spawn()
        })
        .collect();
    for member in &mut members {
        member.wait_ready();
    }
    members
}

/// `Ok` when `sup` sees exactly the members `ids` as Alive (others may be listed as not alive).
pub fn sees_exactly_alive(sup: &Supervisor, ids: &[String]) -> Result<(), String> {
    let health = sup.health()?;
    let alive: Vec<&String> = health
        .iter()
        .filter(|(_, h)| *h == "Alive")
        .map(|(id, _)| id)
        .collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !alive.contains(id)).collect();
    if !missing.is_empty() || alive.len() != ids.len() {
        return Err(format!(
            "{} sees {health:?}, expected exactly {ids:?} alive",
            sup.name()
        ));
    }
    Ok(())
}

/// `Ok` when the census of `sup` lists exactly `ids` in `group`, all alive.
pub fn census_has_exactly_alive(
    sup: &Supervisor,
    group: &str,
    ids: &[String],
) -> Result<(), String> {
    let population = sup.population(group)?;
    let ok = population.len() == ids.len()
        && ids
            .iter()
            .all(|id| population.get(id).map(String::as_str) == Some("alive"));
    if !ok {
        return Err(format!(
            "{} census {group}: {population:?}, expected exactly {ids:?} alive",
            sup.name()
        ));
    }
    Ok(())
}

/// Every member's id, in order.
pub fn member_ids(members: &[Supervisor]) -> Vec<String> {
    members.iter().map(Supervisor::member_id).collect()
}

/// `Ok` when every member sees every member (and no one else) Alive, and, when `group` is
/// given, every member's census lists them all alive in it.
pub fn ring_is_whole(members: &[Supervisor], group: Option<&str>) -> Result<(), String> {
    let ids = member_ids(members);
    for sup in members {
        sees_exactly_alive(sup, &ids)?;
        if let Some(group) = group {
            census_has_exactly_alive(sup, group, &ids)?;
        }
    }
    Ok(())
}

/// Runs `hab` with `args` to completion (30 s at most) and returns its status, stdout and stderr.
pub fn run_hab(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir for hab output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(hab_binary());
    cmd.args(args).stdin(Stdio::null());
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    cmd.stdout(File::create(&out_path).expect("create stdout file"));
    cmd.stderr(File::create(&err_path).expect("create stderr file"));
    let mut child = cmd.spawn().expect("start hab");
    let what = format!("hab {args:?} exits");
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(Duration::from_secs(30), &what, || {
            child
                .try_wait()
                .expect("wait for hab")
                .ok_or_else(|| "still running".to_string())
        })
    }));
    let status = match waited {
        Ok(status) => status,
        Err(panic) => {
            let _ = child.kill();
            let _ = child.wait();
            std::panic::resume_unwind(panic);
        }
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    (status, read(&out_path), read(&err_path))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees part
/// of it (the file's modification time is the time of the write).
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("a file in a directory");
    fs::create_dir_all(dir).expect("create the directory");
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    fs::write(&temp, bytes).unwrap_or_else(|e| panic!("{}: {e}", temp.display()));
    fs::rename(&temp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The `ring keys loaded keys=[...]` lines of a log, each as its list of `name-rev:state`.
pub fn ring_key_loads(log: &str) -> Vec<Vec<String>> {
    log.lines()
        .filter(|line| line.contains("ring keys loaded"))
        .filter_map(|line| {
            let list = line.split_once("keys=[")?.1.split_once(']')?.0;
            Some(
                list.split(',')
                    .map(|k| k.trim().trim_matches('"').to_string())
                    .filter(|k| !k.is_empty())
                    .collect(),
            )
        })
        .collect()
}

/// Runs `hab ring key generate NAME --root ROOT` and returns the key file it wrote.
pub fn generate_ring_key(root: &Path, name: &str) -> PathBuf {
    let root_arg = root.to_str().expect("a UTF-8 temp path");
    let (status, stdout, stderr) =
        run_hab(&["ring", "key", "generate", name, "--root", root_arg], &[]);
    assert!(
        status.success(),
        "hab ring key generate {name}: {status}: {stderr}"
    );
    let path = stdout
        .trim()
        .rsplit_once(" at ")
        .map(|(_, path)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("hab ring key generate printed {stdout:?}"));
    assert!(path.is_file(), "{} was not written", path.display());
    path
}

/// `prod-20260101000000` from `.../prod-20260101000000.sym.key`.
pub fn key_name_with_rev(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".sym.key"))
        .unwrap_or_else(|| panic!("{} is not a .sym.key file", path.display()))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Elections

/// (election status, leader id) of `group` as one supervisor's /census shows it.
pub fn election_of(sup: &Supervisor, group: &str) -> Result<(String, Option<String>), String> {
    let doc = sup.census()?;
    let g = &doc["census_groups"][group];
    let status = g["election_status"]
        .as_str()
        .ok_or_else(|| format!("{}: no census group {group}", sup.name()))?
        .to_string();
    Ok((status, g["leader_id"].as_str().map(str::to_string)))
}

/// The one leader all of `ring` report in a finished election of `group`, or what they report.
pub fn agreed_leader(ring: &[&Supervisor], group: &str) -> Result<String, String> {
    let views: Vec<(String, Option<String>)> = ring
        .iter()
        .map(|s| election_of(s, group))
        .collect::<Result<_, _>>()?;
    let distinct: std::collections::BTreeSet<&(String, Option<String>)> = views.iter().collect();
    match distinct.into_iter().collect::<Vec<_>>().as_slice() {
        [(status, Some(leader))] if status == "ElectionFinished" => Ok(leader.clone()),
        _ => Err(format!("views {views:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// A throw-away network lab: a hub namespace with bridges, and one namespace per host joined to
/// a bridge by a veth pair, addressed `10.231.<subnet>.<host>/24`. Names carry the process id
/// and a counter, so parallel runs do not clash; every namespace is deleted on drop, even when
/// the test fails, as is what `hang_dns` set up. Only namespaces created here get addresses.
pub struct NetnsLab {
    prefix: String,
    subnet: u8,
    hosts: Vec<u8>,
    /// The black holes of hosts whose DNS hangs (`hang_dns`).
    dns_holes: Vec<DnsHole>,
    /// Where the black holes log the queries they swallow.
    dns_logs: Option<tempfile::TempDir>,
    /// `/etc/netns/<ns>` directories made by `hang_dns`, removed on drop.
    dns_etc: Vec<PathBuf>,
}

/// A host's DNS server that never answers: `ip netns exec` bind-mounts
/// `/etc/netns/<ns>/resolv.conf` over `/etc/resolv.conf`, pointing the host's resolver at a
/// black hole on its own 127.0.0.1:53.
struct DnsHole {
    host: u8,
    child: Child,
    /// One line per query: client port, query id, type, name.
    queries: PathBuf,
}

/// A lookup's first try waits 30 s, and 5 tries are made: a lookup hangs for minutes (the
/// most glibc allows), as behind a firewall that drops DNS.
const HANGING_RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions timeout:30 attempts:5\n";

impl NetnsLab {
    /// Creates the hub with bridges `br0` and `br1`. `Err` says why namespaces cannot be made
    /// (not root, no `ip`), for tests that then skip.
    pub fn new(subnet: u8) -> Result<NetnsLab, String> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lab = NetnsLab {
            prefix: format!("habe2e-{}-{n}", std::process::id()),
            subnet,
            hosts: Vec::new(),
            dns_holes: Vec::new(),
            dns_logs: None,
            dns_etc: Vec::new(),
        };
        let hub = lab.hub();
        ip_cmd(&["netns", "add", &hub])?;
        lab.exec(&hub, &["ip", "link", "set", "lo", "up"])?;
        for br in ["br0", "br1"] {
            lab.exec(&hub, &["ip", "link", "add", br, "type", "bridge"])?;
            lab.exec(&hub, &["ip", "link", "set", br, "up"])?;
        }
        Ok(lab)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: u8) -> String {
        format!("{}-h{host}", self.prefix)
    }

    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, host)
    }

    /// Adds host `host` (1..=253): its namespace, a veth to `br0`, its address, loopback up.
    pub fn add_host(&mut self, host: u8) -> Result<(), String> {
        let (hub, ns) = (self.hub(), self.ns(host));
        ip_cmd(&["netns", "add", &ns])?;
        self.hosts.push(host);
        let port = format!("p{host}");
        self.exec(
            &hub,
            &[
                "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        self.exec(&hub, &["ip", "link", "set", &port, "master", "br0", "up"])?;
        let cidr = format!("{}/24", self.ip(host));
        self.exec(&ns, &["ip", "addr", "add", &cidr, "dev", "eth0"])?;
        self.exec(&ns, &["ip", "link", "set", "eth0", "up"])?;
        self.exec(&ns, &["ip", "link", "set", "lo", "up"])
    }

    /// Puts `host` on bridge `br0` or `br1`: hosts on different bridges cannot reach each other.
    pub fn attach(&self, host: u8, bridge: &str) -> Result<(), String> {
        let port = format!("p{host}");
        self.exec(&self.hub(), &["ip", "link", "set", &port, "master", bridge])
    }

    /// Runs `argv` inside namespace `ns`.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Result<(), String> {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(argv);
        ip_cmd(&args)
    }

    /// Makes every DNS lookup by processes started in `host`'s namespace from now on hang: its
    /// resolver asks 127.0.0.1:53, where `blackhole` (the `udp-blackhole` binary) reads queries
    /// and never answers. Both are undone on drop. Call it before starting the host's processes:
    /// `ip netns exec` mounts the resolver configuration when it starts one.
    pub fn hang_dns(&mut self, host: u8, blackhole: &Path) -> Result<(), String> {
        let ns = self.ns(host);
        let etc = netns_etc(&ns);
        fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
        // Recorded before anything else can fail, so drop removes it.
        self.dns_etc.push(etc.clone());
        let conf = etc.join("resolv.conf");
        fs::write(&conf, HANGING_RESOLV_CONF).map_err(|e| format!("{}: {e}", conf.display()))?;
        let logs = match &self.dns_logs {
            Some(dir) => dir.path().to_path_buf(),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("hab-e2e-dns-")
                    .tempdir()
                    .map_err(|e| format!("a temp dir for DNS query logs: {e}"))?;
                let path = dir.path().to_path_buf();
                self.dns_logs = Some(dir);
                path
            }
        };
        let queries = logs.join(format!("h{host}.queries"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(blackhole)
            .arg("127.0.0.1:53")
            .arg(&queries)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec {ns} {}: {e}", blackhole.display()))?;
        // The black hole creates its log once its socket is bound.
        let what = format!("the DNS black hole of {ns} listens");
        let started = Instant::now();
        let listening = loop {
            if queries.exists() {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                break Err(format!("{what}: it exited ({status}): {}", stderr.trim()));
            }
            if started.elapsed() > Duration::from_secs(10) {
                break Err(format!("{what}: not after 10 s"));
            }
            std::thread::sleep(POLL);
        };
        self.dns_holes.push(DnsHole {
            host,
            child,
            queries,
        });
        listening
    }

    /// The queries `host`'s black hole has swallowed so far, one `port id type name` line each
    /// (empty for a host whose DNS does not hang).
    pub fn dns_queries(&self, host: u8) -> Vec<String> {
        let Some(hole) = self.dns_holes.iter().find(|hole| hole.host == host) else {
            return Vec::new();
        };
        let log = fs::read_to_string(&hole.queries).unwrap_or_default();
        log.lines().map(str::to_string).collect()
    }

    /// How many lookups of `name` reached `host`'s black hole: glibc sends a lookup's queries
    /// (A and AAAA, and their retries) from one socket of its own, so one client port each.
    pub fn dns_lookups(&self, host: u8, name: &str) -> usize {
        let ports: std::collections::BTreeSet<String> = self
            .dns_queries(host)
            .iter()
            .filter(|line| line.split(' ').nth(3) == Some(name))
            .filter_map(|line| line.split(' ').next().map(str::to_string))
            .collect();
        ports.len()
    }

    /// Starts a supervisor in each of `hosts`' namespaces, each with every other one as
    /// `--peer`, all spawned before any is waited for (so their timers run in step), then waits
    /// until each answers. `configure` gets each host and its builder.
    pub fn start_ring(
        &self,
        hosts: &[u8],
        configure: impl Fn(u8, SupervisorBuilder) -> SupervisorBuilder,
    ) -> Vec<Supervisor> {
        let mut ring: Vec<Supervisor> = hosts
            .iter()
            .map(|&h| {
                let peers = hosts.iter().filter(|&&p| p != h).map(|&p| self.ip(p));
                let builder = Supervisor::at_ip(self.ip(h))
                    .in_netns(&self.ns(h))
                    .peers(peers);
                configure(h, builder).spawn()
            })
            .collect();
        for sup in &mut ring {
            sup.wait_ready();
        }
        ring
    }
}

/// The peer name given to every supervisor of a `hanging_dns_lab` (`.test` is reserved, so no
/// real resolver would answer it either).
pub const HANGING_PEER: &str = "peers.hab-dns.test";

/// Issue 16's lab, for `tests/dns.rs` and `dns-bench`: a namespace for each of `hosts` on
/// `subnet`, each with DNS that hangs (`hang_dns` with the `udp-blackhole` binary at
/// `blackhole`). `Err` says why namespaces cannot be made at all (not root, no `ip`), for tests
/// that then skip; once they can, any other failure panics (a missing black hole must not pass
/// as a skip).
pub fn hanging_dns_lab(subnet: u8, hosts: &[u8], blackhole: &Path) -> Result<NetnsLab, String> {
    let mut lab = NetnsLab::new(subnet)?;
    for &host in hosts {
        lab.add_host(host)
            .unwrap_or_else(|e| panic!("host {host}: {e}"));
        lab.hang_dns(host, blackhole)
            .unwrap_or_else(|e| panic!("host {host}: {e}"));
    }
    Ok(lab)
}

/// The directory whose files `ip netns exec NS` mounts over those of `/etc`.
fn netns_etc(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        for mut hole in std::mem::take(&mut self.dns_holes) {
            let _ = hole.child.kill();
            let _ = hole.child.wait();
        }
        for etc in std::mem::take(&mut self.dns_etc) {
            let _ = fs::remove_dir_all(etc);
        }
        for host in std::mem::take(&mut self.hosts) {
            let _ = ip_cmd(&["netns", "del", &self.ns(host)]);
        }
        let _ = ip_cmd(&["netns", "del", &self.hub()]);
    }
}

fn ip_cmd(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark figures

/// VmRSS of a process, in MiB.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb / 1024.0
}

/// Seconds rounded to the millisecond, as the benches print them.
pub fn round3(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// The middle value (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# TYPE hab_gossip_members gauge\n\
        hab_gossip_members{health=\"alive\"} 5\n\
        hab_gossip_members{health=\"suspect\"} 0\n\
        hab_gossip_dropped_total{reason=\"unknown_key\"} 3\n\
        hab_gossip_dropped_total{reason=\"malformed\"} 4\n\
        hab_gossip_dropped_totally 100\n";

    #[test]
    fn a_series_is_read_by_its_exact_name_and_labels() {
        assert_eq!(
            metric_value(METRICS, "hab_gossip_members{health=\"alive\"}"),
            Some(5.0)
        );
        assert_eq!(
            metric_value(METRICS, "hab_gossip_members{health=\"confirmed\"}"),
            None
        );
        assert_eq!(metric_value(METRICS, "hab_gossip_members"), None);
    }

    #[test]
    fn a_family_sums_its_series_and_nothing_that_merely_shares_the_prefix() {
        assert_eq!(metric_sum(METRICS, "hab_gossip_dropped_total"), 7.0);
        assert_eq!(metric_sum("", "hab_gossip_dropped_total"), 0.0);
        let reasons = dropped_by_reason(METRICS);
        assert_eq!(reasons.get("unknown_key"), Some(&3.0));
        assert_eq!(reasons.len(), 2);
    }

    #[test]
    fn ring_key_log_lines_parse_into_key_lists() {
        let log = "2026 INFO x: ring keys loaded keys=[\"prod-20261122131000:pending\"]\n\
            2026 INFO x: other\n\
            2026 INFO sup{member=ab}: x: ring keys loaded \
            keys=[\"prod-20261122131000:active\", \"prod-20261122131001:active\"]\n";
        assert_eq!(
            ring_key_loads(log),
            vec![
                vec!["prod-20261122131000:pending".to_string()],
                vec![
                    "prod-20261122131000:active".to_string(),
                    "prod-20261122131001:active".to_string()
                ],
            ]
        );
    }

    #[test]
    fn the_rng_replays_from_its_seed() {
        let (mut a, mut b) = (Rng(42), Rng(42));
        assert_eq!(a.bytes(32), b.bytes(32));
        assert!((0..1000).all(|_| a.below(7) < 7));
    }
}
