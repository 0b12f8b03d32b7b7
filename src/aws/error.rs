//! Classifies AWS SDK errors into a small fixed set, so that errors can say which IAM
//! document to fix and metrics get a bounded `reason` label.
//!
//! In moto's auth mode (and for some real proxies) error bodies come back as XML the
//! JSON protocol cannot parse, leaving `code()` empty; the HTTP status is then the
//! only signal, so it is always consulted.

use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    AccessDenied,
    /// KMS refused to decrypt the secret: the key policy is missing the role.
    Kms,
    ExpiredToken,
    /// The caller's own credentials are not recognised (unknown key, bad signature).
    InvalidCredentials,
    NotFound,
    /// STS is not activated in the region for this account.
    RegionDisabled,
    /// STS refused a session policy, policy ARN or session tags.
    MalformedPolicy,
    /// The request was understood but refused, e.g. a secret scheduled for deletion.
    InvalidRequest,
    Throttled,
    Timeout,
    Network,
    Server,
    Other,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::AccessDenied => "access_denied",
            Class::Kms => "kms",
            Class::ExpiredToken => "expired_token",
            Class::InvalidCredentials => "invalid_credentials",
            Class::NotFound => "not_found",
            Class::RegionDisabled => "region_disabled",
            Class::MalformedPolicy => "malformed_policy",
            Class::InvalidRequest => "invalid_request",
            Class::Throttled => "throttled",
            Class::Timeout => "timeout",
            Class::Network => "network",
            Class::Server => "server",
            Class::Other => "other",
        }
    }

    /// Whether trying again later, without a config or IAM change, may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Class::Throttled
                | Class::Timeout
                | Class::Network
                | Class::Server
                | Class::ExpiredToken
        )
    }
}

/// What we keep of an SDK error: no request, no body, nothing secret.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub class: Class,
    pub code: Option<String>,
    pub status: Option<u16>,
    pub message: Option<String>,
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            (Some(code), Some(status)) => write!(f, "{code} (HTTP {status})")?,
            (Some(code), None) => write!(f, "{code}")?,
            (None, Some(status)) => write!(f, "HTTP {status}")?,
            (None, None) => write!(f, "{}", self.class.as_str())?,
        }
        if let Some(message) = &self.message {
            // Callers append a hint that starts a new sentence.
            write!(f, ": {}", message.trim_end_matches('.'))?;
        }
        Ok(())
    }
}

/// AWS error messages name ARNs and actions, never values; they are still capped so a
/// misbehaving endpoint cannot flood the logs.
const MAX_MESSAGE: usize = 300;

pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> ErrorInfo
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::TimeoutError(_) => info(Class::Timeout, None, status, None),
        SdkError::DispatchFailure(failure) => {
            let class = if failure.is_timeout() {
                Class::Timeout
            } else {
                Class::Network
            };
            info(class, None, status, Some(failure_text(err)))
        }
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e
                .code()
                .map(str::to_owned)
                .or_else(|| service.raw().body().bytes().and_then(xml_code));
            let class = class_of(code.as_deref(), e.message(), status);
            info(class, code, status, e.message().map(str::to_owned))
        }
        SdkError::ResponseError(_) => {
            let class = class_of(None, None, status);
            let class = if class == Class::Other {
                Class::Server
            } else {
                class
            };
            info(class, None, status, Some("unparseable response".into()))
        }
        _ => info(Class::Other, None, status, Some(failure_text(err))),
    }
}

fn failure_text<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    // The SDK's Display is terse ("dispatch failure"); the useful part is the source.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn info(
    class: Class,
    code: Option<String>,
    status: Option<u16>,
    message: Option<String>,
) -> ErrorInfo {
    let message = message.map(|mut m| {
        if m.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        m
    });
    ErrorInfo {
        class,
        code,
        status,
        message,
    }
}

/// The error code of a JSON (`"__type"`) or XML (`<Code>`) error body.
pub(super) fn xml_or_json_code(body: &[u8]) -> Option<String> {
    xml_code(body).or_else(|| {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let code = value.get("__type")?.as_str()?;
        // `__type` may carry a namespace: `com.amazonaws…#ThrottlingException`.
        Some(code.rsplit('#').next().unwrap_or(code).to_owned())
    })
}

/// The `<Code>` of an XML error body the SDK could not parse: moto's auth mode wraps
/// errors in an extra `<Errors>` element, even for JSON services.
fn xml_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    plausible.then(|| code.to_owned())
}

/// For errors that arrive as data rather than as a failed call (BatchGetSecretValue's
/// per-secret errors).
pub fn from_code(code: &str, message: Option<&str>) -> ErrorInfo {
    info(
        class_of(Some(code), message, None),
        Some(code.to_owned()),
        None,
        message.map(str::to_owned),
    )
}

pub(super) fn class_of(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> Class {
    let mentions_kms = message.is_some_and(|m| m.contains("KMS") || m.contains("kms:"));
    match code {
        Some("DecryptionFailure" | "KMSAccessDeniedException" | "KMSInvalidStateException") => {
            Class::Kms
        }
        Some("AccessDeniedException" | "AccessDenied") if mentions_kms => Class::Kms,
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation") => {
            Class::AccessDenied
        }
        Some("ExpiredToken" | "ExpiredTokenException" | "RequestExpired") => Class::ExpiredToken,
        Some(
            "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "InvalidSignatureException",
        ) => Class::InvalidCredentials,
        Some(
            "ResourceNotFoundException"
            | "NoSuchEntity"
            | "QueueDoesNotExist"
            | "ParameterNotFound"
            | "ParameterVersionNotFound"
            | "AWS.SimpleQueueService.NonExistentQueue",
        ) => Class::NotFound,
        Some("RegionDisabledException") => Class::RegionDisabled,
        Some(
            "MalformedPolicyDocument"
            | "MalformedPolicyDocumentException"
            | "PackedPolicyTooLarge"
            | "PackedPolicyTooLargeException"
            | "InvalidParameterValue",
        ) => Class::MalformedPolicy,
        Some(
            "ThrottlingException"
            | "Throttling"
            | "RequestThrottled"
            | "AWS.SimpleQueueService.RequestThrottled"
            | "TooManyRequestsException"
            | "RequestLimitExceeded",
        ) => Class::Throttled,
        Some(
            "InvalidRequestException"
            | "InvalidParameterException"
            | "ValidationError"
            | "ValidationException",
        ) => Class::InvalidRequest,
        Some("InternalServiceError" | "InternalFailure" | "ServiceUnavailable") => Class::Server,
        // A code we do not know says more than its status; only the transient statuses
        // still decide, so that retries and alerts stay right.
        Some(_) => match status {
            Some(429) => Class::Throttled,
            Some(s) if s >= 500 => Class::Server,
            _ => Class::Other,
        },
        None => match status {
            Some(403) => Class::AccessDenied,
            Some(404) => Class::NotFound,
            Some(429) => Class::Throttled,
            Some(s) if s >= 500 => Class::Server,
            Some(400) => Class::InvalidRequest,
            _ => Class::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_status_and_status_fills_in() {
        assert_eq!(
            class_of(Some("ThrottlingException"), None, Some(400)),
            Class::Throttled
        );
        assert_eq!(
            class_of(
                Some("AccessDeniedException"),
                Some("Access to KMS is not allowed"),
                Some(400)
            ),
            Class::Kms
        );
        assert_eq!(
            class_of(
                Some("AccessDeniedException"),
                Some("not authorized"),
                Some(400)
            ),
            Class::AccessDenied
        );
        assert_eq!(class_of(None, None, Some(403)), Class::AccessDenied);
        assert_eq!(class_of(None, None, Some(503)), Class::Server);
        assert_eq!(class_of(None, None, Some(429)), Class::Throttled);
        assert_eq!(
            class_of(Some("SomethingNew"), None, Some(400)),
            Class::Other
        );
        assert_eq!(
            class_of(Some("SomethingNew"), None, Some(503)),
            Class::Server
        );
        assert_eq!(
            class_of(Some("ExpiredToken"), None, Some(403)),
            Class::ExpiredToken
        );
        assert!(Class::Throttled.is_transient());
        assert!(!Class::AccessDenied.is_transient());
    }

    #[test]
    fn codes_are_read_from_moto_style_xml_bodies() {
        let moto = b"<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>x</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_code(moto).as_deref(), Some("InvalidClientTokenId"));
        assert_eq!(xml_code(b"{\"__type\":\"X\"}"), None);
        assert_eq!(xml_code(b"<Code><script></Code>"), None);
        assert_eq!(
            class_of(Some("RegionDisabledException"), None, Some(403)),
            Class::RegionDisabled
        );
        assert_eq!(
            class_of(Some("MalformedPolicyDocument"), None, Some(400)),
            Class::MalformedPolicy
        );
    }

    #[test]
    fn long_messages_are_capped_on_a_char_boundary() {
        let long = "é".repeat(400);
        let i = info(Class::Other, None, None, Some(long));
        let m = i.message.unwrap();
        assert!(m.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(m.ends_with('…'));
    }
}
