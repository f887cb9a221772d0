//! Service rumor: one member runs one service in one service group. Keyed by (group, member);
//! a higher incarnation wins. Unloading is gossiped as a tombstone (a newer incarnation with
//! `tombstone = true`) so every census drops the member at once; tombstones expire later.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::ServiceGroup;
use crate::gossip::member::MemberId;

/// Where a member's service can be reached, with Habitat's field names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysInfo {
    pub ip: String,
    pub hostname: String,
    pub gossip_ip: String,
    pub gossip_port: u16,
    pub http_gateway_ip: String,
    pub http_gateway_port: u16,
    pub ctl_gateway_ip: String,
    pub ctl_gateway_port: u16,
}

impl SysInfo {
    /// The address the member gossips at, when the rumor names one: `gossip_ip` is the listen
    /// address (often `0.0.0.0`, as in Habitat), and then the advertised `ip` stands for it.
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        let ip = match self.gossip_ip.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => self.ip.parse().ok()?,
        };
        (self.gossip_port != 0).then(|| SocketAddr::new(ip, self.gossip_port))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRumor {
    pub member_id: MemberId,
    pub service_group: ServiceGroup,
    pub incarnation: u64,
    /// Fully qualified package ident, `origin/name/version/release`.
    pub package: String,
    pub initialized: bool,
    pub sys: SysInfo,
    /// Exported configuration, as TOML text.
    pub cfg: Vec<u8>,
    /// The service was unloaded.
    pub tombstone: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::rumor::tests::group;
    use crate::gossip::rumor::{Merge, Rumor};

    #[test]
    fn the_gossip_address_is_the_advertised_ip_when_the_listen_address_is_unspecified() {
        let sys = |ip: &str, gossip_ip: &str, gossip_port| SysInfo {
            ip: ip.into(),
            gossip_ip: gossip_ip.into(),
            gossip_port,
            ..SysInfo::default()
        };
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            sys("10.0.0.5", "0.0.0.0", 9638).gossip_addr(),
            addr("10.0.0.5:9638")
        );
        assert_eq!(
            sys("10.0.0.5", "::", 9638).gossip_addr(),
            addr("10.0.0.5:9638")
        );
        assert_eq!(
            sys("10.0.0.5", "127.0.0.9", 9638).gossip_addr(),
            addr("127.0.0.9:9638")
        );
        assert_eq!(sys("", "0.0.0.0", 9638).gossip_addr(), None);
        assert_eq!(sys("10.0.0.5", "0.0.0.0", 0).gossip_addr(), None);
    }

    pub(crate) fn service(incarnation: u64, tombstone: bool) -> Rumor {
        Rumor::Service(ServiceRumor {
            member_id: MemberId([1; 16]),
            service_group: group("redis.default"),
            incarnation,
            package: "core/redis/7.0.0/20260101000000".into(),
            initialized: false,
            sys: SysInfo::default(),
            cfg: Vec::new(),
            tombstone,
        })
    }

    #[test]
    fn a_tombstone_replaces_the_live_rumor_it_supersedes() {
        assert!(matches!(
            service(1, false).merge(&service(2, true)),
            Merge::Replace(_)
        ));
        assert_eq!(service(2, true).merge(&service(1, false)), Merge::Stale);
    }

    #[test]
    fn same_incarnation_tombstone_is_a_conflict_not_a_flip() {
        assert_eq!(service(2, false).merge(&service(2, true)), Merge::Conflict);
    }
}
