//! `hab`: the supervisor (`hab sup run`) and the CLI. Exit codes: 0 success, 1 any error
//! (bad flag, bad address, unreadable key, ...), with a message naming what was wrong;
//! `hab svc status` adds 2 (service not loaded) and 3 (no supervisor reachable), and
//! `hab census` 3 (no HTTP gateway reachable).

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser;
use habitat_sidecar::cli::{CacheKeyPathArgs, SvcKeyCommand, UserCommand, UserKeyCommand};
use habitat_sidecar::cli::{
    Cli, Command, ConfigCommand, FileCommand, PlanCommand, RemoteSupArgs, RingCommand,
    RingKeyCommand, RunArgs, SupCommand, SvcCommand,
};
use habitat_sidecar::cli::{DepotCommand, PkgCommand, PkgDepotCommand, PkgInstallArgs};
use habitat_sidecar::cli::{OriginCommand, OriginKeyCommand};
use habitat_sidecar::cli::{PkgExportCommand, PkgExportContainerArgs};
use habitat_sidecar::keys;
use habitat_sidecar::plan;
use habitat_sidecar::service::process;
use habitat_sidecar::sup::lock::SupLock;
use habitat_sidecar::sup::{self, SupervisorConfig};
use habitat_sidecar::workstation::{self, svc, Input, Remote, SecretSources};

fn main() -> ExitCode {
    // The exec shim a supervisor starts its children through: nothing else runs first (no
    // logging, no argument parsing), it only arms the parent-death signal and execs.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == process::EXEC_SHIM_COMMAND) {
        return process::exec_shim(&args[2..]);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if is_workstation_command(&cli.command) {
        return run_workstation(cli);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hab: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_workstation_command(command: &Command) -> bool {
    !matches!(command, Command::Svc(SvcCommand::Key(_)))
        && matches!(
            command,
            Command::Svc(_)
                | Command::Config(_)
                | Command::File(_)
                | Command::Sup(SupCommand::Depart { .. })
                | Command::Sup(SupCommand::Restart { .. })
                | Command::Census(_)
                | Command::Sup(SupCommand::Term { .. })
        )
}

/// The commands that talk to a supervisor's ctl gateway (`workstation`), with their exit codes.
fn run_workstation(cli: Cli) -> ExitCode {
    // `hab svc ...` and `hab census` tell "not loaded" and "unreachable" apart in their exit
    // codes; the others exit 1 on any error, as Habitat's do.
    let is_status = matches!(cli.command, Command::Svc(_) | Command::Census(_));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hab: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(workstation_command(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hab: error: {e}");
            ExitCode::from(if is_status { e.status_exit_code() } else { 1 })
        }
    }
}

async fn workstation_command(cli: Cli) -> Result<(), workstation::Error> {
    let remote =
        |args: &RemoteSupArgs| Remote::new(&args.remote_sup, SecretSources::from_env(&cli.root));
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Svc(SvcCommand::Status {
            pkg_ident,
            remote: r,
        }) => workstation::svc_status(&remote(r)?, pkg_ident.as_deref(), &mut out).await,
        Command::Svc(SvcCommand::Load(args)) => {
            let load = svc::SvcLoad {
                pkg_ident: args.pkg_ident.clone(),
                group: args.group.clone(),
                topology: args.topology,
                strategy: args.strategy,
                channel: args.channel.clone(),
                url: args.url.clone(),
                binds: args.binds.clone(),
                binding_mode: args.binding_mode,
                health_check_interval: args.health_check_interval,
                update_period: args.update_period,
                force: args.force,
            };
            svc::svc_load(&remote(&args.remote)?, &load, &mut out).await
        }
        Command::Svc(SvcCommand::Update(args)) => {
            let update = svc::SvcUpdate {
                pkg_ident: args.pkg_ident.clone(),
                strategy: args.strategy,
                channel: args.channel.clone(),
                url: args.url.clone(),
                update_period: args.update_period,
            };
            svc::svc_update(&remote(&args.remote)?, &update, &mut out).await
        }
        Command::Svc(SvcCommand::Unload(args)) => {
            svc::svc_action(
                &remote(&args.remote)?,
                svc::SvcAction::Unload,
                &args.pkg_ident,
                &mut out,
            )
            .await
        }
        Command::Svc(SvcCommand::Start(args)) => {
            svc::svc_action(
                &remote(&args.remote)?,
                svc::SvcAction::Start,
                &args.pkg_ident,
                &mut out,
            )
            .await
        }
        Command::Svc(SvcCommand::Stop(args)) => {
            svc::svc_action(
                &remote(&args.remote)?,
                svc::SvcAction::Stop,
                &args.pkg_ident,
                &mut out,
            )
            .await
        }
        Command::Config(ConfigCommand::Apply(args)) => {
            let input = Input::from_arg(args.file.as_deref());
            let apply = workstation::ConfigApply {
                service_group: args.service_group.clone(),
                version: args.version,
                source: input.name(),
                cfg: input.read_limited()?,
                encrypt_as: encrypt_as(&cli.root, args.user.as_deref(), &args.keys),
            };
            let remote = remote(&args.remote)?;
            workstation::config_apply(&remote, &apply, &mut out, &mut std::io::stderr()).await
        }
        Command::Config(ConfigCommand::Show {
            pkg_ident,
            remote: r,
        }) => workstation::config_show(&remote(r)?, pkg_ident, &mut out).await,
        Command::File(FileCommand::Upload(args)) => {
            let upload = workstation::FileUpload {
                service_group: args.service_group.clone(),
                version: args.version,
                file: args.file.clone(),
                encrypt_as: encrypt_as(&cli.root, args.user.as_deref(), &args.keys),
            };
            workstation::file_upload(&remote(&args.remote)?, &upload, &mut out).await
        }
        Command::Sup(SupCommand::Depart {
            member_id,
            remote: r,
        }) => workstation::sup_depart(&remote(r)?, member_id, &mut out).await,
        Command::Sup(SupCommand::Restart { remote: r }) => {
            svc::send_printing(
                &remote(r)?,
                habitat_sidecar::ctl::messages::SupRestart {},
                &mut out,
            )
            .await
        }
        Command::Census(args) => {
            let token = std::env::var("HAB_SUP_GATEWAY_AUTH_TOKEN").ok();
            let remote = workstation::census::HttpRemote::new(&args.remote_http, token)?;
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
            workstation::census::census(&remote, args.watch, terminal, &mut out).await
        }
        Command::Sup(SupCommand::Term { no_wait, timeout }) => {
            let wait = (!no_wait).then_some(*timeout);
            workstation::sup_term::sup_term(&cli.root, wait, &mut out).await
        }
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ring(RingCommand::Key(RingKeyCommand::Generate { name })) => {
            let mut secret = [0u8; 32];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
            let (key, path) = keys::generate_ring_key(
                &keys::keys_dir(&cli.root),
                &name,
                SystemTime::now(),
                secret,
            )?;
            println!(
                "Generated ring key {} at {}",
                key.name_with_rev(),
                path.display()
            );
            Ok(())
        }
        Command::Svc(SvcCommand::Key(SvcKeyCommand::Generate {
            service_group,
            org,
            keys,
        })) => {
            let name = keys::service_key_name(&service_group, org.as_deref())?;
            let what = match &org {
                Some(org) => format!("{service_group} in {org}"),
                None => service_group,
            };
            println!("» Generating service key for {what}");
            let pair = generate_box_keys(&cli.root, &keys, &name)?;
            println!(
                "★ Generated service key pair {}.",
                pair.public.name_with_rev()
            );
            Ok(())
        }
        Command::User(UserCommand::Key(UserKeyCommand::Generate { user, keys })) => {
            keys::validate_box_key_name(&user)?;
            println!("» Generating user key for {user}");
            let pair = generate_box_keys(&cli.root, &keys, &user)?;
            println!(
                "★ Generated user encryption key pair {}.",
                pair.public.name_with_rev()
            );
            Ok(())
        }
        Command::Origin(OriginCommand::Key(command)) => origin_key(&cli.root, command),
        Command::Pkg(command) => pkg(&cli.root, command),
        Command::Plan(PlanCommand::Render(args)) => {
            plan::run_render(&args, &mut std::io::stdout(), &mut std::io::stderr())?;
            Ok(())
        }
        Command::Sup(SupCommand::Run(args)) => {
            let config = supervisor_config(cli.root, *args)?;
            // Before anything touches the root; held until the supervisor is gone.
            let lock = SupLock::acquire(&config.root)?;
            match std::env::current_exe() {
                Ok(hab) => process::install_exec_shim(hab),
                Err(e) => tracing::warn!(
                    "cannot find the hab binary ({e}): services will not stop with the supervisor"
                ),
            }
            // One thread: the loop owns all gossip state and runs on the thread that blocks on
            // it, and the other tasks mostly wait, so worker threads only added cross-thread
            // wake-ups (docs/performance.md, "Idle cost"). DNS lookups still go to tokio's
            // blocking pool; hooks and the service are child processes, forked from this
            // thread, which lives as long as the supervisor: their parent-death signal fires
            // when the forking thread ends, so they must never be spawned from the blocking
            // pool.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let exit = runtime.block_on(async {
                // From the start, not only once the loop runs (sup/mod.rs handles it there):
                // tokio's handler, once installed, replaces SIGHUP's default action, which is
                // to die and leave the services behind.
                use tokio::signal::unix::{signal, SignalKind};
                drop(signal(SignalKind::hangup())?);
                sup::run(config).await
            })?;
            drop(runtime);
            drop(lock);
            if exit == sup::Exit::Restart {
                return Err(restart_self());
            }
            Ok(())
        }
        Command::Depot(DepotCommand::Serve(args)) => Ok(workstation::depot::serve(&args)?),
        // `is_workstation_command` names them, and `main` sends them to `run_workstation`.
        _ => anyhow::bail!("workstation commands run in run_workstation"),
    }
}

/// `hab pkg export container`.
fn export_container(root: &std::path::Path, args: &PkgExportContainerArgs) -> anyhow::Result<()> {
    use habitat_sidecar::pkg::export;
    let hab_binary = std::env::current_exe().map_err(|e| {
        anyhow::anyhow!("cannot find the running hab binary to put in the image: {e}")
    })?;
    let request = export::ExportRequest {
        package: args.package.clone(),
        tags: args.tags.clone(),
        output: args.output.clone(),
        options: export::ExportOptions {
            root: root.to_path_buf(),
            keys_dir: cache_key_dir(root, &args.keys),
            hab_binary,
            busybox: args.busybox.clone(),
            skip_missing_deps: args.skip_missing_deps,
            created: habitat_sidecar::oci::source_date_epoch()?,
        },
    };
    println!("» Exporting {} as a container image", args.package);
    let (written, output) = export::export_container(&request)?;
    let kind = match output {
        export::Output::Layout(_) => "OCI image layout",
        export::Output::DockerArchive(_) => "docker-load tarball",
    };
    println!("★ Wrote {kind} {}", output.path().display());
    for image_ref in &written.refs {
        println!("  {image_ref}");
    }
    println!("  manifest {}", written.manifest.digest);
    Ok(())
}

/// `hab sup restart`: replaces this process with the same binary and arguments (the pid stays,
/// so a service manager or the kubelet sees no exit). Returns only if that failed.
fn restart_self() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let program = std::env::current_exe().unwrap_or_else(|_| argv0.into());
    tracing::info!(program = %program.display(), "restarting the supervisor");
    let error = std::process::Command::new(&program).args(args).exec();
    anyhow::anyhow!(
        "cannot restart the supervisor ({}): {error}",
        program.display()
    )
}

/// The workstation's key cache: `--cache-key-path` (or `HAB_CACHE_KEY_PATH`), else
/// `keys::default_keys_dir`.
fn cache_key_dir(root: &std::path::Path, args: &CacheKeyPathArgs) -> std::path::PathBuf {
    match &args.cache_key_path {
        Some(dir) => dir.clone(),
        None => keys::default_keys_dir(
            root,
            std::env::var_os("HAB_ROOT").is_none() && root == std::path::Path::new("/hab"),
            nix::unistd::geteuid().is_root(),
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .as_deref(),
        ),
    }
}

/// `hab origin key ...`: the workstation's key cache, as `hab svc key generate` uses.
fn origin_key(root: &std::path::Path, command: OriginKeyCommand) -> anyhow::Result<()> {
    use habitat_sidecar::workstation::pkg as ws;
    let mut out = std::io::stdout().lock();
    match command {
        OriginKeyCommand::Generate { origin, keys } => {
            ws::origin_key_generate(&origin, &cache_key_dir(root, &keys), &mut out)?;
        }
        OriginKeyCommand::Export {
            origin,
            key_type,
            keys,
        } => ws::origin_key_export(&origin, key_type, &cache_key_dir(root, &keys), &mut out)?,
        OriginKeyCommand::Import { keys } => {
            let mut content = String::new();
            // A key file is a few hundred bytes; more is not a key.
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin().lock(), 64 * 1024),
                &mut content,
            )?;
            ws::origin_key_import(&content, &cache_key_dir(root, &keys), &mut out)?;
        }
    }
    Ok(())
}

/// `hab pkg ...`: packages go under the supervisor's root, keys come from the key cache.
fn pkg(root: &std::path::Path, command: PkgCommand) -> anyhow::Result<()> {
    use habitat_sidecar::workstation::pkg as ws;
    let mut out = std::io::stdout().lock();
    match command {
        PkgCommand::Build(args) => {
            ws::pkg_build(
                &args.dir,
                args.origin_key.as_deref(),
                &args.out_dir,
                &cache_key_dir(root, &args.keys),
                &mut out,
            )?;
        }
        PkgCommand::Sign {
            origin,
            source,
            dest,
            keys,
        } => ws::pkg_sign(
            &source,
            &dest,
            &origin,
            &cache_key_dir(root, &keys),
            &mut out,
        )?,
        PkgCommand::Install(args) => pkg_install(root, &args, &mut out)?,
        PkgCommand::Verify { source, keys } => {
            ws::pkg_verify(&source, &cache_key_dir(root, &keys), &mut out)?
        }
        PkgCommand::Info { source } => ws::pkg_info(&source, &mut out)?,
        PkgCommand::Depot(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let keys = match &command {
                PkgDepotCommand::Upload(args) => Some(cache_key_dir(root, &args.keys)),
                _ => None,
            };
            let mut err = std::io::stderr();
            let run = workstation::depot::run_pkg(&command, keys.as_deref(), &mut out, &mut err);
            runtime.block_on(run)?;
        }
        PkgCommand::Export(PkgExportCommand::Container(args)) => export_container(root, &args)?,
    }
    Ok(())
}

/// `hab pkg install FILE.hart|IDENT...`, in the order given.
fn pkg_install(
    root: &std::path::Path,
    args: &PkgInstallArgs,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    use habitat_sidecar::workstation::pkg as ws;
    let cache = cache_key_dir(root, &args.keys);
    let mut runtime = None;
    for target in &args.targets {
        if ws::is_hart_path(target) {
            ws::pkg_install_file(std::path::Path::new(target), root, &cache, out)?;
            continue;
        }
        let ident: habitat_sidecar::package::PackageIdent =
            target.parse().map_err(anyhow::Error::msg)?;
        let Some(url) = &args.depot.url else {
            anyhow::bail!(
                "{ident}: installing by ident needs a depot: give --url (or HAB_BLDR_URL), \
                 http://HOST:PORT or file:///DIR, or install a .hart file"
            );
        };
        let depot = habitat_sidecar::pkg::depot::Depot::from_url(url, args.depot.auth.clone())?;
        let runtime = match &mut runtime {
            Some(runtime) => runtime,
            None => runtime.insert(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            ),
        };
        runtime.block_on(ws::pkg_install_ident(
            &depot,
            &ident,
            &args.channel,
            root,
            &cache,
            out,
        ))?;
    }
    Ok(())
}

/// `--user USER` with the key cache it reads.
fn encrypt_as(
    root: &std::path::Path,
    user: Option<&str>,
    keys: &CacheKeyPathArgs,
) -> Option<workstation::EncryptAs> {
    user.map(|user| workstation::EncryptAs {
        user: user.to_string(),
        keys_dir: cache_key_dir(root, keys),
    })
}

/// A new box key pair `name` in `--cache-key-path`, else `keys::default_keys_dir`.
fn generate_box_keys(
    root: &std::path::Path,
    args: &CacheKeyPathArgs,
    name: &str,
) -> anyhow::Result<keys::GeneratedBoxPair> {
    let dir = cache_key_dir(root, args);
    let mut secret = [0u8; keys::BOX_KEY_LEN];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
    Ok(keys::generate_box_key_pair(
        &dir,
        name,
        SystemTime::now(),
        secret,
    )?)
}

fn supervisor_config(root: std::path::PathBuf, args: RunArgs) -> anyhow::Result<SupervisorConfig> {
    let gossip = args.timing.gossip_config().map_err(anyhow::Error::msg)?;
    if let Some(node) = &args.node_name {
        if node.is_empty() || node.len() > 253 {
            anyhow::bail!("--node-name {node:?}: expected 1 to 253 bytes (a host or pod name)");
        }
    }
    if let Some(name) = &args.ring {
        keys::validate_key_name(name).map_err(|e| anyhow::anyhow!("--ring: {e}"))?;
    }
    Ok(SupervisorConfig {
        root,
        listen_gossip: args.listen_gossip,
        listen_http: args.listen_http,
        listen_ctl: args.listen_ctl,
        peers: args.peers,
        peer_watch_file: args.peer_watch_file,
        permanent_peer: args.permanent_peer,
        ring: args.ring,
        ring_key_env: args.ring_key.filter(|k| !k.trim().is_empty()),
        ring_key_activation: args.ring_key_activation,
        package: args.pkg,
        group: args.group,
        topology: args.topology,
        update_strategy: args.strategy,
        channel: args.channel,
        bldr_url: args.url.filter(|u| !u.trim().is_empty()),
        update_period: args.update_period,
        binds: args.binds,
        binding_mode: args.binding_mode,
        health_check_interval: args.health_check_interval,
        node_name: args.node_name,
        sys_ip: args.sys_ip_address,
        gossip,
        retire_after: args.timing.retire_after,
        http_auth_token: std::env::var("HAB_SUP_GATEWAY_AUTH_TOKEN").ok(),
        ctl_secret: std::env::var("HAB_CTL_SECRET").ok(),
    })
}
