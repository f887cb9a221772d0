//! The services a supervisor runs, each a task of its own (`service::runtime`) with its
//! elections and service rumor: loaded from their specs at start (`specs`), by `hab sup run
//! PKG`, and at runtime through the ctl gateway (load, unload, start, stop).
//!
//! Invariants: a service is keyed by its package name (one per supervisor, as in Habitat); at
//! most one task per name runs at a time, so a service started again while its last task is
//! still stopping starts once that task has ended; a stopped or unloaded service leaves its
//! group's census at once (a tombstone) and resigns from its elections, so a leader's
//! successor is elected without waiting for failure detection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::specs::{self, DesiredState, SpecFile};
use super::{hostname, now_ms, LoopState, SupervisorConfig, SUP_VERSION};
use crate::binds;
use crate::census::LocalElections;
use crate::election::{ElectionConfig, GroupElections, NextStep, ViewStatus};
use crate::error::{Error, Result};
use crate::gossip::member::Identity;
use crate::gossip::rumor::{Rumor, RumorKey, ServiceGroup, ServiceRumor, SysInfo};
use crate::gossip::transport::Inbound;
use crate::package::Package;
use crate::service::hooks::HookKind;
use crate::service::runtime::{self as service_runtime, RingView, ServiceSpec};
use crate::service::status::ServiceStatus;
use crate::service::update::PollClock;
use crate::service::{Topology, UpdateStrategy};
use crate::template::context::{PkgContext, SysContext};

/// A loaded service: what it was told, its package, rumor and elections, and its task while
/// it runs.
pub(super) struct Service {
    pub spec_file: SpecFile,
    pub spec: ServiceSpec,
    pub pkg_ctx: PkgContext,
    /// The service rumor as last published.
    pub rumor: ServiceRumor,
    /// Leader and update elections (leader and initializer topologies, rolling updates),
    /// while the service runs.
    pub election: Option<GroupElections>,
    /// The last status the task reported (kept once it stopped).
    pub status: watch::Receiver<ServiceStatus>,
    pub running: Option<Running>,
    /// The task ended without being asked to (it could not even set up its directory): not
    /// started again until `hab svc start` or a new load.
    pub halted: bool,
    /// Package updates (strategies at-once and rolling).
    pub updates: super::updates::ServiceUpdates,
}

/// A running service's task and the channels the loop talks to it through.
pub(super) struct Running {
    view: watch::Sender<RingView>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

/// A task told to stop, kept until it ended (its service may be unloaded already).
pub(super) struct Stopping {
    name: String,
    task: JoinHandle<()>,
    /// Past this, the task is aborted at supervisor shutdown.
    deadline: Instant,
}

impl Stopping {
    pub fn new(name: String, task: JoinHandle<()>, deadline: Instant) -> Stopping {
        Stopping {
            name,
            task,
            deadline,
        }
    }
}

impl Service {
    pub fn name(&self) -> &str {
        self.spec.package.name()
    }

    pub fn desired_up(&self) -> bool {
        self.spec_file.desired_state == DesiredState::Up
    }

    /// How long a stop may take: the package's shutdown timeout, the post-stop hook, a margin.
    pub fn stop_allowance(&self) -> Duration {
        self.spec.package.shutdown_timeout
            + self.spec.hook_timeouts.get(HookKind::PostStop)
            + Duration::from_secs(2)
    }
}

/// The service rumor for `package` in `group`.
fn service_rumor(
    config: &SupervisorConfig,
    identity: &Identity,
    package: &Package,
    group: &str,
) -> Result<ServiceRumor> {
    let group = ServiceGroup::new(package.name(), group)
        .map_err(|problem| Error::invalid("group", problem))?;
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

/// The spec `hab sup run PKG` describes with its flags.
pub(super) fn spec_from_run(config: &SupervisorConfig, ident: &str) -> SpecFile {
    SpecFile {
        group: config.group.clone(),
        topology: config.topology,
        update_strategy: config.update_strategy,
        channel: config.channel.clone(),
        bldr_url: config.bldr_url.clone(),
        update_period: config.update_period,
        binds: config.binds.clone(),
        binding_mode: config.binding_mode,
        health_check_interval: config.health_check_interval,
        ..SpecFile::new(ident)
    }
}

impl LoopState {
    /// A service ready to be inserted: its package resolved (installed under `<root>/pkgs`,
    /// or a package directory), binds checked against the package, the group name checked.
    pub(super) fn prepare_service(&self, spec_file: SpecFile) -> Result<Service> {
        let config = &self.config;
        let package = Package::resolve(&config.root, &spec_file.ident)?;
        let bindings = binds::validate(&package, &spec_file.binds)?;
        let identity = self.node.identity();
        let rumor = service_rumor(config, identity, &package, &spec_file.group)?;
        let sys = SysContext::new(SUP_VERSION, identity.id, &rumor.sys, config.permanent_peer);
        let spec = ServiceSpec {
            env_layer: std::env::var(crate::config::env_var_name(package.name())).ok(),
            package,
            service_group: rumor.service_group.clone(),
            topology: spec_file.topology,
            bindings,
            binding_mode: spec_file.binding_mode,
            health_check_interval: spec_file.health_check_interval,
            root: config.root.clone(),
            sys,
            hook_timeouts: Default::default(),
            backoff: Default::default(),
        };
        let pkg_ctx = service_runtime::pkg_context(&spec);
        let (_, status) = watch::channel(ServiceStatus::default());
        let mut updates = super::updates::ServiceUpdates::default();
        if spec_file.update_strategy != UpdateStrategy::None {
            updates.poll = Some(PollClock::new(Instant::now(), spec_file.update_period));
        }
        Ok(Service {
            spec_file,
            spec,
            pkg_ctx,
            rumor,
            election: None,
            status,
            running: None,
            halted: false,
            updates,
        })
    }

    /// Adds a prepared service (replacing none: the caller unloaded any of that name) and
    /// starts it when it should run.
    pub(super) fn insert_service(&mut self, service: Service) {
        tracing::info!(
            service_group = %service.spec.service_group, package = %service.rumor.package,
            desired = ?service.spec_file.desired_state, "service loaded"
        );
        self.services.insert(service.name().to_string(), service);
        self.reconcile_services();
    }

    /// Loads every spec in `<root>/sup/default/specs`; a spec that cannot load is reported
    /// (file and problem) and left on disk for the user to mend.
    pub(super) fn load_saved_specs(&mut self) {
        for (path, spec) in specs::load_all(&self.specs_dir()) {
            let Some(name) = specs::service_of(&path) else {
                continue;
            };
            if self.services.contains_key(name) {
                continue;
            }
            match spec.and_then(|spec| self.prepare_service(spec)) {
                Ok(service) => self.insert_service(service),
                Err(e) => tracing::error!(
                    spec = %path.display(), error = %e,
                    "cannot load a saved service; fix or remove the spec file"
                ),
            }
        }
    }

    pub(super) fn specs_dir(&self) -> std::path::PathBuf {
        specs::specs_dir(&self.dirs.sup)
    }

    /// Starts every service that should run and does not, unless its last task is still
    /// stopping.
    pub(super) fn reconcile_services(&mut self) {
        let startable: Vec<String> = self
            .services
            .iter()
            .filter(|(name, s)| {
                s.desired_up()
                    && s.running.is_none()
                    && !s.halted
                    && !self.stopping.iter().any(|t| &t.name == *name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in startable {
            self.start_service(&name);
        }
    }

    fn start_service(&mut self, name: &str) {
        let me = self.node.identity().id;
        let election_config = ElectionConfig {
            retire_after: self.config.retire_after,
            ..ElectionConfig::for_gossip(&self.config.gossip)
        };
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let leader_topology = service.spec.topology != Topology::Standalone;
        let rolling = service.spec_file.update_strategy == UpdateStrategy::Rolling;
        // A restart into a new release keeps the elections it runs.
        if (leader_topology || rolling) && service.election.is_none() {
            // Until the suitability hook answers, every member is equally suitable and ties
            // break by member id.
            service.election = Some(GroupElections::new(
                &service.spec.service_group,
                me,
                &election_config,
                leader_topology,
                rolling,
                0,
            ));
        }
        // Above anything this member published for the group before (a tombstone of an
        // earlier stop or unload in this life).
        let key = RumorKey::Service {
            group: service.spec.service_group.clone(),
            member: me,
        };
        let published = match self.node.store().get(&key) {
            Some(Rumor::Service(r)) => r.incarnation.saturating_add(1),
            _ => 0,
        };
        let rumor = &mut service.rumor;
        rumor.incarnation = rumor.incarnation.max(published);
        rumor.tombstone = false;
        rumor.initialized = false;
        let rumor = rumor.clone();

        let (view, view_rx) = watch::channel(RingView::default());
        let (status_tx, status) = watch::channel(ServiceStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut changes = status.clone();
        let events = Arc::clone(&self.service_events);
        // The loop hears of every status change, and of the task's end (the sender dropped).
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                events.notify_one();
            }
            events.notify_one();
        });
        let task = tokio::spawn(service_runtime::run(
            service.spec.clone(),
            view_rx,
            status_tx,
            stop_rx,
        ));
        service.status = status;
        service.running = Some(Running { view, stop, task });
        tracing::info!(service_group = %service.spec.service_group, "service starting");
        if let Err(e) = self.node.publish(now_ms(), Rumor::Service(rumor)) {
            tracing::warn!(error = %e, "cannot publish the service rumor");
        }
        self.view_dirty = true;
        self.election_dirty = true;
    }

    /// Tells a running service to stop, resigns from its elections and takes it out of its
    /// group's census. The task ends on its own (stop, timeout, SIGKILL, post-stop).
    pub(super) fn stop_service(&mut self, name: &str) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let Some(running) = service.running.take() else {
            return;
        };
        let _ = running.stop.send(true);
        let deadline = Instant::now() + service.stop_allowance();
        let mut rumors = service
            .election
            .take()
            .map(|mut e| e.resign())
            .unwrap_or_default();
        service.rumor.incarnation = service.rumor.incarnation.saturating_add(1);
        service.rumor.tombstone = true;
        rumors.push(Rumor::Service(service.rumor.clone()));
        tracing::info!(service_group = %service.spec.service_group, "service stopping");
        for rumor in rumors {
            if let Err(e) = self.node.publish(now_ms(), rumor) {
                tracing::warn!(error = %e, "cannot publish a rumor of a stopping service");
            }
        }
        self.stopping.push(Stopping {
            name: name.to_string(),
            task: running.task,
            deadline,
        });
        self.view_dirty = true;
        self.election_dirty = true;
    }

    /// Stops (if running) and forgets a service.
    pub(super) fn unload_service(&mut self, name: &str) {
        self.stop_service(name);
        if let Some(service) = self.services.remove(name) {
            tracing::info!(service_group = %service.spec.service_group, "service unloaded");
        }
    }

    /// What the services' tasks reported: status changes, and tasks that ended.
    pub(super) fn on_service_events(&mut self) {
        let changed: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.running.is_some() && s.status.has_changed().unwrap_or(true))
            .map(|(name, _)| name.clone())
            .collect();
        for name in changed {
            self.on_service_status(&name);
        }
        let ended: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.running.as_ref().is_some_and(|r| r.task.is_finished()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            tracing::error!(service = %name, "the service's task ended by itself; `hab svc start` tries again");
            self.stop_service(&name);
            if let Some(service) = self.services.get_mut(&name) {
                service.halted = true;
            }
        }
        let before = self.stopping.len();
        self.stopping.retain(|t| !t.task.is_finished());
        if self.stopping.len() != before {
            self.reconcile_services();
        }
    }

    /// Publishes what a service's status changes for the ring: exports and the initialized
    /// flag go into the service rumor, the suitability into the election.
    fn on_service_status(&mut self, name: &str) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let status = service.status.borrow_and_update().clone();
        if let (Some(election), Some(suitability)) = (service.election.as_mut(), status.suitability)
        {
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
        // The health check goes into the update rumor (rolling waits on it).
        self.sync_update_rumor(name);
    }

    /// Runs the election engines over the current ring view and publishes what they decide.
    pub(super) fn step_elections(&mut self) {
        let now = now_ms();
        let members = self.node.members();
        let synced = self.node.knows_ring();
        let me = self.node.identity().id;
        let mut next: Option<Instant> = None;
        let mut rumors = Vec::new();
        for service in self.services.values_mut() {
            let Some(elections) = service.election.as_mut() else {
                continue;
            };
            let before = elections.views();
            let (decided, views) = elections.step(now, &members, self.node.store(), synced);
            rumors.extend(decided);
            let at = match elections.next_step(now) {
                NextStep::Tick => Some(Instant::now() + self.election_tick),
                NextStep::At(at_ms) => {
                    Some(Instant::now() + Duration::from_millis(at_ms.saturating_sub(now)))
                }
                NextStep::OnChange => None,
            };
            next = next.into_iter().chain(at).min();
            if views != before {
                self.view_dirty = true;
            }
            let group = &service.spec.service_group;
            for (kind, view, was) in [
                ("election", views.leader, before.leader),
                ("update election", views.update, before.update),
            ] {
                let Some(view) = view.filter(|v| Some(*v) != was) else {
                    continue;
                };
                match view.status {
                    ViewStatus::Finished => tracing::info!(
                        %group, leader = ?view.leader, term = view.term,
                        am_leader = view.is_leader(me), "{kind} finished"
                    ),
                    status => tracing::info!(%group, ?status, term = view.term, "{kind}"),
                }
            }
        }
        self.election_at = next;
        for rumor in rumors {
            if let Err(e) = self.node.publish(now, rumor) {
                tracing::warn!(error = %e, "cannot publish an election rumor");
            }
        }
    }

    /// This member's own election views, which the census prefers over the rumors.
    pub(super) fn local_elections(&self) -> LocalElections {
        let mut local = LocalElections::default();
        for service in self.services.values() {
            if let Some(elections) = &service.election {
                local.add_group(&service.spec.service_group, elections.views());
            }
        }
        local
    }

    /// Sends each running service the current census when it changed.
    pub(super) fn refresh_service_views(&mut self) {
        if !std::mem::take(&mut self.view_dirty) {
            return;
        }
        if self.services.values().all(|s| s.running.is_none()) {
            return;
        }
        let groups = self.census_groups();
        self.step_updates(&groups);
        for running in self.services.values().filter_map(|s| s.running.as_ref()) {
            running.view.send_if_modified(|view| {
                if view.groups == groups {
                    return false;
                }
                view.groups.clone_from(&groups);
                true
            });
        }
    }

    /// Whether Kubernetes should send traffic: every service that should run runs and passes
    /// its health check, and in leader topologies its election finished as this member sees
    /// it. The first problem found, named by service group.
    pub(super) fn readiness(&self) -> std::result::Result<(), String> {
        for service in self.services.values().filter(|s| s.desired_up()) {
            let group = &service.spec.service_group;
            if service.running.is_none() {
                return Err(format!("{group}: not running"));
            }
            let status = service.status.borrow();
            if let Some(reason) = &status.waiting_for {
                return Err(format!("{group}: {reason}"));
            }
            if status.pid.is_none() {
                return Err(format!("{group}: the process is not running"));
            }
            if !status.health.passing() {
                return Err(format!("{group}: health check {}", status.health.as_str()));
            }
            let leader = service.election.as_ref().and_then(|e| e.views().leader);
            if let Some(view) = leader {
                if view.status != ViewStatus::Finished {
                    return Err(format!("{group}: election {:?}", view.status));
                }
            }
        }
        Ok(())
    }

    /// Stops every service (signal, timeout, SIGKILL, post-stop) and resigns from the
    /// elections at once, while the ring keeps running: a leader's withdrawal must go out with
    /// rumor gossip (which leaving stops), so the others elect a successor without waiting for
    /// failure detection, and the services' last rumors still flow. Service rumors are not
    /// tombstoned: the member's departure takes it out of the census, and the rumor it
    /// publishes when it comes back must not sit below a tombstone.
    pub(super) async fn shut_down(&mut self, inbound_rx: &mut mpsc::Receiver<Inbound>) {
        let started = Instant::now();
        let mut withdrawals = Vec::new();
        for service in self.services.values_mut() {
            if let Some(running) = service.running.take() {
                let _ = running.stop.send(true);
                self.stopping.push(Stopping {
                    name: service.name().to_string(),
                    task: running.task,
                    deadline: started + service.stop_allowance(),
                });
            }
            if let Some(mut elections) = service.election.take() {
                withdrawals.extend(elections.resign());
            }
        }
        // Two gossip intervals carry a withdrawal to every member of a LAN ring.
        let gossip_until = if withdrawals.is_empty() {
            started
        } else {
            tracing::info!("shutting down: resigning from the elections");
            started + self.config.gossip.swim.gossip_interval * 2
        };
        for rumor in withdrawals {
            if let Err(e) = self.node.publish(now_ms(), rumor) {
                tracing::warn!(error = %e, "cannot publish the election withdrawal");
            }
        }
        self.process_outputs();
        loop {
            self.stopping.retain(|t| !t.task.is_finished());
            let now = Instant::now();
            for late in self.stopping.iter().filter(|t| t.deadline <= now) {
                tracing::warn!(service = %late.name, "the service did not stop in time");
                late.task.abort();
            }
            self.stopping.retain(|t| t.deadline > now);
            if self.stopping.is_empty() && now >= gossip_until {
                break;
            }
            let deadline = self
                .stopping
                .iter()
                .map(|t| t.deadline)
                .chain([gossip_until])
                .max()
                .unwrap_or(now);
            let next = self.timers.next_due().unwrap_or(deadline).min(deadline);
            tokio::select! {
                () = self.service_events.notified() => {}
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
}
