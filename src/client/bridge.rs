//! The bridge: client mode's single decision-maker. It owns the transport choice, the session
//! (id, protocol version, cached `initialize`), the queue of messages waiting for the remote,
//! and the promise that every request from stdin gets an answer. It never does IO itself:
//! transport threads do, and report back; stdout is a channel.
//!
//! The era (spec J4), once per run: when the first stdin message is an `initialize` (and
//! neither `--transport sse` nor `--protocol-era session` rules it out), a `server/discover`
//! goes first and stdin waits. A remote that speaks only 2026-07-28 is then served through
//! `modern.rs`: no session, the `initialize` answered here, each message rewritten there and
//! sent as below; otherwise the `initialize` and what followed it go on unchanged.
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

use super::modern::{self, Action, Identity, Modern, Probe};
use super::stdio::{Out, StdinMessage};
use super::streamable::{self, Session};
use super::{Remote, Report, sse};
use crate::config::{Era, Transport};
use crate::error::Error;
use crate::jsonrpc::{self, Envelope, Kind, envelope, error};
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
    /// More request headers (2026-07-28: `MCP-Protocol-Version`, `Mcp-Method`, ...); a message
    /// with any is sent without the session's headers.
    headers: Vec<(String, String)>,
    /// The id the local client knows the request by, when the remote sees another (a retry
    /// after an `InputRequiredResult`).
    reply_as: Option<String>,
}

impl Outbound {
    fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    /// The id to answer the local client with, for a request.
    fn reply_id(&self) -> Option<&String> {
        self.reply_as.as_ref().or(self.id.as_ref())
    }
}

/// The protocol era of the remote, found once per run (the run has one URL, so one origin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EraState {
    /// Nothing from stdin yet.
    Unknown,
    /// The `server/discover` probe is out; stdin waits in `held`.
    Probing,
    /// 2024-11-05 … 2025-11-25: messages pass unchanged.
    Session,
    /// 2026-07-28 only: `modern` translates.
    Modern,
}

/// The era probe in flight.
struct EraProbe {
    seq: u64,
    /// Raw JSON id of the `server/discover`.
    id: String,
    attempts: u32,
    /// Its answer was read: later reports of its POST only end it.
    decided: bool,
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
        let head_too_early = self.whole_reply && matches!(report, Report::Head { .. });
        !head_too_early && report_seq(report) == Some(self.seq)
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

    /// A start-up failure found where no error can be returned: ends the run at the next tick.
    fatal: Option<String>,
    /// `--protocol-era`.
    era_choice: Era,
    era: EraState,
    probe: Option<EraProbe>,
    /// The `initialize` the probe was made of, and who the client said it is.
    probe_init: Option<(StdinMessage, Identity)>,
    /// Stdin while the probe runs: replayed once the era is known.
    held: VecDeque<StdinMessage>,
    /// A 2026-07-28 remote's state.
    modern: Option<Modern>,
    /// Bumped to retire the current `subscriptions/listen` stream.
    listen_generation: Arc<AtomicU64>,
    /// The params of the listen stream wanted, if any.
    listen_params: Option<String>,
    /// When the listen stream is opened again after it ended.
    listen_retry_at: Option<Instant>,
    listen_backoff: Duration,
}

impl Bridge {
    pub fn new(
        remote: Arc<Remote>,
        transport: Transport,
        era: Era,
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
            fatal: None,
            era_choice: era,
            era: if transport == Transport::Sse || era == Era::Session {
                EraState::Session
            } else {
                EraState::Unknown
            },
            probe: None,
            probe_init: None,
            held: VecDeque::new(),
            modern: None,
            listen_generation: Arc::new(AtomicU64::new(0)),
            listen_params: None,
            listen_retry_at: None,
            listen_backoff: limits::RECONNECT_BACKOFF_START,
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
        let held: Vec<String> = std::mem::take(&mut self.held)
            .into_iter()
            .filter(|m| m.kind == Kind::Request)
            .filter_map(|m| m.id)
            .collect();
        let ids: Vec<String> = self.pending.drain().map(|(id, _)| id).collect();
        for id in ids
            .into_iter()
            .chain(std::mem::take(&mut self.lost))
            .chain(held)
        {
            self.reply_error(&id, &message);
        }
        self.listen_generation.fetch_add(1, Ordering::SeqCst);
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
        match self.era {
            EraState::Probing => {
                self.held.push_back(message);
                return Ok(());
            }
            EraState::Modern => {
                let actions = match self.modern.as_mut() {
                    Some(modern) => modern.on_stdin(&message, Instant::now()),
                    None => Vec::new(),
                };
                self.apply(actions);
                return Ok(());
            }
            EraState::Unknown => {
                if message.kind == Kind::Request && message.method.as_deref() == Some(INITIALIZE) {
                    self.start_probe(message);
                    return Ok(());
                }
                // Not a session-era client starting: nothing to translate for it.
                if self.era_choice == Era::Modern {
                    warn!(
                        "the client did not start with initialize: passing its messages on unchanged"
                    );
                }
                self.era = EraState::Session;
            }
            EraState::Session => {}
        }
        let out = Outbound {
            seq: self.take_seq(),
            text: Arc::from(message.text),
            kind: message.kind,
            id: message.id,
            method: message.method,
            hidden: false,
            received: Instant::now(),
            headers: Vec::new(),
            reply_as: None,
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
        // `reply_as` is unset here, so the reply comes under the message's own id.
        self.enqueue(out);
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
        let is_probe = self.probe.as_ref().is_some_and(|p| p.seq == seq);
        let session_less = is_initialize || !out.headers.is_empty();
        let headers = out.headers.clone();
        debug!(
            "-> remote: {} #{seq}{} ({} bytes)",
            out.method.as_deref().unwrap_or("response"),
            if out.hidden && !is_probe {
                " (replay)"
            } else {
                ""
            },
            out.text.len()
        );
        self.in_flight.insert(seq, out);
        // The next message waits for this one to reach the remote (order 1).
        self.gate = Some(Gate {
            seq,
            whole_reply: is_initialize || is_probe,
            until: Instant::now() + limits::POST_HEAD_WAIT,
        });
        match self.active {
            Active::Undecided | Active::Streamable => {
                // An initialize starts a session: it never carries the old one; a 2026-07-28
                // message has none.
                let session = if session_less {
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
                        headers,
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
        if let Some(probe) = &self.probe
            && report_seq(&report) == Some(probe.seq)
        {
            return self.on_probe_report(report);
        }
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
            Report::ListenMessage { generation, text } => {
                self.on_listen_message(generation, text);
                Ok(())
            }
            Report::ListenEnded {
                generation,
                reason,
                retry,
            } => {
                self.on_listen_ended(generation, reason, retry);
                Ok(())
            }
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
            } else if let Some(id) = out.reply_id().filter(|_| out.kind == Kind::Request)
                && self.pending.remove(id).is_some()
            {
                self.lost.push(id.clone());
            }
            if let (Some(modern), Some(id)) = (self.modern.as_mut(), &out.id) {
                modern.forget(id);
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
        let text = one_line(text);
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
            let id = env.id.map_or("", |id| id.get());
            if self
                .probe
                .as_ref()
                .is_some_and(|p| p.id == id && !p.decided)
            {
                self.on_probe_answer(200, &text);
                return;
            }
            if self.era == EraState::Modern
                && let Some(modern) = self.modern.as_mut()
            {
                let actions = modern.on_response(&text, &env);
                self.apply(actions);
                return;
            }
            if self.hidden_init_id.as_deref() == Some(id) {
                self.on_hidden_initialize_result(&env);
                return;
            }
            let is_local_init = self
                .cached_initialize
                .as_ref()
                .is_some_and(|init| init.id.as_deref() == Some(id));
            if is_local_init && let Some(version) = protocol_version(&env) {
                self.session.protocol_version = Some(version);
            }
            self.pending.remove(id);
        }
        self.write(text);
    }

    fn on_hidden_initialize_result(&mut self, env: &Envelope<'_>) {
        self.hidden_init_id = None;
        if env.error.is_some() {
            warn!("the remote refused the replayed initialize; continuing without a session");
            self.finish_reinit();
            return;
        }
        if let Some(version) = protocol_version(env) {
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

    // ---- the era (spec J4) ---------------------------------------------------------------------

    /// The local client's `initialize` came first: ask the remote `server/discover` before it.
    fn start_probe(&mut self, initialize: StdinMessage) {
        let identity = Identity::from_initialize(&initialize.text);
        if let Some(id) = &initialize.id {
            // Answered with an error at the end if the run ends first.
            self.pending.insert(id.clone(), 0);
        }
        self.era = EraState::Probing;
        self.probe_init = Some((initialize, identity));
        self.send_probe(0);
    }

    fn send_probe(&mut self, attempts: u32) {
        let seq = self.take_seq();
        let id = jsonrpc::quote(&format!("mcp-proxy-discover-{seq}"));
        let Some((_, identity)) = &self.probe_init else {
            return;
        };
        let text = modern::discover_request(&id, identity);
        self.probe = Some(EraProbe {
            seq,
            id: id.clone(),
            attempts: attempts + 1,
            decided: false,
        });
        self.phase = Phase::Probing { seq };
        self.send(Outbound {
            seq,
            text: Arc::from(text),
            kind: Kind::Request,
            id: Some(id),
            method: Some("server/discover".into()),
            hidden: true,
            received: Instant::now(),
            headers: modern::discover_headers(),
            reply_as: None,
        });
    }

    /// A report about the probe's POST.
    fn on_probe_report(&mut self, report: Report) -> Result<(), Error> {
        let decided = self.probe.as_ref().is_some_and(|p| p.decided);
        let seq = report_seq(&report);
        if !matches!(report, Report::Head { .. }) {
            if let Some(seq) = seq {
                self.in_flight.remove(&seq);
            }
            if decided {
                self.probe = None;
                return Ok(());
            }
        }
        match report {
            // The answer is still to come (a Message or the end of the POST).
            Report::Head { .. } => Ok(()),
            Report::Answered { status, answer, .. } => {
                self.on_probe_answer(status, &answer);
                Ok(())
            }
            Report::Refused { status, reason, .. } if matches!(status, 401 | 403) => {
                self.fail_probe(&format!(
                    "the remote server rejected our credentials (HTTP {status}): {reason}"
                ));
                Ok(())
            }
            Report::AuthFailed { reason, .. } => {
                self.fail_probe(&format!(
                    "cannot authenticate to the remote server: {reason}"
                ));
                Ok(())
            }
            Report::Refused { status, .. } => {
                self.probe_done(Probe::Session(format!("HTTP {status}")));
                Ok(())
            }
            // Unreachable, or cut off: the initialize meets the same fate, handled as always.
            Report::NotDelivered { reason, .. } | Report::Lost { reason, .. } => {
                self.probe_done(Probe::Session(reason));
                Ok(())
            }
            _ => {
                self.probe_done(Probe::Session("no answer to server/discover".into()));
                Ok(())
            }
        }
    }

    fn on_probe_answer(&mut self, status: u16, text: &str) {
        self.probe_done(modern::classify(status, text));
    }

    /// What the probe found decides the era; the held messages go on.
    fn probe_done(&mut self, outcome: Probe) {
        let attempts = self.probe.as_ref().map_or(0, |p| p.attempts);
        if let Some(probe) = self.probe.as_mut() {
            probe.decided = true;
        }
        match outcome {
            Probe::Discovered(result) => {
                if self.era_choice == Era::Auto && modern::speaks_session_era(&result) {
                    self.enter_session_era(
                        "it speaks 2026-07-28 and the client's era: nothing to translate",
                    );
                } else {
                    self.enter_modern_era(&result);
                }
            }
            Probe::Retry if attempts <= limits::DISCOVER_RETRIES => {
                debug!("server/discover refused as an unsupported version: asking again");
                self.send_probe(attempts);
            }
            Probe::Retry => self.probe_failed_or_session(
                "it keeps refusing 2026-07-28 as unsupported while listing it",
            ),
            Probe::NoCommonVersion(versions) => {
                let message = format!(
                    "the remote server speaks only protocol versions {}; mcp-proxy speaks {} and {}",
                    versions.join(", "),
                    modern::VERSION,
                    jsonrpc::SUPPORTED_VERSIONS.join(", ")
                );
                self.fail_probe(&message);
            }
            Probe::Session(why) => self.probe_failed_or_session(&why),
        }
    }

    fn probe_failed_or_session(&mut self, why: &str) {
        if self.era_choice == Era::Modern {
            self.fail_probe(&format!(
                "the remote server does not speak 2026-07-28: {why}"
            ));
        } else {
            self.enter_session_era(why);
        }
    }

    /// The probe ends the run (a start-up failure): the initialize gets the error, and the
    /// next tick ends the bridge.
    fn fail_probe(&mut self, message: &str) {
        self.era = EraState::Session;
        if let Some((init, _)) = self.probe_init.take()
            && let Some(id) = init.id
        {
            self.pending.remove(&id);
            self.reply_error(&id, message);
        }
        error!("{message}");
        self.fatal = Some(message.to_string());
    }

    fn enter_session_era(&mut self, why: &str) {
        info!(
            "remote: the session era ({})",
            crate::logging::escape_control(why)
        );
        self.era = EraState::Session;
        self.phase = Phase::Idle;
        let Some((init, _)) = self.probe_init.take() else {
            return;
        };
        if let Some(id) = &init.id {
            self.pending.remove(id);
        }
        let held = std::mem::take(&mut self.held);
        for message in std::iter::once(init).chain(held) {
            // Cannot fail in the session era: on_stdin only queues.
            let _ = self.on_stdin(message);
        }
    }

    fn enter_modern_era(&mut self, discovered: &serde_json::Value) {
        info!("remote speaks 2026-07-28: translating for the client's session era");
        self.era = EraState::Modern;
        self.active = Active::Streamable;
        self.mark_connected();
        let Some((init, identity)) = self.probe_init.take() else {
            return;
        };
        let mut modern = Modern::new(identity, discovered);
        let actions = modern.start(&init);
        self.modern = Some(modern);
        self.become_ready();
        self.apply(actions);
        for message in std::mem::take(&mut self.held) {
            // Cannot fail in the modern era: on_stdin only queues or answers.
            let _ = self.on_stdin(message);
        }
    }

    /// Carries out what the modern era's translation asks for.
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Write(line) => self.write(line),
                Action::Answer { local_id, line } => {
                    self.pending.remove(&local_id);
                    self.write(line);
                }
                Action::Send(post) => {
                    let out = Outbound {
                        seq: self.take_seq(),
                        text: Arc::from(post.text),
                        kind: post.kind,
                        id: post.wire_id,
                        method: Some(post.method),
                        hidden: false,
                        received: Instant::now(),
                        headers: post.headers,
                        reply_as: post.local_id,
                    };
                    self.enqueue(out);
                }
                Action::Listen(params) => {
                    self.listen_params = params;
                    self.listen_backoff = limits::RECONNECT_BACKOFF_START;
                    self.open_listen();
                }
            }
        }
        self.pump();
    }

    // ---- change notifications (2026-07-28) ------------------------------------------------------

    /// Retires the current listen stream and opens the one wanted, if any.
    fn open_listen(&mut self) {
        let generation = self.listen_generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.listen_retry_at = None;
        let Some(params) = &self.listen_params else {
            return;
        };
        let id = jsonrpc::quote(&format!("mcp-proxy-listen-{generation}"));
        let (text, headers) = Modern::listen_request(&id, params);
        debug!("opening subscriptions/listen #{generation}");
        streamable::listen(
            &self.remote,
            streamable::ListenJob {
                text,
                headers,
                generation: self.listen_generation.clone(),
            },
        );
    }

    fn on_listen_message(&mut self, generation: u64, text: String) {
        if generation != self.listen_generation.load(Ordering::SeqCst) {
            return;
        }
        let text = one_line(text);
        let Ok(env) = Envelope::parse(&text) else {
            warn!("dropped an invalid message from the listen stream");
            return;
        };
        self.listen_backoff = limits::RECONNECT_BACKOFF_START;
        let actions = match self.modern.as_mut() {
            Some(modern) => modern.on_listen_message(&text, &env),
            None => Vec::new(),
        };
        self.apply(actions);
    }

    fn on_listen_ended(&mut self, generation: u64, reason: String, retry: bool) {
        if generation != self.listen_generation.load(Ordering::SeqCst)
            || self.listen_params.is_none()
        {
            return;
        }
        if retry {
            debug!("subscriptions/listen ended ({reason}); opening it again");
            self.listen_retry_at = Some(Instant::now() + self.listen_backoff);
            self.listen_backoff = (self.listen_backoff * 2).min(limits::RECONNECT_BACKOFF_MAX);
        } else {
            self.listen_params = None;
            let actions = match self.modern.as_mut() {
                Some(modern) => modern.on_listen_refused(&reason),
                None => Vec::new(),
            };
            self.apply(actions);
        }
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
        at.extend(self.listen_retry_at);
        at.extend(self.modern.as_ref().and_then(Modern::next_deadline));
        at.into_iter().min()
    }

    fn on_tick(&mut self) -> Result<(), Error> {
        if let Some(message) = self.fatal.take() {
            return Err(Error::Upstream(message));
        }
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
        if self.listen_retry_at.is_some_and(|at| now >= at) {
            self.listen_retry_at = None;
            self.open_listen();
        }
        if let Some(modern) = self.modern.as_mut() {
            let actions = modern.on_tick(now);
            self.apply(actions);
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

    /// Queues `out` for the remote (a request's reply is then awaited under its reply id), or
    /// refuses it when the outage queue is full.
    fn enqueue(&mut self, out: Outbound) {
        if out.is_request()
            && let Some(id) = out.reply_id()
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
    }

    /// Answers a request we will not deliver; other messages are dropped with a warning.
    fn refuse(&mut self, out: &Outbound, message: &str) {
        if let (Some(modern), Some(id)) = (self.modern.as_mut(), &out.id) {
            modern.forget(id);
        }
        match (out.reply_id(), out.kind) {
            (Some(id), Kind::Request) => {
                let id = id.clone();
                self.pending.remove(&id);
                self.reply_error(&id, message);
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

/// The POST a report is about, if it is about one.
fn report_seq(report: &Report) -> Option<u64> {
    match report {
        Report::Head { seq, .. }
        | Report::Done { seq }
        | Report::NotDelivered { seq, .. }
        | Report::Lost { seq, .. }
        | Report::Answered { seq, .. }
        | Report::Refused { seq, .. }
        | Report::AuthFailed { seq, .. }
        | Report::SessionExpired { seq: Some(seq) } => Some(*seq),
        _ => None,
    }
}

/// One message per line: a message spread over several lines (SSE data lines, pretty-printed
/// JSON) loses its line breaks and the indentation after them. Every other byte stays as the
/// remote wrote it: never decoded and encoded again (a big integer, `1.50`, `\u00e9` pass).
/// JSON allows no raw line break inside a string, so text with one is left alone (and refused
/// as invalid); a break between two word characters (`1\n2`) becomes a space, so invalid text
/// stays invalid.
fn one_line(text: String) -> String {
    if !text.contains(['\n', '\r']) {
        return text;
    }
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-');
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\n' | '\r' => return text,
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '\n' || c == '\r' {
            while chars
                .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
                .is_some()
            {}
            if out.ends_with(word) && chars.peek().copied().is_some_and(word) {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `result.protocolVersion` of an initialize response (only that member is read).
fn protocol_version(env: &Envelope<'_>) -> Option<String> {
    let version = envelope::param_of(env.result?, "protocolVersion")?;
    serde_json::from_str(version.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_becomes_one_line_with_its_bytes_kept() {
        assert_eq!(
            one_line("{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 1,\n  \"result\": {}\n}".into()),
            r#"{"jsonrpc": "2.0","id": 1,"result": {}}"#
        );
        assert_eq!(
            one_line(
                "{\"a\":\n 1.50,\n\"b\":\n\"\\u00e9\\\"\\n\",\"c\":123456789012345678901234567890}"
                    .into()
            ),
            r#"{"a":1.50,"b":"\u00e9\"\n","c":123456789012345678901234567890}"#
        );
        let line = r#"{"id":1, "result":{}}"#.to_string();
        assert_eq!(
            one_line(line.clone()),
            line,
            "one-line JSON passes unchanged"
        );
        // Invalid stays invalid: a raw break in a string, two numbers apart.
        let broken = "{\"a\":\"x\ny\"}".to_string();
        assert_eq!(one_line(broken.clone()), broken);
        assert_eq!(one_line("[1\n  2]".into()), "[1 2]");
    }

    #[test]
    fn protocol_version_of_an_initialize_result() {
        let version = |text| protocol_version(&Envelope::parse(text).unwrap());
        assert_eq!(
            version(r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#)
                .as_deref(),
            Some("2025-06-18")
        );
        assert_eq!(version(r#"{"id":0,"error":{}}"#), None);
        assert_eq!(version(r#"{"id":0,"result":{"protocolVersion":7}}"#), None);
    }
}
