//! The envelope around everything a node sends and receives: datagrams and frames are sealed
//! here (`seal`, `seal_frame`, `send_datagram`, `send_frame`) and opened here (`open`, then
//! `admit` for the replay window). Outgoing envelopes use the key the peer last sealed with to
//! us (`peer_keys`), so ring keys rotate without a flag day; a key change is hinted to up members
//! (`set_keyring`). Nothing reaches the rest of the node without passing authentication and the
//! replay window; refusals are counted, and warned about once per host (bounded).

use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;

use super::{Node, Output, SessionId};
use crate::gossip::crypto::{KeyId, Keyring, Opened, RingKey};
use crate::gossip::membership as swim;
use crate::gossip::wire::{Datagram, Frame, Writer};

/// Hosts warned about as not sharing our ring key, at most (spoofed UDP sources are free).
const MAX_WRONG_KEY_LOGGED: usize = 256;

impl Node {
    /// The keys envelopes are opened with.
    pub const fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Swaps the ring keys (a rotation step). When the keys held or the sealing key changed,
    /// every up member is sent an empty datagram sealed with our sealing key, so those that
    /// hold it switch to it for us at once; this matters when we just dropped the key they were
    /// using with us. Setting the same keys again (the supervisor reloads them periodically)
    /// sends nothing.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        let ids = |k: &Keyring| {
            let held: Vec<KeyId> = k.keys().iter().map(RingKey::id).collect();
            (k.sealing_key().map(RingKey::id), held)
        };
        let changed = ids(&keyring) != ids(&self.keyring);
        self.sealers = single_key_sealers(&keyring);
        self.keyring = keyring;
        if !changed || !self.keyring.is_encrypted() || self.left {
            return;
        }
        let up: Vec<SocketAddr> = self
            .up
            .ids()
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|r| r.identity.addr)
            .collect();
        for to in up {
            let mut w = Writer::default();
            Datagram::default().encode_into(&mut w);
            let v2 = self.membership.opens_v2(to);
            let bytes = self.seal(None, &w.buf, v2);
            self.stats.datagrams_sent += 1;
            self.stats.bytes_sent += bytes.len() as u64;
            self.outputs.push(Output::Datagram { to, bytes });
        }
    }

    /// Opens an envelope: authenticates it and applies the replay window.
    /// Returns the body and the id of the key it was sealed with.
    pub(super) fn open(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<(Vec<u8>, KeyId)> {
        match self.keyring.open(bytes) {
            Ok(opened) => self.admit(opened),
            Err(e) => {
                self.refused(from, e.reason());
                None
            }
        }
    }

    /// Counts an envelope that failed to open (here or in a connection task) and says, once
    /// per host, that a peer does not share our key.
    pub(super) fn refused(&mut self, from: SocketAddr, reason: &'static str) {
        self.stats.drop(reason);
        if self.wrong_key_logged.len() < MAX_WRONG_KEY_LOGGED
            && self.wrong_key_logged.insert(from.ip())
        {
            tracing::warn!(
                peer = %from, reason,
                "dropping packets from a peer that does not share our ring key \
                 (logged once per host; counted in /metrics)"
            );
        }
    }

    /// Applies the replay window to an authenticated envelope.
    pub(super) fn admit(&mut self, opened: Opened) -> Option<(Vec<u8>, KeyId)> {
        if let Err(e) = self
            .replay
            .check(self.now_ms, opened.timestamp_ms, &opened.nonce)
        {
            self.stats.drop(e.reason());
            return None;
        }
        Some((opened.body, opened.key_id))
    }

    /// Seals with `key` while we hold it, else with the keyring's sealing key.
    ///
    /// `key` is the key the peer last sealed with to us (or the key of the request we answer):
    /// a member that has just been handed a newer key keeps talking to peers that do not hold
    /// it yet in the key they use, instead of cutting them off until every member holds the new
    /// key. Peers that do hold it learn of it from `set_keyring`'s hint and answer in kind.
    ///
    /// `v2`: in envelope version 2, for a peer known to open it (see `send_datagram`).
    fn seal(&mut self, key: Option<KeyId>, body: &[u8], v2: bool) -> Vec<u8> {
        let mut random = [0u8; 16];
        self.rng.fill_bytes(&mut random);
        let sealer = key
            .and_then(|id| {
                self.sealers
                    .iter()
                    .find(|s| s.sealing_key().map(RingKey::id) == Some(id))
            })
            .unwrap_or(&self.keyring);
        if v2 {
            sealer.seal_v2(body, self.now_ms, random)
        } else {
            sealer.seal(body, self.now_ms, random)
        }
    }

    /// Encodes and seals a TCP frame (envelope version 1), counted as sent.
    pub(super) fn seal_frame(&mut self, key: Option<KeyId>, frame: &Frame) -> Vec<u8> {
        let mut w = Writer::default();
        frame.encode_into(&mut w);
        // TCP frames stay in envelope version 1: they are rare, and every member opens it.
        let sealed = self.seal(key, &w.buf, false);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += sealed.len() as u64;
        sealed
    }

    /// Sends a frame on `session`, sealed in the key `to` last used with us.
    pub(super) fn send_frame(
        &mut self,
        to: SocketAddr,
        session: SessionId,
        frame: &Frame,
        expect_reply: bool,
    ) {
        let key = self.peer_keys.get(&to).copied();
        let bytes = self.seal_frame(key, frame);
        self.outputs.push(Output::Frame {
            to,
            session,
            bytes,
            expect_reply,
        });
    }

    /// Sends a datagram (a SWIM message and/or piggybacked rumors), sealed in the key `to` last
    /// used with us.
    pub(super) fn send_datagram(
        &mut self,
        to: SocketAddr,
        swim: Option<&[u8]>,
        rumors: &[Arc<[u8]>],
    ) {
        let datagram = Datagram {
            swim,
            rumors: rumors.iter().map(|r| &r[..]).collect(),
        };
        let mut w = Writer::with_capacity(self.config.max_datagram);
        datagram.encode_into(&mut w);
        let key = self.peer_keys.get(&to).copied();
        // A compact SWIM header goes only to a member that opens envelope v2, in one; without
        // a SWIM message the codec's knowledge of the address decides the same way.
        let v2 = match swim {
            Some(swim) => swim::is_compact(swim),
            None => self.membership.opens_v2(to),
        };
        let bytes = self.seal(key, &w.buf, v2);
        self.stats.datagrams_sent += 1;
        self.stats.datagrams_sent_v2 += u64::from(v2);
        self.stats.bytes_sent += bytes.len() as u64;
        self.stats.rumors_sent += rumors.len() as u64;
        self.outputs.push(Output::Datagram { to, bytes });
    }
}

/// A keyring per key held, each sealing with that key only.
pub(super) fn single_key_sealers(keyring: &Keyring) -> Vec<Keyring> {
    keyring
        .keys()
        .iter()
        .map(|k| Keyring::new(vec![k.clone()]))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::node::tests::node;

    #[test]
    fn wrong_key_warnings_remember_a_bounded_number_of_hosts() {
        let key = RingKey::new("ring", "20260101000000", [3; 32]);
        let mut node = node();
        node.set_keyring(Keyring::new(vec![key]));
        let cleartext = Keyring::cleartext().seal(b"\x00", 0, [0; 16]);
        for i in 0..2_000u32 {
            let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
            let from = SocketAddr::from(([a, b, c, d], 40_000));
            node.handle_datagram(0, from, &cleartext);
        }
        assert_eq!(node.wrong_key_logged.len(), MAX_WRONG_KEY_LOGGED);
        assert_eq!(node.stats().dropped.get("unknown_key"), Some(&2_000));
    }
}
