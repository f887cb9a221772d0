//! habitat-sidecar: Habitat's supervisor rebuilt in Rust.
//!
//! The gossip ring (`gossip`), census, election, config layering and template context are pure;
//! `manager`, `gossip::transport`, `http` and `service` (files, hooks, processes) do the I/O.

pub mod binds;
pub mod census;
pub mod cli;
pub mod config;
pub mod connection_slots;
pub mod ctl;
pub mod deadline;
pub mod election;
pub mod error;
pub mod files;
pub mod gossip;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod package;
pub mod pkg;
pub mod plan;
pub mod service;
pub mod sup;
pub mod template;
pub mod workstation;
