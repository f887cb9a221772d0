//! Which rumors ride on which datagram. Each new rumor version is queued with a retransmit
//! budget of about `mult * log10(N + 1)` members (not Habitat's per-member heat, which costs
//! O(N^2) messages): it goes at most once to each member, least-sent rumors first, and leaves
//! the queue when it has gone to that many members (however it went: on a gossip round, on
//! receipt, or told directly, see `mark_sent`) or a newer version of the same key replaces it.
//! A datagram to an address that is not an up member carries queued rumors without spending
//! their budget.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::rumor::RumorKey;
use super::wire::varint_len;

/// Retransmit budget for a cluster of `members` (at least 1 send).
pub fn retransmit_limit(mult: u32, members: usize) -> u32 {
    let log = ((members as f64) + 1.0).log10();
    ((f64::from(mult) * log).ceil() as u32).max(1)
}

#[derive(Debug)]
struct Queued {
    key: RumorKey,
    bytes: Arc<[u8]>,
    /// The members this version went to (as many as the budget, a handful).
    sent_to: Vec<SocketAddr>,
}

impl Queued {
    fn sent(&self) -> u32 {
        self.sent_to.len() as u32
    }
}

#[derive(Debug, Default)]
pub struct BroadcastQueue {
    items: Vec<Queued>,
    index: HashMap<RumorKey, usize>,
    limit: u32,
}

impl BroadcastQueue {
    pub fn new(limit: u32) -> Self {
        BroadcastQueue {
            limit: limit.max(1),
            ..Default::default()
        }
    }

    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit.max(1);
    }

    pub const fn limit(&self) -> u32 {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues an encoded rumor, replacing any queued older version of the same key.
    pub fn push(&mut self, key: RumorKey, bytes: Arc<[u8]>) {
        match self.index.get(&key) {
            Some(&i) => {
                self.items[i].bytes = bytes;
                self.items[i].sent_to.clear();
            }
            None => {
                self.index.insert(key.clone(), self.items.len());
                self.items.push(Queued {
                    key,
                    bytes,
                    sent_to: Vec::new(),
                });
            }
        }
    }

    /// Picks rumors for one datagram to the up member at `to` with `budget` bytes free (length
    /// prefixes included): those that have not gone to it yet, least-sent first; each is
    /// charged this member.
    pub fn take_for(&mut self, to: SocketAddr, budget: usize) -> Vec<Arc<[u8]>> {
        let chosen = self.pick(budget, Some(to), None);
        self.charge(to, &chosen)
    }

    /// `take_for` among the queued rumors of `keys` only (rumors forwarded on first receipt,
    /// see `Node::forward_fresh`); keys not queued (spent, or too big to ride) are skipped.
    pub fn take_keys_for(
        &mut self,
        to: SocketAddr,
        keys: &[RumorKey],
        budget: usize,
    ) -> Vec<Arc<[u8]>> {
        let chosen = self.pick(budget, Some(to), Some(keys));
        self.charge(to, &chosen)
    }

    /// Records that the `chosen` rumors went to `to`; their bytes.
    fn charge(&mut self, to: SocketAddr, chosen: &[usize]) -> Vec<Arc<[u8]>> {
        for &i in chosen {
            self.items[i].sent_to.push(to);
        }
        let bytes = self.bytes_of(chosen);
        self.retire_spent();
        bytes
    }

    /// The encoded rumor queued under `key`, if any.
    pub fn bytes(&self, key: &RumorKey) -> Option<Arc<[u8]>> {
        self.index
            .get(key)
            .map(|&i| Arc::clone(&self.items[i].bytes))
    }

    /// Records that the rumor under `key` went to `members` by other means (its origin told
    /// every member at once): charged as sends, so it leaves the queue once they reach the
    /// limit.
    pub fn mark_sent(&mut self, key: &RumorKey, members: &[SocketAddr]) {
        let Some(&i) = self.index.get(key) else {
            return;
        };
        let item = &mut self.items[i];
        for &to in members {
            if !item.sent_to.contains(&to) {
                item.sent_to.push(to);
            }
        }
        self.retire_spent();
    }

    /// Picks rumors to ride along on a datagram to an address that is not an up member (an
    /// announce to a down member or a configured peer), without charging them.
    pub fn piggyback(&self, budget: usize) -> Vec<Arc<[u8]>> {
        self.bytes_of(&self.pick(budget, None, None))
    }

    /// Indexes of the rumors that fit in `budget` and have not gone to `to` (of `keys` only,
    /// when given), least-sent first.
    fn pick(&self, budget: usize, to: Option<SocketAddr>, keys: Option<&[RumorKey]>) -> Vec<usize> {
        let mut order: Vec<usize> = match keys {
            Some(keys) => keys
                .iter()
                .filter_map(|k| self.index.get(k).copied())
                .collect(),
            None => (0..self.items.len()).collect(),
        };
        order.retain(|&i| to.is_none_or(|to| !self.items[i].sent_to.contains(&to)));
        order.sort_unstable();
        order.dedup();
        order.sort_by_key(|&i| self.items[i].sent());
        let mut left = budget;
        let mut chosen = Vec::new();
        for i in order {
            let len = self.items[i].bytes.len();
            let cost = len + varint_len(len as u64);
            if cost <= left {
                left -= cost;
                chosen.push(i);
            }
        }
        chosen
    }

    fn bytes_of(&self, chosen: &[usize]) -> Vec<Arc<[u8]>> {
        chosen
            .iter()
            .map(|&i| Arc::clone(&self.items[i].bytes))
            .collect()
    }

    fn retire_spent(&mut self) {
        let limit = self.limit;
        if self.items.iter().all(|q| q.sent() < limit) {
            return;
        }
        self.items.retain(|q| q.sent() < limit);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index = self
            .items
            .iter()
            .enumerate()
            .map(|(i, q)| (q.key.clone(), i))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::member::MemberId;

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 9638))
    }

    fn key(n: u8) -> RumorKey {
        RumorKey::Departure {
            member: MemberId([n; 16]),
        }
    }

    #[test]
    fn limit_grows_with_log_of_cluster_size() {
        assert_eq!(retransmit_limit(4, 1), 2);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 999), 12);
        assert!(retransmit_limit(4, 100_000) <= 21);
    }

    #[test]
    fn a_rumor_goes_to_limit_distinct_members_once_each() {
        let mut q = BroadcastQueue::new(3);
        q.push(key(1), Arc::from(&b"abc"[..]));
        // Seed 9433: SWIM messages back and forth with one member spent the whole budget.
        assert_eq!(q.take_for(peer(1), 100).len(), 1);
        assert!(
            q.take_for(peer(1), 100).is_empty(),
            "not twice to one member"
        );
        let sends: usize = (2..10).map(|n| q.take_for(peer(n), 100).len()).sum();
        assert_eq!(sends, 2);
        assert!(q.is_empty());
    }

    #[test]
    fn riding_to_an_address_that_is_not_an_up_member_spends_no_budget() {
        let mut q = BroadcastQueue::new(2);
        q.push(key(1), Arc::from(&b"abc"[..]));
        for _ in 0..10 {
            assert_eq!(q.piggyback(100).len(), 1);
        }
        let sends: usize = (1..10).map(|n| q.take_for(peer(n), 100).len()).sum();
        assert_eq!(sends, 2);
        assert!(q.piggyback(100).is_empty());
    }

    #[test]
    fn least_sent_goes_first_when_space_is_short() {
        let mut q = BroadcastQueue::new(10);
        q.push(key(1), Arc::from(&[1u8; 50][..]));
        q.take_for(peer(1), 100);
        q.push(key(2), Arc::from(&[2u8; 50][..]));
        let picked = q.take_for(peer(2), 60);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0][0], 2);
    }

    #[test]
    fn taking_by_key_sends_only_those_rumors_and_charges_them_like_any_send() {
        let mut q = BroadcastQueue::new(2);
        q.push(key(1), Arc::from(&b"one"[..]));
        q.push(key(2), Arc::from(&b"two"[..]));
        let picked = q.take_keys_for(peer(1), &[key(2), key(3)], 100);
        assert_eq!(picked.len(), 1);
        assert_eq!(&*picked[0], b"two");
        assert!(
            q.take_keys_for(peer(1), &[key(2)], 100).is_empty(),
            "not twice to one member"
        );
        // The budget is shared with the ordinary sends: one more member spends it.
        assert_eq!(q.take_for(peer(2), 100).len(), 2);
        assert!(q.take_keys_for(peer(3), &[key(2)], 100).is_empty());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn members_told_directly_count_against_the_budget() {
        let mut q = BroadcastQueue::new(3);
        q.push(key(1), Arc::from(&b"abc"[..]));
        q.mark_sent(&key(1), &[peer(1), peer(2)]);
        assert!(q.take_for(peer(1), 100).is_empty(), "told already");
        assert_eq!(q.take_for(peer(3), 100).len(), 1);
        assert!(q.is_empty());
        q.push(key(2), Arc::from(&b"def"[..]));
        q.mark_sent(&key(2), &(1..10).map(peer).collect::<Vec<_>>());
        assert!(q.is_empty(), "told more members than the limit: spent");
        assert!(q.bytes(&key(2)).is_none());
    }

    #[test]
    fn a_newer_version_replaces_the_queued_one_and_resets_its_budget() {
        let mut q = BroadcastQueue::new(2);
        q.push(key(1), Arc::from(&b"old"[..]));
        q.take_for(peer(1), 100);
        q.push(key(1), Arc::from(&b"new"[..]));
        assert_eq!(q.len(), 1);
        assert_eq!(&*q.take_for(peer(1), 100)[0], b"new");
        assert_eq!(q.take_for(peer(2), 100).len(), 1);
        assert!(q.is_empty());
    }
}
