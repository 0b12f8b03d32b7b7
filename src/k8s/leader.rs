//! Leader election on a `coordination.k8s.io/v1` Lease, so that several controller
//! replicas can run and only one polls and writes.
//!
//! Every change to the Lease is a replace carrying the resourceVersion that was read, so
//! two replicas racing for it cannot both win: the loser gets 409 and stays a follower.
//! A Lease is expired when its `renewTime + leaseDurationSeconds` is past (clocks in a
//! cluster are NTP-synced; the margin below absorbs a few seconds of skew).
//! The leader gives up (and the process stops writing) when it could not renew for
//! `renew_deadline`, which is shorter than the lease duration: it has stopped before any
//! follower may take over, so no write happens from two replicas in one lease term.

use super::Kube;
use crate::metrics::Metrics;
use crate::shutdown::Signal;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    /// Who holds the Lease: the pod name plus a random suffix (a restarted pod is a new holder).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Why `hold` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The drain started; the caller releases the Lease once work has stopped.
    Shutdown,
    /// Renewing failed for `renew_deadline` (or another replica took the Lease).
    Lost,
}

pub struct Elector {
    kube: Kube,
    config: LeaderConfig,
    metrics: Metrics,
}

// === impl Elector ===

impl Elector {
    pub fn new(kube: Kube, config: LeaderConfig, metrics: Metrics) -> Self {
        metrics.set_leader(false);
        Self {
            kube,
            config,
            metrics,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.kube.client.clone(), &self.config.namespace)
    }

    /// Waits until this replica holds the Lease; `false` when the drain started first.
    pub async fn acquire(&self, shutdown: &mut Signal) -> bool {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "became the leader");
                    self.metrics.set_leader(true);
                    return true;
                }
                Ok(false) if !announced => {
                    tracing::info!(lease = %self.config.lease_name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %self.config.lease_name, "cannot read or take the Lease: {e}")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = shutdown.wait() => return false,
            }
        }
    }

    /// Renews every `retry_period` until the drain starts or leadership is lost.
    pub async fn hold(&self, mut shutdown: Signal) -> Held {
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = shutdown.wait() => return Held::Shutdown,
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.config.lease_name, "another replica holds the Lease now; stopping");
                    self.metrics.set_leader(false);
                    return Held::Lost;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.lease_name, "cannot renew the Lease: {e}")
                }
            }
            if last_renewed.elapsed() >= self.config.renew_deadline {
                tracing::error!(lease = %self.config.lease_name, "could not renew the Lease for {:?}; stopping before another replica takes over", self.config.renew_deadline);
                self.metrics.set_leader(false);
                return Held::Lost;
            }
        }
    }

    /// Hands the Lease back so that a follower takes over at its next try instead of after
    /// the lease duration. Only when this replica still holds it.
    pub async fn release(&self) {
        self.metrics.set_leader(false);
        let api = self.api();
        let Ok(Some(mut lease)) = self
            .kube
            .call("get", api.get_opt(&self.config.lease_name))
            .await
        else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        let replaced = self
            .kube
            .call(
                "update",
                api.replace(&self.config.lease_name, &PostParams::default(), &lease),
            )
            .await;
        match replaced {
            Ok(_) => tracing::info!(lease = %self.config.lease_name, "released the Lease"),
            Err(e) => {
                tracing::warn!(lease = %self.config.lease_name, "could not release the Lease: {e}")
            }
        }
    }

    /// One step of the election: `Ok(true)` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let api = self.api();
        let now = Timestamp::now();
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self
            .kube
            .call("get", api.get_opt(&self.config.lease_name))
            .await?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return lost_race(
                self.kube
                    .call("create", api.create(&PostParams::default(), &lease))
                    .await,
            );
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        if !mine {
            if !is_free(spec, now) {
                return Ok(false);
            }
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(MicroTime(now));
        // `lease` still carries the resourceVersion read above: a concurrent change wins.
        lost_race(
            self.kube
                .call(
                    "update",
                    api.replace(&self.config.lease_name, &PostParams::default(), &lease),
                )
                .await,
        )
    }
}

/// A 409 means another replica changed the Lease first: not an error, just not ours.
fn lost_race(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// No holder, or the holder has not renewed within its lease duration.
pub fn is_free(spec: &LeaseSpec, now: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return true;
    }
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renewed.0 + SignedDuration::from_secs(i64::from(secs)) < now
}

/// The holder identity: the pod name (or host name) and a random suffix.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "secret-ferry".to_owned());
    format!("{host}_{:08x}", fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_free_without_holder_or_after_its_duration() {
        let now = Timestamp::now();
        let spec = |holder: Option<&str>, renewed_ago: i64| LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_ago))),
            ..LeaseSpec::default()
        };
        assert!(is_free(&spec(None, 0), now));
        assert!(is_free(&spec(Some(""), 0), now));
        assert!(!is_free(&spec(Some("a"), 0), now));
        assert!(!is_free(&spec(Some("a"), 14), now));
        assert!(is_free(&spec(Some("a"), 16), now));
        let no_renew = LeaseSpec {
            holder_identity: Some("a".into()),
            ..LeaseSpec::default()
        };
        assert!(is_free(&no_renew, now), "a Lease nobody renewed is free");
    }

    #[test]
    fn identities_differ_per_process_start() {
        assert_ne!(identity(), identity());
    }
}
