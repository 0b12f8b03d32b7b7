//! The Secrets Manager clients of a config: one per (identity, region), each with the
//! request budget of its (account, region).

use super::parameter_store::ParameterStore;
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
    /// Parameter Store's quota is its own: a budget of its own per (account, region).
    parameter_budgets: BTreeMap<(String, String), Arc<Budget>>,
    parameter_stores: BTreeMap<(Option<String>, String), ParameterStore>,
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
            parameter_budgets: BTreeMap::new(),
            parameter_stores: BTreeMap::new(),
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
        let identity = self.identity(role, reader)?;
        if let Some(session) = &identity.session {
            builder = builder
                .credentials_provider(session.clone())
                // The session is the cache; an SDK cache on top would keep serving the
                // previous credentials after each refresh.
                .identity_cache(aws_sdk_secretsmanager::config::IdentityCache::no_cache());
        }
        let budget = budget_of(
            &mut self.budgets,
            (identity.account, region.clone()),
            self.config.api_rate_limit,
        );
        let client = SecretsManager::new(
            aws_sdk_secretsmanager::Client::from_conf(builder.build()),
            region,
            identity.session,
            identity.principal,
            budget,
        );
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    /// The Parameter Store client `secret` reads with: its role's (the same session as its
    /// Secrets Manager reads: one AssumeRole serves both) in its region, with the budget of
    /// Parameter Store in that (account, region).
    pub fn parameter_store(
        &mut self,
        secret: &SecretConfig,
    ) -> Result<ParameterStore, UnknownRole> {
        let region = self.region_of(secret);
        let role = secret.role.as_deref();
        let key = (role.map(str::to_owned), region.clone());
        if let Some(store) = self.parameter_stores.get(&key) {
            return Ok(store.clone());
        }
        let mut builder = aws_sdk_ssm::config::Builder::from(self.base)
            .interceptor(CountCalls(self.metrics.clone()))
            .region(aws_config::Region::new(region.clone()));
        let identity = self.identity(role, &secret.name)?;
        if let Some(session) = &identity.session {
            builder = builder
                .credentials_provider(session.clone())
                .identity_cache(aws_sdk_ssm::config::IdentityCache::no_cache());
        }
        let budget = budget_of(
            &mut self.parameter_budgets,
            (identity.account, region.clone()),
            self.config.parameter_store_rate_limit,
        );
        let store = ParameterStore::new(
            aws_sdk_ssm::Client::from_conf(builder.build()),
            region,
            identity.session,
            identity.principal,
            budget,
        );
        self.parameter_stores.insert(key, store.clone());
        Ok(store)
    }

    /// Who reads for `role` (`None`: the base identity): its session, how errors name it,
    /// and the account its budgets are kept for.
    fn identity(&self, role: Option<&str>, reader: &str) -> Result<Identity, UnknownRole> {
        Ok(match role {
            None => Identity {
                session: None,
                principal: BASE_PRINCIPAL.to_owned(),
                account: "base".to_owned(),
            },
            Some(name) => {
                let (session, role_arn) = self.role(name, reader)?;
                let account = role_arn.split(':').nth(4).unwrap_or_default().to_owned();
                Identity {
                    session: Some(session),
                    principal: role_arn,
                    account,
                }
            }
        })
    }
}

/// The budget of an (account, region) in `budgets`, made at `limit` calls a second.
fn budget_of(
    budgets: &mut BTreeMap<(String, String), Arc<Budget>>,
    key: (String, String),
    limit: u32,
) -> Arc<Budget> {
    budgets
        .entry(key)
        .or_insert_with(|| Arc::new(Budget::new(limit)))
        .clone()
}

struct Identity {
    session: Option<crate::credentials::RoleSession<crate::credentials::StsAssumer>>,
    principal: String,
    account: String,
}
