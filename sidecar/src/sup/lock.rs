//! The supervisor lock, `<root>/sup/default/LOCK` (Habitat's `proc_lock_file`): at most one
//! supervisor per root, so two never share a member id, a rumor store or a service's data
//! directory. An exclusive `flock` held for the supervisor's whole life and released by the
//! kernel however it ends (SIGKILL included): a stale file never blocks a restart. The file
//! names the holder's pid, for the message of the supervisor turned away.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::SupDirs;
use crate::error::{Error, Result};

/// Held while the supervisor runs; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct SupLock {
    path: PathBuf,
    // Closing the file releases the lock. Not inherited by children: std opens it O_CLOEXEC.
    _file: File,
}

impl SupLock {
    /// Takes the lock of `root` at once, or fails naming the supervisor that holds it.
    pub fn acquire(root: &Path) -> Result<SupLock> {
        let sup = SupDirs::new(root).sup;
        std::fs::create_dir_all(&sup).map_err(|e| Error::io(&sup, e))?;
        let path = sup.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes its pid right after locking; a reader in between sees none.
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok())
                    .map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"));
                return Err(Error::invalid(
                    path.display().to_string(),
                    format!(
                        "another supervisor is running on {} ({holder})",
                        root.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(SupLock { path, _file: file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_lock_on_one_root_names_the_holder_and_a_released_one_is_free() {
        let root = tempfile::tempdir().unwrap();
        let first = SupLock::acquire(root.path()).unwrap();
        assert_eq!(first.path(), root.path().join("sup/default/LOCK"));
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            std::process::id().to_string()
        );
        // flock locks belong to the open file: a second open in this process conflicts too.
        let err = SupLock::acquire(root.path()).unwrap_err().to_string();
        let expected = format!(
            "another supervisor is running on {} (pid {})",
            root.path().display(),
            std::process::id()
        );
        assert!(err.contains(&expected), "{err}");
        drop(first);
        SupLock::acquire(root.path()).unwrap();
    }
}
