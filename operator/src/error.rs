//! The operator's error type. Each variant names what failed and on which object; `label`
//! gives the short name under which `error_policy` counts it in the metrics, `reason` the
//! reason of the Degraded condition and of the warning event.

use thiserror::Error;

/// Everything that can go wrong in the operator.
#[derive(Debug, Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        /// What the operator was doing: apply, create, delete, get, patch status.
        action: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// `spec.service.config` needs Secret `<name>-config`, and a Secret of that name exists
    /// that the resource does not own: the operator neither overwrites nor deletes it.
    #[error(
        "Secret {namespace}/{secret} exists and is not owned by Habitat {namespace}/{name}: \
         the operator keeps service.config in a Secret of that name; rename or remove that \
         Secret, or point service.configSecretName at it instead of setting service.config"
    )]
    ConfigSecretNotOwned {
        /// Namespace of the resource and the Secret.
        namespace: String,
        /// Name of the resource.
        name: String,
        /// Name of the Secret.
        secret: String,
    },
    /// `<name>-ctl` or `<name>-gateway` exists and the resource does not own it.
    #[error(
        "Secret {namespace}/{secret} exists and is not owned by Habitat {namespace}/{name}: \
         the operator keeps the {purpose} in a Secret of that name and never overwrites one it \
         did not create; rename or remove that Secret"
    )]
    SecretNotOwned {
        /// Namespace of the resource and the Secret.
        namespace: String,
        /// Name of the resource.
        name: String,
        /// Name of the Secret.
        secret: String,
        /// What the Secret holds.
        purpose: &'static str,
    },
    /// A Secret the spec names (`configSecretName`, `filesSecretName`) is missing, or lacks
    /// the key it must have.
    #[error("Secret {namespace}/{secret} named by {field}: {problem}")]
    SecretMissing {
        /// Namespace of the resource and the Secret.
        namespace: String,
        /// Name of the Secret.
        secret: String,
        /// The spec field naming it.
        field: &'static str,
        /// What is missing.
        problem: String,
    },
    /// The service config is not valid TOML: nothing is applied.
    #[error("{source_name} of Habitat {namespace}/{name} is not valid TOML, so nothing was applied: {problem}")]
    InvalidConfig {
        /// Namespace of the resource.
        namespace: String,
        /// Name of the resource.
        name: String,
        /// Where the config came from (`service.config`, or the Secret and key).
        source_name: String,
        /// The parser's message, with line and column.
        problem: String,
    },
    /// `service.name` is not the package's name: the ring names the service group after the
    /// package, so the census, user.toml and binds would never meet. Nothing is applied.
    #[error(
        "service.name {service:?} of Habitat {namespace}/{name} is not the name of its package \
         {package:?} ({package_name:?}): the ring names the service group after the package; \
         set service.name to {package_name:?}. Nothing was applied"
    )]
    ServiceNameMismatch {
        /// Namespace of the resource.
        namespace: String,
        /// Name of the resource.
        name: String,
        /// `service.name`.
        service: String,
        /// `service.package`.
        package: String,
        /// The package ident's name part.
        package_name: String,
    },
    /// The generated ring key Secret existed (a resource's status records it) and is gone.
    #[error(
        "ring key Secret {namespace}/{secret} is missing, but it existed (recorded in the \
         status of Habitat {namespace}/{recorded_by}): the operator does not generate a new key, \
         which would split the ring from the members still running with the old one; restore \
         the Secret (e.g. from a backup), or set a new service.ringSecretName to re-key the ring"
    )]
    RingKeyMissing {
        /// Namespace of the resource and the Secret.
        namespace: String,
        /// Name of the Secret.
        secret: String,
        /// The resource whose status records the key.
        recorded_by: String,
    },
    /// A resource without a namespace reached the controller (the CRD is namespaced).
    #[error("Habitat {0}: expected a namespaced resource, found no metadata.namespace")]
    MissingNamespace(String),
    /// Leader election could not read or write its Lease.
    #[error("leader election Lease {namespace}/{name}: {source}")]
    Lease {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Short name of the error for the `habitat_operator_reconcile_failures_total` metric.
    pub fn label(&self) -> String {
        match self {
            Error::Api { action, kind, .. } => format!("{action}_{}", kind.to_lowercase()),
            Error::ConfigSecretNotOwned { .. } => "config_secret_not_owned".to_owned(),
            Error::RingKeyMissing { .. } => "ring_key_missing".to_owned(),
            Error::SecretNotOwned { .. } => "secret_not_owned".to_owned(),
            Error::SecretMissing { .. } => "secret_missing".to_owned(),
            Error::InvalidConfig { .. } => "invalid_config".to_owned(),
            Error::ServiceNameMismatch { .. } => "service_name_mismatch".to_owned(),
            Error::MissingNamespace(_) => "missing_namespace".to_owned(),
            Error::Lease { .. } => "lease".to_owned(),
        }
        .replace(' ', "_")
    }

    /// Reason of the Degraded condition and the warning event for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ConfigSecretNotOwned { .. } => "ConfigSecretNotOwned",
            Error::RingKeyMissing { .. } => "RingKeyMissing",
            Error::SecretNotOwned { .. } => "SecretNotOwned",
            Error::SecretMissing { .. } => "SecretMissing",
            Error::InvalidConfig { .. } => "InvalidConfig",
            Error::ServiceNameMismatch { .. } => "ServiceNameMismatch",
            Error::Api { .. } | Error::MissingNamespace(_) | Error::Lease { .. } => "ApplyFailed",
        }
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
