//! Change events: each `changeEvents` queue is long-polled by a task of its own; each message
//! is parsed (`source::change_events`), routed to the configured secrets it concerns
//! (`route`), handed to their groups as pending syncs, and deleted. The groups sync them
//! between polls, with the same job, budget and permits as a poll (`Group::on_events`).
//!
//! A message is deleted once routed, not once its secret is written: a write that fails is
//! not helped by the message coming back, and a crash in between costs at most one
//! interval, the poll being the backstop. A message that is not an event is left for the
//! queue's redrive policy. A queue that fails (denied, missing, throttled, down) is retried
//! with back-off while the groups go on polling.

use super::schedule::failure_delays;
use crate::metrics::Metrics;
use crate::shutdown::Signal;
use crate::source::change_events::route::{Hit, Route, Router};
use crate::source::change_events::{self, Parsed};
use crate::source::change_queue::{ChangeQueue, Message, QueueError, DELETE, WAIT};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The longest wait between two receives after failures: a fixed queue is read again within
/// this.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Events arriving this close together make one sync: a burst (one message per CloudTrail
/// call, EventBridge's retries, SQS's duplicates) is drained together, so a secret named
/// by all of them is fetched once.
pub(crate) const COALESCE: Duration = Duration::from_millis(50);

/// The syncs the events asked of one group, waiting for it.
#[derive(Default)]
pub(crate) struct Pending {
    state: Mutex<Asked>,
    notify: tokio::sync::Notify,
}

/// What a group is asked to sync.
#[derive(Default)]
pub(crate) struct Asked {
    /// Static members by index, with the version the event names (if any) and its time.
    pub(crate) members: Vec<Wanted>,
    /// Names of secrets a `find` entry matches.
    pub(crate) found: Vec<(String, Wanted)>,
}

/// One event's ask.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub(crate) member: u32,
    /// The version now at the member's stage; `None`: unknown, it must be read.
    pub(crate) version: Option<String>,
    pub(crate) time: Option<SystemTime>,
    /// A `find` entry must list: the secret may have appeared or gone.
    pub(crate) list: bool,
}

impl Pending {
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Everything asked so far, merged: one entry per member or name; the version kept
    /// only if every event named one (the newest by event time), the earliest time.
    pub(crate) fn take(&self) -> Asked {
        let asked = match self.state.lock() {
            Ok(mut state) => std::mem::take(&mut *state),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let mut members: Vec<Wanted> = Vec::with_capacity(asked.members.len());
        let mut by_member = asked.members;
        by_member.sort_by_key(|w| w.member);
        for w in by_member {
            match members.last_mut() {
                Some(last) if last.member == w.member => merge(last, w),
                _ => members.push(w),
            }
        }
        let mut found: Vec<(String, Wanted)> = Vec::with_capacity(asked.found.len());
        let mut by_name = asked.found;
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, w) in by_name {
            match found.last_mut() {
                Some((last, merged)) if *last == name => merge(merged, w),
                _ => found.push((name, w)),
            }
        }
        Asked { members, found }
    }

    fn ask(&self, hit: Hit, time: Option<SystemTime>) {
        {
            let mut state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            match hit {
                Hit::Member {
                    member, version, ..
                } => state.members.push(Wanted {
                    member,
                    version,
                    time,
                    list: false,
                }),
                Hit::Find { name, list, .. } => state.found.push((
                    name,
                    Wanted {
                        member: 0,
                        version: None,
                        time,
                        list,
                    },
                )),
            }
        }
        self.notify.notify_one();
    }
}

fn merge(into: &mut Wanted, other: Wanted) {
    into.list |= other.list;
    let newer = other.time >= into.time;
    into.version = match (into.version.take(), other.version) {
        (Some(a), Some(b)) => Some(if newer { b } else { a }),
        _ => None,
    };
    into.time = match (into.time, other.time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// Reads `queue` until shutdown, handing what its events ask to `pending` (one per group,
/// by the group index the router knows).
pub(crate) async fn run(
    queue: ChangeQueue,
    router: Arc<Router>,
    pending: Arc<[Arc<Pending>]>,
    metrics: Metrics,
    mut shutdown: Signal,
) {
    let name = queue.name().to_owned();
    let mut backoff: Option<Box<dyn Iterator<Item = Duration> + Send>> = None;
    // The kind of the failure last logged: a failing queue is logged when it starts failing
    // and when the reason changes, not at every retry.
    let mut failing: Option<&'static str> = None;
    let mut started = false;
    loop {
        // The first receive (and the first after a failure) returns at once, so that the
        // queue is known to be readable from start-up rather than after a long poll.
        let wait = if backoff.is_none() && started {
            WAIT
        } else {
            Duration::ZERO
        };
        started = true;
        let received = tokio::select! {
            r = queue.receive(wait) => r,
            _ = shutdown.wait() => return,
        };
        let messages = match received {
            Ok(messages) => {
                if failing.take().is_some() {
                    tracing::info!(queue = %name, "change events queue readable again");
                }
                backoff = None;
                messages
            }
            Err(err) => {
                metrics.queue_failed(&name, crate::metrics::RECEIVE_OPERATION, err.kind());
                report(&mut failing, &err);
                let delay = backoff
                    .get_or_insert_with(|| Box::new(failure_delays(MAX_BACKOFF)))
                    .next()
                    .unwrap_or(MAX_BACKOFF);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.wait() => return,
                }
            }
        };
        let now = SystemTime::now();
        let oldest = messages
            .iter()
            .filter_map(|m| m.sent)
            .filter_map(|sent| now.duration_since(sent).ok())
            .max()
            .unwrap_or_default();
        metrics.events_received(&name, messages.len(), oldest.as_secs_f64());
        let handled: Vec<String> = messages
            .into_iter()
            .filter_map(|message| handle(&name, &router, &pending, &metrics, message))
            .collect();
        match queue.delete(&handled).await {
            Ok(0) => {}
            Ok(failed) => {
                tracing::debug!(queue = %name, failed, "some messages were not deleted; they come back and are handled again (no extra write)");
            }
            Err(err) => {
                metrics.queue_failed(&name, DELETE, err.kind());
                tracing::warn!(queue = %name, reason = err.kind(), "cannot delete handled change events; they come back and are handled again (no extra write): {err}");
            }
        }
    }
}

/// Routes one message; its receipt handle when it is to be deleted.
fn handle(
    queue: &str,
    router: &Router,
    pending: &[Arc<Pending>],
    metrics: &Metrics,
    message: Message,
) -> Option<String> {
    let event = match change_events::parse(&message.body) {
        Err(malformed) => {
            metrics.event_malformed(queue);
            tracing::warn!(queue, bytes = message.body.len(), "left a message that is not a Secrets Manager change event in the queue for its redrive policy: {malformed}");
            return None;
        }
        Ok(Parsed::Ignored(reason)) => {
            metrics.event_ignored(queue, reason.as_str());
            tracing::debug!(queue, reason = reason.as_str(), "change event ignored");
            return Some(message.receipt);
        }
        Ok(Parsed::Change(event)) => event,
    };
    match router.route(&event) {
        Route::Ignored(reason) => {
            metrics.event_ignored(queue, reason.as_str());
            tracing::debug!(queue, reason = reason.as_str(), "change event ignored");
        }
        Route::Matched(hits) => {
            metrics.event_matched(queue);
            for hit in hits {
                let group = match &hit {
                    Hit::Member { group, .. } | Hit::Find { group, .. } => *group,
                };
                if let Some(pending) = pending.get(group as usize) {
                    pending.ask(hit, event.time);
                }
            }
        }
    }
    Some(message.receipt)
}

fn report(failing: &mut Option<&'static str>, err: &QueueError) {
    if *failing == Some(err.kind()) {
        tracing::debug!(
            reason = err.kind(),
            "change events queue still failing: {err}"
        );
        return;
    }
    *failing = Some(err.kind());
    tracing::warn!(
        reason = err.kind(),
        "change events queue failing; secrets are polled meanwhile: {err}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    #[test]
    fn a_burst_for_one_member_is_taken_as_one_ask_with_the_newest_version() {
        let pending = Pending::default();
        for i in 0..100 {
            let version = Some(format!("v{}", i % 3));
            let hit = Hit::Member {
                group: 0,
                member: 7,
                version,
            };
            pending.ask(hit, at(1000 + i));
        }
        pending.ask(
            Hit::Member {
                group: 0,
                member: 2,
                version: None,
            },
            at(5),
        );
        let asked = pending.take();
        assert_eq!(asked.members.len(), 2);
        assert_eq!(asked.members[0].member, 2);
        let seven = &asked.members[1];
        assert_eq!(seven.member, 7);
        assert_eq!(
            seven.version.as_deref(),
            Some("v0"),
            "event 99 is the newest"
        );
        assert_eq!(
            seven.time,
            at(1000),
            "the delay counts from the first event"
        );
        assert!(pending.take().members.is_empty(), "taken once");
    }

    #[test]
    fn an_event_without_a_version_means_the_member_must_be_read() {
        let pending = Pending::default();
        let member = |version: Option<&str>| Hit::Member {
            group: 0,
            member: 1,
            version: version.map(str::to_owned),
        };
        pending.ask(member(Some("v1")), at(10));
        pending.ask(member(None), at(11));
        pending.ask(member(Some("v2")), at(12));
        let asked = pending.take();
        assert_eq!(asked.members.len(), 1);
        assert_eq!(asked.members[0].version, None);
        for name in ["b", "a", "b"] {
            pending.ask(
                Hit::Find {
                    group: 0,
                    name: name.to_owned(),
                    list: false,
                },
                None,
            );
        }
        let names: Vec<String> = pending.take().found.into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
