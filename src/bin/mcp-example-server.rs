//! `mcp-example-server`: mcp-proxy's own stdio MCP (Model Context Protocol) server.
//!
//! It is the example of the README and the fixture of the proxy's integration tests.
//! It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout (one compact message per line;
//! nothing else ever goes to stdout unless a test asks for garbage) and writes diagnostics
//! to stderr. Each `tools/call` runs on its own thread, so slow tools do not block others,
//! and `notifications/cancelled` stops a running call (a cancelled call gets no response).
//! The server also sends its own requests to the client (ids "srv-1", "srv-2", ...).
//!
//! Tools:
//! - `echo` {message}: returns the message.
//! - `add` {a, b}: returns the sum.
//! - `sleep` {ms}: sleeps (cancellable), then "slept <ms>ms".
//! - `progress` {steps = 3, interval_ms = 10}: sends `notifications/progress` when the call
//!   carries a progress token, then "done <steps> steps".
//! - `log` {level = "info", message}: sends `notifications/message` (subject to `logging/setLevel`).
//! - `survey` {}: asks for elicitation and sampling at once, then returns both answers.
//! - `route` {region, shard?}: echoes them; both are marked `x-mcp-header` (Region, Shard).
//! - `ticks` {count = 20, interval_ms = 20}: log messages stamped with the microsecond they
//!   were written (`data.sent_us`), to measure delivery latency.
//! - `sample` {prompt}: asks the client `sampling/createMessage`.
//! - `elicit` {message}: asks the client `elicitation/create`.
//! - `roots` {}: asks the client `roots/list`.
//! - `ping_client` {}: pings the client, then "pong".
//! - `large` {bytes}: "0123456789" repeated and truncated to `bytes` characters.
//! - `env` {name}: the value of an environment variable, or "<unset>".
//! - `cwd` {}: the current working directory.
//! - `fail` {}: a JSON-RPC error response (-32042 "requested failure").
//! - `crash` {code = 3}: exits at once with that code, without answering.
//! - `notify` {kind: tools | resources | prompts}: sends `notifications/<kind>/list_changed`.
//! - `touch` {uri}: sends `notifications/resources/updated`.
//! - `stderr` {message}: writes the message to stderr.
//! - `garbage` {}: writes a non-JSON line to stdout, then answers normally.
//!
//! Resources: `example://greeting`, `example://counter` (counts its reads) and the template
//! `example://items/{id}`. Prompt: `greet` {name}. Completions: always "alpha", "beta".
//!
//! Flags for fault tests: `--init-delay-ms N`, `--no-initialize`, `--exit-at-start CODE`,
//! `--garbage-at-start`, `--stderr-at-start TEXT`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, BufRead, Write};
use std::process;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SERVER_NAME: &str = "mcp-example-server";
const INSTRUCTIONS: &str = "Example server of mcp-proxy: echo, progress, sampling and more.";
const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";
/// Log levels of MCP, from the least to the most severe.
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

const CLIENT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often waiting code looks whether its request was cancelled.
const CANCEL_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How long exiting waits for a line being written to stdout to be complete.
const EXIT_WRITE_GRACE: Duration = Duration::from_millis(500);

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const RESOURCE_NOT_FOUND: i64 = -32002;
const REQUESTED_FAILURE: i64 = -32042;

const USAGE: &str = "usage: mcp-example-server [--init-delay-ms N] [--no-initialize] \
                     [--exit-at-start CODE] [--garbage-at-start] [--stderr-at-start TEXT]";

fn main() {
    let options = parse_options(std::env::args_os().skip(1)).unwrap_or_else(|message| {
        note(format_args!("{message}\n{USAGE}"));
        process::exit(2)
    });
    let server: &'static Server = Box::leak(Box::new(Server::new(options)));
    server.perform_start_up_faults();
    note("ready");
    read_stdin_until_eof(server);
    server.exit_between_lines(0);
}

/// Writes a diagnostic line to stderr, never failing.
fn note(message: impl Display) {
    let _ = writeln!(io::stderr(), "{SERVER_NAME}: {message}");
}

/// Locks a mutex, ignoring poisoning: a panicked thread leaves no invariant broken here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Options {
    init_delay: Duration,
    no_initialize: bool,
    exit_at_start: Option<i32>,
    garbage_at_start: bool,
    stderr_at_start: Option<String>,
}

fn parse_options(mut args: impl Iterator<Item = OsString>) -> Result<Options, String> {
    let mut options = Options::default();
    while let Some(flag) = args.next() {
        match flag.to_str() {
            Some("--init-delay-ms") => {
                let ms = parsed_flag_value("--init-delay-ms", args.next())?;
                options.init_delay = Duration::from_millis(ms);
            }
            Some("--no-initialize") => options.no_initialize = true,
            Some("--exit-at-start") => {
                options.exit_at_start = Some(parsed_flag_value("--exit-at-start", args.next())?);
            }
            Some("--garbage-at-start") => options.garbage_at_start = true,
            Some("--stderr-at-start") => {
                options.stderr_at_start = Some(flag_value("--stderr-at-start", args.next())?);
            }
            _ => return Err(format!("unknown flag: {}", flag.to_string_lossy())),
        }
    }
    Ok(options)
}

fn flag_value(flag: &str, value: Option<OsString>) -> Result<String, String> {
    value
        .ok_or_else(|| format!("{flag} needs a value"))?
        .into_string()
        .map_err(|_| format!("{flag}: the value is not valid UTF-8"))
}

fn parsed_flag_value<T: FromStr>(flag: &str, value: Option<OsString>) -> Result<T, String> {
    let text = flag_value(flag, value)?;
    text.parse()
        .map_err(|_| format!("{flag}: invalid value {text:?}"))
}

// ---------------------------------------------------------------------------------------
// JSON-RPC plumbing
// ---------------------------------------------------------------------------------------

struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

type RpcResult = Result<Value, RpcError>;

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

/// What one message read from stdin turned out to be.
enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// The client's answer to one of our requests: its result, or its error object.
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
    Invalid {
        id: Value,
        error: RpcError,
    },
}

fn classify(message: Value) -> Incoming {
    let Value::Object(mut object) = message else {
        let reason = if message.is_array() {
            "Invalid Request: batches are not supported"
        } else {
            "Invalid Request: not a JSON object"
        };
        return Incoming::Invalid {
            id: Value::Null,
            error: RpcError::new(INVALID_REQUEST, reason),
        };
    };
    let id = object.remove("id");
    let params = object.remove("params").unwrap_or(Value::Null);
    match (object.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Incoming::Request { id, method, params },
        (Some(Value::String(method)), None) => Incoming::Notification { method, params },
        (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
            let outcome = match object.remove("error") {
                Some(error) => Err(error),
                None => Ok(object.remove("result").unwrap_or(Value::Null)),
            };
            Incoming::Response { id, outcome }
        }
        (_, id) => Incoming::Invalid {
            id: id.unwrap_or(Value::Null),
            error: RpcError::new(INVALID_REQUEST, "Invalid Request"),
        },
    }
}

fn read_stdin_until_eof(server: &'static Server) {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.iter().all(u8::is_ascii_whitespace) => {}
            Ok(_) => server.handle_line(&line),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                note(format_args!("cannot read stdin: {error}"));
                return;
            }
        }
    }
}

/// A flag set by `notifications/cancelled` and watched by the request it cancels.
#[derive(Clone, Default)]
struct Cancel(Arc<AtomicBool>);

impl Cancel {
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

struct Server {
    options: Options,
    stdout: Mutex<io::Stdout>,
    /// Index in `LOG_LEVELS` of the least severe level still sent; `None` sends everything.
    min_log_level: Mutex<Option<usize>>,
    client_capabilities: Mutex<Value>,
    /// Running `tools/call` requests, by the compact JSON of their id.
    in_flight: Mutex<HashMap<String, Cancel>>,
    /// Our requests to the client that wait for an answer, by id.
    pending: Mutex<HashMap<String, Sender<Result<Value, Value>>>>,
    last_request_number: AtomicU64,
    counter_reads: AtomicU64,
    subscriptions: Mutex<HashSet<String>>,
}

impl Server {
    fn new(options: Options) -> Self {
        Server {
            options,
            stdout: Mutex::new(io::stdout()),
            min_log_level: Mutex::new(None),
            client_capabilities: Mutex::new(json!({})),
            in_flight: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            last_request_number: AtomicU64::new(0),
            counter_reads: AtomicU64::new(0),
            subscriptions: Mutex::new(HashSet::new()),
        }
    }

    fn perform_start_up_faults(&self) {
        if let Some(text) = &self.options.stderr_at_start {
            let _ = writeln!(io::stderr(), "{text}");
        }
        if self.options.garbage_at_start {
            self.write_line("not json at start");
        }
        if let Some(code) = self.options.exit_at_start {
            self.exit_between_lines(code);
        }
    }

    // --- Output -------------------------------------------------------------------------

    /// Writes one line to stdout and flushes it. A broken stdout means the client is gone.
    fn write_line(&self, line: &str) {
        let mut stdout = lock(&self.stdout);
        let written = stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
        if written.is_err() {
            process::exit(0);
        }
    }

    fn send(&self, message: &Value) {
        self.write_line(&message.to_string());
    }

    fn respond(&self, id: &Value, outcome: RpcResult) {
        let message = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()}),
        };
        self.send(&message);
    }

    fn notify(&self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send(&message);
    }

    /// Sends `notifications/message` unless the client asked for more severe levels only.
    fn log(&self, level: &str, data: &str) {
        let min_level = *lock(&self.min_log_level);
        let below_minimum = matches!(
            (level_rank(level), min_level),
            (Some(rank), Some(min)) if rank < min
        );
        if !below_minimum {
            let params = json!({"level": level, "logger": SERVER_NAME, "data": data});
            self.notify("notifications/message", Some(params));
        }
    }

    /// Exits, but not in the middle of a line another thread is writing to stdout
    /// (unless that write stays stuck for longer than `EXIT_WRITE_GRACE`).
    fn exit_between_lines(&self, code: i32) -> ! {
        let deadline = Instant::now() + EXIT_WRITE_GRACE;
        loop {
            let stdout = self.stdout.try_lock();
            if !matches!(stdout, Err(TryLockError::WouldBlock)) || Instant::now() >= deadline {
                process::exit(code);
            }
            drop(stdout);
            thread::sleep(Duration::from_millis(1));
        }
    }

    // --- Input --------------------------------------------------------------------------

    fn handle_line(&'static self, line: &[u8]) {
        let message = match serde_json::from_slice::<Value>(line) {
            Ok(message) => message,
            Err(error) => {
                let error = RpcError::new(PARSE_ERROR, format!("Parse error: {error}"));
                return self.respond(&Value::Null, Err(error));
            }
        };
        match classify(message) {
            Incoming::Request { id, method, params } => self.handle_request(id, &method, params),
            Incoming::Notification { method, params } => {
                self.handle_notification(&method, &params);
            }
            Incoming::Response { id, outcome } => self.route_response(&id, outcome),
            Incoming::Invalid { id, error } => self.respond(&id, Err(error)),
        }
    }

    fn handle_request(&'static self, id: Value, method: &str, params: Value) {
        match method {
            "tools/call" => self.spawn_tool_call(id, params),
            "initialize" if self.options.no_initialize => {
                note("ignoring initialize (--no-initialize)");
            }
            "initialize" if !self.options.init_delay.is_zero() => {
                let delay = self.options.init_delay;
                thread::spawn(move || {
                    thread::sleep(delay);
                    self.respond(&id, self.initialize(&params));
                });
            }
            _ => self.respond(&id, self.answer(method, &params)),
        }
    }

    /// Answers the requests that are quick enough to be answered on the reading thread.
    fn answer(&self, method: &str, params: &Value) -> RpcResult {
        match method {
            "initialize" => self.initialize(params),
            "ping" => Ok(json!({})),
            "logging/setLevel" => self.set_log_level(params),
            "tools/list" => Ok(json!({"tools": tool_definitions()})),
            "resources/list" => Ok(resource_list()),
            "resources/templates/list" => Ok(resource_template_list()),
            "resources/read" => self.read_resource(params),
            "resources/subscribe" => self.subscribe(params),
            "resources/unsubscribe" => self.unsubscribe(params),
            "prompts/list" => Ok(prompt_list()),
            "prompts/get" => get_prompt(params),
            "completion/complete" => Ok(completion()),
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )),
        }
    }

    fn handle_notification(&self, method: &str, params: &Value) {
        if method == "notifications/cancelled" {
            self.cancel_request(params);
        }
    }

    fn cancel_request(&self, params: &Value) {
        let Some(request_id) = params.get("requestId") else {
            return note("notifications/cancelled without requestId");
        };
        match lock(&self.in_flight).get(&request_id.to_string()) {
            Some(cancel) => cancel.cancel(),
            None => note(format_args!("no running request {request_id} to cancel")),
        }
    }

    fn route_response(&self, id: &Value, outcome: Result<Value, Value>) {
        let waiter = id.as_str().and_then(|id| lock(&self.pending).remove(id));
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(outcome);
            }
            None => note(format_args!("ignoring a response to unknown request {id}")),
        }
    }

    /// Runs a tool on its own thread; its response is dropped if the call gets cancelled.
    fn spawn_tool_call(&'static self, id: Value, params: Value) {
        let key = id.to_string();
        let cancel = Cancel::default();
        lock(&self.in_flight).insert(key.clone(), cancel.clone());
        thread::spawn(move || {
            let outcome = self.call_tool(&params, &cancel);
            lock(&self.in_flight).remove(&key);
            if cancel.is_cancelled() {
                note(format_args!("request {key} was cancelled: no response"));
            } else {
                self.respond(&id, outcome);
            }
        });
    }

    fn call_tool(&self, params: &Value, cancel: &Cancel) -> RpcResult {
        let name = params.get("name").and_then(Value::as_str).unwrap_or("");
        let no_arguments = json!({});
        let call = ToolCall {
            server: self,
            arguments: params.get("arguments").unwrap_or(&no_arguments),
            progress_token: params.pointer("/_meta/progressToken"),
            cancel,
        };
        call.run(name)
    }

    // --- Requests to the client ---------------------------------------------------------

    /// Sends a request to the client and waits for its result; `Err` holds why there is none.
    fn ask_client(
        &self,
        method: &str,
        params: Option<Value>,
        cancel: &Cancel,
    ) -> Result<Value, String> {
        let mut answers = self.ask_client_all(vec![(method, params)], cancel);
        answers.pop().expect("one answer per request")
    }

    /// Sends every request before waiting for any answer (a client may get them together).
    fn ask_client_all(
        &self,
        requests: Vec<(&str, Option<Value>)>,
        cancel: &Cancel,
    ) -> Vec<Result<Value, String>> {
        let mut waiting = Vec::new();
        for (method, params) in requests {
            let number = self.last_request_number.fetch_add(1, Ordering::SeqCst) + 1;
            let id = format!("srv-{number}");
            let (sender, receiver) = mpsc::channel();
            lock(&self.pending).insert(id.clone(), sender);
            let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
            if let Some(params) = params {
                request["params"] = params;
            }
            self.send(&request);
            waiting.push((id, method, receiver));
        }
        waiting
            .into_iter()
            .map(|(id, method, receiver)| {
                let outcome = wait_for_client(&receiver, method, cancel);
                lock(&self.pending).remove(&id);
                outcome
            })
            .collect()
    }

    fn warn_unless_client_supports(&self, capability: &str) {
        if lock(&self.client_capabilities).get(capability).is_none() {
            note(format_args!(
                "the client did not declare the {capability} capability; asking anyway"
            ));
        }
    }

    // --- Lifecycle and logging ----------------------------------------------------------

    fn initialize(&self, params: &Value) -> RpcResult {
        let capabilities = params.get("capabilities").cloned().unwrap_or(json!({}));
        *lock(&self.client_capabilities) = capabilities;
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = requested
            .filter(|version| SUPPORTED_PROTOCOL_VERSIONS.contains(version))
            .unwrap_or(LATEST_PROTOCOL_VERSION);
        Ok(json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "resources": {"subscribe": true, "listChanged": true},
                "prompts": {"listChanged": true},
                "logging": {},
                "completions": {}
            },
            "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")},
            "instructions": INSTRUCTIONS
        }))
    }

    fn set_log_level(&self, params: &Value) -> RpcResult {
        let level = string_param(params, "level")?;
        let rank = level_rank(level)
            .ok_or_else(|| RpcError::invalid_params(format!("Invalid log level: {level}")))?;
        *lock(&self.min_log_level) = Some(rank);
        Ok(json!({}))
    }

    // --- Resources ----------------------------------------------------------------------

    fn read_resource(&self, params: &Value) -> RpcResult {
        let uri = string_param(params, "uri")?;
        let text = match uri {
            "example://greeting" => format!("Hello from {SERVER_NAME}"),
            "example://counter" => {
                let reads = self.counter_reads.fetch_add(1, Ordering::SeqCst) + 1;
                reads.to_string()
            }
            _ => match uri.strip_prefix("example://items/") {
                Some(id) if !id.is_empty() => format!("item {id}"),
                _ => {
                    return Err(RpcError::new(RESOURCE_NOT_FOUND, "Resource not found")
                        .with_data(json!({"uri": uri})));
                }
            },
        };
        Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}))
    }

    fn subscribe(&self, params: &Value) -> RpcResult {
        let uri = string_param(params, "uri")?;
        lock(&self.subscriptions).insert(uri.to_owned());
        Ok(json!({}))
    }

    fn unsubscribe(&self, params: &Value) -> RpcResult {
        let uri = string_param(params, "uri")?;
        lock(&self.subscriptions).remove(uri);
        Ok(json!({}))
    }
}

/// Waits for the client's answer, in slices so that a cancellation is noticed.
fn wait_for_client(
    receiver: &Receiver<Result<Value, Value>>,
    method: &str,
    cancel: &Cancel,
) -> Result<Value, String> {
    let deadline = Instant::now() + CLIENT_RESPONSE_TIMEOUT;
    loop {
        if cancel.is_cancelled() {
            return Err("cancelled".to_owned());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let seconds = CLIENT_RESPONSE_TIMEOUT.as_secs();
            return Err(format!("no response to {method} within {seconds} s"));
        }
        match receiver.recv_timeout(left.min(CANCEL_POLL_INTERVAL)) {
            Ok(Ok(result)) => return Ok(result),
            Ok(Err(error)) => return Err(client_error_message(&error)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err("no response".to_owned()),
        }
    }
}

fn client_error_message(error: &Value) -> String {
    match error.get("message").and_then(Value::as_str) {
        Some(message) => message.to_owned(),
        None => error.to_string(),
    }
}

fn level_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|known| *known == level)
}

fn string_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("Missing or invalid parameter: {name}")))
}

// ---------------------------------------------------------------------------------------
// Resources, prompts and completions
// ---------------------------------------------------------------------------------------

fn resource_list() -> Value {
    json!({"resources": [
        {"uri": "example://greeting", "name": "greeting", "mimeType": "text/plain"},
        {"uri": "example://counter", "name": "counter", "mimeType": "text/plain"}
    ]})
}

fn resource_template_list() -> Value {
    json!({"resourceTemplates": [{"uriTemplate": "example://items/{id}", "name": "item"}]})
}

fn prompt_list() -> Value {
    json!({"prompts": [{
        "name": "greet",
        "description": "Greets someone",
        "arguments": [{"name": "name", "required": true}]
    }]})
}

fn get_prompt(params: &Value) -> RpcResult {
    let name = string_param(params, "name")?;
    if name != "greet" {
        return Err(RpcError::invalid_params(format!("Unknown prompt: {name}")));
    }
    let who = params
        .pointer("/arguments/name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("Missing argument: name"))?;
    Ok(json!({
        "description": "Greets someone",
        "messages": [{"role": "user", "content": {"type": "text", "text": format!("Say hello to {who}")}}]
    }))
}

fn completion() -> Value {
    json!({"completion": {"values": ["alpha", "beta"], "total": 2, "hasMore": false}})
}

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

fn tool_definitions() -> Value {
    let string = json!({"type": "string"});
    let number = json!({"type": "number"});
    let count = json!({"type": "integer", "minimum": 0});
    json!([
        tool(
            "echo",
            "Returns the message unchanged",
            json!({"message": string}),
            &["message"]
        ),
        tool(
            "add",
            "Adds two numbers",
            json!({"a": number, "b": number}),
            &["a", "b"]
        ),
        tool(
            "sleep",
            "Sleeps for ms milliseconds (cancellable)",
            json!({"ms": count}),
            &["ms"]
        ),
        tool(
            "progress",
            "Sends progress notifications, interval_ms apart",
            json!({"steps": count, "interval_ms": count}),
            &[],
        ),
        tool(
            "survey",
            "Asks the client for a name (elicitation) and a haiku (sampling) at the same time",
            json!({}),
            &[],
        ),
        tool(
            "route",
            "Echoes region and shard, two parameters mirrored into Mcp-Param-* headers \
             (x-mcp-header) by 2026-07-28 clients over HTTP",
            json!({
                "region": {"type": "string", "x-mcp-header": "Region"},
                "shard": {"type": "integer", "x-mcp-header": "Shard"}
            }),
            &["region"],
        ),
        tool(
            "ticks",
            "Sends count log messages interval_ms apart, each stamped with the time it was \
             written (microseconds since the epoch), to measure delivery latency",
            json!({"count": count, "interval_ms": count}),
            &[],
        ),
        tool(
            "log",
            "Sends a log message notification",
            json!({"level": {"type": "string", "enum": LOG_LEVELS}, "message": string}),
            &["message"],
        ),
        tool(
            "sample",
            "Asks the client's LLM to complete the prompt",
            json!({"prompt": string}),
            &["prompt"]
        ),
        tool(
            "elicit",
            "Asks the user of the client for a name",
            json!({"message": string}),
            &["message"]
        ),
        tool("roots", "Lists the client's roots", json!({}), &[]),
        tool("ping_client", "Pings the client", json!({}), &[]),
        tool(
            "large",
            "Returns a text of exactly that many bytes",
            json!({"bytes": count}),
            &["bytes"]
        ),
        tool(
            "env",
            "Returns the value of an environment variable",
            json!({"name": string}),
            &["name"]
        ),
        tool(
            "cwd",
            "Returns the current working directory",
            json!({}),
            &[]
        ),
        tool("fail", "Answers with a JSON-RPC error", json!({}), &[]),
        tool(
            "crash",
            "Exits the server at once with the code",
            json!({"code": {"type": "integer"}}),
            &[]
        ),
        tool(
            "notify",
            "Sends a list_changed notification",
            json!({"kind": {"type": "string", "enum": ["tools", "resources", "prompts"]}}),
            &["kind"],
        ),
        tool(
            "touch",
            "Sends a resource updated notification",
            json!({"uri": string}),
            &["uri"]
        ),
        tool(
            "stderr",
            "Writes the message to stderr",
            json!({"message": string}),
            &["message"]
        ),
        tool(
            "garbage",
            "Writes a line that is not JSON to stdout",
            json!({}),
            &[]
        ),
    ])
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required}
    })
}

fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

fn error_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": true})
}

/// One `tools/call` request being run.
struct ToolCall<'a> {
    server: &'a Server,
    arguments: &'a Value,
    progress_token: Option<&'a Value>,
    cancel: &'a Cancel,
}

impl<'a> ToolCall<'a> {
    fn run(&self, name: &str) -> RpcResult {
        match name {
            "echo" => self.echo(),
            "add" => self.add(),
            "sleep" => self.sleep(),
            "progress" => self.progress(),
            "log" => self.log(),
            "ticks" => self.ticks(),
            "route" => self.route(),
            "survey" => self.survey(),
            "sample" => self.sample(),
            "elicit" => self.elicit(),
            "roots" => self.roots(),
            "ping_client" => self.ping_client(),
            "large" => self.large(),
            "env" => self.env(),
            "cwd" => Ok(current_directory()),
            "fail" => Err(RpcError::new(REQUESTED_FAILURE, "requested failure")
                .with_data(json!({"detail": "fail tool"}))),
            "crash" => self.crash(),
            "notify" => self.notify(),
            "touch" => self.touch(),
            "stderr" => self.stderr(),
            "garbage" => {
                self.server.write_line("this is not json");
                Ok(text_result("garbage sent"))
            }
            _ => Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
        }
    }

    fn echo(&self) -> RpcResult {
        Ok(text_result(self.string("message")?))
    }

    fn add(&self) -> RpcResult {
        let sum = self.number("a")? + self.number("b")?;
        // Display of f64 already writes integral values without a fraction ("5", not "5.0").
        Ok(text_result(sum.to_string()))
    }

    fn sleep(&self) -> RpcResult {
        let ms = self.unsigned("ms", None)?;
        self.sleep_unless_cancelled(Duration::from_millis(ms));
        Ok(text_result(format!("slept {ms}ms")))
    }

    fn progress(&self) -> RpcResult {
        let steps = self.unsigned("steps", Some(3))?;
        let interval = Duration::from_millis(self.unsigned("interval_ms", Some(10))?);
        for step in 1..=steps {
            if step > 1 {
                self.sleep_unless_cancelled(interval);
            }
            if self.cancel.is_cancelled() {
                break;
            }
            self.report_progress(step, steps);
        }
        Ok(text_result(format!("done {steps} steps")))
    }

    fn report_progress(&self, step: u64, steps: u64) {
        if let Some(token) = self.progress_token {
            let params = json!({
                "progressToken": token,
                "progress": step,
                "total": steps,
                "message": format!("step {step} of {steps}")
            });
            self.server.notify("notifications/progress", Some(params));
        }
    }

    fn route(&self) -> RpcResult {
        let region = self.string("region")?;
        let shard = self
            .arguments
            .get("shard")
            .map_or("none".to_string(), Value::to_string);
        Ok(text_result(format!("region={region} shard={shard}")))
    }

    fn ticks(&self) -> RpcResult {
        let count = self.unsigned("count", Some(20))?;
        let interval = Duration::from_millis(self.unsigned("interval_ms", Some(20))?);
        for seq in 1..=count {
            if seq > 1 {
                self.sleep_unless_cancelled(interval);
            }
            if self.cancel.is_cancelled() {
                break;
            }
            let sent_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let params = json!({"level": "info", "logger": "ticks", "data": {"seq": seq, "sent_us": sent_us}});
            self.server.notify("notifications/message", Some(params));
        }
        Ok(text_result(format!("ticked {count}")))
    }

    fn log(&self) -> RpcResult {
        let level = self.string_or("level", "info")?;
        if level_rank(level).is_none() {
            return Err(RpcError::invalid_params(format!(
                "Invalid log level: {level}"
            )));
        }
        self.server.log(level, self.string("message")?);
        Ok(text_result("logged"))
    }

    fn sample(&self) -> RpcResult {
        let prompt = self.string("prompt")?;
        self.server.warn_unless_client_supports("sampling");
        let params = json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": 100
        });
        let sampled = self
            .server
            .ask_client("sampling/createMessage", Some(params), self.cancel)
            .and_then(|result| sampled_text(&result));
        Ok(match sampled {
            Ok(text) => text_result(format!("sampled: {text}")),
            Err(reason) => error_result(format!("sampling failed: {reason}")),
        })
    }

    fn elicit(&self) -> RpcResult {
        let message = self.string("message")?;
        self.server.warn_unless_client_supports("elicitation");
        let params = json!({
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"]
            },
            // Names this request's key for 2026-07-28 clients of mcp-proxy (inputRequests).
            "_meta": {"dev.mcp-proxy/inputKey": "name"}
        });
        let elicited = self
            .server
            .ask_client("elicitation/create", Some(params), self.cancel);
        Ok(match elicited {
            Ok(result) => text_result(result.to_string()),
            Err(reason) => error_result(format!("elicitation failed: {reason}")),
        })
    }

    /// Asks for a name (elicitation) and a haiku (sampling) at once.
    fn survey(&self) -> RpcResult {
        let name = json!({
            "message": "your name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
            "_meta": {"dev.mcp-proxy/inputKey": "name"}
        });
        let haiku = json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": "a haiku"}}],
            "maxTokens": 50,
            "_meta": {"dev.mcp-proxy/inputKey": "haiku"}
        });
        let answers = self.server.ask_client_all(
            vec![
                ("elicitation/create", Some(name)),
                ("sampling/createMessage", Some(haiku)),
            ],
            self.cancel,
        );
        let texts: Result<Vec<String>, String> = answers
            .into_iter()
            .map(|a| a.map(|v| v.to_string()))
            .collect();
        Ok(match texts {
            Ok(texts) => text_result(texts.join(" | ")),
            Err(reason) => error_result(format!("survey failed: {reason}")),
        })
    }

    fn roots(&self) -> RpcResult {
        self.server.warn_unless_client_supports("roots");
        Ok(
            match self.server.ask_client("roots/list", None, self.cancel) {
                Ok(result) => text_result(result["roots"].to_string()),
                Err(reason) => error_result(format!("roots/list failed: {reason}")),
            },
        )
    }

    fn ping_client(&self) -> RpcResult {
        Ok(match self.server.ask_client("ping", None, self.cancel) {
            Ok(_) => text_result("pong"),
            Err(reason) => error_result(format!("ping failed: {reason}")),
        })
    }

    fn large(&self) -> RpcResult {
        let bytes = usize::try_from(self.unsigned("bytes", None)?)
            .map_err(|_| RpcError::invalid_params("Invalid argument bytes: too large"))?;
        let text: String = "0123456789".chars().cycle().take(bytes).collect();
        Ok(text_result(text))
    }

    fn env(&self) -> RpcResult {
        let value = match std::env::var_os(self.string("name")?) {
            Some(value) => value.to_string_lossy().into_owned(),
            None => "<unset>".to_owned(),
        };
        Ok(text_result(value))
    }

    fn crash(&self) -> RpcResult {
        let code = self.argument("code", Some(3), "a 32-bit integer", |value| {
            value.as_i64().and_then(|code| i32::try_from(code).ok())
        })?;
        note(format_args!("crashing with exit code {code} as asked"));
        self.server.exit_between_lines(code)
    }

    fn notify(&self) -> RpcResult {
        let kind = self.string("kind")?;
        if !["tools", "resources", "prompts"].contains(&kind) {
            return Err(RpcError::invalid_params(format!(
                "Invalid argument kind: {kind} (expected tools, resources or prompts)"
            )));
        }
        let method = format!("notifications/{kind}/list_changed");
        self.server.notify(&method, None);
        Ok(text_result("notified"))
    }

    fn touch(&self) -> RpcResult {
        let uri = self.string("uri")?;
        let params = json!({"uri": uri});
        self.server
            .notify("notifications/resources/updated", Some(params));
        Ok(text_result("touched"))
    }

    fn stderr(&self) -> RpcResult {
        let _ = writeln!(io::stderr(), "{}", self.string("message")?);
        Ok(text_result("written"))
    }

    /// Sleeps for `duration` in short slices, returning early if the call is cancelled.
    fn sleep_unless_cancelled(&self, duration: Duration) {
        // A duration too long for an Instant simply sleeps until cancelled.
        let deadline = Instant::now().checked_add(duration);
        while !self.cancel.is_cancelled() {
            let left = deadline.map_or(CANCEL_POLL_INTERVAL, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(CANCEL_POLL_INTERVAL));
        }
    }

    // --- Arguments ----------------------------------------------------------------------

    /// Reads an argument with `read`; a missing (or null) one takes `default` if there is one.
    fn argument<T>(
        &self,
        name: &str,
        default: Option<T>,
        expected: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T, RpcError> {
        match self.arguments.get(name) {
            None | Some(Value::Null) => {
                default.ok_or_else(|| RpcError::invalid_params(format!("Missing argument: {name}")))
            }
            Some(value) => read(value).ok_or_else(|| {
                RpcError::invalid_params(format!("Invalid argument {name}: expected {expected}"))
            }),
        }
    }

    fn string(&self, name: &str) -> Result<&'a str, RpcError> {
        self.argument(name, None, "a string", Value::as_str)
    }

    fn string_or(&self, name: &str, default: &'a str) -> Result<&'a str, RpcError> {
        self.argument(name, Some(default), "a string", Value::as_str)
    }

    fn unsigned(&self, name: &str, default: Option<u64>) -> Result<u64, RpcError> {
        self.argument(name, default, "a non-negative integer", Value::as_u64)
    }

    fn number(&self, name: &str) -> Result<f64, RpcError> {
        self.argument(name, None, "a number", Value::as_f64)
    }
}

/// The text of a `sampling/createMessage` result: `content` is one block or (newer
/// protocol versions) an array of blocks.
fn sampled_text(result: &Value) -> Result<String, String> {
    let block = match &result["content"] {
        Value::Array(blocks) => blocks.iter().find(|block| block.get("text").is_some()),
        block => Some(block),
    };
    block
        .and_then(|block| block.get("text"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the result has no text content".to_owned())
}

fn current_directory() -> Value {
    match std::env::current_dir() {
        Ok(directory) => text_result(directory.display().to_string()),
        Err(error) => error_result(format!("cannot read the current directory: {error}")),
    }
}
