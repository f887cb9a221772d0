//! Package updates of the loaded services (strategies at-once and rolling): the loop polls the
//! depot when a service's `PollClock` is due, asks `service::update::Updater` what to do when
//! the census or a poll changes, installs releases off the loop, restarts the
//! service into the new release (same elections, no tombstone: only its process restarts), and
//! publishes the member's update rumor (its health check, the roll's target when it is the
//! update leader, a release it failed on).
//!
//! Invariants: at most one poll and one install per service in flight; the decisions are the
//! pure `Updater`'s; a service whose update settings change keeps its process. Releases come
//! from `pkg::depot` (a `file://` directory or an HTTP depot) and install with `pkg::hart`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::RngExt;

use super::specs::SpecFile;
use super::{now_ms, LoopState};
use crate::census::CensusGroup;
use crate::election::{ElectionConfig, GroupElections, ViewStatus};
use crate::error::{Error, Result};
use crate::gossip::rumor::{CheckHealth, Rumor, RumorKey, UpdateRumor};
use crate::keys;
use crate::package::{Package, PackageIdent};
use crate::pkg::depot::Depot;
use crate::pkg::hart;
use crate::service::runtime as service_runtime;
use crate::service::status::ServiceStatus;
use crate::service::update::{Action, PollClock, Seen, Updater};
use crate::service::UpdateStrategy;

/// What the poll and install tasks report to the loop.
pub(super) enum UpdateEvent {
    Latest {
        service: String,
        result: Result<Option<PackageIdent>>,
    },
    Installed {
        service: String,
        release: String,
        result: Result<PathBuf>,
    },
}

/// A service's update state on the loop.
#[derive(Default)]
pub(super) struct ServiceUpdates {
    pub updater: Updater,
    /// When the depot is polled next (strategies other than none).
    pub poll: Option<PollClock>,
    /// A poll in flight.
    pub polling: bool,
    /// The package the service ran before its last update (the rollback's target).
    pub previous: Option<Package>,
    /// The target this member announced, as the update leader.
    pub announced: Option<String>,
    /// The update rumor as last published.
    pub rumor: Option<UpdateRumor>,
}

/// How long a new release may take to pass its first health check: ten checks, at least a
/// minute (a slow start is not a failure).
fn probation(health_check_interval: std::time::Duration) -> std::time::Duration {
    health_check_interval
        .saturating_mul(10)
        .max(std::time::Duration::from_secs(60))
}

fn jitter_unit() -> f64 {
    rand::rng().random::<f64>()
}

impl From<crate::service::health::HealthStatus> for CheckHealth {
    fn from(health: crate::service::health::HealthStatus) -> CheckHealth {
        use crate::service::health::HealthStatus;
        match health {
            HealthStatus::Ok => CheckHealth::Ok,
            HealthStatus::Warning => CheckHealth::Warning,
            HealthStatus::Critical => CheckHealth::Critical,
            HealthStatus::Unknown => CheckHealth::Unknown,
        }
    }
}

impl LoopState {
    /// The soonest poll due, for the loop's timer.
    pub(super) fn update_due(&self) -> Option<Instant> {
        self.services
            .values()
            .filter(|s| s.running.is_some() && !s.updates.polling)
            .filter_map(|s| s.updates.poll.as_ref().map(PollClock::next))
            .min()
    }

    /// Starts the polls that are due: at-once services poll, rolling ones only where this
    /// member leads the update election (the others follow its announcement).
    pub(super) fn poll_updates(&mut self, now: Instant) {
        let me = self.node.identity().id;
        for (name, service) in &mut self.services {
            let updates = &mut service.updates;
            let Some(clock) = updates.poll.as_mut() else {
                continue;
            };
            if updates.polling || service.running.is_none() || !clock.due(now) {
                continue;
            }
            clock.polled(now, jitter_unit());
            // The updaters look again each period even when nothing changed (a release on
            // probation that never reports health fails by the clock).
            self.view_dirty = true;
            let spec = &service.spec_file;
            let leads = service
                .election
                .as_ref()
                .and_then(|e| e.views().update)
                .is_some_and(|v| v.status == ViewStatus::Finished && v.is_leader(me));
            let polls = match spec.update_strategy {
                UpdateStrategy::None => false,
                UpdateStrategy::AtOnce => true,
                UpdateStrategy::Rolling => leads,
            };
            let Some(url) = spec.bldr_url.clone().filter(|_| polls) else {
                continue;
            };
            updates.polling = true;
            let ident = PackageIdent {
                version: None,
                release: None,
                ..service.spec.package.ident.clone()
            };
            let channel = spec.channel.clone();
            let events = self.update_events.clone();
            let service = name.clone();
            tokio::spawn(async move {
                let result = latest(&url, &ident, &channel).await;
                let _ = events.send(UpdateEvent::Latest { service, result }).await;
            });
        }
    }

    /// A poll or an install finished.
    pub(super) fn on_update_event(&mut self, event: UpdateEvent) {
        match event {
            UpdateEvent::Latest { service, result } => {
                let Some(s) = self.services.get_mut(&service) else {
                    return;
                };
                s.updates.polling = false;
                match result {
                    Ok(latest) => {
                        tracing::debug!(
                            service_group = %s.spec.service_group,
                            latest = ?latest.as_ref().map(ToString::to_string),
                            channel = %s.spec_file.channel, "depot polled"
                        );
                        s.updates.updater.on_latest(latest.map(|l| l.to_string()));
                        self.view_dirty = true;
                    }
                    Err(e) => tracing::warn!(
                        service_group = %s.spec.service_group, error = %e,
                        "cannot ask the depot for the latest release; trying again next period"
                    ),
                }
            }
            UpdateEvent::Installed {
                service,
                release,
                result,
            } => {
                let loaded = result.and_then(|dir| Package::load(&dir));
                let Some(s) = self.services.get_mut(&service) else {
                    return;
                };
                match loaded {
                    Ok(package) => {
                        tracing::info!(
                            service_group = %s.spec.service_group, %release,
                            "update installed; restarting the service into it"
                        );
                        self.metrics.count_update("installed");
                        let from = s.rumor.package.clone();
                        s.updates.updater.on_installed(&from, &release);
                        self.restart_into(&service, package, true);
                    }
                    Err(e) => {
                        tracing::warn!(
                            service_group = %s.spec.service_group, %release, error = %e,
                            "cannot install the update; trying again after the next poll"
                        );
                        self.metrics.count_update("failed");
                        s.updates.updater.on_install_failed(&release);
                    }
                }
            }
        }
    }

    /// Lets every updating service decide, given the census: announce a target, start an
    /// install, or roll back.
    pub(super) fn step_updates(&mut self, groups: &[CensusGroup]) {
        let me = self.node.identity().id;
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.spec_file.update_strategy != UpdateStrategy::None)
            .filter(|(_, s)| s.running.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let Some(service) = self.services.get_mut(&name) else {
                continue;
            };
            let health: CheckHealth = service.status.borrow().health.into();
            let running = service.rumor.package.clone();
            let group = groups
                .iter()
                .find(|g| g.service_group == service.spec.service_group);
            let seen = Seen {
                me,
                running: &running,
                health,
                group,
                now: Instant::now(),
                probation: probation(service.spec_file.health_check_interval),
            };
            let strategy = service.spec_file.update_strategy;
            let actions = service.updates.updater.decide(strategy, seen);
            for action in actions {
                self.act(&name, action);
            }
        }
    }

    fn act(&mut self, name: &str, action: Action) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let group = service.spec.service_group.clone();
        match action {
            Action::Announce(target) => {
                tracing::info!(service_group = %group, %target, "update found; announcing the roll");
                self.metrics.count_update("found");
                service.updates.announced = Some(target);
                self.sync_update_rumor(name);
            }
            Action::Update(release) => {
                let Some(url) = service.spec_file.bldr_url.clone() else {
                    return;
                };
                let ident = match release.parse::<PackageIdent>() {
                    Ok(ident) => ident,
                    Err(e) => {
                        tracing::warn!(service_group = %group, error = %e, "bad release ident");
                        service.updates.updater.on_install_failed(&release);
                        return;
                    }
                };
                tracing::info!(service_group = %group, %release, "update found; installing");
                if service.spec_file.update_strategy == UpdateStrategy::AtOnce {
                    self.metrics.count_update("found");
                }
                service.updates.updater.on_installing(&release);
                let events = self.update_events.clone();
                let root = self.config.root.clone();
                let service = name.to_string();
                tokio::spawn(async move {
                    let result = install(&url, &ident, &root).await;
                    let event = UpdateEvent::Installed {
                        service,
                        release,
                        result,
                    };
                    let _ = events.send(event).await;
                });
            }
            Action::RollBack { failed, to } => {
                tracing::error!(
                    service_group = %group, %failed, rolling_back_to = %to,
                    "the health check failed on the new release; rolling back (the roll stops)"
                );
                self.metrics.count_update("failed");
                let previous = service
                    .updates
                    .previous
                    .take()
                    .filter(|p| p.ident.to_string() == to);
                let package = match previous {
                    Some(p) => Ok(p),
                    None => Package::resolve(&self.config.root, &to),
                };
                let failed_dir = service.spec.package.path.clone();
                match package {
                    Ok(package) => {
                        self.metrics.count_update("rolled_back");
                        self.restart_into(name, package, false);
                        self.uninstall(failed_dir);
                    }
                    Err(e) => tracing::error!(
                        service_group = %group, error = %e, "cannot roll back"
                    ),
                }
                self.sync_update_rumor(name);
            }
        }
    }

    /// Removes a release that failed and was rolled back from, so that a restarted supervisor
    /// (which runs the newest release installed) does not start it again. Only releases under
    /// `<root>/pkgs` (installed by updates), never a package directory the user gave.
    fn uninstall(&self, dir: PathBuf) {
        let pkgs = self.config.root.join("pkgs");
        if !dir.starts_with(&pkgs) || dir == pkgs {
            return;
        }
        // Moved aside first (out of every origin's tree), so a half-removed tree is never
        // taken for an installed release.
        let flat: Vec<String> = dir
            .strip_prefix(&pkgs)
            .map(|rel| {
                rel.iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let aside = pkgs.join(format!(".rolled-back-{}", flat.join("-")));
        tokio::task::spawn_blocking(move || {
            let removed =
                std::fs::rename(&dir, &aside).and_then(|()| std::fs::remove_dir_all(&aside));
            match removed {
                Ok(()) => tracing::info!(release = %dir.display(), "failed release uninstalled"),
                Err(e) => tracing::warn!(
                    release = %dir.display(), error = %e, "cannot uninstall the failed release"
                ),
            }
        });
    }

    /// Restarts a running service into `package`: the process stops (signal, timeout,
    /// SIGKILL) and the service starts again from the new package once its task ended, with
    /// its elections kept. `keep_previous`: remember the package it ran for a rollback.
    fn restart_into(&mut self, name: &str, package: Package, keep_previous: bool) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let old = std::mem::replace(&mut service.spec.package, package);
        service.updates.previous = keep_previous.then_some(old);
        service.pkg_ctx = service_runtime::pkg_context(&service.spec);
        service.rumor.package = service.spec.package.ident.to_string();
        // The old task's health is not the new release's.
        service.status = tokio::sync::watch::channel(ServiceStatus::default()).1;
        tracing::info!(
            service_group = %service.spec.service_group, package = %service.rumor.package,
            "service restarting into a new release"
        );
        self.metrics.count_update("restarted");
        if let Some(running) = service.running.take() {
            let _ = running.stop.send(true);
            let deadline = Instant::now() + service.stop_allowance();
            self.stopping.push(super::services::Stopping::new(
                name.to_string(),
                running.task,
                deadline,
            ));
        }
        self.sync_update_rumor(name);
        self.view_dirty = true;
        self.reconcile_services();
    }

    /// Publishes this member's update rumor for `name` when what it says changed.
    pub(super) fn sync_update_rumor(&mut self, name: &str) {
        let me = self.node.identity().id;
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        // Only rolling members read each other's (at-once decides alone).
        if service.spec_file.update_strategy != UpdateStrategy::Rolling {
            return;
        }
        let status = service.status.borrow().clone();
        let updates = &mut service.updates;
        let mut rumor = UpdateRumor {
            member_id: me,
            service_group: service.spec.service_group.clone(),
            incarnation: 0,
            package: service.rumor.package.clone(),
            health: status.health.into(),
            target: updates.announced.clone(),
            failed: updates.updater.failed().map(str::to_string),
        };
        let published = updates.rumor.as_ref().map(|r| r.incarnation);
        if let Some(last) = &updates.rumor {
            rumor.incarnation = last.incarnation;
            if *last == rumor {
                return;
            }
        }
        // Above anything this member published for the group before (an earlier life's).
        let key = RumorKey::Update {
            group: rumor.service_group.clone(),
            member: me,
        };
        let stored = match self.node.store().get(&key) {
            Some(Rumor::Update(r)) => r.incarnation,
            _ => 0,
        };
        rumor.incarnation = published.unwrap_or(0).max(stored).saturating_add(1);
        updates.rumor = Some(rumor.clone());
        if let Err(e) = self.node.publish(now_ms(), Rumor::Update(rumor)) {
            tracing::warn!(error = %e, "cannot publish the update rumor");
        }
    }

    /// Applies new update settings to a loaded service in place (`hab svc update`,
    /// `hab svc load --force` changing only them): its process keeps running; the update
    /// election starts or ends with the rolling strategy; a new depot or channel is polled at
    /// once.
    pub(super) fn set_update_settings(&mut self, name: &str, spec: SpecFile) {
        let me = self.node.identity().id;
        let election_config = ElectionConfig {
            retire_after: self.config.retire_after,
            ..ElectionConfig::for_gossip(&self.config.gossip)
        };
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let old = std::mem::replace(&mut service.spec_file, spec);
        let new = &service.spec_file;
        tracing::info!(
            service_group = %service.spec.service_group, strategy = %new.update_strategy,
            channel = %new.channel, url = ?new.bldr_url, period = ?new.update_period,
            "update settings changed"
        );
        let now = Instant::now();
        let source_changed = old.channel != new.channel || old.bldr_url != new.bldr_url;
        service.updates.poll = match (new.update_strategy, service.updates.poll.take()) {
            (UpdateStrategy::None, _) => None,
            (_, Some(mut clock)) if !source_changed => {
                clock.set_period(now, new.update_period, jitter_unit());
                Some(clock)
            }
            _ => Some(PollClock::new(now, new.update_period)),
        };
        if source_changed {
            service.updates.updater.on_latest(None);
            service.updates.announced = None;
        }
        let rolling = new.update_strategy == UpdateStrategy::Rolling;
        let mut rumors = Vec::new();
        if service.running.is_some() {
            let group = service.spec.service_group.clone();
            match service.election.as_mut() {
                Some(elections) => {
                    rumors = elections.set_rolling(&group, me, &election_config, rolling);
                    if elections.is_empty() {
                        service.election = None;
                    }
                }
                None if rolling => {
                    service.election = Some(GroupElections::new(
                        &group,
                        me,
                        &election_config,
                        false,
                        true,
                        0,
                    ));
                }
                None => {}
            }
        }
        for rumor in rumors {
            if let Err(e) = self.node.publish(now_ms(), rumor) {
                tracing::warn!(error = %e, "cannot publish the update election withdrawal");
            }
        }
        self.sync_update_rumor(name);
        self.election_dirty = true;
        self.view_dirty = true;
    }
}

/// The newest release of `ident` (origin/name) in `channel` of the depot at `url`.
/// A poll that takes longer than this is given up (the next period tries again), so a depot
/// that trickles its answer cannot stop a service's updates.
const POLL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

async fn latest(url: &str, ident: &PackageIdent, channel: &str) -> Result<Option<PackageIdent>> {
    let depot = Depot::from_url(url, None)?;
    tokio::time::timeout(POLL_DEADLINE, depot.latest(ident, channel))
        .await
        .map_err(|_| {
            Error::invalid(
                format!("depot {url}"),
                format!("no answer to the latest release of {ident} within {POLL_DEADLINE:?}"),
            )
        })?
}

/// Fetches release `ident` (fully qualified) from the depot at `url` into
/// `<root>/cache/artifacts` and installs it under `<root>/pkgs`, verified against the origin
/// keys in `<root>/cache/keys`; its directory. A release already installed is not fetched.
async fn install(url: &str, ident: &PackageIdent, root: &Path) -> Result<PathBuf> {
    let (Some(version), Some(release)) = (&ident.version, &ident.release) else {
        return Err(Error::invalid(
            format!("release {ident}"),
            "expected a fully qualified ident (origin/name/version/release)",
        ));
    };
    let dir = root
        .join("pkgs")
        .join(&ident.origin)
        .join(&ident.name)
        .join(version)
        .join(release);
    if dir.join("IDENT").is_file() {
        return Ok(dir);
    }
    let depot = Depot::from_url(url, None)?;
    let hart = depot
        .fetch(ident, &root.join("cache").join("artifacts"))
        .await?;
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || hart::install(&hart, &root, &keys::keys_dir(&root)))
        .await
        .map_err(|e| Error::invalid(format!("installing {}", dir.display()), e.to_string()))?
}
