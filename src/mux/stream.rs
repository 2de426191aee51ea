//! Outbound streams to clients: the bounded channel to a connection's writer ([`StreamTx`]),
//! and the resumable SSE stream of a Streamable HTTP session ([`EventStream`]): every event
//! gets an id `<stream>-<seq>` (unique in the session, naming its stream, spec F6), and a
//! bounded buffer keeps recent events so a client that reconnects with `Last-Event-ID` gets
//! what it missed on that stream, and only that stream (spec F7, E8).
//! Never blocks (`offer` is `try_send`-like). Offered to under the mux's lock, except for
//! replies to a request (`offer_reply`, after the lock is released): a bound may then be
//! passed by one message per thread offering at the same moment.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use log::warn;

use crate::limits;

/// One message for a connection's writer.
#[derive(Debug)]
pub struct Outbound {
    /// The JSON-RPC message (empty for a priming event or an end marker).
    pub text: Arc<str>,
    /// The SSE event id, on resumable streams.
    pub id: Option<EventId>,
    /// The stream ends after this one (the response of a POST's stream).
    pub last: bool,
    /// No message: the writer sends what a direct write left over ([`DirectWrite`]).
    pub flush: bool,
    /// The counts of the channel this message waits in: it gives them back when the writer
    /// is done with it (dropped).
    queued: Option<Arc<Queued>>,
}

/// What waits in one channel, or in its writer's hands: messages not yet written. And the
/// connection's direct writer, once it allows direct writes.
#[derive(Default)]
struct Queued {
    bytes: AtomicUsize,
    messages: AtomicUsize,
    direct: OnceLock<Arc<dyn DirectWrite>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("bytes", &self.bytes)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if let Some(queued) = &self.queued {
            queued.bytes.fetch_sub(self.text.len(), Ordering::Relaxed);
            queued.messages.fetch_sub(1, Ordering::Release);
        }
    }
}

/// How a direct write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// The message is on the wire.
    Written,
    /// Part of it is: the writer must be woken to send the rest.
    Partly,
    /// Nothing was written: send it through the channel.
    No,
}

/// A connection whose messages may be written by whichever thread has one, when nothing waits
/// before it: no hand-off to the connection's own thread, no wake-up (the legacy SSE stream;
/// its implementation is the server's).
pub trait DirectWrite: Send + Sync {
    fn try_write(&self, json: &str) -> Direct;
}

impl Outbound {
    fn new(text: Arc<str>, id: Option<EventId>, last: bool) -> Outbound {
        Outbound {
            text,
            id,
            last,
            flush: false,
            queued: None,
        }
    }

    fn flush() -> Outbound {
        let mut flush = Outbound::new("".into(), None, false);
        flush.flush = true;
        flush
    }

    pub fn message(text: Arc<str>) -> Outbound {
        Outbound::new(text, None, false)
    }

    /// The response a stream was opened for: the stream may end after it.
    pub fn last(text: Arc<str>) -> Outbound {
        Outbound::new(text, None, true)
    }

    /// An event with an id and no data: the priming event of spec E8, or (`last`) the end
    /// of a stream with nothing left to replay.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// `<stream>-<seq>`: which stream of the session, and the event's place in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId {
    pub stream: u32,
    pub seq: u64,
}

impl EventId {
    pub fn parse(s: &str) -> Option<EventId> {
        let (stream, seq) = s.trim().split_once('-')?;
        Some(EventId {
            stream: stream.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.stream, self.seq)
    }
}

/// The sending half of a connection's writer, with a bound on what may wait in it: in
/// messages, and in bytes (a few large results must not pile up either).
#[derive(Clone)]
pub struct StreamTx {
    tx: Sender<Outbound>,
    cap: usize,
    queued: Arc<Queued>,
    key: StreamKey,
}

/// Names one channel, so that a connection can detach its stream without holding a sender:
/// a held sender would keep the channel open after the session dropped its own, and the
/// connection would not see the session end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKey(u64);

impl StreamKey {
    fn next() -> StreamKey {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        StreamKey(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

pub enum Offer {
    Sent,
    /// The client is not reading fast enough: `cap` messages wait already.
    Full,
    /// The writer has ended.
    Gone,
}

impl StreamTx {
    /// A channel that holds at most `cap` messages. It is crossbeam's list flavour, which
    /// allocates as it fills instead of `cap` slots up front (one is made per request);
    /// `offer` keeps it bounded: every send goes through it, under the mux lock.
    pub fn channel(cap: usize) -> (StreamTx, Receiver<Outbound>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            StreamTx {
                tx,
                cap,
                queued: Arc::default(),
                key: StreamKey::next(),
            },
            rx,
        )
    }

    /// Lets `writer` take replies offered with [`StreamTx::offer_reply`].
    pub fn allow_direct(&self, writer: Arc<dyn DirectWrite>) {
        let _ = self.queued.direct.set(writer);
    }

    pub fn offer(&self, mut message: Outbound) -> Offer {
        let bytes = self.queued.bytes.load(Ordering::Relaxed);
        // The newest message always fits an empty channel, however large.
        if self.tx.len() >= self.cap
            || (bytes > 0 && bytes + message.text.len() > limits::STREAM_QUEUE_BYTES)
        {
            return Offer::Full;
        }
        self.queued
            .bytes
            .fetch_add(message.text.len(), Ordering::Relaxed);
        self.queued.messages.fetch_add(1, Ordering::Relaxed);
        message.queued = Some(self.queued.clone());
        match self.tx.send(message) {
            Ok(()) => Offer::Sent,
            Err(_) => Offer::Gone,
        }
    }

    /// Offers a reply (`Outbound::last`), written from this thread when the connection allows
    /// it and nothing offered before waits unwritten (order is kept); only a reply that goes
    /// through the channel is copied. Call it without the mux lock: it may make a
    /// (non-blocking) system call.
    pub fn offer_reply(&self, text: &str) -> Offer {
        if let Some(direct) = self.queued.direct.get()
            && !text.is_empty()
            && self.queued.messages.load(Ordering::Acquire) == 0
        {
            match direct.try_write(text) {
                Direct::Written => return Offer::Sent,
                Direct::Partly => {
                    // The rest is the connection's: wake its thread, whatever the bounds
                    // (the marker carries no bytes).
                    self.queued.messages.fetch_add(1, Ordering::Relaxed);
                    let mut wake = Outbound::flush();
                    wake.queued = Some(self.queued.clone());
                    let _ = self.tx.send(wake);
                    return Offer::Sent;
                }
                Direct::No => {}
            }
        }
        self.offer(Outbound::last(text.into()))
    }

    pub fn key(&self) -> StreamKey {
        self.key
    }
}

/// One resumable SSE stream of a session: a POST's reply stream, or the GET stream.
pub struct EventStream {
    pub number: u32,
    /// Recent events, oldest first, for replay. Bounded by count and bytes.
    events: VecDeque<(u64, Arc<str>, bool)>,
    bytes: usize,
    next_seq: u64,
    /// The connection writing this stream now, if any.
    writer: Option<StreamTx>,
    /// The last seq handed to a writer: a GET without `Last-Event-ID` gets what came after.
    offered: u64,
    /// When the stream's last event (a POST's response) was pushed.
    pub finished_at: Option<Instant>,
}

impl EventStream {
    pub fn new(number: u32) -> EventStream {
        EventStream {
            number,
            events: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            writer: None,
            offered: 0,
            finished_at: None,
        }
    }

    pub fn has_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// Appends an event and hands it to the writer, if one is attached. Returns whether a
    /// writer took it (the event stays buffered for a resume either way).
    pub fn push(&mut self, text: Arc<str>, last: bool) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += text.len();
        self.events.push_back((seq, text.clone(), last));
        while self.events.len() > 1
            && (self.events.len() > limits::REPLAY_EVENTS || self.bytes > limits::REPLAY_BYTES)
        {
            if let Some((_, old, _)) = self.events.pop_front() {
                self.bytes -= old.len();
            }
        }
        if last {
            self.finished_at = Some(Instant::now());
        }
        let id = EventId {
            stream: self.number,
            seq,
        };
        self.offer(Outbound::new(text, Some(id), last))
    }

    fn offer(&mut self, message: Outbound) -> bool {
        let Some(writer) = &self.writer else {
            return false;
        };
        let seq = message.id.map(|id| id.seq);
        match writer.offer(message) {
            Offer::Sent => {
                if let Some(seq) = seq {
                    self.offered = seq;
                }
                true
            }
            Offer::Full => {
                warn!(
                    "stream {}: client reads too slowly; closing its connection (it may resume)",
                    self.number
                );
                self.writer = None;
                false
            }
            Offer::Gone => {
                self.writer = None;
                false
            }
        }
    }

    /// Attaches a writer: first the priming event when asked, then every buffered event
    /// after `after` (default: after what earlier writers were given), then live events.
    /// A finished stream with nothing left to send ends the writer at once.
    pub fn attach(&mut self, writer: StreamTx, after: Option<u64>, priming: bool) {
        let after = after.unwrap_or(self.offered);
        self.writer = Some(writer);
        if priming {
            let id = EventId {
                stream: self.number,
                seq: after,
            };
            self.offer(Outbound::new("".into(), Some(id), false));
        }
        if let Some((first, _, _)) = self.events.front()
            && *first > after + 1
        {
            warn!(
                "stream {}: {} event(s) after {after} are no longer buffered; resuming with a gap",
                self.number,
                first - after - 1
            );
        }
        let replay: Vec<_> = self
            .events
            .iter()
            .filter(|(seq, _, _)| *seq > after)
            .cloned()
            .collect();
        let mut ended = false;
        for (seq, text, last) in replay {
            ended |= last;
            let id = Some(EventId {
                stream: self.number,
                seq,
            });
            if !self.offer(Outbound::new(text, id, last)) {
                return;
            }
        }
        if self.finished_at.is_some() && !ended {
            self.offer(Outbound::new("".into(), None, true));
        }
    }

    /// Detaches the writer `key` names if it is still the one attached.
    pub fn detach(&mut self, key: StreamKey) {
        if self.writer.as_ref().is_some_and(|w| w.key == key) {
            self.writer = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rx: &Receiver<Outbound>) -> Vec<(Option<String>, String, bool)> {
        rx.try_iter()
            .map(|o| (o.id.map(|i| i.to_string()), o.text.to_string(), o.last))
            .collect()
    }

    #[test]
    fn event_ids_round_trip() {
        let id = EventId { stream: 3, seq: 17 };
        assert_eq!(id.to_string(), "3-17");
        assert_eq!(EventId::parse("3-17"), Some(id));
        assert_eq!(EventId::parse("x-1"), None);
        assert_eq!(EventId::parse("17"), None);
    }

    /// A connection that answers direct writes with `outcome` and records what it was given.
    struct FakeDirect {
        outcome: Direct,
        written: std::sync::Mutex<Vec<String>>,
    }

    impl DirectWrite for FakeDirect {
        fn try_write(&self, json: &str) -> Direct {
            self.written.lock().unwrap().push(json.to_string());
            self.outcome
        }
    }

    fn direct(outcome: Direct) -> Arc<FakeDirect> {
        Arc::new(FakeDirect {
            outcome,
            written: Default::default(),
        })
    }

    #[test]
    fn a_reply_goes_direct_only_when_nothing_waits_before_it() {
        let (tx, rx) = StreamTx::channel(8);
        let fake = direct(Direct::Written);
        tx.allow_direct(fake.clone());
        assert!(matches!(tx.offer_reply("r1"), Offer::Sent));
        assert_eq!(*fake.written.lock().unwrap(), ["r1"]);
        assert_eq!(rx.len(), 0, "written, not queued");
        // A queued message (held by the writer until it is dropped) keeps the next reply
        // behind it, in the channel.
        tx.offer(Outbound::message("n".into()));
        assert!(matches!(tx.offer_reply("r2"), Offer::Sent));
        assert_eq!(
            fake.written.lock().unwrap().len(),
            1,
            "no direct write past a queue"
        );
        let held = rx.recv().unwrap();
        assert_eq!(&*held.text, "n");
        assert_eq!(&*rx.recv().unwrap().text, "r2");
        // Written but not yet dropped: still counts as waiting.
        assert!(matches!(tx.offer_reply("r3"), Offer::Sent));
        assert_eq!(&*rx.recv().unwrap().text, "r3");
        drop(held);
        assert!(matches!(tx.offer_reply("r4"), Offer::Sent));
        assert_eq!(*fake.written.lock().unwrap(), ["r1", "r4"]);
    }

    #[test]
    fn a_partly_written_reply_wakes_its_writer_for_the_rest() {
        let (tx, rx) = StreamTx::channel(1);
        tx.allow_direct(direct(Direct::Partly));
        assert!(matches!(tx.offer_reply("big"), Offer::Sent));
        let wake = rx.try_recv().unwrap();
        assert!(wake.flush && wake.is_empty());
        // A direct write that takes nothing leaves the reply to the channel.
        let (tx, rx) = StreamTx::channel(1);
        tx.allow_direct(direct(Direct::No));
        assert!(matches!(tx.offer_reply("r"), Offer::Sent));
        assert_eq!(&*rx.try_recv().unwrap().text, "r");
    }

    #[test]
    fn channel_is_bounded() {
        let (tx, rx) = StreamTx::channel(2);
        assert!(matches!(
            tx.offer(Outbound::message("a".into())),
            Offer::Sent
        ));
        assert!(matches!(
            tx.offer(Outbound::message("b".into())),
            Offer::Sent
        ));
        assert!(matches!(
            tx.offer(Outbound::message("c".into())),
            Offer::Full
        ));
        assert_eq!(rx.try_iter().count(), 2);
        drop(rx);
        assert!(matches!(
            tx.offer(Outbound::message("d".into())),
            Offer::Gone
        ));
    }

    #[test]
    fn resume_replays_what_came_after_the_last_event_seen() {
        let mut s = EventStream::new(4);
        let (tx, rx) = StreamTx::channel(100);
        s.attach(tx.clone(), None, true);
        s.push("a".into(), false);
        s.push("b".into(), false);
        assert_eq!(
            texts(&rx),
            [
                (Some("4-0".into()), "".into(), false),
                (Some("4-1".into()), "a".into(), false),
                (Some("4-2".into()), "b".into(), false)
            ]
        );
        // The connection drops; the response arrives meanwhile.
        drop(rx);
        s.push("c".into(), false);
        s.push("done".into(), true);
        let (tx2, rx2) = StreamTx::channel(100);
        s.attach(tx2, Some(1), false);
        assert_eq!(
            texts(&rx2),
            [
                (Some("4-2".into()), "b".into(), false),
                (Some("4-3".into()), "c".into(), false),
                (Some("4-4".into()), "done".into(), true)
            ]
        );
        // Resuming after the end: only the end marker.
        let (tx3, rx3) = StreamTx::channel(100);
        s.attach(tx3, Some(4), false);
        assert_eq!(texts(&rx3), [(None, "".into(), true)]);
    }

    #[test]
    fn a_fresh_writer_gets_only_what_no_writer_took() {
        let mut s = EventStream::new(0);
        s.push("early".into(), false);
        let (tx, rx) = StreamTx::channel(100);
        s.attach(tx.clone(), None, false);
        s.push("live".into(), false);
        s.detach(tx.key());
        s.push("while away".into(), false);
        let (tx2, rx2) = StreamTx::channel(100);
        s.attach(tx2, None, false);
        let got: Vec<String> = texts(&rx).into_iter().map(|t| t.1).collect();
        assert_eq!(got, ["early", "live"]);
        let got: Vec<String> = texts(&rx2).into_iter().map(|t| t.1).collect();
        assert_eq!(got, ["while away"]);
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut s = EventStream::new(0);
        for i in 0..(limits::REPLAY_EVENTS + 10) {
            s.push(format!("{i}").into(), false);
        }
        assert_eq!(s.events.len(), limits::REPLAY_EVENTS);
        let big: Arc<str> = "x".repeat(limits::REPLAY_BYTES).into();
        s.push(big.clone(), false);
        s.push(big, false);
        assert!(s.bytes <= limits::REPLAY_BYTES * 2 && s.events.len() == 1);
    }
}
