//! What the HTTP gateway serves, built by the supervisor loop and read by the gateway's own
//! tasks, so no request runs on the loop that answers SWIM.
//!
//! A request asks for a document kind and waits until the loop has built that kind after the
//! request arrived (so a client that changed something and then reads sees its change). The
//! loop builds only the kinds asked for, and at most once per `MIN_REBUILD` whatever the
//! number of requests: every request waiting for a kind is answered by the same build. A flood
//! of `/census` costs the loop at most `1 s / MIN_REBUILD` builds a second.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::service::status::ServiceStatus;

/// The loop builds a kind at most this often.
pub const MIN_REBUILD: Duration = Duration::from_millis(50);

/// The documents the gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doc {
    Butterfly,
    Census,
    Services,
    Statuses,
    Ready,
    Metrics,
}

impl Doc {
    pub const ALL: [Doc; 6] = [
        Doc::Butterfly,
        Doc::Census,
        Doc::Services,
        Doc::Statuses,
        Doc::Ready,
        Doc::Metrics,
    ];

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// What the loop knows and the gateway shows; implemented by the supervisor loop.
pub trait Source {
    /// `/butterfly`, serialised.
    fn butterfly(&mut self) -> Bytes;
    /// `/census`, serialised.
    fn census(&mut self) -> Bytes;
    /// The `/services` entries, one per loaded service.
    fn services(&mut self) -> Vec<serde_json::Value>;
    /// Each loaded service group's status, for the health endpoints.
    fn statuses(&mut self) -> Vec<(String, ServiceStatus)>;
    /// `/readyz`: ready, or why not.
    fn ready(&mut self) -> Result<(), String>;
    /// `/metrics` in Prometheus' text format.
    fn metrics(&mut self) -> Bytes;
}

/// One document and the requests it answers: those numbered up to `answers`.
#[derive(Clone, Debug)]
pub struct Built<T> {
    answers: u64,
    doc: Option<T>,
}

impl<T> Default for Built<T> {
    fn default() -> Self {
        Built {
            answers: 0,
            doc: None,
        }
    }
}

/// The documents as last built.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub butterfly: Built<Bytes>,
    pub census: Built<Bytes>,
    pub services: Built<Arc<Vec<serde_json::Value>>>,
    pub statuses: Built<Arc<Vec<(String, ServiceStatus)>>>,
    pub ready: Built<Result<(), String>>,
    pub metrics: Built<Bytes>,
}

#[derive(Debug, Default)]
struct Asked {
    /// Requests so far; each takes the next number.
    requests: AtomicU64,
    /// The kinds asked for since the loop last looked (`Doc::bit`s).
    kinds: AtomicU8,
    wake: Notify,
}

/// The loop's signal that the census may have changed (what it is built from moved), which
/// wakes requests waiting for a change (`GET /census` with `If-None-Match` and `wait`). A
/// counter: waking on a change that altered nothing only costs a comparison.
#[derive(Clone, Debug)]
pub struct CensusChanges(watch::Sender<u64>);

impl CensusChanges {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The loop's end.
#[derive(Debug)]
pub struct Publisher {
    asked: Arc<Asked>,
    view: watch::Sender<View>,
    census_changes: CensusChanges,
    last_build: Option<Instant>,
    /// When a build is owed but held back by `MIN_REBUILD`.
    due: Option<Instant>,
    builds: u64,
}

/// The gateway's end; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reader {
    asked: Arc<Asked>,
    view: watch::Receiver<View>,
    census_changes: watch::Receiver<u64>,
}

pub fn channel() -> (Publisher, Reader) {
    let asked = Arc::new(Asked::default());
    let (tx, rx) = watch::channel(View::default());
    let (changes_tx, changes_rx) = watch::channel(0);
    (
        Publisher {
            asked: Arc::clone(&asked),
            view: tx,
            census_changes: CensusChanges(changes_tx),
            last_build: None,
            due: None,
            builds: 0,
        },
        Reader {
            asked,
            view: rx,
            census_changes: changes_rx,
        },
    )
}

impl Publisher {
    /// Completes when a request asked for something (cancel-safe: a request made while nobody
    /// waited is remembered).
    pub async fn asked(&self) {
        self.asked.wake.notified().await;
    }

    /// When a held-back build is due.
    pub const fn next_due(&self) -> Option<Instant> {
        self.due
    }

    /// The signal the loop gives when the census may have changed.
    pub fn census_changes(&self) -> CensusChanges {
        self.census_changes.clone()
    }

    /// How many builds so far (each builds one or more kinds).
    pub const fn builds(&self) -> u64 {
        self.builds
    }

    /// Builds what was asked for, now or, within `MIN_REBUILD` of the last build, when
    /// `next_due` says (call again then).
    pub fn serve(&mut self, now: Instant, source: &mut impl Source) {
        if let Some(last) = self.last_build {
            let earliest = last + MIN_REBUILD;
            if now < earliest {
                self.due = Some(earliest);
                return;
            }
        }
        self.due = None;
        // Kinds first, then the count: a request numbers itself before it names its kind, so
        // every request whose kind is taken here is counted below.
        let kinds = self.asked.kinds.swap(0, Ordering::SeqCst);
        if kinds == 0 {
            return;
        }
        let answers = self.asked.requests.load(Ordering::SeqCst);
        let wanted = |doc: Doc| kinds & doc.bit() != 0;
        let mut view = self.view.borrow().clone();
        if wanted(Doc::Butterfly) {
            view.butterfly = built(answers, source.butterfly());
        }
        if wanted(Doc::Census) {
            view.census = built(answers, source.census());
        }
        if wanted(Doc::Services) {
            view.services = built(answers, Arc::new(source.services()));
        }
        if wanted(Doc::Statuses) {
            view.statuses = built(answers, Arc::new(source.statuses()));
        }
        if wanted(Doc::Ready) {
            view.ready = built(answers, source.ready());
        }
        if wanted(Doc::Metrics) {
            view.metrics = built(answers, source.metrics());
        }
        self.view.send_replace(view);
        self.last_build = Some(now);
        self.builds += 1;
    }
}

const fn built<T>(answers: u64, doc: T) -> Built<T> {
    Built {
        answers,
        doc: Some(doc),
    }
}

impl Reader {
    /// Fires when the loop says the census may have changed (see `CensusChanges`).
    pub fn census_changes(&self) -> watch::Receiver<u64> {
        self.census_changes.clone()
    }

    /// The document `pick` chooses, built after this call began; `None` when the loop is gone
    /// or did not build it within `timeout`.
    pub async fn get<T: Clone>(
        &self,
        doc: Doc,
        pick: impl Fn(&View) -> &Built<T>,
        timeout: Duration,
    ) -> Option<T> {
        let number = self.asked.requests.fetch_add(1, Ordering::SeqCst) + 1;
        self.asked.kinds.fetch_or(doc.bit(), Ordering::SeqCst);
        self.asked.wake.notify_one();
        let mut view = self.view.clone();
        let wait = async {
            loop {
                {
                    let current = view.borrow_and_update();
                    let built = pick(&current);
                    if built.answers >= number {
                        if let Some(doc) = &built.doc {
                            return Some(doc.clone());
                        }
                    }
                }
                view.changed().await.ok()?;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// The loop's part as the supervisor plays it, for tests: build on a request, or when a
/// held-back build is due.
#[cfg(test)]
pub(crate) fn spawn_test_loop(
    mut publisher: Publisher,
    mut source: impl Source + Send + 'static,
    answers: bool,
) {
    tokio::spawn(async move {
        loop {
            match publisher.next_due() {
                Some(due) => tokio::select! {
                    () = publisher.asked() => {}
                    () = tokio::time::sleep_until(due.into()) => {}
                },
                None => publisher.asked().await,
            }
            if answers {
                publisher.serve(Instant::now(), &mut source);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Counts what it was asked to build; the census says how many census builds came before.
    #[derive(Clone, Default)]
    struct Counting {
        census_builds: Arc<AtomicU64>,
        other_builds: Arc<AtomicU64>,
    }

    impl Counting {
        fn other(&self) {
            self.other_builds.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Source for Counting {
        fn butterfly(&mut self) -> Bytes {
            self.other();
            Bytes::from_static(b"{}")
        }
        fn census(&mut self) -> Bytes {
            let count = self.census_builds.fetch_add(1, Ordering::SeqCst) + 1;
            Bytes::from(count.to_string())
        }
        fn services(&mut self) -> Vec<serde_json::Value> {
            self.other();
            Vec::new()
        }
        fn statuses(&mut self) -> Vec<(String, ServiceStatus)> {
            self.other();
            Vec::new()
        }
        fn ready(&mut self) -> Result<(), String> {
            self.other();
            Ok(())
        }
        fn metrics(&mut self) -> Bytes {
            self.other();
            Bytes::new()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_requests_costs_the_loop_a_bounded_number_of_builds() {
        let (publisher, reader) = channel();
        let counts = Counting::default();
        spawn_test_loop(publisher, counts.clone(), true);
        let started = tokio::time::Instant::now();
        let requests: Vec<_> = (0..2_000)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move {
                    reader
                        .get(Doc::Census, |v| &v.census, Duration::from_secs(5))
                        .await
                })
            })
            .collect();
        for request in requests {
            assert!(
                request.await.unwrap().is_some(),
                "a request went unanswered"
            );
        }
        let elapsed = started.elapsed();
        let census_builds = counts.census_builds.load(Ordering::SeqCst);
        // One build per MIN_REBUILD at most (plus the first), not one per request.
        let bound = elapsed.as_millis() / MIN_REBUILD.as_millis() + 1;
        assert!(
            u128::from(census_builds) <= bound,
            "{census_builds} builds for 2,000 requests in {elapsed:?}"
        );
        assert_eq!(
            counts.other_builds.load(Ordering::SeqCst),
            0,
            "built kinds nobody asked for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_built_after_the_request_arrived() {
        let (publisher, reader) = channel();
        spawn_test_loop(publisher, Counting::default(), true);
        let timeout = Duration::from_secs(5);
        let first = reader.get(Doc::Census, |v| &v.census, timeout).await;
        let second = reader.get(Doc::Census, |v| &v.census, timeout).await;
        assert_eq!(first.as_deref(), Some(&b"1"[..]));
        // Not the cached first build: a client reading after a change sees the change.
        assert_eq!(second.as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_never_builds_gives_none_after_the_timeout() {
        let (publisher, reader) = channel();
        let answer = reader
            .get(Doc::Ready, |v| &v.ready, Duration::from_millis(100))
            .await;
        assert_eq!(answer, None);
        drop(publisher);
        // A loop that is gone answers at once.
        let answer = reader
            .get(Doc::Ready, |v| &v.ready, Duration::from_secs(3600))
            .await;
        assert_eq!(answer, None);
    }
}
