//! Packages in Habitat's layout: a directory with `IDENT`, `default.toml`, `config/`, `hooks/`
//! and metadata files, given as a path or installed under `<root>/pkgs/<origin>/<name>/<version>/
//! <release>/`. Here: identification, default config, exports and the rest of Habitat's metadata
//! files (binds, service user, shutdown, deps, runtime environment); running the package belongs
//! to `service/`. Every metadata file is parsed when the package loads, and a bad line is an
//! error naming the file and the line, so a broken package never half-loads.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// `origin/name[/version[/release]]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackageIdent {
    pub origin: String,
    pub name: String,
    pub version: Option<String>,
    pub release: Option<String>,
}

impl PackageIdent {
    pub fn is_fully_qualified(&self) -> bool {
        self.version.is_some() && self.release.is_some()
    }
}

impl fmt::Display for PackageIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.origin, self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        if let Some(release) = &self.release {
            write!(f, "/{release}")?;
        }
        Ok(())
    }
}

impl FromStr for PackageIdent {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        };
        if !(2..=4).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(format!(
                "package ident {text:?}: expected ORIGIN/NAME[/VERSION[/RELEASE]]"
            ));
        }
        Ok(PackageIdent {
            origin: parts[0].to_string(),
            name: parts[1].to_string(),
            version: parts.get(2).map(|s| s.to_string()),
            release: parts.get(3).map(|s| s.to_string()),
        })
    }
}

/// Compares versions the way users expect: dot-separated parts, numerically where both are
/// numbers ("1.10" > "1.9").
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split(['.', '-']);
    let mut right = b.split(['.', '-']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// A package on disk.
#[derive(Clone, Debug)]
pub struct Package {
    pub ident: PackageIdent,
    pub path: PathBuf,
    pub default_toml: toml::Table,
    /// `EXPORTS`: (exported name, dotted path into the config).
    pub exports: Vec<(String, String)>,
    /// `BINDS`: binds the service cannot start without (`--bind` must name each).
    pub binds: Vec<BindDef>,
    /// `BINDS_OPTIONAL`: binds the service can use when given.
    pub binds_optional: Vec<BindDef>,
    /// `EXPOSES`: the ports the service listens on, as written (whitespace-separated).
    pub exposes: Vec<String>,
    /// `SVC_USER`. Habitat's build writes `hab` by default; when the file is missing this is
    /// `None`, and the service runs as the supervisor's own user. The runner also falls back to
    /// its own user when it is not root (it cannot switch users), as Habitat does.
    pub svc_user: Option<String>,
    /// `SVC_GROUP`, with the same rule as `svc_user`.
    pub svc_group: Option<String>,
    /// `SHUTDOWN_SIGNAL`, default TERM.
    pub shutdown_signal: ShutdownSignal,
    /// `SHUTDOWN_TIMEOUT` (whole seconds), default 8 s: how long to wait after the signal
    /// before SIGKILL.
    pub shutdown_timeout: Duration,
    /// `DEPS`: direct runtime dependencies.
    pub deps: Vec<PackageIdent>,
    /// `TDEPS`: transitive runtime dependencies.
    pub tdeps: Vec<PackageIdent>,
    /// `RUNTIME_ENVIRONMENT`, or `ENVIRONMENT` for packages built before it existed: variables
    /// for hooks and the service, in file order.
    pub runtime_environment: Vec<(String, String)>,
    /// `PATH`: the package's binary directories (one `:`-separated line).
    pub bin_path: Vec<PathBuf>,
    /// The package-level `run` file (used when there is no `hooks/run`).
    pub run: Option<PathBuf>,
}

/// One line of `BINDS` / `BINDS_OPTIONAL`: `name=export1 export2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindDef {
    pub name: String,
    /// The exported config keys a bound service group must offer.
    pub exports: Vec<String>,
}

/// `SHUTDOWN_SIGNAL`: the signal sent to stop the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ShutdownSignal {
    Hup,
    Int,
    Quit,
    Kill,
    Usr1,
    Usr2,
    #[default]
    Term,
}

impl ShutdownSignal {
    const ALL: [ShutdownSignal; 7] = [
        ShutdownSignal::Hup,
        ShutdownSignal::Int,
        ShutdownSignal::Quit,
        ShutdownSignal::Kill,
        ShutdownSignal::Usr1,
        ShutdownSignal::Usr2,
        ShutdownSignal::Term,
    ];

    /// The name without `SIG`, as Habitat writes it (`TERM`).
    pub const fn name(self) -> &'static str {
        match self {
            ShutdownSignal::Hup => "HUP",
            ShutdownSignal::Int => "INT",
            ShutdownSignal::Quit => "QUIT",
            ShutdownSignal::Kill => "KILL",
            ShutdownSignal::Usr1 => "USR1",
            ShutdownSignal::Usr2 => "USR2",
            ShutdownSignal::Term => "TERM",
        }
    }

    /// The signal to send.
    pub const fn to_nix(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        match self {
            ShutdownSignal::Hup => Signal::SIGHUP,
            ShutdownSignal::Int => Signal::SIGINT,
            ShutdownSignal::Quit => Signal::SIGQUIT,
            ShutdownSignal::Kill => Signal::SIGKILL,
            ShutdownSignal::Usr1 => Signal::SIGUSR1,
            ShutdownSignal::Usr2 => Signal::SIGUSR2,
            ShutdownSignal::Term => Signal::SIGTERM,
        }
    }

    /// The platform's signal number, for `kill(2)`.
    pub const fn number(self) -> i32 {
        match self {
            ShutdownSignal::Hup => libc::SIGHUP,
            ShutdownSignal::Int => libc::SIGINT,
            ShutdownSignal::Quit => libc::SIGQUIT,
            ShutdownSignal::Kill => libc::SIGKILL,
            ShutdownSignal::Usr1 => libc::SIGUSR1,
            ShutdownSignal::Usr2 => libc::SIGUSR2,
            ShutdownSignal::Term => libc::SIGTERM,
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ShutdownSignal {
    type Err = String;

    /// Accepts `TERM` or `SIGTERM`, in any case.
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Self::ALL
            .into_iter()
            .find(|s| s.name() == bare)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "expected a signal name, one of {} (with or without SIG), found {text:?}",
                    names.join(", ")
                )
            })
    }
}

/// Habitat's default `SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);
/// A day: a larger `SHUTDOWN_TIMEOUT` overflowed the supervisor's shutdown deadline.
pub const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 24 * 3600;

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Package {
    /// What the config layers need of this package.
    pub fn defaults(&self) -> crate::config::PackageDefaults<'_> {
        crate::config::PackageDefaults {
            name: self.name(),
            default_toml: &self.default_toml,
            default_path: self.path.join("default.toml"),
        }
    }

    /// Loads the package directory at `path`.
    pub fn load(path: &Path) -> Result<Package> {
        let problem = |problem: String| Error::Package {
            path: path.to_path_buf(),
            problem,
        };
        let ident_path = path.join("IDENT");
        let ident_text = read_optional(&ident_path)?.ok_or_else(|| {
            problem("no IDENT file (expected ORIGIN/NAME/VERSION/RELEASE in it)".into())
        })?;
        let ident: PackageIdent = ident_text
            .parse()
            .map_err(|e: String| problem(format!("IDENT: {e}")))?;
        let default_path = path.join("default.toml");
        let default_toml = match read_optional(&default_path)? {
            Some(text) => toml::from_str::<toml::Table>(&text)
                .map_err(|e| problem(format!("default.toml: {}", e.to_string().trim_end())))?,
            None => toml::Table::new(),
        };
        // Each metadata file: read if present, parse, or fail naming the file and line.
        let meta = |file: &str| read_optional(&path.join(file));
        let exports = match meta("EXPORTS")? {
            Some(text) => parse_exports(&text).map_err(problem)?,
            None => Vec::new(),
        };
        let in_file = |file: &str, e: String| problem(format!("{file} {e}"));
        let binds = match meta("BINDS")? {
            Some(text) => parse_binds(&text).map_err(|e| in_file("BINDS", e))?,
            None => Vec::new(),
        };
        let binds_optional = match meta("BINDS_OPTIONAL")? {
            Some(text) => parse_binds(&text).map_err(|e| in_file("BINDS_OPTIONAL", e))?,
            None => Vec::new(),
        };
        if let Some(dup) = binds
            .iter()
            .find(|b| binds_optional.iter().any(|o| o.name == b.name))
        {
            return Err(problem(format!(
                "bind {:?} is in both BINDS and BINDS_OPTIONAL; expected each bind in one of them",
                dup.name
            )));
        }
        let exposes = match meta("EXPOSES")? {
            Some(text) => text.split_whitespace().map(str::to_string).collect(),
            None => Vec::new(),
        };
        let single = |file: &str| -> Result<Option<(usize, String)>> {
            match meta(file)? {
                Some(text) => single_value(&text).map_err(|e| in_file(file, e)),
                None => Ok(None),
            }
        };
        let name_value = |file: &str| -> Result<Option<String>> {
            match single(file)? {
                Some((line, value)) if value.split_whitespace().count() != 1 => Err(in_file(
                    file,
                    format!("line {line}: expected one name, found {value:?}"),
                )),
                other => Ok(other.map(|(_, v)| v)),
            }
        };
        let svc_user = name_value("SVC_USER")?;
        let svc_group = name_value("SVC_GROUP")?;
        let shutdown_signal = match single("SHUTDOWN_SIGNAL")? {
            Some((line, value)) => value
                .parse()
                .map_err(|e| in_file("SHUTDOWN_SIGNAL", format!("line {line}: {e}")))?,
            None => ShutdownSignal::default(),
        };
        let shutdown_timeout = match single("SHUTDOWN_TIMEOUT")? {
            Some((line, value)) => value
                .parse::<u64>()
                .ok()
                .filter(|secs| *secs <= MAX_SHUTDOWN_TIMEOUT_SECS)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    in_file(
                        "SHUTDOWN_TIMEOUT",
                        format!(
                            "line {line}: expected whole seconds up to \
                             {MAX_SHUTDOWN_TIMEOUT_SECS} (e.g. 8), found {value:?}"
                        ),
                    )
                })?,
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };
        let deps = match meta("DEPS")? {
            Some(text) => parse_idents(&text).map_err(|e| in_file("DEPS", e))?,
            None => Vec::new(),
        };
        let tdeps = match meta("TDEPS")? {
            Some(text) => parse_idents(&text).map_err(|e| in_file("TDEPS", e))?,
            None => Vec::new(),
        };
        let runtime_environment = match meta("RUNTIME_ENVIRONMENT")? {
            Some(text) => {
                parse_environment(&text).map_err(|e| in_file("RUNTIME_ENVIRONMENT", e))?
            }
            None => match meta("ENVIRONMENT")? {
                Some(text) => parse_environment(&text).map_err(|e| in_file("ENVIRONMENT", e))?,
                None => Vec::new(),
            },
        };
        let bin_path = match single("PATH")? {
            Some((_, value)) => std::env::split_paths(&value)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            None => Vec::new(),
        };
        let run = Some(path.join("run")).filter(|p| p.is_file());
        Ok(Package {
            ident,
            path: path.to_path_buf(),
            default_toml,
            exports,
            binds,
            binds_optional,
            exposes,
            svc_user,
            svc_group,
            shutdown_signal,
            shutdown_timeout,
            deps,
            tdeps,
            runtime_environment,
            bin_path,
            run,
        })
    }

    /// Resolves what `hab sup run PKG` was given: an existing directory, or an ident installed
    /// under `<root>/pkgs/` (the newest version and release matching it).
    pub fn resolve(root: &Path, spec: &str) -> Result<Package> {
        let as_path = Path::new(spec);
        if as_path.is_dir() {
            return Package::load(as_path);
        }
        let ident: PackageIdent = spec.parse().map_err(|e: String| Error::Package {
            path: as_path.to_path_buf(),
            problem: format!("not a package directory, and {e}"),
        })?;
        let base = root.join("pkgs").join(&ident.origin).join(&ident.name);
        let mut candidates: Vec<(String, String)> = Vec::new();
        for version in list_dirs(&base)? {
            if ident.version.as_ref().is_some_and(|v| *v != version) {
                continue;
            }
            for release in list_dirs(&base.join(&version))? {
                if ident.release.as_ref().is_some_and(|r| *r != release) {
                    continue;
                }
                candidates.push((version.clone(), release));
            }
        }
        candidates.sort_by(|a, b| compare_versions(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
        let (version, release) = candidates.pop().ok_or_else(|| Error::Package {
            path: base.clone(),
            problem: format!("package {ident} is not installed"),
        })?;
        Package::load(&base.join(version).join(release))
    }

    pub fn name(&self) -> &str {
        &self.ident.name
    }

    /// `hooks/` of the package (may not exist).
    pub fn hooks_dir(&self) -> PathBuf {
        self.path.join("hooks")
    }

    /// `config/` of the package: the templates (may not exist).
    pub fn config_dir(&self) -> PathBuf {
        self.path.join("config")
    }

    /// `hooks/<name>` (e.g. `health-check`) when that file exists. A name that is not a plain
    /// file name gives `None`, so a hook name can never reach outside `hooks/`.
    pub fn hook_path(&self, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
        Some(self.hooks_dir().join(name)).filter(|p| plain && p.is_file())
    }

    /// Every bind the package declares, required first, with whether it is optional.
    pub fn all_binds(&self) -> impl Iterator<Item = (&BindDef, bool)> {
        self.binds
            .iter()
            .map(|b| (b, false))
            .chain(self.binds_optional.iter().map(|b| (b, true)))
    }

    /// The values named in `EXPORTS`, looked up in `cfg`; missing paths are left out.
    pub fn exported_cfg(&self, cfg: &toml::Table) -> toml::Table {
        lookup_exports(self.exports.iter().map(|(n, p)| (n, p)), cfg)
    }
}

/// `(exported name, dotted config path)` pairs looked up in `cfg`; missing paths are left out.
pub fn lookup_exports<'a>(
    exports: impl IntoIterator<Item = (&'a String, &'a String)>,
    cfg: &toml::Table,
) -> toml::Table {
    let mut out = toml::Table::new();
    for (name, path) in exports {
        let mut value: Option<&toml::Value> = None;
        let mut table = Some(cfg);
        for part in path.split('.') {
            value = table.and_then(|t| t.get(part));
            table = value.and_then(|v| v.as_table());
        }
        if let Some(value) = value {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

fn list_dirs(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// `EXPORTS` lines are `name=cfg.path` (Habitat writes them from `pkg_exports`).
fn parse_exports(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, path) = line
            .split_once('=')
            .filter(|(n, p)| !n.trim().is_empty() && !p.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "EXPORTS line {}: expected NAME=CONFIG.PATH, found {line:?}",
                    n + 1
                )
            })?;
        out.push((name.trim().to_string(), path.trim().to_string()));
    }
    Ok(out)
}

/// Lines worth parsing: numbered from 1, trimmed, blank and `#` lines left out.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// A file holding one value (`SVC_USER`, `SHUTDOWN_SIGNAL`, `PATH`...): its line and value;
/// `None` when the file is blank.
fn single_value(text: &str) -> std::result::Result<Option<(usize, String)>, String> {
    let mut lines = content_lines(text);
    let first = lines.next();
    if let Some((line, extra)) = lines.next() {
        return Err(format!(
            "line {line}: expected a single value, found a second line {extra:?}"
        ));
    }
    Ok(first.map(|(line, value)| (line, value.to_string())))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `BINDS` / `BINDS_OPTIONAL` lines are `name=export1 export2` (Habitat writes them from
/// `pkg_binds`); errors start with the line number.
fn parse_binds(text: &str) -> std::result::Result<Vec<BindDef>, String> {
    let mut out: Vec<BindDef> = Vec::new();
    for (line, content) in content_lines(text) {
        let expected = || {
            format!("line {line}: expected NAME=EXPORT [EXPORT...] (e.g. database=port host), found {content:?}")
        };
        let (name, exports) = content.split_once('=').ok_or_else(expected)?;
        let name = name.trim();
        let exports: Vec<String> = exports.split_whitespace().map(str::to_string).collect();
        if !valid_name(name) || exports.is_empty() {
            return Err(expected());
        }
        if out.iter().any(|b| b.name == name) {
            return Err(format!("line {line}: bind {name:?} is declared twice"));
        }
        out.push(BindDef {
            name: name.to_string(),
            exports,
        });
    }
    Ok(out)
}

/// `DEPS` / `TDEPS`: one package ident per line.
fn parse_idents(text: &str) -> std::result::Result<Vec<PackageIdent>, String> {
    content_lines(text)
        .map(|(line, content)| content.parse().map_err(|e| format!("line {line}: {e}")))
        .collect()
}

/// `RUNTIME_ENVIRONMENT` / `ENVIRONMENT`: `KEY=VALUE` lines; the value may be empty and may
/// contain `=`; it is kept as written (only the line break is dropped).
fn parse_environment(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let key_ok = |k: &str| {
            k.bytes().next().is_some_and(|b| !b.is_ascii_digit())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        match raw.split_once('=') {
            Some((key, value)) if key_ok(key) => out.push((key.to_string(), value.to_string())),
            _ => {
                return Err(format!(
                    "line {}: expected KEY=VALUE with KEY made of letters, digits and '_' \
                     (not starting with a digit), found {raw:?}",
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write_pkg(dir: &Path, ident: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("IDENT"), ident).unwrap();
        fs::write(
            dir.join("default.toml"),
            "port = 6379\n[tls]\nport = 6380\n",
        )
        .unwrap();
        fs::write(
            dir.join("EXPORTS"),
            "port=port\ntls-port=tls.port\nmissing=nope\n",
        )
        .unwrap();
    }

    #[test]
    fn loads_a_package_directory_and_its_exports() {
        let tmp = tempfile::tempdir().unwrap();
        write_pkg(tmp.path(), "core/redis/7.0.1/20260101000000\n");
        let pkg = Package::load(tmp.path()).unwrap();
        assert_eq!(pkg.ident.to_string(), "core/redis/7.0.1/20260101000000");
        let exported = pkg.exported_cfg(&pkg.default_toml);
        assert_eq!(
            exported.get("port").and_then(|v| v.as_integer()),
            Some(6379)
        );
        assert_eq!(
            exported.get("tls-port").and_then(|v| v.as_integer()),
            Some(6380)
        );
        assert!(!exported.contains_key("missing"));
    }

    #[test]
    fn resolves_the_newest_installed_release() {
        let root = tempfile::tempdir().unwrap();
        for (v, r) in [
            ("7.0.9", "20260101000000"),
            ("7.0.10", "20250101000000"),
            ("7.0.10", "20260101000000"),
        ] {
            write_pkg(
                &root.path().join(format!("pkgs/core/redis/{v}/{r}")),
                &format!("core/redis/{v}/{r}"),
            );
        }
        let pkg = Package::resolve(root.path(), "core/redis").unwrap();
        assert_eq!(pkg.ident.to_string(), "core/redis/7.0.10/20260101000000");
        let pinned = Package::resolve(root.path(), "core/redis/7.0.9").unwrap();
        assert_eq!(pinned.ident.version.as_deref(), Some("7.0.9"));
    }

    #[test]
    fn missing_package_and_bad_files_are_named() {
        let root = tempfile::tempdir().unwrap();
        let err = Package::resolve(root.path(), "core/nope")
            .unwrap_err()
            .to_string();
        assert!(err.contains("core/nope is not installed"), "{err}");
        let err = Package::resolve(root.path(), "not an ident")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ORIGIN/NAME"), "{err}");
        let dir = root.path().join("bad");
        write_pkg(&dir, "core/bad/1/2");
        fs::write(dir.join("default.toml"), "port = [").unwrap();
        let err = Package::load(&dir).unwrap_err().to_string();
        assert!(err.contains("default.toml"), "{err}");
        fs::write(dir.join("default.toml"), "").unwrap();
        fs::write(dir.join("EXPORTS"), "justaname\n").unwrap();
        let err = Package::load(&dir).unwrap_err().to_string();
        assert!(err.contains("EXPORTS line 1"), "{err}");
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("1.10.0", "1.9.3"), Ordering::Greater);
        assert_eq!(compare_versions("1.2", "1.2.0"), Ordering::Less);
        assert_eq!(compare_versions("2.0", "2.0"), Ordering::Equal);
    }

    #[test]
    fn metadata_defaults_when_files_are_missing() {
        let tmp = tempfile::tempdir().unwrap();
        write_pkg(tmp.path(), "core/redis/7.0.1/20260101000000");
        let pkg = Package::load(tmp.path()).unwrap();
        assert!(pkg.binds.is_empty() && pkg.binds_optional.is_empty());
        assert_eq!(pkg.svc_user, None);
        assert_eq!(pkg.svc_group, None);
        assert_eq!(pkg.shutdown_signal, ShutdownSignal::Term);
        assert_eq!(pkg.shutdown_timeout, Duration::from_secs(8));
        assert!(pkg.deps.is_empty() && pkg.tdeps.is_empty());
        assert!(pkg.runtime_environment.is_empty() && pkg.bin_path.is_empty());
        assert_eq!(pkg.run, None);
        assert_eq!(pkg.hook_path("init"), None);
    }

    #[test]
    fn loads_every_metadata_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_pkg(dir, "core/app/1.0.0/20260101000000");
        let files = [
            ("BINDS", "database=port host\n\nqueue=amqp-port\n"),
            ("BINDS_OPTIONAL", "cache=port\n"),
            ("EXPOSES", "8080 8443\n"),
            ("SVC_USER", "app\n"),
            ("SVC_GROUP", "\napps\n"),
            ("SHUTDOWN_SIGNAL", "SIGQUIT\n"),
            ("SHUTDOWN_TIMEOUT", "30\n"),
            ("DEPS", "core/glibc/2.35/20230101000000\ncore/openssl/3.0.0/20230101000000\n"),
            ("TDEPS", "core/glibc/2.35/20230101000000\n"),
            ("RUNTIME_ENVIRONMENT", "JAVA_HOME=/opt/java\nOPTS=-Da=b -Dc=\nEMPTY=\n"),
            ("ENVIRONMENT", "IGNORED=because-runtime-environment-wins\n"),
            ("PATH", "/hab/pkgs/core/app/1.0.0/20260101000000/bin:/hab/pkgs/core/app/1.0.0/20260101000000/sbin\n"),
            ("run", "#!/bin/sh\nexec app\n"),
        ];
        for (name, body) in files {
            fs::write(dir.join(name), body).unwrap();
        }
        fs::create_dir_all(dir.join("hooks")).unwrap();
        fs::write(dir.join("hooks/health-check"), "#!/bin/sh\n").unwrap();

        let pkg = Package::load(dir).unwrap();
        assert_eq!(
            pkg.binds,
            vec![
                BindDef {
                    name: "database".into(),
                    exports: vec!["port".into(), "host".into()]
                },
                BindDef {
                    name: "queue".into(),
                    exports: vec!["amqp-port".into()]
                },
            ]
        );
        assert_eq!(pkg.binds_optional[0].name, "cache");
        let all: Vec<(&str, bool)> = pkg.all_binds().map(|(b, o)| (b.name.as_str(), o)).collect();
        assert_eq!(
            all,
            vec![("database", false), ("queue", false), ("cache", true)]
        );
        assert_eq!(pkg.exposes, vec!["8080", "8443"]);
        assert_eq!(pkg.svc_user.as_deref(), Some("app"));
        assert_eq!(pkg.svc_group.as_deref(), Some("apps"));
        assert_eq!(pkg.shutdown_signal, ShutdownSignal::Quit);
        assert_eq!(pkg.shutdown_signal.number(), libc::SIGQUIT);
        assert_eq!(pkg.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(pkg.deps.len(), 2);
        assert_eq!(pkg.deps[1].name, "openssl");
        assert_eq!(pkg.tdeps[0].to_string(), "core/glibc/2.35/20230101000000");
        assert_eq!(
            pkg.runtime_environment,
            vec![
                ("JAVA_HOME".to_string(), "/opt/java".to_string()),
                ("OPTS".to_string(), "-Da=b -Dc=".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
        assert_eq!(pkg.bin_path.len(), 2);
        assert!(pkg.bin_path[1].ends_with("sbin"));
        assert_eq!(pkg.run, Some(dir.join("run")));
        assert_eq!(pkg.hooks_dir(), dir.join("hooks"));
        assert_eq!(pkg.config_dir(), dir.join("config"));
        assert_eq!(
            pkg.hook_path("health-check"),
            Some(dir.join("hooks/health-check"))
        );
        assert_eq!(pkg.hook_path("init"), None);
        assert_eq!(pkg.hook_path("../run"), None);
    }

    #[test]
    fn environment_falls_back_to_the_old_file_name() {
        let tmp = tempfile::tempdir().unwrap();
        write_pkg(tmp.path(), "core/app/1/2");
        fs::write(tmp.path().join("ENVIRONMENT"), "A=1\n").unwrap();
        let pkg = Package::load(tmp.path()).unwrap();
        assert_eq!(
            pkg.runtime_environment,
            vec![("A".to_string(), "1".to_string())]
        );
    }

    /// Writes `body` to `file` in a fresh package and returns the load error.
    fn load_error(file: &str, body: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        write_pkg(tmp.path(), "core/app/1/2");
        fs::write(tmp.path().join(file), body).unwrap();
        Package::load(tmp.path()).unwrap_err().to_string()
    }

    #[test]
    fn bad_metadata_lines_name_the_file_and_line() {
        let cases = [
            (
                "BINDS",
                "database=port\njustaname\n",
                "BINDS line 2: expected NAME=EXPORT",
            ),
            ("BINDS", "database=\n", "BINDS line 1: expected NAME=EXPORT"),
            ("BINDS", "a b=port\n", "BINDS line 1"),
            (
                "BINDS",
                "db=port\ndb=host\n",
                "BINDS line 2: bind \"db\" is declared twice",
            ),
            ("BINDS_OPTIONAL", "=port\n", "BINDS_OPTIONAL line 1"),
            (
                "SVC_USER",
                "app\nother\n",
                "SVC_USER line 2: expected a single value",
            ),
            ("SVC_USER", "my app\n", "SVC_USER line 1: expected one name"),
            (
                "SHUTDOWN_SIGNAL",
                "STOPPLEASE\n",
                "SHUTDOWN_SIGNAL line 1: expected a signal name",
            ),
            (
                "SHUTDOWN_TIMEOUT",
                "\n8s\n",
                "SHUTDOWN_TIMEOUT line 2: expected whole seconds",
            ),
            ("SHUTDOWN_TIMEOUT", "-1\n", "SHUTDOWN_TIMEOUT line 1"),
            (
                "SHUTDOWN_TIMEOUT",
                "18446744073709551615\n",
                "SHUTDOWN_TIMEOUT line 1: expected whole seconds up to 86400",
            ),
            (
                "DEPS",
                "core/a/1/2\nnot-an-ident\n",
                "DEPS line 2: package ident",
            ),
            ("TDEPS", "core/a/1/2/3/4\n", "TDEPS line 1"),
            (
                "RUNTIME_ENVIRONMENT",
                "A=1\nNOEQUALS\n",
                "RUNTIME_ENVIRONMENT line 2: expected KEY=VALUE",
            ),
            (
                "RUNTIME_ENVIRONMENT",
                "1A=x\n",
                "RUNTIME_ENVIRONMENT line 1",
            ),
            ("ENVIRONMENT", "BAD KEY=x\n", "ENVIRONMENT line 1"),
            ("PATH", "/a\n/b\n", "PATH line 2"),
        ];
        for (file, body, expected) in cases {
            let err = load_error(file, body);
            assert!(err.contains(expected), "{file} {body:?}: {err}");
            assert!(err.starts_with("package "), "{err}");
        }
    }

    #[test]
    fn a_bind_cannot_be_both_required_and_optional() {
        let tmp = tempfile::tempdir().unwrap();
        write_pkg(tmp.path(), "core/app/1/2");
        fs::write(tmp.path().join("BINDS"), "db=port\n").unwrap();
        fs::write(tmp.path().join("BINDS_OPTIONAL"), "db=port\n").unwrap();
        let err = Package::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("both BINDS and BINDS_OPTIONAL"), "{err}");
    }

    #[test]
    fn signal_names_parse_with_or_without_sig() {
        for (text, signal) in [
            ("TERM", ShutdownSignal::Term),
            ("SIGTERM", ShutdownSignal::Term),
            ("hup", ShutdownSignal::Hup),
            ("SIGINT", ShutdownSignal::Int),
            ("KILL", ShutdownSignal::Kill),
            ("USR1", ShutdownSignal::Usr1),
            ("sigusr2", ShutdownSignal::Usr2),
        ] {
            assert_eq!(text.parse::<ShutdownSignal>(), Ok(signal), "{text}");
        }
        assert_eq!(ShutdownSignal::Term.number(), libc::SIGTERM);
        assert_eq!(ShutdownSignal::Usr1.to_string(), "USR1");
        assert!("SIG".parse::<ShutdownSignal>().is_err());
    }
}
