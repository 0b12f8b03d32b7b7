//! A small recording, fault-injecting HTTP/1.1 proxy for the integration tests.
//!
//! It sits on loopback between an AWS client (the daemon or an SDK client) and the
//! `moto` server. Every request is recorded (with its AWS operation and the SigV4
//! access key id); requests whose operation matches an injected [`Fault`] are answered
//! by the proxy itself, everything else is forwarded to the upstream on a fresh
//! connection (`Connection: close`) and the response relayed with a `Content-Length`
//! and keep-alive semantics towards the client.
//!
//! Only `std` is used: one accept thread, one thread per client connection.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Read/write timeout on every socket, so that no thread blocks forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for connecting to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest accepted request/status/header line (bytes, including CRLF).
const MAX_LINE: u64 = 64 * 1024;
/// Most header lines accepted in one message.
const MAX_HEADERS: usize = 256;
/// Largest accepted body (request or response).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Headers that are never copied from one hop to the next.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// One request as the proxy received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// AWS operation: `X-Amz-Target` after the last `.`, else the form's `Action`, else `"?"`.
    pub operation: String,
    pub method: String,
    /// The raw request target (path plus query string, if any).
    pub path: String,
    /// Headers in arrival order, names as sent by the client.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it was sent chunked).
    pub body: Vec<u8>,
    /// Decoded form fields when the body is `application/x-www-form-urlencoded`.
    pub form: Vec<(String, String)>,
    /// From the SigV4 `Authorization` header: `Credential=<AKID>/...`.
    pub access_key_id: Option<String>,
}

impl Recorded {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// First form field with this name (case-sensitive, as AWS does).
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub use super::fault::Fault;

/// An STS (query protocol) error for `AssumeRole`, in the real STS XML format.
pub fn sts_error(code: &str, message: &str, status: u16) -> Fault {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error>\
         <RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(message),
        request_id()
    );
    Fault::aws("AssumeRole", status, "text/xml", &body)
}

/// A JSON-protocol error (Secrets Manager format) for `operation`.
pub fn json_error(operation: &str, code: &str, message: &str, status: u16) -> Fault {
    let body = format!(
        "{{\"__type\":\"{}\",\"message\":\"{}\"}}",
        json_escape(code),
        json_escape(message)
    );
    Fault::aws(operation, status, "application/x-amz-json-1.1", &body)
}

/// Rewrites the body of an upstream response (for example to shorten a credential's life).
pub type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

struct Shared {
    upstream: SocketAddr,
    records: Mutex<Vec<Recorded>>,
    faults: Mutex<Vec<Fault>>,
    rewrites: Mutex<Vec<(String, Rewrite)>>,
    /// While set, every connection is closed as soon as it is accepted: the endpoint is down.
    down: AtomicBool,
}

/// The running proxy; stops accepting (and frees its port) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on `127.0.0.1:0` and forward to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("proxy: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy: no local address: {e}"));
        let shared = Arc::new(Shared {
            upstream,
            records: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            rewrites: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(format!("proxy-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared, stop))
                .unwrap_or_else(|e| panic!("proxy: cannot spawn accept thread: {e}"))
        };
        Proxy {
            addr,
            shared,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Add a fault; the first matching active fault (insertion order) wins.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Rewrite the body of every upstream response to `operation` (`"*"`: all).
    pub fn rewrite(&self, operation: &str, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        lock(&self.shared.rewrites).push((operation.to_string(), Arc::new(f)));
    }

    pub fn clear_rewrites(&self) {
        lock(&self.shared.rewrites).clear();
    }

    /// Takes the endpoint down (connections are accepted and closed at once, before any
    /// byte is read) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// A copy of every request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.records).clone()
    }

    /// A copy of the recorded requests for one operation.
    pub fn requests_for(&self, operation: &str) -> Vec<Recorded> {
        lock(&self.shared.records)
            .iter()
            .filter(|r| r.operation == operation)
            .cloned()
            .collect()
    }

    /// How many requests for `operation` were recorded.
    pub fn count(&self, operation: &str) -> usize {
        lock(&self.shared.records)
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// Poll until `count(operation) >= n`; false on timeout.
    pub fn wait_for_count(&self, operation: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(operation) >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn reset_records(&self) {
        lock(&self.shared.records).clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock `accept`; the accept thread then drops the listener.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).is_ok();
        if let Some(handle) = self.acceptor.take() {
            if woke {
                let _ = handle.join();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                if shared.down.load(Ordering::SeqCst) {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                let shared = Arc::clone(&shared);
                // If the thread cannot be spawned the stream is dropped (closed).
                let _ = thread::Builder::new()
                    .name("proxy-conn".to_string())
                    .spawn(move || serve_client(stream, &shared));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

enum ReadError {
    /// I/O failure, timeout or truncated message: just close.
    Io,
    /// Malformed message: answer 400 (client side) / 502 (upstream side).
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

fn bad(msg: &str) -> ReadError {
    ReadError::Bad(msg.to_string())
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

fn serve_client(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(request)) => request,
            Ok(None) | Err(ReadError::Io) => break,
            Err(ReadError::Bad(msg)) => {
                let _ = writer.write_all(&simple_response(400, &msg, false));
                let _ = writer.flush();
                break;
            }
        };
        // A down endpoint also drops the connections a client pooled before it went down.
        if shared.down.load(Ordering::SeqCst) {
            break;
        }
        let keep_alive = request.keep_alive;
        let response = handle(shared, request);
        if writer
            .write_all(&response)
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
        if !keep_alive {
            break;
        }
    }
    lingering_close(&mut writer, &mut reader);
}

/// Half-close, then drain briefly so unread input does not turn our close into a
/// reset that could destroy the last response before the client reads it.
fn lingering_close(writer: &mut TcpStream, reader: &mut BufReader<TcpStream>) {
    let _ = writer.shutdown(Shutdown::Write);
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    while drained < 1024 * 1024 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// `Ok(None)` on a clean EOF between requests.
fn read_request<R: BufRead>(
    reader: &mut R,
    writer: &mut TcpStream,
) -> Result<Option<Request>, ReadError> {
    // Robustness: ignore empty lines before the request line.
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let line = String::from_utf8(line).map_err(|_| bad("request line is not UTF-8"))?;
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None)
            if is_token(m) && !t.is_empty() && (v == "HTTP/1.1" || v == "HTTP/1.0") =>
        {
            (m.to_string(), t.to_string(), v.to_string())
        }
        _ => return Err(bad("malformed request line")),
    };
    if target.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(bad("malformed request target"));
    }
    let headers = read_headers(reader)?;

    let connection = header_tokens(&headers, "connection");
    let keep_alive = if connection.iter().any(|t| t == "close") {
        false
    } else if version == "HTTP/1.0" {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        true
    };

    let expect_continue = find_header(&headers, "expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && version == "HTTP/1.1";
    let body = match body_framing(&headers)? {
        Framing::Chunked => {
            continue_if_expected(writer, expect_continue)?;
            read_chunked(reader)?
        }
        Framing::Length(0) | Framing::None => Vec::new(),
        Framing::Length(n) => {
            continue_if_expected(writer, expect_continue)?;
            read_exact_body(reader, n)?
        }
        Framing::UntilEof => return Err(bad("unsupported Transfer-Encoding")),
    };
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        keep_alive,
    }))
}

fn continue_if_expected(writer: &mut TcpStream, expected: bool) -> Result<(), ReadError> {
    if expected {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    Ok(())
}

fn handle(shared: &Shared, request: Request) -> Vec<u8> {
    let form = if is_form(&request.headers) {
        parse_form(&request.body)
    } else {
        Vec::new()
    };
    let operation = detect_operation(&request.headers, &form);
    let access_key_id = access_key_id(&request.headers, &request.target);
    lock(&shared.records).push(Recorded {
        operation: operation.clone(),
        method: request.method.clone(),
        path: request.target.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
        form,
        access_key_id,
    });

    let region = find_header(&request.headers, "authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(2))
        .map(str::to_owned);
    if let Some(fault) = take_fault(shared, &operation, region.as_deref()) {
        if let Some(delay) = fault.delay {
            thread::sleep(delay);
        }
        return fault_response(&fault, request.keep_alive);
    }
    let rewrite = lock(&shared.rewrites)
        .iter()
        .find(|(op, _)| op == &operation || op == "*")
        .map(|(_, f)| Arc::clone(f));
    match forward(shared.upstream, &request, rewrite) {
        Ok(response) => response,
        Err(msg) => simple_response(502, &format!("proxy: {msg}"), request.keep_alive),
    }
}

/// The first active fault for `operation` (decremented; removed when used up).
fn take_fault(shared: &Shared, operation: &str, region: Option<&str>) -> Option<Fault> {
    super::fault::take(&mut lock(&shared.faults), operation, None, region)
}

fn fault_response(fault: &Fault, keep_alive: bool) -> Vec<u8> {
    let Some(body) = &fault.body else {
        return simple_response(fault.status, "proxy: injected fault", keep_alive);
    };
    let retry_after = fault
        .retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.text.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nx-amzn-RequestId: {}\r\n{retry_after}Connection: {}\r\n\r\n",
            fault.status,
            reason(fault.status),
            body.content_type,
            body.text.len(),
            request_id(),
            connection_value(keep_alive),
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.text.as_bytes());
    out
}

fn simple_response(status: u16, message: &str, keep_alive: bool) -> Vec<u8> {
    let body = format!("{message}\n");
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{}",
        status,
        reason(status),
        body.len(),
        connection_value(keep_alive),
        body
    )
    .into_bytes()
}

fn connection_value(keep_alive: bool) -> &'static str {
    if keep_alive {
        "keep-alive"
    } else {
        "close"
    }
}

// ---------------------------------------------------------------------------
// Upstream side
// ---------------------------------------------------------------------------

/// Send `request` on a new connection and build the response for the client.
fn forward(
    upstream: SocketAddr,
    request: &Request,
    rewrite: Option<Rewrite>,
) -> Result<Vec<u8>, String> {
    let stream = TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to upstream {upstream}: {e}"))?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);

    let mut out = Vec::with_capacity(1024 + request.body.len());
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", request.method, request.target).as_bytes());
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower) || matches!(lower.as_str(), "host" | "content-length" | "expect") {
            continue;
        }
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    // The client's Host is kept: it is part of the SigV4 signature, and moto's auth mode
    // checks signatures.
    let host = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or_else(|| upstream.to_string(), |(_, value)| value.clone());
    out.extend_from_slice(
        format!(
            "Host: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            request.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&request.body);

    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("upstream socket: {e}"))?;
    writer
        .write_all(&out)
        .and_then(|()| writer.flush())
        .map_err(|e| format!("cannot send to upstream: {e}"))?;

    let mut reader = BufReader::new(stream);
    let upstream_error = |e: ReadError| match e {
        ReadError::Io => "upstream closed or timed out mid-response".to_string(),
        ReadError::Bad(msg) => format!("bad upstream response: {msg}"),
    };
    // Skip interim (1xx) responses, except 101 which we relay as is.
    let (status, status_reason, headers) = loop {
        let head = read_response_head(&mut reader).map_err(upstream_error)?;
        if (100..200).contains(&head.0) && head.0 != 101 {
            continue;
        }
        break head;
    };
    let bodiless = request.method.eq_ignore_ascii_case("HEAD")
        || status == 204
        || status == 304
        || (100..200).contains(&status);
    let body = if bodiless {
        Vec::new()
    } else {
        match body_framing(&headers).map_err(upstream_error)? {
            Framing::Chunked => read_chunked(&mut reader).map_err(upstream_error)?,
            Framing::Length(n) => read_exact_body(&mut reader, n).map_err(upstream_error)?,
            Framing::None | Framing::UntilEof => {
                let mut body = Vec::new();
                reader
                    .by_ref()
                    .take(MAX_BODY + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| format!("reading upstream body: {e}"))?;
                if body.len() as u64 > MAX_BODY {
                    return Err("upstream body too large".to_string());
                }
                body
            }
        }
    };
    let _ = writer.shutdown(Shutdown::Both);
    harvest_canaries(&body);
    let body = match rewrite {
        Some(f) => f(&String::from_utf8_lossy(&body)).into_bytes(),
        None => body,
    };

    let mut response = Vec::with_capacity(1024 + body.len());
    response.extend_from_slice(format!("HTTP/1.1 {status} {status_reason}\r\n").as_bytes());
    for (name, value) in &headers {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower) || (lower == "content-length" && !bodiless) {
            continue;
        }
        response.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !bodiless {
        response.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    response.extend_from_slice(
        format!(
            "Connection: {}\r\n\r\n",
            connection_value(request.keep_alive)
        )
        .as_bytes(),
    );
    response.extend_from_slice(&body);
    Ok(response)
}

type ResponseHead = (u16, String, Vec<(String, String)>);

fn read_response_head<R: BufRead>(reader: &mut R) -> Result<ResponseHead, ReadError> {
    let line = read_line(reader)?.ok_or(ReadError::Io)?;
    let line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let status_reason = parts.next().unwrap_or_default().trim().to_string();
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("malformed status line"));
    }
    let status: u16 = code.parse().map_err(|_| bad("malformed status code"))?;
    let headers = read_headers(reader)?;
    Ok((status, status_reason, headers))
}

// ---------------------------------------------------------------------------
// HTTP message parsing
// ---------------------------------------------------------------------------

/// One line without its CRLF (or bare LF); `Ok(None)` on EOF before any byte.
fn read_line<R: BufRead>(reader: &mut R) -> Result<Option<Vec<u8>>, ReadError> {
    let mut buf = Vec::new();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE {
            bad("line too long")
        } else {
            ReadError::Io
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

fn read_headers<R: BufRead>(reader: &mut R) -> Result<Vec<(String, String)>, ReadError> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or(ReadError::Io)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let line = String::from_utf8_lossy(&line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("header line without ':'"));
        };
        if !is_token(name) {
            return Err(bad("malformed header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

enum Framing {
    Chunked,
    Length(u64),
    /// No framing headers at all.
    None,
    /// A transfer coding other than chunked last: delimited by EOF.
    UntilEof,
}

fn body_framing(headers: &[(String, String)]) -> Result<Framing, ReadError> {
    let codings = header_tokens(headers, "transfer-encoding");
    if let Some(last) = codings.last() {
        return Ok(if last == "chunked" {
            Framing::Chunked
        } else {
            Framing::UntilEof
        });
    }
    let mut length: Option<u64> = None;
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("malformed Content-Length"));
            }
            let n: u64 = part.parse().map_err(|_| bad("malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) if n > MAX_BODY => Err(bad("body too large")),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::None),
    }
}

fn read_exact_body<R: BufRead>(reader: &mut R, len: u64) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    reader.by_ref().take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        return Err(ReadError::Io);
    }
    Ok(body)
}

fn read_chunked<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or(ReadError::Io)?;
        let line = String::from_utf8_lossy(&line);
        let size = line.split(';').next().unwrap_or_default().trim();
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("malformed chunk size"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| bad("malformed chunk size"))?;
        if size == 0 {
            // Trailer section, ignored.
            loop {
                let trailer = read_line(reader)?.ok_or(ReadError::Io)?;
                if trailer.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        let chunk = read_exact_body(reader, size)?;
        body.extend_from_slice(&chunk);
        let end = read_line(reader)?.ok_or(ReadError::Io)?;
        if !end.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_hop_by_hop(lower_name: &str) -> bool {
    HOP_BY_HOP.contains(&lower_name)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Comma-separated, lower-cased tokens of every header with this name.
fn header_tokens(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------
// AWS specifics
// ---------------------------------------------------------------------------

fn is_form(headers: &[(String, String)]) -> bool {
    find_header(headers, "content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

fn detect_operation(headers: &[(String, String)], form: &[(String, String)]) -> String {
    if let Some(target) = find_header(headers, "x-amz-target") {
        let op = target.rsplit_once('.').map_or(target, |(_, op)| op).trim();
        if !op.is_empty() {
            return op.to_string();
        }
    }
    if let Some((_, action)) = form.iter().find(|(k, _)| k == "Action") {
        if !action.is_empty() {
            return action.clone();
        }
    }
    "?".to_string()
}

/// `Credential=<AKID>/...` from a SigV4 `Authorization` header, else the
/// `X-Amz-Credential` query parameter of a presigned request.
fn access_key_id(headers: &[(String, String)], target: &str) -> Option<String> {
    let credential = if let Some(auth) = find_header(headers, "authorization") {
        let start = auth.find("Credential=")? + "Credential=".len();
        auth[start..].to_string()
    } else {
        let (_, query) = target.split_once('?')?;
        parse_form(query.as_bytes())
            .into_iter()
            .find(|(k, _)| k == "X-Amz-Credential")?
            .1
    };
    let end = credential
        .find(|c: char| c == '/' || c == ',' || c.is_whitespace())
        .unwrap_or(credential.len());
    let akid = &credential[..end];
    (!akid.is_empty()).then(|| akid.to_string())
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => (url_decode(&pair[..i]), url_decode(&pair[i + 1..])),
            None => (url_decode(pair), String::new()),
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding; invalid escapes are kept verbatim.
fn url_decode(input: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                match (
                    input.get(i + 1).copied().and_then(hex),
                    input.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A UUID-shaped, unique-enough request id.
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mix = t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (mix >> 32) as u32,
        (mix >> 16) & 0xffff,
        mix & 0xfff,
        n & 0xfff,
        (t ^ (n << 24)) & 0xffff_ffff_ffff
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Registers every credential secret that passes through (moto's session tokens and
/// secret keys) with the leak scan: the tests never see them otherwise.
fn harvest_canaries(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    for tag in ["SessionToken", "SecretAccessKey"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let mut rest = text.as_ref();
        while let Some(start) = rest.find(&open) {
            rest = &rest[start + open.len()..];
            let Some(end) = rest.find(&close) else { break };
            let value = &rest[..end];
            if value.len() >= 12 {
                super::register_canary(value);
            }
            rest = &rest[end..];
        }
    }
}
