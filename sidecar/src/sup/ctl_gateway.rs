//! The ctl gateway on `--listen-ctl`: Habitat's ctl protocol (`crate::ctl`), so Habitat's own
//! `hab` and ours change a running ring from a workstation (`hab config apply`, `hab file
//! upload`, `hab svc status`, `hab sup depart`).
//!
//! A connection is one conversation: a `Handshake` carrying the secret (compared in constant
//! time), then one request, whose replies are streamed with the last marked complete; then the
//! gateway closes it. Anything else (a malformed frame, a request before the handshake, a wrong
//! secret) is answered with Habitat's `NetErr` and the connection closed. The conversation's
//! rules are `Session`, a pure state machine; the socket work is around it. Requests that need
//! the ring go to the supervisor loop (`Ask`) and wait at most `answer_timeout`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::connection_slots::{ConnectionSlots, SlotLimits};
use crate::ctl::codec::{read_frame, write_frame, Frame, Limits as FrameLimits, Txn};
use crate::ctl::messages::{ErrCode, NetErr, NetOk, Reply, Request};
use crate::error::{Error, Result};
use crate::http::token_matches;

/// The most a config or file sent through the gateway may hold (a rumor's payload limit).
pub const MAX_PAYLOAD: usize = crate::gossip::rumor::MAX_PAYLOAD_BYTES;

/// How much the gateway gives any one client.
#[derive(Clone, Copy, Debug)]
pub struct CtlLimits {
    pub connections: SlotLimits,
    /// The handshake and the request must each arrive within this.
    pub read_deadline: Duration,
    /// A request waits at most this long for the supervisor loop.
    pub answer_timeout: Duration,
    /// Frames above this are refused before their body is read.
    pub frame: FrameLimits,
}

impl Default for CtlLimits {
    fn default() -> Self {
        CtlLimits {
            connections: SlotLimits {
                max: 32,
                per_source: 8,
            },
            read_deadline: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(10),
            // A config or file of MAX_PAYLOAD plus its envelope of fields.
            frame: FrameLimits {
                max_body_len: MAX_PAYLOAD + 4096,
            },
        }
    }
}

/// A request for the supervisor loop, and where its replies go (the last one completes it).
pub struct Ask {
    pub request: Request,
    pub reply: oneshot::Sender<Vec<Reply>>,
}

/// Counts kept by the gateway's tasks (read by `/metrics` through the loop).
#[derive(Debug, Default)]
pub struct CtlCounters {
    pub refused_secret: AtomicU64,
    pub malformed: AtomicU64,
}

/// A `NetErr` reply.
pub fn net_err(code: ErrCode, msg: impl Into<String>) -> Reply {
    Reply::NetErr(NetErr {
        code: code as i32,
        msg: msg.into(),
    })
}

/// What a conversation expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    Handshake,
    Request,
    Done,
}

/// What to do with a frame that arrived.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send these replies in the frame's transaction, then expect the next frame.
    Answer(Vec<Reply>),
    /// Hand the request to the loop, send what it answers, then close.
    Ask(Request),
    /// Send this `NetErr` and close.
    Refuse(Reply),
}

impl Session {
    /// The step for `request` (already decoded) when `secret_ok` says whether a handshake's
    /// secret matched.
    pub fn step(&mut self, request: Request, secret_ok: bool) -> Step {
        match (*self, request) {
            (Session::Handshake, Request::Handshake(_)) if secret_ok => {
                *self = Session::Request;
                Step::Answer(vec![Reply::NetOk(NetOk {})])
            }
            (Session::Handshake, Request::Handshake(_)) => {
                *self = Session::Done;
                Step::Refuse(net_err(ErrCode::Unauthorized, "secret key mismatch"))
            }
            (Session::Handshake, other) => {
                *self = Session::Done;
                Step::Refuse(net_err(
                    ErrCode::Unauthorized,
                    format!("{} before the handshake", other.message_id()),
                ))
            }
            (Session::Request, Request::Handshake(_)) => {
                *self = Session::Done;
                Step::Refuse(net_err(ErrCode::BadPayload, "a second handshake"))
            }
            (Session::Request, request) => {
                *self = Session::Done;
                Step::Ask(request)
            }
            (Session::Done, _) => {
                Step::Refuse(net_err(ErrCode::BadPayload, "one request per connection"))
            }
        }
    }
}

/// Longest ctl secret accepted from `HAB_CTL_SECRET`.
pub const MAX_SECRET_LEN: usize = 1024;

/// The gateway's secret. `given` (`HAB_CTL_SECRET`) when set: it must be 1 to
/// `MAX_SECRET_LEN` visible ASCII characters (surrounding whitespace is dropped), and is
/// written to `path` so local `hab` commands find it. Otherwise `path`
/// (`<sup dir>/CTL_SECRET`), created (random, mode 0600) on first start. Errors never show it.
pub fn load_or_create_secret(path: &Path, given: Option<&str>) -> Result<String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path, e)),
    };
    if let Some(given) = given {
        let secret = given.trim();
        let visible = |c: char| c.is_ascii_graphic();
        if secret.is_empty() || secret.len() > MAX_SECRET_LEN || !secret.chars().all(visible) {
            return Err(Error::InvalidInput {
                what: "HAB_CTL_SECRET".to_string(),
                problem: format!(
                    "expected 1 to {MAX_SECRET_LEN} visible ASCII characters (no spaces), \
                     found {} characters",
                    secret.chars().count()
                ),
            });
        }
        if existing.as_deref() != Some(secret) {
            crate::files::write_atomically(path, format!("{secret}\n").as_bytes(), 0o600)?;
        }
        return Ok(secret.to_string());
    }
    if let Some(secret) = existing {
        return Ok(secret);
    }
    let bytes: [u8; 32] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::files::write_atomically(path, format!("{secret}\n").as_bytes(), 0o600)?;
    Ok(secret)
}

/// Serves the gateway on `listener`; requests that need the ring go to `asks`.
pub fn spawn(
    listener: TcpListener,
    secret: String,
    asks: mpsc::Sender<Ask>,
    counters: Arc<CtlCounters>,
    limits: CtlLimits,
) {
    let slots = ConnectionSlots::new(limits.connections);
    let secret: Arc<str> = Arc::from(secret);
    tokio::spawn(async move {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "ctl gateway accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.take(from.ip()) else {
                tracing::debug!(%from, "ctl gateway: connection refused (cap)");
                continue;
            };
            // Replies are small frames sent in a row (a status per service): without this the
            // second would wait for the client's delayed ACK.
            let _ = stream.set_nodelay(true);
            let (secret, asks, counters) =
                (Arc::clone(&secret), asks.clone(), Arc::clone(&counters));
            tokio::spawn(async move {
                converse(stream, from, &secret, &asks, &counters, &limits).await;
                drop(slot);
            });
        }
    });
}

async fn converse(
    mut stream: TcpStream,
    from: SocketAddr,
    secret: &str,
    asks: &mpsc::Sender<Ask>,
    counters: &CtlCounters,
    limits: &CtlLimits,
) {
    let mut session = Session::Handshake;
    while session != Session::Done {
        let deadline = Instant::now() + limits.read_deadline;
        let frame = match read_frame(&mut stream, &limits.frame, deadline).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, error = %e, "ctl gateway: unreadable frame");
                if let crate::ctl::Error::Codec(codec) = &e {
                    let reply = net_err(codec.err_code(), codec.to_string());
                    send(&mut stream, &[reply], None, limits).await;
                }
                return;
            }
        };
        let txn = frame.txn;
        let request = match frame.to_request() {
            Ok(request) => request,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                send(
                    &mut stream,
                    &[net_err(e.err_code(), e.to_string())],
                    txn,
                    limits,
                )
                .await;
                return;
            }
        };
        let secret_ok = match &request {
            Request::Handshake(h) => token_matches(secret, h.secret_key.as_deref()),
            _ => false,
        };
        match session.step(request, secret_ok) {
            Step::Answer(replies) => {
                if !send(&mut stream, &replies, txn, limits).await {
                    return;
                }
            }
            Step::Refuse(reply) => {
                if session == Session::Done && !secret_ok {
                    counters.refused_secret.fetch_add(1, Ordering::Relaxed);
                    // Never the secret itself.
                    tracing::warn!(%from, "ctl gateway: refused a client (secret or order)");
                }
                send(&mut stream, &[reply], txn, limits).await;
                return;
            }
            Step::Ask(request) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                let asked = asks.send(Ask {
                    request,
                    reply: reply_tx,
                });
                let answer = async {
                    asked.await.ok()?;
                    reply_rx.await.ok()
                };
                let replies = tokio::time::timeout(limits.answer_timeout, answer)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| {
                        vec![net_err(ErrCode::Internal, "the supervisor did not answer")]
                    });
                send(&mut stream, &replies, txn, limits).await;
            }
        }
    }
}

/// Sends `replies` in the request's transaction, the last one marked complete; whether it
/// worked.
async fn send(
    stream: &mut TcpStream,
    replies: &[Reply],
    txn: Option<Txn>,
    limits: &CtlLimits,
) -> bool {
    let deadline = Instant::now() + limits.read_deadline;
    let last = replies.len().saturating_sub(1);
    for (i, reply) in replies.iter().enumerate() {
        let frame = Frame::reply(reply, txn.map(|t| t.reply(i == last)));
        // Replies may be larger than what the gateway accepts (a default config).
        let unlimited = FrameLimits::default();
        if let Err(e) = write_frame(stream, &frame, &unlimited, deadline).await {
            tracing::debug!(error = %e, "ctl gateway: write");
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ctl::messages::{Handshake, SvcStatus};

    fn handshake() -> Request {
        Request::Handshake(Handshake {
            secret_key: Some("s3cret".into()),
        })
    }

    #[test]
    fn a_conversation_is_a_handshake_then_one_request() {
        let mut session = Session::Handshake;
        assert_eq!(
            session.step(handshake(), true),
            Step::Answer(vec![Reply::NetOk(NetOk {})])
        );
        let status = Request::SvcStatus(SvcStatus::default());
        assert_eq!(
            session.step(status.clone(), false),
            Step::Ask(status.clone())
        );
        assert_eq!(session, Session::Done);
        assert!(matches!(session.step(status, false), Step::Refuse(_)));
    }

    #[test]
    fn a_wrong_secret_or_a_request_first_is_refused_as_unauthorized() {
        let unauthorized = |step: Step| match step {
            Step::Refuse(Reply::NetErr(e)) => e.code == ErrCode::Unauthorized as i32,
            _ => false,
        };
        let mut session = Session::Handshake;
        assert!(unauthorized(session.step(handshake(), false)));
        assert_eq!(session, Session::Done);
        let mut session = Session::Handshake;
        assert!(unauthorized(
            session.step(Request::SvcStatus(SvcStatus::default()), false)
        ));
    }

    #[test]
    fn the_secret_matches_only_itself_whole() {
        assert!(token_matches("abc", Some("abc")));
        for other in [Some("ab"), Some("abcd"), Some(""), None] {
            assert!(!token_matches("abc", other), "{other:?}");
        }
    }

    #[test]
    fn the_secret_file_is_created_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CTL_SECRET");
        let first = load_or_create_secret(&path, None).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_secret(&path, None).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_secret_from_the_environment_wins_and_is_written_for_local_commands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CTL_SECRET");
        let generated = load_or_create_secret(&path, None).unwrap();
        let given = load_or_create_secret(&path, Some(" from-a-k8s-secret\n")).unwrap();
        assert_eq!(given, "from-a-k8s-secret");
        assert_ne!(given, generated);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "from-a-k8s-secret\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Without it again, the file (now the given secret) is kept.
        assert_eq!(load_or_create_secret(&path, None).unwrap(), given);
    }

    #[test]
    fn an_invalid_secret_from_the_environment_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("CTL_SECRET");
        for bad in [
            "",
            "   ",
            "two words",
            "tab\there",
            &"x".repeat(MAX_SECRET_LEN + 1),
        ] {
            let err = load_or_create_secret(&path, Some(bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains("HAB_CTL_SECRET"), "{err}");
            assert!(bad.trim().is_empty() || !err.contains(bad.trim()), "{err}");
        }
        assert!(!path.exists());
    }
}
