//! A scripted HTTP/1.1 server on 127.0.0.1 (cargo's `HttpServer` shape): one thread accepts,
//! one thread per connection, every response `Connection: close`, optional TLS with the test
//! certificate in `support/tls/`. Records every request. Stops on drop.
//! A response is a whole body, or a stream (SSE): its head at once, then each chunk written and
//! flushed as the test sends it, until the test drops the sender.
//!
//! `McpScript` is a minimal Streamable HTTP MCP server for client-mode tests that need to
//! control statuses, sessions and credentials.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use serde_json::{Value, json};

/// One request as received (the body is kept, it is test data).
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// A streamed body instead of `body`: chunks as they come, until every sender is gone.
    pub stream: Option<Receiver<String>>,
    /// The same for bytes that need not be UTF-8 (malformed streams).
    pub byte_stream: Option<Receiver<Vec<u8>>>,
}

impl FakeResponse {
    pub fn json(status: u16, body: &Value) -> FakeResponse {
        FakeResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
            stream: None,
            byte_stream: None,
        }
    }

    pub fn empty(status: u16) -> FakeResponse {
        FakeResponse {
            status,
            headers: Vec::new(),
            body: String::new(),
            stream: None,
            byte_stream: None,
        }
    }

    /// A 200 `text/event-stream` response held open: its head goes out at once, then each
    /// chunk sent on the returned `Sender` (see [`sse_event`]); dropping it ends the stream.
    /// Unbounded: a test sends a handful of events.
    pub fn sse() -> (FakeResponse, Sender<String>) {
        let (tx, rx) = unbounded();
        let response = FakeResponse {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/event-stream".into()),
                ("Cache-Control".into(), "no-cache".into()),
            ],
            body: String::new(),
            stream: Some(rx),
            byte_stream: None,
        };
        (response, tx)
    }

    /// [`FakeResponse::sse`] sending raw bytes: for streams that are not valid UTF-8.
    pub fn sse_bytes() -> (FakeResponse, Sender<Vec<u8>>) {
        let (response, _) = FakeResponse::sse();
        let (tx, rx) = unbounded();
        let response = FakeResponse {
            stream: None,
            byte_stream: Some(rx),
            ..response
        };
        (response, tx)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> FakeResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync;

pub struct FakeRemote {
    pub port: u16,
    pub tls: bool,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRemote {
    pub fn start(
        handler: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> FakeRemote {
        FakeRemote::start_inner(Arc::new(handler), None)
    }

    /// Serves HTTPS with `support/tls/server.pem` (signed by `support/tls/ca.pem`).
    pub fn start_tls(
        handler: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> FakeRemote {
        FakeRemote::start_inner(Arc::new(handler), Some(tls_config()))
    }

    fn start_inner(handler: Arc<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> FakeRemote {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let is_tls = tls.is_some();
        {
            let requests = requests.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let handler = handler.clone();
                    let requests = requests.clone();
                    let tls = tls.clone();
                    thread::spawn(move || serve(stream, tls, &*handler, &requests));
                }
            });
        }
        FakeRemote {
            port,
            tls: is_tls,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeRemote {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: &Handler,
    requests: &Mutex<Vec<FakeRequest>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    match tls {
        None => serve_one(stream, handler, requests),
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            serve_one(rustls::StreamOwned::new(conn, stream), handler, requests)
        }
    }
}

fn serve_one(stream: impl Read + Write, handler: &Handler, requests: &Mutex<Vec<FakeRequest>>) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let response = handler(&request);
    // Recorded once answered, so a test that sees it knows the handler has run.
    requests.lock().unwrap().push(request);
    let mut head = format!("HTTP/1.1 {} Fake\r\n", response.status);
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if response.stream.is_none() && response.byte_stream.is_none() {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    // A streamed body has no length: it ends when the connection closes.
    head.push_str("Connection: close\r\n\r\n");
    let stream = reader.get_mut();
    // Write errors mean the client has gone; the test sees that in what it asserts.
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(response.body.as_bytes());
    let _ = stream.flush();
    if let Some(chunks) = response.stream {
        pump(stream, &chunks);
    } else if let Some(chunks) = response.byte_stream {
        pump(stream, &chunks);
    }
}

/// Writes and flushes each chunk as it comes, until every sender is gone or the client is.
fn pump<T: AsRef<[u8]>>(stream: &mut impl Write, chunks: &Receiver<T>) {
    loop {
        // An idle stream gets a comment each second: once the client has gone, the write
        // fails and this thread ends, even while the test still holds the sender.
        let written = match chunks.recv_timeout(Duration::from_secs(1)) {
            Ok(chunk) => stream.write_all(chunk.as_ref()),
            Err(RecvTimeoutError::Timeout) => stream.write_all(b": idle\n\n"),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if written.and_then(|()| stream.flush()).is_err() {
            break;
        }
    }
}

/// One SSE event: `event: NAME` unless it is `message`, then the data line.
pub fn sse_event(name: &str, data: &str) -> String {
    if name == "message" {
        format!("data: {data}\n\n")
    } else {
        format!("event: {name}\ndata: {data}\n\n")
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<FakeRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(FakeRequest {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/support/tls");

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(format!("{TLS_DIR}/server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{TLS_DIR}/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

// ---- a minimal scripted MCP server ----------------------------------------------------------

/// Sessions and credentials of [`McpScript`], shared with the test.
#[derive(Default)]
pub struct McpState {
    pub next_session: u32,
    pub live_sessions: Vec<String>,
    /// When set, requests must carry exactly this Authorization value (else 401).
    pub required_authorization: Option<String>,
    /// Extra header value for 401 answers.
    pub www_authenticate: Option<String>,
}

/// A Streamable HTTP MCP server: `initialize` opens session `s<N>`; `tools/call` answers with
/// the request's method, session and Authorization header in `structuredContent`; notifications
/// get 202; GET gets 405; DELETE ends the session. A request for a session not live gets 404.
pub fn mcp_script(
    state: Arc<Mutex<McpState>>,
) -> impl Fn(&FakeRequest) -> FakeResponse + Send + Sync {
    move |req: &FakeRequest| {
        let mut state = state.lock().unwrap();
        if let Some(required) = &state.required_authorization
            && req.header("authorization") != Some(required.as_str())
        {
            let mut r = FakeResponse::empty(401);
            if let Some(challenge) = &state.www_authenticate {
                r = r.with_header("WWW-Authenticate", challenge);
            }
            return r;
        }
        let session = req.header("mcp-session-id").map(str::to_string);
        match req.method.as_str() {
            "GET" => return FakeResponse::empty(405),
            "DELETE" => {
                state.live_sessions.retain(|s| Some(s) != session.as_ref());
                return FakeResponse::empty(200);
            }
            _ => {}
        }
        let message = req.json();
        let method = message["method"].as_str().unwrap_or("");
        if method == "initialize" {
            state.next_session += 1;
            let sid = format!("s{}", state.next_session);
            state.live_sessions.push(sid.clone());
            let result = json!({"jsonrpc":"2.0","id":message["id"],"result":{
                "protocolVersion":"2025-06-18","capabilities":{"tools":{}},
                "serverInfo":{"name":"fake","version":"1"}}});
            return FakeResponse::json(200, &result).with_header("Mcp-Session-Id", &sid);
        }
        if !session
            .as_ref()
            .is_some_and(|s| state.live_sessions.contains(s))
        {
            return FakeResponse::empty(404);
        }
        if message.get("id").is_none() || message.get("method").is_none() {
            return FakeResponse::empty(202);
        }
        let result = json!({"jsonrpc":"2.0","id":message["id"],"result":{
        "content":[{"type":"text","text":"ok"}],
        "structuredContent":{
            "method": method,
            "session": session,
            "authorization": req.header("authorization"),
            "protocolVersion": req.header("mcp-protocol-version"),
        }}});
        FakeResponse::json(200, &result)
    }
}
