//! The HTTP/1.1 side: decode a request, log it, apply faults, dispatch, encode the reply
//! (a JSON body, or a streamed body for watches).

use super::api::{self, Call, Reply, Route};
use super::state::State;
use super::status::ApiError;
use super::{lock, watch, Request};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

type Body = BoxBody<Bytes, Infallible>;

/// Watch events buffered per response before the producer waits for the client.
const WATCH_BUFFER: usize = 64;

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Mutex<State>>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(Arc::clone(&shared), request));
            // A client hanging up mid-request only ends its own connection.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    shared: Arc<Mutex<State>>,
    request: hyper::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let call = decode(request).await;
    let id = log_request(&shared, &call);
    let (response, status) = answer(&shared, &call).await;
    if let Some(entry) = lock(&shared).log.iter_mut().find(|(i, _)| *i == id) {
        entry.1.status = status;
    }
    Ok(response)
}

async fn decode(request: hyper::Request<Incoming>) -> Call {
    let (parts, body) = request.into_parts();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Call {
        method: parts.method.as_str().to_string(),
        route: api::route(parts.uri.path()),
        params: parse_query(parts.uri.query().unwrap_or("")),
        content_type: header(CONTENT_TYPE),
        user_agent: header(USER_AGENT),
        body,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding, as kube encodes query parameters.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (other, _) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn target_of(call: &Call) -> (Option<String>, Option<String>) {
    match &call.route {
        Route::Resource(t) => (t.namespace.clone(), t.name.clone()),
        _ => (None, None),
    }
}

fn log_request(shared: &Mutex<State>, call: &Call) -> u64 {
    let (namespace, name) = target_of(call);
    let request = Request {
        verb: call.verb(),
        method: call.method.clone(),
        path: call.path.clone(),
        query: call.query.clone(),
        resource: call.resource().to_string(),
        namespace,
        name,
        content_type: Some(call.content_type.clone()).filter(|c| !c.is_empty()),
        status: 0,
        field_manager: call.param("fieldManager").map(str::to_string),
    };
    let mut state = lock(shared);
    state.request_ids += 1;
    let id = state.request_ids;
    state.log.push((id, request));
    id
}

/// What an injected fault does to one request.
struct Hit {
    status: u16,
    delay: Option<Duration>,
    retry_after: Option<u64>,
}

fn take_fault(shared: &Mutex<State>, verb: &str, resource: &str) -> Option<Hit> {
    let fault = crate::common::fault::take(&mut lock(shared).faults, verb, Some(resource), None)?;
    Some(Hit {
        status: fault.status,
        delay: fault.delay,
        retry_after: fault.retry_after,
    })
}

async fn answer(shared: &Arc<Mutex<State>>, call: &Call) -> (Response<Body>, u16) {
    if let Some(hit) = take_fault(shared, &call.verb(), call.resource()) {
        if let Some(delay) = hit.delay {
            tokio::time::sleep(delay).await;
        }
        if hit.status != 0 {
            return failure(&injected(call, &hit));
        }
    }
    let reply = api::handle(&mut lock(shared), call);
    match reply {
        Ok(Reply::Json(code, body)) => (json(code, &body), code),
        Ok(Reply::Watch(plan)) => {
            let (events, receiver) = mpsc::channel(WATCH_BUFFER);
            tokio::spawn(watch::stream(Arc::clone(shared), plan, events));
            let mut response = Response::new(ChannelBody(receiver).boxed());
            set_json(&mut response);
            (response, 200)
        }
        Err(error) => failure(&error),
    }
}

fn injected(call: &Call, hit: &Hit) -> ApiError {
    let Route::Resource(target) = &call.route else {
        return ApiError::injected(hit.status, None, "", hit.retry_after);
    };
    let name = target.name.clone().unwrap_or_else(|| api::body_name(call));
    if hit.status == 403 {
        let namespace = api::rbac_namespace(target);
        return ApiError::forbidden(
            target.kind,
            target.name.as_deref(),
            &call.verb(),
            namespace.as_deref(),
        );
    }
    ApiError::injected(hit.status, Some(target.kind), &name, hit.retry_after)
}

fn set_json(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
}

fn json(code: u16, body: &serde_json::Value) -> Response<Body> {
    let bytes = Bytes::from(body.to_string());
    let mut response = Response::new(Full::new(bytes).boxed());
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_json(&mut response);
    response
}

fn failure(error: &ApiError) -> (Response<Body>, u16) {
    let mut response = json(error.code, &error.body());
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    (response, error.code)
}

/// A response body fed by a watch task.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
