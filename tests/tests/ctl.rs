//! The ctl gateway with real supervisors: `hab config apply`, `hab file upload`, `hab svc
//! status` and `hab sup depart` sent to one member change the whole ring; what the gateway
//! refuses (a stale version, a wrong secret) changes nothing anywhere; config and files
//! encrypted for the service group (`--user`) open only on members holding the keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use habitat_e2e::{run_hab, start_ring, wait_for, wait_until, Supervisor, CTL_PORT, HELLO_GROUP};

const BLOCK_CONFIG: u8 = 80;
const BLOCK_FILE: u8 = 81;
const BLOCK_DEPART: u8 = 82;
const BLOCK_ENCRYPTED: u8 = 83;
const SOON: Duration = Duration::from_secs(30);

fn remote(sup: &Supervisor) -> String {
    format!("{}:{CTL_PORT}", sup.ip())
}

/// The supervisor's ctl secret, as a workstation would be given it.
fn secret(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("sup/default/CTL_SECRET"))
        .unwrap()
        .trim()
        .to_string()
}

/// `hab ARGS --remote-sup SUP` with SUP's secret: exit code, stdout, stderr.
fn ctl(sup: &Supervisor, args: &[&str], secret: &str) -> (i32, String, String) {
    let remote = remote(sup);
    let mut all = args.to_vec();
    all.extend(["--remote-sup", &remote]);
    let (status, out, err) = run_hab(&all, &[("HAB_CTL_SECRET", secret)]);
    (status.code().unwrap_or(-1), out, err)
}

fn rendered(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("svc/hello/config/hello.conf")).unwrap_or_default()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn config_applied_to_one_member_renders_on_all_and_a_refused_one_changes_nothing() {
    let ring = start_ring(BLOCK_CONFIG, 3, |_, b| b);
    let scratch = tempfile::tempdir().unwrap();
    let first_secret = secret(&ring[0]);
    let good = write(
        scratch.path(),
        "good.toml",
        "message = \"applied by ctl\"\n",
    );
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "5", &good],
        &first_secret,
    );
    assert_eq!(code, 0, "config apply: {err}");
    wait_until(SOON, "every member renders the applied config", || {
        ring.iter()
            .all(|s| rendered(s).contains("message = \"applied by ctl\""))
    });

    // A version not above the ring's, and a wrong secret: refused, nothing changes.
    let other = write(scratch.path(), "other.toml", "message = \"stale\"\n");
    let (code, _, err) = ctl(
        &ring[1],
        &["config", "apply", HELLO_GROUP, "5", &other],
        &secret(&ring[1]),
    );
    assert_ne!(code, 0, "a stale version was accepted");
    assert!(
        err.contains("version 5"),
        "the refusal names the current version: {err}"
    );
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "6", &other],
        "wrong",
    );
    assert_ne!(code, 0, "a wrong secret was accepted");
    assert!(err.to_lowercase().contains("secret"), "{err}");
    // Not TOML, and above 64 KiB: refused before anything is sent.
    let broken = write(scratch.path(), "broken.toml", "message = \"unclosed\n");
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "7", &broken],
        &first_secret,
    );
    assert_eq!(code, 1, "invalid TOML was accepted: {err}");
    assert!(
        err.contains("broken.toml") && err.contains("line 1"),
        "{err}"
    );
    let huge = write(
        scratch.path(),
        "huge.toml",
        &format!("message = \"{}\"\n", "x".repeat(70 * 1024)),
    );
    let (code, _, err) = ctl(
        &ring[0],
        &["config", "apply", HELLO_GROUP, "8", &huge],
        &first_secret,
    );
    assert_eq!(code, 1, "an oversize config was accepted: {err}");
    assert!(err.contains("huge.toml"), "{err}");
    for sup in &ring {
        let census = sup.census().unwrap();
        let incarnation = &census["census_groups"][HELLO_GROUP]["service_config"]["incarnation"];
        assert_eq!(incarnation, 5, "{}: {census}", sup.member_id());
        assert!(rendered(sup).contains("applied by ctl"));
    }
}

#[test]
fn an_uploaded_file_lands_on_every_member_with_the_same_bytes() {
    let ring = start_ring(BLOCK_FILE, 3, |_, b| b);
    let scratch = tempfile::tempdir().unwrap();
    let body = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let file = write(scratch.path(), "server.crt", body);
    let (code, _, err) = ctl(
        &ring[2],
        &["file", "upload", HELLO_GROUP, "1", &file],
        &secret(&ring[2]),
    );
    assert_eq!(code, 0, "file upload: {err}");
    wait_until(SOON, "every member holds the file", || {
        ring.iter().all(|s| {
            std::fs::read_to_string(s.root().join("svc/hello/files/server.crt"))
                .ok()
                .as_deref()
                == Some(body)
        })
    });
    let (code, out, err) = ctl(&ring[0], &["svc", "status"], &secret(&ring[0]));
    assert_eq!(code, 0, "svc status: {err}");
    assert!(out.contains(HELLO_GROUP), "{out}");
}

#[test]
fn a_departed_member_is_shown_departed_everywhere() {
    let mut ring = start_ring(BLOCK_DEPART, 3, |_, b| b);
    let gone = ring[2].member_id();
    ring[2].kill();
    let (code, _, err) = ctl(&ring[0], &["sup", "depart", &gone], &secret(&ring[0]));
    assert_eq!(code, 0, "sup depart: {err}");
    wait_until(SOON, "both live members show it departed", || {
        ring[..2].iter().all(|s| {
            s.health()
                .is_ok_and(|h| h.get(&gone).map(String::as_str) == Some("Departed"))
        })
    });
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn key_file(dir: &Path, prefix: &str, suffix: &str) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{prefix}*{suffix} in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

/// `kept_encrypted` of the member's one service in `/services`.
fn kept_encrypted(sup: &Supervisor) -> Result<Vec<serde_json::Value>, String> {
    let services = sup.get_json("/services")?;
    services[0]["kept_encrypted"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no kept_encrypted in {services}"))
}

#[test]
fn config_and_files_encrypted_for_the_group_open_only_where_the_keys_are() {
    let ring = start_ring(BLOCK_ENCRYPTED, 2, |_, b| b);
    let (holder, other) = (&ring[0], &ring[1]);
    let scratch = tempfile::tempdir().unwrap();

    // The workstation's key cache: the group's pair and ruby's, made by our hab.
    let workstation_keys = scratch.path().join("keys");
    let keys_env = workstation_keys.to_string_lossy().into_owned();
    for args in [
        &["svc", "key", "generate", HELLO_GROUP][..],
        &["user", "key", "generate", "ruby"][..],
    ] {
        let (status, _, err) = run_hab(args, &[("HAB_CACHE_KEY_PATH", &keys_env)]);
        assert!(status.success(), "hab {args:?}: {err}");
    }
    // The member that may read the secrets gets the group's secret key and ruby's public key.
    std::fs::create_dir_all(holder.keys_dir()).unwrap();
    for (prefix, suffix) in [(HELLO_GROUP, ".box.key"), ("ruby-", ".pub")] {
        let key = key_file(&workstation_keys, prefix, suffix);
        std::fs::copy(&key, holder.keys_dir().join(key.file_name().unwrap())).unwrap();
    }

    // Applied through the member without keys: the gateway needs none to pass it on.
    let secret_toml = write(
        scratch.path(),
        "secret.toml",
        "message = \"sealed for the holder\"\n",
    );
    let (code, out, err) = run_hab(
        &[
            "config",
            "apply",
            HELLO_GROUP,
            "7",
            &secret_toml,
            "--user",
            "ruby",
            "--remote-sup",
            &remote(other),
        ],
        &[
            ("HAB_CACHE_KEY_PATH", &keys_env),
            ("HAB_CTL_SECRET", &secret(other)),
        ],
    );
    assert!(code.success(), "config apply --user: {err}");
    assert!(out.contains("Encrypting config (user rev = ruby-"), "{out}");
    wait_until(SOON, "the key holder renders the decrypted config", || {
        rendered(holder).contains("message = \"sealed for the holder\"")
    });
    wait_for(
        SOON,
        "the other member shows the config kept encrypted",
        || {
            let kept = kept_encrypted(other)?;
            let ok = kept.len() == 1
                && kept[0]["kind"] == "config"
                && kept[0]["incarnation"] == 7
                && kept[0]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("no secret key {HELLO_GROUP}-")));
            if ok {
                Ok(())
            } else {
                Err(format!("kept_encrypted: {kept:?}"))
            }
        },
    );
    assert!(
        rendered(other).contains("message = \"hello from habitat-rs\""),
        "the other member keeps its config: {}",
        rendered(other)
    );

    // A file, uploaded through the holder this time.
    let file = write(
        scratch.path(),
        "db.password",
        "correct horse battery staple\n",
    );
    let (code, out, err) = run_hab(
        &[
            "file",
            "upload",
            HELLO_GROUP,
            "1",
            &file,
            "--user",
            "ruby",
            "--remote-sup",
            &remote(holder),
        ],
        &[
            ("HAB_CACHE_KEY_PATH", &keys_env),
            ("HAB_CTL_SECRET", &secret(holder)),
        ],
    );
    assert!(code.success(), "file upload --user: {err}");
    assert!(out.contains("Encrypting file"), "{out}");
    let landed = |sup: &Supervisor| {
        std::fs::read_to_string(sup.root().join("svc/hello/files/db.password")).ok()
    };
    wait_until(SOON, "the key holder holds the decrypted file", || {
        landed(holder).as_deref() == Some("correct horse battery staple\n")
    });
    wait_for(
        SOON,
        "the other member shows the file kept encrypted",
        || {
            let kept = kept_encrypted(other)?;
            let files: Vec<_> = kept.iter().filter(|k| k["kind"] == "file").collect();
            if files.len() == 1 && files[0]["filename"] == "db.password" {
                Ok(())
            } else {
                Err(format!("kept_encrypted: {kept:?}"))
            }
        },
    );
    assert_eq!(landed(other), None, "no file, and no ciphertext either");
    assert_eq!(
        kept_encrypted(holder).unwrap(),
        Vec::<serde_json::Value>::new()
    );

    // One warning per incarnation however often it renders.
    let log = other.log();
    assert_eq!(
        log.matches("gossiped config is encrypted for the service group")
            .count(),
        1,
        "{log}"
    );

    // Keys copied in later open both.
    std::fs::create_dir_all(other.keys_dir()).unwrap();
    for key in std::fs::read_dir(holder.keys_dir()).unwrap() {
        let key = key.unwrap().path();
        std::fs::copy(&key, other.keys_dir().join(key.file_name().unwrap())).unwrap();
    }
    wait_until(
        SOON,
        "the other member opens both once it has the keys",
        || {
            rendered(other).contains("message = \"sealed for the holder\"")
                && landed(other).as_deref() == Some("correct horse battery staple\n")
                && kept_encrypted(other).is_ok_and(|kept| kept.is_empty())
        },
    );

    // No secret in any log.
    for sup in &ring {
        let log = sup.log();
        assert!(!log.contains("sealed for the holder"), "{log}");
        assert!(!log.contains("battery staple"), "{log}");
    }
}
