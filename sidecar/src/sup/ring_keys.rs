//! Ring keys: `--ring NAME` from the keys dir, reloaded while running (a `stat` per file, a
//! read only when one changed), and/or `HAB_RING_KEY`; new keys activate after a delay so a
//! rotation never cuts members off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::time::SystemTime;

use super::SupervisorConfig;
use crate::error::{Error, Result};
use crate::gossip::crypto::{Keyring, RingKey};
use crate::keys;

/// How often ring keys and the peer watch file are checked: a `stat` per file, and a read only
/// when one changed (or a new key is pending).
pub(super) const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Ring keys: `--ring NAME` from the keys dir (reloaded while running) and/or `HAB_RING_KEY`.
pub(super) struct RingKeys {
    pub(super) name: Option<String>,
    env_key: Option<RingKey>,
    dir: PathBuf,
    activation: Duration,
    loaded: Vec<String>,
    /// The key files as last read (see `key_files_stamp`).
    stamp: Vec<FileStamp>,
    /// The last keyring held a pending key: it turns active with time, not with a file change.
    pending: bool,
}

impl RingKeys {
    /// A cleartext ring's: no name, no key.
    #[cfg(test)]
    pub(super) fn none() -> RingKeys {
        RingKeys {
            name: None,
            env_key: None,
            dir: PathBuf::from("/nonexistent"),
            activation: Duration::from_secs(60),
            loaded: Vec::new(),
            stamp: Vec::new(),
            pending: false,
        }
    }

    pub(super) fn new(config: &SupervisorConfig) -> Result<RingKeys> {
        let env_key = config
            .ring_key_env
            .as_deref()
            .map(|content| keys::parse_sym_key(content, "HAB_RING_KEY"))
            .transpose()?;
        let name = config
            .ring
            .clone()
            .or_else(|| env_key.as_ref().map(|k| k.name().to_string()));
        Ok(RingKeys {
            name,
            env_key,
            dir: keys::keys_dir(&config.root),
            // A key must stay pending until every member has re-read its keys at least once.
            activation: config
                .ring_key_activation
                .max(KEY_RELOAD_INTERVAL + Duration::from_secs(1)),
            loaded: Vec::new(),
            stamp: Vec::new(),
            pending: false,
        })
    }

    /// The keyring again when a key file changed or a pending key may have become active;
    /// `None` while nothing did (then this costs one directory listing and a `stat` per key).
    pub(super) fn reload(&mut self) -> Option<Result<Keyring>> {
        let name = self.name.as_deref()?;
        let stamp = key_files_stamp(&self.dir, name);
        if stamp == self.stamp && !self.pending {
            return None;
        }
        Some(self.keyring(false))
    }

    /// Every revision held; revisions whose file is younger than the activation delay are only
    /// accepted, so a key copied to all members is not sealed with before they all hold it.
    pub(super) fn keyring(&mut self, strict: bool) -> Result<Keyring> {
        let Some(name) = self.name.clone() else {
            return Ok(Keyring::cleartext());
        };
        // Taken before the read: a file changing in between is read again at the next check.
        self.stamp = key_files_stamp(&self.dir, &name);
        let mut keys = match keys::load_ring_keys(&self.dir, &name) {
            Ok(keys) => keys,
            Err(Error::KeyNotFound { .. }) if self.env_key.is_some() || !strict => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut pending = Vec::new();
        for key in &keys {
            let age = std::fs::metadata(keys::sym_key_path(&self.dir, key))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or(Duration::MAX);
            if age < self.activation {
                pending.push(key.revision().to_string());
            }
        }
        if let Some(env_key) = &self.env_key {
            keys.retain(|k| k.revision() != env_key.revision());
            keys.push(env_key.clone());
        }
        if keys.is_empty() {
            return Err(Error::KeyNotFound {
                kind: "ring",
                name,
                dir: self.dir.clone(),
            });
        }
        let mut names: Vec<String> = keys
            .iter()
            .map(|k| {
                let state = if pending.contains(&k.revision().to_string()) {
                    "pending"
                } else {
                    "active"
                };
                format!("{}:{state}", k.name_with_rev())
            })
            .collect();
        names.sort();
        self.pending = !pending.is_empty();
        if names != self.loaded {
            tracing::info!(keys = ?names, "ring keys loaded");
            self.loaded = names;
        }
        Ok(Keyring::with_pending(keys, &pending))
    }
}

/// What a `stat` says of a file: enough to notice a change without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FileStamp {
    pub(super) name: std::ffi::OsString,
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    pub(super) fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            name: path.file_name().unwrap_or_default().to_owned(),
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// The ring key files of `name` in `dir` (`<name>-*.sym.key`), sorted; empty when there is
/// no such directory.
pub(super) fn key_files_stamp(dir: &Path, name: &str) -> Vec<FileStamp> {
    let prefix = format!("{name}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stamps: Vec<FileStamp> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            file_name.starts_with(&prefix) && file_name.ends_with(".sym.key")
        })
        .filter_map(|entry| FileStamp::of(&entry.path()))
        .collect();
    stamps.sort_by(|a, b| a.name.cmp(&b.name));
    stamps
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::UNIX_EPOCH;

    fn ring_keys(dir: &Path, activation: Duration) -> RingKeys {
        RingKeys {
            name: Some("prod".into()),
            env_key: None,
            dir: dir.to_path_buf(),
            activation,
            loaded: Vec::new(),
            stamp: Vec::new(),
            pending: false,
        }
    }

    #[test]
    fn ring_keys_are_read_again_only_when_a_key_file_changed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        let old = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        keys::generate_ring_key(&dir, "prod", old, [1; 32]).unwrap();
        let mut keys = ring_keys(&dir, Duration::ZERO);
        assert!(keys.keyring(true).unwrap().is_encrypted());
        assert!(keys.reload().is_none(), "nothing changed");
        std::fs::write(dir.join("other-20240101000000.sym.key"), "not ours").unwrap();
        assert!(keys.reload().is_none(), "another ring's file");
        keys::generate_ring_key(&dir, "prod", old + Duration::from_secs(60), [2; 32]).unwrap();
        assert!(matches!(keys.reload(), Some(Ok(_))), "a new key file");
        assert!(keys.reload().is_none());
    }

    #[test]
    fn a_pending_ring_key_is_read_again_until_it_is_active() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        // Just written, so younger than the activation delay: pending.
        keys::generate_ring_key(&dir, "prod", SystemTime::now(), [1; 32]).unwrap();
        let mut keys = ring_keys(&dir, Duration::from_secs(3600));
        keys.keyring(true).unwrap();
        assert!(matches!(keys.reload(), Some(Ok(_))));
        assert!(matches!(keys.reload(), Some(Ok(_))), "still pending");
        keys.activation = Duration::ZERO;
        assert!(matches!(keys.reload(), Some(Ok(_))), "turns active now");
        assert!(keys.reload().is_none(), "active: nothing left to wait for");
    }
}
