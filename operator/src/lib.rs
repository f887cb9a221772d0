//! habitat-operator: runs Habitat service groups on Kubernetes.
//!
//! One `Habitat` resource (`crd`) becomes a StatefulSet, two Services, a PodDisruptionBudget
//! and Secrets (`build`, pure functions of the resource), applied with server-side apply by
//! the controller (`reconcile`), which also writes the resource's status.

pub mod backoff;
pub mod build;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod testing;

pub use error::{Error, Result};
