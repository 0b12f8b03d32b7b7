//! The polling loop of one group: a cycle, then the refresh interval (jittered) or, after
//! a cycle in which everything failed, an exponential back-off capped at that interval.

use super::group::{self, Group, MAX_CONCURRENT_FETCHES};
use super::job::{Ctx, SecretJob};
use super::push::PushGroup;
use crate::config::{PushConfig, PushSource, SecretConfig};
use crate::k8s::Kube;
use crate::notify::Changed;
use crate::shutdown::Signal;
use crate::sink::push_plan::TokenKey;
use crate::source::plan::Strategy;
use crate::source::push_kube::KubeSource;
use crate::source::SecretsManager;
use crate::tenants::{StartError, Syncs};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Polls of groups running at once. A poll's future holds the AWS SDK's request state
/// (kilobytes); thousands of single-secret groups starting together must not all hold
/// one while they wait for a fetch permit.
pub(crate) const MAX_CONCURRENT_CYCLES: usize = 2 * MAX_CONCURRENT_FETCHES;

/// One poll of `group`, in a bounded number of slots, its (large) future on the heap only
/// while it runs: an idle group's task stays small.
pub(crate) async fn cycle(group: &mut Group, ctx: &Ctx) -> group::Cycle {
    let _slot = ctx.cycle_slots.acquire().await.ok();
    Box::pin(group.cycle(ctx)).await
}

pub(crate) async fn poll(mut group: Group, ctx: Ctx, mut shutdown: Signal) {
    let interval = group.interval;
    let heartbeat = ctx.readiness.stalls.register(interval, group.describe());
    let mut backoff: Option<Box<dyn Iterator<Item = Duration> + Send>> = None;
    loop {
        heartbeat.started();
        // A fetch in flight is abandoned on shutdown (nothing has been written yet); a
        // write in flight is not: it runs on the blocking pool, which the runtime waits for.
        let cycle = tokio::select! {
            c = cycle(&mut group, &ctx) => c,
            _ = shutdown.wait() => return,
        };
        let delay = next_delay(cycle.all_failed, &mut backoff, interval);
        heartbeat.completed(delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = group.refresh.notified() => {
                tracing::debug!("refresh requested");
            }
            _ = shutdown.wait() => return,
        }
    }
}

/// The wait before the next cycle: the interval (jittered), or after a cycle in which
/// everything failed the next step of the back-off, which a success resets.
pub(crate) fn next_delay(
    all_failed: bool,
    backoff: &mut Option<Box<dyn Iterator<Item = Duration> + Send>>,
    interval: Duration,
) -> Duration {
    if all_failed {
        backoff
            .get_or_insert_with(|| Box::new(failure_delays(interval)))
            .next()
            .unwrap_or(interval)
    } else {
        *backoff = None;
        jittered(interval)
    }
}

/// Up to 10% early, never late: secrets configured alike spread out over time, and a
/// change is still picked up within `refreshInterval`.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - fastrand::f64() * 0.1)
}

/// Exponential back-off with jitter after failures, capped at the refresh interval so a
/// failing secret is never polled less often than a healthy one.
pub fn failure_delays(interval: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY.min(interval))
        .with_max_delay(interval)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |d| d.min(interval))
}

// === impl Syncs for Ctx ===

/// A tenant Secret the controller allowed is polled like a configured secret: a group of
/// one, read with GetSecretValue.
impl Syncs for Ctx {
    fn start(
        &self,
        secret: SecretConfig,
        source: SecretsManager,
        kube: &Kube,
        shutdown: Signal,
    ) -> Result<JoinHandle<()>, StartError> {
        let name = secret.name.clone();
        let interval = secret.refresh_interval;
        let job = SecretJob::new(secret, source.clone(), None, Changed::default(), Some(kube))?;
        self.metrics.register_secret(&name, interval);
        let group = Group::new(Strategy::Get, false, interval, vec![Arc::new(job)], source);
        Ok(tokio::spawn(poll(group, self.clone(), shutdown)))
    }

    fn forget(&self, name: &str) {
        self.metrics.forget_secret(name);
        self.readiness.forget(name);
    }

    /// A tenant's push is a push group of one, woken by its Secret's watch.
    fn start_push(
        &self,
        push: PushConfig,
        client: SecretsManager,
        (instance, key): (&Arc<str>, TokenKey),
        kube: &Kube,
        shutdown: Signal,
    ) -> Result<JoinHandle<()>, StartError> {
        let PushSource::KubernetesSecret {
            name,
            namespace: Some(namespace),
            keys,
        } = &push.from
        else {
            return Err(format!("push {}: a tenant's push reads its own Secret", push.name).into());
        };
        let changed = Arc::new(tokio::sync::Notify::new());
        let source = KubeSource::watch(kube, &push.name, namespace, name, keys, changed.clone());
        self.metrics.register_push(&push.name);
        let group = PushGroup::new(
            push.refresh_interval,
            client,
            instance.clone(),
            key,
            vec![(push, Some(source))],
            Some(kube.clone()),
            changed,
        );
        Ok(tokio::spawn(super::push::run(
            group,
            self.metrics.clone(),
            shutdown,
        )))
    }

    fn forget_push(&self, name: &str) {
        self.metrics.forget_push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_never_delays_past_the_interval() {
        let interval = Duration::from_secs(60);
        for _ in 0..1000 {
            let d = jittered(interval);
            assert!(d <= interval && d >= Duration::from_secs(54), "{d:?}");
        }
    }

    #[test]
    fn failure_backoff_grows_and_is_capped_at_the_interval() {
        let interval = Duration::from_secs(10);
        let delays: Vec<_> = failure_delays(interval).take(8).collect();
        assert!(
            delays[0] >= Duration::from_secs(1) && delays[0] <= Duration::from_secs(2),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= interval), "{delays:?}");
        assert_eq!(delays[7], interval, "{delays:?}");
        let short: Vec<_> = failure_delays(Duration::from_millis(500)).take(3).collect();
        assert!(
            short.iter().all(|d| *d <= Duration::from_millis(500)),
            "{short:?}"
        );
    }
}
