//! A fast in-memory stand-in for the AWS APIs the daemon calls, on loopback.
//!
//! moto answers about 100–200 requests/s; 10,000 secrets polled every second need ~500
//! BatchGetSecretValue calls/s, so a soak test at that scale would measure moto, not the
//! daemon. This fake speaks just enough of both wire protocols for the daemon's real SDK
//! clients:
//! - STS (form-encoded POST, XML answers): `AssumeRole` checks the role's account and the
//!   `ExternalId` (403 AccessDenied otherwise) and issues a new session; `GetCallerIdentity`
//!   answers for the base identity (the daemon asks it to name a refused caller).
//! - Secrets Manager (JSON 1.1, `X-Amz-Target: secretsmanager.<Op>`): `GetSecretValue` (a
//!   name, full or partial ARN; a stage or version id), `BatchGetSecretValue` with
//!   `SecretIdList` (≤ 20; unknown ids in `Errors`), `ListSecrets` (name-prefix filter,
//!   `MaxResults` ≤ 100, `NextToken`, `SecretVersionsToStages`). Only requests signed with
//!   a key and token that `AssumeRole` issued are served, so reads must go through the role.
//!
//! Signatures are not verified, secrets have no tags, and anything else is refused (and
//! counted), so that a daemon needing more fails loudly. Secrets are created and rotated
//! in-process. hyper's HTTP/1 server (keep-alive: the SDK reuses connections) runs on a
//! single-threaded tokio runtime in its own thread, for sync and async tests alike.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The account that owns the secrets and the role.
pub const ACCOUNT: &str = "111111111111";
pub const REGION: &str = "us-east-1";
/// AWS's limits, enforced so that a daemon asking for more is caught here.
const BATCH_MAX: usize = 20;
const LIST_MAX: u64 = 100;
const JSON: &str = "application/x-amz-json-1.1";

type Reply = Response<Full<Bytes>>;
/// An AWS error code and message.
type Failure = (&'static str, String);

struct Version {
    id: String,
    value: String,
    created: f64,
}

struct Secret {
    arn: String,
    current: Version,
    previous: Option<Version>,
}

#[derive(Default)]
struct State {
    external_id: String,
    /// By name, so that a ListSecrets `NextToken` is simply the last name listed.
    secrets: BTreeMap<String, Secret>,
    /// Access key id → session token of every session AssumeRole issued.
    sessions: HashMap<String, String>,
    counts: BTreeMap<String, u64>,
    versions: u64,
}

pub struct FakeAws {
    endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeAws {
    /// Serves on a free loopback port; AssumeRole requires `external_id`.
    pub fn start(external_id: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            external_id: external_id.to_owned(),
            ..State::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-aws".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(serve(listener, served, stopped));
            })
            .unwrap();
        FakeAws {
            endpoint,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Creates a secret with one version (AWSCURRENT); returns its ARN. Like every test
    /// secret value, `value` must embed a canary.
    pub fn create(&self, name: &str, value: &str) -> String {
        super::assert_canaried(value);
        let mut state = lock(&self.state);
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(6)
            .collect();
        let arn = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{suffix}");
        let current = state.new_version(value);
        let secret = Secret {
            arn: arn.clone(),
            current,
            previous: None,
        };
        let existed = state.secrets.insert(name.to_owned(), secret).is_some();
        assert!(!existed, "secret {name} exists");
        arn
    }

    /// PutSecretValue: a new AWSCURRENT version; the old one becomes AWSPREVIOUS. Returns
    /// the new version id.
    pub fn rotate(&self, name: &str, value: &str) -> String {
        super::assert_canaried(value);
        let mut state = lock(&self.state);
        let version = state.new_version(value);
        let id = version.id.clone();
        let secret = state.secrets.get_mut(name).expect("no such secret");
        secret.previous = Some(std::mem::replace(&mut secret.current, version));
        id
    }

    /// Requests received for `operation` (e.g. "BatchGetSecretValue"), refused ones included.
    pub fn count(&self, operation: &str) -> u64 {
        lock(&self.state)
            .counts
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.state).counts.clone()
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Typically EMFILE: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Reply {
    let target = header(req.headers(), "x-amz-target").map(str::to_owned);
    let signer = signer(req.headers());
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body = body.unwrap_or_default();
    let mut state = lock(state);
    match target {
        Some(target) => {
            let op = target.trim_start_matches("secretsmanager.");
            *state.counts.entry(op.to_owned()).or_default() += 1;
            let issued = signer.is_some_and(|(key, token)| {
                token.is_some() && state.sessions.get(&key) == token.as_ref()
            });
            let answer = match serde_json::from_slice::<Value>(&body) {
                _ if !issued => Err((
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.".into(),
                )),
                Err(e) => Err(("SerializationException", e.to_string())),
                Ok(input) => state.secrets_manager(op, &input),
            };
            match answer {
                Ok(output) => reply(200, JSON, output.to_string()),
                Err((code, message)) => {
                    let body = json!({"__type": code, "Message": message});
                    let mut error = reply(400, JSON, body.to_string());
                    let code = HeaderValue::from_static(code);
                    error.headers_mut().insert("x-amzn-errortype", code);
                    error
                }
            }
        }
        None => {
            let form = parse_form(&body);
            let field = |name: &str| {
                form.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let action = field("Action").unwrap_or("?");
            *state.counts.entry(action.to_owned()).or_default() += 1;
            match action {
                "AssumeRole" => state.assume_role(
                    field("RoleArn").unwrap_or_default(),
                    field("RoleSessionName").unwrap_or_default(),
                    field("ExternalId"),
                    field("DurationSeconds").and_then(|d| d.parse().ok()),
                ),
                "GetCallerIdentity" => sts_ok(
                    action,
                    "<Arn>arn:aws:iam::123456789012:user/testing</Arn><UserId>AIDAFAKEBASE</UserId><Account>123456789012</Account>",
                ),
                _ => sts_error(400, "InvalidAction", &format!("{action} is not faked")),
            }
        }
    }
}

impl State {
    fn new_version(&mut self, value: &str) -> Version {
        self.versions += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Version {
            id: format!("00000000-0000-4000-8000-{:012x}", self.versions),
            value: value.to_owned(),
            created: now.as_secs_f64(),
        }
    }

    fn assume_role(
        &mut self,
        role_arn: &str,
        session: &str,
        external_id: Option<&str>,
        lifetime: Option<u64>,
    ) -> Reply {
        if role_arn.split(':').nth(4) != Some(ACCOUNT) || external_id != Some(&self.external_id) {
            let message = format!("User: arn:aws:iam::123456789012:user/testing is not authorized to perform: sts:AssumeRole on resource: {role_arn}");
            return sts_error(403, "AccessDenied", &message);
        }
        let expiry = SystemTime::now() + Duration::from_secs(lifetime.unwrap_or(3600));
        let expiration = humantime::format_rfc3339_seconds(expiry);
        let key_id = format!("ASIA{:016X}", fastrand::u64(..));
        let secret_key = format!("fake-aws-secret-key-{:032x}", fastrand::u128(..));
        let token = format!("fake-aws-session-token-{:032x}", fastrand::u128(..));
        // Issued credentials must never show in the daemon's output either.
        super::register_canary(&secret_key);
        super::register_canary(&token);
        self.sessions.insert(key_id.clone(), token.clone());
        let role_name = role_arn.rsplit('/').next().unwrap_or_default();
        sts_ok(
            "AssumeRole",
            &format!(
                "<Credentials><AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret_key}</SecretAccessKey>\
                 <SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
                 <AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}</Arn>\
                 <AssumedRoleId>AROAFAKEROLE:{session}</AssumedRoleId></AssumedRoleUser>"
            ),
        )
    }

    fn secrets_manager(&self, op: &str, input: &Value) -> Result<Value, Failure> {
        match op {
            "GetSecretValue" => self.get_secret_value(input),
            "BatchGetSecretValue" => self.batch_get_secret_value(input),
            "ListSecrets" => self.list_secrets(input),
            _ => Err(("UnknownOperationException", format!("{op} is not faked"))),
        }
    }

    /// A name, a full ARN, or an ARN without the random "-xxxxxx" suffix.
    fn find(&self, id: &str) -> Option<(&String, &Secret)> {
        let Some((_, name)) = id.split_once(":secret:").filter(|_| id.starts_with("arn:")) else {
            return self.secrets.get_key_value(id);
        };
        let without_suffix = name.len().checked_sub(7).and_then(|n| name.get(..n));
        [Some(name), without_suffix]
            .into_iter()
            .flatten()
            .find_map(|n| self.secrets.get_key_value(n))
            .filter(|(_, s)| {
                let rest = s.arn.strip_prefix(id);
                rest.is_some_and(|rest| rest.is_empty() || rest.len() == 7 && rest.starts_with('-'))
            })
    }

    fn get_secret_value(&self, input: &Value) -> Result<Value, Failure> {
        let id = input["SecretId"].as_str().unwrap_or_default();
        let (name, secret) = self.find(id).ok_or_else(|| not_found(id))?;
        let version_id = input["VersionId"].as_str();
        let stage = input["VersionStage"]
            .as_str()
            .or(version_id.is_none().then_some("AWSCURRENT"));
        let versions = [
            (Some(&secret.current), "AWSCURRENT"),
            (secret.previous.as_ref(), "AWSPREVIOUS"),
        ];
        versions
            .into_iter()
            .filter_map(|(version, label)| Some((version?, label)))
            .find(|(v, label)| {
                version_id.is_none_or(|id| v.id == id) && stage.is_none_or(|s| s == *label)
            })
            .map(|(v, label)| value_json(name, secret, v, label))
            .ok_or_else(|| not_found(id))
    }

    fn batch_get_secret_value(&self, input: &Value) -> Result<Value, Failure> {
        let ids = input["SecretIdList"]
            .as_array()
            .ok_or_else(|| invalid("this fake serves SecretIdList only, not Filters".into()))?;
        if ids.is_empty() || ids.len() > BATCH_MAX {
            return Err(invalid(format!("SecretIdList holds 1 to {BATCH_MAX} ids")));
        }
        let (mut values, mut errors) = (Vec::new(), Vec::new());
        for id in ids.iter().map(|id| id.as_str().unwrap_or_default()) {
            match self.find(id) {
                Some((name, s)) => values.push(value_json(name, s, &s.current, "AWSCURRENT")),
                None => errors.push(json!({
                    "SecretId": id,
                    "ErrorCode": "ResourceNotFoundException",
                    "Message": "Secrets Manager can't find the specified secret."
                })),
            }
        }
        Ok(json!({"SecretValues": values, "Errors": errors}))
    }

    fn list_secrets(&self, input: &Value) -> Result<Value, Failure> {
        let max = input["MaxResults"].as_u64().unwrap_or(LIST_MAX);
        if max == 0 || max > LIST_MAX {
            return Err(invalid(format!("MaxResults is 1 to {LIST_MAX}")));
        }
        let (mut prefixes, mut by_tag) = (Vec::new(), false);
        for filter in input["Filters"].as_array().into_iter().flatten() {
            let values = filter["Values"].as_array().into_iter().flatten();
            match filter["Key"].as_str() {
                Some("name") => prefixes.extend(values.filter_map(Value::as_str)),
                Some("tag-key" | "tag-value") => by_tag = true,
                other => return Err(invalid(format!("filter {other:?} is not faked"))),
            }
        }
        let after = input["NextToken"]
            .as_str()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = self
            .secrets
            .range::<str, _>((after, Bound::Unbounded))
            // No secret has tags, so a tag filter matches none.
            .filter(|_| !by_tag)
            .filter(|(name, _)| {
                prefixes.is_empty() || prefixes.iter().any(|p| name.starts_with(p))
            });
        let page: Vec<(&String, &Secret)> = matching.by_ref().take(max as usize).collect();
        let next = matching.next().and(page.last()).map(|(name, _)| name);
        let list: Vec<Value> = page
            .iter()
            .map(|(name, s)| {
                let mut stages = serde_json::Map::new();
                stages.insert(s.current.id.clone(), json!(["AWSCURRENT"]));
                if let Some(previous) = &s.previous {
                    stages.insert(previous.id.clone(), json!(["AWSPREVIOUS"]));
                }
                json!({"ARN": s.arn, "Name": name, "SecretVersionsToStages": stages})
            })
            .collect();
        Ok(json!({"SecretList": list, "NextToken": next}))
    }
}

fn value_json(name: &str, secret: &Secret, version: &Version, stage: &str) -> Value {
    json!({
        "ARN": secret.arn,
        "Name": name,
        "VersionId": version.id,
        "SecretString": version.value,
        "VersionStages": [stage],
        "CreatedDate": version.created,
    })
}

fn invalid(message: String) -> Failure {
    ("InvalidParameterException", message)
}

fn not_found(id: &str) -> Failure {
    let message = format!("Secrets Manager can't find the specified secret: {id}");
    ("ResourceNotFoundException", message)
}

fn reply(status: u16, content_type: &'static str, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    let headers = reply.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    headers.insert("x-amzn-requestid", HeaderValue::from_static("fake-aws"));
    reply
}

const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn sts_ok(action: &str, result: &str) -> Reply {
    let body = format!(
        "<{action}Response xmlns=\"{STS_XMLNS}\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>fake-aws</RequestId></ResponseMetadata></{action}Response>"
    );
    reply(200, "text/xml", body)
}

fn sts_error(status: u16, code: &str, message: &str) -> Reply {
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>fake-aws</RequestId></ErrorResponse>"
    );
    reply(status, "text/xml", body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The SigV4 access key id (`Credential=<id>/...`) and the session token of a request.
fn signer(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let auth = header(headers, "authorization")?;
    let key = auth.split("Credential=").nth(1)?.split('/').next()?;
    let token = header(headers, "x-amz-security-token").map(str::to_owned);
    Some((key.to_owned(), token))
}

/// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let mut out = Vec::with_capacity(s.len());
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
                }
                b => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let body = String::from_utf8_lossy(body);
    let pairs = body.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
