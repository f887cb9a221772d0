//! A service's health as its health-check hook reports it, with Habitat's meaning of exit
//! codes (0 ok, 1 warning, 2 critical, 3 unknown) and names. Anything else, a timeout, a
//! signal or a hook that cannot start is `Unknown`, never `Ok`.

use super::hooks::HookExit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthStatus {
    Ok,
    Warning,
    Critical,
    #[default]
    Unknown,
}

impl HealthStatus {
    /// Habitat's mapping of a health-check exit code.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => HealthStatus::Ok,
            1 => HealthStatus::Warning,
            2 => HealthStatus::Critical,
            _ => HealthStatus::Unknown,
        }
    }

    pub fn from_exit(exit: &HookExit) -> Self {
        match exit {
            HookExit::Code(c) => HealthStatus::from_code(*c),
            HookExit::Signal(_) | HookExit::TimedOut | HookExit::SpawnFailed(_) => {
                HealthStatus::Unknown
            }
        }
    }

    /// The name Habitat's gateway and CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "OK",
            HealthStatus::Warning => "WARNING",
            HealthStatus::Critical => "CRITICAL",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }

    /// The name `/services` shows (`health_check`).
    pub fn gateway_name(self) -> &'static str {
        match self {
            HealthStatus::Ok => "Ok",
            HealthStatus::Warning => "Warning",
            HealthStatus::Critical => "Critical",
            HealthStatus::Unknown => "Unknown",
        }
    }

    /// Ok and Warning pass (readiness, the initializer topology's gate).
    pub fn passing(self) -> bool {
        matches!(self, HealthStatus::Ok | HealthStatus::Warning)
    }

    /// The status code of the gateway's `.../health` endpoint (200 ok/warning, 503 critical,
    /// 500 unknown).
    pub fn http_status(self) -> u16 {
        match self {
            HealthStatus::Ok | HealthStatus::Warning => 200,
            HealthStatus::Critical => 503,
            HealthStatus::Unknown => 500,
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_like_habitat() {
        let got: Vec<_> = [0, 1, 2, 3, 42, -1]
            .iter()
            .map(|c| HealthStatus::from_exit(&HookExit::Code(*c)).as_str())
            .collect();
        assert_eq!(
            got,
            ["OK", "WARNING", "CRITICAL", "UNKNOWN", "UNKNOWN", "UNKNOWN"]
        );
        assert_eq!(
            HealthStatus::from_exit(&HookExit::TimedOut),
            HealthStatus::Unknown
        );
        assert_eq!(
            HealthStatus::from_exit(&HookExit::Signal(9)),
            HealthStatus::Unknown
        );
        assert_eq!(
            HealthStatus::from_exit(&HookExit::SpawnFailed("x".into())),
            HealthStatus::Unknown
        );
        assert_eq!(HealthStatus::default(), HealthStatus::Unknown);
        assert_eq!(HealthStatus::Critical.http_status(), 503);
        assert_eq!(HealthStatus::Warning.to_string(), "WARNING");
    }
}
