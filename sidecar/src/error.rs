//! The crate's error type. Every message names the thing that is wrong and the expected form,
//! so a user can fix the input without reading code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key file (or key given through the environment) is malformed.
    #[error("key {source_name}: {problem}")]
    KeyFile {
        source_name: String,
        problem: String,
    },
    /// No key of the requested name exists.
    #[error("no {kind} key named {name} in {dir}")]
    KeyNotFound {
        kind: &'static str,
        name: String,
        dir: PathBuf,
    },
    /// A value given by the user (flag, environment variable, file content) is invalid.
    #[error("{what}: {problem}")]
    InvalidInput { what: String, problem: String },
    /// A rumor or message exceeded a hard size limit.
    #[error("{what} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    /// A package directory or ident is malformed.
    #[error("package {path}: {problem}")]
    Package { path: PathBuf, problem: String },
    /// A `.hart` package file is malformed, unsigned by a known key, tampered with, or holds
    /// something that may not be installed.
    #[error("package archive {path}: {problem}")]
    Hart { path: PathBuf, problem: String },
    /// A `BOX-1` message (config or file sealed for a service group) could not be opened: it is
    /// malformed, a key it names is missing, or it was tampered with. Never quotes the payload.
    #[error("cannot decrypt: {problem}")]
    Decrypt { problem: String },
    /// A config layer (`default.toml`, `HAB_<PKG>`, `user.toml`, gossiped config) is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A package depot refused a request or could not be reached.
    #[error(transparent)]
    Depot(#[from] crate::pkg::depot::DepotError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            problem: problem.into(),
        }
    }
}
