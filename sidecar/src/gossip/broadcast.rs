//! Which rumors ride on which datagram. Each new rumor version is queued with a retransmit
//! budget of about `mult * log10(N + 1)` members (not Habitat's per-member heat, which costs
//! O(N^2) messages): it goes at most once to each member, least-sent rumors first, and leaves
//! the queue when it has gone to that many members or a newer version of the same key replaces
//! it. A datagram to an address that is not an up member carries queued rumors without
//! spending their budget.

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
        let chosen = self.pick(budget, Some(to));
        for &i in &chosen {
            self.items[i].sent_to.push(to);
        }
        let bytes = self.bytes_of(&chosen);
        self.retire_spent();
        bytes
    }

    /// Picks rumors to ride along on a datagram to an address that is not an up member (an
    /// announce to a down member or a configured peer), without charging them.
    pub fn piggyback(&self, budget: usize) -> Vec<Arc<[u8]>> {
        self.bytes_of(&self.pick(budget, None))
    }

    /// Indexes of the rumors that fit in `budget` and have not gone to `to`, least-sent first.
    fn pick(&self, budget: usize, to: Option<SocketAddr>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.items.len())
            .filter(|&i| to.is_none_or(|to| !self.items[i].sent_to.contains(&to)))
            .collect();
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
