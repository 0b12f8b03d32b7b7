//! The Secrets Manager clients of a config: one per (identity, region), each with the
//! request budget of its (account, region).

use super::{Budget, SecretsManager};
use crate::aws::CountCalls;
use crate::config::{Config, SecretConfig};
use crate::credentials::Roles;
use crate::metrics::Metrics;
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How errors and documents name the base identity.
const BASE_PRINCIPAL: &str = "the base identity (the pod's own IAM role or credentials)";

/// A secret (or the tenants controller) names a role the config does not define.
#[derive(Debug, thiserror::Error)]
#[error("secret '{reader}' refers to role '{role}', which is not defined")]
pub struct UnknownRole {
    /// Who asked: the secret's name, or `tenants`.
    pub reader: String,
    pub role: String,
}

/// Secrets Manager clients, one per (identity, region), each with the budget of its
/// (account, region): AWS quotas are per account and region.
pub struct Clients<'a> {
    config: &'a Config,
    base: &'a SdkConfig,
    roles: &'a Roles,
    metrics: &'a Metrics,
    /// The default region.
    region: &'a str,
    budgets: BTreeMap<(String, String), Arc<Budget>>,
    clients: BTreeMap<(Option<String>, String), SecretsManager>,
}

impl<'a> Clients<'a> {
    /// `region`: the default region, for secrets whose role names none.
    pub fn new(
        config: &'a Config,
        base: &'a SdkConfig,
        roles: &'a Roles,
        metrics: &'a Metrics,
        region: &'a str,
    ) -> Self {
        Self {
            config,
            base,
            roles,
            metrics,
            region,
            budgets: BTreeMap::new(),
            clients: BTreeMap::new(),
        }
    }

    pub fn region_of(&self, secret: &SecretConfig) -> String {
        self.region_of_role(secret.role.as_deref())
    }

    pub fn region_of_role(&self, role: Option<&str>) -> String {
        role.and_then(|role| self.config.roles.get(role))
            .and_then(|role| role.region.clone())
            .unwrap_or_else(|| self.region.to_owned())
    }

    /// The client `secret` reads with, in its own region or in `region`.
    pub fn for_secret(
        &mut self,
        secret: &SecretConfig,
        region: Option<&str>,
    ) -> Result<SecretsManager, UnknownRole> {
        let region = region.map_or_else(|| self.region_of(secret), str::to_owned);
        self.client(secret.role.as_deref(), region, &secret.name)
    }

    /// The change events queue `queue`, read with its role (or the base identity) in the
    /// URL's region, else its own, else its role's.
    pub fn queue(
        &mut self,
        queue: &crate::config::ChangeEventsQueue,
    ) -> Result<super::change_queue::ChangeQueue, UnknownRole> {
        let role_region = self.region_of_role(queue.role.as_deref());
        let region = queue.region_in(None, &role_region);
        let mut builder = aws_sdk_sqs::config::Builder::from(self.base)
            .interceptor(CountCalls(self.metrics.clone()))
            .region(aws_config::Region::new(region.clone()));
        let (session, principal) = match queue.role.as_deref() {
            None => (None, BASE_PRINCIPAL.to_owned()),
            Some(name) => {
                let (session, role) = self.role(name, &format!("changeEvents {}", queue.name()))?;
                builder = builder
                    .credentials_provider(session.clone())
                    .identity_cache(aws_sdk_sqs::config::IdentityCache::no_cache());
                (Some(session), role)
            }
        };
        Ok(super::change_queue::ChangeQueue::new(
            aws_sdk_sqs::Client::from_conf(builder.build()),
            queue,
            region,
            session,
            principal,
        ))
    }

    /// The session of role `name` and its ARN.
    fn role(
        &self,
        name: &str,
        reader: &str,
    ) -> Result<
        (
            crate::credentials::RoleSession<crate::credentials::StsAssumer>,
            String,
        ),
        UnknownRole,
    > {
        let unknown = || UnknownRole {
            reader: reader.to_owned(),
            role: name.to_owned(),
        };
        let session = self.roles.get(name).ok_or_else(unknown)?;
        let role = self.config.roles.get(name).ok_or_else(unknown)?;
        Ok((session.clone(), role.role_arn.clone()))
    }

    /// The client of `role` (`None`: the base identity) in `region`; `reader` names who
    /// asks, for the error when the role is not defined.
    pub fn client(
        &mut self,
        role: Option<&str>,
        region: String,
        reader: &str,
    ) -> Result<SecretsManager, UnknownRole> {
        let key = (role.map(str::to_owned), region.clone());
        if let Some(client) = self.clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(self.base)
            .interceptor(CountCalls(self.metrics.clone()))
            .region(aws_config::Region::new(region.clone()));
        let (session, principal, account) = match role {
            None => (None, BASE_PRINCIPAL.to_owned(), "base".to_owned()),
            Some(name) => {
                let (session, role_arn) = self.role(name, reader)?;
                builder = builder
                    .credentials_provider(session.clone())
                    // The session is the cache; an SDK cache on top would keep serving the
                    // previous credentials after each refresh.
                    .identity_cache(aws_sdk_secretsmanager::config::IdentityCache::no_cache());
                let account = role_arn.split(':').nth(4).unwrap_or_default().to_owned();
                (Some(session), role_arn, account)
            }
        };
        let limit = self.config.api_rate_limit;
        let budget = self
            .budgets
            .entry((account, region.clone()))
            .or_insert_with(|| Arc::new(Budget::new(limit)))
            .clone();
        let client = SecretsManager::new(
            aws_sdk_secretsmanager::Client::from_conf(builder.build()),
            region,
            session,
            principal,
            budget,
        );
        self.clients.insert(key, client.clone());
        Ok(client)
    }
}
