//! `mcp-load`: the load generator of `scripts/bench`. A benchmark tool, not a test.
//!
//! It speaks MCP the way a client does, with nothing between it and the socket: a small
//! HTTP/1.1 client over `std::net::TcpStream` (keep-alive, Content-Length and chunked bodies,
//! SSE parsed as it arrives) and JSON lines over a child's stdin/stdout. Each session sends
//! `initialize`, `notifications/initialized`, then `tools/call` of `echo` one after another;
//! every session is its own OS thread with its own connections.
//!
//! Modes (`--mode`):
//! - `json`: Streamable HTTP, `Accept: application/json` (a server that honours it replies
//!   with one JSON body);
//! - `sse`: Streamable HTTP, `Accept: application/json, text/event-stream` (the server picks;
//!   the reply kind it used is reported as `reply`);
//! - `legacy`: `GET /sse`, then POST to the announced endpoint; replies read from the stream;
//! - `stdio`: spawns the command after `--` once per session (client mode: `mcp-proxy URL`)
//!   and talks JSON lines over its stdin/stdout;
//! - `hold-sse` / `hold-mcp`: opens `--sessions` streams (legacy `GET /sse`, or `initialize`
//!   and `GET /mcp`) and keeps them all open for `--hold` seconds; with `--calls`, measures
//!   sequential calls on one more session while they are open;
//! - `startup`: spawns the command after `--` (`{port}` in it and in `--url` becomes a free
//!   port) `--repeat` times and times spawn → TCP connect → first answered `initialize`.
//!
//! Output: one JSON object per measurement on stdout (with `--repeat`, one per run, then a
//! `"summary": true` line of medians), and a human line per measurement on stderr.
//! With `--pid`, the server process's CPU time (utime+stime from /proc/PID/stat, over the
//! measured phase only) and VmRSS/VmHWM/Threads (/proc/PID/status) are reported too: that
//! process alone, not its children.
//!
//! Hazards: on a machine with few cores this process competes with the server for CPU, so
//! its own cost per call is kept low (one write per request, borrowed JSON parsing), and
//! numbers from a loaded machine are noisy: repeat and take medians.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

const USAGE: &str = "\
usage: mcp-load --mode MODE [--url URL] [options] [-- COMMAND ARGS...]
  --mode json|sse|legacy|stdio|hold-sse|hold-mcp|startup
  --url URL          http://HOST:PORT/mcp (json, sse, hold-mcp) or /sse (legacy, hold-sse)
  --sessions N       concurrent sessions, one thread each (default 1)
  --calls N          tools/call per session, measured (default 1000 unless --duration)
  --duration S       measure for S seconds instead of a number of calls
  --warmup N         tools/call per session before measuring (default 50)
  --repeat R         run the measurement R times; a summary line gives the medians (default 1)
  --pid PID          report CPU time and memory of this process (the server)
  --label TEXT       copied into the JSON output
  --hold S           hold-*: keep the streams open S seconds after they are all open
  --listen-line TEXT startup: also time the first stderr line containing TEXT
  --timeout S        per-reply timeout (default 30)
  --protocol-version V   sent in initialize (default 2025-06-18)";

const DEFAULT_PROTOCOL_VERSION: &str = "2025-06-18";
/// Stack of our per-session threads: they hold a few buffers and parse flat JSON.
const THREAD_STACK: usize = 256 * 1024;
/// How many threads open the streams of a hold-* run.
const HOLD_OPENERS: usize = 16;

// --- Command line -----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Json,
    Sse,
    Legacy,
    Stdio,
    HoldSse,
    HoldMcp,
    Startup,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Json => "json",
            Mode::Sse => "sse",
            Mode::Legacy => "legacy",
            Mode::Stdio => "stdio",
            Mode::HoldSse => "hold-sse",
            Mode::HoldMcp => "hold-mcp",
            Mode::Startup => "startup",
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    mode: Mode,
    url: String,
    sessions: usize,
    calls: Option<u64>,
    duration: Option<Duration>,
    warmup: u64,
    repeat: usize,
    pid: Option<u32>,
    label: String,
    hold: Duration,
    listen_line: Option<String>,
    timeout: Duration,
    protocol_version: String,
    command: Vec<String>,
}

fn parse_args() -> Result<Config, String> {
    let mut args = std::env::args().skip(1);
    let mut mode = None;
    let mut config = Config {
        mode: Mode::Json,
        url: String::new(),
        sessions: 1,
        calls: None,
        duration: None,
        warmup: 50,
        repeat: 1,
        pid: None,
        label: String::new(),
        hold: Duration::ZERO,
        listen_line: None,
        timeout: Duration::from_secs(30),
        protocol_version: DEFAULT_PROTOCOL_VERSION.to_string(),
        command: Vec::new(),
    };
    while let Some(arg) = args.next() {
        if arg == "--" {
            config.command = args.by_ref().collect();
            break;
        }
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--mode" => {
                mode = Some(match value()?.as_str() {
                    "json" => Mode::Json,
                    "sse" => Mode::Sse,
                    "legacy" => Mode::Legacy,
                    "stdio" => Mode::Stdio,
                    "hold-sse" => Mode::HoldSse,
                    "hold-mcp" => Mode::HoldMcp,
                    "startup" => Mode::Startup,
                    other => return Err(format!("unknown mode {other}")),
                })
            }
            "--url" => config.url = value()?,
            "--sessions" => config.sessions = number(&arg, &value()?)?,
            "--calls" => config.calls = Some(number(&arg, &value()?)?),
            "--duration" => config.duration = Some(seconds(&arg, &value()?)?),
            "--warmup" => config.warmup = number(&arg, &value()?)?,
            "--repeat" => config.repeat = number::<usize>(&arg, &value()?)?.max(1),
            "--pid" => config.pid = Some(number(&arg, &value()?)?),
            "--label" => config.label = value()?,
            "--hold" => config.hold = seconds(&arg, &value()?)?,
            "--listen-line" => config.listen_line = Some(value()?),
            "--timeout" => config.timeout = seconds(&arg, &value()?)?,
            "--protocol-version" => config.protocol_version = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    config.mode = mode.ok_or("--mode is required")?;
    let needs_url = !matches!(config.mode, Mode::Stdio);
    if needs_url && config.url.is_empty() {
        return Err("--url is required".into());
    }
    if matches!(config.mode, Mode::Stdio | Mode::Startup) && config.command.is_empty() {
        return Err("this mode needs a command after --".into());
    }
    if config.calls.is_none() && config.duration.is_none() && !is_hold(config.mode) {
        config.calls = Some(1000);
    }
    if config.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    Ok(config)
}

fn is_hold(mode: Mode) -> bool {
    matches!(mode, Mode::HoldSse | Mode::HoldMcp)
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: not a number: {text}"))
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    let value: f64 = number(flag, text)?;
    Duration::try_from_secs_f64(value).map_err(|_| format!("{flag}: not a duration: {text}"))
}

// --- URLs -----------------------------------------------------------------------------------------

/// `http://host:port/path` → (connect address, Host header, path).
#[derive(Clone, Debug)]
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(format!("only http:// URLs: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let with_port = if host.contains(':') && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or(format!("no address for {host}"))?;
    Ok(Target {
        addr,
        host: host.to_string(),
        path: path.to_string(),
    })
}

/// An endpoint announced by a legacy SSE stream: a path, or a URL on the same origin.
fn endpoint_path(endpoint: &str) -> String {
    match endpoint.strip_prefix("http://") {
        Some(rest) => rest
            .find('/')
            .map_or("/".into(), |at| rest[at..].to_string()),
        None => endpoint.to_string(),
    }
}

// --- HTTP/1.1 ------------------------------------------------------------------------------------

fn io_err(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

/// How a response body ends.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    headers: HashMap<String, String>,
    framing: Framing,
    close: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn is_sse(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
    }
}

fn read_head(reader: &mut impl BufRead, line: &mut String) -> io::Result<Head> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_err(format!("bad status line {:?}", line.trim_end())))?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            return Err(io_err("connection closed in the headers"));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(length) = headers.get("content-length") {
        Framing::Length(
            length
                .parse()
                .map_err(|_| io_err(format!("bad Content-Length {length}")))?,
        )
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    let close = headers
        .get("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        || matches!(framing, Framing::UntilClose);
    Ok(Head {
        status,
        headers,
        framing,
        close,
    })
}

/// A response body as a reader: ends where the framing says.
struct Body<R> {
    inner: R,
    framing: Framing,
    /// Bytes left in the body (Length) or in the current chunk (Chunked).
    left: u64,
    started: bool,
    done: bool,
}

impl<R: BufRead> Body<R> {
    fn new(inner: R, framing: Framing) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Body {
            inner,
            framing,
            left,
            started: false,
            done: matches!(framing, Framing::Length(0)),
        }
    }

    /// Reads the next chunk-size line; false at the last chunk.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let mut line = String::new();
        if self.started {
            // The CRLF that ends the previous chunk's data.
            self.inner.read_line(&mut line)?;
            line.clear();
        }
        self.started = true;
        if self.inner.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        let size = line.trim_end().split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| io_err(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if self.inner.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    break;
                }
            }
            return Ok(false);
        }
        self.left = size;
        Ok(true)
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::UntilClose => {
                let n = self.inner.read(buf)?;
                if n == 0 {
                    self.done = true;
                }
                Ok(n)
            }
            Framing::Length(_) | Framing::Chunked => {
                if self.left == 0
                    && (matches!(self.framing, Framing::Length(_)) || !self.next_chunk()?)
                {
                    self.done = true;
                    return Ok(0);
                }
                let want = buf
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a body",
                    ));
                }
                self.left -= n as u64;
                if self.left == 0 && matches!(self.framing, Framing::Length(_)) {
                    self.done = true;
                }
                Ok(n)
            }
        }
    }
}

fn connect(target: &Target, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target.addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn build_request(
    method: &str,
    target: &Target,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = String::with_capacity(256 + body.len());
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
        target.host,
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A keep-alive HTTP/1.1 connection for requests with whole bodies.
struct Conn {
    target: Target,
    timeout: Duration,
    stream: Option<(BufReader<TcpStream>, TcpStream)>,
    line: String,
}

struct Response {
    head: Head,
    body: Vec<u8>,
}

impl Conn {
    fn new(target: Target, timeout: Duration) -> Self {
        Conn {
            target,
            timeout,
            stream: None,
            line: String::with_capacity(256),
        }
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let bytes = build_request(method, &self.target, path, headers, body);
        let reused = self.stream.is_some();
        match self.exchange(&bytes) {
            Ok(response) => Ok(response),
            // A kept-alive connection the server closed while idle: once more on a new one.
            Err(e) if reused && e.kind() == io::ErrorKind::UnexpectedEof => {
                self.stream = None;
                self.exchange(&bytes)
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, bytes: &[u8]) -> io::Result<Response> {
        if self.stream.is_none() {
            let stream = connect(&self.target, self.timeout)?;
            let reader = BufReader::with_capacity(16 * 1024, stream.try_clone()?);
            self.stream = Some((reader, stream));
        }
        let (reader, writer) = self.stream.as_mut().expect("connected above");
        let result = (|| {
            writer.write_all(bytes)?;
            let head = read_head(reader, &mut self.line)?;
            let mut body = Vec::new();
            Body::new(&mut *reader, head.framing).read_to_end(&mut body)?;
            Ok(Response { head, body })
        })();
        match &result {
            Ok(response) if !response.head.close => {}
            _ => self.stream = None,
        }
        result
    }
}

/// One server-sent event.
#[derive(Default, Debug)]
struct Event {
    kind: String,
    data: String,
}

/// Reads events from a byte stream (a whole body, or a live stream).
struct SseReader<R> {
    inner: R,
    line: String,
}

impl<R: BufRead> SseReader<R> {
    fn new(inner: R) -> Self {
        SseReader {
            inner,
            line: String::with_capacity(256),
        }
    }

    /// The next event with data, or None at the end of the stream.
    fn next_event(&mut self) -> io::Result<Option<Event>> {
        let mut event = Event::default();
        let mut has_data = false;
        loop {
            self.line.clear();
            if self.inner.read_line(&mut self.line)? == 0 {
                return Ok(None);
            }
            let text = self.line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if has_data {
                    return Ok(Some(event));
                }
                event.kind.clear();
                continue;
            }
            if text.starts_with(':') {
                continue;
            }
            let (field, value) = match text.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (text, ""),
            };
            match field {
                "event" => event.kind = value.to_string(),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }
}

/// A GET that stays open: its head, and its body as SSE.
struct Stream {
    head: Head,
    events: SseReader<BufReader<Body<BufReader<TcpStream>>>>,
    socket: TcpStream,
}

fn open_stream(
    target: &Target,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<Stream> {
    let mut socket = connect(target, timeout)?;
    socket.write_all(&build_request("GET", target, path, headers, b""))?;
    let mut reader = BufReader::new(socket.try_clone()?);
    let head = read_head(&mut reader, &mut String::new())?;
    let body = Body::new(reader, head.framing);
    Ok(Stream {
        head,
        events: SseReader::new(BufReader::with_capacity(8 * 1024, body)),
        socket,
    })
}

// --- JSON-RPC ------------------------------------------------------------------------------------

/// What the generator reads of a message: borrowed, nothing else parsed.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// What a message means for a request with id `id`.
enum Matched {
    Ours,
    Other,
}

fn check_reply(text: &str, id: u64) -> Result<Matched, String> {
    let reply: Reply =
        serde_json::from_str(text).map_err(|e| format!("bad JSON ({e}): {}", clip(text)))?;
    match reply.id {
        Some(got) if got.get() == id.to_string() || got.get() == format!("\"{id}\"") => {
            if let Some(error) = reply.error {
                return Err(format!("JSON-RPC error: {}", clip(error.get())));
            }
            if reply.result.is_none() {
                return Err(format!("no result: {}", clip(text)));
            }
            Ok(Matched::Ours)
        }
        _ => Ok(Matched::Other),
    }
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

fn initialize_body(id: u64, protocol_version: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{protocol_version}","capabilities":{{}},"clientInfo":{{"name":"mcp-load","version":"1"}}}}}}"#
    )
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn call_body(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hello"}}}}}}"#
    )
}

// --- Sessions -------------------------------------------------------------------------------------

/// What each mode's session does.
trait Session {
    /// One `tools/call`, answered.
    fn call(&mut self, id: u64) -> Result<(), String>;
    /// Ends the session politely (DELETE, stdin closed); errors are ignored.
    fn close(&mut self) {}
    /// What the server replied with: "json", "sse", "stream" or "stdio".
    fn reply_kind(&self) -> &'static str;
}

/// Streamable HTTP: POST, the reply as one JSON body or an SSE body.
struct StreamableSession {
    conn: Conn,
    path: String,
    accept: &'static str,
    session_id: Option<String>,
    protocol_version: String,
    reply: &'static str,
}

impl StreamableSession {
    fn open(config: &Config) -> Result<Self, String> {
        let target = parse_url(&config.url)?;
        let path = target.path.clone();
        let accept = if config.mode == Mode::Json {
            "application/json"
        } else {
            "application/json, text/event-stream"
        };
        let mut session = StreamableSession {
            conn: Conn::new(target, config.timeout),
            path,
            accept,
            session_id: None,
            protocol_version: config.protocol_version.clone(),
            reply: "json",
        };
        let init = session.post(&initialize_body(0, &config.protocol_version), Some(0))?;
        session.session_id = init.head.header("mcp-session-id").map(str::to_string);
        session.post(INITIALIZED, None)?;
        Ok(session)
    }

    fn post(&mut self, body: &str, id: Option<u64>) -> Result<Response, String> {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", self.accept),
        ];
        if let Some(session_id) = &self.session_id {
            headers.push(("Mcp-Session-Id", session_id));
            headers.push(("MCP-Protocol-Version", &self.protocol_version));
        }
        let path = self.path.clone();
        let response = self
            .conn
            .request("POST", &path, &headers, body.as_bytes())
            .map_err(|e| format!("POST {path}: {e}"))?;
        let Some(id) = id else {
            if !(200..300).contains(&response.head.status) {
                return Err(format!("notification got HTTP {}", response.head.status));
            }
            return Ok(response);
        };
        if response.head.status != 200 {
            return Err(format!(
                "HTTP {}: {}",
                response.head.status,
                clip(&String::from_utf8_lossy(&response.body))
            ));
        }
        if response.head.is_sse() {
            self.reply = "sse";
            let mut events = SseReader::new(&response.body[..]);
            loop {
                match events.next_event() {
                    Ok(Some(event)) => {
                        if let Matched::Ours = check_reply(&event.data, id)? {
                            break;
                        }
                    }
                    Ok(None) => return Err("SSE reply ended without the response".into()),
                    Err(e) => return Err(format!("reading the SSE reply: {e}")),
                }
            }
        } else {
            self.reply = "json";
            let text = std::str::from_utf8(&response.body).map_err(|_| "reply is not UTF-8")?;
            if let Matched::Other = check_reply(text, id)? {
                return Err(format!("reply to another id: {}", clip(text)));
            }
        }
        Ok(response)
    }
}

impl Session for StreamableSession {
    fn call(&mut self, id: u64) -> Result<(), String> {
        self.post(&call_body(id), Some(id)).map(drop)
    }

    fn close(&mut self) {
        if let Some(session_id) = self.session_id.clone() {
            let path = self.path.clone();
            // The session ends with us either way; a server without DELETE answers 405.
            let _ = self
                .conn
                .request("DELETE", &path, &[("Mcp-Session-Id", &session_id)], b"");
        }
    }

    fn reply_kind(&self) -> &'static str {
        self.reply
    }
}

/// Legacy HTTP+SSE: POST to the endpoint, the reply on the GET stream.
struct LegacySession {
    stream: Stream,
    conn: Conn,
    endpoint: String,
}

impl LegacySession {
    fn open(config: &Config) -> Result<Self, String> {
        let target = parse_url(&config.url)?;
        let (stream, endpoint) = open_legacy_stream(&target, config.timeout)?;
        let mut session = LegacySession {
            stream,
            conn: Conn::new(target, config.timeout),
            endpoint,
        };
        session.exchange(&initialize_body(0, &config.protocol_version), Some(0))?;
        session.exchange(INITIALIZED, None)?;
        Ok(session)
    }

    fn exchange(&mut self, body: &str, id: Option<u64>) -> Result<(), String> {
        let endpoint = self.endpoint.clone();
        let response = self
            .conn
            .request(
                "POST",
                &endpoint,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .map_err(|e| format!("POST {endpoint}: {e}"))?;
        if !(200..300).contains(&response.head.status) {
            return Err(format!("POST {endpoint}: HTTP {}", response.head.status));
        }
        let Some(id) = id else { return Ok(()) };
        loop {
            match self.stream.events.next_event() {
                Ok(Some(event)) if event.kind.is_empty() || event.kind == "message" => {
                    if let Matched::Ours = check_reply(&event.data, id)? {
                        return Ok(());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("the SSE stream ended".into()),
                Err(e) => return Err(format!("reading the SSE stream: {e}")),
            }
        }
    }
}

/// GET the legacy stream and wait for its `endpoint` event.
fn open_legacy_stream(target: &Target, timeout: Duration) -> Result<(Stream, String), String> {
    let mut stream = open_stream(
        target,
        &target.path,
        &[("Accept", "text/event-stream")],
        timeout,
    )
    .map_err(|e| format!("GET {}: {e}", target.path))?;
    if stream.head.status != 200 {
        return Err(format!("GET {}: HTTP {}", target.path, stream.head.status));
    }
    loop {
        match stream.events.next_event() {
            Ok(Some(event)) if event.kind == "endpoint" => {
                let endpoint = endpoint_path(event.data.trim());
                return Ok((stream, endpoint));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("the SSE stream ended before its endpoint".into()),
            Err(e) => return Err(format!("waiting for the endpoint event: {e}")),
        }
    }
}

impl Session for LegacySession {
    fn call(&mut self, id: u64) -> Result<(), String> {
        self.exchange(&call_body(id), Some(id))
    }

    fn close(&mut self) {
        // Ending the stream ends the session; the socket may already be gone.
        let _ = self.stream.socket.shutdown(std::net::Shutdown::Both);
    }

    fn reply_kind(&self) -> &'static str {
        "stream"
    }
}

/// Client mode: JSON lines over a child's stdin/stdout.
struct StdioSession {
    child: Child,
    input: Option<BufWriter<ChildStdin>>,
    output: BufReader<ChildStdout>,
    line: String,
}

impl StdioSession {
    fn open(config: &Config) -> Result<Self, String> {
        let mut command = Command::new(&config.command[0]);
        command
            .args(&config.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", config.command[0]))?;
        let input = BufWriter::new(child.stdin.take().expect("stdin is piped"));
        let output = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut session = StdioSession {
            child,
            input: Some(input),
            output,
            line: String::new(),
        };
        session.exchange(&initialize_body(0, &config.protocol_version), Some(0))?;
        session.exchange(INITIALIZED, None)?;
        Ok(session)
    }

    fn exchange(&mut self, body: &str, id: Option<u64>) -> Result<(), String> {
        let input = self.input.as_mut().ok_or("stdin closed")?;
        input
            .write_all(body.as_bytes())
            .and_then(|()| input.write_all(b"\n"))
            .and_then(|()| input.flush())
            .map_err(|e| format!("writing to the client's stdin: {e}"))?;
        let Some(id) = id else { return Ok(()) };
        loop {
            self.line.clear();
            match self.output.read_line(&mut self.line) {
                Ok(0) => return Err("the client's stdout closed".into()),
                Ok(_) => {
                    let text = self.line.trim();
                    if !text.is_empty()
                        && let Matched::Ours = check_reply(text, id)?
                    {
                        return Ok(());
                    }
                }
                Err(e) => return Err(format!("reading the client's stdout: {e}")),
            }
        }
    }
}

impl Session for StdioSession {
    fn call(&mut self, id: u64) -> Result<(), String> {
        self.exchange(&call_body(id), Some(id))
    }

    fn close(&mut self) {
        drop(self.input.take()); // EOF: the client ends its session and exits
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        kill_group(self.child.id(), libc::SIGKILL);
        // Reaped so no zombie is left; its status does not matter here.
        let _ = self.child.wait();
    }

    fn reply_kind(&self) -> &'static str {
        "stdio"
    }
}

impl Drop for StdioSession {
    fn drop(&mut self) {
        if self.input.is_some() {
            self.close();
        }
    }
}

fn open_session(config: &Config) -> Result<Box<dyn Session>, String> {
    Ok(match config.mode {
        Mode::Json | Mode::Sse | Mode::HoldMcp => Box::new(StreamableSession::open(config)?),
        Mode::Legacy | Mode::HoldSse => Box::new(LegacySession::open(config)?),
        Mode::Stdio => Box::new(StdioSession::open(config)?),
        Mode::Startup => unreachable!("startup has no sessions"),
    })
}

fn kill_group(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    // Reason: std has no way to signal a process group.
    unsafe {
        libc::kill(-pid, signal);
    }
}

// --- /proc ----------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default, Debug)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn proc_memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut memory = Memory::default();
    for line in status.lines() {
        let value = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            memory.rss_kib = value();
        } else if line.starts_with("VmHWM:") {
            memory.hwm_kib = value();
        } else if line.starts_with("Threads:") {
            memory.threads = value();
        }
    }
    Some(memory)
}

/// utime + stime of the process, in seconds.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    // Reason: the clock tick is not exposed by std.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

// --- Statistics -------------------------------------------------------------------------------------

fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

// --- Load runs --------------------------------------------------------------------------------------

#[derive(Default)]
struct SessionResult {
    latencies_us: Vec<u32>,
    calls: u64,
    errors: u64,
    first_error: Option<String>,
    reply: &'static str,
}

/// One measurement: `sessions` threads, each a session. Time and the server's CPU are taken
/// between two barriers that every thread passes: when all sessions are open and warm, and
/// when all have made their calls (before they close, so closing is not measured).
fn run_load(config: &Config, run: usize) -> Value {
    let sessions = config.sessions;
    let barriers = Arc::new((Barrier::new(sessions + 1), Barrier::new(sessions + 1)));
    let mut handles = Vec::with_capacity(sessions);
    for index in 0..sessions {
        let config = config.clone();
        let barriers = Arc::clone(&barriers);
        let handle = thread::Builder::new()
            .name(format!("load-{index}"))
            .stack_size(THREAD_STACK)
            .spawn(move || session_thread(&config, &barriers.0, &barriers.1))
            .expect("spawning a session thread");
        handles.push(handle);
    }
    barriers.0.wait();
    let t0 = Instant::now();
    let cpu0 = config.pid.and_then(proc_cpu_seconds);
    barriers.1.wait();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = config.pid.and_then(proc_cpu_seconds);
    let memory = config.pid.and_then(proc_memory);
    let mut results = Vec::with_capacity(sessions);
    for handle in handles {
        results.push(handle.join().unwrap_or_else(|_| SessionResult {
            errors: 1,
            first_error: Some("a session thread panicked".into()),
            ..SessionResult::default()
        }));
    }

    let mut latencies: Vec<u32> = Vec::new();
    let (mut calls, mut errors) = (0u64, 0u64);
    let mut first_error = None;
    let mut reply = "";
    for result in results {
        latencies.extend_from_slice(&result.latencies_us);
        calls += result.calls;
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error;
        }
        if reply.is_empty() {
            reply = result.reply;
        }
    }
    latencies.sort_unstable();
    let throughput = if elapsed > 0.0 {
        calls as f64 / elapsed
    } else {
        0.0
    };
    let mut out = json!({
        "label": config.label,
        "mode": config.mode.name(),
        "reply": reply,
        "run": run,
        "sessions": sessions,
        "calls": calls,
        "errors": errors,
        "seconds": round3(elapsed),
        "calls_per_s": round1(throughput),
        "p50_us": percentile(&latencies, 0.50),
        "p90_us": percentile(&latencies, 0.90),
        "p99_us": percentile(&latencies, 0.99),
        "max_us": latencies.last(),
    });
    if let (Some(a), Some(b)) = (cpu0, cpu1)
        && calls > 0
    {
        out["cpu_ms_per_10k"] = json!(round1((b - a) * 1000.0 * 10_000.0 / calls as f64));
    }
    if let Some(memory) = memory {
        add_memory(&mut out, memory);
    }
    if let Some(error) = first_error {
        out["first_error"] = json!(error);
    }
    out
}

fn add_memory(out: &mut Value, memory: Memory) {
    out["rss_kib"] = json!(memory.rss_kib);
    out["hwm_kib"] = json!(memory.hwm_kib);
    out["threads"] = json!(memory.threads);
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A session's life: open and warm up, wait for the others, measure, wait for the others,
/// close. A thread panicking would leave the barriers waiting: nothing here panics.
fn session_thread(config: &Config, start: &Barrier, done: &Barrier) -> SessionResult {
    let mut result = SessionResult::default();
    let mut session = match open_session(config) {
        Ok(session) => Some(session),
        Err(e) => {
            result.errors += 1;
            result.first_error = Some(format!("opening the session: {e}"));
            None
        }
    };
    let mut id = 1u64;
    if let Some(open) = session.as_mut() {
        for _ in 0..config.warmup {
            if let Err(e) = open.call(id) {
                result.errors += 1;
                result.first_error = Some(format!("warm-up call: {e}"));
                session = None;
                break;
            }
            id += 1;
        }
    }
    start.wait();
    let Some(mut session) = session else {
        done.wait();
        return result;
    };
    let deadline = config.duration.map(|d| Instant::now() + d);
    let planned = config.calls.unwrap_or(u64::MAX);
    result.latencies_us.reserve(planned.min(1 << 20) as usize);
    while result.calls < planned && deadline.is_none_or(|d| Instant::now() < d) {
        let sent = Instant::now();
        match session.call(id) {
            Ok(()) => {
                let us = sent.elapsed().as_micros();
                result
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
                result.calls += 1;
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(e);
                break; // a broken session is not retried: the error count says so
            }
        }
        id += 1;
    }
    done.wait();
    result.reply = session.reply_kind();
    session.close();
    result
}

// --- Holding many streams ------------------------------------------------------------------------

/// Opens `sessions` streams, reports the server's memory and threads with all of them open,
/// optionally measures calls meanwhile, holds them for `--hold`, and closes them.
fn run_hold(config: &Config) -> Value {
    let target = match parse_url(&config.url) {
        Ok(target) => target,
        Err(e) => {
            return json!({"label": config.label, "mode": config.mode.name(), "errors": 1, "first_error": e});
        }
    };
    let before = config.pid.and_then(proc_memory);
    let t0 = Instant::now();
    let openers = HOLD_OPENERS.min(config.sessions);
    let errors = Arc::new(Mutex::new((0u64, None::<String>)));
    let mut handles = Vec::new();
    for opener in 0..openers {
        let count = config.sessions / openers + usize::from(opener < config.sessions % openers);
        let config = config.clone();
        let target = target.clone();
        let errors = Arc::clone(&errors);
        handles.push(
            thread::Builder::new()
                .name(format!("open-{opener}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let mut held = Vec::with_capacity(count);
                    for _ in 0..count {
                        match open_held(&config, &target) {
                            Ok(stream) => held.push(stream),
                            Err(e) => {
                                let mut errors = errors.lock().expect("no panics under the lock");
                                errors.0 += 1;
                                errors.1.get_or_insert(e);
                            }
                        }
                    }
                    held
                })
                .expect("spawning an opener thread"),
        );
    }
    let mut held: Vec<Held> = Vec::with_capacity(config.sessions);
    for handle in handles {
        held.extend(handle.join().unwrap_or_default());
    }
    let open_seconds = t0.elapsed().as_secs_f64();
    // Let the server settle (threads parked, buffers allocated) before reading its memory.
    thread::sleep(Duration::from_millis(500));
    let memory = config.pid.and_then(proc_memory);
    let (errors, first_error) = errors.lock().expect("no panics under the lock").clone();
    let mut out = json!({
        "label": config.label,
        "mode": config.mode.name(),
        "sessions": config.sessions,
        "open": held.len(),
        "errors": errors,
        "open_seconds": round3(open_seconds),
    });
    if let Some(memory) = memory {
        add_memory(&mut out, memory);
    }
    if let Some(before) = before {
        out["rss_before_kib"] = json!(before.rss_kib);
        out["threads_before"] = json!(before.threads);
    }
    if let Some(error) = first_error {
        out["first_error"] = json!(error);
    }
    if config.calls.is_some() {
        // Sequential calls on one more session while every stream is open.
        let mut one = config.clone();
        one.mode = if config.mode == Mode::HoldSse {
            Mode::Legacy
        } else {
            Mode::Sse
        };
        one.sessions = 1;
        one.pid = None;
        let load = run_load(&one, 0);
        out["calls"] = load["calls"].clone();
        out["call_errors"] = load["errors"].clone();
        out["p50_us"] = load["p50_us"].clone();
        out["p99_us"] = load["p99_us"].clone();
    }
    let alive = held.iter().filter(|h| h.alive()).count();
    out["still_open"] = json!(alive);
    thread::sleep(config.hold);
    drop(held);
    out
}

/// A stream kept open (its session lives as long as it does).
struct Held {
    stream: Stream,
}

impl Held {
    /// Whether the server still has the stream open (nothing read closed it).
    fn alive(&self) -> bool {
        // A non-blocking peek: 0 bytes means the server closed it.
        if self.stream.socket.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let alive = !matches!(self.stream.socket.peek(&mut byte), Ok(0));
        // Back to blocking for the drop; failing here changes nothing we report.
        let _ = self.stream.socket.set_nonblocking(false);
        alive
    }
}

fn open_held(config: &Config, target: &Target) -> Result<Held, String> {
    match config.mode {
        Mode::HoldSse => {
            let (stream, _endpoint) = open_legacy_stream(target, config.timeout)?;
            Ok(Held { stream })
        }
        _ => {
            let mut init = config.clone();
            init.mode = Mode::Json;
            let mut session = StreamableSession::open(&init).or_else(|_| {
                init.mode = Mode::Sse; // a server that only answers SSE
                StreamableSession::open(&init)
            })?;
            let session_id = session
                .session_id
                .clone()
                .ok_or("the server gave no session id (stateless?)")?;
            let stream = open_stream(
                target,
                &target.path,
                &[
                    ("Accept", "text/event-stream"),
                    ("Mcp-Session-Id", &session_id),
                    ("MCP-Protocol-Version", &config.protocol_version),
                ],
                config.timeout,
            )
            .map_err(|e| format!("GET {}: {e}", target.path))?;
            if stream.head.status != 200 {
                return Err(format!("GET {}: HTTP {}", target.path, stream.head.status));
            }
            // The POST connection is no longer needed; the session lives on with its stream.
            session.conn.stream = None;
            Ok(Held { stream })
        }
    }
}

// --- Start-up ------------------------------------------------------------------------------------

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One start: spawn → first TCP connect → first answered `initialize`, in milliseconds.
fn start_once(config: &Config) -> Result<(f64, f64, Option<f64>), String> {
    let port = free_port()
        .map_err(|e| format!("finding a free port: {e}"))?
        .to_string();
    let url = config.url.replace("{port}", &port);
    let target = parse_url(&url)?;
    let args: Vec<String> = config
        .command
        .iter()
        .map(|a| a.replace("{port}", &port))
        .collect();
    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if config.listen_line.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .process_group(0);
    let t0 = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", args[0]))?;
    let listen_seen = Arc::new(Mutex::new(None::<f64>));
    if let (Some(needle), Some(stderr)) = (config.listen_line.clone(), child.stderr.take()) {
        let seen = Arc::clone(&listen_seen);
        thread::Builder::new()
            .name("stderr".into())
            .spawn(move || {
                // Drains stderr to its end so the child never blocks on a full pipe.
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut seen = seen.lock().expect("no panics under the lock");
                    if seen.is_none() && line.contains(&needle) {
                        *seen = Some(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            })
            .expect("spawning the stderr reader");
    }
    let result = (|| {
        let deadline = t0 + config.timeout;
        let connected = loop {
            if TcpStream::connect(target.addr).is_ok() {
                break t0.elapsed().as_secs_f64() * 1000.0;
            }
            if Instant::now() > deadline {
                return Err("never listened".to_string());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited before listening: {status}"));
            }
            thread::sleep(Duration::from_micros(200));
        };
        let mut conn = Conn::new(target.clone(), config.timeout);
        let body = initialize_body(0, &config.protocol_version);
        let answered = loop {
            let response = conn.request(
                "POST",
                &target.path,
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json, text/event-stream"),
                ],
                body.as_bytes(),
            );
            if let Ok(response) = response
                && response.head.status == 200
            {
                break t0.elapsed().as_secs_f64() * 1000.0;
            }
            if Instant::now() > deadline {
                return Err("initialize never answered".to_string());
            }
            thread::sleep(Duration::from_millis(1));
        };
        Ok((connected, answered))
    })();
    kill_group(child.id(), libc::SIGKILL);
    // Reaped so no zombie is left; it was killed, its status says nothing.
    let _ = child.wait();
    let listen_line = *listen_seen.lock().expect("no panics under the lock");
    result.map(|(connected, answered)| (connected, answered, listen_line))
}

fn run_startup(config: &Config) -> Vec<Value> {
    let mut lines = Vec::new();
    let (mut connects, mut answers, mut listens) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    for run in 0..config.repeat {
        match start_once(config) {
            Ok((connected, answered, listen)) => {
                connects.push(connected);
                answers.push(answered);
                listens.extend(listen);
                lines.push(json!({"label": config.label, "mode": "startup", "run": run,
                    "listen_ms": round3(connected), "initialize_ms": round3(answered),
                    "listen_line_ms": listen.map(round3)}));
            }
            Err(e) => {
                errors += 1;
                lines.push(json!({"label": config.label, "mode": "startup", "run": run, "errors": 1, "first_error": e}));
            }
        }
        // Let the killed process and its child go before the next start.
        thread::sleep(Duration::from_millis(100));
    }
    lines.push(
        json!({"label": config.label, "mode": "startup", "summary": true,
        "runs": config.repeat, "errors": errors,
        "listen_ms": median(&mut connects).map(round3),
        "initialize_ms": median(&mut answers).map(round3),
        "listen_line_ms": median(&mut listens).map(round3)}),
    );
    lines
}

// --- Main ------------------------------------------------------------------------------------------

fn human(line: &Value) -> String {
    let get = |key: &str| match &line[key] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let tag = if line["summary"] == json!(true) {
        "median"
    } else {
        "run"
    };
    match line["mode"].as_str() {
        Some("startup") => format!(
            "{} startup {tag}: listening {} ms, initialize answered {} ms (listen line {} ms), errors {}",
            get("label"),
            get("listen_ms"),
            get("initialize_ms"),
            get("listen_line_ms"),
            get("errors")
        ),
        Some("hold-sse" | "hold-mcp") => format!(
            "{} {}: {} of {} streams open in {} s, server RSS {} KiB, threads {}, errors {}, call p50 {} us",
            get("label"),
            get("mode"),
            get("open"),
            get("sessions"),
            get("open_seconds"),
            get("rss_kib"),
            get("threads"),
            get("errors"),
            get("p50_us")
        ),
        _ => format!(
            "{} {} ({} reply) {tag}: {} sessions, {} calls in {} s = {} calls/s, p50 {} us, p99 {} us, errors {}, cpu {} ms/10k, peak RSS {} KiB{}",
            get("label"),
            get("mode"),
            get("reply"),
            get("sessions"),
            get("calls"),
            get("seconds"),
            get("calls_per_s"),
            get("p50_us"),
            get("p99_us"),
            get("errors"),
            get("cpu_ms_per_10k"),
            get("hwm_kib"),
            line["first_error"]
                .as_str()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        ),
    }
}

fn emit(line: &Value) {
    println!("{line}");
    eprintln!("{}", human(line));
}

/// The medians of the runs' numbers, and the sums of their counts.
fn summary(config: &Config, runs: &[Value]) -> Value {
    let mut out = json!({"label": config.label, "mode": config.mode.name(), "summary": true,
        "runs": runs.len(), "sessions": config.sessions,
        "reply": runs.iter().find_map(|r| r["reply"].as_str().filter(|s| !s.is_empty())).unwrap_or("")});
    for key in [
        "calls_per_s",
        "p50_us",
        "p90_us",
        "p99_us",
        "max_us",
        "cpu_ms_per_10k",
        "seconds",
    ] {
        let mut values: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
        out[key] = json!(median(&mut values).map(round1));
    }
    for key in ["calls", "errors"] {
        out[key] = json!(runs.iter().filter_map(|r| r[key].as_u64()).sum::<u64>());
    }
    for key in ["hwm_kib", "threads"] {
        out[key] = json!(runs.iter().filter_map(|r| r[key].as_u64()).max());
    }
    out["rss_kib"] = runs.last().map_or(Value::Null, |r| r["rss_kib"].clone());
    if let Some(error) = runs.iter().find_map(|r| r["first_error"].as_str()) {
        out["first_error"] = json!(error);
    }
    out
}

fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mcp-load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let failed = match config.mode {
        Mode::Startup => {
            let lines = run_startup(&config);
            lines.iter().for_each(emit);
            lines
                .last()
                .is_some_and(|l| l["errors"].as_u64() != Some(0))
        }
        Mode::HoldSse | Mode::HoldMcp => {
            let line = run_hold(&config);
            emit(&line);
            line["errors"].as_u64() != Some(0)
        }
        _ => {
            let mut runs = Vec::new();
            for run in 0..config.repeat {
                let line = run_load(&config, run);
                emit(&line);
                runs.push(line);
            }
            if config.repeat > 1 {
                emit(&summary(&config, &runs));
            }
            runs.iter().any(|r| r["errors"].as_u64() != Some(0))
        }
    };
    std::process::exit(i32::from(failed));
}
