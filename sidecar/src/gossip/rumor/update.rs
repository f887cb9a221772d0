//! Update rumor: what one member tells its group about package updates (rolling strategy). Each
//! member publishes its service's health check (and the release that health is of), a release
//! it updated to and rolled back from (`failed`), and, from the group's update leader, the
//! release the group rolls to (`target`). Keyed by (group, member); a higher incarnation wins.
//! Appended after every older rumor kind (protocol §13): an older member drops it alone.

use serde::{Deserialize, Serialize};

use super::ServiceGroup;
use crate::gossip::member::MemberId;

/// A health check's result as the ring carries it (Habitat's four states).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CheckHealth {
    Ok,
    Warning,
    Critical,
    #[default]
    Unknown,
}

impl CheckHealth {
    /// Ok and Warning pass, as for readiness.
    pub const fn passing(self) -> bool {
        matches!(self, CheckHealth::Ok | CheckHealth::Warning)
    }

    /// Habitat's `/services` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckHealth::Ok => "Ok",
            CheckHealth::Warning => "Warning",
            CheckHealth::Critical => "Critical",
            CheckHealth::Unknown => "Unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRumor {
    pub member_id: MemberId,
    pub service_group: ServiceGroup,
    pub incarnation: u64,
    /// The fully qualified release `health` is of: a check of the previous release never
    /// counts for the next.
    pub package: String,
    pub health: CheckHealth,
    /// The release the group rolls to; only the update leader's counts.
    pub target: Option<String>,
    /// A release this member updated to, failed the health check of, and rolled back from.
    pub failed: Option<String>,
}

/// Longest ident text an update rumor may carry (far above any real ident).
pub const MAX_IDENT_LEN: usize = 1024;

impl UpdateRumor {
    /// Whether the idents it carries are of a sane size.
    pub fn within_limits(&self) -> bool {
        [
            Some(&self.package),
            self.target.as_ref(),
            self.failed.as_ref(),
        ]
        .into_iter()
        .flatten()
        .all(|s| s.len() <= MAX_IDENT_LEN)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::rumor::tests::group;
    use crate::gossip::rumor::{Merge, Rumor, RumorKey};
    use crate::gossip::wire::{decode_rumor, encode_rumor};

    fn rumor(incarnation: u64, target: Option<&str>) -> Rumor {
        Rumor::Update(UpdateRumor {
            member_id: MemberId([7; 16]),
            service_group: group("web.default"),
            incarnation,
            package: "core/web/1.0.0/20260101000000".into(),
            health: CheckHealth::Ok,
            target: target.map(String::from),
            failed: None,
        })
    }

    #[test]
    fn a_higher_incarnation_wins_and_equal_incarnations_with_other_content_conflict() {
        let a = rumor(1, None);
        assert_eq!(
            a.key(),
            RumorKey::Update {
                group: group("web.default"),
                member: MemberId([7; 16])
            }
        );
        assert!(matches!(a.merge(&rumor(2, Some("x"))), Merge::Replace(_)));
        assert_eq!(rumor(2, None).merge(&a), Merge::Stale);
        assert_eq!(a.merge(&a.clone()), Merge::Stale);
        assert_eq!(a.merge(&rumor(1, Some("x"))), Merge::Conflict);
    }

    #[test]
    fn it_round_trips_on_the_wire_after_every_older_variant() {
        let r = rumor(3, Some("core/web/1.1.0/20260102000000"));
        let bytes = encode_rumor(&r);
        assert_eq!(bytes[0], 7, "appended after Retirement (6)");
        assert_eq!(decode_rumor(&bytes).unwrap(), r);
        assert!(r.is_plausible());
        let Rumor::Update(mut long) = r else {
            unreachable!()
        };
        long.failed = Some("x".repeat(MAX_IDENT_LEN + 1));
        assert!(
            !Rumor::Update(long).is_plausible(),
            "oversized idents are dropped"
        );
    }
}
