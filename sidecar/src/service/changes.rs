//! What a running service does about a change: Habitat's restart-or-reconfigure rule as a pure
//! function. A changed `init`, `run` or `post-run` hook restarts the service (the process would
//! otherwise keep running old code); changed config runs `reconfigure` when the package has one
//! and restarts it otherwise; changes to the other hooks are only written to disk; new or
//! changed service files run `file-updated`.

use std::collections::BTreeSet;

/// Hooks whose change restarts the service.
pub const RESTARTING_HOOKS: [&str; 3] = ["init", "run", "post-run"];

/// What changed since the service last (re)started or reconfigured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Rendered config files written or removed.
    pub config_changed: bool,
    /// Names of rendered hooks written or removed (`run`, `health-check`, ...).
    pub hooks_changed: BTreeSet<String>,
    /// Service files (from file rumors) written.
    pub files_changed: bool,
}

/// The reaction to `Changes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    pub restart: bool,
    pub reconfigure: bool,
    pub file_updated: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.config_changed && self.hooks_changed.is_empty() && !self.files_changed
    }

    pub fn reaction(&self, has_reconfigure_hook: bool, has_file_updated_hook: bool) -> Reaction {
        let hook_restart = self
            .hooks_changed
            .iter()
            .any(|h| RESTARTING_HOOKS.contains(&h.as_str()));
        let restart = hook_restart || (self.config_changed && !has_reconfigure_hook);
        Reaction {
            restart,
            // A restart re-reads the config anyway.
            reconfigure: self.config_changed && has_reconfigure_hook && !restart,
            file_updated: self.files_changed && has_file_updated_hook,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The restart-or-reconfigure matrix.
    #[test]
    fn restart_or_reconfigure_matrix() {
        let config_only = Changes {
            config_changed: true,
            ..Changes::default()
        };
        assert_eq!(
            config_only.reaction(true, false),
            Reaction {
                reconfigure: true,
                ..Reaction::default()
            }
        );
        assert_eq!(
            config_only.reaction(false, false),
            Reaction {
                restart: true,
                ..Reaction::default()
            }
        );
        for hook in RESTARTING_HOOKS {
            let changes = Changes {
                hooks_changed: hooks(&[hook]),
                ..Changes::default()
            };
            assert!(changes.reaction(true, true).restart, "{hook}");
        }
        for hook in [
            "health-check",
            "suitability",
            "file-updated",
            "post-stop",
            "reconfigure",
        ] {
            let changes = Changes {
                hooks_changed: hooks(&[hook]),
                ..Changes::default()
            };
            assert_eq!(changes.reaction(true, true), Reaction::default(), "{hook}");
        }
        // Config and run hook together: one restart, no reconfigure.
        let both = Changes {
            config_changed: true,
            hooks_changed: hooks(&["run"]),
            files_changed: false,
        };
        assert_eq!(
            both.reaction(true, false),
            Reaction {
                restart: true,
                ..Reaction::default()
            }
        );
        let files = Changes {
            files_changed: true,
            ..Changes::default()
        };
        assert!(files.reaction(false, true).file_updated);
        assert!(!files.reaction(false, false).file_updated);
        assert!(Changes::default().is_empty());
    }
}
