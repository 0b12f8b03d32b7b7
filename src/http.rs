//! The small HTTP/1 server loop shared by the admin server and the credentials endpoint.

use crate::shutdown::Signal;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Probes, scrapers and SDKs send tiny requests; a slow client must not pin a connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `handle` on every connection accepted from `listener` until `shutdown` fires.
/// `name` only labels log lines.
pub async fn serve<H, F>(listener: TcpListener, mut shutdown: Signal, name: &'static str, handle: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!("{name}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = handle(req, peer);
                async move { Ok::<_, std::convert::Infallible>(response.await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "{name}: connection ended: {e}");
            }
        });
    }
}
