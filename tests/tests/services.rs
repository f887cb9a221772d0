//! Services run by real `hab sup run` processes: health checks reach the gateway with Habitat's
//! status codes, `/readyz` follows them, SIGTERM stops the service, and a strict bind waits for
//! the bound group across the ring and then renders its members.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use habitat_e2e::{hello_package, wait_for, wait_until, Supervisor};

const BLOCK_HEALTH: u8 = 40;
const BLOCK_BIND: u8 = 41;
const SOON: Duration = Duration::from_secs(30);

/// Writes a package directory under `dir`: IDENT plus `files`.
fn package(dir: &Path, ident: &str, files: &[(&str, &str)]) -> PathBuf {
    let pkg = dir.join(ident.replace('/', "-"));
    for (relative, content) in [("IDENT", ident)].iter().chain(files) {
        let path = pkg.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    pkg
}

/// A run hook that lives as long as its supervisor.
const RUN: &str = "#!/bin/sh\nsup=$PPID\nwhile kill -0 \"$sup\" 2>/dev/null; do sleep 1; done\n";

/// The status code and body of `GET path`.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((code, body.to_string()))
}

fn process_alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn health_check_codes_reach_the_gateway_and_readyz_and_sigterm_stops_the_service() {
    let packages = tempfile::tempdir().unwrap();
    let pkg = package(
        packages.path(),
        "test/web/1.0.0/20260101000000",
        &[
            ("default.toml", "port = 8000\n"),
            ("EXPORTS", "port=port\n"),
            ("hooks/run", RUN),
            (
                "hooks/health-check",
                "#!/bin/sh\nexit $(cat {{pkg.svc_data_path}}/code 2>/dev/null || echo 0)\n",
            ),
        ],
    );
    let mut sup = Supervisor::at(BLOCK_HEALTH, 1)
        .without_service()
        .args([pkg.to_str().unwrap(), "--health-check-interval", "0.2"])
        .start();
    let http = sup.http_addr();
    let code_file = sup.root().join("svc/web/data/code");
    for (code, status, ready) in [
        ("0", 200, 200),
        ("1", 200, 200),
        ("2", 503, 503),
        ("3", 500, 503),
        ("0", 200, 200),
    ] {
        std::fs::write(&code_file, code).unwrap();
        wait_for(
            SOON,
            &format!("health-check exit {code} -> HTTP {status}"),
            || match get(http, "/services/web/default/health")? {
                (got, _) if got == status => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        wait_for(
            SOON,
            &format!("/readyz {ready} at exit {code}"),
            || match get(http, "/readyz")? {
                (got, _) if got == ready => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    let (code, body) = get(http, "/services").unwrap();
    assert_eq!(code, 200);
    let services: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(services[0]["service_group"], "web.default");
    let pid = services[0]["process"]["pid"].as_u64().unwrap() as u32;
    let pid_file = sup.root().join("svc/web/PID");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    let (code, body) = get(http, "/services/web/default/config").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["port"],
        8000
    );
    assert_eq!(get(http, "/services/nope/default").unwrap().0, 404);
    // The census shows the exported config in this member's service rumor.
    let census = sup.census().unwrap();
    let me = sup.member_id();
    assert_eq!(
        census["census_groups"]["web.default"]["population"][&me]["cfg"]["port"],
        8000
    );

    let status = sup.terminate();
    assert!(status.success(), "{status}");
    assert!(!process_alive(pid), "the service process {pid} is stopped");
    assert!(!pid_file.exists(), "the PID file is removed");
}

#[test]
fn a_strict_bind_waits_for_the_bound_group_then_renders_its_members() {
    let packages = tempfile::tempdir().unwrap();
    let pkg = package(
        packages.path(),
        "test/app/1.0.0/20260101000000",
        &[
            ("BINDS", "backend=port\n"),
            ("hooks/run", RUN),
            (
                "config/backends.conf",
                "{{#eachAlive bind.backend.members as |m|}}{{m.sys.ip}}:{{m.cfg.port}}\n{{/eachAlive}}",
            ),
        ],
    );
    let consumer = Supervisor::at(BLOCK_BIND, 2)
        .without_service()
        .peer(habitat_e2e::ip(BLOCK_BIND, 1))
        .args([pkg.to_str().unwrap(), "--bind", "backend:hello.default"])
        .start();
    let waiting = wait_for(SOON, "the consumer waits for its bind", || {
        let services = consumer.get_json("/services")?;
        services[0]["waiting_for"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{services}"))
    });
    assert!(waiting.contains("bind 'backend'"), "{waiting}");
    assert!(waiting.contains("hello.default"), "{waiting}");

    let backend = Supervisor::at(BLOCK_BIND, 1).start();
    let conf = consumer.root().join("svc/app/config/backends.conf");
    let expected = format!("{}:8080\n", backend.ip());
    wait_until(SOON, "the consumer renders the backend", || {
        std::fs::read_to_string(&conf).is_ok_and(|t| t == expected)
    });
    wait_for(SOON, "the consumer runs", || {
        let services = consumer.get_json("/services")?;
        services[0]["process"]["pid"]
            .as_u64()
            .ok_or_else(|| format!("{services}"))
    });
    assert!(hello_package().exists());
}
