//! `node-agent`: the test node agent (`habitat_e2e::node_agent`) as a process, for trying the
//! Kubernetes side by hand: it registers a Node with the API server of `--kubeconfig` and runs
//! the pods bound to it until SIGINT or SIGTERM, then removes everything it made on the host.
//! Needs root (network and mount namespaces).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use habitat_e2e::node_agent::NodeAgent;

#[derive(Parser)]
#[command(about = "A small kubelet without containers, for tests (needs root)")]
struct Args {
    /// Kubeconfig of the API server.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Serve the pods of this namespace (repeat; none: every namespace).
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
    /// An image as a local directory: NAME=DIR (repeat).
    #[arg(long = "image", value_parser = parse_image)]
    images: Vec<(String, PathBuf)>,
    /// What image NAME runs when a container gives no command (its args follow), as an
    /// image's ENTRYPOINT: NAME=PROGRAM[ ARG...] (repeat).
    #[arg(long = "entrypoint", value_parser = parse_entrypoint)]
    entrypoints: Vec<(String, Vec<String>)>,
    /// Pods on 10.231.<SUBNET>.0/24 (default: the first free of 200-250).
    #[arg(long)]
    subnet: Option<u8>,
    /// The Node's name.
    #[arg(long)]
    node_name: Option<String>,
    /// Stop when this process is gone (e.g. the script that started us).
    #[arg(long)]
    exit_with: Option<u32>,
}

fn parse_image(arg: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = arg
        .split_once('=')
        .ok_or_else(|| format!("--image {arg}: expected NAME=DIR"))?;
    Ok((name.to_owned(), PathBuf::from(dir)))
}

fn parse_entrypoint(arg: &str) -> Result<(String, Vec<String>), String> {
    let (name, argv) = arg
        .split_once('=')
        .ok_or_else(|| format!("--entrypoint {arg}: expected NAME=PROGRAM[ ARG...]"))?;
    let argv: Vec<String> = argv.split_whitespace().map(str::to_owned).collect();
    if argv.is_empty() {
        return Err(format!("--entrypoint {arg}: no program after '='"));
    }
    Ok((name.to_owned(), argv))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut builder = NodeAgent::builder(&args.kubeconfig);
    for ns in &args.namespaces {
        builder = builder.namespace(ns);
    }
    for (name, dir) in &args.images {
        builder = builder.image(name, dir);
    }
    for (name, argv) in &args.entrypoints {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        builder = builder.entrypoint(name, &argv);
    }
    if let Some(subnet) = args.subnet {
        builder = builder.subnet(subnet);
    }
    if let Some(name) = &args.node_name {
        builder = builder.node_name(name);
    }
    let agent = builder.start().context("starting the node agent")?;
    println!(
        "node {} ready: pods on 10.231.{}.0/24, the API server at {}:{} for them, events in {}",
        agent.node_name(),
        agent.subnet(),
        agent.host_ip(),
        habitat_e2e::node_agent::SERVICE_PORT,
        agent.journal_path().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    let parent_gone = async {
        let Some(pid) = args.exit_with else {
            return std::future::pending().await;
        };
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = parent_gone => {}
    }
    drop(agent);
    Ok(())
}
