//! A ctl client: one connection per request, as Habitat's `hab` does it. Connect, `Handshake`
//! with the secret (transaction 0), send the request (transaction 1), and hand over the replies
//! until the one marked complete. A `NetErr` ends the exchange as `Error::Remote`.
//! Depends only on `ctl/` and tokio, so the CLI and the operator can use it without the
//! supervisor runtime.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::codec::{read_frame, write_frame, Frame, Limits, Txn};
use super::error::Error;
use super::messages::{CtlMessage, Handshake, NetErr, NetOk, Reply, Request};

/// Transaction ids of the two requests on a connection, as Habitat's client numbers them.
const HANDSHAKE_TXN: u32 = 0;
const REQUEST_TXN: u32 = 1;

/// Deadlines and limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// For the TCP connection.
    pub connect_timeout: Duration,
    /// For each frame written, and for each reply from the previous one (a long request may
    /// stream replies for a long time, but never falls silent for longer than this).
    pub reply_timeout: Duration,
    pub limits: Limits,
}

impl Default for ClientOptions {
    /// Habitat's client waits 10 s for the handshake's reply.
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// Sends `request` to the gateway at `addr` (`HOST:PORT`) and returns its replies, the
/// complete one last.
pub async fn request(
    addr: &str,
    secret: &str,
    request: impl Into<Request>,
    options: &ClientOptions,
) -> Result<Vec<Reply>, Error> {
    let mut replies = Vec::new();
    request_with(addr, secret, request, options, |reply| replies.push(reply)).await?;
    Ok(replies)
}

/// As `request`, handing each reply to `on_reply` as it arrives (console lines of a long
/// request show while it runs).
pub async fn request_with(
    addr: &str,
    secret: &str,
    request: impl Into<Request>,
    options: &ClientOptions,
    on_reply: impl FnMut(Reply),
) -> Result<(), Error> {
    let mut stream = connect(addr, options.connect_timeout).await?;
    // Habitat's gateway answers on the same connection; Nagle would only delay the request.
    stream.set_nodelay(true)?;
    exchange(&mut stream, secret, request.into(), options, on_reply).await
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Error> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(Error::Connect {
            addr: addr.to_string(),
            source,
        }),
        Err(_) => Err(Error::ConnectTimeout {
            addr: addr.to_string(),
            timeout,
        }),
    }
}

/// The protocol over any byte stream (a TCP connection, or an in-memory pipe in tests).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &str,
    request: Request,
    options: &ClientOptions,
    mut on_reply: impl FnMut(Reply),
) -> Result<(), Error> {
    let limits = &options.limits;
    let deadline = || Instant::now() + options.reply_timeout;

    let handshake = Handshake {
        secret_key: Some(secret.to_string()),
    };
    let handshake = Frame::new(&handshake, Some(Txn::request(HANDSHAKE_TXN)));
    write_frame(stream, &handshake, limits, deadline()).await?;
    let reply = read_reply(stream, limits, deadline(), HANDSHAKE_TXN).await?;
    match reply.to_reply()? {
        Reply::NetOk(_) => {}
        Reply::NetErr(err) => return Err(remote(err)),
        other => {
            return Err(Error::Unexpected {
                expected: format!(
                    "{} or {} to the handshake",
                    NetOk::MESSAGE_ID,
                    NetErr::MESSAGE_ID
                ),
                found: other.message_id().to_string(),
            })
        }
    }

    let frame = Frame::request(&request, Some(Txn::request(REQUEST_TXN)));
    write_frame(stream, &frame, limits, deadline()).await?;
    loop {
        let frame = read_reply(stream, limits, deadline(), REQUEST_TXN).await?;
        match frame.to_reply()? {
            Reply::NetErr(err) => return Err(remote(err)),
            reply => on_reply(reply),
        }
        if frame.is_complete() {
            return Ok(());
        }
    }
}

/// The next frame, which must be a reply in transaction `txn_id`.
async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: &Limits,
    deadline: Instant,
    txn_id: u32,
) -> Result<Frame, Error> {
    let frame = read_frame(stream, limits, deadline)
        .await?
        .ok_or(Error::Closed)?;
    match frame.txn {
        Some(txn) if txn.id == txn_id && txn.is_response => Ok(frame),
        other => Err(Error::Unexpected {
            expected: format!("a reply in transaction {txn_id}"),
            found: match other {
                Some(txn) => format!(
                    "{} in transaction {} (response: {})",
                    frame.message_id, txn.id, txn.is_response
                ),
                None => format!("{} outside any transaction", frame.message_id),
            },
        }),
    }
}

fn remote(err: NetErr) -> Error {
    Error::Remote {
        code: err.code,
        message: err.msg,
    }
}
