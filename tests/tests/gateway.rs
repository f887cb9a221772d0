//! The HTTP gateway of real supervisors followed by change: a `/census` request that names the
//! census it has (`If-None-Match`) and waits (`?wait=SECS`) returns when the ring changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use habitat_e2e::{wait_until, Supervisor, HELLO_GROUP};

const BLOCK_WATCH: u8 = 94;

/// `GET path` with `headers`: status, ETag, body.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: hab\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .map(str::to_string);
    (status, etag, body.to_string())
}

#[test]
fn a_waiting_census_request_returns_when_a_member_joins() {
    let first = Supervisor::at(BLOCK_WATCH, 1).start();
    let addr = first.http_addr();
    // Settled: the member sees itself in its group, and two reads agree.
    wait_until(
        Duration::from_secs(30),
        "the first member's census settles",
        || first.population(HELLO_GROUP).is_ok_and(|p| p.len() == 1),
    );
    let etag = habitat_e2e::wait_for(Duration::from_secs(30), "an unchanging census", || {
        let (_, a, _) = get(addr, "/census", "");
        let (code, b, _) = get(
            addr,
            "/census",
            &format!("If-None-Match: {}\r\n", a.clone().unwrap()),
        );
        if code == 304 {
            Ok(b.unwrap())
        } else {
            Err(format!("{a:?} then {b:?}"))
        }
    });
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = get(
            addr,
            "/census?wait=30",
            &format!("If-None-Match: {etag}\r\n"),
        );
        (answer, started.elapsed())
    });
    let second = Supervisor::at(BLOCK_WATCH, 2)
        .peer(habitat_e2e::ip(BLOCK_WATCH, 1))
        .start();
    let ((code, _, body), took) = waiting.join().unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The answer came with the change: soon the census it returns holds the second member.
    wait_until(
        Duration::from_secs(30),
        "the census holds both members",
        || {
            first
                .population(HELLO_GROUP)
                .is_ok_and(|p| p.contains_key(&second.member_id()))
        },
    );
}
