//! Building the daemon from a validated config: SDK set-up, role sessions, one
//! Secrets Manager client per (identity, region), the planned groups with their jobs, the
//! tenants controller and readiness. Makes no network call.

use super::error::BuildError;
use super::events::Pending;
use super::group::MAX_CONCURRENT_FETCHES;
use super::group::{Group, Reader};
use super::job::{Origin, SecretJob};
use super::poll::MAX_CONCURRENT_CYCLES;
use super::push::PushGroup;
use super::{App, ChangeEvents};
use crate::aws::{shared_https_client, timeouts};
use crate::config::{Config, ParameterSource, PushConfig, PushSource, SecretConfig};
use crate::credentials::Roles;
use crate::health::Readiness;
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::notify::Changed;
use crate::sink::push_plan::TokenKey;
use crate::source::change_events::route::Router;
use crate::source::plan::{self, PlannedGroup, Strategy};
use crate::source::push_kube::KubeSource;
use crate::source::Clients;
use crate::tenants::TenantController;
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The groups of a config and what the rest of the daemon needs to know about them.
#[derive(Default)]
struct Built {
    groups: Vec<Group>,
    /// Secrets with `onChange` actions (a `find` entry's members share its notifier).
    notifiers: Vec<(SecretConfig, Changed)>,
    /// Every secret readiness waits for.
    expected: Vec<Arc<str>>,
}

// === impl App ===

impl App {
    /// Builds clients and sinks; makes no network call (credentials are obtained on first use).
    pub fn build(config: &Config, base: &SdkConfig, metrics: Metrics) -> Result<Self, BuildError> {
        Self::build_with(config, base, metrics, None)
    }

    /// `kube` is needed when a secret has a `kubernetesSecret` target.
    pub fn build_with(
        config: &Config,
        base: &SdkConfig,
        metrics: Metrics,
        kube: Option<&Kube>,
    ) -> Result<Self, BuildError> {
        let region = config
            .region
            .clone()
            .or_else(|| base.region().map(|r| r.to_string()))
            .ok_or(BuildError::NoRegion)?;
        let base = sdk_for(base, &region);
        metrics.set_series_policy(config.metrics);
        let roles = Roles::build(config, &base, &metrics);
        let mut clients = Clients::new(config, &base, &roles, &metrics, &region);
        let planned = plan::plan(&config.secrets, |secret| clients.region_of(secret));
        let mut built = Built::default();
        for planned in planned {
            built.add(config, &planned, &mut clients, &metrics, kube)?;
        }
        metrics.compact_secrets();
        log_groups(&built.groups);
        let change_events = change_events(config, &mut built.groups, &mut clients, &metrics)?;
        let pushes = pushes(config, &mut clients, &metrics, kube)?;
        let tenants = tenants(config, &mut clients, kube)?;
        let lapsed = roles.clone();
        let readiness = Arc::new(
            Readiness::new(built.expected, config.max_staleness, move || {
                lapsed.lapsed().map(str::to_owned)
            })
            .with_max_poll_stall(config.max_poll_stall),
        );
        Ok(Self {
            groups: built.groups,
            pushes,
            tenants,
            notifiers: built.notifiers,
            fetch_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES)),
            cycle_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CYCLES)),
            roles,
            credential_outputs: config.credential_outputs.clone(),
            metrics,
            readiness,
            change_events,
        })
    }
}

/// The `changeEvents` queues and the router from event to group member; each group gets
/// the `Pending` its events fill. `None` without queues: nothing is indexed.
fn change_events(
    config: &Config,
    groups: &mut [Group],
    clients: &mut Clients<'_>,
    metrics: &Metrics,
) -> Result<Option<ChangeEvents>, BuildError> {
    if config.change_events.is_empty() {
        return Ok(None);
    }
    let mut queues = Vec::new();
    for queue in &config.change_events {
        metrics.register_queue(queue.name());
        queues.push(clients.queue(queue)?);
    }
    let mut router = Router::default();
    let mut pending = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter_mut().enumerate() {
        let Ok(g) = u32::try_from(g) else { break };
        match group.find_prefix() {
            Some(prefix) => router.add_find(g, prefix, group.source_region()),
            None => {
                for (m, job) in group.members.iter().enumerate() {
                    let Ok(m) = u32::try_from(m) else { break };
                    let (source, failover) = match &job.origin {
                        Origin::SecretsManager { source, failover } => (source, failover),
                        Origin::ParameterStore(read) => {
                            match &read.1 {
                                ParameterSource::One { name, .. } => {
                                    router.add_parameter((g, m), name, job.region())
                                }
                                ParameterSource::Path { path, recursive } => router
                                    .add_parameter_path((g, m), path, *recursive, job.region()),
                            }
                            continue;
                        }
                    };
                    router.add_secret(
                        (g, m),
                        job.secret_id(),
                        source.region(),
                        failover.as_ref().map(|f| f.region()),
                        &job.wanted.version,
                    );
                }
            }
        }
        let asked = Arc::new(Pending::default());
        group.events = Some(asked.clone());
        pending.push(asked);
    }
    for push in &config.pushes {
        router.add_push(&push.to.secret_name, &push_region(push, clients));
    }
    Ok(Some(ChangeEvents {
        queues,
        router: Arc::new(router.built()),
        pending: pending.into(),
    }))
}

/// `base` in `region`, with the timeouts and (unless the caller set one, as tests do) the
/// shared HTTPS client.
fn sdk_for(base: &SdkConfig, region: &str) -> SdkConfig {
    let base = base
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()))
        .timeout_config(timeouts())
        .build();
    if base.http_client().is_some() {
        return base;
    }
    base.to_builder().http_client(shared_https_client()).build()
}

// === impl Built ===

impl Built {
    /// The group `planned` describes: a `find` entry becomes a discovering group, other
    /// members become jobs polled together.
    fn add(
        &mut self,
        config: &Config,
        planned: &PlannedGroup,
        clients: &mut Clients<'_>,
        metrics: &Metrics,
        kube: Option<&Kube>,
    ) -> Result<(), BuildError> {
        let mut members = Vec::new();
        let mut reader = None;
        for &i in &planned.members {
            let secret = &config.secrets[i];
            let changed = (!secret.on_change.is_empty()).then(Changed::default);
            if let Some(changed) = &changed {
                self.notifiers.push((secret.clone(), changed.clone()));
            }
            if let Some(parameter) = &secret.parameter {
                let store = clients.parameter_store(secret)?;
                reader.get_or_insert_with(|| Reader::ParameterStore(store.clone()));
                let origin = Origin::ParameterStore(Box::new((store, (**parameter).clone())));
                members.push(self.job(secret, origin, changed, metrics, kube)?);
                continue;
            }
            let source = clients.for_secret(secret, None)?;
            let failover = match &secret.failover_region {
                Some(region) => Some(clients.for_secret(secret, Some(region))?),
                None => None,
            };
            if planned.strategy == Strategy::Find {
                let name: Arc<str> = secret.name.as_str().into();
                metrics.register_secret(name.clone(), secret.refresh_interval);
                self.expected.push(name);
                self.groups.push(Group::discovering(
                    secret.clone(),
                    source,
                    failover,
                    changed,
                ));
                continue;
            }
            reader.get_or_insert_with(|| Reader::SecretsManager(source.clone()));
            let origin = Origin::SecretsManager { source, failover };
            members.push(self.job(secret, origin, changed, metrics, kube)?);
        }
        if let Some(reader) = reader.filter(|_| !members.is_empty()) {
            self.groups.push(Group::new(
                planned.strategy,
                planned.auto,
                planned.interval,
                members,
                reader,
            ));
        }
        Ok(())
    }

    /// One secret's job, registered with the metrics and readiness.
    fn job(
        &mut self,
        secret: &SecretConfig,
        origin: Origin,
        changed: Option<Changed>,
        metrics: &Metrics,
        kube: Option<&Kube>,
    ) -> Result<Arc<SecretJob>, BuildError> {
        let job = SecretJob::new(secret, origin, changed, kube)?;
        // One copy of the name, shared by the job, its metrics record and readiness.
        metrics.register_secret(job.shared_name().clone(), secret.refresh_interval);
        self.expected.push(job.shared_name().clone());
        Ok(Arc::new(job))
    }
}

fn log_groups(groups: &[Group]) {
    for group in groups {
        if group.strategy != Strategy::Get {
            tracing::debug!(
                strategy = group.strategy.as_str(),
                secrets = group.members.len(),
                "polling a group of secrets together"
            );
        }
    }
}

/// The pushes, one group per (role, region, interval): a group lists the secrets it owns
/// with one ListSecrets call per 100. Their version ids are keyed for this process.
fn pushes(
    config: &Config,
    clients: &mut Clients<'_>,
    metrics: &Metrics,
    kube: Option<&Kube>,
) -> Result<Vec<PushGroup>, BuildError> {
    if config.pushes.is_empty() {
        return Ok(Vec::new());
    }
    let key = TokenKey::random().map_err(BuildError::Random)?;
    let instance: Arc<str> = Arc::from(config.instance.as_str());
    let mut groups: BTreeMap<(Option<String>, String, std::time::Duration), Vec<PushConfig>> =
        BTreeMap::new();
    for push in &config.pushes {
        let region = push_region(push, clients);
        metrics.register_push(&push.name);
        groups
            .entry((push.role.clone(), region, push.refresh_interval))
            .or_default()
            .push(push.clone());
    }
    let mut built = Vec::new();
    for ((role, region, interval), members) in groups {
        let client = clients.client(role.as_deref(), region, &members[0].name)?;
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut jobs = Vec::with_capacity(members.len());
        let mut watches = false;
        for push in members {
            let source = kube_source(&push, kube, &changed)?;
            watches |= source.is_some();
            jobs.push((push, source));
        }
        let events = kube.filter(|_| watches).cloned();
        built.push(PushGroup::new(
            interval,
            client,
            instance.clone(),
            key,
            jobs,
            events,
            changed,
        ));
    }
    Ok(built)
}

/// Where a push writes: its own region, else its role's, else the default.
fn push_region(push: &PushConfig, clients: &Clients<'_>) -> String {
    push.to
        .region
        .clone()
        .unwrap_or_else(|| clients.region_of_role(push.role.as_deref()))
}

/// The watch of a `kubernetesSecret` source; its namespace defaults to the daemon's own.
fn kube_source(
    push: &PushConfig,
    kube: Option<&Kube>,
    changed: &Arc<tokio::sync::Notify>,
) -> Result<Option<KubeSource>, BuildError> {
    let PushSource::KubernetesSecret {
        name,
        namespace,
        keys,
    } = &push.from
    else {
        return Ok(None);
    };
    let kube = kube.ok_or_else(|| BuildError::PushNoKube {
        push: push.name.clone(),
    })?;
    let namespace = namespace
        .as_deref()
        .or(kube.namespace.as_deref())
        .ok_or_else(|| BuildError::PushNoNamespace {
            push: push.name.clone(),
        })?;
    Ok(Some(KubeSource::watch(
        kube,
        &push.name,
        namespace,
        name,
        keys,
        changed.clone(),
    )))
}

/// The tenants controller, when the config has `tenants` rules: it reads with any role.
fn tenants(
    config: &Config,
    clients: &mut Clients<'_>,
    kube: Option<&Kube>,
) -> Result<Option<TenantController>, BuildError> {
    if config.tenants.is_empty() {
        return Ok(None);
    }
    let kube = kube.ok_or(BuildError::NoKube {
        secret: "tenants".to_owned(),
    })?;
    let mut role_sources = BTreeMap::new();
    for name in config.roles.keys() {
        let region = clients.region_of_role(Some(name));
        role_sources.insert(name.clone(), clients.client(Some(name), region, "tenants")?);
    }
    let key = TokenKey::random().map_err(BuildError::Random)?;
    Ok(Some(TenantController::new(
        kube.clone(),
        config.tenants.clone(),
        role_sources,
        Arc::from(config.instance.as_str()),
        key,
    )))
}
