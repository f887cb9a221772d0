//! What the supervisor loop answers to the ctl gateway's requests (see `ctl_gateway`): the
//! services it runs (load, unload, start, stop, status, default config), and the ring changes
//! a workstation makes: gossiped config (`hab config apply`), files (`hab file upload`) and
//! departures (`hab sup depart`). Checks come first, so a refused request changes nothing
//! anywhere; a service's spec is saved before the service changes, so what runs is what comes
//! back after a restart.

use std::time::Duration;

use super::ctl_gateway::{net_err, MAX_PAYLOAD};
use super::specs::{self, SpecFile};
use super::{now_ms, LoopState};
use crate::binds::{BindSpec, BindingMode};
use crate::ctl::messages::{
    self as ctl, ConsoleLine, DesiredState, ErrCode, NetOk, ProcessState, ProcessStatus, Reply,
    Request, ServiceCfg, ServiceStatus,
};
use crate::gossip::member::MemberId;
use crate::gossip::rumor::{
    DepartureRumor, Rumor, RumorKey, ServiceConfigRumor, ServiceFileRumor, ServiceGroup,
};
use crate::gossip::store::Insert;
use crate::package::PackageIdent;
use crate::service::{Topology, UpdateStrategy};

fn ok() -> Vec<Reply> {
    vec![Reply::NetOk(NetOk {})]
}

/// A line for the workstation to print, then `NetOk`.
fn ok_saying(line: String) -> Vec<Reply> {
    vec![
        Reply::ConsoleLine(ConsoleLine {
            line: format!("{line}\n"),
            color: None,
            bold: false,
        }),
        Reply::NetOk(NetOk {}),
    ]
}

fn refuse(code: ErrCode, msg: impl Into<String>) -> Vec<Reply> {
    vec![net_err(code, msg)]
}

fn ctl_ident(ident: &PackageIdent) -> ctl::PackageIdent {
    ctl::PackageIdent {
        origin: ident.origin.clone(),
        name: ident.name.clone(),
        version: ident.version.clone(),
        release: ident.release.clone(),
    }
}

/// Whether `wanted` (as much of an ident as the user typed) names `ours`.
fn ident_matches(wanted: &ctl::PackageIdent, ours: &PackageIdent) -> bool {
    wanted.origin == ours.origin
        && wanted.name == ours.name
        && wanted
            .version
            .as_ref()
            .is_none_or(|v| Some(v) == ours.version.as_ref())
        && wanted
            .release
            .as_ref()
            .is_none_or(|r| Some(r) == ours.release.as_ref())
}

/// The ring's service group for a ctl message's, or a `BadPayload` refusal.
fn service_group(group: Option<&ctl::ServiceGroup>) -> Result<ServiceGroup, Vec<Reply>> {
    let group = group.ok_or_else(|| refuse(ErrCode::BadPayload, "no service group given"))?;
    let mut text = format!("{}.{}", group.service, group.group);
    if let Some(org) = &group.organization {
        text = format!("{text}@{org}");
    }
    ServiceGroup::parse(&text).map_err(|e| refuse(ErrCode::BadPayload, e))
}

fn payload(bytes: Option<Vec<u8>>, what: &str) -> Result<Vec<u8>, Vec<Reply>> {
    let bytes = bytes.ok_or_else(|| refuse(ErrCode::BadPayload, format!("no {what} given")))?;
    if bytes.len() > MAX_PAYLOAD {
        return Err(refuse(
            ErrCode::EntityTooLarge,
            format!(
                "the {what} is {} bytes; at most {MAX_PAYLOAD} bytes go through the ring",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Checks that `bytes` is a TOML table, naming where it is not.
fn valid_toml(bytes: &[u8]) -> Result<(), Vec<Reply>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| refuse(ErrCode::InvalidPayload, "the config is not UTF-8 text"))?;
    toml::from_str::<toml::Table>(text)
        .map(|_| ())
        .map_err(|e| {
            refuse(
                ErrCode::InvalidPayload,
                format!("the config is not valid TOML: {}", e.to_string().trim_end()),
            )
        })
}

impl LoopState {
    /// The replies to one ctl request (the last one completes the conversation).
    pub(super) fn answer_ctl(&mut self, request: Request) -> Vec<Reply> {
        let answer = match request {
            Request::SvcStatus(r) => self.ctl_status(r.ident.as_ref()),
            Request::SvcGetDefaultCfg(r) => self.ctl_default_cfg(r.ident.as_ref()),
            Request::SvcValidateCfg(r) => payload(r.cfg, "config").and_then(|cfg| {
                valid_toml(&cfg)?;
                Ok(ok())
            }),
            Request::SvcSetCfg(r) => self.ctl_set_cfg(r),
            Request::SvcFilePut(r) => self.ctl_put_file(r),
            Request::SupDepart(r) => self.ctl_depart(r.member_id.as_deref()),
            Request::SupRestart(_) => {
                tracing::info!("restart requested through the ctl gateway");
                self.restart_requested = true;
                Ok(ok_saying(
                    "Restarting the supervisor (its services stop and start again)".to_string(),
                ))
            }
            Request::SvcLoad(r) => self.ctl_load(&r),
            Request::SvcUpdate(r) => self.ctl_update(&r),
            Request::SvcUnload(r) => self.ctl_unload(r.ident.as_ref()),
            Request::SvcStart(r) => self.ctl_set_desired(r.ident.as_ref(), specs::DesiredState::Up),
            Request::SvcStop(r) => {
                self.ctl_set_desired(r.ident.as_ref(), specs::DesiredState::Down)
            }
            other => Err(refuse(
                ErrCode::NotSupported,
                format!(
                    "{} is not supported by this supervisor yet",
                    other.message_id()
                ),
            )),
        };
        answer.unwrap_or_else(|refused| refused)
    }

    fn ctl_status(&self, wanted: Option<&ctl::PackageIdent>) -> Result<Vec<Reply>, Vec<Reply>> {
        let now = now_ms() / 1000;
        let statuses: Vec<Reply> = self
            .services
            .values()
            .filter(|s| wanted.is_none_or(|w| ident_matches(w, &s.spec.package.ident)))
            .map(|s| {
                let status = s.status.borrow();
                let group = &s.spec.service_group;
                Reply::ServiceStatus(ServiceStatus {
                    ident: ctl_ident(&s.spec.package.ident),
                    // Habitat's hab shows no row at all for a status without `process`.
                    process: Some(ProcessStatus {
                        elapsed: Some(now.saturating_sub(status.state_entered)),
                        pid: status.pid,
                        state: if status.pid.is_some() {
                            ProcessState::Up
                        } else {
                            ProcessState::Down
                        } as i32,
                    }),
                    service_group: ctl::ServiceGroup {
                        service: group.service().to_string(),
                        group: group.group().to_string(),
                        organization: group.org().map(str::to_string),
                    },
                    desired_state: Some(if s.desired_up() {
                        DesiredState::DesiredUp
                    } else {
                        DesiredState::DesiredDown
                    } as i32),
                })
            })
            .collect();
        match (statuses.is_empty(), wanted) {
            (false, _) => Ok(statuses),
            (true, Some(w)) => Err(refuse(
                ErrCode::NotFound,
                format!("Service not loaded, {}/{}", w.origin, w.name),
            )),
            // Nothing loaded: an empty answer, as Habitat's supervisor gives.
            (true, None) => Ok(ok()),
        }
    }

    fn ctl_default_cfg(
        &self,
        wanted: Option<&ctl::PackageIdent>,
    ) -> Result<Vec<Reply>, Vec<Reply>> {
        let service = self
            .services
            .values()
            .find(|s| wanted.is_none_or(|w| ident_matches(w, &s.spec.package.ident)))
            .ok_or_else(|| refuse(ErrCode::NotFound, "Service not loaded"))?;
        let default = toml::to_string(&service.spec.package.default_toml).unwrap_or_default();
        Ok(vec![Reply::ServiceCfg(ServiceCfg {
            format: None,
            default: Some(default),
        })])
    }

    fn ctl_set_cfg(&mut self, r: ctl::SvcSetCfg) -> Result<Vec<Reply>, Vec<Reply>> {
        let group = service_group(r.service_group.as_ref())?;
        let version = r
            .version
            .ok_or_else(|| refuse(ErrCode::BadPayload, "no version given"))?;
        let config = payload(r.cfg, "config")?;
        let encrypted = r.is_encrypted.unwrap_or(false);
        if !encrypted {
            valid_toml(&config)?;
        }
        let key = RumorKey::ServiceConfig {
            group: group.clone(),
        };
        if let Some(Rumor::ServiceConfig(current)) = self.node.store().get(&key) {
            if version <= current.incarnation {
                return Err(refuse(
                    ErrCode::Conflict,
                    format!(
                        "version {version} is not above {group}'s current configuration \
                         version {}; apply {} or higher",
                        current.incarnation,
                        current.incarnation.saturating_add(1)
                    ),
                ));
            }
        }
        let rumor = Rumor::ServiceConfig(ServiceConfigRumor {
            from_id: self.node.identity().id.to_string(),
            service_group: group,
            incarnation: version,
            encrypted,
            config,
        });
        self.publish_for_ctl(rumor)
    }

    fn ctl_put_file(&mut self, r: ctl::SvcFilePut) -> Result<Vec<Reply>, Vec<Reply>> {
        let group = service_group(r.service_group.as_ref())?;
        let version = r
            .version
            .ok_or_else(|| refuse(ErrCode::BadPayload, "no version given"))?;
        let filename = r
            .filename
            .ok_or_else(|| refuse(ErrCode::BadPayload, "no file name given"))?;
        let body = payload(r.content, "file")?;
        let key = RumorKey::ServiceFile {
            group: group.clone(),
            filename: filename.clone(),
        };
        if let Some(Rumor::ServiceFile(current)) = self.node.store().get(&key) {
            if version <= current.incarnation {
                return Err(refuse(
                    ErrCode::Conflict,
                    format!(
                        "version {version} is not above {filename}'s current version {} in \
                         {group}",
                        current.incarnation
                    ),
                ));
            }
        }
        let rumor = Rumor::ServiceFile(ServiceFileRumor {
            from_id: self.node.identity().id.to_string(),
            service_group: group,
            incarnation: version,
            encrypted: r.is_encrypted.unwrap_or(false),
            filename,
            body,
        });
        self.publish_for_ctl(rumor)
    }

    fn ctl_depart(&mut self, member_id: Option<&str>) -> Result<Vec<Reply>, Vec<Reply>> {
        let text = member_id.ok_or_else(|| refuse(ErrCode::BadPayload, "no member id given"))?;
        let member_id: MemberId = text.parse().map_err(|_| {
            refuse(
                ErrCode::BadPayload,
                format!("{text:?} is not a member id (32 hex digits, as /butterfly lists them)"),
            )
        })?;
        self.publish_for_ctl(Rumor::Departure(DepartureRumor { member_id }))
    }

    /// The name of the loaded service `wanted` names, or `NotFound`.
    fn loaded_name(&self, wanted: Option<&ctl::PackageIdent>) -> Result<String, Vec<Reply>> {
        let wanted = wanted.ok_or_else(|| refuse(ErrCode::BadPayload, "no package given"))?;
        self.services
            .iter()
            .find(|(_, s)| ident_matches(wanted, &s.spec.package.ident))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| {
                refuse(
                    ErrCode::NotFound,
                    format!("Service not loaded, {}/{}", wanted.origin, wanted.name),
                )
            })
    }

    /// `hab svc load`: the package must be installed under `<root>/pkgs`. A service already
    /// loaded is only replaced with `--force`: then the fields given change its spec, and the
    /// service restarts with it unless only its update settings changed (strategy, channel,
    /// url, update period), which apply in place.
    fn ctl_load(&mut self, r: &ctl::SvcLoad) -> Result<Vec<Reply>, Vec<Reply>> {
        let ident = r
            .ident
            .as_ref()
            .ok_or_else(|| refuse(ErrCode::BadPayload, "no package given"))?;
        let loaded = self.services.get(&ident.name);
        if loaded.is_some() && !r.force.unwrap_or(false) {
            return Err(refuse(
                ErrCode::Conflict,
                format!(
                    "{} is already loaded; unload it first, or load it with --force to \
                     replace its settings and restart it",
                    ident.name
                ),
            ));
        }
        let base = loaded.map_or_else(|| SpecFile::new(""), |s| s.spec_file.clone());
        let mut spec = spec_from_load(base, r)?;
        if let Some(loaded) = loaded.filter(|s| ident_matches(ident, &s.spec.package.ident)) {
            // The package it runs, named as much as typed: it stays loaded from where it was
            // (a package directory, or a more qualified ident).
            spec.ident.clone_from(&loaded.spec_file.ident);
        }
        check_update_settings(&spec)?;
        if let Some(loaded) = loaded {
            if same_but_update_settings(&loaded.spec_file, &spec) {
                return self.change_update_settings(&ident.name, spec);
            }
        }
        let service = self.prepare_service(spec.clone()).map_err(|e| match e {
            crate::error::Error::Package { .. } => refuse(
                ErrCode::NotFound,
                format!(
                    "{e} (this supervisor does not download packages: install it under {} \
                     first)",
                    self.config.root.join("pkgs").display()
                ),
            ),
            e => refuse(ErrCode::InvalidPayload, e.to_string()),
        })?;
        let name = service.name().to_string();
        specs::save(&self.specs_dir(), &name, &spec)
            .map_err(|e| refuse(ErrCode::Io, e.to_string()))?;
        self.unload_service(&name);
        self.insert_service(service);
        Ok(ok_saying(format!("Loaded {}", spec.ident)))
    }

    /// `hab svc update`: changes the update settings of a loaded service in place (its process
    /// keeps running). Other fields are refused by name: `hab svc load --force` changes them.
    fn ctl_update(&mut self, r: &ctl::SvcUpdate) -> Result<Vec<Reply>, Vec<Reply>> {
        let name = self.loaded_name(r.ident.as_ref())?;
        let others = [
            ("--group", r.group.is_some()),
            ("--topology", r.topology.is_some()),
            ("--bind", r.binds.is_some()),
            ("--binding-mode", r.binding_mode.is_some()),
            ("--health-check-interval", r.health_check_interval.is_some()),
            ("--shutdown-timeout", r.shutdown_timeout.is_some()),
        ];
        let given: Vec<&str> = others.iter().filter(|(_, s)| *s).map(|(f, _)| *f).collect();
        if !given.is_empty() {
            return Err(refuse(
                ErrCode::NotSupported,
                format!(
                    "hab svc update changes --strategy, --channel, --url and --update-period \
                     here; use hab svc load --force for {}",
                    given.join(", ")
                ),
            ));
        }
        let Some(service) = self.services.get(&name) else {
            return Err(refuse(
                ErrCode::NotFound,
                format!("Service not loaded, {name}"),
            ));
        };
        let mut spec = service.spec_file.clone();
        if let Some(strategy) = r.update_strategy {
            spec.update_strategy = strategy_from_ctl(strategy)?;
        }
        if let Some(channel) = &r.bldr_channel {
            spec.channel.clone_from(channel);
        }
        if let Some(url) = &r.bldr_url {
            spec.bldr_url = Some(url.clone());
        }
        if let Some(secs) = r.update_period {
            spec.update_period = period_from_ctl(secs)?;
        }
        check_update_settings(&spec)?;
        self.change_update_settings(&name, spec)
    }

    /// Saves `spec` (differing from the loaded one in its update settings only) and applies it
    /// to the running service without a restart.
    fn change_update_settings(
        &mut self,
        name: &str,
        spec: SpecFile,
    ) -> Result<Vec<Reply>, Vec<Reply>> {
        specs::save(&self.specs_dir(), name, &spec)
            .map_err(|e| refuse(ErrCode::Io, e.to_string()))?;
        let line = format!(
            "Updated {}: strategy {}, channel {}, url {}, update period {} s (the service keeps \
             running)",
            spec.ident,
            spec.update_strategy,
            spec.channel,
            spec.bldr_url.as_deref().unwrap_or("-"),
            spec.update_period.as_secs_f64()
        );
        self.set_update_settings(name, spec);
        Ok(ok_saying(line))
    }

    /// `hab svc unload`: the spec goes first, then the service stops (in the background).
    fn ctl_unload(&mut self, wanted: Option<&ctl::PackageIdent>) -> Result<Vec<Reply>, Vec<Reply>> {
        let name = self.loaded_name(wanted)?;
        specs::remove(&self.specs_dir(), &name).map_err(|e| refuse(ErrCode::Io, e.to_string()))?;
        let ident = self
            .services
            .get(&name)
            .map(|s| s.spec.package.ident.to_string())
            .unwrap_or_default();
        self.unload_service(&name);
        Ok(ok_saying(format!("Unloading {ident}")))
    }

    /// `hab svc start` / `hab svc stop`: the desired state is saved, then the service follows.
    fn ctl_set_desired(
        &mut self,
        wanted: Option<&ctl::PackageIdent>,
        desired: specs::DesiredState,
    ) -> Result<Vec<Reply>, Vec<Reply>> {
        let name = self.loaded_name(wanted)?;
        let dir = self.specs_dir();
        let Some(service) = self.services.get_mut(&name) else {
            return Err(refuse(
                ErrCode::NotFound,
                format!("Service not loaded, {name}"),
            ));
        };
        let ident = service.spec.package.ident.to_string();
        let mut spec = service.spec_file.clone();
        spec.desired_state = desired;
        specs::save(&dir, &name, &spec).map_err(|e| refuse(ErrCode::Io, e.to_string()))?;
        service.spec_file = spec;
        match desired {
            specs::DesiredState::Up => {
                let was_halted = std::mem::take(&mut service.halted);
                let running = service.running.is_some();
                self.reconcile_services();
                Ok(if running && !was_halted {
                    ok_saying(format!("{ident} is already running"))
                } else {
                    ok_saying(format!("Starting {ident}"))
                })
            }
            specs::DesiredState::Down => {
                let running = service.running.is_some();
                self.stop_service(&name);
                Ok(if running {
                    ok_saying(format!("Stopping {ident}"))
                } else {
                    ok_saying(format!("{ident} is not running"))
                })
            }
        }
    }

    fn publish_for_ctl(&mut self, rumor: Rumor) -> Result<Vec<Reply>, Vec<Reply>> {
        match self.node.publish(now_ms(), rumor) {
            Ok(Insert::New | Insert::Updated | Insert::Stale) => Ok(ok()),
            Ok(Insert::Conflict) => Err(refuse(
                ErrCode::Conflict,
                "the ring holds different content at this version; use a higher version",
            )),
            Ok(Insert::Full) => Err(refuse(ErrCode::Internal, "the rumor store is full")),
            Err(e) => Err(refuse(ErrCode::InvalidPayload, e.to_string())),
        }
    }
}

/// The spec a `SvcLoad` describes: the fields it carries replace `base`'s (Habitat's defaults
/// for a new service, the loaded spec for `--force`).
fn spec_from_load(base: SpecFile, r: &ctl::SvcLoad) -> Result<SpecFile, Vec<Reply>> {
    let bad = |what: &str, value: i32| {
        refuse(
            ErrCode::BadPayload,
            format!("unknown {what} {value} in the load request"),
        )
    };
    let ident = r
        .ident
        .as_ref()
        .ok_or_else(|| refuse(ErrCode::BadPayload, "no package given"))?;
    let mut spec = base;
    spec.ident = ident.to_string();
    if let Some(group) = &r.group {
        spec.group.clone_from(group);
    }
    if let Some(topology) = r.topology {
        spec.topology = match topology {
            0 => Topology::Standalone,
            1 => Topology::Leader,
            // Ours: Habitat's protocol knows no initializer topology.
            2 => Topology::Initializer,
            other => return Err(bad("topology", other)),
        };
    }
    if let Some(strategy) = r.update_strategy {
        spec.update_strategy = strategy_from_ctl(strategy)?;
    }
    if let Some(secs) = r.update_period {
        spec.update_period = period_from_ctl(secs)?;
    }
    if let Some(mode) = r.binding_mode {
        spec.binding_mode = match mode {
            0 => BindingMode::Relaxed,
            1 => BindingMode::Strict,
            other => return Err(bad("binding mode", other)),
        };
    }
    if let Some(binds) = &r.binds {
        spec.binds = binds
            .binds
            .iter()
            .map(|b| {
                let group = &b.service_group;
                let mut text = format!("{}:{}.{}", b.name, group.service, group.group);
                if let Some(org) = &group.organization {
                    text = format!("{text}@{org}");
                }
                text.parse::<BindSpec>()
                    .map_err(|e| refuse(ErrCode::InvalidPayload, e))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(interval) = &r.health_check_interval {
        if interval.seconds == 0 || interval.seconds > 365 * 24 * 3600 {
            return Err(refuse(
                ErrCode::InvalidPayload,
                format!(
                    "health check interval {} s: expected 1 s to a year",
                    interval.seconds
                ),
            ));
        }
        spec.health_check_interval = Duration::from_secs(interval.seconds);
    }
    if let Some(channel) = &r.bldr_channel {
        spec.channel.clone_from(channel);
    }
    if let Some(url) = &r.bldr_url {
        spec.bldr_url = Some(url.clone());
    }
    Ok(spec)
}

/// Habitat's `UpdateStrategy` enum value.
fn strategy_from_ctl(value: i32) -> Result<UpdateStrategy, Vec<Reply>> {
    match value {
        0 => Ok(UpdateStrategy::None),
        1 => Ok(UpdateStrategy::AtOnce),
        2 => Ok(UpdateStrategy::Rolling),
        other => Err(refuse(
            ErrCode::BadPayload,
            format!("unknown update strategy {other} in the request"),
        )),
    }
}

/// `update_period` (ours): whole seconds, 1 s to a day.
fn period_from_ctl(secs: u64) -> Result<Duration, Vec<Reply>> {
    if secs == 0 || secs > 24 * 3600 {
        return Err(refuse(
            ErrCode::InvalidPayload,
            format!("update period {secs} s: expected 1 s to a day"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// A strategy that updates needs a depot to update from.
fn check_update_settings(spec: &SpecFile) -> Result<(), Vec<Reply>> {
    match specs::update_settings(spec).problem() {
        Some(problem) => Err(refuse(ErrCode::InvalidPayload, problem)),
        None => Ok(()),
    }
}

/// Whether `new` differs from `old` in its update settings at most (then no restart is due).
fn same_but_update_settings(old: &SpecFile, new: &SpecFile) -> bool {
    let mut same = new.clone();
    same.update_strategy = old.update_strategy;
    same.channel.clone_from(&old.channel);
    same.bldr_url.clone_from(&old.bldr_url);
    same.update_period = old.update_period;
    same == *old
}
