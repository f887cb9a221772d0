//! The resource's config (`service.config`, or `configSecretName`'s user.toml) and files
//! (`filesSecretName`) applied to the ring through a member's ctl gateway, as `hab config
//! apply` and `hab file upload` do, with the ctl client the `hab` CLI uses.
//!
//! What to send is a pure decision (`step`): content whose SHA-256 `status.applied` records is
//! never sent again (so `hab config apply` in between wins until the spec changes, and an
//! operator restart sends nothing); config the ring already holds is recorded, not sent; the
//! rest goes at an incarnation above both the ring's and the last one applied, so it never
//! goes backwards. Invalid TOML never gets here: `desired_config` refuses it with its line
//! and column.

use std::collections::BTreeMap;
use std::time::Duration;

use habitat_sidecar::census::doc::{ServiceConfigDoc, ServiceFileDoc};
use habitat_sidecar::census::toml_table_to_json;
use habitat_sidecar::ctl::client::{request, ClientOptions};
use habitat_sidecar::ctl::messages::{ServiceGroup, SvcFilePut, SvcSetCfg};
use habitat_sidecar::ctl::Error as CtlError;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::AppliedContent;

/// Content to apply: its bytes and their SHA-256 (hex).
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

// Config and files often hold passwords: never in logs.
impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Content {
    pub fn new(bytes: Vec<u8>) -> Content {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Content { bytes, sha256 }
    }
}

/// The service config to apply: the TOML text and its value as the census shows config.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredConfig {
    pub content: Content,
    pub value: Value,
}

/// Everything the resource asks to be gossiped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub config: Option<DesiredConfig>,
    pub files: BTreeMap<String, Content>,
}

/// `text` as config to apply, or the TOML parse error (which names line and column).
pub fn desired_config(text: &str) -> Result<DesiredConfig, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    Ok(DesiredConfig {
        content: Content::new(text.as_bytes().to_vec()),
        value: toml_table_to_json(&table),
    })
}

/// What to do about one config or file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Already applied (or nothing to apply).
    Nothing,
    /// The ring already holds it: record it as applied at this incarnation, send nothing.
    Record(u64),
    /// Send it at this incarnation.
    Send(u64),
}

fn incarnation(applied: Option<&AppliedContent>) -> u64 {
    applied
        .and_then(|a| u64::try_from(a.incarnation).ok())
        .unwrap_or(0)
}

fn next(ring: Option<u64>, applied: Option<&AppliedContent>) -> u64 {
    ring.unwrap_or(0)
        .max(incarnation(applied))
        .saturating_add(1)
}

/// The step for the config `desired`, given the ring's (`ring`) and what was last applied.
pub fn config_step(
    desired: &DesiredConfig,
    ring: Option<&ServiceConfigDoc>,
    applied: Option<&AppliedContent>,
) -> Step {
    if applied.is_some_and(|a| a.sha256 == desired.content.sha256) {
        return Step::Nothing;
    }
    match ring {
        Some(ring) if ring.value == desired.value => Step::Record(ring.incarnation),
        _ => Step::Send(next(ring.map(|r| r.incarnation), applied)),
    }
}

/// The step for a file `desired`. The census never shows a file's body, so only what was
/// applied tells whether it is there.
pub fn file_step(
    desired: &Content,
    ring: Option<&ServiceFileDoc>,
    applied: Option<&AppliedContent>,
) -> Step {
    if applied.is_some_and(|a| a.sha256 == desired.sha256) {
        return Step::Nothing;
    }
    Step::Send(next(ring.map(|r| r.incarnation), applied))
}

/// The record of `content` applied at `incarnation`.
pub fn applied(content: &Content, incarnation: u64) -> AppliedContent {
    AppliedContent {
        sha256: content.sha256.clone(),
        incarnation: i64::try_from(incarnation).unwrap_or(i64::MAX),
    }
}

/// `service.group[@org]` as the ctl protocol carries it.
pub fn service_group(name: &str) -> ServiceGroup {
    let (body, org) = match name.split_once('@') {
        Some((body, org)) => (body, Some(org.to_owned())),
        None => (name, None),
    };
    let (service, group) = body.split_once('.').unwrap_or((body, "default"));
    ServiceGroup {
        service: service.to_owned(),
        group: group.to_owned(),
        organization: org,
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// Sends config `content` at `version` to the ctl gateway at `addr`.
pub async fn send_config(
    addr: &str,
    secret: &str,
    group: &str,
    content: &Content,
    version: u64,
) -> Result<(), CtlError> {
    let message = SvcSetCfg {
        service_group: Some(service_group(group)),
        cfg: Some(content.bytes.clone()),
        version: Some(version),
        is_encrypted: Some(false),
    };
    request(addr, secret, message, &options()).await.map(drop)
}

/// Sends file `filename` with `content` at `version` to the ctl gateway at `addr`.
pub async fn send_file(
    addr: &str,
    secret: &str,
    group: &str,
    filename: &str,
    content: &Content,
    version: u64,
) -> Result<(), CtlError> {
    let message = SvcFilePut {
        service_group: Some(service_group(group)),
        content: Some(content.bytes.clone()),
        filename: Some(filename.to_owned()),
        version: Some(version),
        is_encrypted: Some(false),
    };
    request(addr, secret, message, &options()).await.map(drop)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ring(incarnation: u64, value: Value) -> ServiceConfigDoc {
        ServiceConfigDoc { incarnation, value }
    }

    fn recorded(content: &Content, incarnation: i64) -> AppliedContent {
        AppliedContent {
            sha256: content.sha256.clone(),
            incarnation,
        }
    }

    #[test]
    fn invalid_toml_is_refused_with_line_and_column() {
        let err = desired_config("port = 1\nmessage = \"unterminated\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn new_config_goes_above_the_rings_incarnation() {
        let desired = desired_config("port = 2\n").unwrap();
        assert_eq!(
            config_step(&desired, Some(&ring(7, json!({"port": 1}))), None),
            Step::Send(8)
        );
        assert_eq!(config_step(&desired, None, None), Step::Send(1));
    }

    #[test]
    fn config_the_ring_already_holds_is_recorded_not_sent() {
        let desired = desired_config("port = 2 # same value, other text\n").unwrap();
        assert_eq!(
            config_step(&desired, Some(&ring(5, json!({"port": 2}))), None),
            Step::Record(5)
        );
    }

    #[test]
    fn config_applied_before_is_not_sent_again_even_when_the_ring_moved_on() {
        // `hab config apply` after the operator's: it wins until the spec changes.
        let desired = desired_config("port = 2\n").unwrap();
        let applied = recorded(&desired.content, 3);
        assert_eq!(
            config_step(&desired, Some(&ring(9, json!({"port": 5}))), Some(&applied)),
            Step::Nothing
        );
    }

    #[test]
    fn the_incarnation_never_goes_backwards() {
        // The ring lost its config (all members restarted empty): above what was applied.
        let old = desired_config("port = 1\n").unwrap();
        let new = desired_config("port = 2\n").unwrap();
        let applied = recorded(&old.content, 12);
        assert_eq!(config_step(&new, None, Some(&applied)), Step::Send(13));
        assert_eq!(
            config_step(&new, Some(&ring(4, json!({}))), Some(&applied)),
            Step::Send(13)
        );
    }

    #[test]
    fn files_are_sent_once_per_content_above_the_rings_version() {
        let pem = Content::new(b"PEM".to_vec());
        let ring = ServiceFileDoc {
            body: Vec::new(),
            filename: "ca.pem".into(),
            incarnation: 4,
        };
        assert_eq!(file_step(&pem, Some(&ring), None), Step::Send(5));
        assert_eq!(
            file_step(&pem, Some(&ring), Some(&recorded(&pem, 5))),
            Step::Nothing
        );
        let other = Content::new(b"NEW".to_vec());
        assert_eq!(
            file_step(&other, Some(&ring), Some(&recorded(&pem, 5))),
            Step::Send(6)
        );
    }

    #[test]
    fn service_groups_parse_with_and_without_org() {
        let sg = service_group("redis.prod@acme");
        assert_eq!(
            (
                sg.service.as_str(),
                sg.group.as_str(),
                sg.organization.as_deref()
            ),
            ("redis", "prod", Some("acme"))
        );
        assert_eq!(service_group("web.default").organization, None);
    }

    #[test]
    fn content_debug_never_shows_the_bytes() {
        let text = format!("{:?}", Content::new(b"password = \"hunter2\"".to_vec()));
        assert!(!text.contains("hunter2"), "{text}");
    }
}
