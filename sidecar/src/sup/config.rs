//! The supervisor's configuration: what `hab sup run` was given, and peers as the CLI names
//! them (`IP[:PORT]`, `HOST[:PORT]`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::binds::{BindSpec, BindingMode};
use crate::gossip::node::GossipConfig;
use crate::service::{Topology, UpdateStrategy};

/// Everything `hab sup run` was told.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub root: PathBuf,
    pub listen_gossip: SocketAddr,
    pub listen_http: SocketAddr,
    pub listen_ctl: SocketAddr,
    pub peers: Vec<PeerSpec>,
    pub peer_watch_file: Option<PathBuf>,
    pub permanent_peer: bool,
    pub ring: Option<String>,
    /// Content of a key file given through `HAB_RING_KEY`.
    pub ring_key_env: Option<String>,
    /// A newly appeared ring key is only accepted (not sealed with) for this long.
    pub ring_key_activation: Duration,
    pub package: Option<String>,
    pub group: String,
    pub topology: Topology,
    pub update_strategy: UpdateStrategy,
    pub channel: String,
    /// `--url`: the depot the service updates from.
    pub bldr_url: Option<String>,
    /// `--update-period`.
    pub update_period: Duration,
    pub binds: Vec<BindSpec>,
    pub binding_mode: BindingMode,
    pub health_check_interval: Duration,
    pub node_name: Option<String>,
    pub sys_ip: Option<IpAddr>,
    pub gossip: GossipConfig,
    /// See `ElectionConfig::retire_after`.
    pub retire_after: Duration,
    pub http_auth_token: Option<String>,
    /// The ctl gateway's secret from `HAB_CTL_SECRET` (e.g. a Kubernetes Secret); without it
    /// the secret is `CTL_SECRET` in the sup dir, created on first start.
    pub ctl_secret: Option<String>,
}

/// `IP[:PORT]` or `HOST[:PORT]` (port defaults to 9638).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for PeerSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(PeerSpec {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerSpec {
                host: ip.to_string(),
                port: 9638,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>().map_err(|_| {
                    format!("peer {text:?}: expected IP[:PORT] or HOST[:PORT] with a port 1-65535")
                })?,
            ),
            None => (text, 9638),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_host || port == 0 {
            return Err(format!(
                "peer {text:?}: expected IP[:PORT] or HOST[:PORT] with a port 1-65535"
            ));
        }
        Ok(PeerSpec {
            host: host.to_string(),
            port,
        })
    }
}

/// The supervisor's version as `sys.version` shows it.
pub const SUP_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "/habitat-rs");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn peers_parse_in_habitat_forms_and_bad_ones_are_named() {
        let p: PeerSpec = "10.0.0.1".parse().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 9638));
        let p: PeerSpec = "10.0.0.1:9000".parse().unwrap();
        assert_eq!(p.port, 9000);
        let p: PeerSpec = "web-0.web-peers:9638".parse().unwrap();
        assert_eq!(p.host, "web-0.web-peers");
        for bad in ["", "host:99999", "host:0", "a b", "host:port"] {
            let err = bad.parse::<PeerSpec>().unwrap_err();
            assert!(err.contains("IP[:PORT]"), "{bad}: {err}");
        }
    }
}
