//! The workstation commands against a stand-in gateway (`ctl::test_gateway`): what they send,
//! what they print, how they fail and with which exit code, and where the secret comes from.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use super::*;
use crate::ctl::messages::{
    ConsoleLine, NetErr, NetOk, PackageIdent, ProcessStatus, ServiceCfg, ServiceGroup, SvcFilePut,
    SvcSetCfg, SvcStatus, SvcValidateCfg,
};
use crate::ctl::test_gateway::TestGateway;

const SECRET: &str = "s3cret-value";

fn secret(value: &str) -> SecretSources {
    SecretSources {
        env: Some(value.to_string()),
        cli_toml: None,
        root: PathBuf::from("/nonexistent-hab-root"),
    }
}

fn remote(gateway: &TestGateway) -> Remote {
    Remote::new(&gateway.addr, secret(SECRET)).unwrap()
}

fn redis_default() -> ServiceGroup {
    ServiceGroup {
        service: "redis".into(),
        group: "default".into(),
        organization: None,
    }
}

fn running() -> ServiceStatus {
    ServiceStatus {
        ident: PackageIdent {
            origin: "core".into(),
            name: "redis".into(),
            version: None,
            release: None,
        },
        process: Some(ProcessStatus {
            elapsed: Some(5),
            pid: Some(42),
            state: ProcessState::Up as i32,
        }),
        service_group: redis_default(),
        desired_state: Some(DesiredState::DesiredUp as i32),
    }
}

fn stopped() -> ServiceStatus {
    ServiceStatus {
        ident: PackageIdent {
            origin: "core".into(),
            name: "redis".into(),
            version: Some("7.2.4".into()),
            release: Some("20240101000000".into()),
        },
        process: Some(ProcessStatus {
            elapsed: None,
            pid: None,
            state: ProcessState::Down as i32,
        }),
        service_group: ServiceGroup {
            service: "redis".into(),
            group: "prod".into(),
            organization: Some("acme".into()),
        },
        desired_state: None,
    }
}

fn net_ok(_: &Request) -> Vec<Reply> {
    vec![NetOk {}.into()]
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

// ---- hab svc status ----

/// Byte for byte what Habitat 2.1.78's `hab svc status` printed for these two statuses (from the
/// stand-in gateway of `ctl::tests::interop_stand_in_gateway`).
const HABITATS_TABLE: &str = "\
package                          type        desired  state  elapsed (s)  pid     group
core/redis                       standalone  up       up     5            42      redis.default
core/redis/7.2.4/20240101000000  standalone  <none>   down   0            <none>  redis.prod@acme
";

#[test]
fn the_status_table_is_habitats_byte_for_byte() {
    assert_eq!(status_table(&[running(), stopped()]), HABITATS_TABLE);
    assert_eq!(
        status_table(&[running()]),
        "package     type        desired  state  elapsed (s)  pid  group\n\
         core/redis  standalone  up       up     5            42   redis.default\n"
    );
}

#[test]
fn a_status_without_a_process_shows_down_with_no_pid_instead_of_failing() {
    // Habitat's `hab` fails on it ("Invalid process state"); a row is more useful.
    let status = ServiceStatus {
        process: None,
        desired_state: Some(DesiredState::DesiredDown as i32),
        ..running()
    };
    let table = status_table(&[status]);
    let row = table.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "core/redis",
            "standalone",
            "down",
            "down",
            "<none>",
            "<none>",
            "redis.default"
        ]
    );
}

#[tokio::test]
async fn status_prints_the_table_and_sends_the_ident_given() {
    let gateway = TestGateway::start(SECRET, |request| match request {
        Request::SvcStatus(SvcStatus { ident: None }) => vec![running().into(), stopped().into()],
        _ => vec![running().into()],
    })
    .await;
    let mut out = Vec::new();
    svc_status(&remote(&gateway), None, &mut out).await.unwrap();
    assert_eq!(text(out), HABITATS_TABLE);

    let mut out = Vec::new();
    svc_status(&remote(&gateway), Some("core/redis"), &mut out)
        .await
        .unwrap();
    assert!(text(out).contains("redis.default"));
    assert_eq!(
        gateway.requests()[1],
        Request::SvcStatus(SvcStatus {
            ident: Some(running().ident)
        })
    );
}

#[tokio::test]
async fn status_with_no_services_says_so_and_succeeds() {
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let mut out = Vec::new();
    svc_status(&remote(&gateway), None, &mut out).await.unwrap();
    assert_eq!(text(out), "No services loaded.\n");
}

#[tokio::test]
async fn status_of_a_service_not_loaded_exits_2() {
    let gateway = TestGateway::start(SECRET, |_| {
        vec![NetErr::new(ErrCode::NotFound, "Service not loaded, core/nope").into()]
    })
    .await;
    let err = svc_status(&remote(&gateway), Some("core/nope"), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.status_exit_code(), 2, "{err}");
    assert!(
        err.to_string().contains("Service not loaded, core/nope"),
        "{err}"
    );
}

#[tokio::test]
async fn status_with_no_supervisor_reachable_exits_3() {
    let remote = Remote::new(&closed_port().await, secret(SECRET)).unwrap();
    let err = svc_status(&remote, None, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.status_exit_code(), 3, "{err}");
    assert!(
        err.to_string()
            .contains("cannot reach a supervisor at 127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn status_with_a_wrong_secret_exits_1_without_showing_the_secret() {
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let remote = Remote::new(&gateway.addr, secret("not-the-secret")).unwrap();
    let err = svc_status(&remote, None, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.status_exit_code(), 1, "{err}");
    assert_eq!(err.remote_code(), Some(ErrCode::Unauthorized));
    let message = err.to_string();
    assert!(message.contains("secret key mismatch"), "{message}");
    assert!(!message.contains("not-the-secret") && !message.contains(SECRET));
    assert!(gateway.requests().is_empty());
}

#[tokio::test]
async fn status_refuses_a_bad_ident_without_connecting() {
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let err = svc_status(&remote(&gateway), Some("redis"), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ORIGIN/NAME"), "{err}");
    assert_eq!(gateway.connections(), 0);
}

// ---- hab config apply ----

fn apply(cfg: &[u8]) -> ConfigApply {
    ConfigApply {
        service_group: "redis.default".into(),
        version: 3,
        source: "cfg.toml".into(),
        cfg: cfg.to_vec(),
        encrypt_as: None,
    }
}

#[tokio::test]
async fn config_apply_validates_then_sets_with_habitats_fields_and_lines() {
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let mut out = Vec::new();
    let mut warn = Vec::new();
    config_apply(
        &remote(&gateway),
        &apply(b"port = 6380\n"),
        &mut out,
        &mut warn,
    )
    .await
    .unwrap();
    assert_eq!(
        gateway.requests(),
        vec![
            Request::SvcValidateCfg(SvcValidateCfg {
                service_group: Some(redis_default()),
                format: None,
                cfg: Some(b"port = 6380\n".to_vec()),
            }),
            Request::SvcSetCfg(SvcSetCfg {
                service_group: Some(redis_default()),
                cfg: Some(b"port = 6380\n".to_vec()),
                version: Some(3),
                is_encrypted: None,
            }),
        ]
    );
    assert_eq!(
        text(out),
        "» Setting new configuration version 3 for redis.default\n\
         Ω Creating service configuration\n\
         ↑ Applying applying...\n\
         ★ Applied configuration\n"
    );
    assert!(warn.is_empty());
}

#[tokio::test]
async fn config_apply_refuses_oversize_and_invalid_toml_without_connecting() {
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let big = format!("a = \"{}\"\n", "x".repeat(MAX_PAYLOAD_BYTES));
    let err = config_apply(
        &remote(&gateway),
        &apply(big.as_bytes()),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cfg.toml is more than 65536 bytes"),
        "{err}"
    );

    let err = config_apply(
        &remote(&gateway),
        &apply(b"port = 6380\nname = \n"),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("cfg.toml: not valid TOML: line 2, column 8"),
        "{message}"
    );

    let err = config_apply(
        &remote(&gateway),
        &apply(b"a = \"\xff\"\n"),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not UTF-8 at offset 5"), "{err}");
    assert_eq!(gateway.connections(), 0);
}

#[tokio::test]
async fn config_apply_refuses_bad_groups_without_connecting() {
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let bad_group = ConfigApply {
        service_group: "redis".into(),
        ..apply(b"a = 1\n")
    };
    let err = config_apply(
        &remote(&gateway),
        &bad_group,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("SERVICE.GROUP"), "{err}");
    assert_eq!(gateway.connections(), 0);
}

// ---- --user: encrypted for the service group ----

/// A workstation key cache with ruby's pair and redis.default@acme's pair.
fn key_cache() -> (tempfile::TempDir, EncryptAs) {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now();
    crate::keys::generate_box_key_pair(dir.path(), "ruby", now, [1; 32]).unwrap();
    crate::keys::generate_box_key_pair(dir.path(), "redis.default@acme", now, [2; 32]).unwrap();
    let as_ruby = EncryptAs {
        user: "ruby".into(),
        keys_dir: dir.path().to_path_buf(),
    };
    (dir, as_ruby)
}

fn open_for_acme(keys: &Path, sealed: &[u8]) -> crate::keys::Opened {
    crate::keys::open_box_with_keys(keys, sealed, "redis.default@acme").unwrap()
}

#[tokio::test]
async fn config_apply_with_user_sends_only_the_sealed_config_marked_encrypted() {
    let (keys, as_ruby) = key_cache();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let with_user = ConfigApply {
        service_group: "redis.default@acme".into(),
        encrypt_as: Some(as_ruby),
        ..apply(b"password = \"hunter2\"\n")
    };
    let mut out = Vec::new();
    config_apply(&remote(&gateway), &with_user, &mut out, &mut Vec::new())
        .await
        .unwrap();
    // No SvcValidateCfg: it would carry the plaintext.
    let requests = gateway.requests();
    let [Request::SvcSetCfg(set)] = requests.as_slice() else {
        panic!("expected one SvcSetCfg, got {requests:?}");
    };
    assert_eq!(set.is_encrypted, Some(true));
    assert_eq!(set.version, Some(3));
    let sealed = set.cfg.clone().unwrap();
    assert!(sealed.starts_with(b"BOX-1\nruby-"));
    assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
    let opened = open_for_acme(keys.path(), &sealed);
    assert_eq!(opened.plaintext, b"password = \"hunter2\"\n");
    assert!(opened.sender.starts_with("ruby-"));
    let out = text(out);
    assert!(
        out.contains("☛ Encrypting config (user rev = ruby-"),
        "{out}"
    );
    assert!(out.contains("service rev = redis.default@acme-"), "{out}");
    assert!(out.ends_with("★ Applied configuration\n"), "{out}");
}

#[tokio::test]
async fn with_user_the_toml_is_checked_before_any_key_is_looked_up() {
    let empty = tempfile::tempdir().unwrap();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let with_user = ConfigApply {
        encrypt_as: Some(EncryptAs {
            user: "ruby".into(),
            keys_dir: empty.path().to_path_buf(),
        }),
        ..apply(b"name = \n")
    };
    let err = config_apply(
        &remote(&gateway),
        &with_user,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not valid TOML"), "{err}");
    assert_eq!(gateway.connections(), 0);
}

#[tokio::test]
async fn missing_keys_name_the_directory_the_file_and_the_command_that_makes_them() {
    let empty = tempfile::tempdir().unwrap();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let as_ruby = EncryptAs {
        user: "ruby".into(),
        keys_dir: empty.path().to_path_buf(),
    };
    let with_user = ConfigApply {
        service_group: "redis.default@acme".into(),
        encrypt_as: Some(as_ruby.clone()),
        ..apply(b"a = 1\n")
    };
    let err = config_apply(
        &remote(&gateway),
        &with_user,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    let dir = empty.path().display();
    assert!(
        err.starts_with(&format!(
            "no user secret key ruby in {dir} (expected a file \
             ruby-<YYYYMMDDhhmmss>.box.key): make one with `hab user key generate ruby`"
        )),
        "{err}"
    );
    assert!(err.contains("HAB_CACHE_KEY_PATH"), "{err}");

    crate::keys::generate_box_key_pair(empty.path(), "ruby", std::time::SystemTime::now(), [1; 32])
        .unwrap();
    let err = config_apply(
        &remote(&gateway),
        &with_user,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "no service group public key redis.default@acme in {dir} (expected a file \
             redis.default@acme-<YYYYMMDDhhmmss>.pub): make the pair with `hab svc key \
             generate redis.default acme`"
        )),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.txt");
    fs::write(&path, b"hello\n").unwrap();
    let upload = FileUpload {
        service_group: "redis.default".into(),
        version: 2,
        file: path,
        encrypt_as: Some(as_ruby),
    };
    let err = file_upload(&remote(&gateway), &upload, &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`hab svc key generate redis.default`"),
        "{err}"
    );
    assert_eq!(gateway.connections(), 0);
}

#[tokio::test]
async fn a_config_that_fits_but_not_once_encrypted_is_refused_without_connecting() {
    let (_keys, as_ruby) = key_cache();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    // 60 KiB of TOML: under the limit, but base64 makes the sealed text a third larger.
    let big = format!("a = \"{}\"\n", "x".repeat(60 * 1024));
    let with_user = ConfigApply {
        service_group: "redis.default@acme".into(),
        encrypt_as: Some(as_ruby),
        ..apply(big.as_bytes())
    };
    let err = config_apply(
        &remote(&gateway),
        &with_user,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the encrypted config is more than 65536 bytes"),
        "{err}"
    );
    assert_eq!(gateway.connections(), 0);
}

#[tokio::test]
async fn file_upload_with_user_sends_the_sealed_file_marked_encrypted() {
    let (keys, as_ruby) = key_cache();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.key");
    fs::write(&path, b"-----BEGIN PRIVATE KEY-----\n").unwrap();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let upload = FileUpload {
        service_group: "redis.default@acme".into(),
        version: 2,
        file: path,
        encrypt_as: Some(as_ruby),
    };
    let mut out = Vec::new();
    file_upload(&remote(&gateway), &upload, &mut out)
        .await
        .unwrap();
    let requests = gateway.requests();
    let [Request::SvcFilePut(put)] = requests.as_slice() else {
        panic!("expected one SvcFilePut, got {requests:?}");
    };
    assert_eq!(put.is_encrypted, Some(true));
    assert_eq!(put.filename.as_deref(), Some("server.key"));
    let opened = open_for_acme(keys.path(), put.content.as_deref().unwrap());
    assert_eq!(opened.plaintext, b"-----BEGIN PRIVATE KEY-----\n");
    assert!(text(out).contains("☛ Encrypting file (user rev = ruby-"));
}

#[tokio::test]
async fn a_stale_version_is_refused_with_the_gateways_message() {
    let gateway = TestGateway::start(SECRET, |request| match request {
        Request::SvcSetCfg(_) => vec![NetErr::new(
            ErrCode::Conflict,
            "version 3 is not above the current version 7 of redis.default",
        )
        .into()],
        _ => vec![NetOk {}.into()],
    })
    .await;
    let mut out = Vec::new();
    let err = config_apply(
        &remote(&gateway),
        &apply(b"a = 1\n"),
        &mut out,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrCode::Conflict));
    assert!(err.to_string().contains("current version 7"), "{err}");
    assert!(!text(out).contains("Applied"));
}

#[tokio::test]
async fn an_invalid_payload_answer_to_validation_warns_and_applies_as_habitat_does() {
    let gateway = TestGateway::start(SECRET, |request| match request {
        Request::SvcValidateCfg(_) => {
            vec![NetErr::new(ErrCode::InvalidPayload, "unknown key").into()]
        }
        _ => vec![NetOk {}.into()],
    })
    .await;
    let mut warn = Vec::new();
    config_apply(
        &remote(&gateway),
        &apply(b"a = 1\n"),
        &mut Vec::new(),
        &mut warn,
    )
    .await
    .unwrap();
    assert!(text(warn).contains("unknown key"));
    assert_eq!(gateway.requests().len(), 2);
}

#[test]
fn input_is_read_up_to_64_kib_and_refused_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let exact = dir.path().join("exact.toml");
    fs::write(&exact, vec![b'\n'; MAX_PAYLOAD_BYTES]).unwrap();
    assert_eq!(
        Input::File(exact).read_limited().unwrap().len(),
        MAX_PAYLOAD_BYTES
    );
    let over = dir.path().join("over.toml");
    fs::write(&over, vec![b'\n'; MAX_PAYLOAD_BYTES + 1]).unwrap();
    let err = Input::File(over.clone()).read_limited().unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&over.display().to_string()));
    let missing = Input::File(dir.path().join("missing.toml"))
        .read_limited()
        .unwrap_err();
    assert!(
        missing.to_string().contains("missing.toml: cannot read"),
        "{missing}"
    );
    assert_eq!(Input::from_arg(None), Input::Stdin);
    assert_eq!(Input::from_arg(Some(Path::new("-"))), Input::Stdin);
}

// ---- hab file upload, hab sup depart, hab config show ----

#[tokio::test]
async fn file_upload_sends_the_base_name_version_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.txt");
    fs::write(&path, b"hello\n").unwrap();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let upload = FileUpload {
        service_group: "redis.default".into(),
        version: 2,
        file: path.clone(),
        encrypt_as: None,
    };
    let mut out = Vec::new();
    file_upload(&remote(&gateway), &upload, &mut out)
        .await
        .unwrap();
    assert_eq!(
        gateway.requests(),
        vec![Request::SvcFilePut(SvcFilePut {
            service_group: Some(redis_default()),
            content: Some(b"hello\n".to_vec()),
            filename: Some("hello.txt".into()),
            version: Some(2),
            is_encrypted: None,
        })]
    );
    assert_eq!(
        text(out),
        format!(
            "» Uploading file {} to redis.default incarnation 2\n\
             Ω Creating service file\n\
             ↑ Applying via peer {}\n\
             ★ Uploaded file\n",
            path.display(),
            gateway.addr
        )
    );
}

#[tokio::test]
async fn file_upload_refuses_a_file_over_64_kib_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    fs::write(&path, vec![0u8; MAX_PAYLOAD_BYTES + 1]).unwrap();
    let gateway = TestGateway::start(SECRET, net_ok).await;
    let upload = FileUpload {
        service_group: "redis.default".into(),
        version: 2,
        file: path,
        encrypt_as: None,
    };
    let err = file_upload(&remote(&gateway), &upload, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is more than 65536 bytes"),
        "{err}"
    );
    assert_eq!(gateway.connections(), 0);
}

#[tokio::test]
async fn sup_depart_sends_the_member_id_and_prints_console_lines() {
    let gateway = TestGateway::start(SECRET, |_| {
        vec![
            ConsoleLine {
                line: "departing abc\n".into(),
                color: None,
                bold: false,
            }
            .into(),
            NetOk {}.into(),
        ]
    })
    .await;
    let mut out = Vec::new();
    sup_depart(&remote(&gateway), "abc", &mut out)
        .await
        .unwrap();
    assert_eq!(
        gateway.requests(),
        vec![Request::SupDepart(msg::SupDepart {
            member_id: Some("abc".into())
        })]
    );
    assert_eq!(
        text(out),
        format!(
            "» Permanently marking abc as departed\n\
             ↑ Applying via peer {}\n\
             departing abc\n\
             ★ Departure recorded.\n",
            gateway.addr
        )
    );
}

#[tokio::test]
async fn config_show_prints_the_default_config_the_gateway_sends() {
    let gateway = TestGateway::start(SECRET, |_| {
        vec![ServiceCfg {
            format: None,
            default: Some("port = 6379".into()),
        }
        .into()]
    })
    .await;
    let mut out = Vec::new();
    config_show(&remote(&gateway), "core/redis", &mut out)
        .await
        .unwrap();
    assert_eq!(text(out), "port = 6379\n");
    assert_eq!(
        gateway.requests(),
        vec![Request::SvcGetDefaultCfg(msg::SvcGetDefaultCfg {
            ident: Some(running().ident)
        })]
    );
}

// ---- the secret and the address ----

struct Fixture {
    _dir: tempfile::TempDir,
    cli_toml: PathBuf,
    root: PathBuf,
}

fn fixture(cli_toml: Option<&str>, local: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cli_path = dir.path().join("home/.hab/etc/cli.toml");
    let root = dir.path().join("hab");
    if let Some(text) = cli_toml {
        fs::create_dir_all(cli_path.parent().unwrap()).unwrap();
        fs::write(&cli_path, text).unwrap();
    }
    if let Some(text) = local {
        fs::create_dir_all(root.join("sup/default")).unwrap();
        fs::write(root.join("sup/default/CTL_SECRET"), text).unwrap();
    }
    Fixture {
        _dir: dir,
        cli_toml: cli_path,
        root,
    }
}

fn sources(f: &Fixture, env: Option<&str>) -> SecretSources {
    SecretSources {
        env: env.map(String::from),
        cli_toml: Some(f.cli_toml.clone()),
        root: f.root.clone(),
    }
}

#[test]
fn the_secret_comes_from_env_then_cli_toml_then_the_local_supervisor() {
    let all = fixture(Some("ctl_secret = \"from-toml\"\n"), Some("from-file\n"));
    assert_eq!(
        sources(&all, Some("from-env")).resolve().unwrap(),
        "from-env"
    );
    assert_eq!(sources(&all, None).resolve().unwrap(), "from-toml");
    assert_eq!(sources(&all, Some("")).resolve().unwrap(), "from-toml");

    let no_key = fixture(
        Some("listen_ctl = \"127.0.0.1:9632\"\n"),
        Some("from-file\n"),
    );
    assert_eq!(sources(&no_key, None).resolve().unwrap(), "from-file");
    let no_toml = fixture(None, Some("from-file\n"));
    assert_eq!(sources(&no_toml, None).resolve().unwrap(), "from-file");
}

#[test]
fn no_secret_anywhere_names_all_three_places() {
    let none = fixture(None, None);
    let message = sources(&none, None).resolve().unwrap_err().to_string();
    assert!(message.contains("HAB_CTL_SECRET"), "{message}");
    assert!(
        message.contains(&none.cli_toml.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(
            &none
                .root
                .join("sup/default/CTL_SECRET")
                .display()
                .to_string()
        ),
        "{message}"
    );
}

#[test]
fn a_broken_cli_toml_is_an_error_naming_the_file_and_line() {
    let broken = fixture(Some("ctl_secret = \n"), Some("from-file\n"));
    let message = sources(&broken, None).resolve().unwrap_err().to_string();
    assert!(
        message.contains("cli.toml: not valid TOML: line 1, column 14"),
        "{message}"
    );
    let wrong_type = fixture(Some("ctl_secret = 7\n"), None);
    let message = sources(&wrong_type, None)
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("ctl_secret: expected a string"),
        "{message}"
    );
}

#[test]
fn remote_addresses_default_to_port_9632() {
    for (given, expected) in [
        ("10.0.0.5", "10.0.0.5:9632"),
        ("10.0.0.5:1234", "10.0.0.5:1234"),
        ("sup.example.com", "sup.example.com:9632"),
        ("sup-1:7000", "sup-1:7000"),
        ("::1", "[::1]:9632"),
        ("[::1]:9000", "[::1]:9000"),
    ] {
        assert_eq!(parse_remote_addr(given).unwrap(), expected, "{given}");
    }
    for bad in ["", "host:port", "host:0", "a b", "host:99999", "http://x"] {
        let err = parse_remote_addr(bad).unwrap_err();
        assert!(
            err.to_string().contains("expected HOST[:PORT]"),
            "{bad}: {err}"
        );
    }
}
