//! The daemon: builds the pipeline from a validated config (`build`) and drives it,
//! credentials → source → transform → sinks, one polling task per group of secrets (see
//! `source::plan` for how secrets are grouped, `group` for how a group is polled and
//! `poll` for its schedule). `runtime` wires it to the admin server, the credentials
//! endpoint, the signals and leader election.
//!
//! It lives in the library so that tests can run the whole daemon in-process.

mod build;
mod error;
pub(crate) mod events;
pub(crate) mod group;
pub(crate) mod job;
pub(crate) mod poll;
pub(crate) mod push;
pub mod runtime;
mod schedule;
pub mod summary;

pub use error::{BuildError, PushError, SyncError};
pub use job::SyncOutcome;
pub use schedule::{failure_delays, jittered};

use crate::config::{CredentialOutput, SecretConfig};
use crate::credentials::Roles;
use crate::health::{Readiness, RefreshHandle};
use crate::metrics::Metrics;
use crate::shutdown::Signal;
use crate::tenants::TenantController;
use group::Group;
use job::Ctx;
use poll::{cycle, poll};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long in-flight work may take to finish after the drain signal; the process must
/// be gone within 5 s of SIGTERM.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);

/// What `run --once` did.
#[derive(Debug)]
pub struct OnceReport {
    /// The secrets that failed (empty when all synced).
    pub sync_failures: Vec<SyncError>,
    /// How many credentials files are configured.
    pub credentials_files: usize,
    /// The credentials files not written, in config order.
    pub unwritten: Vec<crate::vend::CredentialOutputError>,
    /// The pushes that failed, in config order.
    pub push_failures: Vec<PushError>,
}

pub struct App {
    pub(crate) groups: Vec<Group>,
    /// Pushes, grouped by client and interval.
    pub(crate) pushes: Vec<push::PushGroup>,
    /// Fills annotated Secrets under the `tenants` rules (controller mode).
    tenants: Option<TenantController>,
    /// Secrets with `onChange` actions (a `find` entry's members share its notifier).
    notifiers: Vec<(SecretConfig, crate::notify::Changed)>,
    fetch_permits: Arc<tokio::sync::Semaphore>,
    cycle_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) roles: Roles,
    credential_outputs: Vec<CredentialOutput>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    /// The `changeEvents` queues, read while running (not by `run --once`).
    change_events: Option<ChangeEvents>,
}

/// The queues of change events, and what each event may ask of the groups.
pub(crate) struct ChangeEvents {
    pub(crate) queues: Vec<crate::source::change_queue::ChangeQueue>,
    router: Arc<crate::source::change_events::route::Router>,
    /// One per group, at the group's index.
    pending: Arc<[Arc<events::Pending>]>,
}

impl App {
    /// The `changeEvents` queues (for `check`).
    pub(crate) fn change_queues(&self) -> &[crate::source::change_queue::ChangeQueue] {
        self.change_events
            .as_ref()
            .map_or(&[][..], |events| events.queues.as_slice())
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// Wakes the group a secret (or `find` entry) belongs to: its whole group polls.
    pub fn refresh_handle(&self) -> RefreshHandle {
        RefreshHandle::new(self.groups.iter().map(|group| {
            let mut names: Vec<Arc<str>> = group
                .members
                .iter()
                .map(|job| job.shared_name().clone())
                .collect();
            names.extend(group.entry_name().map(Arc::from));
            (group.refresh.clone(), names)
        }))
    }

    /// Deletes the Secrets this instance wrote with `deletionPolicy: Delete` that the config
    /// no longer has (the leader does it once, at start). Only namespaces the config still
    /// writes to (and the daemon's own) are looked at.
    pub async fn delete_unconfigured_secrets(&self, kube: &crate::k8s::Kube) {
        let mut configured = BTreeSet::new();
        let mut namespaces: BTreeSet<String> = kube.namespace.iter().cloned().collect();
        for job in self.groups.iter().flat_map(|g| g.members.iter()) {
            for target in &job.targets() {
                if let crate::config::Target::KubernetesSecret(t) = target {
                    let namespace = t.namespace.clone().or_else(|| kube.namespace.clone());
                    if let Some(namespace) = namespace {
                        namespaces.insert(namespace.clone());
                        configured.insert((namespace, t.name.clone()));
                    }
                }
            }
        }
        for namespace in namespaces {
            crate::sink::kube_secret::delete_unconfigured(kube, &namespace, &configured).await;
        }
    }

    /// The roles' current credentials, for the credentials endpoint.
    pub fn roles(&self) -> Arc<Roles> {
        Arc::new(self.roles.clone())
    }

    /// Syncs every secret once; returns the failures (empty when all succeeded).
    pub async fn run_once(self) -> Vec<SyncError> {
        self.run_once_all().await.0
    }

    /// Syncs every secret and attempts every push once.
    async fn run_once_all(mut self) -> (Vec<SyncError>, Vec<PushError>) {
        let mut push_failures = Vec::new();
        for group in &mut self.pushes {
            push_failures.extend(group.cycle(&self.metrics).await);
        }
        let mut set = JoinSet::new();
        let ctx = self.ctx();
        for mut group in self.groups {
            let ctx = ctx.clone();
            set.spawn(async move { cycle(&mut group, &ctx).await.failures });
        }
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(errors) => failures.extend(errors),
                Err(e) => failures.push(SyncError::WriterPanicked {
                    secret: "(unknown)".into(),
                    reason: e.to_string(),
                }),
            }
        }
        (failures, push_failures)
    }

    /// `run --once`: syncs every secret once, then writes every `credentialOutputs` file
    /// once (valid until its credential's expiry; nothing rewrites it afterwards).
    pub async fn run_once_with_credentials_files(self) -> OnceReport {
        let (roles, outputs) = (self.roles.clone(), self.credential_outputs.clone());
        let (sync_failures, push_failures) = self.run_once_all().await;
        let unwritten = crate::vend::write_credentials_files_once(&roles, &outputs).await;
        OnceReport {
            sync_failures,
            push_failures,
            credentials_files: outputs.len(),
            unwritten,
        }
    }

    /// Runs until `shutdown` fires, then lets in-flight writes finish (up to
    /// [`DRAIN_GRACE`]) and returns.
    pub async fn run(self, shutdown: Signal) {
        let mut tasks = JoinSet::new();
        for session in self.roles.distinct() {
            let span = tracing::info_span!("refresh", role = %session.role());
            tasks.spawn(tracing::Instrument::instrument(
                session.clone().run_refresher(shutdown.clone()),
                span,
            ));
        }
        for output in &self.credential_outputs {
            let span = tracing::info_span!("credentials_file", role = %output.role);
            tasks.spawn(tracing::Instrument::instrument(
                crate::vend::write_credentials_file(
                    self.roles.clone(),
                    output.clone(),
                    shutdown.clone(),
                ),
                span,
            ));
        }
        for (secret, changed) in &self.notifiers {
            let span = tracing::info_span!("notify", secret = %secret.name);
            tasks.spawn(tracing::Instrument::instrument(
                crate::notify::run(
                    secret.name.clone(),
                    secret.on_change.clone(),
                    secret.debounce,
                    changed.clone(),
                    self.metrics.clone(),
                    shutdown.clone(),
                ),
                span,
            ));
        }
        let ctx = self.ctx();
        if let Some(tenants) = self.tenants {
            let span = tracing::info_span!("tenants");
            tasks.spawn(tracing::Instrument::instrument(
                tenants.run(ctx.clone(), shutdown.clone()),
                span,
            ));
        }
        for group in self.pushes {
            let span = match group.jobs.as_slice() {
                [one] => tracing::info_span!("push", push = %one.config.name),
                jobs => tracing::info_span!("push", pushes = jobs.len()),
            };
            tasks.spawn(tracing::Instrument::instrument(
                push::run(group, self.metrics.clone(), shutdown.clone()),
                span,
            ));
        }
        if let Some(events) = &self.change_events {
            for queue in &events.queues {
                let span = tracing::info_span!("change_events", queue = %queue.name());
                tasks.spawn(tracing::Instrument::instrument(
                    events::run(
                        queue.clone(),
                        events.router.clone(),
                        events.pending.clone(),
                        self.metrics.clone(),
                        shutdown.clone(),
                    ),
                    span,
                ));
            }
        }
        let metrics = self.metrics.clone();
        tasks.spawn(crate::health::stall::watch(
            self.readiness.stalls.clone(),
            move |progress| metrics.poll_progress(progress.into()),
            shutdown.clone(),
        ));
        for group in self.groups {
            let span = match group.entry_name() {
                Some(entry) => tracing::info_span!("poll", secret = %entry),
                None if group.members.len() == 1 => {
                    tracing::info_span!("poll", secret = %group.members[0].name())
                }
                None => tracing::info_span!(
                    "poll",
                    strategy = group.strategy.as_str(),
                    secrets = group.members.len()
                ),
            };
            tasks.spawn(tracing::Instrument::instrument(
                poll(group, ctx.clone(), shutdown.clone()),
                span,
            ));
        }
        let mut drain = shutdown.clone();
        drain.wait().await;
        self.readiness.start_draining();
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("tasks still busy after the drain grace period; stopping them");
            tasks.abort_all();
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            fetch_permits: self.fetch_permits.clone(),
            cycle_slots: self.cycle_slots.clone(),
        }
    }
}
