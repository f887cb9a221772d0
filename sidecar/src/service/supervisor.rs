//! Keeps one service process running: restart on exit with jittered exponential backoff,
//! stop/start/restart on command.
//!
//! One task owns the process; callers talk to it through [`Supervisor`] (commands on an
//! mpsc channel, current state on a watch channel, every transition on a broadcast channel).
//! Invariant: at most one process per supervisor exists at any time (one an earlier
//! supervisor left running is stopped before a start), and a stop always completes (signal,
//! timeout, SIGKILL) before the reply is sent.

use std::time::Duration;

use rand::RngExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::{Backoff, BackoffPolicy};
use super::process::{
    self, ProcessExit, RunSpec, RunningProcess, Signal, StopOutcome, DEFAULT_SHUTDOWN_TIMEOUT,
};

/// Source of uniform values in `[0, 1)` for backoff jitter.
pub type JitterSource = Box<dyn FnMut() -> f64 + Send>;

/// What to run and how to restart and stop it.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub spec: RunSpec,
    pub backoff: BackoffPolicy,
    /// The package's `SHUTDOWN_SIGNAL` (default TERM).
    pub shutdown_signal: Signal,
    /// The package's `SHUTDOWN_TIMEOUT` (default 8 s), after which the group is SIGKILLed.
    pub shutdown_timeout: Duration,
}

impl SupervisorConfig {
    pub fn new(spec: RunSpec) -> Self {
        SupervisorConfig {
            spec,
            backoff: BackoffPolicy::default(),
            shutdown_signal: Signal::SIGTERM,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Why the process is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    Exited(ProcessExit),
    SpawnFailed(String),
}

/// The supervised process's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// Not running and no restart pending (initial state until the first start, and after a
    /// stop).
    Stopped,
    Up {
        pid: u32,
    },
    /// Ended on its own; a restart is being scheduled.
    Down {
        reason: DownReason,
    },
    /// A restart will happen after `delay`; `attempt` counts consecutive failures.
    Restarting {
        delay: Duration,
        attempt: u32,
        reason: DownReason,
    },
}

/// Every transition, in order (a lagging receiver loses the oldest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    Started {
        pid: u32,
    },
    Exited {
        pid: u32,
        exit: ProcessExit,
        uptime: Duration,
    },
    SpawnFailed {
        error: String,
    },
    RestartScheduled {
        delay: Duration,
        attempt: u32,
    },
    Stopped {
        outcome: StopOutcome,
    },
}

enum Command {
    Start(oneshot::Sender<()>),
    Stop(oneshot::Sender<Option<StopOutcome>>),
    Restart(oneshot::Sender<Option<StopOutcome>>),
}

/// Handle to a supervising task. Dropping it stops the process and ends the task.
pub struct Supervisor {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ProcessState>,
    events: broadcast::Sender<SupervisorEvent>,
    /// Subscribed before the task started, so its first events (`Started` among them, which a
    /// busy machine can emit before the caller gets to subscribe) are not lost.
    first_events: std::sync::Mutex<Option<broadcast::Receiver<SupervisorEvent>>>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Start supervising at once, with random jitter. Must be called inside a tokio runtime.
    pub fn spawn(config: SupervisorConfig) -> Supervisor {
        Supervisor::spawn_with_jitter(config, Box::new(|| rand::rng().random::<f64>()))
    }

    /// Start supervising at once, drawing backoff jitter from `jitter` (tests pass a constant).
    pub fn spawn_with_jitter(config: SupervisorConfig, jitter: JitterSource) -> Supervisor {
        let (commands, rx) = mpsc::channel(8);
        let (state_tx, state) = watch::channel(ProcessState::Stopped);
        let (events, first_events) = broadcast::channel(256);
        let task = Task {
            backoff: Backoff::new(config.backoff.clone()),
            config,
            jitter,
            commands: rx,
            state: state_tx,
            events: events.clone(),
        };
        let task = tokio::spawn(task.run());
        Supervisor {
            commands,
            state,
            events,
            first_events: std::sync::Mutex::new(Some(first_events)),
            task,
        }
    }

    pub fn state(&self) -> watch::Receiver<ProcessState> {
        self.state.clone()
    }

    /// Transitions: for the first caller every one since the supervisor started, for later
    /// callers those from now on.
    pub fn events(&self) -> broadcast::Receiver<SupervisorEvent> {
        let first = self
            .first_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        first.unwrap_or_else(|| self.events.subscribe())
    }

    /// Stop the process (signal, timeout, SIGKILL) and cancel any pending restart. `None`
    /// when nothing was running. The caller runs `post-stop` after this returns.
    pub async fn stop(&self) -> Option<StopOutcome> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stop(tx)).await;
        rx.await.ok().flatten()
    }

    /// Start the process if it is stopped or waiting out a backoff; no-op when it is up.
    pub async fn start(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Start(tx)).await;
        let _ = rx.await;
    }

    /// Stop (if running) and start again at once, forgetting past crashes.
    pub async fn restart(&self) -> Option<StopOutcome> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Restart(tx)).await;
        rx.await.ok().flatten()
    }

    /// Stop the process and end the supervising task.
    pub async fn shutdown(self) -> Option<StopOutcome> {
        let outcome = self.stop().await;
        drop(self.commands);
        let _ = self.task.await;
        outcome
    }

    async fn send(&self, cmd: Command) {
        if self.commands.send(cmd).await.is_err() {
            tracing::debug!("supervisor task already ended");
        }
    }
}

enum Phase {
    Start,
    Running(Box<RunningProcess>, Instant),
    Waiting(Instant),
    Idle,
}

struct Task {
    config: SupervisorConfig,
    backoff: Backoff,
    jitter: JitterSource,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<ProcessState>,
    events: broadcast::Sender<SupervisorEvent>,
}

impl Task {
    fn set(&self, state: ProcessState) {
        self.state.send_replace(state);
    }

    fn emit(&self, event: SupervisorEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    async fn run(mut self) {
        let mut phase = Phase::Start;
        loop {
            phase = match phase {
                Phase::Start => self.start().await,
                Phase::Running(p, since) => match self.running(p, since).await {
                    Some(next) => next,
                    None => return,
                },
                Phase::Waiting(deadline) => {
                    let cmd = tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => { phase = Phase::Start; continue; }
                        cmd = self.commands.recv() => cmd,
                    };
                    match self.idle_command(cmd) {
                        Some(next) => next,
                        None => return,
                    }
                }
                Phase::Idle => {
                    let cmd = self.commands.recv().await;
                    match self.idle_command(cmd) {
                        Some(next) => next,
                        None => return,
                    }
                }
            }
        }
    }

    async fn start(&mut self) -> Phase {
        let prefix = self.config.spec.log_prefix.clone();
        // A copy left running by an earlier supervisor goes first: never two on one svc dir.
        process::stop_leftover(
            &self.config.spec.pid_file,
            self.config.shutdown_signal,
            self.config.shutdown_timeout,
        )
        .await;
        match process::start(&self.config.spec).await {
            Ok(p) => {
                let pid = p.pid();
                tracing::info!("{prefix}(SV): Starting process with pid {pid}");
                self.set(ProcessState::Up { pid });
                self.emit(SupervisorEvent::Started { pid });
                Phase::Running(Box::new(p), Instant::now())
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!("{prefix}(SV): could not start: {error}");
                self.emit(SupervisorEvent::SpawnFailed {
                    error: error.clone(),
                });
                self.schedule_restart(DownReason::SpawnFailed(error), Duration::ZERO)
            }
        }
    }

    fn schedule_restart(&mut self, reason: DownReason, uptime: Duration) -> Phase {
        self.set(ProcessState::Down {
            reason: reason.clone(),
        });
        let delay = self.backoff.on_exit(uptime, (self.jitter)());
        let attempt = self.backoff.consecutive_failures();
        tracing::info!(
            "{}(SV): restarting in {:.1}s (attempt {attempt})",
            self.config.spec.log_prefix,
            delay.as_secs_f64()
        );
        self.set(ProcessState::Restarting {
            delay,
            attempt,
            reason,
        });
        self.emit(SupervisorEvent::RestartScheduled { delay, attempt });
        Phase::Waiting(Instant::now() + delay)
    }

    /// `None` ends the task.
    async fn running(&mut self, mut p: Box<RunningProcess>, since: Instant) -> Option<Phase> {
        enum Event {
            Exited(std::io::Result<ProcessExit>),
            Command(Option<Command>),
        }
        let event = tokio::select! {
            r = p.wait() => Event::Exited(r),
            c = self.commands.recv() => Event::Command(c),
        };
        match event {
            Event::Exited(result) => {
                let uptime = since.elapsed();
                let exit = match result {
                    Ok(exit) => exit,
                    Err(e) => {
                        // Cannot wait on our own child: kill the group rather than lose it.
                        tracing::warn!("waiting for pid {}: {e}", p.pid());
                        self.stop_process(&mut p).await;
                        ProcessExit::Code(-1)
                    }
                };
                tracing::info!(
                    "{}(SV): process {} ended with {exit}",
                    self.config.spec.log_prefix,
                    p.pid()
                );
                self.emit(SupervisorEvent::Exited {
                    pid: p.pid(),
                    exit,
                    uptime,
                });
                Some(self.schedule_restart(DownReason::Exited(exit), uptime))
            }
            Event::Command(None) => {
                self.stop_process(&mut p).await;
                None
            }
            Event::Command(Some(Command::Stop(reply))) => {
                let outcome = self.stop_process(&mut p).await;
                let _ = reply.send(Some(outcome));
                Some(Phase::Idle)
            }
            Event::Command(Some(Command::Restart(reply))) => {
                let outcome = self.stop_process(&mut p).await;
                let _ = reply.send(Some(outcome));
                Some(Phase::Start)
            }
            Event::Command(Some(Command::Start(reply))) => {
                let _ = reply.send(());
                Some(Phase::Running(p, since))
            }
        }
    }

    /// A command while nothing runs. `None` ends the task.
    fn idle_command(&mut self, cmd: Option<Command>) -> Option<Phase> {
        match cmd? {
            Command::Stop(reply) => {
                self.backoff.reset();
                self.set(ProcessState::Stopped);
                let _ = reply.send(None);
                Some(Phase::Idle)
            }
            Command::Restart(reply) => {
                self.backoff.reset();
                let _ = reply.send(None);
                Some(Phase::Start)
            }
            Command::Start(reply) => {
                let _ = reply.send(());
                Some(Phase::Start)
            }
        }
    }

    async fn stop_process(&mut self, p: &mut RunningProcess) -> StopOutcome {
        let outcome =
            process::stop(p, self.config.shutdown_signal, self.config.shutdown_timeout).await;
        tracing::info!(
            "{}(SV): stopped process {}: {outcome:?}",
            self.config.spec.log_prefix,
            p.pid()
        );
        // A deliberate stop is not a crash.
        self.backoff.reset();
        self.set(ProcessState::Stopped);
        self.emit(SupervisorEvent::Stopped {
            outcome: outcome.clone(),
        });
        outcome
    }
}
