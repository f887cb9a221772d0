//! `/butterfly`, `/census` and `/services` against our schemas of them (`tests/schemas/`), which
//! require Habitat's field names and types and allow our additions. Set `HABITAT_REFERENCE_DIR`
//! to a copy of Habitat's reference data to also check that Habitat's own sample outputs pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

mod support;

use support::{assert_valid, read_json, Schemas};

use habitat_sidecar::census::{self, CensusInput, ELECTION_FINISHED};
use habitat_sidecar::gossip::member::{Health, Identity, MemberId, MemberView};
use habitat_sidecar::gossip::rumor::{
    CheckHealth, DepartureRumor, ElectionRumor, ElectionStatus, RetirementRumor, Rumor,
    ServiceConfigRumor, ServiceFileRumor, ServiceGroup, ServiceRumor, SysInfo, UpdateRumor,
};
use habitat_sidecar::gossip::store::Store;
use serde_json::{json, Value};

// --- Habitat's field names, as its sample outputs have them.

/// `/butterfly`'s sections and the fields of each.
const BUTTERFLY_SECTIONS: [(&str, &[&str]); 7] = [
    ("departure", &["list", "update_counter"]),
    ("election", &["list", "update_counter"]),
    ("election_update", &["list", "update_counter"]),
    ("member", &["health", "members", "update_counter"]),
    ("service", &["list", "update_counter"]),
    ("service_config", &["list", "update_counter"]),
    ("service_file", &["list", "update_counter"]),
];
/// Top-level fields of `/butterfly` that are ours, not Habitat's.
const BUTTERFLY_OUR_FIELDS: [&str; 2] = ["node_name_conflicts", "retirement"];
/// A member under `/butterfly` `member.members`.
const BUTTERFLY_MEMBER_FIELDS: [&str; 7] = [
    "address",
    "departed",
    "gossip_port",
    "id",
    "incarnation",
    "persistent",
    "swim_port",
];
/// `/census` top level.
const CENSUS_FIELDS: [&str; 9] = [
    "census_groups",
    "changed",
    "last_election_counter",
    "last_election_update_counter",
    "last_membership_counter",
    "last_service_config_counter",
    "last_service_counter",
    "last_service_file_counter",
    "local_member_id",
];
/// A group under `/census` `census_groups`.
const CENSUS_GROUP_FIELDS: [&str; 10] = [
    "changed_service_files",
    "election_status",
    "leader_id",
    "local_member_id",
    "population",
    "service_config",
    "service_files",
    "service_group",
    "update_election_status",
    "update_leader_id",
];
/// A member of a census group's `population`.
const CENSUS_MEMBER_FIELDS: [&str; 22] = [
    "alive",
    "cfg",
    "confirmed",
    "departed",
    "election_is_finished",
    "election_is_no_quorum",
    "election_is_running",
    "follower",
    "group",
    "leader",
    "member_id",
    "org",
    "persistent",
    "pkg",
    "service",
    "suspect",
    "sys",
    "update_election_is_finished",
    "update_election_is_no_quorum",
    "update_election_is_running",
    "update_follower",
    "update_leader",
];

/// An object's keys, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The first entry of the map at `path`.
fn first(v: &Value, path: &str) -> Value {
    v.pointer(path)
        .and_then(Value::as_object)
        .and_then(|m| m.values().next())
        .cloned()
        .unwrap_or_else(|| panic!("nothing at {path}"))
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(ToString::to_string).collect();
    names.sort();
    names
}

// --- A small ring: 5 members, services in 2 groups, a config, a file, elections, a departure.

fn id(n: u8) -> MemberId {
    MemberId([n; 16])
}

fn identity(n: u8) -> Identity {
    Identity {
        id: id(n),
        incarnation: 1_700_000_000 + u64::from(n),
        node: format!("node-{n}").into(),
        addr: format!("172.26.0.{n}:9638").parse().unwrap(),
        persistent: n == 2,
        named: true,
    }
}

fn group(name: &str) -> ServiceGroup {
    ServiceGroup::parse(name).unwrap()
}

fn service(n: u8, sg: &str, package: &str, cfg: &str) -> Rumor {
    Rumor::Service(ServiceRumor {
        member_id: id(n),
        service_group: group(sg),
        incarnation: 1,
        package: package.into(),
        initialized: false,
        sys: SysInfo {
            ip: format!("172.26.0.{n}"),
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

struct Ring {
    local: Identity,
    members: Vec<MemberView>,
    store: Store,
}

impl Ring {
    fn new() -> Ring {
        let health = [
            Health::Alive,
            Health::Alive,
            Health::Suspect,
            Health::Confirmed,
            Health::Alive,
        ];
        let members = (1..=5)
            .zip(health)
            .map(|(n, health)| MemberView {
                identity: identity(n),
                health,
            })
            .collect();
        let mut election = ElectionRumor::new(id(2), group("postgres.default"), 4, 10);
        election.status = ElectionStatus::Finished;
        election.votes = vec![id(1), id(2), id(3)];
        let mut tombstoned = service(5, "postgres.default", "core/postgresql/15.2/1", "");
        if let Rumor::Service(r) = &mut tombstoned {
            r.tombstone = true;
        }
        let mut store = Store::new();
        for rumor in [
            service(
                1,
                "postgres.default",
                "core/postgresql/15.2/20260101000000",
                "port = 5432\n[replication]\nuser = \"repl\"\nslots = [\"a\", \"b\"]\n",
            ),
            service(
                2,
                "postgres.default",
                "core/postgresql/15.2/20260101000000",
                "port = 5433",
            ),
            service(
                3,
                "postgres.default",
                "core/postgresql/15.2/20260101000000",
                "broken = = toml",
            ),
            tombstoned,
            service(
                4,
                "web.prod@acme",
                "acme/web/2.1.0/20260202020202",
                "url = \"http://web\"",
            ),
            service(5, "web.prod@acme", "acme/web/2.1.0/20260202020202", ""),
            // Member 4 is confirmed dead: its group's leader retired it.
            Rumor::Retirement(RetirementRumor {
                service_group: group("web.prod@acme"),
                member_id: id(4),
                incarnation: 1,
                retired_by: id(5),
                term: 9,
            }),
            Rumor::ServiceConfig(ServiceConfigRumor {
                from_id: "butterflyclient".into(),
                service_group: group("postgres.default"),
                incarnation: 1_534_943_508,
                encrypted: false,
                config: b"max_connections = 200\n[log]\nlevel = \"info\"\n".to_vec(),
            }),
            Rumor::ServiceFile(ServiceFileRumor {
                from_id: "butterflyclient".into(),
                service_group: group("postgres.default"),
                incarnation: 3,
                encrypted: false,
                filename: "server.crt".into(),
                body: b"CERT".to_vec(),
            }),
            Rumor::Election(election),
            Rumor::ElectionUpdate(ElectionRumor::new(id(4), group("web.prod@acme"), 1, 0)),
            Rumor::Departure(DepartureRumor { member_id: id(5) }),
            // A rolling update of postgres.default: member 2 failed on the target.
            Rumor::Update(UpdateRumor {
                member_id: id(2),
                service_group: group("postgres.default"),
                incarnation: 2,
                package: "core/postgresql/15.2/20260101000000".into(),
                health: CheckHealth::Ok,
                target: None,
                failed: Some("core/postgresql/15.3/20260301000000".into()),
            }),
        ] {
            store.insert(rumor, 0);
        }
        Ring {
            local: identity(1),
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

// --- Habitat's own output, when its reference data is at hand.

/// Our schemas must be no stricter than Habitat's real output, and our key lists must be its keys.
#[test]
fn our_schemas_accept_habitats_own_samples() {
    let Some(dir) = std::env::var_os("HABITAT_REFERENCE_DIR") else {
        eprintln!("skipped: set HABITAT_REFERENCE_DIR to a copy of Habitat's reference data");
        return;
    };
    let dir = Path::new(&dir);
    if !dir.is_dir() {
        eprintln!("skipped: HABITAT_REFERENCE_DIR {dir:?} is not a directory");
        return;
    }
    let schemas = Schemas::load();
    for (name, sample) in [
        ("butterfly", "sample-butterfly-output.json"),
        ("census", "sample-census-output.json"),
        ("services", "sample-services-with-cfg-output.json"),
        ("services", "sample-services-without-cfg-output.json"),
        ("render_context", "sample_render_context.json"),
    ] {
        let errors = schemas.errors(name, &read_json(&dir.join(sample)));
        assert!(errors.is_empty(), "{sample}: {errors:#?}");
    }

    let butterfly = read_json(&dir.join("sample-butterfly-output.json"));
    let sections: Vec<&str> = BUTTERFLY_SECTIONS.iter().map(|(s, _)| *s).collect();
    assert_eq!(keys(&butterfly), sorted(&sections));
    for (section, fields) in BUTTERFLY_SECTIONS {
        assert_eq!(keys(&butterfly[section]), sorted(fields), "{section}");
    }
    let member = first(&butterfly, "/member/members");
    assert_eq!(keys(&member), sorted(&BUTTERFLY_MEMBER_FIELDS));
    let census = read_json(&dir.join("sample-census-output.json"));
    assert_eq!(keys(&census), sorted(&CENSUS_FIELDS));
    let group = first(&census, "/census_groups");
    assert_eq!(keys(&group), sorted(&CENSUS_GROUP_FIELDS));
    assert_eq!(
        keys(&first(&group, "/population")),
        sorted(&CENSUS_MEMBER_FIELDS)
    );
    // The typed census (what the operator reads `/census` with) parses Habitat's own.
    let typed: census::CensusDoc = serde_json::from_value(census.clone()).unwrap();
    assert_eq!(
        typed.census_groups.len(),
        keys(&census["census_groups"]).len()
    );
}

// --- Our documents.

#[test]
fn our_butterfly_document_validates_against_the_schema() {
    let mut ring = Ring::new();
    // Members 1 (ourselves) and 3 (suspect) share a node name: a conflict is listed.
    ring.members[2].identity.node = ring.local.node.clone();
    let doc = census::butterfly(&ring.input());
    assert_eq!(
        doc["node_name_conflicts"]["node-1"],
        json!([id(1).to_string(), id(3).to_string()])
    );
    assert_valid(&Schemas::load(), "butterfly", &doc);
}

#[test]
fn our_census_document_parses_into_the_typed_census_and_back_unchanged() {
    let ring = Ring::new();
    let doc = census::census(&ring.input());
    let typed: census::CensusDoc = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(
        serde_json::to_string(&typed).unwrap(),
        serde_json::to_string(&doc).unwrap()
    );
    let group = typed.group("postgres.default").unwrap();
    assert!(group.population.values().all(|m| m.health().is_some()));
}

#[test]
fn our_census_document_validates_against_the_schema() {
    let ring = Ring::new();
    assert_valid(&Schemas::load(), "census", &census::census(&ring.input()));
}

#[test]
fn renaming_a_required_field_fails_validation() {
    let ring = Ring::new();
    let schemas = Schemas::load();

    let mut doc = census::census(&ring.input());
    let group = doc["census_groups"]["postgres.default"]
        .as_object_mut()
        .unwrap();
    let value = group.remove("leader_id").unwrap();
    group.insert("leaderId".into(), value);
    let errors = schemas.errors("census", &doc);
    assert!(
        errors.iter().any(|e| e.contains("\"leader_id\"")),
        "{errors:#?}"
    );

    let mut doc = census::butterfly(&ring.input());
    let member = doc["member"]["members"][id(1).to_string()]
        .as_object_mut()
        .unwrap();
    let value = member.remove("swim_port").unwrap();
    member.insert("swimPort".into(), value);
    let errors = schemas.errors("butterfly", &doc);
    assert!(
        errors.iter().any(|e| e.contains("\"swim_port\"")),
        "{errors:#?}"
    );
}

#[test]
fn a_field_of_the_wrong_type_fails_validation() {
    let ring = Ring::new();
    let schemas = Schemas::load();

    let mut doc = census::butterfly(&ring.input());
    doc["member"]["members"][id(1).to_string()]["swim_port"] = json!("9638");
    let errors = schemas.errors("butterfly", &doc);
    assert!(
        errors.iter().any(|e| e.ends_with("/swim_port")),
        "{errors:#?}"
    );

    let mut doc = census::butterfly(&ring.input());
    doc["node_name_conflicts"]["node-1"] = json!(id(1).to_string());
    let errors = schemas.errors("butterfly", &doc);
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with("/node_name_conflicts/node-1")),
        "{errors:#?}"
    );

    let mut doc = census::census(&ring.input());
    doc["census_groups"]["postgres.default"]["population"][id(1).to_string()]["alive"] = json!(1);
    let errors = schemas.errors("census", &doc);
    assert!(errors.iter().any(|e| e.ends_with("/alive")), "{errors:#?}");
}

#[test]
fn butterfly_has_habitats_top_level_and_member_fields() {
    let ring = Ring::new();
    let ours = census::butterfly(&ring.input());
    let mut sections: Vec<&str> = BUTTERFLY_SECTIONS.iter().map(|(s, _)| *s).collect();
    sections.extend(BUTTERFLY_OUR_FIELDS);
    assert_eq!(keys(&ours), sorted(&sections));
    for (section, fields) in BUTTERFLY_SECTIONS {
        assert_eq!(keys(&ours[section]), sorted(fields), "{section}");
    }
    assert_eq!(
        keys(&first(&ours, "/member/members")),
        sorted(&BUTTERFLY_MEMBER_FIELDS)
    );
    let member = &ours["member"]["members"][id(3).to_string()];
    assert_eq!(member["address"], "172.26.0.3");
    assert_eq!(
        (member["swim_port"].clone(), member["gossip_port"].clone()),
        (json!(9638), json!(9638))
    );
    assert_eq!(ours["member"]["health"][id(3).to_string()], "Suspect");
    assert_eq!(ours["member"]["health"][id(4).to_string()], "Confirmed");
    assert_eq!(
        ours["departure"]["list"]["departure"][id(5).to_string()]["member_id"],
        id(5).to_string()
    );
    let election = &ours["election"]["list"]["postgres.default"]["election"];
    assert_eq!(election["status"], "Finished");
    assert_eq!(election["term"], 4);
    assert_eq!(election["votes"].as_array().unwrap().len(), 3);
    let config = &ours["service_config"]["list"]["postgres.default"]["service_config"];
    assert_eq!(config["config"][0], json!(u8::try_from('m').unwrap()));
    // File bodies (keys, certificates) never leave through the gateway; their names do.
    let file = &ours["service_file"]["list"]["postgres.default"]["server.crt"];
    assert_eq!(
        (&file["filename"], &file["body"]),
        (&json!("server.crt"), &json!([]))
    );
    // The tombstoned postgres rumor of member 5 is not listed; its web rumor is.
    let services = &ours["service"]["list"];
    assert!(services["postgres.default"]
        .get(id(5).to_string())
        .is_none());
    assert!(services["web.prod@acme"].get(id(5).to_string()).is_some());
    assert_eq!(
        services["postgres.default"][id(1).to_string()]["cfg"]["replication"]["slots"],
        json!(["a", "b"])
    );
}

#[test]
fn census_population_has_every_field_of_habitats_sample() {
    let ring = Ring::new();
    let ours = census::census(&ring.input());
    for key in CENSUS_FIELDS {
        assert!(ours.get(key).is_some(), "census lacks {key}");
    }
    let group = first(&ours, "/census_groups");
    for key in CENSUS_GROUP_FIELDS {
        assert!(group.get(key).is_some(), "census group lacks {key}");
    }
    let member = first(&group, "/population");
    for key in CENSUS_MEMBER_FIELDS {
        assert!(member.get(key).is_some(), "population member lacks {key}");
    }
}

/// The keys of a JSON object in document order.
fn keys_in_order(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn census_fields_come_in_habitats_order_and_config_in_its_written_order() {
    // Habitat 2.1.78's `CensusRing`, `CensusGroup` and `CensusMemberProxy` serializers
    // (components/sup/src/census.rs); our own fields after them.
    let ring = Ring::new();
    let ours = census::census(&ring.input());
    assert_eq!(
        keys_in_order(&ours),
        [
            "changed",
            "census_groups",
            "local_member_id",
            "last_service_counter",
            "last_election_counter",
            "last_election_update_counter",
            "last_membership_counter",
            "last_service_config_counter",
            "last_service_file_counter"
        ]
    );
    let group = &ours["census_groups"]["postgres.default"];
    assert_eq!(
        keys_in_order(group),
        [
            "service_group",
            "election_status",
            "update_election_status",
            "pkg_incarnation",
            "leader_id",
            "service_config",
            "local_member_id",
            "population",
            "update_leader_id",
            "changed_service_files",
            "service_files",
            "election_term",
            "update_election_term",
            "electorate",
            "retired_members",
            "update"
        ]
    );
    let member = &group["population"][id(1).to_string()];
    assert_eq!(
        keys_in_order(member),
        [
            "member_id",
            "pkg",
            "pkg_incarnation",
            "package",
            "service",
            "group",
            "org",
            "persistent",
            "leader",
            "follower",
            "update_leader",
            "update_follower",
            "election_is_running",
            "election_is_no_quorum",
            "election_is_finished",
            "update_election_is_running",
            "update_election_is_no_quorum",
            "update_election_is_finished",
            "sys",
            "alive",
            "suspect",
            "confirmed",
            "departed",
            "cfg"
        ]
    );
}

#[test]
fn census_shows_leader_health_pkg_and_parsed_config() {
    let ring = Ring::new();
    let doc = census::census(&ring.input());
    let pg = &doc["census_groups"]["postgres.default"];
    assert_eq!(pg["election_status"], ELECTION_FINISHED);
    assert_eq!(pg["election_term"], 4);
    assert_eq!(pg["leader_id"], id(2).to_string());
    assert_eq!(pg["local_member_id"], id(1).to_string());
    assert_eq!(pg["update_election_status"], "None");
    assert_eq!(pg["update_leader_id"], Value::Null);
    assert_eq!(pg["changed_service_files"], json!([]));
    // Ours: a group with update rumors shows them (no update leader yet: no target).
    assert_eq!(pg["update"]["status"], "idle");
    assert_eq!(pg["update"]["target"], Value::Null);
    assert_eq!(pg["update"]["health"][id(2).to_string()], "Ok");
    assert_eq!(pg["update"]["health"][id(1).to_string()], "Unknown");
    assert!(
        doc["census_groups"]["web.prod@acme"]
            .get("update")
            .is_none(),
        "a group without update rumors shows exactly Habitat's fields"
    );
    assert_eq!(pg["service_config"]["incarnation"], 1_534_943_508);
    assert_eq!(
        pg["service_config"]["value"],
        json!({"max_connections": 200, "log": {"level": "info"}})
    );
    assert_eq!(pg["service_files"]["server.crt"]["incarnation"], 3);
    assert_eq!(pg["service_files"]["server.crt"]["filename"], "server.crt");
    assert_eq!(pg["service_files"]["server.crt"]["body"], json!([]));

    let pop = &pg["population"];
    assert_eq!(
        pop.as_object().unwrap().len(),
        3,
        "tombstoned member 5 is not in postgres"
    );
    let leader = &pop[id(2).to_string()];
    assert_eq!(
        (leader["leader"].clone(), leader["follower"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(leader["persistent"], true);
    assert_eq!(leader["election_is_finished"], true);
    assert_eq!(leader["election_is_running"], false);
    let me = &pop[id(1).to_string()];
    assert_eq!(
        (me["leader"].clone(), me["follower"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(me["alive"], true);
    assert_eq!(me["cfg"]["replication"]["user"], "repl");
    assert_eq!(me["sys"]["gossip_ip"], "172.26.0.1");
    assert_eq!(
        me["pkg"],
        json!({"origin": "core", "name": "postgresql", "version": "15.2", "release": "20260101000000"})
    );
    assert_eq!(
        (
            me["service"].clone(),
            me["group"].clone(),
            me["org"].clone()
        ),
        (json!("postgres"), json!("default"), Value::Null)
    );
    let suspect = &pop[id(3).to_string()];
    assert_eq!(
        (suspect["alive"].clone(), suspect["suspect"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(suspect["cfg"], json!({}), "undecodable cfg shows as {{}}");

    let web = &doc["census_groups"]["web.prod@acme"];
    assert_eq!(
        web["org"],
        Value::Null,
        "org is a member field, not a group field"
    );
    assert_eq!(web["update_election_status"], "ElectionInProgress");
    assert_eq!(web["update_election_term"], 1);
    let departed = &web["population"][id(5).to_string()];
    assert_eq!(
        (departed["departed"].clone(), departed["alive"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(departed["org"], "acme");
    assert_eq!(departed["update_election_is_running"], true);
    assert_eq!(web["population"][id(4).to_string()]["confirmed"], true);

    let typed = census::census_groups(&ring.input());
    assert_eq!(typed.len(), 2);
    assert_eq!(typed[0].leader().map(|m| m.member_id), Some(id(2)));
    assert_eq!(
        typed[0].me().and_then(|m| m.cfg["port"].as_integer()),
        Some(5432)
    );
}

// --- /services

fn services_entry(status: &habitat_sidecar::service::status::ServiceStatus) -> Value {
    use habitat_sidecar::binds::{self, BindingMode};
    use habitat_sidecar::http::services::service_json;
    use habitat_sidecar::service::runtime::{pkg_context, ServiceSpec};
    use habitat_sidecar::template::context::SysContext;
    let tmp = tempfile::tempdir().unwrap();
    let pkg_dir = tmp.path().join("pkg");
    std::fs::create_dir_all(pkg_dir.join("hooks")).unwrap();
    for (file, content) in [
        ("IDENT", "core/web/2.1.0/20260202020202"),
        ("BINDS", "database=port\n"),
        ("EXPORTS", "port=http.port\n"),
        ("EXPOSES", "8080\n"),
        ("SHUTDOWN_SIGNAL", "INT\n"),
        ("DEPS", "core/glibc/2.35/20230101000000\n"),
        ("default.toml", "[http]\nport = 8080\n"),
        ("hooks/run", "#!/bin/sh\n"),
        ("hooks/health-check", "#!/bin/sh\n"),
    ] {
        std::fs::write(pkg_dir.join(file), content).unwrap();
    }
    let package = habitat_sidecar::package::Package::load(&pkg_dir).unwrap();
    let bindings =
        binds::validate(&package, &["database:postgres.default".parse().unwrap()]).unwrap();
    let spec = ServiceSpec {
        service_group: group("web.default"),
        package,
        topology: habitat_sidecar::service::Topology::Initializer,
        bindings,
        binding_mode: BindingMode::Strict,
        health_check_interval: std::time::Duration::from_secs(30),
        root: PathBuf::from("/hab"),
        sys: SysContext::new("0.1.0/habitat-rs", id(1), &SysInfo::default(), false),
        env_layer: None,
        hook_timeouts: Default::default(),
        backoff: Default::default(),
    };
    service_json(
        &spec,
        status,
        &pkg_context(&spec),
        Path::new("/hab/sup/default"),
        ELECTION_FINISHED,
    )
}

#[test]
fn services_validate_against_the_schema() {
    use habitat_sidecar::service::health::HealthStatus;
    use habitat_sidecar::service::status::{
        KeptEncrypted, LastProcess, ServiceStatus, Termination,
    };
    let schemas = Schemas::load();
    let fresh = ServiceStatus::default();
    let running = ServiceStatus {
        pid: Some(4242),
        state_entered: 1_700_000_000,
        health: HealthStatus::Warning,
        initialized: true,
        restart_count: 2,
        last_process: Some(LastProcess {
            pid: Some(4000),
            reason: Termination::RunHookFailed,
            at: 1_699_999_990,
        }),
        suitability: Some(7),
        cfg: toml::from_str("[http]\nport = 8080\nlisten = [\"a\", \"b\"]\n").unwrap(),
        hooks: ["run".to_string(), "health-check".to_string()].into(),
        desired_up: true,
        kept_encrypted: vec![KeptEncrypted {
            filename: Some("tls.key".into()),
            incarnation: 3,
            reason: "cannot decrypt: no secret key web.default-20260101000000 in /hab/cache/keys"
                .into(),
        }],
        ..ServiceStatus::default()
    };
    for status in [fresh, running.clone()] {
        let entry = services_entry(&status);
        assert_valid(&schemas, "services", &json!([entry]));
    }
    assert_eq!(
        services_entry(&running)["kept_encrypted"],
        json!([{
            "kind": "file",
            "filename": "tls.key",
            "incarnation": 3,
            "reason": "cannot decrypt: no secret key web.default-20260101000000 in /hab/cache/keys",
        }])
    );
    assert_eq!(
        services_entry(&ServiceStatus::default())["kept_encrypted"],
        json!([])
    );
    let entry = services_entry(&ServiceStatus {
        pid: Some(1),
        health: HealthStatus::Critical,
        hooks: ["run".to_string()].into(),
        ..ServiceStatus::default()
    });
    assert_eq!(entry["health_check"], "Critical");
    assert_eq!(entry["process"]["state"], "up");
    assert_eq!(entry["binds"], json!(["database:postgres.default"]));
    assert_eq!(entry["pkg"]["shutdown_signal"], "INT");
    assert_eq!(
        entry["hooks"]["run"]["render_pair"],
        "/hab/svc/web/hooks/run"
    );
    assert!(entry["hooks"]["health_check"].is_null());
    // Our topologies are Habitat's plus initializer, and nothing else.
    assert_eq!(entry["topology"], "initializer");
    let mut bad = entry.clone();
    bad["topology"] = json!("follower");
    let errors = schemas.errors("services", &json!([bad]));
    assert!(
        errors.iter().any(|e| e.ends_with("/topology")),
        "{errors:#?}"
    );
}
