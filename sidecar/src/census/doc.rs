//! `GET /census` as types: the one definition of Habitat's field names, which the supervisor
//! serialises its census from and the operator (or any client) parses it with.
//! Fields are declared in the order the gateway writes them (Habitat's first, then ours), and
//! maps are `BTreeMap`s keyed by the string the document shows, so a document built here
//! serialises byte for byte as the gateway always has. Fields Habitat's own supervisor leaves
//! out (our additions) default when missing, so a Habitat census parses too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CensusPkg;
use crate::gossip::member::Health;
use crate::gossip::rumor::SysInfo;

/// The whole document: Habitat's `CensusRing`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CensusDoc {
    /// Always `true` (Habitat's gateway only republishes a changed census).
    #[serde(default)]
    pub changed: bool,
    /// Every service group with at least one listed member, by `<service>.<group>[@<org>]`.
    pub census_groups: BTreeMap<String, GroupDoc>,
    /// The member that answered.
    pub local_member_id: String,
    #[serde(default)]
    pub last_service_counter: u64,
    #[serde(default)]
    pub last_election_counter: u64,
    #[serde(default)]
    pub last_election_update_counter: u64,
    #[serde(default)]
    pub last_membership_counter: u64,
    #[serde(default)]
    pub last_service_config_counter: u64,
    #[serde(default)]
    pub last_service_file_counter: u64,
}

/// One service group under `census_groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupDoc {
    pub service_group: String,
    /// `None`, `ElectionInProgress`, `ElectionNoQuorum` or `ElectionFinished`
    /// (`super::ELECTION_*`).
    pub election_status: String,
    pub update_election_status: String,
    #[serde(default)]
    pub pkg_incarnation: u64,
    /// The finished election's winner.
    pub leader_id: Option<String>,
    /// The gossiped config (`hab config apply`), if any was applied.
    pub service_config: Option<ServiceConfigDoc>,
    pub local_member_id: String,
    /// Members by member id.
    pub population: BTreeMap<String, MemberDoc>,
    pub update_leader_id: Option<String>,
    #[serde(default)]
    pub changed_service_files: Vec<Value>,
    /// Files uploaded to the group (`hab file upload`), by file name.
    #[serde(default)]
    pub service_files: BTreeMap<String, ServiceFileDoc>,
    /// Term of the group's election rumor (ours).
    #[serde(default)]
    pub election_term: Option<u64>,
    /// Term of the group's update election rumor (ours).
    #[serde(default)]
    pub update_election_term: Option<u64>,
    /// The members the answering member counts for quorum, where it runs the group's
    /// elections (ours).
    #[serde(default)]
    pub electorate: Option<Vec<String>>,
    /// Members a leader retired from the electorate (ours).
    #[serde(default)]
    pub retired_members: Vec<String>,
    /// Package updates of the group (ours; only when a member publishes update rumors, so a
    /// group without updates shows exactly Habitat's fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateDoc>,
}

/// `update` of a group: the release the group rolls to and how far it got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateDoc {
    /// The release the update leader announced, if any.
    pub target: Option<String>,
    /// `rolling` (some alive member does not run the target yet), `done`, `failed` (a member's
    /// health check failed on the target: the roll stopped), or `idle` (no target).
    pub status: String,
    /// With `rolling`, the member whose turn it is; with `failed`, the member that failed.
    pub member: Option<String>,
    /// Each member's health check of the release it runs, by member id (`Ok`, `Warning`,
    /// `Critical`, `Unknown`).
    #[serde(default)]
    pub health: BTreeMap<String, String>,
}

/// `service_config` of a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfigDoc {
    pub incarnation: u64,
    /// The config as JSON; `{}` when it is encrypted for the service group.
    pub value: Value,
}

/// One entry of `service_files`. The census never shows a file's body (`[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceFileDoc {
    #[serde(default)]
    pub body: Vec<u8>,
    pub filename: String,
    pub incarnation: u64,
}

/// One member of a group's `population`, as `/census` and templates (`svc.members`) show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberDoc {
    pub member_id: String,
    pub pkg: CensusPkg,
    #[serde(default)]
    pub pkg_incarnation: u64,
    /// The package ident as gossiped (ours).
    #[serde(default)]
    pub package: String,
    pub service: String,
    pub group: String,
    pub org: Option<String>,
    pub persistent: bool,
    pub leader: bool,
    pub follower: bool,
    pub update_leader: bool,
    pub update_follower: bool,
    pub election_is_running: bool,
    pub election_is_no_quorum: bool,
    pub election_is_finished: bool,
    pub update_election_is_running: bool,
    pub update_election_is_no_quorum: bool,
    pub update_election_is_finished: bool,
    pub sys: SysInfo,
    pub alive: bool,
    pub suspect: bool,
    pub confirmed: bool,
    pub departed: bool,
    /// The member's exported config.
    pub cfg: Value,
}

impl MemberDoc {
    /// The member's health from its four flags (the first set, in the order alive, suspect,
    /// confirmed, departed); `None` when none is set.
    pub fn health(&self) -> Option<Health> {
        [
            (self.alive, Health::Alive),
            (self.suspect, Health::Suspect),
            (self.confirmed, Health::Confirmed),
            (self.departed, Health::Departed),
        ]
        .into_iter()
        .find_map(|(set, health)| set.then_some(health))
    }
}

impl CensusDoc {
    /// Parses a `/census` body.
    pub fn from_slice(body: &[u8]) -> Result<CensusDoc, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The group named `service_group` (`<service>.<group>[@<org>]`).
    pub fn group(&self, service_group: &str) -> Option<&GroupDoc> {
        self.census_groups.get(service_group)
    }
}
