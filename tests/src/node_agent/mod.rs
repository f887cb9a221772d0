//! A node agent for tests: a small kubelet without containers. It registers a Node, binds the
//! pending pods of the namespaces it serves to it (there is no scheduler), and runs each pod as
//! real processes: a network namespace of its own with the pod IP on a bridge the host is on
//! (`10.231.<subnet>.<n>/24`), a mount namespace of its own with a root file system per
//! container (the image directory's files over the host's `/usr`, `/etc`, ...) and the pod's
//! volumes at their mount paths. It runs probes, restarts containers, stops deleted pods within
//! their grace period and reports everything through the API server: nothing is mocked. Pods
//! reach the API server through the node's `kubernetes` Service (`10.231.<subnet>.1:443`) with
//! the service account token it mounts for them.
//!
//! Invariants: every host object it makes (namespaces `hk-<pid>-<n>-*`, bridge `habk8s<subnet>`,
//! its state directory) is removed when it stops, and by a watchdog if its process dies first.
//! It does not pull images (an image is a local directory), set cgroups or run CNI plugins.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod apiserver;
mod env;
mod net;
mod pod;
mod probe;
mod rootfs;
mod status;
mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::json;
use tokio::sync::{mpsc, watch};

pub use apiserver::{SERVICE_PORT, TOKEN_DIR};
pub use net::SUBNETS;

/// The address of the node on the bridge of `subnet` (`10.231.<subnet>.1`): its pods' gateway
/// and `hostIP`, and their `KUBERNETES_SERVICE_HOST`.
pub fn bridge_ip(subnet: u8) -> Ipv4Addr {
    net::ip(subnet, 1)
}

/// What can go wrong, named.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the test node agent needs root (network and mount namespaces)")]
    NotRoot,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("{0}")]
    Spec(String),
}

impl AgentError {
    fn io(what: impl Into<String>, source: std::io::Error) -> AgentError {
        AgentError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where a pod runs on this node, for tests.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub uid: String,
    /// Its network namespace (`ip netns exec <netns> ...`).
    pub netns: String,
    pub ip: Ipv4Addr,
    /// Its state directory (volumes, container logs `<container>.log`).
    pub dir: PathBuf,
    /// Its namespace, and the names it answers to in the hosts files: the host name, and with
    /// a subdomain (a StatefulSet's headless Service) `<hostname>.<subdomain>` and its
    /// `<...>.<namespace>.svc.cluster.local` form.
    pub namespace: String,
    pub names: Vec<String>,
}

/// State shared by the agent's tasks.
struct Ctx {
    client: kube::Client,
    node: String,
    subnet: u8,
    state_dir: PathBuf,
    images: BTreeMap<String, PathBuf>,
    entrypoints: BTreeMap<String, Vec<String>>,
    api: apiserver::ApiAccess,
    ns_prefix: String,
    counter: AtomicU32,
    ips: Mutex<BTreeSet<u8>>,
    pods: Arc<Mutex<BTreeMap<String, PodInfo>>>,
    journal: Arc<Journal>,
    host_entries: Vec<(String, rootfs::HostEntry)>,
    host_mnt_ns: String,
}

impl Ctx {
    fn log(&self, line: &str) {
        self.journal.log(line);
    }

    fn host_ip(&self) -> Ipv4Addr {
        net::ip(self.subnet, 1)
    }

    fn next_id(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn allocate_ip(&self) -> Result<u8, AgentError> {
        let mut used = self.ips.lock().map_err(|_| poisoned())?;
        let host = (2..=254u8)
            .find(|h| !used.contains(h))
            .ok_or_else(|| AgentError::Spec("no free pod IP on this node".to_owned()))?;
        used.insert(host);
        Ok(host)
    }

    fn release_ip(&self, host: u8) {
        if let Ok(mut used) = self.ips.lock() {
            used.remove(&host);
        }
    }

    fn pods_insert(&self, key: &str, info: PodInfo) {
        if let Ok(mut pods) = self.pods.lock() {
            pods.insert(key.to_owned(), info);
            self.write_hosts_files(&pods);
        }
    }

    fn pods_remove(&self, key: &str, uid: &str) {
        if let Ok(mut pods) = self.pods.lock() {
            if pods.get(key).is_some_and(|p| p.uid == uid) {
                pods.remove(key);
                self.write_hosts_files(&pods);
            }
        }
    }

    /// The cluster DNS of this node: every pod's hosts file names every running pod (there
    /// are no Services or DNS server), so `<name>-0.<name>-peers` resolves in its peers as in a
    /// cluster, ready or not (the peers Service publishes not-ready addresses). Written in
    /// place: each file is bind-mounted into its pod, so a rename would not be seen.
    fn write_hosts_files(&self, pods: &BTreeMap<String, PodInfo>) {
        for pod in pods.values() {
            let text = hosts_file(pod, pods.values(), self.host_ip());
            if let Err(e) = std::fs::write(pod.dir.join("hosts"), text) {
                self.log(&format!("writing {}/hosts: {e}", pod.dir.display()));
            }
        }
    }
}

/// `pod`'s hosts file: localhost, the pod itself first, then the other pods (short names only
/// for those of its own namespace, as a cluster's DNS search path would find them), and the
/// `kubernetes` Service at the node's address `host`.
fn hosts_file<'a>(pod: &PodInfo, all: impl Iterator<Item = &'a PodInfo>, host: Ipv4Addr) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file (habitat test node agent).\n\
         127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let line = |other: &PodInfo| {
        let names: Vec<&str> = other
            .names
            .iter()
            .filter(|n| other.namespace == pod.namespace || n.ends_with(".svc.cluster.local"))
            .map(String::as_str)
            .collect();
        (!names.is_empty()).then(|| format!("{}\t{}\n", other.ip, names.join("\t")))
    };
    text.extend(line(pod));
    for other in all.filter(|o| o.uid != pod.uid) {
        text.extend(line(other));
    }
    text.push_str(&format!(
        "{host}\tkubernetes.default.svc.cluster.local\tkubernetes.default.svc\tkubernetes.default\tkubernetes\n"
    ));
    text
}

fn poisoned() -> AgentError {
    AgentError::Spec("a lock of the node agent was poisoned by a panic".to_owned())
}

/// The agent's event log: one line per pod event, in a file beside the state directory, kept
/// after the agent stops only when it stops during a panic (a failing test).
struct Journal {
    file: Mutex<std::fs::File>,
    path: PathBuf,
}

impl Journal {
    fn log(&self, line: &str) {
        tracing::info!("{line}");
        if let Ok(mut file) = self.file.lock() {
            let at = k8s_openapi::jiff::Timestamp::now();
            let _ = writeln!(file, "{at} {line}");
        }
    }
}

/// Configures and starts a `NodeAgent`.
#[derive(Debug, Clone)]
pub struct NodeAgentBuilder {
    kubeconfig: PathBuf,
    namespaces: Vec<String>,
    images: BTreeMap<String, PathBuf>,
    entrypoints: BTreeMap<String, Vec<String>>,
    subnet: Option<u8>,
    node_name: Option<String>,
}

impl NodeAgentBuilder {
    /// Serve the pods of `namespace` (call again for more; none given: every namespace).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespaces.push(namespace.to_owned());
        self
    }

    /// Image `name` (as pod specs write it) is directory `dir`.
    pub fn image(mut self, name: &str, dir: impl Into<PathBuf>) -> Self {
        self.images.insert(name.to_owned(), dir.into());
        self
    }

    /// Image `name` runs `argv` when a container gives no `command` (its `args` follow), as an
    /// image's ENTRYPOINT does (there is no CMD: a container without args runs `argv` alone).
    pub fn entrypoint(mut self, name: &str, argv: &[&str]) -> Self {
        self.entrypoints.insert(
            name.to_owned(),
            argv.iter().map(|a| (*a).to_owned()).collect(),
        );
        self
    }

    /// Use subnet `10.231.<subnet>.0/24` (default: the first free one of `SUBNETS`).
    pub fn subnet(mut self, subnet: u8) -> Self {
        self.subnet = Some(subnet);
        self
    }

    /// The Node's name (default `habitat-node-<pid>-<n>`).
    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_owned());
        self
    }

    /// Registers the Node and starts serving pods; returns once the Node exists.
    pub fn start(self) -> Result<NodeAgent, AgentError> {
        NodeAgent::start(self)
    }
}

/// A running node agent. Dropping it stops it: its pods' processes are killed (their API
/// objects are left as they are), its Node is deleted, and its host objects are removed.
pub struct NodeAgent {
    node: String,
    subnet: u8,
    journal: Arc<Journal>,
    pods: Arc<Mutex<BTreeMap<String, PodInfo>>>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    watchdog: Option<Child>,
    cleanup: String,
}

static AGENTS: AtomicU32 = AtomicU32::new(0);

impl NodeAgent {
    /// A builder for an agent talking to the API server of `kubeconfig`.
    pub fn builder(kubeconfig: impl Into<PathBuf>) -> NodeAgentBuilder {
        NodeAgentBuilder {
            kubeconfig: kubeconfig.into(),
            namespaces: Vec::new(),
            images: BTreeMap::new(),
            entrypoints: BTreeMap::new(),
            subnet: None,
            node_name: None,
        }
    }

    fn start(b: NodeAgentBuilder) -> Result<NodeAgent, AgentError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(AgentError::NotRoot);
        }
        let n = AGENTS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let node = b
            .node_name
            .clone()
            .unwrap_or_else(|| format!("habitat-node-{pid}-{n}"));
        let state_dir = tempfile::Builder::new()
            .prefix("habitat-node-")
            .tempdir()
            .map_err(|e| AgentError::io("creating the node agent's state directory", e))?
            .keep();
        let journal_path = state_dir.with_extension("log");
        let file = std::fs::File::create(&journal_path)
            .map_err(|e| AgentError::io(format!("creating {}", journal_path.display()), e))?;
        let journal = Arc::new(Journal {
            file: Mutex::new(file),
            path: journal_path,
        });
        let subnet = net::claim_bridge(b.subnet)?;
        let bridge = net::bridge_name(subnet);
        let ns_prefix = format!("hk-{pid}-{n}");
        let cleanup = net::cleanup_script(
            &format!("{ns_prefix}-"),
            &bridge,
            &state_dir.to_string_lossy(),
        );
        let watchdog = spawn_watchdog(pid, &cleanup);
        let host_mnt_ns = std::fs::read_link("/proc/self/ns/mnt")
            .map_err(|e| AgentError::io("reading /proc/self/ns/mnt", e))?
            .to_string_lossy()
            .into_owned();
        journal.log(&format!(
            "node {node}: bridge {bridge} {}/24, state {}",
            net::ip(subnet, 1),
            state_dir.display()
        ));
        let pods = Arc::new(Mutex::new(BTreeMap::new()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let setup = Setup {
            kubeconfig: b.kubeconfig,
            namespaces: b.namespaces,
            images: b.images,
            entrypoints: b.entrypoints,
            node: node.clone(),
            subnet,
            state_dir,
            ns_prefix,
            pods: pods.clone(),
            journal: journal.clone(),
            host_mnt_ns,
        };
        let thread = std::thread::Builder::new()
            .name(format!("node-agent-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(AgentError::io("starting a tokio runtime", e)));
                        return;
                    }
                };
                runtime.block_on(agent_main(setup, shutdown_rx, ready_tx));
            })
            .map_err(|e| AgentError::io("starting the node agent's thread", e))?;
        let mut agent = NodeAgent {
            node,
            subnet,
            journal,
            pods,
            shutdown,
            thread: Some(thread),
            watchdog,
            cleanup,
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(agent),
            Ok(Err(e)) => {
                agent.stop();
                Err(e)
            }
            Err(_) => {
                agent.stop();
                Err(AgentError::Spec(
                    "the node agent did not register its Node within 60 s".to_owned(),
                ))
            }
        }
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The subnet of its pods, `10.231.<subnet>.0/24`.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// The host's address on the pods' bridge (the pods' default gateway and `hostIP`).
    pub fn host_ip(&self) -> Ipv4Addr {
        net::ip(self.subnet, 1)
    }

    /// Where pod `namespace/name` runs, while it runs here.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        let pods = self.pods.lock().ok()?;
        pods.get(&format!("{namespace}/{name}")).cloned()
    }

    /// What container `container` of pod `namespace/name` wrote to stdout and stderr.
    pub fn container_log(&self, namespace: &str, name: &str, container: &str) -> String {
        self.pod(namespace, name)
            .and_then(|p| std::fs::read_to_string(p.dir.join(format!("{container}.log"))).ok())
            .unwrap_or_default()
    }

    /// The agent's event log so far (the file `journal_path`).
    pub fn journal(&self) -> String {
        std::fs::read_to_string(&self.journal.path).unwrap_or_default()
    }

    /// The file of the agent's event log (kept after the agent stops if a test panicked).
    pub fn journal_path(&self) -> &Path {
        &self.journal.path
    }

    /// Stops the agent (as dropping it does).
    pub fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = Command::new("sh").arg("-c").arg(&self.cleanup).status();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // Kept when a test is failing (this runs while its panic unwinds), for its report.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.journal.path);
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A shell that runs `cleanup` once process `parent` is gone (for a test process that dies
/// without unwinding).
fn spawn_watchdog(parent: u32, cleanup: &str) -> Option<Child> {
    let script = format!(
        "trap 'exit 0' TERM\nwhile kill -0 {parent} 2>/dev/null; do sleep 0.5; done\n{cleanup}\n"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

struct Setup {
    kubeconfig: PathBuf,
    namespaces: Vec<String>,
    images: BTreeMap<String, PathBuf>,
    entrypoints: BTreeMap<String, Vec<String>>,
    node: String,
    subnet: u8,
    state_dir: PathBuf,
    ns_prefix: String,
    pods: Arc<Mutex<BTreeMap<String, PodInfo>>>,
    journal: Arc<Journal>,
    host_mnt_ns: String,
}

/// The agent's client, and how its pods reach the same API server.
async fn client(kubeconfig: &Path) -> Result<(kube::Client, apiserver::ApiAccess), AgentError> {
    let config_error = |message: String| AgentError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        message,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| config_error(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| config_error(e.to_string()))?;
    let api = apiserver::ApiAccess::of(&config);
    Ok((kube::Client::try_from(config)?, api))
}

async fn agent_main(
    setup: Setup,
    shutdown: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), AgentError>>,
) {
    let (client, api) = match client(&setup.kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let listener = match apiserver::bind(bridge_ip(setup.subnet)).await {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // Dropped with this function's runtime when the agent stops.
    tokio::spawn(apiserver::proxy(listener, api.upstream.clone()));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        node: setup.node.clone(),
        subnet: setup.subnet,
        state_dir: setup.state_dir,
        images: setup.images,
        entrypoints: setup.entrypoints,
        api,
        ns_prefix: setup.ns_prefix,
        counter: AtomicU32::new(0),
        ips: Mutex::new(BTreeSet::new()),
        pods: setup.pods,
        journal: setup.journal,
        host_entries: rootfs::host_entries(),
        host_mnt_ns: setup.host_mnt_ns,
    });
    if let Err(e) = register_node(&ctx).await {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    serve(ctx.clone(), setup.namespaces, shutdown).await;
    let nodes: Api<Node> = Api::all(client);
    match nodes.delete(&ctx.node, &Default::default()).await {
        Ok(_) => ctx.log(&format!("node {}: deleted", ctx.node)),
        Err(e) => ctx.log(&format!("node {}: delete: {e}", ctx.node)),
    }
}

fn node_status(ctx: &Ctx) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(4 << 20);
    let resources =
        json!({"cpu": cpus.to_string(), "memory": format!("{memory_kib}Ki"), "pods": "110"});
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "habitat-rs test node agent is ready",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [
            {"type": "InternalIP", "address": ctx.host_ip().to_string()},
            {"type": "Hostname", "address": ctx.node},
        ],
        "nodeInfo": {
            "architecture": std::env::consts::ARCH, "operatingSystem": "linux",
            "osImage": "habitat-rs test node agent", "kernelVersion": kernel.trim(),
            "containerRuntimeVersion": "habitat-node-agent://0.1.0",
            "kubeletVersion": "v1.34.4", "kubeProxyVersion": "",
            "bootID": "", "machineID": "", "systemUUID": "",
        },
    })
}

async fn register_node(ctx: &Ctx) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": ctx.node,
            "labels": {
                "kubernetes.io/hostname": ctx.node,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "habitat.sh/test-node-agent": "true",
            },
        },
    }))
    .map_err(|e| AgentError::Spec(format!("the Node object: {e}")))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let status = json!({ "status": node_status(ctx) });
    nodes
        .patch_status(&ctx.node, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    ctx.log(&format!("node {}: registered", ctx.node));
    Ok(())
}

/// A pod worker: the latest version of its pod, and its task.
struct WorkerHandle {
    tx: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// Watches pods, binds the pending ones, and hands this node's to their workers until shutdown.
async fn serve(ctx: Arc<Ctx>, namespaces: Vec<String>, mut shutdown: watch::Receiver<bool>) {
    let apis: Vec<Api<Pod>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let streams = apis.into_iter().map(|api| {
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                finished.insert(uid);
            }
            _ = heartbeat.tick() => {
                let nodes: Api<Node> = Api::all(ctx.client.clone());
                let status = json!({ "status": node_status(&ctx) });
                if let Err(e) = nodes.patch_status(&ctx.node, &PatchParams::default(), &Patch::Merge(&status)).await {
                    ctx.log(&format!("node {}: heartbeat: {e}", ctx.node));
                }
            }
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => ctx.log(&format!("watching pods: {e}")),
                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                    on_pod(&ctx, pod, &mut workers, &finished, &done_tx, &shutdown).await;
                }
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(w) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                        w.tx.send_replace(None);
                    }
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
            }
        }
    }
    let _ = ctx.journal.file.lock().map(|mut f| f.flush());
    for (_, w) in workers.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(30), w.task).await;
    }
}

async fn on_pod(
    ctx: &Arc<Ctx>,
    pod: Pod,
    workers: &mut HashMap<String, WorkerHandle>,
    finished: &HashSet<String>,
    done: &mpsc::UnboundedSender<String>,
    shutdown: &watch::Receiver<bool>,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let spec = pod.spec.as_ref();
    let node_name = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
    if node_name.is_empty() {
        let scheduler = spec
            .and_then(|s| s.scheduler_name.clone())
            .unwrap_or_else(|| "default-scheduler".to_owned());
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if scheduler == "default-scheduler"
            && !terminal
            && pod.metadata.deletion_timestamp.is_none()
        {
            bind(ctx, &pod).await;
        }
        return;
    }
    if node_name != ctx.node || finished.contains(&uid) {
        return;
    }
    if let Some(w) = workers.get(&uid) {
        w.tx.send_replace(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let ctx2 = ctx.clone();
    let done = done.clone();
    let shutdown = shutdown.clone();
    let uid2 = uid.clone();
    let task = tokio::spawn(async move {
        pod::run(ctx2, rx, shutdown).await;
        let _ = done.send(uid2);
    });
    workers.insert(uid, WorkerHandle { tx, task });
}

/// Binds `pod` to this node, as the scheduler would (the binding sets PodScheduled).
async fn bind(ctx: &Ctx, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": ctx.node},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => ctx.log(&format!("pod {ns}/{name}: bound to {}", ctx.node)),
        // Already bound (an earlier event): the next event shows the node.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => ctx.log(&format!("pod {ns}/{name}: binding: {e}")),
    }
}
