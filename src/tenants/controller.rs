//! Runs tenant requests: watches the annotated Secrets (label `secret-ferry.io/managed:
//! "true"`), asks `rules::decide` about each, and keeps one polling task per allowed
//! Secret; a refused one gets a Warning Event and no task, so nothing is fetched for it.
//!
//! A Secret annotated with `push-to` instead asks for its keys to be pushed into Secrets
//! Manager (`rules::decide_push`, the rule's `pushSecretNames`); two Secrets never push to
//! one name (the second is refused), and a tenant's push never deletes the remote secret.
//!
//! The polling and pushing are the daemon's: it hands the controller a [`Syncs`].

use super::rules::{
    decide, decide_push, is_push, watched_namespaces, PushRequest, TenantRequest, MANAGED_LABEL,
};
use crate::config::Mapping;
use crate::config::{
    CreationPolicy, DeletionPolicy, FetchStrategy, KubeSecretTarget, PushConfig, PushSource,
    PushTarget, Recovery, SecretConfig, Target, TenantRule, UpdatePolicy, VersionSelector,
};
use crate::k8s::Kube;
use crate::shutdown::Signal;
use crate::sink::push_plan::TokenKey;
use crate::source::{SecretsManager, UnknownRole};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// Starts pushing `push` (a watched Kubernetes Secret source) with `client`, its versions
    /// keyed with `key` and tagged as `instance`'s, until aborted or `shutdown` fires.
    fn start_push(
        &self,
        push: PushConfig,
        client: SecretsManager,
        owner: (&Arc<str>, TokenKey),
        kube: &Kube,
        shutdown: Signal,
    ) -> Result<JoinHandle<()>, StartError>;
    /// Drops what was recorded for the push named `name`.
    fn forget_push(&self, name: &str);
}

pub(crate) struct TenantController {
    kube: Kube,
    rules: Vec<TenantRule>,
    /// One client per role, in the role's region.
    sources: BTreeMap<String, SecretsManager>,
    /// The ownership tag's value and the version-id key of tenants' pushes.
    instance: Arc<str>,
    key: TokenKey,
}

/// A tenant Secret's running task: a sync (`R` = [`TenantRequest`]) or a push
/// ([`PushRequest`]), with the request it was started for.
struct Running<R> {
    request: R,
    job: String,
    task: JoinHandle<()>,
}

/// What a tenant Secret asks for, as the controller keeps track of it.
trait Ask: PartialEq {
    /// For logs: what is done to the Secret.
    const DOING: &'static str;
    /// Drops what the daemon recorded for the task's job.
    fn forget(syncs: &impl Syncs, job: &str);
}

impl Ask for TenantRequest {
    const DOING: &'static str = "synced";
    fn forget(syncs: &impl Syncs, job: &str) {
        syncs.forget(job);
    }
}

impl Ask for PushRequest {
    const DOING: &'static str = "pushed";
    fn forget(syncs: &impl Syncs, job: &str) {
        syncs.forget_push(job);
    }
}

type Key = (String, String);

/// What the controller knows between two watch events.
#[derive(Default)]
struct State {
    running: BTreeMap<Key, Running<TenantRequest>>,
    pushing: BTreeMap<Key, Running<PushRequest>>,
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
        instance: Arc<str>,
        key: TokenKey,
    ) -> Self {
        Self {
            kube,
            rules,
            sources,
            instance,
            key,
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
        for (_, run) in state.pushing {
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
            stop(syncs, state.pushing.remove(&key));
            state.refused.remove(&key);
            return;
        }
        let ns_labels = self
            .namespace_labels(&namespace, &mut state.labels_cache)
            .await;
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        // A Secret is filled or pushed, never both: what it no longer asks for stops.
        let refused = if is_push(&annotations) {
            stop(syncs, state.running.remove(&key));
            let decided = decide_push(&self.rules, &namespace, &ns_labels, &annotations)
                .and_then(|request| unclaimed(&state.pushing, &key, request));
            match decided {
                Ok(request) => {
                    state.refused.remove(&key);
                    restart(syncs, &mut state.pushing, key, request, |r| {
                        self.start_push(syncs, &namespace, &name, r, shutdown.clone())
                    });
                    return;
                }
                Err(reason) => {
                    stop(syncs, state.pushing.remove(&key));
                    reason
                }
            }
        } else {
            stop(syncs, state.pushing.remove(&key));
            match decide(&self.rules, &namespace, &ns_labels, &annotations) {
                Ok(request) => {
                    state.refused.remove(&key);
                    restart(syncs, &mut state.running, key, request, |r| {
                        self.start(syncs, &namespace, &name, r, shutdown.clone())
                    });
                    return;
                }
                Err(reason) => {
                    stop(syncs, state.running.remove(&key));
                    reason
                }
            }
        };
        self.refuse(state, key, secret, refused).await;
    }

    /// A refused Secret is warned about (log and Event) once per distinct reason.
    async fn refuse(&self, state: &mut State, key: Key, secret: &Secret, reason: String) {
        if state.refused.get(&key) == Some(&reason) {
            return;
        }
        let (namespace, name) = (&key.0, &key.1);
        tracing::warn!(namespace = %namespace, name = %name, "tenant Secret refused: {reason}");
        let reference = crate::k8s::reference(secret, namespace);
        self.kube
            .event(&reference, true, "Refused", reason.clone())
            .await;
        state.refused.insert(key, reason);
    }

    /// The client of `role`, for the tenant Secret `namespace/name`.
    fn client(
        &self,
        namespace: &str,
        name: &str,
        role: &str,
    ) -> Result<SecretsManager, UnknownRole> {
        self.sources.get(role).cloned().ok_or_else(|| UnknownRole {
            reader: format!("{namespace}/{name}"),
            role: role.to_owned(),
        })
    }

    fn start_push(
        &self,
        syncs: &impl Syncs,
        namespace: &str,
        name: &str,
        request: &PushRequest,
        shutdown: Signal,
    ) -> Result<Running<PushRequest>, StartError> {
        let client = self.client(namespace, name, &request.role)?;
        let push = tenant_push(namespace, name, request);
        let job = push.name.clone();
        let task = syncs.start_push(
            push,
            client,
            (&self.instance, self.key),
            &self.kube,
            shutdown,
        )?;
        tracing::info!(push = %job, secret_name = %request.secret_name, role = %request.role, rule = request.rule, "tenant Secret allowed; pushing it");
        Ok(Running {
            request: request.clone(),
            job,
            task,
        })
    }

    fn start(
        &self,
        syncs: &impl Syncs,
        namespace: &str,
        name: &str,
        request: &TenantRequest,
        shutdown: Signal,
    ) -> Result<Running<TenantRequest>, StartError> {
        let source = self.client(namespace, name, &request.role)?;
        let config = tenant_secret(namespace, name, request);
        let job = config.name.clone();
        let task = syncs.start(config, source, &self.kube, shutdown)?;
        tracing::info!(secret = %job, secret_id = %request.secret_id, role = %request.role, rule = request.rule, "tenant Secret allowed; syncing it");
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

fn stop<R: Ask>(syncs: &impl Syncs, run: Option<Running<R>>) {
    if let Some(run) = run {
        run.task.abort();
        R::forget(syncs, &run.job);
        tracing::info!(job = %run.job, "tenant Secret no longer {}", R::DOING);
    }
}

/// Keeps the task of an unchanged request; otherwise stops the old task and starts one for
/// `request` (an annotation edited in place restarts with what it now says).
fn restart<R: Ask>(
    syncs: &impl Syncs,
    tasks: &mut BTreeMap<Key, Running<R>>,
    key: Key,
    request: R,
    start: impl FnOnce(&R) -> Result<Running<R>, StartError>,
) {
    if tasks.get(&key).is_some_and(|r| r.request == request) {
        return;
    }
    stop(syncs, tasks.remove(&key));
    match start(&request) {
        Ok(run) => {
            tasks.insert(key, run);
        }
        Err(e) => {
            tracing::warn!(namespace = %key.0, name = %key.1, "a tenant Secret cannot be {}: {e}", R::DOING)
        }
    }
}

/// The request, unless another Secret already pushes to its name: the first one keeps it.
fn unclaimed(
    pushing: &BTreeMap<Key, Running<PushRequest>>,
    key: &Key,
    request: PushRequest,
) -> Result<PushRequest, String> {
    match pushing
        .iter()
        .find(|(k, r)| *k != key && r.request.secret_name == request.secret_name)
    {
        Some(((namespace, name), _)) => Err(format!(
            "{} is already pushed from the Secret {namespace}/{name}: two Secrets never push to one secret name",
            request.secret_name
        )),
        None => Ok(request),
    }
}

/// The push for an allowed request: every key of the Secret, written only on change, never
/// deleted (a tenant deleting its Secret leaves the remote secret as it was).
fn tenant_push(namespace: &str, name: &str, request: &PushRequest) -> PushConfig {
    PushConfig {
        name: format!("{namespace}/{name}"),
        role: Some(request.role.clone()),
        refresh_interval: request.refresh_interval,
        from: PushSource::KubernetesSecret {
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            keys: Vec::new(),
        },
        to: PushTarget {
            secret_name: request.secret_name.clone(),
            region: None,
            kms_key_id: None,
            description: Some(format!(
                "pushed by secret-ferry from the Kubernetes Secret {namespace}/{name}"
            )),
            tags: BTreeMap::new(),
        },
        update_policy: UpdatePolicy::Replace,
        deletion_policy: DeletionPolicy::Retain,
        recovery: Recovery::Window(30),
        adopt: false,
    }
}

/// The secret entry for an allowed request: the annotated Secret itself is the target, and
/// secret-ferry only adds its keys to it (the tenant owns the Secret).
fn tenant_secret(namespace: &str, name: &str, request: &TenantRequest) -> SecretConfig {
    SecretConfig {
        name: format!("{namespace}/{name}"),
        secret_id: request.secret_id.clone(),
        role: Some(request.role.clone()),
        version: VersionSelector::current(),
        refresh_interval: request.refresh_interval,
        targets: vec![Target::KubernetesSecret(Box::new(KubeSecretTarget {
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            secret_type: "Opaque".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            creation_policy: CreationPolicy::Merge,
            deletion_policy: DeletionPolicy::Retain,
            immutable: false,
            owner_pod: false,
        }))],
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
        parameter: None,
    }
}
