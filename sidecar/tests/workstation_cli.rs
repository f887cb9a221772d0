//! The workstation commands run as a user runs them: the built `hab` against a small gateway
//! on loopback (or none), checking exit codes, output and that bad input never connects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use habitat_sidecar::ctl::codec::{read_frame, write_frame, Frame, Limits};
use habitat_sidecar::ctl::messages::{
    DesiredState, ErrCode, NetErr, NetOk, PackageIdent, ProcessState, ProcessStatus, Reply,
    Request, ServiceGroup, ServiceStatus,
};

const SECRET: &str = "cli-test-secret";

/// `hab` with an environment of its own: no secret, HOME and HAB_ROOT in `dir`.
fn hab(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hab"));
    cmd.args(args)
        .env_remove("HAB_CTL_SECRET")
        .env_remove("HAB_SUP_CTL_ADDR")
        .env("HOME", dir.join("home"))
        .env("HAB_ROOT", dir.join("hab"))
        .env("RUST_LOG", "off");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn status(service: &str) -> ServiceStatus {
    ServiceStatus {
        ident: PackageIdent {
            origin: "core".into(),
            name: service.into(),
            version: None,
            release: None,
        },
        process: Some(ProcessStatus {
            elapsed: Some(12),
            pid: Some(4242),
            state: ProcessState::Up as i32,
        }),
        service_group: ServiceGroup {
            service: service.into(),
            group: "default".into(),
            organization: None,
        },
        desired_state: Some(DesiredState::DesiredUp as i32),
    }
}

/// A gateway on its own thread: `NetOk` to the handshake with `SECRET`, then one
/// `ServiceStatus` for core/redis, `NetErr` NotFound for any other package, `NetOk` otherwise.
fn gateway() -> String {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut stream, _)) = listener.accept().await {
                let limits = Limits::default();
                let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
                let Ok(Some(hs)) = read_frame(&mut stream, &limits, deadline()).await else {
                    continue;
                };
                let txn = hs.txn.unwrap();
                let reply: Reply = match hs.to_request() {
                    Ok(Request::Handshake(h)) if h.secret_key.as_deref() == Some(SECRET) => {
                        NetOk {}.into()
                    }
                    _ => NetErr::new(ErrCode::Unauthorized, "secret key mismatch").into(),
                };
                let refused = matches!(reply, Reply::NetErr(_));
                let frame = Frame::reply(&reply, Some(txn.reply(true)));
                let _ = write_frame(&mut stream, &frame, &limits, deadline()).await;
                if refused {
                    continue;
                }
                let Ok(Some(req)) = read_frame(&mut stream, &limits, deadline()).await else {
                    continue;
                };
                let txn = req.txn.unwrap();
                let reply: Reply = match req.to_request() {
                    Ok(Request::SvcStatus(s)) => match s.ident {
                        Some(ident) if ident.name != "redis" => {
                            NetErr::new(ErrCode::NotFound, format!("Service not loaded, {ident}"))
                                .into()
                        }
                        _ => status("redis").into(),
                    },
                    _ => NetOk {}.into(),
                };
                let frame = Frame::reply(&reply, Some(txn.reply(true)));
                let _ = write_frame(&mut stream, &frame, &limits, deadline()).await;
            }
        });
    });
    addr
}

#[test]
fn svc_status_prints_the_table_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let addr = gateway();
    let mut cmd = hab(dir.path(), &["svc", "status", "--remote-sup", &addr]);
    cmd.env("HAB_CTL_SECRET", SECRET);
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "package     type        desired  state  elapsed (s)  pid   group\n\
         core/redis  standalone  up       up     12           4242  redis.default\n"
    );
}

#[test]
fn svc_status_of_a_service_not_loaded_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let addr = gateway();
    // The address from the environment, the secret from the local supervisor's file.
    std::fs::create_dir_all(dir.path().join("hab/sup/default")).unwrap();
    std::fs::write(dir.path().join("hab/sup/default/CTL_SECRET"), SECRET).unwrap();
    let mut cmd = hab(dir.path(), &["svc", "status", "core/nope"]);
    cmd.env("HAB_SUP_CTL_ADDR", &addr);
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Service not loaded, core/nope"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn svc_status_with_no_supervisor_exits_3_and_a_wrong_secret_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let closed = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut cmd = hab(dir.path(), &["svc", "status", "-r", &closed]);
    cmd.env("HAB_CTL_SECRET", SECRET);
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot reach a supervisor"));

    let addr = gateway();
    let mut cmd = hab(dir.path(), &["svc", "status", "-r", &addr]);
    cmd.env("HAB_CTL_SECRET", "wrong-secret");
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("secret key mismatch"));
    assert!(!stderr(&output).contains("wrong-secret"));
}

#[test]
fn no_secret_anywhere_is_an_error_naming_the_three_places() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(hab(dir.path(), &["svc", "status"]));
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("HAB_CTL_SECRET"), "{message}");
    assert!(message.contains(".hab/etc/cli.toml"), "{message}");
    assert!(message.contains("sup/default/CTL_SECRET"), "{message}");
}

#[test]
fn config_apply_refuses_invalid_toml_from_stdin_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cmd = hab(
        dir.path(),
        &["config", "apply", "redis.default", "1", "-r", &addr],
    );
    cmd.env("HAB_CTL_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"port = 1\n[server\n").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("standard input: not valid TOML: line 2, column"),
        "{message}"
    );
    assert!(listener.accept().is_err(), "nothing may connect");
}

#[test]
fn status_help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(hab(dir.path(), &["svc", "status", "--help"]));
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for code in [
        "0 success",
        "1 any other error",
        "2 the service named is not loaded",
        "3 no supervisor",
    ] {
        assert!(help.contains(code), "{code}: {help}");
    }
}
