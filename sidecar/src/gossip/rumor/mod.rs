//! Rumors: the replicated facts of the ring, one file per kind, each with Habitat's key and merge
//! rule. A merge is a pure decision between the stored rumor and an incoming one; it never looks
//! at clocks or sockets, so every rule is unit- and property-tested.
//!
//! Invariant: for one key, a rumor is only ever replaced by one that its merge rule calls newer;
//! equal versions with different content are rejected (and counted), never silently flip-flopped.

pub mod departure;
pub mod election;
pub mod retirement;
pub mod service;
pub mod service_config;
pub mod service_file;
pub mod update;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use departure::DepartureRumor;
pub use election::{ElectionRumor, ElectionStatus};
pub use retirement::RetirementRumor;
pub use service::{ServiceRumor, SysInfo};
pub use service_config::ServiceConfigRumor;
pub use service_file::ServiceFileRumor;
pub use update::{CheckHealth, UpdateRumor};

use super::member::MemberId;

/// Largest config or file payload a rumor may carry (hard limit; larger input is refused with a
/// clear error before anything is gossiped).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// `<service>.<group>[@<org>]`, Habitat's service group name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct ServiceGroup(String);

impl TryFrom<String> for ServiceGroup {
    type Error = String;

    /// Names arriving from the network are validated like names typed by a user.
    fn try_from(text: String) -> Result<Self, Self::Error> {
        ServiceGroup::parse(&text)
    }
}

impl ServiceGroup {
    /// Validates `svc.group` or `svc.group@org`.
    pub fn parse(text: &str) -> Result<ServiceGroup, String> {
        let (body, org) = match text.split_once('@') {
            Some((body, org)) => (body, Some(org)),
            None => (text, None),
        };
        let valid_part = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let parts: Vec<&str> = body.split('.').collect();
        if parts.len() != 2 || !parts.iter().all(|p| valid_part(p)) || !org.is_none_or(valid_part) {
            return Err(format!(
                "service group {text:?}: expected SERVICE.GROUP or SERVICE.GROUP@ORG \
                 (letters, digits, '-' and '_')"
            ));
        }
        Ok(ServiceGroup(text.to_string()))
    }

    pub fn new(service: &str, group: &str) -> Result<ServiceGroup, String> {
        ServiceGroup::parse(&format!("{service}.{group}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn body(&self) -> &str {
        self.0.split('@').next().unwrap_or(&self.0)
    }

    pub fn service(&self) -> &str {
        self.body().split('.').next().unwrap_or_default()
    }

    pub fn group(&self) -> &str {
        self.body().split('.').nth(1).unwrap_or_default()
    }

    pub fn org(&self) -> Option<&str> {
        self.0.split_once('@').map(|(_, org)| org)
    }
}

impl fmt::Display for ServiceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of rumor, as Habitat names them in `/butterfly`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RumorKind {
    Service,
    ServiceConfig,
    ServiceFile,
    Election,
    ElectionUpdate,
    Departure,
    Retirement,
    Update,
}

impl RumorKind {
    pub const ALL: [RumorKind; 8] = [
        RumorKind::Service,
        RumorKind::ServiceConfig,
        RumorKind::ServiceFile,
        RumorKind::Election,
        RumorKind::ElectionUpdate,
        RumorKind::Departure,
        RumorKind::Retirement,
        RumorKind::Update,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RumorKind::Service => "service",
            RumorKind::ServiceConfig => "service_config",
            RumorKind::ServiceFile => "service_file",
            RumorKind::Election => "election",
            RumorKind::ElectionUpdate => "election_update",
            RumorKind::Departure => "departure",
            RumorKind::Retirement => "retirement",
            RumorKind::Update => "update",
        }
    }
}

/// What identifies a rumor: at most one rumor per key is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RumorKey {
    Service {
        group: ServiceGroup,
        member: MemberId,
    },
    ServiceConfig {
        group: ServiceGroup,
    },
    ServiceFile {
        group: ServiceGroup,
        filename: String,
    },
    Election {
        group: ServiceGroup,
    },
    ElectionUpdate {
        group: ServiceGroup,
    },
    Departure {
        member: MemberId,
    },
    Retirement {
        group: ServiceGroup,
        member: MemberId,
    },
    Update {
        group: ServiceGroup,
        member: MemberId,
    },
}

impl RumorKey {
    pub const fn kind(&self) -> RumorKind {
        match self {
            RumorKey::Service { .. } => RumorKind::Service,
            RumorKey::ServiceConfig { .. } => RumorKind::ServiceConfig,
            RumorKey::ServiceFile { .. } => RumorKind::ServiceFile,
            RumorKey::Election { .. } => RumorKind::Election,
            RumorKey::ElectionUpdate { .. } => RumorKind::ElectionUpdate,
            RumorKey::Departure { .. } => RumorKind::Departure,
            RumorKey::Retirement { .. } => RumorKind::Retirement,
            RumorKey::Update { .. } => RumorKind::Update,
        }
    }
}

/// One replicated fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rumor {
    Service(ServiceRumor),
    ServiceConfig(ServiceConfigRumor),
    ServiceFile(ServiceFileRumor),
    Election(ElectionRumor),
    ElectionUpdate(ElectionRumor),
    Departure(DepartureRumor),
    /// Appended last: an older member drops it alone (protocol §13).
    Retirement(RetirementRumor),
    /// Appended after `Retirement`, for the same reason.
    Update(UpdateRumor),
}

/// The result of offering an incoming rumor against the stored one of the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The incoming rumor is newer: store it (it may have absorbed parts of the stored one).
    Replace(Box<Rumor>),
    /// Nothing new.
    Stale,
    /// Same version, different content: rejected and counted.
    Conflict,
}

impl Rumor {
    pub fn key(&self) -> RumorKey {
        match self {
            Rumor::Service(r) => RumorKey::Service {
                group: r.service_group.clone(),
                member: r.member_id,
            },
            Rumor::ServiceConfig(r) => RumorKey::ServiceConfig {
                group: r.service_group.clone(),
            },
            Rumor::ServiceFile(r) => RumorKey::ServiceFile {
                group: r.service_group.clone(),
                filename: r.filename.clone(),
            },
            Rumor::Election(r) => RumorKey::Election {
                group: r.service_group.clone(),
            },
            Rumor::ElectionUpdate(r) => RumorKey::ElectionUpdate {
                group: r.service_group.clone(),
            },
            Rumor::Departure(r) => RumorKey::Departure {
                member: r.member_id,
            },
            Rumor::Retirement(r) => RumorKey::Retirement {
                group: r.service_group.clone(),
                member: r.member_id,
            },
            Rumor::Update(r) => RumorKey::Update {
                group: r.service_group.clone(),
                member: r.member_id,
            },
        }
    }

    /// Whether an operator's command creates this kind (`hab config apply`, `hab file upload`,
    /// `hab sup depart`): rare, awaited by a person, and told by the member that took the
    /// command to every member at once (see `Node::publish`).
    pub const fn is_command(&self) -> bool {
        matches!(
            self,
            Rumor::ServiceConfig(_) | Rumor::ServiceFile(_) | Rumor::Departure(_)
        )
    }

    pub const fn kind(&self) -> RumorKind {
        match self {
            Rumor::Service(_) => RumorKind::Service,
            Rumor::ServiceConfig(_) => RumorKind::ServiceConfig,
            Rumor::ServiceFile(_) => RumorKind::ServiceFile,
            Rumor::Election(_) => RumorKind::Election,
            Rumor::ElectionUpdate(_) => RumorKind::ElectionUpdate,
            Rumor::Departure(_) => RumorKind::Departure,
            Rumor::Retirement(_) => RumorKind::Retirement,
            Rumor::Update(_) => RumorKind::Update,
        }
    }

    /// Applies the merge rule of this rumor's kind. `self` is the stored rumor; both must have
    /// the same key (a different kind or key is `Stale`: it can never replace this one).
    pub fn merge(&self, incoming: &Rumor) -> Merge {
        if self.key() != incoming.key() {
            return Merge::Stale;
        }
        match (self, incoming) {
            (Rumor::Service(a), Rumor::Service(b)) => {
                by_incarnation(a.incarnation, b.incarnation, a == b, incoming)
            }
            (Rumor::ServiceConfig(a), Rumor::ServiceConfig(b)) => {
                by_incarnation(a.incarnation, b.incarnation, a == b, incoming)
            }
            (Rumor::ServiceFile(a), Rumor::ServiceFile(b)) => {
                by_incarnation(a.incarnation, b.incarnation, a == b, incoming)
            }
            (Rumor::Update(a), Rumor::Update(b)) => {
                by_incarnation(a.incarnation, b.incarnation, a == b, incoming)
            }
            (Rumor::Election(a), Rumor::Election(b)) => match a.merge(b) {
                Some(merged) => Merge::Replace(Box::new(Rumor::Election(merged))),
                None => Merge::Stale,
            },
            (Rumor::ElectionUpdate(a), Rumor::ElectionUpdate(b)) => match a.merge(b) {
                Some(merged) => Merge::Replace(Box::new(Rumor::ElectionUpdate(merged))),
                None => Merge::Stale,
            },
            (Rumor::Retirement(a), Rumor::Retirement(b)) => {
                use std::cmp::Ordering;
                match b.version().cmp(&a.version()) {
                    Ordering::Greater => Merge::Replace(Box::new(incoming.clone())),
                    Ordering::Less => Merge::Stale,
                    Ordering::Equal if a == b => Merge::Stale,
                    Ordering::Equal => Merge::Conflict,
                }
            }
            // A departure is permanent: the first one stands.
            _ => Merge::Stale,
        }
    }

    /// Whether the numbers in a rumor are ones our own code writes (see
    /// `ElectionRumor::is_plausible`; a retirement names an identity incarnation within
    /// `MAX_INCARNATION` and a term within `MAX_ROUND`). A received rumor that is not is dropped
    /// and counted (`implausible_rumor`): stored, it could stop a group's elections for good.
    pub fn is_plausible(&self) -> bool {
        match self {
            Rumor::Election(r) | Rumor::ElectionUpdate(r) => r.is_plausible(),
            Rumor::Retirement(r) => {
                r.incarnation <= crate::gossip::member::MAX_INCARNATION
                    && r.term >> 32 <= election::MAX_ROUND
            }
            Rumor::Update(r) => r.within_limits(),
            _ => true,
        }
    }

    /// Validates a rumor, created here or received: payload limits and safe file names (a file
    /// rumor's name becomes a path under the service's `files/`).
    pub fn check_limits(&self) -> Result<(), crate::error::Error> {
        if let Rumor::ServiceFile(r) = self {
            let name = &r.filename;
            let safe = !name.is_empty()
                && name.len() <= 255
                && name != "."
                && name != ".."
                && !name.contains(['/', '\\', '\0']);
            if !safe {
                return Err(crate::error::Error::invalid(
                    format!("file name {name:?} for {}", r.service_group),
                    "expected a plain file name (no '/', not '.' or '..', at most 255 bytes)",
                ));
            }
        }
        let (what, size) = match self {
            Rumor::ServiceConfig(r) => (format!("config for {}", r.service_group), r.config.len()),
            Rumor::ServiceFile(r) => (
                format!("file {} for {}", r.filename, r.service_group),
                r.body.len(),
            ),
            Rumor::Service(r) => (format!("exported cfg of {}", r.service_group), r.cfg.len()),
            _ => return Ok(()),
        };
        if size > MAX_PAYLOAD_BYTES {
            return Err(crate::error::Error::TooLarge {
                what,
                size,
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(())
    }
}

/// Habitat's rule for versioned rumors: a higher incarnation wins; an equal incarnation with
/// different content is a conflict.
fn by_incarnation(stored: u64, incoming: u64, same_content: bool, rumor: &Rumor) -> Merge {
    use std::cmp::Ordering;
    match incoming.cmp(&stored) {
        Ordering::Greater => Merge::Replace(Box::new(rumor.clone())),
        Ordering::Less => Merge::Stale,
        Ordering::Equal if same_content => Merge::Stale,
        Ordering::Equal => Merge::Conflict,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn group(name: &str) -> ServiceGroup {
        ServiceGroup::parse(name).unwrap()
    }

    pub(crate) fn config(incarnation: u64, body: &[u8]) -> Rumor {
        Rumor::ServiceConfig(ServiceConfigRumor {
            from_id: "test".into(),
            service_group: group("redis.default"),
            incarnation,
            encrypted: false,
            config: body.to_vec(),
        })
    }

    #[test]
    fn service_group_accepts_habitat_forms() {
        let sg = group("redis.prod@acme");
        assert_eq!(
            (sg.service(), sg.group(), sg.org()),
            ("redis", "prod", Some("acme"))
        );
        let sg = group("redis.default");
        assert_eq!(
            (sg.service(), sg.group(), sg.org()),
            ("redis", "default", None)
        );
    }

    #[test]
    fn service_group_rejects_malformed_names_with_the_expected_form() {
        for bad in [
            "redis", "redis.", ".default", "a.b.c", "a b.c", "a.b@", "a.b@c@d",
        ] {
            let err = ServiceGroup::parse(bad).unwrap_err();
            assert!(err.contains("SERVICE.GROUP"), "{bad}: {err}");
        }
    }

    #[test]
    fn service_groups_from_the_network_are_validated() {
        let bytes = postcard::to_stdvec(&"no-dot".to_string()).unwrap();
        assert!(postcard::from_bytes::<ServiceGroup>(&bytes).is_err());
        let bytes = postcard::to_stdvec(&"redis.default".to_string()).unwrap();
        assert_eq!(
            postcard::from_bytes::<ServiceGroup>(&bytes).unwrap(),
            group("redis.default")
        );
    }

    #[test]
    fn file_rumors_must_name_a_plain_file() {
        let file = |name: &str| {
            Rumor::ServiceFile(ServiceFileRumor {
                from_id: "t".into(),
                service_group: group("redis.default"),
                incarnation: 1,
                encrypted: false,
                filename: name.into(),
                body: vec![],
            })
        };
        assert!(file("redis.conf").check_limits().is_ok());
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\\b"] {
            let err = file(bad).check_limits().unwrap_err().to_string();
            assert!(err.contains("plain file name"), "{bad}: {err}");
        }
    }

    #[test]
    fn equal_incarnation_with_different_content_is_a_conflict() {
        assert_eq!(config(3, b"a").merge(&config(3, b"b")), Merge::Conflict);
        assert_eq!(config(3, b"a").merge(&config(3, b"a")), Merge::Stale);
    }

    #[test]
    fn payload_above_64k_is_refused_with_its_size() {
        let err = config(1, &vec![0; MAX_PAYLOAD_BYTES + 1])
            .check_limits()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("65537 bytes") && err.contains("65536"),
            "{err}"
        );
        assert!(config(1, &vec![0; MAX_PAYLOAD_BYTES])
            .check_limits()
            .is_ok());
    }

    proptest! {
        #[test]
        fn higher_incarnation_always_wins(a in 0u64..1000, b in 0u64..1000, x in any::<Vec<u8>>(), y in any::<Vec<u8>>()) {
            let stored = config(a, &x);
            let incoming = config(b, &y);
            match stored.merge(&incoming) {
                Merge::Replace(r) => { prop_assert!(b > a); prop_assert_eq!(*r, incoming); }
                Merge::Stale => prop_assert!(b < a || (a == b && x == y)),
                Merge::Conflict => prop_assert!(a == b && x != y),
            }
        }

        #[test]
        fn merge_never_goes_backwards(a in 0u64..1000, b in 0u64..1000) {
            // Whichever order two versions arrive in, the store ends at the higher one.
            let (ra, rb) = (config(a, b"same"), config(b, b"same"));
            let apply = |stored: Rumor, incoming: &Rumor| match stored.merge(incoming) {
                Merge::Replace(r) => *r,
                _ => stored,
            };
            let ab = apply(ra.clone(), &rb);
            let ba = apply(rb, &ra);
            prop_assert_eq!(ab, ba);
        }
    }
}
