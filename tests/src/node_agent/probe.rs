//! Probes as the kubelet runs them: `httpGet` and `tcpSocket` from the host to the pod IP (the
//! host reaches pods through the bridge), `exec` inside the container (its namespaces and root
//! file system, its environment). Each gets `timeoutSeconds`; thresholds are counted by the pod.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How an `exec` probe enters the container.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// The pod's sandbox process (its mount, UTS and network namespaces).
    pub sandbox_pid: u32,
    /// The container's root file system (as seen in the pod's mount namespace).
    pub rootfs: String,
    pub env: BTreeMap<String, String>,
}

/// Probe timings with Kubernetes' defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Timing {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// The container port `port` names (a number, or a port name of `container`).
fn port_of(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no container port named {name}"))
        }
    }
}

/// Runs `probe` once: Ok(()) when it passes, Err(why) when it fails.
pub async fn run(
    probe: &Probe,
    container: &Container,
    pod_ip: Ipv4Addr,
    exec: &ExecTarget,
) -> Result<(), String> {
    let timeout = Timing::of(probe).timeout;
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let port = port_of(&http.port, container)?;
            if http.scheme.as_deref().is_some_and(|s| s != "HTTP") {
                return Err("httpGet: only scheme HTTP is supported".to_owned());
            }
            let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
            http_get(SocketAddr::from((pod_ip, port)), &path).await
        } else if let Some(tcp) = &probe.tcp_socket {
            let port = port_of(&tcp.port, container)?;
            tokio::net::TcpStream::connect((pod_ip, port))
                .await
                .map(drop)
                .map_err(|e| format!("tcpSocket {pod_ip}:{port}: {e}"))
        } else if let Some(cmd) = &probe.exec {
            exec_probe(cmd.command.as_deref().unwrap_or_default(), exec).await
        } else {
            Err("probe: only httpGet, tcpSocket and exec are supported".to_owned())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("httpGet {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.34\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("httpGet {addr}{path}: {e}"))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        let n = stream
            .read(&mut head[read..])
            .await
            .map_err(|e| format!("httpGet {addr}{path}: {e}"))?;
        if n == 0 {
            break;
        }
        read += n;
        if head[..read].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head[..read]).into_owned();
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("httpGet {addr}{path}: no HTTP status line in {line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("httpGet {addr}{path}: status {code}"))
    }
}

/// `nsenter` + `chroot` argv that runs `argv` inside a container.
pub fn in_container(sandbox_pid: u32, rootfs: &str, argv: &[String]) -> Vec<String> {
    let mut cmd: Vec<String> = [
        "nsenter",
        "--target",
        &sandbox_pid.to_string(),
        "--mount",
        "--uts",
        "--net",
        "--",
        "chroot",
        rootfs,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    cmd.extend(argv.iter().cloned());
    cmd
}

async fn exec_probe(argv: &[String], target: &ExecTarget) -> Result<(), String> {
    if argv.is_empty() {
        return Err("exec probe without a command".to_owned());
    }
    let cmd = in_container(target.sandbox_pid, &target.rootfs, argv);
    let out = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .env_clear()
        .envs(&target.env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("exec {argv:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exec {argv:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}
