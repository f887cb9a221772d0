//! Binds: `--bind NAME:SERVICE.GROUP` ties a bind the package declares (`BINDS`,
//! `BINDS_OPTIONAL`) to a service group of the ring. Pure decisions: `validate` checks the specs
//! against the package when a service loads (every required bind given, no unknown ones), and
//! `check` says whether the bound groups in the census can serve the bind yet, with reasons a
//! supervisor can log while it waits.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::census::CensusGroup;
use crate::error::{Error, Result};
use crate::gossip::rumor::ServiceGroup;
use crate::package::Package;

/// One `--bind NAME:SERVICE.GROUP[@ORG]` option.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindSpec {
    pub name: String,
    pub service_group: ServiceGroup,
}

impl FromStr for BindSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let expected = "expected NAME:SERVICE.GROUP (e.g. database:postgresql.default)";
        let (name, group) = text
            .split_once(':')
            .ok_or_else(|| format!("--bind {text:?}: {expected}"))?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "--bind {text:?}: bind name {name:?} must be letters, digits, '-' and '_'; {expected}"
            ));
        }
        let service_group =
            ServiceGroup::parse(group).map_err(|e| format!("--bind {text:?}: {e}"))?;
        Ok(BindSpec {
            name: name.to_string(),
            service_group,
        })
    }
}

impl fmt::Display for BindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.service_group)
    }
}

/// Whether a service waits for its binds (`--binding-mode`, as in Habitat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum BindingMode {
    /// Wait until every bound group has an alive member exporting what the bind needs.
    #[default]
    Strict,
    /// Start at once; templates see whatever the census has.
    Relaxed,
}

impl fmt::Display for BindingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindingMode::Strict => "strict",
            BindingMode::Relaxed => "relaxed",
        })
    }
}

/// A bind of the package tied to a service group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub service_group: ServiceGroup,
    /// The exported keys the package needs from the group (from `BINDS`/`BINDS_OPTIONAL`).
    pub exports: Vec<String>,
    pub optional: bool,
}

/// Checks `specs` against the package's binds when the service loads: each name once, each a
/// bind the package declares, and every required bind given (Habitat refuses to load otherwise).
pub fn validate(pkg: &Package, specs: &[BindSpec]) -> Result<Vec<Binding>> {
    let declared = || {
        let names: Vec<String> = pkg
            .all_binds()
            .map(|(b, optional)| {
                let kind = if optional { "optional" } else { "required" };
                format!("{} ({kind})", b.name)
            })
            .collect();
        if names.is_empty() {
            format!("package {} declares no binds", pkg.ident)
        } else {
            format!("package {} declares {}", pkg.ident, names.join(", "))
        }
    };
    let mut out: Vec<Binding> = Vec::new();
    for spec in specs {
        if out.iter().any(|b| b.name == spec.name) {
            return Err(Error::invalid(
                format!("--bind {spec}"),
                format!("bind {:?} is given more than once", spec.name),
            ));
        }
        let (def, optional) = pkg
            .all_binds()
            .find(|(b, _)| b.name == spec.name)
            .ok_or_else(|| {
                Error::invalid(
                    format!("--bind {spec}"),
                    format!("unknown bind {:?}: {}", spec.name, declared()),
                )
            })?;
        out.push(Binding {
            name: spec.name.clone(),
            service_group: spec.service_group.clone(),
            exports: def.exports.clone(),
            optional,
        });
    }
    let missing: Vec<&str> = pkg
        .binds
        .iter()
        .filter(|b| !out.iter().any(|given| given.name == b.name))
        .map(|b| b.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            format!("package {}", pkg.ident),
            format!(
                "missing required bind(s) {}: give --bind NAME:SERVICE.GROUP for each ({})",
                missing.join(", "),
                declared()
            ),
        ));
    }
    Ok(out)
}

/// Whether the service may start, and why not yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindStatus {
    /// False only in strict mode with unmet binds.
    pub ready: bool,
    /// One line per unmet bind ("bind 'database': service group redis.default has no alive
    /// member exporting port"); listed in relaxed mode too, for a warning.
    pub reasons: Vec<String>,
}

/// Looks up every binding's group in the census: met when the group has an alive member whose
/// exported cfg holds every export the bind needs.
pub fn check(bindings: &[Binding], mode: BindingMode, census: &[CensusGroup]) -> BindStatus {
    let reasons: Vec<String> = bindings
        .iter()
        .filter_map(|b| unmet_reason(b, census))
        .collect();
    BindStatus {
        ready: mode == BindingMode::Relaxed || reasons.is_empty(),
        reasons,
    }
}

fn unmet_reason(binding: &Binding, census: &[CensusGroup]) -> Option<String> {
    let prefix = format!(
        "bind '{}': service group {}",
        binding.name, binding.service_group
    );
    let Some(group) = census
        .iter()
        .find(|g| g.service_group == binding.service_group)
    else {
        return Some(format!("{prefix} is not in the census"));
    };
    // For each alive member, the exports it lacks; the member lacking fewest explains best.
    let best_missing: Option<Vec<&str>> = group
        .members
        .iter()
        .filter(|m| m.alive())
        .map(|m| {
            binding
                .exports
                .iter()
                .map(String::as_str)
                .filter(|e| !m.cfg.contains_key(*e))
                .collect::<Vec<&str>>()
        })
        .min_by_key(Vec::len);
    match best_missing {
        None => Some(format!("{prefix} has no alive member")),
        Some(missing) if missing.is_empty() => None,
        Some(missing) => Some(format!(
            "{prefix} has no alive member exporting {}",
            missing.join(", ")
        )),
    }
}

/// Bind name -> service group, for the template context (`bind.<name>`).
pub fn resolve(bindings: &[Binding]) -> BTreeMap<String, ServiceGroup> {
    bindings
        .iter()
        .map(|b| (b.name.clone(), b.service_group.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::census::CensusMember;
    use crate::gossip::member::{Health, MemberId};
    use crate::gossip::rumor::SysInfo;
    use crate::package::{BindDef, PackageIdent};
    use std::path::PathBuf;
    use std::time::Duration;

    fn bind_def(name: &str, exports: &[&str]) -> BindDef {
        BindDef {
            name: name.into(),
            exports: exports.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn pkg(binds: Vec<BindDef>, optional: Vec<BindDef>) -> Package {
        Package {
            ident: "core/app/1.0.0/20260101000000".parse().unwrap(),
            path: PathBuf::from("/pkg"),
            default_toml: toml::Table::new(),
            exports: Vec::new(),
            binds,
            binds_optional: optional,
            exposes: Vec::new(),
            svc_user: None,
            svc_group: None,
            shutdown_signal: Default::default(),
            shutdown_timeout: Duration::from_secs(8),
            deps: Vec::<PackageIdent>::new(),
            tdeps: Vec::new(),
            runtime_environment: Vec::new(),
            bin_path: Vec::new(),
            run: None,
        }
    }

    fn app() -> Package {
        pkg(
            vec![bind_def("database", &["port", "host"])],
            vec![bind_def("cache", &["port"])],
        )
    }

    fn spec(text: &str) -> BindSpec {
        text.parse().unwrap()
    }

    fn member(id: u8, health: Health, cfg: &str) -> CensusMember {
        CensusMember {
            incarnation: 1,
            initialized: true,
            health,
            ..CensusMember::new(
                MemberId([id; 16]),
                "core/redis/7/1",
                toml::from_str(cfg).unwrap(),
                SysInfo::default(),
            )
        }
    }

    fn group(name: &str, members: Vec<CensusMember>) -> CensusGroup {
        CensusGroup {
            members,
            ..CensusGroup::empty(ServiceGroup::parse(name).unwrap(), MemberId([0; 16]))
        }
    }

    #[test]
    fn bind_specs_parse_and_print() {
        let s = spec("database:postgresql.default");
        assert_eq!(s.name, "database");
        assert_eq!(s.service_group.as_str(), "postgresql.default");
        assert_eq!(s.to_string(), "database:postgresql.default");
        assert_eq!(spec("db:pg.prod@acme").service_group.org(), Some("acme"));
    }

    #[test]
    fn bad_bind_specs_say_what_is_expected() {
        for (text, expected) in [
            ("database", "expected NAME:SERVICE.GROUP"),
            (":pg.default", "bind name \"\""),
            ("data base:pg.default", "bind name \"data base\""),
            ("db:pg", "expected SERVICE.GROUP"),
            ("db:pg.default.x", "expected SERVICE.GROUP"),
        ] {
            let err = text.parse::<BindSpec>().unwrap_err();
            assert!(err.starts_with(&format!("--bind {text:?}")), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn valid_specs_become_bindings_with_the_exports_they_need() {
        let bindings = validate(
            &app(),
            &[
                spec("database:redis.default"),
                spec("cache:memcached.default"),
            ],
        )
        .unwrap();
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[0].exports, vec!["port", "host"]);
        assert!(!bindings[0].optional);
        assert!(bindings[1].optional);
        let resolved = resolve(&bindings);
        assert_eq!(resolved["database"].as_str(), "redis.default");
        assert_eq!(resolved["cache"].as_str(), "memcached.default");
    }

    #[test]
    fn an_unknown_bind_names_itself_and_the_packages_binds() {
        let err = validate(
            &app(),
            &[
                spec("database:redis.default"),
                spec("queue:rabbitmq.default"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--bind queue:rabbitmq.default: unknown bind \"queue\""),
            "{err}"
        );
        assert!(
            err.contains("database (required), cache (optional)"),
            "{err}"
        );
        let err = validate(&pkg(vec![], vec![]), &[spec("x:a.b")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("declares no binds"), "{err}");
    }

    #[test]
    fn a_missing_required_bind_fails_at_load() {
        let err = validate(&app(), &[spec("cache:memcached.default")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "package core/app/1.0.0/20260101000000: missing required bind(s) database"
            ),
            "{err}"
        );
        // Optional binds may be left out.
        assert_eq!(
            validate(&app(), &[spec("database:redis.default")])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_bind_given_twice_is_refused() {
        let err = validate(
            &app(),
            &[spec("database:redis.default"), spec("database:redis.other")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("given more than once"), "{err}");
    }

    #[test]
    fn strict_mode_waits_for_an_alive_member_exporting_everything() {
        let bindings = validate(&app(), &[spec("database:redis.default")]).unwrap();
        let waiting = |census: &[CensusGroup]| {
            let status = check(&bindings, BindingMode::Strict, census);
            assert!(!status.ready);
            assert_eq!(status.reasons.len(), 1);
            status.reasons[0].clone()
        };
        assert_eq!(
            waiting(&[group("other.default", vec![])]),
            "bind 'database': service group redis.default is not in the census"
        );
        assert_eq!(
            waiting(&[group(
                "redis.default",
                vec![member(1, Health::Confirmed, "port = 1\nhost = 'a'")]
            )]),
            "bind 'database': service group redis.default has no alive member"
        );
        assert_eq!(
            waiting(&[group(
                "redis.default",
                vec![
                    member(1, Health::Alive, "host = 'a'"),
                    member(2, Health::Alive, "other = 1"),
                    member(3, Health::Departed, "port = 1\nhost = 'a'"),
                ]
            )]),
            "bind 'database': service group redis.default has no alive member exporting port"
        );
        let census = [group(
            "redis.default",
            vec![
                member(1, Health::Alive, "host = 'a'"),
                member(2, Health::Alive, "port = 6379\nhost = 'b'"),
            ],
        )];
        assert_eq!(
            check(&bindings, BindingMode::Strict, &census),
            BindStatus {
                ready: true,
                reasons: vec![]
            }
        );
    }

    #[test]
    fn relaxed_mode_never_waits_but_still_explains() {
        let bindings = validate(
            &app(),
            &[
                spec("database:redis.default"),
                spec("cache:memcached.default"),
            ],
        )
        .unwrap();
        let status = check(&bindings, BindingMode::Relaxed, &[]);
        assert!(status.ready);
        assert_eq!(status.reasons.len(), 2);
        assert!(
            status.reasons[1].starts_with("bind 'cache'"),
            "{:?}",
            status.reasons
        );
        // Strict mode waits on optional binds that were given, too.
        let census = [group(
            "redis.default",
            vec![member(1, Health::Alive, "port = 1\nhost = 'a'")],
        )];
        let status = check(&bindings, BindingMode::Strict, &census);
        assert!(!status.ready);
        assert_eq!(
            status.reasons,
            vec!["bind 'cache': service group memcached.default is not in the census"]
        );
    }

    #[test]
    fn binding_mode_defaults_to_strict() {
        assert_eq!(BindingMode::default(), BindingMode::Strict);
        assert_eq!(BindingMode::Relaxed.to_string(), "relaxed");
    }
}
