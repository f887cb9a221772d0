//! `hab svc load|unload|start|stop`: services of a supervisor, through its ctl gateway, with
//! Habitat's arguments. The supervisor answers with lines to print, then `NetOk`; exit codes as
//! `hab svc status` (2 not loaded, 3 no supervisor answers, 1 anything else).

use std::io::Write;
use std::time::Duration;

use super::{parse_package_ident, parse_service_group, Error, Remote};
use crate::binds::{BindSpec, BindingMode};
use crate::ctl::messages::{self as msg, Reply, Request};
use crate::service::{Topology, UpdateStrategy};

/// `hab svc load PKG_IDENT [flags]`. Flags left out are not sent: a new service takes the
/// supervisor's defaults, and `--force` changes only the fields given.
#[derive(Clone, Debug, Default)]
pub struct SvcLoad {
    pub pkg_ident: String,
    pub group: Option<String>,
    pub topology: Option<Topology>,
    pub strategy: Option<UpdateStrategy>,
    pub channel: Option<String>,
    pub url: Option<String>,
    pub binds: Vec<BindSpec>,
    pub binding_mode: Option<BindingMode>,
    pub health_check_interval: Option<Duration>,
    pub update_period: Option<Duration>,
    pub force: bool,
}

/// `hab svc update PKG_IDENT [flags]`: only the flags given are sent.
#[derive(Clone, Debug, Default)]
pub struct SvcUpdate {
    pub pkg_ident: String,
    pub strategy: Option<UpdateStrategy>,
    pub channel: Option<String>,
    pub url: Option<String>,
    pub update_period: Option<Duration>,
}

impl SvcUpdate {
    /// The request, in Habitat's field numbers (`update_period` is ours).
    pub fn request(&self) -> Result<msg::SvcUpdate, Error> {
        Ok(msg::SvcUpdate {
            ident: Some(parse_package_ident(&self.pkg_ident)?),
            bldr_url: self.url.clone(),
            bldr_channel: self.channel.clone(),
            update_strategy: self.strategy.map(strategy_value),
            update_period: whole_seconds("--update-period", self.update_period)?,
            ..msg::SvcUpdate::default()
        })
    }
}

/// `hab svc update`.
pub async fn svc_update(
    remote: &Remote,
    update: &SvcUpdate,
    out: &mut dyn Write,
) -> Result<(), Error> {
    send_printing(remote, update.request()?, out).await
}

/// Habitat's `UpdateStrategy` enum value.
fn strategy_value(strategy: UpdateStrategy) -> i32 {
    match strategy {
        UpdateStrategy::None => msg::UpdateStrategy::None as i32,
        UpdateStrategy::AtOnce => msg::UpdateStrategy::AtOnce as i32,
        UpdateStrategy::Rolling => msg::UpdateStrategy::Rolling as i32,
    }
}

/// A duration the ctl protocol carries in whole seconds; `flag` names it in the error.
fn whole_seconds(flag: &str, duration: Option<Duration>) -> Result<Option<u64>, Error> {
    duration
        .map(|d| {
            if d.as_secs() == 0 || d.subsec_nanos() != 0 {
                return Err(Error::Invalid {
                    what: flag.to_string(),
                    problem: format!(
                        "expected a whole number of seconds (the ctl protocol carries \
                         seconds), found {d:?}"
                    ),
                });
            }
            Ok(d.as_secs())
        })
        .transpose()
}

impl SvcLoad {
    /// The request, in Habitat's field numbers and enum values (topology `initializer` is
    /// ours, value 2: Habitat's supervisor refuses it).
    pub fn request(&self) -> Result<msg::SvcLoad, Error> {
        let binds = self
            .binds
            .iter()
            .map(|b| {
                Ok(msg::ServiceBind {
                    name: b.name.clone(),
                    service_group: parse_service_group(&b.service_group.to_string())?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let health_check_interval = self
            .health_check_interval
            .map(|interval| {
                let seconds = interval.as_secs();
                if seconds == 0 || interval.subsec_nanos() != 0 {
                    return Err(Error::Invalid {
                        what: "--health-check-interval".to_string(),
                        problem: format!(
                            "expected a whole number of seconds (the ctl protocol carries \
                             seconds), found {interval:?}"
                        ),
                    });
                }
                Ok(msg::HealthCheckInterval { seconds })
            })
            .transpose()?;
        Ok(msg::SvcLoad {
            ident: Some(parse_package_ident(&self.pkg_ident)?),
            binds: (!binds.is_empty()).then_some(msg::ServiceBindList { binds }),
            bldr_url: self.url.clone(),
            bldr_channel: self.channel.clone(),
            config_from: None,
            force: self.force.then_some(true),
            group: self.group.clone(),
            svc_encrypted_password: None,
            topology: self.topology.map(|t| match t {
                Topology::Standalone => msg::Topology::Standalone as i32,
                Topology::Leader => msg::Topology::Leader as i32,
                Topology::Initializer => 2,
            }),
            update_strategy: self.strategy.map(strategy_value),
            binding_mode: self.binding_mode.map(|m| match m {
                BindingMode::Relaxed => msg::BindingMode::Relaxed as i32,
                BindingMode::Strict => msg::BindingMode::Strict as i32,
            }),
            health_check_interval,
            shutdown_timeout: None,
            update_condition: None,
            update_period: whole_seconds("--update-period", self.update_period)?,
        })
    }
}

/// `hab svc load`.
pub async fn svc_load(remote: &Remote, load: &SvcLoad, out: &mut dyn Write) -> Result<(), Error> {
    send_printing(remote, load.request()?, out).await
}

/// What `hab svc unload|start|stop` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvcAction {
    Unload,
    Start,
    Stop,
}

/// `hab svc unload|start|stop PKG_IDENT`.
pub async fn svc_action(
    remote: &Remote,
    action: SvcAction,
    pkg_ident: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let ident = Some(parse_package_ident(pkg_ident)?);
    let request: Request = match action {
        SvcAction::Unload => msg::SvcUnload {
            ident,
            timeout_in_seconds: None,
        }
        .into(),
        SvcAction::Start => msg::SvcStart { ident }.into(),
        SvcAction::Stop => msg::SvcStop {
            ident,
            timeout_in_seconds: None,
        }
        .into(),
    };
    send_printing(remote, request, out).await
}

/// Sends `request`, printing the console lines that come back; anything but those and
/// `NetOk` is an error.
pub async fn send_printing(
    remote: &Remote,
    request: impl Into<Request>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut unexpected = None;
    let mut written = Ok(());
    remote
        .send(request, |reply| match reply {
            Reply::NetOk(_) | Reply::NetProgress(_) => {}
            Reply::ConsoleLine(line) => {
                if written.is_ok() {
                    written = out.write_all(line.line.as_bytes());
                }
            }
            other => {
                unexpected.get_or_insert(other);
            }
        })
        .await?;
    written?;
    match unexpected {
        Some(reply) => Err(remote.unexpected("NetOk", &reply)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_flags_given_are_sent_in_habitats_enum_values() {
        let bare = SvcLoad {
            pkg_ident: "core/redis".to_string(),
            ..SvcLoad::default()
        }
        .request()
        .unwrap();
        assert_eq!(bare.ident.unwrap().to_string(), "core/redis");
        assert_eq!(
            (bare.group, bare.topology, bare.binds, bare.force),
            (None, None, None, None)
        );

        let full = SvcLoad {
            pkg_ident: "core/redis/7.2.4".to_string(),
            group: Some("prod".to_string()),
            topology: Some(Topology::Leader),
            strategy: Some(UpdateStrategy::Rolling),
            binds: vec!["db:pg.default@acme".parse().unwrap()],
            binding_mode: Some(BindingMode::Relaxed),
            health_check_interval: Some(Duration::from_secs(5)),
            force: true,
            ..SvcLoad::default()
        }
        .request()
        .unwrap();
        assert_eq!(full.topology, Some(1));
        assert_eq!(full.update_strategy, Some(2));
        assert_eq!(full.binding_mode, Some(0));
        assert_eq!(full.force, Some(true));
        assert_eq!(full.health_check_interval.unwrap().seconds, 5);
        let bind = &full.binds.unwrap().binds[0];
        assert_eq!(bind.name, "db");
        assert_eq!(bind.service_group.organization.as_deref(), Some("acme"));
    }

    #[test]
    fn svc_update_sends_only_the_update_settings_given() {
        let update = SvcUpdate {
            pkg_ident: "core/web".to_string(),
            strategy: Some(UpdateStrategy::AtOnce),
            update_period: Some(Duration::from_secs(5)),
            ..SvcUpdate::default()
        }
        .request()
        .unwrap();
        assert_eq!(update.update_strategy, Some(1));
        assert_eq!(update.update_period, Some(5));
        assert_eq!((update.bldr_url, update.bldr_channel), (None, None));
        let err = SvcUpdate {
            pkg_ident: "core/web".to_string(),
            update_period: Some(Duration::from_millis(500)),
            ..SvcUpdate::default()
        }
        .request()
        .unwrap_err();
        assert!(err.to_string().contains("--update-period"), "{err}");
    }

    #[test]
    fn a_fractional_health_check_interval_is_refused_by_name() {
        let err = SvcLoad {
            pkg_ident: "core/redis".to_string(),
            health_check_interval: Some(Duration::from_millis(1500)),
            ..SvcLoad::default()
        }
        .request()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--health-check-interval"), "{err}");
    }
}
