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
                let mut json = service_gateway::service_json(
                    &service.spec,
                    &status,
                    &service.pkg_ctx,
                    &self.dirs.sup,
                    election,
                );
                let group = groups
                    .iter()
                    .find(|g| g.service_group == service.spec.service_group);
                add_update_settings(&mut json, &service.spec_file, group);
                json
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

/// The service's update settings in Habitat's `/services` fields (`bldr_url`, `channel`,
/// `update_strategy`), and ours under `update`: the period, and the group's roll as `/census`
/// shows it (`target`, `status`, `member`).
fn add_update_settings(
    json: &mut serde_json::Value,
    spec: &super::specs::SpecFile,
    group: Option<&census::CensusGroup>,
) {
    let serde_json::Value::Object(map) = json else {
        return;
    };
    map.insert(
        "bldr_url".into(),
        serde_json::json!(spec.bldr_url.clone().unwrap_or_default()),
    );
    map.insert("channel".into(), serde_json::json!(spec.channel));
    map.insert(
        "update_strategy".into(),
        serde_json::json!(spec.update_strategy.as_str()),
    );
    let roll = group.and_then(census::CensusGroup::update_doc);
    map.insert(
        "update".into(),
        serde_json::json!({
            "period": spec.update_period.as_secs_f64(),
            "target": roll.as_ref().and_then(|r| r.target.clone()),
            "status": roll.as_ref().map_or("idle", |r| r.status.as_str()),
            "member": roll.as_ref().and_then(|r| r.member.clone()),
        }),
    );
}

fn json_bytes(doc: &serde_json::Value) -> Bytes {
    // Serialising a Value cannot fail (its keys are strings).
    serde_json::to_vec(doc).map_or_else(|_| Bytes::from_static(b"null"), Bytes::from)
}
