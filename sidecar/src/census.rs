//! The census: who runs what, who leads, and which config and files each service group has,
//! built from the rumor store and member health, plus the JSON of Habitat's `GET /census` and
//! `GET /butterfly` with Habitat's field names and shapes. Pure functions: no I/O, no clock.
//! Invariants: tombstoned service rumors never appear, undecodable TOML shows as `{}` (never a
//! panic), and every map is keyed and ordered by its string key, so equal input gives equal JSON.

pub mod doc;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::election::{ElectionView, GroupViews, ViewStatus};
use crate::gossip::member::{node_name_conflicts, Health, Identity, MemberId, MemberView};
use crate::gossip::rumor::{
    CheckHealth, DepartureRumor, ElectionRumor, ElectionStatus, RetirementRumor, Rumor, RumorKind,
    ServiceConfigRumor, ServiceFileRumor, ServiceGroup, ServiceRumor, SysInfo, UpdateRumor,
};
use crate::gossip::store::Store;
pub use doc::{CensusDoc, GroupDoc, MemberDoc, ServiceConfigDoc, ServiceFileDoc, UpdateDoc};

/// `election_status` / `update_election_status` when the group has no election rumor.
pub const ELECTION_NONE: &str = "None";
/// The group's election rumor is `Running`.
pub const ELECTION_IN_PROGRESS: &str = "ElectionInProgress";
/// The group's election rumor is `NoQuorum`.
pub const ELECTION_NO_QUORUM: &str = "ElectionNoQuorum";
/// The group's election rumor is `Finished`.
pub const ELECTION_FINISHED: &str = "ElectionFinished";

/// This member's own view of its groups' elections (its engines' `ElectionView`s), which takes
/// precedence over the gossiped rumor: `NoQuorum` is never gossiped, so only the member itself
/// knows it sits on a side without quorum. Groups not listed show the rumor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalElections {
    pub leader: BTreeMap<ServiceGroup, ElectionView>,
    pub update: BTreeMap<ServiceGroup, ElectionView>,
    /// The members this member's engines count for quorum, per group.
    pub electorate: BTreeMap<ServiceGroup, Vec<MemberId>>,
}

impl LocalElections {
    /// From one group's `GroupViews` (what `GroupElections::step` returns).
    pub fn of_group(group: &ServiceGroup, views: GroupViews) -> LocalElections {
        let mut local = LocalElections::default();
        local.add_group(group, views);
        local
    }

    /// Adds one more group's views (a supervisor runs several services).
    pub fn add_group(&mut self, group: &ServiceGroup, views: GroupViews) {
        if let Some(view) = views.leader {
            self.leader.insert(group.clone(), view);
        }
        if let Some(view) = views.update {
            self.update.insert(group.clone(), view);
        }
        if views.leader.is_some() || views.update.is_some() {
            self.electorate.insert(group.clone(), views.electorate);
        }
    }
}

/// Everything the census is built from: one consistent view of the ring, taken by the caller.
pub struct CensusInput<'a> {
    /// This supervisor.
    pub local: &'a Identity,
    /// Every member we know, ourselves included, with health.
    pub members: &'a [MemberView],
    pub store: &'a Store,
}

/// A package identifier split into its parts, as Habitat's census shows it under `pkg`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CensusPkg {
    pub origin: String,
    pub name: String,
    pub version: Option<String>,
    pub release: Option<String>,
}

impl CensusPkg {
    /// Parses `origin/name[/version[/release]]`; `None` for anything else.
    pub fn parse(ident: &str) -> Option<CensusPkg> {
        let parts: Vec<&str> = ident.split('/').collect();
        if !(2..=4).contains(&parts.len()) || parts.iter().any(|p| p.trim().is_empty()) {
            return None;
        }
        let part = |i: usize| parts.get(i).map(|p| (*p).to_string());
        Some(CensusPkg {
            origin: parts[0].to_string(),
            name: parts[1].to_string(),
            version: part(2),
            release: part(3),
        })
    }
}

/// A file uploaded to a service group (`hab file upload`), as the census keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CensusFile {
    pub filename: String,
    pub incarnation: u64,
    pub encrypted: bool,
    pub body: Vec<u8>,
}

/// A service group's gossiped config (`hab config apply`), as the census keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipedConfig {
    pub incarnation: u64,
    /// Sealed for the service group (`--user`): `value` is then `{}`, and `sealed` holds the
    /// `BOX-1` text for members that hold the keys to open it (`service::sealed`).
    pub encrypted: bool,
    /// The parsed TOML; `{}` when encrypted or undecodable.
    pub value: toml::Table,
    /// The payload as gossiped when `encrypted`, empty otherwise.
    pub sealed: Vec<u8>,
}

impl GossipedConfig {
    /// A config gossiped in the clear.
    pub fn plain(incarnation: u64, value: toml::Table) -> GossipedConfig {
        GossipedConfig {
            incarnation,
            encrypted: false,
            value,
            sealed: Vec::new(),
        }
    }

    fn from_rumor(rumor: &ServiceConfigRumor) -> GossipedConfig {
        GossipedConfig {
            incarnation: rumor.incarnation,
            encrypted: rumor.encrypted,
            value: if rumor.encrypted {
                toml::Table::new()
            } else {
                parse_toml_table(&rumor.config)
            },
            sealed: if rumor.encrypted {
                rumor.config.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// One member of a service group, as templates (`svc.members`), elections and readiness see it.
#[derive(Clone, Debug, PartialEq)]
pub struct CensusMember {
    pub member_id: MemberId,
    /// The package ident as gossiped (`origin/name/version/release`).
    pub package: String,
    /// `package` split; `None` when it is not a valid ident.
    pub pkg: Option<CensusPkg>,
    /// Incarnation of this member's service rumor.
    pub incarnation: u64,
    pub initialized: bool,
    /// Departed when the member says so or a departure rumor names it.
    pub health: Health,
    pub persistent: bool,
    /// The winner of the group's finished election.
    pub leader: bool,
    /// Any other member of a group whose election finished with a known winner.
    pub follower: bool,
    pub update_leader: bool,
    pub update_follower: bool,
    /// The member's exported config (`cfg` of its service rumor), parsed; `{}` if undecodable.
    pub cfg: toml::Table,
    /// As the service rumor says, with `gossip_ip`/`gossip_port` taken from the member's ring
    /// address, as Habitat does (the rumor often says `0.0.0.0`).
    pub sys: SysInfo,
}

impl CensusMember {
    /// An alive member running `package` (a full ident) that exports `cfg`, reachable as `sys`
    /// says, with no election role, a service rumor of incarnation 0 and not yet initialized.
    pub fn new(member_id: MemberId, package: &str, cfg: toml::Table, sys: SysInfo) -> CensusMember {
        CensusMember {
            member_id,
            package: package.to_owned(),
            pkg: CensusPkg::parse(package),
            incarnation: 0,
            initialized: false,
            health: Health::Alive,
            persistent: false,
            leader: false,
            follower: false,
            update_leader: false,
            update_follower: false,
            cfg,
            sys,
        }
    }

    pub const fn alive(&self) -> bool {
        matches!(self.health, Health::Alive)
    }
}

/// One service group of the census.
#[derive(Clone, Debug, PartialEq)]
pub struct CensusGroup {
    pub service_group: ServiceGroup,
    pub local_member_id: MemberId,
    /// Sorted by member id.
    pub members: Vec<CensusMember>,
    /// The finished election's winner, when that member is in `members`.
    pub leader_id: Option<MemberId>,
    /// One of `ELECTION_NONE`, `ELECTION_IN_PROGRESS`, `ELECTION_NO_QUORUM`, `ELECTION_FINISHED`.
    pub election_status: &'static str,
    /// Term of the group's election rumor (our addition to Habitat's census).
    pub election_term: Option<u64>,
    pub update_leader_id: Option<MemberId>,
    pub update_election_status: &'static str,
    pub update_election_term: Option<u64>,
    /// The gossiped config (`hab config apply`).
    pub service_config: Option<GossipedConfig>,
    /// Sorted by file name.
    pub service_files: Vec<CensusFile>,
    /// The members counted for quorum, where this member runs the group's elections.
    pub electorate: Option<Vec<MemberId>>,
    /// Members a leader retired from the electorate (and not back since), sorted.
    pub retired_members: Vec<MemberId>,
    /// The listed members' update rumors, by member id.
    pub updates: BTreeMap<MemberId, MemberUpdate>,
}

/// What a member tells its group about updates (its update rumor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberUpdate {
    /// The release `health` is of.
    pub package: String,
    pub health: CheckHealth,
    /// Only the update leader's counts: the release the group rolls to.
    pub target: Option<String>,
    /// A release the member failed on and rolled back from.
    pub failed: Option<String>,
}

/// How far a group's rolling update got (see `CensusGroup::roll`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roll {
    /// `member`'s turn: it is the first alive member, in roll order, that does not run the
    /// target or does not pass its health check on it.
    Rolling { member: MemberId },
    /// Every alive member runs the target (or newer) and passes its health check.
    Done,
    /// `member` failed its health check on the target: nobody else updates to it.
    Failed { member: MemberId },
}

impl Roll {
    pub const fn as_str(self) -> &'static str {
        match self {
            Roll::Rolling { .. } => "rolling",
            Roll::Done => "done",
            Roll::Failed { .. } => "failed",
        }
    }
}

/// Whether `running` is `target` or a later release of the same package (both full idents).
pub fn release_at_least(running: &str, target: &str) -> bool {
    if running == target {
        return true;
    }
    let (Ok(a), Ok(b)) = (
        running.parse::<crate::package::PackageIdent>(),
        target.parse::<crate::package::PackageIdent>(),
    ) else {
        return false;
    };
    if (&a.origin, &a.name) != (&b.origin, &b.name) {
        return false;
    }
    let (Some(va), Some(vb)) = (&a.version, &b.version) else {
        return false;
    };
    crate::package::compare_versions(va, vb)
        .then_with(|| a.release.cmp(&b.release))
        .is_ge()
}

impl CensusGroup {
    /// A group with no members and no elections: what a service sees of its own group before
    /// its first rumor comes back from the ring.
    pub fn empty(service_group: ServiceGroup, local_member_id: MemberId) -> CensusGroup {
        CensusGroup {
            service_group,
            local_member_id,
            members: Vec::new(),
            leader_id: None,
            election_status: ELECTION_NONE,
            election_term: None,
            update_leader_id: None,
            update_election_status: ELECTION_NONE,
            update_election_term: None,
            service_config: None,
            service_files: Vec::new(),
            electorate: None,
            retired_members: Vec::new(),
            updates: BTreeMap::new(),
        }
    }

    pub fn member(&self, id: MemberId) -> Option<&CensusMember> {
        self.members.iter().find(|m| m.member_id == id)
    }

    /// This supervisor's own entry, if it runs a service of this group.
    pub fn me(&self) -> Option<&CensusMember> {
        self.member(self.local_member_id)
    }

    pub fn leader(&self) -> Option<&CensusMember> {
        self.leader_id.and_then(|id| self.member(id))
    }

    /// The release the group's update leader announced, if any.
    pub fn update_target(&self) -> Option<&str> {
        let leader = self.update_leader_id?;
        self.updates.get(&leader)?.target.as_deref()
    }

    /// `member`'s health check of the release it runs now (`Unknown` until one ran).
    pub fn health_check(&self, member: &CensusMember) -> CheckHealth {
        self.updates
            .get(&member.member_id)
            .filter(|u| u.package == member.package)
            .map_or(CheckHealth::Unknown, |u| u.health)
    }

    /// The order members update in: by member id, the application leader last (it keeps
    /// leading until everyone else runs the new release).
    pub fn roll_order(&self) -> Vec<&CensusMember> {
        let mut order: Vec<&CensusMember> = self.members.iter().collect();
        order.sort_by_key(|m| (Some(m.member_id) == self.leader_id, m.member_id));
        order
    }

    /// How far the roll to `target` got. Members confirmed dead or departed are skipped: they
    /// do not stall the roll (a suspect one may still answer, and is waited for).
    pub fn roll(&self, target: &str) -> Roll {
        if let Some(failed) = self.roll_order().into_iter().find(|m| {
            self.updates
                .get(&m.member_id)
                .and_then(|u| u.failed.as_deref())
                == Some(target)
        }) {
            return Roll::Failed {
                member: failed.member_id,
            };
        }
        self.roll_order()
            .into_iter()
            .filter(|m| !matches!(m.health, Health::Confirmed | Health::Departed))
            .find(|m| !(release_at_least(&m.package, target) && self.health_check(m).passing()))
            .map_or(Roll::Done, |m| Roll::Rolling {
                member: m.member_id,
            })
    }

    /// `update` of the group's `/census` entry, when any member publishes update rumors.
    pub fn update_doc(&self) -> Option<UpdateDoc> {
        if self.updates.is_empty() {
            return None;
        }
        let target = self.update_target();
        let roll = target.map(|t| self.roll(t));
        Some(UpdateDoc {
            target: target.map(str::to_string),
            status: roll.map_or("idle", Roll::as_str).to_string(),
            member: roll.and_then(|r| match r {
                Roll::Rolling { member } | Roll::Failed { member } => Some(member.to_string()),
                Roll::Done => None,
            }),
            health: self
                .members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        self.health_check(m).as_str().to_string(),
                    )
                })
                .collect(),
        })
    }

    /// The group as Habitat's `/census` shows it under `census_groups.<group>`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_doc()).unwrap_or_default()
    }

    /// The group as `/census` shows it, typed (`doc::GroupDoc`).
    pub fn to_doc(&self) -> GroupDoc {
        GroupDoc {
            service_group: self.service_group.as_str().to_string(),
            election_status: self.election_status.to_string(),
            update_election_status: self.update_election_status.to_string(),
            pkg_incarnation: 0,
            leader_id: self.leader_id.map(|id| id.to_string()),
            service_config: self.service_config.as_ref().map(|config| ServiceConfigDoc {
                incarnation: config.incarnation,
                value: toml_table_to_json(&config.value),
            }),
            local_member_id: self.local_member_id.to_string(),
            population: self
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), self.member_doc(m)))
                .collect(),
            update_leader_id: self.update_leader_id.map(|id| id.to_string()),
            changed_service_files: Vec::new(),
            service_files: self
                .service_files
                .iter()
                .map(|f| {
                    (
                        f.filename.clone(),
                        // See `service_file_json`.
                        ServiceFileDoc {
                            body: Vec::new(),
                            filename: f.filename.clone(),
                            incarnation: f.incarnation,
                        },
                    )
                })
                .collect(),
            election_term: self.election_term,
            update_election_term: self.update_election_term,
            electorate: self
                .electorate
                .as_ref()
                .map(|ids| ids.iter().map(ToString::to_string).collect()),
            retired_members: self
                .retired_members
                .iter()
                .map(ToString::to_string)
                .collect(),
            update: self.update_doc(),
        }
    }

    /// A member as Habitat shows it, in `/census` and to templates (`svc.members`, `bind.*`),
    /// its fields in Habitat's order.
    pub fn member_json(&self, m: &CensusMember) -> Value {
        serde_json::to_value(self.member_doc(m)).unwrap_or_default()
    }

    /// A member as `/census` shows it, typed (`doc::MemberDoc`).
    pub fn member_doc(&self, m: &CensusMember) -> MemberDoc {
        let status =
            |s: &'static str| (s == self.election_status, s == self.update_election_status);
        let (running, update_running) = status(ELECTION_IN_PROGRESS);
        let (no_quorum, update_no_quorum) = status(ELECTION_NO_QUORUM);
        let (finished, update_finished) = status(ELECTION_FINISHED);
        MemberDoc {
            member_id: m.member_id.to_string(),
            // Habitat shows an ident it cannot parse as an empty one rather than dropping `pkg`.
            pkg: m.pkg.clone().unwrap_or_default(),
            // We do not track package-update incarnations apart from the service rumor's.
            pkg_incarnation: 0,
            package: m.package.clone(),
            service: self.service_group.service().to_string(),
            group: self.service_group.group().to_string(),
            org: self.service_group.org().map(str::to_string),
            persistent: m.persistent,
            leader: m.leader,
            follower: m.follower,
            update_leader: m.update_leader,
            update_follower: m.update_follower,
            election_is_running: running,
            election_is_no_quorum: no_quorum,
            election_is_finished: finished,
            update_election_is_running: update_running,
            update_election_is_no_quorum: update_no_quorum,
            update_election_is_finished: update_finished,
            sys: m.sys.clone(),
            alive: m.health == Health::Alive,
            suspect: m.health == Health::Suspect,
            confirmed: m.health == Health::Confirmed,
            departed: m.health == Health::Departed,
            cfg: toml_table_to_json(&m.cfg),
        }
    }
}

/// The members the census may list, by id: `members`, plus ourselves (alive) if the caller left
/// us out. A departure rumor makes a member `Departed` whatever its SWIM health says.
fn known_members<'a>(input: &CensusInput<'a>) -> BTreeMap<MemberId, (&'a Identity, Health)> {
    let mut known: BTreeMap<MemberId, (&'a Identity, Health)> = input
        .members
        .iter()
        .map(|m| (m.identity.id, (&m.identity, m.health)))
        .collect();
    known
        .entry(input.local.id)
        .or_insert((input.local, Health::Alive));
    for (id, (_, health)) in known.iter_mut() {
        if input.store.departed(*id) {
            *health = Health::Departed;
        }
    }
    known
}

/// Rumors of one service group, gathered in one pass over the store.
#[derive(Default)]
struct GroupRumors<'a> {
    services: Vec<&'a ServiceRumor>,
    config: Option<&'a ServiceConfigRumor>,
    files: Vec<&'a ServiceFileRumor>,
    election: Option<&'a ElectionRumor>,
    update_election: Option<&'a ElectionRumor>,
    retired: Vec<&'a RetirementRumor>,
    updates: Vec<&'a UpdateRumor>,
}

fn group_rumors(store: &Store) -> BTreeMap<ServiceGroup, GroupRumors<'_>> {
    let mut groups: BTreeMap<ServiceGroup, GroupRumors<'_>> = BTreeMap::new();
    for rumor in store.iter() {
        match rumor {
            Rumor::Service(r) if !r.tombstone => groups
                .entry(r.service_group.clone())
                .or_default()
                .services
                .push(r),
            Rumor::ServiceConfig(r) => {
                groups.entry(r.service_group.clone()).or_default().config = Some(r);
            }
            Rumor::ServiceFile(r) => groups
                .entry(r.service_group.clone())
                .or_default()
                .files
                .push(r),
            Rumor::Election(r) => {
                groups.entry(r.service_group.clone()).or_default().election = Some(r);
            }
            Rumor::ElectionUpdate(r) => {
                groups
                    .entry(r.service_group.clone())
                    .or_default()
                    .update_election = Some(r);
            }
            Rumor::Retirement(r) => groups
                .entry(r.service_group.clone())
                .or_default()
                .retired
                .push(r),
            Rumor::Update(r) => groups
                .entry(r.service_group.clone())
                .or_default()
                .updates
                .push(r),
            Rumor::Service(_) | Rumor::Departure(_) => {}
        }
    }
    groups
}

const fn election_status_name(election: Option<&ElectionRumor>) -> &'static str {
    match election {
        None => ELECTION_NONE,
        Some(e) => match e.status {
            ElectionStatus::Running => ELECTION_IN_PROGRESS,
            ElectionStatus::NoQuorum => ELECTION_NO_QUORUM,
            ElectionStatus::Finished => ELECTION_FINISHED,
        },
    }
}

/// The finished election's winner, if that member is in the population.
fn winner(election: Option<&ElectionRumor>, members: &[CensusMember]) -> Option<MemberId> {
    election
        .filter(|e| e.status == ElectionStatus::Finished)
        .map(|e| e.member_id)
        .filter(|id| members.iter().any(|m| m.member_id == *id))
}

/// The election fields of a group: (status name, leader, term), from the rumor unless this
/// member's own view says otherwise.
///
/// A member's own view wins once it has one (`ViewStatus::None` defers to the rumor): `Finished`
/// names the leader it obeys (a sticky incumbent may be older than the rumor's term);
/// `InProgress` names nobody; `NoQuorum` names nobody either, although the rumor still says who
/// led when this member lost sight of the majority: a member cut off from the majority must not
/// act on, nor lead templates to act on, a leadership that may have moved on (Habitat shows the
/// rumor's leader there; the term, still shown, tells a reader what it last knew).
fn election_fields(
    rumor: Option<&ElectionRumor>,
    local: Option<&ElectionView>,
    members: &[CensusMember],
) -> (&'static str, Option<MemberId>, Option<u64>) {
    let from_rumor = (
        election_status_name(rumor),
        winner(rumor, members),
        rumor.map(|e| e.term),
    );
    let Some(view) = local else {
        return from_rumor;
    };
    let known = |id: Option<MemberId>| id.filter(|id| members.iter().any(|m| m.member_id == *id));
    let term = Some(view.term).filter(|t| *t != 0).or(from_rumor.2);
    match view.status {
        ViewStatus::None => from_rumor,
        ViewStatus::InProgress => (ELECTION_IN_PROGRESS, None, term),
        ViewStatus::NoQuorum => (ELECTION_NO_QUORUM, None, term),
        ViewStatus::Finished => (ELECTION_FINISHED, known(view.leader), term),
    }
}

/// The census, one entry per service group that has at least one listed member, sorted by group.
///
/// Choices where Habitat's behaviour depends on history a snapshot does not have:
/// - A service rumor whose member we do not know at all (not in `members`, not us) is left out:
///   without an address or health it cannot be bound to; `/butterfly` still lists the rumor.
///   Departed members stay listed, with `departed: true`, as in Habitat.
/// - `leader`/`follower` come only from a *finished* election whose winner is in the group;
///   while a new election runs nobody is leader (Habitat keeps the previous flags until the
///   new election finishes, which a snapshot cannot know). The update election works alike.
/// - Config and files encrypted for the service group show as `{}` / raw bytes: the census
///   holds no keys.
pub fn census_groups(input: &CensusInput<'_>) -> Vec<CensusGroup> {
    census_groups_with(input, &LocalElections::default())
}

/// `census_groups`, with this member's own election views taking precedence over the rumors
/// (see `LocalElections`).
pub fn census_groups_with(input: &CensusInput<'_>, local: &LocalElections) -> Vec<CensusGroup> {
    let known = known_members(input);
    group_rumors(input.store)
        .into_iter()
        .filter_map(|(service_group, rumors)| {
            let mut members: Vec<CensusMember> = rumors
                .services
                .iter()
                .filter_map(|r| {
                    let (identity, health) = known.get(&r.member_id)?;
                    Some(census_member(r, identity, *health))
                })
                .collect();
            if members.is_empty() {
                return None;
            }
            members.sort_by_key(|m| m.member_id);
            let (election_status, leader_id, election_term) =
                election_fields(rumors.election, local.leader.get(&service_group), &members);
            let (update_election_status, update_leader_id, update_election_term) = election_fields(
                rumors.update_election,
                local.update.get(&service_group),
                &members,
            );
            for m in &mut members {
                m.leader = leader_id == Some(m.member_id);
                m.follower = leader_id.is_some() && !m.leader;
                m.update_leader = update_leader_id == Some(m.member_id);
                m.update_follower = update_leader_id.is_some() && !m.update_leader;
            }
            let mut service_files: Vec<CensusFile> = rumors
                .files
                .iter()
                .map(|f| CensusFile {
                    filename: f.filename.clone(),
                    incarnation: f.incarnation,
                    encrypted: f.encrypted,
                    body: f.body.clone(),
                })
                .collect();
            service_files.sort_by(|a, b| a.filename.cmp(&b.filename));
            let mut retired_members: Vec<MemberId> = rumors
                .retired
                .iter()
                .filter(|r| {
                    let seen_up_as = known
                        .get(&r.member_id)
                        .filter(|(_, health)| health.is_up())
                        .map(|(identity, _)| identity.incarnation);
                    r.applies_to(seen_up_as)
                })
                .map(|r| r.member_id)
                .collect();
            retired_members.sort_unstable();
            let electorate = local.electorate.get(&service_group).cloned();
            let updates = rumors
                .updates
                .iter()
                .filter(|u| members.iter().any(|m| m.member_id == u.member_id))
                .map(|u| {
                    let update = MemberUpdate {
                        package: u.package.clone(),
                        health: u.health,
                        target: u.target.clone(),
                        failed: u.failed.clone(),
                    };
                    (u.member_id, update)
                })
                .collect();
            Some(CensusGroup {
                service_group,
                local_member_id: input.local.id,
                members,
                leader_id,
                election_status,
                election_term,
                update_leader_id,
                update_election_status,
                update_election_term,
                service_config: rumors.config.map(GossipedConfig::from_rumor),
                service_files,
                electorate,
                retired_members,
                updates,
            })
        })
        .collect()
}

fn census_member(rumor: &ServiceRumor, identity: &Identity, health: Health) -> CensusMember {
    let mut sys = rumor.sys.clone();
    sys.gossip_ip = identity.addr.ip().to_string();
    sys.gossip_port = identity.addr.port();
    CensusMember {
        member_id: rumor.member_id,
        package: rumor.package.clone(),
        pkg: CensusPkg::parse(&rumor.package),
        incarnation: rumor.incarnation,
        initialized: rumor.initialized,
        health,
        persistent: identity.persistent,
        leader: false,
        follower: false,
        update_leader: false,
        update_follower: false,
        cfg: parse_toml_table(&rumor.cfg),
        sys,
    }
}

/// `GET /census`: Habitat's `CensusRing` document.
///
/// The deprecated top-level fields are kept for old clients: the `last_*_counter`s are the
/// store's per-kind update counters; `last_membership_counter` is the number of members known
/// (membership changes are not counted in the store); `changed` is always `true`, which is what
/// Habitat's gateway shows (it only republishes the census when it changed).
pub fn census(input: &CensusInput<'_>) -> Value {
    census_with(input, &LocalElections::default())
}

/// `census`, with this member's own election views (see `LocalElections`).
pub fn census_with(input: &CensusInput<'_>, local: &LocalElections) -> Value {
    serde_json::to_value(census_doc(input, local)).unwrap_or_default()
}

/// `census_with`, typed (`doc::CensusDoc`).
pub fn census_doc(input: &CensusInput<'_>, local: &LocalElections) -> CensusDoc {
    let counter = |kind| input.store.update_counter(kind);
    CensusDoc {
        changed: true,
        census_groups: census_groups_with(input, local)
            .iter()
            .map(|g| (g.service_group.as_str().to_string(), g.to_doc()))
            .collect(),
        local_member_id: input.local.id.to_string(),
        last_service_counter: counter(RumorKind::Service),
        last_election_counter: counter(RumorKind::Election),
        last_election_update_counter: counter(RumorKind::ElectionUpdate),
        last_membership_counter: known_members(input).len() as u64,
        last_service_config_counter: counter(RumorKind::ServiceConfig),
        last_service_file_counter: counter(RumorKind::ServiceFile),
    }
}

/// `GET /butterfly`: the ring's raw state, Habitat's `member`, `service`, `service_config`,
/// `service_file`, `election`, `election_update` and `departure`, each with `list` and
/// `update_counter`.
///
/// Unlike the census this lists every live rumor, including service rumors of members we do not
/// know; tombstoned service rumors are left out. `member.update_counter` is the number of members
/// known (the store does not count membership changes).
pub fn butterfly(input: &CensusInput<'_>) -> Value {
    let known = known_members(input);
    let mut members = Map::new();
    let mut health = Map::new();
    for (id, (identity, h)) in &known {
        members.insert(id.to_string(), member_json(identity, *h));
        health.insert(id.to_string(), json!(h.as_str()));
    }

    let mut services: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut configs = Map::new();
    let mut files: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut elections = Map::new();
    let mut updates = Map::new();
    let mut departures = Map::new();
    let mut retirements: Map<String, Value> = Map::new();
    for rumor in input.store.iter() {
        match rumor {
            Rumor::Service(r) if !r.tombstone => {
                services
                    .entry(r.service_group.to_string())
                    .or_default()
                    .insert(r.member_id.to_string(), service_json(r));
            }
            Rumor::Service(_) => {}
            Rumor::ServiceConfig(r) => {
                configs.insert(
                    r.service_group.to_string(),
                    json!({ "service_config": service_config_json(r) }),
                );
            }
            Rumor::ServiceFile(r) => {
                files
                    .entry(r.service_group.to_string())
                    .or_default()
                    .insert(r.filename.clone(), service_file_json(r));
            }
            Rumor::Election(r) => {
                elections.insert(
                    r.service_group.to_string(),
                    json!({ "election": election_json(r) }),
                );
            }
            Rumor::ElectionUpdate(r) => {
                updates.insert(
                    r.service_group.to_string(),
                    json!({ "election": election_json(r) }),
                );
            }
            Rumor::Departure(r) => {
                departures.insert(r.member_id.to_string(), departure_json(r));
            }
            // In the group's `update` of `/census` (ours); not a Habitat rumor kind.
            Rumor::Update(_) => {}
            Rumor::Retirement(r) => {
                if let Value::Object(group) = retirements
                    .entry(r.service_group.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    group.insert(r.member_id.to_string(), retirement_json(r));
                }
            }
        }
    }
    let departure_list = if departures.is_empty() {
        Map::new()
    } else {
        Map::from_iter([("departure".to_string(), Value::Object(departures))])
    };
    let counter = |kind| input.store.update_counter(kind);
    json!({
        "departure": { "list": departure_list, "update_counter": counter(RumorKind::Departure) },
        "retirement": { "list": retirements, "update_counter": counter(RumorKind::Retirement) },
        "election": { "list": elections, "update_counter": counter(RumorKind::Election) },
        "election_update": {
            "list": updates,
            "update_counter": counter(RumorKind::ElectionUpdate),
        },
        "member": { "health": health, "members": members, "update_counter": known.len() },
        "node_name_conflicts": node_name_conflicts_json(&known),
        "service": { "list": services, "update_counter": counter(RumorKind::Service) },
        "service_config": {
            "list": configs,
            "update_counter": counter(RumorKind::ServiceConfig),
        },
        "service_file": { "list": files, "update_counter": counter(RumorKind::ServiceFile) },
    })
}

/// `{"<node name>": ["<member id>", ...]}`: names more than one up member holds (ours, not
/// Habitat's: Habitat let the newer member replace the older one).
fn node_name_conflicts_json(known: &BTreeMap<MemberId, (&Identity, Health)>) -> Value {
    let conflicts = node_name_conflicts(known.values().map(|(identity, h)| (*identity, *h)));
    let map: Map<String, Value> = conflicts
        .into_iter()
        .map(|(name, ids)| {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            (name.to_string(), json!(ids))
        })
        .collect();
    Value::Object(map)
}

fn member_json(identity: &Identity, health: Health) -> Value {
    json!({
        "address": identity.addr.ip().to_string(),
        "departed": health == Health::Departed,
        "gossip_port": identity.addr.port(),
        "id": identity.id.to_string(),
        "incarnation": identity.incarnation,
        "persistent": identity.persistent,
        "swim_port": identity.addr.port(),
    })
}

fn service_json(r: &ServiceRumor) -> Value {
    json!({
        "cfg": toml_table_to_json(&parse_toml_table(&r.cfg)),
        "incarnation": r.incarnation,
        "initialized": r.initialized,
        "member_id": r.member_id.to_string(),
        "package": r.package,
        "service_group": r.service_group.as_str(),
        "sys": r.sys,
    })
}

fn service_config_json(r: &ServiceConfigRumor) -> Value {
    json!({
        "config": r.config,
        "encrypted": r.encrypted,
        "from_id": r.from_id,
        "incarnation": r.incarnation,
        "service_group": r.service_group.as_str(),
    })
}

/// A file rumor as `/butterfly` shows it. The body is never shown, token or not (it is left
/// empty, which Habitat's schema allows): uploaded files are commonly keys and certificates,
/// and the service reads them from its `files` directory. Config stays visible as in Habitat
/// (that is what `/config` is for); set a gateway token to protect it.
fn service_file_json(r: &ServiceFileRumor) -> Value {
    json!({
        "body": [],
        "encrypted": r.encrypted,
        "filename": r.filename,
        "from_id": r.from_id,
        "incarnation": r.incarnation,
        "service_group": r.service_group.as_str(),
    })
}

fn election_json(r: &ElectionRumor) -> Value {
    json!({
        "from_id": r.from_id.to_string(),
        "member_id": r.member_id.to_string(),
        "service_group": r.service_group.as_str(),
        "status": r.status.as_str(),
        "suitability": r.suitability,
        "term": r.term,
        "votes": r.votes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn departure_json(r: &DepartureRumor) -> Value {
    json!({ "member_id": r.member_id.to_string() })
}

fn retirement_json(r: &RetirementRumor) -> Value {
    json!({
        "member_id": r.member_id.to_string(),
        "service_group": r.service_group.to_string(),
        "incarnation": r.incarnation,
        "retired_by": r.retired_by.to_string(),
        "term": r.term,
    })
}

/// Parses TOML text bytes into a table; empty, non-UTF-8 or invalid TOML gives an empty table
/// (a bad export from one member must not break the census for everyone).
pub fn parse_toml_table(bytes: &[u8]) -> toml::Table {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(text).ok())
        .unwrap_or_default()
}

/// A TOML table as a JSON object. Datetimes become their TOML text; non-finite floats `null`.
pub fn toml_table_to_json(table: &toml::Table) -> Value {
    Value::Object(
        table
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect(),
    )
}

/// A TOML value as JSON (see [`toml_table_to_json`]).
pub fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => toml_table_to_json(table),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::rumor::ServiceFileRumor;

    fn id(n: u8) -> MemberId {
        MemberId([n; 16])
    }

    fn identity(n: u8, persistent: bool) -> Identity {
        Identity {
            id: id(n),
            incarnation: 100 + u64::from(n),
            node: format!("node-{n}").into(),
            addr: format!("10.0.0.{n}:9638").parse().unwrap(),
            persistent,
            named: true,
        }
    }

    fn view(n: u8, health: Health) -> MemberView {
        MemberView {
            identity: identity(n, n == 2),
            health,
        }
    }

    fn group(name: &str) -> ServiceGroup {
        ServiceGroup::parse(name).unwrap()
    }

    fn service(n: u8, sg: &str, cfg: &str) -> Rumor {
        Rumor::Service(ServiceRumor {
            member_id: id(n),
            service_group: group(sg),
            incarnation: 1,
            package: "core/redis/7.0.0/20260101000000".into(),
            initialized: true,
            sys: SysInfo {
                ip: format!("10.0.0.{n}"),
                hostname: format!("node-{n}"),
                gossip_ip: "0.0.0.0".into(),
                gossip_port: 9638,
                http_gateway_ip: "0.0.0.0".into(),
                http_gateway_port: 9631,
                ctl_gateway_ip: "127.0.0.1".into(),
                ctl_gateway_port: 9632,
            },
            cfg: cfg.as_bytes().to_vec(),
            tombstone: false,
        })
    }

    fn finished(sg: &str, winner: u8, term: u64) -> ElectionRumor {
        let mut e = ElectionRumor::new(id(winner), group(sg), term, 0);
        e.status = ElectionStatus::Finished;
        e
    }

    struct Fixture {
        local: Identity,
        members: Vec<MemberView>,
        store: Store,
    }

    impl Fixture {
        fn new() -> Fixture {
            let members = vec![
                view(1, Health::Alive),
                view(2, Health::Alive),
                view(3, Health::Suspect),
                view(4, Health::Confirmed),
                view(5, Health::Alive),
            ];
            let mut store = Store::new();
            for rumor in [
                service(1, "redis.default", "port = 6379\n[tls]\nenabled = true\n"),
                service(2, "redis.default", "port = 6380"),
                service(3, "redis.default", "this is = not toml ["),
                service(4, "web.prod@acme", ""),
                service(5, "web.prod@acme", ""),
                service(9, "redis.default", "port = 1"),
                Rumor::ServiceConfig(ServiceConfigRumor {
                    from_id: "cli".into(),
                    service_group: group("redis.default"),
                    incarnation: 7,
                    encrypted: false,
                    config: b"maxmemory = \"1gb\"".to_vec(),
                }),
                Rumor::ServiceFile(ServiceFileRumor {
                    from_id: "cli".into(),
                    service_group: group("redis.default"),
                    incarnation: 2,
                    encrypted: false,
                    filename: "ca.pem".into(),
                    body: b"PEM".to_vec(),
                }),
                Rumor::Election(finished("redis.default", 2, 3)),
                Rumor::ElectionUpdate(ElectionRumor::new(id(4), group("web.prod@acme"), 1, 0)),
                Rumor::Departure(DepartureRumor { member_id: id(5) }),
            ] {
                store.insert(rumor, 0);
            }
            Fixture {
                local: identity(1, false),
                members,
                store,
            }
        }

        fn input(&self) -> CensusInput<'_> {
            CensusInput {
                local: &self.local,
                members: &self.members,
                store: &self.store,
            }
        }
    }

    #[test]
    fn finished_election_makes_its_winner_leader_and_the_rest_followers() {
        let f = Fixture::new();
        let groups = census_groups(&f.input());
        let redis = &groups[0];
        assert_eq!(redis.service_group.as_str(), "redis.default");
        assert_eq!(redis.election_status, ELECTION_FINISHED);
        assert_eq!(redis.election_term, Some(3));
        assert_eq!(redis.leader_id, Some(id(2)));
        assert_eq!(redis.leader().unwrap().member_id, id(2));
        for m in &redis.members {
            assert_eq!(m.leader, m.member_id == id(2), "{m:?}");
            assert_eq!(m.follower, m.member_id != id(2), "{m:?}");
            assert!(!m.update_leader && !m.update_follower);
        }
        assert_eq!(redis.update_election_status, ELECTION_NONE);
    }

    fn local(status: ViewStatus, leader: Option<u8>, term: u64) -> LocalElections {
        let view = ElectionView {
            status,
            leader: leader.map(id),
            term,
        };
        LocalElections::of_group(
            &group("redis.default"),
            GroupViews {
                leader: Some(view),
                update: None,
                electorate: vec![id(1), id(2)],
            },
        )
    }

    #[test]
    fn the_census_shows_the_electorate_and_the_members_a_leader_retired() {
        let mut f = Fixture::new();
        let retire = |member: u8, incarnation: u64| {
            Rumor::Retirement(RetirementRumor {
                service_group: group("redis.default"),
                member_id: id(member),
                incarnation,
                retired_by: id(2),
                term: 3,
            })
        };
        // Member 3 retired as it is; member 1 retired under an older identity (back since).
        f.store.insert(retire(3, 103), 0);
        f.store.insert(retire(1, 100), 0);
        let doc = census_with(&f.input(), &local(ViewStatus::Finished, Some(2), 3));
        let json = &doc["census_groups"]["redis.default"];
        assert_eq!(json["retired_members"], json!([id(3).to_string()]));
        assert_eq!(
            json["electorate"],
            json!([id(1).to_string(), id(2).to_string()])
        );
        // Where no engine of ours runs, the electorate is not known here.
        let web = &census(&f.input())["census_groups"]["web.prod@acme"];
        assert_eq!(web["electorate"], Value::Null);
        let butterfly = butterfly(&f.input());
        assert_eq!(
            butterfly["retirement"]["list"]["redis.default"][id(3).to_string()]["retired_by"],
            json!(id(2).to_string())
        );
    }

    #[test]
    fn a_member_without_quorum_reports_no_quorum_and_nobody_leads_although_the_rumor_says_finished()
    {
        let f = Fixture::new();
        let mine = local(ViewStatus::NoQuorum, None, 3);
        let redis = &census_groups_with(&f.input(), &mine)[0];
        assert_eq!(redis.election_status, ELECTION_NO_QUORUM);
        assert_eq!(redis.leader_id, None);
        assert_eq!(redis.election_term, Some(3));
        assert!(redis.members.iter().all(|m| !m.leader && !m.follower));
        let doc = census_with(&f.input(), &mine);
        let json = &doc["census_groups"]["redis.default"];
        assert_eq!(json["election_status"], "ElectionNoQuorum");
        assert_eq!(json["leader_id"], Value::Null);
        let me = &json["population"][id(1).to_string()];
        assert_eq!(me["election_is_no_quorum"], true);
        assert_eq!(me["election_is_finished"], false);
        assert_eq!(me["leader"], false);
    }

    #[test]
    fn the_local_view_names_the_leader_this_member_obeys_and_its_term() {
        let f = Fixture::new();
        // A sticky incumbent (1) the rumor no longer names.
        let redis = &census_groups_with(&f.input(), &local(ViewStatus::Finished, Some(1), 2))[0];
        assert_eq!(redis.election_status, ELECTION_FINISHED);
        assert_eq!(
            (redis.leader_id, redis.election_term),
            (Some(id(1)), Some(2))
        );
        assert!(redis.member(id(1)).unwrap().leader);
        assert!(redis.member(id(2)).unwrap().follower);
        let running = &census_groups_with(&f.input(), &local(ViewStatus::InProgress, None, 4))[0];
        assert_eq!(running.election_status, ELECTION_IN_PROGRESS);
        assert_eq!(running.leader_id, None);
        // No view of its own yet: the rumor shows.
        let none = &census_groups_with(&f.input(), &local(ViewStatus::None, None, 0))[0];
        assert_eq!(
            (none.election_status, none.leader_id),
            (ELECTION_FINISHED, Some(id(2)))
        );
    }

    #[test]
    fn running_update_election_has_no_leader_and_no_followers() {
        let f = Fixture::new();
        let web = census_groups(&f.input()).pop().unwrap();
        assert_eq!(web.service_group.as_str(), "web.prod@acme");
        assert_eq!(web.update_election_status, ELECTION_IN_PROGRESS);
        assert_eq!(web.update_election_term, Some(1));
        assert_eq!(web.update_leader_id, None);
        assert!(web
            .members
            .iter()
            .all(|m| !m.update_leader && !m.update_follower));
        assert_eq!(web.election_status, ELECTION_NONE);
        assert_eq!(web.election_term, None);
    }

    #[test]
    fn members_unknown_to_the_ring_are_left_out_of_the_census() {
        let f = Fixture::new();
        let redis = &census_groups(&f.input())[0];
        let ids: Vec<MemberId> = redis.members.iter().map(|m| m.member_id).collect();
        assert_eq!(ids, vec![id(1), id(2), id(3)]);
        let listed = &butterfly(&f.input())["service"]["list"]["redis.default"];
        assert!(listed.get(id(9).to_string()).is_some());
    }

    #[test]
    fn a_departure_rumor_marks_the_member_departed() {
        let f = Fixture::new();
        let web = census_groups(&f.input()).pop().unwrap();
        assert_eq!(web.member(id(5)).unwrap().health, Health::Departed);
        let doc = census(&f.input());
        let five = &doc["census_groups"]["web.prod@acme"]["population"][id(5).to_string()];
        assert_eq!(five["departed"], true);
        assert_eq!(five["alive"], false);
        let b = butterfly(&f.input());
        assert_eq!(b["member"]["health"][id(5).to_string()], "Departed");
        assert_eq!(b["member"]["members"][id(5).to_string()]["departed"], true);
    }

    #[test]
    fn health_booleans_follow_member_health() {
        let f = Fixture::new();
        let doc = census(&f.input());
        let pop = &doc["census_groups"]["redis.default"]["population"];
        let flags = |n: u8| {
            let m = &pop[id(n).to_string()];
            (
                m["alive"].clone(),
                m["suspect"].clone(),
                m["confirmed"].clone(),
                m["departed"].clone(),
            )
        };
        assert_eq!(
            flags(1),
            (json!(true), json!(false), json!(false), json!(false))
        );
        assert_eq!(
            flags(3),
            (json!(false), json!(true), json!(false), json!(false))
        );
        let web = &doc["census_groups"]["web.prod@acme"]["population"];
        assert_eq!(web[id(4).to_string()]["confirmed"], true);
    }

    #[test]
    fn undecodable_cfg_shows_as_an_empty_object() {
        let f = Fixture::new();
        let redis = &census_groups(&f.input())[0];
        assert!(redis.member(id(3)).unwrap().cfg.is_empty());
        let cfg = &redis.member(id(1)).unwrap().cfg;
        assert_eq!(cfg["port"].as_integer(), Some(6379));
        let b = butterfly(&f.input());
        assert_eq!(
            b["service"]["list"]["redis.default"][id(3).to_string()]["cfg"],
            json!({})
        );
        assert_eq!(parse_toml_table(&[0xff, 0xfe]), toml::Table::new());
    }

    #[test]
    fn an_encrypted_config_shows_as_empty_and_keeps_its_sealed_text_for_the_service() {
        let mut f = Fixture::new();
        let sealed = b"BOX-1\nruby-20260101000000\nredis.default-20260101000000\nAA==\nAA==";
        f.store.insert(
            Rumor::ServiceConfig(ServiceConfigRumor {
                from_id: "cli".into(),
                service_group: group("redis.default"),
                incarnation: 8,
                encrypted: true,
                config: sealed.to_vec(),
            }),
            0,
        );
        let redis = &census_groups(&f.input())[0];
        let config = redis.service_config.as_ref().unwrap();
        assert_eq!((config.incarnation, config.encrypted), (8, true));
        assert!(config.value.is_empty());
        assert_eq!(config.sealed, sealed);
        assert_eq!(
            redis.to_json()["service_config"],
            json!({"incarnation": 8, "value": {}})
        );
        let plain = census_groups(&Fixture::new().input())[0]
            .service_config
            .clone()
            .unwrap();
        assert!(!plain.encrypted && plain.sealed.is_empty());
        assert_eq!(plain.value["maxmemory"].as_str(), Some("1gb"));
    }

    #[test]
    fn package_ident_is_split_into_its_parts() {
        let pkg = CensusPkg::parse("core/redis/7.0.0/20260101000000").unwrap();
        assert_eq!((pkg.origin.as_str(), pkg.name.as_str()), ("core", "redis"));
        assert_eq!(pkg.version.as_deref(), Some("7.0.0"));
        assert_eq!(pkg.release.as_deref(), Some("20260101000000"));
        let short = CensusPkg::parse("core/redis").unwrap();
        assert_eq!((short.version, short.release), (None, None));
        for bad in ["", "redis", "core//1", "a/b/c/d/e"] {
            assert_eq!(CensusPkg::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn census_sys_takes_gossip_address_from_the_ring() {
        let f = Fixture::new();
        let me = census_groups(&f.input())[0].me().cloned().unwrap();
        assert_eq!(me.sys.gossip_ip, "10.0.0.1");
        assert_eq!(me.sys.ip, "10.0.0.1");
        let b = butterfly(&f.input());
        assert_eq!(
            b["service"]["list"]["redis.default"][id(1).to_string()]["sys"]["gossip_ip"],
            "0.0.0.0"
        );
    }

    #[test]
    fn local_member_is_listed_even_when_the_caller_leaves_it_out() {
        let mut f = Fixture::new();
        f.members.retain(|m| m.identity.id != id(1));
        let redis = &census_groups(&f.input())[0];
        assert_eq!(redis.me().unwrap().health, Health::Alive);
    }

    #[test]
    fn tombstoned_services_are_not_listed() {
        let mut f = Fixture::new();
        let Rumor::Service(mut gone) = service(2, "redis.default", "") else {
            unreachable!()
        };
        gone.incarnation = 2;
        gone.tombstone = true;
        f.store.insert(Rumor::Service(gone), 1);
        let redis = &census_groups(&f.input())[0];
        assert!(redis.member(id(2)).is_none());
        // The finished election's winner is gone: nobody leads, nobody follows.
        assert_eq!(redis.leader_id, None);
        assert!(redis.members.iter().all(|m| !m.leader && !m.follower));
        let b = butterfly(&f.input());
        assert!(b["service"]["list"]["redis.default"]
            .get(id(2).to_string())
            .is_none());
    }

    #[test]
    fn butterfly_lists_node_names_held_by_more_than_one_up_member() {
        let mut f = Fixture::new();
        assert_eq!(butterfly(&f.input())["node_name_conflicts"], json!({}));
        // 1 (ourselves), 3 (suspect) and 4 (confirmed) claim one name: only the up ones count.
        for member in &mut f.members {
            if [1, 3, 4].contains(&member.identity.id.0[0]) {
                member.identity.node = "shared".into();
            }
        }
        f.local.node = "shared".into();
        assert_eq!(
            butterfly(&f.input())["node_name_conflicts"],
            json!({ "shared": [id(1).to_string(), id(3).to_string()] })
        );
    }

    /// The census as the gateway wrote it by hand before it was serialised from `doc`'s
    /// types: kept here to prove the typed document is byte for byte the same.
    fn handwritten_group_json(g: &CensusGroup) -> Value {
        let member = |m: &CensusMember| {
            let pkg = m.pkg.clone().unwrap_or_default();
            let status = |s: &'static str| (s == g.election_status, s == g.update_election_status);
            let (running, update_running) = status(ELECTION_IN_PROGRESS);
            let (no_quorum, update_no_quorum) = status(ELECTION_NO_QUORUM);
            let (finished, update_finished) = status(ELECTION_FINISHED);
            json!({
                "member_id": m.member_id.to_string(),
                "pkg": pkg,
                "pkg_incarnation": 0,
                "package": m.package,
                "service": g.service_group.service(),
                "group": g.service_group.group(),
                "org": g.service_group.org(),
                "persistent": m.persistent,
                "leader": m.leader,
                "follower": m.follower,
                "update_leader": m.update_leader,
                "update_follower": m.update_follower,
                "election_is_running": running,
                "election_is_no_quorum": no_quorum,
                "election_is_finished": finished,
                "update_election_is_running": update_running,
                "update_election_is_no_quorum": update_no_quorum,
                "update_election_is_finished": update_finished,
                "sys": m.sys,
                "alive": m.health == Health::Alive,
                "suspect": m.health == Health::Suspect,
                "confirmed": m.health == Health::Confirmed,
                "departed": m.health == Health::Departed,
                "cfg": toml_table_to_json(&m.cfg),
            })
        };
        let population: Map<String, Value> = g
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), member(m)))
            .collect();
        let service_config = match &g.service_config {
            Some(config) => json!({
                "incarnation": config.incarnation,
                "value": toml_table_to_json(&config.value),
            }),
            None => Value::Null,
        };
        let service_files: Map<String, Value> = g
            .service_files
            .iter()
            .map(|f| {
                (
                    f.filename.clone(),
                    json!({"body": [], "filename": f.filename, "incarnation": f.incarnation}),
                )
            })
            .collect();
        json!({
            "service_group": g.service_group.as_str(),
            "election_status": g.election_status,
            "update_election_status": g.update_election_status,
            "pkg_incarnation": 0,
            "leader_id": g.leader_id.map(|id| id.to_string()),
            "service_config": service_config,
            "local_member_id": g.local_member_id.to_string(),
            "population": population,
            "update_leader_id": g.update_leader_id.map(|id| id.to_string()),
            "changed_service_files": [],
            "service_files": service_files,
            "election_term": g.election_term,
            "update_election_term": g.update_election_term,
            "electorate": g
                .electorate
                .as_ref()
                .map(|ids| ids.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "retired_members": g
                .retired_members
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        })
    }

    #[test]
    fn the_typed_census_serialises_byte_for_byte_as_the_handwritten_json_and_parses_back() {
        let f = Fixture::new();
        for local in [
            LocalElections::default(),
            local(ViewStatus::Finished, Some(2), 3),
            local(ViewStatus::NoQuorum, None, 3),
        ] {
            let groups = census_groups_with(&f.input(), &local);
            for g in &groups {
                let typed = serde_json::to_string(&g.to_json()).unwrap();
                let by_hand = serde_json::to_string(&handwritten_group_json(g)).unwrap();
                assert_eq!(typed, by_hand);
            }
            let by_hand = json!({
                "changed": true,
                "census_groups": groups
                    .iter()
                    .map(|g| (g.service_group.as_str().to_string(), handwritten_group_json(g)))
                    .collect::<Map<String, Value>>(),
                "local_member_id": f.local.id.to_string(),
                "last_service_counter": f.store.update_counter(RumorKind::Service),
                "last_election_counter": f.store.update_counter(RumorKind::Election),
                "last_election_update_counter": f.store.update_counter(RumorKind::ElectionUpdate),
                "last_membership_counter": known_members(&f.input()).len(),
                "last_service_config_counter": f.store.update_counter(RumorKind::ServiceConfig),
                "last_service_file_counter": f.store.update_counter(RumorKind::ServiceFile),
            });
            let text = serde_json::to_string(&census_with(&f.input(), &local)).unwrap();
            assert_eq!(text, serde_json::to_string(&by_hand).unwrap());
            let parsed = CensusDoc::from_slice(text.as_bytes()).unwrap();
            assert_eq!(parsed, census_doc(&f.input(), &local));
            let redis = parsed.group("redis.default").unwrap();
            assert_eq!(redis.service_config.as_ref().unwrap().incarnation, 7);
            assert_eq!(redis.service_files["ca.pem"].incarnation, 2);
            let three = &redis.population[&id(3).to_string()];
            assert_eq!(three.health(), Some(Health::Suspect));
        }
    }

    #[test]
    fn toml_values_convert_to_json() {
        let table: toml::Table =
            toml::from_str("a = 1\nb = 1.5\nc = [\"x\", true]\nd = 1979-05-27\n[e]\nf = \"g\"")
                .unwrap();
        assert_eq!(
            toml_table_to_json(&table),
            json!({"a": 1, "b": 1.5, "c": ["x", true], "d": "1979-05-27", "e": {"f": "g"}})
        );
    }
}
