//! Members of the ring: the identity every SWIM message carries, and health as Habitat shows it.
//!
//! A member's `incarnation` is persisted and only ever grows (it is at least the wall-clock second
//! of its start), so a restarted member always wins over its previous self and over an older
//! member that used the same address (or the same explicit node name, once that one is silent).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A member's random 128-bit id, shown as 32 lowercase hex characters as in Habitat.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct MemberId(pub [u8; 16]);

impl MemberId {
    pub fn random(rng: &mut impl rand::Rng) -> MemberId {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        MemberId(bytes)
    }

    pub const fn is_nil(&self) -> bool {
        u128::from_be_bytes(self.0) == 0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MemberId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "expected a member id of 32 hex characters, found {text:?}"
            ));
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("member id {text:?}: {e}"))?;
        }
        Ok(MemberId(bytes))
    }
}

/// The highest identity incarnation a member takes or accepts (2^48: unix seconds for millions
/// of years). A forged identity at u64::MAX would otherwise wrap a rejoin (`highest + 1`) to 0;
/// identities above it are dropped on receipt, and an incarnation file above it is ignored.
pub const MAX_INCARNATION: u64 = 1 << 48;

/// What every SWIM message says about its sender. Kept small: it travels in every datagram.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub id: MemberId,
    /// Persisted, grows on every start and every rejoin.
    pub incarnation: u64,
    /// Host or pod name. Not unique: several supervisors on one host, or VMs cloned from one
    /// image, share the host name (see `named`).
    pub node: Arc<str>,
    /// Where the member's gossip (UDP and TCP) listens, as peers reach it.
    pub addr: SocketAddr,
    /// Started with `--permanent-peer`: kept being contacted while it is down.
    pub persistent: bool,
    /// The node name was given explicitly (`--node-name`, `HAB_NODE_NAME`), as a pod's name is:
    /// only then may a newer member with that name replace a silent older one.
    pub named: bool,
}

impl Identity {
    /// Orders two identities claiming the same address or node name: the newer one wins.
    pub fn is_newer_than(&self, other: &Identity) -> bool {
        (self.incarnation, self.id) > (other.incarnation, other.id)
    }

    /// Whether a newer member may take this one's node name: both names were given explicitly
    /// and `newer` is newer (it still has to find this one silent, see `Node::member_up`).
    pub fn may_be_replaced_by(&self, newer: &Identity) -> bool {
        self.named && newer.named && *self.node == *newer.node && newer.is_newer_than(self)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}/{}#{}",
            self.id, self.addr, self.node, self.incarnation
        )
    }
}

impl foca::Identity for Identity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Identity {
            incarnation: self.incarnation.saturating_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // The same identity relayed by a member that predates the `named` flag arrives without
        // it: the copy with the flag wins, so the two never take turns replacing each other.
        self.is_newer_than(adversary)
            || (!adversary.is_newer_than(self) && self.named && !adversary.named)
    }
}

/// Health as Habitat's gateway shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Health {
    Alive,
    Suspect,
    Confirmed,
    Departed,
}

impl Health {
    pub const ALL: [Health; 4] = [
        Health::Alive,
        Health::Suspect,
        Health::Confirmed,
        Health::Departed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Alive => "Alive",
            Health::Suspect => "Suspect",
            Health::Confirmed => "Confirmed",
            Health::Departed => "Departed",
        }
    }

    pub const fn is_up(self) -> bool {
        matches!(self, Health::Alive | Health::Suspect)
    }
}

/// A member as the rest of the sidecar sees it (census, gateway, elections).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub identity: Identity,
    pub health: Health,
}

/// Node names held by more than one up member, each with those members' ids (sorted): the
/// conflicts `/butterfly` and `/metrics` show. A member is its id, so all of them are kept.
pub fn node_name_conflicts<'a>(
    members: impl IntoIterator<Item = (&'a Identity, Health)>,
) -> BTreeMap<Arc<str>, Vec<MemberId>> {
    let mut by_name: BTreeMap<Arc<str>, BTreeSet<MemberId>> = BTreeMap::new();
    for (identity, health) in members {
        if health.is_up() && !identity.node.is_empty() {
            by_name
                .entry(Arc::clone(&identity.node))
                .or_default()
                .insert(identity.id);
        }
    }
    by_name
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(name, ids)| (name, ids.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn member_id_round_trips_through_hex() {
        let id = MemberId([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<MemberId>().unwrap(), id);
    }

    #[test]
    fn member_id_parse_names_the_expected_form() {
        let err = "xyz".parse::<MemberId>().unwrap_err();
        assert!(err.contains("32 hex characters"), "{err}");
    }

    #[test]
    fn newer_incarnation_wins_address_conflicts() {
        use foca::Identity as _;
        let old = Identity {
            id: MemberId([1; 16]),
            incarnation: 10,
            node: "a".into(),
            addr: "127.0.0.1:9638".parse().unwrap(),
            persistent: false,
            named: true,
        };
        let new = old.renew().unwrap();
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        // Relayed by an older member, which drops the flag: the flagged copy wins the tie.
        let stripped = Identity {
            named: false,
            ..old.clone()
        };
        assert!(old.win_addr_conflict(&stripped));
        assert!(!stripped.win_addr_conflict(&old));
        assert!(new.win_addr_conflict(&stripped));
    }

    #[test]
    fn a_name_conflict_is_a_name_held_by_several_up_members() {
        let member = |n: u8, node: &str| Identity {
            id: MemberId([n; 16]),
            incarnation: 10,
            node: node.into(),
            addr: format!("10.0.0.{n}:9638").parse().unwrap(),
            persistent: false,
            named: false,
        };
        let (a, b, c, d) = (
            member(1, "host"),
            member(2, "host"),
            member(3, "host"),
            member(4, "other"),
        );
        let conflicts = node_name_conflicts([
            (&a, Health::Alive),
            (&b, Health::Suspect),
            (&c, Health::Confirmed),
            (&d, Health::Alive),
        ]);
        assert_eq!(
            conflicts.into_iter().collect::<Vec<_>>(),
            vec![(Arc::from("host"), vec![a.id, b.id])],
            "a confirmed member holds no name; a name held once is no conflict"
        );
        assert!(node_name_conflicts([(&a, Health::Alive), (&c, Health::Departed)]).is_empty());
    }

    #[test]
    fn only_an_explicit_name_may_be_taken_over_and_only_by_a_newer_explicit_one() {
        let old = Identity {
            id: MemberId([1; 16]),
            incarnation: 10,
            node: "web-0".into(),
            addr: "10.0.0.1:9638".parse().unwrap(),
            persistent: false,
            named: true,
        };
        let new = Identity {
            id: MemberId([2; 16]),
            incarnation: 11,
            addr: "10.0.0.2:9638".parse().unwrap(),
            ..old.clone()
        };
        assert!(old.may_be_replaced_by(&new));
        assert!(!new.may_be_replaced_by(&old), "the older never takes over");
        let unnamed = |i: &Identity| Identity {
            named: false,
            ..i.clone()
        };
        assert!(!unnamed(&old).may_be_replaced_by(&new));
        assert!(!old.may_be_replaced_by(&unnamed(&new)));
        let elsewhere = Identity {
            node: "web-1".into(),
            ..new.clone()
        };
        assert!(!old.may_be_replaced_by(&elsewhere));
    }
}
