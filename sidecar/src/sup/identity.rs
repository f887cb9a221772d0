//! Who this supervisor is across restarts: its directories, its member id (kept in
//! `MEMBER_ID`) and incarnation (grown on every start), the host name and advertised address.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::{now_ms, SupervisorConfig};
use crate::error::{Error, Result};
use crate::gossip::member::{MemberId, MAX_INCARNATION};

/// The data dir layout of the supervisor.
pub struct SupDirs {
    pub sup: PathBuf,
    pub data: PathBuf,
}

impl SupDirs {
    pub fn new(root: &Path) -> SupDirs {
        let sup = root.join("sup").join("default");
        SupDirs {
            data: sup.join("data"),
            sup,
        }
    }

    fn member_id_file(&self) -> PathBuf {
        self.sup.join("MEMBER_ID")
    }

    fn incarnation_file(&self) -> PathBuf {
        self.sup.join("INCARNATION")
    }

    pub fn rumor_file(&self) -> PathBuf {
        self.data.join("rumors.dat")
    }
}

/// Loads the persisted member id (or makes one) and the next incarnation, which is above every
/// earlier one and at least the current wall-clock second.
pub fn load_identity(dirs: &SupDirs) -> Result<(MemberId, u64)> {
    std::fs::create_dir_all(&dirs.data).map_err(|e| Error::io(&dirs.data, e))?;
    let id_file = dirs.member_id_file();
    let id = match std::fs::read_to_string(&id_file) {
        Ok(text) => match text.parse::<MemberId>() {
            Ok(id) => id,
            Err(problem) => {
                let aside = id_file.with_extension(format!("corrupt-{}", now_ms()));
                tracing::warn!(file = %id_file.display(), %problem, moved_to = %aside.display(),
                    "member id file is corrupt; moved aside, starting as a new member");
                let _ = std::fs::rename(&id_file, &aside);
                new_member_id(&id_file)?
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_member_id(&id_file)?,
        Err(e) => return Err(Error::io(&id_file, e)),
    };
    let inc_file = dirs.incarnation_file();
    let previous = std::fs::read_to_string(&inc_file)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|previous| *previous < MAX_INCARNATION)
        .unwrap_or(0);
    let incarnation = previous.saturating_add(1).max(now_ms() / 1000);
    persist_incarnation(dirs, incarnation)?;
    Ok((id, incarnation))
}

fn new_member_id(path: &Path) -> Result<MemberId> {
    let id = MemberId::random(&mut rand::rng());
    crate::files::write_atomically(path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}

pub(super) fn persist_incarnation(dirs: &SupDirs, incarnation: u64) -> Result<()> {
    crate::files::write_atomically(
        &dirs.incarnation_file(),
        format!("{incarnation}\n").as_bytes(),
        0o600,
    )
}

/// Picks the address peers reach this member at.
pub(super) fn advertised_ip(config: &SupervisorConfig) -> IpAddr {
    if let Some(ip) = config.sys_ip {
        return ip;
    }
    if !config.listen_gossip.ip().is_unspecified() {
        return config.listen_gossip.ip();
    }
    // The host name resolving to a non-loopback address is how pods and most VMs find theirs.
    let host = hostname();
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() && !a.ip().is_loopback()))
        .map(|a| a.ip());
    resolved.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn incarnation_grows_across_restarts_and_member_id_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let dirs = SupDirs::new(root.path());
        let (id1, inc1) = load_identity(&dirs).unwrap();
        let (id2, inc2) = load_identity(&dirs).unwrap();
        assert_eq!(id1, id2);
        assert!(inc2 > inc1);
    }

    #[test]
    fn a_corrupt_member_id_file_is_moved_aside() {
        let root = tempfile::tempdir().unwrap();
        let dirs = SupDirs::new(root.path());
        std::fs::create_dir_all(&dirs.sup).unwrap();
        std::fs::write(dirs.member_id_file(), "garbage").unwrap();
        let (id, _) = load_identity(&dirs).unwrap();
        assert!(!id.is_nil());
        let moved = std::fs::read_dir(&dirs.sup)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(moved);
    }
}
