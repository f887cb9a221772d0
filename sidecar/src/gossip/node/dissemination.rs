//! How rumors spread: what a node takes in (`accept`, `publish`: merged into the store, then
//! spread and reported when new), and how it sends them on. Small rumors are queued and ride
//! piggyback on SWIM datagrams or on gossip rounds (`send_gossip_round`: shuffled round-robin
//! targets, each rumor sent a bounded number of times), the first round at once: when
//! published, and when first learnt from a datagram (`forward_fresh`); a command's rumor is
//! told to every member by its origin (`tell_every_member`). Large ones are pushed over TCP to
//! a few members. `flush_swim`, which inputs end with, turns foca's output into datagrams
//! carrying queued rumors. Invariants: a rumor is spread only when it changed the store; a
//! member sends a rumor version to at most `limit` members (a command's origin: to all);
//! piggybacked rumors fit the datagram's budget (`rumor_budget`); a frame of rumors stops at
//! the soft limit (`cap_frame`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Node, NodeEvent, NodeTimer};
use crate::gossip::broadcast::retransmit_limit;
use crate::gossip::rumor::{Rumor, RumorKey};
use crate::gossip::store::Insert;
use crate::gossip::wire::{self, Frame, FRAME_SOFT_LIMIT};

/// Who made a rumor the node takes in: peers' rumors count against the store's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Own,
    Peer,
}

impl Node {
    /// Publishes a rumor created here (a loaded service, `hab config apply`, an election vote).
    pub fn publish(&mut self, now_ms: u64, rumor: Rumor) -> crate::error::Result<Insert> {
        self.advance_clock(now_ms);
        rumor.check_limits()?;
        let command = rumor.is_command().then(|| rumor.key());
        let outcome = self.accept_from(rumor, Origin::Own);
        // Our own news goes out now rather than at the next gossip tick: an election takes
        // three such hops (candidacy, votes, declaration), each otherwise waiting up to a
        // gossip interval. The round carries whatever else is queued; rumors we relay are
        // forwarded on receipt (`forward_fresh`), then wait for the ticks, which batch them.
        if matches!(outcome, Insert::New | Insert::Updated) {
            if let Some(key) = command {
                self.tell_every_member(&key);
            }
            self.send_gossip_round();
        }
        self.flush_swim();
        Ok(outcome)
    }

    /// Sends a command's rumor (`Rumor::is_command`) to every up member at once: one datagram
    /// each, N - 1 in all, once per command. An epidemic can miss a member, which then waits
    /// for anti-entropy, seconds later (in simulation, 2 rumors in 200 at 50 members); a
    /// person waiting for `hab config apply` to take effect everywhere would see that. Peers
    /// still spend their own budget on it, which covers datagrams lost here. Rumors too big
    /// for a datagram were pushed over TCP to a few members already.
    fn tell_every_member(&mut self, key: &RumorKey) {
        let Some(bytes) = self.queue.bytes(key) else {
            return;
        };
        if self.left {
            return;
        }
        let addrs: Vec<SocketAddr> = self
            .up
            .ids()
            .iter()
            .filter_map(|id| self.members.get(id).map(|r| r.identity.addr))
            .collect();
        for &addr in &addrs {
            self.send_datagram(addr, None, std::slice::from_ref(&bytes));
        }
        self.queue.mark_sent(key, &addrs);
    }

    /// Queues every rumor about this member (at start: peers may have missed them while it was
    /// away).
    pub(super) fn queue_all_own_rumors(&mut self) {
        let me = self.identity().id;
        let mut own: Vec<Rumor> = self
            .store
            .iter()
            .filter(|r| matches!(r, Rumor::Service(s) if s.member_id == me))
            .cloned()
            .collect();
        own.sort_by_cached_key(Rumor::key); // Queued in a fixed order, not the store's.
        for rumor in own {
            self.disseminate(&rumor);
        }
    }

    /// Merges the rumors of a frame (see `accept`).
    pub(super) fn accept_all(&mut self, rumors: Vec<Rumor>) {
        for rumor in rumors {
            self.stats.rumors_received += 1;
            self.accept(rumor);
        }
    }

    /// Merges a rumor into the store; a change is spread further and reported.
    pub(super) fn accept(&mut self, rumor: Rumor) -> Insert {
        self.accept_from(rumor, Origin::Peer)
    }

    /// `accept` for rumors from anyone; ours (`Origin::Own`) are not held to peers' limits.
    fn accept_from(&mut self, rumor: Rumor, origin: Origin) -> Insert {
        if rumor.check_limits().is_err() {
            self.stats.drop("too_big");
            return Insert::Stale;
        }
        if !rumor.is_plausible() {
            self.stats.drop("implausible_rumor");
            return Insert::Stale;
        }
        if let Rumor::Service(s) = &rumor {
            // Rumors about members we already forgot as departed stay out.
            if self.store.departed(s.member_id) {
                self.stats.drop("departed_member");
                return Insert::Stale;
            }
        }
        let key = rumor.key();
        let outcome = match origin {
            Origin::Own => self.store.insert_own(rumor, self.now_ms),
            Origin::Peer => self.store.insert(rumor, self.now_ms),
        };
        match outcome {
            Insert::Conflict => self.stats.drop("conflict"),
            Insert::Full => self.stats.drop("store_full"),
            Insert::New | Insert::Updated => {
                self.stats.rumors_accepted += 1;
                self.sync_soon();
                if let Some(stored) = self.store.get(&key).cloned() {
                    self.disseminate(&stored);
                    if let Rumor::Departure(d) = &stored {
                        self.on_departure(d.member_id);
                    }
                }
                self.events.push(NodeEvent::RumorChanged(key));
            }
            Insert::Stale => {}
        }
        outcome
    }

    /// Small rumors ride on datagrams; large ones are pushed over TCP to a few members.
    fn disseminate(&mut self, rumor: &Rumor) {
        let encoded: Arc<[u8]> = wire::encode_rumor(rumor).into();
        let fits =
            encoded.len() + wire::varint_len(encoded.len() as u64) <= self.config.rumor_budget(0);
        if fits {
            self.queue.push(rumor.key(), encoded);
            self.arm_gossip();
        } else {
            let from = self.identity().id;
            let targets: Vec<SocketAddr> = self
                .up
                .gossip_targets(&mut self.rng, self.config.rumor_fanout)
                .into_iter()
                .filter_map(|id| self.members.get(&id).map(|r| r.identity.addr))
                .collect();
            for addr in targets {
                self.stats.rumors_sent += 1;
                let frame = Frame::Push {
                    from,
                    rumors: vec![rumor.clone()],
                };
                self.send_frame(addr, 0, &frame, false);
            }
        }
    }

    /// Turns what foca asked for into datagrams (with piggybacked rumors), timers and events.
    pub(super) fn flush_swim(&mut self) {
        loop {
            let out = self.membership.take_output();
            let idle = out.sends.is_empty() && out.timers.is_empty() && out.events.is_empty();
            if idle && out.heard_from.is_empty() {
                break;
            }
            for (to, swim) in out.sends {
                let budget = self.config.rumor_budget(swim.len());
                // Rumors ride on every SWIM datagram, but only one to an up member spends
                // their budget (once per member): announces to down members and configured
                // peers would otherwise use it up before the gossip tick reaches members that
                // can hear it (seed 9433).
                let to_up_member = self.by_addr.get(&to).is_some_and(|id| self.up.contains(id));
                let rumors = if self.left {
                    Vec::new()
                } else if to_up_member {
                    self.queue.take_for(to, budget)
                } else {
                    self.queue.piggyback(budget)
                };
                self.send_datagram(to, Some(&swim), &rumors);
            }
            for (timer, after) in out.timers {
                let after = self.membership.stretch(&timer, after);
                self.schedule(after, NodeTimer::Swim(timer));
            }
            for event in out.events {
                self.on_membership_event(event);
            }
            // After the events: a datagram from the challenged member itself may have brought
            // news of its challenger.
            for id in out.heard_from {
                if self.name_challenges.remove(&id).is_some() {
                    tracing::debug!(member = %id, "answered a name challenge: kept");
                }
            }
        }
        // A rumor goes once to each member: in a ring smaller than the budget, to all of them.
        let limit = retransmit_limit(self.config.rumor_retransmit_mult, self.up.len() + 1)
            .max(self.gossip_fanout() as u32)
            .min(self.up.len().max(1) as u32);
        self.queue.set_limit(limit);
        self.arm_gossip();
    }

    /// Arms the gossip tick while rumors or foca's membership updates wait to be sent and
    /// someone is up to hear them (a member that comes up re-arms it, see `insert_up`); an idle
    /// member has no tick at all.
    pub(super) fn arm_gossip(&mut self) {
        let work = !self.queue.is_empty() || self.membership.has_updates();
        if !self.gossip_armed && work && self.up.len() > 0 && !self.left {
            self.gossip_armed = true;
            self.schedule(self.config.swim.gossip_interval, NodeTimer::RumorGossip);
        }
    }

    /// The gossip timer fired: one round of queued rumors, and foca's membership updates.
    pub(super) fn gossip_tick(&mut self) {
        self.gossip_armed = false;
        self.send_gossip_round();
        if self.membership.has_updates() && !self.left {
            self.membership.gossip();
        }
    }

    /// Sends the queued rumors to this round's gossip targets.
    fn send_gossip_round(&mut self) {
        if self.queue.is_empty() || self.left {
            return;
        }
        // Targets in randomized round-robin order: a rumor's sends over consecutive ticks go
        // to distinct members. Drawn at random each tick, they often repeat, and a member
        // missed by every holder waits for anti-entropy. A ring of at most twice the fanout
        // (a group of 3 to 7 pods) is told all at once: a log-sized epidemic has too few
        // relays there to reach everyone reliably, and everyone costs a few datagrams more.
        let fanout = self.gossip_fanout();
        let targets = self.up.gossip_targets(&mut self.rng, fanout);
        for id in targets {
            let Some(addr) = self.members.get(&id).map(|r| r.identity.addr) else {
                continue;
            };
            let rumors = self.queue.take_for(addr, self.config.rumor_budget(0));
            if !rumors.is_empty() {
                self.send_datagram(addr, None, &rumors);
            }
        }
    }

    /// Sends rumors this member just learnt from a datagram (`fresh`, first receipt of each
    /// version) on at once to `rumor_fanout` members other than `from`, instead of at the next
    /// gossip tick: a new rumor then spreads hop by hop at network speed (about log_4 N hops)
    /// rather than one hop per gossip interval. The sends come out of the rumor's retransmit
    /// budget like any other (`take_keys_for`), so a rumor still costs at most `limit` sends
    /// per member: each member forwards a version once, and a ring-wide rumor costs at most
    /// `fanout * N` of these datagrams. Rumors learnt by anti-entropy are catch-up, not news,
    /// and wait for the ticks; large ones were pushed over TCP on receipt already.
    pub(super) fn forward_fresh(&mut self, from: SocketAddr, fresh: &[RumorKey]) {
        if fresh.is_empty() || self.left {
            return;
        }
        let sender = self.by_addr.get(&from).copied();
        let fanout = self.config.rumor_fanout;
        let mut targets = self.up.gossip_targets(&mut self.rng, fanout);
        if let Some(at) = targets.iter().position(|id| Some(*id) == sender) {
            // The sender holds it: the round's next member instead.
            targets.remove(at);
            for id in self.up.gossip_targets(&mut self.rng, 1) {
                if Some(id) != sender && !targets.contains(&id) {
                    targets.push(id);
                }
            }
        }
        for id in targets {
            let Some(addr) = self.members.get(&id).map(|r| r.identity.addr) else {
                continue;
            };
            let rumors = self
                .queue
                .take_keys_for(addr, fresh, self.config.rumor_budget(0));
            if !rumors.is_empty() {
                self.stats.rumors_forwarded += rumors.len() as u64;
                self.send_datagram(addr, None, &rumors);
            }
        }
    }

    /// Members a gossip tick sends to: the configured fanout, or every up member in a ring of
    /// at most twice the fanout (see `send_gossip_round`).
    fn gossip_fanout(&self) -> usize {
        if self.up.len() <= 2 * self.config.rumor_fanout {
            self.up.len()
        } else {
            self.config.rumor_fanout
        }
    }
}

/// Takes rumors until a frame's soft limit; the rest waits for the next sync round.
pub(super) fn cap_frame(rumors: impl Iterator<Item = Rumor>) -> Vec<Rumor> {
    let mut size = 0;
    let mut out = Vec::new();
    for rumor in rumors {
        let len = wire::encode_rumor(&rumor).len();
        if size + len > FRAME_SOFT_LIMIT && !out.is_empty() {
            break;
        }
        size += len;
        out.push(rumor);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::member::MemberId;
    use crate::gossip::node::tests::node;
    use crate::gossip::rumor::{ElectionRumor, ElectionStatus, ServiceGroup};

    fn election(term: u64, votes: &[u8]) -> Rumor {
        let mut r = ElectionRumor::new(
            MemberId([2; 16]),
            ServiceGroup::parse("pg.default").unwrap(),
            term,
            0,
        );
        r.status = ElectionStatus::Finished;
        r.votes = votes.iter().map(|v| MemberId([*v; 16])).collect();
        Rumor::Election(r)
    }

    #[test]
    fn implausible_numbers_in_a_received_rumor_are_dropped_and_counted() {
        let mut node = node();
        let round = |r: u64| r << 32 | 5;
        for bad in [
            // One voter three times: a majority of 5 alone.
            election(round(3), &[9, 9, 9]),
            election(round(3), &[4, 3]),
            // The next round would lose its top bits: the group would never elect again.
            election(round(0xFFFF_FFFF), &[3, 4, 5]),
        ] {
            assert_eq!(node.accept(bad.clone()), Insert::Stale, "{bad:?}");
            assert!(node.store().get(&bad.key()).is_none());
        }
        assert_eq!(node.stats().dropped.get("implausible_rumor"), Some(&3));
        assert_eq!(node.accept(election(round(3), &[3, 4, 5])), Insert::New);
    }
}
