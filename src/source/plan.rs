//! The fetch plan: which secrets are polled together, and how. Pure, so that the rules
//! are unit-tested without AWS.
//!
//! Secrets read with the same credentials, in the same region, at the same interval (and
//! with the same failover region) form a group. A group is polled with one strategy:
//! - `get`: GetSecretValue per secret; a group of one, so each secret keeps its own
//!   schedule and back-off.
//! - `batch`: BatchGetSecretValue, 20 secrets per call.
//! - `list`: ListSecrets pages (100 secrets each) to learn the current versions, then
//!   GetSecretValue only for the secrets whose version changed.
//! - `find`: a discovery entry; like `list`, with its members learnt from the listing.
//!
//! - `auto`: a group of two or more polled at least every [`AUTO_LISTS_FROM`] chooses between
//!   `batch` and `list` on each poll by which costs fewer calls (see `auto`); polled more
//!   often, it is `batch`, because ListSecrets may lag a change by minutes and such an
//!   interval asks for seconds. A group of one is `get`.
//!
//! Secrets that want another version than AWSCURRENT cannot be batched
//! (BatchGetSecretValue takes no version), so under `auto` they are read with `get`.

use crate::config::{FetchStrategy, SecretConfig, VersionSelector, DEFAULT_VERSION_STAGE};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Get,
    Batch,
    List,
    Find,
    /// `batch` or `list`, chosen on each poll.
    Auto,
    /// Parameter Store entries: GetParameters ten names a call, paths with
    /// GetParametersByPath, every poll.
    Parameters,
    /// Parameter Store entries: DescribeParameters first (fifty names a call, no value, no
    /// KMS call), then only what changed.
    ParametersListed,
}

/// The shortest interval at which `auto` may list: AWS documents that ListSecrets might not
/// reflect changes of the last five minutes, a lag an interval of seconds would not expect.
pub const AUTO_LISTS_FROM: Duration = Duration::from_secs(60);

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Get => "get",
            Strategy::Batch => "batch",
            Strategy::List => "list",
            Strategy::Find => "find",
            Strategy::Auto => "auto",
            Strategy::Parameters => "parameters",
            Strategy::ParametersListed => "parameters_listed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedGroup {
    pub strategy: Strategy,
    /// Chosen by `auto`: a denied BatchGetSecretValue (or ListSecrets) falls back.
    pub auto: bool,
    /// Indexes into the config's secrets, in config order.
    pub members: Vec<usize>,
    /// How often the group is polled: its members' `refreshInterval`, which they share.
    pub interval: Duration,
}

/// What secrets must share to be polled together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    role: Option<String>,
    region: String,
    interval: Duration,
    failover: Option<String>,
    strategy: FetchStrategy,
    /// Parameter Store entries are never polled with Secrets Manager's.
    parameters: bool,
}

/// `region_of` gives the region a secret is read in (its role's, or the default).
pub fn plan(
    secrets: &[SecretConfig],
    region_of: impl Fn(&SecretConfig) -> String,
) -> Vec<PlannedGroup> {
    let mut plan = Vec::new();
    let mut shared: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (i, secret) in secrets.iter().enumerate() {
        let current =
            matches!(&secret.version, VersionSelector::Stage(s) if s == DEFAULT_VERSION_STAGE);
        let pinned = matches!(secret.version, VersionSelector::Id(_));
        let strategy = match secret.fetch_strategy {
            // GetParameters reads ten at a time under `get` too: there is no cheaper call.
            FetchStrategy::Get | FetchStrategy::Batch if secret.parameter.is_some() => {
                Some(FetchStrategy::Batch)
            }
            _ if secret.parameter.is_some() => Some(secret.fetch_strategy),
            _ if secret.find.is_some() => {
                plan.push(PlannedGroup {
                    strategy: Strategy::Find,
                    auto: false,
                    members: vec![i],
                    interval: secret.refresh_interval,
                });
                continue;
            }
            FetchStrategy::Get => None,
            FetchStrategy::Auto if !current => None,
            FetchStrategy::List if pinned => None,
            other => Some(other),
        };
        let Some(strategy) = strategy else {
            plan.push(single(i, secret.refresh_interval));
            continue;
        };
        let key = Key {
            role: secret.role.clone(),
            region: region_of(secret),
            interval: secret.refresh_interval,
            failover: secret.failover_region.clone(),
            strategy,
            parameters: secret.parameter.is_some(),
        };
        shared.entry(key).or_default().push(i);
    }
    for (key, members) in shared {
        if key.parameters {
            let listed = match key.strategy {
                FetchStrategy::List => true,
                FetchStrategy::Auto => parameters_list_pays(members.iter().map(|&i| &secrets[i])),
                FetchStrategy::Get | FetchStrategy::Batch => false,
            };
            plan.push(PlannedGroup {
                strategy: if listed {
                    Strategy::ParametersListed
                } else {
                    Strategy::Parameters
                },
                auto: key.strategy == FetchStrategy::Auto,
                members,
                interval: key.interval,
            });
            continue;
        }
        match key.strategy {
            FetchStrategy::Auto if members.len() == 1 => {
                plan.extend(members.into_iter().map(|i| single(i, key.interval)))
            }
            FetchStrategy::Auto if key.interval >= AUTO_LISTS_FROM => plan.push(PlannedGroup {
                strategy: Strategy::Auto,
                auto: true,
                members,
                interval: key.interval,
            }),
            FetchStrategy::Auto | FetchStrategy::Batch => plan.push(PlannedGroup {
                strategy: Strategy::Batch,
                auto: key.strategy == FetchStrategy::Auto,
                members,
                interval: key.interval,
            }),
            FetchStrategy::List => plan.push(PlannedGroup {
                strategy: Strategy::List,
                auto: false,
                members,
                interval: key.interval,
            }),
            FetchStrategy::Get => plan.extend(members.into_iter().map(|i| single(i, key.interval))),
        }
    }
    plan.sort_by_key(|g| g.members.first().copied());
    plan
}

/// Whether `auto` compares versions before reading Parameter Store entries: a listing costs
/// one DescribeParameters per fifty names (one page per path, often), and saves a read
/// (and a KMS decryption) of each unchanged parameter; GetParameters reads ten a call. With
/// ten names or fewer and no path, one GetParameters is already the cheapest poll.
fn parameters_list_pays<'a>(entries: impl Iterator<Item = &'a SecretConfig>) -> bool {
    use crate::config::ParameterSource;
    let mut names = 0;
    for entry in entries {
        match entry.parameter.as_deref() {
            Some(ParameterSource::Path { .. }) => return true,
            Some(ParameterSource::One { .. }) => names += 1,
            None => {}
        }
    }
    names > super::parameter_store::NAMES_MAX
}

fn single(i: usize, interval: Duration) -> PlannedGroup {
    PlannedGroup {
        strategy: Strategy::Get,
        auto: false,
        members: vec![i],
        interval,
    }
}

/// The ListSecrets name filter for a `list` group: the names themselves when there are
/// few (the filter takes up to 10 values, each a prefix), else their common prefix; no
/// filter when a secret is named by ARN (ListSecrets cannot filter on it) or the names
/// share no prefix.
pub fn name_filter<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    // Sorted and deduplicated in O(n log n): this runs on every poll of a listed group, and a
    // linear `contains` per id was quadratic at 10,000 secrets.
    let mut names: Vec<&str> = Vec::new();
    for id in ids {
        if id.starts_with("arn:") {
            return Vec::new();
        }
        names.push(id);
    }
    names.sort_unstable();
    names.dedup();
    if names.len() <= 10 {
        return names.into_iter().map(str::to_owned).collect();
    }
    // Sorted, the prefix common to all is the one the first and the last share.
    let (Some(first), Some(last)) = (names.first(), names.last()) else {
        return Vec::new();
    };
    let common = first
        .char_indices()
        .zip(last.chars())
        .find(|((_, a), b)| a != b)
        .map_or(first.len().min(last.len()), |((i, _), _)| i);
    let prefix = &first[..common];
    if prefix.is_empty() {
        Vec::new()
    } else {
        vec![prefix.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Find;
    use crate::config::Mapping;

    fn secret(name: &str, role: Option<&str>, strategy: FetchStrategy) -> SecretConfig {
        SecretConfig {
            name: name.into(),
            secret_id: name.into(),
            role: role.map(str::to_owned),
            version: VersionSelector::Stage("AWSCURRENT".into()),
            refresh_interval: Duration::from_secs(60),
            targets: Vec::new(),
            on_change: Vec::new(),
            debounce: Duration::from_secs(2),
            find: None,
            prune: false,
            fetch_strategy: strategy,
            failover_region: None,
            mapping: Mapping::default(),
            parameter: None,
        }
    }

    fn shape(plan: &[PlannedGroup]) -> Vec<(Strategy, bool, Vec<usize>)> {
        plan.iter()
            .map(|g| (g.strategy, g.auto, g.members.clone()))
            .collect()
    }

    fn region(_: &SecretConfig) -> String {
        "us-east-1".into()
    }

    #[test]
    fn auto_groups_secrets_that_share_credentials_region_and_interval() {
        use FetchStrategy::*;
        let mut secrets = vec![
            secret("a", Some("r"), Auto),
            secret("b", Some("r"), Auto),
            secret("c", Some("other"), Auto),
            secret("d", None, Auto),
            secret("e", Some("r"), Auto),
            secret("f", Some("r"), Auto),
            secret("g", Some("r"), Auto),
        ];
        for s in &mut secrets[4..] {
            s.refresh_interval = Duration::from_secs(5);
        }
        secrets[6].refresh_interval = AUTO_LISTS_FROM - Duration::from_millis(1);
        secrets.push(secret("h", Some("r"), Auto));
        secrets[7].refresh_interval = secrets[6].refresh_interval;
        assert_eq!(
            shape(&plan(&secrets, region)),
            vec![
                (Strategy::Auto, true, vec![0, 1]),
                (Strategy::Get, false, vec![2]),
                (Strategy::Get, false, vec![3]),
                (Strategy::Batch, true, vec![4, 5]),
                (Strategy::Batch, true, vec![6, 7]),
            ]
        );
    }

    #[test]
    fn regions_and_failover_regions_split_groups() {
        use FetchStrategy::*;
        let mut secrets = vec![
            secret("a", Some("r"), Auto),
            secret("b", Some("r"), Auto),
            secret("c", Some("r"), Auto),
        ];
        secrets[2].failover_region = Some("us-west-2".into());
        let by_name = |s: &SecretConfig| {
            if s.name == "b" {
                "eu-west-1".to_owned()
            } else {
                "us-east-1".to_owned()
            }
        };
        let groups = plan(&secrets, by_name);
        assert!(
            groups.iter().all(|g| g.strategy == Strategy::Get),
            "{groups:?}"
        );
        assert_eq!(groups.len(), 3);
    }

    #[test]
    fn explicit_strategies_are_kept_even_for_one_secret() {
        use FetchStrategy::*;
        let secrets = vec![
            secret("a", None, Batch),
            secret("b", None, List),
            secret("c", None, List),
            secret("d", None, Get),
            secret("e", None, Get),
        ];
        assert_eq!(
            shape(&plan(&secrets, region)),
            vec![
                (Strategy::Batch, false, vec![0]),
                (Strategy::List, false, vec![1, 2]),
                (Strategy::Get, false, vec![3]),
                (Strategy::Get, false, vec![4]),
            ]
        );
    }

    #[test]
    fn other_versions_are_never_batched_and_find_entries_stand_alone() {
        use FetchStrategy::*;
        let mut secrets = vec![
            secret("a", None, Auto),
            secret("b", None, Auto),
            secret("c", None, Auto),
            secret("d", None, List),
        ];
        secrets[0].version = VersionSelector::Stage("AWSPREVIOUS".into());
        secrets[1].version = VersionSelector::Id("v1".into());
        secrets[2].find = Some(Find {
            name_prefix: Some("team/".into()),
            tags: BTreeMap::new(),
        });
        secrets[3].version = VersionSelector::Stage("AWSPREVIOUS".into());
        assert_eq!(
            shape(&plan(&secrets, region)),
            vec![
                (Strategy::Get, false, vec![0]),
                (Strategy::Get, false, vec![1]),
                (Strategy::Find, false, vec![2]),
                (Strategy::List, false, vec![3]),
            ]
        );
    }

    #[test]
    fn parameters_are_grouped_apart_and_list_when_it_pays() {
        use crate::config::ParameterSource;
        use FetchStrategy::*;
        let one = |name: &str, strategy| {
            let mut s = secret(name, Some("r"), strategy);
            s.secret_id = String::new();
            s.parameter = Some(Box::new(ParameterSource::One {
                name: format!("/{name}"),
                selector: None,
            }));
            s
        };
        let mut secrets: Vec<SecretConfig> = (0..11).map(|i| one(&format!("p{i}"), Auto)).collect();
        secrets.push(secret("sm", Some("r"), Auto));
        secrets.push(one("few-a", Get));
        secrets.push(one("few-b", Batch));
        let mut path = one("path", Auto);
        path.parameter = Some(Box::new(ParameterSource::Path {
            path: "/app/".into(),
            recursive: true,
        }));
        path.refresh_interval = Duration::from_secs(5);
        secrets.push(path);
        let groups = plan(&secrets, region);
        assert_eq!(
            shape(&groups),
            vec![
                (Strategy::ParametersListed, true, (0..11).collect()),
                (Strategy::Get, false, vec![11]),
                (Strategy::Parameters, false, vec![12, 13]),
                (Strategy::ParametersListed, true, vec![14]),
            ]
        );
        let few: Vec<SecretConfig> = (0..10).map(|i| one(&format!("p{i}"), Auto)).collect();
        assert_eq!(plan(&few, region)[0].strategy, Strategy::Parameters);
    }

    #[test]
    fn list_name_filter() {
        assert_eq!(name_filter(["a/x", "a/y", "a/x"]), vec!["a/x", "a/y"]);
        let many: Vec<String> = (0..12).map(|i| format!("team-a/db-{i}")).collect();
        assert_eq!(
            name_filter(many.iter().map(String::as_str)),
            vec!["team-a/db-"]
        );
        let mut mixed = many.clone();
        mixed.push("other".into());
        assert!(name_filter(mixed.iter().map(String::as_str)).is_empty());
        assert!(name_filter(["a", "arn:aws:secretsmanager:us-east-1:1:secret:b"]).is_empty());
        let unicode: Vec<String> = (0..11).map(|i| format!("é{i}")).collect();
        assert_eq!(name_filter(unicode.iter().map(String::as_str)), vec!["é"]);
    }
}
