//! Config layers end to end: a package on disk, `HAB_<PKG>` through an injected environment,
//! `user.toml` under a root directory polled through the watcher, and gossiped config on top.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use habitat_sidecar::config::{load_layers, user_toml_path, LayerSource, Layers, UserTomlWatch};
use habitat_sidecar::package::Package;

fn t(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn write_pkg(dir: &Path) -> Package {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("IDENT"),
        "core/redis-server/7.0.1/20260101000000\n",
    )
    .unwrap();
    fs::write(
        dir.join("default.toml"),
        "port = 6379\nbind = ['0.0.0.0']\n[tls]\nenabled = false\nport = 6380\n",
    )
    .unwrap();
    Package::load(dir).unwrap()
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn every_layer_loads_from_its_place_and_merges_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = write_pkg(&tmp.path().join("pkg"));
    let root = tmp.path().join("root");
    let user = user_toml_path(&root, pkg.name());
    assert!(user.ends_with("user/redis-server/config/user.toml"));
    fs::create_dir_all(user.parent().unwrap()).unwrap();
    fs::write(&user, "bind = ['127.0.0.1']\n[tls]\nport = 7000\n").unwrap();
    let env = env_of(&[(
        "HAB_REDIS_SERVER",
        r#"{"tls": {"enabled": true}, "port": 1}"#,
    )]);
    let gossip = t("port = 9999");

    let layers = load_layers(pkg.defaults(), &root, &env, Some((3, &gossip))).unwrap();
    assert_eq!(layers.gossip.as_ref().map(|g| g.0), Some(3));
    assert_eq!(
        layers.merged(),
        t("port = 9999\nbind = ['127.0.0.1']\n[tls]\nenabled = true\nport = 7000\n")
    );
}

/// The keys of a table in order.
fn keys(table: &toml::Table) -> Vec<&str> {
    table.keys().map(String::as_str).collect()
}

#[test]
fn merged_keys_keep_their_place_and_new_ones_follow_in_layer_order() {
    let layers = Layers {
        default: t("zeta = 1\nalpha = 2\n[rules]\ndeny = 1\nallow = 2\n"),
        env: Some(t("new_env = 1\nalpha = 20\n")),
        user: Some(t("mu = 3\nzeta = 10\n[rules]\naudit = 3\ndeny = 0\n")),
        gossip: Some((1, t("gossip_new = 4\n[rules]\nallow = 0\nlast = 5\n"))),
    };
    let merged = layers.merged();
    assert_eq!(
        keys(&merged),
        ["zeta", "alpha", "rules", "new_env", "mu", "gossip_new"]
    );
    let rules = merged["rules"].as_table().unwrap();
    assert_eq!(keys(rules), ["deny", "allow", "audit", "last"]);
    assert_eq!(
        (merged["zeta"].as_integer(), rules["deny"].as_integer()),
        (Some(10), Some(0))
    );
}

#[test]
fn missing_optional_layers_leave_the_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = write_pkg(&tmp.path().join("pkg"));
    let layers = load_layers(pkg.defaults(), &tmp.path().join("root"), &env_of(&[]), None).unwrap();
    assert_eq!(
        layers,
        Layers {
            default: pkg.default_toml.clone(),
            ..Layers::default()
        }
    );
    assert_eq!(layers.merged(), pkg.default_toml);
}

#[test]
fn a_bad_layer_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = write_pkg(&tmp.path().join("pkg"));
    let root = tmp.path().join("root");
    let err = load_layers(
        pkg.defaults(),
        &root,
        &env_of(&[("HAB_REDIS_SERVER", "port = =")]),
        None,
    )
    .unwrap_err();
    assert_eq!(err.layer, LayerSource::Env("HAB_REDIS_SERVER".into()));
    assert!(err
        .to_string()
        .starts_with("HAB_REDIS_SERVER: expected a TOML or JSON table"));

    let user = user_toml_path(&root, pkg.name());
    fs::create_dir_all(user.parent().unwrap()).unwrap();
    fs::write(&user, "[tls\n").unwrap();
    let err = load_layers(pkg.defaults(), &root, &env_of(&[]), None).unwrap_err();
    assert_eq!(err.layer, LayerSource::User(user.clone()));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: TOML syntax error at line 1", user.display())),
        "{text}"
    );
}

#[test]
fn user_toml_edits_are_seen_by_the_watcher_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = write_pkg(&tmp.path().join("pkg"));
    let root = tmp.path().join("root");
    let user = user_toml_path(&root, pkg.name());
    let mut layers = load_layers(pkg.defaults(), &root, &env_of(&[]), None).unwrap();
    let mut watch = UserTomlWatch::new(&user);
    assert!(!watch.changed());

    fs::create_dir_all(user.parent().unwrap()).unwrap();
    fs::write(&user, "port = 7001\n").unwrap();
    assert!(watch.changed());
    assert!(layers.reload_user(watch.path()).unwrap());
    assert_eq!(
        layers.merged().get("port"),
        Some(&toml::Value::Integer(7001))
    );

    // A broken edit is reported and the last good config stays.
    fs::write(&user, "port = \n").unwrap();
    assert!(watch.changed());
    assert!(layers.reload_user(watch.path()).is_err());
    assert_eq!(
        layers.merged().get("port"),
        Some(&toml::Value::Integer(7001))
    );

    // Fixed again; gossip still wins over the user layer.
    fs::write(&user, "port = 7002\n").unwrap();
    assert!(watch.changed());
    assert!(layers.reload_user(watch.path()).unwrap());
    assert!(layers.apply_gossip(1, &t("port = 1")).unwrap());
    assert_eq!(layers.merged().get("port"), Some(&toml::Value::Integer(1)));
    assert!(!watch.changed());
}
