//! The ring's sockets: one UDP socket for SWIM datagrams and a TCP listener plus short-lived
//! client connections for anti-entropy and pushes. The only I/O in `gossip/`; everything read is
//! handed to the manager's single task as an `Inbound` message, so no state is shared.
//!
//! TCP frames are a 4-byte big-endian length followed by that many bytes (an envelope); a
//! length above `MAX_FRAME` closes the connection. Every read and connect has a deadline.
//! Connections peers open are capped (`TcpLimits`: more are closed on accept and counted) and
//! closed after a whole-connection deadline, and their frames go to the manager through a
//! queue of their own, so a flood of TCP frames never crowds out SWIM's datagrams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::crypto::{Keyring, Opened};
use super::node::SessionId;
use super::wire::{MAX_DATAGRAM, MAX_FRAME};
use crate::connection_slots::{ConnectionSlots, SlotLimits};

const IO_DEADLINE: Duration = Duration::from_secs(5);

/// What the sockets deliver to the manager.
#[derive(Debug)]
pub enum Inbound {
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A frame on a connection a peer opened, opened with the ring's keys there; answer on
    /// `reply` (None: no answer). `budget` holds its bytes' share of `FRAME_BYTES` until the
    /// frame is dropped.
    Frame {
        from: SocketAddr,
        opened: Opened,
        len: usize,
        reply: oneshot::Sender<Option<Vec<u8>>>,
        budget: OwnedSemaphorePermit,
    },
    /// A frame on a connection a peer opened that did not open (`reason`); the connection was
    /// closed.
    FrameRefused {
        from: SocketAddr,
        reason: &'static str,
        len: usize,
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
    /// A peer's connection was closed on accept: the cap or its source's share was reached.
    ConnectionRefused,
}

/// Limits on the TCP connections peers open (nothing on them is authenticated yet).
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Open connections (more are closed as soon as they are accepted), and each source's
    /// share once half are open.
    pub connections: SlotLimits,
    /// A connection is closed after this, whatever it sends: an anti-entropy conversation takes
    /// a few round trips, a peer sending a junk frame every few seconds would hold it for ever.
    pub connection_deadline: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            connections: SlotLimits {
                max: 64,
                per_source: 8,
            },
            connection_deadline: Duration::from_secs(30),
        }
    }
}

/// How many peer frames may wait for the manager; a connection task waits beyond that (its
/// own deadlines bound the wait).
pub const FRAME_QUEUE: usize = 64;

/// Bytes of peers' frames being read or waiting for the manager, all connections together; a
/// connection waits for its share before it reads a frame's body (at most `IO_DEADLINE`).
pub const FRAME_BYTES: usize = 16 << 20;

pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let Some(len) = read_frame_len(stream).await? else {
        return Ok(None);
    };
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// A frame's length, checked against `MAX_FRAME`; `None` at the end of the stream.
async fn read_frame_len(stream: &mut TcpStream) -> std::io::Result<Option<usize>> {
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
    Ok(Some(len))
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

/// Accepts peers' TCP connections, within `limits`; each one is a short conversation of
/// frames, opened with `keys` in the connection's task (a frame that does not open closes the
/// connection and never waits for the manager) and delivered on `frames` (keep it apart from
/// the datagrams' queue).
pub fn spawn_tcp_listener(
    listener: TcpListener,
    frames: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    keys: watch::Receiver<Keyring>,
) {
    let slots = ConnectionSlots::new(limits.connections);
    let budget = Arc::new(Semaphore::new(FRAME_BYTES));
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
            let Ok(permit) = slots.take(from.ip()) else {
                drop(stream);
                let _ = frames.try_send(Inbound::ConnectionRefused);
                continue;
            };
            let peer = Peer {
                from,
                frames: frames.clone(),
                keys: keys.clone(),
                budget: Arc::clone(&budget),
            };
            tokio::spawn(async move {
                let served =
                    tokio::time::timeout(limits.connection_deadline, peer.serve(stream)).await;
                if let Ok(Err(e)) = served {
                    tracing::debug!(peer = %from, error = %e, "gossip connection");
                }
                drop(permit);
            });
        }
    });
}

/// What a connection task of a peer's connection holds.
struct Peer {
    from: SocketAddr,
    frames: mpsc::Sender<Inbound>,
    keys: watch::Receiver<Keyring>,
    budget: Arc<Semaphore>,
}

impl Peer {
    async fn serve(self, mut stream: TcpStream) -> std::io::Result<()> {
        loop {
            let read = tokio::time::timeout(IO_DEADLINE, self.read_frame(&mut stream)).await;
            let (bytes, budget) = match read {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) | Err(_) => return Ok(()),
                Ok(Err(e)) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        let _ = self.frames.try_send(Inbound::Oversized);
                    }
                    return Err(e);
                }
            };
            let len = bytes.len();
            let opened = self.keys.borrow().open(&bytes);
            let opened = match opened {
                Ok(opened) => opened,
                Err(e) => {
                    let _ = self.frames.try_send(Inbound::FrameRefused {
                        from: self.from,
                        reason: e.reason(),
                        len,
                    });
                    return Ok(());
                }
            };
            drop(bytes);
            let (reply_tx, reply_rx) = oneshot::channel();
            let message = Inbound::Frame {
                from: self.from,
                opened,
                len,
                reply: reply_tx,
                budget,
            };
            if self.frames.send(message).await.is_err() {
                return Ok(());
            }
            if let Ok(Some(reply)) = reply_rx.await {
                tokio::time::timeout(IO_DEADLINE, write_frame(&mut stream, &reply))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            }
        }
    }

    /// Reads a frame once its bytes fit in the shared budget; `None` at the end of the stream.
    async fn read_frame(
        &self,
        stream: &mut TcpStream,
    ) -> std::io::Result<Option<(Vec<u8>, OwnedSemaphorePermit)>> {
        let Some(len) = read_frame_len(stream).await? else {
            return Ok(None);
        };
        // `len` is at most MAX_FRAME, well within u32 and the budget.
        let share = u32::try_from(len).map_err(|_| std::io::ErrorKind::InvalidData)?;
        let budget = Arc::clone(&self.budget)
            .acquire_many_owned(share)
            .await
            .map_err(|_| std::io::ErrorKind::BrokenPipe)?;
        let mut bytes = vec![0u8; len];
        stream.read_exact(&mut bytes).await?;
        Ok(Some((bytes, budget)))
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

/// Whether the server closes `stream` (end of stream or reset) within 10 s, reading and
/// dropping whatever it sends meanwhile.
#[cfg(test)]
pub(crate) async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    let drained = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A listener within `limits` whose frames are answered with nothing; returns its address
    /// and what it delivered.
    async fn listener(limits: TcpLimits) -> (SocketAddr, mpsc::Receiver<Inbound>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frames_tx, mut frames_rx) = mpsc::channel(FRAME_QUEUE);
        let (seen_tx, seen_rx) = mpsc::channel(1024);
        let (keys_tx, keys) = watch::channel(Keyring::cleartext());
        spawn_tcp_listener(listener, frames_tx, limits, keys);
        tokio::spawn(async move {
            let _keys = keys_tx;
            while let Some(message) = frames_rx.recv().await {
                let message = match message {
                    Inbound::Frame {
                        from,
                        opened,
                        reply,
                        ..
                    } => {
                        let _ = reply.send(None);
                        Inbound::Datagram {
                            from,
                            bytes: opened.body,
                        }
                    }
                    other => other,
                };
                if seen_tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        (addr, seen_rx)
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
        let limits = TcpLimits {
            connections: SlotLimits {
                max: 2,
                per_source: 2,
            },
            ..TcpLimits::default()
        };
        let (addr, mut seen) = listener(limits).await;
        let _held = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_server(&mut third).await,
            "over the cap, still open"
        );
        let refused = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
        assert!(
            matches!(refused, Ok(Some(Inbound::ConnectionRefused))),
            "{refused:?}"
        );
    }

    /// `body` in a cleartext envelope, as a peer of a ring without a key sends it.
    fn sealed(body: &[u8]) -> Vec<u8> {
        Keyring::cleartext().seal(body, 1, [7; 16])
    }

    #[tokio::test]
    async fn a_frame_that_does_not_open_closes_the_connection_and_is_reported() {
        let (addr, mut seen) = listener(TcpLimits::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        write_frame(&mut stream, b"junk").await.unwrap();
        assert!(closed_by_server(&mut stream).await, "still open after junk");
        let refused = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
        assert!(
            matches!(refused, Ok(Some(Inbound::FrameRefused { len: 4, .. }))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_sending_frames_forever_is_cut_off_at_the_deadline() {
        let limits = TcpLimits {
            connection_deadline: Duration::from_millis(500),
            ..TcpLimits::default()
        };
        let (addr, mut seen) = listener(limits).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let junk = async {
            // A frame every 50 ms: each one is read in time, so only the connection's own
            // deadline ends this.
            loop {
                if write_frame(&mut stream, &sealed(b"junk")).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(10), junk)
                .await
                .is_ok(),
            "still accepting frames after 10 s"
        );
        assert!(matches!(seen.recv().await, Some(Inbound::Datagram { .. })));
    }

    #[tokio::test]
    async fn one_source_holding_its_share_cannot_lock_out_another() {
        let limits = TcpLimits {
            connections: SlotLimits {
                max: 4,
                per_source: 1,
            },
            ..TcpLimits::default()
        };
        let (addr, mut seen) = listener(limits).await;
        let connect_from = |source: &str| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new(source.parse().unwrap(), 0))
                .unwrap();
            socket.connect(addr)
        };
        let mut flood = Vec::new();
        for _ in 0..2 {
            flood.push(connect_from("127.0.0.1").await.unwrap());
        }
        // Half the slots are taken, all by one source: it gets no more...
        let mut over_share = connect_from("127.0.0.1").await.unwrap();
        assert!(closed_by_server(&mut over_share).await, "over its share");
        // ...and another source still gets in and is heard.
        let mut peer = connect_from("127.0.0.2").await.unwrap();
        write_frame(&mut peer, &sealed(b"sync")).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = seen.recv().await {
                if let Inbound::Datagram { from, bytes } = message {
                    return Some((from.ip(), bytes));
                }
            }
            None
        });
        let (from, bytes) = heard.await.unwrap().unwrap();
        assert_eq!(
            (from.to_string().as_str(), &bytes[..]),
            ("127.0.0.2", &b"sync"[..])
        );
    }
}
