//! Kubernetes operator for Habitat service groups (see issue: operator).
