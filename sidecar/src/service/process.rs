//! One supervised process (a service's run hook or package `run` file): spawn, PID file,
//! output forwarding, stop.
//!
//! Invariants: every child runs in its own process group (its pid is the group id), so a
//! stop or a hook timeout reaches its grandchildren too and a ^C at the supervisor's terminal
//! reaches none of them; the PID file exists only while the process is known to be running,
//! with `PID.start` beside it telling that process apart from a later one with its pid.
//! In `hab sup run` every child starts through the exec shim (`hab __exec`), which arms a
//! parent-death signal: a supervisor killed by SIGKILL or a panic takes its children along,
//! and what survives anyway (a service ignoring TERM) is stopped by the next start.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Pid, Uid, User};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::error::{Error, Result};

pub use nix::sys::signal::Signal;

/// Habitat's log key for a service's standard output.
pub const STDOUT_LOGKEY: &str = "O";
/// Habitat's log key for a service's standard error.
pub const STDERR_LOGKEY: &str = "E";
/// Habitat's default `SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);
/// Longest line forwarded as one log record; longer output is split.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    /// Exited on its own with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ProcessExit {
    pub fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ProcessExit::Code(code),
            (None, Some(sig)) => ProcessExit::Signal(sig),
            // Neither code nor signal only happens for stopped/continued states, which
            // `wait` never reports; treat it as a failure rather than success.
            (None, None) => ProcessExit::Code(-1),
        }
    }

    pub fn success(self) -> bool {
        self == ProcessExit::Code(0)
    }
}

impl std::fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessExit::Code(c) => write!(f, "exit code {c}"),
            ProcessExit::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "signal {} ({s})", sig.as_str()),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// The service user and group (`SVC_USER`, `SVC_GROUP`) a process should run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub group: String,
}

impl RunAs {
    pub fn new(user: impl Into<String>, group: impl Into<String>) -> Self {
        RunAs {
            user: user.into(),
            group: group.into(),
        }
    }

    /// The uid/gid to switch to, or `None` to run as the supervisor's own user.
    ///
    /// Only root can switch users, so a non-root supervisor always runs services as itself
    /// (as Habitat does). When root cannot find the user or group we log a warning and run as
    /// root rather than refuse to start: a package built without a matching user still runs.
    pub fn resolve(&self) -> Option<(Uid, Gid)> {
        if !nix::unistd::geteuid().is_root() {
            tracing::debug!(user = %self.user, "not root: running as the current user");
            return None;
        }
        let user = match User::from_name(&self.user) {
            Ok(Some(u)) => u,
            Ok(None) => {
                tracing::warn!(
                    "service user {:?} does not exist; running as the current user",
                    self.user
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(
                    "looking up service user {:?} failed ({e}); running as the current user",
                    self.user
                );
                return None;
            }
        };
        let gid = match Group::from_name(&self.group) {
            Ok(Some(g)) => g.gid,
            Ok(None) | Err(_) => {
                tracing::warn!(
                    "service group {:?} does not exist; using user {:?}'s primary group",
                    self.group,
                    self.user
                );
                user.gid
            }
        };
        Some((user.uid, gid))
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Added to (and overriding) the supervisor's own environment.
    pub env: Vec<(String, String)>,
    pub user: Option<RunAs>,
    pub pid_file: PathBuf,
    /// Preamble of forwarded output lines, Habitat's `<svc>.<group>`.
    pub log_prefix: String,
}

/// The supervisor's own secrets, taken from its environment: never passed on to a service or
/// a hook (which inherit the rest of the environment, as Habitat's do).
pub const SUPERVISOR_SECRETS: [&str; 3] = [
    "HAB_RING_KEY",
    "HAB_SUP_GATEWAY_AUTH_TOKEN",
    "HAB_CTL_SECRET",
];

/// The hidden `hab` subcommand of the exec shim: `hab __exec PARENT_PID PROGRAM [ARGS...]`.
pub const EXEC_SHIM_COMMAND: &str = "__exec";
/// The signal a child gets when its supervisor dies: TERM, the signal an orderly stop starts
/// with, so a service can still shut down cleanly. One that ignores TERM survives; the next
/// supervisor stops it through the PID file.
pub const PARENT_DEATH_SIGNAL: Signal = Signal::SIGTERM;

/// The binary that serves as the exec shim (`hab` itself), once installed.
static EXEC_SHIM: OnceLock<PathBuf> = OnceLock::new();

/// Start every child through `binary` (the running `hab`) from now on. Without it (library
/// users, in-process tests) children are spawned directly and get no parent-death signal.
///
/// The signal fires when the *thread* that forked the child exits, not the process: children
/// must be spawned from threads that live as long as the supervisor (the thread running the
/// runtime; never tokio's blocking pool, whose idle threads exit).
pub fn install_exec_shim(binary: PathBuf) {
    let _ = EXEC_SHIM.set(binary);
}

/// `hab __exec PARENT_PID PROGRAM [ARGS...]`: arm the parent-death signal, make sure the parent
/// is still `PARENT_PID` (it may have died before the signal was armed), then become
/// `PROGRAM`. The process group, user, working directory and environment were set by the
/// supervisor before it ran us, and exec keeps them and the death signal (the kernel clears it
/// only for set-user-ID programs). Returns only on failure, with the shell's codes: 127 when
/// the program does not exist, 126 when it cannot run.
pub fn exec_shim(args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let (Some(parent), Some(program)) = (args.first(), args.get(1)) else {
        eprintln!("hab {EXEC_SHIM_COMMAND}: expected PARENT_PID PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let Some(parent) = parent.to_str().and_then(|p| p.parse::<i32>().ok()) else {
        eprintln!("hab {EXEC_SHIM_COMMAND}: parent pid {parent:?}: expected a number");
        return ExitCode::from(2);
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL) {
        eprintln!("hab {EXEC_SHIM_COMMAND}: cannot arm the parent-death signal: {e}");
        return ExitCode::from(126);
    }
    if nix::unistd::getppid().as_raw() != parent {
        // The supervisor died before the signal was armed: nobody would stop this child.
        return ExitCode::from(1);
    }
    let mut delay = Duration::from_millis(5);
    let error = loop {
        let error = std::process::Command::new(program).args(&args[2..]).exec();
        // A hook file written just before can be busy while another child of the supervisor,
        // forked meanwhile, still holds its write handle (see `spawn_retrying`).
        if error.raw_os_error() != Some(libc::ETXTBSY) || delay > Duration::from_millis(200) {
            break error;
        }
        std::thread::sleep(delay);
        delay *= 2;
    };
    eprintln!(
        "hab {EXEC_SHIM_COMMAND}: cannot run {}: {error}",
        Path::new(program).display()
    );
    ExitCode::from(if error.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// A file the shim could not run, found before forking, so it stays a spawn error (as without
/// the shim) instead of becoming the shim's exit code.
fn check_runnable(program: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(program)?;
    if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not an executable file",
        ))
    }
}

/// A command in its own process group, stdin closed, output piped, as `user` when possible,
/// without the supervisor's secrets in its environment; through the exec `shim` if given.
pub(crate) fn group_command(
    shim: Option<&Path>,
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    env: &[(String, String)],
    user: Option<&RunAs>,
) -> Command {
    let mut cmd = match shim {
        Some(shim) => {
            let mut cmd = Command::new(shim);
            cmd.arg(EXEC_SHIM_COMMAND)
                .arg(std::process::id().to_string())
                .arg(program);
            cmd
        }
        None => Command::new(program),
    };
    for secret in SUPERVISOR_SECRETS {
        cmd.env_remove(secret);
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = user.and_then(RunAs::resolve) {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    cmd
}

/// Spawn `program` with `args` as [`group_command`] sets it up, through the exec shim if
/// installed, and
/// without the shim when the shim itself cannot be run (a supervisor binary the service user
/// may not execute): the child then lacks only the parent-death signal.
pub(crate) async fn spawn_group(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    env: &[(String, String)],
    user: Option<&RunAs>,
) -> io::Result<Child> {
    let Some(shim) = EXEC_SHIM.get() else {
        let mut cmd = group_command(None, program, args, cwd, env, user);
        return spawn_retrying(&mut cmd).await;
    };
    check_runnable(program)?;
    let mut cmd = group_command(Some(shim), program, args, cwd, env, user);
    match spawn_retrying(&mut cmd).await {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            tracing::warn!(
                "cannot run the exec shim {}: {e}; starting {} without a parent-death signal",
                shim.display(),
                program.display()
            );
            let mut cmd = group_command(None, program, args, cwd, env, user);
            spawn_retrying(&mut cmd).await
        }
        other => other,
    }
}

/// Spawn, retrying briefly on ETXTBSY: a script written just before (a freshly compiled
/// hook) can be "busy" while another thread of this process forks with the write handle
/// still open.
pub(crate) async fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..6 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

/// Kills a process group when dropped, unless disarmed: what a dropped future leaves behind
/// (an aborted task awaiting a hook) never outlives it.
pub(crate) struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl GroupGuard {
    pub(crate) const fn new(pgid: u32) -> GroupGuard {
        GroupGuard { pgid, armed: true }
    }

    /// The group was dealt with (waited for, or terminated): nothing to do on drop.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Send `signal` to every process in group `pgid`; a group that is already gone is fine.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let raw = i32::try_from(pgid).map_err(|_| io::Error::other("pid out of range"))?;
    match nix::sys::signal::killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Signal the group, wait up to `grace` for the leader, then SIGKILL the group.
///
/// Returns the leader's status and whether SIGKILL was needed. The group gets a final
/// SIGKILL even when the leader obeyed, so children it left behind do not outlive it.
pub(crate) async fn terminate_group(
    child: &mut Child,
    pgid: u32,
    signal: Signal,
    grace: Duration,
) -> (io::Result<ExitStatus>, bool) {
    if let Err(e) = signal_group(pgid, signal) {
        tracing::warn!("sending {} to process group {pgid}: {e}", signal.as_str());
    }
    let (status, killed) = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => (status, false),
        Err(_) => {
            if let Err(e) = signal_group(pgid, Signal::SIGKILL) {
                tracing::warn!("sending SIGKILL to process group {pgid}: {e}");
            }
            (child.wait().await, true)
        }
    };
    // Stragglers: anything of the group still alive after the leader is gone.
    if let Err(e) = signal_group(pgid, Signal::SIGKILL) {
        tracing::debug!("sweeping process group {pgid}: {e}");
    }
    (status, killed)
}

/// Read `reader` line by line (lossy UTF-8, lines capped at [`MAX_LINE_BYTES`]) until EOF.
pub(crate) async fn for_each_line<R, F>(reader: R, mut on_line: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(&str),
{
    let mut lines = LineReader::new(reader);
    while let Some(line) = lines.next_line().await {
        on_line(&line);
    }
}

/// Lines of a child's output: lossy UTF-8, without `\n` or `\r\n`, at most
/// [`MAX_LINE_BYTES`] each (longer output is split). Holds at most one line: nothing is read
/// ahead of what the caller has taken, so a slow caller slows the writer (its pipe fills)
/// instead of growing a queue.
pub(crate) struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    done: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        LineReader {
            reader: BufReader::new(reader),
            line: Vec::new(),
            done: false,
        }
    }

    /// The next line; `None` at the end of the output (or a read error, logged).
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        while !self.done {
            let buf = match self.reader.fill_buf().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!("reading child output: {e}");
                    self.done = true;
                    break;
                }
            };
            if buf.is_empty() {
                self.done = true;
                break;
            }
            let room = MAX_LINE_BYTES - self.line.len();
            let window = &buf[..buf.len().min(room)];
            let (consumed, complete) = match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&window[..i]);
                    (i + 1, true)
                }
                None => {
                    self.line.extend_from_slice(window);
                    (window.len(), self.line.len() >= MAX_LINE_BYTES)
                }
            };
            self.reader.consume(consumed);
            if complete {
                return Some(self.take());
            }
        }
        // The last line, without its `\n`.
        (!self.line.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        text
    }
}

/// A running service process. Dropping it leaves the process running (as Habitat's launcher
/// does); use [`stop`] to end it.
#[derive(Debug)]
pub struct RunningProcess {
    child: Child,
    pid: u32,
    pid_file: PathBuf,
    exit: Option<ProcessExit>,
}

/// Start `spec`'s program in its own process group, write its PID file and forward its
/// output to the log as `<prefix>(O): line` / `<prefix>(E): line`, as Habitat does.
pub async fn start(spec: &RunSpec) -> Result<RunningProcess> {
    let mut child = spawn_group(
        &spec.program,
        &spec.args,
        Some(&spec.cwd),
        &spec.env,
        spec.user.as_ref(),
    )
    .await
    .map_err(|e| Error::io(&spec.program, e))?;
    let Some(pid) = child.id() else {
        return Err(Error::invalid(
            spec.program.display().to_string(),
            "process exited before its pid could be read",
        ));
    };
    let prefix: Arc<str> = Arc::from(spec.log_prefix.as_str());
    if let Some(out) = child.stdout.take() {
        let prefix = prefix.clone();
        tokio::spawn(for_each_line(out, move |l| {
            tracing::info!("{prefix}({STDOUT_LOGKEY}): {l}")
        }));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(for_each_line(err, move |l| {
            tracing::info!("{prefix}({STDERR_LOGKEY}): {l}")
        }));
    }
    let mut running = RunningProcess {
        child,
        pid,
        pid_file: spec.pid_file.clone(),
        exit: None,
    };
    if let Err(e) = write_pid_file(&spec.pid_file, pid) {
        // A service without its PID file is a broken service: do not leave it running.
        stop(&mut running, Signal::SIGKILL, Duration::from_secs(1)).await;
        return Err(e);
    }
    // Without it a later supervisor could not tell this process from one that reused its pid,
    // and would leave it running: worth a warning, not a failed start.
    match ProcIdentity::of(pid) {
        Some(identity) => {
            if let Err(e) = identity.write(&identity_path(&spec.pid_file), pid) {
                tracing::warn!("{e}");
            }
        }
        None => tracing::debug!("process {pid} ended before its start time was read"),
    }
    Ok(running)
}

/// `<pid_file>.start`: the pid, boot and start time of the process the PID file names.
pub fn identity_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".start");
    PathBuf::from(name)
}

/// What tells a process apart from a later one that reused its pid: the boot it started in
/// and its start time in clock ticks since boot (`/proc/<pid>/stat`, field 22), which exec
/// does not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcIdentity {
    pub boot_id: String,
    pub start_ticks: u64,
}

/// `/proc/<pid>/stat`'s state, process group and start time, `None` when it is gone.
fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some((state, pgrp, start_ticks))
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string())
}

impl ProcIdentity {
    /// The identity of live process `pid` (a zombie has ended: `None`).
    pub fn of(pid: u32) -> Option<ProcIdentity> {
        let (state, _, start_ticks) = proc_stat(pid)?;
        if matches!(state, 'Z' | 'X' | 'x') {
            return None;
        }
        Some(ProcIdentity {
            boot_id: boot_id()?,
            start_ticks,
        })
    }

    fn write(&self, path: &Path, pid: u32) -> Result<()> {
        let text = format!("{pid} {} {}\n", self.boot_id, self.start_ticks);
        let tmp = path.with_extension("start.tmp");
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// `PID BOOT_ID START_TICKS`, as written by `write`.
    fn read(path: &Path) -> Option<(u32, ProcIdentity)> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut fields = text.split_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let boot_id = fields.next()?.to_string();
        let start_ticks = fields.next()?.parse().ok()?;
        Some((
            pid,
            ProcIdentity {
                boot_id,
                start_ticks,
            },
        ))
    }
}

/// The live process `pid_file` names, if it is the very process an earlier supervisor started
/// there (same pid, boot and start time): its pid and identity. `None` for no PID file, a
/// process that is gone, or one that merely has that pid now.
pub fn leftover(pid_file: &Path) -> Option<(u32, ProcIdentity)> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let live = ProcIdentity::of(pid)?;
    match ProcIdentity::read(&identity_path(pid_file)) {
        Some((recorded_pid, recorded)) if recorded_pid == pid && recorded == live => {
            Some((pid, live))
        }
        _ => {
            tracing::warn!(
                "PID file {} names process {pid}, which is not the one a supervisor started \
                 there (its pid was reused, or it was started otherwise); leaving it alone",
                pid_file.display()
            );
            None
        }
    }
}

/// Before a start: stop the service process an earlier supervisor left running (killed before
/// it could stop it, and the process ignored the parent-death signal), so two copies never
/// share one data directory. As [`stop`]: `signal` to its group, `timeout`, then SIGKILL.
/// An unrelated process that reused the pid is never touched (see [`leftover`]).
pub async fn stop_leftover(pid_file: &Path, signal: Signal, timeout: Duration) {
    let Some((pid, identity)) = leftover(pid_file) else {
        return;
    };
    tracing::warn!(
        "process {pid} (PID file {}) of an earlier supervisor is still running; stopping it \
         before starting the service",
        pid_file.display()
    );
    // Started as the leader of its own group; if it moved, only the process itself is ours.
    let leader = proc_stat(pid).is_some_and(|(_, pgrp, _)| pgrp == pid);
    let send = |sig: Signal| {
        let sent = if leader {
            signal_group(pid, sig)
        } else {
            i32::try_from(pid)
                .map_err(|_| io::Error::other("pid out of range"))
                .and_then(
                    |raw| match nix::sys::signal::kill(Pid::from_raw(raw), sig) {
                        Ok(()) | Err(Errno::ESRCH) => Ok(()),
                        Err(e) => Err(io::Error::from(e)),
                    },
                )
        };
        if let Err(e) = sent {
            tracing::warn!("sending {} to leftover process {pid}: {e}", sig.as_str());
        }
    };
    // Not our child: no wait(), so watch /proc until it is gone or a zombie.
    let gone = || ProcIdentity::of(pid).as_ref() != Some(&identity);
    let gone_within = |limit: Duration| async move {
        let end = tokio::time::Instant::now() + limit;
        while !gone() && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gone()
    };
    send(signal);
    if !gone_within(timeout).await {
        tracing::warn!(
            "leftover process {pid} ignored {}; killing it",
            signal.as_str()
        );
        send(Signal::SIGKILL);
        if !gone_within(LEFTOVER_KILL_WAIT).await {
            tracing::warn!("leftover process {pid} outlived SIGKILL; starting anyway");
        }
    }
    if leader {
        // Stragglers of its group (its pid cannot be reused while the group has members).
        let _ = signal_group(pid, Signal::SIGKILL);
    }
    for file in [pid_file.to_path_buf(), identity_path(pid_file)] {
        let _ = std::fs::remove_file(file);
    }
}

/// How long a SIGKILLed process not our child may take to be gone.
const LEFTOVER_KILL_WAIT: Duration = Duration::from_secs(5);

/// Write `pid` (decimal, no newline, as Habitat) atomically: temp file, then rename.
fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

impl RunningProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// Wait for the process to exit (cancel-safe). Removes the PID file once it has.
    pub async fn wait(&mut self) -> io::Result<ProcessExit> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let status = self.child.wait().await?;
        Ok(self.record(status))
    }

    /// The exit if the process has already ended, without waiting.
    pub fn try_status(&mut self) -> io::Result<Option<ProcessExit>> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        Ok(self.child.try_wait()?.map(|s| self.record(s)))
    }

    fn record(&mut self, status: ExitStatus) -> ProcessExit {
        let exit = ProcessExit::from_status(status);
        self.exit = Some(exit);
        for file in [self.pid_file.clone(), identity_path(&self.pid_file)] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("removing PID file {}: {e}", file.display()),
            }
        }
        exit
    }
}

/// How [`stop`] ended a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// It had exited before we signalled it.
    AlreadyExited(ProcessExit),
    /// It exited within the timeout after the shutdown signal.
    ExitedAfterSignal(ProcessExit),
    /// It outlived the timeout and was SIGKILLed (exit unknown only if waiting failed).
    Killed(Option<ProcessExit>),
}

/// Send `signal` to the process group, SIGKILL it after `timeout`, and wait for the exit.
/// The PID file is gone when this returns. The caller runs `post-stop` afterwards.
pub async fn stop(p: &mut RunningProcess, signal: Signal, timeout: Duration) -> StopOutcome {
    match p.try_status() {
        // No group sweep here: the pid may have been reaped long ago and its number reused.
        Ok(Some(exit)) => return StopOutcome::AlreadyExited(exit),
        Ok(None) => {}
        Err(e) => tracing::warn!("checking process {}: {e}", p.pid),
    }
    let (status, killed) = terminate_group(&mut p.child, p.pid, signal, timeout).await;
    let exit = match status {
        Ok(s) => Some(p.record(s)),
        Err(e) => {
            tracing::warn!("waiting for process {}: {e}", p.pid);
            None
        }
    };
    match (killed, exit) {
        (false, Some(exit)) => StopOutcome::ExitedAfterSignal(exit),
        (_, exit) => StopOutcome::Killed(exit),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn children_never_get_the_supervisors_secrets() {
        let cmd = group_command(None, Path::new("/bin/true"), &[], None, &[], None);
        let removed: Vec<String> = cmd
            .as_std()
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key.to_string_lossy().into_owned())
            .collect();
        for secret in SUPERVISOR_SECRETS {
            assert!(removed.iter().any(|k| k == secret), "{secret}: {removed:?}");
        }
    }

    #[test]
    fn exits_display_readably() {
        assert_eq!(ProcessExit::Code(3).to_string(), "exit code 3");
        assert_eq!(ProcessExit::Signal(9).to_string(), "signal SIGKILL (9)");
        assert!(ProcessExit::Code(0).success());
        assert!(!ProcessExit::Signal(15).success());
    }

    #[tokio::test]
    async fn lines_are_split_trimmed_and_capped() {
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\ntail");
        let mut lines = Vec::new();
        for_each_line(&input[..], |l| lines.push(l.to_string())).await;
        assert_eq!(
            lines.len(),
            5,
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1], "two");
        assert_eq!(lines[2].len(), MAX_LINE_BYTES);
        assert_eq!(lines[3], "x".repeat(10));
        assert_eq!(lines[4], "tail");
    }

    #[test]
    fn a_leftover_is_the_recorded_process_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("PID");
        assert_eq!(leftover(&pid_file), None, "no PID file");
        // This test process stands in for a service an earlier supervisor started.
        let me = std::process::id();
        std::fs::write(&pid_file, me.to_string()).unwrap();
        assert_eq!(
            leftover(&pid_file),
            None,
            "no identity: not known to be ours"
        );
        let identity = ProcIdentity::of(me).unwrap();
        identity.write(&identity_path(&pid_file), me).unwrap();
        assert_eq!(leftover(&pid_file), Some((me, identity.clone())));
        // The same pid, started at another time: a reused pid, left alone.
        let other = ProcIdentity {
            start_ticks: identity.start_ticks + 1,
            ..identity.clone()
        };
        other.write(&identity_path(&pid_file), me).unwrap();
        assert_eq!(leftover(&pid_file), None);
        // The identity of another pid does not vouch for this one.
        identity.write(&identity_path(&pid_file), me + 1).unwrap();
        assert_eq!(leftover(&pid_file), None);
    }

    #[test]
    fn a_missing_service_user_falls_back_to_the_current_user() {
        let run_as = RunAs::new("no-such-user-hab-test", "no-such-group-hab-test");
        assert_eq!(run_as.resolve(), None);
    }
}
