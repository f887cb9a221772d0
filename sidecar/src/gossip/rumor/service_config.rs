//! Service config rumor: configuration applied to a whole service group (`hab config apply`).
//! Keyed by group; the highest incarnation wins. The payload may be encrypted for the group.

use serde::{Deserialize, Serialize};

use super::ServiceGroup;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfigRumor {
    /// Who applied it (a member id or a user name), as Habitat's `from_id`.
    pub from_id: String,
    pub service_group: ServiceGroup,
    pub incarnation: u64,
    pub encrypted: bool,
    /// TOML text (or its ciphertext when `encrypted`).
    pub config: Vec<u8>,
}
