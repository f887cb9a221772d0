//! The render context templates see: `sys`, `pkg`, `cfg`, `svc` and `bind` with Habitat's
//! field names and shapes (`render_context_schema.json`), built by a pure function from the
//! census and the caller's view of the package. Never fails: a local member the census does not
//! list yet is described from `sys` and `pkg`, so a first render before the ring has our own
//! service rumor still sees `svc.me`.
//!
//! Our additions (absent from Habitat's context, allowed by its relaxed schema):
//! - `svc.term` and `term` on every member (`svc.me.term`, `svc.members[i].term`, ...): the term
//!   of the group's *finished* election, a fencing token that only grows; absent while no
//!   election has finished.
//! - `svc.update_term` and `update_term` on members: the same for the update election.
//! - `svc.service_group`: the full group name (`redis.default`, `web.prod@acme`).
//! - `package` on members: the member's package ident as one string (Habitat's census has it).
//!
//! Membership flags on each member are Habitat's: `alive`, `suspect`, `confirmed`, `departed`,
//! `leader`, `follower`, `update_leader`, `update_follower` and the group's
//! `election_is_running`/`_no_quorum`/`_finished` (and `update_` ones). `svc.members` and
//! `bind.<name>.members` hold the active members (alive or suspect), as Habitat since 0.56;
//! `first` is the leader, else the first member of all (even dead ones), as Habitat keeps it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::census::{
    toml_table_to_json, CensusGroup, CensusMember, ELECTION_FINISHED, ELECTION_IN_PROGRESS,
    ELECTION_NO_QUORUM,
};
use crate::gossip::member::MemberId;
use crate::gossip::rumor::SysInfo;
use crate::package::PackageIdent;

/// The supervisor, under `sys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysContext {
    /// Supervisor version, e.g. `0.1.0/habitat-rs`.
    pub version: String,
    pub member_id: MemberId,
    /// Addresses and ports, as this supervisor gossips them in its service rumor.
    pub info: SysInfo,
    /// Started with `--permanent-peer`.
    pub permanent: bool,
}

impl SysContext {
    pub fn new(version: &str, member_id: MemberId, info: &SysInfo, permanent: bool) -> Self {
        SysContext {
            version: version.to_string(),
            member_id,
            info: info.clone(),
            permanent,
        }
    }

    pub fn to_json(&self) -> Value {
        let i = &self.info;
        // Habitat's order (its `SystemInfo`).
        json!({
            "version": self.version,
            "member_id": self.member_id.to_string(),
            "ip": i.ip,
            "hostname": i.hostname,
            "gossip_ip": i.gossip_ip,
            "gossip_port": i.gossip_port,
            "http_gateway_ip": i.http_gateway_ip,
            "http_gateway_port": i.http_gateway_port,
            "ctl_gateway_ip": i.ctl_gateway_ip,
            "ctl_gateway_port": i.ctl_gateway_port,
            "permanent": self.permanent,
        })
    }
}

/// The running package, under `pkg`. Plain data the caller fills; [`PkgContext::new`] derives
/// the svc paths the way Habitat lays them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkgContext {
    pub ident: PackageIdent,
    /// Runtime dependencies (`pkg_deps`), fully qualified.
    pub deps: Vec<PackageIdent>,
    /// The package's runtime environment (`RUNTIME_ENVIRONMENT`).
    pub env: BTreeMap<String, String>,
    /// Ports (`pkg_exposes`).
    pub exposes: Vec<String>,
    /// Exported name -> dotted cfg path (`pkg_exports`).
    pub exports: BTreeMap<String, String>,
    /// Where the package is installed.
    pub path: PathBuf,
    /// `<root>/svc/<name>`; the other svc paths are under it.
    pub svc_path: PathBuf,
    pub svc_user: String,
    pub svc_group: String,
}

impl PkgContext {
    /// `svc_root` is the service's directory, `<root>/svc/<name>`.
    pub fn new(
        ident: &PackageIdent,
        pkg_path: &Path,
        svc_root: &Path,
        svc_user: &str,
        svc_group: &str,
        exports: &[(String, String)],
    ) -> Self {
        PkgContext {
            ident: ident.clone(),
            deps: Vec::new(),
            env: BTreeMap::new(),
            exposes: Vec::new(),
            exports: exports.iter().cloned().collect(),
            path: pkg_path.to_path_buf(),
            svc_path: svc_root.to_path_buf(),
            svc_user: svc_user.to_string(),
            svc_group: svc_group.to_string(),
        }
    }

    pub fn svc_config_path(&self) -> PathBuf {
        self.svc_path.join("config")
    }

    /// The values named in `exports`, looked up in `cfg`; missing paths are left out.
    pub fn exported_cfg(&self, cfg: &toml::Table) -> toml::Table {
        crate::package::lookup_exports(&self.exports, cfg)
    }

    pub fn to_json(&self) -> Value {
        let text = |p: PathBuf| p.to_string_lossy().into_owned();
        let svc = |sub: &str| text(self.svc_path.join(sub));
        // Habitat's order (its `Package`).
        json!({
            "ident": self.ident.to_string(),
            "origin": self.ident.origin,
            "name": self.ident.name,
            "version": self.ident.version.clone().unwrap_or_default(),
            "release": self.ident.release.clone().unwrap_or_default(),
            "deps": self.deps.iter().map(ident_json).collect::<Vec<_>>(),
            "env": self.env,
            "exposes": self.exposes,
            "exports": self.exports,
            "path": text(self.path.clone()),
            "svc_path": text(self.svc_path.clone()),
            "svc_config_path": svc("config"),
            "svc_data_path": svc("data"),
            "svc_files_path": svc("files"),
            "svc_static_path": svc("static"),
            "svc_var_path": svc("var"),
            "svc_pid_file": svc("PID"),
            "svc_run": svc("run"),
            "svc_user": self.svc_user,
            "svc_group": self.svc_group,
        })
    }
}

fn ident_json(ident: &PackageIdent) -> Value {
    json!({
        "origin": ident.origin,
        "name": ident.name,
        "version": ident.version,
        "release": ident.release,
    })
}

/// Everything a render context is built from.
pub struct RenderInput<'a> {
    pub sys: &'a SysContext,
    pub pkg: &'a PkgContext,
    /// The merged config (default.toml, environment, user.toml, gossiped).
    pub cfg: &'a toml::Table,
    /// This service's group in the census.
    pub svc: &'a CensusGroup,
    /// Bind name -> the bound group's census; binds whose group is not in the census are
    /// simply left out by the caller (Habitat does the same).
    pub binds: &'a BTreeMap<String, &'a CensusGroup>,
}

/// The JSON templates are rendered with.
pub fn render_context(input: &RenderInput<'_>) -> Value {
    let bind: Map<String, Value> = input
        .binds
        .iter()
        .map(|(name, group)| (name.clone(), bind_json(group)))
        .collect();
    // Habitat's order (its `RenderContext`).
    json!({
        "sys": input.sys.to_json(),
        "pkg": input.pkg.to_json(),
        "cfg": toml_table_to_json(input.cfg),
        "svc": svc_json(input),
        "bind": bind,
    })
}

/// Group-level facts every member object repeats, as Habitat does.
struct GroupFlags<'a> {
    group: &'a CensusGroup,
    term: Option<u64>,
    update_term: Option<u64>,
}

impl<'a> GroupFlags<'a> {
    fn new(group: &'a CensusGroup) -> Self {
        let finished =
            |status: &str, term: Option<u64>| term.filter(|_| status == ELECTION_FINISHED);
        GroupFlags {
            group,
            term: finished(group.election_status, group.election_term),
            update_term: finished(group.update_election_status, group.update_election_term),
        }
    }

    fn insert_election_flags(&self, map: &mut Map<String, Value>) {
        let g = self.group;
        for (prefix, status) in [
            ("", g.election_status),
            ("update_", g.update_election_status),
        ] {
            for (suffix, name) in [
                ("running", ELECTION_IN_PROGRESS),
                ("no_quorum", ELECTION_NO_QUORUM),
                ("finished", ELECTION_FINISHED),
            ] {
                map.insert(
                    format!("{prefix}election_is_{suffix}"),
                    Value::Bool(status == name),
                );
            }
        }
    }

    /// Our terms (fencing tokens), after Habitat's fields.
    fn insert_terms(&self, map: &mut Map<String, Value>) {
        if let Some(term) = self.term {
            map.insert("term".into(), json!(term));
        }
        if let Some(term) = self.update_term {
            map.insert("update_term".into(), json!(term));
        }
    }

    /// A member as the census shows it (Habitat's fields and order), then our terms.
    fn member(&self, m: &CensusMember) -> Value {
        let mut member = self.group.member_json(m);
        if let Value::Object(map) = &mut member {
            self.insert_terms(map);
        }
        member
    }

    fn active_members(&self) -> Vec<Value> {
        self.group
            .members
            .iter()
            .filter(|m| m.health.is_up())
            .map(|m| self.member(m))
            .collect()
    }

    /// The leader, else the first member of all, as Habitat's deprecated `first`.
    fn first(&self) -> Option<Value> {
        self.group
            .leader()
            .or_else(|| self.group.members.first())
            .map(|m| self.member(m))
    }
}

fn bind_json(group: &CensusGroup) -> Value {
    let flags = GroupFlags::new(group);
    json!({
        "first": flags.first(),
        "leader": group.leader().map(|m| flags.member(m)),
        "members": flags.active_members(),
    })
}

fn svc_json(input: &RenderInput<'_>) -> Value {
    let group = input.svc;
    let flags = GroupFlags::new(group);
    let me = match group.me() {
        Some(me) => flags.member(me),
        None => flags.member(&local_member(input)),
    };
    // Habitat's fields in its order (its `Svc`), then ours.
    let mut map = Map::new();
    map.insert("service".into(), json!(group.service_group.service()));
    map.insert("group".into(), json!(group.service_group.group()));
    map.insert("org".into(), json!(group.service_group.org()));
    flags.insert_election_flags(&mut map);
    map.insert("me".into(), me.clone());
    map.insert("members".into(), Value::Array(flags.active_members()));
    map.insert(
        "leader".into(),
        json!(group.leader().map(|m| flags.member(m))),
    );
    map.insert("first".into(), flags.first().unwrap_or(me));
    map.insert(
        "update_leader".into(),
        json!(group
            .update_leader_id
            .and_then(|id| group.member(id))
            .map(|m| flags.member(m))),
    );
    map.insert("service_group".into(), json!(group.service_group.as_str()));
    flags.insert_terms(&mut map);
    Value::Object(map)
}

/// Ourselves, described from `sys` and `pkg` while the census does not list us yet.
fn local_member(input: &RenderInput<'_>) -> CensusMember {
    CensusMember {
        persistent: input.sys.permanent,
        ..CensusMember::new(
            input.sys.member_id,
            &input.pkg.ident.to_string(),
            input.pkg.exported_cfg(input.cfg),
            input.sys.info.clone(),
        )
    }
}
