//! Host networking of the node agent: a bridge `habk8s<subnet>` in the host's namespace with
//! `10.231.<subnet>.1/24` (so the host reaches every pod IP), and per pod a named network
//! namespace `hk-<agent pid>-<n>` joined to the bridge by a veth pair, `eth0` inside with the pod
//! IP and a default route through the bridge. The bridge name is the claim on a subnet: creating
//! it fails when another agent holds that subnet, and the agent tries the next one.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::AgentError;

/// The subnets an agent may claim when none is given (NetnsLab's tests use low numbers).
pub const SUBNETS: std::ops::RangeInclusive<u8> = 200..=250;

/// `10.231.<subnet>.<host>`.
pub fn ip(subnet: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 231, subnet, host)
}

/// The bridge of `subnet`.
pub fn bridge_name(subnet: u8) -> String {
    format!("habk8s{subnet}")
}

/// Runs `program args` to completion; `Err` carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<(), AgentError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| AgentError::io(format!("running {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(AgentError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Async `run`.
pub async fn run_async(program: &str, args: &[&str]) -> Result<(), AgentError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| AgentError::io(format!("running {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(AgentError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Creates the bridge of `subnet` (or of the first free subnet of `SUBNETS`) with its `.1`
/// address, and returns the subnet.
pub fn claim_bridge(subnet: Option<u8>) -> Result<u8, AgentError> {
    let candidates: Vec<u8> = match subnet {
        Some(s) => vec![s],
        None => SUBNETS.collect(),
    };
    for s in candidates {
        let bridge = bridge_name(s);
        match run("ip", &["link", "add", &bridge, "type", "bridge"]) {
            Ok(()) => {}
            Err(AgentError::Command { stderr, .. })
                if stderr.contains("exists") && subnet.is_none() =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
        let cidr = format!("{}/24", ip(s, 1));
        let up = run("ip", &["addr", "add", &cidr, "dev", &bridge])
            .and_then(|()| run("ip", &["link", "set", &bridge, "up"]));
        if let Err(e) = up {
            let _ = run("ip", &["link", "del", &bridge]);
            return Err(e);
        }
        return Ok(s);
    }
    Err(AgentError::Spec(format!(
        "no free subnet for a node agent bridge among 10.231.{}-{}.0/24",
        SUBNETS.start(),
        SUBNETS.end()
    )))
}

/// A pod's network: namespace `ns` with `eth0` = `ip`/24 on the bridge, via host port `veth`.
#[derive(Debug, Clone)]
pub struct PodNet {
    pub ns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

impl PodNet {
    /// Creates the namespace and its link.
    pub async fn create(
        subnet: u8,
        ns: String,
        veth: String,
        host: u8,
    ) -> Result<PodNet, AgentError> {
        let net = PodNet {
            ns,
            veth,
            ip: ip(subnet, host),
        };
        run_async("ip", &["netns", "add", &net.ns]).await?;
        let cidr = format!("{}/24", net.ip);
        let gateway = ip(subnet, 1).to_string();
        let bridge = bridge_name(subnet);
        let steps: [&[&str]; 6] = [
            &[
                "link", "add", &net.veth, "type", "veth", "peer", "name", "eth0", "netns", &net.ns,
            ],
            &["link", "set", &net.veth, "master", &bridge, "up"],
            &["-n", &net.ns, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", &net.ns, "link", "set", "eth0", "up"],
            &["-n", &net.ns, "link", "set", "lo", "up"],
            &["-n", &net.ns, "route", "add", "default", "via", &gateway],
        ];
        for args in steps {
            if let Err(e) = run_async("ip", args).await {
                net.delete().await;
                return Err(e);
            }
        }
        Ok(net)
    }

    /// SIGKILLs every process left in the namespace, then deletes it (and so its veth).
    pub async fn delete(&self) {
        kill_netns_pids(&self.ns).await;
        let _ = run_async("ip", &["netns", "del", &self.ns]).await;
    }
}

/// SIGKILLs the processes in namespace `ns`, until none is left (at most 10 s).
pub async fn kill_netns_pids(ns: &str) {
    let start = Instant::now();
    loop {
        let pids = netns_pids(ns).await;
        if pids.is_empty() || start.elapsed() > Duration::from_secs(10) {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn netns_pids(ns: &str) -> Vec<i32> {
    match tokio::process::Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .await
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Shell commands that remove everything an agent made on the host: its namespaces (and the
/// processes in them), its bridge, its state directory. Run by `Drop` and by the watchdog.
pub fn cleanup_script(prefix: &str, bridge: &str, state_dir: &str) -> String {
    format!(
        r#"for ns in $(ip netns list | awk '{{print $1}}' | grep '^{prefix}'); do
  for i in 1 2 3 4 5; do pids=$(ip netns pids "$ns"); [ -z "$pids" ] && break; kill -9 $pids 2>/dev/null; sleep 0.1; done
  ip netns del "$ns" 2>/dev/null
done
ip link del {bridge} 2>/dev/null
rm -rf '{state_dir}'
true"#
    )
}
