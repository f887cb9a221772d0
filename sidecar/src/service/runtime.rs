//! One loaded service, run as its own task: waits for its binds, its election and (initializer
//! topology) its leader's first passing health check; layers its config, renders templates and
//! hooks into the svc dir, runs `init`, supervises the process, runs `post-run`, health checks
//! and suitability, and reacts to ring changes with reconfigure or restart.
//!
//! The supervisor loop sends it the census (`RingView`) over a watch channel and reads its
//! `ServiceStatus` from another, so no hook or process ever blocks gossip. Hooks that can take
//! long (health-check, suitability, reconfigure, file-updated, post-run) run as tasks whose
//! results come back through a `JoinSet`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::backoff::{Backoff, BackoffPolicy};
use super::changes::Changes;
use super::dirs::{sync_dir, SvcDirs};
use super::health::HealthStatus;
use super::hooks::{self, HookContext, HookKind, HookOutcome, HookTimeouts};
use super::process::{RunAs, RunSpec};
use super::sealed::{Notice, Unsealer};
use super::status::ServiceStatus;
use super::supervisor::{Supervisor, SupervisorConfig, SupervisorEvent};
use crate::binds::{self, Binding, BindingMode};
use crate::census::{CensusGroup, ELECTION_FINISHED};
use crate::config::{self, Layers, UserTomlWatch};
use crate::deadline::Deadline;
use crate::gossip::rumor::ServiceGroup;
use crate::package::Package;
use crate::service::Topology;
use crate::template::context::{render_context, PkgContext, RenderInput, SysContext};
use crate::template::Renderer;

/// How often `user.toml` is polled for changes: a `stat` each time, a read only when it moved.
/// An edit applies within this long (README); polling more often costs an idle service a
/// wake-up each time.
const USER_TOML_POLL: Duration = Duration::from_secs(2);

/// What `hab sup run` was told about the service.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub package: Package,
    pub service_group: ServiceGroup,
    pub topology: Topology,
    pub bindings: Vec<Binding>,
    pub binding_mode: BindingMode,
    pub health_check_interval: Duration,
    /// `HAB_ROOT`.
    pub root: PathBuf,
    pub sys: SysContext,
    /// The `HAB_<PKGNAME>` variable, read once at start.
    pub env_layer: Option<String>,
    pub hook_timeouts: HookTimeouts,
    pub backoff: BackoffPolicy,
}

/// The ring as the service sees it: every service group of the census.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RingView {
    pub groups: Vec<CensusGroup>,
}

impl RingView {
    pub fn group(&self, group: &ServiceGroup) -> Option<&CensusGroup> {
        self.groups.iter().find(|g| &g.service_group == group)
    }
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Opens a message sealed for the service's group with the keys in `<root>/cache/keys`.
fn open_sealed(spec: &ServiceSpec, text: &[u8]) -> crate::error::Result<crate::keys::Opened> {
    crate::keys::open_box_with_keys(
        &crate::keys::keys_dir(&spec.root),
        text,
        spec.service_group.as_str(),
    )
}

/// Why the service may not start yet, or `None`.
pub fn start_gate(spec: &ServiceSpec, view: &RingView) -> Option<String> {
    let bind_status = binds::check(&spec.bindings, spec.binding_mode, &view.groups);
    if !bind_status.ready {
        return Some(bind_status.reasons.join("; "));
    }
    if spec.topology == Topology::Standalone {
        return None;
    }
    let Some(group) = view.group(&spec.service_group) else {
        return Some(format!(
            "service group {} is not in the census yet",
            spec.service_group
        ));
    };
    let leader = match (group.election_status, group.leader()) {
        (ELECTION_FINISHED, Some(leader)) => leader,
        (status, _) => {
            return Some(format!(
                "waiting for the leader election of {} to finish ({status})",
                spec.service_group
            ))
        }
    };
    if spec.topology == Topology::Initializer
        && leader.member_id != group.local_member_id
        && !leader.initialized
    {
        return Some(format!(
            "initializer topology: waiting for the leader {} to pass its first health check",
            leader.member_id
        ));
    }
    None
}

struct Runtime {
    spec: Arc<ServiceSpec>,
    dirs: SvcDirs,
    pkg_ctx: PkgContext,
    renderer: Renderer,
    /// Hooks the package provides, by kind.
    hooks: BTreeMap<HookKind, PathBuf>,
    layers: Option<Layers>,
    /// The group's config and files sealed for it (`--user`), opened with this member's keys.
    unsealer: Unsealer,
    user_watch: UserTomlWatch,
    status: watch::Sender<ServiceStatus>,
    view: RingView,
    process: Option<Supervisor>,
    process_events: Option<tokio::sync::broadcast::Receiver<SupervisorEvent>>,
    tasks: JoinSet<(HookKind, HookOutcome)>,
    /// A post-run retry waiting for its backoff.
    post_run_retry: Option<Instant>,
    post_run_backoff: Backoff,
    next_health_check: Option<Instant>,
    health_check_running: bool,
}

/// Builds the renderer: `config/` templates plus every hook file of the package (Habitat
/// renders hooks as templates too).
fn load_renderer(
    package: &Package,
    fs_root: &Path,
) -> crate::error::Result<(Renderer, BTreeMap<HookKind, PathBuf>)> {
    let mut renderer = Renderer::with_fs_root(fs_root);
    let config_dir = package.config_dir();
    if config_dir.is_dir() {
        renderer
            .add_dir(&config_dir)
            .map_err(|e| crate::error::Error::invalid("templates", e.to_string()))?;
    }
    let mut hooks_found = BTreeMap::new();
    let hooks_dir = package.hooks_dir();
    for kind in HookKind::ALL {
        if let Some(path) = kind.locate(&hooks_dir) {
            renderer
                .add_file(&hook_template_name(kind), &path)
                .map_err(|e| crate::error::Error::invalid("hooks", e.to_string()))?;
            hooks_found.insert(kind, path);
        }
    }
    Ok((renderer, hooks_found))
}

/// The `pkg` of the render context (and of `/services`).
pub fn pkg_context(spec: &ServiceSpec) -> PkgContext {
    let package = &spec.package;
    let mut ctx = PkgContext::new(
        &package.ident,
        &package.path,
        &SvcDirs::new(&spec.root, package.name()).root,
        package.svc_user.as_deref().unwrap_or("hab"),
        package.svc_group.as_deref().unwrap_or("hab"),
        &package.exports,
    );
    ctx.deps = package.deps.clone();
    ctx.env = package.runtime_environment.iter().cloned().collect();
    ctx.exposes = package.exposes.clone();
    ctx
}

fn hook_template_name(kind: HookKind) -> String {
    format!("hooks/{}", kind.file_name())
}

/// Runs a service until `stop` turns true; then stops it and runs `post-stop`.
pub async fn run(
    spec: ServiceSpec,
    view_rx: watch::Receiver<RingView>,
    status: watch::Sender<ServiceStatus>,
    stop: watch::Receiver<bool>,
) {
    // Entered on every poll only: a guard held across an await would stay entered on the
    // thread while other tasks run (on one thread, the supervisor's lines came out as ours).
    let span = tracing::info_span!("svc", service_group = %spec.service_group);
    run_service(spec, view_rx, status, stop)
        .instrument(span)
        .await;
}

async fn run_service(
    spec: ServiceSpec,
    mut view_rx: watch::Receiver<RingView>,
    status: watch::Sender<ServiceStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let spec = Arc::new(spec);
    let dirs = SvcDirs::new(&spec.root, spec.package.name());
    if let Err(e) = dirs.create() {
        tracing::error!(error = %e, "cannot create the service directory");
        status.send_modify(|s| s.config_error = Some(e.to_string()));
        return;
    }
    let (renderer, hooks_found) = match load_renderer(&spec.package, &spec.root) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "cannot load the package's templates");
            status.send_modify(|s| s.config_error = Some(e.to_string()));
            return;
        }
    };
    let package = &spec.package;
    let pkg_ctx = pkg_context(&spec);
    let user_watch = UserTomlWatch::new(config::user_toml_path(&spec.root, package.name()));
    let mut rt = Runtime {
        post_run_backoff: Backoff::new(spec.backoff.clone()),
        spec: Arc::clone(&spec),
        dirs,
        pkg_ctx,
        renderer,
        hooks: hooks_found,
        layers: None,
        unsealer: Unsealer::default(),
        user_watch,
        status,
        view: view_rx.borrow_and_update().clone(),
        process: None,
        process_events: None,
        tasks: JoinSet::new(),
        post_run_retry: None,
        next_health_check: None,
        health_check_running: false,
    };
    rt.status.send_modify(|s| {
        s.desired_up = true;
        s.hooks = rt.hooks.keys().map(|k| k.file_name().to_string()).collect();
    });
    rt.load_layers();
    rt.run_suitability();

    let mut user_check = Instant::now() + USER_TOML_POLL;
    // One timer for every deadline of the loop (see `Deadline`).
    let mut deadline = Deadline::new();
    let mut init_backoff = Backoff::new(spec.backoff.clone());
    let mut init_retry_at: Option<Instant> = None;
    loop {
        // Also seen here: a stop that came while `try_start` ran may have been marked seen.
        if *stop.borrow() {
            break;
        }
        if rt.process.is_none() && init_retry_at.is_none_or(|at| Instant::now() >= at) {
            init_retry_at = None;
            match rt.try_start(&mut init_backoff, &mut stop).await {
                StartResult::Started | StartResult::Waiting => {}
                StartResult::RetryIn(delay) => init_retry_at = Some(Instant::now() + delay),
                StartResult::Stopping => break,
            }
        }
        let wake = [
            init_retry_at.filter(|_| rt.process.is_none()),
            rt.post_run_retry,
            rt.next_health_check.filter(|_| !rt.health_check_running),
            Some(user_check),
        ]
        .into_iter()
        .flatten()
        .min();
        deadline.set(wake);
        tokio::select! {
            changed = view_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                rt.view = view_rx.borrow_and_update().clone();
                rt.on_view_change().await;
            }
            Some(joined) = rt.tasks.join_next(), if !rt.tasks.is_empty() => {
                if let Ok((kind, outcome)) = joined {
                    rt.on_hook_done(kind, outcome);
                }
            }
            event = next_event(&mut rt.process_events) => rt.on_process_event(event),
            () = deadline.expired() => {
                if Instant::now() >= user_check {
                    user_check = Instant::now() + USER_TOML_POLL;
                    if rt.user_watch.changed() {
                        rt.on_user_toml_change().await;
                    } else {
                        // Keys copied in after the config came open it within a poll.
                        rt.retry_kept_encrypted().await;
                    }
                }
                rt.on_timer();
            }
            _ = stop.changed() => break,
        }
    }
    rt.shutdown().await;
}

async fn next_event(
    events: &mut Option<tokio::sync::broadcast::Receiver<SupervisorEvent>>,
) -> Option<SupervisorEvent> {
    match events {
        Some(rx) => loop {
            match rx.recv().await {
                Ok(event) => return Some(event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        },
        None => std::future::pending().await,
    }
}

enum StartResult {
    Started,
    Waiting,
    RetryIn(Duration),
    /// The service was told to stop while `init` ran; the hook has been stopped.
    Stopping,
}

impl Runtime {
    fn service_group(&self) -> String {
        self.spec.service_group.to_string()
    }

    fn load_layers(&mut self) {
        let env_value = self.spec.env_layer.clone();
        let env = move |_: &str| env_value.clone();
        let spec = Arc::clone(&self.spec);
        let open = |text: &[u8]| open_sealed(&spec, text);
        let own = self.view.group(&spec.service_group);
        let gossip = self
            .unsealer
            .config_layer(own.and_then(|g| g.service_config.as_ref()), &open);
        let loaded = config::load_layers(spec.package.defaults(), &spec.root, &env, gossip);
        self.publish_kept_encrypted();
        match loaded {
            Ok(layers) => {
                self.layers = Some(layers);
                self.status.send_modify(|s| s.config_error = None);
            }
            Err(e) => {
                tracing::error!(error = %e, "config layer rejected; the service waits for a good config");
                self.status
                    .send_modify(|s| s.config_error = Some(e.to_string()));
            }
        }
    }

    /// The finished election's term, when this group has one.
    fn election_term(&self) -> Option<u64> {
        let group = self.view.group(&self.spec.service_group)?;
        (group.election_status == ELECTION_FINISHED)
            .then_some(group.election_term)
            .flatten()
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        let mut env = self.spec.package.runtime_environment.clone();
        if !self.spec.package.bin_path.is_empty() {
            let mut parts: Vec<String> = self
                .spec
                .package
                .bin_path
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if let Ok(path) = std::env::var("PATH") {
                parts.push(path);
            }
            env.retain(|(k, _)| k != "PATH");
            env.push(("PATH".into(), parts.join(":")));
        }
        if let Some(term) = self.election_term() {
            env.push((crate::election::TERM_ENV_VAR.into(), term.to_string()));
        }
        env
    }

    fn run_as(&self) -> Option<RunAs> {
        let package = &self.spec.package;
        package.svc_user.as_ref().map(|user| {
            RunAs::new(
                user.clone(),
                package.svc_group.clone().unwrap_or_else(|| user.clone()),
            )
        })
    }

    fn hook_context(&self) -> HookContext {
        HookContext {
            service_group: self.service_group(),
            svc_dir: self.dirs.root.clone(),
            env: self.hook_env(),
            user: self.run_as(),
        }
    }

    /// The rendered hook's path in the svc dir.
    fn hook_path(&self, kind: HookKind) -> Option<PathBuf> {
        self.hooks
            .contains_key(&kind)
            .then(|| self.dirs.hooks().join(kind.file_name()))
    }

    /// Logs what the unsealer noticed (once per incarnation; never a value) and shows what is
    /// kept encrypted in the status.
    fn publish_kept_encrypted(&mut self) {
        for notice in self.unsealer.take_notices() {
            match notice {
                Notice::Opened {
                    filename,
                    incarnation,
                    sender,
                } => tracing::info!(
                    what = filename.as_deref().unwrap_or("config"),
                    incarnation,
                    %sender,
                    "decrypted the gossiped {}",
                    if filename.is_some() { "file" } else { "config" }
                ),
                Notice::Kept(kept) => tracing::warn!(
                    what = kept.filename.as_deref().unwrap_or("config"),
                    incarnation = kept.incarnation,
                    reason = %kept.reason,
                    "gossiped {} is encrypted for the service group and stays encrypted here; \
                     the service keeps what it had",
                    if kept.filename.is_some() { "file" } else { "config" }
                ),
            }
        }
        let kept = self.unsealer.kept();
        self.status.send_if_modified(|s| {
            let changed = s.kept_encrypted != kept;
            s.kept_encrypted = kept;
            changed
        });
    }

    /// Tries again what is kept encrypted (the keys may have been copied in since).
    async fn retry_kept_encrypted(&mut self) {
        if self.unsealer.kept().is_empty() || self.process.is_none() {
            return; // before the start, every turn of the main loop renders anyway
        }
        if let Some(changes) = self.render() {
            self.react(changes).await;
        }
    }

    /// Renders config, hooks and files into the svc dir. `None` when something failed (logged
    /// and kept in the status; the svc dir keeps the last good output).
    fn render(&mut self) -> Option<Changes> {
        let spec = Arc::clone(&self.spec);
        let open = |text: &[u8]| open_sealed(&spec, text);
        let layers = self.layers.as_mut()?;
        let own = self.view.group(&spec.service_group);
        // A rejected gossiped config stays the reported problem while it is the newest one.
        let gossip_error = self
            .unsealer
            .config_layer(own.and_then(|g| g.service_config.as_ref()), &open)
            .and_then(|(incarnation, table)| layers.apply_gossip(incarnation, table).err())
            .map(|e| e.to_string());
        let files = self
            .unsealer
            .files(own.map_or(&[], |g| g.service_files.as_slice()), &open);
        if let Some(problem) = &gossip_error {
            if self.status.borrow().config_error.as_ref() != Some(problem) {
                tracing::error!(%problem, "gossiped config rejected; keeping the last good config");
            }
        }
        let config_incarnation = layers.gossip.as_ref().map(|(i, _)| *i);
        let cfg = layers.merged();
        let placeholder;
        let svc_group = match own {
            Some(group) => group,
            None => {
                placeholder =
                    CensusGroup::empty(self.spec.service_group.clone(), self.spec.sys.member_id);
                &placeholder
            }
        };
        let bind_groups: BTreeMap<String, &CensusGroup> = self
            .spec
            .bindings
            .iter()
            .filter_map(|b| Some((b.name.clone(), self.view.group(&b.service_group)?)))
            .collect();
        let ctx = render_context(&RenderInput {
            sys: &self.spec.sys,
            pkg: &self.pkg_ctx,
            cfg: &cfg,
            svc: svc_group,
            binds: &bind_groups,
        });
        let result = self.write_rendered(&ctx, &files);
        self.publish_kept_encrypted();
        match result {
            Ok(changes) => {
                let exported = self.spec.package.exported_cfg(&cfg);
                self.status.send_modify(|s| {
                    s.config_error = gossip_error;
                    s.cfg = cfg;
                    s.exported = exported;
                    s.config_incarnation = config_incarnation;
                });
                Some(changes)
            }
            Err(problem) => {
                tracing::error!(%problem, "cannot render the service's templates; keeping the last good output");
                self.status
                    .send_modify(|s| s.config_error = Some(problem.clone()));
                None
            }
        }
    }

    /// Renders config and hooks with `ctx` and writes them and the group's service files into
    /// the svc dir; what changed.
    fn write_rendered(
        &self,
        ctx: &serde_json::Value,
        files: &BTreeMap<PathBuf, Vec<u8>>,
    ) -> Result<Changes, String> {
        let config_files = self.renderer.render_all(ctx).map_err(|e| e.to_string())?;
        let mut hooks_rendered = BTreeMap::new();
        for kind in self.hooks.keys() {
            let text = self
                .renderer
                .render_one(&hook_template_name(*kind), ctx)
                .map_err(|e| e.to_string())?;
            hooks_rendered.insert(PathBuf::from(kind.file_name()), text.into_bytes());
        }
        let config_files: BTreeMap<PathBuf, Vec<u8>> = config_files
            .into_iter()
            .map(|(p, t)| (p, t.into_bytes()))
            .collect();
        let config_changed = !sync_dir(&self.dirs.config(), &config_files, 0o640)
            .map_err(|e| e.to_string())?
            .is_empty();
        let hooks_changed: BTreeSet<String> = sync_dir(&self.dirs.hooks(), &hooks_rendered, 0o755)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        let files_changed = !sync_dir(&self.dirs.files(), files, 0o640)
            .map_err(|e| e.to_string())?
            .is_empty();
        Ok(Changes {
            config_changed,
            hooks_changed,
            files_changed,
        })
    }

    /// Starts the service once nothing gates it: render, `init`, process. A stop (`stop`
    /// turning true, or its sender gone) ends a running `init` at once rather than after its
    /// timeout, which can be longer than the supervisor's whole shutdown deadline.
    async fn try_start(
        &mut self,
        init_backoff: &mut Backoff,
        stop: &mut watch::Receiver<bool>,
    ) -> StartResult {
        if let Some(reason) = start_gate(&self.spec, &self.view) {
            let changed = self.status.borrow().waiting_for.as_deref() != Some(reason.as_str());
            if changed {
                tracing::info!(%reason, "service waiting");
                self.status.send_modify(|s| s.waiting_for = Some(reason));
            }
            return StartResult::Waiting;
        }
        if self.layers.is_none() {
            self.status.send_modify(|s| {
                s.waiting_for = Some("waiting for a valid config (see config_error)".into())
            });
            return StartResult::Waiting;
        }
        if self.render().is_none() {
            return StartResult::Waiting;
        }
        if let Some(path) = self.hook_path(HookKind::Init) {
            let stopping = async {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let outcome = hooks::run_hook_until(
                HookKind::Init,
                &path,
                &self.hook_context(),
                self.spec.hook_timeouts.get(HookKind::Init),
                stopping,
            )
            .await;
            if *stop.borrow() || stop.has_changed().is_err() {
                return StartResult::Stopping;
            }
            if !hooks::init_succeeded(&self.service_group(), &outcome) {
                let delay = init_backoff.on_exit(Duration::ZERO, rand::rng().random::<f64>());
                self.status.send_modify(|s| {
                    s.waiting_for = Some(format!("init hook failed; retrying in {delay:?}"));
                    s.last_process = Some(super::status::LastProcess {
                        pid: None,
                        reason: super::status::Termination::InitHookFailed,
                        at: epoch_secs(),
                    });
                    s.restart_count += 1;
                    s.next_restart_at = Some(epoch_secs() + delay.as_secs());
                });
                return StartResult::RetryIn(delay);
            }
        }
        let program = self
            .hook_path(HookKind::Run)
            .or_else(|| self.spec.package.run.clone());
        let Some(program) = program else {
            self.status.send_modify(|s| {
                s.waiting_for = Some("the package has neither hooks/run nor a run file".into())
            });
            return StartResult::Waiting;
        };
        let run_spec = RunSpec {
            program,
            args: Vec::new(),
            cwd: self.dirs.root.clone(),
            env: self.hook_env(),
            user: self.run_as(),
            pid_file: self.dirs.pid_file(),
            log_prefix: self.service_group(),
        };
        let mut config = SupervisorConfig::new(run_spec);
        config.backoff = self.spec.backoff.clone();
        config.shutdown_signal = self.spec.package.shutdown_signal.to_nix();
        config.shutdown_timeout = self.spec.package.shutdown_timeout;
        let supervisor = Supervisor::spawn(config);
        self.process_events = Some(supervisor.events());
        self.process = Some(supervisor);
        self.status.send_modify(|s| {
            s.waiting_for = None;
            s.next_restart_at = None;
        });
        tracing::info!("service starting");
        StartResult::Started
    }

    async fn on_view_change(&mut self) {
        if self.layers.is_none() {
            self.load_layers();
        }
        if self.process.is_none() {
            return; // the main loop re-checks the start gate
        }
        if let Some(changes) = self.render() {
            self.react(changes).await;
        }
    }

    async fn on_user_toml_change(&mut self) {
        let path = self.user_watch.path().to_path_buf();
        match self.layers.as_mut() {
            None => self.load_layers(),
            Some(layers) => match layers.reload_user(&path) {
                Ok(changed) => {
                    self.status.send_modify(|s| {
                        s.config_error = None;
                        s.user_config_updated = changed || s.user_config_updated;
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "user.toml rejected; keeping the last good config");
                    self.status
                        .send_modify(|s| s.config_error = Some(e.to_string()));
                    return;
                }
            },
        }
        if self.process.is_some() {
            if let Some(changes) = self.render() {
                self.react(changes).await;
            }
        }
    }

    /// Restart, reconfigure or run file-updated, per Habitat's rule.
    async fn react(&mut self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let reaction = changes.reaction(
            self.hooks.contains_key(&HookKind::Reconfigure),
            self.hooks.contains_key(&HookKind::FileUpdated),
        );
        if reaction.restart {
            let reason = if changes.hooks_changed.contains("init") {
                super::status::Termination::InitHookUpdated
            } else if changes.hooks_changed.contains("run") {
                super::status::Termination::RunHookUpdated
            } else if changes.hooks_changed.contains("post-run") {
                super::status::Termination::PostRunHookUpdated
            } else {
                super::status::Termination::AppConfigUpdated
            };
            tracing::info!(?changes, reason = reason.as_str(), "restarting the service");
            let pid = self.status.borrow().pid;
            self.status.send_modify(|s| {
                s.last_process = Some(super::status::LastProcess {
                    pid,
                    reason,
                    at: epoch_secs(),
                })
            });
            // The old process is gone before the main loop starts the new one (running init
            // again, as a fresh start), so the two never hold the same port or files.
            if let Some(process) = self.process.take() {
                self.process_events = None;
                let _ = process.shutdown().await;
            }
            self.status.send_modify(|s| s.pid = None);
        }
        if reaction.reconfigure {
            self.spawn_hook(HookKind::Reconfigure);
        }
        if reaction.file_updated {
            self.spawn_hook(HookKind::FileUpdated);
        }
    }

    fn spawn_hook(&mut self, kind: HookKind) {
        let Some(path) = self.hook_path(kind) else {
            return;
        };
        let ctx = self.hook_context();
        let timeout = self.spec.hook_timeouts.get(kind);
        self.tasks.spawn(async move {
            let outcome = hooks::run_hook(kind, &path, &ctx, timeout).await;
            (kind, outcome)
        });
    }

    fn run_suitability(&mut self) {
        if self.hooks.contains_key(&HookKind::Suitability) && self.layers.is_some() {
            // The hook is rendered with the service's config before it can run.
            if self.process.is_none() && self.render().is_none() {
                return;
            }
            self.spawn_hook(HookKind::Suitability);
        }
    }

    fn schedule_health_check(&mut self, first: bool) {
        let interval = self.spec.health_check_interval;
        let delay = if first {
            // Soon after start, so readiness and the initializer gate do not wait a whole
            // interval; the splay keeps a fleet started together from checking in lockstep.
            Duration::from_millis(rand::rng().random_range(0..=250))
        } else {
            interval.mul_f64(rand::rng().random_range(0.9..1.1))
        };
        self.next_health_check = Some(Instant::now() + delay);
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.post_run_retry.is_some_and(|at| at <= now) {
            self.post_run_retry = None;
            self.spawn_hook(HookKind::PostRun);
        }
        if !self.health_check_running && self.next_health_check.is_some_and(|at| at <= now) {
            self.next_health_check = None;
            if self.hooks.contains_key(&HookKind::HealthCheck) {
                self.health_check_running = true;
                self.spawn_hook(HookKind::HealthCheck);
            } else {
                let up = self.process.is_some() && self.status.borrow().pid.is_some();
                self.set_health(
                    if up {
                        HealthStatus::Ok
                    } else {
                        HealthStatus::Critical
                    },
                    String::new(),
                );
                self.schedule_health_check(false);
            }
            self.run_suitability();
        }
    }

    fn set_health(&mut self, health: HealthStatus, stdout: String) {
        self.status.send_if_modified(|s| {
            let before = (s.health, s.initialized, s.health_stdout.clone());
            s.health = health;
            s.health_stdout = stdout;
            if health.passing() {
                s.initialized = true;
            }
            before != (s.health, s.initialized, s.health_stdout.clone())
        });
    }

    fn on_hook_done(&mut self, kind: HookKind, outcome: HookOutcome) {
        match kind {
            HookKind::HealthCheck => {
                self.health_check_running = false;
                self.set_health(HealthStatus::from_exit(&outcome.exit), outcome.stdout);
                self.schedule_health_check(false);
            }
            HookKind::Suitability => {
                if let Some(value) = hooks::suitability_of(&self.service_group(), &outcome) {
                    self.status
                        .send_if_modified(|s| s.suitability.replace(value) != Some(value));
                }
            }
            HookKind::PostRun => {
                if outcome.success() {
                    self.post_run_backoff.reset();
                } else if self.process.is_some() {
                    let delay = self
                        .post_run_backoff
                        .on_exit(Duration::ZERO, rand::rng().random::<f64>());
                    tracing::warn!(?delay, exit = ?outcome.exit, "post-run hook failed; retrying");
                    self.post_run_retry = Some(Instant::now() + delay);
                }
            }
            HookKind::Reconfigure | HookKind::FileUpdated if !outcome.success() => {
                tracing::warn!(hook = %kind, exit = ?outcome.exit, "hook failed");
            }
            _ => {}
        }
    }

    fn on_process_event(&mut self, event: Option<SupervisorEvent>) {
        let Some(event) = event else {
            return;
        };
        match event {
            SupervisorEvent::Started { pid } => {
                self.status.send_modify(|s| {
                    s.pid = Some(pid);
                    s.state_entered = epoch_secs();
                    s.next_restart_at = None;
                });
                self.post_run_retry = None;
                self.post_run_backoff.reset();
                self.spawn_hook(HookKind::PostRun);
                self.schedule_health_check(true);
            }
            SupervisorEvent::Exited { pid, exit, .. } => {
                tracing::warn!(pid, %exit, "service process exited");
                self.status.send_modify(|s| {
                    s.pid = None;
                    s.state_entered = epoch_secs();
                    s.last_process = Some(super::status::LastProcess {
                        pid: Some(pid),
                        reason: super::status::Termination::RunHookFailed,
                        at: epoch_secs(),
                    });
                    s.restart_count += 1;
                });
                if !self.hooks.contains_key(&HookKind::HealthCheck) {
                    self.set_health(HealthStatus::Critical, String::new());
                }
            }
            SupervisorEvent::RestartScheduled { delay, .. } => {
                self.status
                    .send_modify(|s| s.next_restart_at = Some(epoch_secs() + delay.as_secs()));
            }
            SupervisorEvent::SpawnFailed { error } => {
                tracing::error!(%error, "cannot start the service process");
            }
            SupervisorEvent::Stopped { .. } => {}
        }
    }

    async fn shutdown(mut self) {
        self.status.send_modify(|s| s.desired_up = false);
        self.tasks.abort_all();
        if let Some(process) = self.process.take() {
            tracing::info!("stopping the service");
            let outcome = process.shutdown().await;
            tracing::info!(?outcome, "service stopped");
            self.status.send_modify(|s| {
                s.pid = None;
                s.state_entered = epoch_secs();
            });
            if let Some(path) = self.hook_path(HookKind::PostStop) {
                let _ = hooks::run_hook(
                    HookKind::PostStop,
                    &path,
                    &self.hook_context(),
                    self.spec.hook_timeouts.get(HookKind::PostStop),
                )
                .await;
            }
        }
    }
}
