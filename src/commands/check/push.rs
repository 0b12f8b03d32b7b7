//! `check` for pushes: the source can be read, and the remote secret is this instance's,
//! can be adopted, or can be created. Never writes.

use super::Link;
use crate::config::{PushSource, OWNER_TAG};
use crate::daemon::push::PushGroup;
use crate::sink::secrets_manager::PushSink;
use crate::source::push_files::{self, Read};

/// One link per push of `group`.
pub(super) async fn check_pushes(group: &PushGroup) -> Vec<Link> {
    let mut links = Vec::new();
    for job in &group.jobs {
        let push = &job.config;
        let sink = PushSink {
            client: group.client(),
            push: &push.name,
            target: &push.to,
        };
        let read = match (&push.from, &job.kube) {
            (_, Some(watched)) => watched.peek().await,
            (PushSource::Dir(dir), None) => push_files::read_dir(&push.name, dir),
            (PushSource::File { path, binary }, None) => {
                push_files::read_file(&push.name, path, *binary)
            }
            (PushSource::KubernetesSecret { .. }, None) => Ok(Read::Gone),
        };
        let kube_source = job.kube.is_some();
        let source = match read {
            Ok(Read::Present(_)) => "source readable".to_owned(),
            Ok(Read::Gone) => {
                links.push(Link::failed(
                    "push",
                    &push.name,
                    format!("{} does not exist", push.from.describe()),
                    if kube_source {
                        "create the Secret, or fix from.kubernetesSecret; nothing is pushed until it exists"
                    } else {
                        "create it (the app writes it there), or fix `from`; nothing is pushed until it exists"
                    },
                ));
                continue;
            }
            Err(e) => {
                links.push(Link::failed(
                    "push",
                    &push.name,
                    e.to_string(),
                    if kube_source {
                        "let the service account get, list and watch the Secret named (the chart's RBAC does for pushes), or fix its keys; nothing is pushed or deleted until then"
                    } else {
                        "fix the file named; nothing is pushed or deleted until then"
                    },
                ));
                continue;
            }
        };
        let target = format!("{} in {}", push.to.secret_name, group.client().region());
        links.push(match sink.describe().await {
            Ok(None) => Link::ok(
                "push",
                &push.name,
                format!("{source}; {target} does not exist yet and will be created (iam-policy statement PushSecrets allows it)"),
            ),
            Ok(Some(remote)) if remote.owner.as_deref() == Some(group.instance()) => Link::ok(
                "push",
                &push.name,
                format!(
                    "{source}; {target} is this installation's ({OWNER_TAG}={}){}",
                    group.instance(),
                    if remote.deleted { ", scheduled for deletion: restored when pushed" } else { "" }
                ),
            ),
            Ok(Some(remote)) => match remote.owner {
                None if push.adopt => Link::ok(
                    "push",
                    &push.name,
                    format!("{source}; {target} exists without the ownership tag and will be adopted (adopt: true)"),
                ),
                None => Link::failed(
                    "push",
                    &push.name,
                    format!("{target} exists without the tag {OWNER_TAG}={}: it is refused, not overwritten", group.instance()),
                    "set adopt: true to take it over, or choose another secretName",
                ),
                Some(other) => Link::failed(
                    "push",
                    &push.name,
                    format!("{target} belongs to another installation ({OWNER_TAG}={other:?})"),
                    "give the push another secretName; two installations never share a secret",
                ),
            },
            Err(e) => Link::failed(
                "push",
                &push.name,
                e.to_string(),
                "apply the statement the message names (secret-ferry iam-policy prints it)",
            ),
        });
    }
    links
}
