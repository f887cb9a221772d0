//! `k8s-control-plane`: the local Kubernetes control plane of the tests (`habitat_e2e::k8s`) as
//! a process, for `scripts/kube-demo`: etcd, kube-apiserver and kube-controller-manager (built
//! by `tests/k8s/build.sh`) on 127.0.0.1 with a fresh PKI in `--dir`, an admin kubeconfig at
//! `<dir>/kubeconfig`, and the file `<dir>/ready` once the API server is ready and the
//! controller-manager serves. SIGINT or SIGTERM (or the end of `--exit-with`'s process) stops
//! the daemons; the daemons also stop if this process dies. `--dir` itself is the caller's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use habitat_e2e::k8s;

#[derive(Parser)]
#[command(about = "etcd, kube-apiserver and kube-controller-manager on loopback, for a demo")]
struct Args {
    /// An empty directory for the PKI, the kubeconfig, etcd's data and the daemons' logs.
    #[arg(long)]
    dir: PathBuf,
    /// Stop when this process is gone (e.g. the script that started us).
    #[arg(long)]
    exit_with: Option<u32>,
}

/// The daemons' watchdogs, stopped in reverse order of start on drop.
struct Daemons(Vec<(&'static str, Child)>);

impl Drop for Daemons {
    fn drop(&mut self) {
        while let Some((_, mut watchdog)) = self.0.pop() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(watchdog.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = watchdog.wait();
        }
    }
}

fn start(dir: &Path, daemons: &mut Daemons) -> anyhow::Result<PathBuf> {
    let bin = k8s::bin_dir().context("locating the control plane binaries")?;
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
    ] {
        if !bin.join(name).is_file() {
            bail!(
                "{} not found: build the control plane with tests/k8s/build.sh",
                bin.join(name).display()
            );
        }
    }
    let pki = k8s::Pki::generate().context("generating the PKI")?;
    pki.write(dir)
        .with_context(|| format!("writing the PKI into {}", dir.display()))?;
    let me = std::process::id();
    let (etcd_client, etcd_peer, secure, kcm) = (
        k8s::free_port()?,
        k8s::free_port()?,
        k8s::free_port()?,
        k8s::free_port()?,
    );
    let mut spawn = |name: &'static str, args: Vec<String>| -> anyhow::Result<()> {
        let log = dir.join(format!("{name}.log"));
        let child = k8s::spawn_watched(me, &bin.join(name), &args, &log, None)
            .with_context(|| format!("starting {name}"))?;
        daemons.0.push((name, child));
        Ok(())
    };
    spawn("etcd", k8s::etcd_args(dir, etcd_client, etcd_peer))?;
    spawn(
        "kube-apiserver",
        k8s::apiserver_args(dir, etcd_client, secure),
    )?;
    let url = format!("https://127.0.0.1:{secure}");
    let kubeconfig = dir.join("kubeconfig");
    k8s::write_file(&kubeconfig, &pki.kubeconfig(&url), 0o600)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;

    let started = Instant::now();
    loop {
        let out = Command::new(bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "--raw", "/readyz"])
            .output()
            .context("running kubectl")?;
        if out.status.success() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "kube-apiserver not ready after 120 s: {} (logs in {})",
                String::from_utf8_lossy(&out.stderr).trim(),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("kube-apiserver ready at {url} in {:?}", started.elapsed());

    spawn(
        "kube-controller-manager",
        k8s::controller_manager_args(dir, &kubeconfig, kcm),
    )?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", kcm)).is_err() {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "kube-controller-manager not serving after 120 s (log {})",
                dir.join("kube-controller-manager.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("kube-controller-manager serving in {:?}", started.elapsed());
    Ok(kubeconfig)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut daemons = Daemons(Vec::new());
    let kubeconfig = start(&args.dir, &mut daemons)?;
    std::fs::write(args.dir.join("ready"), "")
        .with_context(|| format!("writing {}/ready", args.dir.display()))?;
    println!("control plane ready: KUBECONFIG={}", kubeconfig.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    let parent_gone = async {
        let Some(pid) = args.exit_with else {
            return std::future::pending().await;
        };
        while Path::new(&format!("/proc/{pid}")).exists() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = parent_gone => {}
    }
    drop(daemons);
    eprintln!("control plane stopped");
    Ok(())
}
