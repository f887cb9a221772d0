//! The ring's sockets: one UDP socket for SWIM datagrams and a TCP listener plus short-lived
//! client connections for anti-entropy and pushes. The only I/O in `gossip/`; everything read is
//! handed to the manager's single task as an `Inbound` message, so no state is shared.
//!
//! TCP frames are a 4-byte big-endian length followed by that many bytes (an envelope); a
//! length above `MAX_FRAME` closes the connection. Every read and connect has a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::node::SessionId;
use super::wire::{MAX_DATAGRAM, MAX_FRAME};

const IO_DEADLINE: Duration = Duration::from_secs(5);

/// What the sockets deliver to the manager.
#[derive(Debug)]
pub enum Inbound {
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A frame on a connection a peer opened; answer on `reply` (None: no answer).
    Frame {
        from: SocketAddr,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// The answer to a frame we sent on `session`.
    Reply {
        session: SessionId,
        bytes: Vec<u8>,
    },
    SessionFailed {
        session: SessionId,
    },
    /// A frame longer than the limit, or a datagram too large, was refused.
    Oversized,
}

pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

pub async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Receives datagrams until the channel closes.
pub fn spawn_udp_receiver(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    tokio::spawn(async move {
        // One byte more than allowed, so an oversized datagram is recognised, not truncated.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let (len, from) = match socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive");
                    continue;
                }
            };
            let message = if len > MAX_DATAGRAM {
                Inbound::Oversized
            } else {
                Inbound::Datagram {
                    from,
                    bytes: buf[..len].to_vec(),
                }
            };
            // A full queue means we are overloaded: dropping is what UDP would do anyway.
            match inbound.try_send(message) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
}

/// Accepts peers' TCP connections; each one is a short conversation of frames.
pub fn spawn_tcp_listener(listener: TcpListener, inbound: mpsc::Sender<Inbound>) {
    tokio::spawn(async move {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let inbound = inbound.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(stream, from, inbound).await {
                    tracing::debug!(peer = %from, error = %e, "gossip connection");
                }
            });
        }
    });
}

async fn serve_connection(
    mut stream: TcpStream,
    from: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
) -> std::io::Result<()> {
    loop {
        let frame = match tokio::time::timeout(IO_DEADLINE, read_frame(&mut stream)).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    let _ = inbound.try_send(Inbound::Oversized);
                }
                return Err(e);
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let message = Inbound::Frame {
            from,
            bytes: frame,
            reply: reply_tx,
        };
        if inbound.send(message).await.is_err() {
            return Ok(());
        }
        if let Ok(Some(reply)) = reply_rx.await {
            tokio::time::timeout(IO_DEADLINE, write_frame(&mut stream, &reply))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        }
    }
}

/// One outgoing frame of a client session.
#[derive(Debug)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub expect_reply: bool,
}

/// Opens a client session to `to`: sends each frame it is given, reads a reply when one is
/// expected, and ends when the sender is dropped, after a frame that expects no reply, or on
/// any error (reported as `SessionFailed`).
pub fn spawn_session(
    to: SocketAddr,
    session: SessionId,
    inbound: mpsc::Sender<Inbound>,
) -> mpsc::Sender<Outgoing> {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(4);
    tokio::spawn(async move {
        let result: std::io::Result<()> = async {
            let mut stream = tokio::time::timeout(IO_DEADLINE, TcpStream::connect(to))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            loop {
                let out = match tokio::time::timeout(IO_DEADLINE, rx.recv()).await {
                    Ok(Some(out)) => out,
                    Ok(None) | Err(_) => return Ok(()),
                };
                tokio::time::timeout(IO_DEADLINE, write_frame(&mut stream, &out.bytes))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                if !out.expect_reply {
                    return Ok(());
                }
                let reply = tokio::time::timeout(IO_DEADLINE, read_frame(&mut stream))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
                if inbound
                    .send(Inbound::Reply {
                        session,
                        bytes: reply,
                    })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(peer = %to, error = %e, "gossip session");
            let _ = inbound.send(Inbound::SessionFailed { session }).await;
        }
    });
    tx
}
