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
            Error::Api { .. } | Error::MissingNamespace(_) | Error::Lease { .. } => "ApplyFailed",
        }
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
