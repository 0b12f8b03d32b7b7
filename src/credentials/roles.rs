//! The role sessions of a config: built in chain order (a `via` role's session is the
//! credential source of the roles assumed through it), shared between roles whose
//! AssumeRole parameters are identical, and handed to the app as a credentials file or
//! through the credentials endpoint.

use super::{CredentialSource, RoleCredentials};
use super::{RoleSession, StsAssumer};
use crate::config::{Config, ExternalIdSource, RoleConfig};
use crate::metrics::Metrics;
use crate::secret::Sensitive;
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub type Session = RoleSession<StsAssumer>;

/// Every role's session, by config name.
#[derive(Clone, Default)]
pub struct Roles {
    by_name: BTreeMap<String, Session>,
    /// One entry per distinct session (roles with identical parameters share one).
    distinct: Vec<Session>,
}

impl Roles {
    pub fn build(config: &Config, base: &SdkConfig, metrics: &Metrics) -> Self {
        let mut roles = Roles::default();
        let mut by_key: BTreeMap<Arc<SessionKey>, Session> = BTreeMap::new();
        let mut keys: BTreeMap<String, Arc<SessionKey>> = BTreeMap::new();
        for role in config.roles_in_chain_order() {
            let parent = role
                .via
                .as_ref()
                .and_then(|via| roles.by_name.get(via).cloned());
            let parent_key = role.via.as_ref().and_then(|via| keys.get(via).cloned());
            let key = Arc::new(SessionKey::of(role, parent_key));
            keys.insert(role.name.clone(), key.clone());
            if let Some(shared) = by_key.get(&key) {
                tracing::info!(
                    role = %role.name,
                    shares_with = %shared.role(),
                    "role has the same AssumeRole parameters as another; they share one credential"
                );
                roles.by_name.insert(role.name.clone(), shared.clone());
                continue;
            }
            let sts = aws_sdk_sts::Client::from_conf(sts_config(role, base, parent, metrics));
            let session = RoleSession::new(
                role.name.clone(),
                role.refresh_before,
                StsAssumer::new(role.clone(), sts),
                metrics.clone(),
            );
            by_key.insert(key, session.clone());
            roles.distinct.push(session.clone());
            roles.by_name.insert(role.name.clone(), session);
        }
        roles
    }

    pub fn get(&self, name: &str) -> Option<&Session> {
        self.by_name.get(name)
    }

    /// Each distinct session once, for refresher tasks.
    pub fn distinct(&self) -> &[Session] {
        &self.distinct
    }

    /// The first role whose credential has expired without a successful refresh.
    pub fn lapsed(&self) -> Option<&str> {
        self.distinct.iter().find(|s| s.lapsed()).map(|s| s.role())
    }
}

/// What makes two roles the same session: everything sent to STS, the credentials it
/// is sent with (the parent's key), and where it is sent. The ExternalId is identified by
/// where it is read from, so it is never held here.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SessionKey {
    /// The session whose credentials assume this one; `None`: the base identity.
    parent: Option<Arc<SessionKey>>,
    role_arn: String,
    external_id: Option<ExternalIdKey>,
    session_name: String,
    duration: Duration,
    refresh_before: Duration,
    session_tags: BTreeMap<String, String>,
    transitive_tag_keys: Vec<String>,
    source_identity: Option<String>,
    policy: Option<String>,
    policy_arns: Vec<String>,
    region: Option<String>,
    sts_endpoint: Option<String>,
}

/// Where an ExternalId is read from (`ExternalIdSource`, with an order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ExternalIdKey {
    File(PathBuf),
    Env(String),
}

impl SessionKey {
    fn of(role: &RoleConfig, parent: Option<Arc<SessionKey>>) -> Self {
        // Destructured without `..`: a new role setting must be placed here, in the key
        // or (like `name` and `via`) deliberately left out of it.
        let RoleConfig {
            name: _,
            via: _,
            role_arn,
            external_id,
            session_name,
            duration,
            refresh_before,
            session_tags,
            transitive_tag_keys,
            source_identity,
            policy,
            policy_arns,
            region,
            sts_endpoint,
        } = role.clone();
        Self {
            parent,
            role_arn,
            external_id: external_id.map(|source| match source {
                ExternalIdSource::File(path) => ExternalIdKey::File(path),
                ExternalIdSource::Env(var) => ExternalIdKey::Env(var),
            }),
            session_name,
            duration,
            refresh_before,
            session_tags,
            transitive_tag_keys,
            source_identity,
            policy,
            policy_arns,
            region,
            sts_endpoint,
        }
    }
}

fn sts_config(
    role: &RoleConfig,
    base: &SdkConfig,
    parent: Option<Session>,
    metrics: &Metrics,
) -> aws_sdk_sts::Config {
    let mut builder = aws_sdk_sts::config::Builder::from(base)
        .interceptor(crate::aws::CountCalls(metrics.clone()));
    if let Some(region) = &role.region {
        builder = builder.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &role.sts_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if let Some(parent) = parent {
        // The parent session is the cache (see `RoleSession`'s ProvideCredentials).
        builder = builder
            .credentials_provider(parent)
            .identity_cache(aws_sdk_sts::config::IdentityCache::no_cache());
    }
    builder.build()
}

impl CredentialSource for Roles {
    fn current(&self, role: &str) -> Option<RoleCredentials> {
        let session = self.by_name.get(role)?;
        let (credentials, expires_at) = session.snapshot()?;
        Some(RoleCredentials {
            role: role.to_owned(),
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: Sensitive::new(credentials.secret_access_key().to_owned()),
            session_token: Sensitive::new(
                credentials.session_token().unwrap_or_default().to_owned(),
            ),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Roles {
        let config = crate::config::parse(yaml).unwrap();
        let base = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Roles::build(&config, &base, &Metrics::new().unwrap())
    }

    const SECRETS: &str = "secrets:\n  - name: db\n    secretId: x\n    targets:\n      - file:\n          dir: /tmp/x\n";

    #[test]
    fn roles_with_identical_parameters_share_one_session() {
        let roles = build(&format!(
            "roles:\n  a:\n    roleArn: arn:aws:iam::111111111111:role/R\n  b:\n    roleArn: arn:aws:iam::111111111111:role/R\n  c:\n    roleArn: arn:aws:iam::111111111111:role/R\n    sessionName: other\n{SECRETS}"
        ));
        assert_eq!(
            roles.distinct().len(),
            2,
            "a and b share; c differs by session name"
        );
        assert_eq!(roles.get("b").unwrap().role(), "a");
        assert_eq!(roles.get("c").unwrap().role(), "c");
    }

    #[test]
    fn the_same_role_via_different_parents_is_not_shared() {
        let roles = build(&format!(
            "roles:\n  hub1:\n    roleArn: arn:aws:iam::222222222222:role/H1\n  hub2:\n    roleArn: arn:aws:iam::222222222222:role/H2\n  t1:\n    via: hub1\n    roleArn: arn:aws:iam::111111111111:role/T\n  t2:\n    via: hub2\n    roleArn: arn:aws:iam::111111111111:role/T\n{SECRETS}"
        ));
        assert_eq!(roles.distinct().len(), 4);
        assert!(roles.lapsed().is_none());
        assert!(
            roles.current("t1").is_none(),
            "nothing is served before the first AssumeRole"
        );
    }
}
