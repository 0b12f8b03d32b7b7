//! Stall detection: every polling group beats after each completed poll, and a group that
//! has not completed one within twice its interval (a hung connection, a starved task) is
//! *stalled*. A watchdog logs each stall once and publishes the counts as metrics; `/readyz`
//! fails while a group has been without a completed poll for longer than `maxPollStall`, so
//! "it silently stopped" cannot go unseen. Pure apart from the watchdog: `check` is given
//! the time, so paused tokio time tests it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The least time a group's first poll may take before it counts as stalled: the first poll
/// writes every target (10,000 secrets took 4 s in a debug build), so twice a short interval
/// would call a normal start a stall. Readiness waits for that poll anyway.
const FIRST_POLL_GRACE: Duration = Duration::from_secs(60);

/// One group's progress. Dropped with its poll task: a stopped group is not a stalled one.
pub struct Heartbeat {
    interval: Duration,
    /// For the log line: which secrets the group polls.
    what: Box<str>,
    times: Mutex<Times>,
    stalled: AtomicBool,
}

#[derive(Clone, Copy)]
struct Times {
    /// The last completed poll (the start, before the first).
    completed: Instant,
    /// Whether a poll has completed at all.
    once: bool,
    /// When the next poll is due, while the group waits for it.
    due: Option<Instant>,
}

impl Heartbeat {
    /// A poll completed; the next one is due after `wait`.
    pub fn completed(&self, wait: Duration) {
        let now = Instant::now();
        *self.lock() = Times {
            completed: now,
            once: true,
            due: Some(now + wait),
        };
    }

    /// A poll started (woken early or on time): nothing is due while it runs.
    pub fn started(&self) {
        self.lock().due = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stalled_at(&self, times: Times, now: Instant) -> bool {
        let bound = if times.once {
            2 * self.interval
        } else {
            (2 * self.interval).max(FIRST_POLL_GRACE)
        };
        now.saturating_duration_since(times.completed) > bound
    }
}

/// What the groups' heartbeats say at one moment.
#[derive(Debug, Default, PartialEq)]
pub struct Progress {
    pub groups: usize,
    pub stalled: usize,
    /// How long ago the least recent poll completed.
    pub oldest_completion: Option<Duration>,
    /// How long until the earliest due poll (zero when one is overdue).
    pub next_due: Option<Duration>,
}

impl From<&Progress> for crate::metrics::PollProgress {
    /// Ages become Unix times, as the metrics give them.
    fn from(p: &Progress) -> Self {
        let now = std::time::SystemTime::now();
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        Self {
            groups: p.groups,
            stalled: p.stalled,
            oldest_completion: p.oldest_completion.map(|ago| unix(now - ago)),
            next_due: p.next_due.map(|until| unix(now + until)),
        }
    }
}

/// Every group's heartbeat, and the readiness bound.
pub struct Stalls {
    beats: Mutex<Vec<Weak<Heartbeat>>>,
    max_stall: Duration,
}

impl Stalls {
    pub fn new(max_stall: Duration) -> Self {
        Self {
            beats: Mutex::new(Vec::new()),
            max_stall,
        }
    }

    /// A new group's heartbeat; it counts from now.
    pub fn register(&self, interval: Duration, what: String) -> Arc<Heartbeat> {
        let beat = Arc::new(Heartbeat {
            interval,
            what: what.into(),
            times: Mutex::new(Times {
                completed: Instant::now(),
                once: false,
                due: None,
            }),
            stalled: AtomicBool::new(false),
        });
        // Dead entries are pruned by the watchdog's look, not here: thousands of groups
        // registering at start must not each walk the list.
        self.lock().push(Arc::downgrade(&beat));
        beat
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Heartbeat>>> {
        self.beats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The heartbeats of running groups; those of stopped groups are dropped from the list.
    fn live(&self) -> Vec<Arc<Heartbeat>> {
        let mut beats = self.lock();
        beats.retain(|b| b.strong_count() > 0);
        beats.iter().filter_map(Weak::upgrade).collect()
    }

    /// The groups' progress at `now`; `on_change` hears each group that became stalled
    /// (`true`) or recovered (`false`) since the last check, with its description and how
    /// long its poll has been going.
    pub fn check(&self, now: Instant, mut on_change: impl FnMut(&str, bool, Duration)) -> Progress {
        let mut progress = Progress::default();
        for beat in self.live() {
            let times = *beat.lock();
            let stalled = beat.stalled_at(times, now);
            let since = now.saturating_duration_since(times.completed);
            if beat.stalled.swap(stalled, Ordering::AcqRel) != stalled {
                on_change(&beat.what, stalled, since);
            }
            progress.groups += 1;
            progress.stalled += usize::from(stalled);
            progress.oldest_completion = progress.oldest_completion.max(Some(since));
            if let Some(due) = times.due {
                let until = due.saturating_duration_since(now);
                progress.next_due = Some(progress.next_due.map_or(until, |d| d.min(until)));
            }
        }
        progress
    }

    /// `Err` names a group that has been stalled past `maxPollStall`.
    pub fn status(&self, now: Instant) -> Result<(), String> {
        for beat in self.live() {
            let times = *beat.lock();
            let since = now.saturating_duration_since(times.completed);
            if beat.stalled_at(times, now) && since > self.max_stall {
                return Err(format!(
                    "the poll of {} has not completed for {}s (interval {}, maxPollStall {})",
                    beat.what,
                    since.as_secs(),
                    humantime::format_duration(beat.interval),
                    humantime::format_duration(self.max_stall)
                ));
            }
        }
        Ok(())
    }
}

/// Until `shutdown`: checks the heartbeats every second, logs each stall and recovery once,
/// and hands the progress to `publish` (the metrics).
pub async fn watch(
    stalls: Arc<Stalls>,
    publish: impl Fn(&Progress),
    mut shutdown: crate::shutdown::Signal,
) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let progress = stalls.check(Instant::now(), |what, stalled, since| {
            if stalled {
                tracing::warn!(group = %what, since_s = since.as_secs(), "poll stalled: no poll of this group has completed for more than twice its interval (a hung connection or a starved task); its secrets are not being refreshed");
            } else {
                tracing::info!(group = %what, "poll no longer stalled");
            }
        });
        publish(&progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_group_is_stalled_after_twice_its_interval_and_fails_readiness_after_the_bound() {
        let stalls = Stalls::new(Duration::from_secs(30));
        let beat = stalls.register(Duration::from_secs(5), "secret db".to_owned());
        beat.completed(Duration::from_secs(5));
        beat.started();
        let mut changes = Vec::new();
        let mut check = |stalls: &Stalls| {
            stalls.check(Instant::now(), |what, stalled, _| {
                changes.push((what.to_owned(), stalled))
            })
        };
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(check(&stalls).stalled, 0);
        tokio::time::advance(Duration::from_secs(2)).await;
        let p = check(&stalls);
        assert_eq!((p.groups, p.stalled), (1, 1));
        assert_eq!(p.oldest_completion, Some(Duration::from_secs(11)));
        assert!(
            stalls.status(Instant::now()).is_ok(),
            "not yet past maxPollStall"
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        let e = stalls.status(Instant::now()).unwrap_err();
        assert!(
            e.contains("secret db") && e.contains("maxPollStall 30s"),
            "{e}"
        );
        check(&stalls);
        beat.completed(Duration::from_secs(5));
        let p = check(&stalls);
        assert_eq!(p.stalled, 0);
        assert_eq!(p.next_due, Some(Duration::from_secs(5)));
        assert!(stalls.status(Instant::now()).is_ok());
        assert_eq!(
            changes,
            [
                ("secret db".to_owned(), true),
                ("secret db".to_owned(), false)
            ],
            "each stall and recovery is told once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_poll_has_a_minute_before_it_counts_as_stalled() {
        let stalls = Stalls::new(Duration::from_secs(600));
        let _beat = stalls.register(Duration::from_secs(1), "10000 secrets".to_owned());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(stalls.check(Instant::now(), |_, _, _| {}).stalled, 0);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(stalls.check(Instant::now(), |_, _, _| {}).stalled, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_group_is_no_longer_watched_and_a_running_poll_is_not_due() {
        let stalls = Stalls::new(Duration::from_secs(1));
        let kept = stalls.register(Duration::from_secs(1), "a".to_owned());
        let gone = stalls.register(Duration::from_secs(1), "b".to_owned());
        drop(gone);
        kept.completed(Duration::from_secs(1));
        kept.started();
        tokio::time::advance(Duration::from_secs(1)).await;
        let p = stalls.check(Instant::now(), |_, _, _| {});
        assert_eq!((p.groups, p.next_due), (1, None));
    }
}
