//! Errors of the ctl protocol: `CodecError` for bytes that do not form a valid frame or message
//! (pure, no I/O), `Error` for everything a connection can add (sockets, deadlines, a refusal
//! from the remote). Messages never include a frame's body: a `Handshake` body is the secret.

use std::io;
use std::time::Duration;

use super::messages::ErrCode;

/// Why bytes are not a valid ctl frame or message. Returned for any malformed input; the
/// decoder never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("ctl frame truncated: {needed} more bytes needed")]
    Truncated { needed: usize },
    #[error("ctl frame body of {len} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge { len: usize, limit: usize },
    #[error("ctl message id of {len} bytes exceeds the limit of {limit} bytes")]
    MessageIdTooLong { len: usize, limit: usize },
    #[error("ctl message id is not UTF-8")]
    MessageIdNotUtf8,
    #[error("ctl transaction id {id} exceeds the limit of {limit}")]
    TxnIdTooLarge { id: u32, limit: u32 },
    /// A well-formed frame whose message id this side does not handle.
    #[error("unknown ctl message id {0:?}")]
    UnknownMessage(String),
    #[error("expected ctl message {expected}, found {found:?}")]
    WrongMessage {
        expected: &'static str,
        found: String,
    },
    #[error("ctl message {message_id}: protobuf body does not decode: {source}")]
    BadBody {
        message_id: &'static str,
        #[source]
        source: prost::DecodeError,
    },
}

impl CodecError {
    /// The `NetErr` code a gateway answers this with (Habitat's codes: `BadPayload` for
    /// unreadable input, `EntityTooLarge` for limits, `NotSupported` for unknown messages).
    pub fn err_code(&self) -> ErrCode {
        match self {
            CodecError::BodyTooLarge { .. } | CodecError::MessageIdTooLong { .. } => {
                ErrCode::EntityTooLarge
            }
            CodecError::UnknownMessage(_) | CodecError::WrongMessage { .. } => {
                ErrCode::NotSupported
            }
            CodecError::Truncated { .. }
            | CodecError::MessageIdNotUtf8
            | CodecError::TxnIdTooLarge { .. }
            | CodecError::BadBody { .. } => ErrCode::BadPayload,
        }
    }
}

/// What can go wrong on a ctl connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The gateway address could not be reached (refused, unresolvable, unroutable).
    #[error("ctl gateway {addr}: cannot connect: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("ctl gateway {addr}: no connection within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("ctl connection: {0}")]
    Io(#[from] io::Error),
    #[error("ctl connection: no {what} before the deadline")]
    TimedOut { what: &'static str },
    #[error("ctl gateway closed the connection before the reply was complete")]
    Closed,
    /// The gateway answered with `NetErr`.
    #[error("ctl gateway refused the request ({}): {message}", code_name(*.code))]
    Remote { code: i32, message: String },
    /// A well-formed reply that breaks the protocol's sequence.
    #[error("ctl gateway sent {found} where {expected} was expected")]
    Unexpected { expected: String, found: String },
}

impl Error {
    /// The remote's error code, when the gateway refused the request with a known one.
    pub fn remote_code(&self) -> Option<ErrCode> {
        match self {
            Error::Remote { code, .. } => ErrCode::try_from(*code).ok(),
            _ => None,
        }
    }
}

fn code_name(code: i32) -> String {
    match ErrCode::try_from(code) {
        Ok(known) => format!("{known:?}"),
        Err(_) => format!("code {code}"),
    }
}
