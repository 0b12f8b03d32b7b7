//! `secret-ferry check`: walks the chain a config describes — base identity, each role,
//! each secret, each target — and reports one line per link, with the fix the
//! troubleshooting guides give for each failure. Never prints a value: a secret is described
//! by its version id and key names.

use crate::config::{Config, Target};
use crate::credentials::base_sdk_config;
use crate::daemon::group::Group;
use crate::daemon::job::SecretJob;
use crate::daemon::runtime::has_kube_targets;
use crate::daemon::{App, BuildError};
use crate::k8s::Kube;
use crate::k8s::KubeSetupError;
use crate::metrics::Metrics;
use std::path::Path;

mod events;
mod parameters;
mod push;
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct Link {
    /// `base`, `role`, `secret`, `target`, `push` or `events`.
    pub kind: &'static str,
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

/// The JSON report: `{"ok": bool, "links": [{kind, name, ok, detail, fix?}]}`.
pub fn render_json(links: &[Link]) -> serde_json::Value {
    let links: Vec<serde_json::Value> = links
        .iter()
        .map(|l| {
            let mut v =
                serde_json::json!({"kind": l.kind, "name": l.name, "ok": l.ok, "detail": l.detail});
            if let Some(fix) = &l.fix {
                v["fix"] = serde_json::Value::String(fix.clone());
            }
            v
        })
        .collect();
    serde_json::json!({"ok": links.iter().all(|l| l["ok"] == true), "links": links})
}

impl Link {
    pub(crate) fn ok(
        kind: &'static str,
        name: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn failed(
        kind: &'static str,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The text report: one line per link, the fix indented under a failure.
pub fn render_text(links: &[Link]) -> String {
    let mut out = String::new();
    for link in links {
        let status = if link.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!(
            "{status}  {:<6} {}: {}\n",
            link.kind, link.name, link.detail
        ));
        if let Some(fix) = &link.fix {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    let failed = links.iter().filter(|l| !l.ok).count();
    out.push_str(&if failed == 0 {
        format!("all {} links ok\n", links.len())
    } else {
        format!("{failed} of {} links failed\n", links.len())
    });
    out
}

/// Why `check` could not even start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Metrics(#[from] prometheus::Error),
    /// The configuration cannot be run (`main` exits with the config error code); the
    /// Kubernetes client's own failure, if any, is kept to be reported first.
    #[error("{source}")]
    Build {
        source: BuildError,
        kube_error: Option<KubeSetupError>,
    },
}

/// What `check` found: every link, and why the Kubernetes client could not be set up (the
/// Kubernetes links then fail on their own).
pub struct Checked {
    pub links: Vec<Link>,
    pub kube_error: Option<KubeSetupError>,
}

/// Builds the daemon as `run` would and walks every link once.
pub async fn run(cfg: &Config) -> Result<Checked, CheckError> {
    let sdk = base_sdk_config(cfg).await;
    let metrics = Metrics::new()?;
    let (kube, kube_error) = if has_kube_targets(cfg) {
        match Kube::connect(metrics.clone(), "secret-ferry".to_owned()).await {
            Ok(kube) => (Some(kube), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let app = match App::build_with(cfg, &sdk, metrics, kube.as_ref()) {
        Ok(app) => app,
        Err(source) => return Err(CheckError::Build { source, kube_error }),
    };
    let links = app.check(cfg, &sdk, kube.as_ref()).await;
    Ok(Checked { links, kube_error })
}

impl App {
    /// Runs every check once. `base` is the SDK configuration the daemon would run with.
    pub async fn check(
        &self,
        config: &Config,
        base: &aws_config::SdkConfig,
        kube: Option<&Kube>,
    ) -> Vec<Link> {
        let mut links = vec![base_identity(base).await];
        for role in config.roles_in_chain_order() {
            let Some(session) = self.roles.get(&role.name) else {
                continue;
            };
            links.push(match session.get().await {
                Ok(_) => {
                    let expiry = session.snapshot().map(|(_, at)| at);
                    Link::ok(
                        "role",
                        &role.name,
                        format!(
                            "assumed {} as session {:?}{}",
                            role.role_arn,
                            role.session_name,
                            expiry.map(describe_expiry).unwrap_or_default()
                        ),
                    )
                }
                Err(e) => Link::failed(
                    "role",
                    &role.name,
                    e.to_string(),
                    role_fix(e.kind(), &role.role_arn),
                ),
            });
        }
        for group in &self.groups {
            if let Some(entry) = group.entry_name() {
                links.push(check_discovery(group, entry).await);
            }
            links.extend(parameters::check_listing(group).await);
            for job in &group.members {
                links.push(check_secret(job).await);
                for target in &job.targets() {
                    links.push(check_target(job.name(), target, kube).await);
                }
            }
        }
        for group in &self.pushes {
            links.extend(push::check_pushes(group).await);
        }
        for queue in self.change_queues() {
            links.push(events::check_queue(queue).await);
        }
        links
    }
}

/// Whether a `find` entry's discovery listing works, and how many secrets match.
async fn check_discovery(group: &Group, entry: &str) -> Link {
    match group.check_discovery().await {
        None => Link::failed("secret", entry, "not a find entry", ""),
        Some(Ok(matches)) => Link::ok(
            "secret",
            entry,
            format!(
                "find matches {} secret(s): {}",
                matches.len(),
                matches.join(", ")
            ),
        ),
        Some(Err(message)) => Link::failed(
            "secret",
            entry,
            message,
            "the reading role needs secretsmanager:ListSecrets on \"*\" for find entries",
        ),
    }
}

async fn base_identity(base: &aws_config::SdkConfig) -> Link {
    let sts = aws_sdk_sts::Client::new(base);
    match sts.get_caller_identity().send().await {
        Ok(me) => Link::ok(
            "base",
            "identity",
            format!(
                "{} (account {})",
                me.arn().unwrap_or("?"),
                me.account().unwrap_or("?")
            ),
        ),
        Err(e) => {
            let info = crate::aws::classify(&e);
            Link::failed(
                "base",
                "identity",
                format!("GetCallerIdentity failed: {info}"),
                "the daemon has no usable AWS identity: give its service account an IAM role (IRSA: the eks.amazonaws.com/role-arn annotation; or EKS Pod Identity), or configure baseCredentials / AWS_* variables; check the region and the network path to STS",
            )
        }
    }
}

fn describe_expiry(at: SystemTime) -> String {
    let left = at
        .duration_since(SystemTime::now())
        .map(|d| {
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
        })
        .unwrap_or_else(|_| "expired".to_owned());
    format!(
        "; expires {} (in {left})",
        humantime::format_rfc3339_seconds(at)
    )
}

fn role_fix(kind: &str, role_arn: &str) -> String {
    match kind {
        "trust_policy_denied" => format!("the trust policy of {role_arn} must name the caller shown on the identity line as Principal, and its sts:ExternalId condition must equal the configured ExternalId; the caller's own policy must allow sts:AssumeRole on {role_arn} (`secret-ferry iam-policy` prints all three)"),
        "external_id" => "the ExternalId file or variable named in the config is missing or empty: mount the Secret holding it".to_owned(),
        "expired_token" => "the base credentials expired: check that the projected service-account token (IRSA) or the base credential files are refreshed, and the role's session duration".to_owned(),
        "invalid_client_token" => "the base credentials are not valid AWS keys: check the service account's role annotation or the baseCredentials files".to_owned(),
        "region_disabled" => "STS is not activated in this region for the account: activate it in IAM → Account settings, or set the role's region".to_owned(),
        "malformed_policy" => "STS refused the session policy, policy ARNs or session tags configured for the role".to_owned(),
        _ => "see the error above; the role ARN and region must be right and STS reachable".to_owned(),
    }
}

async fn check_secret(job: &SecretJob) -> Link {
    let name = job.name().to_owned();
    match job.fetch(false).await {
        Ok(fetched) => match job.keys_of(&fetched) {
            Ok(keys) => Link::ok(
                "secret",
                name,
                format!(
                    "{} readable in {}{}; version {}; keys: {}",
                    job.secret_id(),
                    fetched.region,
                    // The complete ARN settles what a partial one named (and what the
                    // permissions policy must grant).
                    fetched
                        .arn
                        .as_deref()
                        .filter(|arn| *arn != job.secret_id())
                        .map(|arn| format!(" as {arn}"))
                        .unwrap_or_default(),
                    fetched.version_id.as_deref().unwrap_or("-"),
                    keys.join(", ")
                ),
            ),
            Err(e) => Link::failed(
                "secret",
                name,
                e,
                "fix the mapping (property, keys, templates) or the secret's content",
            ),
        },
        Err(e) if job.parameter().is_some() => {
            Link::failed("secret", name, e.to_string(), parameters::fix(e.kind()))
        }
        Err(e) => {
            let fix = match e.kind() {
                "access_denied" => "the permissions policy of the reading role must allow secretsmanager:GetSecretValue on the secret's ARN with the -?????? suffix (`secret-ferry iam-policy` prints it)",
                "kms" => "the secret's customer-managed KMS key policy must allow kms:Decrypt for the reading role",
                "not_found" => "check secretId and the region: the name must match exactly; an ARN without its random suffix must not end in '-' and six characters (give the complete ARN)",
                "expired_token" => "the credentials expired: check the role's session duration and the base credential refresh",
                "invalid_request" => "the secret may be scheduled for deletion (restore it), or the version does not exist",
                _ => "see the error above",
            };
            Link::failed("secret", name, e.to_string(), fix)
        }
    }
}

async fn check_target(secret: &str, target: &Target, kube: Option<&Kube>) -> Link {
    match target {
        Target::File(f) => writable("target", secret, &f.dir),
        Target::SingleFile(f) => {
            writable("target", secret, f.path.parent().unwrap_or(Path::new("/")))
        }
        Target::KubernetesSecret(t) => {
            let Some(kube) = kube else {
                return Link::failed(
                    "target",
                    secret,
                    "no Kubernetes API",
                    "run where the in-cluster config or KUBECONFIG works",
                );
            };
            let namespace = t
                .namespace
                .clone()
                .or_else(|| kube.namespace.clone())
                .unwrap_or_default();
            let mut denied = Vec::new();
            for verb in ["get", "create", "patch"] {
                match crate::k8s::can_i(kube, verb, "secrets", &namespace, &t.name).await {
                    Ok(true) => {}
                    Ok(false) => denied.push(verb),
                    Err(e) => {
                        return Link::failed("target", secret, format!("cannot ask the API server: {e}"), "the service account needs create on selfsubjectaccessreviews (granted to every authenticated user by default)");
                    }
                }
            }
            let what = format!("Secret {namespace}/{}", t.name);
            if denied.is_empty() {
                Link::ok(
                    "target",
                    secret,
                    format!("{what}: get, create and patch allowed"),
                )
            } else {
                Link::failed(
                    "target",
                    secret,
                    format!("{what}: not allowed to {}", denied.join(", ")),
                    format!("bind a Role in namespace {namespace} with apiGroups [\"\"], resources [\"secrets\"], verbs [{}] to the service account", denied.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")),
                )
            }
        }
    }
}

/// Whether the daemon could write under `dir`: the directory itself, or the nearest
/// existing parent it would create it in.
fn writable(kind: &'static str, secret: &str, dir: &Path) -> Link {
    // The nearest path that exists; it must be a directory for the rest to be creatable.
    let existing = dir
        .ancestors()
        .find(|p| std::fs::symlink_metadata(p).is_ok());
    let Some(existing) = existing else {
        return Link::failed(
            kind,
            secret,
            format!("{} has no existing parent", dir.display()),
            "mount the shared volume",
        );
    };
    if !existing.is_dir() {
        return Link::failed(
            kind,
            secret,
            format!(
                "cannot create {}: {} is not a directory",
                dir.display(),
                existing.display()
            ),
            "point the target at a directory on the shared volume",
        );
    }
    let probe = existing.join(format!(".secret-ferry-check-{:08x}", fastrand::u32(..)));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            let note = if existing == dir { "" } else { " (will be created)" };
            Link::ok(kind, secret, format!("{} writable{note}", dir.display()))
        }
        Err(e) => Link::failed(
            kind,
            secret,
            format!("cannot write in {}: {e}", existing.display()),
            "mount the shared volume read-write for the daemon's user (fsGroup or runAsUser), and use a memory-backed emptyDir",
        ),
    }
}
