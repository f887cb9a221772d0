//! `hab pkg upload|promote|demote|channels` against a depot (`--url` or `HAB_BLDR_URL`: an
//! `http://` depot served by `hab depot serve`, or a `file:///` directory), with Habitat's
//! arguments and messages, and `hab depot serve DIR`. Progress goes to stderr, results
//! (channel names) to stdout, so scripts can read them.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{DepotArgs, DepotServeArgs, PkgDepotCommand};
use crate::connection_slots::SlotLimits;
use crate::error::{Error, Result};
use crate::package::PackageIdent;
use crate::pkg::depot::server::{self, Limits, TARGET};
use crate::pkg::depot::Depot;

/// The depot `--url` (or `HAB_BLDR_URL`) names, with the token of `--auth` (or
/// `HAB_AUTH_TOKEN`).
pub fn depot_from_args(args: &DepotArgs) -> Result<Depot> {
    let url = args
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "depot",
                "no depot URL: give --url URL or set HAB_BLDR_URL (http://HOST:PORT of a \
                 `hab depot serve`, or file:///DIR for a directory of .hart files)",
            )
        })?;
    Depot::from_url(url, args.auth.clone())
}

/// A fully qualified ident from the command line.
fn qualified(text: &str) -> Result<PackageIdent> {
    let ident: PackageIdent = text
        .parse()
        .map_err(|e: String| Error::invalid("PKG_IDENT", e))?;
    if !ident.is_fully_qualified() {
        return Err(Error::invalid(
            "PKG_IDENT",
            format!(
                "{text:?} is not fully qualified: expected ORIGIN/NAME/VERSION/RELEASE (ex: \
                 core/busybox-static/1.42.2/20170513215502)"
            ),
        ));
    }
    Ok(ident)
}

/// Runs one `hab pkg` depot command.
/// `keys_dir`: the key cache `hab pkg upload` takes the signer's public key from.
pub async fn run_pkg(
    command: &PkgDepotCommand,
    keys_dir: Option<&Path>,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::invalid("output", e.to_string());
    match command {
        PkgDepotCommand::Upload(args) => {
            let depot = depot_from_args(&args.depot)?;
            for hart in &args.hart_files {
                upload(&depot, hart, args.channel.as_deref(), keys_dir, progress).await?;
            }
            Ok(())
        }
        PkgDepotCommand::Promote(args) => {
            let depot = depot_from_args(&args.depot)?;
            let ident = qualified(&args.pkg_ident)?;
            writeln!(
                progress,
                "» Promoting {ident} ({TARGET}) to channel '{}'",
                args.channel
            )
            .map_err(io)?;
            depot.promote(&ident, &args.channel).await?;
            writeln!(progress, "★ Promoted {ident} ({TARGET})").map_err(io)
        }
        PkgDepotCommand::Demote(args) => {
            let depot = depot_from_args(&args.depot)?;
            let ident = qualified(&args.pkg_ident)?;
            writeln!(
                progress,
                "» Demoting {ident} ({TARGET}) from {}",
                args.channel
            )
            .map_err(io)?;
            depot.demote(&ident, &args.channel).await?;
            writeln!(progress, "★ Demoted {ident} ({TARGET})").map_err(io)
        }
        PkgDepotCommand::Channels(args) => {
            let depot = depot_from_args(&args.depot)?;
            let ident = qualified(&args.pkg_ident)?;
            writeln!(progress, "» Retrieving channels for {ident} ({TARGET})").map_err(io)?;
            for channel in depot.channels(&ident).await? {
                writeln!(out, "{channel}").map_err(io)?;
            }
            Ok(())
        }
    }
}

async fn upload(
    depot: &Depot,
    hart: &Path,
    channel: Option<&str>,
    keys_dir: Option<&Path>,
    progress: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::invalid("output", e.to_string());
    if !hart.is_file() {
        return Err(Error::invalid(
            hart.display().to_string(),
            "no such file: expected a .hart file (ex: core-redis-7.2.4-20240101000000-x86_64-linux.hart)",
        ));
    }
    if let Some(keys_dir) = keys_dir {
        upload_signer_key(depot, hart, keys_dir, progress).await?;
    }
    writeln!(progress, "↑ Uploading {}", hart.display()).map_err(io)?;
    let ident = depot.upload(hart, None).await?;
    writeln!(progress, "✓ Uploaded {ident}").map_err(io)?;
    if let Some(channel) = channel {
        writeln!(progress, "» Promoting {ident} to channel '{channel}'").map_err(io)?;
        depot.promote(&ident, channel).await?;
        writeln!(progress, "✓ Promoted {ident}").map_err(io)?;
    }
    writeln!(progress, "★ Upload of {ident} complete.").map_err(io)
}

/// Uploads the public key that signed `hart`, when the key cache has it (as Habitat's `hab`
/// does, so that installers can fetch it from the depot); a missing key is only reported.
async fn upload_signer_key(
    depot: &Depot,
    hart: &Path,
    keys_dir: &Path,
    progress: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::invalid("output", e.to_string());
    let signer = crate::pkg::hart::read_header(hart)?.signer;
    let file = keys_dir.join(format!("{signer}.pub"));
    if crate::pkg::keys::public_key(&signer, keys_dir).is_err() {
        return writeln!(
            progress,
            "» No public origin key {} here: not uploaded (installers need it from elsewhere)",
            file.display()
        )
        .map_err(io);
    }
    let content = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    if depot.upload_origin_key(&signer, content).await? {
        writeln!(progress, "✓ Uploaded public origin key {signer}.pub").map_err(io)
    } else {
        writeln!(progress, "→ Using existing public origin key {signer}.pub").map_err(io)
    }
}

/// `hab depot serve DIR`: serves until SIGINT or SIGTERM.
pub fn serve(args: &DepotServeArgs) -> Result<()> {
    let token = args
        .token_file
        .as_deref()
        .map(server::read_token_file)
        .transpose()?;
    if args.max_connections == 0 {
        return Err(Error::invalid("--max-connections", "expected at least 1"));
    }
    let limits = Limits {
        connections: SlotLimits {
            max: args.max_connections,
            per_source: (args.max_connections / 4).max(1),
        },
        max_upload_bytes: args.max_upload_bytes,
        ..Limits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::invalid("hab depot serve", format!("cannot start the runtime: {e}")))?;
    let dir: PathBuf = std::path::absolute(&args.dir).map_err(|e| Error::io(&args.dir, e))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| Error::invalid(format!("--listen {}", args.listen), e.to_string()))?;
        let served = server::spawn(listener, dir.clone(), token.clone(), limits)?;
        println!(
            "» Depot {} listening on http://{} (writes {})",
            dir.display(),
            served.addr,
            if token.is_some() {
                "need the token of --token-file"
            } else {
                "are open to anyone who can connect"
            }
        );
        let _ = std::io::stdout().flush();
        wait_for_stop().await;
        tracing::info!("depot: stopping");
        Ok(())
    })
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
