//! What the supervisor loop answers to the ctl gateway's requests (see `ctl_gateway`): the
//! loaded service's status and default config, and the ring changes a workstation makes:
//! gossiped config (`hab config apply`), files (`hab file upload`) and departures (`hab sup
//! depart`). Checks come first, so a refused request changes nothing anywhere.

use super::ctl_gateway::{net_err, MAX_PAYLOAD};
use super::{now_ms, LoopState};
use crate::ctl::messages::{
    self as ctl, DesiredState, ErrCode, NetOk, ProcessState, ProcessStatus, Reply, Request,
    ServiceCfg, ServiceStatus,
};
use crate::gossip::member::MemberId;
use crate::gossip::rumor::{
    DepartureRumor, Rumor, RumorKey, ServiceConfigRumor, ServiceFileRumor, ServiceGroup,
};
use crate::gossip::store::Insert;
use crate::package::PackageIdent;

fn ok() -> Vec<Reply> {
    vec![Reply::NetOk(NetOk {})]
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
            other => Err(refuse(
                ErrCode::NotSupported,
                format!(
                    "{} is not supported by this supervisor yet (services are loaded with \
                     `hab sup run PKG`)",
                    other.message_id()
                ),
            )),
        };
        answer.unwrap_or_else(|refused| refused)
    }

    fn ctl_status(&self, wanted: Option<&ctl::PackageIdent>) -> Result<Vec<Reply>, Vec<Reply>> {
        let now = now_ms() / 1000;
        let statuses: Vec<Reply> = self
            .service
            .iter()
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
                    desired_state: Some(if status.desired_up {
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
            .service
            .iter()
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
