//! Test harness: start the real binary, talk raw HTTP/1.1 and SSE to it over 127.0.0.1.
//! Every wait has a deadline; every process started is killed (as a group) on drop; a test
//! that fails prints the proxy's stderr.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const PROXY: &str = env!("CARGO_BIN_EXE_mcp-proxy");
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_mcp-example-server");

/// Generous: tests must pass on a loaded 2-core machine. Bounds a wait; never replaces one.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, or panics after `timeout` saying what it waited for.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    while !condition() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A running proxy. Killed with its process group on drop; its stderr is kept.
pub struct Proxy {
    child: Option<Child>,
    pub base: String,
    pub port: u16,
    log: Arc<Mutex<String>>,
    drains: Vec<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts the proxy with `args` and waits for its "listening on" line.
    pub fn start(args: &[&str]) -> Proxy {
        Proxy::start_with(args, &[])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut proxy = Proxy::spawn(args, env);
        let start = Instant::now();
        loop {
            if let Some(base) = proxy.find_base() {
                proxy.port = base.rsplit(':').next().unwrap().parse().unwrap();
                proxy.base = base;
                return proxy;
            }
            if let Some(status) = proxy.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("proxy exited early ({status}); stderr:\n{}", proxy.stderr());
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "proxy did not listen within {DEADLINE:?}; stderr:\n{}",
                    proxy.stderr()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The command that starts the proxy with `args`, in a process group of its own, stdout
    /// and stderr piped.
    pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(PROXY);
        command
            .args(args)
            .env_remove("SSE_URL")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        command
    }

    /// Spawns without waiting for anything (for start-up failures).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut child = Proxy::command(args, env).spawn().expect("spawn mcp-proxy");
        let log = Arc::new(Mutex::new(String::new()));
        let drains = vec![
            drain_into_log(child.stderr.take().unwrap(), &log),
            drain_into_log(child.stdout.take().unwrap(), &log),
        ];
        Proxy {
            child: Some(child),
            base: String::new(),
            port: 0,
            log,
            drains,
        }
    }

    fn find_base(&self) -> Option<String> {
        listening_base(&self.log.lock().unwrap())
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /status`, which must answer 200 with JSON.
    #[track_caller]
    pub fn status(&self) -> Value {
        let r = request("GET", &self.url("/status"), &[], "");
        assert_eq!(r.status, 200, "/status: {r:?}");
        r.json()
    }

    /// Waits for the proxy to exit; its exit code (`None`: killed by a signal).
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let status = wait_for_exit(child, timeout, "proxy", &self.log);
        // Everything it wrote is in the log once its pipes are drained.
        for drain in self.drains.drain(..) {
            let _ = drain.join();
        }
        status.code()
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.pid() as i32, signal);
    }

    /// Waits until the proxy's log contains `needle`.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            if start.elapsed() > DEADLINE {
                panic!("log never said {needle:?}; stderr:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_group(child);
        }
        if thread::panicking() {
            eprintln!("---- proxy stderr ----\n{}", self.stderr());
        }
    }
}

/// Sends `signal` to `pid` (to a process group when negative).
fn send_signal(pid: i32, signal: i32) {
    // No libc in the tests' dependencies: the kill(1) utility does the same.
    let target = pid.to_string();
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".to_string(), target])
        .stderr(Stdio::null())
        .status();
}

/// Kills `child`'s whole process group (it was started as a group leader) and reaps it.
fn kill_group(mut child: Child) {
    send_signal(-(child.id() as i32), 9);
    let _ = child.wait();
}

/// The base URL in the proxy's "listening on" line, if `log` has it.
pub fn listening_base(log: &str) -> Option<String> {
    let at = log.find("listening on http://")? + "listening on ".len();
    let rest = &log[at..];
    Some(rest[..rest.find(char::is_whitespace)?].to_string())
}

/// A process started as a group leader, killed with its group when dropped (a failed test
/// leaves nothing running).
pub struct ProcessGroup(pub Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        send_signal(-(self.0.id() as i32), 9);
        let _ = self.0.wait();
    }
}

/// Copies `pipe`, line by line, into `log` on a thread of its own, until the pipe closes.
fn drain_into_log(
    pipe: impl Read + Send + 'static,
    log: &Arc<Mutex<String>>,
) -> thread::JoinHandle<()> {
    let log = log.clone();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            log.lock().unwrap().push_str(&line);
            line.clear();
        }
    })
}

/// Waits for `child` (the `who` of a panic message) to exit; panics with its `log` after
/// `timeout`.
#[track_caller]
fn wait_for_exit(
    child: &mut Child,
    timeout: Duration,
    who: &str,
    log: &Mutex<String>,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            panic!(
                "{who} did not exit within {timeout:?}; stderr:\n{}",
                log.lock().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_running(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(needle)
            && process_alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

// ---- files ------------------------------------------------------------------------------

/// A file in a directory of the test's own under the system's temp dir; the directory goes
/// when this is dropped. Derefs to the file's path.
pub struct TempFile {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl TempFile {
    /// Writes `text` to `name` in a directory named after this process and `tag`.
    pub fn new(tag: &str, name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("mcp-proxy-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile { dir, path }
    }
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for TempFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- raw HTTP/1.1 -----------------------------------------------------------------------

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("http://").expect("http URL");
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

fn connect(host: &str) -> TcpStream {
    let stream = TcpStream::connect(host).expect("connect to proxy");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn write_request(
    stream: &mut TcpStream,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

fn read_head(reader: &mut impl BufRead) -> (u16, HashMap<String, String>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header line");
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    (status, headers)
}

/// One request, whole response (Content-Length, chunked, or until close).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let (host, path) = split_url(url);
    let mut stream = connect(host);
    write_request(&mut stream, method, host, path, headers, body.as_bytes());
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    if method == "HEAD" {
        // no body
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        let mut decoder = Chunked {
            inner: &mut reader,
            left: 0,
            done: false,
        };
        decoder.read_to_end(&mut body).unwrap();
    } else if let Some(len) = headers.get("content-length") {
        body.resize(len.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

/// POSTs JSON with `Accept` for both JSON and SSE, unless `headers` say otherwise.
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all: Vec<(&str, &str)> = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ]
    .into_iter()
    .filter(|(k, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)))
    .collect();
    all.extend_from_slice(headers);
    request("POST", url, &all, &body.to_string())
}

/// Decodes a chunked body.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                let mut trailer = String::new();
                self.inner.read_line(&mut trailer)?;
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed inside a chunk"));
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

// ---- raw sockets ------------------------------------------------------------------------

/// A connection to the proxy for what `request` and `SseClient` cannot send or see: bytes
/// that are not UTF-8, HTTP/1.0, half-closes, comments. Reads time out after `DEADLINE`.
pub fn raw_connect(p: &Proxy) -> TcpStream {
    connect(&format!("127.0.0.1:{}", p.port))
}

/// Reads from `socket` onto `seen` until it contains `what`; panics if the connection ends
/// first, or after `DEADLINE`.
#[track_caller]
pub fn read_until(socket: &mut TcpStream, seen: &mut String, what: &str) {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while !seen.contains(what) {
        assert!(
            start.elapsed() < DEADLINE,
            "no {what:?} within {DEADLINE:?}: {seen}"
        );
        let n = socket
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading before {what:?}: {e}: {seen}"));
        assert!(n > 0, "connection ended before {what:?}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

// ---- SSE --------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub retry: Option<String>,
    pub data: String,
}

impl Event {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.data))
    }
}

/// An open SSE response, read event by event.
pub struct SseClient {
    pub status: u16,
    pub headers: HashMap<String, String>,
    reader: BufReader<Box<dyn Read + Send>>,
    stream: TcpStream,
}

impl SseClient {
    /// Sends a request and reads the head; the body is read by `next_event`.
    pub fn open(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> SseClient {
        let (host, path) = split_url(url);
        let mut stream = connect(host);
        write_request(&mut stream, method, host, path, headers, body.as_bytes());
        let mut head_reader = BufReader::new(stream.try_clone().unwrap());
        let (status, headers) = read_head(&mut head_reader);
        // Keep what the head reader buffered: wrap it, then decode chunks if needed.
        let raw: Box<dyn Read + Send> = Box::new(head_reader);
        let body: Box<dyn Read + Send> = if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            Box::new(Chunked {
                inner: BufReader::new(raw),
                left: 0,
                done: false,
            })
        } else {
            raw
        };
        SseClient {
            status,
            headers,
            reader: BufReader::new(body),
            stream,
        }
    }

    pub fn get(url: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        SseClient::open("GET", url, &all, "")
    }

    /// The next event (comments skipped), or `None` at the end of the stream. Panics when
    /// neither comes within `timeout`, however many comments (keep-alives) arrive meanwhile.
    #[track_caller]
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut event = Event::default();
        let mut has_data = false;
        let mut line = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no SSE event within {timeout:?}");
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => panic!("no SSE event within {timeout:?}: {e}"),
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if has_data || event.event.is_some() {
                    return Some(event);
                }
                continue;
            }
            if l.starts_with(':') {
                continue;
            }
            let (field, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = Some(value.to_string()),
                "id" => event.id = Some(value.to_string()),
                "retry" => event.retry = Some(value.to_string()),
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

    /// The next event that carries a JSON-RPC message.
    #[track_caller]
    pub fn next_message(&mut self) -> Value {
        loop {
            let event = self
                .next_event(DEADLINE)
                .expect("stream ended before a message");
            if !event.data.is_empty() && event.event.as_deref().unwrap_or("message") == "message" {
                return event.json();
            }
        }
    }

    /// Reads to the end of the stream, which must come within `timeout`; the events on the way
    /// (a priming event, an error for a request cut short).
    #[track_caller]
    pub fn rest(&mut self, timeout: Duration) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while let Some(event) = self.next_event(deadline.saturating_duration_since(Instant::now()))
        {
            events.push(event);
        }
        events
    }

    /// Closes the connection from our side.
    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

// ---- MCP over Streamable HTTP -------------------------------------------------------------

/// A Streamable HTTP session, as a test client uses it.
pub struct McpClient {
    pub url: String,
    pub session: Option<String>,
    next_id: i64,
}

pub fn initialize_params(capabilities: Value) -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "integration-test", "version": "1"}
    })
}

impl McpClient {
    /// Initializes a session at `url` (an `/mcp` URL) with these client capabilities.
    #[track_caller]
    pub fn connect(url: &str, capabilities: Value) -> McpClient {
        let response = post_json(
            url,
            &[("Accept", "application/json")],
            &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params": initialize_params(capabilities)}),
        );
        assert_eq!(response.status, 200, "initialize: {response:?}");
        let session = response.header("mcp-session-id").map(str::to_string);
        let client = McpClient {
            url: url.to_string(),
            session,
            next_id: 1,
        };
        let r = client.post(
            &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            false,
        );
        assert_eq!(r.status, 202, "initialized: {r:?}");
        client
    }

    pub fn headers(&self, sse: bool) -> Vec<(&str, &str)> {
        let mut h = vec![
            ("Content-Type", "application/json"),
            (
                "Accept",
                if sse {
                    "application/json, text/event-stream"
                } else {
                    "application/json"
                },
            ),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        if let Some(s) = &self.session {
            h.push(("Mcp-Session-Id", s.as_str()));
        }
        h
    }

    pub fn post(&self, message: &Value, sse: bool) -> Response {
        request("POST", &self.url, &self.headers(sse), &message.to_string())
    }

    pub fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// A request answered as JSON; returns the whole response message.
    #[track_caller]
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id();
        let r = self.post(
            &json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}),
            false,
        );
        assert_eq!(r.status, 200, "{method}: {r:?}");
        let v = r.json();
        assert_eq!(v["id"], id, "response id");
        v
    }

    /// `tools/call` of the fixture, answered as JSON; the first text content.
    #[track_caller]
    pub fn tool_text(&mut self, name: &str, arguments: Value) -> String {
        let v = self.call("tools/call", json!({"name": name, "arguments": arguments}));
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text in {v}"))
            .to_string()
    }

    /// Opens a request whose reply is an SSE stream.
    pub fn open_stream(&self, message: &Value) -> SseClient {
        SseClient::open("POST", &self.url, &self.headers(true), &message.to_string())
    }
}

// ---- client mode --------------------------------------------------------------------------

pub mod fake_remote;
pub mod stdio_client;

/// A port that was free a moment ago (for a remote that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
