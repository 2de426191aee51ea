//! Answering a `tiny_http::Request`: plain responses, JSON-RPC error bodies, and SSE streams
//! that own the socket and flush every event (tiny_http's chunked `Response` would sit in a
//! buffer). Every path ends in an explicit response; an automatic 500 would mean a bug here.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use log::debug;
use tiny_http::{Header, Request, Response};

use crate::jsonrpc::error as rpc;
use crate::mux::{Direct, DirectWrite};
use crate::sse::encode;

/// Extra headers every response of one request carries (CORS).
pub type Extra = Vec<Header>;

pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| Header::from_bytes("X-Invalid-Header", "1").expect("valid header"))
}

/// The value of request header `name` (case-insensitive), if present.
pub fn request_header<'a>(rq: &'a Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

pub fn send(rq: Request, status: u16, content_type: Option<&str>, body: Vec<u8>, extra: &[Header]) {
    let mut response = Response::from_data(body).with_status_code(status);
    if let Some(ct) = content_type {
        response.add_header(header("Content-Type", ct));
    }
    for h in extra {
        response.add_header(h.clone());
    }
    if let Err(e) = rq.respond(response) {
        debug!("response not delivered: {e}");
    }
}

pub fn text(rq: Request, status: u16, body: &str, extra: &[Header]) {
    send(
        rq,
        status,
        Some("text/plain; charset=utf-8"),
        body.as_bytes().to_vec(),
        extra,
    );
}

pub fn json(rq: Request, status: u16, body: &str, extra: &[Header]) {
    send(
        rq,
        status,
        Some("application/json"),
        body.as_bytes().to_vec(),
        extra,
    );
}

/// An HTTP error whose body is a JSON-RPC error without an id.
pub fn rpc_error(rq: Request, status: u16, code: i64, message: &str, extra: &[Header]) {
    json(rq, status, &rpc::response("null", code, message), extra);
}

pub fn empty(rq: Request, status: u16, extra: &[Header]) {
    send(rq, status, None, Vec::new(), extra);
}

/// Whether the request's `Content-Type` is `application/json` (parameters aside); `None`
/// without one.
pub fn content_type_is_json(rq: &Request) -> Option<bool> {
    request_header(rq, "Content-Type").map(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Why a body could not be read.
pub enum BodyError {
    TooLarge,
    Io(io::Error),
}

/// Reads the request body, refusing more than `max` bytes before buffering them.
pub fn read_body(rq: &mut Request, max: usize) -> Result<Vec<u8>, BodyError> {
    if rq.body_length().is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0).min(max));
    rq.as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(BodyError::Io)?;
    if body.len() > max {
        return Err(BodyError::TooLarge);
    }
    Ok(body)
}

/// An open SSE response. Owns the socket; each event is one chunk. An event goes out at once
/// unless queued; queued events (and a deferred head) go out with the next one sent, so a
/// burst is one write, and a POST's head, response and end are one write.
pub struct SseStream {
    out: Box<dyn Write + Send>,
    chunked: bool,
    /// Encoded, not yet written.
    pending: Vec<u8>,
    /// The connection's socket, to watch for the client hanging up (`hangup`).
    socket_fd: Option<i32>,
    /// The body was ended in order.
    finished: bool,
    /// Shared with threads that write messages themselves ([`SseStream::allow_direct`]).
    sink: Option<Arc<Sink>>,
}

/// Queued bytes beyond which a queued event is sent anyway.
const MAX_PENDING: usize = 64 * 1024;

impl SseStream {
    /// Takes the request's socket for an SSE body. The head waits for the first write
    /// ([`SseStream::send_pending`] or an event), so it goes out with the first event. HTTP/1.0
    /// clients get a close-delimited body.
    pub fn start(rq: Request, extra: &[Header]) -> SseStream {
        let chunked = rq.http_version() >= &tiny_http::HTTPVersion(1, 1);
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\n\
             Content-Type: text/event-stream\r\n\
             Cache-Control: no-cache, no-transform\r\n\
             X-Accel-Buffering: no\r\n",
        );
        head.push_str(if chunked {
            "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
        for h in extra {
            // Writing to a String cannot fail.
            let _ = write!(head, "{}: {}\r\n", h.field, h.value);
        }
        head.push_str("\r\n");
        let mut pending = Vec::with_capacity(1024);
        pending.extend_from_slice(head.as_bytes());
        let socket_fd = rq.socket_fd();
        SseStream {
            out: rq.into_writer(),
            chunked,
            pending,
            socket_fd,
            finished: false,
            sink: None,
        }
    }

    /// Lets other threads write messages straight to the socket while this stream has nothing
    /// of its own to send ([`Sink`]); `None` when the socket is not ours to write (no fd).
    pub fn allow_direct(&mut self) -> Option<Arc<Sink>> {
        let fd = self.socket_fd?;
        let sink = Arc::new(Sink {
            fd,
            chunked: self.chunked,
            state: Mutex::new(SinkState {
                busy: !self.pending.is_empty(),
                ..SinkState::default()
            }),
        });
        self.sink = Some(sink.clone());
        Some(sink)
    }

    /// The connection's socket (open while this stream lives), if plain TCP or Unix.
    pub fn socket_fd(&self) -> Option<i32> {
        self.socket_fd
    }

    /// Queues a message to go out with the next write; sends at once past `MAX_PENDING`.
    pub fn queue_message(&mut self, id: Option<&str>, json: &str) -> io::Result<()> {
        self.append(|buf| encode::message(buf, id, json))?;
        if self.pending.len() > MAX_PENDING {
            self.send_pending()?;
        }
        Ok(())
    }

    /// Writes what is queued, if anything, and flushes: first what a direct write left.
    pub fn send_pending(&mut self) -> io::Result<()> {
        let leftover = match &self.sink {
            Some(sink) => sink.begin_send(!self.pending.is_empty()),
            None => Some(Vec::new()),
        };
        let Some(leftover) = leftover.filter(|l| !l.is_empty() || !self.pending.is_empty()) else {
            return Ok(());
        };
        let written = self
            .out
            .write_all(&leftover)
            .and_then(|()| self.out.write_all(&self.pending))
            .and_then(|()| self.out.flush());
        self.pending.clear();
        if let Some(sink) = &self.sink {
            let mut state = sink.lock();
            state.busy = false;
            state.closed |= written.is_err();
        }
        written
    }

    pub fn message(&mut self, id: Option<&str>, json: &str) -> io::Result<()> {
        self.emit(|buf| encode::message(buf, id, json))
    }

    pub fn event(&mut self, name: &str, data: &str) -> io::Result<()> {
        self.emit(|buf| encode::event(buf, Some(name), None, data))
    }

    /// The priming event of a resumable stream (spec E8): an id, a reconnection delay, no data.
    pub fn priming(&mut self, id: &str, retry_ms: u64) -> io::Result<()> {
        self.emit(|buf| encode::priming(buf, id, retry_ms))
    }

    pub fn comment(&mut self, text: &str) -> io::Result<()> {
        self.emit(|buf| encode::comment(buf, text))
    }

    /// Sends one event now, with whatever was queued before it.
    fn emit(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        self.append(encode)?;
        self.send_pending()
    }

    /// Encodes one event onto `pending`, as one chunk.
    fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            // From now until it is written, direct writes would overtake it.
            sink.lock().busy = true;
        }
        append_event(&mut self.pending, self.chunked, encode)
    }

    /// Ends the body. A chunked one leaves the connection usable for the next request; a
    /// close-delimited one (HTTP/1.0) ends only when we close our side, which tiny_http would
    /// not do while the client asks for keep-alive.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(sink) = &self.sink {
            // No direct write may follow the end of the body.
            let leftover = sink.close();
            self.pending.splice(0..0, leftover);
        }
        if self.chunked {
            self.pending.extend_from_slice(b"0\r\n\r\n");
        }
        let sent = if self.pending.is_empty() {
            self.out.flush()
        } else {
            self.send_pending()
        };
        if !self.chunked {
            self.shut_down(libc::SHUT_WR);
        }
        self.finished = true;
        sent
    }

    fn shut_down(&self, how: i32) {
        if let Some(fd) = self.socket_fd {
            // SAFETY: the socket is open while this stream lives; shutdown does not close it.
            unsafe { libc::shutdown(fd, how) };
        }
    }
}

/// A stream dropped before `finish` ended its body short: the connection cannot carry another
/// response, so it is shut down and its thread freed at once (not after a read timeout).
impl Drop for SseStream {
    fn drop(&mut self) {
        // Before the socket closes (fields drop after this): its fd may be reused at once.
        if let Some(sink) = &self.sink {
            sink.close();
        }
        if !self.finished {
            self.shut_down(libc::SHUT_RDWR);
        }
    }
}

/// Encodes one event onto `buf`; as one chunk when `chunked`.
fn append_event(
    buf: &mut Vec<u8>,
    chunked: bool,
    encode: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let start = buf.len();
    if chunked {
        // Room for the chunk-size line, filled in below once the length is known.
        buf.extend_from_slice(b"00000000\r\n");
    }
    encode(buf)?;
    if chunked {
        let len = buf.len() - start - 10;
        // Eight hex digits always fit the eight bytes kept for them (an event is far below
        // 4 GiB: its message was capped).
        write!(&mut buf[start..start + 8], "{len:08x}")?;
        buf.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// The socket of an SSE stream, for threads that write messages to it themselves: the child's
/// stdout thread writes a legacy session's replies without waking the stream's thread, which
/// on a busy host saves a context switch per message. A direct write happens only while the
/// stream has nothing of its own to send, with a send that cannot block; what the socket does
/// not take at once is left for the stream's thread, which sends it before anything else.
pub struct Sink {
    fd: i32,
    chunked: bool,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    /// The stream's thread has bytes to send, or is sending them.
    busy: bool,
    /// The body ended or the socket failed: no more direct writes.
    closed: bool,
    /// What a direct write could not send.
    leftover: Vec<u8>,
    /// The event being written (kept to save an allocation per message).
    frame: Vec<u8>,
}

/// A frame buffer past this is not kept for the next message.
const KEEP_FRAME: usize = 64 * 1024;

impl Sink {
    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().expect("sink lock")
    }

    /// Before the stream's thread sends: what direct writes left, which goes first (the
    /// thread is busy until it is sent); `None` when neither it nor the thread has anything.
    fn begin_send(&self, has_pending: bool) -> Option<Vec<u8>> {
        let mut state = self.lock();
        if state.leftover.is_empty() && !has_pending {
            return None;
        }
        state.busy = true;
        Some(std::mem::take(&mut state.leftover))
    }

    /// Ends direct writes; what they left, to be sent before the end.
    fn close(&self) -> Vec<u8> {
        let mut state = self.lock();
        state.closed = true;
        std::mem::take(&mut state.leftover)
    }
}

impl DirectWrite for Sink {
    fn try_write(&self, json: &str) -> Direct {
        // Never wait: the stream's thread is writing, or another writer is.
        let Ok(mut guard) = self.state.try_lock() else {
            return Direct::No;
        };
        let state = &mut *guard;
        if state.busy || state.closed || !state.leftover.is_empty() {
            return Direct::No;
        }
        state.frame.clear();
        if append_event(&mut state.frame, self.chunked, |buf| {
            encode::message(buf, None, json)
        })
        .is_err()
        {
            return Direct::No;
        }
        let frame = &state.frame;
        // SAFETY: the fd is open: `closed` is set under this lock before the socket closes.
        let sent = unsafe {
            libc::send(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        let outcome = match usize::try_from(sent) {
            Ok(n) if n == frame.len() => Direct::Written,
            Ok(0) => Direct::No,
            Ok(n) => {
                state.leftover = frame[n..].to_vec();
                debug!(
                    "direct write sent {n} of {} bytes; the stream's thread sends the rest",
                    frame.len()
                );
                Direct::Partly
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    // The stream's thread finds out for itself at its next write.
                    state.closed = true;
                }
                Direct::No
            }
        };
        if state.frame.capacity() > KEEP_FRAME {
            state.frame = Vec::new();
        }
        outcome
    }
}
