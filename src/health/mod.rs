//! Readiness (`/readyz`) and the refresh handle (SIGHUP, `POST /refresh`): what the
//! daemon's polling tells the admin server, and what the admin server asks of the polling.
//! `stall`: the groups' heartbeats, and the watchdog that tells a stalled poll.

pub mod stall;

use stall::Stalls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// `/readyz` turns ready once every secret has synced at least once; it turns unready
/// again while a role's credential has lapsed (its secrets can no longer be refreshed),
/// while a secret's last sync is older than `maxStaleness`, while a group's poll has been
/// stalled for longer than `maxPollStall`, and when the drain starts so
/// that no new traffic is sent to a pod on its way out.
pub struct Readiness {
    max_staleness: Option<Duration>,
    /// A follower under `--leader-elect`: it syncs nothing and is ready to take over.
    standby: AtomicBool,
    state: std::sync::Mutex<ReadinessState>,
    draining: AtomicBool,
    /// The first role whose credential has lapsed, if any.
    lapsed: Box<dyn Fn() -> Option<String> + Send + Sync>,
    /// Every polling group's heartbeat.
    pub(crate) stalls: Arc<Stalls>,
}

/// One entry per secret, in one map: a controller keeps this for every secret it syncs.
#[derive(Default)]
struct ReadinessState {
    secrets: BTreeMap<Arc<str>, Tracked>,
}

#[derive(Clone, Copy, Default)]
struct Tracked {
    /// The pod waits for it (every configured secret and `find` entry; not tenants').
    expected: bool,
    /// When it last synced; `None` until its first sync.
    last_synced: Option<Instant>,
}

// === impl Readiness ===

impl Readiness {
    pub(crate) fn new(
        expected: impl IntoIterator<Item = impl Into<Arc<str>>>,
        max_staleness: Option<Duration>,
        lapsed: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            max_staleness,
            state: std::sync::Mutex::new(ReadinessState {
                secrets: expected
                    .into_iter()
                    .map(|name| {
                        let tracked = Tracked {
                            expected: true,
                            last_synced: None,
                        };
                        (name.into(), tracked)
                    })
                    .collect(),
            }),
            draining: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            lapsed: Box::new(lapsed),
            stalls: Arc::new(Stalls::new(crate::config::DEFAULT_MAX_POLL_STALL)),
        }
    }

    /// `/readyz` fails while a group has not completed a poll for `max` (`maxPollStall`).
    pub(crate) fn with_max_poll_stall(mut self, max: Duration) -> Self {
        self.stalls = Arc::new(Stalls::new(max));
        self
    }

    pub fn is_ready(&self) -> bool {
        self.status().is_ok()
    }

    /// `Err` says why not ready.
    pub fn status(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("shutting down".to_owned());
        }
        if self.standby.load(Ordering::Acquire) {
            return Ok(());
        }
        let pending = self.pending();
        if pending > 0 {
            return Err(format!("{pending} secret(s) not synced yet"));
        }
        if let Some(role) = (self.lapsed)() {
            return Err(format!(
                "the credential of role '{role}' has expired and could not be refreshed"
            ));
        }
        if let Some(max) = self.max_staleness {
            let state = self.lock();
            let stale = state
                .secrets
                .iter()
                .filter(|(_, t)| t.expected)
                .filter_map(|(name, t)| Some((name, t.last_synced?)))
                .find(|(_, at)| at.elapsed() > max);
            if let Some((name, at)) = stale {
                return Err(format!(
                    "secret '{name}' last synced {}s ago, more than maxStaleness ({})",
                    at.elapsed().as_secs(),
                    humantime::format_duration(max)
                ));
            }
        }
        self.stalls.status(Instant::now())
    }

    pub fn pending(&self) -> usize {
        self.lock()
            .secrets
            .values()
            .filter(|t| t.expected && t.last_synced.is_none())
            .count()
    }

    /// Whether `secret` has synced at least once.
    pub fn has_synced(&self, secret: &str) -> bool {
        self.lock()
            .secrets
            .get(secret)
            .is_some_and(|t| t.last_synced.is_some())
    }

    /// Also for secrets readiness does not wait for (tenants'), so that their failures are
    /// told apart from never having synced.
    pub(crate) fn synced(&self, secret: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        match state.secrets.get_mut(secret) {
            Some(tracked) => tracked.last_synced = Some(now),
            None => {
                let tracked = Tracked {
                    expected: false,
                    last_synced: Some(now),
                };
                state.secrets.insert(secret.into(), tracked);
            }
        }
    }

    /// A secret found by discovery: the pod waits for it too.
    pub(crate) fn expect(&self, secret: impl Into<Arc<str>>) {
        let secret = secret.into();
        let mut state = self.lock();
        match state.secrets.get_mut(&*secret) {
            Some(tracked) => tracked.expected = true,
            None => {
                let tracked = Tracked {
                    expected: true,
                    last_synced: None,
                };
                state.secrets.insert(secret, tracked);
            }
        }
    }

    /// Rebuilds the map with full nodes after many secrets were added one by one (a
    /// discovery): inserted in name order they leave every B-tree leaf half empty.
    pub(crate) fn compact(&self) {
        let mut state = self.lock();
        let secrets = std::mem::take(&mut state.secrets);
        state.secrets = secrets.into_iter().collect();
    }

    /// A secret that is no longer synced (it stopped matching `find`).
    pub(crate) fn forget(&self, secret: &str) {
        self.lock().secrets.remove(secret);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadinessState> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Asks secrets to sync now instead of at their next interval (SIGHUP, `POST /refresh`).
#[derive(Clone, Default)]
pub struct RefreshHandle {
    shared: Arc<Refreshes>,
}

#[derive(Default)]
struct Refreshes {
    /// Each group's `Notify`, once: waking one once per secret would leave a stored permit
    /// behind after the first wake-up, and so a second, needless poll.
    groups: Vec<Arc<tokio::sync::Notify>>,
    /// Each secret (or `find` entry) name with the index of its group.
    by_name: BTreeMap<Arc<str>, u32>,
}

// === impl RefreshHandle ===

impl RefreshHandle {
    /// `groups`: each group's `Notify` with the names of its secrets (or `find` entry).
    pub(crate) fn new<N: Into<Arc<str>>>(
        groups: impl IntoIterator<Item = (Arc<tokio::sync::Notify>, Vec<N>)>,
    ) -> Self {
        let mut shared = Refreshes::default();
        let mut by_name = Vec::new();
        for (notify, names) in groups {
            let Ok(index) = u32::try_from(shared.groups.len()) else {
                break;
            };
            shared.groups.push(notify);
            by_name.extend(names.into_iter().map(|name| (name.into(), index)));
        }
        // Collected, not inserted one by one: built from the sorted pairs, every B-tree node
        // is full (inserts in name order leave them half empty).
        shared.by_name = by_name.into_iter().collect();
        Self {
            shared: Arc::new(shared),
        }
    }

    pub fn all(&self) {
        for notify in &self.shared.groups {
            notify.notify_one();
        }
    }

    /// `false` when no secret has that name.
    pub fn one(&self, secret: &str) -> bool {
        let group = self.shared.by_name.get(secret);
        match group.and_then(|&i| self.shared.groups.get(i as usize)) {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_secret_and_drops_when_draining() {
        let r = Readiness::new(["a".to_owned(), "b".to_owned()], None, || None);
        assert!(!r.is_ready());
        r.synced("a");
        assert_eq!(r.pending(), 1);
        r.synced("a");
        assert_eq!(r.pending(), 1, "a repeated sync is not a second secret");
        r.synced("b");
        assert!(r.is_ready());
        r.start_draining();
        assert!(!r.is_ready());
    }

    #[test]
    fn compacting_keeps_what_each_secret_is_waiting_for() {
        let r = Readiness::new(["a".to_owned()], None, || None);
        for i in 0..40 {
            r.expect(format!("found/{i:02}"));
        }
        r.synced("found/07");
        r.synced("tenant");
        r.compact();
        assert_eq!(r.pending(), 40, "a and 39 found secrets");
        assert!(r.has_synced("found/07") && r.has_synced("tenant"));
        r.synced("a");
        for i in 0..40 {
            r.synced(&format!("found/{i:02}"));
        }
        assert!(r.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_drops_when_a_secret_is_older_than_max_staleness() {
        let r = Readiness::new(
            ["a".to_owned(), "b".to_owned()],
            Some(Duration::from_secs(300)),
            || None,
        );
        r.synced("a");
        r.synced("b");
        assert!(r.is_ready());
        tokio::time::sleep(Duration::from_secs(200)).await;
        r.synced("b");
        tokio::time::sleep(Duration::from_secs(101)).await;
        let why = r.status().unwrap_err();
        assert!(
            why.contains("secret 'a'") && why.contains("maxStaleness (5m)"),
            "{why}"
        );
        r.synced("a");
        assert!(r.is_ready());
    }

    #[test]
    fn refresh_handle_wakes_one_or_all() {
        let a = Arc::new(tokio::sync::Notify::new());
        let b = Arc::new(tokio::sync::Notify::new());
        // Two secrets share group b: `all` wakes it once, so no second poll follows.
        let handle = RefreshHandle::new([(a.clone(), vec!["a"]), (b.clone(), vec!["b", "b2"])]);
        assert!(handle.one("a"));
        assert!(!handle.one("nope"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // The permit stored by `one` wakes the next wait at once.
            tokio::time::timeout(Duration::from_millis(100), a.notified())
                .await
                .unwrap();
            assert!(
                tokio::time::timeout(Duration::from_millis(50), b.notified())
                    .await
                    .is_err()
            );
            handle.all();
            tokio::time::timeout(Duration::from_millis(100), b.notified())
                .await
                .unwrap();
            assert!(
                tokio::time::timeout(Duration::from_millis(50), b.notified())
                    .await
                    .is_err(),
                "one wake-up per group, however many secrets it has"
            );
            assert!(handle.one("b2"));
            tokio::time::timeout(Duration::from_millis(100), b.notified())
                .await
                .unwrap();
        });
    }

    #[test]
    fn readiness_drops_while_a_role_credential_has_lapsed() {
        let lapsed = Arc::new(AtomicBool::new(false));
        let flag = lapsed.clone();
        let r = Readiness::new(["a".to_owned()], None, move || {
            flag.load(Ordering::Acquire).then(|| "shared".to_owned())
        });
        r.synced("a");
        assert!(r.is_ready());
        lapsed.store(true, Ordering::Release);
        let why = r.status().unwrap_err();
        assert!(
            why.contains("role 'shared'") && why.contains("expired"),
            "{why}"
        );
        lapsed.store(false, Ordering::Release);
        assert!(r.is_ready());
    }
}
