//! The ctl gateway's decoders on arbitrary bytes: a frame under a small and the format's limit,
//! then its body as a request and as a reply. Whatever decodes must re-encode to the same bytes
//! (the format has one encoding per frame, reserved header bits aside).
#![no_main]

use habitat_sidecar::ctl::codec::{Frame, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for limits in [Limits { max_body_len: 64 }, Limits::default()] {
        let Ok((frame, used)) = Frame::decode(data, &limits) else {
            continue;
        };
        assert!(used <= data.len());
        let again = frame.encode(&limits).expect("a decoded frame encodes");
        assert_eq!(Frame::decode(&again, &limits).expect("re-encoded frame decodes").0, frame);
        // Only the reserved bits (26-30 of the header) may differ from the input.
        assert_eq!(again[0] & 0x83, data[0] & 0x83);
        assert_eq!(again[1..], data[1..used]);
        let _ = frame.to_request();
        let _ = frame.to_reply();
    }
});
