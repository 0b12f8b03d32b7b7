//! The Kubernetes Secret source of `pushes` (controller mode): the Secret is watched, not
//! polled, so that a change reaches Secrets Manager within a second at any interval.
//!
//! A background task keeps the latest observation in a `watch` channel and wakes the push
//! group only when the Secret's data or presence changed. The Secret's bytes are wrapped
//! in [`Sensitive`] as soon as they arrive; nothing here logs an object. A watch error
//! keeps the last observation (a failing API server is not a deleted Secret), so only a
//! Delete event or a relist without the Secret makes it [`Read::Gone`].

use super::push_files::{json_object, PushSourceError, Read};
use crate::config::MAX_SECRET_BYTES;
use crate::k8s::Kube;
use crate::secret::{Payload, Sensitive};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long a read waits for the first list of the Secret before it reports why not.
const FIRST_SYNC: Duration = Duration::from_secs(10);
/// Pause after a failed list or watch; the watcher's own relist follows.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the watch last saw of the Secret.
#[derive(Clone)]
pub enum Observed {
    /// Not listed yet: the last list or watch error, if there was one.
    NotYet(Option<String>),
    Present(Arc<Snapshot>),
    Gone,
}

/// The Secret's data (never printed) and the object reference its Events point to.
pub struct Snapshot {
    data: BTreeMap<String, Sensitive<Vec<u8>>>,
    pub reference: ObjectReference,
}

impl Snapshot {
    pub fn of(secret: &Secret, namespace: &str) -> Self {
        let data = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Sensitive::new(v.0.clone())))
            .collect();
        Self {
            data,
            reference: crate::k8s::reference(secret, namespace),
        }
    }
}

/// One push's watched Secret. Dropping it stops the watch.
pub struct KubeSource {
    push: String,
    namespace: String,
    name: String,
    keys: Vec<String>,
    rx: watch::Receiver<Observed>,
    /// The first read waited for the first list; later ones answer at once, so that a
    /// Secret that cannot be listed does not hold up every cycle of its group.
    waited: AtomicBool,
    /// Feeds the channel from a watch of the one Secret (None when fed from elsewhere).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl KubeSource {
    /// Watches `namespace/name`; `changed` is notified whenever its data or presence changes.
    pub fn watch(
        kube: &Kube,
        push: &str,
        namespace: &str,
        name: &str,
        keys: &[String],
        changed: Arc<Notify>,
    ) -> Self {
        let (tx, rx) = watch::channel(Observed::NotYet(None));
        let api: kube::Api<Secret> = kube::Api::namespaced(kube.client.clone(), namespace);
        let task = tokio::spawn(feed(
            api,
            namespace.to_owned(),
            name.to_owned(),
            tx,
            changed,
        ));
        Self {
            push: push.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            keys: keys.to_vec(),
            rx,
            waited: AtomicBool::new(false),
            task: Some(task),
        }
    }

    /// Where the value comes from, for messages.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "Kubernetes Secret {}/{}",
            self.namespace, self.name
        ))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the Secret changed since the last [`read`](Self::read).
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(false)
    }

    /// The object Events about this source point to, once it has been seen.
    pub fn reference(&self) -> Option<ObjectReference> {
        match &*self.rx.borrow() {
            Observed::Present(snapshot) => Some(snapshot.reference.clone()),
            _ => None,
        }
    }

    /// The Secret by name only, for Events before it was ever seen (it may not be readable).
    pub fn bare_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Secret".to_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        }
    }

    /// The value to push, after the first list (the first call waits up to [`FIRST_SYNC`]
    /// for it); what
    /// changes after this call makes [`has_changed`](Self::has_changed) true again.
    pub async fn read(&mut self) -> Result<Read, PushSourceError> {
        self.rx.mark_unchanged();
        self.peek().await
    }

    /// [`read`](Self::read) without marking the change as seen (for `check`).
    pub async fn peek(&self) -> Result<Read, PushSourceError> {
        let mut rx = self.rx.clone();
        let wait = if self.waited.swap(true, Ordering::Relaxed) {
            Duration::ZERO
        } else {
            FIRST_SYNC
        };
        let seen =
            match tokio::time::timeout(wait, rx.wait_for(|o| !matches!(o, Observed::NotYet(_))))
                .await
            {
                Ok(Ok(seen)) => Some(seen.clone()),
                _ => None,
            };
        // The channel closed or the wait timed out: say why the Secret is not listed.
        let observed = seen.unwrap_or_else(|| rx.borrow().clone());
        match observed {
            Observed::Present(snapshot) => {
                payload(&self.push, &self.path(), &self.keys, &snapshot).map(Read::Present)
            }
            Observed::Gone => Ok(Read::Gone),
            Observed::NotYet(error) => Err(PushSourceError::Unreadable {
                push: self.push.clone(),
                path: self.path(),
                reason: error.unwrap_or_else(|| {
                    format!("it has not been listed within {} s", FIRST_SYNC.as_secs())
                }),
            }),
        }
    }
}

/// Runs the watch of one Secret until aborted.
async fn feed(
    api: kube::Api<Secret>,
    namespace: String,
    name: String,
    tx: watch::Sender<Observed>,
    changed: Arc<Notify>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).boxed();
    // Objects of a relist in progress; the relist ends with InitDone.
    let mut listing: Option<Snapshot> = None;
    while let Some(event) = events.next().await {
        let next = match event {
            Ok(watcher::Event::Init) => {
                listing = None;
                continue;
            }
            Ok(watcher::Event::InitApply(secret)) => {
                listing = Some(Snapshot::of(&secret, &namespace));
                continue;
            }
            Ok(watcher::Event::InitDone) => match listing.take() {
                Some(snapshot) => Observed::Present(Arc::new(snapshot)),
                None => Observed::Gone,
            },
            Ok(watcher::Event::Apply(secret)) => {
                Observed::Present(Arc::new(Snapshot::of(&secret, &namespace)))
            }
            Ok(watcher::Event::Delete(_)) => Observed::Gone,
            Err(e) => {
                let reason = describe(&e, &namespace);
                tracing::warn!(namespace = %namespace, name = %name, "watching a push's source Secret failed; retrying: {reason}");
                tx.send_if_modified(|o| match o {
                    Observed::NotYet(last) => {
                        *last = Some(reason);
                        true
                    }
                    _ => false,
                });
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        if tx.send_if_modified(|o| replace_if_different(o, next)) {
            changed.notify_one();
        }
    }
}

/// Replaces the observation when the data or the presence differ; a new resourceVersion
/// with the same data (a label edited) is no change.
fn replace_if_different(current: &mut Observed, next: Observed) -> bool {
    let same = match (&*current, &next) {
        (Observed::Gone, Observed::Gone) => true,
        (Observed::Present(a), Observed::Present(b)) => a.data == b.data,
        _ => false,
    };
    if same {
        if let (Observed::Present(_), Observed::Present(_)) = (&*current, &next) {
            // Keep the newest reference for Events without waking anyone.
            *current = next;
        }
        return false;
    }
    *current = next;
    true
}

fn describe(e: &watcher::Error, namespace: &str) -> String {
    match e {
        watcher::Error::InitialListFailed(e) => {
            crate::k8s::describe(e, "list", "secrets", namespace)
        }
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            crate::k8s::describe(e, "watch", "secrets", namespace)
        }
        other => other.to_string(),
    }
}

/// The Secret's keys as the value to push: one key (selected, or the only one) as the
/// secret string as is (SecretBinary when it is not UTF-8), several as a JSON object.
pub fn payload(
    push: &str,
    path: &std::path::Path,
    keys: &[String],
    snapshot: &Snapshot,
) -> Result<Payload, PushSourceError> {
    let selected: Vec<(&String, &Sensitive<Vec<u8>>)> =
        if keys.is_empty() {
            snapshot.data.iter().collect()
        } else {
            let mut selected = Vec::with_capacity(keys.len());
            for key in keys {
                let value = snapshot.data.get_key_value(key).ok_or_else(|| {
                    PushSourceError::MissingKey {
                        push: push.to_owned(),
                        path: path.to_owned(),
                        key: key.clone(),
                    }
                })?;
                selected.push(value);
            }
            selected
        };
    let too_large = |bytes| PushSourceError::TooLarge {
        push: push.to_owned(),
        path: path.to_owned(),
        bytes,
    };
    match selected.as_slice() {
        [(_, value)] => {
            let bytes = value.expose();
            if bytes.is_empty() {
                return Err(PushSourceError::Empty {
                    push: push.to_owned(),
                    path: path.to_owned(),
                });
            }
            if bytes.len() > MAX_SECRET_BYTES {
                return Err(too_large(bytes.len()));
            }
            Ok(match std::str::from_utf8(bytes) {
                Ok(text) => Payload::Text(Sensitive::new(text.to_owned())),
                Err(_) => Payload::Binary(Sensitive::new(bytes.clone())),
            })
        }
        several => {
            let mut object = BTreeMap::new();
            for (key, value) in several {
                let text = std::str::from_utf8(value.expose()).map_err(|_| PushSourceError::NotUtf8 {
                    push: push.to_owned(),
                    path: path.join(key.as_str()),
                    hint: ": a JSON object holds text only; select this one key with `keys` to push it as SecretBinary",
                })?;
                object.insert((*key).clone(), text.to_owned());
            }
            json_object(push, path, &object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(data: &[(&str, &[u8])]) -> Snapshot {
        Snapshot {
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Sensitive::new(v.to_vec())))
                .collect(),
            reference: ObjectReference::default(),
        }
    }

    fn text(p: Payload) -> String {
        match p {
            Payload::Text(t) => t.expose().clone(),
            Payload::Binary(_) => panic!("expected text"),
        }
    }

    const PATH: &str = "Kubernetes Secret app/tokens";

    #[test]
    fn one_key_is_the_secret_string_as_is_and_several_are_a_json_object() {
        let s = snapshot(&[("token", b"abc"), ("user", b"u1")]);
        let path = std::path::Path::new(PATH);
        let one = payload("p", path, &["token".to_owned()], &s).unwrap();
        assert_eq!(text(one), "abc");
        let all = payload("p", path, &[], &s).unwrap();
        assert_eq!(text(all), r#"{"token":"abc","user":"u1"}"#);
        let only = payload("p", path, &[], &snapshot(&[("k", b"v")])).unwrap();
        assert_eq!(text(only), "v");
    }

    #[test]
    fn a_single_binary_key_is_secret_binary_but_binary_in_an_object_is_refused_with_the_key() {
        let s = snapshot(&[("cert", &[0xff, 0x00, 0x01]), ("user", b"u1")]);
        let path = std::path::Path::new(PATH);
        match payload("p", path, &["cert".to_owned()], &s).unwrap() {
            Payload::Binary(b) => assert_eq!(b.expose(), &vec![0xff, 0x00, 0x01]),
            Payload::Text(_) => panic!("expected binary"),
        }
        let e = payload("p", path, &[], &s).unwrap_err();
        assert_eq!(e.kind(), "source_not_utf8");
        assert!(e.to_string().contains("app/tokens/cert"), "{e}");
        assert!(e.to_string().contains("`keys`"), "{e}");
    }

    #[test]
    fn a_missing_selected_key_an_empty_secret_and_an_oversized_value_are_named_errors() {
        let path = std::path::Path::new(PATH);
        let s = snapshot(&[("token", b"abc")]);
        let e = payload("p", path, &["nope".to_owned()], &s).unwrap_err();
        assert_eq!(e.kind(), "source_key_missing");
        assert!(
            e.to_string().contains("\"nope\"") && e.to_string().contains("push 'p'"),
            "{e}"
        );
        assert_eq!(
            payload("p", path, &[], &snapshot(&[])).unwrap_err().kind(),
            "source_empty"
        );
        assert_eq!(
            payload("p", path, &[], &snapshot(&[("k", b"")]))
                .unwrap_err()
                .kind(),
            "source_empty"
        );
        let big = vec![b'x'; MAX_SECRET_BYTES + 1];
        let e = payload("p", path, &[], &snapshot(&[("k", &big)])).unwrap_err();
        assert_eq!(e.kind(), "source_too_large");
        let e = payload(
            "p",
            path,
            &[],
            &snapshot(&[("a", &big[..40_000]), ("b", &big[..40_000])]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "source_too_large");
    }

    #[test]
    fn only_a_change_of_data_or_presence_wakes_the_group() {
        let mut o = Observed::NotYet(None);
        assert!(replace_if_different(&mut o, Observed::Gone));
        assert!(!replace_if_different(&mut o, Observed::Gone));
        let a = || Observed::Present(Arc::new(snapshot(&[("k", b"a")])));
        assert!(replace_if_different(&mut o, a()));
        assert!(
            !replace_if_different(&mut o, a()),
            "same data, new resourceVersion"
        );
        assert!(replace_if_different(
            &mut o,
            Observed::Present(Arc::new(snapshot(&[("k", b"b")])))
        ));
        assert!(replace_if_different(&mut o, Observed::Gone));
    }

    #[test]
    fn a_snapshot_prints_no_value() {
        let s = snapshot(&[("token", b"canary-value")]);
        let shown = format!("{:?}", s.data);
        assert!(!shown.contains("canary"), "{shown}");
    }
}
