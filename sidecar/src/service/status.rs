//! What a running service reports to the supervisor loop: process state, health, whether it has
//! initialized, its suitability, the config it runs with and what it exports. The loop turns
//! this into the service rumor, the election's suitability, `/services` and `/readyz`.

use std::collections::BTreeSet;

use super::health::HealthStatus;

/// Why the previous process ended (`/services` `last_process_state.termination_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    InitHookFailed,
    RunHookFailed,
    AppConfigUpdated,
    InitHookUpdated,
    RunHookUpdated,
    PostRunHookUpdated,
}

impl Termination {
    pub const fn as_str(self) -> &'static str {
        match self {
            Termination::InitHookFailed => "init_hook_failed",
            Termination::RunHookFailed => "run_hook_failed",
            Termination::AppConfigUpdated => "app_config_updated",
            Termination::InitHookUpdated => "init_hook_updated",
            Termination::RunHookUpdated => "run_hook_updated",
            Termination::PostRunHookUpdated => "post_run_hook_updated",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastProcess {
    pub pid: Option<u32>,
    pub reason: Termination,
    /// Seconds since the epoch.
    pub at: u64,
}

/// Gossiped config or a gossiped file sealed for the service group (`--user`) that this member
/// cannot open, and why; the service keeps the config (or the copy of the file) it had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptEncrypted {
    /// `None` for the config, else the file's name.
    pub filename: Option<String>,
    pub incarnation: u64,
    /// Why it cannot be opened (a missing key, a message for another group, tampering). Never
    /// any of the plaintext.
    pub reason: String,
}

/// The service's state as the supervisor loop and the gateway see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceStatus {
    /// Why the service is not started yet (binds, election, initializer gate, config error),
    /// or `None` once it runs.
    pub waiting_for: Option<String>,
    pub pid: Option<u32>,
    /// Seconds since the epoch when the process entered its current state (up or down).
    pub state_entered: u64,
    pub health: HealthStatus,
    /// Stdout of the last health check (for the health endpoint).
    pub health_stdout: String,
    /// Set once the health check first passed (the initializer topology's gate for followers).
    pub initialized: bool,
    pub restart_count: u64,
    /// Seconds since the epoch when a crashed service starts again.
    pub next_restart_at: Option<u64>,
    pub last_process: Option<LastProcess>,
    /// The suitability hook's last answer.
    pub suitability: Option<u64>,
    /// The merged config the service runs with.
    pub cfg: toml::Table,
    /// The values named by EXPORTS, gossiped in the service rumor.
    pub exported: toml::Table,
    /// The last config or template problem, kept until a good config is applied.
    pub config_error: Option<String>,
    /// Hooks the package provides (`run`, `health-check`, ...).
    pub hooks: BTreeSet<String>,
    /// Incarnation of the gossiped config layer in use.
    pub config_incarnation: Option<u64>,
    pub user_config_updated: bool,
    /// Gossiped config and files sealed for the group that this member cannot open.
    pub kept_encrypted: Vec<KeptEncrypted>,
    /// False once the supervisor asked the service to stop.
    pub desired_up: bool,
}
