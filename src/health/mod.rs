//! Readiness (`/readyz`) and the refresh handle (SIGHUP, `POST /refresh`): what the
//! daemon's polling tells the admin server, and what the admin server asks of the polling.
//! `stall`: the groups' heartbeats, and the watchdog that tells a stalled poll.

pub mod stall;

use stall::Stalls;

use std::collections::{BTreeMap, BTreeSet};
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

#[derive(Default)]
struct ReadinessState {
    /// Every secret (and `find` entry) that must sync before the pod is ready.
    expected: BTreeSet<String>,
    /// When each expected secret last synced; absent until its first sync.
    last_synced: BTreeMap<String, Instant>,
}

// === impl Readiness ===

impl Readiness {
    pub(crate) fn new(
        expected: impl IntoIterator<Item = String>,
        max_staleness: Option<Duration>,
        lapsed: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            max_staleness,
            state: std::sync::Mutex::new(ReadinessState {
                expected: expected.into_iter().collect(),
                last_synced: BTreeMap::new(),
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
                .last_synced
                .iter()
                .filter(|(name, _)| state.expected.contains(*name))
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
        let state = self.lock();
        state
            .expected
            .iter()
            .filter(|name| !state.last_synced.contains_key(*name))
            .count()
    }

    /// Whether `secret` has synced at least once.
    pub fn has_synced(&self, secret: &str) -> bool {
        self.lock().last_synced.contains_key(secret)
    }

    /// Also for secrets readiness does not wait for (tenants'), so that their failures are
    /// told apart from never having synced.
    pub(crate) fn synced(&self, secret: &str) {
        self.lock()
            .last_synced
            .insert(secret.to_owned(), Instant::now());
    }

    /// A secret found by discovery: the pod waits for it too.
    pub(crate) fn expect(&self, secret: &str) {
        self.lock().expected.insert(secret.to_owned());
    }

    /// A secret that is no longer synced (it stopped matching `find`).
    pub(crate) fn forget(&self, secret: &str) {
        let mut state = self.lock();
        state.expected.remove(secret);
        state.last_synced.remove(secret);
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
    secrets: Arc<BTreeMap<String, Arc<tokio::sync::Notify>>>,
}

// === impl RefreshHandle ===

impl RefreshHandle {
    /// `secrets`: each secret (or `find` entry) name with the `Notify` of its group.
    pub(crate) fn new(secrets: BTreeMap<String, Arc<tokio::sync::Notify>>) -> Self {
        Self {
            secrets: Arc::new(secrets),
        }
    }

    pub fn all(&self) {
        // Secrets of one group share a Notify. Waking it once per secret would leave a
        // stored permit behind after the first wake-up, and so a second, needless poll.
        let mut woken: Vec<&Arc<tokio::sync::Notify>> = Vec::new();
        for notify in self.secrets.values() {
            if !woken.iter().any(|w| Arc::ptr_eq(w, notify)) {
                notify.notify_one();
                woken.push(notify);
            }
        }
    }

    /// `false` when no secret has that name.
    pub fn one(&self, secret: &str) -> bool {
        match self.secrets.get(secret) {
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
        let handle = RefreshHandle {
            secrets: Arc::new(BTreeMap::from([
                ("a".to_owned(), a.clone()),
                ("b".to_owned(), b.clone()),
            ])),
        };
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
