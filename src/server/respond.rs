//! Answering a `tiny_http::Request`: plain responses, JSON-RPC error bodies, and SSE streams
//! that own the socket and flush every event (tiny_http's chunked `Response` would sit in a
//! buffer). Every path ends in an explicit response; an automatic 500 would mean a bug here.

use std::fmt::Write as _;
use std::io::{self, Read, Write};

use log::debug;
use tiny_http::{Header, Request, Response};

use crate::jsonrpc::error as rpc;
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
        }
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

    /// Writes what is queued, if anything, and flushes.
    pub fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self
            .out
            .write_all(&self.pending)
            .and_then(|()| self.out.flush());
        self.pending.clear();
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
        let start = self.pending.len();
        if self.chunked {
            // Room for the chunk-size line, filled in below once the length is known.
            self.pending.extend_from_slice(b"00000000\r\n");
        }
        encode(&mut self.pending)?;
        if self.chunked {
            let len = self.pending.len() - start - 10;
            // Eight hex digits always fit the eight bytes kept for them (an event is far
            // below 4 GiB: its message was capped).
            write!(&mut self.pending[start..start + 8], "{len:08x}")?;
            self.pending.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    /// Ends the body. A chunked one leaves the connection usable for the next request; a
    /// close-delimited one (HTTP/1.0) ends only when we close our side, which tiny_http would
    /// not do while the client asks for keep-alive.
    pub fn finish(mut self) -> io::Result<()> {
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
        if !self.finished {
            self.shut_down(libc::SHUT_RDWR);
        }
    }
}
