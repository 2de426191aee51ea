//! The 2026-07-28 era ("modern", stateless) served from a child of either era:
//! 1. each modern request is a session of its own, with the capabilities and log level its
//!    `_meta` declares;
//! 2. `server/discover` is answered from the child's cached handshake;
//! 3. a request the child sends to the client during a modern request (sampling, elicitation,
//!    roots) ends that request with an `InputRequiredResult` (SEP-2322, MRTR): the child's
//!    request stays open, parked under an unguessable `requestState`; the client's retry
//!    carries the answers, which go to the child, and the retry takes over the original
//!    request, so its response reaches the retry;
//! 4. `subscriptions/listen` holds a stream open for the change notifications the client
//!    opted in to, each tagged with the subscription's id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde_json::Value;

use super::session::{ClientCaps, Listen, Reply, Session, SessionId};
use super::stream::Outbound;
use super::{Mux, Pending, Refused, State, canonical_id};
use crate::jsonrpc::envelope::Envelope;
pub use crate::jsonrpc::tool_headers::ToolHeaders;
use crate::jsonrpc::tool_headers::declared_header_params;
use crate::jsonrpc::{self, error as rpc};
use crate::limits;

/// `MissingRequiredClientCapability`: the request needs a capability the client lacks.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;

/// The protocol versions of the modern era we speak.
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

/// One request of the child waiting for the client's answer.
pub struct Input {
    /// Its key in `inputRequests` / `inputResponses`.
    key: String,
    /// The child's id for it, raw JSON.
    child_id: Box<str>,
    method: String,
    /// Raw JSON of its params (`{}` when it had none).
    params: Box<str>,
}

/// A client request the child is still working on, whose client must answer the child's
/// own requests first. While `open`, the child's requests are collected (concurrent ones go
/// out together); then the client's request ends with an `InputRequiredResult`, and the
/// retry that brings back `requestState` resumes it.
pub struct Parked {
    proxy_id: u64,
    method: Box<str>,
    /// The inputs the client is (or was) asked for, answered by the retry.
    asked: Vec<Input>,
    /// Still collecting: the `InputRequiredResult` has not gone out yet.
    open: bool,
    /// Where the `InputRequiredResult` goes when the collecting window closes.
    session: SessionId,
    client_id: Box<str>,
    reply: Reply,
    /// The child's response, when it came while the request was parked.
    response: Option<String>,
    parked_at: Instant,
}

/// What became of a request of the child aimed at a modern client's request.
pub enum Asked {
    /// The request answered it in advance (`inputResponses` of a fresh request): this line
    /// goes back to the child.
    Answered(String),
    /// Added to an `InputRequiredResult` still being collected.
    Collected,
    /// The first one: a collecting window opens; close it with `close_input_window(token)`.
    Opened(String),
    /// The client's answer in advance is not a valid answer: the request ended with an error;
    /// this error line goes back to the child.
    Refused(String),
}

/// What a `subscriptions/listen` request asks for.
pub struct ListenFilter {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
    pub resource_uris: Vec<String>,
}

impl Mux {
    /// Opens the session of one modern request.
    pub fn open_modern_session(
        &self,
        caps: ClientCaps,
        log_level: Option<u8>,
    ) -> Result<SessionId, Refused> {
        self.check_running()?;
        let mut state = self.lock();
        if state.sessions.len() >= self.options.max_sessions {
            return Err(Refused::TooManySessions);
        }
        let id = SessionId::random();
        state.sessions.insert(id, Session::modern(caps, log_level));
        Ok(id)
    }

    /// The `server/discover` result, from the child's handshake.
    pub fn discover(&self, id: &str) -> Result<String, Refused> {
        let init = self
            .lock()
            .init
            .clone()
            .ok_or_else(|| Refused::Unavailable("not initialized".into()))?;
        let mut versions: Vec<&str> = MODERN_VERSIONS.to_vec();
        versions.extend(jsonrpc::SUPPORTED_VERSIONS.iter().rev());
        let mut result = serde_json::Map::new();
        result.insert("resultType".into(), "complete".into());
        result.insert("supportedVersions".into(), versions.into());
        let capabilities = init.result.get("capabilities").cloned();
        result.insert(
            "capabilities".into(),
            capabilities.unwrap_or_else(|| Value::Object(Default::default())),
        );
        if let Some(instructions) = init.result.get("instructions") {
            result.insert("instructions".into(), instructions.clone());
        }
        result.insert("ttlMs".into(), 0.into());
        result.insert("cacheScope".into(), "private".into());
        if let Some(info) = init.result.get("serverInfo") {
            let meta = serde_json::json!({ "io.modelcontextprotocol/serverInfo": info });
            result.insert("_meta".into(), meta);
        }
        let body = serde_json::to_string(&result).expect("a Map always serialises");
        Ok(jsonrpc::result(id, &body))
    }

    /// The `x-mcp-header` parameters of the child's tools, asking the child for its tool list
    /// when it is not known (yet, or since it changed).
    pub fn tool_headers(&self) -> Arc<ToolHeaders> {
        if let Some(known) = self.lock().tool_headers.clone() {
            return known;
        }
        let mut headers = ToolHeaders::new();
        let mut cursor: Option<String> = None;
        for _ in 0..limits::TOOL_LIST_PAGES {
            let params = match &cursor {
                Some(c) => format!(r#"{{"cursor":{}}}"#, jsonrpc::quote(c)),
                None => "{}".into(),
            };
            let Ok(answer) = self.ask_child("tools/list", &params, limits::CHILD_SEND_TIMEOUT)
            else {
                // Without the list nothing can be checked; try again next time.
                return Arc::new(headers);
            };
            let page: Value = serde_json::from_str(&answer).unwrap_or_default();
            for tool in page["result"]["tools"].as_array().into_iter().flatten() {
                let (Some(name), Some(schema)) = (tool["name"].as_str(), tool.get("inputSchema"))
                else {
                    continue;
                };
                let found = declared_header_params(schema);
                if !found.is_empty() {
                    headers.insert(name.to_string(), found);
                }
            }
            cursor = page["result"]["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        let headers = Arc::new(headers);
        self.lock().tool_headers = Some(headers.clone());
        headers
    }

    /// The child's `serverInfo`, raw JSON, for results' `_meta`.
    pub fn server_info(&self) -> Option<String> {
        let init = self.lock().init.clone()?;
        init.result.get("serverInfo").map(Value::to_string)
    }

    /// Opens a `subscriptions/listen` stream on `session`: acknowledges what the child can
    /// deliver, subscribes the child to the resources asked for.
    pub fn listen(
        &self,
        session: SessionId,
        id: &str,
        filter: ListenFilter,
        reply: Reply,
    ) -> Result<(), Refused> {
        let mut subscribe = Vec::new();
        {
            let mut state = self.lock();
            let caps = state
                .init
                .as_ref()
                .and_then(|i| i.result.get("capabilities").cloned())
                .unwrap_or_default();
            let declared = |kind: &str, flag: &str| {
                caps.get(kind)
                    .and_then(|k| k.get(flag))
                    .and_then(Value::as_bool)
                    == Some(true)
            };
            let tools = filter.tools && declared("tools", "listChanged");
            let prompts = filter.prompts && declared("prompts", "listChanged");
            let resources = filter.resources && declared("resources", "listChanged");
            let uris: Vec<String> = if declared("resources", "subscribe") {
                filter.resource_uris
            } else {
                Vec::new()
            };
            let mut acknowledged = serde_json::Map::new();
            for (name, on) in [
                ("toolsListChanged", tools),
                ("promptsListChanged", prompts),
                ("resourcesListChanged", resources),
            ] {
                if on {
                    acknowledged.insert(name.into(), true.into());
                }
            }
            if !uris.is_empty() {
                acknowledged.insert("resourceSubscriptions".into(), uris.clone().into());
            }
            for uri in &uris {
                if state.add_subscriber(session, uri)? {
                    subscribe.push(uri.clone());
                }
            }
            let s = state
                .sessions
                .get_mut(&session)
                .ok_or(Refused::UnknownSession)?;
            s.listen = Some(Listen {
                id: id.into(),
                reply: reply.clone(),
                tools,
                prompts,
                resources,
            });
            let params = format!(
                r#"{{"notifications":{},"_meta":{{"io.modelcontextprotocol/subscriptionId":{id}}}}}"#,
                Value::Object(acknowledged)
            );
            let ack = jsonrpc::notification("notifications/subscriptions/acknowledged", &params);
            state.deliver_reply(session, &reply, Outbound::message(ack.into()));
        }
        if self.child_is_modern() {
            if !subscribe.is_empty() {
                self.renew_listen();
            }
        } else {
            for uri in subscribe {
                self.fire_and_forget(
                    "resources/subscribe",
                    &format!(r#"{{"uri":{}}}"#, jsonrpc::quote(&uri)),
                );
            }
        }
        Ok(())
    }

    /// Whether `token` is a `requestState` of the proxy's own (not of a 2026-07-28 child's).
    pub fn owns_request_state(&self, token: &str) -> bool {
        self.lock().parked.contains_key(token)
    }

    /// Resumes a parked request with the client's retry (which carries `requestState` and
    /// `inputResponses`): the answers go to the child, and the retry takes the request over;
    /// what the retry did not answer is asked again.
    pub fn resume(
        &self,
        session: SessionId,
        env: &Envelope<'_>,
        reply: Reply,
        token: &str,
    ) -> Result<(), Refused> {
        let retry_id = env.id.expect("requests have ids").get();
        let responses: Value = env
            .param("inputResponses")
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null);
        let mut to_child = Vec::new();
        {
            let mut state = self.lock();
            let refuse = |state: &mut State, message: &str| {
                let text = rpc::response(retry_id, rpc::INVALID_PARAMS, message);
                state.deliver_reply(session, &reply, Outbound::last(text.into()));
            };
            let Some(mut parked) = state.parked.remove(token).filter(|p| !p.open) else {
                refuse(
                    &mut state,
                    "Invalid requestState: unknown, expired or already used",
                );
                return Ok(());
            };
            if *parked.method != *env.method() {
                refuse(
                    &mut state,
                    "Invalid requestState: it belongs to another method",
                );
                state.parked.insert(token.to_string(), parked);
                return Ok(());
            }
            if let Some(input) = parked.asked.iter().find(|i| {
                responses
                    .get(&i.key)
                    .is_some_and(|a| !valid_answer(&i.method, a))
            }) {
                let message = format!(
                    "Invalid inputResponses: {:?} is not a {} result",
                    input.key, input.method
                );
                refuse(&mut state, &message);
                state.parked.insert(token.to_string(), parked);
                return Ok(());
            }
            let mut missing = Vec::new();
            for input in parked.asked.drain(..) {
                match responses.get(&input.key) {
                    Some(answer) => {
                        to_child.push(jsonrpc::result(&input.child_id, &answer.to_string()));
                    }
                    None => missing.push(input),
                }
            }
            if !missing.is_empty() {
                // Ask again, under a fresh state, for what the retry did not bring.
                let fresh = format!("{:032x}", crate::random::u128());
                let result = input_required(&missing, &fresh);
                state.deliver_reply(
                    session,
                    &reply,
                    Outbound::last(jsonrpc::result(retry_id, &result).into()),
                );
                if let Some(Pending::Client(request)) = state.pending.get_mut(&parked.proxy_id) {
                    request.parked = Some(fresh.clone());
                }
                parked.asked = missing;
                parked.parked_at = Instant::now();
                state.parked.insert(fresh, parked);
            } else if let Some(response) = parked.response.take() {
                let text = with_raw_id(&response, retry_id);
                state.deliver_reply(session, &reply, Outbound::last(text.into()));
            } else if let Some(Pending::Client(request)) = state.pending.get_mut(&parked.proxy_id) {
                request.session = session;
                request.id = retry_id.into();
                request.reply = reply.clone();
                request.parked = None;
                request.prefilled = None;
                if let Some(s) = state.sessions.get_mut(&session) {
                    s.in_flight.insert(canonical_id(retry_id), parked.proxy_id);
                }
            } else {
                let text = rpc::response(
                    retry_id,
                    rpc::SERVER_UNAVAILABLE,
                    "The MCP server no longer runs the request this requestState resumes",
                );
                state.deliver_reply(session, &reply, Outbound::last(text.into()));
            }
        }
        for line in to_child {
            self.send_to_child(line)?;
        }
        Ok(())
    }

    /// Parked requests nobody resumed in time: cancelled at the child, whose own requests
    /// get an error.
    pub(super) fn expire_parked(&self, now: Instant, ttl: Duration) {
        let mut to_child = Vec::new();
        {
            let mut state = self.lock();
            let expired: Vec<String> = state
                .parked
                .iter()
                .filter(|(_, p)| now.duration_since(p.parked_at) >= ttl)
                .map(|(k, _)| k.clone())
                .collect();
            for token in expired {
                let parked = state.parked.remove(&token).expect("listed above");
                state.pending.remove(&parked.proxy_id);
                for input in &parked.asked {
                    to_child.push(rpc::response(
                        &input.child_id,
                        rpc::INTERNAL_ERROR,
                        "the client never answered (mcp-proxy: input request expired)",
                    ));
                }
                to_child.push(jsonrpc::notification(
                    "notifications/cancelled",
                    &format!(
                        r#"{{"requestId":{},"reason":"the client never retried"}}"#,
                        parked.proxy_id
                    ),
                ));
                warn!(
                    "server {:?}: input request of {} expired unanswered; cancelled at the child",
                    self.label, parked.method
                );
            }
        }
        for line in to_child {
            // A child that is gone has nothing left to cancel.
            let _ = self.send_to_child(line);
        }
    }
}

/// Turns a request of the child into an input request of the modern client whose request
/// `proxy_id` is (see [`Asked`]).
pub(super) fn ask_for_input(
    state: &mut State,
    proxy_id: u64,
    child_id: &str,
    method: &str,
    params: Option<&str>,
) -> Option<Asked> {
    state.next_input += 1;
    let hint = params
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p["_meta"][INPUT_KEY_HINT].as_str().map(str::to_string));
    let key = hint.unwrap_or_else(|| format!("{}-{}", method.replace('/', "-"), state.next_input));
    let Some(Pending::Client(request)) = state.pending.get_mut(&proxy_id) else {
        return None;
    };
    // Answered in advance by the request itself?
    if let Some(answer) = request
        .prefilled
        .as_deref()
        .and_then(|all| serde_json::from_str::<Value>(all).ok())
        .and_then(|all| all.get(&key).cloned())
    {
        if valid_answer(method, &answer) {
            return Some(Asked::Answered(jsonrpc::result(
                child_id,
                &answer.to_string(),
            )));
        }
        let (session, id, reply) = (request.session, request.id.clone(), request.reply.clone());
        state.pending.remove(&proxy_id);
        if let Some(s) = state.sessions.get_mut(&session) {
            s.in_flight.remove(&canonical_id(&id));
        }
        let text = rpc::response(
            &id,
            rpc::INVALID_PARAMS,
            &format!("Invalid inputResponses: {key:?} is not a {method} result"),
        );
        state.deliver_reply(session, &reply, Outbound::last(text.into()));
        return Some(Asked::Refused(rpc::response(
            child_id,
            rpc::INTERNAL_ERROR,
            "the client's answer was not valid",
        )));
    }
    let mut input = Input {
        key,
        child_id: child_id.into(),
        method: method.to_string(),
        params: without_key_hint(params.unwrap_or("{}")).into(),
    };
    if let Some(token) = request.parked.clone() {
        let parked = state.parked.get_mut(&token)?;
        if !parked.open {
            return None;
        }
        if parked.asked.iter().any(|i| i.key == input.key) {
            input.key = format!("{}-{}", input.key, state.next_input);
        }
        parked.asked.push(input);
        return Some(Asked::Collected);
    }
    let token = format!("{:032x}", crate::random::u128());
    request.parked = Some(token.clone());
    let parked = Parked {
        proxy_id,
        method: request.method.clone(),
        asked: vec![input],
        open: true,
        session: request.session,
        client_id: request.id.clone(),
        reply: request.reply.clone(),
        response: None,
        parked_at: Instant::now(),
    };
    state.parked.insert(token.clone(), parked);
    Some(Asked::Opened(token))
}

/// The params of a child's request as the client gets them: without the key hint (which
/// is for the proxy), and without a `_meta` left empty by its removal.
fn without_key_hint(params: &str) -> String {
    if !params.contains(INPUT_KEY_HINT) {
        return params.to_string();
    }
    let Ok(mut value) = serde_json::from_str::<Value>(params) else {
        return params.to_string();
    };
    if let Some(meta) = value.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove(INPUT_KEY_HINT);
        if meta.is_empty() {
            value.as_object_mut().expect("has _meta").remove("_meta");
        }
    }
    value.to_string()
}

/// `_meta` key by which a child (of the session era) names its request's key in the modern
/// client's `inputRequests`; without it the proxy makes one up.
pub const INPUT_KEY_HINT: &str = "dev.mcp-proxy/inputKey";

/// Whether `answer` has the shape of a result of `method` (an invalid one is refused, as
/// SEP-2322 asks servers to validate input responses).
fn valid_answer(method: &str, answer: &Value) -> bool {
    match method {
        "elicitation/create" => answer.get("action").is_some_and(Value::is_string),
        "sampling/createMessage" => answer.get("role").is_some() && answer.get("content").is_some(),
        "roots/list" => answer.get("roots").is_some_and(Value::is_array),
        _ => answer.is_object(),
    }
}

impl Mux {
    /// Closes the collecting window of `token` after [`limits::INPUT_BATCH_WINDOW`], so that
    /// requests the child sends together reach the client in one `InputRequiredResult`.
    pub(super) fn close_input_window_soon(&self, token: String) {
        let Some(mux) = self.me.upgrade() else { return };
        let spawned = std::thread::Builder::new()
            .name("input-window".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // A timer: nothing to wait for but the time itself.
                std::thread::sleep(limits::INPUT_BATCH_WINDOW);
                mux.close_input_window(&token);
            });
        if let Err(e) = spawned {
            warn!("cannot start a timer thread ({e}); asking for input at once");
            if let Some(mux) = self.me.upgrade() {
                // Recovered from the failed closure: the token moved into it, so re-derive.
                let open: Vec<String> = mux
                    .lock()
                    .parked
                    .iter()
                    .filter(|(_, p)| p.open)
                    .map(|(k, _)| k.clone())
                    .collect();
                for token in open {
                    mux.close_input_window(&token);
                }
            }
        }
    }

    /// The newest modern request lacks the capability the child's request needs: it ends
    /// with `MissingRequiredClientCapability` (-32021), the child's request is refused and the
    /// child's work on it cancelled. Returns the lines for the child (sent by the caller once
    /// the state lock is released).
    pub(super) fn missing_capability(
        &self,
        state: &mut State,
        proxy_id: u64,
        child_id: &str,
        method: &str,
    ) -> Vec<String> {
        let mut to_child = Vec::new();
        let capability = match method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            "roots/list" => "roots",
            other => other,
        };
        if let Some(Pending::Client(request)) = state.pending.remove(&proxy_id) {
            if let Some(s) = state.sessions.get_mut(&request.session) {
                s.in_flight.remove(&canonical_id(&request.id));
            }
            // `capability` may be any method name the child sent: quoted, never pasted raw.
            let text = rpc::response_with_data(
                &request.id,
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                &format!("Missing required client capability: {capability}"),
                &format!(
                    r#"{{"requiredCapabilities":{{{}:{{}}}}}}"#,
                    jsonrpc::quote(capability)
                ),
            );
            state.deliver_reply(request.session, &request.reply, Outbound::last(text.into()));
            // The child will answer the cancelled request, or not; either way nobody waits.
            to_child.push(jsonrpc::notification(
                "notifications/cancelled",
                &format!(r#"{{"requestId":{proxy_id},"reason":"the client lacks {capability}"}}"#),
            ));
        }
        to_child.insert(
            0,
            rpc::response(
                child_id,
                rpc::METHOD_NOT_FOUND,
                &format!("the client did not declare the {capability} capability"),
            ),
        );
        to_child
    }

    /// Ends the collecting window of parked request `token`: its client's request ends with
    /// an `InputRequiredResult` asking for everything collected.
    pub(super) fn close_input_window(&self, token: &str) {
        let mut state = self.lock();
        let Some(parked) = state.parked.get_mut(token) else {
            return;
        };
        if !parked.open {
            return;
        }
        parked.open = false;
        let (session, id, reply) = (
            parked.session,
            parked.client_id.clone(),
            parked.reply.clone(),
        );
        let result = input_required(&parked.asked, token);
        debug!(
            "session {session}: request {id} needs input ({} request(s)); parked",
            parked.asked.len()
        );
        if let Some(s) = state.sessions.get_mut(&session) {
            s.in_flight.remove(&canonical_id(&id));
        }
        state.deliver_reply(
            session,
            &reply,
            Outbound::last(jsonrpc::result(&id, &result).into()),
        );
    }
}

/// The `InputRequiredResult` asking for `inputs`, to be resumed with `token`.
fn input_required(inputs: &[Input], token: &str) -> String {
    let requests: Vec<String> = inputs
        .iter()
        .map(|i| {
            format!(
                r#"{}:{{"method":{},"params":{}}}"#,
                jsonrpc::quote(&i.key),
                jsonrpc::quote(&i.method),
                i.params
            )
        })
        .collect();
    format!(
        r#"{{"resultType":"input_required","inputRequests":{{{}}},"requestState":"{token}"}}"#,
        requests.join(",")
    )
}

/// Keeps the child's response for the retry of a parked request.
pub(super) fn keep_response(state: &mut State, token: &str, line: &str) {
    if let Some(parked) = state.parked.get_mut(token) {
        parked.response = Some(line.to_string());
    }
}

/// `text` (one message) with its top-level id replaced.
fn with_raw_id(text: &str, id: &str) -> String {
    match Envelope::parse(text) {
        Ok(env) if env.id.is_some() => crate::jsonrpc::envelope::with_id(text, &env, id),
        _ => text.to_string(),
    }
}

/// A change notification for a listen stream: `method` with the subscription id in `_meta`
/// (and the resource's URI, raw JSON, for `resources/updated`).
pub(super) fn tagged(method: &str, uri: Option<&str>, subscription: &str) -> Arc<str> {
    let meta = format!(r#""_meta":{{"io.modelcontextprotocol/subscriptionId":{subscription}}}"#);
    let params = match uri {
        Some(uri) => format!(r#"{{"uri":{uri},{meta}}}"#),
        None => format!("{{{meta}}}"),
    };
    jsonrpc::notification(method, &params).into()
}
