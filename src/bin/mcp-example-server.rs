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

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Write};
use std::process;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

// Reason: each fixture server uses only part of the shared module.
#[allow(dead_code)]
#[path = "fixture/mod.rs"]
mod fixture;

use fixture::{
    Arguments, Cancel, ClientRequests, Incoming, LOG_LEVELS, RpcError, RpcResult, Running, Session,
    Stdout, error_result, lock, note, sampled_text, string_param, text_result, tool,
};

const SERVER_NAME: &str = "mcp-example-server";
const INSTRUCTIONS: &str = "Example server of mcp-proxy: echo, progress, sampling and more.";

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
    fixture::read_stdin_until_eof(|message| server.handle(message));
    server.out.exit_between_lines(0);
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
// The server
// ---------------------------------------------------------------------------------------

struct Server {
    options: Options,
    out: Stdout,
    session: Session,
    /// Running `tools/call` requests.
    running: Running,
    /// Our requests to the client ("srv-1", "srv-2", ...).
    asked: ClientRequests,
    counter_reads: AtomicU64,
    subscriptions: Mutex<HashSet<String>>,
}

impl Server {
    fn new(options: Options) -> Self {
        Server {
            options,
            out: Stdout::new(),
            session: Session::new(),
            running: Running::new(),
            asked: ClientRequests::new("srv"),
            counter_reads: AtomicU64::new(0),
            subscriptions: Mutex::new(HashSet::new()),
        }
    }

    fn perform_start_up_faults(&self) {
        if let Some(text) = &self.options.stderr_at_start {
            let _ = writeln!(io::stderr(), "{text}");
        }
        if self.options.garbage_at_start {
            self.out.write_line("not json at start");
        }
        if let Some(code) = self.options.exit_at_start {
            self.out.exit_between_lines(code);
        }
    }

    // --- Input --------------------------------------------------------------------------

    fn handle(&'static self, message: Incoming) {
        match message {
            Incoming::Request { id, method, params } => self.handle_request(id, &method, params),
            Incoming::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    self.running.cancel_request(&params);
                }
            }
            Incoming::Response { id, outcome } => self.asked.route_response(&id, outcome),
            Incoming::Invalid { id, error } => self.out.respond(&id, Err(error)),
        }
    }

    fn handle_request(&'static self, id: Value, method: &str, params: Value) {
        match method {
            // Answered at once; then this thread, the only one reading stdin, sleeps: a child
            // that stops reading (tests of the proxy's backpressure). Not listed by tools/list.
            "tools/call" if params["name"] == "stop_reading" => {
                let ms = params["arguments"]["ms"].as_u64().unwrap_or(1000);
                self.out.respond(&id, Ok(text_result("stopped reading")));
                thread::sleep(Duration::from_millis(ms));
            }
            // Its response is dropped if the call gets cancelled.
            "tools/call" => self
                .running
                .spawn(&self.out, id, move |cancel| self.call_tool(&params, cancel)),
            "initialize" if self.options.no_initialize => {
                note("ignoring initialize (--no-initialize)");
            }
            "initialize" if !self.options.init_delay.is_zero() => {
                let delay = self.options.init_delay;
                thread::spawn(move || {
                    thread::sleep(delay);
                    self.out
                        .respond(&id, Ok(self.session.initialize(&params, INSTRUCTIONS)));
                });
            }
            _ => self.out.respond(&id, self.answer(method, &params)),
        }
    }

    /// Answers the requests that are quick enough to be answered on the reading thread.
    fn answer(&self, method: &str, params: &Value) -> RpcResult {
        match method {
            "initialize" => Ok(self.session.initialize(params, INSTRUCTIONS)),
            "ping" => Ok(json!({})),
            "logging/setLevel" => self.session.set_log_level(params),
            "tools/list" => Ok(json!({"tools": tool_definitions()})),
            "resources/list" => Ok(resource_list()),
            "resources/templates/list" => Ok(resource_template_list()),
            "resources/read" => self.read_resource(params),
            "resources/subscribe" => self.subscribe(params),
            "resources/unsubscribe" => self.unsubscribe(params),
            "prompts/list" => Ok(prompt_list()),
            "prompts/get" => get_prompt(params),
            "completion/complete" => Ok(completion()),
            _ => Err(RpcError::method_not_found(method)),
        }
    }

    fn call_tool(&self, params: &Value, cancel: &Cancel) -> RpcResult {
        let name = params.get("name").and_then(Value::as_str).unwrap_or("");
        let no_arguments = json!({});
        let call = ToolCall {
            server: self,
            arguments: Arguments(params.get("arguments").unwrap_or(&no_arguments)),
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
        let waiting: Vec<_> = requests
            .into_iter()
            .map(|(method, params)| self.asked.send(&self.out, method, params))
            .collect();
        waiting
            .into_iter()
            .map(|asked| {
                self.asked
                    .wait(asked, cancel)
                    .map_err(|failure| failure.to_string())
            })
            .collect()
    }

    fn warn_unless_client_supports(&self, capability: &str) {
        if !self.session.client_supports(capability) {
            note(format_args!(
                "the client did not declare the {capability} capability; asking anyway"
            ));
        }
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
                _ => return Err(RpcError::resource_not_found(uri)),
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

/// One `tools/call` request being run.
struct ToolCall<'a> {
    server: &'a Server,
    arguments: Arguments<'a>,
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
                self.server.out.write_line("this is not json");
                Ok(text_result("garbage sent"))
            }
            _ => Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
        }
    }

    fn echo(&self) -> RpcResult {
        Ok(text_result(self.arguments.string("message")?))
    }

    fn add(&self) -> RpcResult {
        let sum = self.arguments.number("a")? + self.arguments.number("b")?;
        // Display of f64 already writes integral values without a fraction ("5", not "5.0").
        Ok(text_result(sum.to_string()))
    }

    fn sleep(&self) -> RpcResult {
        let ms = self.arguments.unsigned("ms", None)?;
        self.cancel.sleep(Duration::from_millis(ms));
        Ok(text_result(format!("slept {ms}ms")))
    }

    fn progress(&self) -> RpcResult {
        let steps = self.arguments.unsigned("steps", Some(3))?;
        let interval = Duration::from_millis(self.arguments.unsigned("interval_ms", Some(10))?);
        for step in 1..=steps {
            if step > 1 {
                self.cancel.sleep(interval);
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
            self.server
                .out
                .notify("notifications/progress", Some(params));
        }
    }

    fn route(&self) -> RpcResult {
        let region = self.arguments.string("region")?;
        let shard = self
            .arguments
            .get("shard")
            .map_or("none".to_string(), Value::to_string);
        Ok(text_result(format!("region={region} shard={shard}")))
    }

    fn ticks(&self) -> RpcResult {
        let count = self.arguments.unsigned("count", Some(20))?;
        let interval = Duration::from_millis(self.arguments.unsigned("interval_ms", Some(20))?);
        for seq in 1..=count {
            if seq > 1 {
                self.cancel.sleep(interval);
            }
            if self.cancel.is_cancelled() {
                break;
            }
            let sent_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let params = json!({"level": "info", "logger": "ticks", "data": {"seq": seq, "sent_us": sent_us}});
            self.server
                .out
                .notify("notifications/message", Some(params));
        }
        Ok(text_result(format!("ticked {count}")))
    }

    fn log(&self) -> RpcResult {
        let level = self.arguments.string_or("level", "info")?;
        if fixture::level_rank(level).is_none() {
            return Err(RpcError::invalid_params(format!(
                "Invalid log level: {level}"
            )));
        }
        self.server
            .session
            .log(&self.server.out, level, self.arguments.string("message")?);
        Ok(text_result("logged"))
    }

    fn sample(&self) -> RpcResult {
        let prompt = self.arguments.string("prompt")?;
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
        let message = self.arguments.string("message")?;
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
        let bytes = usize::try_from(self.arguments.unsigned("bytes", None)?)
            .map_err(|_| RpcError::invalid_params("Invalid argument bytes: too large"))?;
        let text: String = "0123456789".chars().cycle().take(bytes).collect();
        Ok(text_result(text))
    }

    fn env(&self) -> RpcResult {
        let value = match std::env::var_os(self.arguments.string("name")?) {
            Some(value) => value.to_string_lossy().into_owned(),
            None => "<unset>".to_owned(),
        };
        Ok(text_result(value))
    }

    fn crash(&self) -> RpcResult {
        let code = self
            .arguments
            .argument("code", Some(3), "a 32-bit integer", |value| {
                value.as_i64().and_then(|code| i32::try_from(code).ok())
            })?;
        note(format_args!("crashing with exit code {code} as asked"));
        self.server.out.exit_between_lines(code)
    }

    fn notify(&self) -> RpcResult {
        let kind = self.arguments.string("kind")?;
        if !["tools", "resources", "prompts"].contains(&kind) {
            return Err(RpcError::invalid_params(format!(
                "Invalid argument kind: {kind} (expected tools, resources or prompts)"
            )));
        }
        let method = format!("notifications/{kind}/list_changed");
        self.server.out.notify(&method, None);
        Ok(text_result("notified"))
    }

    fn touch(&self) -> RpcResult {
        let uri = self.arguments.string("uri")?;
        let params = json!({"uri": uri});
        self.server
            .out
            .notify("notifications/resources/updated", Some(params));
        Ok(text_result("touched"))
    }

    fn stderr(&self) -> RpcResult {
        let _ = writeln!(io::stderr(), "{}", self.arguments.string("message")?);
        Ok(text_result("written"))
    }
}

fn current_directory() -> Value {
    match std::env::current_dir() {
        Ok(directory) => text_result(directory.display().to_string()),
        Err(error) => error_result(format!("cannot read the current directory: {error}")),
    }
}
