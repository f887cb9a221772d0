//! Running a service's lifecycle hooks with Habitat's names, output and exit semantics, plus
//! what Habitat lacks: every hook has a timeout, after which its whole process group is
//! killed (TERM, then KILL after [`HOOK_KILL_GRACE`]).
//!
//! Output goes to the log as `<svc>.<group> hook[<name>]:(HK): line` (Habitat's preamble) and
//! to `<svc_dir>/logs/<name>.stdout.log` / `.stderr.log`, truncated at each run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::process::{self, ProcessExit, RunAs, Signal};

/// Habitat's log key for hook messages.
pub const LOGKEY: &str = "HK";
/// Time a hook gets between SIGTERM and SIGKILL once its timeout expired.
pub const HOOK_KILL_GRACE: Duration = Duration::from_secs(5);
/// After a hook exits, how long we keep reading output that processes it left behind may
/// still be writing to the inherited pipes.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// Most stdout bytes kept in [`HookOutcome::stdout`] (suitability needs a few).
pub const MAX_CAPTURED_STDOUT: usize = 64 * 1024;
/// Output gathered before a write to a hook's log file.
const LOG_WRITE_BUFFER: usize = 64 * 1024;

/// The hooks a package can ship in `hooks/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookKind {
    Init,
    Run,
    PostRun,
    HealthCheck,
    Reconfigure,
    Suitability,
    FileUpdated,
    PostStop,
}

impl HookKind {
    pub const ALL: [HookKind; 8] = [
        HookKind::Init,
        HookKind::Run,
        HookKind::PostRun,
        HookKind::HealthCheck,
        HookKind::Reconfigure,
        HookKind::Suitability,
        HookKind::FileUpdated,
        HookKind::PostStop,
    ];

    /// The hook's file name in `hooks/`, also used for its log files.
    pub fn file_name(self) -> &'static str {
        match self {
            HookKind::Init => "init",
            HookKind::Run => "run",
            HookKind::PostRun => "post-run",
            HookKind::HealthCheck => "health-check",
            HookKind::Reconfigure => "reconfigure",
            HookKind::Suitability => "suitability",
            HookKind::FileUpdated => "file-updated",
            HookKind::PostStop => "post-stop",
        }
    }

    /// The older underscore spelling Habitat still accepts (`health_check`), if any.
    pub fn deprecated_file_name(self) -> Option<&'static str> {
        match self {
            HookKind::PostRun => Some("post_run"),
            HookKind::HealthCheck => Some("health_check"),
            HookKind::FileUpdated => Some("file_updated"),
            HookKind::PostStop => Some("post_stop"),
            _ => None,
        }
    }

    /// Habitat has no hook timeouts. Ours are generous enough for real initialisation work
    /// (init and post-run may migrate data) yet bound a hung hook; the health check matches
    /// the default 30 s check interval so checks never pile up. The run hook is supervised,
    /// not timed: `Duration::MAX`.
    pub fn default_timeout(self) -> Duration {
        let secs = match self {
            HookKind::Run => return Duration::MAX,
            HookKind::Init | HookKind::PostRun => 300,
            HookKind::HealthCheck | HookKind::Suitability => 30,
            HookKind::Reconfigure | HookKind::FileUpdated | HookKind::PostStop => 120,
        };
        Duration::from_secs(secs)
    }

    /// The hook file in `hooks_dir`, preferring the current name over the deprecated one.
    pub fn locate(self, hooks_dir: &Path) -> Option<PathBuf> {
        let current = hooks_dir.join(self.file_name());
        if current.is_file() {
            return Some(current);
        }
        let old = hooks_dir.join(self.deprecated_file_name()?);
        if old.is_file() {
            tracing::warn!(
                "deprecated hook file name {}; rename it to {}",
                old.display(),
                self.file_name()
            );
            return Some(old);
        }
        None
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_name())
    }
}

/// A timeout per hook kind; starts from [`HookKind::default_timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTimeouts([Duration; 8]);

impl Default for HookTimeouts {
    fn default() -> Self {
        HookTimeouts(HookKind::ALL.map(HookKind::default_timeout))
    }
}

impl HookTimeouts {
    pub fn get(&self, kind: HookKind) -> Duration {
        self.0[kind.index()]
    }

    pub fn set(&mut self, kind: HookKind, timeout: Duration) -> &mut Self {
        self.0[kind.index()] = timeout;
        self
    }
}

/// Who runs a hook and where.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// `<svc>.<group>`, e.g. `redis.default`.
    pub service_group: String,
    /// `<root>/svc/<svc>`: the hook's working directory; `logs/` below it gets the output.
    pub svc_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub user: Option<RunAs>,
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookExit {
    Code(i32),
    Signal(i32),
    /// Outlived its timeout; its process group was killed.
    TimedOut,
    /// Could not be started (not executable, bad interpreter, ...).
    SpawnFailed(String),
}

/// The result of one hook run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    pub exit: HookExit,
    /// Standard output, at most [`MAX_CAPTURED_STDOUT`] bytes (lossy UTF-8, `\n` endings).
    pub stdout: String,
}

impl HookOutcome {
    pub fn success(&self) -> bool {
        self.exit == HookExit::Code(0)
    }
}

/// Habitat's preamble for a hook's output lines, before `(HK): `.
pub fn hook_preamble(service_group: &str, kind: HookKind) -> String {
    format!("{service_group} hook[{}]:", kind.file_name())
}

/// `<svc_dir>/logs/<hook>.stdout.log` and `.stderr.log`.
pub fn log_paths(svc_dir: &Path, kind: HookKind) -> (PathBuf, PathBuf) {
    let logs = svc_dir.join("logs");
    (
        logs.join(format!("{}.stdout.log", kind.file_name())),
        logs.join(format!("{}.stderr.log", kind.file_name())),
    )
}

/// Run hook `path` as `kind` for `ctx`, killing its process group after `timeout`.
///
/// Never fails: a hook that cannot start is [`HookExit::SpawnFailed`]; every problem is
/// logged under the service group with log key HK, as Habitat does.
pub async fn run_hook(
    kind: HookKind,
    path: &Path,
    ctx: &HookContext,
    timeout: Duration,
) -> HookOutcome {
    run_hook_until(kind, path, ctx, timeout, std::future::pending()).await
}

/// [`run_hook`], ended early when `cancel` resolves (the service is stopping): the hook's
/// process group gets SIGTERM, then SIGKILL after [`HOOK_KILL_GRACE`], and the outcome is the
/// exit that caused. A long hook (init may run for minutes) thus never outlives a shutdown.
pub async fn run_hook_until(
    kind: HookKind,
    path: &Path,
    ctx: &HookContext,
    timeout: Duration,
    cancel: impl std::future::Future<Output = ()>,
) -> HookOutcome {
    let sg = ctx.service_group.as_str();
    let name = kind.file_name();
    let cwd = ctx.svc_dir.is_dir().then_some(ctx.svc_dir.as_path());
    let spawned = process::spawn_group(path, &[], cwd, &ctx.env, ctx.user.as_ref()).await;
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "{sg}({LOGKEY}): Hook failed to run, {name}, {}: {e}",
                path.display()
            );
            return HookOutcome {
                exit: HookExit::SpawnFailed(format!("{}: {e}", path.display())),
                stdout: String::new(),
            };
        }
    };
    let Some(pid) = child.id() else {
        // `id()` is only None after a successful wait, which has not happened yet.
        return HookOutcome {
            exit: HookExit::SpawnFailed("hook exited before its pid was read".into()),
            stdout: String::new(),
        };
    };

    // Until the hook has been waited for, a dropped future (the task running it aborted, the
    // service stopped mid-hook) kills its whole process group instead of leaving it running.
    let mut group = process::GroupGuard::new(pid);

    let preamble: Arc<str> = Arc::from(hook_preamble(sg, kind));
    let (out_log, err_log) = log_paths(&ctx.svc_dir, kind);
    let captured = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward(
            out,
            out_log,
            preamble.clone(),
            Some(captured.clone()),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward(err, err_log, preamble, None)));
    }

    let waited = tokio::select! {
        waited = deadline_wait(&mut child, timeout) => Some(waited),
        () = cancel => None,
    };
    let exit = match waited {
        None => {
            tracing::info!("{sg}({LOGKEY}): stopping {name}: the service is stopping");
            let (status, killed) =
                process::terminate_group(&mut child, pid, Signal::SIGTERM, HOOK_KILL_GRACE).await;
            if killed {
                tracing::warn!("{sg}({LOGKEY}): {name} ignored SIGTERM and was killed");
            }
            match status {
                Ok(status) => from_process_exit(ProcessExit::from_status(status)),
                Err(_) => HookExit::Signal(Signal::SIGKILL as i32),
            }
        }
        Some(Some(Ok(status))) => from_process_exit(ProcessExit::from_status(status)),
        Some(Some(Err(e))) => {
            tracing::warn!("{sg}({LOGKEY}): Hook failed to run, {name}, waiting: {e}");
            HookExit::SpawnFailed(format!("waiting for {}: {e}", path.display()))
        }
        Some(None) => {
            tracing::warn!(
                "{sg}({LOGKEY}): {name} timed out after {:?}; killing its process group",
                timeout
            );
            let (_, killed) =
                process::terminate_group(&mut child, pid, Signal::SIGTERM, HOOK_KILL_GRACE).await;
            if killed {
                tracing::warn!("{sg}({LOGKEY}): {name} ignored SIGTERM and was killed");
            }
            HookExit::TimedOut
        }
    };
    group.disarm();
    if let HookExit::Signal(sig) = exit {
        tracing::warn!("{sg}({LOGKEY}): {name} was terminated by signal {sig}");
    }

    // Processes the hook left running may hold its pipes open: read what is there, but do
    // not wait for them forever.
    let drain = async {
        for r in readers.iter_mut() {
            let _ = r.await;
        }
    };
    if tokio::time::timeout(OUTPUT_DRAIN, drain).await.is_err() {
        tracing::debug!("{sg}({LOGKEY}): {name} left processes writing to its output");
        readers.iter().for_each(|r| r.abort());
    }
    let stdout = match captured.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    HookOutcome { exit, stdout }
}

/// `child.wait()` bounded by `timeout`; `None` when it expired. `Duration::MAX` = no bound.
async fn deadline_wait(
    child: &mut tokio::process::Child,
    timeout: Duration,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    match tokio::time::Instant::now().checked_add(timeout) {
        Some(deadline) => tokio::time::timeout_at(deadline, child.wait()).await.ok(),
        None => Some(child.wait().await),
    }
}

fn from_process_exit(exit: ProcessExit) -> HookExit {
    match exit {
        ProcessExit::Code(c) => HookExit::Code(c),
        ProcessExit::Signal(s) => HookExit::Signal(s),
    }
}

/// Copy one output stream to the log, its log file and optionally a capped capture buffer.
///
/// One line at a time, written before the next is read: a hook flooding its output waits for
/// the disk (its pipe fills) rather than queueing in memory (an unbounded queue grew by the
/// flood, 100 MB of output took 200 MB, and lost its tail at the output drain limit).
async fn forward<R>(
    reader: R,
    log_file: PathBuf,
    preamble: Arc<str>,
    capture: Option<Arc<Mutex<String>>>,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut file = open_log(&log_file)
        .await
        .map(|f| tokio::io::BufWriter::with_capacity(LOG_WRITE_BUFFER, f));
    let mut lines = process::LineReader::new(reader);
    while let Some(line) = lines.next_line().await {
        tracing::info!("{preamble}({LOGKEY}): {line}");
        if let Some(buf) = &capture {
            if let Ok(mut b) = buf.lock() {
                if b.len() + line.len() < MAX_CAPTURED_STDOUT {
                    b.push_str(&line);
                    b.push('\n');
                }
            }
        }
        if let Some(f) = file.as_mut() {
            let written = async {
                f.write_all(line.as_bytes()).await?;
                f.write_all(b"\n").await
            };
            if let Err(e) = written.await {
                tracing::warn!("writing {}: {e}", log_file.display());
                file = None;
            }
        }
    }
    if let Some(f) = file.as_mut() {
        if let Err(e) = f.flush().await {
            tracing::warn!("writing {}: {e}", log_file.display());
        }
    }
}

async fn open_log(path: &Path) -> Option<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            tracing::warn!("creating hook log directory {}: {e}", dir.display());
            return None;
        }
    }
    match tokio::fs::File::create(path).await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("creating hook log {}: {e}", path.display());
            None
        }
    }
}

/// Habitat's suitability output: the last non-empty line of stdout, a decimal u64.
pub fn parse_suitability(stdout: &str) -> Result<u64, String> {
    let Some(line) = stdout.lines().map(str::trim).rfind(|l| !l.is_empty()) else {
        return Err("suitability hook printed nothing; expected a number like 42".into());
    };
    line.parse::<u64>().map_err(|_| {
        format!("suitability hook printed {line:?}; expected a non-negative integer like 42")
    })
}

/// A suitability hook's value: `None` (and a logged reason) unless it exited 0 and printed
/// a number.
pub fn suitability_of(service_group: &str, outcome: &HookOutcome) -> Option<u64> {
    if !outcome.success() {
        tracing::warn!(
            "{service_group}({LOGKEY}): suitability hook failed ({:?}); ignoring it",
            outcome.exit
        );
        return None;
    }
    match parse_suitability(&outcome.stdout) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("{service_group}({LOGKEY}): {e}");
            None
        }
    }
}

/// Whether an init hook lets the service start (only exit 0 does), logging Habitat's
/// message when it does not.
pub fn init_succeeded(service_group: &str, outcome: &HookOutcome) -> bool {
    match &outcome.exit {
        HookExit::Code(0) => true,
        HookExit::Code(c) => {
            tracing::warn!(
                "{service_group}({LOGKEY}): Initialization failed! 'init' exited with status code {c}"
            );
            false
        }
        other => {
            tracing::warn!(
                "{service_group}({LOGKEY}): Initialization failed! 'init' ended with {other:?}"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_timeouts() {
        let names: Vec<_> = HookKind::ALL.iter().map(|k| k.file_name()).collect();
        assert_eq!(
            names,
            [
                "init",
                "run",
                "post-run",
                "health-check",
                "reconfigure",
                "suitability",
                "file-updated",
                "post-stop"
            ]
        );
        assert_eq!(
            HookKind::HealthCheck.deprecated_file_name(),
            Some("health_check")
        );
        assert_eq!(HookKind::Init.deprecated_file_name(), None);
        assert_eq!(HookKind::Run.default_timeout(), Duration::MAX);
        assert_eq!(
            HookKind::HealthCheck.default_timeout(),
            Duration::from_secs(30)
        );
        let mut t = HookTimeouts::default();
        t.set(HookKind::Init, Duration::from_secs(5));
        assert_eq!(t.get(HookKind::Init), Duration::from_secs(5));
        assert_eq!(
            t.get(HookKind::PostStop),
            HookKind::PostStop.default_timeout()
        );
    }

    #[test]
    fn preamble_matches_habitat() {
        assert_eq!(
            hook_preamble("redis.default", HookKind::HealthCheck),
            "redis.default hook[health-check]:"
        );
        let (out, err) = log_paths(Path::new("/hab/svc/redis"), HookKind::Init);
        assert_eq!(out, Path::new("/hab/svc/redis/logs/init.stdout.log"));
        assert_eq!(err, Path::new("/hab/svc/redis/logs/init.stderr.log"));
    }

    #[test]
    fn suitability_parsing() {
        assert_eq!(parse_suitability("42\n"), Ok(42));
        assert_eq!(parse_suitability("checking...\n  7 \n\n"), Ok(7));
        assert_eq!(parse_suitability("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "\n \n", "-1", "3.5", "lots", "18446744073709551616"] {
            let err = parse_suitability(bad).unwrap_err();
            assert!(err.contains("suitability"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn suitability_needs_a_clean_exit() {
        let ok = HookOutcome {
            exit: HookExit::Code(0),
            stdout: "5\n".into(),
        };
        assert_eq!(suitability_of("a.b", &ok), Some(5));
        let failed = HookOutcome {
            exit: HookExit::Code(1),
            stdout: "5\n".into(),
        };
        assert_eq!(suitability_of("a.b", &failed), None);
        assert!(init_succeeded("a.b", &ok));
        assert!(!init_succeeded("a.b", &failed));
        assert!(!init_succeeded(
            "a.b",
            &HookOutcome {
                exit: HookExit::TimedOut,
                stdout: String::new()
            }
        ));
    }

    #[test]
    fn locate_prefers_the_current_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(HookKind::HealthCheck.locate(dir.path()), None);
        std::fs::write(dir.path().join("health_check"), "").unwrap();
        assert_eq!(
            HookKind::HealthCheck.locate(dir.path()),
            Some(dir.path().join("health_check"))
        );
        std::fs::write(dir.path().join("health-check"), "").unwrap();
        assert_eq!(
            HookKind::HealthCheck.locate(dir.path()),
            Some(dir.path().join("health-check"))
        );
    }
}
