//! Packages as files: origin signing keys and Habitat's signed `.hart` archives (build, verify,
//! install), the depots that hold them (`depot`), and images of a package (`export`).
//! Installed packages are read by `crate::package`.

pub mod depot;
pub mod export;
pub mod hart;
pub mod keys;
