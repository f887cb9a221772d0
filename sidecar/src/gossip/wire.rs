//! Plaintext bodies inside the envelope (`crypto.rs`), and the byte readers/writers for them.
//!
//! Every decoder here takes untrusted bytes: it returns `WireError` on anything short, long or
//! malformed and never panics (fuzzed, see `fuzz/`). Sizes are capped before allocation.
//! The format is written down for peer implementers in `docs/protocol.md`.

use serde::{Deserialize, Serialize};

use super::member::{Identity, MemberId};
use super::rumor::Rumor;

/// Largest UDP datagram we send or accept, envelope included.
pub const MAX_DATAGRAM: usize = 1400;
/// Largest TCP frame (after the 4-byte length prefix), envelope included.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Rumors of a sync exchange are cut into frames of about this size.
pub const FRAME_SOFT_LIMIT: usize = 1024 * 1024;
/// Number of digest buckets used by anti-entropy.
pub const SYNC_BUCKETS: usize = 64;

/// First byte of a TCP frame's body (UDP bodies are always datagrams and carry no kind byte:
/// one byte on every probe is 1% of the idle traffic).
pub const BODY_FRAME: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("varint longer than 10 bytes")]
    BadVarint,
    #[error("unknown body kind {0}")]
    UnknownKind(u8),
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("rumor: {0}")]
    Rumor(String),
}

impl WireError {
    /// Metric label.
    pub const fn reason(&self) -> &'static str {
        match self {
            WireError::TooLong { .. } => "too_big",
            _ => "malformed",
        }
    }
}

/// Appends `v` as an LEB128 varint (7 bits a byte, low bits first).
pub fn put_varint(buf: &mut impl bytes::BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

pub fn get_u8(buf: &mut impl bytes::Buf) -> Result<u8, WireError> {
    if buf.remaining() < 1 {
        return Err(WireError::Truncated { needed: 1 });
    }
    Ok(buf.get_u8())
}

/// Reads an LEB128 varint of at most 10 bytes that fits in a u64.
pub fn get_varint(buf: &mut impl bytes::Buf) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = get_u8(buf)?;
        if shift == 63 && byte > 1 {
            return Err(WireError::BadVarint);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::BadVarint)
}

/// Appends primitive values in the wire's encodings.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn varint(&mut self, v: u64) {
        put_varint(&mut self.buf, v);
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Length-prefixed bytes.
    pub fn blob(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
}

/// Reads primitive values; every read checks the remaining length first.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub const fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub const fn remaining(&self) -> usize {
        self.data.len()
    }

    pub const fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.data.len() < n {
            return Err(WireError::Truncated {
                needed: n - self.data.len(),
            });
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        get_varint(&mut self.data)
    }

    pub fn blob(&mut self, what: &'static str, limit: usize) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
        if len > limit {
            return Err(WireError::TooLong { what, len, limit });
        }
        self.take(len)
    }
}

/// A UDP datagram's body: an optional SWIM message (foca, encoded by `membership::WireCodec`)
/// and piggybacked rumors, each already encoded with [`encode_rumor`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub swim: Option<&'a [u8]>,
    pub rumors: Vec<&'a [u8]>,
}

impl<'a> Datagram<'a> {
    pub fn encode_into(&self, w: &mut Writer) {
        w.blob(self.swim.unwrap_or_default());
        for rumor in &self.rumors {
            w.blob(rumor);
        }
    }

    pub fn decode(body: &'a [u8]) -> Result<Datagram<'a>, WireError> {
        let mut r = Reader::new(body);
        let swim = r.blob("swim message", MAX_DATAGRAM)?;
        let mut rumors = Vec::new();
        while !r.is_empty() {
            rumors.push(r.blob("rumor", MAX_DATAGRAM)?);
        }
        Ok(Datagram {
            swim: (!swim.is_empty()).then_some(swim),
            rumors,
        })
    }
}

/// Bytes a datagram spends before its rumors: the swim length prefix and the swim message.
pub const fn datagram_overhead(swim_len: usize) -> usize {
    varint_len(swim_len as u64) + swim_len
}

pub const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Messages over TCP: push-pull anti-entropy and pushes of rumors too large for a datagram.
/// A sync runs as a short conversation on one connection; the answering side keeps no state
/// between frames (each reply is computed from its store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Opens a sync: "here is the hash of everything I hold".
    SyncHello { from: MemberId, root: u64 },
    /// The roots match.
    SyncInSync,
    /// The roots differ: the answerer's per-bucket hashes.
    SyncBuckets { buckets: Vec<u64> },
    /// The opener's entries (key hash, content hash) in the buckets that differ.
    SyncDigest {
        buckets: Vec<u8>,
        entries: Vec<(u64, u64)>,
    },
    /// The answerer's rumors the opener lacks, and the key hashes it wants from the opener.
    SyncExchange { rumors: Vec<Rumor>, want: Vec<u64> },
    /// Rumors pushed without a reply (the last step of a sync, or a large new rumor).
    Push { from: MemberId, rumors: Vec<Rumor> },
    /// Opens a membership exchange: the hash of the up members the opener knows, itself
    /// included (`Node::members_root`). Appended after the rumor frames, so an older member
    /// drops only this conversation (`malformed`), never a rumor sync.
    MembersHello { from: MemberId, root: u64 },
    /// The membership roots match.
    MembersInSync,
    /// The roots differ: the answerer's up members, itself included.
    Members { members: Vec<Identity> },
    /// The opener's up members, pushed after a `Members` reply. No reply.
    MembersPush {
        from: MemberId,
        members: Vec<Identity>,
    },
}

impl Frame {
    pub fn encode_into(&self, w: &mut Writer) {
        w.u8(BODY_FRAME);
        // postcard into a Vec cannot fail for these types; an empty frame would be dropped by
        // the peer, which anti-entropy tolerates.
        if let Ok(bytes) = postcard::to_stdvec(self) {
            w.bytes(&bytes);
        }
    }

    pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
        let mut r = Reader::new(body);
        match r.u8()? {
            BODY_FRAME => {}
            other => return Err(WireError::UnknownKind(other)),
        }
        let rest = r.take(r.remaining())?;
        postcard::from_bytes(rest).map_err(|e| WireError::Rumor(e.to_string()))
    }
}

pub fn encode_rumor(rumor: &Rumor) -> Vec<u8> {
    postcard::to_stdvec(rumor).unwrap_or_default()
}

pub fn decode_rumor(bytes: &[u8]) -> Result<Rumor, WireError> {
    postcard::from_bytes(bytes).map_err(|e| WireError::Rumor(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn datagram_round_trips() {
        let d = Datagram {
            swim: Some(b"swim"),
            rumors: vec![b"one", b"two"],
        };
        let mut w = Writer::default();
        d.encode_into(&mut w);
        assert_eq!(Datagram::decode(&w.buf).unwrap(), d);
    }

    #[test]
    fn rumor_only_datagram_has_no_swim() {
        let d = Datagram {
            swim: None,
            rumors: vec![b"r"],
        };
        let mut w = Writer::default();
        d.encode_into(&mut w);
        assert_eq!(Datagram::decode(&w.buf).unwrap(), d);
    }

    #[test]
    fn frame_round_trips() {
        let f = Frame::SyncDigest {
            buckets: vec![1, 2],
            entries: vec![(3, 4)],
        };
        let mut w = Writer::default();
        f.encode_into(&mut w);
        assert_eq!(Frame::decode(&w.buf).unwrap(), f);
    }

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<u64>()) {
            let mut w = Writer::default();
            w.varint(v);
            prop_assert_eq!(w.buf.len(), varint_len(v));
            prop_assert_eq!(Reader::new(&w.buf).varint().unwrap(), v);
        }

        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Datagram::decode(&bytes);
            let _ = Frame::decode(&bytes);
            let _ = decode_rumor(&bytes);
        }
    }
}
