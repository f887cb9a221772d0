//! `hab sup term`: gracefully stops the supervisor of this root, as Habitat's does, by sending
//! SIGTERM to the pid its lock file names (`<root>/sup/default/LOCK`, see `sup::lock`). The
//! pid is trusted only while the lock is held: a file left by a supervisor that is gone is not
//! (the kernel released its `flock`). Then, unless told not to, waits for the lock to be
//! released, which the supervisor does last, after its services stopped.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Error;

/// How long `hab sup term` waits for the supervisor to stop, by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// How often the lock is tried while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How often a line says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A supervisor writes its pid right after taking the lock: how long an empty file is retried.
const PID_GRACE: Duration = Duration::from_secs(2);

/// The lock file of the supervisor of `root`.
pub fn lock_path(root: &Path) -> PathBuf {
    crate::sup::SupDirs::new(root).sup.join("LOCK")
}

/// Whether a supervisor holds the lock at `path` now (taking it shared for an instant if not).
fn is_held(path: &Path) -> Result<bool, Error> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::File {
                path: path.display().to_string(),
                problem: format!("cannot open the supervisor lock: {e}"),
            })
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(Error::File {
            path: path.display().to_string(),
            problem: format!("cannot test the supervisor lock: {e}"),
        }),
    }
}

/// The holder's pid, read while the lock is held; retried for `PID_GRACE` while the file is
/// still empty (a supervisor that just started).
async fn holder_pid(path: &Path, root: &Path) -> Result<i32, Error> {
    let give_up = tokio::time::Instant::now() + PID_GRACE;
    loop {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            problem: format!("cannot read the supervisor's pid: {e}"),
        })?;
        let text = text.trim();
        if let Ok(pid) = text.parse::<i32>() {
            if pid > 1 && pid as u32 != std::process::id() {
                return Ok(pid);
            }
        }
        if !text.is_empty() || tokio::time::Instant::now() >= give_up {
            return Err(Error::File {
                path: path.display().to_string(),
                problem: format!(
                    "held by a supervisor of {}, but expected its pid (a number above 1) in \
                     it, found {text:?}",
                    root.display()
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `hab sup term [--no-wait] [--timeout SECS]`: `wait` is `None` with `--no-wait`.
pub async fn sup_term(
    root: &Path,
    wait: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let path = lock_path(root);
    if !is_held(&path)? {
        return Err(Error::NoSupervisor {
            root: root.to_path_buf(),
            lock: path,
        });
    }
    let pid = holder_pid(&path, root).await?;
    writeln!(
        out,
        "» Stopping the supervisor of {} (pid {pid})",
        root.display()
    )?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|errno| Error::Signal {
        pid,
        problem: match errno {
            nix::errno::Errno::ESRCH => format!(
                "no such process, yet {} is locked: is the supervisor in another pid \
                 namespace (a container)?",
                path.display()
            ),
            nix::errno::Errno::EPERM => {
                "not permitted: the supervisor runs as another user (try as that user or \
                 root)"
                    .to_string()
            }
            other => other.desc().to_string(),
        },
    })?;
    let Some(wait) = wait else {
        writeln!(out, "★ Sent SIGTERM; not waiting for it to stop")?;
        return Ok(());
    };
    let started = tokio::time::Instant::now();
    let mut next_progress = started + PROGRESS_EVERY;
    while is_held(&path)? {
        let now = tokio::time::Instant::now();
        if now >= started + wait {
            return Err(Error::StillRunning {
                pid,
                lock: path,
                waited: wait,
            });
        }
        if now >= next_progress {
            writeln!(
                out,
                "  still stopping after {} s (services get their shutdown timeout)",
                (now - started).as_secs()
            )?;
            out.flush()?;
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(POLL).await;
    }
    writeln!(out, "★ Supervisor stopped")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sup::lock::SupLock;

    #[tokio::test]
    async fn a_root_without_a_lock_file_has_no_supervisor() {
        let root = tempfile::tempdir().unwrap();
        let err = sup_term(root.path(), None, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoSupervisor { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_stale_lock_file_is_not_trusted() {
        let root = tempfile::tempdir().unwrap();
        let path = lock_path(root.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A pid that is surely someone's: signalling it would be a disaster.
        std::fs::write(&path, "1").unwrap();
        let err = sup_term(root.path(), None, &mut Vec::new())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::NoSupervisor { .. }), "{text}");
        assert!(text.contains("no supervisor is running"), "{text}");
    }

    #[tokio::test]
    async fn a_held_lock_naming_no_usable_pid_is_refused_not_signalled() {
        let root = tempfile::tempdir().unwrap();
        // Held by this process, and naming it: never signal ourselves.
        let _lock = SupLock::acquire(root.path()).unwrap();
        let err = sup_term(root.path(), None, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expected its pid"), "{err}");
    }
}
