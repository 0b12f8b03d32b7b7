//! The Kubernetes client (only built when a Kubernetes target, tenants or leader
//! election is configured, so a file-only sidecar needs no RBAC at all), the daemon's own
//! namespace and pod, Events, access reviews, and request accounting.

use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::future::Future;
use std::time::Duration;

/// Where the service account's namespace is mounted in every pod.
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Every API request is bounded: a hung API server must not stall a sync forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// True for the error `Kube::call` returns when the API did not answer within
/// [`REQUEST_TIMEOUT`].
pub fn is_timeout(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Service(e)
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
}

/// The field manager of every write, as server-side apply records it.
pub const FIELD_MANAGER: &str = "secret-ferry";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "secret-ferry";
/// The hash of what secret-ferry last wrote; equal → nothing to write (or even read).
pub const HASH_ANNOTATION: &str = "secret-ferry.io/content-hash";
/// The config entry a Secret is written for.
pub const SOURCE_ANNOTATION: &str = "secret-ferry.io/source";
pub const DELETION_ANNOTATION: &str = "secret-ferry.io/deletion-policy";
/// The instance (lease name) that wrote the Secret: only it deletes the Secret.
pub const INSTANCE_ANNOTATION: &str = "secret-ferry.io/instance";

#[derive(Debug, thiserror::Error)]
pub enum KubeSetupError {
    // The causes are sources, not text: `{:#}` prints them after the message.
    #[error("no Kubernetes API: not in a cluster and no usable KUBECONFIG; Kubernetes targets, tenants and --leader-elect need one")]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("cannot tell the daemon's own namespace: set POD_NAMESPACE (downward API) or give every kubernetesSecret target a namespace")]
    NoNamespace,
    #[error("ownerPod needs the pod's name and uid: set POD_NAME and POD_UID from the downward API (metadata.name, metadata.uid)")]
    NoPod,
}

// === impl KubeSetupError ===

impl KubeSetupError {
    /// Bounded label for structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "no_kube_config",
            Self::Client(_) => "kube_client",
            Self::NoNamespace => "no_namespace",
            Self::NoPod => "no_pod",
        }
    }
}

/// The daemon's pod, for `ownerPod` ownerReferences.
#[derive(Debug, Clone)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
}

/// Everything that talks to the API server shares this.
#[derive(Clone)]
pub struct Kube {
    pub client: kube::Client,
    /// The daemon's own namespace, when known.
    pub namespace: Option<String>,
    pub pod: Option<PodRef>,
    /// Deletes only what this instance wrote (`--lease-name`).
    pub instance: String,
    recorder: Recorder,
    metrics: Metrics,
}

// === impl Kube ===

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("namespace", &self.namespace)
            .field("instance", &self.instance)
            .finish()
    }
}

impl Kube {
    /// In-cluster configuration, else `KUBECONFIG` / `~/.kube/config`.
    pub async fn connect(metrics: Metrics, instance: String) -> Result<Self, KubeSetupError> {
        let config = kube::Config::infer()
            .await
            .map_err(KubeSetupError::Config)?;
        let kubeconfig_namespace = Some(config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(KubeSetupError::Client)?;
        let namespace = own_namespace().or(kubeconfig_namespace);
        Ok(Self::new(
            client,
            namespace,
            pod_from_env(),
            metrics,
            instance,
        ))
    }

    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        pod: Option<PodRef>,
        metrics: Metrics,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGED_BY.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace,
            pod,
            instance,
            metrics,
        }
    }

    /// Runs one API request with the timeout, and counts it by verb and result.
    pub async fn call<T>(
        &self,
        verb: &'static str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(result) => result,
            Err(_) => {
                self.metrics.kube_request(verb, "timeout");
                return Err(kube::Error::Service(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the Kubernetes API did not answer in time",
                ))));
            }
        };
        self.metrics.kube_request(verb, result_label(&result));
        result
    }

    /// An Event on `regarding`. Failing to record one is logged, never fatal: Events are
    /// for people, the sync itself already happened (or failed) either way.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(note, 1024)),
            action: "Sync".to_owned(),
            secondary: None,
        };
        let published = self
            .call("create", self.recorder.publish(&event, regarding))
            .await;
        if let Err(error) = published {
            tracing::debug!(%error, reason, "could not record a Kubernetes Event");
        }
    }
}

fn result_label<T>(result: &Result<T, kube::Error>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(kube::Error::Api(status)) => match status.code {
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            422 => "invalid",
            429 => "throttled",
            500..=599 => "server_error",
            _ => "error",
        },
        Err(_) => "error",
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The service account's namespace file, else `POD_NAMESPACE`.
pub fn own_namespace() -> Option<String> {
    std::fs::read_to_string(SA_NAMESPACE_FILE)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
}

fn pod_from_env() -> Option<PodRef> {
    Some(PodRef {
        name: std::env::var("POD_NAME").ok().filter(|s| !s.is_empty())?,
        uid: std::env::var("POD_UID").ok().filter(|s| !s.is_empty())?,
    })
}

/// SelfSubjectAccessReview: may this service account `verb` the named object?
pub async fn can_i(
    kube: &Kube,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: kube::Api<SelfSubjectAccessReview> = kube::Api::all(kube.client.clone());
    let answer = kube
        .call(
            "create",
            api.create(&kube::api::PostParams::default(), &review),
        )
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// A readable description of an API error: a 403 names the verb, resource and namespace so
/// that the operator knows which RBAC rule to add.
pub fn describe(err: &kube::Error, verb: &str, resource: &str, namespace: &str) -> String {
    match err {
        kube::Error::Api(status) if status.code == 403 => format!(
            "the service account may not {verb} {resource} in namespace {namespace}: add a Role rule (apiGroups: [\"\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]) bound to it ({})",
            status.message
        ),
        kube::Error::Api(status) => format!("{} (HTTP {}, {})", status.message, status.code, status.reason),
        other => other.to_string(),
    }
}

/// The Secret as an Event's `regarding` object.
pub fn reference(secret: &k8s_openapi::api::core::v1::Secret, namespace: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Secret".to_owned()),
        name: secret.metadata.name.clone(),
        namespace: Some(
            secret
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.to_owned()),
        ),
        uid: secret.metadata.uid.clone(),
        resource_version: secret.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}
