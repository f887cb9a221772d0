//! habitat-sidecar: Habitat's supervisor rebuilt in Rust.
//!
//! The gossip ring (`gossip`), census and rumor logic are pure state machines; `manager`,
//! `gossip::transport` and `http` are the only places that do I/O.

pub mod census;
pub mod cli;
pub mod election;
pub mod error;
pub mod gossip;
pub mod http;
pub mod keys;
pub mod manager;
pub mod metrics;
pub mod package;
pub mod plan;
pub mod template;
