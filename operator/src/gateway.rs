//! A client of the supervisor's HTTP gateway for the census stream: `GET /census` with the
//! bearer token, conditional on the ETag the operator has (`If-None-Match`) and long-polled
//! (`?wait=SECS`), over one HTTP/1.1 connection per request (hyper, already in the tree through
//! kube). The token never reaches an error or a log line; answers are capped in size.

use std::net::SocketAddr;
use std::time::Duration;

use habitat_sidecar::census::doc::CensusDoc;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONNECTION, ETAG, HOST, IF_NONE_MATCH};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The most a gateway answer may hold.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// What a census request found.
#[derive(Debug)]
pub enum CensusAnswer {
    /// The census (changed, or asked for unconditionally) and its ETag.
    Census {
        etag: Option<String>,
        doc: Box<CensusDoc>,
    },
    /// Nothing changed within the wait.
    Unchanged,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("HTTP gateway {addr}: {problem}")]
    Failed { addr: SocketAddr, problem: String },
    #[error("HTTP gateway {addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("HTTP gateway {addr}: refused the bearer token (HTTP 401): is the pod's HAB_SUP_GATEWAY_AUTH_TOKEN the resource's token Secret?")]
    Unauthorized { addr: SocketAddr },
    #[error("HTTP gateway {addr}: {path} answered HTTP {status}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
    },
}

struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Bytes,
}

/// Aborts the connection's task when the request is done or dropped (a timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    if_none_match: Option<&str>,
) -> Result<Answer, GatewayError> {
    let failed = |problem: String| GatewayError::Failed { addr, problem };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(format!("handshake: {e}")))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut request = Request::get(path)
        .header(HOST, addr.to_string())
        .header(CONNECTION, "close");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(etag) = if_none_match {
        request = request.header(IF_NONE_MATCH, etag);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|_| {
        failed("could not build the request (a token with invalid characters?)".into())
    })?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(format!("request: {e}")))?;
    let status = response.status();
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| failed(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok(Answer { status, etag, body })
}

/// `GET /census` from `addr`: with `etag`, waits up to `wait` for a change (answering
/// `Unchanged` if none came); without, answers at once. `timeout` bounds the whole request.
pub async fn census(
    addr: SocketAddr,
    token: Option<&str>,
    etag: Option<&str>,
    wait: Duration,
    timeout: Duration,
) -> Result<CensusAnswer, GatewayError> {
    let path = match etag {
        Some(_) => format!("/census?wait={}", wait.as_secs()),
        None => "/census".to_owned(),
    };
    let answer = tokio::time::timeout(timeout, get(addr, &path, token, etag))
        .await
        .map_err(|_| GatewayError::Timeout { addr, timeout })??;
    match answer.status {
        StatusCode::OK => {
            let doc = CensusDoc::from_slice(&answer.body).map_err(|e| GatewayError::Failed {
                addr,
                problem: format!("expected Habitat's census JSON: {e}"),
            })?;
            Ok(CensusAnswer::Census {
                etag: answer.etag,
                doc: Box::new(doc),
            })
        }
        StatusCode::NOT_MODIFIED => Ok(CensusAnswer::Unchanged),
        StatusCode::UNAUTHORIZED => Err(GatewayError::Unauthorized { addr }),
        status => Err(GatewayError::Status {
            addr,
            path,
            status: status.as_u16(),
        }),
    }
}

/// The health check of the answering member's own service of `service_group` (`ok`,
/// `warning`, `critical`, `unknown`), from its `/services`; None when it does not say.
pub async fn service_health(
    addr: SocketAddr,
    token: Option<&str>,
    service_group: &str,
    timeout: Duration,
) -> Option<String> {
    let answer = tokio::time::timeout(timeout, get(addr, "/services", token, None))
        .await
        .ok()?
        .ok()?;
    if answer.status != StatusCode::OK {
        return None;
    }
    let services: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    services
        .as_array()?
        .iter()
        .find(|s| s.get("service_group").and_then(|g| g.as_str()) == Some(service_group))?
        .get("health_check")?
        .as_str()
        .map(str::to_lowercase)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A gateway that answers one request with `reply` and hands back what it was sent.
    async fn one_answer(reply: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_conditional_request_carries_token_and_etag_and_304_is_unchanged() {
        let (addr, sent) =
            one_answer("HTTP/1.1 304 Not Modified\r\netag: \"1\"\r\ncontent-length: 0\r\n\r\n")
                .await;
        let answer = census(
            addr,
            Some("tok"),
            Some("\"1\""),
            Duration::from_secs(30),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(matches!(answer, CensusAnswer::Unchanged));
        let request = sent.await.unwrap().to_lowercase();
        assert!(request.starts_with("get /census?wait=30 "), "{request}");
        assert!(request.contains("authorization: bearer tok"), "{request}");
        assert!(request.contains("if-none-match: \"1\""), "{request}");
    }

    #[tokio::test]
    async fn a_census_parses_and_401_says_which_secret_to_check_without_the_token() {
        let body = r#"{"census_groups":{},"local_member_id":"ab"}"#;
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\netag: \"7\"\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (addr, _) = one_answer(reply).await;
        let answer = census(addr, None, None, Duration::ZERO, Duration::from_secs(5))
            .await
            .unwrap();
        let CensusAnswer::Census { etag, doc } = answer else {
            panic!("expected a census");
        };
        assert_eq!(etag.as_deref(), Some("\"7\""));
        assert_eq!(doc.local_member_id, "ab");
        let (addr, _) = one_answer("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n").await;
        let err = census(
            addr,
            Some("s3cret"),
            None,
            Duration::ZERO,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("HAB_SUP_GATEWAY_AUTH_TOKEN"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
