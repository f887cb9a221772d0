//! Flood benchmark (issue 16): five real supervisors with DEFAULT timings and limits on
//! 127.0.204.x; from 127.0.205.1 an attacker keeps trying to hold 2,000 half-open HTTP
//! connections (request headers never finished) and 500 gossip TCP connections trickling a
//! frame a byte a second, all against member 1, reconnecting whatever is closed. For the
//! duration (default 60 s) it measures:
//! - false deaths: any member seen by any other as anything but Alive (target 0);
//! - `/healthz` of member 1, asked from 127.0.0.1 every 200 ms: worst and 99th percentile
//!   latency (target <= 100 ms), and how many failed;
//! - member 1's resident memory growth (target <= 20 MB);
//! - the longest an attacker connection stayed open (HTTP: header deadline 10 s; gossip: a
//!   frame must arrive within 5 s), and how many were opened and closed.
//!
//! Prints one JSON line. `cargo run --release -p habitat-e2e --bin flood-bench`;
//! `FLOOD_BENCH_SECS` sets the duration, `FLOOD_BENCH_HTTP` and `FLOOD_BENCH_GOSSIP` the
//! numbers of connections the attacker tries to hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use habitat_e2e::{median, round3, rss_mb, start_ring, Supervisor};
use serde_json::json;
use socket2::{Domain, Socket, Type};

const BLOCK: u8 = 204;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 205, 1);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A non-blocking connection to `to` from the attacker's address.
fn connect(to: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket
        .bind(&SocketAddr::new(ATTACKER.into(), 0).into())
        .ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(1))
        .ok()?;
    let stream: TcpStream = socket.into();
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// Whether the server closed `stream` (end of stream or an error other than "nothing yet").
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// What one attacker thread did.
#[derive(Default)]
struct Attack {
    opened: u64,
    closed: u64,
    /// The longest a connection stayed open before the server closed it, seconds.
    longest_s: f64,
    /// Connections still open at the end, and the oldest of them, seconds.
    open_at_end: u64,
    oldest_open_s: f64,
}

/// Keeps trying to hold `count` connections to `to`: `first` is written on connect, `trickle`
/// every second after; a closed slot is reopened a second later.
fn attack(
    to: SocketAddr,
    count: usize,
    first: &'static [u8],
    trickle: &'static [u8],
    stop: &AtomicBool,
) -> Attack {
    struct Slot {
        stream: Option<(TcpStream, Instant)>,
        next_try: Instant,
        next_write: Instant,
    }
    let start = Instant::now();
    let mut slots: Vec<Slot> = (0..count)
        .map(|i| Slot {
            stream: None,
            // Spread over the first second.
            next_try: start
                + Duration::from_secs(1) * u32::try_from(i).unwrap()
                    / u32::try_from(count).unwrap(),
            next_write: start,
        })
        .collect();
    let mut result = Attack::default();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for slot in &mut slots {
            if let Some((stream, since)) = slot.stream.as_mut() {
                let gone = closed(stream)
                    || (now >= slot.next_write
                        && {
                            slot.next_write = now + Duration::from_secs(1);
                            matches!(stream.write(trickle), Err(ref e) if e.kind() != ErrorKind::WouldBlock)
                        });
                if gone {
                    result.closed += 1;
                    result.longest_s = result.longest_s.max(since.elapsed().as_secs_f64());
                    slot.stream = None;
                    slot.next_try = now + Duration::from_secs(1);
                }
            } else if now >= slot.next_try {
                slot.next_try = now + Duration::from_secs(1);
                if let Some(mut stream) = connect(to) {
                    let _ = stream.write(first);
                    result.opened += 1;
                    slot.next_write = now + Duration::from_secs(1);
                    slot.stream = Some((stream, now));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for slot in &slots {
        if let Some((_, since)) = &slot.stream {
            result.open_at_end += 1;
            result.oldest_open_s = result.oldest_open_s.max(since.elapsed().as_secs_f64());
        }
    }
    result
}

fn attack_json(a: &Attack) -> serde_json::Value {
    json!({
        "opened": a.opened,
        "closed_by_server": a.closed,
        "longest_open_s": round3(a.longest_s),
        "open_at_end": a.open_at_end,
        "oldest_open_at_end_s": round3(a.oldest_open_s),
    })
}

/// `GET /healthz` from 127.0.0.1 with a 2 s limit; its latency when answered 200.
fn healthz(addr: SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hab\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.starts_with("HTTP/1.1 200").then(|| start.elapsed())
}

fn main() {
    let secs = env_or("FLOOD_BENCH_SECS", 60);
    let http_count = usize::try_from(env_or("FLOOD_BENCH_HTTP", 2_000)).unwrap();
    let gossip_count = usize::try_from(env_or("FLOOD_BENCH_GOSSIP", 500)).unwrap();
    eprintln!("hab: {}", habitat_e2e::hab_binary().display());
    let ring = start_ring(BLOCK, 5, |_, b| b.default_timings());
    let ids: Vec<String> = ring.iter().map(Supervisor::member_id).collect();
    habitat_e2e::wait_until(Duration::from_secs(60), "the ring formed", || {
        ring.iter().all(|s| {
            s.health()
                .is_ok_and(|h| ids.iter().all(|id| h.get(id).is_some_and(|v| v == "Alive")))
        })
    });
    let victim = &ring[0];
    let victim_pid = victim.pid().unwrap();
    let rss_before = rss_mb(victim_pid);

    let stop = Arc::new(AtomicBool::new(false));
    let http_to = victim.http_addr();
    let gossip_to = victim.gossip_addr();
    let http_attack = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            attack(
                http_to,
                http_count,
                b"GET /census HTTP/1.1\r\nHost: hab\r\n",
                b"X",
                &stop,
            )
        })
    };
    let gossip_attack = {
        let stop = Arc::clone(&stop);
        // A frame announced as 64 KiB, sent a byte a second.
        std::thread::spawn(move || {
            attack(gossip_to, gossip_count, &[0, 1, 0, 0, 0x02], &[0x02], &stop)
        })
    };

    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut failed_probes = 0u64;
    let mut false_deaths = Vec::new();
    let mut rss_max = rss_before;
    let mut last_census = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        match healthz(http_to) {
            Some(latency) => latencies.push(latency.as_secs_f64()),
            None => failed_probes += 1,
        }
        if last_census.elapsed() >= Duration::from_secs(1) {
            last_census = Instant::now();
            rss_max = rss_max.max(rss_mb(victim_pid));
            for seer in &ring {
                if let Ok(health) = seer.health() {
                    for id in &ids {
                        match health.get(id).map(String::as_str) {
                            Some("Alive") | None => {}
                            Some(other) => false_deaths.push(json!({
                                "at_s": round3(start.elapsed().as_secs_f64()),
                                "seer": seer.member_id(),
                                "member": id,
                                "health": other,
                            })),
                        }
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_after = rss_mb(victim_pid);
    stop.store(true, Ordering::Relaxed);
    let http = http_attack.join().unwrap();
    let gossip = gossip_attack.join().unwrap();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get(latencies.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or(f64::NAN);
    let dropped = victim
        .metrics()
        .map(|text| habitat_e2e::dropped_by_reason(&text))
        .unwrap_or_default();
    println!(
        "{}",
        json!({
            "seconds": secs,
            "false_deaths": false_deaths.len(),
            "false_death_samples": false_deaths.iter().take(5).collect::<Vec<_>>(),
            "healthz_ms": {
                "median": round3(median(latencies.clone()) * 1000.0),
                "p99": round3(p99 * 1000.0),
                "max": round3(latencies.last().copied().unwrap_or(f64::NAN) * 1000.0),
                "answered": latencies.len(),
                "failed": failed_probes,
            },
            "rss_mb": {
                "before": round3(rss_before),
                "max": round3(rss_max),
                "after": round3(rss_after),
                "growth": round3(rss_max - rss_before),
            },
            "http_attack": attack_json(&http),
            "gossip_attack": attack_json(&gossip),
            "victim_dropped": dropped,
        })
    );
}
