//! The ctl frame, wire-compatible with Habitat's `SrvCodec` (components/sup-protocol/src/codec.rs):
//! a big-endian header word, an optional transaction word, the message id as UTF-8 text, the
//! protobuf body. Layout and limits are in docs/protocol.md ("ctl protocol").
//! Invariants: decoding takes untrusted bytes and returns `CodecError` on anything short, long or
//! malformed, never panics; lengths are checked against `Limits` before anything is allocated.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::error::{CodecError, Error};
use super::messages::{CtlMessage, Reply, Request};

/// Bytes of the header word.
pub const HEADER_LEN: usize = 4;
/// Bytes of the transaction word.
pub const TXN_LEN: usize = 4;
/// The header has 6 bits for the message id's length.
pub const MAX_MESSAGE_ID_LEN: usize = 0x3F;
/// The header has 20 bits for the body's length: 1 MiB - 1.
pub const MAX_BODY_LEN: usize = 0xF_FFFF;
/// The largest frame the format can express.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + TXN_LEN + MAX_MESSAGE_ID_LEN + MAX_BODY_LEN;
/// The largest transaction id: 30 bits.
pub const MAX_TXN_ID: u32 = 0x3FFF_FFFF;

// Header word: bit 31 "has a transaction word", bits 26-30 reserved (written 0, ignored on read
// as Habitat does), bits 20-25 message id length, bits 0-19 body length.
const HEADER_TXN_BIT: u32 = 1 << 31;
const MESSAGE_ID_SHIFT: u32 = 20;
const MESSAGE_ID_MASK: u32 = 0x3F;
const BODY_LEN_MASK: u32 = 0xF_FFFF;
// Transaction word: bit 31 "is a response", bit 30 "is the last reply", bits 0-29 the id.
const TXN_RESPONSE_BIT: u32 = 1 << 31;
const TXN_COMPLETE_BIT: u32 = 1 << 30;

/// The decoded header word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub has_txn: bool,
    pub message_id_len: usize,
    pub body_len: usize,
}

impl Header {
    /// Every 32-bit word is a header: the fields' widths bound the lengths.
    pub fn from_word(word: u32) -> Header {
        Header {
            has_txn: word & HEADER_TXN_BIT != 0,
            message_id_len: ((word >> MESSAGE_ID_SHIFT) & MESSAGE_ID_MASK) as usize,
            body_len: (word & BODY_LEN_MASK) as usize,
        }
    }

    pub fn to_word(self) -> Result<u32, CodecError> {
        let id_len = u32::try_from(self.message_id_len)
            .ok()
            .filter(|len| *len <= MESSAGE_ID_MASK)
            .ok_or(CodecError::MessageIdTooLong {
                len: self.message_id_len,
                limit: MAX_MESSAGE_ID_LEN,
            })?;
        let body_len = u32::try_from(self.body_len)
            .ok()
            .filter(|len| *len <= BODY_LEN_MASK)
            .ok_or(CodecError::BodyTooLarge {
                len: self.body_len,
                limit: MAX_BODY_LEN,
            })?;
        let txn = if self.has_txn { HEADER_TXN_BIT } else { 0 };
        Ok(txn | (id_len << MESSAGE_ID_SHIFT) | body_len)
    }

    /// Bytes of the whole frame this header announces, itself included. Cannot overflow: each
    /// length is bounded by its field's width.
    pub fn frame_len(self) -> usize {
        let txn = if self.has_txn { TXN_LEN } else { 0 };
        HEADER_LEN + txn + self.message_id_len + self.body_len
    }

    /// Refuses a header whose body is above the receiver's limit, before the body is read.
    pub fn check(self, limits: &Limits) -> Result<(), CodecError> {
        if self.body_len > limits.max_body_len {
            return Err(CodecError::BodyTooLarge {
                len: self.body_len,
                limit: limits.max_body_len,
            });
        }
        Ok(())
    }
}

/// The transaction word: which request a reply belongs to, and whether it is the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txn {
    pub id: u32,
    pub is_response: bool,
    pub is_complete: bool,
}

impl Txn {
    /// A request in transaction `id`.
    pub fn request(id: u32) -> Txn {
        Txn {
            id,
            is_response: false,
            is_complete: false,
        }
    }

    /// A reply to this request; `complete` marks the last one.
    pub fn reply(self, complete: bool) -> Txn {
        Txn {
            id: self.id,
            is_response: true,
            is_complete: complete,
        }
    }

    pub fn from_word(word: u32) -> Txn {
        Txn {
            id: word & MAX_TXN_ID,
            is_response: word & TXN_RESPONSE_BIT != 0,
            is_complete: word & TXN_COMPLETE_BIT != 0,
        }
    }

    pub fn to_word(self) -> Result<u32, CodecError> {
        if self.id > MAX_TXN_ID {
            return Err(CodecError::TxnIdTooLarge {
                id: self.id,
                limit: MAX_TXN_ID,
            });
        }
        let mut word = self.id;
        if self.is_response {
            word |= TXN_RESPONSE_BIT;
        }
        if self.is_complete {
            word |= TXN_COMPLETE_BIT;
        }
        Ok(word)
    }
}

/// What a receiver accepts. The format itself caps a body at `MAX_BODY_LEN`; a gateway may
/// accept less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_len: MAX_BODY_LEN,
        }
    }
}

/// One frame: an optional transaction, the message id, the protobuf body (not yet decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub txn: Option<Txn>,
    pub message_id: String,
    pub body: Vec<u8>,
}

/// Without the body: a `Handshake`'s body is the secret.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("txn", &self.txn)
            .field("message_id", &self.message_id)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Frame {
    pub fn new<M: CtlMessage>(message: &M, txn: Option<Txn>) -> Frame {
        Frame {
            txn,
            message_id: M::MESSAGE_ID.to_string(),
            body: message.encode_to_vec(),
        }
    }

    pub fn request(request: &Request, txn: Option<Txn>) -> Frame {
        Frame {
            txn,
            message_id: request.message_id().to_string(),
            body: request.encode_body(),
        }
    }

    pub fn reply(reply: &Reply, txn: Option<Txn>) -> Frame {
        Frame {
            txn,
            message_id: reply.message_id().to_string(),
            body: reply.encode_body(),
        }
    }

    /// The last frame of a reply stream; a frame outside any transaction is one on its own,
    /// as Habitat treats it.
    pub fn is_complete(&self) -> bool {
        self.txn.is_none_or(|txn| txn.is_complete)
    }

    /// The body as `M`, if the frame carries `M`.
    pub fn decode_as<M: CtlMessage>(&self) -> Result<M, CodecError> {
        if self.message_id != M::MESSAGE_ID {
            return Err(CodecError::WrongMessage {
                expected: M::MESSAGE_ID,
                found: self.message_id.clone(),
            });
        }
        M::decode(self.body.as_slice()).map_err(|source| CodecError::BadBody {
            message_id: M::MESSAGE_ID,
            source,
        })
    }

    pub fn to_request(&self) -> Result<Request, CodecError> {
        Request::decode(&self.message_id, &self.body)
    }

    pub fn to_reply(&self) -> Result<Reply, CodecError> {
        Reply::decode(&self.message_id, &self.body)
    }

    pub fn encoded_len(&self) -> usize {
        let txn = if self.txn.is_some() { TXN_LEN } else { 0 };
        HEADER_LEN
            .saturating_add(txn)
            .saturating_add(self.message_id.len())
            .saturating_add(self.body.len())
    }

    /// The frame's bytes; refuses a frame the header cannot describe or `limits` forbids.
    pub fn encode(&self, limits: &Limits) -> Result<Vec<u8>, CodecError> {
        let header = Header {
            has_txn: self.txn.is_some(),
            message_id_len: self.message_id.len(),
            body_len: self.body.len(),
        };
        let word = header.to_word()?;
        header.check(limits)?;
        let mut out = Vec::with_capacity(header.frame_len());
        out.extend_from_slice(&word.to_be_bytes());
        if let Some(txn) = self.txn {
            out.extend_from_slice(&txn.to_word()?.to_be_bytes());
        }
        out.extend_from_slice(self.message_id.as_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Decodes the frame at the start of `buf`; returns it and the bytes it took. Bytes after
    /// it are left alone (the next frame). `Truncated` says how many more bytes are needed.
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<(Frame, usize), CodecError> {
        let mut rest = buf;
        let header = Header::from_word(take_word(&mut rest)?);
        header.check(limits)?;
        let txn = if header.has_txn {
            Some(Txn::from_word(take_word(&mut rest)?))
        } else {
            None
        };
        let id = take(&mut rest, header.message_id_len)?;
        let body = take(&mut rest, header.body_len)?;
        let message_id = std::str::from_utf8(id)
            .map_err(|_| CodecError::MessageIdNotUtf8)?
            .to_string();
        let frame = Frame {
            txn,
            message_id,
            body: body.to_vec(),
        };
        Ok((frame, header.frame_len()))
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
    let Some((head, tail)) = rest.split_at_checked(n) else {
        return Err(CodecError::Truncated {
            needed: n.saturating_sub(rest.len()),
        });
    };
    *rest = tail;
    Ok(head)
}

fn take_word(rest: &mut &[u8]) -> Result<u32, CodecError> {
    let bytes = take(rest, 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Ok(u32::from_be_bytes(word))
}

/// Reads one frame before `deadline`. `Ok(None)`: the peer closed the connection cleanly
/// between frames. The body's length is checked against `limits` before it is read.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
    deadline: Instant,
) -> Result<Option<Frame>, Error> {
    let read = async {
        let mut head = [0u8; HEADER_LEN];
        let got = read_up_to(reader, &mut head).await?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            return Err(CodecError::Truncated {
                needed: HEADER_LEN - got,
            }
            .into());
        }
        let header = Header::from_word(u32::from_be_bytes(head));
        header.check(limits)?;
        let mut buf = vec![0u8; header.frame_len()];
        buf[..HEADER_LEN].copy_from_slice(&head);
        let want = buf.len() - HEADER_LEN;
        let got = read_up_to(reader, &mut buf[HEADER_LEN..]).await?;
        if got < want {
            return Err(CodecError::Truncated { needed: want - got }.into());
        }
        let (frame, _) = Frame::decode(&buf, limits)?;
        Ok(Some(frame))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| Error::TimedOut { what: "ctl frame" })?
}

/// Writes one frame (and flushes it) before `deadline`.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
    limits: &Limits,
    deadline: Instant,
) -> Result<(), Error> {
    let bytes = frame.encode(limits)?;
    let write = async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    };
    tokio::time::timeout_at(deadline, write)
        .await
        .map_err(|_| Error::TimedOut {
            what: "ctl frame write",
        })?
        .map_err(Error::Io)
}

/// Fills `buf` unless the stream ends first; returns how many bytes were read.
async fn read_up_to<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
