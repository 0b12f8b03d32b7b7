//! The SQS queue of change events (`changeEvents`): long-polled receives of up to ten
//! messages, their deletion once handled, and the queue's attributes for `check`. Read with
//! a role's session (the same AssumeRole and ExternalId as its secrets) or the base
//! identity. A message's body is handed on, never logged.

use crate::aws::{self, Class, ErrorInfo};
use crate::credentials::{CredentialsError, RoleSession, StsAssumer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const RECEIVE: &str = crate::metrics::RECEIVE_OPERATION;
pub const DELETE: &str = "DeleteMessageBatch";
pub const ATTRIBUTES: &str = "GetQueueAttributes";
/// SQS returns at most ten messages per receive (and deletes at most ten per batch).
pub const RECEIVE_MAX: i32 = 10;
/// The longest long poll SQS allows: one call every 20 s while the queue is empty.
pub const WAIT: Duration = Duration::from_secs(20);

/// One received message.
pub struct Message {
    pub body: String,
    pub receipt: String,
    /// When SQS received it (`SentTimestamp`), for the age of the oldest message.
    pub sent: Option<SystemTime>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("body", &format_args!("... ({} bytes)", self.body.len()))
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

/// What `check` shows of a queue.
#[derive(Debug, Clone)]
pub struct QueueAttributes {
    pub messages: Option<u64>,
    /// Whether the queue sends messages received too often to a dead-letter queue.
    pub redrive: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("change events queue '{queue}': cannot obtain credentials: {source}")]
    Credentials {
        queue: String,
        #[source]
        source: CredentialsError,
    },
    #[error("change events queue '{queue}': {operation} of {url} failed: {info}{hint}")]
    Aws {
        queue: String,
        operation: &'static str,
        url: String,
        info: ErrorInfo,
        hint: String,
    },
}

impl QueueError {
    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials { source, .. } => source.kind(),
            Self::Aws { info, .. } => info.class.as_str(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Credentials { source, .. } => source.is_transient(),
            Self::Aws { info, .. } => info.class.is_transient(),
        }
    }
}

/// A queue and the identity it is read with.
#[derive(Clone)]
pub struct ChangeQueue(Arc<Shared>);

struct Shared {
    client: aws_sdk_sqs::Client,
    url: String,
    /// The metric label and the name in logs: the queue's name.
    name: String,
    arn: String,
    region: String,
    session: Option<RoleSession<StsAssumer>>,
    principal: String,
}

impl ChangeQueue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue: &crate::config::ChangeEventsQueue,
        region: String,
        session: Option<RoleSession<StsAssumer>>,
        principal: String,
    ) -> Self {
        let partition = match region.as_str() {
            r if r.starts_with("cn-") => "aws-cn",
            r if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        Self(Arc::new(Shared {
            client,
            url: queue.queue_url.clone(),
            name: queue.name().to_owned(),
            arn: queue.arn(partition, &region),
            region,
            session,
            principal,
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn region(&self) -> &str {
        &self.0.region
    }

    pub fn principal(&self) -> &str {
        &self.0.principal
    }

    async fn credentials(&self) -> Result<(), QueueError> {
        match &self.0.session {
            Some(session) => {
                session
                    .get()
                    .await
                    .map(|_| ())
                    .map_err(|source| QueueError::Credentials {
                        queue: self.0.name.clone(),
                        source,
                    })
            }
            None => Ok(()),
        }
    }

    /// Up to ten messages, waiting up to `wait` for the first.
    pub async fn receive(&self, wait: Duration) -> Result<Vec<Message>, QueueError> {
        self.credentials().await?;
        let wait_s = wait.as_secs().min(WAIT.as_secs()) as i32;
        let output = self
            .0
            .client
            .receive_message()
            .queue_url(&self.0.url)
            .max_number_of_messages(RECEIVE_MAX)
            .wait_time_seconds(wait_s)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
            )
            .customize()
            // The long poll holds the request open for `wait`: the attempt timeout every
            // other call has (10 s) would cut it short.
            .config_override(
                aws_sdk_sqs::config::Builder::new().timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(wait + Duration::from_secs(10))
                        .operation_timeout(wait + Duration::from_secs(20))
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|err| self.error(RECEIVE, aws::classify(&err)))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let sent = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                    })
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                Some(Message {
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    sent,
                })
            })
            .collect())
    }

    /// Deletes the messages of these receipt handles (at most ten): one call. Returns how
    /// many SQS did not delete (they come back after their visibility timeout).
    pub async fn delete(&self, receipts: &[String]) -> Result<usize, QueueError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        self.credentials().await?;
        let entries = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, receipt)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        let output = self
            .0
            .client
            .delete_message_batch()
            .queue_url(&self.0.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| self.error(DELETE, aws::classify(&err)))?;
        Ok(output.failed().len())
    }

    /// The queue's message count and redrive policy, for `check`.
    pub async fn attributes(&self) -> Result<QueueAttributes, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.credentials().await?;
        let output = self
            .0
            .client
            .get_queue_attributes()
            .queue_url(&self.0.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::RedrivePolicy)
            .send()
            .await
            .map_err(|err| self.error(ATTRIBUTES, aws::classify(&err)))?;
        let attributes = output.attributes();
        Ok(QueueAttributes {
            messages: attributes
                .and_then(|a| a.get(&A::ApproximateNumberOfMessages))
                .and_then(|n| n.parse().ok()),
            redrive: attributes.is_some_and(|a| a.contains_key(&A::RedrivePolicy)),
        })
    }

    fn error(&self, operation: &'static str, info: ErrorInfo) -> QueueError {
        let principal = &self.0.principal;
        let arn = &self.0.arn;
        let hint = match info.class {
            Class::AccessDenied | Class::Kms => format!(
                ". The permissions policy of {principal} must allow sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on {arn} (statement ReadChangeEvents of secret-ferry iam-policy); a queue in another account must allow them in its queue policy too, and a queue encrypted with a customer-managed KMS key needs kms:Decrypt for {principal}. Until then secrets are only polled"
            ),
            Class::NotFound => format!(
                ". No queue {url} in {region}: check changeEvents.queueUrl (and region); until then secrets are only polled",
                url = self.0.url,
                region = self.0.region,
            ),
            Class::Throttled | Class::Timeout | Class::Network | Class::Server => {
                ". Will retry with back-off; secrets are polled meanwhile".to_owned()
            }
            _ => String::new(),
        };
        QueueError::Aws {
            queue: self.0.name.clone(),
            operation,
            url: self.0.url.clone(),
            info,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_debugs_as_its_size_not_its_body() {
        let message = super::Message {
            body: "{\"secretString\": \"hunter2\"}".to_owned(),
            receipt: "receipt-handle".to_owned(),
            sent: None,
        };
        let shown = format!("{message:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("receipt-handle"),
            "{shown}"
        );
        assert!(shown.contains("27 bytes"), "{shown}");
    }
}
