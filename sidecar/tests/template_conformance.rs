//! Templates render as Habitat renders them: every helper's output (expected values written from
//! Habitat's helper code and docs), eachAlive's 1-based `@index`, handlebars context switching
//! and whitespace control, bind contexts, value rendering quirks, and a render context that
//! validates against our schema of Habitat's context (`tests/schemas/render_context.schema.json`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod support;

use support::{assert_valid, Schemas};

use habitat_sidecar::census::{CensusGroup, CensusMember, ELECTION_FINISHED, ELECTION_IN_PROGRESS};
use habitat_sidecar::gossip::member::{Health, MemberId};
use habitat_sidecar::gossip::rumor::{ServiceGroup, SysInfo};
use habitat_sidecar::package::PackageIdent;
use habitat_sidecar::template::{
    render_context, PkgContext, RenderInput, Renderer, SysContext, TemplateError,
};
use serde_json::{json, Value};

// --- Fixtures: a census group of five members in every health, and a bound group.

fn id(n: u8) -> MemberId {
    MemberId([n; 16])
}

fn sys_info(n: u8) -> SysInfo {
    SysInfo {
        ip: format!("10.0.0.{n}"),
        hostname: format!("node-{n}"),
        gossip_ip: format!("10.0.0.{n}"),
        gossip_port: 9638,
        http_gateway_ip: "0.0.0.0".into(),
        http_gateway_port: 9631,
        ctl_gateway_ip: "127.0.0.1".into(),
        ctl_gateway_port: 9632,
    }
}

fn member(n: u8, health: Health, package: &str, cfg: &str) -> CensusMember {
    CensusMember {
        incarnation: 1,
        initialized: true,
        health,
        ..CensusMember::new(id(n), package, toml::from_str(cfg).unwrap(), sys_info(n))
    }
}

fn group(name: &str, members: Vec<CensusMember>) -> CensusGroup {
    CensusGroup {
        members,
        ..CensusGroup::empty(ServiceGroup::parse(name).unwrap(), id(1))
    }
}

const REDIS: &str = "core/redis/7.0.0/20260101000000";

/// Members 1..=5: alive, suspect, alive, confirmed, departed, alive(6). Member 1 is us.
fn redis_group() -> CensusGroup {
    group(
        "redis.default",
        vec![
            member(1, Health::Alive, REDIS, "port = 6379"),
            member(2, Health::Suspect, REDIS, "port = 6380"),
            member(3, Health::Alive, REDIS, "port = 6381"),
            member(4, Health::Confirmed, REDIS, "port = 6382"),
            member(5, Health::Departed, REDIS, "port = 6383"),
            member(6, Health::Alive, REDIS, "port = 6384"),
        ],
    )
}

/// A finished election won by member 3 in term 7.
fn with_leader(mut g: CensusGroup, leader: u8, term: u64) -> CensusGroup {
    g.leader_id = Some(id(leader));
    g.election_status = ELECTION_FINISHED;
    g.election_term = Some(term);
    for m in &mut g.members {
        m.leader = m.member_id == id(leader);
        m.follower = !m.leader;
    }
    g
}

fn db_group() -> CensusGroup {
    let pg = "core/postgresql/15.0.0/20260101000000";
    with_leader(
        group(
            "postgresql.prod@acme",
            vec![
                member(7, Health::Confirmed, pg, "port = 5431"),
                member(8, Health::Alive, pg, "port = 5432\nhost = \"db-8\""),
                member(9, Health::Alive, pg, "port = 5433\nhost = \"db-9\""),
            ],
        ),
        9,
        3,
    )
}

fn sys() -> SysContext {
    SysContext::new("0.1.0/habitat-rs", id(1), &sys_info(1), true)
}

fn pkg() -> PkgContext {
    let ident: PackageIdent = REDIS.parse().unwrap();
    let mut pkg = PkgContext::new(
        &ident,
        Path::new("/hab/pkgs/core/redis/7.0.0/20260101000000"),
        Path::new("/hab/svc/redis"),
        "hab",
        "hab",
        &[("port".into(), "port".into())],
    );
    pkg.deps = vec![
        "core/glibc/2.36/20250101000000".parse().unwrap(),
        "core/openssl/3.0.9/20250202000000".parse().unwrap(),
    ];
    pkg.env
        .insert("PATH".into(), "/hab/pkgs/core/redis/bin".into());
    pkg.exposes = vec!["6379".into()];
    pkg
}

const CFG: &str = r#"
port = 6379
name = "Redis <Main> & \"co\""
list = ["a", "b", 3]
empty = []
[tls]
enabled = true
cert = "/etc/cert.pem"
"#;

/// The context for `redis_group` with `bind.db` bound to `db_group`.
fn context_of(svc: &CensusGroup) -> Value {
    let db = db_group();
    let binds: BTreeMap<String, &CensusGroup> = BTreeMap::from([("db".to_string(), &db)]);
    let cfg: toml::Table = toml::from_str(CFG).unwrap();
    let (sys, pkg) = (sys(), pkg());
    render_context(&RenderInput {
        sys: &sys,
        pkg: &pkg,
        cfg: &cfg,
        svc,
        binds: &binds,
    })
}

fn context() -> Value {
    context_of(&with_leader(redis_group(), 3, 7))
}

fn render(template: &str, ctx: &Value) -> String {
    let mut r = Renderer::new();
    r.add_template("t", template).unwrap();
    r.render_one("t", ctx)
        .unwrap_or_else(|e| panic!("{template}: {e}"))
}

fn render_err(template: &str, ctx: &Value) -> String {
    let mut r = Renderer::new();
    r.add_template("t", template).unwrap();
    r.render_one("t", ctx).unwrap_err().to_string()
}

// --- Helpers

#[test]
fn str_concat_joins_values_as_json_text_without_quotes() {
    let ctx = json!({"a": "x\"y", "n": 3, "b": true, "list": ["p", 1], "obj": {"k": 1}});
    assert_eq!(
        render(r#"{{strConcat "foo" "bar" "baz"}}"#, &ctx),
        "foobarbaz"
    );
    // Quotes vanish (an escaped one leaves its backslash), numbers and booleans print as JSON, arrays compactly, objects are dropped,
    // and a missing value prints as `null`: all Habitat's.
    assert_eq!(
        render("{{strConcat a n b list obj missing}}", &ctx),
        "x\\y3true[p,1]null"
    );
}

#[test]
fn str_join_joins_non_object_items_with_the_separator() {
    let ctx = json!({"list": ["foo", "bar", 3, {"o": 1}, [1, "z"]], "objs": [{"foo": "bar"}]});
    assert_eq!(render(r#"{{strJoin list ","}}"#, &ctx), "foo,bar,3,[1,z]");
    assert_eq!(render(r#"{{strJoin objs ","}}"#, &ctx), "");
    let err = render_err(r#"{{strJoin "notalist" ","}}"#, &ctx);
    assert!(
        err.contains("Expected 2 parameters for \"strJoin\""),
        "{err}"
    );
}

#[test]
fn str_replace_replaces_every_occurrence() {
    let ctx = json!({"path": "/a/b/a"});
    assert_eq!(render(r#"{{strReplace path "a" "z"}}"#, &ctx), "/z/b/z");
    let err = render_err(r#"{{strReplace path 1 "z"}}"#, &ctx);
    assert!(
        err.contains("Expected 3 string parameters for \"strReplace\""),
        "{err}"
    );
}

#[test]
fn case_helpers_change_case_of_strings_only() {
    let ctx = json!({"s": "MiXed ÄÖ", "n": 1});
    assert_eq!(render("{{toUppercase s}}", &ctx), "MIXED ÄÖ");
    assert_eq!(render("{{toLowercase s}}", &ctx), "mixed äö");
    let err = render_err("{{toUppercase n}}", &ctx);
    assert!(
        err.contains("Expected a string parameter for \"toUppercase\""),
        "{err}"
    );
    let err = render_err("{{toLowercase missing}}", &ctx);
    assert!(err.contains("toLowercase"), "{err}");
}

#[test]
fn to_json_pretty_prints_with_two_spaces() {
    let ctx = context();
    assert_eq!(
        render("{{toJson cfg.tls}}", &ctx),
        "{\n  \"enabled\": true,\n  \"cert\": \"/etc/cert.pem\"\n}"
    );
    assert_eq!(
        render("{{toJson cfg.list}}", &ctx),
        "[\n  \"a\",\n  \"b\",\n  3\n]"
    );
    assert_eq!(render("{{toJson cfg.port}}", &ctx), "6379");
}

#[test]
fn to_toml_writes_a_toml_document_with_values_before_tables() {
    let ctx = context();
    assert_eq!(
        render("{{toToml cfg.tls}}", &ctx),
        "enabled = true\ncert = \"/etc/cert.pem\"\n"
    );
    let whole = render("{{toToml cfg}}", &ctx);
    let back: toml::Table = toml::from_str(&whole).unwrap();
    assert_eq!(back, toml::from_str::<toml::Table>(CFG).unwrap());
    assert!(
        whole.ends_with("[tls]\nenabled = true\ncert = \"/etc/cert.pem\"\n"),
        "{whole}"
    );
    // A value that is not a table is written as a TOML value, as Habitat's helper does.
    assert_eq!(render("{{toToml cfg.port}}", &ctx), "6379");
    assert_eq!(render("{{toToml cfg.list}}", &ctx), "[\"a\", \"b\", 3]");
    let err = render_err("{{toToml}}", &ctx);
    assert!(err.contains("toToml"), "{err}");
}

#[test]
fn to_yaml_writes_a_yaml_document() {
    let ctx = context();
    assert_eq!(
        render("{{toYaml cfg.tls}}", &ctx),
        "enabled: true\ncert: /etc/cert.pem\n"
    );
    assert_eq!(render("{{toYaml cfg.list}}", &ctx), "- a\n- b\n- 3\n");
}

#[test]
fn pkg_path_for_finds_the_dependency_install_path() {
    let ctx = context();
    assert_eq!(
        render(r#"{{pkgPathFor "core/openssl"}}"#, &ctx),
        "/hab/pkgs/core/openssl/3.0.9/20250202000000"
    );
    assert_eq!(
        render(r#"{{pkgPathFor "core/openssl/3.0.9"}}"#, &ctx),
        "/hab/pkgs/core/openssl/3.0.9/20250202000000"
    );
    assert_eq!(render(r#"{{pkgPathFor "core/openssl/1.1"}}"#, &ctx), "");
    assert_eq!(render(r#"{{pkgPathFor "core/zlib"}}"#, &ctx), "");
    let err = render_err(r#"{{pkgPathFor "not an ident"}}"#, &ctx);
    assert!(
        err.contains("Invalid package identifier for \"pkgPathFor\""),
        "{err}"
    );
    let mut rooted = Renderer::with_fs_root(Path::new("/tmp/root"));
    rooted
        .add_template("t", r#"{{pkgPathFor "core/glibc"}}"#)
        .unwrap();
    assert_eq!(
        rooted.render_one("t", &ctx).unwrap(),
        "/tmp/root/pkgs/core/glibc/2.36/20250101000000"
    );
}

// --- eachAlive

#[test]
fn each_alive_skips_suspect_confirmed_and_departed_members() {
    let ctx = context_of(&redis_group());
    // svc.members holds the active members (alive and suspect); eachAlive keeps the alive.
    let members: Vec<&str> = ctx["svc"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sys"]["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["node-1", "node-2", "node-3", "node-6"]);
    assert_eq!(
        render(
            "{{#eachAlive svc.members as |m|}}{{@index}}:{{m.sys.hostname}}\
             {{#if @first}}(first){{/if}}{{#if @last}}(last){{/if}} {{/eachAlive}}",
            &ctx
        ),
        "1:node-1(first) 2:node-3 3:node-6(last) "
    );
}

#[test]
fn each_alive_counts_index_from_one_over_a_raw_list() {
    let ctx = json!({"list": [
        {"alive": false, "n": "a"},
        {"alive": true, "n": "b"},
        {"n": "no-flag"},
        "not an object",
        {"alive": true, "n": "c"},
        {"alive": "yes", "n": "not a bool"},
    ]});
    assert_eq!(
        render(
            "{{#eachAlive list}}[{{@index}} {{n}} {{@first}} {{@last}}]{{/eachAlive}}",
            &ctx
        ),
        "[1 b true false][2 c false true]"
    );
}

#[test]
fn each_alive_keeps_parent_and_root_reachable() {
    let ctx = context_of(&redis_group());
    assert_eq!(
        render(
            "{{#eachAlive svc.members}}{{cfg.port}}@{{../svc.service}}/{{@root.pkg.name}} {{/eachAlive}}",
            &ctx
        ),
        "6379@redis/redis 6381@redis/redis 6384@redis/redis "
    );
}

#[test]
fn each_alive_renders_else_for_an_empty_list_and_iterates_one_alive_member() {
    let ctx = json!({"none": [], "one": {"alive": true, "b": 2, "a": 1}, "dead": {"alive": false, "a": 1}});
    assert_eq!(
        render("{{#eachAlive none}}x{{else}}nobody{{/eachAlive}}", &ctx),
        "nobody"
    );
    assert_eq!(
        render("{{#eachAlive one}}{{@key}}={{this}};{{/eachAlive}}", &ctx),
        "alive=true;b=2;a=1;"
    );
    assert_eq!(
        render("{{#eachAlive dead}}{{@key}}{{/eachAlive}}", &ctx),
        ""
    );
    let err = render_err("{{#eachAlive one.a}}x{{/eachAlive}}", &ctx);
    assert!(err.contains("not iterable"), "{err}");
}

// --- Handlebars behaviour Habitat templates rely on

#[test]
fn each_and_with_switch_context_and_reach_back() {
    let ctx = context();
    assert_eq!(
        render(
            "{{#with svc.me}}{{sys.hostname}} of {{../svc.service}}.{{../svc.group}}{{/with}}",
            &ctx
        ),
        "node-1 of redis.default"
    );
    assert_eq!(
        render(
            "{{#each cfg.list}}{{@index}}={{this}}/{{../cfg.port}}/{{@root.svc.service}} {{/each}}",
            &ctx
        ),
        "0=a/6379/redis 1=b/6379/redis 2=3/6379/redis "
    );
    assert_eq!(
        render("{{#each cfg.tls}}{{@key}}:{{this}};{{/each}}", &ctx),
        "enabled:true;cert:/etc/cert.pem;"
    );
    assert_eq!(
        render("{{#if cfg.tls.enabled}}tls{{else}}plain{{/if}}", &ctx),
        "tls"
    );
    assert_eq!(render("{{#unless cfg.empty}}none{{/unless}}", &ctx), "none");
}

#[test]
fn whitespace_control_strips_around_tags() {
    let ctx = context();
    // `~` strips all whitespace, newlines included, on its side of the tag.
    let template = "servers:\n  {{~#each cfg.list}}\n  - {{this}}\n  {{~/each}}\nend";
    assert_eq!(render(template, &ctx), "servers:  - a  - b  - 3end");
    assert_eq!(render("a  \n {{~cfg.port}}  b", &ctx), "a6379  b");
    assert_eq!(render("a {{cfg.port~}} \n b", &ctx), "a 6379b");
    assert_eq!(render("a   {{~ cfg.port ~}}   b", &ctx), "a6379b");
    assert_eq!(
        render("[{{#each cfg.list~}} \n {{this}} {{~/each}}]", &ctx),
        "[ab3]"
    );
    // Without `~`, a block tag alone on its line leaves no blank line behind.
    assert_eq!(
        render("x:\n{{#each cfg.list}}\n- {{this}}\n{{/each}}\nend", &ctx),
        "x:\n- a\n- b\n- 3\nend"
    );
}

#[test]
fn values_render_like_habitat_arrays_objects_missing_and_unescaped() {
    let ctx = context();
    assert_eq!(render("{{cfg.list}}", &ctx), "[a, b, 3]");
    assert_eq!(render("{{cfg.empty}}", &ctx), "[]");
    assert_eq!(render("{{cfg.tls}}", &ctx), "[object]");
    assert_eq!(render("<{{cfg.nope}}|{{nope.deeper.still}}>", &ctx), "<|>");
    assert_eq!(render("{{cfg.name}}", &ctx), "Redis <Main> & \"co\"");
    assert_eq!(render("{{{cfg.name}}}", &ctx), "Redis <Main> & \"co\"");
    assert_eq!(
        render("{{cfg.tls.enabled}} {{cfg.port}}", &ctx),
        "true 6379"
    );
}

// --- The render context

#[test]
fn bind_context_lists_active_members_leader_and_first() {
    let ctx = context();
    let db = &ctx["bind"]["db"];
    let hosts: Vec<&str> = db["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["cfg"]["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["db-8", "db-9"]);
    assert_eq!(db["leader"]["cfg"]["host"], "db-9");
    assert_eq!(db["first"]["cfg"]["host"], "db-9");
    assert_eq!(db["leader"]["org"], "acme");
    assert_eq!(db["leader"]["term"], 3);
    assert_eq!(
        render(
            "{{#eachAlive bind.db.members as |m|}}{{m.sys.ip}}:{{m.cfg.port}}{{#unless @last}},{{/unless}}{{/eachAlive}} \
             leader={{bind.db.leader.sys.ip}} {{#if bind.cache}}cache{{else}}no cache{{/if}}",
            &ctx
        ),
        "10.0.0.8:5432,10.0.0.9:5433 leader=10.0.0.9 no cache"
    );
}

#[test]
fn finished_election_shows_leader_flags_and_term() {
    let ctx = context();
    let svc = &ctx["svc"];
    assert_eq!(svc["election_is_finished"], true);
    assert_eq!(svc["election_is_running"], false);
    assert_eq!(svc["term"], 7);
    assert_eq!(svc["me"]["term"], 7);
    assert_eq!(svc["me"]["follower"], true);
    assert_eq!(svc["leader"]["member_id"], id(3).to_string());
    assert_eq!(svc["first"]["member_id"], id(3).to_string());
    assert_eq!(svc["update_leader"], Value::Null);
    assert!(svc.get("update_term").is_none());
    assert_eq!(
        render(
            "{{#if svc.me.leader}}leader{{else}}follow {{svc.leader.sys.ip}} (term {{svc.me.term}}){{/if}}",
            &ctx
        ),
        "follow 10.0.0.3 (term 7)"
    );
}

#[test]
fn running_election_has_no_leader_and_no_term() {
    let mut g = redis_group();
    g.election_status = ELECTION_IN_PROGRESS;
    g.election_term = Some(8);
    let ctx = context_of(&g);
    let svc = &ctx["svc"];
    assert_eq!(svc["election_is_running"], true);
    assert_eq!(svc["me"]["election_is_running"], true);
    assert!(svc.get("term").is_none());
    assert!(svc["me"].get("term").is_none());
    assert_eq!(svc["leader"], Value::Null);
    // No leader: `first` is the first member of all, as Habitat keeps it.
    assert_eq!(svc["first"]["member_id"], id(1).to_string());
    assert_eq!(render("[{{svc.me.term}}]", &ctx), "[]");
}

#[test]
fn local_member_missing_from_the_census_is_described_from_sys_and_pkg() {
    let mut g = redis_group();
    g.members.retain(|m| m.member_id != id(1));
    let ctx = context_of(&g);
    let me = &ctx["svc"]["me"];
    assert_eq!(me["member_id"], id(1).to_string());
    assert_eq!(me["alive"], true);
    assert_eq!(me["persistent"], true);
    assert_eq!(me["cfg"], json!({"port": 6379}));
    assert_eq!(me["pkg"]["name"], "redis");
    assert_eq!(me["sys"]["ip"], "10.0.0.1");
    let empty = context_of(&group("redis.default", Vec::new()));
    assert_eq!(empty["svc"]["first"]["member_id"], id(1).to_string());
    assert_eq!(empty["svc"]["members"], json!([]));
}

#[test]
fn sys_and_pkg_have_habitat_fields() {
    let ctx = context();
    assert_eq!(ctx["sys"]["member_id"], id(1).to_string());
    assert_eq!(ctx["sys"]["version"], "0.1.0/habitat-rs");
    assert_eq!(ctx["sys"]["permanent"], true);
    let pkg = &ctx["pkg"];
    assert_eq!(pkg["ident"], REDIS);
    assert_eq!(pkg["svc_config_path"], "/hab/svc/redis/config");
    assert_eq!(pkg["svc_pid_file"], "/hab/svc/redis/PID");
    assert_eq!(pkg["svc_run"], "/hab/svc/redis/run");
    assert_eq!(pkg["exports"], json!({"port": "port"}));
    assert_eq!(pkg["deps"][1]["name"], "openssl");
    assert_eq!(
        render("{{pkg.env.PATH}} {{pkg.exposes}}", &ctx),
        "/hab/pkgs/core/redis/bin [6379]"
    );
}

// --- Validation against our schema of Habitat's render context

#[test]
fn render_context_validates_against_the_schema() {
    let schemas = Schemas::load();
    let mut no_leader = redis_group();
    no_leader.members.retain(|m| m.member_id != id(1));
    for ctx in [
        context(),
        context_of(&redis_group()),
        context_of(&no_leader),
    ] {
        assert_valid(&schemas, "render_context", &ctx);
    }

    // Each of these is a Habitat field: without it the context is rejected, naming it.
    for (parent, field) in [
        ("/svc/me", "alive"),
        ("/svc/me", "pkg_incarnation"),
        ("/sys", "member_id"),
        ("/pkg", "svc_run"),
        ("/bind/db", "leader"),
    ] {
        let mut broken = context();
        let removed = broken
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .and_then(|map| map.remove(field));
        assert!(removed.is_some(), "{parent} has no {field}");
        let errors = schemas.errors("render_context", &broken);
        assert!(
            errors.iter().any(|e| e.contains(&format!("\"{field}\""))),
            "{parent}/{field}: {errors:#?}"
        );
    }

    let mut broken = context();
    broken["svc"]["me"]["alive"] = json!("yes");
    assert!(!schemas.errors("render_context", &broken).is_empty());
}

// --- Compiling a package's config tree and hooks

#[test]
fn load_dir_compiles_every_file_by_relative_path_and_renders_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("conf.d")).unwrap();
    std::fs::write(config.join("redis.conf"), "port {{cfg.port}}\n").unwrap();
    std::fs::write(config.join("conf.d/tls.conf"), "tls {{cfg.tls.enabled}}\n").unwrap();
    let renderer = Renderer::load_dir(&config).unwrap();
    assert_eq!(renderer.config_names(), ["conf.d/tls.conf", "redis.conf"]);
    let out = renderer.render_all(&context()).unwrap();
    assert_eq!(
        out,
        BTreeMap::from([
            (PathBuf::from("conf.d/tls.conf"), "tls true\n".to_string()),
            (PathBuf::from("redis.conf"), "port 6379\n".to_string()),
        ])
    );
    assert!(matches!(
        renderer.render_one("nope", &context()),
        Err(TemplateError::NotFound(_))
    ));
}

#[test]
fn compile_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("ok.conf"), "fine\n").unwrap();
    std::fs::write(
        config.join("bad.conf"),
        "line one\nline two\n{{#if cfg.port}}\nunclosed\n{{/each}}\n",
    )
    .unwrap();
    let err = Renderer::load_dir(&config).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.conf"), "{text}");
    match err {
        TemplateError::Compile { line, .. } => assert_eq!(line, Some(5), "{text}"),
        other => panic!("expected a compile error, got {other:?}"),
    }
    let missing = Renderer::load_dir(&dir.path().join("absent")).unwrap_err();
    assert!(missing.to_string().contains("absent"), "{missing}");
}

#[test]
fn hooks_compile_as_templates_outside_the_config_set() {
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("run");
    std::fs::write(
        &hook,
        "#!/bin/sh\nexec redis-server {{pkg.svc_config_path}}/redis.conf --port {{cfg.port}}\n",
    )
    .unwrap();
    let renderer = Renderer::from_files(&[("hooks/run", hook.as_path())]).unwrap();
    assert!(renderer.config_names().is_empty());
    assert!(renderer.render_all(&context()).unwrap().is_empty());
    assert_eq!(
        renderer.render_one("hooks/run", &context()).unwrap(),
        "#!/bin/sh\nexec redis-server /hab/svc/redis/config/redis.conf --port 6379\n"
    );
}

#[test]
fn renderer_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>(_: &T) -> bool {
        true
    }
    let renderer = Renderer::new();
    assert!(shareable(&renderer));
    assert!(renderer.config_names().is_empty());
}

/// The keys of `path` in the order `#each` walks them.
fn keys_of(path: &str, ctx: &Value) -> String {
    render(
        &format!("{{{{#each {path}}}}}{{{{@key}}}} {{{{/each}}}}"),
        ctx,
    )
}

#[test]
fn context_objects_list_their_fields_in_habitats_order() {
    // Habitat 2.1.78: the render context (`RenderContext`, `SystemInfo`, `Package` and `Svc` in
    // components/sup/src/manager/service/context.rs) and a census member
    // (`CensusMemberProxy` in components/sup/src/census.rs). Our own fields come after.
    let ctx = context();
    assert_eq!(keys_of("this", &ctx), "sys pkg cfg svc bind ");
    assert_eq!(
        keys_of("sys", &ctx),
        "version member_id ip hostname gossip_ip gossip_port http_gateway_ip \
         http_gateway_port ctl_gateway_ip ctl_gateway_port permanent "
    );
    assert_eq!(
        keys_of("pkg", &ctx),
        "ident origin name version release deps env exposes exports path svc_path \
         svc_config_path svc_data_path svc_files_path svc_static_path svc_var_path \
         svc_pid_file svc_run svc_user svc_group "
    );
    assert_eq!(
        keys_of("svc", &ctx),
        "service group org election_is_running election_is_no_quorum election_is_finished \
         update_election_is_running update_election_is_no_quorum update_election_is_finished \
         me members leader first update_leader service_group term "
    );
    let member = "member_id pkg pkg_incarnation package service group org persistent leader \
         follower update_leader update_follower election_is_running election_is_no_quorum \
         election_is_finished update_election_is_running update_election_is_no_quorum \
         update_election_is_finished sys alive suspect confirmed departed cfg ";
    assert_eq!(keys_of("svc.me", &ctx), format!("{member}term "));
    assert_eq!(keys_of("svc.me.pkg", &ctx), "origin name version release ");
    assert_eq!(
        keys_of("svc.me.sys", &ctx),
        "ip hostname gossip_ip gossip_port http_gateway_ip http_gateway_port ctl_gateway_ip \
         ctl_gateway_port "
    );
    assert_eq!(keys_of("bind.db", &ctx), "first leader members ");
    // The members' exported config keeps its written order.
    assert_eq!(keys_of("cfg", &ctx), "port name list empty tls ");
}
