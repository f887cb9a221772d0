//! What a loaded service was told (`hab svc load`, `hab sup run PKG`), kept as
//! `<root>/sup/default/specs/<name>.spec` so the service comes back after a restart, in
//! Habitat's field names. Parsing and rendering are pure; `save`, `remove` and `load_all` are
//! the file I/O (atomic writes: a crash leaves the old spec or the new one, never half).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::binds::{BindSpec, BindingMode};
use crate::error::{Error, Result};
use crate::files::write_atomically;
use crate::service::{Topology, UpdateStrategy};

/// The channel a service follows when none is named (Habitat's default).
pub const DEFAULT_CHANNEL: &str = "stable";
/// Seconds between health checks when none is named (Habitat's default).
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);
const SUFFIX: &str = ".spec";

/// Whether the service should run: `hab svc stop` keeps it loaded but down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DesiredState {
    #[default]
    Up,
    Down,
}

impl DesiredState {
    const fn as_str(self) -> &'static str {
        match self {
            DesiredState::Up => "up",
            DesiredState::Down => "down",
        }
    }
}

/// One loaded service, as persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecFile {
    /// As given: `ORIGIN/NAME[/VERSION[/RELEASE]]`, or a package directory (`hab sup run DIR`).
    pub ident: String,
    pub group: String,
    pub topology: Topology,
    pub update_strategy: UpdateStrategy,
    pub channel: String,
    pub bldr_url: Option<String>,
    pub binds: Vec<BindSpec>,
    pub binding_mode: BindingMode,
    pub health_check_interval: Duration,
    pub desired_state: DesiredState,
    /// Seconds between depot polls (ours: `update_period`; absent in older specs).
    pub update_period: Duration,
}

impl SpecFile {
    /// A spec with Habitat's defaults for everything but the ident.
    pub fn new(ident: impl Into<String>) -> SpecFile {
        SpecFile {
            ident: ident.into(),
            group: "default".to_string(),
            topology: Topology::Standalone,
            update_strategy: UpdateStrategy::None,
            channel: DEFAULT_CHANNEL.to_string(),
            bldr_url: None,
            binds: Vec::new(),
            binding_mode: BindingMode::Strict,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            desired_state: DesiredState::Up,
            update_period: crate::service::update::DEFAULT_UPDATE_PERIOD,
        }
    }

    /// The file's TOML text.
    pub fn render(&self) -> String {
        let mut table = toml::Table::new();
        let mut put = |key: &str, value: toml::Value| {
            table.insert(key.to_string(), value);
        };
        put("ident", self.ident.clone().into());
        put("group", self.group.clone().into());
        put("topology", self.topology.as_str().into());
        put("update_strategy", self.update_strategy.as_str().into());
        put("channel", self.channel.clone().into());
        if let Some(url) = &self.bldr_url {
            put("bldr_url", url.clone().into());
        }
        put(
            "binds",
            toml::Value::Array(self.binds.iter().map(|b| b.to_string().into()).collect()),
        );
        put("binding_mode", self.binding_mode.to_string().into());
        put(
            "health_check_interval",
            seconds_value(self.health_check_interval),
        );
        put("desired_state", self.desired_state.as_str().into());
        put("update_period", seconds_value(self.update_period));
        toml::to_string(&table).unwrap_or_default()
    }

    /// Parses a spec file's text; `source` names it in errors. Fields left out take Habitat's
    /// defaults; fields we do not know (Habitat's `svc_encrypted_password`, ...) are ignored.
    pub fn parse(text: &str, source: &str) -> Result<SpecFile> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| Error::invalid(source, format!("not a spec file: {}", e.message())))?;
        let field = |key: &str| table.get(key);
        let bad = |key: &str, expected: &str| {
            Error::invalid(source, format!("field `{key}`: expected {expected}"))
        };
        let string = |key: &str| -> Result<Option<String>> {
            match field(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(key, "a string")),
            }
        };
        let ident = string("ident")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("ident", "a package ident such as core/redis"))?;
        let mut spec = SpecFile::new(ident);
        if let Some(group) = string("group")? {
            spec.group = group;
        }
        if let Some(topology) = string("topology")? {
            spec.topology = topology
                .parse()
                .map_err(|e: String| Error::invalid(source, format!("field `topology`: {e}")))?;
        }
        if let Some(strategy) = string("update_strategy")? {
            spec.update_strategy = strategy.parse().map_err(|e: String| {
                Error::invalid(source, format!("field `update_strategy`: {e}"))
            })?;
        }
        if let Some(channel) = string("channel")? {
            spec.channel = channel;
        }
        spec.bldr_url = string("bldr_url")?;
        if let Some(binds) = field("binds") {
            let binds = binds
                .as_array()
                .ok_or_else(|| bad("binds", "an array of \"NAME:SERVICE.GROUP\""))?;
            spec.binds = binds
                .iter()
                .map(|b| {
                    b.as_str()
                        .ok_or_else(|| bad("binds", "an array of \"NAME:SERVICE.GROUP\""))?
                        .parse()
                        .map_err(|e: String| Error::invalid(source, format!("field `binds`: {e}")))
                })
                .collect::<Result<_>>()?;
        }
        spec.binding_mode = match string("binding_mode")?.as_deref() {
            None | Some("strict") => BindingMode::Strict,
            Some("relaxed") => BindingMode::Relaxed,
            Some(_) => return Err(bad("binding_mode", "strict or relaxed")),
        };
        let seconds = |key: &str| -> Result<Option<Duration>> {
            let Some(value) = field(key) else {
                return Ok(None);
            };
            let secs = match value {
                toml::Value::Integer(n) => *n as f64,
                toml::Value::Float(f) => *f,
                _ => return Err(bad(key, "a number of seconds")),
            };
            Some(secs)
                .filter(|s| s.is_finite() && *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(Some)
                .ok_or_else(|| bad(key, "a positive number of seconds"))
        };
        if let Some(interval) = seconds("health_check_interval")? {
            spec.health_check_interval = interval;
        }
        if let Some(period) = seconds("update_period")? {
            spec.update_period = period;
        }
        spec.desired_state = match string("desired_state")?.as_deref() {
            None | Some("up") => DesiredState::Up,
            Some("down") => DesiredState::Down,
            Some(_) => return Err(bad("desired_state", "up or down")),
        };
        Ok(spec)
    }
}

/// The update settings a spec names.
pub fn update_settings(spec: &SpecFile) -> crate::service::update::UpdateSettings {
    crate::service::update::UpdateSettings {
        strategy: spec.update_strategy,
        channel: spec.channel.clone(),
        url: spec.bldr_url.clone(),
        period: spec.update_period,
    }
}

/// Whole seconds as an integer, as Habitat writes them; a fraction as a float.
fn seconds_value(duration: Duration) -> toml::Value {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 && secs <= i64::MAX as f64 {
        toml::Value::Integer(secs as i64)
    } else {
        toml::Value::Float(secs)
    }
}

/// `<root>/sup/default/specs`.
pub fn specs_dir(sup_dir: &Path) -> PathBuf {
    sup_dir.join("specs")
}

fn spec_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}{SUFFIX}"))
}

/// Writes the spec of service `service` (its package name), replacing any earlier one whole.
pub fn save(dir: &Path, service: &str, spec: &SpecFile) -> Result<()> {
    write_atomically(&spec_path(dir, service), spec.render().as_bytes(), 0o640)
}

/// Removes the spec of `service`; a spec already gone is not an error.
pub fn remove(dir: &Path, service: &str) -> Result<()> {
    let path = spec_path(dir, service);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Every spec in `dir`, by file name, each parsed or with the error that names its problem (a
/// bad file is reported and left alone, never removed). No directory: no specs.
pub fn load_all(dir: &Path) -> Vec<(PathBuf, Result<SpecFile>)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![(dir.to_path_buf(), Err(Error::io(dir, e)))],
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "spec"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let source = path.display().to_string();
            let spec = fs::read_to_string(&path)
                .map_err(|e| Error::io(&path, e))
                .and_then(|text| SpecFile::parse(&text, &source));
            (path, spec)
        })
        .collect()
}

/// The service name a spec file is named after (`redis.spec` -> `redis`).
pub fn service_of(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_suffix(SUFFIX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn full() -> SpecFile {
        SpecFile {
            ident: "core/redis/7.2.4".to_string(),
            group: "prod".to_string(),
            topology: Topology::Leader,
            update_strategy: UpdateStrategy::Rolling,
            channel: "unstable".to_string(),
            bldr_url: Some("http://depot:9636".to_string()),
            binds: vec!["backend:pg.default".parse().unwrap()],
            binding_mode: BindingMode::Relaxed,
            health_check_interval: Duration::from_millis(2500),
            desired_state: DesiredState::Down,
            update_period: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_spec_renders_in_habitat_field_names_and_parses_back() {
        let spec = full();
        let text = spec.render();
        assert!(text.contains("ident = \"core/redis/7.2.4\""), "{text}");
        assert!(text.contains("update_strategy = \"rolling\""), "{text}");
        assert!(text.contains("binds = [\"backend:pg.default\"]"), "{text}");
        assert!(text.contains("health_check_interval = 2.5"), "{text}");
        assert!(text.contains("update_period = 5\n"), "{text}");
        assert_eq!(SpecFile::parse(&text, "s").unwrap(), spec);

        let plain = SpecFile::new("core/redis");
        let text = plain.render();
        assert!(text.contains("health_check_interval = 30\n"), "{text}");
        assert_eq!(SpecFile::parse(&text, "s").unwrap(), plain);
    }

    #[test]
    fn a_habitat_spec_file_parses_and_unknown_fields_are_ignored() {
        let text = "ident = \"core/redis\"\ngroup = \"default\"\n\
                    bldr_url = \"https://bldr.habitat.sh\"\nchannel = \"stable\"\n\
                    topology = \"standalone\"\nupdate_strategy = \"none\"\n\
                    update_condition = \"latest\"\nbinds = []\nbinding_mode = \"strict\"\n\
                    desired_state = \"up\"\nshutdown_timeout = 8\nhealth_check_interval = 30\n\
                    svc_encrypted_password = \"\"\n";
        let spec = SpecFile::parse(text, "redis.spec").unwrap();
        assert_eq!(spec.ident, "core/redis");
        assert_eq!(spec.bldr_url.as_deref(), Some("https://bldr.habitat.sh"));
        assert_eq!(spec.health_check_interval, Duration::from_secs(30));
        assert_eq!(
            spec.update_period,
            Duration::from_secs(60),
            "a spec without update_period (older, or Habitat's) polls every minute"
        );
    }

    #[test]
    fn a_bad_spec_names_the_file_and_the_field() {
        for (text, names) in [
            ("group = \"default\"", "field `ident`"),
            (
                "ident = \"a/b\"\ntopology = \"leaders\"",
                "field `topology`",
            ),
            (
                "ident = \"a/b\"\ndesired_state = \"sideways\"",
                "field `desired_state`",
            ),
            ("ident = \"a/b\"\nbinds = [\"nocolon\"]", "field `binds`"),
            (
                "ident = \"a/b\"\nhealth_check_interval = -1",
                "health_check_interval",
            ),
            (
                "ident = \"a/b\"\nhealth_check_interval = 1e300",
                "health_check_interval",
            ),
            ("ident = \"a/b\"\nupdate_period = 0", "update_period"),
            ("ident = ", "not a spec file"),
        ] {
            let err = SpecFile::parse(text, "/hab/sup/default/specs/b.spec")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("/hab/sup/default/specs/b.spec") && err.contains(names),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn specs_are_saved_listed_and_removed_and_a_bad_one_is_reported_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        assert!(load_all(&specs).is_empty());
        save(&specs, "redis", &full()).unwrap();
        save(&specs, "hello", &SpecFile::new("habitat-rs/hello")).unwrap();
        fs::write(specs.join("broken.spec"), "ident = [").unwrap();
        fs::write(specs.join("notes.txt"), "not a spec").unwrap();
        let loaded = load_all(&specs);
        let names: Vec<_> = loaded.iter().map(|(p, _)| service_of(p).unwrap()).collect();
        assert_eq!(names, ["broken", "hello", "redis"]);
        assert!(loaded[0].1.is_err());
        assert_eq!(loaded[2].1.as_ref().unwrap(), &full());
        remove(&specs, "redis").unwrap();
        remove(&specs, "redis").unwrap();
        assert_eq!(load_all(&specs).len(), 2);
        assert!(specs.join("broken.spec").exists());
    }
}
