//! What the HTTP gateway serves, built on the loop when a request asks for it (see
//! `http::snapshot`): the census, `/butterfly`, `/services`, health, readiness and metrics.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::LoopState;
use crate::census;
use crate::http::services as service_gateway;
use crate::http::snapshot;
use crate::service::status::ServiceStatus;

/// What the HTTP gateway shows, built on the loop when a request asks (at most once per
/// `snapshot::MIN_REBUILD`), served by the gateway's own tasks.
impl snapshot::Source for LoopState {
    fn butterfly(&mut self) -> Bytes {
        json_bytes(&self.with_census_input(census::butterfly))
    }

    fn census(&mut self) -> Bytes {
        // This member's own election view wins over the rumor (NoQuorum is not gossiped).
        let local = self.local_elections();
        json_bytes(&self.with_census_input(|input| census::census_with(input, &local)))
    }

    fn services(&mut self) -> Vec<serde_json::Value> {
        let groups = self.census_groups();
        self.services
            .values()
            .map(|service| {
                let status = service.status.borrow();
                let election = groups
                    .iter()
                    .find(|g| g.service_group == service.spec.service_group)
                    .map_or(census::ELECTION_NONE, |g| g.election_status);
                service_gateway::service_json(
                    &service.spec,
                    &status,
                    &service.pkg_ctx,
                    &self.dirs.sup,
                    election,
                )
            })
            .collect()
    }

    fn statuses(&mut self) -> Vec<(String, ServiceStatus)> {
        self.services
            .values()
            .map(|s| (s.spec.service_group.to_string(), s.status.borrow().clone()))
            .collect()
    }

    fn ready(&mut self) -> std::result::Result<(), String> {
        self.readiness()
    }

    fn metrics(&mut self) -> Bytes {
        let ctl = &self.ctl_counters;
        self.metrics.count_ctl(
            ctl.refused_secret.load(Ordering::Relaxed),
            ctl.malformed.load(Ordering::Relaxed),
        );
        let members = self.node.members();
        let text = self.metrics.render(
            self.node.stats(),
            &members,
            self.node.local_health(),
            self.node.store(),
        );
        Bytes::from(text)
    }
}

fn json_bytes(doc: &serde_json::Value) -> Bytes {
    // Serialising a Value cannot fail (its keys are strings).
    serde_json::to_vec(doc).map_or_else(|_| Bytes::from_static(b"null"), Bytes::from)
}
