//! `mcp-modern-server`: a stdio MCP server that speaks only the 2026-07-28 protocol revision
//! ("modern", stateless MCP): the fixture for mcp-proxy's support of modern children.
//!
//! Like `mcp-example-server` it speaks newline-delimited JSON-RPC 2.0 on stdin/stdout (one
//! compact message per line, one writer, a flush per line), writes diagnostics to stderr and
//! runs each `tools/call` on its own thread. What makes it modern:
//! - No handshake: `initialize` gets -32601 "... this server speaks only 2026-07-28"; so do
//!   the removed `ping`, `logging/setLevel`, `resources/subscribe` and `resources/unsubscribe`.
//!   Any other unknown method gets -32601 too.
//! - Every request carries `params._meta` with `io.modelcontextprotocol/protocolVersion` (a
//!   missing key → -32602; a version other than 2026-07-28 → -32022 "Unsupported protocol
//!   version" with `data.supported` and `data.requested`) and
//!   `io.modelcontextprotocol/clientCapabilities` (an object; missing → -32602), and may carry
//!   `io.modelcontextprotocol/clientInfo`, `io.modelcontextprotocol/logLevel` and `progressToken`.
//! - `server/discover` returns the supported versions, capabilities, instructions and caching
//!   hints. Every result has `resultType` ("complete" or "input_required") and
//!   `_meta["io.modelcontextprotocol/serverInfo"]`; `server/discover`, `tools/list`,
//!   `resources/list`, `resources/templates/list`, `resources/read` and `prompts/list` also
//!   have `ttlMs` (0) and `cacheScope` ("public").
//! - The server never sends a request. A call that needs the client's input answers with an
//!   InputRequiredResult (`inputRequests` by key, and an opaque `requestState`); the client
//!   retries the same request (a new id) with `inputResponses` by key and that `requestState`.
//!   The state is the base64 of a small JSON object naming the tool and the round; one that
//!   does not decode (or names another tool) gets -32602. The server asks only with a
//!   capability the request's `clientCapabilities` declares, otherwise the call gets -32021
//!   "Missing required client capability" with `data.requiredCapabilities`.
//! - `notifications/message` goes only to requests whose `_meta` has
//!   `io.modelcontextprotocol/logLevel`, for levels at or above it; `notifications/progress`
//!   only to requests with `_meta.progressToken`.
//! - `notifications/cancelled` {requestId} stops a running call, which then gets no response.
//! - `subscriptions/listen` {notifications: {toolsListChanged?, promptsListChanged?,
//!   resourcesListChanged?, resourceSubscriptions?: [uri]}} first sends
//!   `notifications/subscriptions/acknowledged` {notifications: the subset honoured (prompts
//!   never change, so promptsListChanged is not), _meta: {subscriptionId}}, then stays open
//!   without a response and receives the change notifications it opted into, each with
//!   `params._meta["io.modelcontextprotocol/subscriptionId"]` = the listen request's id.
//!   `notifications/cancelled` for that id ends it with the result
//!   {resultType: "complete", _meta: {subscriptionId, serverInfo}}. Several listens may be
//!   open at once, each with its own filter.
//!
//! Tools:
//! - `echo` {message}: returns the message.
//! - `progress` {steps = 3, interval_ms = 10}: progress notifications (with a progress token),
//!   then "done <steps> steps"; cancellable between steps.
//! - `log` {message, level = "info"}: a `notifications/message` (if the request opted in),
//!   then "logged".
//! - `ask_name` {}: asks `name` (elicitation/create, schema {name: string}); on the retry,
//!   "hello <content.name>", or "no name" if the action was not accept. An answer that is not
//!   an ElicitResult gets -32602.
//! - `sample` {prompt}: asks `completion` (sampling/createMessage); then "sampled: <text>".
//! - `two_rounds` {}: asks `first` (elicitation), then on the retry `second` with a new
//!   `requestState`, then "first=<answer> second=<answer>" (the `answer` field of each
//!   accepted elicitation, or the action if it was not accepted).
//! - `touch` {uri}: sends `notifications/resources/updated` {uri} to the listens subscribed
//!   to that uri.
//! - `notify_tools` {}: sends `notifications/tools/list_changed` to the listens that opted in.
//! - `crash` {}: exits at once with code 3, without answering.
//!
//! An unknown tool gets -32602. Resource: `modern://greeting` (text; reading another uri
//! gets -32602 with `data.uri`). Prompt: `greet` {name}. The server exits 0 at the end of
//! stdin. Flag: `--stderr-at-start TEXT` writes TEXT to stderr at start.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::process;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};

// Reason: each fixture server uses only part of the shared module.
#[allow(dead_code)]
#[path = "fixture/mod.rs"]
mod fixture;

use fixture::{
    Arguments, Cancel, INVALID_REQUEST, Incoming, LOG_LEVELS, METHOD_NOT_FOUND, RpcError,
    RpcResult, Running, Stdout, level_rank, lock, note, sampled_text, string_param, text_result,
    tool,
};

const SERVER_NAME: &str = "mcp-modern-server";
const INSTRUCTIONS: &str = "Modern example server.";
const PROTOCOL_VERSION: &str = "2026-07-28";

const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Methods whose results carry the caching hints `ttlMs` and `cacheScope`.
const CACHEABLE_METHODS: [&str; 6] = [
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
];
/// Methods of the older revisions that 2026-07-28 removed.
const REMOVED_METHODS: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

const GREETING_URI: &str = "modern://greeting";

const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

const USAGE: &str = "usage: mcp-modern-server [--stderr-at-start TEXT]";

fn main() {
    let options = parse_options(std::env::args_os().skip(1)).unwrap_or_else(|message| {
        note(format_args!("{message}\n{USAGE}"));
        process::exit(2)
    });
    if let Some(text) = &options.stderr_at_start {
        let _ = writeln!(io::stderr(), "{text}");
    }
    let server: &'static Server = Box::leak(Box::new(Server::new()));
    note("ready");
    fixture::read_stdin_until_eof(|message| server.handle(message));
    server.out.exit_between_lines(0);
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Options {
    stderr_at_start: Option<String>,
}

fn parse_options(mut args: impl Iterator<Item = OsString>) -> Result<Options, String> {
    let mut options = Options::default();
    while let Some(flag) = args.next() {
        match flag.to_str() {
            Some("--stderr-at-start") => {
                let value = args
                    .next()
                    .ok_or("--stderr-at-start needs a value")?
                    .into_string()
                    .map_err(|_| "--stderr-at-start: the value is not valid UTF-8")?;
                options.stderr_at_start = Some(value);
            }
            _ => return Err(format!("unknown flag: {}", flag.to_string_lossy())),
        }
    }
    Ok(options)
}

impl RpcError {
    fn missing_capability(capability: &str) -> Self {
        Self::new(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            "Missing required client capability",
        )
        .with_data(json!({"requiredCapabilities": {capability: {}}}))
    }
}

// ---------------------------------------------------------------------------------------
// The per-request `_meta` of 2026-07-28
// ---------------------------------------------------------------------------------------

/// What a request's `_meta` says about its client.
struct RequestMeta {
    capabilities: Map<String, Value>,
    /// Index in `LOG_LEVELS` of the least severe level the request wants; `None` sends none.
    log_level: Option<usize>,
    progress_token: Option<Value>,
}

impl RequestMeta {
    /// Reads and checks `params._meta`: the required keys first (-32602), then the version
    /// (-32022), then the shapes of the keys present (-32602).
    fn read(params: &Value) -> Result<Self, RpcError> {
        if !params.is_object() && !params.is_null() {
            return Err(RpcError::invalid_params(
                "Invalid params: params must be an object",
            ));
        }
        let meta = match params.get("_meta") {
            Some(Value::Object(meta)) => meta,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid params: _meta must be an object",
                ));
            }
            None => return Err(RpcError::invalid_params("Invalid params: missing _meta")),
        };
        let missing: Vec<&str> = [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES]
            .into_iter()
            .filter(|key| meta.get(*key).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            return Err(RpcError::invalid_params(format!(
                "Invalid params: missing _meta keys: {}",
                missing.join(", ")
            )));
        }
        let version = &meta[META_PROTOCOL_VERSION];
        if version.as_str() != Some(PROTOCOL_VERSION) {
            let requested = version
                .as_str()
                .map_or_else(|| version.to_string(), str::to_owned);
            return Err(RpcError::new(
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
            )
            .with_data(json!({"supported": [PROTOCOL_VERSION], "requested": requested})));
        }
        let Some(capabilities) = meta[META_CLIENT_CAPABILITIES].as_object() else {
            return Err(RpcError::invalid_params(format!(
                "Invalid params: _meta.{META_CLIENT_CAPABILITIES} must be an object"
            )));
        };
        if meta
            .get(META_CLIENT_INFO)
            .is_some_and(|info| !info.is_object())
        {
            return Err(RpcError::invalid_params(format!(
                "Invalid params: _meta.{META_CLIENT_INFO} must be an object"
            )));
        }
        let log_level = match meta.get(META_LOG_LEVEL) {
            None | Some(Value::Null) => None,
            Some(level) => Some(level.as_str().and_then(level_rank).ok_or_else(|| {
                RpcError::invalid_params(format!("Invalid params: invalid log level {level}"))
            })?),
        };
        Ok(RequestMeta {
            capabilities: capabilities.clone(),
            log_level,
            progress_token: meta.get("progressToken").cloned(),
        })
    }

    fn declares(&self, capability: &str) -> bool {
        self.capabilities
            .get(capability)
            .is_some_and(|value| !value.is_null())
    }
}

/// A result as 2026-07-28 wants it: `resultType` ("complete" unless the body says otherwise),
/// the caching hints for cacheable methods, and serverInfo merged into `_meta`.
fn finish_result(method: &str, body: Value) -> Value {
    let Value::Object(mut body) = body else {
        unreachable!("results are objects");
    };
    let mut result = Map::new();
    let result_type = body
        .shift_remove("resultType")
        .unwrap_or_else(|| json!("complete"));
    let complete = result_type == "complete";
    result.insert("resultType".to_owned(), result_type);
    let meta = body.shift_remove("_meta");
    result.append(&mut body);
    if complete && CACHEABLE_METHODS.contains(&method) {
        result.entry("ttlMs").or_insert(json!(0));
        result.entry("cacheScope").or_insert(json!("public"));
    }
    let mut meta = match meta {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert(META_SERVER_INFO.to_owned(), server_info());
    result.insert("_meta".to_owned(), Value::Object(meta));
    Value::Object(result)
}

fn server_info() -> Value {
    json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")})
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// What one `subscriptions/listen` asked for and is given.
#[derive(Default)]
struct ListenFilter {
    tools: bool,
    prompts: bool,
    resources: bool,
    /// The uris of `notifications/resources/updated` it wants.
    uris: Vec<String>,
}

impl ListenFilter {
    /// Reads `params.notifications`, keeping only what this server can honour (its prompts
    /// never change).
    fn read(params: &Value) -> Result<Self, RpcError> {
        let Some(wanted) = params.get("notifications").and_then(Value::as_object) else {
            return Err(RpcError::invalid_params(
                "Invalid params: notifications must be an object",
            ));
        };
        let flag = |key: &str| match wanted.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(RpcError::invalid_params(format!(
                "Invalid params: notifications.{key} must be a boolean"
            ))),
        };
        let uris = match wanted.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(uris)) => uris
                .iter()
                .map(|uri| uri.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    RpcError::invalid_params(
                        "Invalid params: notifications.resourceSubscriptions must be strings",
                    )
                })?,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid params: notifications.resourceSubscriptions must be an array",
                ));
            }
        };
        let _ = flag("promptsListChanged")?;
        Ok(ListenFilter {
            tools: flag("toolsListChanged")?,
            prompts: false,
            resources: flag("resourcesListChanged")?,
            uris,
        })
    }

    /// The subset honoured, as the acknowledgement states it.
    fn to_json(&self) -> Value {
        let mut honoured = Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                honoured.insert(key.to_owned(), json!(true));
            }
        }
        if !self.uris.is_empty() {
            honoured.insert("resourceSubscriptions".to_owned(), json!(self.uris));
        }
        Value::Object(honoured)
    }
}

/// One open `subscriptions/listen` request.
struct Listen {
    id: Value,
    filter: ListenFilter,
}

struct Server {
    out: Stdout,
    /// Running `tools/call` requests.
    running: Running,
    /// Open `subscriptions/listen` requests, by the compact JSON of their id. Its lock is
    /// held while a listen's notifications are written, so that none follows its end.
    listens: Mutex<HashMap<String, Listen>>,
}

impl Server {
    fn new() -> Self {
        Server {
            out: Stdout::new(),
            running: Running::new(),
            listens: Mutex::new(HashMap::new()),
        }
    }

    // --- Output -------------------------------------------------------------------------

    /// Answers a request; a result is finished as `finish_result` says.
    fn respond(&self, id: &Value, method: &str, outcome: RpcResult) {
        let outcome = outcome.map(|result| finish_result(method, result));
        self.out.respond(id, outcome);
    }

    fn notify(&self, method: &str, params: Value) {
        self.out.notify(method, Some(params));
    }

    /// Sends `notifications/message` if the request asked for this level or a less severe one.
    fn log(&self, meta: &RequestMeta, level: &str, data: &str) {
        let wanted = matches!(
            (level_rank(level), meta.log_level),
            (Some(rank), Some(min)) if rank >= min
        );
        if wanted {
            let params = json!({"level": level, "logger": SERVER_NAME, "data": data});
            self.notify("notifications/message", params);
        }
    }

    /// Sends a change notification to every open listen `wants`, tagged with its id.
    fn notify_listens(
        &self,
        method: &str,
        params: &Value,
        wants: impl Fn(&ListenFilter) -> bool,
    ) -> usize {
        let listens = lock(&self.listens);
        let mut sent = 0;
        for listen in listens.values().filter(|listen| wants(&listen.filter)) {
            let mut params = params.clone();
            params["_meta"] = json!({META_SUBSCRIPTION_ID: listen.id});
            self.notify(method, params);
            sent += 1;
        }
        sent
    }

    // --- Input --------------------------------------------------------------------------

    fn handle(&'static self, message: Incoming) {
        match message {
            Incoming::Request { id, method, params } => self.handle_request(id, &method, params),
            Incoming::Notification { method, params } => {
                self.handle_notification(&method, &params);
            }
            Incoming::Response { id, .. } => {
                note(format_args!(
                    "ignoring a response ({id}): this server sends no requests"
                ));
            }
            Incoming::Invalid { id, error } => self.respond(&id, "", Err(error)),
        }
    }

    fn handle_request(&'static self, id: Value, method: &str, params: Value) {
        if REMOVED_METHODS.contains(&method) {
            let error = RpcError::new(
                METHOD_NOT_FOUND,
                format!(
                    "Method not found: {method} (this server speaks only {PROTOCOL_VERSION}, \
                     which has no {method})"
                ),
            )
            .with_data(json!({"supported": [PROTOCOL_VERSION]}));
            return self.respond(&id, method, Err(error));
        }
        let known = matches!(
            method,
            "server/discover"
                | "tools/list"
                | "tools/call"
                | "resources/list"
                | "resources/templates/list"
                | "resources/read"
                | "prompts/list"
                | "prompts/get"
                | "subscriptions/listen"
        );
        if !known {
            return self.respond(&id, method, Err(RpcError::method_not_found(method)));
        }
        let meta = match RequestMeta::read(&params) {
            Ok(meta) => meta,
            Err(error) => return self.respond(&id, method, Err(error)),
        };
        match method {
            "tools/call" => self.spawn_tool_call(id, params, meta),
            "subscriptions/listen" => self.listen(id, &params),
            _ => self.respond(&id, method, self.answer(method, &params)),
        }
    }

    /// Answers the requests that are quick enough to be answered on the reading thread.
    fn answer(&self, method: &str, params: &Value) -> RpcResult {
        match method {
            "server/discover" => Ok(discover()),
            "tools/list" => Ok(json!({"tools": tool_definitions()})),
            "resources/list" => Ok(resource_list()),
            "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
            "resources/read" => read_resource(params),
            "prompts/list" => Ok(prompt_list()),
            "prompts/get" => get_prompt(params),
            _ => Err(RpcError::method_not_found(method)),
        }
    }

    fn handle_notification(&self, method: &str, params: &Value) {
        if method == "notifications/cancelled" {
            self.cancel_request(params);
        }
    }

    /// Ends a listen (answering it) or stops a running call (which will not be answered).
    fn cancel_request(&self, params: &Value) {
        let Some(request_id) = params.get("requestId") else {
            return note("notifications/cancelled without requestId");
        };
        let key = request_id.to_string();
        {
            let mut listens = lock(&self.listens);
            if let Some(listen) = listens.remove(&key) {
                let result = json!({"_meta": {META_SUBSCRIPTION_ID: listen.id}});
                // Under the lock: no notification of this listen can follow its answer.
                self.respond(&listen.id, "subscriptions/listen", Ok(result));
                return;
            }
        }
        self.running.cancel(request_id);
    }

    /// Opens a listen: acknowledges it at once and keeps it open, unanswered, until cancelled.
    fn listen(&self, id: Value, params: &Value) {
        let filter = match ListenFilter::read(params) {
            Ok(filter) => filter,
            Err(error) => return self.respond(&id, "subscriptions/listen", Err(error)),
        };
        let key = id.to_string();
        let mut listens = lock(&self.listens);
        if listens.contains_key(&key) {
            drop(listens);
            let error = RpcError::new(INVALID_REQUEST, format!("A listen with id {key} is open"));
            return self.respond(&id, "subscriptions/listen", Err(error));
        }
        let params =
            json!({"notifications": filter.to_json(), "_meta": {META_SUBSCRIPTION_ID: id}});
        // Under the lock: the acknowledgement comes before any notification of this listen.
        self.notify("notifications/subscriptions/acknowledged", params);
        listens.insert(key, Listen { id, filter });
    }

    /// Runs a tool on its own thread; its response is dropped if the call gets cancelled.
    fn spawn_tool_call(&'static self, id: Value, params: Value, meta: RequestMeta) {
        self.running.spawn(&self.out, id, move |cancel| {
            let outcome = self.call_tool(&params, &meta, cancel);
            outcome.map(|result| finish_result("tools/call", result))
        });
    }

    fn call_tool(&self, params: &Value, meta: &RequestMeta, cancel: &Cancel) -> RpcResult {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(RpcError::invalid_params(
                "Invalid params: missing tool name",
            ));
        };
        let no_arguments = json!({});
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => &no_arguments,
            Some(arguments) if arguments.is_object() => arguments,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid params: arguments must be an object",
                ));
            }
        };
        let call = ToolCall {
            server: self,
            name,
            arguments: Arguments(arguments),
            params,
            meta,
            cancel,
        };
        call.run()
    }
}

// ---------------------------------------------------------------------------------------
// Discovery, resources and prompts
// ---------------------------------------------------------------------------------------

fn discover() -> Value {
    json!({
        "supportedVersions": [PROTOCOL_VERSION],
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {},
            "logging": {}
        },
        "instructions": INSTRUCTIONS
    })
}

fn resource_list() -> Value {
    json!({"resources": [{
        "uri": GREETING_URI,
        "name": "greeting",
        "description": "A greeting",
        "mimeType": "text/plain"
    }]})
}

fn read_resource(params: &Value) -> RpcResult {
    let uri = string_param(params, "uri")?;
    if uri != GREETING_URI {
        return Err(
            RpcError::invalid_params(format!("Resource not found: {uri}"))
                .with_data(json!({"uri": uri})),
        );
    }
    let text = format!("Hello from {SERVER_NAME}");
    Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}))
}

fn prompt_list() -> Value {
    json!({"prompts": [{
        "name": "greet",
        "description": "Greets someone",
        "arguments": [{"name": "name", "description": "Who to greet", "required": true}]
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

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

fn tool_definitions() -> Value {
    let string = json!({"type": "string"});
    let count = json!({"type": "integer", "minimum": 0});
    json!([
        tool(
            "echo",
            "Returns the message unchanged",
            json!({"message": string}),
            &["message"]
        ),
        tool(
            "progress",
            "Sends progress notifications interval_ms apart, then says how many steps it did",
            json!({"steps": count, "interval_ms": count}),
            &[],
        ),
        tool(
            "log",
            "Sends a log message notification (to a request that set a log level)",
            json!({"message": string, "level": {"type": "string", "enum": LOG_LEVELS}}),
            &["message"],
        ),
        tool(
            "ask_name",
            "Asks the user for a name (elicitation, an input required result), then greets",
            json!({}),
            &[]
        ),
        tool(
            "sample",
            "Asks the client's LLM to complete the prompt (sampling, an input required result)",
            json!({"prompt": string}),
            &["prompt"],
        ),
        tool(
            "two_rounds",
            "Asks the user for two answers, one round of input after the other",
            json!({}),
            &[]
        ),
        tool(
            "touch",
            "Sends a resource updated notification to the listens subscribed to the uri",
            json!({"uri": string}),
            &["uri"],
        ),
        tool(
            "notify_tools",
            "Sends a tools list changed notification to the listens that opted in",
            json!({}),
            &[]
        ),
        tool(
            "crash",
            "Exits the server at once with code 3",
            json!({}),
            &[]
        ),
    ])
}

/// One `tools/call` request being run.
struct ToolCall<'a> {
    server: &'a Server,
    name: &'a str,
    arguments: Arguments<'a>,
    /// The whole request's params: `inputResponses` and `requestState` of a retry are there.
    params: &'a Value,
    meta: &'a RequestMeta,
    cancel: &'a Cancel,
}

impl<'a> ToolCall<'a> {
    fn run(&self) -> RpcResult {
        match self.name {
            "echo" => Ok(text_result(self.arguments.string("message")?)),
            "progress" => self.progress(),
            "log" => self.log(),
            "ask_name" => self.ask_name(),
            "sample" => self.sample(),
            "two_rounds" => self.two_rounds(),
            "touch" => self.touch(),
            "notify_tools" => self.notify_tools(),
            "crash" => {
                note("crashing with exit code 3 as asked");
                self.server.out.exit_between_lines(3)
            }
            name => Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
        }
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
            if let Some(token) = &self.meta.progress_token {
                let params = json!({
                    "progressToken": token,
                    "progress": step,
                    "total": steps,
                    "message": format!("step {step} of {steps}")
                });
                self.server.notify("notifications/progress", params);
            }
        }
        Ok(text_result(format!("done {steps} steps")))
    }

    fn log(&self) -> RpcResult {
        let level = self.arguments.string_or("level", "info")?;
        if level_rank(level).is_none() {
            return Err(RpcError::invalid_params(format!(
                "Invalid log level: {level}"
            )));
        }
        self.server
            .log(self.meta, level, self.arguments.string("message")?);
        Ok(text_result("logged"))
    }

    fn touch(&self) -> RpcResult {
        let uri = self.arguments.string("uri")?;
        let sent = self.server.notify_listens(
            "notifications/resources/updated",
            &json!({"uri": uri}),
            |filter| filter.uris.iter().any(|subscribed| subscribed == uri),
        );
        Ok(text_result(format!("touched ({sent} listens)")))
    }

    fn notify_tools(&self) -> RpcResult {
        let sent =
            self.server
                .notify_listens("notifications/tools/list_changed", &json!({}), |filter| {
                    filter.tools
                });
        Ok(text_result(format!("notified ({sent} listens)")))
    }

    // --- Input required (multi round-trip requests) --------------------------------------

    fn ask_name(&self) -> RpcResult {
        let input = self.input()?;
        let Some(answer) = input.response("name") else {
            let schema = json!({"name": {"type": "string"}});
            let request = self.elicitation("What is your name?", schema, &["name"])?;
            return Ok(self.input_required("name", request, json!({})));
        };
        Ok(text_result(match elicited(answer)? {
            Some(content) => {
                let name = content.get("name").and_then(Value::as_str).ok_or_else(|| {
                    RpcError::invalid_params("Invalid input response name: no content.name")
                })?;
                format!("hello {name}")
            }
            None => "no name".to_owned(),
        }))
    }

    fn sample(&self) -> RpcResult {
        let prompt = self.arguments.string("prompt")?;
        let input = self.input()?;
        let Some(answer) = input.response("completion") else {
            if !self.meta.declares("sampling") {
                return Err(RpcError::missing_capability("sampling"));
            }
            let request = json!({
                "method": "sampling/createMessage",
                "params": {
                    "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                    "maxTokens": 100
                }
            });
            return Ok(self.input_required("completion", request, json!({})));
        };
        let text = sampled_text(answer).map_err(|_| {
            RpcError::invalid_params("Invalid input response completion: no text content")
        })?;
        Ok(text_result(format!("sampled: {text}")))
    }

    /// Asks `first`, then (with a new state that carries the first answer) `second`.
    fn two_rounds(&self) -> RpcResult {
        let input = self.input()?;
        let first = match input.state.get("first").and_then(Value::as_str) {
            Some(first) => first.to_owned(),
            None => match input.response("first") {
                Some(answer) => elicited_answer(answer, "first")?,
                None => {
                    let request = self.answer_elicitation("First question?")?;
                    return Ok(self.input_required("first", request, json!({"round": 1})));
                }
            },
        };
        let Some(answer) = input.response("second") else {
            let request = self.answer_elicitation("Second question?")?;
            let state = json!({"round": 2, "first": first});
            return Ok(self.input_required("second", request, state));
        };
        let second = elicited_answer(answer, "second")?;
        Ok(text_result(format!("first={first} second={second}")))
    }

    fn answer_elicitation(&self, message: &str) -> RpcResult {
        self.elicitation(message, json!({"answer": {"type": "string"}}), &["answer"])
    }

    /// An `elicitation/create` input request, if the client can be asked.
    fn elicitation(&self, message: &str, properties: Value, required: &[&str]) -> RpcResult {
        if !self.meta.declares("elicitation") {
            return Err(RpcError::missing_capability("elicitation"));
        }
        Ok(json!({
            "method": "elicitation/create",
            "params": {
                "message": message,
                "requestedSchema": {"type": "object", "properties": properties, "required": required}
            }
        }))
    }

    /// An InputRequiredResult asking one input, with a state naming this tool plus `state`.
    fn input_required(&self, key: &str, request: Value, mut state: Value) -> Value {
        state["tool"] = json!(self.name);
        json!({
            "resultType": "input_required",
            "inputRequests": {key: request},
            "requestState": base64_encode(state.to_string().as_bytes())
        })
    }

    /// The retry's `inputResponses` and decoded `requestState` (both optional: a first call
    /// may bring answers in advance).
    fn input(&self) -> Result<Input<'a>, RpcError> {
        let responses = match self.params.get("inputResponses") {
            None | Some(Value::Null) => None,
            Some(Value::Object(responses)) => Some(responses),
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid params: inputResponses must be an object",
                ));
            }
        };
        let state = match self.params.get("requestState") {
            None | Some(Value::Null) => Map::new(),
            Some(state) => decode_state(state, self.name)?,
        };
        Ok(Input { responses, state })
    }
}

/// What a retried request brings back.
struct Input<'a> {
    responses: Option<&'a Map<String, Value>>,
    /// The decoded `requestState` (empty on a first call).
    state: Map<String, Value>,
}

impl<'a> Input<'a> {
    fn response(&self, key: &str) -> Option<&'a Value> {
        self.responses.and_then(|responses| responses.get(key))
    }
}

/// Decodes a `requestState` this server wrote for the tool `tool`.
fn decode_state(state: &Value, tool: &str) -> Result<Map<String, Value>, RpcError> {
    let invalid = || RpcError::invalid_params("Invalid params: invalid requestState");
    let decoded = state
        .as_str()
        .and_then(base64_decode)
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    match decoded {
        Some(Value::Object(state)) if state.get("tool").and_then(Value::as_str) == Some(tool) => {
            Ok(state)
        }
        _ => Err(invalid()),
    }
}

/// Reads an ElicitResult: `Some(content)` if accepted, `None` if declined or cancelled.
fn elicited(answer: &Value) -> Result<Option<&Map<String, Value>>, RpcError> {
    let invalid = || RpcError::invalid_params("Invalid input response: not an ElicitResult");
    match answer.get("action").and_then(Value::as_str) {
        Some("accept") => answer
            .get("content")
            .and_then(Value::as_object)
            .map(Some)
            .ok_or_else(invalid),
        Some("decline" | "cancel") => Ok(None),
        _ => Err(invalid()),
    }
}

/// The `answer` field of an accepted ElicitResult, or its action if it was not accepted.
fn elicited_answer(answer: &Value, key: &str) -> Result<String, RpcError> {
    match elicited(answer)? {
        Some(content) => content
            .get("answer")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                RpcError::invalid_params(format!("Invalid input response {key}: no content.answer"))
            }),
        None => Ok(answer["action"].as_str().unwrap_or_default().to_owned()),
    }
}

// ---------------------------------------------------------------------------------------
// Base64 (standard alphabet, padded) for `requestState`
// ---------------------------------------------------------------------------------------

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (bits >> (18 - 6 * index)) & 63;
                text.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Decodes canonical padded base64 (what `base64_encode` writes), `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3);
    let groups = text.len() / 4;
    for (index, group) in text.as_bytes().chunks(4).enumerate() {
        let padding = group.iter().rev().take_while(|&&byte| byte == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 < groups) {
            return None;
        }
        let mut bits = 0u32;
        for &byte in &group[..4 - padding] {
            let value = BASE64_ALPHABET.iter().position(|&known| known == byte)?;
            bits = bits << 6 | value as u32;
        }
        bits <<= 6 * padding;
        bytes.extend_from_slice(&bits.to_be_bytes()[1..4 - padding]);
    }
    // Reject non-zero padding bits, so that each byte string has exactly one encoding.
    (base64_encode(&bytes) == text).then_some(bytes)
}
