//! Which configured secrets a change event concerns (pure): every secret id the config
//! reads is indexed by the names it may stand for, with its region and the stage it follows;
//! `find` entries by name prefix. Built once, before the polling starts; holds no job, only
//! where each one is (`group`, `member`).

use super::ChangeEvent;
use crate::config::VersionSelector;
use std::borrow::Cow;

/// A configured secret an event concerns, and the version now at its stage if the event
/// says (a reader already at it has nothing to fetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    Member {
        group: u32,
        member: u32,
        version: Option<String>,
    },
    /// A `find` entry whose prefix the secret's name has: a known member is synced, a new
    /// one is found by the entry's next listing.
    Find {
        group: u32,
        name: String,
        /// The secret may have appeared or gone: the entry lists again.
        list: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Matched(Vec<Hit>),
    Ignored(Unmatched),
}

/// Why an event concerns none of the configured secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// No configured secret or `find` entry has that name in that region.
    UnknownSecret,
    /// A secret this installation pushes (and does not read): its own write.
    OwnPush,
    /// Its readers follow another stage (or a pinned version) than the one that moved.
    OtherStage,
}

impl Unmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownSecret => "unknown_secret",
            Self::OwnPush => "own_push",
            Self::OtherStage => "other_stage",
        }
    }
}

struct Entry {
    key: Box<str>,
    group: u32,
    member: u32,
    /// Indexes into `regions`: the secret's region and its failover region.
    regions: [u16; 2],
    stage: Stage,
}

#[derive(Clone)]
enum Stage {
    Follows(Cow<'static, str>),
    Pinned,
}

struct FindEntry {
    prefix: Option<Box<str>>,
    region: u16,
    group: u32,
}

/// A Parameter Store entry: one parameter, or a path (without its trailing `/`).
struct ParameterEntry {
    name: Box<str>,
    group: u32,
    member: u32,
    region: u16,
    /// For a path: whether parameters deeper than directly under it belong to it.
    recursive: bool,
}

#[derive(Default)]
pub struct Router {
    regions: Vec<String>,
    /// Sorted by key once built.
    entries: Vec<Entry>,
    finds: Vec<FindEntry>,
    pushes: Vec<(Box<str>, u16)>,
    /// Parameter Store entries, apart: their events never name a secret. Names sorted once
    /// built; paths are few and looked at in turn.
    parameters: Vec<ParameterEntry>,
    parameter_paths: Vec<ParameterEntry>,
}

impl Router {
    fn region(&mut self, region: &str) -> u16 {
        match self.regions.iter().position(|r| r == region) {
            Some(i) => i as u16,
            None => {
                self.regions.push(region.to_owned());
                (self.regions.len() - 1) as u16
            }
        }
    }

    /// A configured secret read as `secret_id` in `region` (and `failover`), member
    /// `member` of group `group`.
    pub fn add_secret(
        &mut self,
        (group, member): (u32, u32),
        secret_id: &str,
        region: &str,
        failover: Option<&str>,
        version: &VersionSelector,
    ) {
        let home = crate::source::secret_id::arn_region(secret_id).unwrap_or(region);
        let home = self.region(home);
        let regions = [home, failover.map_or(home, |f| self.region(f))];
        let stage = match version {
            VersionSelector::Stage(stage) => Stage::Follows(stage.clone()),
            VersionSelector::Id(_) => Stage::Pinned,
        };
        for key in keys_of(secret_id) {
            self.entries.push(Entry {
                key: key.into(),
                group,
                member,
                regions,
                stage: stage.clone(),
            });
        }
    }

    /// A `find` entry (group `group`) listing `prefix` (`None`: by tags only) in `region`.
    pub fn add_find(&mut self, group: u32, prefix: Option<&str>, region: &str) {
        let region = self.region(region);
        self.finds.push(FindEntry {
            prefix: prefix.map(Into::into),
            region,
            group,
        });
    }

    /// A Parameter Store entry reading `name` in `region` (member `member` of group `group`).
    pub fn add_parameter(&mut self, (group, member): (u32, u32), name: &str, region: &str) {
        let region = self.region(region);
        self.parameters.push(ParameterEntry {
            name: name.into(),
            group,
            member,
            region,
            recursive: false,
        });
    }

    /// A Parameter Store entry reading every parameter under `path` in `region`.
    pub fn add_parameter_path(
        &mut self,
        (group, member): (u32, u32),
        path: &str,
        recursive: bool,
        region: &str,
    ) {
        let region = self.region(region);
        self.parameter_paths.push(ParameterEntry {
            name: path.trim_end_matches('/').into(),
            group,
            member,
            region,
            recursive,
        });
    }

    /// A secret this installation pushes to.
    pub fn add_push(&mut self, secret_name: &str, region: &str) {
        let region = self.region(region);
        self.pushes.push((secret_name.into(), region));
    }

    /// Sorts the index; call once, after the last `add_*`.
    pub fn built(mut self) -> Self {
        self.entries.sort_by(|a, b| a.key.cmp(&b.key));
        self.entries.shrink_to_fit();
        self.parameters.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    /// The configured secrets `event` concerns.
    pub fn route(&self, event: &ChangeEvent) -> Route {
        let in_region = |i: u16| {
            event
                .region
                .as_deref()
                .is_none_or(|r| self.regions.get(i as usize).is_some_and(|own| own == r))
        };
        if event.parameter {
            return self.route_parameter(event, in_region);
        }
        let mut hits = Vec::new();
        let mut other_stage = false;
        for name in &event.names {
            let from = self.entries.partition_point(|e| *e.key < **name);
            for entry in self.entries[from..].iter().take_while(|e| *e.key == **name) {
                if !entry.regions.iter().any(|&r| in_region(r)) {
                    continue;
                }
                let version = match (&entry.stage, &event.stages) {
                    (_, None) => None,
                    (Stage::Follows(stage), Some(moved)) if moved.iter().any(|m| m == stage) => {
                        event.version_id.clone()
                    }
                    _ => {
                        other_stage = true;
                        continue;
                    }
                };
                let hit = Hit::Member {
                    group: entry.group,
                    member: entry.member,
                    version,
                };
                if !hits.contains(&hit) {
                    hits.push(hit);
                }
            }
        }
        // A `find` entry's members are named by the secret's real name: the first one an
        // event gives (a name, or a complete ARN's).
        if let Some(name) = event.names.first() {
            for find in &self.finds {
                let prefixed = find.prefix.as_deref().is_none_or(|p| name.starts_with(p));
                if prefixed && in_region(find.region) {
                    hits.push(Hit::Find {
                        group: find.group,
                        name: name.clone(),
                        list: event.membership,
                    });
                }
            }
        }
        if !hits.is_empty() {
            return Route::Matched(hits);
        }
        let pushed = event.names.iter().any(|name| {
            self.pushes
                .iter()
                .any(|(pushed, region)| **pushed == **name && in_region(*region))
        });
        Route::Ignored(if pushed {
            Unmatched::OwnPush
        } else if other_stage {
            Unmatched::OtherStage
        } else {
            Unmatched::UnknownSecret
        })
    }
}

// === impl Router (Parameter Store) ===

impl Router {
    /// The Parameter Store entries a changed parameter concerns: those reading it, and those
    /// reading a path it is under (at any depth when recursive, else directly under it).
    fn route_parameter(&self, event: &ChangeEvent, in_region: impl Fn(u16) -> bool) -> Route {
        let mut hits = Vec::new();
        let mut hit = |entry: &ParameterEntry| {
            let hit = Hit::Member {
                group: entry.group,
                member: entry.member,
                version: None,
            };
            if in_region(entry.region) && !hits.contains(&hit) {
                hits.push(hit);
            }
        };
        for name in &event.names {
            let from = self.parameters.partition_point(|e| *e.name < **name);
            for entry in self.parameters[from..]
                .iter()
                .take_while(|e| *e.name == **name)
            {
                hit(entry);
            }
            for entry in &self.parameter_paths {
                let recursive = entry.recursive;
                let under = name
                    .strip_prefix(&*entry.name)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|rest| !rest.is_empty() && (recursive || !rest.contains('/')));
                if under {
                    hit(entry);
                }
            }
        }
        if hits.is_empty() {
            Route::Ignored(Unmatched::UnknownSecret)
        } else {
            Route::Matched(hits)
        }
    }
}

/// The names a configured secret id may stand for: a name itself; an ARN's name, with and
/// without what may be its random suffix (the id may be complete or partial).
fn keys_of(secret_id: &str) -> Vec<String> {
    let Some(rest) = secret_id
        .strip_prefix("arn:")
        .and_then(|_| secret_id.split_once(":secret:"))
        .map(|(_, rest)| rest)
    else {
        return vec![secret_id.to_owned()];
    };
    let mut keys = vec![rest.to_owned()];
    if let Some(name) = rest
        .len()
        .checked_sub(7)
        .and_then(|cut| rest.get(..cut).zip(rest.get(cut..)))
        .filter(|(_, suffix)| super::is_suffix(suffix))
        .map(|(name, _)| name)
    {
        keys.push(name.to_owned());
    }
    keys
}

#[cfg(test)]
mod tests {
    /// docs/performance.md counts 56 bytes per entry (plus the key's heap allocation).
    #[test]
    fn an_entry_is_56_bytes() {
        assert_eq!(std::mem::size_of::<super::Entry>(), 56);
    }
}
