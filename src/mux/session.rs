//! Per-session state of the multiplexer and the outbound stream handle.
//! A session is one downstream client: a Streamable HTTP session, a legacy SSE connection, or
//! one stateless request. Everything here is touched only under the mux's lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::warn;

use super::stream::{EventId, EventStream, Offer, Outbound, StreamKey, StreamTx};
use crate::limits;

/// A downstream session's key: 128 random bits, shown as 32 hex digits (`Mcp-Session-Id`,
/// `session_id=`). Unguessable, so it can be handed out as a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub u128);

impl SessionId {
    pub fn random() -> SessionId {
        SessionId(crate::random::u128())
    }

    /// Parses exactly 32 hex digits.
    pub fn parse(s: &str) -> Option<SessionId> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(SessionId)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Where the answer to one client request goes.
#[derive(Clone)]
pub enum Reply {
    /// Straight to a connection: a JSON reply (the response only), or the one stream of a
    /// legacy SSE session (everything).
    Direct { tx: StreamTx, carries_related: bool },
    /// A resumable SSE stream of the session, by number: the response and everything related.
    Stream(u32),
}

impl Reply {
    /// Whether notifications and requests related to the request may ride along.
    pub fn carries_related(&self) -> bool {
        match self {
            Reply::Direct {
                carries_related, ..
            } => *carries_related,
            Reply::Stream(_) => true,
        }
    }
}

/// What the client declared it can do in its `initialize`.
#[derive(Clone, Copy, Default, Debug)]
pub struct ClientCaps {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientCaps {
    /// Whether a client with these capabilities may receive a request of `method`.
    pub fn accepts(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            // ping and requests of methods we do not know: any initialized client.
            _ => true,
        }
    }
}

pub struct Session {
    /// A legacy SSE session lives exactly as long as its one stream.
    pub legacy: bool,
    /// The one stream of a legacy SSE session.
    legacy_stream: Option<StreamTx>,
    /// The resumable streams of a Streamable HTTP session: POST replies and the GET stream.
    streams: Vec<EventStream>,
    next_stream: u32,
    /// Which of `streams` carries messages unrelated to a request (the GET stream).
    get_stream: Option<u32>,
    pub caps: ClientCaps,
    pub initialized: bool,
    /// The protocol version agreed at `initialize`.
    pub protocol_version: Option<String>,
    /// `logging/setLevel` of this session, as a severity rank (see [`log_rank`]).
    pub log_level: Option<u8>,
    pub subscriptions: HashSet<String>,
    /// This session's requests waiting at the child: canonical client id → proxy id.
    pub in_flight: HashMap<String, u64>,
    /// When the client last sent something or opened a stream.
    pub last_used: Instant,
    /// A 2026-07-28 request (stateless: one request, one session), not a handshake session.
    pub modern: bool,
    /// The capabilities and `clientInfo` the client declared, raw JSON (for a 2026-07-28
    /// child, which wants them on every request).
    pub caps_raw: Option<Box<str>>,
    pub client_info_raw: Option<Box<str>>,
    /// A 2026-07-28 `subscriptions/listen` stream this session holds open.
    pub listen: Option<Listen>,
}

/// What a `subscriptions/listen` request opted in to, and where its notifications go.
pub struct Listen {
    /// The listen request's id, raw JSON: the `io.modelcontextprotocol/subscriptionId`.
    pub id: Box<str>,
    pub reply: Reply,
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

/// Why a stream could not be attached.
pub enum AttachError {
    /// The GET stream already has a connection.
    AlreadyOpen,
    /// `Last-Event-ID` names no stream of this session (or one long gone).
    UnknownEvent,
}

impl Session {
    pub fn new(legacy_stream: Option<StreamTx>) -> Session {
        Session {
            legacy: legacy_stream.is_some(),
            legacy_stream,
            streams: Vec::new(),
            next_stream: 0,
            get_stream: None,
            caps: ClientCaps::default(),
            initialized: false,
            protocol_version: None,
            log_level: None,
            subscriptions: HashSet::new(),
            in_flight: HashMap::new(),
            last_used: Instant::now(),
            modern: false,
            caps_raw: None,
            client_info_raw: None,
            listen: None,
        }
    }

    /// A session for one 2026-07-28 request, with the capabilities and log level its `_meta`
    /// declares (no log level: no log messages at all, as that revision requires).
    pub fn modern(caps: ClientCaps, log_level: Option<u8>) -> Session {
        let mut s = Session::new(None);
        s.modern = true;
        s.initialized = true;
        s.caps = caps;
        s.log_level = Some(log_level.unwrap_or(NO_LOGS));
        s
    }

    /// The reply that goes to the legacy SSE stream.
    pub fn legacy_reply(&self) -> Option<Reply> {
        self.legacy_stream.clone().map(|tx| Reply::Direct {
            tx,
            carries_related: true,
        })
    }

    /// Whether the client agreed to a protocol version with resumable streams (2025-11-25 on):
    /// only those clients are sent priming events, which older SDKs cannot parse.
    fn wants_priming(&self) -> bool {
        self.protocol_version
            .as_deref()
            .is_some_and(|v| v >= "2025-11-25")
    }

    /// Opens a POST's reply stream, written by `writer`; returns its number.
    pub fn open_stream(&mut self, writer: StreamTx) -> u32 {
        self.last_used = Instant::now();
        self.make_room();
        let number = self.next_stream;
        self.next_stream += 1;
        let mut stream = EventStream::new(number);
        stream.attach(writer, None, self.wants_priming());
        self.streams.push(stream);
        number
    }

    /// Keeps the number of streams bounded: drops the oldest finished one, if need be.
    fn make_room(&mut self) {
        if self.streams.len() < limits::STREAMS_PER_SESSION {
            return;
        }
        if let Some(i) = self.streams.iter().position(|s| s.finished_at.is_some()) {
            self.streams.remove(i);
        }
    }

    fn stream_mut(&mut self, number: u32) -> Option<&mut EventStream> {
        self.streams.iter_mut().find(|s| s.number == number)
    }

    /// Delivers to a resumable stream of this session: to its connection if one is attached,
    /// and to its buffer for a resume either way. False when the stream is gone.
    pub fn push(&mut self, number: u32, message: Outbound) -> bool {
        match self.stream_mut(number) {
            Some(stream) => {
                stream.push(message.text.clone(), message.last);
                true
            }
            None => false,
        }
    }

    /// Delivers a message not tied to a request of this session: on the legacy stream, or
    /// on the GET stream (buffered until a GET connection takes it).
    pub fn deliver_unrelated(&mut self, id: SessionId, message: Arc<str>) {
        if self.modern {
            return; // a 2026-07-28 client gets unrelated messages only on a listen stream
        }
        if self.legacy {
            if let Some(stream) = &self.legacy_stream {
                match stream.offer(Outbound::message(message)) {
                    Offer::Sent => {}
                    Offer::Full => {
                        warn!("session {id}: client reads too slowly; closing its stream");
                        self.legacy_stream = None;
                    }
                    Offer::Gone => self.legacy_stream = None,
                }
            }
            return;
        }
        let number = self.get_stream_number();
        if let Some(stream) = self.stream_mut(number) {
            stream.push(message, false);
        }
    }

    fn get_stream_number(&mut self) -> u32 {
        if let Some(n) = self.get_stream {
            return n;
        }
        let number = self.next_stream;
        self.next_stream += 1;
        self.streams.push(EventStream::new(number));
        self.get_stream = Some(number);
        number
    }

    /// Attaches a GET connection: to the stream `Last-Event-ID` names (resuming after it), or
    /// to the GET stream (getting what no connection took yet).
    pub fn attach_get(
        &mut self,
        writer: StreamTx,
        last_event: Option<EventId>,
    ) -> Result<u32, AttachError> {
        self.last_used = Instant::now();
        let priming = self.wants_priming();
        if let Some(event) = last_event {
            let stream = self
                .stream_mut(event.stream)
                .ok_or(AttachError::UnknownEvent)?;
            stream.attach(writer, Some(event.seq), false);
            return Ok(event.stream);
        }
        let number = self.get_stream_number();
        let stream = self.stream_mut(number).expect("just made");
        if stream.has_writer() {
            return Err(AttachError::AlreadyOpen);
        }
        stream.attach(writer, None, priming);
        Ok(number)
    }

    /// Detaches a connection that ended, if it is still the one attached to stream `number`.
    pub fn detach(&mut self, number: u32, writer: StreamKey) {
        if let Some(stream) = self.stream_mut(number) {
            stream.detach(writer);
        }
    }

    /// Forgets stream `number` (its request never went anywhere).
    pub fn discard(&mut self, number: u32) {
        self.streams.retain(|s| s.number != number);
    }

    /// Whether some connection can carry unrelated messages to this client right now.
    pub fn has_live_stream(&self) -> bool {
        match self.get_stream {
            _ if self.legacy => self.legacy_stream.is_some(),
            Some(n) => self.streams.iter().any(|s| s.number == n && s.has_writer()),
            None => false,
        }
    }

    /// Drops finished streams nobody resumed within the grace period.
    pub fn prune(&mut self, now: Instant) {
        self.streams.retain(|s| {
            s.has_writer()
                || s.finished_at
                    .is_none_or(|at| now.duration_since(at) < limits::RESUME_GRACE)
        });
    }

    /// A Streamable HTTP session whose client shows no sign of life: no connection open,
    /// nothing in flight, nothing sent for `limit`. (A legacy session ends with its stream.)
    pub fn is_idle(&self, now: Instant, limit: Duration) -> bool {
        !self.legacy
            && !self.streams.iter().any(EventStream::has_writer)
            && self.in_flight.is_empty()
            && now.duration_since(self.last_used) >= limit
    }

    /// Whether `message` passes this session's `logging/setLevel`.
    pub fn wants_log(&self, level: Option<&str>) -> bool {
        match (self.log_level, level.and_then(log_rank)) {
            (Some(NO_LOGS), _) => false,
            (Some(min), Some(rank)) => rank >= min,
            _ => true,
        }
    }
}

/// A log level above every real one: the session wants no log messages.
pub const NO_LOGS: u8 = u8::MAX;

/// The MCP (syslog) severity order, least severe first: a level's rank is its index.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The rank of a level name.
pub fn log_rank(level: &str) -> Option<u8> {
    LEVELS.iter().position(|l| *l == level).map(|i| i as u8)
}

/// The name of a rank (past the most severe: the most severe).
pub fn log_level_name(rank: u8) -> &'static str {
    LEVELS[usize::from(rank).min(LEVELS.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_reject_junk() {
        let id = SessionId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(SessionId::parse(&text), Some(id));
        assert_eq!(SessionId::parse("xyz"), None);
        assert_eq!(SessionId::parse(&"g".repeat(32)), None);
        assert_ne!(SessionId::random(), SessionId::random());
    }

    #[test]
    fn unrelated_messages_wait_for_a_get_connection() {
        let id = SessionId(1);
        let mut s = Session::new(None);
        s.deliver_unrelated(id, "one".into());
        s.deliver_unrelated(id, "two".into());
        let (tx, rx) = StreamTx::channel(10);
        assert!(s.attach_get(tx.clone(), None).is_ok());
        let got: Vec<String> = rx.try_iter().map(|o| o.text.to_string()).collect();
        assert_eq!(got, ["one", "two"]);
        assert!(s.has_live_stream());
        let (tx2, _rx2) = StreamTx::channel(10);
        assert!(matches!(
            s.attach_get(tx2, None),
            Err(AttachError::AlreadyOpen)
        ));
    }

    #[test]
    fn log_filter() {
        let mut s = Session::new(None);
        assert!(s.wants_log(Some("debug")));
        s.log_level = log_rank("warning");
        assert!(!s.wants_log(Some("info")));
        assert!(s.wants_log(Some("error")));
        assert!(s.wants_log(None));
    }
}
