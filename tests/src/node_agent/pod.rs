//! One pod on the node: a task that owns its sandbox (network namespace, and a `sleep` process
//! that holds the pod's mount and UTS namespaces), runs the init containers one at a time to
//! completion, then the containers, restarts them by the restart policy, counts probe results
//! against their thresholds, and writes the pod's status whenever it changes. A deleted pod is
//! stopped with SIGTERM, its grace period, then SIGKILL, and removed with a zero-grace delete.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::net::PodNet;
use super::probe::{self, ExecTarget, Timing};
use super::rootfs::{self, Plan, VolumeMount};
use super::status::{self, Facts, Record, State};
use super::{apiserver, env, volumes, AgentError, Ctx, PodInfo};

/// Restart backoff: first restart after this, doubling up to `MAX_BACKOFF` (the kubelet's are
/// 10 s and 5 min; shorter here, for tests). A container that ran `RESET_AFTER` starts over.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(16);
const RESET_AFTER: Duration = Duration::from_secs(10);
/// How long a failed setup (a missing Secret, an unknown image) waits before it is retried.
const RETRY: Duration = Duration::from_secs(1);

enum Event {
    Exited {
        init: bool,
        idx: usize,
        run: u32,
        code: i32,
        signal: Option<i32>,
    },
    Probe {
        idx: usize,
        run: u32,
        liveness: bool,
        result: Result<(), String>,
    },
}

struct Proc {
    run: u32,
    kill: Option<oneshot::Sender<Duration>>,
    started: Instant,
    started_at: Time,
    probes: Vec<JoinHandle<()>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        for p in &self.probes {
            p.abort();
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    successes: u32,
    failures: u32,
}

struct Slot {
    spec: Container,
    record: Record,
    proc: Option<Proc>,
    run: u32,
    next_start: Instant,
    backoff: Duration,
    /// Finished for good (an init container that succeeded, a container not to restart).
    done: bool,
    readiness: Counts,
    liveness: Counts,
}

impl Slot {
    fn new(spec: &Container) -> Slot {
        Slot {
            record: Record::new(&spec.name, spec.image.as_deref().unwrap_or_default()),
            spec: spec.clone(),
            proc: None,
            run: 0,
            next_start: Instant::now(),
            backoff: FIRST_BACKOFF,
            done: false,
            readiness: Counts::default(),
            liveness: Counts::default(),
        }
    }
}

struct Sandbox {
    net: PodNet,
    host: u8,
    child: tokio::process::Child,
    pid: u32,
}

struct Worker {
    ctx: Arc<Ctx>,
    pod: Pod,
    key: String,
    uid: String,
    dir: PathBuf,
    sandbox: Option<Sandbox>,
    /// Volumes by name, once all are prepared (a failure, e.g. a missing Secret or
    /// ServiceAccount, is retried; the sandbox stays).
    volumes: Option<BTreeMap<String, PathBuf>>,
    init: Vec<Slot>,
    containers: Vec<Slot>,
    init_failed: bool,
    terminating: bool,
    start_time: Time,
    last_status: Option<PodStatus>,
    setup_retry: Option<Instant>,
    events: mpsc::UnboundedSender<Event>,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the pod whose latest version `rx` holds (None once it is gone from the API) until it
/// is deleted, or until `shutdown` (then its processes are killed and the API is not touched).
pub(super) async fn run(
    ctx: Arc<Ctx>,
    mut rx: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(pod) = rx.borrow_and_update().clone() else {
        return;
    };
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let (events, mut events_rx) = mpsc::unbounded_channel();
    let short_uid: String = uid.chars().take(8).collect();
    let mut w = Worker {
        dir: ctx
            .state_dir
            .join("pods")
            .join(format!("{ns}_{name}_{short_uid}")),
        key: format!("{ns}/{name}"),
        ctx,
        uid,
        sandbox: None,
        volumes: None,
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(Slot::new)
            .collect(),
        containers: spec.containers.iter().map(Slot::new).collect(),
        init_failed: false,
        terminating: false,
        start_time: now(),
        last_status: None,
        setup_retry: None,
        events,
        pod,
    };
    w.ctx
        .log(&format!("pod {}: assigned (uid {})", w.key, w.uid));
    loop {
        if *shutdown.borrow() {
            w.stop_all(Duration::ZERO, &mut events_rx).await;
            w.teardown().await;
            return;
        }
        let current = rx.borrow_and_update().clone();
        match current {
            None => {
                w.ctx
                    .log(&format!("pod {}: gone from the API server", w.key));
                w.stop_all(Duration::from_secs(2), &mut events_rx).await;
                w.teardown().await;
                return;
            }
            Some(p) => w.pod = p,
        }
        if w.pod.metadata.deletion_timestamp.is_some() {
            w.terminate(&mut events_rx).await;
            return;
        }
        if w.sandbox.is_none() || w.volumes.is_none() {
            if w.setup_retry.is_none_or(|at| at <= Instant::now()) {
                if let Err(e) = w.setup().await {
                    w.ctx.log(&format!("pod {}: setup failed: {e}", w.key));
                    for slot in w.init.iter_mut().chain(w.containers.iter_mut()) {
                        slot.record.state =
                            State::waiting("CreateContainerConfigError", Some(e.to_string()));
                    }
                    w.setup_retry = Some(Instant::now() + RETRY);
                }
            }
        } else {
            w.start_due().await;
        }
        if w.write_status().await == Some(false) {
            // 404: the pod is gone, whatever the watch says.
            w.stop_all(Duration::from_secs(2), &mut events_rx).await;
            w.teardown().await;
            return;
        }
        let wake = w.next_wake();
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The agent dropped the sender: it is shutting down.
                    w.stop_all(Duration::ZERO, &mut events_rx).await;
                    w.teardown().await;
                    return;
                }
            }
            _ = shutdown.changed() => {}
            Some(event) = events_rx.recv() => w.on_event(event),
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

impl Worker {
    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_owned())
    }

    fn pod_ip(&self) -> Option<Ipv4Addr> {
        self.sandbox.as_ref().map(|s| s.net.ip)
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        if self.sandbox.is_none() || self.volumes.is_none() {
            return self.setup_retry.unwrap_or(far);
        }
        self.init
            .iter()
            .chain(self.containers.iter())
            .filter(|s| s.proc.is_none() && !s.done)
            .map(|s| s.next_start)
            .min()
            .unwrap_or(far)
            .max(Instant::now())
    }

    /// Network, sandbox, hosts file (once), then volumes.
    async fn setup(&mut self) -> Result<(), AgentError> {
        if self.sandbox.is_none() {
            self.setup_sandbox().await?;
        }
        let ctx = self.ctx.clone();
        let Some(ip) = self.pod_ip() else {
            return Err(AgentError::Spec("no sandbox".to_owned()));
        };
        let mut volumes = volumes::prepare(
            &ctx.client,
            &self.pod,
            &self.dir,
            &ctx.state_dir.join("pvcs"),
            &ip.to_string(),
            &ctx.host_ip().to_string(),
        )
        .await?;
        if let Some(files) =
            apiserver::token_volume(&ctx.client, &self.pod, &ctx.api.ca_pem).await?
        {
            let dir = self.dir.join("volumes").join(apiserver::TOKEN_VOLUME);
            volumes::write_files(&dir, &files)?;
            volumes.insert(apiserver::TOKEN_VOLUME.to_owned(), dir);
        }
        self.volumes = Some(volumes);
        self.start_time = now();
        Ok(())
    }

    /// Network namespace, sandbox process, and the pod's entry in every hosts file.
    async fn setup_sandbox(&mut self) -> Result<(), AgentError> {
        let ctx = self.ctx.clone();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| AgentError::io(format!("creating {}", self.dir.display()), e))?;
        let host = ctx.allocate_ip()?;
        let n = ctx.next_id();
        let ns = format!("{}-{n}", ctx.ns_prefix);
        let veth = format!("hkp{}x{n}", ctx.subnet);
        let net = match PodNet::create(ctx.subnet, ns, veth, host).await {
            Ok(net) => net,
            Err(e) => {
                ctx.release_ip(host);
                return Err(e);
            }
        };
        let hostname = env::pod_hostname(&self.pod);
        let sandbox = tokio::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.ns))
            .args([
                "--",
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
            ])
            .args([
                "/bin/sh",
                "-c",
                "echo \"$0\" > /proc/sys/kernel/hostname && exec sleep infinity",
            ])
            .arg(&hostname)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match sandbox {
            Ok(child) => child,
            Err(e) => {
                net.delete().await;
                ctx.release_ip(host);
                return Err(AgentError::io("starting the pod sandbox (nsenter)", e));
            }
        };
        let pid = child.id().unwrap_or(0);
        let mut sandbox = Sandbox {
            net,
            host,
            child,
            pid,
        };
        if let Err(e) = wait_sandbox(&mut sandbox, &ctx.host_mnt_ns).await {
            sandbox.net.delete().await;
            let _ = sandbox.child.wait().await;
            ctx.release_ip(host);
            return Err(e);
        }
        let ip = sandbox.net.ip;
        ctx.log(&format!(
            "pod {}: sandbox pid {pid}, netns {}, ip {ip}",
            self.key, sandbox.net.ns
        ));
        ctx.pods_insert(
            &self.key,
            PodInfo {
                uid: self.uid.clone(),
                netns: sandbox.net.ns.clone(),
                ip,
                dir: self.dir.clone(),
                namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
                names: self.host_names(&hostname),
            },
        );
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// The names the pod answers to (see `PodInfo::names`), the fully qualified one first.
    fn host_names(&self, hostname: &str) -> Vec<String> {
        let spec = self.pod.spec.as_ref();
        match spec.and_then(|s| s.subdomain.as_deref()) {
            Some(sub) => {
                let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
                vec![
                    format!("{hostname}.{sub}.{ns}.svc.cluster.local"),
                    format!("{hostname}.{sub}"),
                    hostname.to_owned(),
                ]
            }
            None => vec![hostname.to_owned()],
        }
    }

    /// Starts the next init container, or the containers, whose time has come.
    async fn start_due(&mut self) {
        if self.init_failed {
            return;
        }
        let now = Instant::now();
        if let Some(idx) = self.init.iter().position(|s| !s.done) {
            let slot = &self.init[idx];
            if slot.proc.is_none() && slot.next_start <= now {
                self.start(true, idx).await;
            }
            return;
        }
        for idx in 0..self.containers.len() {
            let slot = &self.containers[idx];
            if slot.proc.is_none() && !slot.done && slot.next_start <= now {
                self.start(false, idx).await;
            }
        }
    }

    async fn start(&mut self, init: bool, idx: usize) {
        if let Err(e) = self.try_start(init, idx).await {
            let slot = if init {
                &mut self.init[idx]
            } else {
                &mut self.containers[idx]
            };
            self.ctx.log(&format!(
                "pod {}: container {} not started: {e}",
                self.key, slot.spec.name
            ));
            slot.record.state = State::waiting("CreateContainerError", Some(e.to_string()));
            slot.next_start = Instant::now() + RETRY;
        }
    }

    async fn try_start(&mut self, init: bool, idx: usize) -> Result<(), AgentError> {
        let ctx = self.ctx.clone();
        let (sandbox_pid, pod_ip) = match &self.sandbox {
            Some(s) => (s.pid, s.net.ip),
            None => return Err(AgentError::Spec("no sandbox".to_owned())),
        };
        let spec = if init {
            self.init[idx].spec.clone()
        } else {
            self.containers[idx].spec.clone()
        };
        let image_name = spec.image.clone().unwrap_or_default();
        let entrypoint = ctx
            .entrypoints
            .get(&image_name)
            .cloned()
            .unwrap_or_default();
        let image = ctx.images.get(&image_name).cloned().ok_or_else(|| {
            AgentError::Spec(format!(
                "image {image_name:?} is not in the node agent's image map (it has: {})",
                ctx.images.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let vars = env::container_env(
            &ctx.client,
            &self.pod,
            &spec,
            &pod_ip.to_string(),
            &ctx.host_ip().to_string(),
            &apiserver::service_env(ctx.host_ip(), apiserver::SERVICE_PORT),
        )
        .await?;
        let argv = env::argv(&spec, &entrypoint, &vars)?;
        let volumes = self.volumes.clone().unwrap_or_default();
        let mut mounts = Vec::new();
        if let Some(dir) = volumes.get(apiserver::TOKEN_VOLUME) {
            if !apiserver::mounts_token_dir(&spec) {
                mounts.push(VolumeMount {
                    source: dir.clone(),
                    target: apiserver::TOKEN_DIR.to_owned(),
                    read_only: true,
                });
            }
        }
        for m in spec.volume_mounts.iter().flatten() {
            let base = volumes.get(&m.name).ok_or_else(|| {
                AgentError::Spec(format!(
                    "container {}: volumeMount {}: no such volume",
                    spec.name, m.name
                ))
            })?;
            let source = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => {
                    if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                        return Err(AgentError::Spec(format!(
                            "container {}: subPath {sub}: must be relative, without '..'",
                            spec.name
                        )));
                    }
                    base.join(sub)
                }
                _ => base.clone(),
            };
            mounts.push(VolumeMount {
                source,
                target: m.mount_path.clone(),
                read_only: m.read_only == Some(true),
            });
        }
        mounts.sort_by_key(|m| m.target.trim_end_matches('/').matches('/').count());

        let slot = if init {
            &mut self.init[idx]
        } else {
            &mut self.containers[idx]
        };
        slot.run += 1;
        let run = slot.run;
        let containers = self.dir.join("containers");
        let run_dir = containers.join(format!("{}-{run}", spec.name));
        let image_entries = rootfs::image_entries(&image).map_err(|e| {
            AgentError::io(format!("reading image directory {}", image.display()), e)
        })?;
        let plan = Plan {
            run_dir: run_dir.clone(),
            image,
            image_entries,
            host_entries: ctx.host_entries.clone(),
            hosts_file: self.dir.join("hosts"),
            volumes: mounts,
            host_mnt_ns: ctx.host_mnt_ns.clone(),
        };
        let mut script = String::new();
        let previous = (run > 1).then(|| containers.join(format!("{}-{}", spec.name, run - 1)));
        if let Some(prev) = &previous {
            let root = rootfs::quote(&prev.join("rootfs").to_string_lossy());
            script.push_str(&format!(
                "if mountpoint -q {root}; then umount -R -l {root}; fi\n"
            ));
        }
        script.push_str(&rootfs::script(&plan));
        let out = tokio::process::Command::new("nsenter")
            .args(["--target", &sandbox_pid.to_string(), "--mount", "--"])
            .args(["/bin/sh", "-c", &script])
            .output()
            .await
            .map_err(|e| AgentError::io("running nsenter to build the root file system", e))?;
        if !out.status.success() {
            return Err(AgentError::Command {
                command: format!("building the root file system of container {}", spec.name),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        if let Some(prev) = previous {
            let _ = std::fs::remove_dir_all(prev);
        }
        let rootfs = run_dir.join("rootfs").to_string_lossy().into_owned();
        let mut inner = Vec::new();
        if let Some(wd) = spec.working_dir.as_deref().filter(|w| !w.is_empty()) {
            inner.extend(["/usr/bin/env", "-C", wd, "--"].map(str::to_owned));
        }
        inner.extend(argv.iter().cloned());
        let cmd = probe::in_container(sandbox_pid, &rootfs, &inner);
        let log_path = self.dir.join(format!("{}.log", spec.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| AgentError::io(format!("opening {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| AgentError::io(format!("opening {}", log_path.display()), e))?;
        let mut child = tokio::process::Command::new("setsid")
            .args(&cmd)
            .env_clear()
            .envs(&vars)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| AgentError::io(format!("starting container {}", spec.name), e))?;
        let pid = child.id().unwrap_or(0);
        ctx.log(&format!(
            "pod {}: container {} run {run} started, pid {pid}: {argv:?}",
            self.key, spec.name
        ));
        let (kill_tx, mut kill_rx) = oneshot::channel::<Duration>();
        let events = self.events.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                Ok(grace) = &mut kill_rx => {
                    signal(pid, Signal::SIGTERM, false);
                    tokio::select! {
                        status = child.wait() => status,
                        _ = tokio::time::sleep(grace) => {
                            signal(pid, Signal::SIGKILL, true);
                            child.wait().await
                        }
                    }
                }
            };
            // What the main process left behind in its process group.
            signal(pid, Signal::SIGKILL, true);
            let (code, sig) = match status {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => (c, None),
                    (None, Some(sig)) => (128 + sig, Some(sig)),
                    (None, None) => (-1, None),
                },
                Err(_) => (-1, None),
            };
            let _ = events.send(Event::Exited {
                init,
                idx,
                run,
                code,
                signal: sig,
            });
        });
        let started_at = now();
        let mut probes = Vec::new();
        if !init {
            let target = ExecTarget {
                sandbox_pid,
                rootfs,
                env: vars,
            };
            for (liveness, p) in [
                (false, spec.readiness_probe.clone()),
                (true, spec.liveness_probe.clone()),
            ] {
                if let Some(p) = p {
                    probes.push(tokio::spawn(probe_loop(
                        p,
                        spec.clone(),
                        pod_ip,
                        target.clone(),
                        self.events.clone(),
                        idx,
                        run,
                        liveness,
                    )));
                }
            }
        }
        let slot = if init {
            &mut self.init[idx]
        } else {
            &mut self.containers[idx]
        };
        slot.record.state = State::Running {
            started_at: started_at.clone(),
        };
        slot.record.ready = !init && spec.readiness_probe.is_none();
        slot.readiness = Counts::default();
        slot.liveness = Counts::default();
        slot.proc = Some(Proc {
            run,
            kill: Some(kill_tx),
            started: Instant::now(),
            started_at,
            probes,
        });
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        let policy = self.restart_policy();
        let grace = self.grace();
        match event {
            Event::Exited {
                init,
                idx,
                run,
                code,
                signal,
            } => {
                let key = self.key.clone();
                let terminating = self.terminating;
                let slot = if init {
                    self.init.get_mut(idx)
                } else {
                    self.containers.get_mut(idx)
                };
                let Some(slot) = slot else { return };
                if slot.proc.as_ref().map(|p| p.run) != Some(run) {
                    return;
                }
                let Some(proc) = slot.proc.take() else { return };
                self.ctx.log(&format!(
                    "pod {key}: container {} run {run} exited with {code}",
                    slot.spec.name
                ));
                let term = State::Terminated {
                    exit_code: code,
                    signal,
                    reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
                    started_at: Some(proc.started_at.clone()),
                    finished_at: now(),
                };
                slot.record.ready = false;
                let restart = !terminating
                    && match (init, policy.as_str()) {
                        (true, "Never") => false,
                        (true, _) => code != 0,
                        (false, "Always") => true,
                        (false, "OnFailure") => code != 0,
                        (false, _) => false,
                    };
                if restart {
                    if proc.started.elapsed() >= RESET_AFTER {
                        slot.backoff = FIRST_BACKOFF;
                    }
                    slot.next_start = Instant::now() + slot.backoff;
                    slot.backoff = (slot.backoff * 2).min(MAX_BACKOFF);
                    slot.record.restart_count += 1;
                    slot.record.last_state = Some(term);
                    slot.record.state = State::waiting(
                        "CrashLoopBackOff",
                        Some(format!("back-off restarting container {}", slot.spec.name)),
                    );
                } else {
                    slot.record.state = term;
                    slot.done = true;
                    if init && code != 0 {
                        self.init_failed = true;
                    }
                }
            }
            Event::Probe {
                idx,
                run,
                liveness,
                result,
            } => {
                let key = self.key.clone();
                let Some(slot) = self.containers.get_mut(idx) else {
                    return;
                };
                let Some(proc) = slot.proc.as_mut() else {
                    return;
                };
                if proc.run != run {
                    return;
                }
                let probe = if liveness {
                    slot.spec.liveness_probe.as_ref()
                } else {
                    slot.spec.readiness_probe.as_ref()
                };
                let Some(timing) = probe.map(Timing::of) else {
                    return;
                };
                let counts = if liveness {
                    &mut slot.liveness
                } else {
                    &mut slot.readiness
                };
                match &result {
                    Ok(()) => {
                        counts.successes += 1;
                        counts.failures = 0;
                    }
                    Err(_) => {
                        counts.failures += 1;
                        counts.successes = 0;
                    }
                }
                let counts = *counts;
                if liveness {
                    if counts.failures >= timing.failure_threshold {
                        if let Some(kill) = proc.kill.take() {
                            self.ctx.log(&format!(
                                "pod {key}: container {} failed its liveness probe ({}), stopping it",
                                slot.spec.name,
                                result.err().unwrap_or_default()
                            ));
                            let _ = kill.send(grace);
                        }
                    }
                } else if counts.successes >= timing.success_threshold && !slot.record.ready {
                    slot.record.ready = true;
                } else if counts.failures >= timing.failure_threshold && slot.record.ready {
                    self.ctx.log(&format!(
                        "pod {key}: container {} not ready: {}",
                        slot.spec.name,
                        result.err().unwrap_or_default()
                    ));
                    slot.record.ready = false;
                }
            }
        }
    }

    /// The pod's grace period: the delete's, else the spec's, else 30 s.
    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Asks every running process to stop (SIGTERM, then SIGKILL after `grace`) and waits until
    /// all have exited.
    async fn stop_all(&mut self, grace: Duration, events: &mut mpsc::UnboundedReceiver<Event>) {
        self.terminating = true;
        for slot in self.init.iter_mut().chain(self.containers.iter_mut()) {
            if let Some(proc) = slot.proc.as_mut() {
                for p in &proc.probes {
                    p.abort();
                }
                if let Some(kill) = proc.kill.take() {
                    let _ = kill.send(grace);
                }
            }
        }
        let deadline = Instant::now() + grace + Duration::from_secs(10);
        while self
            .init
            .iter()
            .chain(self.containers.iter())
            .any(|s| s.proc.is_some())
        {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => self.on_event(event),
                _ => break,
            }
        }
    }

    /// Stops a deleted pod within its grace period and removes it from the API server.
    async fn terminate(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) {
        let grace = self.grace();
        self.ctx.log(&format!(
            "pod {}: deleted, stopping (grace {grace:?})",
            self.key
        ));
        self.stop_all(grace, events).await;
        let _ = self.write_status().await;
        self.teardown().await;
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => self.ctx.log(&format!("pod {}: removed", self.key)),
            Err(e) => self
                .ctx
                .log(&format!("pod {}: zero-grace delete: {e}", self.key)),
        }
    }

    /// Kills whatever is left in the pod's namespaces and removes them and its files.
    async fn teardown(&mut self) {
        for slot in self.init.iter_mut().chain(self.containers.iter_mut()) {
            slot.proc = None;
        }
        if let Some(mut sandbox) = self.sandbox.take() {
            sandbox.net.delete().await;
            let _ = tokio::time::timeout(Duration::from_secs(10), sandbox.child.wait()).await;
            self.ctx.release_ip(sandbox.host);
        }
        self.ctx.pods_remove(&self.key, &self.uid);
        // The mounts lived in the pod's mount namespace only: the host sees plain directories.
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Writes the status when it changed: Some(true) written, Some(false) the pod is gone,
    /// None nothing to write or another error (logged).
    async fn write_status(&mut self) -> Option<bool> {
        let init: Vec<Record> = self.init.iter().map(|s| s.record.clone()).collect();
        let containers: Vec<Record> = self.containers.iter().map(|s| s.record.clone()).collect();
        let previous = self
            .last_status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let policy = self.restart_policy();
        let facts = Facts {
            restart_policy: &policy,
            init: &init,
            init_done: self.init.iter().all(|s| s.done) && !self.init_failed,
            init_failed: self.init_failed,
            containers: &containers,
            pod_ip: self.pod_ip().map(|ip| ip.to_string()),
            host_ip: self.ctx.host_ip().to_string(),
            start_time: self.start_time.clone(),
            previous: &previous,
            now: now(),
        };
        let status = status::pod_status(&facts);
        if self.last_status.as_ref() == Some(&status) {
            return None;
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.last_status = Some(status);
                Some(true)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Some(false),
            Err(e) => {
                self.ctx
                    .log(&format!("pod {}: writing status: {e}", self.key));
                None
            }
        }
    }
}

/// Sends `sig` to process `pid` (or its process group).
fn signal(pid: u32, sig: Signal, group: bool) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw <= 1 {
        return;
    }
    let pid = Pid::from_raw(raw);
    let _ = if group {
        killpg(pid, sig)
    } else {
        kill(pid, sig)
    };
}

/// Waits until the sandbox has its own mount namespace and has set its host name (it then
/// execs `sleep`).
async fn wait_sandbox(sandbox: &mut Sandbox, host_mnt_ns: &str) -> Result<(), AgentError> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = sandbox.child.try_wait() {
            return Err(AgentError::Spec(format!(
                "the pod sandbox (nsenter + unshare) exited: {status}"
            )));
        }
        let proc = PathBuf::from(format!("/proc/{}", sandbox.pid));
        let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
        let mnt = std::fs::read_link(proc.join("ns/mnt"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if comm.trim() == "sleep" && !mnt.is_empty() && mnt != host_mnt_ns {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(AgentError::Spec(
                "the pod sandbox did not start within 20 s".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    p: k8s_openapi::api::core::v1::Probe,
    container: Container,
    pod_ip: Ipv4Addr,
    target: ExecTarget,
    events: mpsc::UnboundedSender<Event>,
    idx: usize,
    run: u32,
    liveness: bool,
) {
    let timing = Timing::of(&p);
    tokio::time::sleep(timing.initial_delay).await;
    loop {
        let started = Instant::now();
        let result = probe::run(&p, &container, pod_ip, &target).await;
        if events
            .send(Event::Probe {
                idx,
                run,
                liveness,
                result,
            })
            .is_err()
        {
            return;
        }
        tokio::time::sleep_until(started + timing.period).await;
    }
}
