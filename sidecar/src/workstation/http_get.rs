//! A minimal HTTP/1.1 client for the supervisor's HTTP gateway: one `GET` per connection
//! (`Connection: close`), a bearer token when given, one deadline for the whole exchange and a
//! cap on what is read. Enough for `/census` and `/services`; not a general client.
//! Invariants: never reads more than `max_response` bytes; the token never reaches an error.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long and how much.
#[derive(Clone, Copy, Debug)]
pub struct GetOptions {
    /// For the TCP connection alone (past it, the gateway counts as unreachable).
    pub connect_timeout: Duration,
    /// For the whole exchange, connection included.
    pub deadline: Duration,
    /// Status line, headers and body together.
    pub max_response: usize,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            connect_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            max_response: 16 * 1024 * 1024,
        }
    }
}

/// How a `GET` failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{0}")]
    Unreachable(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed HTTP answer: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A complete answer: its status and body (de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET path` from `addr` (`HOST:PORT`).
pub async fn get(
    addr: &str,
    path: &str,
    token: Option<&str>,
    options: &GetOptions,
) -> Result<Response, GetError> {
    let started = tokio::time::Instant::now();
    let mut stream = match tokio::time::timeout(
        options.connect_timeout.min(options.deadline),
        TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(GetError::Unreachable(e.to_string())),
        Err(_) => {
            return Err(GetError::Unreachable(format!(
                "no connection within {:?}",
                options.connect_timeout.min(options.deadline)
            )))
        }
    };
    let exchange = async {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: hab\r\nAccept: \
             application/json\r\n{auth}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(options.max_response as u64 + 1)
            .read_to_end(&mut raw)
            .await?;
        Ok::<_, GetError>(raw)
    };
    let raw = tokio::time::timeout_at(started + options.deadline, exchange)
        .await
        .map_err(|_| GetError::Timeout(options.deadline))??;
    if raw.len() > options.max_response {
        return Err(GetError::TooLarge(options.max_response));
    }
    parse_response(&raw)
}

/// A whole HTTP/1.1 answer, as read up to the server's close.
pub fn parse_response(raw: &[u8]) -> Result<Response, GetError> {
    let bad = |what: &str| GetError::Malformed(what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("the headers never end (no empty line)"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| {
            GetError::Malformed(format!(
                "expected a status line such as \"HTTP/1.1 200 OK\", found {:?}",
                status_line.chars().take(80).collect::<String>()
            ))
        })?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("Content-Length is not a number"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = content_length {
        rest.get(..length)
            .ok_or_else(|| bad("the body is shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, GetError> {
    let bad = |what: &str| GetError::Malformed(format!("chunked body: {what}"));
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a chunk size line never ends"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad("size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(|| bad("a chunk does not end with CRLF"))?;
    }
}

/// A server on loopback that answers every connection with `answer` once it has the request
/// headers, and hands back each request it read.
#[cfg(test)]
pub(super) async fn test_server(answer: Vec<u8>) -> (String, tokio::sync::mpsc::Receiver<String>) {
    #![allow(clippy::unwrap_used)]
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.try_send(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(&answer).await;
            }
        });
        (addr, rx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::net::TcpListener;

    async fn server(answer: Vec<u8>) -> (String, tokio::sync::mpsc::Receiver<String>) {
        test_server(answer).await
    }

    #[tokio::test]
    async fn a_200_answer_gives_its_body_and_the_request_carries_the_token() {
        let (addr, mut requests) =
            server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()).await;
        let answer = get(&addr, "/census", Some("t0ken"), &GetOptions::default())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"{}");
        let request = requests.recv().await.unwrap();
        assert!(request.starts_with("GET /census HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains("Authorization: Bearer t0ken\r\n"),
            "{request}"
        );
        assert!(request.contains("Connection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_401_answer_is_returned_with_its_status() {
        let (addr, _requests) =
            server(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let answer = get(&addr, "/census", None, &GetOptions::default())
            .await
            .unwrap();
        assert_eq!(answer.status, 401);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable() {
        // Bound then dropped: nothing listens there any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let err = get(&addr, "/census", None, &GetOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, GetError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_without_reading_it_all() {
        let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        answer.extend(std::iter::repeat_n(b'x', 100_000));
        let (addr, _requests) = server(answer).await;
        let options = GetOptions {
            max_response: 1000,
            ..GetOptions::default()
        };
        let err = get(&addr, "/census", None, &options).await.unwrap_err();
        assert!(matches!(err, GetError::TooLarge(1000)), "{err:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let options = GetOptions {
            deadline: Duration::from_millis(200),
            ..GetOptions::default()
        };
        let err = get(&addr, "/census", None, &options).await.unwrap_err();
        assert!(matches!(err, GetError::Timeout(_)), "{err:?}");
        drop(listener);
    }

    #[test]
    fn chunked_bodies_are_reassembled_and_garbage_is_malformed() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().body, b"abcde");
        for garbage in [&b"hello"[..], b"SSH-2.0\r\n\r\n", b"HTTP/1.1 2xx\r\n\r\n"] {
            assert!(
                matches!(parse_response(garbage), Err(GetError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }
}
