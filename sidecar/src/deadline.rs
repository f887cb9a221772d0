//! A one-shot deadline timer on a Linux timerfd, for loops that wait on one deadline at a time.
//!
//! Tokio's hierarchical timer wheel wakes a sleeper first at the start of the coarser slot that
//! holds its deadline (64 ms slots for deadlines 64 ms to 4 s away, 4 s slots beyond) and then
//! again at the deadline: in an idle supervisor half of all wake-ups did nothing else. The kernel
//! wakes a timerfd once, at the deadline. Should the timerfd fail, tokio's timer takes over.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// `TimerFd` for `AsyncFd`, which asks for `AsRawFd`.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One deadline at a time: `set` it (again) whenever it may have moved, `expired().await` it.
pub struct Deadline {
    /// `None` when no timerfd could be had: tokio's timer then.
    fd: Option<AsyncFd<Fd>>,
    armed: Option<Instant>,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::new()
    }
}

impl Deadline {
    /// Needs a tokio runtime with I/O enabled.
    pub fn new() -> Deadline {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)
        // `new` is deprecated for wrappers of file descriptors they do not own; `Fd` owns its
        // timerfd and never closes or swaps it while registered, which is what `register`
        // (unsafe, which this workspace forbids) asks its caller to promise.
        .and_then(|fd| {
            #[allow(deprecated)]
            AsyncFd::new(Fd(fd))
        });
        let fd = match fd {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(error = %e, "no timerfd; using tokio's timer");
                None
            }
        };
        Deadline { fd, armed: None }
    }

    /// The armed deadline, if any.
    pub const fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// Arms the timer for `deadline` (`None` disarms it). Setting the armed deadline again
    /// costs no system call, so a loop can call this on every turn.
    pub fn set(&mut self, deadline: Option<Instant>) {
        if deadline == self.armed {
            return;
        }
        self.armed = deadline;
        let Some(fd) = &self.fd else {
            return;
        };
        let timer = &fd.get_ref().0;
        let result = match deadline {
            None => timer.unset(),
            Some(at) => {
                // A zero one-shot would disarm the timer: a past deadline fires in 1 ns.
                let after = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1));
                timer.set(
                    Expiration::OneShot(TimeSpec::from_duration(after)),
                    TimerSetTimeFlags::empty(),
                )
            }
        };
        if let Err(e) = result {
            self.fall_back(e.into());
        }
    }

    /// Resolves once the armed deadline has passed, and disarms; pending while disarmed.
    /// Cancel-safe: dropped before it resolves, the deadline stays armed.
    pub async fn expired(&mut self) {
        let Some(at) = self.armed else {
            return std::future::pending().await;
        };
        if let Some(fd) = &self.fd {
            match wait(fd).await {
                Ok(()) => {
                    self.armed = None;
                    return;
                }
                Err(e) => self.fall_back(e),
            }
        }
        tokio::time::sleep_until(at.into()).await;
        self.armed = None;
    }

    fn fall_back(&mut self, e: io::Error) {
        tracing::warn!(error = %e, "timerfd failed; using tokio's timer");
        self.fd = None;
    }

    #[cfg(test)]
    fn on_tokio_timer() -> Deadline {
        Deadline {
            fd: None,
            armed: None,
        }
    }
}

/// Waits for the timerfd to fire and reads its count.
async fn wait(fd: &AsyncFd<Fd>) -> io::Result<()> {
    loop {
        let mut guard = fd.readable().await?;
        // Nothing to read yet (the timer was re-armed since it fired) would block: wait on.
        if let Ok(result) = guard.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
            // Read, a one-shot timer stays unreadable until it fires again: no read to find
            // that out next time.
            guard.clear_ready();
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Whether `deadline` fires within `limit` (a bounded wait for something that should not
    /// happen; firing early is checked against the clock).
    async fn fires_within(deadline: &mut Deadline, limit: Duration) -> bool {
        tokio::time::timeout(limit, deadline.expired())
            .await
            .is_ok()
    }

    async fn behaves(mut deadline: Deadline) {
        let started = Instant::now();
        let at = started + Duration::from_millis(30);
        deadline.set(Some(at));
        assert_eq!(deadline.armed(), Some(at));
        assert!(fires_within(&mut deadline, Duration::from_secs(5)).await);
        assert!(Instant::now() >= at, "fired before its deadline");
        assert_eq!(deadline.armed(), None, "fired, it is disarmed");
        assert!(!fires_within(&mut deadline, Duration::from_millis(50)).await);
        // A nearer deadline replaces a far one.
        deadline.set(Some(Instant::now() + Duration::from_secs(3600)));
        let nearer = Instant::now() + Duration::from_millis(10);
        deadline.set(Some(nearer));
        assert!(fires_within(&mut deadline, Duration::from_secs(5)).await);
        assert!(Instant::now() >= nearer);
        // A deadline in the past fires at once.
        deadline.set(Some(started));
        assert!(fires_within(&mut deadline, Duration::from_secs(5)).await);
        // Disarmed before it fires: never.
        deadline.set(Some(Instant::now() + Duration::from_millis(5)));
        deadline.set(None);
        assert!(!fires_within(&mut deadline, Duration::from_millis(50)).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_timerfd_deadline_fires_once_at_its_time_and_never_while_disarmed() {
        let deadline = Deadline::new();
        assert!(deadline.fd.is_some(), "no timerfd on this Linux");
        behaves(deadline).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_timerfd_tokio_s_timer_behaves_the_same() {
        behaves(Deadline::on_tokio_timer()).await;
    }
}
