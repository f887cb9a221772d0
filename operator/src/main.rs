//! `habitat-operator`: `run` starts the controller, `crd` prints the CustomResourceDefinition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use habitat_operator::build::{self, BuildConfig, DEFAULT_SIDECAR_IMAGE};
use habitat_operator::http::{router, HttpState};
use habitat_operator::leader::{Attempt, LeaseLock, Next, Renewal, Timing};
use habitat_operator::metrics::Metrics;
use habitat_operator::reconcile::{self, Context};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "habitat-operator",
    version,
    about = "Kubernetes operator for Habitat service groups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the Habitat CustomResourceDefinition as YAML.
    Crd,
    /// Runs the controller (in-cluster config, or KUBECONFIG).
    Run(Box<RunArgs>),
}

#[derive(Parser)]
struct RunArgs {
    /// Namespace to watch; all namespaces when not given.
    #[arg(long, env = "HABITAT_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "HABITAT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Image with the static `hab` binary that init containers copy into pods.
    #[arg(long, env = "HABITAT_SIDECAR_IMAGE", default_value = DEFAULT_SIDECAR_IMAGE)]
    sidecar_image: String,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "HABITAT_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "habitat-operator")]
    lease_name: String,
    /// Namespace of the Lease (in a pod: its own namespace); else --namespace, else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a Lease is valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds the leader goes on reconciling without renewing the Lease; 2/3 of
    /// --lease-duration when not given (10 s), and shorter than it.
    #[arg(long)]
    renew_deadline: Option<u64>,
    /// Seconds between renewals (and acquisition attempts); 2/15 of --lease-duration when not
    /// given (2 s).
    #[arg(long)]
    retry_period: Option<u64>,
    /// Namespace the operator's pods run in, which NetworkPolicies (`spec.networkPolicy`) let
    /// reach the gateways; defaults to POD_NAMESPACE, else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Labels of the operator's pods, `k=v[,k=v]...`, which NetworkPolicies let reach the ctl
    /// gateway; defaults to `app.kubernetes.io/name=habitat-operator`.
    #[arg(long, env = "HABITAT_OPERATOR_POD_LABELS", value_parser = build::parse_labels)]
    operator_pod_labels: Option<BTreeMap<String, String>>,
    /// Identity of this replica in the Lease and in events; defaults to POD_NAME or the host name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", habitat_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "habitat-operator".to_owned());
    format!("{host}-{}", std::process::id())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));

    // One signal fans out to the HTTP server, the lease renewer and the controller.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            let _ = stop_tx.send(true);
        });
    }

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding the HTTP server to {}", args.metrics_addr))?;
    info!(addr = %args.metrics_addr, "serving /metrics, /healthz, /readyz");
    let app = router(HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    let server = tokio::spawn(std::future::IntoFuture::into_future(
        axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone())),
    ));

    // Check the API is reachable (and the CRD installed) before declaring readiness.
    client
        .apiserver_version()
        .await
        .context("reading the API server's version")?;
    ready.store(true, Ordering::Relaxed);

    let lease = if args.leader_election {
        let ns = args
            .lease_namespace
            .clone()
            .or(args.namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        let mut timing = Timing::for_lease(Duration::from_secs(args.lease_duration));
        if let Some(secs) = args.renew_deadline {
            timing.renew_deadline = Duration::from_secs(secs);
        }
        if let Some(secs) = args.retry_period {
            timing.retry_period = Duration::from_secs(secs);
        }
        timing.validate().map_err(anyhow::Error::msg)?;
        let lock = Arc::new(LeaseLock::new(
            client.clone(),
            &ns,
            &args.lease_name,
            &identity,
            timing.lease_duration,
        ));
        info!(lease = %args.lease_name, namespace = %ns, %identity, "waiting for leadership");
        let acquired_at = loop {
            if *stop_rx.borrow() {
                server.await??;
                return Ok(());
            }
            let started = std::time::Instant::now();
            match lock.try_acquire_or_renew().await {
                Ok(true) => break started,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election"),
            }
            let mut rx = stop_rx.clone();
            tokio::select! {
                _ = tokio::time::sleep(timing.retry_period) => {}
                _ = rx.changed() => {}
            }
        };
        info!(%identity, "became leader");
        // Renew until stopped; failing to renew within the renew deadline (or losing the
        // Lease) stops the controller, and the process, before another replica may take over.
        let renewer = {
            let lock = lock.clone();
            let stop_tx = stop_tx.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let mut renewal = Renewal::new(timing, acquired_at);
                let mut wait = timing.retry_period;
                let why = loop {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = rx.changed() => return true,
                    }
                    let started = std::time::Instant::now();
                    let Some(budget) = renewal.budget(started) else {
                        break "could not renew the Lease within the renew deadline";
                    };
                    // A hung request must not outlive the deadline.
                    let attempt =
                        match tokio::time::timeout(budget, lock.try_acquire_or_renew()).await {
                            Ok(Ok(true)) => Attempt::Renewed,
                            Ok(Ok(false)) => Attempt::Lost,
                            Ok(Err(e)) => {
                                warn!(error = %e, "renewing the Lease");
                                Attempt::Failed
                            }
                            Err(_) => {
                                warn!("renewing the Lease: no answer within {budget:?}");
                                Attempt::Failed
                            }
                        };
                    match renewal.after(started, attempt, std::time::Instant::now()) {
                        Next::RenewIn(next) => wait = next,
                        Next::StepDown(why) => break why,
                    }
                };
                error!(reason = why, "lost the leader Lease; stopping");
                let _ = stop_tx.send(true);
                false
            })
        };
        Some((lock, renewer))
    } else {
        None
    };
    metrics.leader.set(1);

    let ctx = Arc::new(Context::new(
        client,
        BuildConfig {
            sidecar_image: args.sidecar_image.clone(),
            operator_namespace: args
                .operator_namespace
                .clone()
                .unwrap_or_else(|| build::DEFAULT_OPERATOR_NAMESPACE.to_owned()),
            operator_pod_labels: args
                .operator_pod_labels
                .clone()
                .unwrap_or_else(build::default_operator_pod_labels),
        },
        metrics.clone(),
        &identity,
    ));
    info!(
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        "controller running"
    );
    reconcile::run(ctx, args.namespace.clone(), stopped(stop_rx.clone())).await;
    let _ = stop_tx.send(true);
    metrics.leader.set(0);

    let mut lost = false;
    if let Some((lock, renewer)) = lease {
        lost = !renewer.await.unwrap_or(false);
        if !lost {
            if let Err(e) = lock.release().await {
                warn!(error = %e, "releasing the Lease");
            }
        }
    }
    server.await??;
    info!("stopped");
    if lost {
        anyhow::bail!("lost the leader Lease");
    }
    Ok(())
}
