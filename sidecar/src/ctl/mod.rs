//! Habitat's ctl protocol, the one definition the ctl gateway, the `hab` CLI and the operator
//! share: the frame (`codec`), the protobuf messages (`messages`), a client (`client`).
//! Wire-compatible with Habitat 2.1.78's `hab` and supervisor; docs/protocol.md ("ctl protocol").
//! Imports nothing from the supervisor runtime (`sup`, `service`, `gossip`), so it can move to a
//! crate of its own.

pub mod client;
pub mod codec;
pub mod error;
pub mod messages;

pub use error::{CodecError, Error};

#[cfg(test)]
pub(crate) mod test_gateway;
#[cfg(test)]
mod tests;
