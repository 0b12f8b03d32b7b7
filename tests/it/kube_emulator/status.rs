//! `Status` bodies for every failure, worded like the real apiserver so that callers
//! (and kube's `Error::Api`) see the same `code`, `reason` and message shape.

use super::kinds::Kind;
use serde_json::{json, Map, Value};

/// The identity every API request is treated as; the daemon runs as this service account.
pub const USER: &str = "system:serviceaccount:default:secret-ferry";

const STALE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
    /// Seconds for a `Retry-After` header (429 and some 5xx).
    pub retry_after: Option<u64>,
}

/// One entry of `details.causes`; `message` carries the "Forbidden: " style prefix
/// because the real server renders the top-level message as `field: message`.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: &str, value: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {}: {why}", quote(value)),
        }
    }

    /// For non-string values, which Go prints unquoted.
    pub fn invalid_number(field: &str, value: u64, why: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {value}: {why}"),
        }
    }

    pub fn forbidden(field: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            message: format!("Forbidden: {why}"),
        }
    }

    pub fn required(field: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.to_string(),
            message: format!("Required value: {why}"),
        }
    }

    pub fn too_long(field: &str, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            field: field.to_string(),
            message: format!("Too long: must have at most {max} bytes"),
        }
    }

    fn to_json(&self) -> Value {
        json!({"reason": self.reason, "message": self.message, "field": self.field})
    }
}

/// Go's `%q`, which the real messages use around names and values.
pub fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    fn about(mut self, kind: &Kind, name: &str) -> ApiError {
        if !name.is_empty() {
            self.details.insert("name".into(), name.into());
        }
        if !kind.group.is_empty() {
            self.details.insert("group".into(), kind.group.into());
        }
        self.details.insert("kind".into(), kind.plural.into());
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_empty() {
            body["details"] = Value::Object(self.details.clone());
        }
        body
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found(kind: &Kind, name: &str) -> ApiError {
        let message = format!("{} {} not found", kind.qualified(), quote(name));
        ApiError::new(404, "NotFound", message).about(kind, name)
    }

    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(kind: &Kind, name: &str) -> ApiError {
        let message = format!("{} {} already exists", kind.qualified(), quote(name));
        ApiError::new(409, "AlreadyExists", message).about(kind, name)
    }

    pub fn conflict(kind: &Kind, name: &str, why: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} {}: {why}",
            kind.qualified(),
            quote(name)
        );
        ApiError::new(409, "Conflict", message).about(kind, name)
    }

    pub fn stale(kind: &Kind, name: &str) -> ApiError {
        ApiError::conflict(kind, name, STALE)
    }

    pub fn forbidden(
        kind: &Kind,
        name: Option<&str>,
        verb: &str,
        namespace: Option<&str>,
    ) -> ApiError {
        let subject = match name {
            Some(name) => format!("{} {}", kind.qualified(), quote(name)),
            None => kind.qualified(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace {}", quote(ns)),
            None => "at the cluster scope".to_string(),
        };
        let message = format!(
            "{subject} is forbidden: User {} cannot {verb} resource {} in API group {} {scope}",
            quote(USER),
            quote(kind.plural),
            quote(kind.group),
        );
        ApiError::new(403, "Forbidden", message).about(kind, name.unwrap_or(""))
    }

    /// 422 with the real "Kind "name" is invalid: field: message" wording.
    pub fn invalid(kind: &Kind, name: &str, causes: Vec<Cause>) -> ApiError {
        invalid_status(kind.kind, kind.group, name, causes)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: &str) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_cause(message)
    }

    pub fn unsupported_media(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: \
                 application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
            ),
        )
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    fn with_cause(mut self, message: &str) -> ApiError {
        self.details
            .insert("causes".into(), json!([{"message": message}]));
        self
    }

    /// The body the real server sends for an injected failure code, so that code paths
    /// keyed on `reason` (e.g. `is_conflict`) behave as with a real failure.
    pub fn injected(
        code: u16,
        kind: Option<&Kind>,
        name: &str,
        retry_after: Option<u64>,
    ) -> ApiError {
        // The real server always advises a wait on 429 and 503.
        let retry_after = retry_after.or_else(|| matches!(code, 429 | 503).then_some(1));
        let mut error = match (code, kind) {
            (404, Some(kind)) => ApiError::not_found(kind, name),
            (409, Some(kind)) => ApiError::stale(kind, name),
            (410, _) => ApiError::gone("too old resource version"),
            (429, _) => {
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                );
                e.details.insert(
                    "retryAfterSeconds".into(),
                    retry_after.unwrap_or_default().into(),
                );
                e
            }
            (500, _) => ApiError::internal("injected fault"),
            (503, _) => ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            (504, _) => ApiError::new(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            (401, _) => ApiError::new(401, "Unauthorized", "Unauthorized"),
            (400, _) => ApiError::bad_request("injected fault"),
            _ => ApiError::new(code, "", format!("injected fault ({code})")),
        };
        error.retry_after = retry_after;
        error
    }
}

pub fn invalid_status(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> ApiError {
    let rendered: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let summary = match rendered.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut error = ApiError::new(
        422,
        "Invalid",
        format!("{qualified} {} is invalid: {summary}", quote(name)),
    );
    error.details.insert("name".into(), name.into());
    if !group.is_empty() {
        error.details.insert("group".into(), group.into());
    }
    error.details.insert("kind".into(), kind.into());
    error.details.insert(
        "causes".into(),
        Value::Array(causes.iter().map(Cause::to_json).collect()),
    );
    error
}
