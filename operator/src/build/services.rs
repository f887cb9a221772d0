//! The two Services of a resource: headless `<name>-peers`, which gives every pod the stable
//! DNS name `<name>-N.<name>-peers` its peers join through (published before the pod is
//! ready, or a ring could never form), and `<name>`, a ClusterIP Service for the supervisors'
//! HTTP gateway (census, health) and control gateway (`hab config apply --remote-sup`).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, peers_service_name, selector_labels, CTL_PORT, GOSSIP_PORT, HTTP_PORT};
use crate::crd::Habitat;

fn port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        protocol: Some(protocol.to_owned()),
        target_port: Some(IntOrString::Int(port)),
        ..ServicePort::default()
    }
}

/// Headless Service `<name>-peers`.
pub fn peers_service(hab: &Habitat) -> Service {
    Service {
        metadata: child_meta(hab, peers_service_name(hab)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(hab)),
            ports: Some(vec![
                port("gossip-tcp", GOSSIP_PORT, "TCP"),
                port("gossip-udp", GOSSIP_PORT, "UDP"),
                port("http", HTTP_PORT, "TCP"),
                port("ctl", CTL_PORT, "TCP"),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// ClusterIP Service `<name>`.
pub fn client_service(hab: &Habitat) -> Service {
    Service {
        metadata: child_meta(hab, hab.name_any()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(hab)),
            ports: Some(vec![
                port("http", HTTP_PORT, "TCP"),
                port("ctl", CTL_PORT, "TCP"),
            ]),
            ..ServiceSpec::default()
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
    fn peers_service_matches_golden() {
        assert_golden("service-peers", &peers_service(&Habitat::test("web")));
    }

    #[test]
    fn client_service_matches_golden() {
        assert_golden("service-client", &client_service(&Habitat::test("web")));
    }

    #[test]
    fn peers_are_resolvable_before_they_are_ready() {
        let spec = peers_service(&Habitat::test("web")).spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
    }
}
