//! Packages as files: origin signing keys and Habitat's signed `.hart` archives (build, verify,
//! install). Installed packages are read by `crate::package`.

pub mod hart;
pub mod keys;
