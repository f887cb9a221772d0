//! Packages in Habitat's layout: a directory with `IDENT`, `default.toml`, `config/`, `hooks/`
//! and metadata files, given as a path or installed under `<root>/pkgs/<origin>/<name>/<version>/
//! <release>/`. Here: identification, default config and exports (what is gossiped about a
//! loaded service); running the package belongs to `service/`.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Package {
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
        let exports = match read_optional(&path.join("EXPORTS"))? {
            Some(text) => parse_exports(&text).map_err(problem)?,
            None => Vec::new(),
        };
        Ok(Package {
            ident,
            path: path.to_path_buf(),
            default_toml,
            exports,
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

    /// The values named in `EXPORTS`, looked up in `cfg`; missing paths are left out.
    pub fn exported_cfg(&self, cfg: &toml::Table) -> toml::Table {
        let mut out = toml::Table::new();
        for (name, path) in &self.exports {
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
}
