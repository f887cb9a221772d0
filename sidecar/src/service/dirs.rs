//! A service's directory, `<root>/svc/<name>/{config,hooks,data,files,logs,static,var}` plus
//! `PID`, and the writing of rendered output into it: every file is replaced atomically (temp
//! file, fsync, rename) so a running service never reads a half-written config, files that are
//! no longer rendered are removed (Habitat leaves them behind), and the caller learns which
//! files changed so it can choose between reconfigure and restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The paths of one service's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvcDirs {
    pub root: PathBuf,
}

impl SvcDirs {
    pub fn new(hab_root: &Path, service_name: &str) -> SvcDirs {
        SvcDirs {
            root: hab_root.join("svc").join(service_name),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn hooks(&self) -> PathBuf {
        self.root.join("hooks")
    }
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn static_dir(&self) -> PathBuf {
        self.root.join("static")
    }
    pub fn var(&self) -> PathBuf {
        self.root.join("var")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("PID")
    }

    /// Creates every directory of the layout (existing ones are kept with their content).
    pub fn create(&self) -> Result<()> {
        for dir in [
            self.config(),
            self.hooks(),
            self.data(),
            self.files(),
            self.logs(),
            self.static_dir(),
            self.var(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(())
    }
}

/// A relative path that stays inside its directory (templates come from packages we do not
/// control, and file names from the ring).
fn is_contained(relative: &Path) -> bool {
    !relative.as_os_str().is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Makes `dir` hold exactly `wanted` (relative path -> content): writes files whose content
/// differs, removes regular files that are no longer wanted, and returns the relative paths
/// that were written or removed. Files are written with `mode`.
pub fn sync_dir(
    dir: &Path,
    wanted: &BTreeMap<PathBuf, Vec<u8>>,
    mode: u32,
) -> Result<BTreeSet<PathBuf>> {
    let mut changed = BTreeSet::new();
    for (relative, bytes) in wanted {
        if !is_contained(relative) {
            return Err(Error::invalid(
                relative.display().to_string(),
                "a rendered file must be a relative path inside the directory",
            ));
        }
        let path = dir.join(relative);
        let current = fs::read(&path).ok();
        let mode_differs = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777 != mode)
            .unwrap_or(true);
        if current.as_deref() != Some(bytes.as_slice()) || mode_differs {
            crate::files::write_atomically(&path, bytes, mode)?;
            changed.insert(relative.clone());
        }
    }
    for relative in list_files(dir)? {
        if !wanted.contains_key(&relative) {
            let path = dir.join(&relative);
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            changed.insert(relative);
        }
    }
    Ok(changed)
}

/// Regular files under `dir`, as paths relative to it (missing dir = none).
fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let here = dir.join(&relative);
        let entries = match fs::read_dir(&here) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&here, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&here, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            let name = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(name);
            } else if kind.is_file() {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wanted(pairs: &[(&str, &str)]) -> BTreeMap<PathBuf, Vec<u8>> {
        pairs
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn sync_writes_changes_only_and_removes_stale_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        let first = sync_dir(
            &dir,
            &wanted(&[("a.conf", "1"), ("sub/b.conf", "2")]),
            0o640,
        )
        .unwrap();
        assert_eq!(first.len(), 2);
        let again = sync_dir(
            &dir,
            &wanted(&[("a.conf", "1"), ("sub/b.conf", "2")]),
            0o640,
        )
        .unwrap();
        assert!(again.is_empty(), "unchanged content is not rewritten");
        let third = sync_dir(&dir, &wanted(&[("a.conf", "changed")]), 0o640).unwrap();
        assert_eq!(
            third,
            [PathBuf::from("a.conf"), PathBuf::from("sub/b.conf")]
                .into_iter()
                .collect()
        );
        assert!(!dir.join("sub/b.conf").exists(), "stale file removed");
        assert_eq!(fs::read_to_string(dir.join("a.conf")).unwrap(), "changed");
        let mode = fs::metadata(dir.join("a.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn paths_escaping_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", ""] {
            let err = sync_dir(tmp.path(), &wanted(&[(bad, "x")]), 0o640).unwrap_err();
            assert!(err.to_string().contains("relative path"), "{bad}: {err}");
        }
    }

    #[test]
    fn layout_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = SvcDirs::new(tmp.path(), "redis");
        dirs.create().unwrap();
        for d in ["config", "hooks", "data", "files", "logs", "static", "var"] {
            assert!(tmp.path().join("svc/redis").join(d).is_dir(), "{d}");
        }
        assert_eq!(dirs.pid_file(), tmp.path().join("svc/redis/PID"));
    }
}
