//! Election rumor (and update election, the same shape under another key): one per service
//! group. Merge follows Habitat: a finished election of an equal or newer term wins; a newer
//! term wins; within a term the better candidate (higher suitability, then higher member id)
//! wins and absorbs the votes of the other. The election logic that drives it is `election.rs`.
//!
//! Invariant: merging never loses a vote within a term, and a finished rumor is never replaced
//! by an unfinished one of the same term.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::ServiceGroup;
use crate::gossip::member::MemberId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ElectionStatus {
    Running,
    NoQuorum,
    Finished,
}

impl ElectionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ElectionStatus::Running => "Running",
            ElectionStatus::NoQuorum => "NoQuorum",
            ElectionStatus::Finished => "Finished",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionRumor {
    /// The member that last sent this rumor.
    pub from_id: MemberId,
    /// The candidate this rumor votes for.
    pub member_id: MemberId,
    pub service_group: ServiceGroup,
    pub term: u64,
    pub suitability: u64,
    pub status: ElectionStatus,
    /// Members that voted for `member_id`; sorted, no duplicates.
    pub votes: Vec<MemberId>,
}

/// The highest election round a rumor may carry. Terms are `round << 32 | tag`; a round near
/// 2^32 would lose its top bits in the next round and compare lower than the current term, and
/// the group would never elect again. Two billion rounds are never reached honestly.
pub const MAX_ROUND: u64 = (1 << 31) - 1;

impl ElectionRumor {
    /// Whether this rumor could have been written by our election code: votes sorted without
    /// duplicates (so no voter counts twice) and a round within `MAX_ROUND`. Others are dropped
    /// on receipt.
    pub fn is_plausible(&self) -> bool {
        self.term >> 32 <= MAX_ROUND && self.votes.windows(2).all(|pair| pair[0] < pair[1])
    }

    pub fn new(
        candidate: MemberId,
        service_group: ServiceGroup,
        term: u64,
        suitability: u64,
    ) -> Self {
        ElectionRumor {
            from_id: candidate,
            member_id: candidate,
            service_group,
            term,
            suitability,
            status: ElectionStatus::Running,
            votes: vec![candidate],
        }
    }

    fn candidate_rank(&self) -> (u64, MemberId) {
        (self.suitability, self.member_id)
    }

    fn absorb_votes(&mut self, other: &ElectionRumor) -> bool {
        let before = self.votes.len();
        self.votes.extend_from_slice(&other.votes);
        self.votes.sort_unstable();
        self.votes.dedup();
        self.votes.len() != before
    }

    /// Returns the new stored rumor when `incoming` changes it, `None` when it is stale.
    pub fn merge(&self, incoming: &ElectionRumor) -> Option<ElectionRumor> {
        if self == incoming {
            return None;
        }
        let finished = |r: &ElectionRumor| r.status == ElectionStatus::Finished;
        match incoming.term.cmp(&self.term) {
            Ordering::Greater => Some(incoming.clone()),
            Ordering::Less => None,
            Ordering::Equal if finished(self) => None,
            Ordering::Equal if finished(incoming) => Some(incoming.clone()),
            Ordering::Equal => {
                if incoming.candidate_rank() > self.candidate_rank() {
                    let mut merged = incoming.clone();
                    merged.absorb_votes(self);
                    Some(merged)
                } else if incoming.candidate_rank() == self.candidate_rank() {
                    // Same candidate: union the votes; a NoQuorum/Running flip follows the
                    // incoming sender only when it brings news.
                    let mut merged = self.clone();
                    let changed = merged.absorb_votes(incoming);
                    if changed || merged.status != incoming.status {
                        merged.status = incoming.status;
                        merged.from_id = incoming.from_id;
                        Some(merged)
                    } else {
                        None
                    }
                } else {
                    let mut merged = self.clone();
                    merged.absorb_votes(incoming).then_some(merged)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::rumor::tests::group;
    use proptest::prelude::*;

    fn vote(candidate: u8, voter: u8, term: u64, suitability: u64) -> ElectionRumor {
        let mut r = ElectionRumor::new(
            MemberId([candidate; 16]),
            group("pg.default"),
            term,
            suitability,
        );
        r.from_id = MemberId([voter; 16]);
        r.votes = vec![MemberId([voter; 16])];
        r
    }

    #[test]
    fn only_sorted_unique_votes_within_the_round_bound_are_plausible() {
        let mut r = vote(1, 2, 7 << 32, 0);
        assert!(r.is_plausible());
        r.votes = vec![MemberId([2; 16]), MemberId([3; 16])];
        assert!(r.is_plausible());
        r.votes = vec![MemberId([3; 16]), MemberId([2; 16])];
        assert!(!r.is_plausible(), "unsorted");
        r.votes = vec![MemberId([2; 16]), MemberId([2; 16])];
        assert!(!r.is_plausible(), "a voter twice");
        let r = vote(1, 2, MAX_ROUND << 32, 0);
        assert!(r.is_plausible());
        let r = vote(1, 2, (MAX_ROUND + 1) << 32, 0);
        assert!(!r.is_plausible(), "beyond the last round");
    }

    #[test]
    fn newer_term_wins() {
        assert!(vote(1, 1, 1, 0).merge(&vote(2, 2, 2, 0)).is_some());
        assert!(vote(2, 2, 2, 0).merge(&vote(1, 1, 1, 9)).is_none());
    }

    #[test]
    fn finished_rumor_of_same_term_is_not_replaced_by_a_running_one() {
        let mut done = vote(1, 1, 3, 0);
        done.status = ElectionStatus::Finished;
        assert!(done.merge(&vote(9, 9, 3, 99)).is_none());
        assert_eq!(vote(9, 9, 3, 99).merge(&done), Some(done));
    }

    #[test]
    fn better_candidate_wins_and_absorbs_votes() {
        let merged = vote(1, 1, 0, 0).merge(&vote(2, 2, 0, 5)).unwrap();
        assert_eq!(merged.member_id, MemberId([2; 16]));
        assert_eq!(merged.votes, vec![MemberId([1; 16]), MemberId([2; 16])]);
    }

    #[test]
    fn equal_suitability_is_broken_by_higher_member_id() {
        let merged = vote(1, 1, 0, 0).merge(&vote(2, 2, 0, 0)).unwrap();
        assert_eq!(merged.member_id, MemberId([2; 16]));
        let kept = vote(2, 2, 0, 0).merge(&vote(1, 1, 0, 0)).unwrap();
        assert_eq!(kept.member_id, MemberId([2; 16]));
        assert_eq!(kept.votes.len(), 2);
    }

    proptest! {
        #[test]
        fn merge_is_order_independent_within_a_term(
            a in (0u8..5, 0u8..5, 0u64..3), b in (0u8..5, 0u8..5, 0u64..3), c in (0u8..5, 0u8..5, 0u64..3)
        ) {
            // Folding the same running votes in any order converges on the same rumor.
            let rumors = [vote(a.0, a.1, 0, a.2), vote(b.0, b.1, 0, b.2), vote(c.0, c.1, 0, c.2)];
            let fold = |order: [usize; 3]| {
                let mut stored = rumors[order[0]].clone();
                for &i in &order[1..] {
                    if let Some(m) = stored.merge(&rumors[i]) { stored = m; }
                }
                (stored.member_id, stored.votes)
            };
            let first = fold([0, 1, 2]);
            for order in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
                prop_assert_eq!(&fold(order), &first);
            }
        }

        #[test]
        fn merge_never_loses_a_vote_within_a_term(a in (0u8..5, 0u8..5, 0u64..3), b in (0u8..5, 0u8..5, 0u64..3)) {
            let (x, y) = (vote(a.0, a.1, 0, a.2), vote(b.0, b.1, 0, b.2));
            let merged = x.merge(&y).unwrap_or(x.clone());
            for v in x.votes.iter().chain(&y.votes) {
                prop_assert!(merged.votes.contains(v));
            }
        }
    }
}
