//! Per-session state of the multiplexer and the outbound stream handle.
//! A session is one downstream client: a Streamable HTTP session, a legacy SSE connection, or
//! one stateless request. Everything here is touched only under the mux's lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use log::warn;

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

/// One message for a downstream stream.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A notification or request; more follows.
    Message(Arc<str>),
    /// The response to the request this stream was opened for (its stream may then end).
    Final(Arc<str>),
}

impl Outbound {
    pub fn text(&self) -> &str {
        match self {
            Outbound::Message(m) | Outbound::Final(m) => m,
        }
    }
}

/// The sending half of a downstream stream, with a bound on what may wait in it.
#[derive(Clone)]
pub struct StreamTx {
    tx: Sender<Outbound>,
    cap: usize,
}

pub enum Offer {
    Sent,
    /// The client is not reading fast enough: `cap` messages wait already.
    Full,
    /// The stream's reader has ended.
    Gone,
}

impl StreamTx {
    /// A stream that holds at most `cap` messages. The channel is crossbeam's list flavour,
    /// which allocates as it fills instead of `cap` slots up front (one is made per request);
    /// `offer` keeps it bounded: every send goes through it, under the mux lock.
    pub fn channel(cap: usize) -> (StreamTx, Receiver<Outbound>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (StreamTx { tx, cap }, rx)
    }

    pub fn offer(&self, message: Outbound) -> Offer {
        if self.tx.len() >= self.cap {
            return Offer::Full;
        }
        match self.tx.send(message) {
            Ok(()) => Offer::Sent,
            Err(_) => Offer::Gone,
        }
    }

    pub fn same_channel(&self, other: &StreamTx) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// Where the answer to one client request goes.
#[derive(Clone)]
pub struct Reply {
    pub tx: StreamTx,
    /// Whether notifications and requests related to the request may ride on the same stream
    /// (an SSE reply does; a JSON reply carries only the response).
    pub carries_related: bool,
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
    /// The stream for messages unrelated to a request: the GET stream of a Streamable HTTP
    /// session, or the one stream of a legacy SSE session.
    pub stream: Option<StreamTx>,
    /// A legacy SSE session lives exactly as long as its stream.
    pub legacy: bool,
    /// Unrelated messages waiting for a GET stream to open (Streamable HTTP only).
    backlog: VecDeque<Arc<str>>,
    pub caps: ClientCaps,
    pub initialized: bool,
    /// `logging/setLevel` of this session, as a severity rank (see [`log_rank`]).
    pub log_level: Option<u8>,
    pub subscriptions: HashSet<String>,
    /// This session's requests waiting at the child: canonical client id → proxy id.
    pub in_flight: HashMap<String, u64>,
}

impl Session {
    pub fn new(legacy: bool, stream: Option<StreamTx>) -> Session {
        Session {
            stream,
            legacy,
            backlog: VecDeque::new(),
            caps: ClientCaps::default(),
            initialized: false,
            log_level: None,
            subscriptions: HashSet::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Delivers a message not tied to a request of this session.
    pub fn deliver_unrelated(&mut self, id: SessionId, message: Arc<str>) {
        if let Some(stream) = &self.stream {
            match stream.offer(Outbound::Message(message.clone())) {
                Offer::Sent => return,
                Offer::Full => {
                    warn!("session {id}: client reads too slowly; closing its stream");
                    self.stream = None;
                }
                Offer::Gone => self.stream = None,
            }
        }
        if self.legacy {
            return; // the SSE connection is gone; so is the session, once its writer notices.
        }
        if self.backlog.len() >= limits::SESSION_BACKLOG {
            self.backlog.pop_front();
            warn!("session {id}: no stream open; dropped the oldest unread notification");
        }
        self.backlog.push_back(message);
    }

    /// Attaches a GET stream and hands it what waited for one.
    pub fn attach(&mut self, stream: StreamTx) {
        while let Some(m) = self.backlog.pop_front() {
            if !matches!(stream.offer(Outbound::Message(m)), Offer::Sent) {
                break;
            }
        }
        self.stream = Some(stream);
    }

    /// Whether a stream is attached. A stream whose writer ended is detached by that writer
    /// (and noticed by the next `offer`).
    pub fn has_live_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether `message` passes this session's `logging/setLevel`.
    pub fn wants_log(&self, level: Option<&str>) -> bool {
        match (self.log_level, level.and_then(log_rank)) {
            (Some(min), Some(rank)) => rank >= min,
            _ => true,
        }
    }
}

/// The MCP (syslog) severity order.
pub fn log_rank(level: &str) -> Option<u8> {
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
    LEVELS.iter().position(|l| *l == level).map(|i| i as u8)
}

pub fn log_level_name(rank: u8) -> &'static str {
    [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ][usize::from(rank.min(7))]
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
    fn stream_is_bounded() {
        let (tx, rx) = StreamTx::channel(2);
        assert!(matches!(
            tx.offer(Outbound::Message("a".into())),
            Offer::Sent
        ));
        assert!(matches!(
            tx.offer(Outbound::Message("b".into())),
            Offer::Sent
        ));
        assert!(matches!(
            tx.offer(Outbound::Message("c".into())),
            Offer::Full
        ));
        assert_eq!(rx.try_iter().count(), 2);
        drop(rx);
        assert!(matches!(
            tx.offer(Outbound::Message("d".into())),
            Offer::Gone
        ));
    }

    #[test]
    fn backlog_waits_for_a_stream() {
        let id = SessionId(1);
        let mut s = Session::new(false, None);
        s.deliver_unrelated(id, "one".into());
        s.deliver_unrelated(id, "two".into());
        let (tx, rx) = StreamTx::channel(10);
        s.attach(tx);
        let got: Vec<String> = rx.try_iter().map(|o| o.text().to_string()).collect();
        assert_eq!(got, ["one", "two"]);
    }

    #[test]
    fn log_filter() {
        let mut s = Session::new(false, None);
        assert!(s.wants_log(Some("debug")));
        s.log_level = log_rank("warning");
        assert!(!s.wants_log(Some("info")));
        assert!(s.wants_log(Some("error")));
        assert!(s.wants_log(None));
    }
}
