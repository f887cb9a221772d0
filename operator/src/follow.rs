//! One census stream per resource: a task that follows the ring's census through one ready
//! member's HTTP gateway (`GET /census`, long-polled by ETag), moves to another member when
//! that one fails, asks unconditionally at least every `resync`, and writes `status.census`
//! (and `status.applied`) only when they changed. It also applies the resource's config and
//! files through the same member's ctl gateway (`config`), since it holds what the ring has,
//! and departs the members of pods a scale-down removed (`depart`).
//!
//! The reconciler hands each task what it needs (`Follow`) through a watch channel; the task
//! owns its state and is the only writer of those two status fields, under its own field
//! manager, so its writes never race the reconciler's. Tasks end when their resource goes
//! (`Followers::retain`) or the operator stops.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use habitat_sidecar::census::doc::GroupDoc;
use habitat_sidecar::ctl::messages::ErrCode;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter as EventReporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::build::{CTL_PORT, HTTP_PORT, SELECTOR_LABEL};
use crate::census::{census_events, census_status, same_census, CensusEvent, PodView, Reporter};
use crate::config::{self, config_step, file_step, Desired, Step};
use crate::crd::{AppliedStatus, CensusStatus, Habitat};
use crate::depart;
use crate::gateway::{self, CensusAnswer};
use crate::metrics::Metrics;

/// Field manager of the census stream's status writes (`census`, `applied`).
pub const CENSUS_MANAGER: &str = "habitat-operator-census";

/// How the stream paces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long one long-poll waits for a change (the gateway allows up to 30 s).
    pub wait: Duration,
    /// Ask for the whole census at least this often (pods may have moved, health checks
    /// changed), even when the ring says nothing changed.
    pub resync: Duration,
    /// First delay after a failure (doubling up to `max_retry`).
    pub retry: Duration,
    pub max_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            wait: Duration::from_secs(30),
            resync: Duration::from_secs(60),
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(15),
        }
    }
}

/// What the reconciler gives a resource's stream.
#[derive(Clone, PartialEq)]
pub struct Follow {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `<service>.<group>`.
    pub service_group: String,
    pub count: i32,
    /// Ready pods as the StatefulSet counts them: a change wakes a stream waiting for a
    /// member to follow, so a pod that becomes ready is followed at once.
    pub ready_pods: i32,
    /// Pods that exist as the StatefulSet counts them (terminating ones too): a change wakes
    /// the stream to depart the members of pods a scale-down removed once they are gone.
    pub pods: i32,
    /// The ctl gateway's secret (`<name>-ctl`).
    pub ctl_secret: String,
    /// The HTTP gateway's bearer token (`<name>-gateway`).
    pub token: String,
    /// Config and files to apply.
    pub desired: Desired,
    /// False while the resource is paused: the census is followed, nothing is applied.
    pub apply: bool,
}

// Secrets stay out of logs.
impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("service_group", &self.service_group)
            .field("count", &self.count)
            .field("desired", &self.desired)
            .field("apply", &self.apply)
            .finish_non_exhaustive()
    }
}

struct Handle {
    uid: String,
    tx: watch::Sender<Arc<Follow>>,
    task: tokio::task::JoinHandle<()>,
}

/// The streams, one per resource.
pub struct Followers {
    tasks: Mutex<HashMap<ObjectRef<Habitat>, Handle>>,
    timing: Timing,
    metrics: Arc<Metrics>,
    events: Option<EventReporter>,
}

impl Followers {
    /// Streams paced by `timing`, counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>, timing: Timing) -> Followers {
        Followers {
            tasks: Mutex::default(),
            timing,
            metrics,
            events: None,
        }
    }

    /// Streams that publish the events census changes tell (`census_events`) as `reporter`.
    pub fn with_events(mut self, reporter: EventReporter) -> Followers {
        self.events = Some(reporter);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Habitat>, Handle>> {
        // A panic while holding it leaves the map intact: keep going with it.
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts following `hab` with `follow`, or hands a running stream the new `follow`
    /// (waking it only when something changed). A new stream starts from what `hab`'s status
    /// says was written before.
    pub fn follow(&self, client: &Client, hab: &Habitat, follow: Follow) {
        let key = ObjectRef::from_obj(hab);
        let mut tasks = self.lock();
        if let Some(handle) = tasks.get(&key) {
            if handle.uid == follow.uid && !handle.task.is_finished() {
                handle.tx.send_if_modified(|current| {
                    if **current == follow {
                        return false;
                    }
                    *current = Arc::new(follow);
                    true
                });
                return;
            }
            handle.task.abort();
        }
        let status = hab.status.clone().unwrap_or_default();
        let written = Written {
            census: status.census,
            applied: status.applied.unwrap_or_default(),
        };
        let uid = follow.uid.clone();
        let span =
            tracing::info_span!("census", habitat = %follow.name, namespace = %follow.namespace);
        let (tx, rx) = watch::channel(Arc::new(follow));
        let stream = Stream {
            client: client.clone(),
            rx,
            written,
            timing: self.timing,
            metrics: Arc::clone(&self.metrics),
            events: self.events.clone(),
        };
        let task = tokio::spawn(stream.run().instrument(span));
        tasks.insert(key, Handle { uid, tx, task });
    }

    /// Ends the streams of resources for which `keep(resource, uid)` is false.
    pub fn retain(&self, keep: impl Fn(&ObjectRef<Habitat>, &str) -> bool) {
        self.lock().retain(|key, handle| {
            let kept = keep(key, &handle.uid) && !handle.task.is_finished();
            if !kept {
                handle.task.abort();
                debug!(habitat = %key, "census stream ended");
            }
            kept
        });
    }

    /// Number of running streams.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no stream runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every stream.
    pub fn stop_all(&self) {
        self.retain(|_, _| false);
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// What the stream last wrote (or found written).
#[derive(Clone, Debug, Default, PartialEq)]
struct Written {
    census: Option<CensusStatus>,
    applied: AppliedStatus,
}

/// The member the stream follows.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    pod: String,
    ip: IpAddr,
}

impl Target {
    fn http(&self) -> SocketAddr {
        SocketAddr::new(self.ip, HTTP_PORT as u16)
    }

    fn ctl(&self) -> String {
        SocketAddr::new(self.ip, CTL_PORT as u16).to_string()
    }
}

/// The member to follow among `pods`: ready, with an IP, not among `failed`; the one
/// followed before if it still qualifies, else the first by name.
fn pick(pods: &[PodView], previous: Option<&str>, failed: &[String]) -> Option<Target> {
    let mut candidates: Vec<(&PodView, IpAddr)> = pods
        .iter()
        .filter(|p| p.ready && !failed.contains(&p.name))
        .filter_map(|p| Some((p, p.ip.as_deref()?.parse().ok()?)))
        .collect();
    candidates.sort_by(|a, b| {
        (Some(a.0.name.as_str()) != previous, &a.0.name)
            .cmp(&(Some(b.0.name.as_str()) != previous, &b.0.name))
    });
    candidates.first().map(|(p, ip)| Target {
        pod: p.name.clone(),
        ip: *ip,
    })
}

struct Stream {
    client: Client,
    rx: watch::Receiver<Arc<Follow>>,
    written: Written,
    timing: Timing,
    metrics: Arc<Metrics>,
    events: Option<EventReporter>,
}

/// Why one round of the stream ended.
enum Round {
    Census(Box<GroupDoc>, String),
    /// The member answered, but its census has no such group (no service of it runs yet).
    NoGroup(String),
    Unchanged,
    Failed(String),
    FollowChanged,
    Closed,
}

impl Stream {
    async fn run(mut self) {
        let mut follow = Arc::clone(&self.rx.borrow_and_update());
        let mut target: Option<Target> = None;
        // The member that reported the census written before (by this stream or an earlier
        // operator), so a restart reads the same member's view and finds nothing to write.
        let mut previous: Option<String> = self.written.census.as_ref().and_then(|c| {
            let id = c.reported_by.as_ref()?;
            c.members.iter().find(|m| &m.member_id == id)?.pod.clone()
        });
        let mut failed: Vec<String> = Vec::new();
        // Why each member in `failed` failed, for `census.unreachable`.
        let mut failures: Vec<String> = Vec::new();
        let mut etag: Option<String> = None;
        let mut ring: Option<GroupDoc> = None;
        let mut pods: Vec<PodView> = Vec::new();
        let mut full_at: Option<Instant> = None;
        let mut delay = self.timing.retry;
        let mut apply_at: Option<Instant> = None;
        let mut apply_delay = self.timing.retry;
        loop {
            // Apply what the spec asks, against the ring as last seen.
            if let (Some(t), Some(group)) = (&target, &ring) {
                if follow.apply && apply_at.is_none_or(|at| Instant::now() >= at) {
                    let mut applied = self.written.applied.clone();
                    let outcome = apply(&follow, t, group, &mut applied, &self.metrics).await;
                    match outcome {
                        Ok(()) => {
                            applied.error = None;
                            apply_at = None;
                            apply_delay = self.timing.retry;
                        }
                        Err((error, stale)) => {
                            warn!(member = %t.pod, %error, "applying config to the ring");
                            applied.error = Some(error);
                            apply_at = Some(Instant::now() + apply_delay);
                            apply_delay = (apply_delay * 2).min(self.timing.max_retry);
                            if stale {
                                // The ring moved on: ask for the census at once.
                                etag = None;
                            }
                        }
                    }
                    if applied != self.written.applied {
                        let census = self.written.census.clone();
                        if !self.write(&follow, census, applied).await {
                            return;
                        }
                    }
                }
            }
            let Some(t) = target.clone() else {
                match self.pods(&follow).await {
                    Ok(list) => pods = list,
                    Err(error) => warn!(%error, "listing the pods"),
                }
                target = pick(&pods, previous.as_deref(), &failed);
                if target.is_none() {
                    if !failures.is_empty() {
                        // Every member asked failed: say so (a Degraded condition), keeping the
                        // last census seen.
                        let why = std::mem::take(&mut failures).join("; ");
                        if !self.mark_unreachable(&follow, Some(why)).await {
                            return;
                        }
                    }
                    // Nobody to ask (or everyone failed): try them all again after a while.
                    failed.clear();
                    if !self.pause(delay, &mut follow).await {
                        return;
                    }
                    delay = (delay * 2).min(self.timing.max_retry);
                } else {
                    etag = None;
                }
                continue;
            };
            let resync = full_at.is_none_or(|at| at.elapsed() >= self.timing.resync);
            let conditional = if resync { None } else { etag.clone() };
            let round = self
                .round(&follow, &t, conditional.as_deref(), apply_at)
                .await;
            match round {
                Round::Census(group, new_etag) => {
                    etag = Some(new_etag).filter(|e| !e.is_empty());
                    full_at = Some(Instant::now());
                    failed.clear();
                    failures.clear();
                    delay = self.timing.retry;
                    previous = Some(t.pod.clone());
                    match self.pods(&follow).await {
                        Ok(list) => pods = list,
                        Err(error) => warn!(%error, "listing the pods"),
                    }
                    let reporter = Reporter {
                        member_id: group.local_member_id.clone(),
                        service_health: gateway::service_health(
                            t.http(),
                            Some(&follow.token),
                            &follow.service_group,
                            Duration::from_secs(5),
                        )
                        .await,
                    };
                    let census = census_status(&group, &pods, follow.count, &reporter, &now());
                    if !same_census(self.written.census.as_ref(), Some(&census)) {
                        let applied = self.written.applied.clone();
                        if !self.write(&follow, Some(census), applied).await {
                            return;
                        }
                    }
                    if follow.apply {
                        self.depart_removed(&follow, &t, &group, &pods).await;
                    }
                    ring = Some(*group);
                    // Counted once handled (a test waits for it to know the stream is idle).
                    self.metrics.census_answers.inc();
                }
                Round::NoGroup(new_etag) => {
                    self.metrics.census_answers.inc();
                    // Wait for the census to change (the service to come up).
                    etag = Some(new_etag).filter(|e| !e.is_empty());
                    full_at = Some(Instant::now());
                    failed.clear();
                    failures.clear();
                    previous = Some(t.pod.clone());
                    ring = None;
                    if !self.mark_unreachable(&follow, None).await {
                        return;
                    }
                }
                Round::Unchanged => {}
                Round::Failed(error) => {
                    info!(member = %t.pod, %error, "census stream: moving to another member");
                    self.metrics.census_failovers.inc();
                    failures.push(format!("{}: {error}", t.pod));
                    failed.push(t.pod.clone());
                    target = None;
                    etag = None;
                }
                Round::FollowChanged => {
                    let new = Arc::clone(&self.rx.borrow_and_update());
                    let scaled = (new.pods, new.count) != (follow.pods, follow.count);
                    follow = new;
                    // A removed pod is gone: depart its member without waiting for the census
                    // to change (it changed when the member was confirmed dead, while its pod
                    // was still terminating).
                    if let (true, true, Some(group)) = (scaled, follow.apply, &ring) {
                        match self.pods(&follow).await {
                            Ok(list) => {
                                pods = list;
                                self.depart_removed(&follow, &t, group, &pods).await;
                            }
                            Err(error) => warn!(%error, "listing the pods"),
                        }
                    }
                }
                Round::Closed => return,
            }
        }
    }

    /// Sets (or clears) `census.unreachable` when it differs from what was written; false when
    /// the resource is gone.
    async fn mark_unreachable(&mut self, follow: &Follow, why: Option<String>) -> bool {
        let written = self.written.census.clone().unwrap_or_default();
        if written.unreachable == why {
            return true;
        }
        let census = CensusStatus {
            unreachable: why,
            observed_at: Some(now()),
            ..written
        };
        let applied = self.written.applied.clone();
        self.write(follow, Some(census), applied).await
    }

    /// Departs the members whose pods a scale-down removed (`depart::departures`) through
    /// `target`'s ctl gateway. A failure is logged and tried again with the next census.
    async fn depart_removed(
        &self,
        follow: &Follow,
        target: &Target,
        group: &GroupDoc,
        pods: &[PodView],
    ) {
        let members = depart::member_views(group, self.written.census.as_ref(), &follow.name);
        for id in depart::departures(&follow.name, follow.count, &members, pods) {
            match depart::send_departure(&target.ctl(), &follow.ctl_secret, &id).await {
                Ok(()) => {
                    self.metrics.departures.inc();
                    info!(member = %id, through = %target.pod, "departed a member whose pod a scale-down removed");
                }
                Err(error) => {
                    warn!(member = %id, through = %target.pod, %error, "departing a removed member");
                }
            }
        }
    }

    /// One request, cut short by a new `Follow` or by a due retry of applying config.
    async fn round(
        &mut self,
        follow: &Follow,
        target: &Target,
        etag: Option<&str>,
        apply_at: Option<Instant>,
    ) -> Round {
        let wait = self.timing.wait;
        let request = gateway::census(
            target.http(),
            Some(&follow.token),
            etag,
            wait,
            wait + Duration::from_secs(10),
        );
        let retry = async {
            match apply_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            answer = request => match answer {
                Ok(CensusAnswer::Census { etag, doc }) => match doc.census_groups.get(&follow.service_group) {
                    Some(group) => Round::Census(Box::new(group.clone()), etag.unwrap_or_default()),
                    None => Round::NoGroup(etag.unwrap_or_default()),
                },
                Ok(CensusAnswer::Unchanged) => Round::Unchanged,
                Err(error) => Round::Failed(error.to_string()),
            },
            changed = self.rx.changed() => if changed.is_ok() { Round::FollowChanged } else { Round::Closed },
            () = retry => Round::Unchanged,
        }
    }

    /// Waits `delay`, or less if a new `Follow` comes; false when the channel closed.
    async fn pause(&mut self, delay: Duration, follow: &mut Arc<Follow>) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            changed = self.rx.changed() => {
                if changed.is_err() {
                    return false;
                }
                *follow = Arc::clone(&self.rx.borrow_and_update());
                true
            }
        }
    }

    async fn pods(&self, follow: &Follow) -> Result<Vec<PodView>, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &follow.namespace);
        let params = ListParams::default().labels(&format!("{SELECTOR_LABEL}={}", follow.name));
        let list = api.list(&params).await?;
        Ok(list.items.iter().map(PodView::of).collect())
    }

    /// Writes `census` and `applied`; false when the resource is gone (the stream ends).
    async fn write(
        &mut self,
        follow: &Follow,
        census: Option<CensusStatus>,
        applied: AppliedStatus,
    ) -> bool {
        let api: Api<Habitat> = Api::namespaced(self.client.clone(), &follow.namespace);
        let patch = serde_json::json!({
            "apiVersion": Habitat::api_version(&()),
            "kind": Habitat::kind(&()),
            "metadata": { "uid": follow.uid },
            "status": { "census": census, "applied": applied },
        });
        match api
            .patch_status(
                &follow.name,
                &PatchParams::apply(CENSUS_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
        {
            Ok(_) => {
                self.metrics.census_writes.inc();
                // Told once written: a failed write is retried with the next census, and a
                // restarted operator starts from what was written.
                if let Some(next) = &census {
                    for event in census_events(self.written.census.as_ref(), next) {
                        self.publish(follow, event).await;
                    }
                }
                self.written = Written { census, applied };
                true
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                // Gone, or replaced by another of the same name (uid precondition).
                debug!(code = status.code, "resource gone: census stream ends");
                false
            }
            Err(error) => {
                warn!(%error, "writing status.census");
                true
            }
        }
    }
}

impl Stream {
    /// Publishes `event` on the resource (and about its pod, when it names one).
    async fn publish(&self, follow: &Follow, event: CensusEvent) {
        let Some(reporter) = &self.events else {
            return;
        };
        info!(reason = event.reason, note = %event.note, "census event");
        let regarding = ObjectReference {
            api_version: Some(Habitat::api_version(&()).into_owned()),
            kind: Some(Habitat::kind(&()).into_owned()),
            name: Some(follow.name.clone()),
            namespace: Some(follow.namespace.clone()),
            uid: Some(follow.uid.clone()),
            ..ObjectReference::default()
        };
        let secondary = event.pod.as_ref().map(|pod| ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.clone()),
            namespace: Some(follow.namespace.clone()),
            ..ObjectReference::default()
        });
        let k8s_event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.to_owned(),
            note: Some(event.note),
            action: "Census".to_owned(),
            secondary,
        };
        // A recorder per event: one kept would fold the same reason about the same object
        // into a series that keeps the first note (a second `ConfigApplied` would still say
        // the first incarnation), and each of these is a happening of its own.
        let recorder = Recorder::new(self.client.clone(), reporter.clone());
        if let Err(error) = recorder.publish(&k8s_event, &regarding).await {
            warn!(%error, reason = event.reason, "could not publish event");
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Applies `follow`'s config and files through `target`'s ctl gateway against the ring as
/// `group` shows it, recording what was applied in `applied`. On failure: the message, and
/// whether the ring had moved on (a newer incarnation than the census showed).
async fn apply(
    follow: &Follow,
    target: &Target,
    group: &GroupDoc,
    applied: &mut AppliedStatus,
    metrics: &Metrics,
) -> Result<(), (String, bool)> {
    let addr = target.ctl();
    let secret = &follow.ctl_secret;
    let sg = &follow.service_group;
    let failed = |what: String, e: habitat_sidecar::ctl::Error| {
        let stale = e.remote_code() == Some(ErrCode::Conflict);
        (
            format!("{what} through {} ({addr}): {e}", target.pod),
            stale,
        )
    };
    match &follow.desired.config {
        None => applied.config = None,
        Some(desired) => match config_step(
            desired,
            group.service_config.as_ref(),
            applied.config.as_ref(),
        ) {
            Step::Nothing => {}
            Step::Record(incarnation) => {
                applied.config = Some(config::applied(&desired.content, incarnation));
            }
            Step::Send(incarnation) => {
                config::send_config(&addr, secret, sg, &desired.content, incarnation)
                    .await
                    .map_err(|e| failed(format!("config at incarnation {incarnation}"), e))?;
                metrics.ring_applies.inc();
                info!(incarnation, member = %target.pod, "applied service config to the ring");
                applied.config = Some(config::applied(&desired.content, incarnation));
            }
        },
    }
    applied
        .files
        .retain(|name, _| follow.desired.files.contains_key(name));
    for (name, content) in &follow.desired.files {
        let step = file_step(
            content,
            group.service_files.get(name),
            applied.files.get(name),
        );
        match step {
            Step::Nothing => {}
            Step::Record(incarnation) | Step::Send(incarnation) => {
                config::send_file(&addr, secret, sg, name, content, incarnation)
                    .await
                    .map_err(|e| failed(format!("file {name} at version {incarnation}"), e))?;
                metrics.ring_applies.inc();
                info!(file = %name, incarnation, member = %target.pod, "applied file to the ring");
                applied
                    .files
                    .insert(name.clone(), config::applied(content, incarnation));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> PodView {
        PodView {
            name: name.into(),
            ip: ip.map(str::to_owned),
            ready,
        }
    }

    #[test]
    fn the_stream_follows_a_ready_member_with_an_ip_and_sticks_to_it() {
        let pods = [
            pod("web-0", Some("10.0.0.1"), true),
            pod("web-1", Some("10.0.0.2"), true),
            pod("web-2", None, true),
            pod("web-3", Some("10.0.0.4"), false),
        ];
        assert_eq!(pick(&pods, None, &[]).unwrap().pod, "web-0");
        assert_eq!(pick(&pods, Some("web-1"), &[]).unwrap().pod, "web-1");
        let target = pick(&pods, Some("web-1"), &["web-1".into()]).unwrap();
        assert_eq!(target.pod, "web-0");
        assert_eq!(target.http().to_string(), "10.0.0.1:9631");
        assert_eq!(target.ctl(), "10.0.0.1:9632");
        assert!(pick(&pods, None, &["web-0".into(), "web-1".into()]).is_none());
    }
}
