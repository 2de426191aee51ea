//! HOT PATH. Routing between the sessions and the child (see the numbered rules in `mod.rs`):
//! client requests get proxy ids, child responses get the client's id back, child requests go to
//! a capable session, child notifications fan out. No IO here but non-blocking `offer`s and
//! sends to the child's input queue made after the state lock is released.

use std::sync::Arc;
use std::time::Instant;

use log::{debug, warn};
use serde_json::Value;

use super::session::{self, ClientCaps, Reply, SessionId};
use super::stream::{Offer, Outbound};
use super::{
    ClientRequest, Mux, Pending, Refused, State, canonical_id, send_with_timeout, truncate,
};
use super::{modern, modern_child};
use crate::jsonrpc::envelope::{self, Envelope, param_of, span_of, splice};
use crate::jsonrpc::{self, Kind, error as rpc};

impl Mux {
    // ---- client → child --------------------------------------------------------------------

    /// Handles one message from a session's client. For a request, `reply` receives the
    /// response (and, when it carries them, related messages).
    pub fn client_message(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Option<Reply>,
    ) -> Result<(), Refused> {
        // One look at the state for both: every message takes the lock again to be routed.
        let child_modern = {
            let mut state = self.lock();
            if let Some(s) = state.sessions.get_mut(&session) {
                s.last_used = Instant::now();
            }
            state.child_is_modern()
        };
        match env.kind {
            Kind::Request => {
                let reply = reply.expect("a request comes with a reply");
                self.client_request(session, text, env, reply, child_modern)
            }
            Kind::Notification => self.client_notification(session, text, env, child_modern),
            Kind::Response => self.client_response(session, text, env),
        }
    }

    fn client_request(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Reply,
        child_modern: bool,
    ) -> Result<(), Refused> {
        let id = env.id.expect("requests have ids").get();
        if child_modern {
            // Methods of the session era that a 2026-07-28 child does not have.
            match env.method() {
                "ping" => {
                    self.answer(session, &reply, jsonrpc::result(id, "{}"));
                    return Ok(());
                }
                "resources/subscribe" | "resources/unsubscribe" => {
                    return self.subscribe_here(session, id, env, &reply);
                }
                _ => {}
            }
        }
        match env.method() {
            "initialize" => return self.answer_initialize(session, id, env, &reply),
            "logging/setLevel" => {
                if let Some(answered) = self.set_log_level(session, id, env, &reply) {
                    return answered;
                }
            }
            "resources/subscribe" => {
                if let Some(uri) = env.param_str("uri") {
                    return self.subscribe(session, text, env, reply, uri);
                }
            }
            "resources/unsubscribe" => {
                if let Some(uri) = env.param_str("uri") {
                    return self.unsubscribe(session, text, env, reply, uri);
                }
            }
            _ => {}
        }
        self.forward_request(session, text, env, reply, None)
    }

    /// Sends a client request to the child under a fresh proxy id.
    fn forward_request(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Reply,
        subscribing: Option<String>,
    ) -> Result<(), Refused> {
        let client_id = env.id.expect("requests have ids").get();
        let proxy_id = self.next_id();
        let proxy_text = proxy_id.to_string();
        let token = env.progress_token();
        let mut edits = vec![(span_of(text, client_id), proxy_text.as_str())];
        if let Some(token) = token {
            edits.push((span_of(text, token.get()), proxy_text.as_str()));
        }
        let mut line = splice(text, &mut edits);
        let to_child = {
            let mut state = self.lock();
            let to_child = self.running_sender(&state)?;
            let modern_child = state.child_is_modern();
            let s = state
                .sessions
                .get_mut(&session)
                .ok_or(Refused::UnknownSession)?;
            if modern_child && !s.modern {
                // Spliced again from the client's text, whose envelope is parsed already.
                let (at, fields) =
                    crate::jsonrpc::meta::meta_insertion(text, env, &modern_child::meta_fields(s));
                edits.push((at, fields.as_str()));
                line = splice(text, &mut edits);
            }
            let sent = modern_child.then(|| line.clone().into_boxed_str());
            s.in_flight.insert(canonical_id(client_id), proxy_id);
            state.pending.insert(
                proxy_id,
                Pending::Client(ClientRequest {
                    session,
                    id: client_id.into(),
                    progress_token: token.map(|t| t.get().into()),
                    reply,
                    subscribing,
                    sent_at: Instant::now(),
                    method: env.method().into(),
                    parked: None,
                    prefilled: env
                        .param("inputResponses")
                        .filter(|r| r.get().starts_with('{'))
                        .map(|r| r.get().into()),
                    sent,
                }),
            );
            to_child
        };
        debug!(
            "server {:?}: session {session} request {} {client_id} -> {proxy_id}",
            self.label,
            env.method()
        );
        if let Err(refused) = send_with_timeout(&to_child, line) {
            let mut state = self.lock();
            if let Some(Pending::Client(request)) = state.pending.remove(&proxy_id)
                && let Some(s) = state.sessions.get_mut(&request.session)
            {
                s.in_flight.remove(&canonical_id(client_id));
            }
            return Err(refused);
        }
        Ok(())
    }

    fn answer_initialize(
        &self,
        session: SessionId,
        id: &str,
        env: &Envelope<'_>,
        reply: &Reply,
    ) -> Result<(), Refused> {
        let requested = env.param_str("protocolVersion");
        let caps = env
            .param("capabilities")
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .map(|v| ClientCaps {
                sampling: v.get("sampling").is_some(),
                elicitation: v.get("elicitation").is_some(),
                roots: v.get("roots").is_some(),
            })
            .unwrap_or_default();
        let version = match requested.as_deref() {
            Some(v) if jsonrpc::SUPPORTED_VERSIONS.contains(&v) => v,
            _ => jsonrpc::LATEST_VERSION,
        };
        let init = {
            let mut state = self.lock();
            let init = state
                .init
                .clone()
                .ok_or_else(|| Refused::Unavailable("not initialized".into()))?;
            let s = state
                .sessions
                .get_mut(&session)
                .ok_or(Refused::UnknownSession)?;
            s.caps = caps;
            s.initialized = true;
            s.protocol_version = Some(version.to_string());
            s.caps_raw = env.param("capabilities").map(|c| c.get().into());
            s.client_info_raw = env.param("clientInfo").map(|c| c.get().into());
            init
        };
        let mut result = init.result.clone();
        result.insert("protocolVersion".into(), Value::String(version.into()));
        let body = serde_json::to_string(&result).expect("a Map always serialises");
        debug!(
            "server {:?}: session {session} initialized ({version}, {caps:?})",
            self.label
        );
        self.answer(session, reply, jsonrpc::result(id, &body));
        Ok(())
    }

    /// `logging/setLevel` is per session here: the child gets the most verbose level any
    /// session asked for, and each session only sees messages at or above its own.
    /// `None` when the child has no logging capability (the request is forwarded as is).
    fn set_log_level(
        &self,
        session: SessionId,
        id: &str,
        env: &Envelope<'_>,
        reply: &Reply,
    ) -> Option<Result<(), Refused>> {
        let rank = env
            .param_str("level")
            .as_deref()
            .and_then(session::log_rank);
        let Some(rank) = rank else {
            let text = rpc::response(id, rpc::INVALID_PARAMS, "Invalid log level");
            self.answer(session, reply, text);
            return Some(Ok(()));
        };
        let send = {
            let mut state = self.lock();
            if !state.init.as_ref().is_some_and(|i| i.has_logging) {
                return None;
            }
            let Some(s) = state.sessions.get_mut(&session) else {
                return Some(Err(Refused::UnknownSession));
            };
            s.log_level = Some(rank);
            let most_verbose = state
                .sessions
                .values()
                .filter(|s| !s.modern)
                .filter_map(|s| s.log_level)
                .min();
            let modern_child = state.child_is_modern();
            if most_verbose != state.child_log_level && !modern_child {
                state.child_log_level = most_verbose;
                let proxy_id = self.next_id();
                state.pending.insert(proxy_id, Pending::Internal(None));
                most_verbose.map(|level| {
                    jsonrpc::request(
                        &proxy_id.to_string(),
                        "logging/setLevel",
                        &format!(r#"{{"level":"{}"}}"#, session::log_level_name(level)),
                    )
                })
            } else {
                None
            }
        };
        if let Some(line) = send
            && let Err(refused) = self.send_to_child(line)
        {
            return Some(Err(refused));
        }
        self.answer(session, reply, jsonrpc::result(id, "{}"));
        Some(Ok(()))
    }

    /// The child sees one subscription per URI, whoever asks; later subscribers are answered here.
    fn subscribe(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Reply,
        uri: String,
    ) -> Result<(), Refused> {
        let forward = self.lock().add_subscriber(session, &uri)?;
        let subscribing = Some(uri);
        self.forward_or_acknowledge(forward, session, text, env, reply, subscribing)
    }

    fn unsubscribe(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Reply,
        uri: String,
    ) -> Result<(), Refused> {
        let forward = {
            let mut state = self.lock();
            if !state.sessions.contains_key(&session) {
                return Err(Refused::UnknownSession);
            }
            // Not held by this session: tell the child only if nobody else holds it either.
            state
                .remove_subscriber(session, &uri)
                .unwrap_or_else(|| !state.subscriptions.contains_key(&uri))
        };
        self.forward_or_acknowledge(forward, session, text, env, reply, None)
    }

    /// Sends a (un)subscribe on to the child, or answers it `{}` here when the child's state
    /// already is what the client asks for.
    fn forward_or_acknowledge(
        &self,
        forward: bool,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Reply,
        subscribing: Option<String>,
    ) -> Result<(), Refused> {
        if forward {
            return self.forward_request(session, text, env, reply, subscribing);
        }
        let id = env.id.expect("requests have ids").get();
        self.answer(session, &reply, jsonrpc::result(id, "{}"));
        Ok(())
    }

    fn client_notification(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        child_modern: bool,
    ) -> Result<(), Refused> {
        match env.method() {
            // The child had its own from us at start-up.
            "notifications/initialized" => Ok(()),
            "notifications/cancelled" => self.client_cancelled(session, text, env),
            // A 2026-07-28 child takes no other notification (roots changes, progress of our
            // requests: it sends no requests).
            _ if child_modern => Ok(()),
            _ => {
                let to_child = self.running_sender(&self.lock())?;
                send_with_timeout(&to_child, text.to_string())
            }
        }
    }

    /// Whether the child speaks 2026-07-28.
    pub fn child_is_modern(&self) -> bool {
        self.lock().child_is_modern()
    }

    /// `resources/(un)subscribe` of a session-era client at a 2026-07-28 child: kept here,
    /// and carried by the proxy's own listen stream at the child.
    fn subscribe_here(
        &self,
        session: SessionId,
        id: &str,
        env: &Envelope<'_>,
        reply: &Reply,
    ) -> Result<(), Refused> {
        let Some(uri) = env.param_str("uri") else {
            let text = rpc::response(id, rpc::INVALID_PARAMS, "uri is required");
            self.answer(session, reply, text);
            return Ok(());
        };
        let changed = {
            let mut state = self.lock();
            if env.method() == "resources/subscribe" {
                state.add_subscriber(session, &uri)?
            } else {
                state.remove_subscriber(session, &uri).unwrap_or(false)
            }
        };
        if changed {
            self.renew_listen();
        }
        self.answer(session, reply, jsonrpc::result(id, "{}"));
        Ok(())
    }

    /// Maps the cancelled request's id to the proxy id, answers the waiting reply at once.
    fn client_cancelled(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
    ) -> Result<(), Refused> {
        let Some(request_id) = env.param("requestId") else {
            return Ok(());
        };
        let (to_child, proxy_id) = {
            let mut state = self.lock();
            let to_child = self.running_sender(&state)?;
            let Some(proxy_id) = state
                .sessions
                .get_mut(&session)
                .and_then(|s| s.in_flight.remove(&canonical_id(request_id.get())))
            else {
                debug!(
                    "session {session}: cancel for unknown request {}",
                    request_id.get()
                );
                return Ok(());
            };
            if let Some(Pending::Client(request)) = state.pending.remove(&proxy_id) {
                let text = rpc::response(&request.id, rpc::REQUEST_CANCELLED, "Request cancelled");
                state.deliver_reply(request.session, &request.reply, Outbound::last(text.into()));
            }
            (to_child, proxy_id)
        };
        let proxy_text = proxy_id.to_string();
        let line = splice(text, &mut [(span_of(text, request_id.get()), &proxy_text)]);
        send_with_timeout(&to_child, line)
    }

    /// A client's answer to a request of the child: only the session that was asked may answer.
    fn client_response(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
    ) -> Result<(), Refused> {
        let raw_id = env.id.expect("responses have ids").get();
        if self.input_answered(session, raw_id, env) {
            return Ok(());
        }
        let id = canonical_id(raw_id);
        let to_child = {
            let mut state = self.lock();
            if state.child_requests.get(&id) != Some(&session) {
                warn!(
                    "server {:?}: session {session} answered {id}, which was not asked of it; dropped",
                    self.label
                );
                return Ok(());
            }
            state.child_requests.remove(&id);
            self.running_sender(&state)?
        };
        send_with_timeout(&to_child, text.to_string())
    }

    // ---- child → clients -------------------------------------------------------------------

    pub(super) fn on_child_line(&self, line: String) {
        let env = match Envelope::parse(&line) {
            Ok(env) => env,
            Err(e) => {
                warn!(
                    "server {:?}: skipped a stdout line that is not JSON-RPC ({}): {:?}",
                    self.label,
                    e.message(),
                    truncate(&line, 200)
                );
                return;
            }
        };
        match env.kind {
            Kind::Response => self.child_response(&line, &env),
            Kind::Request => self.child_request(&line, &env),
            Kind::Notification => self.child_notification(&line, &env),
        }
    }

    fn child_response(&self, line: &str, env: &Envelope<'_>) {
        let raw_id = env.id.expect("responses have ids").get();
        let Some(proxy_id) = raw_id.parse::<u64>().ok() else {
            warn!(
                "server {:?}: response with unknown id {raw_id}; dropped",
                self.label
            );
            return;
        };
        let mut state = self.lock();
        let pending = state.pending.remove(&proxy_id);
        if let Some(Pending::Client(request)) = &pending {
            if let Some(s) = state.sessions.get_mut(&request.session) {
                s.in_flight.remove(&canonical_id(&request.id));
            }
            if env.error.is_some()
                && let Some(uri) = &request.subscribing
            {
                state.remove_subscriber(request.session, uri);
            }
        }
        match pending {
            Some(Pending::Client(request)) if request.parked.is_some() => {
                // Its client waits to retry with input it was asked for: keep it for the retry.
                let token = request.parked.as_deref().expect("checked");
                modern::keep_response(&mut state, token, line);
            }
            Some(Pending::Client(request))
                if request.sent.is_some()
                    && env.result.is_some_and(|r| {
                        param_of(r, "resultType").map(|t| t.get()) == Some("\"input_required\"")
                    })
                    && state
                        .sessions
                        .get(&request.session)
                        .is_some_and(|s| !s.modern) =>
            {
                // A 2026-07-28 child needs a session-era client's input: ask the client.
                let result: Value =
                    serde_json::from_str(env.result.expect("checked").get()).unwrap_or_default();
                let (session, id, reply) =
                    (request.session, request.id.clone(), request.reply.clone());
                if let Err(why) = modern_child::ask_session_client(&mut state, request, &result) {
                    let text = rpc::response(&id, rpc::INTERNAL_ERROR, &why);
                    state.deliver_reply(session, &reply, Outbound::last(text.into()));
                }
            }
            Some(Pending::Client(request)) => {
                let text = envelope::with_id(line, env, &request.id);
                debug!(
                    "server {:?}: response {proxy_id} -> session {} id {}",
                    self.label, request.session, request.id
                );
                let delivered = if let Reply::Direct { tx, .. } = &request.reply {
                    // Out of the lock: the connection may take the write from this thread.
                    drop(state);
                    matches!(tx.offer_reply(&text), Offer::Sent)
                } else {
                    state.deliver_reply(
                        request.session,
                        &request.reply,
                        Outbound::last(text.into()),
                    )
                };
                if !delivered {
                    debug!(
                        "server {:?}: session {} left before its response {}; dropped",
                        self.label, request.session, request.id
                    );
                }
            }
            Some(Pending::Internal(Some(tx))) => {
                let _ = tx.send(line.to_string()); // the waiter may have timed out; fine.
            }
            Some(Pending::Internal(None)) => {
                if env.error.is_some() {
                    debug!(
                        "server {:?}: internal request {proxy_id} failed: {line}",
                        self.label
                    );
                }
            }
            None => debug!(
                "server {:?}: response {proxy_id} for a request no longer waiting; dropped",
                self.label
            ),
        }
    }

    fn child_request(&self, line: &str, env: &Envelope<'_>) {
        let raw_id = env.id.expect("requests have ids").get();
        let method = env.method();
        if method == "ping" {
            let _ = self.try_send_to_child(jsonrpc::result(raw_id, "{}"));
            return;
        }
        let mut to_child: Vec<String> = Vec::new();
        let mut window = None;
        let delivered = {
            let mut state = self.lock();
            match pick_session_for(&state, method) {
                Some(Target::Input(proxy_id)) => {
                    let session = match state.pending.get(&proxy_id) {
                        Some(Pending::Client(r)) => Some(r.session),
                        _ => None,
                    };
                    let params = env.params.map(|p| p.get());
                    match modern::ask_for_input(&mut state, proxy_id, raw_id, method, params) {
                        Some(modern::Asked::Answered(line) | modern::Asked::Refused(line)) => {
                            to_child.push(line);
                            session
                        }
                        Some(modern::Asked::Collected) => session,
                        Some(modern::Asked::Opened(token)) => {
                            window = Some(token);
                            session
                        }
                        None => None,
                    }
                }
                Some(Target::MissingCapability(proxy_id)) => {
                    to_child = self.missing_capability(&mut state, proxy_id, raw_id, method);
                    None
                }
                Some(Target::Session(session, reply)) => {
                    state.child_requests.insert(canonical_id(raw_id), session);
                    let sent = match reply {
                        Some(reply) => {
                            state.deliver_reply(session, &reply, Outbound::message(line.into()))
                        }
                        None => {
                            let s = state.sessions.get_mut(&session).expect("picked session");
                            s.deliver_unrelated(session, line.into());
                            true
                        }
                    };
                    if !sent {
                        state.child_requests.remove(&canonical_id(raw_id));
                    }
                    sent.then_some(session)
                }
                None => None,
            }
        };
        if let Some(token) = window {
            self.close_input_window_soon(token);
        }
        if !to_child.is_empty() {
            for line in to_child {
                let _ = self.try_send_to_child(line); // logged there when it cannot go
            }
            return;
        }
        match delivered {
            Some(session) => debug!(
                "server {:?}: request {method} {raw_id} -> session {session}",
                self.label
            ),
            None => {
                warn!(
                    "server {:?}: no connected client can answer {method}; refused",
                    self.label
                );
                let _ = self.try_send_to_child(rpc::response(
                    raw_id,
                    rpc::METHOD_NOT_FOUND,
                    &format!("mcp-proxy: no connected client accepts {method} now"),
                ));
            }
        }
    }

    fn child_notification(&self, line: &str, env: &Envelope<'_>) {
        match env.method() {
            "notifications/progress" => self.child_progress(line, env),
            // The acknowledgement of the proxy's own listen stream at a 2026-07-28 child.
            "notifications/subscriptions/acknowledged" => {}
            "notifications/message" => {
                let level = env.param_str("level");
                let message: Arc<str> = line.into();
                let mut state = self.lock();
                let targets: Vec<SessionId> = state
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.wants_log(level.as_deref()))
                    .map(|(id, _)| *id)
                    .collect();
                for id in targets {
                    deliver_to_session(&mut state, id, message.clone());
                }
            }
            "notifications/resources/updated" => {
                let Some(uri) = env.param_str("uri") else {
                    return;
                };
                let message: Arc<str> = line.into();
                let raw_uri = env.param("uri").map_or("null", |u| u.get());
                let mut state = self.lock();
                let targets: Vec<SessionId> = state
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.subscriptions.contains(&uri))
                    .map(|(id, _)| *id)
                    .collect();
                for id in targets {
                    if !notify_listener(&mut state, id, env.method(), Some(raw_uri)) {
                        deliver_to_session(&mut state, id, message.clone());
                    }
                }
            }
            "notifications/cancelled" => {
                // The child gave up on one of its requests: tell the client that has it.
                let Some(request_id) = env.param("requestId") else {
                    return;
                };
                let mut state = self.lock();
                if let Some(session) = state.child_requests.remove(&canonical_id(request_id.get()))
                {
                    deliver_to_session(&mut state, session, line.into());
                }
            }
            method => {
                // list_changed and anything else: every handshake session; a modern client
                // only on a listen stream that opted in to it.
                let message: Arc<str> = line.into();
                let mut state = self.lock();
                if method == "notifications/tools/list_changed" {
                    state.tool_headers = None;
                }
                let targets: Vec<SessionId> = state.sessions.keys().copied().collect();
                for id in targets {
                    if !notify_listener(&mut state, id, method, None) {
                        deliver_to_session(&mut state, id, message.clone());
                    }
                }
            }
        }
    }

    /// Progress goes to the request that asked for it, with the client's own token.
    fn child_progress(&self, line: &str, env: &Envelope<'_>) {
        let Some(token) = env.param("progressToken") else {
            return;
        };
        let Ok(proxy_id) = token.get().parse::<u64>() else {
            debug!(
                "server {:?}: progress for unknown token {}",
                self.label,
                token.get()
            );
            return;
        };
        let mut state = self.lock();
        let Some(Pending::Client(request)) = state.pending.get(&proxy_id) else {
            debug!(
                "server {:?}: progress for finished request {proxy_id}",
                self.label
            );
            return;
        };
        let Some(client_token) = &request.progress_token else {
            return;
        };
        let text: Arc<str> = splice(line, &mut [(span_of(line, token.get()), client_token)]).into();
        let (reply, session) = (request.reply.clone(), request.session);
        if reply.carries_related() {
            state.deliver_reply(session, &reply, Outbound::message(text));
        } else if let Some(s) = state.sessions.get_mut(&session) {
            s.deliver_unrelated(session, text);
        }
    }
}

/// The session that should receive a request of the child: the one whose request went to the
/// child most recently and whose client accepts `method`, with the stream to use (`None`: the
/// session's own stream). Falls back to any such session with a stream open.
fn pick_session_for(state: &State, method: &str) -> Option<Target> {
    for (proxy_id, pending) in state.pending.iter().rev() {
        let Pending::Client(request) = pending else {
            continue;
        };
        let Some(session) = state.sessions.get(&request.session) else {
            continue;
        };
        if !session.initialized {
            continue;
        }
        if session.modern {
            // The newest modern request: its client either can answer, or is told it must be
            // able to (a 2026-07-28 server names the capability it misses).
            return Some(if session.caps.accepts(method) {
                Target::Input(*proxy_id)
            } else {
                Target::MissingCapability(*proxy_id)
            });
        }
        if !session.caps.accepts(method) || request.parked.is_some() {
            continue;
        }
        if request.reply.carries_related() {
            return Some(Target::Session(
                request.session,
                Some(request.reply.clone()),
            ));
        }
        if session.has_live_stream() {
            return Some(Target::Session(request.session, None));
        }
    }
    state
        .sessions
        .iter()
        .find(|(_, s)| s.initialized && s.caps.accepts(method) && s.has_live_stream())
        .map(|(id, _)| Target::Session(*id, None))
}

/// Who answers a request of the child.
enum Target {
    /// A session, on the given reply stream (`None`: the session's own stream).
    Session(SessionId, Option<Reply>),
    /// A modern client: the request becomes an input request of its request `proxy_id`.
    Input(u64),
    /// A modern client's request `proxy_id` whose client did not declare the capability.
    MissingCapability(u64),
}

/// Delivers a message meant for a session as a whole: on the stream of its most recent request
/// still in flight when that stream carries related messages (a log line emitted during a tool
/// call arrives with the call), else on the session's own stream.
pub(super) fn deliver_to_session(state: &mut State, id: SessionId, message: Arc<str>) {
    let Some(session) = state.sessions.get(&id) else {
        return;
    };
    if session.modern && session.listen.is_some() {
        return; // a listen stream carries only what `notify_listener` tags for it
    }
    let newest =
        session
            .in_flight
            .values()
            .max()
            .and_then(|proxy_id| match state.pending.get(proxy_id) {
                Some(Pending::Client(r)) if r.reply.carries_related() => Some(r.reply.clone()),
                _ => None,
            });
    if let Some(reply) = newest
        && state.deliver_reply(id, &reply, Outbound::message(message.clone()))
    {
        return;
    }
    if let Some(session) = state.sessions.get_mut(&id) {
        session.deliver_unrelated(id, message);
    }
}

/// Delivers a change notification to session `id` if it is a modern client's listen stream
/// (tagged with its subscription id, when it opted in to `method`). True when the session is a
/// modern one, whether or not it wanted the notification: modern sessions get change
/// notifications on listen streams only.
fn notify_listener(state: &mut State, id: SessionId, method: &str, uri: Option<&str>) -> bool {
    let Some(session) = state.sessions.get(&id) else {
        return true;
    };
    if !session.modern {
        return false;
    }
    let Some(listen) = &session.listen else {
        return true;
    };
    let wanted = match method {
        "notifications/tools/list_changed" => listen.tools,
        "notifications/prompts/list_changed" => listen.prompts,
        "notifications/resources/list_changed" => listen.resources,
        "notifications/resources/updated" => uri.is_some(),
        _ => false,
    };
    if wanted {
        let message = modern::tagged(method, uri, &listen.id);
        let reply = listen.reply.clone();
        state.deliver_reply(id, &reply, Outbound::message(message));
    }
    true
}
