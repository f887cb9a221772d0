//! Service file rumor: a file uploaded to a whole service group (`hab file upload`).
//! Keyed by (group, filename); the highest incarnation wins.

use serde::{Deserialize, Serialize};

use super::ServiceGroup;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFileRumor {
    pub from_id: String,
    pub service_group: ServiceGroup,
    pub incarnation: u64,
    pub encrypted: bool,
    pub filename: String,
    pub body: Vec<u8>,
}
