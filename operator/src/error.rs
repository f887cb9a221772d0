//! The operator's error type. Each variant names what failed and on which object; `label`
//! gives the short name under which `error_policy` counts it in the metrics.

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
    /// The finalizer helper failed to add or remove the finalizer.
    #[error("finalizer {finalizer} on Habitat {namespace}/{name}: {message}")]
    Finalizer {
        /// Finalizer name.
        finalizer: &'static str,
        /// Namespace of the resource.
        namespace: String,
        /// Name of the resource.
        name: String,
        /// What failed.
        message: String,
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
            Error::Finalizer { .. } => "finalizer".to_owned(),
            Error::MissingNamespace(_) => "missing_namespace".to_owned(),
            Error::Lease { .. } => "lease".to_owned(),
        }
        .replace(' ', "_")
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
