//! The polling loop of one group: a cycle, then the wait `schedule` computes (the refresh
//! interval, jittered, or after a cycle in which everything failed the back-off).

use super::events::COALESCE;
use super::group::{self, Group, MAX_CONCURRENT_FETCHES};
use super::job::{Ctx, Origin, SecretJob};
use super::push::PushGroup;
use super::schedule::next_delay;
use crate::config::{PushConfig, PushSource, SecretConfig};
use crate::k8s::Kube;
use crate::shutdown::Signal;
use crate::sink::push_plan::TokenKey;
use crate::source::plan::Strategy;
use crate::source::push_kube::KubeSource;
use crate::source::SecretsManager;
use crate::tenants::{StartError, Syncs};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

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
        let due = tokio::time::Instant::now() + delay;
        // Change events sync their secrets between polls; the poll stays due when it was.
        loop {
            let wake = tokio::select! {
                _ = tokio::time::sleep_until(due) => Wake::Due,
                _ = group.refresh.notified() => Wake::Refresh,
                _ = events(&group) => Wake::Events,
                _ = shutdown.wait() => return,
            };
            match wake {
                Wake::Due => break,
                Wake::Refresh => {
                    tracing::debug!("refresh requested");
                    break;
                }
                Wake::Events => {
                    tokio::select! {
                        _ = async {
                            tokio::time::sleep(COALESCE).await;
                            group.on_events(&ctx).await;
                        } => {}
                        _ = shutdown.wait() => return,
                    }
                }
            }
        }
    }
}

enum Wake {
    Due,
    Refresh,
    Events,
}

/// Until a change event asks something of `group`; never without `changeEvents`.
async fn events(group: &Group) {
    match &group.events {
        Some(pending) => pending.notified().await,
        None => std::future::pending().await,
    }
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
        let interval = secret.refresh_interval;
        let origin = Origin::SecretsManager {
            source: source.clone(),
            failover: None,
        };
        let job = SecretJob::new(&secret, origin, None, Some(kube))?;
        self.metrics
            .register_secret(job.shared_name().clone(), interval);
        let group = Group::new(
            Strategy::Get,
            false,
            interval,
            vec![Arc::new(job)],
            group::Reader::SecretsManager(source),
        );
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
