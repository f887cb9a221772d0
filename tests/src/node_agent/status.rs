//! Pod status as a pure function of what the agent knows about each container: phase (the
//! kubelet's rules), the PodScheduled, Initialized, ContainersReady and Ready conditions (a
//! condition keeps its lastTransitionTime while its status stays), container statuses.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The state of one container, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: Option<Time>,
        finished_at: Time,
    },
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> State {
        State::Waiting {
            reason: reason.to_owned(),
            message,
        }
    }

    fn to_api(&self) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            State::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at.clone()),
                }),
                ..ContainerState::default()
            },
            State::Terminated {
                exit_code,
                signal,
                reason,
                started_at,
                finished_at,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    started_at: started_at.clone(),
                    finished_at: Some(finished_at.clone()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            },
        }
    }
}

/// One container as the agent tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    pub image: String,
    pub restart_count: i32,
    pub state: State,
    pub last_state: Option<State>,
    pub ready: bool,
}

impl Record {
    pub fn new(name: &str, image: &str) -> Record {
        Record {
            name: name.to_owned(),
            image: image.to_owned(),
            restart_count: 0,
            state: State::waiting("ContainerCreating", None),
            last_state: None,
            ready: false,
        }
    }

    fn to_api(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: format!("habitat-node-agent://{}", self.image),
            container_id: None,
            ready: self.ready,
            restart_count: self.restart_count,
            started: Some(matches!(self.state, State::Running { .. })),
            state: Some(self.state.to_api()),
            last_state: Some(
                self.last_state
                    .as_ref()
                    .map(State::to_api)
                    .unwrap_or_default(),
            ),
            ..ContainerStatus::default()
        }
    }
}

/// Everything the status is made from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [Record],
    pub init_done: bool,
    /// An init container failed for good (restartPolicy Never).
    pub init_failed: bool,
    pub containers: &'a [Record],
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Time,
    /// The conditions last written (their transition times are kept).
    pub previous: &'a [PodCondition],
    pub now: Time,
}

/// The pod's phase by the kubelet's rules.
pub fn phase(f: &Facts) -> &'static str {
    if f.init_failed {
        return "Failed";
    }
    if !f.init_done {
        return "Pending";
    }
    let never_started = f
        .containers
        .iter()
        .any(|c| matches!(c.state, State::Waiting { .. }) && c.last_state.is_none());
    if never_started {
        return "Pending";
    }
    let exits: Vec<i32> = f
        .containers
        .iter()
        .filter_map(|c| match c.state {
            State::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        })
        .collect();
    if exits.len() < f.containers.len() {
        return "Running";
    }
    let all_ok = exits.iter().all(|&c| c == 0);
    match f.restart_policy {
        "Always" => "Running",
        "OnFailure" if !all_ok => "Running",
        _ if all_ok => "Succeeded",
        _ => "Failed",
    }
}

fn condition(f: &Facts, kind: &str, ok: bool) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = f
        .previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| f.now.clone());
    PodCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        last_transition_time: Some(since),
        ..PodCondition::default()
    }
}

/// The pod status for `f`.
pub fn pod_status(f: &Facts) -> PodStatus {
    let phase = phase(f);
    let running = phase == "Running";
    let ready = running && f.containers.iter().all(|c| c.ready);
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(vec![
            condition(f, "PodScheduled", true),
            condition(f, "Initialized", f.init_done),
            condition(f, "ContainersReady", ready),
            condition(f, "Ready", ready),
        ]),
        host_ip: Some(f.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: f.host_ip.clone(),
        }]),
        pod_ip: f.pod_ip.clone(),
        pod_ips: f.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: Some(f.start_time.clone()),
        init_container_statuses: (!f.init.is_empty())
            .then(|| f.init.iter().map(Record::to_api).collect()),
        container_statuses: Some(f.containers.iter().map(Record::to_api).collect()),
        // Set by the API server when the pod is created, from its resources, and immutable: a
        // pod with requests (Burstable) must not be written BestEffort.
        qos_class: None,
        ..PodStatus::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn facts<'a>(
        containers: &'a [Record],
        previous: &'a [PodCondition],
        policy: &'a str,
    ) -> Facts<'a> {
        Facts {
            restart_policy: policy,
            init: &[],
            init_done: true,
            init_failed: false,
            containers,
            pod_ip: Some("10.231.200.2".into()),
            host_ip: "10.231.200.1".into(),
            start_time: t(1),
            previous,
            now: t(10),
        }
    }

    fn terminated(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            signal: None,
            reason: "Error".into(),
            started_at: None,
            finished_at: t(5),
        }
    }

    #[test]
    fn a_pod_is_ready_when_every_container_is_and_keeps_its_transition_time() {
        let mut a = Record::new("a", "img");
        a.state = State::Running { started_at: t(2) };
        a.ready = true;
        let previous = vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(t(3)),
            ..PodCondition::default()
        }];
        let status = pod_status(&facts(std::slice::from_ref(&a), &previous, "Always"));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let conditions = status.conditions.unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.clone()),
            ("True", Some(t(3)))
        );
        let mut b = a.clone();
        b.ready = false;
        let status = pod_status(&facts(&[a, b], &previous, "Always"));
        let conditions = status.conditions.unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.clone()),
            ("False", Some(t(10)))
        );
    }

    #[test]
    fn the_phase_follows_the_restart_policy() {
        let mut done = Record::new("a", "img");
        done.state = terminated(0);
        let mut failed = Record::new("b", "img");
        failed.state = terminated(1);
        let both = [done.clone(), failed];
        assert_eq!(
            phase(&facts(std::slice::from_ref(&done), &[], "Never")),
            "Succeeded"
        );
        assert_eq!(phase(&facts(&both, &[], "Never")), "Failed");
        assert_eq!(phase(&facts(&both, &[], "OnFailure")), "Running");
        assert_eq!(
            phase(&facts(&[Record::new("c", "img")], &[], "Always")),
            "Pending"
        );
    }
}
