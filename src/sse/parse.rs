//! Server-Sent Events parser (WHATWG HTML "event stream interpretation"): bytes in, events out.
//! Pure: no sockets, no threads, no clocks. Client mode feeds it from ureq's streaming body
//! reader; tests feed it byte slices split anywhere.
//!
//! What it keeps to:
//! 1. Lines end with CRLF, LF or CR, and a CRLF may be split across two chunks.
//! 2. A line `field: value` (one optional space after the colon), in any order; a line starting
//!    with `:` is a comment; an unknown field is ignored.
//! 3. `data` lines accumulate, joined with `\n`; a blank line dispatches the event. An event
//!    without any `data` line is not dispatched, but its `id` and `retry` still count; one with
//!    an empty `data:` line is (MCP's priming event), and the caller skips it.
//! 4. `id` (without NUL) sets the last event id; `retry` (digits only) sets the reconnection delay.
//! 5. A line or an event larger than the cap is an error: the caller drops the stream.

use std::io::{self, Read};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field; `message` when absent or empty.
    pub event: String,
    pub data: String,
    /// The last event id at dispatch time (ids persist across events, per the spec).
    pub id: Option<String>,
}

/// The event stream exceeded the size cap.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub max: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SSE event larger than {} bytes", self.max)
    }
}

/// Incremental parser state for one stream.
pub struct Parser {
    max: usize,
    line: Vec<u8>,
    /// The previous chunk ended with CR: a leading LF in the next chunk belongs to it.
    after_cr: bool,
    at_stream_start: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
    retry_ms: Option<u64>,
}

impl Parser {
    /// A parser refusing lines and events larger than `max` bytes.
    pub fn new(max: usize) -> Parser {
        Parser {
            max,
            line: Vec::new(),
            after_cr: false,
            at_stream_start: true,
            data: String::new(),
            has_data: false,
            event: None,
            last_id: None,
            retry_ms: None,
        }
    }

    /// The last event id seen (for `Last-Event-ID` on reconnect).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay the server asked for with `retry:`, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Parses `chunk`, appending each completed event to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if chunk.is_empty() {
            return Ok(()); // keeps `after_cr`: the LF may still come
        }
        let mut rest = chunk;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.append_to_line(&rest[..end])?;
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
            self.line = line;
            self.line.clear();
            let was_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if was_cr {
                if rest.is_empty() {
                    self.after_cr = true;
                } else if rest[0] == b'\n' {
                    rest = &rest[1..];
                }
            }
        }
        self.append_to_line(rest)
    }

    fn append_to_line(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        if self.line.len() + bytes.len() > self.max {
            return Err(TooLarge { max: self.max });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        let line = if self.at_stream_start {
            self.at_stream_start = false;
            line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(TooLarge { max: self.max });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let event = self.event.take().filter(|e| !e.is_empty());
        if !std::mem::take(&mut self.has_data) {
            self.data.clear();
            return;
        }
        out.push(Event {
            event: event.unwrap_or_else(|| "message".to_string()),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        });
    }
}

/// Reads events from a byte stream (an HTTP body) with a [`Parser`].
pub struct EventReader<R> {
    inner: R,
    parser: Parser,
    ready: std::collections::VecDeque<Event>,
    buf: Vec<u8>,
    done: bool,
}

/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 16 * 1024;

impl<R: Read> EventReader<R> {
    pub fn new(inner: R, max: usize) -> EventReader<R> {
        EventReader {
            inner,
            parser: Parser::new(max),
            ready: std::collections::VecDeque::new(),
            buf: vec![0; READ_CHUNK],
            done: false,
        }
    }

    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    /// The next event, or `None` at the end of the stream. An event bigger than the cap is an
    /// `InvalidData` error. A half-received event at the end of the stream is dropped (spec).
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.done {
                return Ok(None);
            }
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                self.done = true;
                continue;
            }
            let mut out = Vec::new();
            self.parser
                .feed(&self.buf[..n], &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.ready.extend(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], max: usize) -> (Vec<Event>, Option<String>, Option<u64>) {
        let mut p = Parser::new(max);
        let mut out = Vec::new();
        p.feed(input, &mut out).unwrap();
        (out, p.last_id.clone(), p.retry_ms)
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> Event {
        Event {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    const STREAM: &[u8] = b"\xef\xbb\xbf: hello\r\nevent: endpoint\r\ndata: /messages/?s=1\r\n\r\n\
id: 7\rretry: 5000\rdata: \r\r\
data:{\"a\":\ndata: 1}\nid:8\n\n\
event: ping\n\n\
data\n\n\
retry: x\nfoo: bar\ndata: last\n\ndata: unterminated";

    fn expected() -> Vec<Event> {
        vec![
            ev("endpoint", "/messages/?s=1", None),
            ev("message", "", Some("7")),
            ev("message", "{\"a\":\n1}", Some("8")),
            ev("message", "", Some("8")),
            ev("message", "last", Some("8")),
        ]
    }

    #[test]
    fn fields_line_ends_comments_and_multiline_data() {
        let (events, id, retry) = parse_all(STREAM, 1000);
        assert_eq!(events, expected());
        assert_eq!(id.as_deref(), Some("8"));
        assert_eq!(retry, Some(5000));
    }

    #[test]
    fn any_split_gives_the_same_events() {
        for split in 0..=STREAM.len() {
            let mut p = Parser::new(1000);
            let mut out = Vec::new();
            p.feed(&STREAM[..split], &mut out).unwrap();
            p.feed(&STREAM[split..], &mut out).unwrap();
            assert_eq!(out, expected(), "split at {split}");
        }
        // And one byte at a time.
        let mut p = Parser::new(1000);
        let mut out = Vec::new();
        for b in STREAM {
            p.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, expected());
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        let mut p = Parser::new(100);
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out).unwrap();
        p.feed(b"\n\r", &mut out).unwrap();
        p.feed(b"\ndata: b\n\n", &mut out).unwrap();
        assert_eq!(out, [ev("message", "a", None), ev("message", "b", None)]);
    }

    /// Found by `scripts/fuzz` (target sse_parse): an empty chunk between the CR and the LF of
    /// one CRLF forgot the CR, so the LF ended a second, blank line and dispatched the event.
    #[test]
    fn empty_chunk_inside_crlf_is_no_line_end() {
        let mut p = Parser::new(100);
        let mut out = Vec::new();
        for chunk in [&b"data\r"[..], b"", b"\n"] {
            p.feed(chunk, &mut out).unwrap();
        }
        assert_eq!(out, []);
    }

    /// Found by `scripts/fuzz` (target sse_parse): `event:` with an empty value dispatched an
    /// event named "" (which callers skip) instead of `message`, as the WHATWG text says.
    #[test]
    fn empty_event_field_means_message() {
        let (events, _, _) = parse_all(b"event\ndata\r\r", 100);
        assert_eq!(events, [ev("message", "", None)]);
        let (events, _, _) = parse_all(b"event:\ndata: x\n\n", 100);
        assert_eq!(events, [ev("message", "x", None)]);
    }

    #[test]
    fn oversized_line_or_event_is_an_error() {
        let mut p = Parser::new(10);
        let mut out = Vec::new();
        assert_eq!(
            p.feed(b"data: 0123456789abc", &mut out),
            Err(TooLarge { max: 10 })
        );
        let mut p = Parser::new(10);
        assert!(
            p.feed(b"data: 0123\ndata: 4567\ndata: 89ab\n", &mut out)
                .is_err()
        );
    }

    #[test]
    fn reader_yields_events_and_ends() {
        let mut r = EventReader::new(STREAM, 1000);
        let mut got = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            got.push(e);
        }
        assert_eq!(got, expected());
        assert_eq!(r.parser().retry_ms(), Some(5000));
    }
}
