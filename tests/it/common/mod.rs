//! Test harness: a real `moto` server on a free loopback port, AWS fixtures created
//! through the AWS API, and small HTTP helpers.
#![allow(dead_code)]

pub mod config;
pub mod fake_aws;
pub mod fault;
pub mod iam_docs;
pub mod in_process;
pub mod proxy;
pub mod tls_front;

pub use config::ConfigYaml;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
/// The account that owns the secret and the cross-account role.
pub const SECRETS_ACCOUNT: &str = "111111111111";

/// A moto server owned by one test; killed on drop.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
        Path::new(&home).join(".cache/secret-ferry-venv/bin/moto_server"),
    ];
    for c in &candidates {
        if c.exists() {
            return c.clone();
        }
    }
    // Never skip silently: a missing stand-in must fail the run, locally and in CI.
    panic!(
        "moto_server not found (looked at $MOTO_SERVER, {}): run ./scripts/test.sh, which installs \
         the pinned moto[server] into a virtualenv, or set MOTO_SERVER to a moto_server binary",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, Command::new(moto_binary()))
    }

    /// moto with DescribeParameters paged up to MaxResults (50), as AWS pages it, where moto
    /// pages ten whatever is asked (`moto_aws_pages.py`): for the Parameter Store call counts.
    pub fn start_with_aws_pages() -> Self {
        let mut command = Command::new(python());
        command
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/common/moto_aws_pages.py"));
        Self::spawn(free_port(), command)
    }

    fn spawn(port: u16, mut command: Command) -> Self {
        let log = std::env::temp_dir().join(format!("secret-ferry-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("cannot start moto_server");
        let mut moto = Moto {
            child: Some(child),
            port,
            log,
        };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "moto_server exited early ({status}); log: {}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
            }
            if http("GET", self.addr(), "/moto-api/data.json", None).map(|r| r.0) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "moto_server did not become ready; log: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (connections are then refused), keeping the port number.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes moto (SIGSTOP): connections are accepted by the kernel but never answered,
    /// like a hung endpoint.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("moto is running").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "cannot signal moto");
    }

    /// Turns on IAM enforcement: from now on only known keys work and policies apply.
    pub fn enable_auth(&self) {
        let (status, body) = http(
            "POST",
            self.addr(),
            "/moto-api/reset-auth",
            Some(("text/plain", "0")),
        )
        .unwrap();
        assert_eq!(status, 200, "reset-auth failed: {body}");
    }

    /// Static credentials for the default account (123456789012) while auth is off.
    pub fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with(Credentials::new("testing", "testing", None, None, "test"))
    }

    pub fn sdk_config_with(&self, creds: Credentials) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(creds),
            )
            .build()
    }

    /// Admin credentials inside `account` (moto derives the account from the role ARN).
    pub async fn admin_in(&self, account: &str) -> SdkConfig {
        let sts = aws_sdk_sts::Client::new(&self.sdk_config());
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/admin"))
            .role_session_name("test-setup")
            .send()
            .await
            .expect("assume admin role in moto");
        let c = out.credentials().unwrap();
        self.sdk_config_with(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "admin",
        ))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
        // The log is for a test that failed; a passing run leaves nothing in /tmp.
        if std::thread::panicking() {
            eprintln!("moto's log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Minimal HTTP/1.1 client for moto's control API and the daemon's admin server.
pub fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<(&str, &str)>,
) -> Option<(u16, String)> {
    http_with_headers(method, addr, path, &[], body)
}

pub fn http_with_headers(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Option<(u16, String)> {
    let (status, body, raw) = http_uncaptured(method, addr, path, headers, body)?;
    // The daemon's admin answers (metrics, readiness reasons) go to the leak scan. Not
    // moto's control API (the test's own secrets) nor the credentials endpoint, whose job
    // is to hand out a session token.
    if ["/metrics", "/readyz", "/healthz", "/refresh"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        capture("admin-http", raw.as_bytes());
    }
    Some((status, body))
}

/// A `/metrics` scrape that is not kept for the leak scan: for tests that scrape a large
/// daemon many times (each answer is scanned once, by capturing it explicitly).
pub fn scrape_uncaptured(addr: SocketAddr) -> Option<(u16, String)> {
    http_uncaptured("GET", addr, "/metrics", &[], None).map(|(status, body, _)| (status, body))
}

/// Status, body and the whole raw answer.
fn http_uncaptured(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((ctype, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    stream.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body, text))
}

pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http("GET", addr, path, None)
}

/// Polls `check` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn trust_policy(principal: &str, external_id: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    })
    .to_string()
}

/// moto only matches policies against `*` for Secrets Manager resources.
pub fn allow(action: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]
    })
    .to_string()
}

/// A role in the secrets account that trusts `principal` with `external_id` and may
/// read secrets; returns its ARN.
pub async fn create_role(
    admin: &SdkConfig,
    name: &str,
    principal: &str,
    external_id: &str,
) -> String {
    let iam = aws_sdk_iam::Client::new(admin);
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust_policy(principal, external_id))
        .send()
        .await
        .expect("create role");
    iam.put_role_policy()
        .role_name(name)
        .policy_name("read-secrets")
        .policy_document(allow("secretsmanager:GetSecretValue"))
        .send()
        .await
        .expect("put role policy");
    role.role().unwrap().arn().to_owned()
}

/// Every secret value a test stores carries a canary, so that the leak scan would see it
/// anywhere the daemon might print it.
pub fn assert_canaried(value: &str) {
    assert!(
        value.contains("canary-"),
        "a test secret value must embed a canary (common::canary) for the leak scan"
    );
}

pub async fn create_secret(admin: &SdkConfig, name: &str, value: &str) -> String {
    assert_canaried(value);
    let sm = aws_sdk_secretsmanager::Client::new(admin);
    sm.create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn()
        .unwrap()
        .to_owned()
}

/// Puts Parameter Store parameter `name` (a new version when it exists); its version. A
/// SecureString's value must embed a canary, for the leak scan.
pub async fn put_parameter(ssm: &aws_sdk_ssm::Client, name: &str, value: &str, kind: &str) -> i64 {
    if kind == "SecureString" {
        assert_canaried(value);
    }
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(kind.into())
        .overwrite(true)
        .send()
        .await
        .unwrap()
        .version
}

/// Attaches `label` to `version` of parameter `name` (moving it from another version).
pub async fn label_parameter(ssm: &aws_sdk_ssm::Client, name: &str, version: i64, label: &str) {
    ssm.label_parameter_version()
        .name(name)
        .parameter_version(version)
        .labels(label)
        .send()
        .await
        .unwrap();
}

pub async fn put_secret(admin: &SdkConfig, name: &str, value: &str) {
    assert_canaried(value);
    aws_sdk_secretsmanager::Client::new(admin)
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .expect("put secret value");
}

/// Where this test run keeps the leak-scan inputs (`canaries.txt`, `captures/`) and the
/// reliability figures (`figures/`). `scripts/test.sh` empties it before `cargo test` and
/// scans it afterwards (`.ci/leak_scan.py`). Read once: every test of the process writes to
/// the same place, and files in it are only ever created with unique names or appended to.
pub fn harness_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os("SECRET_FERRY_HARNESS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness"))
    })
    .clone()
}

/// Appends one line to a harness file; `O_APPEND` keeps lines from concurrent tests and
/// processes whole.
fn append_line(name: &str, line: &str) {
    let dir = harness_dir();
    std::fs::create_dir_all(&dir).expect("create the harness dir");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("open a harness file");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write a harness file");
}

/// A unique marker for one secret value, ExternalId or token. It is registered with the
/// leak scan, which fails the run if it shows up in any captured output.
pub fn canary(label: &str) -> String {
    let c = format!(
        "canary-{label}-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    register_canary(&c);
    c
}

/// Registers a secret that the test did not make up (a session token or secret key that
/// moto issued) with the leak scan.
pub fn register_canary(value: &str) {
    assert!(
        value.len() >= 12 && !value.contains('\n'),
        "a canary must be a distinctive single line"
    );
    append_line("canaries.txt", value);
}

/// Keeps `text` (daemon logs, a metrics scrape, `check` output, Events) for the leak scan.
pub fn capture(kind: &str, text: &[u8]) {
    let dir = harness_dir().join("captures");
    std::fs::create_dir_all(&dir).expect("create the captures dir");
    let name = format!(
        "{kind}-{}-{:016x}.txt",
        std::process::id(),
        fastrand::u64(..)
    );
    std::fs::write(dir.join(name), text).expect("write a capture");
}

/// Hands a finished daemon run's output to the leak scan; for `Command::output().map(captured)`.
pub fn captured(out: Output) -> Output {
    capture("daemon-stdout", &out.stdout);
    capture("daemon-stderr", &out.stderr);
    out
}

/// Sends this test process's own logs (the library run in-process) to a capture for the
/// leak scan, at `trace` with the daemon's caps on the AWS SDK and HTTP crates.
pub fn capture_logs() {
    use tracing_subscriber::prelude::*;
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = harness_dir().join("captures");
        std::fs::create_dir_all(&dir).expect("create the captures dir");
        let file = std::fs::File::create(dir.join(format!(
            "inprocess-log-{}-{:016x}.txt",
            std::process::id(),
            fastrand::u64(..)
        )))
        .expect("create the log capture");
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_filter(secret_ferry::telemetry::capped(
                tracing_subscriber::EnvFilter::new("trace"),
            ));
        let _ = tracing_subscriber::registry().with(layer).try_init();
    });
}

/// Records the figures a reliability test measured, for docs/reliability.md
/// (`.ci/reliability_report.py` prints them all).
pub fn record_figures(name: &str, figures: serde_json::Value) {
    let dir = harness_dir().join("figures");
    std::fs::create_dir_all(&dir).expect("create the figures dir");
    let text = serde_json::to_string_pretty(&figures).expect("figures as JSON");
    std::fs::write(dir.join(format!("{name}.json")), text).expect("write figures");
    println!("figures {name}: {figures}");
}

/// The file names visible in a target dir, and where `..data` points.
pub fn layout(dir: &Path) -> (Vec<String>, Option<PathBuf>) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    (names, std::fs::read_link(dir.join("..data")).ok())
}

pub fn read(dir: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(key)).ok()
}

pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Held for the whole body of a test that measures time or resources, or that loads the
/// machine for long: the 10,000-secret soak (resource_bounds), the kill -9 loop
/// (crash_consistency), the full/read-only filesystem and the credential-lapse fault cases
/// (faults), the leader hand-over (kube_leader) and the Kubernetes benchmarks (kube_bench).
/// Each of them used to be alone in its own test binary, so at most one ran at a time; in the
/// one `it` binary this lock keeps it so. Other tests still run beside them, as they did
/// beside the other tests of their own binary.
pub struct Heavy {
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// Takes the heavy-test lock (see [`Heavy`]); `let _heavy = common::heavy();` first thing in
/// the test. Blocking is fine in an async test: the test owns its runtime and no other task
/// on it takes this lock.
pub fn heavy() -> Heavy {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A heavy test that failed (and so poisoned the lock) must not fail the ones after it.
    let guard = HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Heavy { _guard: guard }
}

/// The name libtest gives the test `name` in the module `module_path` (`module_path!()`):
/// the module path without the crate, for a test that runs itself in a child process with
/// `--exact`.
pub fn test_path(module_path: &str, name: &str) -> String {
    let module = module_path
        .split_once("::")
        .map(|(_crate, rest)| rest)
        .unwrap_or("");
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_secret-ferry")
}

/// The daemon as a child process against `endpoint`, with the default moto identity
/// and every log level on (so that leak checks see everything).
pub fn daemon(config: &Path, endpoint: &str, listen: u16) -> Command {
    daemon_of(Path::new(binary()), config, endpoint, listen)
}

/// [`daemon`] with another secret-ferry binary (the one inside the image, say).
pub fn daemon_of(binary: &Path, config: &Path, endpoint: &str, listen: u16) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(["run", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// The `ENV NAME=value` lines of the runtime image (the last stage of the Dockerfile), as
/// bench/common.py reads them: tests that measure memory run the daemon as the image does.
pub fn image_env() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut env = Vec::new();
    for line in text.lines() {
        if line.starts_with("FROM ") {
            env.clear();
        } else if let Some(pairs) = line.strip_prefix("ENV ") {
            for pair in pairs.split_whitespace() {
                let (name, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}: only `ENV NAME=value`: {line}", path.display()));
                env.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    env
}

pub fn assert_no_leak(output: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!c.is_empty());
        assert!(
            !output.contains(c),
            "a secret canary leaked into the daemon's output: {c}"
        );
    }
}

/// The Python of the test virtualenv (next to moto_server), which has boto3: a real AWS
/// client to consume what the daemon hands to apps.
pub fn python() -> PathBuf {
    moto_binary().with_file_name("python")
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

pub fn metric_or_zero(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

/// An IAM user with an access key and one inline policy, in the account `admin` works in.
pub struct User {
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub async fn create_user(admin: &SdkConfig, name: &str, policy: &str) -> User {
    let iam = aws_sdk_iam::Client::new(admin);
    let user = iam
        .create_user()
        .user_name(name)
        .send()
        .await
        .expect("create user");
    iam.put_user_policy()
        .user_name(name)
        .policy_name("inline")
        .policy_document(policy)
        .send()
        .await
        .expect("put user policy");
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .expect("create access key");
    let key = key.access_key().expect("access key");
    User {
        arn: user.user().expect("user").arn().to_owned(),
        access_key_id: key.access_key_id().to_owned(),
        secret_access_key: key.secret_access_key().to_owned(),
    }
}

impl User {
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "user",
        )
    }
}

/// A daemon child process that is killed if the test fails before stopping it, so that a
/// failed test never leaves a daemon behind. Its output is drained while it runs: a full
/// pipe would block the daemon's logging (and so the daemon) at `RUST_LOG=trace`.
pub struct Running {
    child: Option<Child>,
    readers: Vec<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd.spawn().expect("start the daemon");
        let mut readers = Vec::new();
        let out: Option<Box<dyn Read + Send>> = child.stdout.take().map(|s| Box::new(s) as _);
        let err: Option<Box<dyn Read + Send>> = child.stderr.take().map(|s| Box::new(s) as _);
        for pipe in [out, err] {
            readers.push(std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut buf);
                }
                buf
            }));
        }
        Running {
            child: Some(child),
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then wait for the exit; its output.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "cannot signal the daemon");
        self.reap(child)
    }

    /// SIGKILL (a crash), then wait; its output so far.
    pub fn kill(mut self) -> Output {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        self.reap(child)
    }

    /// Waits for the signalled child and collects its output.
    fn reap(&mut self, mut child: Child) -> Output {
        let status = child.wait().expect("wait for the daemon");
        let (stdout, stderr) = self.drain();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Joins the output readers (the child has exited) and hands the output to the leak scan.
    fn drain(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut outputs = std::mem::take(&mut self.readers)
            .into_iter()
            .map(|r| r.join().unwrap_or_default());
        let stdout = outputs.next().unwrap_or_default();
        let stderr = outputs.next().unwrap_or_default();
        capture("daemon-stdout", &stdout);
        capture("daemon-stderr", &stderr);
        (stdout, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // Output of a daemon a failed test left behind is scanned too.
            self.drain();
        }
    }
}

/// Base identity (default moto account) → cross-account role with an ExternalId in
/// 111111111111 → a JSON secret that exists only in that account.
pub struct CrossAccount {
    pub moto: Moto,
    pub admin: aws_config::SdkConfig,
    pub role_arn: String,
    pub external_id: String,
}

pub async fn cross_account(secret_name: &str, value: &str) -> CrossAccount {
    let fx = cross_account_role().await;
    create_secret(&fx.admin, secret_name, value).await;
    fx
}

/// The role of [`cross_account`] with no secret yet, for tests that create their own.
pub async fn cross_account_role() -> CrossAccount {
    cross_account_role_in(Moto::start()).await
}

/// The role of [`cross_account`] in `moto`, started by the caller.
pub async fn cross_account_role_in(moto: Moto) -> CrossAccount {
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let external_id = canary("extid");
    let role_arn = create_role(
        &admin,
        "CrossAccountSecretsRole",
        "arn:aws:iam::123456789012:root",
        &external_id,
    )
    .await;
    CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    }
}

/// Whether the tests run as root (who ignores permission bits).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// `cmd` in a mount namespace of its own (a user namespace too when not root), where the
/// shell command `mount` is run on `dir` (as `$0`) first: the test changes that filesystem
/// without touching the machine's. Output is piped; the environment is `cmd`'s.
pub fn in_mount_namespace(cmd: &Command, dir: &Path, mount: &str) -> Command {
    let mut wrapped = Command::new("unshare");
    if !running_as_root() {
        wrapped.args(["--user", "--map-root-user"]);
    }
    wrapped
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(r#"{mount} && exec "$@""#))
        .arg(dir)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    wrapped
}

/// A finished command's stdout then stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A tenant's Secret as the controller watches it: labelled `secret-ferry.io/managed` and
/// annotated with what it asks for (a secret id to fill it from, or a name to push it to).
pub fn tenant_secret(
    namespace: &str,
    name: &str,
    annotations: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"secret-ferry.io/managed": "true"},
                     "annotations": annotations},
    })
}
