//! habitat-operator: runs Habitat service groups on Kubernetes.
//!
//! One `Habitat` resource (`crd`) becomes a StatefulSet, two Services, a PodDisruptionBudget
//! and Secrets (`build`, pure functions of the resource), applied with server-side apply by
//! the controller (`reconcile`), which also writes the resource's status. A census stream per
//! resource (`follow`, over `gateway`) mirrors the ring's census into `status.census`
//! (`census`), applies the resource's config and files to the ring (`config`), and departs the
//! members a scale-down removed (`depart`). A change of the pod template rolls the pods in
//! election-aware order, the leader last (`rollout`: the StatefulSet updates `OnDelete`).

pub mod backoff;
pub mod build;
pub mod census;
pub mod config;
pub mod crd;
pub mod depart;
pub mod error;
pub mod follow;
pub mod gateway;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod testing;

pub use error::{Error, Result};
