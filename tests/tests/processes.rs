//! The processes a real `hab sup run` leaves behind, or does not: a supervisor killed with
//! SIGKILL takes its service and hooks along (parent-death signal through the exec shim); a
//! second supervisor on one root is turned away while the first holds its lock; SIGTERM ends
//! a supervisor promptly even while a long init hook runs, and the hook with it.
//!
//! Every process a test starts or expects is registered with a `Reaper`, which kills its
//! process group when the test ends, passed or failed, so no `sleep 1000` outlives a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use habitat_e2e::{hab_binary, http_get, ip, wait_for, wait_until, Supervisor};

const BLOCK_KILLED: u8 = 70;
const BLOCK_KILLED_IN_INIT: u8 = 71;
const BLOCK_LOCK: u8 = 72;
const BLOCK_TERM_IN_INIT: u8 = 73;
const BLOCK_LEFTOVER: u8 = 74;
const BLOCK_HUP: u8 = 75;
const BLOCK_FLOOD: u8 = 76;
const SOON: Duration = Duration::from_secs(30);

/// Writes a package directory under `dir`: IDENT plus `files` (hooks made executable by the
/// supervisor's rendering).
fn package(dir: &Path, ident: &str, files: &[(&str, &str)]) -> PathBuf {
    let pkg = dir.join(ident.replace('/', "-"));
    for (relative, content) in [("IDENT", ident)].iter().chain(files) {
        let path = pkg.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    pkg
}

/// Alive = exists and is not a zombie (an orphan's zombie may wait for a lazy reaper).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid in `path` once it names a live process.
fn wait_for_pid(path: &Path, what: &str) -> u32 {
    wait_for(SOON, what, || {
        read_pid(path)
            .filter(|pid| alive(*pid))
            .ok_or_else(|| format!("{} names no live process", path.display()))
    })
}

/// `/proc/<pid>/cmdline`, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Kills the process groups of the pids it holds when dropped: the test's own clean-up.
#[derive(Default)]
struct Reaper(Vec<u32>);

impl Reaper {
    fn watch(&mut self, pid: u32) -> u32 {
        self.0.push(pid);
        pid
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            for target in [format!("-{pid}"), pid.to_string()] {
                let _ = std::process::Command::new("kill")
                    .args(["-s", "KILL", "--", &target])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// A run hook that execs a long sleep: the service's pid is the sleep's.
const RUN_SLEEP: &str = "#!/bin/sh\nexec sleep 1000\n";

#[test]
fn a_killed_supervisor_takes_its_service_along() {
    let packages = tempfile::tempdir().unwrap();
    let pkg = package(
        packages.path(),
        "test/orphan/1.0.0/20260101000000",
        &[("hooks/run", RUN_SLEEP)],
    );
    let mut reaper = Reaper::default();
    let mut sup = Supervisor::at(BLOCK_KILLED, 1)
        .without_service()
        .args([pkg.to_str().unwrap()])
        .start();
    let pid_file = sup.root().join("svc/orphan/PID");
    let service = reaper.watch(wait_for_pid(&pid_file, "the service to run"));
    // Through the shim and the run hook's exec, the service is the program itself.
    assert_eq!(cmdline(service), "sleep 1000");

    sup.kill();
    wait_until(SOON, "the service to end with its supervisor", || {
        !alive(service)
    });
}

#[test]
fn a_killed_supervisor_takes_a_running_init_hook_along() {
    let packages = tempfile::tempdir().unwrap();
    let pkg = package(
        packages.path(),
        "test/slowinit/1.0.0/20260101000000",
        &[
            (
                "hooks/init",
                "#!/bin/sh\necho $$ > {{pkg.svc_data_path}}/init.pid\nexec sleep 300\n",
            ),
            ("hooks/run", RUN_SLEEP),
        ],
    );
    let mut reaper = Reaper::default();
    let mut sup = Supervisor::at(BLOCK_KILLED_IN_INIT, 1)
        .without_service()
        .args([pkg.to_str().unwrap()])
        .start();
    let init_file = sup.root().join("svc/slowinit/data/init.pid");
    let hook = reaper.watch(wait_for_pid(&init_file, "the init hook to run"));

    sup.kill();
    wait_until(SOON, "the init hook to end with its supervisor", || {
        !alive(hook)
    });
}

/// `hab sup run --root ROOT` at 127.0.`block`.`host` (not through the harness, which gives
/// every supervisor a root of its own), its output in `log`.
fn sup_on_root(root: &Path, block: u8, host: u8, log: &Path) -> KilledOnDrop {
    let addr = |port: u16| SocketAddr::new(ip(block, host).into(), port).to_string();
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(hab_binary())
        .args(["sup", "run", "--root"])
        .arg(root)
        .args(["--listen-gossip", &addr(9638)])
        .args(["--listen-http", &addr(9631)])
        .args(["--listen-ctl", &addr(9632)])
        .env_remove("HAB_ROOT")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    KilledOnDrop(child)
}

struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_supervisor_on_one_root_is_turned_away_until_the_first_is_gone() {
    let mut first = Supervisor::at(BLOCK_LOCK, 1).without_service().start();
    let first_pid = first.pid().unwrap();
    let root = first.root().to_path_buf();
    let logs = tempfile::tempdir().unwrap();

    let second_log = logs.path().join("second.log");
    let mut second = sup_on_root(&root, BLOCK_LOCK, 2, &second_log);
    let status = wait_for(SOON, "the second supervisor to give up", || {
        second
            .0
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still running".to_string())
    });
    assert!(!status.success(), "{status}");
    let message = std::fs::read_to_string(&second_log).unwrap();
    let expected = format!(
        "another supervisor is running on {} (pid {first_pid})",
        root.display()
    );
    assert!(message.contains(&expected), "{message}");
    assert!(first.healthz(), "the first one runs on");

    first.kill();
    let mut third = sup_on_root(&root, BLOCK_LOCK, 2, &logs.path().join("third.log"));
    let http = SocketAddr::new(ip(BLOCK_LOCK, 2).into(), 9631);
    wait_for(SOON, "a new supervisor on the root of a killed one", || {
        if let Some(status) = third.0.try_wait().unwrap() {
            panic!("exited: {status}");
        }
        http_get(http, "/healthz")
    });
}

#[test]
fn sigterm_during_a_long_init_hook_ends_the_supervisor_and_the_hook_promptly() {
    let packages = tempfile::tempdir().unwrap();
    let pkg = package(
        packages.path(),
        "test/longinit/1.0.0/20260101000000",
        &[
            (
                "hooks/init",
                "#!/bin/sh\nsleep 300 &\necho $! > {{pkg.svc_data_path}}/child.pid\n\
                 echo $$ > {{pkg.svc_data_path}}/init.pid\nwait\n",
            ),
            ("hooks/run", RUN_SLEEP),
        ],
    );
    let mut reaper = Reaper::default();
    let mut sup = Supervisor::at(BLOCK_TERM_IN_INIT, 1)
        .without_service()
        .args([pkg.to_str().unwrap()])
        .start();
    let data = sup.root().join("svc/longinit/data");
    let hook = reaper.watch(wait_for_pid(&data.join("init.pid"), "the init hook to run"));
    let child = reaper.watch(wait_for_pid(&data.join("child.pid"), "the hook's child"));

    let t0 = Instant::now();
    let status = sup.terminate();
    // Well inside the hook's 300 s and the supervisor's own deadline (shutdown timeout plus
    // the post-stop timeout, 130 s), and not a SIGKILL by the harness.
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(status.success(), "{status}");
    // Killed before the supervisor exited; a signalled process may take a moment to die.
    wait_until(SOON, "the init hook and its child to be gone", || {
        !alive(hook) && !alive(child)
    });
}

/// Processes whose working directory is `dir` (a service runs in its svc dir).
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

#[test]
fn a_service_left_by_a_killed_supervisor_is_stopped_before_the_next_one_starts() {
    let packages = tempfile::tempdir().unwrap();
    // Ignores TERM, so the parent-death signal does not end it: a real leftover.
    let pkg = package(
        packages.path(),
        "test/stubborn/1.0.0/20260101000000",
        &[
            ("hooks/run", "#!/bin/sh\ntrap '' TERM\nexec sleep 1000\n"),
            ("SHUTDOWN_TIMEOUT", "1"),
        ],
    );
    let mut reaper = Reaper::default();
    let mut sup = Supervisor::at(BLOCK_LEFTOVER, 1)
        .without_service()
        .args([pkg.to_str().unwrap()])
        .start();
    let svc_dir = sup.root().join("svc/stubborn");
    let pid_file = svc_dir.join("PID");
    let old = reaper.watch(wait_for_pid(&pid_file, "the service to run"));

    sup.kill();
    assert!(
        alive(old),
        "the TERM-ignoring service {old} outlived its supervisor"
    );
    sup.restart();
    let new = wait_for(SOON, "a new service process", || {
        read_pid(&pid_file)
            .filter(|pid| *pid != old && alive(*pid))
            .ok_or_else(|| "not yet".to_string())
    });
    reaper.watch(new);
    // The old one was gone before the new one started, not merely by now.
    assert!(!alive(old), "the leftover {old} still runs beside {new}");
    assert_eq!(processes_in(&svc_dir), [new]);
}

#[test]
fn sighup_neither_ends_the_supervisor_nor_its_service() {
    let packages = tempfile::tempdir().unwrap();
    let pkg = package(
        packages.path(),
        "test/hup/1.0.0/20260101000000",
        &[("hooks/run", RUN_SLEEP)],
    );
    let mut reaper = Reaper::default();
    let mut sup = Supervisor::at(BLOCK_HUP, 1)
        .without_service()
        .args([pkg.to_str().unwrap()])
        .start();
    let service = reaper.watch(wait_for_pid(
        &sup.root().join("svc/hup/PID"),
        "the service to run",
    ));

    signal(sup.pid().unwrap(), "HUP");
    // The supervisor says it has seen the signal: from then on, its survival is the result.
    wait_until(SOON, "the supervisor to log the SIGHUP", || {
        if let Some(status) = sup.exit_status() {
            panic!("the supervisor ended on SIGHUP: {status}");
        }
        sup.log().contains("SIGHUP received")
    });
    assert!(sup.healthz(), "and answers");
    assert!(alive(service), "the service {service} runs on");
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, "--", &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -s {name} {pid}: {status}");
}

/// `VmHWM` (peak resident memory) of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

#[test]
fn a_hook_flooding_100_mb_of_output_neither_swells_the_supervisor_nor_hangs() {
    const FLOOD: u64 = 100_000_000;
    const PEAK_LIMIT_KIB: u64 = 48 * 1024;
    let packages = tempfile::tempdir().unwrap();
    // 100 000 lines of 1000 bytes, as fast as the pipe takes them.
    let pkg = package(
        packages.path(),
        "test/flood/1.0.0/20260101000000",
        &[
            (
                "hooks/init",
                "#!/bin/sh\nyes \"$(printf '%0999d' 0)\" | head -c 100000000\n",
            ),
            ("hooks/run", RUN_SLEEP),
        ],
    );
    let mut reaper = Reaper::default();
    let sup = Supervisor::at(BLOCK_FLOOD, 1)
        .without_service()
        .args([pkg.to_str().unwrap()])
        .start();
    let sup_pid = sup.pid().unwrap();
    let svc = sup.root().join("svc/flood");
    // The service starts once init is done: the flood did not block the hook for good.
    reaper.watch(wait_for(Duration::from_secs(120), "init to finish", || {
        read_pid(&svc.join("PID"))
            .filter(|pid| alive(*pid))
            .ok_or_else(|| "no service yet".to_string())
    }));
    let peak = peak_rss_kib(sup_pid);
    eprintln!("supervisor peak RSS: {peak} KiB");
    // Lines in flight, not the flood: an idle supervisor's few MiB plus little, where the
    // flood queued in memory took 100 MB and more.
    assert!(peak < PEAK_LIMIT_KIB, "peak RSS {peak} KiB");
    let logged = std::fs::metadata(svc.join("logs/init.stdout.log"))
        .unwrap()
        .len();
    assert_eq!(logged, FLOOD, "every byte reached the hook's log file");
}
