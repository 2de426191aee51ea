//! A 2026-07-28 remote ("modern", stateless MCP) for a local client of the session era
//! (2024-11-05 … 2025-11-25). The bridge asks this module what to do; it does no IO:
//! 1. the era probe: `server/discover` made of the local client's `initialize`, and what its
//!    answer says ([`classify`]);
//! 2. the local side of the handshake: `initialize` answered from the discover result,
//!    `notifications/initialized` dropped, `ping` and `logging/setLevel` answered here;
//! 3. every other message gets the per-request `_meta` (protocol version, the client's
//!    capabilities and identity, its log level) and the headers the spec requires
//!    (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` from the tools'
//!    `x-mcp-header` annotations, remembered from the `tools/list` results going by; a tool
//!    whose annotations are invalid is left out of the list the client sees);
//! 4. an `InputRequiredResult` becomes ordinary requests to the local client; once every
//!    answer is in, the request is sent again under a new id with `inputResponses` and the
//!    untouched `requestState`; the client sees only the final result, under its own id;
//! 5. change notifications come on a `subscriptions/listen` stream, opened for the list
//!    changes the remote declares and the resources the client subscribed to, renewed when
//!    those change; a `resources/(un)subscribe` is answered once the renewed stream is
//!    acknowledged (or after [`limits::LISTEN_ACK_WAIT`]), so an update that follows it is
//!    not missed.
//!
//! Not here: transport (the bridge and `streamable.rs`), and anything about the session era.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use log::{debug, info, warn};
use serde_json::{Map, Value, json};

use super::stdio::StdinMessage;
use crate::jsonrpc::envelope::splice;
use crate::jsonrpc::tool_headers::{ToolHeaders, checked_header_params, encode_header_value};
use crate::jsonrpc::{self, Envelope, Kind, envelope, error, meta};
use crate::limits;

/// The one version of the modern era we speak.
pub const VERSION: &str = "2026-07-28";

const DISCOVER: &str = "server/discover";
const LISTEN: &str = "subscriptions/listen";
const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";

/// What the local client said about itself in its `initialize`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `params.capabilities`, raw JSON (`{}` when absent).
    pub capabilities: String,
    /// `params.clientInfo`, raw JSON.
    pub client_info: Option<String>,
    /// `params.protocolVersion`.
    pub protocol_version: Option<String>,
}

impl Identity {
    pub fn from_initialize(text: &str) -> Identity {
        let params = Envelope::parse(text).ok().and_then(|env| env.params);
        let member = |name: &str| {
            params
                .and_then(|p| envelope::param_of(p, name))
                .map(|v| v.get().to_string())
        };
        Identity {
            capabilities: member("capabilities")
                .filter(|c| c.starts_with('{'))
                .unwrap_or_else(|| "{}".into()),
            client_info: member("clientInfo").filter(|c| c.starts_with('{')),
            protocol_version: member("protocolVersion")
                .and_then(|v| serde_json::from_str::<String>(&v).ok()),
        }
    }

    /// The `_meta` members every request carries (JSON members, no braces).
    fn meta_fields(&self, log_level: Option<&str>) -> String {
        let mut fields = format!(
            r#""{}":"{VERSION}","{}":{}"#,
            meta::PROTOCOL_VERSION,
            meta::CLIENT_CAPABILITIES,
            self.capabilities
        );
        if let Some(info) = &self.client_info {
            fields.push_str(&format!(r#","{}":{info}"#, meta::CLIENT_INFO));
        }
        if let Some(level) = log_level {
            fields.push_str(&format!(
                r#","{}":{}"#,
                meta::LOG_LEVEL,
                jsonrpc::quote(level)
            ));
        }
        fields
    }
}

/// The era probe: a `server/discover` request under `id` (raw JSON).
pub fn discover_request(id: &str, identity: &Identity) -> String {
    let params = format!(r#"{{"_meta":{{{}}}}}"#, identity.meta_fields(None));
    jsonrpc::request(id, DISCOVER, &params)
}

/// The headers of the probe.
pub fn discover_headers() -> Vec<(String, String)> {
    base_headers(DISCOVER)
}

/// What the answer to the probe says about the remote.
#[derive(Debug, PartialEq)]
pub enum Probe {
    /// A 2026-07-28 discover result (the `result` member).
    Discovered(Value),
    /// Refused as an unsupported version, but the remote lists ours: ask again.
    Retry,
    /// A 2026-07-28 remote with no version we speak, in either era.
    NoCommonVersion(Vec<String>),
    /// Not a modern answer: the remote speaks the session era, or cannot be told; why.
    Session(String),
}

/// Reads the answer to the probe: the JSON-RPC response `text` that came with HTTP `status`
/// (spec J4: a 400/404 whose body is a recognised modern error is a modern server; anything
/// else means the session era, or the legacy transport after it).
pub fn classify(status: u16, text: &str) -> Probe {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Probe::Session("the answer is not JSON".into());
    };
    if let Some(result) = v.get("result") {
        let versions = string_list(result.get("supportedVersions"));
        return if versions.iter().any(|v| v == VERSION) {
            Probe::Discovered(result.clone())
        } else {
            Probe::Session("the result is not a 2026-07-28 discover result".into())
        };
    }
    let Some(err) = v.get("error") else {
        return Probe::Session("neither a result nor an error".into());
    };
    let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    match (status, code) {
        (400, error::UNSUPPORTED_PROTOCOL_VERSION) => {
            let supported = string_list(err.get("data").and_then(|d| d.get("supported")));
            if supported.iter().any(|v| v == VERSION) {
                Probe::Retry
            } else if supported
                .iter()
                .any(|v| jsonrpc::SUPPORTED_VERSIONS.contains(&v.as_str()))
            {
                Probe::Session(format!("the remote supports {}", supported.join(", ")))
            } else if supported.is_empty() {
                Probe::Session("an unsupported-version error without data.supported".into())
            } else {
                Probe::NoCommonVersion(supported)
            }
        }
        // Modern, but it refused the probe itself: the session era's initialize is the
        // only other way in (a legacy server with a look-alike body gets its chance too).
        (400, error::HEADER_MISMATCH | error::MISSING_REQUIRED_CLIENT_CAPABILITY)
        | (404, error::METHOD_NOT_FOUND) => Probe::Session(format!(
            "it refused server/discover ({code} {message:?}); trying initialize"
        )),
        _ => Probe::Session(format!("HTTP {status}, error {code}")),
    }
}

/// Whether a discover result lists a version of the session era: such a remote is spoken to
/// in the local client's own era, with nothing to translate.
pub fn speaks_session_era(discovered: &Value) -> bool {
    string_list(discovered.get("supportedVersions"))
        .iter()
        .any(|v| jsonrpc::SUPPORTED_VERSIONS.contains(&v.as_str()))
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `initialize` result a session-era client gets from a discover result: the version it
/// asked for if we speak it, else the newest of the session era.
pub fn initialize_result(discovered: &Value, requested: Option<&str>) -> String {
    let version = requested
        .filter(|v| jsonrpc::SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(jsonrpc::LATEST_VERSION);
    let mut result = Map::new();
    result.insert("protocolVersion".into(), version.into());
    result.insert(
        "capabilities".into(),
        discovered
            .get("capabilities")
            .filter(|c| c.is_object())
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    let server_info = discovered
        .get("_meta")
        .and_then(|m| m.get(meta::SERVER_INFO))
        .or_else(|| discovered.get("serverInfo"))
        .filter(|i| i.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"name": "unknown", "version": "unknown"}));
    result.insert("serverInfo".into(), server_info);
    if let Some(instructions) = discovered.get("instructions").filter(|i| i.is_string()) {
        result.insert("instructions".into(), instructions.clone());
    }
    Value::Object(result).to_string()
}

// ---- headers ----------------------------------------------------------------------------------

/// `MCP-Protocol-Version` and `Mcp-Method`: on every POST.
fn base_headers(method: &str) -> Vec<(String, String)> {
    vec![
        ("MCP-Protocol-Version".into(), VERSION.into()),
        ("Mcp-Method".into(), encode_header_value(method)),
    ]
}

/// Every header a request needs (spec "Standard MCP Request Headers", "Custom Headers from
/// Tool Parameters"): `env` is the request's envelope, `tools` the known header parameters.
/// Only the members a header needs are read; the arguments only for an annotated tool.
pub fn request_headers(
    method: &str,
    env: Option<&Envelope<'_>>,
    tools: &ToolHeaders,
) -> Vec<(String, String)> {
    let mut headers = base_headers(method);
    let param = |name: &str| env.and_then(|env| env.param_str(name));
    let name = match method {
        "tools/call" | "prompts/get" => param("name"),
        "resources/read" => param("uri"),
        _ => None,
    };
    if let Some(name) = &name {
        headers.push(("Mcp-Name".into(), encode_header_value(name)));
    }
    if method == "tools/call"
        && let Some(annotated) = name.as_ref().and_then(|tool| tools.get(tool))
    {
        let arguments: Value = env
            .and_then(|env| env.param("arguments"))
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or(Value::Null);
        for param in annotated {
            let value = param.path.iter().try_fold(&arguments, |v, key| v.get(key));
            let text = match value {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => number_text(n),
                // Absent or null: no header (spec); objects and arrays have no header form.
                _ => continue,
            };
            headers.push((
                format!("Mcp-Param-{}", param.header),
                encode_header_value(&text),
            ));
        }
    }
    headers
}

/// A number as JavaScript's `String(n)` writes it (`42`, not `42.0`): what servers compare.
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

// ---- the modern session ------------------------------------------------------------------------

/// What the bridge is asked to do.
#[derive(Debug)]
pub enum Action {
    /// A line for the local client (a notification, or a request asking it for input).
    Write(String),
    /// The answer to the local client's request `local_id` (raw JSON).
    Answer { local_id: String, line: String },
    /// A message for the remote.
    Send(Post),
    /// Open (or renew) the `subscriptions/listen` stream with these params; `None`: close it.
    Listen(Option<String>),
}

/// A message for the remote, ready to POST.
#[derive(Debug)]
pub struct Post {
    pub text: String,
    pub kind: Kind,
    /// The id the remote sees (raw JSON).
    pub wire_id: Option<String>,
    /// The id the local client knows the request by, when it is one of its requests.
    pub local_id: Option<String>,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

/// A request of the local client at the remote.
#[derive(Debug, Clone)]
struct Call {
    local_id: String,
    method: String,
    /// The request as first sent (with `_meta`, without answers): each retry starts from it.
    line: String,
    headers: Vec<(String, String)>,
    rounds: usize,
}

/// A call waiting for the local client's answers to the remote's input requests.
struct Round {
    call: Call,
    /// `requestState` as the remote wrote it (raw JSON), if it gave one.
    request_state: Option<String>,
    /// Input keys still unanswered.
    waiting: usize,
    /// Input key and the client's raw `result` (JSON text, never re-encoded), in answer order.
    answers: Vec<(String, String)>,
}

/// The state of a modern remote, for the run.
pub struct Modern {
    identity: Identity,
    capabilities: Value,
    init_result: String,
    /// The `_meta` members of every request (the identity and the log level): built when the
    /// level changes, not per request.
    meta_fields: String,
    /// Header parameters of the tools seen in `tools/list` results, by tool name.
    tools: ToolHeaders,
    /// Requests at the remote, by the id the remote sees.
    calls: HashMap<String, Call>,
    rounds: HashMap<u64, Round>,
    /// Input requests sent to the local client (raw id) → their round and key.
    inputs: HashMap<String, (u64, String)>,
    next: u64,
    subscriptions: BTreeSet<String>,
    /// `resources/(un)subscribe` answers held until the renewed listen is acknowledged.
    held: Vec<(String, Instant)>,
}

impl Modern {
    pub fn new(identity: Identity, discovered: &Value) -> Modern {
        let init_result = initialize_result(discovered, identity.protocol_version.as_deref());
        Modern {
            capabilities: discovered
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            meta_fields: identity.meta_fields(None),
            identity,
            init_result,
            tools: HashMap::new(),
            calls: HashMap::new(),
            rounds: HashMap::new(),
            inputs: HashMap::new(),
            next: 0,
            subscriptions: BTreeSet::new(),
            held: Vec::new(),
        }
    }

    /// Answers the `initialize` that started the probe, and opens the listen stream when the
    /// remote has list changes to tell.
    pub fn start(&mut self, initialize: &StdinMessage) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(id) = &initialize.id {
            actions.push(self.answer(id, &self.init_result.clone()));
        }
        if let Some(params) = self.listen_params() {
            actions.push(Action::Listen(Some(params)));
        }
        actions
    }

    fn answer(&self, local_id: &str, result: &str) -> Action {
        Action::Answer {
            local_id: local_id.to_string(),
            line: jsonrpc::result(local_id, result),
        }
    }

    fn refuse(&self, local_id: &str, code: i64, message: &str) -> Action {
        Action::Answer {
            local_id: local_id.to_string(),
            line: error::response(local_id, code, message),
        }
    }

    fn take_id(&mut self, kind: &str) -> String {
        self.next += 1;
        jsonrpc::quote(&format!("mcp-proxy-{kind}-{}", self.next))
    }

    /// The earliest deadline of a held answer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.iter().map(|(_, at)| *at).min()
    }

    /// Held answers whose listen was not acknowledged in time go out anyway.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(_, at)| now >= *at);
        self.held = kept;
        if !due.is_empty() {
            warn!(
                "the remote did not acknowledge subscriptions/listen within {:?}",
                limits::LISTEN_ACK_WAIT
            );
        }
        due.iter().map(|(id, _)| self.answer(id, "{}")).collect()
    }

    // ---- from the local client ----------------------------------------------------------

    pub fn on_stdin(&mut self, message: &StdinMessage, now: Instant) -> Vec<Action> {
        match message.kind {
            Kind::Request => self.on_request(message, now),
            Kind::Notification => self.on_notification(message),
            Kind::Response => self.on_input_answer(message),
        }
    }

    fn on_request(&mut self, message: &StdinMessage, now: Instant) -> Vec<Action> {
        let local_id = message.id.clone().unwrap_or_else(|| "null".into());
        let method = message.method.clone().unwrap_or_default();
        let env = Envelope::parse(&message.text).ok();
        let param = |name: &str| env.as_ref().and_then(|env| env.param_str(name));
        match method.as_str() {
            // A second initialize (a client starting over): the same answer.
            "initialize" => vec![self.answer(&local_id, &self.init_result.clone())],
            // Removed in 2026-07-28: the remote is there when its requests are answered.
            "ping" => vec![self.answer(&local_id, "{}")],
            "logging/setLevel" => match param("level") {
                Some(level) => {
                    debug!("log level {level} for later requests");
                    self.meta_fields = self.identity.meta_fields(Some(&level));
                    vec![self.answer(&local_id, "{}")]
                }
                None => vec![self.refuse(
                    &local_id,
                    error::INVALID_PARAMS,
                    "Invalid params: level is required",
                )],
            },
            "resources/subscribe" | "resources/unsubscribe" => {
                self.on_subscription(&local_id, &method, param("uri"), now)
            }
            _ => {
                // The envelope parsed above, not a second parse of the same line.
                let line = match &env {
                    Some(env) => {
                        let (at, text) =
                            meta::meta_insertion(&message.text, env, &self.meta_fields);
                        splice(&message.text, &mut [(at, &text)])
                    }
                    None => message.text.clone(),
                };
                let headers = request_headers(&method, env.as_ref(), &self.tools);
                let call = Call {
                    local_id: local_id.clone(),
                    method: method.clone(),
                    line: line.clone(),
                    headers: headers.clone(),
                    rounds: 0,
                };
                self.calls.insert(local_id.clone(), call);
                vec![Action::Send(Post {
                    text: line,
                    kind: Kind::Request,
                    wire_id: Some(local_id.clone()),
                    local_id: Some(local_id),
                    method,
                    headers,
                })]
            }
        }
    }

    fn on_subscription(
        &mut self,
        local_id: &str,
        method: &str,
        uri: Option<String>,
        now: Instant,
    ) -> Vec<Action> {
        if self.capabilities["resources"]["subscribe"] != json!(true) {
            return vec![self.refuse(
                local_id,
                error::METHOD_NOT_FOUND,
                "Method not found: the remote server offers no resource subscriptions",
            )];
        }
        let Some(uri) = uri else {
            return vec![self.refuse(
                local_id,
                error::INVALID_PARAMS,
                "Invalid params: uri is required",
            )];
        };
        let changed = if method == "resources/subscribe" {
            self.subscriptions.insert(uri)
        } else {
            self.subscriptions.remove(&uri)
        };
        if !changed {
            return vec![self.answer(local_id, "{}")];
        }
        let Some(params) = self.listen_params() else {
            // Nothing left to listen for: the stream closes, nothing to wait for.
            return vec![Action::Listen(None), self.answer(local_id, "{}")];
        };
        self.held
            .push((local_id.to_string(), now + limits::LISTEN_ACK_WAIT));
        vec![Action::Listen(Some(params))]
    }

    fn on_notification(&mut self, message: &StdinMessage) -> Vec<Action> {
        let method = message.method.clone().unwrap_or_default();
        match method.as_str() {
            "notifications/initialized" => Vec::new(),
            _ => {
                if method == "notifications/cancelled" {
                    self.forget_cancelled(&message.text);
                }
                vec![Action::Send(Post {
                    text: message.text.clone(),
                    kind: Kind::Notification,
                    wire_id: None,
                    local_id: None,
                    headers: base_headers(&method),
                    method,
                })]
            }
        }
    }

    /// A cancelled request waiting for input is dropped: nobody wants its answer.
    fn forget_cancelled(&mut self, text: &str) {
        let Some(request_id) = Envelope::parse(text)
            .ok()
            .and_then(|env| env.params)
            .and_then(|p| envelope::param_of(p, "requestId"))
            .map(|id| id.get().to_string())
        else {
            return;
        };
        let rounds: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.call.local_id == request_id)
            .map(|(k, _)| *k)
            .collect();
        for round in rounds {
            self.rounds.remove(&round);
            self.inputs.retain(|_, (r, _)| *r != round);
        }
    }

    fn on_input_answer(&mut self, message: &StdinMessage) -> Vec<Action> {
        let id = message.id.clone().unwrap_or_default();
        let Some((round_id, key)) = self.inputs.remove(&id) else {
            warn!("dropped a response from the client to no request of ours (id {id})");
            return Vec::new();
        };
        let Some(round) = self.rounds.get_mut(&round_id) else {
            return Vec::new();
        };
        let env = Envelope::parse(&message.text).ok();
        if let Some(env) = env.as_ref().filter(|e| e.error.is_some() && e.id.is_some()) {
            // The client refused what the remote asked: the request ends with its error, the
            // client's own bytes under the request's id.
            let round = self.rounds.remove(&round_id).expect("found above");
            self.inputs.retain(|_, (r, _)| *r != round_id);
            let local_id = round.call.local_id;
            let line = envelope::with_id(&message.text, env, &local_id);
            return vec![Action::Answer { local_id, line }];
        }
        let answer = env.and_then(|e| e.result).map_or("null", |r| r.get());
        round.answers.push((key, answer.to_string()));
        round.waiting -= 1;
        if round.waiting > 0 {
            return Vec::new();
        }
        let round = self.rounds.remove(&round_id).expect("found above");
        let wire_id = self.take_id("retry");
        let answers: Vec<String> = round
            .answers
            .iter()
            .map(|(key, answer)| format!("{}:{answer}", jsonrpc::quote(key)))
            .collect();
        let mut fields = format!(r#""inputResponses":{{{}}}"#, answers.join(","));
        if let Some(state) = &round.request_state {
            fields.push_str(&format!(r#","requestState":{state}"#));
        }
        let text = meta::with_params_fields(&round.call.line, &fields, &wire_id);
        let call = round.call;
        debug!(
            "retrying {} (round {}) as {wire_id}",
            call.method,
            call.rounds + 1
        );
        let post = Post {
            text,
            kind: Kind::Request,
            wire_id: Some(wire_id.clone()),
            local_id: Some(call.local_id.clone()),
            method: call.method.clone(),
            headers: call.headers.clone(),
        };
        self.calls.insert(wire_id, call);
        vec![Action::Send(post)]
    }

    // ---- from the remote ----------------------------------------------------------------

    /// A request of ours that the remote will not answer (refused, lost): forgotten.
    pub fn forget(&mut self, wire_id: &str) {
        self.calls.remove(wire_id);
    }

    /// A response from the remote (on a POST's stream or as its JSON body).
    pub fn on_response(&mut self, text: &str, env: &Envelope<'_>) -> Vec<Action> {
        let wire_id = env.id.map_or("null", |id| id.get());
        let Some(call) = self.calls.remove(wire_id) else {
            debug!("a response to no request of ours (id {wire_id}): passed on");
            return vec![Action::Write(text.to_string())];
        };
        // Only `resultType` is read to tell an InputRequiredResult; other results stay raw.
        if let Some(result) = env.result
            && envelope::param_of(result, "resultType")
                .and_then(|t| serde_json::from_str::<String>(t.get()).ok())
                .is_some_and(|t| t == "input_required")
            && let Ok(result) = serde_json::from_str::<Value>(result.get())
        {
            return self.ask_client(call, &result, env);
        }
        let mut line = if wire_id == call.local_id {
            text.to_string()
        } else {
            envelope::with_id(text, env, &call.local_id)
        };
        if call.method == "tools/list" && env.result.is_some() {
            line = self.remember_tools(line);
        }
        vec![Action::Answer {
            local_id: call.local_id,
            line,
        }]
    }

    /// An `InputRequiredResult`: its input requests go to the local client.
    fn ask_client(&mut self, mut call: Call, result: &Value, env: &Envelope<'_>) -> Vec<Action> {
        call.rounds += 1;
        let local_id = call.local_id.clone();
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .filter(|r| !r.is_empty());
        let Some(requests) = requests else {
            return vec![self.refuse(
                &local_id,
                error::INTERNAL_ERROR,
                "the remote server asked for input but named none",
            )];
        };
        if call.rounds > limits::MAX_INPUT_ROUNDS {
            return vec![self.refuse(
                &local_id,
                error::INTERNAL_ERROR,
                &format!(
                    "the remote server asked for input more than {} times",
                    limits::MAX_INPUT_ROUNDS
                ),
            )];
        }
        // Byte-identical: the raw text, never re-encoded.
        let request_state = env
            .result
            .and_then(|r| envelope::param_of(r, "requestState"))
            .map(|s| s.get().to_string());
        self.next += 1;
        let round_id = self.next;
        let mut actions = Vec::new();
        for (key, input) in requests {
            let Some(method) = input.get("method").and_then(Value::as_str) else {
                self.inputs.retain(|_, (r, _)| *r != round_id);
                return vec![self.refuse(
                    &local_id,
                    error::INTERNAL_ERROR,
                    &format!("the remote server's input request {key:?} has no method"),
                )];
            };
            let id = self.take_id("input");
            let params = input
                .get("params")
                .map(|params| format!(r#","params":{params}"#))
                .unwrap_or_default();
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":{}{params}}}"#,
                jsonrpc::quote(method)
            );
            self.inputs.insert(id, (round_id, key.clone()));
            actions.push(Action::Write(line));
        }
        debug!(
            "{} needs {} input(s) from the client (round {})",
            call.method,
            requests.len(),
            call.rounds
        );
        self.rounds.insert(
            round_id,
            Round {
                waiting: requests.len(),
                call,
                request_state,
                answers: Vec::new(),
            },
        );
        actions
    }

    /// Keeps the header parameters of the tools in a `tools/list` response, and drops the
    /// tools whose annotations are invalid (the spec: a client MUST exclude them).
    fn remember_tools(&mut self, line: String) -> String {
        let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        let Some(tools) = v["result"]["tools"].as_array_mut() else {
            return line;
        };
        let before = tools.len();
        tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
            match checked_header_params(tool.get("inputSchema").unwrap_or(&Value::Null)) {
                Ok(params) => {
                    if params.is_empty() {
                        self.tools.remove(name);
                    } else {
                        self.tools.insert(name.to_string(), params);
                    }
                    true
                }
                Err(why) => {
                    warn!(
                        "left out tool {:?} from tools/list: {}",
                        crate::logging::escape_control(name),
                        crate::logging::escape_control(&why)
                    );
                    self.tools.remove(name);
                    false
                }
            }
        });
        if tools.len() == before {
            line
        } else {
            v.to_string()
        }
    }

    // ---- change notifications -----------------------------------------------------------

    /// The params of the `subscriptions/listen` this client needs; `None` when it needs none.
    pub fn listen_params(&self) -> Option<String> {
        let caps = &self.capabilities;
        let declared = |kind: &str, flag: &str| caps[kind][flag] == json!(true);
        let mut filter = Map::new();
        for (kind, name) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            if declared(kind, "listChanged") {
                filter.insert(name.into(), true.into());
            }
        }
        if !self.subscriptions.is_empty() {
            filter.insert(
                "resourceSubscriptions".into(),
                json!(self.subscriptions.iter().collect::<Vec<_>>()),
            );
        }
        if filter.is_empty() {
            return None;
        }
        Some(format!(
            r#"{{"notifications":{},"_meta":{{{}}}}}"#,
            Value::Object(filter),
            self.identity.meta_fields(None)
        ))
    }

    /// The listen request under `id` (raw JSON), and its headers.
    pub fn listen_request(id: &str, params: &str) -> (String, Vec<(String, String)>) {
        (jsonrpc::request(id, LISTEN, params), base_headers(LISTEN))
    }

    /// A message on the current listen stream.
    pub fn on_listen_message(&mut self, text: &str, env: &Envelope<'_>) -> Vec<Action> {
        match env.kind {
            Kind::Notification if env.method() == ACKNOWLEDGED => {
                debug!("subscriptions/listen acknowledged");
                let held = std::mem::take(&mut self.held);
                held.iter().map(|(id, _)| self.answer(id, "{}")).collect()
            }
            Kind::Notification => vec![Action::Write(text.to_string())],
            Kind::Response => {
                debug!("the remote ended subscriptions/listen");
                Vec::new()
            }
            Kind::Request => {
                warn!(
                    "dropped a {} request on the listen stream (not allowed in 2026-07-28)",
                    crate::logging::escape_control(env.method())
                );
                Vec::new()
            }
        }
    }

    /// The remote will not hold a listen stream: held answers go out with the reason.
    pub fn on_listen_refused(&mut self, reason: &str) -> Vec<Action> {
        info!("no change notifications from the remote: {reason}");
        let held = std::mem::take(&mut self.held);
        held.iter()
            .map(|(id, _)| {
                self.refuse(
                    id,
                    error::INTERNAL_ERROR,
                    &format!("the remote server refused subscriptions/listen: {reason}"),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdin(text: &str) -> StdinMessage {
        let env = Envelope::parse(text).unwrap();
        StdinMessage {
            text: text.into(),
            kind: env.kind,
            id: env.id.map(|i| i.get().to_string()),
            method: env.method.map(|m| m.into_owned()),
        }
    }

    const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"c","version":"1"}}}"#;

    fn discovered() -> Value {
        json!({"resultType":"complete","supportedVersions":["2026-07-28"],
            "capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}},
            "instructions":"hi","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"m","version":"2"}}})
    }

    fn modern() -> Modern {
        Modern::new(Identity::from_initialize(INIT), &discovered())
    }

    fn sent(actions: &[Action]) -> &Post {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Send(p) => Some(p),
                _ => None,
            })
            .expect("a Send")
    }

    fn answers(actions: &[Action]) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Answer { line, .. } => Some(serde_json::from_str(line).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_probe_carries_the_clients_identity() {
        let identity = Identity::from_initialize(INIT);
        let v: Value = serde_json::from_str(&discover_request("\"p\"", &identity)).unwrap();
        assert_eq!(v["method"], "server/discover");
        let meta = &v["params"]["_meta"];
        assert_eq!(meta[meta::PROTOCOL_VERSION], VERSION);
        assert_eq!(meta[meta::CLIENT_CAPABILITIES], json!({"elicitation":{}}));
        assert_eq!(meta[meta::CLIENT_INFO]["name"], "c");
        assert_eq!(header(&discover_headers(), "mcp-method"), Some(DISCOVER));
        assert_eq!(
            header(&discover_headers(), "mcp-protocol-version"),
            Some(VERSION)
        );
    }

    #[test]
    fn probe_answers_are_told_apart() {
        let ok = r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#;
        assert!(matches!(classify(200, ok), Probe::Discovered(_)));
        let retry = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2026-07-28"],"requested":"1"}}}"#;
        assert_eq!(classify(400, retry), Probe::Retry);
        let other = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2027-01-01"]}}}"#;
        assert_eq!(
            classify(400, other),
            Probe::NoCommonVersion(vec!["2027-01-01".into()])
        );
        for (status, text) in [
            (200, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            (
                400,
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#,
            ),
            (
                200,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#,
            ),
            (404, "Not Found"),
            (
                400,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2025-06-18"]}}}"#,
            ),
        ] {
            assert!(
                matches!(classify(status, text), Probe::Session(_)),
                "{status} {text}"
            );
        }
        assert!(speaks_session_era(
            &json!({"supportedVersions":["2026-07-28","2025-11-25"]})
        ));
        assert!(!speaks_session_era(
            &json!({"supportedVersions":["2026-07-28"]})
        ));
    }

    #[test]
    fn initialize_is_answered_from_the_discover_result() {
        let mut m = modern();
        let actions = m.start(&stdin(INIT));
        let v = &answers(&actions)[0];
        assert_eq!(v["id"], 0);
        assert_eq!(v["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(v["result"]["serverInfo"]["name"], "m");
        assert_eq!(v["result"]["instructions"], "hi");
        assert_eq!(v["result"]["capabilities"]["tools"]["listChanged"], true);
        // The remote has list changes to tell: a listen opens.
        assert!(actions.iter().any(|a| matches!(a, Action::Listen(Some(_)))));
        let unknown = initialize_result(
            &json!({"serverInfo":{"name":"top","version":"1"}}),
            Some("1999-01-01"),
        );
        let v: Value = serde_json::from_str(&unknown).unwrap();
        assert_eq!(v["protocolVersion"], jsonrpc::LATEST_VERSION);
        assert_eq!(v["serverInfo"]["name"], "top");
    }

    #[test]
    fn removed_methods_are_answered_here_and_the_level_is_remembered() {
        let mut m = modern();
        let now = Instant::now();
        let a = m.on_stdin(&stdin(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), now);
        assert_eq!(answers(&a)[0]["result"], json!({}));
        let a = m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}"#),
            now,
        );
        assert_eq!(answers(&a)[0]["result"], json!({}));
        assert!(
            m.on_stdin(
                &stdin(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
                now
            )
            .is_empty()
        );
        let a = m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"progressToken":7}}}"#),
            now,
        );
        let post = sent(&a);
        let v: Value = serde_json::from_str(&post.text).unwrap();
        let meta = &v["params"]["_meta"];
        assert_eq!(meta[meta::LOG_LEVEL], "debug");
        assert_eq!(meta["progressToken"], 7);
        assert_eq!(meta[meta::PROTOCOL_VERSION], VERSION);
        assert_eq!(header(&post.headers, "mcp-method"), Some("tools/list"));
        assert_eq!(header(&post.headers, "mcp-name"), None);
    }

    #[test]
    fn names_and_tool_parameters_become_headers() {
        let mut m = modern();
        let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"ok","inputSchema":{"type":"object","properties":{
                "region":{"type":"string","x-mcp-header":"Region"},
                "n":{"type":"integer","x-mcp-header":"N"},
                "f":{"type":"boolean","x-mcp-header":"F"},
                "deep":{"type":"object","properties":{"x":{"type":"string","x-mcp-header":"Deep"}}},
                "items":{"type":"array","items":{"properties":{"y":{"type":"string","x-mcp-header":"Hidden"}}}}}}},
            {"name":"bad","inputSchema":{"type":"object","properties":{"s":{"type":"number","x-mcp-header":"S"}}}}]}}"#
            .replace('\n', "");
        let now = Instant::now();
        m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            now,
        );
        let env = Envelope::parse(&list).unwrap();
        let a = m.on_response(&list, &env);
        let v = &answers(&a)[0];
        let names: Vec<&str> = v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ok"], "the invalid tool is left out");
        let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ok","arguments":{"region":" eu ","n":42,"f":false,"deep":{"x":"é"},"items":[{"y":"z"}]}}}"#;
        let a = m.on_stdin(&stdin(call), now);
        let h = &sent(&a).headers;
        assert_eq!(header(h, "mcp-name"), Some("ok"));
        assert_eq!(header(h, "mcp-param-region"), Some("=?base64?IGV1IA==?="));
        assert_eq!(header(h, "mcp-param-n"), Some("42"));
        assert_eq!(header(h, "mcp-param-f"), Some("false"));
        assert_eq!(header(h, "mcp-param-deep"), Some("=?base64?w6k=?="));
        assert_eq!(
            header(h, "mcp-param-hidden"),
            None,
            "properties chains only"
        );
        let read = r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a%20b.txt"}}"#;
        let a = m.on_stdin(&stdin(read), now);
        assert_eq!(
            header(&sent(&a).headers, "mcp-name"),
            Some("file:///a%20b.txt")
        );
    }

    #[test]
    fn numbers_are_written_as_json_writes_them() {
        assert_eq!(
            number_text(&serde_json::Number::from_f64(3.5).unwrap()),
            "3.5"
        );
        assert_eq!(
            number_text(&serde_json::Number::from_f64(2.0).unwrap()),
            "2"
        );
        assert_eq!(number_text(&42.into()), "42");
    }

    #[test]
    fn input_required_round_trip_retries_with_a_new_id_and_the_exact_state() {
        let mut m = modern();
        let now = Instant::now();
        let call = r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"ask","arguments":{}}}"#;
        m.on_stdin(&stdin(call), now);
        let reply = r#"{"jsonrpc":"2.0","id":"c1","result":{"resultType":"input_required","inputRequests":{"name":{"method":"elicitation/create","params":{"message":"?"}}},"requestState":"a\u0062c"}}"#;
        let a = m.on_response(reply, &Envelope::parse(reply).unwrap());
        let Action::Write(ask) = &a[0] else {
            panic!("{a:?}")
        };
        let ask: Value = serde_json::from_str(ask).unwrap();
        assert_eq!(ask["method"], "elicitation/create");
        let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"action":"accept","content":{"name":"Ada"}}});
        let a = m.on_stdin(&stdin(&answer.to_string()), now);
        let post = sent(&a);
        assert_eq!(post.local_id.as_deref(), Some(r#""c1""#));
        assert_ne!(post.wire_id.as_deref(), Some(r#""c1""#));
        assert!(
            post.text.contains(r#""requestState":"a\u0062c""#),
            "{}",
            post.text
        );
        let v: Value = serde_json::from_str(&post.text).unwrap();
        assert_eq!(
            v["params"]["inputResponses"]["name"]["content"]["name"],
            "Ada"
        );
        assert_eq!(v["params"]["name"], "ask");
        assert_eq!(v["params"]["_meta"][meta::PROTOCOL_VERSION], VERSION);
        // The final result comes back under the client's id.
        let done = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[]}}}}"#,
            post.wire_id.as_deref().unwrap()
        );
        let a = m.on_response(&done, &Envelope::parse(&done).unwrap());
        assert_eq!(answers(&a)[0]["id"], "c1");

        // No requestState: none in the retry.
        m.on_stdin(&stdin(call), now);
        let reply = r#"{"jsonrpc":"2.0","id":"c1","result":{"resultType":"input_required","inputRequests":{"k":{"method":"roots/list"}}}}"#;
        let a = m.on_response(reply, &Envelope::parse(reply).unwrap());
        let Action::Write(ask) = &a[0] else {
            panic!("{a:?}")
        };
        let ask: Value = serde_json::from_str(ask).unwrap();
        assert!(ask.get("params").is_none());
        // The client's answer reaches the remote byte for byte.
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"roots":[],"n":1.50,"s":"\u00e9"}}}}"#,
            ask["id"]
        );
        let a = m.on_stdin(&stdin(&answer), now);
        let text = &sent(&a).text;
        assert!(!text.contains("requestState"), "{text}");
        assert!(
            text.contains(r#""inputResponses":{"k":{"roots":[],"n":1.50,"s":"\u00e9"}}"#),
            "{text}"
        );
    }

    #[test]
    fn an_error_from_the_client_ends_the_request() {
        let mut m = modern();
        let now = Instant::now();
        m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"s"}}"#),
            now,
        );
        let reply = r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","inputRequests":{"c":{"method":"sampling/createMessage","params":{}}}}}"#;
        let a = m.on_response(reply, &Envelope::parse(reply).unwrap());
        let Action::Write(ask) = &a[0] else {
            panic!("{a:?}")
        };
        let ask: Value = serde_json::from_str(ask).unwrap();
        let refusal =
            json!({"jsonrpc":"2.0","id":ask["id"],"error":{"code":-32601,"message":"no"}});
        let a = m.on_stdin(&stdin(&refusal.to_string()), now);
        let v = &answers(&a)[0];
        assert_eq!(v["id"], 5);
        assert_eq!(v["error"]["code"], -32601);
    }

    #[test]
    fn unsubscribing_the_last_resource_closes_the_listen_at_once() {
        let caps = json!({"supportedVersions":["2026-07-28"],"capabilities":{"resources":{"subscribe":true}}});
        let mut m = Modern::new(Identity::from_initialize(INIT), &caps);
        assert!(
            m.start(&stdin(INIT))
                .iter()
                .all(|a| !matches!(a, Action::Listen(_)))
        );
        let now = Instant::now();
        let sub =
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"a://b"}}"#;
        assert!(matches!(
            m.on_stdin(&stdin(sub), now)[0],
            Action::Listen(Some(_))
        ));
        let unsub =
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/unsubscribe","params":{"uri":"a://b"}}"#;
        let a = m.on_stdin(&stdin(unsub), now);
        assert!(matches!(a[0], Action::Listen(None)));
        assert_eq!(answers(&a)[0]["id"], 2);
        // A remote without subscriptions: refused.
        let mut m = modern();
        m.capabilities = json!({});
        let a = m.on_stdin(&stdin(sub), now);
        assert_eq!(answers(&a)[0]["error"]["code"], error::METHOD_NOT_FOUND);
    }

    #[test]
    fn subscriptions_renew_the_listen_and_wait_for_its_acknowledgement() {
        let mut m = modern();
        let now = Instant::now();
        let a = m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":9,"method":"resources/subscribe","params":{"uri":"a://b"}}"#),
            now,
        );
        let Some(Action::Listen(Some(params))) = a.first() else {
            panic!("{a:?}")
        };
        let v: Value = serde_json::from_str(params).unwrap();
        assert_eq!(
            v["notifications"]["resourceSubscriptions"],
            json!(["a://b"])
        );
        assert_eq!(v["notifications"]["toolsListChanged"], true);
        assert!(v["notifications"].get("promptsListChanged").is_none());
        assert_eq!(m.next_deadline(), Some(now + limits::LISTEN_ACK_WAIT));
        let ack =
            r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}"#;
        let a = m.on_listen_message(ack, &Envelope::parse(ack).unwrap());
        assert_eq!(answers(&a)[0]["id"], 9);
        let update = r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"a://b"}}"#;
        let a = m.on_listen_message(update, &Envelope::parse(update).unwrap());
        assert!(matches!(&a[0], Action::Write(l) if l == update));
        // Subscribing again changes nothing: answered at once.
        let a = m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":10,"method":"resources/subscribe","params":{"uri":"a://b"}}"#),
            now,
        );
        assert_eq!(answers(&a)[0]["id"], 10);
        // Unacknowledged: answered at the deadline.
        m.on_stdin(
            &stdin(r#"{"jsonrpc":"2.0","id":11,"method":"resources/unsubscribe","params":{"uri":"a://b"}}"#),
            now,
        );
        assert!(m.on_tick(now).is_empty());
        let a = m.on_tick(now + limits::LISTEN_ACK_WAIT);
        assert_eq!(answers(&a)[0]["id"], 11);
    }
}
