//! A loopback Kubernetes API emulator for integration tests: Secrets, Namespaces,
//! Leases, Events, SelfSubjectAccessReviews and `/version` over plain HTTP, with
//! resourceVersions, watches, server-side apply, RBAC, fault injection and a request
//! log. See README.md beside this file for what it simplifies.
#![allow(dead_code)]
// each test binary uses a different part of the helpers
// Test crates allow unwrap at their root; the emulator itself must not panic on it.
#![deny(clippy::unwrap_used)]

mod api;
mod fields;
mod kinds;
mod selector;
mod server;
mod state;
mod status;
mod validate;
mod watch;

use kinds::Kind;
use serde_json::Value;
use state::{Key, State};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The bearer token written into kubeconfigs; the emulator accepts any token.
const TOKEN: &str = "kube-emulator-token";

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    shared
        .lock()
        .expect("kube emulator state lock poisoned by a panicking thread")
}

/// A Kubernetes API server on 127.0.0.1, serving from its own thread and tokio runtime
/// so that it works under sync tests, async tests and paused tokio clocks alike.
/// Dropping it stops the server and ends open watches.
pub struct KubeEmulator {
    shared: Arc<Mutex<State>>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A failure to inject, matched by Kubernetes verb and resource plural (`Fault::kube`): the
/// same type as the AWS proxy's faults.
pub use crate::common::fault::Fault;

/// One API request as the emulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// get, list, watch, create, update, patch, delete (server-side apply is "patch").
    pub verb: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// The resource plural ("secrets"), "version", or "" for an unknown path.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub content_type: Option<String>,
    /// The HTTP status answered; 0 while a delayed or hung request is still unanswered.
    pub status: u16,
    pub field_manager: Option<String>,
}

impl KubeEmulator {
    /// Binds 127.0.0.1:0 and serves until dropped. The cluster starts with the
    /// namespaces `default`, `kube-system`, `kube-public` and `kube-node-lease`.
    pub fn start() -> KubeEmulator {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("kube emulator: cannot bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("kube emulator: cannot make the listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("kube emulator: listener has no local address");
        let shared = Arc::new(Mutex::new(State::new()));
        for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            lock(&shared).add_namespace(namespace, &[]);
        }
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kube-emulator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("kube emulator: cannot build its tokio runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("kube emulator: cannot register the listener");
                    server::serve(listener, serving, stopped).await;
                });
            })
            .expect("kube emulator: cannot spawn its thread");
        KubeEmulator {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Writes `dir/kubeconfig`: one cluster (this server), one bearer-token user, one
    /// current context defaulting to `namespace`. `kube::Config::infer()` reads it when
    /// `KUBECONFIG` names it.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: kube-emulator\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: secret-ferry\n  user:\n    token: {TOKEN}\n\
             contexts:\n\
             - name: kube-emulator\n  context:\n    cluster: kube-emulator\n    user: secret-ferry\n    namespace: {namespace}\n\
             current-context: kube-emulator\n",
            url = self.url(),
        );
        std::fs::write(&path, text).expect("kube emulator: cannot write the kubeconfig");
        path
    }

    /// A client for the test itself (default namespace "default"). It goes through the
    /// same RBAC, faults and log as any other client.
    pub async fn client(&self) -> kube::Client {
        let uri = self
            .url()
            .parse()
            .expect("kube emulator: its own URL does not parse");
        kube::Client::try_from(kube::Config::new(uri))
            .expect("kube emulator: cannot build a client for itself")
    }

    /// Inserts or replaces an object as given (its `kind`, and `apiVersion` if the kind
    /// is ambiguous, pick the resource). Assigns a resourceVersion, and a uid and
    /// creationTimestamp if missing (a replaced object keeps its own); folds
    /// `stringData` and defaults the Secret `type`; keeps `metadata.managedFields`
    /// exactly as given. Watches see the change. Bypasses validation, RBAC, faults,
    /// the log, and the check that the namespace exists.
    pub fn put(&self, mut object: Value) {
        let kind = Kind::of_object(&object)
            .unwrap_or_else(|| panic!("kube emulator: put() of an unknown kind: {object}"));
        object["apiVersion"] = kind.api_version().into();
        if !kind.namespaced {
            if let Some(meta) = object["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
        }
        validate::normalize(kind, &mut object).unwrap_or_else(|e| {
            panic!(
                "kube emulator: put() of an undecodable object: {}",
                e.message
            )
        });
        let key = Key::of(kind, &object);
        assert!(
            !key.name.is_empty() && (key.namespace.is_empty() != kind.namespaced),
            "kube emulator: put() needs metadata.name (and metadata.namespace for a {}): {object}",
            kind.kind
        );
        let mut state = self.state();
        match state.get(&key) {
            // A replaced object keeps its identity unless the caller gives another.
            Some(old) => {
                for field in ["uid", "creationTimestamp"] {
                    if object["metadata"][field].is_null() {
                        object["metadata"][field] = old["metadata"][field].clone();
                    }
                }
            }
            None if kind.is_event() => state.event_keys.push(key.clone()),
            None => {}
        }
        state.stamp_new(&mut object);
        state.commit(key, Some(object));
    }

    /// The stored object. `kind` is a kind or plural, any case ("Secret", "leases");
    /// `namespace` is ignored for Namespaces.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.state();
        Kind::named(kind)
            .into_iter()
            .find_map(|k| state.get(&Key::new(k, namespace, name)).cloned())
    }

    /// Stored objects of a kind, all namespaces when `namespace` is None.
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let state = self.state();
        Kind::named(kind)
            .into_iter()
            .flat_map(|k| {
                state
                    .objects(k, namespace)
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Creates (or replaces) a namespace with these labels plus the automatic
    /// `kubernetes.io/metadata.name` label.
    pub fn add_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        self.state().add_namespace(name, labels);
    }

    /// Every Event created through either events API, in creation order, as stored now.
    pub fn events(&self) -> Vec<Value> {
        let state = self.state();
        state
            .event_keys
            .iter()
            .filter_map(|k| state.get(k).cloned())
            .collect()
    }

    /// Hands every Event recorded to the leak scan, like `common::capture` but without
    /// panicking: it runs when the emulator is dropped, maybe while a failed test unwinds.
    fn capture_events(&self) {
        let events = self.events();
        if events.is_empty() {
            return;
        }
        let dir = crate::common::harness_dir().join("captures");
        let text = serde_json::to_string_pretty(&events).unwrap_or_default();
        if std::fs::create_dir_all(&dir).is_ok() {
            let name = format!(
                "kube-events-{}-{:016x}.txt",
                std::process::id(),
                fastrand::u64(..)
            );
            let _ = std::fs::write(dir.join(name), text);
        }
    }

    /// Allows `verb` on `resource` (plural) in `namespace` (None: every namespace and
    /// cluster-wide requests). The first call turns RBAC on: from then on requests that
    /// no allow rule covers are refused with 403. "*" matches any verb or resource.
    pub fn allow(&self, verb: &str, resource: &str, namespace: Option<&str>) {
        self.state().add_rule(verb, resource, namespace, true);
    }

    /// Refuses `verb` on `resource` in `namespace` whatever the allow rules say.
    pub fn deny(&self, verb: &str, resource: &str, namespace: Option<&str>) {
        self.state().add_rule(verb, resource, namespace, false);
    }

    /// Faults are checked in the order injected; the first match applies.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().log.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Logged requests with this Kubernetes verb and resource plural, whatever their
    /// answer.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|(_, r)| r.verb == verb && r.resource == resource)
            .count()
    }

    pub fn reset_log(&self) {
        self.state().log.clear();
    }

    /// Forgets the watch history: a watch resuming from any resourceVersion issued so far
    /// gets the 410 Gone ERROR event, as after an etcd compaction.
    pub fn compact(&self) {
        self.state().compact();
    }

    /// The current resourceVersion counter.
    pub fn resource_version(&self) -> u64 {
        self.state().resource_version()
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        self.capture_events();
        if let Some(stop) = self.stop.take() {
            // The server may already be gone if its thread panicked; nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
