//! Why a write to a Kubernetes Secret failed; every message names the Secret.

#[derive(Debug, thiserror::Error)]
pub enum KubeSecretError {
    #[error("Secret {namespace}/{name} exists and was not created by secret-ferry: creationPolicy Owner does not take over a Secret it does not manage (delete it, or use creationPolicy Merge to only add keys)")]
    NotOurs { namespace: String, name: String },
    #[error("Secret {namespace}/{name} does not exist: creationPolicy Merge only adds keys to an existing Secret")]
    MissingForMerge { namespace: String, name: String },
    #[error("Secret {namespace}/{name} of type {secret_type} needs the key(s) {missing}; produce them with `keys` or `templates`")]
    TypedKeys {
        namespace: String,
        name: String,
        secret_type: String,
        missing: String,
    },
    #[error("Secret {namespace}/{name}: key {key:?} is not a valid Secret key (letters, digits, '-', '_' and '.')")]
    BadKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("Secret {namespace}/{name}: {bytes} bytes of data, more than the 1 MiB Kubernetes allows in one Secret")]
    TooLarge {
        namespace: String,
        name: String,
        bytes: usize,
    },
    #[error("Secret {namespace}/{name} is immutable and its content changed: delete it to let secret-ferry create it again, or set immutable: false")]
    Immutable { namespace: String, name: String },
    #[error("Secret {namespace}/{name}: another field manager owns some of these keys ({message}); with creationPolicy Merge secret-ferry never takes over keys another writer set")]
    Conflict {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("Secret {namespace}/{name}: {verb} failed: {message}")]
    Api {
        namespace: String,
        name: String,
        verb: &'static str,
        code: Option<u16>,
        message: String,
    },
}

impl KubeSecretError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotOurs { .. } => "not_ours",
            Self::MissingForMerge { .. } => "missing_secret",
            Self::TypedKeys { .. } => "typed_keys",
            Self::BadKey { .. } => "bad_key",
            Self::TooLarge { .. } => "too_large",
            Self::Immutable { .. } => "immutable",
            Self::Conflict { .. } => "conflict",
            Self::Api { code, .. } => match code {
                Some(403) => "forbidden",
                Some(409) => "conflict",
                Some(422) => "invalid",
                Some(429) => "throttled",
                Some(500..=599) => "server",
                _ => "kube_api",
            },
        }
    }
}
