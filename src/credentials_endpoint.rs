//! The AWS container-credentials endpoint: hands a role's current credentials to an app
//! container whose AWS SDK is pointed here with `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, so the app uses the cross-account role
//! without holding any credential of its own.

use crate::secret::Sensitive;
use crate::shutdown::Signal;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const PATH_PREFIX: &str = "/v1/credentials/";

/// A role's credentials as handed to an app.
#[derive(Clone)]
pub struct RoleCredentials {
    pub role: String,
    pub access_key_id: String,
    pub secret_access_key: Sensitive<String>,
    pub session_token: Sensitive<String>,
    pub expires_at: SystemTime,
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role", &self.role)
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where the endpoint looks up a role's current credentials; `None` when the role has
/// none (yet, or any more).
pub trait CredentialSource: Send + Sync + 'static {
    fn current(&self, role: &str) -> Option<RoleCredentials>;
}

pub struct CredentialsEndpoint<S> {
    source: Arc<S>,
    roles: Arc<BTreeSet<String>>,
    token_file: Arc<PathBuf>,
}

impl<S> Clone for CredentialsEndpoint<S> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            roles: self.roles.clone(),
            token_file: self.token_file.clone(),
        }
    }
}

impl<S: CredentialSource> CredentialsEndpoint<S> {
    pub fn new(
        source: Arc<S>,
        roles: impl IntoIterator<Item = String>,
        token_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            source,
            roles: Arc::new(roles.into_iter().collect()),
            token_file: Arc::new(token_file.into()),
        }
    }

    /// Binds now, so that a bad address fails at start-up rather than in a task.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    /// Serves until `shutdown` fires.
    pub async fn serve(self, listener: TcpListener, mut shutdown: Signal) {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!("credentials endpoint accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.wait() => return,
            };
            let endpoint = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let endpoint = endpoint.clone();
                    async move { Ok::<_, std::convert::Infallible>(endpoint.answer(&req).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("credentials endpoint connection ended: {e}");
                }
            });
        }
    }

    async fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                message("only GET is supported"),
            );
        }
        // The token is checked before anything else, so that an unauthenticated caller
        // learns nothing about which roles exist.
        let expected = match tokio::fs::read_to_string(self.token_file.as_path()).await {
            Ok(text) if !text.trim().is_empty() => Sensitive::new(text.trim().to_owned()),
            Ok(_) | Err(_) => {
                tracing::warn!(
                    token_file = %self.token_file.display(),
                    "credentials endpoint: the token file is missing or empty; refusing every request"
                );
                return json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    message(&format!(
                        "the endpoint's token file {} cannot be read",
                        self.token_file.display()
                    )),
                );
            }
        };
        let presented = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(presented, expected.expose().as_bytes()) {
            tracing::debug!(
                "credentials endpoint: refused a request with a missing or wrong token"
            );
            return json(
                StatusCode::UNAUTHORIZED,
                message("missing or wrong Authorization token"),
            );
        }
        let role = req
            .uri()
            .path()
            .strip_prefix(PATH_PREFIX)
            .unwrap_or_default();
        if !self.roles.contains(role) {
            return json(
                StatusCode::NOT_FOUND,
                message("not found; credentials are served at /v1/credentials/<role> for the configured roles"),
            );
        }
        match self.source.current(role) {
            Some(c) if c.expires_at > SystemTime::now() => json(StatusCode::OK, body(&c)),
            _ => json(
                StatusCode::SERVICE_UNAVAILABLE,
                message("no valid credentials for this role yet; see the secret-ferry log"),
            ),
        }
    }
}

/// Compares without stopping at the first differing byte, so that response timing does
/// not reveal how much of a guessed token was right. The length is not hidden: it says
/// nothing about the content of a random token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn body(c: &RoleCredentials) -> String {
    serde_json::json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose(),
        "Token": c.session_token.expose(),
        "Expiration": humantime::format_rfc3339_seconds(c.expires_at).to_string(),
    })
    .to_string()
}

fn message(text: &str) -> String {
    serde_json::json!({ "message": text }).to_string()
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    // Credentials must not outlive their expiry in some cache on the way.
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fixed(Option<RoleCredentials>);

    impl CredentialSource for Fixed {
        fn current(&self, _: &str) -> Option<RoleCredentials> {
            self.0.clone()
        }
    }

    fn creds(expires_in: i64) -> RoleCredentials {
        let now = SystemTime::now();
        let expires_at = if expires_in >= 0 {
            now + Duration::from_secs(expires_in.unsigned_abs())
        } else {
            now - Duration::from_secs(expires_in.unsigned_abs())
        };
        RoleCredentials {
            role: "shared".into(),
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Sensitive::new("canary-secret-key".into()),
            session_token: Sensitive::new("canary-session-token".into()),
            expires_at,
        }
    }

    async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: {t}\r\n"))
            .unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        stream.read_to_string(&mut resp).await.unwrap();
        let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, resp)
    }

    async fn start(source: Fixed, token_file: PathBuf) -> (SocketAddr, crate::shutdown::Trigger) {
        let listener = CredentialsEndpoint::<Fixed>::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = crate::shutdown::channel();
        let endpoint =
            CredentialsEndpoint::new(Arc::new(source), ["shared".to_owned()], token_file);
        tokio::spawn(endpoint.serve(listener, signal));
        (addr, trigger)
    }

    #[tokio::test]
    async fn serves_the_container_credentials_format_to_the_right_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "canary-endpoint-token\n").unwrap();
        let (addr, trigger) = start(Fixed(Some(creds(600))), token_file.clone()).await;
        let path = "/v1/credentials/shared";

        let (status, resp) = request(addr, "GET", path, Some("canary-endpoint-token")).await;
        assert_eq!(status, 200, "{resp}");
        assert!(
            resp.contains("application/json") && resp.contains("no-store"),
            "{resp}"
        );
        let body: serde_json::Value =
            serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(body["SecretAccessKey"], "canary-secret-key");
        assert_eq!(body["Token"], "canary-session-token");
        let expiration = body["Expiration"].as_str().unwrap();
        assert!(
            expiration.ends_with('Z') && humantime::parse_rfc3339(expiration).is_ok(),
            "{expiration}"
        );

        for token in [
            None,
            Some("wrong"),
            Some("canary-endpoint-toke"),
            Some("canary-endpoint-token-"),
        ] {
            let (status, resp) = request(addr, "GET", path, token).await;
            assert_eq!(status, 401, "{token:?}");
            assert!(!resp.contains("canary-secret-key") && !resp.contains("canary-endpoint-token"));
        }
        // Unauthenticated callers cannot probe for roles.
        assert_eq!(
            request(addr, "GET", "/v1/credentials/other", None).await.0,
            401
        );
        assert_eq!(
            request(
                addr,
                "GET",
                "/v1/credentials/other",
                Some("canary-endpoint-token")
            )
            .await
            .0,
            404
        );
        assert_eq!(
            request(addr, "GET", "/", Some("canary-endpoint-token"))
                .await
                .0,
            404
        );
        assert_eq!(
            request(addr, "POST", path, Some("canary-endpoint-token"))
                .await
                .0,
            405
        );

        // Rotation takes effect on the next request.
        std::fs::write(&token_file, "rotated-token").unwrap();
        assert_eq!(
            request(addr, "GET", path, Some("canary-endpoint-token"))
                .await
                .0,
            401
        );
        assert_eq!(
            request(addr, "GET", path, Some("rotated-token")).await.0,
            200
        );

        // No token file: nothing is served, and the path is named.
        std::fs::remove_file(&token_file).unwrap();
        let (status, resp) = request(addr, "GET", path, Some("rotated-token")).await;
        assert_eq!(status, 500);
        assert!(resp.contains(&token_file.display().to_string()), "{resp}");
        trigger.fire();
    }

    #[tokio::test]
    async fn expired_or_missing_credentials_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "t0ken").unwrap();
        for source in [Fixed(None), Fixed(Some(creds(-1)))] {
            let (addr, trigger) = start(source, token_file.clone()).await;
            let (status, resp) =
                request(addr, "GET", "/v1/credentials/shared", Some("t0ken")).await;
            assert_eq!(status, 503, "{resp}");
            assert!(!resp.contains("canary-secret-key"));
            trigger.fire();
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn debug_hides_the_secret_parts() {
        let shown = format!("{:?}", creds(1));
        assert!(shown.contains("ASIAEXAMPLE"));
        assert!(!shown.contains("canary-secret-key") && !shown.contains("canary-session-token"));
    }
}
