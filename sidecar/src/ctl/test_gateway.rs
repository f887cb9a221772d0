//! A stand-in ctl gateway for tests (compiled only with `cfg(test)`): answers a handshake with
//! `NetOk` when the secret matches (else `NetErr` `Unauthorized` and a close), then one request
//! with the replies a test's `answer` function gives, the last marked complete. Records every
//! request, so a test can check what a client sent and that nothing was sent at all.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::codec::{Frame, Limits, Txn};
use super::error::{CodecError, Error};
use super::messages::{ErrCode, NetErr, NetOk, Reply, Request};

/// Serves one connection: a handshake, then one request answered by `answer`. Returns the raw
/// bytes of each frame received.
pub(crate) async fn serve_connection(
    stream: &mut TcpStream,
    secret: &str,
    mut answer: impl FnMut(&Request) -> Vec<Reply>,
) -> Result<Vec<Vec<u8>>, Error> {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut received = Vec::new();
    while received.len() < 2 {
        let (frame, used) = match Frame::decode(&buf, &limits) {
            Ok(decoded) => decoded,
            Err(CodecError::Truncated { .. }) => {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(Error::Closed);
                }
                buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        received.push(buf[..used].to_vec());
        buf.drain(..used);
        let txn = frame.txn.unwrap_or(Txn::request(0));
        let replies: Vec<Reply> = match frame.to_request() {
            Ok(Request::Handshake(h)) if h.secret_key.as_deref() == Some(secret) => {
                vec![NetOk {}.into()]
            }
            Ok(Request::Handshake(_)) => {
                vec![NetErr::new(ErrCode::Unauthorized, "secret key mismatch").into()]
            }
            Ok(request) => answer(&request),
            Err(e) => vec![NetErr::new(e.err_code(), e.to_string()).into()],
        };
        let refused = matches!(replies.last(), Some(Reply::NetErr(_)));
        let count = replies.len();
        for (i, reply) in replies.iter().enumerate() {
            let last = i + 1 == count;
            let bytes = Frame::reply(reply, Some(txn.reply(last))).encode(&limits)?;
            stream.write_all(&bytes).await?;
        }
        if refused {
            break;
        }
    }
    stream.shutdown().await?;
    Ok(received)
}

/// A gateway on a loopback port serving connections until dropped.
pub(crate) struct TestGateway {
    pub addr: String,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    /// Serves on 127.0.0.1 with `secret`, answering each request with `answer(request)`.
    pub(crate) async fn start(
        secret: &str,
        answer: impl Fn(&Request) -> Vec<Reply> + Send + Sync + 'static,
    ) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let secret = secret.to_string();
        let answer = Arc::new(answer);
        let task = {
            let requests = requests.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let requests = requests.clone();
                    let answer = answer.clone();
                    let _ = serve_connection(&mut stream, &secret, |request| {
                        requests.lock().unwrap().push(request.clone());
                        answer(request)
                    })
                    .await;
                }
            })
        };
        TestGateway {
            addr,
            requests,
            connections,
            task,
        }
    }

    /// Every request received after a good handshake, in order.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Connections accepted, whatever happened on them.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
