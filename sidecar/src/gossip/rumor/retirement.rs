//! Retirement rumor: the leader of a group, holding quorum, retired a member confirmed dead for
//! longer than the grace period from the group's electorate (`election.rs`). It names the
//! member's ring identity incarnation at the time: the same member back under a renewed
//! identity is a newcomer and counts again. One rumor per group and member; a later record
//! (higher incarnation, then higher term) replaces an earlier one.

use serde::{Deserialize, Serialize};

use super::ServiceGroup;
use crate::gossip::member::MemberId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetirementRumor {
    pub service_group: ServiceGroup,
    /// The retired member.
    pub member_id: MemberId,
    /// Its ring identity incarnation when it was retired.
    pub incarnation: u64,
    /// The leader that retired it, and the finished term it led in.
    pub retired_by: MemberId,
    pub term: u64,
}

impl RetirementRumor {
    /// Whether this record keeps the member out, given the identity incarnation under which
    /// it is seen up here, if it is: only a member back under a newer identity than the record
    /// names (it rejoined after it was retired) is a newcomer. The retiring leader may not
    /// know the identity of a member that died before it joined (it writes 0): the member still
    /// counts as retired wherever it is not seen up.
    pub const fn applies_to(&self, seen_up_as: Option<u64>) -> bool {
        match seen_up_as {
            Some(incarnation) => incarnation <= self.incarnation,
            None => true,
        }
    }

    pub const fn version(&self) -> (u64, u64) {
        (self.incarnation, self.term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::rumor::tests::group;
    use crate::gossip::rumor::{Merge, Rumor};

    fn retirement(incarnation: u64, term: u64, by: u8) -> Rumor {
        Rumor::Retirement(RetirementRumor {
            service_group: group("redis.default"),
            member_id: MemberId([7; 16]),
            incarnation,
            retired_by: MemberId([by; 16]),
            term,
        })
    }

    #[test]
    fn a_later_retirement_replaces_an_earlier_one() {
        assert!(matches!(
            retirement(5, 1, 1).merge(&retirement(6, 1, 1)),
            Merge::Replace(_)
        ));
        assert!(matches!(
            retirement(5, 1, 1).merge(&retirement(5, 2, 2)),
            Merge::Replace(_)
        ));
        assert_eq!(
            retirement(5, 2, 2).merge(&retirement(5, 1, 1)),
            Merge::Stale
        );
        assert_eq!(
            retirement(5, 2, 2).merge(&retirement(5, 2, 2)),
            Merge::Stale
        );
        assert_eq!(
            retirement(5, 2, 2).merge(&retirement(5, 2, 3)),
            Merge::Conflict
        );
    }

    #[test]
    fn a_member_seen_up_under_a_renewed_identity_is_not_retired() {
        let Rumor::Retirement(r) = retirement(5, 1, 1) else {
            unreachable!()
        };
        assert!(r.applies_to(None) && r.applies_to(Some(5)) && r.applies_to(Some(4)));
        assert!(!r.applies_to(Some(6)));
    }
}
