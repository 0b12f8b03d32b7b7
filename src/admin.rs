//! The admin HTTP server: `/metrics`, `/healthz` (the process is alive), `/readyz`
//! (every secret has synced, none is too stale, no role credential has lapsed) and
//! `POST /refresh[?secret=NAME]` (sync now instead of at the next interval).

use crate::health::{Readiness, RefreshHandle};
use crate::metrics::Metrics;
use crate::shutdown::Signal;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct Admin {
    metrics: Metrics,
    readiness: Arc<Readiness>,
    refresh: RefreshHandle,
}

impl Admin {
    pub fn new(metrics: Metrics, readiness: Arc<Readiness>, refresh: RefreshHandle) -> Self {
        Self {
            metrics,
            readiness,
            refresh,
        }
    }

    /// Binds now, so that a bad `--listen` fails at start-up rather than in a task.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    /// Serves until `shutdown` fires.
    pub async fn serve(self, listener: TcpListener, shutdown: Signal) {
        crate::http::serve(listener, shutdown, "admin server", move |req, _| {
            let response = self.route(&req);
            async move { response }
        })
        .await;
    }

    fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() == "/refresh" {
            return self.refresh(req);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is supported\n".into(),
            );
        }
        match req.uri().path() {
            "/metrics" => match self.metrics.render() {
                Ok(body) => {
                    let mut resp = text(StatusCode::OK, body);
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            "text/plain; version=0.0.4; charset=utf-8",
                        ),
                    );
                    resp
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode metrics: {e}\n"),
                ),
            },
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.readiness.status() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }
}

impl Admin {
    fn refresh(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST /refresh or POST /refresh?secret=NAME\n".into(),
            );
        }
        // Secret names are [A-Za-z0-9_.-], so no percent-decoding is needed.
        let secret = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("secret="));
        match secret {
            None => {
                self.refresh.all();
                tracing::info!("refresh of every secret requested over HTTP");
                text(
                    StatusCode::ACCEPTED,
                    "refresh requested for every secret\n".into(),
                )
            }
            Some(name) if self.refresh.one(name) => {
                tracing::info!(secret = %name, "refresh requested over HTTP");
                text(
                    StatusCode::ACCEPTED,
                    format!("refresh requested for secret '{name}'\n"),
                )
            }
            Some(_) => text(
                StatusCode::NOT_FOUND,
                "no configured secret has that name\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        request(addr, "GET", path).await
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        stream.read_to_string(&mut resp).await.unwrap();
        let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, resp)
    }

    #[tokio::test]
    async fn routes_and_readiness() {
        let metrics = Metrics::new().unwrap();
        metrics.register_secret("db", std::time::Duration::from_secs(60));
        let readiness = Arc::new(Readiness::new(["db".to_owned()], None, || None));
        let listener = Admin::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = crate::shutdown::channel();
        let refresh = RefreshHandle::default();
        let server =
            tokio::spawn(Admin::new(metrics, readiness.clone(), refresh).serve(listener, signal));

        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503, "not ready before the first sync: {body}");
        assert!(body.contains("1 secret(s) not synced"), "{body}");
        readiness.synced("db");
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("text/plain; version=0.0.4"), "{body}");
        assert!(
            body.contains(r#"secret_ferry_secret_sync_total{result="success",secret="db"} 0"#),
            "{body}"
        );
        assert_eq!(get(addr, "/nope").await.0, 404);
        assert_eq!(request(addr, "POST", "/refresh").await.0, 202);
        assert_eq!(request(addr, "POST", "/refresh?secret=nope").await.0, 404);
        assert_eq!(get(addr, "/refresh").await.0, 405);
        assert_eq!(request(addr, "POST", "/metrics").await.0, 405);
        readiness.start_draining();
        assert_eq!(get(addr, "/readyz").await.0, 503, "unready while draining");

        trigger.fire();
        server.await.unwrap();
    }
}
