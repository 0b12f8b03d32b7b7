//! `changeEvents`: the SQS queues an EventBridge rule sends Secrets Manager's change events
//! to. Each is read with a role (or the base identity) in a region, from the URL unless
//! given.

use std::collections::{BTreeMap, BTreeSet};

use super::read::{first_use, read_list, read_reference, read_region, ROLES};
use super::rules::is_region;
use super::yaml::{optional, Checker, Field, Fields};
use super::ANY_NUMBER;

const QUEUE_URL_FORM: &str =
    "https://sqs.<region>.amazonaws.com/<12-digit account id>/<queue name>";

/// One queue of change events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEventsQueue {
    pub queue_url: String,
    /// The role the queue is read with; `None`: the base identity.
    pub role: Option<String>,
    /// Where the queue is, when the URL does not say (`None`: the URL's, else the role's
    /// region, else the default).
    pub region: Option<String>,
}

impl ChangeEventsQueue {
    /// The queue's account id and name, from the URL's path (`/<account>/<name>`).
    pub fn account_and_name(&self) -> (&str, &str) {
        url_parts(&self.queue_url)
            .map(|p| (p.account, p.name))
            .unwrap_or_default()
    }

    /// The queue's name: the metric label and the name in logs.
    pub fn name(&self) -> &str {
        self.account_and_name().1
    }

    /// The region the URL names (`sqs.<region>.amazonaws.com`, or the legacy
    /// `<region>.queue.amazonaws.com`); `None` for other hosts (a VPC endpoint, a stand-in).
    pub fn url_region(&self) -> Option<&str> {
        url_parts(&self.queue_url).and_then(|p| p.region)
    }

    /// The region the queue is read in: the URL's, else its own `region`, else its role's
    /// (`role_region`), else `default`.
    pub fn region_in(&self, role_region: Option<&str>, default: &str) -> String {
        self.url_region()
            .or(self.region.as_deref())
            .or(role_region)
            .unwrap_or(default)
            .to_owned()
    }

    /// The queue's ARN in `region`.
    pub fn arn(&self, partition: &str, region: &str) -> String {
        let (account, name) = self.account_and_name();
        format!("arn:{partition}:sqs:{region}:{account}:{name}")
    }
}

struct UrlParts<'a> {
    region: Option<&'a str>,
    account: &'a str,
    name: &'a str,
}

/// `scheme://host[:port]/<12 digits>/<name>`; `None` when the URL is not of that form.
fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = rest.split_once('/')?;
    let host = authority.split(':').next()?;
    let (account, name) = path.trim_end_matches('/').split_once('/')?;
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    // SQS: up to 80 letters, digits, '-' and '_', and '.fifo' for a FIFO queue.
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let name_ok = (1..=80).contains(&name.len())
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if host.is_empty() || !account_ok || !name_ok {
        return None;
    }
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split_once('.'))
        .map(|(region, _)| region)
        .or_else(|| host.split_once(".queue.").map(|(region, _)| region))
        .filter(|r| is_region(r));
    Some(UrlParts {
        region,
        account,
        name,
    })
}

pub(super) fn read_change_events(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<Vec<ChangeEventsQueue>> {
    let mut urls = BTreeMap::new();
    read_list(c, at, ANY_NUMBER, "change events queue", |c, item| {
        read_queue(c, item, roles, &mut urls)
    })
}

fn read_queue(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    urls: &mut BTreeMap<String, String>,
) -> Option<ChangeEventsQueue> {
    let mut f = Fields::open(c, at)?;
    let url_field = f.require(c, "queueUrl");
    let role = optional(f.get("role"), |v| read_reference(c, v, roles, &ROLES));
    let region_field = f.get("region");
    let region = optional(region_field.clone(), |v| read_region(c, v));
    f.finish(c);
    let url_field = url_field?;
    let url = c.string(&url_field)?.to_owned();
    let Some(parts) = url_parts(&url) else {
        c.problem(
            &url_field,
            format!(
                "must be an SQS queue URL such as {QUEUE_URL_FORM} (as the SQS console shows it), got {url:?}"
            ),
        );
        return None;
    };
    if let (Some(from_url), Some(Some(given)), Some(field)) = (parts.region, &region, &region_field)
    {
        if from_url != given {
            c.problem(
                field,
                format!("is {given:?}, but the queue URL is in {from_url:?}; leave `region` out, the URL's is used"),
            );
            return None;
        }
    }
    if let Some(first) = first_use(urls, url.clone(), &url_field.path) {
        c.problem(
            &url_field,
            format!("{url:?} is already read by {first}; each queue is read once (one message would be handled twice)"),
        );
        return None;
    }
    Some(ChangeEventsQueue {
        queue_url: url,
        role: role?,
        region: region?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(url: &str) -> ChangeEventsQueue {
        ChangeEventsQueue {
            queue_url: url.to_owned(),
            role: None,
            region: None,
        }
    }

    #[test]
    fn the_url_gives_the_region_account_name_and_arn() {
        let q = queue("https://sqs.eu-west-1.amazonaws.com/111111111111/changes");
        assert_eq!(q.url_region(), Some("eu-west-1"));
        assert_eq!(q.account_and_name(), ("111111111111", "changes"));
        assert_eq!(
            q.arn("aws", "eu-west-1"),
            "arn:aws:sqs:eu-west-1:111111111111:changes"
        );
        let legacy = queue("https://us-east-2.queue.amazonaws.com/111111111111/c.fifo");
        assert_eq!(legacy.url_region(), Some("us-east-2"));
        assert_eq!(legacy.name(), "c.fifo");
        let local = queue("http://127.0.0.1:5000/123456789012/changes");
        assert_eq!(local.url_region(), None);
        assert_eq!(local.name(), "changes");
    }

    #[test]
    fn urls_that_name_no_queue_are_refused() {
        for url in [
            "sqs.us-east-1.amazonaws.com/111111111111/q",
            "https://sqs.us-east-1.amazonaws.com/q",
            "https://sqs.us-east-1.amazonaws.com/1111/q",
            "https://sqs.us-east-1.amazonaws.com/111111111111/",
            "https://sqs.us-east-1.amazonaws.com/111111111111/a b",
            "https://sqs.us-east-1.amazonaws.com/111111111111/../x",
            "https:///111111111111/q",
        ] {
            assert!(url_parts(url).is_none(), "{url}");
        }
    }
}
