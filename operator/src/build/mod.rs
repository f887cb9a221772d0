//! Pure builders: one function per child object, from a `Habitat` resource to the object the
//! operator server-side-applies. No I/O, no clock, no randomness (the ring key's bytes come in
//! as an argument), so each is tested against golden YAML.
//!
//! Every child carries the same labels and a controller owner reference to the resource.

pub mod netpol;
pub mod pdb;
pub mod secrets;
pub mod services;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::Habitat;

/// Label that selects the pods of one resource (the StatefulSet's immutable selector).
pub const SELECTOR_LABEL: &str = "habitat.sh/habitat";
/// Label naming the service group `<service>.<group>` of a pod.
pub const SERVICE_GROUP_LABEL: &str = "habitat.sh/service-group";
/// Value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "habitat-operator";

/// Supervisor ports, ARCHITECTURE.md's contract.
pub const GOSSIP_PORT: i32 = 9638;
/// HTTP gateway port (census, health, metrics, /healthz, /readyz).
pub const HTTP_PORT: i32 = 9631;
/// Control gateway port (`hab config apply --remote-sup`).
pub const CTL_PORT: i32 = 9632;

/// Settings of the operator (not of one resource) that shape the children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// Image holding the static `hab` binary at `/bin/hab` (and a `cp`).
    pub sidecar_image: String,
    /// Namespace the operator runs in: NetworkPolicies let its pods reach the gateways.
    pub operator_namespace: String,
    /// Labels of the operator's pods: NetworkPolicies let them reach the ctl gateway.
    pub operator_pod_labels: BTreeMap<String, String>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            sidecar_image: DEFAULT_SIDECAR_IMAGE.to_owned(),
            operator_namespace: DEFAULT_OPERATOR_NAMESPACE.to_owned(),
            operator_pod_labels: default_operator_pod_labels(),
        }
    }
}

/// Namespace of the operator when it is not told (nor runs in a pod that says).
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "default";

/// Labels of the operator's pods when it is not told: the chart's `app.kubernetes.io/name`.
pub fn default_operator_pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_owned(), MANAGED_BY.to_owned())])
}

/// Parses `k=v[,k=v]...` (the `--operator-pod-labels` flag).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?}: expected key=value"))?;
        if key.is_empty() {
            return Err(format!("label {pair:?}: empty key, expected key=value"));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    if labels.is_empty() {
        return Err("expected at least one key=value label".to_owned());
    }
    Ok(labels)
}

/// Sidecar image used when the operator is not told another.
pub const DEFAULT_SIDECAR_IMAGE: &str =
    concat!("ghcr.io/habitat-rs/hab:", env!("CARGO_PKG_VERSION"));

/// Labels that select this resource's pods.
pub fn selector_labels(hab: &Habitat) -> BTreeMap<String, String> {
    BTreeMap::from([(SELECTOR_LABEL.to_owned(), hab.name_any())])
}

/// The selector as a string, for the scale subresource (`status.selector`).
pub fn selector_string(hab: &Habitat) -> String {
    format!("{SELECTOR_LABEL}={}", hab.name_any())
}

/// Labels of every child object and pod.
pub fn labels(hab: &Habitat) -> BTreeMap<String, String> {
    let mut labels = selector_labels(hab);
    labels.extend([
        (
            "app.kubernetes.io/name".to_owned(),
            hab.spec.service.name.clone(),
        ),
        ("app.kubernetes.io/instance".to_owned(), hab.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (
            SERVICE_GROUP_LABEL.to_owned(),
            hab.spec.service.service_group(),
        ),
    ]);
    labels
}

/// Controller owner reference to the resource, so children are garbage-collected with it.
pub fn owner_reference(hab: &Habitat) -> OwnerReference {
    OwnerReference {
        api_version: Habitat::api_version(&()).into_owned(),
        kind: Habitat::kind(&()).into_owned(),
        name: hab.name_any(),
        uid: hab.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child named `name` in the resource's namespace.
pub fn child_meta(hab: &Habitat, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: hab.namespace(),
        labels: Some(labels(hab)),
        owner_references: Some(vec![owner_reference(hab)]),
        ..ObjectMeta::default()
    }
}

/// Name of the headless Service that gives each pod a stable DNS name.
pub fn peers_service_name(hab: &Habitat) -> String {
    format!("{}-peers", hab.name_any())
}

/// Name of the Secret that holds `spec.service.config` as user.toml.
pub fn config_secret_name(hab: &Habitat) -> String {
    format!("{}-config", hab.name_any())
}

/// Name of the Secret that holds the ctl gateway's secret (`hab config apply`).
pub fn ctl_secret_name(hab: &Habitat) -> String {
    format!("{}-ctl", hab.name_any())
}

/// Name of the Secret that holds the HTTP gateway's bearer token.
pub fn gateway_secret_name(hab: &Habitat) -> String {
    format!("{}-gateway", hab.name_any())
}

/// Name of the NetworkPolicy of the resource.
pub fn network_policy_name(hab: &Habitat) -> String {
    hab.name_any()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn operator_pod_labels_parse_as_key_value_pairs() {
        let labels =
            parse_labels("app.kubernetes.io/name=habitat-operator, app.kubernetes.io/instance=ops")
                .unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["app.kubernetes.io/instance"], "ops");
        assert!(parse_labels("novalue").unwrap_err().contains("key=value"));
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("").is_err());
    }
}

#[cfg(test)]
pub(crate) mod golden {
    //! Golden-file comparison: `UPDATE_GOLDEN=1 cargo test -p habitat-operator` rewrites the
    //! files under `operator/tests/golden/`.
    use std::path::PathBuf;

    #[allow(clippy::unwrap_used, clippy::expect_used)]
    pub fn assert_golden<T: serde::Serialize>(name: &str, value: &T) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{name}.yaml"));
        let actual = serde_yaml::to_string(value).unwrap();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "golden file {}: {e}; run with UPDATE_GOLDEN=1 to create it",
                path.display()
            )
        });
        assert!(
            expected == actual,
            "{} differs from the builder's output (UPDATE_GOLDEN=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
