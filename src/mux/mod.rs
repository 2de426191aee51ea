//! HOT PATH. One stdio child shared by many downstream sessions: a JSON-RPC multiplexer.
//!
//! The proxy initializes the child once and answers each session's `initialize` from that
//! cached result. After that every message is forwarded, in both directions:
//! 1. a client request gets a fresh proxy id (its `_meta.progressToken` becomes that id too),
//!    and the child's response is given back the client's id and sent to the request's reply;
//! 2. `notifications/cancelled` from a client is mapped to the proxy id;
//! 3. a request from the child (sampling, elicitation, roots) goes to the session whose request
//!    is most recently in flight and whose client declared the capability; the answer is
//!    checked against the session it was sent to and passed back verbatim;
//! 4. child notifications: progress to the session that asked, `resources/updated` to the
//!    sessions subscribed to the URI, everything else (log messages, list_changed) to every
//!    session; the child's `ping` is answered here.
//!
//! Who holds what: the `child-out` thread calls [`Mux::on_child_line`] (one producer, so what
//! the child wrote stays in order); HTTP handler threads call the `client_*` and session
//! methods; each downstream stream's writer thread owns the receiving half of its [`StreamTx`].
//! The state lock is never held across IO or a blocking send: sends to the child happen after
//! it is released, and sends to clients are non-blocking `offer`s.

pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, error, info, warn};
use serde_json::Value;

use crate::child::{ChildProcess, LineSink};
use crate::config::ServerSpec;
use crate::jsonrpc::envelope::{self, Envelope, span_of, splice};
use crate::jsonrpc::{self, Kind, error as rpc};
use crate::limits;
pub use session::{ClientCaps, Offer, Outbound, Reply, Session, SessionId, StreamTx};

/// Why the mux would not take a message or a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The child is not running (starting failed, or it exited).
    Unavailable(String),
    /// The child's input queue stayed full.
    Busy,
    UnknownSession,
    TooManySessions,
    /// The session already has its GET stream open.
    StreamAlreadyOpen,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unavailable(why) => write!(f, "MCP server unavailable: {why}"),
            Refused::Busy => f.write_str("MCP server busy: its input queue is full"),
            Refused::UnknownSession => f.write_str("Session not found"),
            Refused::TooManySessions => f.write_str("Too many open sessions"),
            Refused::StreamAlreadyOpen => {
                f.write_str("Conflict: Only one SSE stream is allowed per session")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub enum Status {
    Starting,
    Running,
    Failed(String),
}

/// The child's answer to our `initialize`, served to every session.
struct InitCache {
    result: serde_json::Map<String, Value>,
    has_logging: bool,
}

enum Pending {
    /// The proxy's own request; the raw response goes to the sender (if anyone waits).
    Internal(Option<Sender<String>>),
    Client(ClientRequest),
}

struct ClientRequest {
    session: SessionId,
    /// The client's id, raw JSON text, given back on the response.
    id: Box<str>,
    /// The client's progress token, raw JSON text, given back on progress notifications.
    progress_token: Option<Box<str>>,
    reply: Reply,
    /// A subscription counted when this request was sent, undone if the child refuses it.
    subscribing: Option<String>,
}

#[derive(Default)]
struct State {
    status: Option<Status>,
    init: Option<Arc<InitCache>>,
    child: Option<Arc<ChildProcess>>,
    to_child: Option<Sender<String>>,
    pending: BTreeMap<u64, Pending>,
    sessions: HashMap<SessionId, Session>,
    /// The child's requests in flight at a client: canonical id → the session asked.
    child_requests: HashMap<String, SessionId>,
    /// Sessions subscribed per resource URI; the child sees one subscription per URI.
    subscriptions: HashMap<String, usize>,
    /// The level last sent to the child with `logging/setLevel`.
    child_log_level: Option<u8>,
}

/// One configured server: its child and every session using it.
pub struct Mux {
    pub label: String,
    spec: ServerSpec,
    state: Mutex<State>,
    next_id: AtomicU64,
    stopping: AtomicBool,
    /// Disconnected once start-up has ended, either way.
    ready: Receiver<()>,
    ready_tx: Mutex<Option<Sender<()>>>,
}

/// What the child-out thread feeds into.
struct ChildEvents(Arc<Mux>);

impl LineSink for ChildEvents {
    fn line(&self, line: String) {
        self.0.on_child_line(line);
    }
    fn closed(&self, exit: String) {
        self.0.on_child_exit(exit);
    }
}

impl Mux {
    pub fn new(spec: ServerSpec) -> Arc<Mux> {
        let (ready_tx, ready) = crossbeam_channel::bounded(0);
        Arc::new(Mux {
            label: spec.label().to_string(),
            spec,
            state: Mutex::new(State {
                status: Some(Status::Starting),
                ..State::default()
            }),
            next_id: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            ready,
            ready_tx: Mutex::new(Some(ready_tx)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug of ours; the state is still consistent
        // enough to keep serving the other sessions, so take it anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server of `command_or_url`, served at the root paths.
    pub fn is_default(&self) -> bool {
        self.spec.name.is_none()
    }

    pub fn status(&self) -> Status {
        self.lock().status.clone().unwrap_or(Status::Starting)
    }

    pub fn pid(&self) -> Option<u32> {
        self.lock().child.as_ref().map(|c| c.pid)
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }

    // ---- start-up and shutdown -------------------------------------------------------------

    /// Starts the child and its handshake on a thread of its own; returns at once.
    pub fn start(self: &Arc<Self>) {
        let mux = self.clone();
        let spawned = std::thread::Builder::new()
            .name("start".into())
            .spawn(move || {
                let outcome = mux.start_child();
                let mut state = mux.lock();
                match outcome {
                    Ok(()) => {
                        if matches!(state.status, Some(Status::Starting)) {
                            state.status = Some(Status::Running);
                            info!("server {:?}: ready", mux.label);
                        }
                    }
                    Err(why) => {
                        error!("server {:?}: {why}", mux.label);
                        state.status = Some(Status::Failed(why));
                        if let Some(child) = state.child.clone() {
                            state.to_child = None;
                            drop(state);
                            child.kill();
                        }
                    }
                }
                mux.ready_tx.lock().expect("ready lock").take();
            });
        if let Err(e) = spawned {
            self.lock().status = Some(Status::Failed(format!("cannot start a thread: {e}")));
            self.ready_tx.lock().expect("ready lock").take();
        }
    }

    fn start_child(self: &Arc<Self>) -> Result<(), String> {
        let (child, to_child) =
            ChildProcess::spawn(&self.spec, &self.label, ChildEvents(self.clone()))
                .map_err(|e| format!("cannot start {:?}: {e}", self.spec.command))?;
        {
            let mut state = self.lock();
            state.child = Some(child.clone());
            state.to_child = Some(to_child);
        }
        let response = self
            .internal_request(
                "initialize",
                &format!(
                    r#"{{"protocolVersion":"{}","capabilities":{{"roots":{{"listChanged":true}},"sampling":{{}},"elicitation":{{}}}},"clientInfo":{{"name":"mcp-proxy","version":"{}"}}}}"#,
                    jsonrpc::LATEST_VERSION,
                    env!("CARGO_PKG_VERSION")
                ),
                limits::CHILD_INIT_TIMEOUT,
            )
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => format!(
                    "did not answer initialize within {} s",
                    limits::CHILD_INIT_TIMEOUT.as_secs()
                ),
                RecvTimeoutError::Disconnected => {
                    format!("exited before answering initialize ({})", child.exit_description())
                }
            })?;
        let cache = parse_initialize_response(&response)?;
        info!(
            "server {:?}: initialized (protocol {}, pid {})",
            self.label,
            cache
                .result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            child.pid
        );
        self.lock().init = Some(Arc::new(cache));
        self.send_to_child(jsonrpc::notification("notifications/initialized", "{}"))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Waits until start-up has ended (at most `timeout`); `Ok` when the child is serving.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), Refused> {
        // Ends at once when already started: the channel is disconnected.
        let _ = self.ready.recv_timeout(timeout);
        self.check_running()
    }

    fn check_running(&self) -> Result<(), Refused> {
        match self.status() {
            Status::Running => Ok(()),
            Status::Starting => Err(Refused::Unavailable("still starting".into())),
            Status::Failed(why) => Err(Refused::Unavailable(why)),
        }
    }

    /// Stops the child with the stdio shutdown sequence. Blocks up to two grace periods.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let child = {
            let mut state = self.lock();
            // Dropping the last sender lets child-in drain the queue and close stdin.
            state.to_child = None;
            state.child.clone()
        };
        if let Some(child) = child {
            child.stop();
            info!(
                "server {:?}: stopped pid {} ({})",
                self.label,
                child.pid,
                child.exit_description()
            );
        }
    }

    fn on_child_exit(&self, exit: String) {
        let stopping = self.stopping.load(Ordering::SeqCst);
        let failed = {
            let mut state = self.lock();
            state.to_child = None;
            state.status = Some(Status::Failed(format!("exited ({exit})")));
            let pending = std::mem::take(&mut state.pending);
            state.child_requests.clear();
            for session in state.sessions.values_mut() {
                session.in_flight.clear();
            }
            pending
        };
        if stopping {
            debug!("server {:?}: exited ({exit})", self.label);
        } else {
            error!("server {:?}: exited unexpectedly ({exit})", self.label);
        }
        let message = format!("MCP server {:?} exited ({exit})", self.label);
        for (_, pending) in failed {
            if let Pending::Client(request) = pending {
                let text = rpc::response(&request.id, rpc::SERVER_UNAVAILABLE, &message);
                request.reply.tx.offer(Outbound::Final(text.into()));
            }
            // Internal requests: dropping the sender wakes the waiter.
        }
    }

    // ---- sessions --------------------------------------------------------------------------

    /// Opens a session. A legacy SSE session passes its stream now.
    pub fn open_session(
        &self,
        legacy: bool,
        stream: Option<StreamTx>,
    ) -> Result<SessionId, Refused> {
        self.check_running()?;
        let mut state = self.lock();
        if state.sessions.len() >= limits::MAX_SESSIONS {
            warn!(
                "server {:?}: refused a session: {} are open (the limit)",
                self.label,
                limits::MAX_SESSIONS
            );
            return Err(Refused::TooManySessions);
        }
        let id = SessionId::random();
        state.sessions.insert(id, Session::new(legacy, stream));
        Ok(id)
    }

    pub fn has_session(&self, id: SessionId) -> bool {
        self.lock().sessions.contains_key(&id)
    }

    /// The stream of a legacy SSE session, where its replies go.
    pub fn session_stream(&self, id: SessionId) -> Option<StreamTx> {
        self.lock().sessions.get(&id).and_then(|s| s.stream.clone())
    }

    /// Attaches a Streamable HTTP GET stream (one at a time).
    pub fn attach_stream(&self, id: SessionId, stream: StreamTx) -> Result<(), Refused> {
        let mut state = self.lock();
        let session = state.sessions.get_mut(&id).ok_or(Refused::UnknownSession)?;
        if session.has_live_stream() {
            return Err(Refused::StreamAlreadyOpen);
        }
        session.attach(stream);
        Ok(())
    }

    /// Detaches a GET stream that ended (only if it is still the attached one).
    pub fn detach_stream(&self, id: SessionId, stream: &StreamTx) {
        let mut state = self.lock();
        if let Some(session) = state.sessions.get_mut(&id)
            && session
                .stream
                .as_ref()
                .is_some_and(|s| s.same_channel(stream))
        {
            session.stream = None;
        }
    }

    /// Ends a session: its requests still at the child are cancelled there, the child's
    /// requests waiting on it are answered with an error, its subscriptions released.
    pub fn close_session(&self, id: SessionId, reason: &str) {
        let mut to_child = Vec::new();
        let mut abandoned = Vec::new();
        {
            let mut state = self.lock();
            let Some(session) = state.sessions.remove(&id) else {
                return;
            };
            for proxy_id in session.in_flight.values() {
                if let Some(Pending::Client(request)) = state.pending.remove(proxy_id) {
                    to_child.push(jsonrpc::notification(
                        "notifications/cancelled",
                        &format!(r#"{{"requestId":{proxy_id},"reason":"client session closed"}}"#),
                    ));
                    abandoned.push(request);
                }
            }
            let asked: Vec<String> = state
                .child_requests
                .iter()
                .filter(|(_, s)| **s == id)
                .map(|(k, _)| k.clone())
                .collect();
            for child_id in asked {
                state.child_requests.remove(&child_id);
                to_child.push(rpc::response(
                    &child_id,
                    rpc::INTERNAL_ERROR,
                    "the client session that received this request has closed",
                ));
            }
            for uri in &session.subscriptions {
                if release_subscription(&mut state.subscriptions, uri) {
                    let id = self.next_id();
                    state.pending.insert(id, Pending::Internal(None));
                    to_child.push(jsonrpc::request(
                        &id.to_string(),
                        "resources/unsubscribe",
                        &format!(r#"{{"uri":{}}}"#, jsonrpc::quote(uri)),
                    ));
                }
            }
            info!(
                "server {:?}: session {id} closed ({reason}); {} open",
                self.label,
                state.sessions.len()
            );
        }
        for request in abandoned {
            let text = rpc::response(&request.id, rpc::REQUEST_CANCELLED, "Session closed");
            request.reply.tx.offer(Outbound::Final(text.into()));
        }
        for line in to_child {
            // The child may be gone or stuck; nothing to tell the departed client either way.
            let _ = self.send_to_child(line);
        }
    }

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
        match env.kind {
            Kind::Request => {
                let reply = reply.expect("a request comes with a reply");
                self.client_request(session, text, env, reply)
            }
            Kind::Notification => self.client_notification(session, text, env),
            Kind::Response => self.client_response(session, text, env),
        }
    }

    fn client_request(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
        reply: Reply,
    ) -> Result<(), Refused> {
        let id = env.id.expect("requests have ids").get();
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
        let line = splice(text, &mut edits);
        let to_child = {
            let mut state = self.lock();
            let to_child = self.running_sender(&state)?;
            let s = state
                .sessions
                .get_mut(&session)
                .ok_or(Refused::UnknownSession)?;
            s.in_flight.insert(canonical_id(client_id), proxy_id);
            state.pending.insert(
                proxy_id,
                Pending::Client(ClientRequest {
                    session,
                    id: client_id.into(),
                    progress_token: token.map(|t| t.get().into()),
                    reply,
                    subscribing,
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
            init
        };
        let version = match requested.as_deref() {
            Some(v) if jsonrpc::SUPPORTED_VERSIONS.contains(&v) => v,
            _ => jsonrpc::LATEST_VERSION,
        };
        let mut result = init.result.clone();
        result.insert("protocolVersion".into(), Value::String(version.into()));
        let body = serde_json::to_string(&result).expect("a Map always serialises");
        debug!(
            "server {:?}: session {session} initialized ({version}, {caps:?})",
            self.label
        );
        reply
            .tx
            .offer(Outbound::Final(jsonrpc::result(id, &body).into()));
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
            reply.tx.offer(Outbound::Final(text.into()));
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
            let most_verbose = state.sessions.values().filter_map(|s| s.log_level).min();
            if most_verbose != state.child_log_level {
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
        reply
            .tx
            .offer(Outbound::Final(jsonrpc::result(id, "{}").into()));
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
        let forward = {
            let mut state = self.lock();
            let s = state
                .sessions
                .get_mut(&session)
                .ok_or(Refused::UnknownSession)?;
            if !s.subscriptions.insert(uri.clone()) {
                false // this session already holds it
            } else {
                let count = state.subscriptions.entry(uri.clone()).or_insert(0);
                *count += 1;
                *count == 1
            }
        };
        if forward {
            return self.forward_request(session, text, env, reply, Some(uri));
        }
        let id = env.id.expect("requests have ids").get();
        reply
            .tx
            .offer(Outbound::Final(jsonrpc::result(id, "{}").into()));
        Ok(())
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
            let s = state
                .sessions
                .get_mut(&session)
                .ok_or(Refused::UnknownSession)?;
            if s.subscriptions.remove(&uri) {
                release_subscription(&mut state.subscriptions, &uri)
            } else {
                // Not ours: tell the child only if nobody else holds the URI either.
                !state.subscriptions.contains_key(&uri)
            }
        };
        if forward {
            return self.forward_request(session, text, env, reply, None);
        }
        let id = env.id.expect("requests have ids").get();
        reply
            .tx
            .offer(Outbound::Final(jsonrpc::result(id, "{}").into()));
        Ok(())
    }

    fn client_notification(
        &self,
        session: SessionId,
        text: &str,
        env: &Envelope<'_>,
    ) -> Result<(), Refused> {
        match env.method() {
            // The child had its own from us at start-up.
            "notifications/initialized" => Ok(()),
            "notifications/cancelled" => self.client_cancelled(session, text, env),
            _ => {
                let to_child = self.running_sender(&self.lock())?;
                send_with_timeout(&to_child, text.to_string())
            }
        }
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
        let (to_child, proxy_id, request) = {
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
            let request = match state.pending.remove(&proxy_id) {
                Some(Pending::Client(r)) => Some(r),
                _ => None,
            };
            (to_child, proxy_id, request)
        };
        if let Some(request) = request {
            let text = rpc::response(&request.id, rpc::REQUEST_CANCELLED, "Request cancelled");
            request.reply.tx.offer(Outbound::Final(text.into()));
        }
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
        let id = canonical_id(env.id.expect("responses have ids").get());
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

    fn on_child_line(&self, line: String) {
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
        let pending = {
            let mut state = self.lock();
            let pending = state.pending.remove(&proxy_id);
            if let Some(Pending::Client(request)) = &pending {
                if let Some(s) = state.sessions.get_mut(&request.session) {
                    s.in_flight.remove(&canonical_id(&request.id));
                }
                if env.error.is_some()
                    && let Some(uri) = &request.subscribing
                {
                    if let Some(s) = state.sessions.get_mut(&request.session) {
                        s.subscriptions.remove(uri);
                    }
                    release_subscription(&mut state.subscriptions, uri);
                }
            }
            pending
        };
        match pending {
            Some(Pending::Client(request)) => {
                let text = envelope::with_id(line, env, &request.id);
                debug!(
                    "server {:?}: response {proxy_id} -> session {} id {}",
                    self.label, request.session, request.id
                );
                if !matches!(
                    request.reply.tx.offer(Outbound::Final(text.into())),
                    Offer::Sent
                ) {
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
        let message: Arc<str> = line.into();
        let delivered = {
            let mut state = self.lock();
            let target = pick_session_for(&state, method);
            match target {
                Some((session, reply)) => {
                    state.child_requests.insert(canonical_id(raw_id), session);
                    let sent = match reply {
                        Some(tx) => matches!(tx.offer(Outbound::Message(message)), Offer::Sent),
                        None => {
                            let s = state.sessions.get_mut(&session).expect("picked session");
                            s.deliver_unrelated(session, message);
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
                let mut state = self.lock();
                let targets: Vec<SessionId> = state
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.subscriptions.contains(&uri))
                    .map(|(id, _)| *id)
                    .collect();
                for id in targets {
                    deliver_to_session(&mut state, id, message.clone());
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
            _ => {
                let message: Arc<str> = line.into();
                let mut state = self.lock();
                let targets: Vec<SessionId> = state.sessions.keys().copied().collect();
                for id in targets {
                    deliver_to_session(&mut state, id, message.clone());
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
        if reply.carries_related {
            reply.tx.offer(Outbound::Message(text));
        } else if let Some(s) = state.sessions.get_mut(&session) {
            s.deliver_unrelated(session, text);
        }
    }

    // ---- plumbing --------------------------------------------------------------------------

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn running_sender(&self, state: &State) -> Result<Sender<String>, Refused> {
        match (&state.status, &state.to_child) {
            (Some(Status::Failed(why)), _) => Err(Refused::Unavailable(why.clone())),
            (_, Some(tx)) => Ok(tx.clone()),
            (_, None) => Err(Refused::Unavailable("not running".into())),
        }
    }

    fn send_to_child(&self, line: String) -> Result<(), Refused> {
        let to_child = {
            let state = self.lock();
            state
                .to_child
                .clone()
                .ok_or_else(|| Refused::Unavailable("not running".into()))?
        };
        send_with_timeout(&to_child, line)
    }

    /// For the child-out thread, which must never wait on the child's stdin: a child that
    /// does not read while it writes would deadlock us both.
    fn try_send_to_child(&self, line: String) -> Result<(), Refused> {
        let to_child = self.lock().to_child.clone();
        match to_child.map(|tx| tx.try_send(line)) {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) | None => {
                warn!(
                    "server {:?}: stdin queue full or closed; reply dropped",
                    self.label
                );
                Err(Refused::Busy)
            }
        }
    }

    /// Sends a request of the proxy's own and waits for its raw response.
    fn internal_request(
        &self,
        method: &str,
        params: &str,
        timeout: Duration,
    ) -> Result<String, RecvTimeoutError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.next_id();
        self.lock().pending.insert(id, Pending::Internal(Some(tx)));
        if self
            .send_to_child(jsonrpc::request(&id.to_string(), method, params))
            .is_err()
        {
            self.lock().pending.remove(&id);
            return Err(RecvTimeoutError::Disconnected);
        }
        let outcome = rx.recv_timeout(timeout);
        if outcome.is_err() {
            self.lock().pending.remove(&id);
        }
        outcome
    }
}

fn send_with_timeout(to_child: &Sender<String>, line: String) -> Result<(), Refused> {
    use crossbeam_channel::SendTimeoutError;
    match to_child.send_timeout(line, limits::CHILD_SEND_TIMEOUT) {
        Ok(()) => Ok(()),
        Err(SendTimeoutError::Timeout(_)) => Err(Refused::Busy),
        Err(SendTimeoutError::Disconnected(_)) => {
            Err(Refused::Unavailable("its stdin is closed".into()))
        }
    }
}

fn parse_initialize_response(response: &str) -> Result<InitCache, String> {
    let v: Value =
        serde_json::from_str(response).map_err(|e| format!("bad initialize response: {e}"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("refused initialize: {err}"));
    }
    let result = v
        .get("result")
        .and_then(Value::as_object)
        .ok_or("initialize response has no result object")?
        .clone();
    let has_logging = result
        .get("capabilities")
        .and_then(|c| c.get("logging"))
        .is_some();
    Ok(InitCache {
        result,
        has_logging,
    })
}

/// Ids compare by JSON value: `"a"` and `"\u0061"` are the same id.
fn canonical_id(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    serde_json::from_str::<Value>(raw)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.to_string())
}

/// Drops one holder of `uri`; true when it was the last (the child should unsubscribe).
fn release_subscription(subscriptions: &mut HashMap<String, usize>, uri: &str) -> bool {
    match subscriptions.get_mut(uri) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            subscriptions.remove(uri);
            true
        }
        None => false,
    }
}

/// The session that should receive a request of the child: the one whose request went to the
/// child most recently and whose client accepts `method`, with the stream to use (`None`: the
/// session's own stream). Falls back to any such session with a stream open.
fn pick_session_for(state: &State, method: &str) -> Option<(SessionId, Option<StreamTx>)> {
    for pending in state.pending.values().rev() {
        let Pending::Client(request) = pending else {
            continue;
        };
        let Some(session) = state.sessions.get(&request.session) else {
            continue;
        };
        if !session.initialized || !session.caps.accepts(method) {
            continue;
        }
        if request.reply.carries_related {
            return Some((request.session, Some(request.reply.tx.clone())));
        }
        if session.has_live_stream() {
            return Some((request.session, None));
        }
    }
    state
        .sessions
        .iter()
        .find(|(_, s)| s.initialized && s.caps.accepts(method) && s.has_live_stream())
        .map(|(id, _)| (*id, None))
}

/// Delivers a message meant for a session as a whole: on the stream of its most recent request
/// still in flight when that stream carries related messages (a log line emitted during a tool
/// call arrives with the call), else on the session's own stream.
fn deliver_to_session(state: &mut State, id: SessionId, message: Arc<str>) {
    let Some(session) = state.sessions.get(&id) else {
        return;
    };
    let newest =
        session
            .in_flight
            .values()
            .max()
            .and_then(|proxy_id| match state.pending.get(proxy_id) {
                Some(Pending::Client(r)) if r.reply.carries_related => Some(r.reply.tx.clone()),
                _ => None,
            });
    if let Some(tx) = newest
        && matches!(tx.offer(Outbound::Message(message.clone())), Offer::Sent)
    {
        return;
    }
    if let Some(session) = state.sessions.get_mut(&id) {
        session.deliver_unrelated(id, message);
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
