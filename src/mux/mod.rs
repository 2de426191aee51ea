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
pub mod stream;

mod modern;
mod modern_child;
mod pool;
mod route;
mod supervise;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, info, warn};
use serde_json::Value;

use crate::child::{ChildInput, ChildProcess, LineSink, SendError};
use crate::config::ServerSpec;
use crate::jsonrpc::{self, error as rpc};
use crate::limits;
pub use modern::{ListenFilter, MODERN_VERSIONS};
pub use pool::Pool;
use session::AttachError;
pub use session::{Reply, Session, SessionId};
pub use stream::{Direct, DirectWrite, EventId, Offer, Outbound, StreamKey, StreamTx};

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

/// Where a server's child is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Spawning and initializing the child for the first time.
    Starting,
    Running,
    /// The child exited after running; waiting to restart it, or initializing the new one.
    Restarting(String),
    /// The last attempt to start or initialize the child failed; retrying after a delay.
    Failed(String),
    /// Stopped for good (shutdown).
    Stopped,
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Restarting(_) => "restarting",
            Status::Failed(_) => "failed",
            Status::Stopped => "stopped",
        }
    }
}

/// The child's answer to our `initialize`, served to every session.
struct InitCache {
    /// An `initialize` result (for a 2026-07-28 child: made from its `server/discover`).
    result: serde_json::Map<String, Value>,
    has_logging: bool,
    /// The child speaks 2026-07-28: no handshake, `_meta` on every request, no requests of
    /// its own (input-required results instead), change notifications on a listen stream.
    modern: bool,
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
    /// For `--request-timeout`.
    sent_at: Instant,
    /// The request's method (a parked request is resumed only by a retry of the same method).
    method: Box<str>,
    /// While the request waits for a modern client's input: its `requestState`.
    parked: Option<String>,
    /// A modern request's own `inputResponses` (raw JSON object): answers given in advance.
    prefilled: Option<Box<str>>,
    /// The request as a 2026-07-28 child got it, to send again with a client's input.
    sent: Option<Box<str>>,
}

/// What `/status` tells about a server's supervision.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub restarts: u64,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    /// Starts or restarts that failed or ended, since the child last ran long enough.
    consecutive_failures: u32,
    /// When the next restart is due, while waiting for it.
    retry_at: Option<Instant>,
}

struct State {
    status: Status,
    health: Health,
    init: Option<Arc<InitCache>>,
    child: Option<Arc<ChildProcess>>,
    /// The child's stdin queue; `Some` only while the child is `Running`.
    to_child: Option<ChildInput>,
    pending: BTreeMap<u64, Pending>,
    sessions: HashMap<SessionId, Session>,
    /// The child's requests in flight at a client: canonical id → the session asked.
    child_requests: HashMap<String, SessionId>,
    /// Sessions subscribed per resource URI; the child sees one subscription per URI.
    subscriptions: HashMap<String, usize>,
    /// The level last sent to the child with `logging/setLevel`.
    child_log_level: Option<u8>,
    /// Modern requests waiting for their client's input, by `requestState`.
    parked: HashMap<String, modern::Parked>,
    /// Numbers the keys of input requests.
    next_input: u64,
    /// Whether the child speaks 2026-07-28, once known (kept across restarts: no re-probing).
    child_modern: Option<bool>,
    /// The proxy's own `subscriptions/listen` at a 2026-07-28 child.
    listen_id: Option<u64>,
    /// Input requests of a 2026-07-28 child at session-era clients: request id → round.
    input_waits: HashMap<String, u64>,
    input_rounds: HashMap<u64, modern_child::InputRound>,
    /// The child's tools' `x-mcp-header` parameters, by tool name; `None` until asked for and
    /// after the child's tool list changed.
    tool_headers: Option<Arc<modern::ToolHeaders>>,
}

/// The caps a mux enforces (from the command line).
#[derive(Clone, Copy, Debug)]
pub struct MuxOptions {
    pub max_sessions: usize,
    /// Longest line read from the child's stdout.
    pub max_message_bytes: usize,
}

impl State {
    /// Whether the child speaks 2026-07-28.
    fn child_is_modern(&self) -> bool {
        self.init.as_ref().is_some_and(|i| i.modern)
    }

    /// Records that `session` holds `uri`. True when it is the first holder of all sessions:
    /// the child must subscribe. (The child sees one subscription per URI, whoever asks.)
    fn add_subscriber(&mut self, session: SessionId, uri: &str) -> Result<bool, Refused> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(Refused::UnknownSession)?;
        if !s.subscriptions.insert(uri.to_string()) {
            return Ok(false); // this session already holds it
        }
        let count = self.subscriptions.entry(uri.to_string()).or_insert(0);
        *count += 1;
        Ok(*count == 1)
    }

    /// Drops `session`'s hold on `uri`: `Some(true)` when it was the last holder (the child
    /// must unsubscribe), `Some(false)` when others hold it, `None` when it held nothing.
    fn remove_subscriber(&mut self, session: SessionId, uri: &str) -> Option<bool> {
        let s = self.sessions.get_mut(&session)?;
        s.subscriptions
            .remove(uri)
            .then(|| release_subscription(&mut self.subscriptions, uri))
    }

    /// Delivers to a request's reply: a connection, or a resumable stream of the session
    /// (which buffers it for a resume). False when nowhere would take it.
    fn deliver_reply(&mut self, session: SessionId, reply: &Reply, message: Outbound) -> bool {
        match reply {
            Reply::Direct { tx, .. } => matches!(tx.offer(message), Offer::Sent),
            Reply::Stream(number) => self
                .sessions
                .get_mut(&session)
                .is_some_and(|s| s.push(*number, message)),
        }
    }
}

/// One configured server: its supervised child and every session using it.
pub struct Mux {
    pub label: String,
    /// This mux, for the timer threads it starts (an MRTR collecting window).
    me: std::sync::Weak<Mux>,
    spec: ServerSpec,
    options: MuxOptions,
    state: Mutex<State>,
    /// Signalled whenever `state.status` changes.
    status_changed: Condvar,
    next_id: AtomicU64,
    /// Which child the `child-out` lines come from; lines of an earlier child are dropped.
    generation: AtomicU64,
    /// To the supervisor: child exits and the final stop.
    events: Sender<supervise::Event>,
    /// The supervisor's end, until `start` hands it over.
    events_rx: Mutex<Option<Receiver<supervise::Event>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// What a child's `child-out` thread feeds into.
struct ChildEvents {
    mux: Arc<Mux>,
    generation: u64,
}

impl LineSink for ChildEvents {
    fn line(&self, line: String) {
        if self.mux.generation.load(Ordering::Acquire) == self.generation {
            self.mux.on_child_line(line);
        }
    }
    fn closed(&self, exit: String) {
        self.mux.on_child_exit(self.generation, exit);
    }
}

impl Mux {
    pub fn new(spec: ServerSpec, options: MuxOptions) -> Arc<Mux> {
        // Few events ever: one per child exit, and the final stop.
        let (events, events_rx) = crossbeam_channel::bounded(16);
        Arc::new_cyclic(|me| Mux {
            me: me.clone(),
            label: spec.label().to_string(),
            spec,
            options,
            state: Mutex::new(State {
                status: Status::Starting,
                health: Health::default(),
                init: None,
                child: None,
                to_child: None,
                pending: BTreeMap::new(),
                sessions: HashMap::new(),
                child_requests: HashMap::new(),
                subscriptions: HashMap::new(),
                child_log_level: None,
                parked: HashMap::new(),
                next_input: 0,
                tool_headers: None,
                child_modern: None,
                listen_id: None,
                input_waits: HashMap::new(),
                input_rounds: HashMap::new(),
            }),
            status_changed: Condvar::new(),
            next_id: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            events,
            events_rx: Mutex::new(Some(events_rx)),
            supervisor: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug of ours; the state is still consistent
        // enough to keep serving the other sessions, so take it anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    pub fn health(&self) -> Health {
        self.lock().health.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        let state = self.lock();
        match state.status {
            Status::Running => state.child.as_ref().map(|c| c.pid),
            _ => None,
        }
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }

    // ---- sessions --------------------------------------------------------------------------

    /// Opens a session. A legacy SSE session passes its stream now.
    /// Opens a session. A legacy SSE session passes its one stream.
    pub fn open_session(&self, legacy_stream: Option<StreamTx>) -> Result<SessionId, Refused> {
        self.check_running()?;
        let mut state = self.lock();
        if state.sessions.len() >= self.options.max_sessions {
            warn!(
                "server {:?}: refused a session: {} are open (the limit, --max-sessions)",
                self.label, self.options.max_sessions
            );
            return Err(Refused::TooManySessions);
        }
        let id = SessionId::random();
        state.sessions.insert(id, Session::new(legacy_stream));
        Ok(id)
    }

    pub fn has_session(&self, id: SessionId) -> bool {
        self.lock().sessions.contains_key(&id)
    }

    /// Where a legacy SSE session's replies go: its one stream.
    pub fn legacy_reply(&self, id: SessionId) -> Option<Reply> {
        self.lock()
            .sessions
            .get(&id)
            .and_then(Session::legacy_reply)
    }

    /// Opens a resumable stream for a POST's SSE reply, written by `writer`.
    pub fn open_reply_stream(&self, id: SessionId, writer: StreamTx) -> Result<Reply, Refused> {
        let mut state = self.lock();
        let session = state.sessions.get_mut(&id).ok_or(Refused::UnknownSession)?;
        Ok(Reply::Stream(session.open_stream(writer)))
    }

    /// Attaches a GET connection: resuming the stream `last_event` names, or on the session's
    /// GET stream (one connection at a time). Returns the stream's number.
    pub fn attach_get(
        &self,
        id: SessionId,
        writer: StreamTx,
        last_event: Option<EventId>,
    ) -> Result<u32, Refused> {
        let mut state = self.lock();
        let session = state.sessions.get_mut(&id).ok_or(Refused::UnknownSession)?;
        match session.attach_get(writer.clone(), last_event) {
            Ok(number) => Ok(number),
            Err(AttachError::AlreadyOpen) => Err(Refused::StreamAlreadyOpen),
            Err(AttachError::UnknownEvent) => {
                debug!("session {id}: Last-Event-ID names no stream kept; opening the GET stream");
                session
                    .attach_get(writer, None)
                    .map_err(|_| Refused::StreamAlreadyOpen)
            }
        }
    }

    /// Detaches a connection that ended from stream `number` (if it is still attached).
    pub fn detach(&self, id: SessionId, number: u32, writer: StreamKey) {
        if let Some(session) = self.lock().sessions.get_mut(&id) {
            session.detach(number, writer);
        }
    }

    /// Drops a reply stream whose request was refused before it reached the child.
    pub fn discard_stream(&self, id: SessionId, number: u32) {
        if let Some(session) = self.lock().sessions.get_mut(&id) {
            session.discard(number);
        }
    }

    /// Answers a request here, without the child.
    fn answer(&self, session: SessionId, reply: &Reply, text: String) {
        self.lock()
            .deliver_reply(session, reply, Outbound::last(text.into()));
    }

    /// Ends a session: its requests still at the child are cancelled there, the child's
    /// requests waiting on it are answered with an error, its subscriptions released.
    pub fn close_session(&self, id: SessionId, reason: &str) {
        let mut to_child = Vec::new();
        let mut abandoned = Vec::new();
        let mut renew_listen = false;
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
            let modern_child = state.child_is_modern();
            for uri in &session.subscriptions {
                if !release_subscription(&mut state.subscriptions, uri) {
                    continue; // another session still holds it
                }
                if modern_child {
                    renew_listen = true;
                } else {
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
        // A JSON reply still waits on its connection; a stream of the session went with it.
        for request in abandoned {
            if let Reply::Direct { tx, .. } = &request.reply {
                let text = rpc::response(&request.id, rpc::REQUEST_CANCELLED, "Session closed");
                tx.offer(Outbound::last(text.into()));
            }
        }
        for line in to_child {
            // The child may be gone or stuck; nothing to tell the departed client either way.
            let _ = self.send_to_child(line);
        }
        if renew_listen {
            self.renew_listen();
        }
    }

    /// Enforces `--request-timeout` (the request gets an error, the child a cancellation) and
    /// `--session-idle-timeout` (a Streamable HTTP session with nothing going on is closed).
    pub fn reap(&self, session_idle: Option<Duration>, request_timeout: Option<Duration>) {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut idle = Vec::new();
        {
            let mut state = self.lock();
            if let Some(limit) = request_timeout {
                let ids: Vec<u64> = state
                    .pending
                    .iter()
                    .filter_map(|(id, p)| match p {
                        Pending::Client(r) if now.duration_since(r.sent_at) >= limit => Some(*id),
                        _ => None,
                    })
                    .collect();
                for id in ids {
                    if let Some(Pending::Client(request)) = state.pending.remove(&id) {
                        if let Some(s) = state.sessions.get_mut(&request.session) {
                            s.in_flight.remove(&canonical_id(&request.id));
                        }
                        expired.push((id, request));
                    }
                }
            }
            for session in state.sessions.values_mut() {
                session.prune(now);
            }
            if let Some(limit) = session_idle {
                idle = state
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.is_idle(now, limit))
                    .map(|(id, _)| *id)
                    .collect();
            }
        }
        for (proxy_id, request) in expired {
            let secs = request_timeout.map_or(0.0, |d| d.as_secs_f64());
            warn!(
                "server {:?}: request {} of session {} timed out after {secs} s; cancelled at the child",
                self.label, request.id, request.session
            );
            let text = rpc::response(
                &request.id,
                rpc::REQUEST_TIMEOUT,
                &format!("Request timed out after {secs} s (mcp-proxy --request-timeout)"),
            );
            self.lock()
                .deliver_reply(request.session, &request.reply, Outbound::last(text.into()));
            let _ = self.send_to_child(jsonrpc::notification(
                "notifications/cancelled",
                &format!(r#"{{"requestId":{proxy_id},"reason":"request timed out"}}"#),
            )); // a child that is gone or stuck has nothing left to cancel.
        }
        for id in idle {
            let secs = session_idle.map_or(0, |d| d.as_secs());
            self.close_session(id, &format!("idle for {secs} s"));
        }
        self.expire_parked(now, limits::PARKED_INPUT_TTL);
    }

    // ---- plumbing --------------------------------------------------------------------------

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The child's stdin, for client traffic: only while the child is `Running`.
    fn running_sender(&self, state: &State) -> Result<ChildInput, Refused> {
        match (&state.status, &state.to_child) {
            (Status::Running, Some(tx)) => Ok(tx.clone()),
            (Status::Running, None) | (Status::Starting, _) => {
                Err(Refused::Unavailable("still starting".into()))
            }
            (Status::Restarting(why) | Status::Failed(why), _) => {
                Err(Refused::Unavailable(why.clone()))
            }
            (Status::Stopped, _) => Err(Refused::Unavailable("stopped".into())),
        }
    }

    /// The proxy's own messages (handshake, cleanup) go whenever a child is alive.
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
        match to_child.map(|input| input.try_send(&line)) {
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

    /// A request of the proxy's own whose response nobody waits for (cleanup, restoring
    /// subscriptions and the log level after a restart).
    fn fire_and_forget(&self, method: &str, params: &str) {
        let id = self.next_id();
        self.lock().pending.insert(id, Pending::Internal(None));
        if self
            .send_to_child(jsonrpc::request(&id.to_string(), method, params))
            .is_err()
        {
            self.lock().pending.remove(&id);
        }
    }

    /// A request of the proxy's own, waiting (at most `timeout`) for the child's raw response.
    fn ask_child(&self, method: &str, params: &str, timeout: Duration) -> Result<String, Refused> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.next_id();
        let to_child = {
            let mut state = self.lock();
            let to_child = self.running_sender(&state)?;
            state.pending.insert(id, Pending::Internal(Some(tx)));
            to_child
        };
        let sent = send_with_timeout(&to_child, jsonrpc::request(&id.to_string(), method, params));
        let answer = sent.and_then(|()| {
            rx.recv_timeout(timeout)
                .map_err(|_| Refused::Unavailable(format!("no answer to {method}")))
        });
        if answer.is_err() {
            self.lock().pending.remove(&id);
        }
        answer
    }
}

fn send_with_timeout(to_child: &ChildInput, line: String) -> Result<(), Refused> {
    match to_child.send_timeout(&line, limits::CHILD_SEND_TIMEOUT) {
        Ok(()) => Ok(()),
        Err(SendError::Full) => Err(Refused::Busy),
        Err(SendError::Closed) => Err(Refused::Unavailable("its stdin is closed".into())),
    }
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
