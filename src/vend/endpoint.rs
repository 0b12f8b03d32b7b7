//! The AWS container-credentials endpoint: hands a role's current credentials to an app
//! container whose AWS SDK is pointed here with `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! (`http://127.0.0.1:<port>/v1/credentials/<role>`) and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, so the app uses the cross-account role without
//! holding any long-lived credential of its own.
//!
//! Every request must carry the token from the token file in its `Authorization` header.
//! The token is checked before anything about roles is looked at, so an unauthenticated
//! caller cannot even learn which roles exist.

use crate::credentials::{CredentialSource, RoleCredentials};
use crate::secret::Sensitive;
use crate::shutdown::Signal;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::net::TcpListener;

const PATH_PREFIX: &str = "/v1/credentials/";

pub struct CredentialsEndpoint<S> {
    source: Arc<S>,
    roles: Arc<BTreeSet<String>>,
    token_file: Arc<PathBuf>,
}

// Not derived: a derive would demand `S: Clone`, and only the `Arc` is cloned.
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
    pub async fn serve(self, listener: TcpListener, shutdown: Signal) {
        crate::http::serve(
            listener,
            shutdown,
            "credentials endpoint",
            move |req, peer| {
                let endpoint = self.clone();
                async move { endpoint.answer(&req, peer).await }
            },
        )
        .await;
    }

    async fn answer(&self, req: &Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            tracing::debug!(%peer, method = %req.method(), "credentials request refused: method not allowed");
            let mut resp = json(
                StatusCode::METHOD_NOT_ALLOWED,
                message("only GET is supported"),
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return resp;
        }

        // Re-read on every request, so that a rotated token takes effect at once and the
        // old one stops working at once.
        let expected = match tokio::fs::read(self.token_file.as_path()).await {
            Ok(bytes) if !bytes.trim_ascii().is_empty() => {
                Sensitive::new(bytes.trim_ascii().to_vec())
            }
            Ok(_) => return self.token_file_problem(peer, "is empty", None),
            Err(e) => return self.token_file_problem(peer, "cannot be read", Some(e)),
        };
        let Some(presented) = req.headers().get(AUTHORIZATION) else {
            tracing::debug!(%peer, "credentials request refused: no Authorization header");
            return unauthorized();
        };
        if !constant_time_eq(presented.as_bytes(), expected.expose()) {
            tracing::debug!(%peer, "credentials request refused: wrong Authorization token");
            return unauthorized();
        }

        let path = req.uri().path();
        let role = match path.strip_prefix(PATH_PREFIX) {
            Some(role) if self.roles.contains(role) => role,
            _ => {
                // The caller holds the token, so echoing its own path back is safe.
                tracing::debug!(%peer, path, "credentials request refused: not a configured role's path");
                return json(
                    StatusCode::NOT_FOUND,
                    message(&format!(
                        "not found; credentials are served at {PATH_PREFIX}<role> for the roles this endpoint is configured with"
                    )),
                );
            }
        };

        let Some(creds) = self.source.current(role) else {
            tracing::warn!(%peer, role, "credentials request not served: the role has no credentials yet");
            return unavailable("has no credentials yet");
        };
        // The source may hand out a snapshot that lapsed a moment ago; an SDK given
        // expired credentials would fail every call until its next refresh.
        if !is_current(&creds, SystemTime::now()) {
            tracing::warn!(%peer, role, "credentials request not served: the role's credentials have expired");
            return unavailable("has only expired credentials");
        }
        let Some(expiration) = creds.expiration_rfc3339() else {
            tracing::warn!(%peer, role, "credentials request not served: the expiry time cannot be formatted");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                message("the role's credentials have an expiry time that cannot be formatted"),
            );
        };
        tracing::debug!(%peer, role, access_key_id = %creds.access_key_id, %expiration, "credentials served");
        json(StatusCode::OK, body(&creds, &expiration))
    }

    /// Nothing is served without a token to compare with; the response names the file so
    /// the operator can fix it, but never shows what it holds.
    fn token_file_problem(
        &self,
        peer: SocketAddr,
        problem: &str,
        error: Option<std::io::Error>,
    ) -> Response<Full<Bytes>> {
        let path = self.token_file.display();
        match &error {
            Some(e) => {
                tracing::warn!(%peer, token_file = %path, "credentials request not served: the token file {problem}: {e}")
            }
            None => {
                tracing::warn!(%peer, token_file = %path, "credentials request not served: the token file {problem}")
            }
        }
        json(
            StatusCode::INTERNAL_SERVER_ERROR,
            message(&format!(
                "the endpoint's token file {path} {problem}; see the secret-ferry log"
            )),
        )
    }
}

/// `expires_at == now` counts as expired: the credentials would be dead on arrival.
fn is_current(creds: &RoleCredentials, now: SystemTime) -> bool {
    creds.expires_at > now
}

/// Compares every byte even after a difference, so that response timing does not reveal
/// how much of a guessed token was right. A length mismatch returns early: that reveals
/// only the token's length, which for a random token says nothing about its content and
/// shortens no search.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

fn unauthorized() -> Response<Full<Bytes>> {
    json(
        StatusCode::UNAUTHORIZED,
        message("missing or wrong Authorization token"),
    )
}

fn unavailable(why: &str) -> Response<Full<Bytes>> {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        message(&format!(
            "this role {why}; secret-ferry is refreshing it, see its log"
        )),
    )
}

fn body(c: &RoleCredentials, expiration: &str) -> String {
    serde_json::json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose(),
        "Token": c.session_token.expose(),
        "Expiration": expiration,
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
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Credentials must not outlive their expiry in some cache on the way, and an error
    // must not be replayed once the role has recovered.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests;
