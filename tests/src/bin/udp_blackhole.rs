//! A DNS server that never answers (issue 16's hanging resolver): binds UDP `ADDR`, reads
//! queries for ever and appends one line per query to `LOG`: the client's port, the query id,
//! type and name. `LOG` is created only once the socket is bound, so a caller waits for the file
//! instead of sleeping. Run it inside a network namespace (`NetnsLab::hang_dns`).
//!
//! `udp-blackhole ADDR LOG`, e.g. `udp-blackhole 127.0.0.1:53 /tmp/queries`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::UdpSocket;
use std::process::ExitCode;

/// The question of a DNS query: (id, type, dotted name), or `None` if it is not one.
fn question(packet: &[u8]) -> Option<(u16, u16, String)> {
    let id = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers never appear in a question a resolver sends first.
        let label = packet.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    Some((id, qtype, labels.join(".")))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, log] = args.as_slice() else {
        eprintln!("usage: udp-blackhole ADDR LOG");
        return ExitCode::from(2);
    };
    let socket = match UdpSocket::bind(addr) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("udp-blackhole: bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut log = match OpenOptions::new().create(true).append(true).open(log) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("udp-blackhole: {log}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut buf = [0u8; 4096];
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                eprintln!("udp-blackhole: recv: {e}");
                return ExitCode::FAILURE;
            }
        };
        let line = match question(&buf[..len]) {
            Some((id, qtype, name)) => format!("{} {id} {qtype} {name}\n", from.port()),
            None => format!("{} - - ({len} bytes, not a query)\n", from.port()),
        };
        // Unbuffered: the test reads the file while this runs.
        if let Err(e) = log.write_all(line.as_bytes()) {
            eprintln!("udp-blackhole: write: {e}");
            return ExitCode::FAILURE;
        }
    }
}
