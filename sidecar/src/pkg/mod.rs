//! Packages as files: `.hart` archives and origin keys, depots with channels, and images of a
//! package (`export`). The installed layout itself is `crate::package`.

pub mod export;
