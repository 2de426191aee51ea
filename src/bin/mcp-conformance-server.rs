//! `mcp-conformance-server`: the stdio MCP server that `scripts/conformance` puts behind the
//! proxy, so that the official conformance suite (`@modelcontextprotocol/conformance`) judges
//! the proxy and not the server.
//!
//! It provides exactly what the suite's server scenarios expect of the server they talk to
//! (their expectations are in the package's bundled `dist/index.js`), written from those
//! expectations. It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout (one compact message
//! per line, flushed per line, nothing else on stdout) and writes diagnostics to stderr. Each
//! `tools/call` and `prompts/get` runs on its own thread, and `notifications/cancelled` stops a
//! running call.
//! The server sends its own requests to the client (ids "conf-1", "conf-2", ...) and waits
//! for the answers arriving on stdin.
//!
//! Tools (scenario in brackets):
//! - `test_simple_text` [tools-call-simple-text]: one text block.
//! - `test_image_content` [tools-call-image]: a 1x1 red PNG.
//! - `test_audio_content` [tools-call-audio]: a tiny `audio/wav`.
//! - `test_embedded_resource` [tools-call-embedded-resource]: a `resource` block.
//! - `test_multiple_content_types` [tools-call-mixed-content]: text, image and resource.
//! - `test_tool_with_logging` [tools-call-with-logging]: three `info` log messages, 50 ms apart.
//! - `test_error_handling` [tools-call-error]: a result with `isError: true`.
//! - `test_tool_with_progress` [tools-call-with-progress]: progress 0, 50, 100 of 100, 50 ms apart.
//! - `test_sampling` {prompt} [tools-call-sampling]: asks `sampling/createMessage`.
//! - `test_elicitation` {message} [tools-call-elicitation]: asks `elicitation/create`.
//! - `test_elicitation_sep1034_defaults` [elicitation-sep1034-defaults]: an elicitation whose
//!   schema has a default for every primitive type.
//! - `test_elicitation_sep1330_enums` [elicitation-sep1330-enums]: an elicitation with the five
//!   enum shapes of SEP-1330.
//! - `json_schema_2020_12_tool` [json-schema-2020-12]: an input schema with `$schema`, `$defs`
//!   and `additionalProperties: false`.
//! - `test_reconnection` [server-sse-polling]: answers after 100 ms (a stdio server cannot close
//!   an HTTP stream; whether the stream is closed mid-call is up to the HTTP side).
//! - `test_custom_header` {region, `x-mcp-header: Region`}
//!   [http-custom-header-server-validation]: echoes the region.
//!
//! For the 2026-07-28 (stateless) scenarios, which reach this server of the session era
//! through mcp-proxy's translation:
//! - [server-stateless] `test_missing_capability` (samples, whatever the client declared),
//!   `test_streaming_elicitation` (elicits), `test_logging_tool` (one `info` log message, always
//!   sent), `test_trigger_tool_change` / `test_trigger_prompt_change` (send the list_changed
//!   notification).
//! - [input-required-result-*] tools that ask the client with requests of their own, one after
//!   the other, each waiting for its answer; mcp-proxy turns each into an
//!   `InputRequiredResult` round. Each request names its input key in
//!   `_meta["dev.mcp-proxy/inputKey"]`. `test_input_required_result_elicitation` (key
//!   `user_name`), `..._sampling` (`capital_question`), `..._list_roots` (`client_roots`),
//!   `..._request_state` and `..._tampered_state` (`confirmation`), `..._multi_round`
//!   (`user_name`, then `favorite_color`), `..._multiple_inputs` (`user_name`, `greeting`,
//!   `client_roots`, all three sent before any answer is awaited, so that they make one round)
//!   and `..._capabilities` (elicits only if the request's
//!   `_meta["io.modelcontextprotocol/clientCapabilities"]` declares elicitation; samples
//!   otherwise). An answer of the wrong shape fails the call with -32602.
//!
//! Resources [resources-*]: `test://static-text`, `test://static-binary`,
//! `test://watched-resource` (subscribe/unsubscribe), the template `test://template/{id}/data`.
//! Prompts [prompts-*]: `test_simple_prompt`, `test_prompt_with_arguments` {arg1, arg2},
//! `test_prompt_with_embedded_resource` {resourceUri}, `test_prompt_with_image`, and
//! `test_input_required_result_prompt` [input-required-result-non-tool-request], which elicits
//! (key `prompt_context`) while it is got.
//! Also `ping`, `logging/setLevel` (filters log messages) and `completion/complete`
//! [completion-complete] for the prompt's arguments and the template's `id`.

use std::collections::HashSet;
use std::process;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

// Reason: each fixture server uses only part of the shared module.
#[allow(dead_code)]
#[path = "fixture/mod.rs"]
mod fixture;

use fixture::{
    Asked, Cancel, ClientRequests, Failure, INTERNAL_ERROR, Incoming, RpcError, RpcResult, Running,
    Session, Stdout, error_result, lock, note, sampled_text, string_param, tool,
};

const SERVER_NAME: &str = "mcp-conformance-server";

/// A 1x1 red PNG.
const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";
/// A WAV file: 8 samples of silence, 8 kHz, 8-bit mono.
const SILENT_WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";
const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The pause between the messages of the logging and progress tools.
const STEP_INTERVAL: Duration = Duration::from_millis(50);

/// Where a 2026-07-28 client's capabilities for one request arrive (mcp-proxy forwards the
/// request's `_meta` to us unchanged).
const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";
/// mcp-proxy's hint for the key under which a request of ours appears in the
/// `inputRequests` of an `InputRequiredResult` (and its answer in `inputResponses`).
const INPUT_KEY_META: &str = "dev.mcp-proxy/inputKey";

fn main() {
    if let Some(arg) = std::env::args_os().nth(1) {
        note(format_args!(
            "takes no arguments (got {})",
            arg.to_string_lossy()
        ));
        process::exit(2);
    }
    let server: &'static Server = Box::leak(Box::new(Server::new()));
    note("ready");
    fixture::read_stdin_until_eof(|message| server.handle(message));
}

impl Failure {
    /// The error of the request that needed the answer: the client's own code (the answer
    /// was refused or invalid), or an internal error when there was no answer.
    fn into_rpc(self, method: &str) -> RpcError {
        let message = format!("{method} failed: {self}");
        match self {
            Failure::NoAnswer(_) => RpcError::new(INTERNAL_ERROR, message),
            Failure::Error(error) => RpcError {
                code: error
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(INTERNAL_ERROR),
                message,
                data: error.get("data").cloned(),
            },
        }
    }
}

/// The requests that run on their own thread.
#[derive(Clone, Copy)]
enum Kind {
    Tool,
    Prompt,
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

struct Server {
    out: Stdout,
    session: Session,
    /// Running `tools/call` and `prompts/get` requests.
    running: Running,
    /// Our requests to the client ("conf-1", "conf-2", ...).
    asked: ClientRequests,
    subscriptions: Mutex<HashSet<String>>,
}

impl Server {
    fn new() -> Self {
        Server {
            out: Stdout::new(),
            session: Session::new(),
            running: Running::new(),
            asked: ClientRequests::new("conf"),
            subscriptions: Mutex::new(HashSet::new()),
        }
    }

    fn notify(&self, method: &str, params: Value) {
        self.out.notify(method, Some(params));
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
            "tools/call" => self.spawn_call(id, Kind::Tool, params),
            // A prompt may ask the client something, so it cannot run on the reading thread.
            "prompts/get" => self.spawn_call(id, Kind::Prompt, params),
            _ => self.out.respond(&id, self.answer(method, &params)),
        }
    }

    /// Answers the requests that are quick enough to be answered on the reading thread.
    fn answer(&self, method: &str, params: &Value) -> RpcResult {
        match method {
            "initialize" => Ok(self
                .session
                .initialize(params, "The fixture of mcp-proxy's conformance tests.")),
            "ping" => Ok(json!({})),
            "logging/setLevel" => self.session.set_log_level(params),
            "tools/list" => Ok(json!({"tools": tool_definitions()})),
            "resources/list" => Ok(resource_list()),
            "resources/templates/list" => Ok(resource_template_list()),
            "resources/read" => read_resource(string_param(params, "uri")?),
            "resources/subscribe" => self.subscribe(params),
            "resources/unsubscribe" => self.unsubscribe(params),
            "prompts/list" => Ok(prompt_list()),
            "completion/complete" => complete(params),
            _ => Err(RpcError::method_not_found(method)),
        }
    }

    /// Runs a `tools/call` or `prompts/get` on its own thread; its response is dropped if the
    /// request gets cancelled.
    fn spawn_call(&'static self, id: Value, kind: Kind, params: Value) {
        self.running.spawn(&self.out, id, move |cancel| {
            let no_arguments = json!({});
            let call = Call {
                server: self,
                arguments: params.get("arguments").unwrap_or(&no_arguments),
                progress_token: params.pointer("/_meta/progressToken"),
                request_capabilities: params
                    .get("_meta")
                    .and_then(|meta| meta.get(CLIENT_CAPABILITIES_META)),
                cancel,
            };
            match (kind, params.get("name").and_then(Value::as_str)) {
                (_, None) => Err(RpcError::invalid_params(
                    "Missing or invalid parameter: name",
                )),
                (Kind::Tool, Some(name)) => call.run_tool(name),
                (Kind::Prompt, Some(name)) => call.get_prompt(name),
            }
        });
    }

    // --- Requests to the client ---------------------------------------------------------

    /// Sends a request to the client and waits for its result; `Err` holds why there is none.
    fn ask_client(&self, method: &str, params: Value, cancel: &Cancel) -> Result<Value, String> {
        let asked = self.send_request(method, params);
        self.asked
            .wait(asked, cancel)
            .map_err(|failure| failure.to_string())
    }

    /// Sends a request to the client without waiting for the answer (see `ClientRequests::wait`).
    fn send_request(&self, method: &str, params: Value) -> Asked {
        self.asked.send(&self.out, method, Some(params))
    }

    // --- Subscriptions ------------------------------------------------------------------

    fn subscribe(&self, params: &Value) -> RpcResult {
        let uri = string_param(params, "uri")?;
        read_resource(uri)?;
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
// Resources
// ---------------------------------------------------------------------------------------

fn resource_list() -> Value {
    json!({"resources": [
        {
            "uri": STATIC_TEXT_URI,
            "name": "static-text",
            "description": "A static text resource",
            "mimeType": "text/plain"
        },
        {
            "uri": STATIC_BINARY_URI,
            "name": "static-binary",
            "description": "A static binary resource (a 1x1 PNG)",
            "mimeType": "image/png"
        },
        {
            "uri": WATCHED_URI,
            "name": "watched-resource",
            "description": "A resource clients can subscribe to",
            "mimeType": "text/plain"
        }
    ]})
}

fn resource_template_list() -> Value {
    json!({"resourceTemplates": [{
        "uriTemplate": TEMPLATE_URI,
        "name": "template-data",
        "description": "Data for an id, read through a template",
        "mimeType": "application/json"
    }]})
}

fn read_resource(uri: &str) -> RpcResult {
    let content = match uri {
        STATIC_TEXT_URI => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource."
        }),
        STATIC_BINARY_URI => json!({"uri": uri, "mimeType": "image/png", "blob": RED_PIXEL_PNG}),
        WATCHED_URI => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the watched resource."
        }),
        _ => match template_id(uri) {
            Some(id) => {
                let data =
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                json!({"uri": uri, "mimeType": "application/json", "text": data.to_string()})
            }
            None => return Err(RpcError::resource_not_found(uri)),
        },
    };
    Ok(json!({"contents": [content]}))
}

/// The `{id}` of a URI of the template `test://template/{id}/data`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

// ---------------------------------------------------------------------------------------
// Prompts and completions
// ---------------------------------------------------------------------------------------

fn prompt_list() -> Value {
    json!({"prompts": [
        {
            "name": "test_simple_prompt",
            "description": "A prompt without arguments"
        },
        {
            "name": "test_prompt_with_arguments",
            "description": "A prompt with two required arguments",
            "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true}
            ]
        },
        {
            "name": "test_prompt_with_embedded_resource",
            "description": "A prompt that embeds a resource",
            "arguments": [
                {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}
            ]
        },
        {
            "name": "test_prompt_with_image",
            "description": "A prompt with an image"
        },
        {
            "name": PROMPT_WITH_INPUT,
            "description": "A prompt that asks the user for context (elicitation)"
        }
    ]})
}

/// The prompts that need nothing from the client.
fn static_prompt(name: &str, arguments: &Value) -> RpcResult {
    let argument = |argument: &str| {
        arguments
            .get(argument)
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params(format!("Missing argument: {argument}")))
    };
    let messages = match name {
        "test_simple_prompt" => json!([user_text("This is a simple prompt for testing.")]),
        "test_prompt_with_arguments" => {
            let (arg1, arg2) = (argument("arg1")?, argument("arg2")?);
            json!([user_text(&format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            ))])
        }
        "test_prompt_with_embedded_resource" => json!([
            {"role": "user", "content": {"type": "resource", "resource": {
                "uri": argument("resourceUri")?,
                "mimeType": "text/plain",
                "text": "Embedded resource content for testing."
            }}},
            user_text("Please process the embedded resource above.")
        ]),
        "test_prompt_with_image" => json!([
            {"role": "user", "content": {"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"}},
            user_text("Please analyze the image above.")
        ]),
        _ => return Err(RpcError::invalid_params(format!("Unknown prompt: {name}"))),
    };
    Ok(json!({"messages": messages}))
}

fn user_text(text: &str) -> Value {
    json!({"role": "user", "content": {"type": "text", "text": text}})
}

/// Completes the arguments of `test_prompt_with_arguments` and the template's `id`: the
/// candidates that start with the typed value.
fn complete(params: &Value) -> RpcResult {
    let reference = params
        .get("ref")
        .ok_or_else(|| RpcError::invalid_params("Missing parameter: ref"))?;
    let argument = params
        .pointer("/argument/name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("Missing parameter: argument.name"))?;
    let typed = params
        .pointer("/argument/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = reference.get("type").and_then(Value::as_str);
    let candidates: &[&str] = match (kind, argument) {
        (Some("ref/prompt"), "arg1" | "arg2")
            if reference["name"] == "test_prompt_with_arguments" =>
        {
            &["test", "testing", "tested", "paris", "park", "party"]
        }
        (Some("ref/resource"), "id") if reference["uri"] == TEMPLATE_URI => &["1", "2", "3", "123"],
        (Some("ref/prompt" | "ref/resource"), _) => &[],
        _ => return Err(RpcError::invalid_params("Invalid reference")),
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|candidate| candidate.starts_with(typed))
        .collect();
    Ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

fn tool_definitions() -> Value {
    // The first tool takes no arguments: http-header-validation calls tools[0] with `{}`.
    let without_arguments = [
        ("test_simple_text", "Returns a simple text"),
        ("test_image_content", "Returns an image"),
        ("test_audio_content", "Returns an audio clip"),
        ("test_embedded_resource", "Returns an embedded resource"),
        (
            "test_multiple_content_types",
            "Returns text, an image and an embedded resource",
        ),
        (
            "test_tool_with_logging",
            "Sends three log messages while it runs",
        ),
        ("test_error_handling", "Always fails with isError"),
        (
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100",
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Asks the user with defaults for every primitive type (SEP-1034)",
        ),
        (
            "test_elicitation_sep1330_enums",
            "Asks the user with every enum shape (SEP-1330)",
        ),
        (
            "test_reconnection",
            "Answers after 100 ms (SSE polling tests)",
        ),
        (
            "test_missing_capability",
            "Asks the client's LLM (sampling), whatever the client declared",
        ),
        (
            "test_streaming_elicitation",
            "Asks the user a question (elicitation)",
        ),
        (
            "test_logging_tool",
            "Sends one info log message, then answers at once",
        ),
        (
            "test_trigger_tool_change",
            "Announces that the tool list changed",
        ),
        (
            "test_trigger_prompt_change",
            "Announces that the prompt list changed",
        ),
        (
            "test_input_required_result_elicitation",
            "Asks the user's name (elicitation, input key user_name)",
        ),
        (
            "test_input_required_result_sampling",
            "Asks the client's LLM for the capital of France (input key capital_question)",
        ),
        (
            "test_input_required_result_list_roots",
            "Asks the client for its roots (input key client_roots)",
        ),
        (
            "test_input_required_result_request_state",
            "Asks for a confirmation, then answers state-ok",
        ),
        (
            "test_input_required_result_multiple_inputs",
            "Asks an elicitation, a sampling and the roots at once",
        ),
        (
            "test_input_required_result_multi_round",
            "Asks the user's name, then their favorite color",
        ),
        (
            "test_input_required_result_tampered_state",
            "Asks for a confirmation",
        ),
        (
            "test_input_required_result_capabilities",
            "Elicits if this request's client declares elicitation, samples otherwise",
        ),
    ];
    let mut tools: Vec<Value> = without_arguments
        .into_iter()
        .map(|(name, description)| tool(name, description, json!({}), &[]))
        .collect();
    tools.push(tool(
        "test_sampling",
        "Asks the client's LLM to complete the prompt",
        json!({"prompt": {"type": "string", "description": "The prompt to send to the LLM"}}),
        &["prompt"],
    ));
    tools.push(tool(
        "test_elicitation",
        "Asks the user for a username and an email address",
        json!({"message": {"type": "string", "description": "The message to show the user"}}),
        &["message"],
    ));
    tools.push(tool(
        "test_custom_header",
        "Echoes its region, which clients mirror into the Mcp-Param-Region header",
        json!({"region": {
            "type": "string",
            "description": "A region name",
            "x-mcp-header": "Region"
        }}),
        &["region"],
    ));
    tools.push(json!({
        "name": "json_schema_2020_12_tool",
        "description": "Tool with JSON Schema 2020-12 features",
        "inputSchema": {
            "$schema": JSON_SCHEMA_2020_12,
            "type": "object",
            "$defs": {
                "address": {
                    "$anchor": "addressDef",
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                }
            },
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"}
            },
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false
        }
    }));
    Value::Array(tools)
}

fn text(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn image() -> Value {
    json!({"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"})
}

fn content(blocks: Value) -> Value {
    json!({"content": blocks})
}

/// One `tools/call` or `prompts/get` request being run.
struct Call<'a> {
    server: &'a Server,
    arguments: &'a Value,
    progress_token: Option<&'a Value>,
    /// The client capabilities this request's `_meta` declares (a 2026-07-28 client's,
    /// forwarded by the proxy); `None` from a client of the session era.
    request_capabilities: Option<&'a Value>,
    cancel: &'a Cancel,
}

impl Call<'_> {
    fn run_tool(&self, name: &str) -> RpcResult {
        Ok(match name {
            "test_simple_text" => {
                content(json!([text("This is a simple text response for testing.")]))
            }
            "test_image_content" => content(json!([image()])),
            "test_audio_content" => {
                content(json!([{"type": "audio", "data": SILENT_WAV, "mimeType": "audio/wav"}]))
            }
            "test_embedded_resource" => content(json!([{"type": "resource", "resource": {
                "uri": "test://embedded-resource",
                "mimeType": "text/plain",
                "text": "This is an embedded resource content."
            }}])),
            "test_multiple_content_types" => content(json!([
                text("Multiple content types test:"),
                image(),
                {"type": "resource", "resource": {
                    "uri": "test://mixed-content-resource",
                    "mimeType": "application/json",
                    "text": json!({"test": "data", "value": 123}).to_string()
                }}
            ])),
            "test_tool_with_logging" => self.with_logging(),
            "test_error_handling" => {
                error_result("This tool intentionally returns an error for testing")
            }
            "test_tool_with_progress" => self.with_progress(),
            "test_sampling" => self.sampling()?,
            "test_elicitation" => self.elicitation()?,
            "test_elicitation_sep1034_defaults" => {
                self.elicit("Elicitation completed", sep1034_request())
            }
            "test_elicitation_sep1330_enums" => {
                self.elicit("Elicitation completed", sep1330_request())
            }
            "json_schema_2020_12_tool" => {
                content(json!([text(&format!("Received: {}", self.arguments))]))
            }
            "test_reconnection" => {
                self.cancel.sleep(Duration::from_millis(100));
                content(json!([text("Reconnection test completed successfully")]))
            }
            "test_missing_capability" => self.missing_capability(),
            "test_streaming_elicitation" => self.elicit(
                "User response",
                form(
                    "What is your name?",
                    json!({"name": {"type": "string", "description": "Your name"}}),
                    &["name"],
                ),
            ),
            "test_logging_tool" => {
                // Unconditionally: whether a client gets it is the proxy's business.
                let params = json!({"level": "info", "logger": SERVER_NAME, "data": "test_logging_tool ran"});
                self.server.notify("notifications/message", params);
                content(json!([text("Logged one info message")]))
            }
            "test_trigger_tool_change" => {
                self.server
                    .notify("notifications/tools/list_changed", json!({}));
                content(json!([text("Sent notifications/tools/list_changed")]))
            }
            "test_trigger_prompt_change" => {
                self.server
                    .notify("notifications/prompts/list_changed", json!({}));
                content(json!([text("Sent notifications/prompts/list_changed")]))
            }
            "test_custom_header" => content(json!([text(&format!(
                "Region: {}",
                self.string_argument("region")?
            ))])),
            "test_input_required_result_elicitation" => self.greet()?,
            "test_input_required_result_sampling" => self.capital()?,
            "test_input_required_result_list_roots" => self.roots()?,
            "test_input_required_result_request_state" => {
                self.confirm("Please confirm to continue.", "state-ok")?
            }
            "test_input_required_result_multiple_inputs" => self.multiple_inputs()?,
            "test_input_required_result_multi_round" => self.multi_round()?,
            "test_input_required_result_tampered_state" => {
                self.confirm("Please confirm the operation.", "confirmed")?
            }
            "test_input_required_result_capabilities" => self.by_capabilities()?,
            _ => return Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
        })
    }

    fn with_logging(&self) -> Value {
        let messages = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (index, message) in messages.into_iter().enumerate() {
            if index > 0 {
                self.cancel.sleep(STEP_INTERVAL);
            }
            self.server.session.log(&self.server.out, "info", message);
        }
        content(json!([text("Tool with logging executed successfully")]))
    }

    fn with_progress(&self) -> Value {
        for progress in [0, 50, 100] {
            if progress > 0 {
                self.cancel.sleep(STEP_INTERVAL);
            }
            if let Some(token) = self.progress_token {
                let params = json!({
                    "progressToken": token,
                    "progress": progress,
                    "total": 100,
                    "message": format!("{progress}% done")
                });
                self.server.notify("notifications/progress", params);
            }
        }
        content(json!([text("Tool with progress executed successfully")]))
    }

    fn sampling(&self) -> RpcResult {
        let prompt = self.string_argument("prompt")?;
        if !self.server.session.client_supports("sampling") {
            return Ok(error_result(
                "The client does not support sampling (no sampling capability)",
            ));
        }
        let params = sampling_request(prompt);
        let sampled = self
            .server
            .ask_client("sampling/createMessage", params, self.cancel)
            .and_then(|result| sampled_text(&result));
        Ok(match sampled {
            Ok(response) => content(json!([text(&format!("LLM response: {response}"))])),
            Err(reason) => error_result(format!("Sampling failed: {reason}")),
        })
    }

    fn elicitation(&self) -> RpcResult {
        let message = self.string_argument("message")?;
        let request = json!({
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}
                },
                "required": ["username", "email"]
            }
        });
        Ok(self.elicit("User response", request))
    }

    /// Asks `elicitation/create` and reports the answer: "PREFIX: action=…, content={…}".
    fn elicit(&self, prefix: &str, request: Value) -> Value {
        if !self.server.session.client_supports("elicitation") {
            return error_result(
                "The client does not support elicitation (no elicitation capability)",
            );
        }
        match self
            .server
            .ask_client("elicitation/create", request, self.cancel)
        {
            Ok(result) => content(json!([text(&format!(
                "{prefix}: action={}, content={}",
                result["action"].as_str().unwrap_or("?"),
                result.get("content").unwrap_or(&json!({}))
            ))])),
            Err(reason) => error_result(format!("Elicitation failed: {reason}")),
        }
    }

    fn string_argument(&self, name: &str) -> Result<&str, RpcError> {
        self.arguments
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params(format!("Missing or invalid argument: {name}")))
    }
}

// ---------------------------------------------------------------------------------------
// Input-required tools and prompt (SEP-2322 through the proxy)
// ---------------------------------------------------------------------------------------
//
// A server of the session era asks the client with requests of its own and waits for each
// answer; mcp-proxy turns each request into an `InputRequiredResult` for a 2026-07-28 client
// and resumes the call when the client retries with the answers. Requests sent together
// (before waiting for any answer) are asked in one round. Each request carries its input key
// in `_meta["dev.mcp-proxy/inputKey"]`: an old server's requests have no key of their own.

const PROMPT_WITH_INPUT: &str = "test_input_required_result_prompt";

impl Call<'_> {
    /// Sends a request to the client, to appear under the input key `key`.
    fn ask(&self, key: &str, method: &str, mut params: Value) -> Asked {
        params["_meta"] = json!({ INPUT_KEY_META: key });
        self.server.send_request(method, params)
    }

    /// The client's answer to `asked`; an error if it refused or never answered.
    fn answer(&self, asked: Asked) -> RpcResult {
        let method = asked.method.clone();
        self.server
            .asked
            .wait(asked, self.cancel)
            .map_err(|failure| failure.into_rpc(&method))
    }

    /// Asks the client and waits for the answer.
    fn input(&self, key: &str, method: &str, params: Value) -> RpcResult {
        self.answer(self.ask(key, method, params))
    }

    /// Elicits the form `params` under `key`, checking the answer's shape.
    fn elicit_input(&self, key: &str, params: Value) -> Result<Elicited, RpcError> {
        Elicited::from_answer(self.input(key, "elicitation/create", params)?)
    }

    /// [test_input_required_result_elicitation] The key must be `user_name`.
    fn greet(&self) -> RpcResult {
        let answer = self.elicit_input("user_name", name_form())?;
        Ok(content(json!([text(&match answer.accepted("name") {
            Some(name) => format!("Hello, {name}!"),
            None => format!("No name given (the user chose {})", answer.action),
        })])))
    }

    /// [test_input_required_result_sampling]
    fn capital(&self) -> RpcResult {
        let params = sampling_request("What is the capital of France?");
        let answer = self.input("capital_question", "sampling/createMessage", params)?;
        let said = sampled_answer(&answer)?;
        Ok(content(json!([text(&format!("The LLM answered: {said}"))])))
    }

    /// [test_input_required_result_list_roots]
    fn roots(&self) -> RpcResult {
        let answer = self.input("client_roots", "roots/list", json!({}))?;
        let uris = root_uris(&answer)?;
        Ok(content(json!([text(&format!(
            "The client has {} root(s): {}",
            uris.len(),
            uris.join(", ")
        ))])))
    }

    /// [test_input_required_result_request_state, test_input_required_result_tampered_state]
    /// One confirmation, then `done` as the result.
    fn confirm(&self, message: &str, done: &str) -> RpcResult {
        let params = form(
            message,
            json!({"ok": {"type": "boolean", "description": "Whether to go on"}}),
            &["ok"],
        );
        let answer = self.elicit_input("confirmation", params)?;
        Ok(content(json!([text(&match answer.action.as_str() {
            "accept" => done.to_owned(),
            action => format!("Not confirmed (the user chose {action})"),
        })])))
    }

    /// [test_input_required_result_multiple_inputs] Three requests written before any answer
    /// is awaited, so that the proxy asks for all three in one round.
    fn multiple_inputs(&self) -> RpcResult {
        let asked = [
            self.ask("user_name", "elicitation/create", name_form()),
            self.ask(
                "greeting",
                "sampling/createMessage",
                sampling_request("Say hello."),
            ),
            self.ask("client_roots", "roots/list", json!({})),
        ];
        // Every answer is read (none is left waiting) before any is judged.
        let [elicited, sampled, roots] = asked.map(|asked| self.answer(asked));
        let elicited = Elicited::from_answer(elicited?)?;
        let sampled = sampled_answer(&sampled?)?;
        let roots = roots?;
        let uris = root_uris(&roots)?;
        Ok(content(json!([text(&format!(
            "Name: {}; the LLM said: {sampled}; roots: {}",
            elicited.accepted("name").unwrap_or("(none)"),
            uris.join(", ")
        ))])))
    }

    /// [test_input_required_result_multi_round] A name, then a color: two rounds.
    fn multi_round(&self) -> RpcResult {
        let name = self.elicit_input("user_name", name_form())?;
        let color_form = form(
            "What is your favorite color?",
            json!({"color": {"type": "string", "description": "Your favorite color"}}),
            &["color"],
        );
        let color = self.elicit_input("favorite_color", color_form)?;
        Ok(content(json!([text(&format!(
            "{}'s favorite color is {}.",
            name.accepted("name").unwrap_or("(no name)"),
            color.accepted("color").unwrap_or("(no color)")
        ))])))
    }

    /// [test_input_required_result_capabilities] Asks only with what this request's client
    /// declares: an elicitation if it can, else a sampling, else its roots.
    fn by_capabilities(&self) -> RpcResult {
        let capabilities = match self.request_capabilities {
            Some(capabilities) => capabilities.clone(),
            None => self.server.session.client_capabilities(),
        };
        let declares = |capability: &str| capabilities.get(capability).is_some();
        if declares("elicitation") {
            self.greet()
        } else if declares("sampling") {
            self.capital()
        } else if declares("roots") {
            self.roots()
        } else {
            Ok(content(json!([text(
                "The client declares no capability to ask it anything with"
            )])))
        }
    }

    /// `prompts/get`: [test_input_required_result_prompt] elicits the context the prompt
    /// uses; the other prompts need nothing from the client.
    fn get_prompt(&self, name: &str) -> RpcResult {
        if name != PROMPT_WITH_INPUT {
            return static_prompt(name, self.arguments);
        }
        let params = form(
            "What context should the prompt use?",
            json!({"context": {"type": "string", "description": "Context for the prompt"}}),
            &["context"],
        );
        let answer = self.elicit_input("prompt_context", params)?;
        let message = match answer.accepted("context") {
            Some(context) => format!("Answer using this context: {context}"),
            None => format!("No context given (the user chose {})", answer.action),
        };
        Ok(json!({
            "description": "A prompt built from the user's answer",
            "messages": [user_text(&message)]
        }))
    }

    /// [test_missing_capability] Samples whatever the client declared: the proxy must
    /// refuse a client that lacks sampling.
    fn missing_capability(&self) -> Value {
        let params = sampling_request("Say hello.");
        let sampled = self
            .server
            .ask_client("sampling/createMessage", params, self.cancel)
            .and_then(|result| sampled_text(&result));
        match sampled {
            Ok(response) => content(json!([text(&format!("LLM response: {response}"))])),
            Err(reason) => error_result(format!("Sampling failed: {reason}")),
        }
    }
}

/// A checked answer to `elicitation/create`.
struct Elicited {
    action: String,
    content: serde_json::Map<String, Value>,
}

impl Elicited {
    /// Checks the shape of an `ElicitResult`: an object with a valid `action`, and an object
    /// `content` if any.
    fn from_answer(answer: Value) -> Result<Elicited, RpcError> {
        let Value::Object(mut answer) = answer else {
            return Err(RpcError::invalid_params(
                "Invalid elicitation result: not an object",
            ));
        };
        let action = match answer.remove("action") {
            Some(Value::String(action)) if ["accept", "decline", "cancel"].contains(&&*action) => {
                action
            }
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid elicitation result: action is not accept, decline or cancel",
                ));
            }
            None => {
                return Err(RpcError::invalid_params(
                    "Invalid elicitation result: no action",
                ));
            }
        };
        let content = match answer.remove("content") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(content)) => content,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid elicitation result: content is not an object",
                ));
            }
        };
        Ok(Elicited { action, content })
    }

    /// The string `field` of an accepted answer.
    fn accepted(&self, field: &str) -> Option<&str> {
        if self.action != "accept" {
            return None;
        }
        self.content.get(field).and_then(Value::as_str)
    }
}

/// An elicitation form with string or boolean fields.
fn form(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "message": message,
        "requestedSchema": {"type": "object", "properties": properties, "required": required}
    })
}

fn name_form() -> Value {
    form(
        "What is your name?",
        json!({"name": {"type": "string", "description": "Your name"}}),
        &["name"],
    )
}

fn sampling_request(prompt: &str) -> Value {
    json!({
        "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
        "maxTokens": 100
    })
}

/// The text of a sampling answer, which must be a `CreateMessageResult` with text.
fn sampled_answer(answer: &Value) -> Result<String, RpcError> {
    if !answer.is_object() {
        return Err(RpcError::invalid_params(
            "Invalid sampling result: not an object",
        ));
    }
    sampled_text(answer)
        .map_err(|reason| RpcError::invalid_params(format!("Invalid sampling result: {reason}")))
}

/// The URIs of a `roots/list` answer, which must be `{roots: [{uri, ...}, ...]}`.
fn root_uris(answer: &Value) -> Result<Vec<&str>, RpcError> {
    let invalid = || RpcError::invalid_params("Invalid roots/list result: no roots array of {uri}");
    answer
        .get("roots")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?
        .iter()
        .map(|root| root.get("uri").and_then(Value::as_str).ok_or_else(invalid))
        .collect()
}

/// SEP-1034: a default for every primitive type.
fn sep1034_request() -> Value {
    json!({
        "message": "Please review and update the form fields with defaults",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": {"type": "boolean", "description": "Verification status", "default": true}
            },
            "required": []
        }
    })
}

/// SEP-1330: the five enum shapes.
fn sep1330_request() -> Value {
    json!({
        "message": "Please select options from the enum fields",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Untitled single-select",
                    "enum": ["option1", "option2", "option3"]
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Titled single-select",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"}
                    ]
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Legacy titled enum (enumNames, deprecated)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Untitled multi-select",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Titled multi-select",
                    "items": {"anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}
                    ]}
                }
            },
            "required": []
        }
    })
}
