//! Runs tenant requests: watches the annotated Secrets (label `secret-ferry.io/managed:
//! "true"`), asks `rules::decide` about each, and keeps one polling task per allowed
//! Secret; a refused one gets a Warning Event and no task, so nothing is fetched for it.
//!
//! The polling itself is the daemon's: it hands the controller a [`Syncs`].

use super::rules::{decide, watched_namespaces, TenantRequest, MANAGED_LABEL};
use crate::config::Mapping;
use crate::config::{
    CreationPolicy, DeletionPolicy, FetchStrategy, KubeSecretTarget, SecretConfig, Target,
    TenantRule, VersionSelector,
};
use crate::k8s::Kube;
use crate::shutdown::Signal;
use crate::source::{SecretsManager, UnknownRole};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Namespace labels are re-read at most this often (only rules with a namespaceSelector
/// need them).
const NAMESPACE_LABELS_TTL: Duration = Duration::from_secs(30);

/// Why a tenant Secret cannot be synced; logged, never fatal.
pub(crate) type StartError = Box<dyn std::error::Error + Send + Sync>;

/// How the controller has an allowed tenant Secret synced: the daemon polls it like a
/// configured secret, and forgets it again when it is no longer allowed.
pub(crate) trait Syncs {
    /// Starts polling `secret` with `source` until the task is aborted or `shutdown` fires.
    fn start(
        &self,
        secret: SecretConfig,
        source: SecretsManager,
        kube: &Kube,
        shutdown: Signal,
    ) -> Result<JoinHandle<()>, StartError>;
    /// Drops what was recorded for the secret named `name` (metrics, readiness).
    fn forget(&self, name: &str);
}

pub(crate) struct TenantController {
    kube: Kube,
    rules: Vec<TenantRule>,
    /// One client per role, in the role's region.
    sources: BTreeMap<String, SecretsManager>,
}

struct Running {
    request: TenantRequest,
    job: String,
    task: JoinHandle<()>,
}

type Key = (String, String);

/// What the controller knows between two watch events.
#[derive(Default)]
struct State {
    running: BTreeMap<Key, Running>,
    /// Why each refused Secret was refused, so that it is warned about once per reason.
    refused: BTreeMap<Key, String>,
    labels_cache: BTreeMap<String, (Instant, BTreeMap<String, String>)>,
}

// === impl TenantController ===

impl TenantController {
    pub(crate) fn new(
        kube: Kube,
        rules: Vec<TenantRule>,
        sources: BTreeMap<String, SecretsManager>,
    ) -> Self {
        Self {
            kube,
            rules,
            sources,
        }
    }

    pub(crate) async fn run(self, syncs: impl Syncs, mut shutdown: Signal) {
        let selector = format!("{MANAGED_LABEL}=true");
        let config = watcher::Config::default().labels(&selector);
        let apis: Vec<Api<Secret>> = match watched_namespaces(&self.rules) {
            Some(namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced(self.kube.client.clone(), ns))
                .collect(),
            None => vec![Api::all(self.kube.client.clone())],
        };
        let streams = apis
            .into_iter()
            .map(|api| watcher(api, config.clone()).boxed());
        let mut events = futures_util::stream::select_all(streams);
        let mut state = State::default();
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = shutdown.wait() => break,
            };
            let Some(event) = event else { break };
            let (secret, deleted) = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => (s, false),
                Ok(watcher::Event::Delete(s)) => (s, true),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
                Err(e) => {
                    tracing::warn!("watching annotated Secrets failed; retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.on_secret(&syncs, &mut state, &secret, deleted, &shutdown)
                .await;
        }
        for (_, run) in state.running {
            run.task.abort();
        }
    }

    /// One watch event about an annotated Secret: start, restart or stop its sync.
    async fn on_secret(
        &self,
        syncs: &impl Syncs,
        state: &mut State,
        secret: &Secret,
        deleted: bool,
        shutdown: &Signal,
    ) {
        let (Some(namespace), Some(name)) = (
            secret.metadata.namespace.clone(),
            secret.metadata.name.clone(),
        ) else {
            return;
        };
        let key = (namespace.clone(), name.clone());
        if deleted {
            stop(syncs, state.running.remove(&key));
            state.refused.remove(&key);
            return;
        }
        let ns_labels = self
            .namespace_labels(&namespace, &mut state.labels_cache)
            .await;
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        match decide(&self.rules, &namespace, &ns_labels, &annotations) {
            Ok(request) => {
                if state
                    .running
                    .get(&key)
                    .is_some_and(|r| r.request == request)
                {
                    return;
                }
                stop(syncs, state.running.remove(&key));
                state.refused.remove(&key);
                match self.start(syncs, &namespace, &name, &request, shutdown.clone()) {
                    Ok(run) => {
                        tracing::info!(secret = %run.job, secret_id = %request.secret_id, role = %request.role, rule = request.rule, "tenant Secret allowed; syncing it");
                        state.running.insert(key, run);
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %namespace, name = %name, "cannot sync a tenant Secret: {e}")
                    }
                }
            }
            Err(reason) => {
                stop(syncs, state.running.remove(&key));
                if state.refused.get(&key) != Some(&reason) {
                    tracing::warn!(namespace = %namespace, name = %name, "tenant Secret refused: {reason}");
                    let reference = crate::k8s::reference(secret, &namespace);
                    self.kube
                        .event(&reference, true, "Refused", reason.clone())
                        .await;
                    state.refused.insert(key, reason);
                }
            }
        }
    }

    fn start(
        &self,
        syncs: &impl Syncs,
        namespace: &str,
        name: &str,
        request: &TenantRequest,
        shutdown: Signal,
    ) -> Result<Running, StartError> {
        let source = self
            .sources
            .get(&request.role)
            .cloned()
            .ok_or_else(|| UnknownRole {
                reader: format!("{namespace}/{name}"),
                role: request.role.clone(),
            })?;
        let config = tenant_secret(namespace, name, request);
        let job = config.name.clone();
        let task = syncs.start(config, source, &self.kube, shutdown)?;
        Ok(Running {
            request: request.clone(),
            job,
            task,
        })
    }

    async fn namespace_labels(
        &self,
        namespace: &str,
        cache: &mut BTreeMap<String, (Instant, BTreeMap<String, String>)>,
    ) -> BTreeMap<String, String> {
        if self.rules.iter().all(|r| r.namespace_selector.is_none()) {
            return BTreeMap::new();
        }
        if let Some((at, labels)) = cache.get(namespace) {
            if at.elapsed() < NAMESPACE_LABELS_TTL {
                return labels.clone();
            }
        }
        let api: Api<Namespace> = Api::all(self.kube.client.clone());
        let labels = match self.kube.call("get", api.get_opt(namespace)).await {
            Ok(found) => found.and_then(|n| n.metadata.labels).unwrap_or_default(),
            Err(e) => {
                // Without its labels a namespace matches no selector: refused, never leaked.
                tracing::warn!(%namespace, "cannot read the namespace's labels: {e}");
                BTreeMap::new()
            }
        };
        cache.insert(namespace.to_owned(), (Instant::now(), labels.clone()));
        labels
    }
}

fn stop(syncs: &impl Syncs, run: Option<Running>) {
    if let Some(run) = run {
        run.task.abort();
        syncs.forget(&run.job);
        tracing::info!(secret = %run.job, "tenant Secret no longer synced");
    }
}

/// The secret entry for an allowed request: the annotated Secret itself is the target, and
/// secret-ferry only adds its keys to it (the tenant owns the Secret).
fn tenant_secret(namespace: &str, name: &str, request: &TenantRequest) -> SecretConfig {
    SecretConfig {
        name: format!("{namespace}/{name}"),
        secret_id: request.secret_id.clone(),
        role: Some(request.role.clone()),
        version: VersionSelector::Stage(crate::config::DEFAULT_VERSION_STAGE.to_owned()),
        refresh_interval: request.refresh_interval,
        targets: vec![Target::KubernetesSecret(KubeSecretTarget {
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            secret_type: "Opaque".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            creation_policy: CreationPolicy::Merge,
            deletion_policy: DeletionPolicy::Retain,
            immutable: false,
            owner_pod: false,
        })],
        on_change: Vec::new(),
        debounce: crate::config::DEFAULT_DEBOUNCE,
        find: None,
        prune: false,
        fetch_strategy: FetchStrategy::Get,
        failover_region: None,
        mapping: Mapping {
            property: request.property.clone(),
            ..Mapping::default()
        },
    }
}
