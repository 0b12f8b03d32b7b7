//! One injected fault for both test servers: the AWS proxy ([`super::proxy`], matched by
//! operation and signing region) and the Kubernetes API emulator (`crate::kube_emulator`,
//! matched by verb and resource). A test says the same things to either: what to match,
//! what to answer, how many times, after how long.

use std::time::Duration;

/// Which requests a fault answers; a `None` field matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matcher {
    /// The AWS operation (`GetSecretValue`) or the Kubernetes verb (`patch`).
    pub action: Option<String>,
    /// The Kubernetes resource plural (`secrets`); AWS requests have none.
    pub resource: Option<String>,
    /// Only AWS requests signed for this region (SigV4 credential scope).
    pub region: Option<String>,
}

impl Matcher {
    fn matches(&self, action: &str, resource: Option<&str>, region: Option<&str>) -> bool {
        let field = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        field(&self.action, Some(action))
            && field(&self.resource, resource)
            && field(&self.region, region)
    }
}

/// The body of a canned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: String,
    pub text: String,
}

/// A canned answer given instead of the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub matcher: Matcher,
    /// The HTTP status. The emulator serves normally (after `delay`) when it is 0.
    pub status: u16,
    /// What the answer says; `None`: the server's own error for `status` (the emulator's
    /// Kubernetes `Status`, the proxy's plain-text line).
    pub body: Option<Body>,
    /// How many requests it answers; `None` = until cleared.
    pub times: Option<usize>,
    /// Sleep this long before answering.
    pub delay: Option<Duration>,
    /// `Retry-After` seconds; the emulator answers 429 and 503 with 1 when unset, like the
    /// real API server.
    pub retry_after: Option<u64>,
}

/// `"*"` matches anything.
fn any(s: &str) -> Option<String> {
    (s != "*").then(|| s.to_owned())
}

impl Fault {
    /// An AWS answer for `operation` (`"*"`: every request), for the proxy.
    pub fn aws(operation: &str, status: u16, content_type: &str, body: &str) -> Fault {
        Fault {
            matcher: Matcher {
                action: any(operation),
                ..Matcher::default()
            },
            status,
            body: Some(Body {
                content_type: content_type.to_owned(),
                text: body.to_owned(),
            }),
            times: None,
            delay: None,
            retry_after: None,
        }
    }

    /// A Kubernetes API failure for `verb` on `resource` (`"*"` matches anything), answered
    /// by the emulator with a `Status` for `status`.
    pub fn kube(verb: &str, resource: &str, status: u16) -> Fault {
        Fault {
            matcher: Matcher {
                action: any(verb),
                resource: any(resource),
                region: None,
            },
            status,
            body: None,
            times: None,
            delay: None,
            retry_after: None,
        }
    }

    /// Apply only to requests signed for `region`.
    pub fn in_region(mut self, region: &str) -> Fault {
        self.matcher.region = Some(region.to_owned());
        self
    }

    /// Apply to the next `n` matching requests only.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = Some(n);
        self
    }

    /// Sleep `d` before answering.
    pub fn delay(mut self, d: Duration) -> Fault {
        self.delay = Some(d);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Fault {
        self.retry_after = Some(seconds);
        self
    }
}

/// The first fault in `faults` (in the order injected) that still applies to the request;
/// a copy of it, after counting the use (a used-up fault is removed).
pub fn take(
    faults: &mut Vec<Fault>,
    action: &str,
    resource: Option<&str>,
    region: Option<&str>,
) -> Option<Fault> {
    let index = faults
        .iter()
        .position(|f| f.times != Some(0) && f.matcher.matches(action, resource, region))?;
    let fault = faults[index].clone();
    if let Some(left) = faults[index].times.as_mut() {
        *left -= 1;
        if *left == 0 {
            faults.remove(index);
        }
    }
    Some(fault)
}
