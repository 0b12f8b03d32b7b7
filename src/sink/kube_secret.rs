//! Writes a secret into a Kubernetes Secret with server-side apply (field manager
//! `secret-ferry`).
//!
//! The desired Secret is hashed; the hash is kept in memory and in an annotation, so a poll
//! that changed nothing makes no request at all, and the first poll after a start makes one
//! GET (which also tells whether the Secret is ours to write). Policies:
//! - `Owner` / `Orphan`: the whole Secret is secret-ferry's (applied with `force`); an
//!   existing Secret without secret-ferry's `managed-by` label is refused, never taken over.
//! - `Merge`: only secret-ferry's keys are applied, without `force`, to a Secret that must
//!   exist; a key another field manager set is a conflict, reported, never overwritten.

use super::WriteOutcome;
mod error;

pub use error::KubeSecretError;

use crate::config::{CreationPolicy, DeletionPolicy, KubeSecretTarget};
use crate::k8s::{
    describe, Kube, DELETION_ANNOTATION, FIELD_MANAGER, HASH_ANNOTATION, INSTANCE_ANNOTATION,
    MANAGED_BY, MANAGED_BY_LABEL, SOURCE_ANNOTATION,
};
use crate::transform::Rendered;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{json, Map, Value};
use sha2::Digest as _;
use std::time::Duration;

/// Kubernetes refuses Secrets whose data exceeds 1 MiB.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// Attempts of one apply on 409, 5xx and connection errors before the sync is reported
/// failed (the next poll tries again). Neither 429 nor a request that ran out of time is
/// among them: the kube client already retries 429/503/504 honouring Retry-After, and a
/// timeout already spent the whole request budget on such retries; trying again would
/// only hold the secret's task (and a draining shutdown) for several budgets.
const APPLY_ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Keys each typed Secret must have (any one of a group is enough).
const TYPED_KEYS: &[(&str, &[&[&str]])] = &[
    ("kubernetes.io/tls", &[&["tls.crt"], &["tls.key"]]),
    ("kubernetes.io/dockerconfigjson", &[&[".dockerconfigjson"]]),
    ("kubernetes.io/dockercfg", &[&[".dockercfg"]]),
    ("kubernetes.io/basic-auth", &[&["username", "password"]]),
    ("kubernetes.io/ssh-auth", &[&["ssh-privatekey"]]),
];

pub struct KubeSecretSink {
    kube: Kube,
    target: KubeSecretTarget,
    namespace: String,
    /// The config entry written for, recorded in an annotation.
    source: String,
    /// Hash of what was last applied (or found already applied); `None` until the first
    /// sync of this run.
    last_hash: tokio::sync::Mutex<Option<String>>,
}

// === impl KubeSecretSink ===

impl KubeSecretSink {
    pub fn new(kube: Kube, target: KubeSecretTarget, namespace: String, source: String) -> Self {
        Self {
            kube,
            target,
            namespace,
            source,
            last_hash: tokio::sync::Mutex::new(None),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The target this sink writes, as configured.
    pub fn target(&self) -> &KubeSecretTarget {
        &self.target
    }

    pub fn name(&self) -> &str {
        &self.target.name
    }

    pub async fn write(&self, rendered: &Rendered) -> Result<WriteOutcome, KubeSecretError> {
        self.check(rendered)?;
        let (desired, hash) = self.desired(rendered);
        let mut last = self.last_hash.lock().await;
        if last.as_deref() == Some(hash.as_str()) {
            return Ok(WriteOutcome::Unchanged);
        }
        let api: Api<Secret> = Api::namespaced(self.kube.client.clone(), &self.namespace);
        let first = last.is_none();
        if first {
            let existing = self
                .kube
                .call("get", api.get_opt(&self.target.name))
                .await
                .map_err(|e| self.api_error("get", &e))?;
            if let Some(found) = self.check_existing(existing.as_ref(), &hash).await? {
                *last = Some(found);
                return Ok(WriteOutcome::Unchanged);
            }
        }
        match self.apply(&api, &desired).await {
            Ok(written) => {
                *last = Some(hash);
                let (reason, note) = if first {
                    (
                        "Synced",
                        format!(
                            "secret-ferry wrote {} from {}",
                            self.describe_keys(rendered),
                            self.source
                        ),
                    )
                } else {
                    (
                        "Updated",
                        format!(
                            "secret-ferry updated {} from {}",
                            self.describe_keys(rendered),
                            self.source
                        ),
                    )
                };
                self.kube
                    .event(
                        &crate::k8s::reference(&written, &self.namespace),
                        false,
                        reason,
                        note,
                    )
                    .await;
                Ok(WriteOutcome::Written)
            }
            Err(err) => {
                let warning = err.to_string();
                self.kube
                    .event(&self.reference(), true, "SyncFailed", warning)
                    .await;
                Err(err)
            }
        }
    }

    /// The checks that need no request: key names, typed keys, size.
    fn check(&self, rendered: &Rendered) -> Result<(), KubeSecretError> {
        let (namespace, name) = (self.namespace.clone(), self.target.name.clone());
        if let Some(key) = rendered.files.keys().find(|k| !is_secret_key(k)) {
            return Err(KubeSecretError::BadKey {
                namespace,
                name,
                key: key.chars().take(64).collect(),
            });
        }
        if self.target.creation_policy != CreationPolicy::Merge {
            let required = TYPED_KEYS
                .iter()
                .find(|(t, _)| *t == self.target.secret_type)
                .map_or(&[][..], |(_, groups)| *groups);
            let missing: Vec<String> = required
                .iter()
                .filter(|group| !group.iter().any(|k| rendered.files.contains_key(*k)))
                .map(|group| group.join(" or "))
                .collect();
            if !missing.is_empty() {
                return Err(KubeSecretError::TypedKeys {
                    namespace,
                    name,
                    secret_type: self.target.secret_type.clone(),
                    missing: missing.join(", "),
                });
            }
        }
        let bytes: usize = rendered
            .files
            .iter()
            .map(|(k, v)| k.len() + v.expose().len())
            .sum();
        if bytes > MAX_SECRET_BYTES {
            return Err(KubeSecretError::TooLarge {
                namespace,
                name,
                bytes,
            });
        }
        Ok(())
    }

    /// The Secret to apply and the hash of it (taken before the hash annotation is added).
    fn desired(&self, rendered: &Rendered) -> (Value, String) {
        let data: Map<String, Value> = rendered
            .files
            .iter()
            .map(|(k, v)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(v.expose());
                (k.clone(), Value::String(encoded))
            })
            .collect();
        let t = &self.target;
        let mut metadata = json!({"name": t.name, "namespace": self.namespace});
        let mut annotations: Map<String, Value> = Map::new();
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret"});
        if t.creation_policy != CreationPolicy::Merge {
            let mut labels: Map<String, Value> = t
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            labels.insert(
                MANAGED_BY_LABEL.to_owned(),
                Value::String(MANAGED_BY.to_owned()),
            );
            metadata["labels"] = Value::Object(labels);
            annotations.extend(
                t.annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
            );
            annotations.insert(
                SOURCE_ANNOTATION.to_owned(),
                Value::String(self.source.clone()),
            );
            annotations.insert(
                INSTANCE_ANNOTATION.to_owned(),
                Value::String(self.kube.instance.clone()),
            );
            if t.creation_policy == CreationPolicy::Owner
                && t.deletion_policy == DeletionPolicy::Delete
            {
                annotations.insert(
                    DELETION_ANNOTATION.to_owned(),
                    Value::String("Delete".to_owned()),
                );
            }
            if let (true, Some(pod)) = (t.owner_pod, &self.kube.pod) {
                metadata["ownerReferences"] = json!([{
                    "apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid,
                    "blockOwnerDeletion": false, "controller": false,
                }]);
            }
            secret["type"] = Value::String(t.secret_type.clone());
            if t.immutable {
                secret["immutable"] = Value::Bool(true);
            }
        }
        secret["data"] = Value::Object(data);
        metadata["annotations"] = Value::Object(annotations);
        secret["metadata"] = metadata;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"secret-ferry/v1\0");
        hasher.update(secret.to_string().as_bytes());
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        secret["metadata"]["annotations"][HASH_ANNOTATION] = Value::String(hash.clone());
        (secret, hash)
    }

    /// `Some(hash)` when the existing Secret already holds exactly this content.
    async fn check_existing(
        &self,
        existing: Option<&Secret>,
        hash: &str,
    ) -> Result<Option<String>, KubeSecretError> {
        let (namespace, name) = (self.namespace.clone(), self.target.name.clone());
        let Some(existing) = existing else {
            return match self.target.creation_policy {
                CreationPolicy::Merge => Err(KubeSecretError::MissingForMerge { namespace, name }),
                _ => Ok(None),
            };
        };
        let meta = &existing.metadata;
        if self.target.creation_policy != CreationPolicy::Merge {
            let ours = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .is_some_and(|v| v == MANAGED_BY);
            if !ours {
                let err = KubeSecretError::NotOurs { namespace, name };
                self.kube
                    .event(
                        &crate::k8s::reference(existing, &self.namespace),
                        true,
                        "Refused",
                        err.to_string(),
                    )
                    .await;
                return Err(err);
            }
        }
        let current = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH_ANNOTATION))
            .map(String::as_str);
        if current == Some(hash) {
            return Ok(Some(hash.to_owned()));
        }
        if existing.immutable == Some(true) && self.target.creation_policy != CreationPolicy::Merge
        {
            return Err(KubeSecretError::Immutable { namespace, name });
        }
        Ok(None)
    }

    async fn apply(&self, api: &Api<Secret>, desired: &Value) -> Result<Secret, KubeSecretError> {
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if self.target.creation_policy != CreationPolicy::Merge {
            params = params.force();
        }
        let mut delay = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            let result = self
                .kube
                .call(
                    "patch",
                    api.patch(&self.target.name, &params, &Patch::Apply(desired)),
                )
                .await;
            let err = match result {
                Ok(secret) => return Ok(secret),
                Err(err) => err,
            };
            let code = match &err {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            };
            let retry = match code {
                Some(code) => code == 409 || (500..=599).contains(&code),
                None => !crate::k8s::is_timeout(&err),
            };
            if !retry || attempt >= APPLY_ATTEMPTS {
                return Err(self.apply_error(&err, code));
            }
            tracing::debug!(secret = %self.source, attempt, code, "apply failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    fn apply_error(&self, err: &kube::Error, code: Option<u16>) -> KubeSecretError {
        let (namespace, name) = (self.namespace.clone(), self.target.name.clone());
        match err {
            kube::Error::Api(status)
                if status.code == 409 && status.message.contains("conflict") =>
            {
                KubeSecretError::Conflict {
                    namespace,
                    name,
                    message: status.message.clone(),
                }
            }
            kube::Error::Api(status)
                if status.code == 422 && status.message.contains("immutable") =>
            {
                KubeSecretError::Immutable { namespace, name }
            }
            _ => KubeSecretError::Api {
                verb: "patch",
                code,
                message: describe(err, "patch", "secrets", &self.namespace),
                namespace,
                name,
            },
        }
    }

    fn api_error(&self, verb: &'static str, err: &kube::Error) -> KubeSecretError {
        KubeSecretError::Api {
            namespace: self.namespace.clone(),
            name: self.target.name.clone(),
            verb,
            code: match err {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            },
            message: describe(err, verb, "secrets", &self.namespace),
        }
    }

    /// Deletes the Secret if its policy says so (a secret no longer configured). A Secret
    /// that is already gone counts as deleted.
    pub async fn remove(&self) -> Result<(), KubeSecretError> {
        if self.target.creation_policy != CreationPolicy::Owner
            || self.target.deletion_policy != DeletionPolicy::Delete
        {
            return Ok(());
        }
        delete(&self.kube, &self.namespace, &self.target.name)
            .await
            .map_err(|e| self.api_error("delete", &e))
    }

    fn describe_keys(&self, rendered: &Rendered) -> String {
        format!(
            "{} key(s) into Secret {}/{}",
            rendered.files.len(),
            self.namespace,
            self.target.name
        )
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Secret".to_owned()),
            name: Some(self.target.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        }
    }
}

/// Deletes, in `namespace`, the Secrets this instance created with `deletionPolicy: Delete`
/// that are not in `configured` (namespace, name) any more.
pub async fn delete_unconfigured(
    kube: &Kube,
    namespace: &str,
    configured: &std::collections::BTreeSet<(String, String)>,
) {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube::Api::namespaced(kube.client.clone(), namespace);
    let params =
        kube::api::ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let listed = match kube.call("list", api.list_metadata(&params)).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(%namespace, "cannot look for Secrets removed from the config: {}", describe(&e, "list", "secrets", namespace));
            return;
        }
    };
    for secret in listed.items {
        let annotations = secret.metadata.annotations.unwrap_or_default();
        let Some(name) = secret.metadata.name else {
            continue;
        };
        let ours = annotations.get(INSTANCE_ANNOTATION) == Some(&kube.instance)
            && annotations.get(DELETION_ANNOTATION).map(String::as_str) == Some("Delete");
        if !ours || configured.contains(&(namespace.to_owned(), name.clone())) {
            continue;
        }
        match delete(kube, namespace, &name).await {
            Ok(()) => {
                tracing::info!(%namespace, %name, "deleted a Secret no longer in the config (deletionPolicy: Delete)")
            }
            Err(e) => {
                tracing::warn!(%namespace, %name, "cannot delete a Secret no longer in the config: {}", describe(&e, "delete", "secrets", namespace))
            }
        }
    }
}

/// Deletes a Secret; NotFound is success.
pub async fn delete(kube: &Kube, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(kube.client.clone(), namespace);
    match kube
        .call("delete", api.delete(name, &DeleteParams::default()))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Kubernetes Secret keys: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn is_secret_key(key: &str) -> bool {
    (1..=253).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}
