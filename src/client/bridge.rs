//! The bridge: client mode's single decision-maker. It owns the transport choice, the session
//! (id, protocol version, cached `initialize`), the queue of messages waiting for the remote,
//! and the promise that every request from stdin gets an answer. It never does IO itself:
//! transport threads do, and report back; stdout is a channel.
//!
//! Life of a connection:
//! 1. `Idle`: nothing sent. Streamable HTTP and auto send the first stdin message (normally
//!    `initialize`) as a probe; legacy SSE waits for the stream's `endpoint` event.
//! 2. `Probing`: one message is out; the rest wait. auto: 400/404/405 → legacy SSE (spec J3).
//! 3. `Ready`: messages go out in stdin order, at most `MAX_CONCURRENT_POSTS` at once; see
//!    "Order" below.
//! 4. `Down`: the remote is unreachable. Messages queue (bounded, each request for at most
//!    `QUEUED_REQUEST_TIMEOUT`); Streamable HTTP probes again with backoff, legacy SSE waits
//!    for its stream thread to bring a new endpoint.
//! 5. `Reinitializing`: the session is gone (404, a new SSE endpoint): the cached `initialize`
//!    and `notifications/initialized` are replayed under a proxy id; their replies are not
//!    shown. Then requests lost with the old connection are answered with an error, and the
//!    queue is sent.
//!
//! Before the remote was ever reached, a failure ends the program (exit 1, one line on stderr);
//! afterwards only `--max-disconnected` does.
//!
//! Order. Each POST runs on its own thread, so without care a later message can overtake an
//! earlier one on the way to the remote (`tools/list` before `notifications/initialized`), and a
//! request can arrive before the GET stream the server would send its own requests on (a TS
//! SDK server drops those silently then). So:
//! 1. POSTs start in stdin order, and one starts only once the response head of the one before
//!    it arrived: the remote has taken that message in. Replies then stream concurrently.
//!    For an `initialize` the wait lasts until its whole reply was read: what follows needs the
//!    negotiated protocol version (spec H2).
//! 2. Once `notifications/initialized` got its response head, the GET stream is opened
//!    (Streamable HTTP, also after a re-initialization) and nothing more is sent until the GET
//!    got an answer: a stream, 405, or an error.
//! 3. Each wait is bounded ([`limits::POST_HEAD_WAIT`], [`limits::GET_STREAM_HEAD_WAIT`]): a
//!    JSON reply comes with its result only, and a slow call must not hold back, say, the
//!    answer to the elicitation it is waiting for.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select};
use log::{debug, error, info, warn};

use super::stdio::{Out, StdinMessage};
use super::streamable::{self, Session};
use super::{Remote, Report, sse};
use crate::config::Transport;
use crate::error::Error;
use crate::jsonrpc::{Envelope, Kind, envelope, error};
use crate::limits;

const INITIALIZE: &str = "initialize";
const INITIALIZED: &str = "notifications/initialized";

/// The JSON-RPC error for a request sent but never answered because the connection died.
const LOST_MESSAGE: &str =
    "connection to the remote server was lost; request may not have completed";

/// A message on its way to the remote.
#[derive(Clone)]
struct Outbound {
    seq: u64,
    text: Arc<str>,
    kind: Kind,
    /// Raw JSON id of a request or response.
    id: Option<String>,
    method: Option<String>,
    /// A replayed `initialize`/`initialized`: its reply is not shown.
    hidden: bool,
    /// When it came from stdin (the delivery deadline counts from here).
    received: Instant,
}

impl Outbound {
    fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Active {
    /// auto, before the probe settled.
    Undecided,
    Streamable,
    Sse,
}

/// What the next message waits for.
struct Gate {
    seq: u64,
    /// The reply's end (`Done`), not only its head: for an `initialize`.
    whole_reply: bool,
    /// When the next message goes anyway.
    until: Instant,
}

impl Gate {
    /// Whether `report` shows the remote took the gated message in, or never will.
    fn opened_by(&self, report: &Report) -> bool {
        let seq = match report {
            Report::Head { seq, .. } if !self.whole_reply => *seq,
            Report::Done { seq }
            | Report::NotDelivered { seq, .. }
            | Report::Lost { seq, .. }
            | Report::Answered { seq, .. }
            | Report::Refused { seq, .. }
            | Report::AuthFailed { seq, .. }
            | Report::SessionExpired { seq: Some(seq) } => *seq,
            _ => return false,
        };
        seq == self.seq
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Probing {
        seq: u64,
    },
    Ready,
    /// `retry_at`: when Streamable HTTP probes again; `None` for legacy SSE, which waits for
    /// a new endpoint.
    Down {
        retry_at: Option<Instant>,
    },
    Reinitializing,
}

pub struct Bridge {
    remote: Arc<Remote>,
    active: Active,
    phase: Phase,
    stdout: Sender<Out>,
    max_disconnected: Duration,

    /// The remote answered at least once; from then on failures are outages, not fatal.
    ever_connected: bool,
    /// Since when, and why, the remote is unreachable.
    disconnected: Option<(Instant, String)>,
    backoff: Duration,

    session: Session,
    /// Bumped to retire the current GET stream thread.
    get_stream_generation: Arc<AtomicU64>,
    /// The last message sent, until the remote has taken it in: the next one waits (order 1).
    gate: Option<Gate>,
    /// The GET stream just opened (its generation), until its first answer or the deadline:
    /// nothing is sent meanwhile (order 2).
    get_stream_gate: Option<(u64, Instant)>,
    /// Legacy SSE: the POST URL of the current stream.
    endpoint: Option<String>,
    sse_stream_started: bool,

    next_seq: u64,
    queue: VecDeque<Outbound>,
    in_flight: HashMap<u64, Outbound>,
    /// Requests from stdin not yet answered: raw id → seq.
    pending: HashMap<String, u64>,
    /// Requests whose connection died; answered with an error once the remote is back.
    lost: Vec<String>,

    cached_initialize: Option<Outbound>,
    cached_initialized: Option<Outbound>,
    /// The id of the replayed `initialize` while a re-initialization runs.
    hidden_init_id: Option<String>,
    /// The seq of the replayed `initialized` while a re-initialization runs.
    hidden_initialized_seq: Option<u64>,
    reinit_count: u64,

    /// Set when stdin closed or a signal came: exit once answers are out, or at this deadline.
    closing: Option<Instant>,
}

impl Bridge {
    pub fn new(
        remote: Arc<Remote>,
        transport: Transport,
        max_disconnected: Duration,
        stdout: Sender<Out>,
    ) -> Bridge {
        Bridge {
            remote,
            active: match transport {
                Transport::Auto => Active::Undecided,
                Transport::Sse => Active::Sse,
                Transport::StreamableHttp => Active::Streamable,
            },
            phase: Phase::Idle,
            stdout,
            max_disconnected,
            ever_connected: false,
            disconnected: None,
            backoff: limits::RECONNECT_BACKOFF_START,
            session: Session::default(),
            get_stream_generation: Arc::new(AtomicU64::new(0)),
            gate: None,
            get_stream_gate: None,
            endpoint: None,
            sse_stream_started: false,
            next_seq: 0,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            pending: HashMap::new(),
            lost: Vec::new(),
            cached_initialize: None,
            cached_initialized: None,
            hidden_init_id: None,
            hidden_initialized_seq: None,
            reinit_count: 0,
            closing: None,
        }
    }

    /// Runs until stdin closes (Ok) or the remote is lost for good (Err).
    pub fn run(
        &mut self,
        stdin: Receiver<StdinMessage>,
        reports: Receiver<Report>,
    ) -> Result<(), Error> {
        if self.active == Active::Sse {
            self.start_sse_stream()?;
        }
        let mut stdin = stdin;
        let shutdown = self.remote.shutdown.clone();
        let mut signal = shutdown.receiver().clone();
        let result = loop {
            if self.closing.is_some_and(|deadline| {
                Instant::now() >= deadline || (self.pending.is_empty() && self.in_flight.is_empty())
            }) {
                break Ok(());
            }
            let wait = self
                .next_wake()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            let step = select! {
                recv(stdin) -> message => match message {
                    Ok(message) => self.on_stdin(message),
                    Err(_) => {
                        debug!("stdin closed: finishing");
                        stdin = never();
                        self.start_closing();
                        Ok(())
                    }
                },
                recv(reports) -> report => match report {
                    Ok(report) => self.on_report(report),
                    // We hold a sender in `remote`: cannot happen.
                    Err(_) => Ok(()),
                },
                recv(signal) -> _ => {
                    signal = never();
                    self.start_closing();
                    Ok(())
                },
                default(wait) => Ok(()),
            };
            if let Err(e) = step.and_then(|()| self.on_tick()) {
                break Err(e);
            }
        };
        self.finish(&result);
        result
    }

    fn start_closing(&mut self) {
        if self.closing.is_none() {
            self.closing = Some(Instant::now() + limits::STDIN_EOF_DRAIN);
        }
    }

    /// Last words: errors for unanswered requests, DELETE of the session, stdout flushed.
    fn finish(&mut self, result: &Result<(), Error>) {
        let message = match result {
            Ok(()) => "mcp-proxy is shutting down".to_string(),
            Err(e) => e.to_string(),
        };
        let ids: Vec<String> = self.pending.drain().map(|(id, _)| id).collect();
        for id in ids.into_iter().chain(std::mem::take(&mut self.lost)) {
            self.reply_error(&id, &message);
        }
        if self.active == Active::Streamable {
            streamable::delete_session(&self.remote, &self.session);
        }
        self.remote.shutdown.trigger();
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.stdout.send(Out::Barrier(ack_tx)).is_ok() {
            // Bounded: a stdout nobody reads must not keep us alive.
            let _ = ack_rx.recv_timeout(Duration::from_secs(2));
        }
    }

    // ---- stdin -------------------------------------------------------------------------------

    fn on_stdin(&mut self, message: StdinMessage) -> Result<(), Error> {
        let out = Outbound {
            seq: self.take_seq(),
            text: Arc::from(message.text),
            kind: message.kind,
            id: message.id,
            method: message.method,
            hidden: false,
            received: Instant::now(),
        };
        match out.method.as_deref() {
            Some(INITIALIZE) if out.is_request() => {
                // A (new) session starts with this initialize; keep it for re-initialization.
                self.cached_initialize = Some(out.clone());
                if self.active != Active::Sse {
                    self.session = Session::default();
                }
            }
            Some(INITIALIZED) => self.cached_initialized = Some(out.clone()),
            _ => {}
        }
        if out.is_request()
            && let Some(id) = &out.id
        {
            self.pending.insert(id.clone(), out.seq);
        }
        if self.queue.len() >= limits::OUTAGE_QUEUE {
            self.refuse(
                &out,
                "mcp-proxy: too many messages waiting for the remote server",
            );
        } else {
            self.queue.push_back(out);
        }
        self.pump();
        Ok(())
    }

    /// Sends what the phase and the order (module doc) allow.
    fn pump(&mut self) {
        match self.phase {
            Phase::Idle if self.active != Active::Sse => {
                if let Some(first) = self.queue.pop_front() {
                    self.phase = Phase::Probing { seq: first.seq };
                    self.send(first);
                }
            }
            Phase::Ready => {
                while self.in_flight.len() < limits::MAX_CONCURRENT_POSTS
                    && self.gate.is_none()
                    && self.get_stream_gate.is_none()
                {
                    let Some(next) = self.queue.pop_front() else {
                        break;
                    };
                    self.send(next);
                }
            }
            _ => {}
        }
    }

    /// Hands one message to a transport thread.
    fn send(&mut self, out: Outbound) {
        let seq = out.seq;
        let text = out.text.clone();
        let request_id = if out.is_request() {
            out.id.clone()
        } else {
            None
        };
        let is_initialize = out.method.as_deref() == Some(INITIALIZE);
        debug!(
            "-> remote: {} #{seq}{} ({} bytes)",
            out.method.as_deref().unwrap_or("response"),
            if out.hidden { " (replay)" } else { "" },
            out.text.len()
        );
        self.in_flight.insert(seq, out);
        // The next message waits for this one to reach the remote (order 1).
        self.gate = Some(Gate {
            seq,
            whole_reply: is_initialize,
            until: Instant::now() + limits::POST_HEAD_WAIT,
        });
        match self.active {
            Active::Undecided | Active::Streamable => {
                // An initialize starts a session: it never carries the old one.
                let session = if is_initialize {
                    Session::default()
                } else {
                    self.session.clone()
                };
                streamable::post(
                    &self.remote,
                    streamable::PostJob {
                        seq,
                        text,
                        request_id,
                        session,
                    },
                );
            }
            Active::Sse => match self.endpoint.clone() {
                Some(endpoint) => sse::post(
                    &self.remote,
                    sse::PostJob {
                        seq,
                        text,
                        endpoint,
                    },
                ),
                None => {
                    // Not reachable: legacy SSE is only Ready with an endpoint. Queue it again.
                    self.gate = None;
                    if let Some(out) = self.in_flight.remove(&seq) {
                        self.queue.push_front(out);
                    }
                }
            },
        }
    }

    // ---- reports -----------------------------------------------------------------------------

    fn on_report(&mut self, report: Report) -> Result<(), Error> {
        if !matches!(report, Report::Message(_)) {
            debug!("report: {report:?}");
        }
        if self
            .gate
            .as_ref()
            .is_some_and(|gate| gate.opened_by(&report))
        {
            self.gate = None;
        }
        let result = self.handle_report(report);
        self.pump();
        result
    }

    fn handle_report(&mut self, report: Report) -> Result<(), Error> {
        match report {
            Report::Head { seq, session_id } => self.on_head(seq, session_id),
            Report::Message(text) => {
                self.on_remote_message(text);
                Ok(())
            }
            Report::Done { seq } => {
                self.on_done(seq);
                Ok(())
            }
            Report::NotDelivered { seq, reason } => self.on_not_delivered(seq, reason),
            Report::Lost { seq, reason } => self.on_lost(seq, reason),
            Report::SessionExpired { seq } => {
                self.on_session_expired(seq);
                Ok(())
            }
            Report::Answered {
                seq,
                status,
                answer,
            } => {
                self.on_answered(seq, status, answer);
                Ok(())
            }
            Report::Refused {
                seq,
                status,
                reason,
            } => self.on_refused(seq, status, reason),
            Report::AuthFailed { seq, reason } => {
                let out = self.in_flight.remove(&seq);
                let message = format!("cannot authenticate to the remote server: {reason}");
                self.fail_message(out, &message, true)
            }
            Report::Endpoint(endpoint) => {
                self.on_endpoint(endpoint);
                Ok(())
            }
            Report::StreamUp => {
                self.mark_connected();
                Ok(())
            }
            Report::GetStreamSettled { generation } => {
                if self
                    .get_stream_gate
                    .is_some_and(|(waiting_for, _)| waiting_for == generation)
                {
                    self.get_stream_gate = None;
                }
                Ok(())
            }
            Report::StreamDown(reason) => self.on_stream_down(reason),
        }
    }

    fn mark_connected(&mut self) {
        if let Some((since, _)) = self.disconnected.take() {
            info!(
                "remote server reachable again after {:.1} s",
                since.elapsed().as_secs_f64()
            );
        }
        self.ever_connected = true;
        self.backoff = limits::RECONNECT_BACKOFF_START;
    }

    fn on_head(&mut self, seq: u64, session_id: Option<String>) -> Result<(), Error> {
        self.mark_connected();
        if self.active == Active::Undecided {
            info!("remote speaks Streamable HTTP");
            self.active = Active::Streamable;
        }
        let (is_initialize, is_initialized) = match self.in_flight.get(&seq) {
            Some(o) => (
                o.method.as_deref() == Some(INITIALIZE),
                // A replayed one opens the stream when the re-initialization ends.
                !o.hidden && o.method.as_deref() == Some(INITIALIZED),
            ),
            None => (false, false),
        };
        if is_initialize && session_id.is_some() {
            debug!("session established");
            self.session.id = session_id;
        }
        if is_initialized {
            // Before anything else is sent (order 2).
            self.open_get_stream();
        }
        if self.phase == (Phase::Probing { seq }) {
            self.become_ready();
        }
        Ok(())
    }

    fn on_done(&mut self, seq: u64) {
        let Some(out) = self.in_flight.remove(&seq) else {
            return;
        };
        if out.hidden && self.hidden_initialized_seq == Some(seq) {
            self.hidden_initialized_seq = None;
            self.finish_reinit();
        }
    }

    fn on_not_delivered(&mut self, seq: u64, reason: String) -> Result<(), Error> {
        let out = self.in_flight.remove(&seq);
        if !self.ever_connected {
            return self.fail_message(
                out,
                &format!("cannot reach {}: {reason}", self.remote.shown_url),
                true,
            );
        }
        if let Some(out) = out {
            if out.hidden {
                self.hidden_init_id = None;
                self.hidden_initialized_seq = None;
            } else {
                self.queue.push_front(out);
            }
        }
        self.enter_down(reason);
        Ok(())
    }

    fn on_lost(&mut self, seq: u64, reason: String) -> Result<(), Error> {
        let out = self.in_flight.remove(&seq);
        if !self.ever_connected {
            return self.fail_message(out, &format!("{}: {reason}", self.remote.shown_url), true);
        }
        warn!("remote connection lost: {reason}");
        if let Some(out) = out {
            if out.hidden {
                self.hidden_init_id = None;
                self.hidden_initialized_seq = None;
            } else if let Some(id) = out.id.filter(|_| out.kind == Kind::Request)
                && self.pending.remove(&id).is_some()
            {
                self.lost.push(id);
            }
        }
        if self.active == Active::Sse {
            // The SSE stream thread tells whether the remote is gone; one broken POST is not
            // enough to stop sending.
            if self.phase == Phase::Ready {
                for id in std::mem::take(&mut self.lost) {
                    self.reply_error(&id, LOST_MESSAGE);
                }
            }
            return Ok(());
        }
        self.enter_down(reason);
        Ok(())
    }

    fn on_session_expired(&mut self, seq: Option<u64>) {
        // The replay sends `initialized` itself: a second copy would be a protocol error.
        if let Some(out) = seq.and_then(|seq| self.in_flight.remove(&seq))
            && !out.hidden
            && out.method.as_deref() != Some(INITIALIZED)
        {
            self.queue.push_front(out);
        }
        self.mark_connected();
        if self.phase == Phase::Reinitializing {
            return;
        }
        info!("the remote ended our session (HTTP 404): starting a new one");
        self.session = Session::default();
        self.start_reinit();
    }

    fn on_refused(&mut self, seq: u64, status: u16, reason: String) -> Result<(), Error> {
        let out = self.in_flight.remove(&seq);
        if self.active == Active::Undecided && matches!(status, 400 | 404 | 405) {
            info!(
                "remote answered the Streamable HTTP probe with HTTP {status}: trying legacy SSE"
            );
            self.active = Active::Sse;
            self.phase = Phase::Idle;
            if let Some(out) = out {
                self.queue.push_front(out);
            }
            return self.start_sse_stream();
        }
        if self.phase == (Phase::Probing { seq }) && self.ever_connected {
            self.become_ready();
        }
        let credentials = matches!(status, 401 | 403);
        let message = if credentials {
            format!("the remote server rejected our credentials (HTTP {status}): {reason}")
        } else {
            format!("the remote server answered HTTP {status}: {reason}")
        };
        if out.as_ref().is_some_and(|o| o.hidden) {
            warn!("re-initialization failed: {message}");
            self.hidden_init_id = None;
            self.hidden_initialized_seq = None;
            self.finish_reinit();
            return Ok(());
        }
        // Before the first success, any refusal means this configuration cannot work.
        self.fail_message(out, &message, !self.ever_connected)
    }

    /// An error status whose body answers the request: the answer goes to the client like any
    /// other, and the remote is plainly there (a 2026-07-28 server refusing a message of the
    /// session era, say), so this is neither a start-up failure nor a reason to fall back to
    /// legacy SSE (spec J4: a legacy server does not answer our request by its id).
    fn on_answered(&mut self, seq: u64, status: u16, answer: String) {
        let out = self.in_flight.remove(&seq);
        if self.active == Active::Undecided {
            info!("remote speaks Streamable HTTP");
            self.active = Active::Streamable;
        }
        self.mark_connected();
        if self.phase == (Phase::Probing { seq }) {
            self.become_ready();
        }
        if let Some(out) = out.as_ref().filter(|o| o.hidden) {
            warn!(
                "re-initialization failed: the remote refused {} (HTTP {status})",
                out.method.as_deref().unwrap_or("a message")
            );
            self.hidden_init_id = None;
            self.hidden_initialized_seq = None;
            self.finish_reinit();
            return;
        }
        info!(
            "the remote refused {} (HTTP {status}) with an error for the client",
            out.as_ref()
                .and_then(|o| o.method.as_deref())
                .unwrap_or("a request")
        );
        self.on_remote_message(answer);
    }

    fn on_endpoint(&mut self, endpoint: String) {
        let reconnect = self.endpoint.is_some();
        self.endpoint = Some(endpoint);
        self.mark_connected();
        if reconnect && self.cached_initialize.is_some() {
            info!("SSE stream reconnected: re-initializing");
            self.start_reinit();
        } else {
            self.become_ready();
        }
    }

    fn on_stream_down(&mut self, reason: String) -> Result<(), Error> {
        if self.active != Active::Sse {
            // The Streamable GET stream: POSTs decide the phase; this only starts the clock.
            self.disconnected
                .get_or_insert_with(|| (Instant::now(), reason));
            return Ok(());
        }
        if !self.ever_connected {
            let message = format!("cannot connect to {}: {reason}", self.remote.shown_url);
            return self.fail_message(None, &message, true);
        }
        warn!("SSE stream lost: {reason}");
        // Requests posted on the old stream will not be answered on a new one.
        let sent: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, seq)| !self.queue.iter().any(|q| q.seq == **seq))
            .map(|(id, _)| id.clone())
            .collect();
        for id in sent {
            self.pending.remove(&id);
            self.lost.push(id);
        }
        self.hidden_init_id = None;
        self.hidden_initialized_seq = None;
        self.enter_down(reason);
        Ok(())
    }

    // ---- messages from the remote ------------------------------------------------------------

    fn on_remote_message(&mut self, text: String) {
        let text = compact(text);
        let env = match Envelope::parse(&text) {
            Ok(env) => env,
            Err(invalid) => {
                warn!(
                    "dropped an invalid message from the remote: {}",
                    invalid.message()
                );
                return;
            }
        };
        if env.kind == Kind::Response {
            let id = env.id.map(|id| id.get().to_string()).unwrap_or_default();
            if self.hidden_init_id.as_deref() == Some(id.as_str()) {
                self.on_hidden_initialize_result(&text, env.error.is_some());
                return;
            }
            let is_local_init = self
                .cached_initialize
                .as_ref()
                .is_some_and(|init| init.id.as_deref() == Some(id.as_str()));
            if is_local_init && let Some(version) = protocol_version(&text) {
                self.session.protocol_version = Some(version);
            }
            self.pending.remove(&id);
        }
        self.write(text);
    }

    fn on_hidden_initialize_result(&mut self, text: &str, is_error: bool) {
        self.hidden_init_id = None;
        if is_error {
            warn!("the remote refused the replayed initialize; continuing without a session");
            self.finish_reinit();
            return;
        }
        if let Some(version) = protocol_version(text) {
            self.session.protocol_version = Some(version);
        }
        match self.cached_initialized.clone() {
            Some(initialized) => {
                let hidden = Outbound {
                    seq: self.take_seq(),
                    hidden: true,
                    received: Instant::now(),
                    ..initialized
                };
                self.hidden_initialized_seq = Some(hidden.seq);
                self.send(hidden);
            }
            None => self.finish_reinit(),
        }
    }

    // ---- recovery ----------------------------------------------------------------------------

    fn become_ready(&mut self) {
        self.phase = Phase::Ready;
        for id in std::mem::take(&mut self.lost) {
            self.reply_error(&id, LOST_MESSAGE);
        }
        self.pump();
    }

    fn enter_down(&mut self, reason: String) {
        if !matches!(self.phase, Phase::Down { .. }) {
            warn!("remote server unreachable ({reason}); reconnecting");
        }
        self.disconnected
            .get_or_insert_with(|| (Instant::now(), reason));
        let retry_at = match self.active {
            Active::Sse => None,
            _ => Some(Instant::now() + self.backoff),
        };
        self.backoff = (self.backoff * 2).min(limits::RECONNECT_BACKOFF_MAX);
        self.phase = Phase::Down { retry_at };
    }

    /// Streamable HTTP, after a backoff: probe with the oldest waiting message, or replay the
    /// initialize if the session was lost, or just go back to Ready when nothing waits.
    fn retry(&mut self) {
        if self.session.id.is_none() && self.cached_initialize.is_some() && self.ever_connected {
            self.start_reinit();
        } else if let Some(first) = self.queue.pop_front() {
            self.phase = Phase::Probing { seq: first.seq };
            self.send(first);
        } else {
            self.become_ready();
        }
    }

    /// Replays the cached initialize under a proxy id (its reply stays hidden).
    fn start_reinit(&mut self) {
        self.bump_get_stream();
        let Some(init) = self.cached_initialize.clone() else {
            self.become_ready();
            return;
        };
        self.reinit_count += 1;
        let id = format!("\"mcp-proxy-reinit-{}\"", self.reinit_count);
        let text = match Envelope::parse(&init.text) {
            Ok(env) => envelope::with_id(&init.text, &env, &id),
            Err(_) => init.text.to_string(),
        };
        let hidden = Outbound {
            seq: self.take_seq(),
            text: Arc::from(text),
            id: Some(id.clone()),
            hidden: true,
            received: Instant::now(),
            ..init
        };
        self.hidden_init_id = Some(id);
        self.phase = Phase::Reinitializing;
        self.send(hidden);
    }

    fn finish_reinit(&mut self) {
        info!("session re-initialized");
        self.open_get_stream();
        self.become_ready();
    }

    /// Retires the current GET stream thread; returns the new generation.
    fn bump_get_stream(&mut self) -> u64 {
        self.get_stream_gate = None;
        self.get_stream_generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Opens the GET stream; nothing is sent until it answered (order 2).
    fn open_get_stream(&mut self) {
        if self.active != Active::Streamable {
            return;
        }
        let generation = self.bump_get_stream();
        self.get_stream_gate = Some((generation, Instant::now() + limits::GET_STREAM_HEAD_WAIT));
        streamable::open_get_stream(
            &self.remote,
            self.session.clone(),
            self.get_stream_generation.clone(),
        );
    }

    fn start_sse_stream(&mut self) -> Result<(), Error> {
        if !self.sse_stream_started {
            self.sse_stream_started = true;
            sse::start_stream(&self.remote)
                .map_err(|e| Error::io("starting the SSE stream thread", e))?;
        }
        Ok(())
    }

    // ---- time --------------------------------------------------------------------------------

    fn next_wake(&self) -> Option<Instant> {
        let mut at: Vec<Instant> = Vec::new();
        if let Phase::Down {
            retry_at: Some(retry),
        } = self.phase
        {
            at.push(retry);
        }
        if let Some(first) = self.queue.iter().find(|o| o.is_request()) {
            at.push(first.received + limits::QUEUED_REQUEST_TIMEOUT);
        }
        if let Some((since, _)) = &self.disconnected {
            at.push(*since + self.max_disconnected);
        }
        at.extend(self.gate.as_ref().map(|gate| gate.until));
        at.extend(self.get_stream_gate.map(|(_, until)| until));
        at.extend(self.closing);
        at.into_iter().min()
    }

    fn on_tick(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        if let Some((since, reason)) = &self.disconnected
            && now.duration_since(*since) >= self.max_disconnected
        {
            let message = format!(
                "unreachable for {} s (--max-disconnected); last error: {reason}",
                self.max_disconnected.as_secs()
            );
            error!("{message}");
            return Err(Error::Upstream(message));
        }
        if let Phase::Down {
            retry_at: Some(retry),
        } = self.phase
            && now >= retry
        {
            self.retry();
        }
        if let Some(gate) = &self.gate
            && now >= gate.until
        {
            debug!(
                "no response head for #{} within {:?}: sending on",
                gate.seq,
                limits::POST_HEAD_WAIT
            );
            self.gate = None;
        }
        if self.get_stream_gate.is_some_and(|(_, until)| now >= until) {
            debug!(
                "the GET stream did not answer within {:?}: sending on",
                limits::GET_STREAM_HEAD_WAIT
            );
            self.get_stream_gate = None;
        }
        self.expire_queued_requests(now);
        self.pump();
        Ok(())
    }

    /// Requests that waited too long for the remote get an error; never silence.
    fn expire_queued_requests(&mut self, now: Instant) {
        let (expired, kept): (Vec<Outbound>, Vec<Outbound>) = self
            .queue
            .drain(..)
            .partition(|o| o.is_request() && now >= o.received + limits::QUEUED_REQUEST_TIMEOUT);
        self.queue = kept.into();
        for out in expired {
            self.refuse(
                &out,
                &format!(
                    "the remote server could not be reached within {} s",
                    limits::QUEUED_REQUEST_TIMEOUT.as_secs()
                ),
            );
        }
    }

    // ---- answers -----------------------------------------------------------------------------

    /// A message that cannot be delivered: its request gets an error; with `fatal`, the program
    /// ends (a start-up failure).
    fn fail_message(
        &mut self,
        out: Option<Outbound>,
        message: &str,
        fatal: bool,
    ) -> Result<(), Error> {
        if let Some(out) = &out
            && !out.hidden
        {
            self.refuse(out, message);
        }
        if fatal {
            error!("{message}");
            return Err(Error::Upstream(message.to_string()));
        }
        warn!("{message}");
        Ok(())
    }

    /// Answers a request we will not deliver; other messages are dropped with a warning.
    fn refuse(&mut self, out: &Outbound, message: &str) {
        match (&out.id, out.kind) {
            (Some(id), Kind::Request) => {
                self.pending.remove(id);
                self.reply_error(id, message);
            }
            _ => warn!(
                "dropped {} for the remote: {message}",
                out.method.as_deref().unwrap_or("a response")
            ),
        }
    }

    fn reply_error(&mut self, id: &str, message: &str) {
        self.write(error::response(id, error::SERVER_UNAVAILABLE, message));
    }

    fn write(&self, line: String) {
        // The stdout thread outlives the bridge; a send error means we are exiting anyway.
        let _ = self.stdout.send(Out::Line(line));
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// One message per line: JSON spread over several SSE data lines is re-encoded compactly.
fn compact(text: String) -> String {
    if !text.contains(['\n', '\r']) {
        return text;
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => value.to_string(),
        Err(_) => text,
    }
}

/// `result.protocolVersion` of an initialize response.
fn protocol_version(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value
        .get("result")?
        .get("protocolVersion")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_becomes_one_line() {
        assert_eq!(
            compact("{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {}\n}".into()),
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        );
        let line = r#"{"id":1, "result":{}}"#.to_string();
        assert_eq!(
            compact(line.clone()),
            line,
            "one-line JSON passes unchanged"
        );
    }

    #[test]
    fn protocol_version_of_an_initialize_result() {
        assert_eq!(
            protocol_version(
                r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#
            )
            .as_deref(),
            Some("2025-06-18")
        );
        assert_eq!(protocol_version(r#"{"id":0,"error":{}}"#), None);
    }
}
