//! `hab sup term` and `hab census` against a real `hab sup run` (an empty supervisor on
//! 127.0.91.1, its own temp root): the census answers while it runs, `sup term` stops it and it
//! exits 0, and then both say nobody is there. Waiting is a condition with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IP: &str = "127.0.91.1";
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

fn hab(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hab"));
    cmd.args(args)
        .env("HAB_ROOT", root)
        .env("HOME", root.join("home"))
        .env("RUST_LOG", "off")
        .env_remove("HAB_SUP_GATEWAY_AUTH_TOKEN")
        .env_remove("HAB_SUP_HTTP_ADDR")
        .env_remove("HAB_RING_KEY")
        .env_remove("HAB_NODE_NAME")
        .stdin(Stdio::null());
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A supervisor killed when the test ends, however it ends.
struct Supervisor {
    child: Child,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Supervisor {
    fn start(root: &Path) -> Supervisor {
        let addr = |port: u16| format!("{IP}:{port}");
        let child = hab(root, &["sup", "run"])
            .args(["--listen-gossip", &addr(9638)])
            .args(["--listen-http", &addr(9631)])
            .args(["--listen-ctl", &addr(9632)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Supervisor { child }
    }

    fn exited_within(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let give_up = Instant::now() + deadline;
        while Instant::now() < give_up {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(POLL);
        }
        None
    }
}

/// `hab census` against the supervisor until it exits 0 (its loop answers, so its signal
/// handlers are installed), and that last output.
fn census_when_up(root: &Path, sup: &mut Supervisor) -> Output {
    let give_up = Instant::now() + DEADLINE;
    loop {
        let out = output(hab(root, &["census", "--remote-http", IP]));
        if out.status.success() {
            return out;
        }
        assert!(
            sup.child.try_wait().unwrap().is_none(),
            "the supervisor exited"
        );
        assert!(
            Instant::now() < give_up,
            "no census within {DEADLINE:?}: {}",
            text(&out.stderr)
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn sup_term_stops_a_running_supervisor_which_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let mut sup = Supervisor::start(root.path());
    let census = census_when_up(root.path(), &mut sup);
    let shown = text(&census.stdout);
    assert!(
        shown.starts_with(&format!("Census from {IP}:9631 (member ")),
        "{shown}"
    );
    assert!(
        shown.contains("No service groups in the census."),
        "{shown}"
    );

    let term = output(hab(root.path(), &["sup", "term", "--timeout", "20"]));
    let said = text(&term.stdout);
    assert_eq!(term.status.code(), Some(0), "{said}{}", text(&term.stderr));
    let pid = sup.child.id();
    assert!(said.contains(&format!("(pid {pid})")), "{said}");
    assert!(said.contains("Supervisor stopped"), "{said}");
    // `sup term` waited for the lock, released last: the process is gone or about to be.
    let status = sup.exited_within(DEADLINE).expect("still running");
    assert_eq!(status.code(), Some(0), "{status:?}");

    let again = output(hab(root.path(), &["sup", "term"]));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("no supervisor is running"),
        "{}",
        text(&again.stderr)
    );
    let census = output(hab(root.path(), &["census", "--remote-http", IP]));
    assert_eq!(census.status.code(), Some(3), "{}", text(&census.stderr));
}

#[test]
fn sup_term_without_a_supervisor_says_so_and_exits_1() {
    let root = tempfile::tempdir().unwrap();
    let term = output(hab(root.path(), &["sup", "term"]));
    assert_eq!(term.status.code(), Some(1));
    let said = text(&term.stderr);
    assert!(said.contains("no supervisor is running on"), "{said}");
    assert!(said.contains("LOCK"), "{said}");
}
