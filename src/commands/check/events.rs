//! `check` for `changeEvents`: each queue can be read with its identity. Receives nothing
//! (a receive would hide the messages from the daemon for their visibility timeout).

use super::Link;
use crate::source::change_queue::ChangeQueue;

pub(super) async fn check_queue(queue: &ChangeQueue) -> Link {
    match queue.attributes().await {
        Ok(attributes) => {
            let waiting = attributes
                .messages
                .map(|n| format!("{n} message(s) waiting"))
                .unwrap_or_else(|| "readable".to_owned());
            let redrive = if attributes.redrive {
                "a redrive policy takes messages that cannot be parsed"
            } else {
                "no redrive policy: a message that cannot be parsed comes back at every visibility timeout (set one with a dead-letter queue)"
            };
            Link::ok(
                "events",
                queue.name(),
                format!(
                    "queue in {} readable by {}; {waiting}; {redrive}",
                    queue.region(),
                    queue.principal()
                ),
            )
        }
        Err(e) => {
            let fix = match e.kind() {
                "access_denied" | "kms" => "apply statement ReadChangeEvents of `secret-ferry iam-policy` to the identity named (and, for a queue in another account, allow the same actions in the queue policy); until then secrets are only polled",
                "not_found" => "fix changeEvents.queueUrl (or region): the queue must exist; until then secrets are only polled",
                _ => "see the error above; secrets are polled while the queue cannot be read",
            };
            Link::failed("events", queue.name(), e.to_string(), fix)
        }
    }
}
