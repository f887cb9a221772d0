//! Habitat packages as files: `.hart` archives and the depots that hold them.

pub mod depot;
