//! Pure: what one push must do to the remote secret, given what the source holds, what
//! Secrets Manager shows and what this process remembers. No I/O; the daemon applies the
//! step and asks again (after a read, a restore or an adoption) until nothing is left.
//!
//! Unchanged sources must cost no write, ever, and as few reads as possible. The version
//! ids do most of the work: every version this process writes has the id
//! [`token`]`(key, content, version it replaces)`, so a listing that shows a current version
//! whose id is the token of the source's content and the previous version proves the two
//! equal without reading the value. A version written by someone else, or by this instance
//! before a restart, is read once and then remembered.
//!
//! The token is keyed with a random per-process [`TokenKey`]: version ids are shown to
//! anyone allowed ListSecrets or DescribeSecret, and an id computed from the content alone
//! would let them test guesses of a short value without GetSecretValue.

use crate::config::{DeletionPolicy, UpdatePolicy};
use crate::secret::Payload;
use sha2::{Digest as _, Sha256};

/// SHA-256 of a value and of its kind (text or binary): equal digests, equal secrets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl std::fmt::Debug for Digest {
    // A digest of a short secret can be brute-forced: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(...)")
    }
}

impl Digest {
    pub fn of(payload: &Payload) -> Self {
        let mut h = Sha256::new();
        match payload {
            Payload::Text(t) => {
                h.update(b"text\0");
                h.update(t.expose().as_bytes());
            }
            Payload::Binary(b) => {
                h.update(b"binary\0");
                h.update(b.expose());
            }
        }
        Self(h.finalize().into())
    }
}

/// The secret of the version-id derivation, random for each process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(...)")
    }
}

impl TokenKey {
    /// 32 bytes from the kernel's random source.
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read as _;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(Self(key))
    }

    #[cfg(test)]
    pub fn fixed(byte: u8) -> Self {
        Self([byte; 32])
    }
}

/// The `ClientRequestToken` (and so the version id) of the version holding `content` that
/// replaces `replacing` (`None` on create). A retry repeats it, so Secrets Manager makes one
/// version however often the request is sent; a revert (A → B → A) replaces a different
/// version than A's first write did, so it gets a new token and is not ignored.
pub fn token(
    key: &TokenKey,
    instance: &str,
    secret_name: &str,
    content: Digest,
    replacing: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(key.0);
    // A create (no replaced version) never shares a token with a replace.
    let replaced = match replacing {
        Some(version) => [b"replaces ".as_slice(), version.as_bytes()].concat(),
        None => b"creates".to_vec(),
    };
    for part in [
        b"secret-ferry push v1".as_slice(),
        instance.as_bytes(),
        secret_name.as_bytes(),
        &content.0,
        &replaced,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // UUID-shaped, as the SDKs generate them: 36 characters, within the 32..=64 allowed.
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The remote secret as ListSecrets or DescribeSecret shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub arn: String,
    /// The version with AWSCURRENT; `None` for a secret created without a value.
    pub current: Option<String>,
    /// The version with AWSPREVIOUS.
    pub previous: Option<String>,
    /// The value of the ownership tag, if any.
    pub owner: Option<String>,
    /// Scheduled for deletion.
    pub deleted: bool,
}

/// What the source holds this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Present(Digest),
    /// The directory or file is gone, confirmed by a second read.
    Gone,
}

/// A version this process wrote, or whose content it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub version: String,
    pub digest: Digest,
    /// The version it replaced, when this process wrote it: a listing that still shows that
    /// one as current is behind (ListSecrets is eventually consistent), not drift.
    pub replaced: Option<String>,
}

/// What this process remembers of one push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The source has been present since the process started: only then can its absence
    /// mean that it was removed rather than never set up.
    pub seen_source: bool,
    pub known: Option<Known>,
}

/// The policies and names one plan needs.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub key: &'a TokenKey,
    pub instance: &'a str,
    pub secret_name: &'a str,
    pub update: UpdatePolicy,
    pub deletion: DeletionPolicy,
    pub adopt: bool,
}

/// The next step for one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The remote secret holds the source's value (or, by policy, must not change).
    Done(Settled),
    Create {
        token: String,
    },
    Put {
        token: String,
        replacing: Option<String>,
    },
    /// Read this version's value to compare it with the source.
    Read {
        version: String,
    },
    /// Cancel the scheduled deletion, then plan again.
    Restore,
    /// Add the ownership tag (`adopt: true`), then plan again.
    Adopt,
    Delete,
    Refuse(Refusal),
    /// The source was never seen in this process: an error, and no deletion.
    SourceMissing,
}

/// Why nothing was written, when that is the right outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    InSync,
    /// IfNotExists and the secret exists.
    Exists,
    /// The source is gone and `deletionPolicy: Retain` keeps the secret.
    Retained,
    /// The source is gone and the secret is already deleted or scheduled for deletion.
    Deleted,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "in_sync",
            Self::Exists => "exists",
            Self::Retained => "retained",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The secret exists without the ownership tag (and `adopt` is not set).
    NotOwned,
    /// Another installation's ownership tag is on it; `adopt` never takes it.
    OwnedBy(String),
}

pub fn plan(policy: &Policy, source: Source, remote: Option<&Remote>, memory: &Memory) -> Step {
    let owned = |r: &Remote| r.owner.as_deref() == Some(policy.instance);
    let digest = match source {
        Source::Gone if !memory.seen_source => return Step::SourceMissing,
        Source::Gone => {
            return match (policy.deletion, remote) {
                (DeletionPolicy::Retain, _) => Step::Done(Settled::Retained),
                (DeletionPolicy::Delete, None) => Step::Done(Settled::Deleted),
                (DeletionPolicy::Delete, Some(r)) if r.deleted => Step::Done(Settled::Deleted),
                (DeletionPolicy::Delete, Some(r)) if owned(r) => Step::Delete,
                (DeletionPolicy::Delete, Some(r)) => Step::Refuse(refusal(r)),
            };
        }
        Source::Present(digest) => digest,
    };
    let Some(remote) = remote else {
        return Step::Create {
            token: token(
                policy.key,
                policy.instance,
                policy.secret_name,
                digest,
                None,
            ),
        };
    };
    if !owned(remote) {
        return match (&remote.owner, policy.update) {
            // A secret that exists is all IfNotExists asks for: it is left alone.
            (None, UpdatePolicy::IfNotExists) if !remote.deleted => Step::Done(Settled::Exists),
            (None, _) if policy.adopt => Step::Adopt,
            _ => Step::Refuse(refusal(remote)),
        };
    }
    if remote.deleted {
        return Step::Restore;
    }
    if policy.update == UpdatePolicy::IfNotExists {
        return Step::Done(Settled::Exists);
    }
    let Some(current) = remote.current.as_deref() else {
        return Step::Put {
            token: token(
                policy.key,
                policy.instance,
                policy.secret_name,
                digest,
                None,
            ),
            replacing: None,
        };
    };
    if let Some(known) = &memory.known {
        let listing_behind = known.replaced.as_deref() == Some(current);
        if known.version == current || listing_behind {
            return if known.digest == digest {
                Step::Done(Settled::InSync)
            } else {
                put(policy, digest, known.version.clone())
            };
        }
    }
    let expected = token(
        policy.key,
        policy.instance,
        policy.secret_name,
        digest,
        remote.previous.as_deref(),
    );
    if current == expected {
        return Step::Done(Settled::InSync);
    }
    Step::Read {
        version: current.to_owned(),
    }
}

fn put(policy: &Policy, digest: Digest, replacing: String) -> Step {
    Step::Put {
        token: token(
            policy.key,
            policy.instance,
            policy.secret_name,
            digest,
            Some(&replacing),
        ),
        replacing: Some(replacing),
    }
}

fn refusal(remote: &Remote) -> Refusal {
    match &remote.owner {
        Some(other) => Refusal::OwnedBy(other.clone()),
        None => Refusal::NotOwned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Sensitive;

    const KEY: TokenKey = TokenKey([7; 32]);
    const POLICY: Policy = Policy {
        key: &KEY,
        instance: "cluster-a",
        secret_name: "app/tokens",
        update: UpdatePolicy::Replace,
        deletion: DeletionPolicy::Delete,
        adopt: false,
    };

    fn digest(text: &str) -> Digest {
        Digest::of(&Payload::Text(Sensitive::new(text.to_owned())))
    }

    fn owned(current: &str, previous: Option<&str>) -> Remote {
        Remote {
            arn: "arn:aws:secretsmanager:us-east-1:1:secret:app/tokens-AbCdEf".into(),
            current: Some(current.into()),
            previous: previous.map(str::to_owned),
            owner: Some("cluster-a".into()),
            deleted: false,
        }
    }

    fn seen() -> Memory {
        Memory {
            seen_source: true,
            known: None,
        }
    }

    #[test]
    fn tokens_are_stable_per_content_and_replaced_version_and_fit_aws() {
        let (a, b) = (digest("A"), digest("B"));
        let k = &KEY;
        let t = token(k, "i", "s", a, Some("v1"));
        assert_eq!(
            t,
            token(k, "i", "s", a, Some("v1")),
            "a retry repeats its token"
        );
        assert_ne!(
            t,
            token(k, "i", "s", a, Some("v2")),
            "a revert gets a new one"
        );
        assert_ne!(t, token(k, "i", "s", b, Some("v1")));
        assert_ne!(t, token(k, "j", "s", a, Some("v1")));
        assert_ne!(
            t,
            token(&TokenKey::fixed(8), "i", "s", a, Some("v1")),
            "without the process's key the content cannot be tested against the id"
        );
        assert_ne!(token(k, "i", "s", a, None), token(k, "i", "s", a, Some("")));
        assert_ne!(TokenKey::random().unwrap(), TokenKey::random().unwrap());
        assert_eq!(format!("{KEY:?}"), "TokenKey(...)");
        assert_eq!(t.len(), 36);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{t}");
        assert_ne!(
            Digest::of(&Payload::Text(Sensitive::new("x".into()))),
            Digest::of(&Payload::Binary(Sensitive::new(b"x".to_vec())))
        );
        assert_eq!(format!("{:?}", digest("A")), "Digest(...)");
    }

    #[test]
    fn create_then_in_sync_from_the_listing_alone() {
        let a = digest("A");
        let Step::Create { token: v1 } = plan(&POLICY, Source::Present(a), None, &seen()) else {
            panic!()
        };
        // A write whose answer was lost: the version id alone proves equality.
        let remote = owned(&v1, None);
        assert_eq!(
            plan(
                &POLICY,
                Source::Present(a),
                Some(&remote),
                &Memory::default()
            ),
            Step::Done(Settled::InSync)
        );
        // After a restart (another key) the value is read once.
        let restarted = Policy {
            key: &TokenKey([9; 32]),
            ..POLICY
        };
        assert_eq!(
            plan(
                &restarted,
                Source::Present(a),
                Some(&remote),
                &Memory::default()
            ),
            Step::Read {
                version: v1.clone()
            }
        );
        // A change is one put, replacing the current version.
        let b = digest("B");
        let wrote = Memory {
            seen_source: true,
            known: Some(Known {
                version: v1.clone(),
                digest: a,
                replaced: None,
            }),
        };
        let step = plan(&POLICY, Source::Present(b), Some(&remote), &wrote);
        assert_eq!(
            step,
            Step::Put {
                token: token(&KEY, "cluster-a", "app/tokens", b, Some(&v1)),
                replacing: Some(v1.clone())
            }
        );
        let Step::Put { token: v2, .. } = step else {
            panic!()
        };
        assert_eq!(
            plan(
                &POLICY,
                Source::Present(b),
                Some(&owned(&v2, Some(&v1))),
                &Memory::default()
            ),
            Step::Done(Settled::InSync)
        );
    }

    #[test]
    fn a_revert_writes_again_and_a_lagging_listing_is_not_drift() {
        let (a, b) = (digest("A"), digest("B"));
        let v1 = token(&KEY, "cluster-a", "app/tokens", a, None);
        let v2 = token(&KEY, "cluster-a", "app/tokens", b, Some(&v1));
        let memory = Memory {
            seen_source: true,
            known: Some(Known {
                version: v2.clone(),
                digest: b,
                replaced: Some(v1.clone()),
            }),
        };
        // The listing still shows v1 current just after v2 was written.
        assert_eq!(
            plan(
                &POLICY,
                Source::Present(b),
                Some(&owned(&v1, None)),
                &memory
            ),
            Step::Done(Settled::InSync)
        );
        // A → B → A: A replaces v2, with a token A's first write never had.
        let step = plan(
            &POLICY,
            Source::Present(a),
            Some(&owned(&v2, Some(&v1))),
            &memory,
        );
        let Step::Put {
            token: v3,
            replacing,
        } = step
        else {
            panic!("{step:?}")
        };
        assert_eq!(replacing.as_deref(), Some(v2.as_str()));
        assert_ne!(v3, v1);
    }

    #[test]
    fn a_foreign_version_is_read_once_then_remembered() {
        let a = digest("A");
        let remote = owned("someone-elses-version", Some("x"));
        assert_eq!(
            plan(&POLICY, Source::Present(a), Some(&remote), &seen()),
            Step::Read {
                version: "someone-elses-version".into()
            }
        );
        let read = Memory {
            seen_source: true,
            known: Some(Known {
                version: "someone-elses-version".into(),
                digest: a,
                replaced: None,
            }),
        };
        assert_eq!(
            plan(&POLICY, Source::Present(a), Some(&remote), &read),
            Step::Done(Settled::InSync)
        );
        assert!(matches!(
            plan(&POLICY, Source::Present(digest("B")), Some(&remote), &read),
            Step::Put { .. }
        ));
    }

    #[test]
    fn ownership_adoption_and_if_not_exists() {
        let a = digest("A");
        let mut foreign = owned("v", None);
        foreign.owner = None;
        assert_eq!(
            plan(&POLICY, Source::Present(a), Some(&foreign), &seen()),
            Step::Refuse(Refusal::NotOwned)
        );
        let adopting = Policy {
            adopt: true,
            ..POLICY
        };
        assert_eq!(
            plan(&adopting, Source::Present(a), Some(&foreign), &seen()),
            Step::Adopt
        );
        let mut other = foreign.clone();
        other.owner = Some("cluster-b".into());
        assert_eq!(
            plan(&adopting, Source::Present(a), Some(&other), &seen()),
            Step::Refuse(Refusal::OwnedBy("cluster-b".into())),
            "adopt never takes another installation's secret"
        );
        let once = Policy {
            update: UpdatePolicy::IfNotExists,
            ..POLICY
        };
        assert_eq!(
            plan(&once, Source::Present(a), Some(&foreign), &seen()),
            Step::Done(Settled::Exists)
        );
        assert_eq!(
            plan(&once, Source::Present(a), Some(&owned("v", None)), &seen()),
            Step::Done(Settled::Exists)
        );
        assert!(matches!(
            plan(&once, Source::Present(a), None, &seen()),
            Step::Create { .. }
        ));
    }

    #[test]
    fn deletion_only_of_an_owned_secret_whose_source_was_seen_to_go() {
        let remote = owned("v", None);
        assert_eq!(
            plan(&POLICY, Source::Gone, Some(&remote), &Memory::default()),
            Step::SourceMissing,
            "a source missing since start is never taken for a removal"
        );
        assert_eq!(
            plan(&POLICY, Source::Gone, Some(&remote), &seen()),
            Step::Delete
        );
        let retain = Policy {
            deletion: DeletionPolicy::Retain,
            ..POLICY
        };
        assert_eq!(
            plan(&retain, Source::Gone, Some(&remote), &seen()),
            Step::Done(Settled::Retained)
        );
        let mut scheduled = remote.clone();
        scheduled.deleted = true;
        assert_eq!(
            plan(&POLICY, Source::Gone, Some(&scheduled), &seen()),
            Step::Done(Settled::Deleted)
        );
        assert_eq!(
            plan(&POLICY, Source::Gone, None, &seen()),
            Step::Done(Settled::Deleted)
        );
        let mut foreign = remote.clone();
        foreign.owner = None;
        assert_eq!(
            plan(&POLICY, Source::Gone, Some(&foreign), &seen()),
            Step::Refuse(Refusal::NotOwned)
        );
        // The source is back while the secret waits out its recovery window.
        assert_eq!(
            plan(
                &POLICY,
                Source::Present(digest("A")),
                Some(&scheduled),
                &seen()
            ),
            Step::Restore
        );
    }
}
