//! The gossip ring ("butterfly"): SWIM membership through foca, rumors with Habitat's merge
//! rules, piggybacked and TCP anti-entropy dissemination, encrypted envelopes.

pub mod broadcast;
pub mod crypto;
pub mod member;
pub mod membership;
pub mod node;
pub mod rumor;
pub mod sim;
pub mod store;
pub mod transport;
pub mod wire;
