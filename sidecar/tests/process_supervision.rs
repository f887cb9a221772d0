//! Process supervision and hooks against real `sh` scripts in temp dirs: PID files, stop
//! escalation, process-group kills on hook timeout, health-check codes, hook logs,
//! suitability, backoff between crash restarts, the service user, and Habitat's log prefixes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use habitat_sidecar::service::backoff::BackoffPolicy;
use habitat_sidecar::service::health::HealthStatus;
use habitat_sidecar::service::hooks::{
    self, run_hook, HookContext, HookExit, HookKind, HookOutcome,
};
use habitat_sidecar::service::process::{self, ProcessExit, RunAs, RunSpec, Signal, StopOutcome};
use habitat_sidecar::service::supervisor::{
    ProcessState, Supervisor, SupervisorConfig, SupervisorEvent,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    captured_log();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn spec(dir: &Path, program: PathBuf) -> RunSpec {
    RunSpec {
        program,
        args: vec![],
        cwd: dir.to_path_buf(),
        env: vec![("WORK".into(), dir.display().to_string())],
        user: None,
        pid_file: dir.join("PID"),
        log_prefix: "svc.default".into(),
    }
}

fn ctx(dir: &Path) -> HookContext {
    HookContext {
        service_group: "svc.default".into(),
        svc_dir: dir.to_path_buf(),
        env: vec![("WORK".into(), dir.display().to_string())],
        user: None,
    }
}

/// Poll `cond` until it holds or `DEADLINE` passes.
async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Alive = exists and is not a zombie (an orphan's zombie may wait for a lazy pid 1).
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

#[tokio::test]
async fn pid_file_is_written_and_removed_and_an_obedient_process_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let run = script(dir.path(), "run", "echo started\nexec sleep 300");
    let mut p = process::start(&spec(dir.path(), run)).await.unwrap();
    assert_eq!(read_pid(&dir.path().join("PID")), Some(p.pid()));
    assert!(alive(p.pid()));
    assert_eq!(p.try_status().unwrap(), None);

    let t0 = Instant::now();
    let outcome = process::stop(&mut p, Signal::SIGTERM, Duration::from_secs(10)).await;
    assert_eq!(
        outcome,
        StopOutcome::ExitedAfterSignal(ProcessExit::Signal(Signal::SIGTERM as i32))
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(!dir.path().join("PID").exists());
    assert!(!alive(p.pid()));
}

#[tokio::test]
async fn pid_file_goes_away_when_the_process_exits_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let run = script(dir.path(), "run", "exit 7");
    let mut p = process::start(&spec(dir.path(), run)).await.unwrap();
    assert_eq!(
        within("exit", p.wait()).await.unwrap(),
        ProcessExit::Code(7)
    );
    assert!(!dir.path().join("PID").exists());
    let outcome = process::stop(&mut p, Signal::SIGTERM, Duration::from_secs(1)).await;
    assert_eq!(outcome, StopOutcome::AlreadyExited(ProcessExit::Code(7)));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_the_process_traps_term() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let run = script(
        dir.path(),
        "run",
        "trap '' TERM\ntouch \"$WORK/ready\"\nwhile :; do sleep 0.05; done",
    );
    let mut p = process::start(&spec(dir.path(), run)).await.unwrap();
    eventually("the TERM trap", || ready.exists()).await;

    let timeout = Duration::from_millis(400);
    let t0 = Instant::now();
    let outcome = process::stop(&mut p, Signal::SIGTERM, timeout).await;
    assert_eq!(
        outcome,
        StopOutcome::Killed(Some(ProcessExit::Signal(Signal::SIGKILL as i32)))
    );
    assert!(t0.elapsed() >= timeout, "{:?}", t0.elapsed());
    assert!(!alive(p.pid()));
    assert!(!dir.path().join("PID").exists());
}

#[tokio::test]
async fn a_hook_timeout_kills_the_hooks_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let gc_file = dir.path().join("gc.pid");
    let hook = script(
        dir.path(),
        "health-check",
        "sleep 300 &\necho $! > \"$WORK/gc.pid\"\nwait",
    );
    let t0 = Instant::now();
    let outcome = run_hook(
        HookKind::HealthCheck,
        &hook,
        &ctx(dir.path()),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(outcome.exit, HookExit::TimedOut);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(
        HealthStatus::from_exit(&outcome.exit),
        HealthStatus::Unknown
    );
    let gc = read_pid(&gc_file).expect("hook wrote its grandchild's pid");
    eventually("the grandchild to die", || !alive(gc)).await;
}

#[tokio::test]
async fn a_hook_leaving_a_background_process_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let hook = script(
        dir.path(),
        "post-run",
        "sleep 300 &\necho $! > \"$WORK/bg.pid\"\necho done",
    );
    let outcome = within(
        "the hook to return",
        run_hook(
            HookKind::PostRun,
            &hook,
            &ctx(dir.path()),
            Duration::from_secs(30),
        ),
    )
    .await;
    assert_eq!(outcome.exit, HookExit::Code(0));
    assert_eq!(outcome.stdout, "done\n");
    let bg = read_pid(&dir.path().join("bg.pid")).unwrap();
    // Habitat leaves such processes alone, and so do we; the test cleans up after itself.
    assert!(alive(bg));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(bg as i32), Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn health_check_exit_codes_map_to_habitat_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut got = Vec::new();
    for code in [0, 1, 2, 3, 42] {
        let hook = script(dir.path(), &format!("hc{code}"), &format!("exit {code}"));
        let outcome = run_hook(
            HookKind::HealthCheck,
            &hook,
            &ctx(dir.path()),
            HookKind::HealthCheck.default_timeout(),
        )
        .await;
        assert_eq!(outcome.exit, HookExit::Code(code));
        got.push(HealthStatus::from_exit(&outcome.exit));
    }
    assert_eq!(
        got,
        [
            HealthStatus::Ok,
            HealthStatus::Warning,
            HealthStatus::Critical,
            HealthStatus::Unknown,
            HealthStatus::Unknown
        ]
    );
}

#[tokio::test]
async fn hook_output_lands_in_its_log_files() {
    let dir = tempfile::tempdir().unwrap();
    let hook = script(
        dir.path(),
        "init",
        "echo out one\necho err one >&2\necho out two\nexit 0",
    );
    let t0 = Instant::now();
    let outcome = run_hook(
        HookKind::Init,
        &hook,
        &ctx(dir.path()),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        t0.elapsed() < hooks::OUTPUT_DRAIN,
        "returned only after the output drain limit: {:?}",
        t0.elapsed()
    );
    assert!(hooks::init_succeeded("svc.default", &outcome));
    assert_eq!(outcome.stdout, "out one\nout two\n");
    let logs = dir.path().join("logs");
    let out = std::fs::read_to_string(logs.join("init.stdout.log")).unwrap();
    let err = std::fs::read_to_string(logs.join("init.stderr.log")).unwrap();
    assert_eq!(out, "out one\nout two\n");
    assert_eq!(err, "err one\n");

    // Logs are per run, not appended forever.
    let quiet = script(dir.path(), "init2", "echo again");
    run_hook(
        HookKind::Init,
        &quiet,
        &ctx(dir.path()),
        Duration::from_secs(30),
    )
    .await;
    let out = std::fs::read_to_string(logs.join("init.stdout.log")).unwrap();
    assert_eq!(out, "again\n");
}

#[tokio::test]
async fn suitability_and_init_results() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, body: &str, kind: HookKind| {
        let hook = script(dir.path(), name, body);
        let c = ctx(dir.path());
        async move { run_hook(kind, &hook, &c, Duration::from_secs(30)).await }
    };
    let ok = run("s1", "echo probing\necho 17", HookKind::Suitability).await;
    assert_eq!(hooks::suitability_of("svc.default", &ok), Some(17));
    let garbage = run("s2", "echo lots", HookKind::Suitability).await;
    assert_eq!(hooks::suitability_of("svc.default", &garbage), None);
    let failed = run("s3", "echo 5\nexit 1", HookKind::Suitability).await;
    assert_eq!(hooks::suitability_of("svc.default", &failed), None);

    let init_fail = run("i1", "exit 4", HookKind::Init).await;
    assert_eq!(init_fail.exit, HookExit::Code(4));
    assert!(!hooks::init_succeeded("svc.default", &init_fail));
}

#[tokio::test]
async fn a_hook_that_cannot_start_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("post-stop");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    let outcome: HookOutcome = run_hook(
        HookKind::PostStop,
        &not_exec,
        &ctx(dir.path()),
        Duration::from_secs(5),
    )
    .await;
    match &outcome.exit {
        HookExit::SpawnFailed(msg) => assert!(msg.contains("post-stop"), "{msg}"),
        other => panic!("expected SpawnFailed, got {other:?}"),
    }
    assert_eq!(
        HealthStatus::from_exit(&outcome.exit),
        HealthStatus::Unknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_subscriber_sees_the_start_even_when_it_subscribes_late() {
    // On a busy machine the supervising task can start the process before its owner gets to
    // subscribe; the Started event must not be lost (the service runtime takes the pid from it).
    let dir = tempfile::tempdir().unwrap();
    let run = script(dir.path(), "run", "exec sleep 30");
    let sup = Supervisor::spawn(SupervisorConfig::new(spec(dir.path(), run)));
    let mut state = sup.state();
    within(
        "the process is up",
        state.wait_for(|s| matches!(s, ProcessState::Up { .. })),
    )
    .await
    .unwrap();
    let mut events = sup.events();
    let first = within("the first event", events.recv()).await.unwrap();
    assert!(
        matches!(first, SupervisorEvent::Started { .. }),
        "{first:?}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_crashing_process_restarts_with_growing_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let run = script(dir.path(), "run", "exit 3");
    let mut config = SupervisorConfig::new(spec(dir.path(), run));
    config.backoff = BackoffPolicy {
        base: Duration::from_millis(100),
        factor: 2.0,
        cap: Duration::from_secs(10),
        jitter: 0.2,
        reset_after: Duration::from_secs(60),
    };
    let sup = Supervisor::spawn_with_jitter(config, Box::new(|| 0.5));
    let mut events = sup.events();

    let mut starts: Vec<Instant> = Vec::new();
    let mut delays: Vec<Duration> = Vec::new();
    let mut exits = 0;
    while starts.len() < 5 {
        match within("supervisor events", events.recv()).await.unwrap() {
            SupervisorEvent::Started { .. } => starts.push(Instant::now()),
            SupervisorEvent::RestartScheduled { delay, attempt } => {
                delays.push(delay);
                assert_eq!(attempt as usize, delays.len());
            }
            SupervisorEvent::Exited { exit, .. } => {
                assert_eq!(exit, ProcessExit::Code(3));
                exits += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    sup.shutdown().await;

    // The first start may precede our subscription; align gaps with the delays before them.
    let ms = |d: &Duration| d.as_millis();
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let before = &delays[delays.len() - gaps.len()..];
    assert!(exits >= 4);
    assert_eq!(
        delays[..4].iter().map(ms).collect::<Vec<_>>(),
        [100, 200, 400, 800]
    );
    for (gap, delay) in gaps.iter().zip(before) {
        assert!(gap >= delay, "gap {gap:?} shorter than backoff {delay:?}");
    }
    let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
    assert!(last > first * 2, "gaps did not grow: {gaps:?}");
}

#[tokio::test]
async fn supervisor_stops_restarts_and_starts_on_command() {
    let dir = tempfile::tempdir().unwrap();
    let run = script(dir.path(), "run", "exec sleep 300");
    let pid_file = dir.path().join("PID");
    let sup = Supervisor::spawn(SupervisorConfig::new(spec(dir.path(), run)));
    let mut state = sup.state();

    let up = |s: &ProcessState| matches!(s, ProcessState::Up { .. });
    let first = match within("up", state.wait_for(up)).await.unwrap().clone() {
        ProcessState::Up { pid } => pid,
        other => panic!("{other:?}"),
    };
    eventually("PID file", || read_pid(&pid_file) == Some(first)).await;

    let outcome = sup.restart().await;
    assert!(
        matches!(outcome, Some(StopOutcome::ExitedAfterSignal(_))),
        "{outcome:?}"
    );
    assert!(!alive(first));
    let second = match within("up again", state.wait_for(up))
        .await
        .unwrap()
        .clone()
    {
        ProcessState::Up { pid } => pid,
        other => panic!("{other:?}"),
    };
    assert_ne!(first, second);

    let outcome = sup.stop().await;
    assert!(
        matches!(outcome, Some(StopOutcome::ExitedAfterSignal(_))),
        "{outcome:?}"
    );
    assert_eq!(*state.borrow(), ProcessState::Stopped);
    assert!(!pid_file.exists());
    assert!(!alive(second));
    assert_eq!(
        sup.stop().await,
        None,
        "stopping a stopped service is a no-op"
    );

    sup.start().await;
    let third = match within("up a third time", state.wait_for(up))
        .await
        .unwrap()
        .clone()
    {
        ProcessState::Up { pid } => pid,
        other => panic!("{other:?}"),
    };
    let outcome = sup.shutdown().await;
    assert!(outcome.is_some());
    assert!(!alive(third));
    assert!(!pid_file.exists());
}

#[tokio::test]
async fn runs_as_the_service_user_when_root_and_the_user_exists() {
    let root = nix::unistd::geteuid().is_root();
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
    let expected = match (&nobody, root) {
        (Some(u), true) => u.uid.as_raw(),
        _ => {
            eprintln!("not root or no user `nobody`: checking the run-as-self fallback instead");
            nix::unistd::geteuid().as_raw()
        }
    };
    let dir = tempfile::tempdir().unwrap();
    // The service user must be able to reach the script and write its answer.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = script(dir.path(), "run", "id -u > \"$WORK/uid\"");
    let mut s = spec(dir.path(), run);
    s.user = Some(RunAs::new("nobody", "nogroup"));
    let mut p = process::start(&s).await.unwrap();
    assert_eq!(
        within("exit", p.wait()).await.unwrap(),
        ProcessExit::Code(0)
    );
    let uid: u32 = std::fs::read_to_string(dir.path().join("uid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(uid, expected);
}

/// A writer collecting formatted log output, to check Habitat's prefixes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log of this whole test binary. A global subscriber, installed before any test spawns
/// anything (every test writes a script first), because a thread-local one can miss events
/// whose callsites other test threads registered first.
fn captured_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .init();
        captured
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured_log().0.lock().unwrap()).to_string()
}

#[tokio::test]
async fn output_lines_carry_habitats_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ctx(dir.path());
    c.service_group = "prefix.check".into();
    let hook = script(dir.path(), "init", "echo hook says hi");
    run_hook(HookKind::Init, &hook, &c, Duration::from_secs(30)).await;
    let run = script(dir.path(), "run", "echo to out\necho to err >&2");
    let mut s = spec(dir.path(), run);
    s.log_prefix = "prefix.check".into();
    let mut p = process::start(&s).await.unwrap();
    p.wait().await.unwrap();
    let expected = [
        "prefix.check hook[init]:(HK): hook says hi",
        "prefix.check(O): to out",
        "prefix.check(E): to err",
    ];
    eventually("output to be logged", || {
        let text = log_text();
        expected.iter().all(|line| text.contains(line))
    })
    .await;
}

/// A hook whose task is aborted (the service stopped while it ran) takes its whole process
/// group along: before, the hook and what it started ran on.
#[tokio::test]
async fn an_aborted_hook_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let hook = script(
        dir.path(),
        "init",
        "sleep 300 &\necho $! > \"$WORK/CHILD\"\necho $$ > \"$WORK/HOOK\"\nwait",
    );
    let c = ctx(dir.path());
    let task =
        tokio::spawn(
            async move { run_hook(HookKind::Init, &hook, &c, Duration::from_secs(300)).await },
        );
    let (hook_pid, child_pid) = (dir.path().join("HOOK"), dir.path().join("CHILD"));
    eventually("the hook to start", || {
        read_pid(&hook_pid).is_some() && read_pid(&child_pid).is_some()
    })
    .await;
    let pids = [read_pid(&hook_pid).unwrap(), read_pid(&child_pid).unwrap()];
    task.abort();
    let _ = task.await;
    eventually("the hook's process group to be gone", || {
        pids.iter().all(|pid| !alive(*pid))
    })
    .await;
}

/// Kills a process group when dropped: a test's clean-up, also when it fails.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}

/// A service an earlier supervisor left running (dropped here without a stop, as a SIGKILLed
/// supervisor leaves it; it ignores TERM, so the parent-death signal did not end it either)
/// is stopped before the next start: never two copies on one svc dir. Before, both ran.
#[tokio::test]
async fn a_leftover_service_is_stopped_before_a_new_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = script(
        dir.path(),
        "run",
        "trap '' TERM\necho $$ >> \"$WORK/starts\"\nexec sleep 300",
    );
    let old = process::start(&spec(dir.path(), run.clone()))
        .await
        .unwrap();
    let old_pid = old.pid();
    let _old_guard = KillGroupOnDrop(old_pid);
    drop(old);
    let starts = dir.path().join("starts");
    eventually("the TERM trap", || read_pid(&starts).is_some()).await;

    let mut config = SupervisorConfig::new(spec(dir.path(), run));
    config.shutdown_timeout = Duration::from_millis(300);
    let sup = Supervisor::spawn(config);
    let mut state = sup.state();
    let up = |s: &ProcessState| matches!(s, ProcessState::Up { .. });
    let new_pid = match within("up", state.wait_for(up)).await.unwrap().clone() {
        ProcessState::Up { pid } => pid,
        other => panic!("{other:?}"),
    };
    let _new_guard = KillGroupOnDrop(new_pid);
    assert_ne!(new_pid, old_pid);
    assert!(!alive(old_pid), "the leftover {old_pid} was stopped first");
    assert_eq!(read_pid(&dir.path().join("PID")), Some(new_pid));
    sup.shutdown().await;
}

/// A PID file naming a process that is not the one a supervisor recorded there (a reused pid)
/// is not a reason to kill anything.
#[tokio::test]
async fn a_pid_file_naming_an_unrelated_process_leaves_it_alone() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut unrelated = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = KillGroupOnDrop(unrelated.id());
    std::fs::write(dir.path().join("PID"), unrelated.id().to_string()).unwrap();

    let run = script(dir.path(), "run", "exec sleep 300");
    let sup = Supervisor::spawn(SupervisorConfig::new(spec(dir.path(), run)));
    let mut state = sup.state();
    let up = |s: &ProcessState| matches!(s, ProcessState::Up { .. });
    within("up", state.wait_for(up)).await.unwrap();
    assert!(alive(unrelated.id()), "the unrelated process runs on");
    assert_eq!(unrelated.try_wait().unwrap(), None);
    sup.shutdown().await;
}
