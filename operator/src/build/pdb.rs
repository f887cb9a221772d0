//! The PodDisruptionBudget `<name>`: leader topologies of 3 or more keep a quorum (more than
//! half of the members) through voluntary disruptions such as node drains; standalone groups,
//! and leader groups of 1 or 2 (which cannot keep a quorum through any disruption: a budget of
//! all their members would block `kubectl drain` and node upgrades for ever), lose at most one
//! member at a time. Unhealthy pods may always be evicted (they serve nobody, and a budget that
//! protects them can wedge a drain).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, selector_labels};
use crate::crd::Habitat;

/// Members that make a quorum of a group of `count`.
pub fn quorum(count: i32) -> i32 {
    count.max(1) / 2 + 1
}

/// PodDisruptionBudget of `hab`.
pub fn pdb(hab: &Habitat) -> PodDisruptionBudget {
    let keeps_quorum = hab.spec.service.topology.elects_leader() && hab.spec.count >= 3;
    let (min_available, max_unavailable) = if keeps_quorum {
        (Some(IntOrString::Int(quorum(hab.spec.count))), None)
    } else {
        (None, Some(IntOrString::Int(1)))
    };
    PodDisruptionBudget {
        metadata: child_meta(hab, hab.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available,
            max_unavailable,
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(hab)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        }),
        status: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::build::golden::assert_golden;

    #[test]
    fn leader_pdb_matches_golden() {
        assert_golden("pdb-leader", &pdb(&Habitat::test("db").leader().count(5)));
    }

    #[test]
    fn quorum_is_more_than_half() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn leader_groups_of_one_or_two_can_still_be_drained() {
        for count in [1, 2] {
            let spec = pdb(&Habitat::test("db").leader().count(count))
                .spec
                .unwrap();
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)), "{count}");
            assert_eq!(spec.min_available, None, "{count}");
        }
        let spec = pdb(&Habitat::test("db").leader().count(3)).spec.unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(2)));
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }

    #[test]
    fn standalone_groups_lose_one_member_at_a_time() {
        let spec = pdb(&Habitat::test("web").count(4)).spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
    }
}
