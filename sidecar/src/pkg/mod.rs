//! Packages as files: origin signing keys and Habitat's signed `.hart` archives (build, verify,
//! install), and the depots that hold them (`depot`). Installed packages are read by
//! `crate::package`.

pub mod depot;
pub mod hart;
pub mod keys;
