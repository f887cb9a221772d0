//! Secrets the operator creates: `<name>-config` holding `spec.service.config` as user.toml
//! (a Secret, since service config often carries passwords); `<name>-ctl` (the ctl gateway's
//! secret, for the operator and `hab config apply` from a workstation) and `<name>-gateway`
//! (the HTTP gateway's bearer token, for the operator's census stream), both random, created
//! once and never rewritten; and the ring key Secret `spec.service.ringSecretName` when
//! `generateRingKey` asks for one. Random bytes are an argument, so the builders stay pure.
//!
//! The ring key Secret has no owner reference: it is the ring's identity, possibly shared by
//! several resources (and supervisors outside the cluster), so the garbage collector must
//! never take it with one of them. It carries the managed-by label and names the resource it
//! was generated for in an annotation.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::statefulset::{RING_KEY_SECRET_KEY, USER_TOML_KEY};
use super::{child_meta, config_secret_name, ctl_secret_name, gateway_secret_name, MANAGED_BY};
use crate::crd::Habitat;

/// Annotation of a generated ring key Secret: the resource it was generated for.
pub const GENERATED_FOR_ANNOTATION: &str = "habitat.sh/generated-for";

/// Length of a ring key's secret, in bytes.
pub const RING_KEY_LEN: usize = 32;
/// Random bytes of a ctl secret or gateway token (shown as 64 hex digits).
pub const TOKEN_LEN: usize = 32;
/// Key of `<name>-ctl` holding the ctl secret.
pub const CTL_SECRET_KEY: &str = "ctl-secret";
/// Key of `<name>-gateway` holding the bearer token.
pub const GATEWAY_TOKEN_KEY: &str = "token";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_secret(hab: &Habitat, name: String, key: &str, bytes: &[u8; TOKEN_LEN]) -> Secret {
    Secret {
        metadata: child_meta(hab, name),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(hex(bytes).into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// The Secret `<name>-ctl`: key `ctl-secret`, the ctl gateway's secret as 64 hex digits
/// (given to members as `HAB_CTL_SECRET`).
pub fn ctl_secret(hab: &Habitat, bytes: &[u8; TOKEN_LEN]) -> Secret {
    token_secret(hab, ctl_secret_name(hab), CTL_SECRET_KEY, bytes)
}

/// The Secret `<name>-gateway`: key `token`, the HTTP gateway's bearer token as 64 hex
/// digits (given to members as `HAB_SUP_GATEWAY_AUTH_TOKEN`).
pub fn gateway_secret(hab: &Habitat, bytes: &[u8; TOKEN_LEN]) -> Secret {
    token_secret(hab, gateway_secret_name(hab), GATEWAY_TOKEN_KEY, bytes)
}

/// The Secret `<name>-config` with user.toml, when the spec has `service.config`.
pub fn config_secret(hab: &Habitat) -> Option<Secret> {
    let config = hab.spec.service.config.as_ref()?;
    Some(Secret {
        metadata: child_meta(hab, config_secret_name(hab)),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            USER_TOML_KEY.to_owned(),
            ByteString(config.clone().into_bytes()),
        )])),
        ..Secret::default()
    })
}

/// The content of a `SYM-SEC-1` ring key file named `name_with_rev` (Habitat's format).
pub fn ring_key_file(name_with_rev: &str, secret: &[u8; RING_KEY_LEN]) -> String {
    format!(
        "SYM-SEC-1\n{name_with_rev}\n\n{}\n",
        STANDARD.encode(secret)
    )
}

/// The ring key Secret to create when `generateRingKey` is set and the Secret is missing.
pub fn ring_key_secret(hab: &Habitat, secret: &[u8; RING_KEY_LEN]) -> Option<Secret> {
    let service = &hab.spec.service;
    if !service.generate_ring_key {
        return None;
    }
    let name = service.ring_secret_name.clone()?;
    let content = ring_key_file(&name, secret);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: hab.namespace(),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                GENERATED_FOR_ANNOTATION.to_owned(),
                hab.name_any(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            RING_KEY_SECRET_KEY.to_owned(),
            ByteString(content.into_bytes()),
        )])),
        ..Secret::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::build::golden::assert_golden;

    #[test]
    fn config_secret_matches_golden() {
        let hab = Habitat::test("web").config("port = 8080\n[tls]\nenabled = true\n");
        assert_golden("secret-config", &config_secret(&hab).unwrap());
    }

    #[test]
    fn ctl_and_gateway_secrets_match_golden() {
        let hab = Habitat::test("web");
        assert_golden("secret-ctl", &ctl_secret(&hab, &[0xab; 32]));
        assert_golden("secret-gateway", &gateway_secret(&hab, &[0x01; 32]));
    }

    #[test]
    fn ctl_and_gateway_secrets_are_owned_hex_of_their_bytes() {
        let hab = Habitat::test("web");
        let secret = ctl_secret(&hab, &[0xab; 32]);
        assert_eq!(secret.name_any(), "web-ctl");
        assert_eq!(secret.owner_references()[0].name, "web");
        assert_eq!(
            secret.data.unwrap()["ctl-secret"].0,
            "ab".repeat(32).as_bytes()
        );
        let token = gateway_secret(&hab, &[0x01; 32]);
        assert_eq!(token.name_any(), "web-gateway");
        assert_eq!(token.data.unwrap()["token"].0, "01".repeat(32).as_bytes());
    }

    #[test]
    fn no_config_means_no_config_secret() {
        assert!(config_secret(&Habitat::test("web")).is_none());
    }

    #[test]
    fn ring_key_secret_matches_golden() {
        let hab = Habitat::test("web").ring_key("prod-20260101000000");
        assert_golden("secret-ring-key", &ring_key_secret(&hab, &[7; 32]).unwrap());
    }

    #[test]
    fn a_generated_ring_key_is_owned_by_no_resource() {
        let hab = Habitat::test("web").ring_key("prod-20260101000000");
        let secret = ring_key_secret(&hab, &[7; 32]).unwrap();
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(secret.annotations()[GENERATED_FOR_ANNOTATION], "web");
    }

    #[test]
    fn ring_key_file_is_habitats_format() {
        let text = ring_key_file("prod-20260101000000", &[0; 32]);
        assert_eq!(
            text,
            "SYM-SEC-1\nprod-20260101000000\n\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
    }

    #[test]
    fn ring_key_is_generated_only_when_asked() {
        let mut hab = Habitat::test("web").ring_key("prod-20260101000000");
        hab.spec.service.generate_ring_key = false;
        assert!(ring_key_secret(&hab, &[7; 32]).is_none());
    }
}
