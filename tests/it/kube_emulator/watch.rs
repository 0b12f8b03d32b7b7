//! Watches: newline-delimited `{"type":..,"object":..}` events replayed from the change
//! history, then streamed live until `timeoutSeconds` or shutdown.

use super::api::{Call, Target};
use super::kinds::Kind;
use super::lock;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{Change, Key, State};
use super::status::ApiError;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The real server picks 30-60 minutes when the client sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which objects a list or watch sees.
#[derive(Debug, Clone)]
pub struct Filter {
    kind: &'static Kind,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn new(call: &Call, target: &Target) -> Result<Filter, ApiError> {
        Ok(Filter {
            kind: target.kind,
            namespace: target.namespace.clone(),
            labels: LabelSelector::parse(call.param("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(call.param("fieldSelector").unwrap_or(""), target.kind)?,
        })
    }

    pub fn matches(&self, key: &Key, object: &Value) -> bool {
        *key.kind == *self.kind
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

/// A watch decided under the state lock: what to send first and where to go on from.
pub struct WatchPlan {
    initial: Vec<Value>,
    /// The initial events end the stream (the requested resourceVersion is gone).
    ended: bool,
    from: u64,
    filter: Filter,
    changes: watch::Receiver<u64>,
    timeout: Duration,
}

pub fn plan(state: &State, call: &Call, target: &Target) -> Result<WatchPlan, ApiError> {
    let filter = Filter::new(call, target)?;
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let requested = call.param("resourceVersion").unwrap_or("");
    let initial_events = call.param("sendInitialEvents") == Some("true");
    let current = state.resource_version();
    let mut plan = WatchPlan {
        initial: Vec::new(),
        ended: false,
        from: current,
        filter,
        changes: state.subscribe(),
        timeout,
    };
    if requested.is_empty() || requested == "0" || initial_events {
        // "Any"/"most recent" starts with the current state as synthetic ADDED events.
        plan.initial = state
            .objects(target.kind, target.namespace.as_deref())
            .filter(|(k, v)| plan.filter.matches(k, v))
            .map(|(_, v)| event("ADDED", v.clone()))
            .collect();
        if initial_events && call.param("allowWatchBookmarks") == Some("true") {
            plan.initial.push(initial_events_end(target.kind, current));
        }
        return Ok(plan);
    }
    let since: u64 = requested
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {requested}")))?;
    match state.changes_since(since) {
        Ok(changes) => {
            plan.initial = changes
                .iter()
                .filter_map(|c| translate(c, &plan.filter))
                .collect();
        }
        Err(oldest) => {
            plan.initial = vec![expired(since, oldest)];
            plan.ended = true;
        }
    }
    Ok(plan)
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn initial_events_end(kind: &Kind, rv: u64) -> Value {
    event(
        "BOOKMARK",
        json!({
            "kind": kind.kind,
            "apiVersion": kind.api_version(),
            "metadata": {
                "resourceVersion": rv.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }),
    )
}

fn expired(requested: u64, oldest: u64) -> Value {
    let status = ApiError::gone(format!("too old resource version: {requested} ({oldest})"));
    event("ERROR", status.body())
}

/// The event a change means to one watcher: an object that starts or stops matching
/// the selectors is ADDED or DELETED for it, as with the real watch cache.
fn translate(change: &Change, filter: &Filter) -> Option<Value> {
    let was = change
        .old
        .as_ref()
        .is_some_and(|o| filter.matches(&change.key, o));
    let is = change
        .new
        .as_ref()
        .is_some_and(|n| filter.matches(&change.key, n));
    let (kind, object) = match (was, is, &change.new, &change.old) {
        (false, true, Some(new), _) => ("ADDED", new.clone()),
        (true, true, Some(new), _) => ("MODIFIED", new.clone()),
        (true, false, Some(new), _) => ("DELETED", new.clone()),
        (true, false, None, Some(old)) => {
            let mut gone = old.clone();
            gone["metadata"]["resourceVersion"] = change.rv.to_string().into();
            ("DELETED", gone)
        }
        _ => return None,
    };
    Some(event(kind, object))
}

fn line(event: &Value) -> Bytes {
    let mut bytes = event.to_string().into_bytes();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Feeds one watch response until its timeout, the client leaving, or shutdown (the
/// runtime dropping this task).
pub async fn stream(shared: Arc<Mutex<State>>, mut plan: WatchPlan, out: mpsc::Sender<Bytes>) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    for event in &plan.initial {
        if out.send(line(event)).await.is_err() {
            return;
        }
    }
    if plan.ended {
        return;
    }
    let mut from = plan.from;
    loop {
        tokio::select! {
            changed = plan.changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(deadline) => return,
            () = out.closed() => return,
        }
        let (batch, current) = {
            let state = lock(&shared);
            (state.changes_since(from), state.resource_version())
        };
        let events = match batch {
            Ok(changes) => changes
                .iter()
                .filter_map(|c| translate(c, &plan.filter))
                .collect(),
            Err(oldest) => vec![expired(from, oldest)],
        };
        for event in &events {
            if out.send(line(event)).await.is_err() {
                return;
            }
        }
        if events.iter().any(|e| e["type"] == "ERROR") {
            return;
        }
        from = current;
    }
}
