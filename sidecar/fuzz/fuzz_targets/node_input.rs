//! A `Node`, built as `gossip::sim` builds one, fed a stream of arbitrary inputs: raw and freshly
//! sealed datagrams, frames and sync replies, timers and clock jumps. It must never panic.
//!
//! Input: one setup byte (bit 0: keyed ring), then chunks of `op | len (u16 LE) | payload`.
//! ops (op % 8): 0 raw datagram, 1 sealed datagram, 2 raw frame, 3 sealed frame, 4 sealed reply
//! to an open session, 5 a timer, 6 advance the clock, 7 publish the payload as a rumor.
//! `op >> 3` picks the sending peer (or the timer).
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use habitat_sidecar::gossip::crypto::{Keyring, RingKey};
use habitat_sidecar::gossip::member::{Identity, MemberId};
use habitat_sidecar::gossip::node::{GossipConfig, Node, NodeTimer, Output, SessionId};
use habitat_sidecar::gossip::store::Store;
use habitat_sidecar::gossip::wire::decode_rumor;
use libfuzzer_sys::fuzz_target;

const FUZZ_KEY: [u8; 32] = [0x42; 32];
const PEERS: usize = 4;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i as u8 + 1], 9638))
}

fn identity(i: usize) -> Identity {
    Identity {
        id: MemberId([i as u8 + 1; 16]),
        incarnation: 1_790_000_000,
        node: Arc::from(format!("m{i}").as_str()),
        addr: addr(i),
        persistent: false,
        named: true,
    }
}

struct Harness {
    node: Node,
    keyring: Keyring,
    now: u64,
    counter: u64,
    sessions: Vec<SessionId>,
    swim_timers: Vec<NodeTimer>,
}

impl Harness {
    fn seal(&mut self, body: &[u8]) -> Vec<u8> {
        self.counter += 1;
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&self.counter.to_le_bytes());
        self.keyring.seal(body, self.now, random)
    }

    fn drain(&mut self) {
        for output in self.node.drain_outputs() {
            match output {
                Output::Frame {
                    session,
                    expect_reply: true,
                    ..
                } => self.sessions.push(session),
                Output::Schedule {
                    timer: timer @ NodeTimer::Swim(_),
                    ..
                } if self.swim_timers.len() < 64 => self.swim_timers.push(timer),
                _ => {}
            }
        }
        self.node.drain_events().for_each(drop);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let keyring = if setup & 1 == 0 {
        Keyring::cleartext()
    } else {
        Keyring::new(vec![RingKey::new("fuzz", "20260101000000", FUZZ_KEY)])
    };
    let now = 1_790_000_000_000;
    let mut node = Node::new(
        identity(0),
        GossipConfig::lan(),
        keyring.clone(),
        Store::new(),
        u64::from(setup),
    );
    node.start(now, (1..PEERS).map(addr).collect());
    let mut h = Harness {
        node,
        keyring,
        now,
        counter: 0,
        sessions: Vec::new(),
        swim_timers: Vec::new(),
    };
    h.drain();

    while rest.len() >= 3 {
        let op = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let pick = usize::from(op >> 3);
        let from = addr(pick % (PEERS + 1));
        match op % 8 {
            0 => h.node.handle_datagram(h.now, from, payload),
            1 => {
                let packet = h.seal(payload);
                h.node.handle_datagram(h.now, from, &packet);
            }
            2 => {
                let _ = h.node.handle_frame(h.now, from, payload);
            }
            3 => {
                let packet = h.seal(payload);
                let _ = h.node.handle_frame(h.now, from, &packet);
            }
            4 => {
                let session = match h.sessions.len() {
                    0 => pick as SessionId,
                    n => h.sessions.swap_remove(pick % n),
                };
                let packet = h.seal(payload);
                h.node.handle_reply(h.now, session, &packet);
            }
            5 => {
                let timer = match pick % 5 {
                    0 => NodeTimer::RumorGossip,
                    1 => NodeTimer::Sync,
                    2 => NodeTimer::Heal,
                    3 => NodeTimer::Maintenance,
                    _ if h.swim_timers.is_empty() => NodeTimer::Sync,
                    _ => h.swim_timers.remove(0),
                };
                h.node.handle_timer(h.now, timer);
            }
            6 => {
                let mut step = [0u8; 4];
                let n = payload.len().min(4);
                step[..n].copy_from_slice(&payload[..n]);
                h.now = h.now.saturating_add(u64::from(u32::from_le_bytes(step)));
            }
            _ => {
                if let Ok(rumor) = decode_rumor(payload) {
                    let _ = h.node.publish(h.now, rumor);
                }
            }
        }
        h.drain();
    }
    let _ = h.node.members();
    let _ = h.node.store().root();
});
