//! Writing files so that a reader, or a crash, never sees half of one: the one way to write a
//! file here.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file beside it, created with `mode` from the
/// start (never briefly readable by others), synced, then renamed over `path`. On failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".hab-tmp");
    let tmp = dir.join(tmp_name);
    let written = (|| {
        // A leftover from a crash may have another mode: start afresh.
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        // The umask may have taken bits `mode` asks for.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_no_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rumors.dat");
        write_atomically(&path, b"one", 0o600).unwrap();
        write_atomically(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rumors.dat")]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg");
        write_atomically(&path, b"old", 0o640).unwrap();
        // A directory where the temporary file would go: the write fails.
        fs::create_dir(dir.path().join("cfg.hab-tmp")).unwrap();
        fs::write(dir.path().join("cfg.hab-tmp").join("x"), b"x").unwrap();
        assert!(write_atomically(&path, b"new", 0o640).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}
