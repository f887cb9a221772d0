//! The plaintext body decoders on arbitrary bytes: a UDP datagram, a TCP frame, one rumor.
//! Whatever decodes must re-encode to something that decodes to the same value, and a decoded
//! rumor must go through the store (merge, hashes) without panicking.
#![no_main]

use habitat_sidecar::gossip::store::{Insert, Store};
use habitat_sidecar::gossip::wire::{decode_rumor, encode_rumor, Datagram, Frame, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(datagram) = Datagram::decode(data) {
        let mut w = Writer::default();
        datagram.encode_into(&mut w);
        let again = Datagram::decode(&w.buf).expect("a re-encoded datagram decodes");
        assert_eq!(again, datagram);
        for rumor in &datagram.rumors {
            let _ = decode_rumor(rumor);
        }
    }

    if let Ok(frame) = Frame::decode(data) {
        let mut w = Writer::default();
        frame.encode_into(&mut w);
        let again = Frame::decode(&w.buf).expect("a re-encoded frame decodes");
        assert_eq!(again, frame);
    }

    if let Ok(rumor) = decode_rumor(data) {
        let again = decode_rumor(&encode_rumor(&rumor)).expect("a re-encoded rumor decodes");
        assert_eq!(again, rumor);
        let _ = rumor.check_limits();
        let mut store = Store::new();
        assert_eq!(store.insert(rumor.clone(), 0), Insert::New);
        let root = store.root();
        assert_eq!(store.insert(rumor, 1), Insert::Stale);
        assert_eq!(store.root(), root);
        let all: Vec<u8> = (0..64).collect();
        let digest = store.digest(&all);
        let (ours, want) = store.diff(&all, &digest);
        assert!(ours.is_empty() && want.is_empty());
    }
});
