//! Tests of `endpoint`.

use super::*;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "canary-secret-key-Jd83";
const SESSION: &str = "canary-session-token-Qm27";
const TOKEN: &str = "canary-endpoint-token-Lw55";
const ROLE: &str = "app-prod";
const OTHER_ROLE: &str = "billing-ro";
/// 2100-01-01T00:00:00Z, with a fraction that must not show up.
fn far_future() -> SystemTime {
    UNIX_EPOCH + Duration::new(4_102_444_800, 123_456_789)
}

#[derive(Default)]
struct Fake {
    creds: Mutex<HashMap<String, RoleCredentials>>,
    lookups: AtomicUsize,
}

impl Fake {
    fn with(creds: RoleCredentials) -> Self {
        let fake = Fake::default();
        fake.creds.lock().unwrap().insert(creds.role.clone(), creds);
        fake
    }
}

impl CredentialSource for Fake {
    fn current(&self, role: &str) -> Option<RoleCredentials> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.creds.lock().unwrap().get(role).cloned()
    }
}

fn creds(expires_at: SystemTime) -> RoleCredentials {
    RoleCredentials {
        role: ROLE.into(),
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: Sensitive::new(SECRET.into()),
        session_token: Sensitive::new(SESSION.into()),
        expires_at,
    }
}

/// A minimal subscriber: `tracing-subscriber` is not a dependency here, and the tests
/// only need every event's fields as text to search for canaries.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// `#[tokio::test]` runs every task on the test's thread, so a thread-local default
/// subscriber sees the server's events too.
fn capture_logs() -> (Arc<Mutex<Vec<String>>>, tracing::subscriber::DefaultGuard) {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let guard = tracing::subscriber::set_default(Capture(logs.clone()));
    (logs, guard)
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn message(&self) -> String {
        self.json()["message"].as_str().unwrap().to_owned()
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let reply = Reply {
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    };
    assert!(
        reply.head.contains("\r\ncontent-type: application/json"),
        "{}",
        reply.head
    );
    assert!(
        reply.head.contains("\r\ncache-control: no-store"),
        "{}",
        reply.head
    );
    reply
}

struct Server {
    addr: SocketAddr,
    source: Arc<Fake>,
    trigger: crate::shutdown::Trigger,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(source: Fake, token_file: &Path) -> Self {
        let listener = CredentialsEndpoint::<Fake>::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = crate::shutdown::channel();
        let source = Arc::new(source);
        let endpoint = CredentialsEndpoint::new(
            source.clone(),
            [ROLE.to_owned(), OTHER_ROLE.to_owned()],
            token_file,
        );
        let task = tokio::spawn(endpoint.serve(listener, signal));
        Server {
            addr,
            source,
            trigger,
            task,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        request(self.addr, "GET", path, token).await
    }

    fn lookups(&self) -> usize {
        self.source.lookups.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve returns once shutdown fires")
            .unwrap();
    }
}

fn token_file(dir: &tempfile::TempDir, content: &str) -> PathBuf {
    let path = dir.path().join("endpoint-token");
    std::fs::write(&path, content).unwrap();
    path
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in [SECRET, SESSION, TOKEN] {
        assert!(
            !text.contains(canary),
            "{canary} leaked into {what}: {text}"
        );
    }
}

fn assert_logs_clean(logs: &Mutex<Vec<String>>) {
    let logs = logs.lock().unwrap();
    assert!(!logs.is_empty(), "the log capture saw nothing");
    for line in logs.iter() {
        assert_no_canary("a log line", line);
    }
}

const PATH: &str = "/v1/credentials/app-prod";

#[tokio::test]
async fn serves_the_container_credentials_format() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(&dir, &format!("  {TOKEN}\n"));
    let server = Server::start(Fake::with(creds(far_future())), &token_file).await;

    let reply = server.get(PATH, Some(TOKEN)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "AccessKeyId": "ASIAEXAMPLE",
            "SecretAccessKey": SECRET,
            "Token": SESSION,
            "Expiration": "2100-01-01T00:00:00Z",
        })
    );
    // A query string does not change the path.
    assert_eq!(
        server.get(&format!("{PATH}?x=1"), Some(TOKEN)).await.status,
        200
    );

    server.stop().await;
    assert_logs_clean(&logs);
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("credentials served")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_before_any_role_lookup() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(&dir, TOKEN);
    let server = Server::start(Fake::with(creds(far_future())), &token_file).await;

    let prefix = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}x");
    let flipped = format!("X{}", &TOKEN[1..]);
    for token in [
        None,
        Some(""),
        Some("wrong"),
        Some(prefix),
        Some(&longer),
        Some(&flipped),
    ] {
        for path in [PATH, "/v1/credentials/unknown", "/"] {
            let reply = server.get(path, token).await;
            assert_eq!(reply.status, 401, "{token:?} {path}");
            assert_eq!(reply.message(), "missing or wrong Authorization token");
            assert_no_canary("a 401 response", &format!("{}{}", reply.head, reply.body));
        }
    }
    assert_eq!(
        server.lookups(),
        0,
        "roles were looked up for an unauthenticated caller"
    );

    server.stop().await;
    assert_logs_clean(&logs);
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("DEBUG") && l.contains("no Authorization header")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("DEBUG") && l.contains("wrong Authorization token")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn unknown_roles_other_paths_and_other_methods_are_refused() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(&dir, TOKEN);
    let server = Server::start(Fake::with(creds(far_future())), &token_file).await;

    for path in [
        "/v1/credentials/unknown",
        "/v1/credentials/",
        "/v1/credentials/app-prod/",
        "/v1/credentials/app-prod/x",
        "/v1/credentials",
        "/v2/credentials/app-prod",
        "/",
        "/healthz",
    ] {
        let reply = server.get(path, Some(TOKEN)).await;
        assert_eq!(reply.status, 404, "{path}");
        let message = reply.message();
        assert!(message.contains("/v1/credentials/<role>"), "{message}");
        assert!(
            !message.contains(ROLE) && !message.contains(OTHER_ROLE),
            "{message}"
        );
    }
    assert_eq!(server.lookups(), 0);

    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let req = format!(
                "{method} {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        stream.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 405"), "{method}: {resp}");
        assert!(
            resp.to_ascii_lowercase().contains("\r\nallow: get\r\n"),
            "{resp}"
        );
        assert_no_canary("a 405 response", &resp);
    }
    assert_eq!(
        request(server.addr, "POST", PATH, Some(TOKEN)).await.status,
        405
    );

    server.stop().await;
    assert_logs_clean(&logs);
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("DEBUG") && l.contains("not a configured role")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("DEBUG") && l.contains("method not allowed")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn missing_or_expired_credentials_are_never_served() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(&dir, TOKEN);
    let expired = creds(SystemTime::now() - Duration::from_secs(1));
    for (source, why) in [
        (Fake::default(), "no credentials yet"),
        (Fake::with(expired), "expired"),
    ] {
        let server = Server::start(source, &token_file).await;
        let reply = server.get(PATH, Some(TOKEN)).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(reply.message().contains(why), "{}", reply.body);
        assert_no_canary("a 503 response", &format!("{}{}", reply.head, reply.body));
        assert!(!reply.body.contains("ASIAEXAMPLE"), "{}", reply.body);
        server.stop().await;
    }
    assert_logs_clean(&logs);
    assert!(logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("WARN") && l.contains("expired")));
}

#[test]
fn credentials_expiring_right_now_are_expired() {
    let now = SystemTime::now();
    assert!(!is_current(&creds(now), now));
    assert!(!is_current(&creds(now - Duration::from_nanos(1)), now));
    assert!(is_current(&creds(now + Duration::from_nanos(1)), now));
}

#[tokio::test]
async fn a_rotated_token_takes_effect_on_the_next_request() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(&dir, TOKEN);
    let server = Server::start(Fake::with(creds(far_future())), &token_file).await;
    assert_eq!(server.get(PATH, Some(TOKEN)).await.status, 200);

    let rotated = "rotated-token-4f2a";
    std::fs::write(&token_file, format!("{rotated}\n")).unwrap();
    assert_eq!(server.get(PATH, Some(TOKEN)).await.status, 401);
    assert_eq!(server.get(PATH, Some(rotated)).await.status, 200);

    server.stop().await;
    assert_logs_clean(&logs);
}

#[tokio::test]
async fn nothing_is_served_without_a_usable_token_file() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file(&dir, TOKEN);
    let server = Server::start(Fake::with(creds(far_future())), &token_file).await;

    std::fs::remove_file(&token_file).unwrap();
    for token in [Some(TOKEN), None] {
        let reply = server.get(PATH, token).await;
        assert_eq!(reply.status, 500);
        let message = reply.message();
        assert!(
            message.contains(&token_file.display().to_string()),
            "{message}"
        );
        assert!(message.contains("cannot be read"), "{message}");
        assert_no_canary("a 500 response", &format!("{}{}", reply.head, reply.body));
    }

    // Whitespace only is as good as empty: an empty token must never match an empty header.
    std::fs::write(&token_file, " \n\t").unwrap();
    let reply = server.get(PATH, Some("")).await;
    assert_eq!(reply.status, 500);
    assert!(reply.message().contains("is empty"), "{}", reply.body);
    assert_eq!(server.lookups(), 0);

    server.stop().await;
    assert_logs_clean(&logs);
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("WARN") && l.contains("token file cannot be read")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn the_token_file_content_never_reaches_a_response_or_log() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be read as a file; its name is the only thing reported.
    let token_dir = dir.path().join("token-dir");
    std::fs::create_dir(&token_dir).unwrap();
    std::fs::write(token_dir.join("x"), TOKEN).unwrap();
    let server = Server::start(Fake::with(creds(far_future())), &token_dir).await;
    let reply = server.get(PATH, Some(TOKEN)).await;
    assert_eq!(reply.status, 500);
    assert_no_canary("a 500 response", &format!("{}{}", reply.head, reply.body));
    server.stop().await;
    assert_logs_clean(&logs);
}

#[test]
fn an_expiry_out_of_humantime_range_is_none_not_a_panic() {
    assert_eq!(
        creds(far_future()).expiration_rfc3339().as_deref(),
        Some("2100-01-01T00:00:00Z")
    );
    assert_eq!(
        creds(UNIX_EPOCH - Duration::from_secs(1)).expiration_rfc3339(),
        None
    );
    assert_eq!(
        creds(UNIX_EPOCH + Duration::from_secs(253_402_300_800)).expiration_rfc3339(),
        None
    );
}

#[test]
fn constant_time_eq_compares_whole_slices() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"abc", b"xbc"), "first byte differs");
    assert!(!constant_time_eq(b"abc", b"abd"), "last byte differs");
    assert!(!constant_time_eq(b"abc", b"ab"), "prefix");
    assert!(!constant_time_eq(b"ab", b"abc"), "extension");
    assert!(!constant_time_eq(b"", b"a"));
    assert!(!constant_time_eq(&[0x80], &[0x00]), "high bit");
    let long = vec![7u8; 4096];
    let mut other = long.clone();
    other[4095] = 8;
    assert!(constant_time_eq(&long, &long.clone()));
    assert!(!constant_time_eq(&long, &other));
}

#[test]
fn debug_hides_the_secret_parts() {
    let c = creds(far_future());
    for shown in [format!("{c:?}"), format!("{c:#?}")] {
        assert!(
            shown.contains("ASIAEXAMPLE") && shown.contains(ROLE),
            "{shown}"
        );
        assert_no_canary("Debug output", &shown);
    }
}
