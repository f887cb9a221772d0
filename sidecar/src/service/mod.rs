//! One supervised service: its directory, hooks, process, health checks and restart policy
//! (`runtime` ties them together as a task of its own), and its `/services` entry.

pub mod backoff;
pub mod changes;
pub mod dirs;
pub mod health;
pub mod hooks;
pub mod process;
pub mod runtime;
pub mod sealed;
pub mod status;
pub mod strategy;
pub mod supervisor;
pub mod topology;
pub mod update;

pub use strategy::UpdateStrategy;
pub use topology::Topology;
