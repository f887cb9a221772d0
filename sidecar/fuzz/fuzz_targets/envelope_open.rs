//! Opens arbitrary bytes as an envelope, under a fixed ring key and as cleartext, and decodes
//! whatever body comes out as a UDP datagram and as a TCP frame. Inputs whose first byte is odd
//! or 2 (every real envelope: version 1 or 2) are opened as they are; the others are sealed
//! first (without that byte; in version 2 when its bit 2 is set), so the body decoders behind
//! the tag check are reached as well, and checked: a sealed envelope opens to its body, and any
//! flipped bit makes it fail.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use habitat_sidecar::gossip::crypto::{Keyring, ReplayGuard, RingKey};
use habitat_sidecar::gossip::wire::{decode_rumor, Datagram, Frame};
use libfuzzer_sys::fuzz_target;

/// The key the seed corpus is sealed with (see `tests/decoder_robustness.rs`).
const FUZZ_KEY: [u8; 32] = [0x42; 32];
const NOW_MS: u64 = 1_790_000_000_000;

fn keyed() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::new(vec![RingKey::new("fuzz", "20260101000000", FUZZ_KEY)]))
}

fn decode_body(body: &[u8]) {
    if let Ok(datagram) = Datagram::decode(body) {
        for rumor in datagram.rumors {
            let _ = decode_rumor(rumor);
        }
    }
    let _ = Frame::decode(body);
}

fn open_and_decode(ring: &Keyring, packet: &[u8]) {
    if let Ok(opened) = ring.open(packet) {
        let mut guard = ReplayGuard::new(Duration::from_secs(120));
        let first = guard.check(NOW_MS, opened.timestamp_ms, &opened.nonce);
        if first.is_ok() {
            assert!(guard
                .check(NOW_MS, opened.timestamp_ms, &opened.nonce)
                .is_err());
        }
        decode_body(&opened.body);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        let _ = keyed().open(data);
        return;
    };
    if mode & 1 == 1 || mode == 2 {
        open_and_decode(keyed(), data);
        open_and_decode(&Keyring::cleartext(), data);
        return;
    }
    let mut random = [0u8; 16];
    random[0] = mode;
    let sealed = if mode & 4 == 4 {
        keyed().seal_v2(rest, NOW_MS, random)
    } else {
        keyed().seal(rest, NOW_MS, random)
    };
    let opened = keyed().open(&sealed).expect("a sealed envelope opens");
    assert_eq!(opened.body, rest);
    assert_eq!(opened.timestamp_ms, NOW_MS);
    decode_body(&opened.body);

    let mut altered = sealed;
    let bit = usize::from(mode >> 1) % (altered.len() * 8);
    altered[bit / 8] ^= 1 << (bit % 8);
    assert!(
        keyed().open(&altered).is_err(),
        "bit {bit} flipped, still opens"
    );
});
