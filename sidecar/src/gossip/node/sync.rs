//! Push-pull anti-entropy over TCP, in two kinds of session: rumor sync (`SyncHello`, then
//! `SyncBuckets` and `SyncDigest` when the store roots differ, then `SyncExchange` and a `Push`
//! of what the peer wants) and membership exchange (`MembersHello`, `Members`, `MembersPush`).
//! Both sides are here: `open_session`/`continue_session` for the side that asks,
//! `answer_frame` for the side that answers. Also when syncs run: backoff while nothing changes,
//! at once when rumors move, a member comes back, or this member wakes from a freeze.
//! Invariant: a session lives until it is answered, fails, or goes stale (`expire_sessions`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::RngExt;

use super::dissemination::cap_frame;
use super::{Node, NodeTimer, SessionId};
use crate::gossip::member::{Identity, MemberId};
use crate::gossip::wire::{Frame, SYNC_BUCKETS};

/// Which answer a session waits for.
#[derive(Debug)]
enum SyncStage {
    RumorHello,
    RumorDigest,
    /// A membership exchange (`MembersHello`), not a rumor sync.
    Members,
}

/// A TCP exchange this node opened and has not finished, keyed by its `SessionId`.
#[derive(Debug)]
pub(super) struct SyncSession {
    pub(super) peer: SocketAddr,
    stage: SyncStage,
    started_ms: u64,
}

impl Node {
    /// The rumor sync timer: a sync with a random up member (or a configured peer while none
    /// is up), unless syncs found nothing new lately (then the pause doubles, see `sync_soon`).
    pub(super) fn sync_timer(&mut self, now_ms: u64) {
        self.reschedule(NodeTimer::Sync, self.config.sync_interval);
        if now_ms < self.next_sync_ms {
            return;
        }
        let pause = self
            .config
            .sync_interval
            .saturating_mul(1 << self.sync_quiet_rounds.min(16))
            .min(self.config.sync_max_interval);
        self.next_sync_ms = now_ms + pause.as_millis() as u64;
        if let Some(peer) = self.random_up_member() {
            self.start_sync(peer.addr);
        } else if !self.peers.is_empty() {
            let i = self.rng.random_range(0..self.peers.len());
            self.start_sync(self.peers[i]);
        }
    }

    /// The membership exchange timer (see `next_member_sync_delay`); a superseded generation
    /// does nothing.
    pub(super) fn member_sync_timer(&mut self, generation: u64) {
        if generation != self.member_sync_generation {
            return;
        }
        let next = self.next_member_sync_delay();
        self.reschedule(NodeTimer::MemberSync(generation), next);
        if let Some(peer) = self.random_up_member() {
            self.start_member_sync(peer.addr);
        } else if !self.peers.is_empty() {
            let i = self.rng.random_range(0..self.peers.len());
            self.start_member_sync(self.peers[i]);
        }
    }

    /// Opens a rumor sync with `peer`: a `SyncHello` carrying our store's root.
    pub(super) fn start_sync(&mut self, peer: SocketAddr) {
        let frame = Frame::SyncHello {
            from: self.identity().id,
            root: self.store.root(),
        };
        self.open_session(peer, SyncStage::RumorHello, &frame);
    }

    /// Opens a membership exchange with `peer`: a `MembersHello` carrying `members_root`.
    pub(super) fn start_member_sync(&mut self, peer: SocketAddr) {
        let frame = Frame::MembersHello {
            from: self.identity().id,
            root: self.members_root(),
        };
        self.open_session(peer, SyncStage::Members, &frame);
    }

    fn open_session(&mut self, peer: SocketAddr, stage: SyncStage, hello: &Frame) {
        let session = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            session,
            SyncSession {
                peer,
                stage,
                started_ms: self.now_ms,
            },
        );
        self.send_frame(peer, session, hello, true);
    }

    /// The answer to a frame a peer sent us (the responder's side of every exchange).
    pub(super) fn answer_frame(&mut self, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::SyncHello { root, .. } => Some(if root == self.store.root() {
                Frame::SyncInSync
            } else {
                Frame::SyncBuckets {
                    buckets: self.store.bucket_hashes().to_vec(),
                }
            }),
            Frame::SyncDigest { buckets, entries } => {
                let (mut ours, want) = self.store.diff(&buckets, &entries);
                // The store iterates in hash-map order, which differs from run to run; sorted,
                // a simulation replays from its seed (and the frame cap cuts the same rumors).
                ours.sort_by_cached_key(|r| r.key());
                let rumors = cap_frame(ours.into_iter().cloned());
                self.stats.rumors_sent += rumors.len() as u64;
                Some(Frame::SyncExchange { rumors, want })
            }
            Frame::Push { from, .. } if self.store.departed(from) => {
                self.stats.drop("departed_sender");
                None
            }
            Frame::Push { rumors, .. } => {
                self.accept_all(rumors);
                None
            }
            Frame::MembersHello { from, .. } | Frame::MembersPush { from, .. }
                if self.store.departed(from) =>
            {
                self.stats.drop("departed_sender");
                None
            }
            Frame::MembersHello { root, .. } => Some(if root == self.members_root() {
                Frame::MembersInSync
            } else {
                Frame::Members {
                    members: self.up_identities(),
                }
            }),
            Frame::MembersPush { members, .. } => {
                self.import_members(members);
                None
            }
            Frame::SyncInSync
            | Frame::SyncBuckets { .. }
            | Frame::SyncExchange { .. }
            | Frame::MembersInSync
            | Frame::Members { .. } => {
                self.stats.drop("unexpected_frame");
                None
            }
        }
    }

    /// The next step of a session this node opened, now that `frame` answered it.
    pub(super) fn continue_session(
        &mut self,
        now_ms: u64,
        session: SessionId,
        state: SyncSession,
        frame: Frame,
    ) {
        match (state.stage, frame) {
            (SyncStage::RumorHello, Frame::SyncInSync) => {
                self.last_sync_ms = Some(now_ms);
                self.sync_quiet_rounds = self.sync_quiet_rounds.saturating_add(1);
            }
            (SyncStage::RumorHello, Frame::SyncBuckets { buckets }) => {
                self.sync_soon();
                let ours = self.store.bucket_hashes();
                let differing: Vec<u8> = (0..SYNC_BUCKETS)
                    .filter(|&b| buckets.get(b) != ours.get(b))
                    .map(|b| b as u8)
                    .collect();
                let mut entries = self.store.digest(&differing);
                entries.sort_unstable(); // Fixed order, as in `answer_frame`'s `SyncDigest` arm.
                let frame = Frame::SyncDigest {
                    buckets: differing,
                    entries,
                };
                self.send_frame(state.peer, session, &frame, true);
                self.sessions.insert(
                    session,
                    SyncSession {
                        stage: SyncStage::RumorDigest,
                        ..state
                    },
                );
            }
            (SyncStage::RumorDigest, Frame::SyncExchange { rumors, want }) => {
                self.accept_all(rumors);
                self.last_sync_ms = Some(now_ms);
                let wanted = cap_frame(
                    want.iter()
                        .filter_map(|kh| self.store.key_for_hash(*kh))
                        .filter_map(|k| self.store.get(k))
                        .cloned(),
                );
                if !wanted.is_empty() {
                    self.stats.rumors_sent += wanted.len() as u64;
                    let frame = Frame::Push {
                        from: self.identity().id,
                        rumors: wanted,
                    };
                    self.send_frame(state.peer, session, &frame, false);
                }
            }
            (SyncStage::Members, Frame::MembersInSync) => {}
            (SyncStage::Members, Frame::Members { members }) => {
                // Push-pull: the answerer gets the members it lacks from us.
                let theirs: HashMap<MemberId, u64> =
                    members.iter().map(|i| (i.id, i.incarnation)).collect();
                let missing: Vec<Identity> = self
                    .up_identities()
                    .into_iter()
                    .filter(|i| theirs.get(&i.id).is_none_or(|inc| *inc < i.incarnation))
                    .collect();
                self.import_members(members);
                if !missing.is_empty() {
                    let frame = Frame::MembersPush {
                        from: self.identity().id,
                        members: missing,
                    };
                    self.send_frame(state.peer, session, &frame, false);
                }
            }
            _ => self.stats.drop("unexpected_frame"),
        }
    }

    /// A sync whose peer never answered is forgotten.
    pub(super) fn expire_sessions(&mut self, now: u64) {
        let stale = 4 * self.config.sync_interval.as_millis() as u64;
        self.sessions
            .retain(|_, s| now.saturating_sub(s.started_ms) < stale);
    }

    /// Rumor syncs only: a membership exchange does not stand in for one.
    fn rumor_sessions(&self) -> impl Iterator<Item = &SyncSession> {
        self.sessions
            .values()
            .filter(|s| !matches!(s.stage, SyncStage::Members))
    }

    pub(super) fn syncing_with(&self, peer: SocketAddr) -> bool {
        self.rumor_sessions().any(|s| s.peer == peer)
    }

    pub(super) fn syncing_with_an_up_member(&self) -> bool {
        self.rumor_sessions().any(|s| {
            self.by_addr
                .get(&s.peer)
                .is_some_and(|id| self.up.contains(id))
        })
    }

    /// Rumors are moving: anti-entropy returns to its base interval.
    pub(super) fn sync_soon(&mut self) {
        self.sync_quiet_rounds = 0;
        let soon = self.now_ms + self.config.sync_interval.as_millis() as u64;
        self.next_sync_ms = self.next_sync_ms.min(soon);
    }

    /// A member came up while membership exchanges were backed off (a join to a settled ring,
    /// a healed partition): the next one comes within a probe period, not after the backed-off
    /// pause, which may be a minute away. The timer armed for then is superseded.
    pub(super) fn hasten_member_sync(&mut self) {
        let fast = self.config.swim.probe_period;
        if self.member_sync_delay <= fast || self.left {
            return;
        }
        self.member_sync_delay = fast;
        self.member_sync_generation += 1;
        let timer = NodeTimer::MemberSync(self.member_sync_generation);
        self.reschedule(timer, fast);
    }

    /// Membership exchanges come every probe period while members are coming up (a join
    /// storm, a healed partition), and back off to `sync_max_interval` once the ring is
    /// settled: idle, a member makes one such exchange a minute.
    fn next_member_sync_delay(&mut self) -> Duration {
        self.member_sync_delay = if std::mem::take(&mut self.member_came_up) {
            self.config.swim.probe_period
        } else {
            (self.member_sync_delay * 2).min(self.config.sync_max_interval)
        };
        self.member_sync_delay
    }

    /// An authentic datagram came from `from`: if we had failed to reach it, swap rumors.
    pub(super) fn reached(&mut self, from: SocketAddr) {
        let Some(&id) = self.by_addr.get(&from) else {
            return;
        };
        // A session with it that is still open was started while it could not answer.
        if self.unreached.remove(&id) && !self.left {
            self.start_sync(from);
        }
    }

    /// A timer that fires more than three gossip intervals late means this member was frozen
    /// (SIGSTOP, a paused VM, a long GC pause): rumors sent to it meanwhile were lost and
    /// nobody may have noticed, so it pulls from `rumor_fanout` up members at once (its view is
    /// as old as the freeze: one of them may be gone, pause seed 17793). Lateness, not a gap
    /// between inputs, since an idle member has no periodic tick to measure gaps by.
    pub(super) fn after_timer_fired_late(&mut self, lateness_ms: u64) {
        let swim = &self.config.swim;
        let stall = 3 * swim.gossip_interval.min(swim.probe_period).as_millis() as u64;
        let pulled_lately = self
            .freeze_pull_ms
            .is_some_and(|at| self.now_ms.saturating_sub(at) <= stall);
        if lateness_ms <= stall || pulled_lately || self.last_sync_ms.is_none() || self.left {
            return;
        }
        self.freeze_pull_ms = Some(self.now_ms);
        let peers = self
            .up
            .gossip_targets(&mut self.rng, self.config.rumor_fanout);
        for id in peers {
            if let Some(addr) = self.members.get(&id).map(|r| r.identity.addr) {
                if !self.syncing_with(addr) {
                    self.start_sync(addr);
                }
            }
        }
    }
}
