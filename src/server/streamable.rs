//! Streamable HTTP at `/mcp` (2025-03-26 … 2025-11-25, spec sections E–H):
//! - POST: one message. A request is answered as SSE when the client accepts it (related
//!   progress, log lines and server requests ride on the stream, then the response), else as
//!   one JSON body; notifications and responses get 202.
//! - `Mcp-Session-Id` is issued on `initialize`; missing → 400, unknown or deleted → 404.
//! - GET opens the session's stream for unrelated messages (one at a time: 409);
//!   DELETE ends the session. `--stateless`: no sessions; GET and DELETE get 405.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Instant;

use crossbeam_channel::{Receiver, select};
use log::debug;
use tiny_http::{Method, Request};

use super::hangup::Hangup;
use super::respond::{self, BodyError, Extra, SseStream, header, request_header};
use super::{App, modern, ready, refuse, refuse_request};
use crate::jsonrpc::{self, Envelope, Kind, error as rpc};
use crate::limits;
use crate::mux::{EventId, Mux, Outbound, Reply, SessionId, StreamTx};

pub fn handle(app: &App, mux: &Mux, rq: Request, extra: &Extra) {
    let modern_client = request_header(&rq, "MCP-Protocol-Version")
        .is_some_and(|v| modern::is_modern_version(v.trim()));
    match rq.method() {
        Method::Post => post(app, mux, rq, extra),
        // 2026-07-28 has neither the GET stream nor sessions to delete.
        Method::Get | Method::Delete if modern_client => not_allowed(rq, "POST", extra),
        Method::Get if !app.stateless => get(app, mux, rq, extra),
        Method::Delete if !app.stateless => delete(mux, rq, extra),
        Method::Get | Method::Delete => not_allowed(rq, "POST", extra),
        _ => not_allowed(
            rq,
            if app.stateless {
                "POST"
            } else {
                "GET, POST, DELETE"
            },
            extra,
        ),
    }
}

fn not_allowed(rq: Request, allow: &str, extra: &Extra) {
    let mut headers = extra.clone();
    headers.push(header("Allow", allow));
    respond::rpc_error(
        rq,
        405,
        rpc::INVALID_REQUEST,
        "Method Not Allowed",
        &headers,
    );
}

/// What the client's `Accept` lets us answer with.
struct Accepts {
    json: bool,
    sse: bool,
}

fn accepts(rq: &Request) -> Accepts {
    let Some(accept) = request_header(rq, "Accept") else {
        // No Accept header means anything (RFC 9110); answer with plain JSON.
        return Accepts {
            json: true,
            sse: false,
        };
    };
    let mut a = Accepts {
        json: false,
        sse: false,
    };
    for item in accept.split(',') {
        let media = item.split(';').next().unwrap_or("").trim();
        let is = |name: &str| media.eq_ignore_ascii_case(name);
        if is("application/json") || is("application/*") || is("*/*") {
            a.json = true;
        } else if is("text/event-stream") {
            a.sse = true;
        }
    }
    a
}

/// The session a request names, checked against the mux.
fn session_of(rq: &Request, mux: &Mux) -> Result<SessionId, (u16, &'static str)> {
    let Some(raw) = request_header(rq, "Mcp-Session-Id") else {
        return Err((400, "Bad Request: Missing session ID"));
    };
    match SessionId::parse(raw.trim()) {
        Some(id) if mux.has_session(id) => Ok(id),
        _ => Err((404, "Session not found")),
    }
}

fn post(app: &App, mux: &Mux, mut rq: Request, extra: &Extra) {
    let accept = accepts(&rq);
    if !accept.json && !accept.sse {
        return respond::rpc_error(
            rq,
            406,
            rpc::INVALID_REQUEST,
            "Not Acceptable: Client must accept application/json or text/event-stream",
            extra,
        );
    }
    if respond::content_type_is_json(&rq) != Some(true) {
        return respond::rpc_error(
            rq,
            415,
            rpc::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
            extra,
        );
    }
    let body = match respond::read_body(&mut rq, app.limits.max_message_bytes) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            log::warn!(
                "refused a body over {} bytes (413)",
                app.limits.max_message_bytes
            );
            return respond::rpc_error(
                rq,
                413,
                rpc::INVALID_REQUEST,
                &format!(
                    "Payload Too Large: the limit is {} bytes",
                    app.limits.max_message_bytes
                ),
                extra,
            );
        }
        Err(BodyError::Io(e)) => {
            debug!("reading a request body: {e}");
            return respond::rpc_error(rq, 400, rpc::PARSE_ERROR, "Could not read the body", extra);
        }
    };
    let Ok(text) = String::from_utf8(body) else {
        return respond::rpc_error(
            rq,
            400,
            rpc::PARSE_ERROR,
            "Parse error: body is not UTF-8",
            extra,
        );
    };
    let env = match Envelope::parse(&text) {
        Ok(env) => env,
        Err(invalid) => {
            return respond::rpc_error(rq, 400, invalid.code(), &invalid.message(), extra);
        }
    };
    if let Err(refused) = ready(mux) {
        return refuse(rq, &refused, extra);
    }
    let meta = modern::Meta::of(&env);
    if modern::is_modern(&rq, &meta) {
        return modern::post(app, mux, rq, &text, &env, &meta, extra);
    }
    if let Some(version) = request_header(&rq, "MCP-Protocol-Version")
        && !jsonrpc::SUPPORTED_VERSIONS.contains(&version.trim())
    {
        let message = format!(
            "Bad Request: Unsupported protocol version: {version}. Supported versions: {}",
            modern::all_versions().join(", ")
        );
        return respond::rpc_error(rq, 400, rpc::INVALID_REQUEST, &message, extra);
    }

    // Which session: a new one for `initialize` (or every message when stateless).
    let is_initialize = env.kind == Kind::Request && env.method() == "initialize";
    let has_header = request_header(&rq, "Mcp-Session-Id").is_some();
    let (session, transient) = if app.stateless || (is_initialize && !has_header) {
        match mux.open_session(None) {
            Ok(id) => (id, app.stateless),
            Err(refused) => return refuse(rq, &refused, extra),
        }
    } else {
        match session_of(&rq, mux) {
            Ok(id) => (id, false),
            Err((status, message)) => {
                return respond::rpc_error(rq, status, rpc::INVALID_REQUEST, message, extra);
            }
        }
    };
    let mut headers = extra.clone();
    if is_initialize && !app.stateless {
        headers.push(header("Mcp-Session-Id", &session.to_string()));
    }

    if env.kind != Kind::Request {
        match mux.client_message(session, &text, &env, None) {
            Ok(()) => respond::empty(rq, 202, &headers),
            Err(refused) => refuse(rq, &refused, &headers),
        }
        if transient {
            mux.close_session(session, "stateless request done");
        }
        return;
    }

    // `initialize` is answered from the cache at once: plain JSON is enough.
    let stream = accept.sse && !is_initialize;
    let (tx, rx) = StreamTx::channel(limits::STREAM_QUEUE);
    // Only the session holds the sender: when it ends, the reply stream sees it at once.
    let key = tx.key();
    let reply = if stream {
        match mux.open_reply_stream(session, tx) {
            Ok(reply) => reply,
            Err(refused) => return refuse(rq, &refused, &headers),
        }
    } else {
        Reply::Direct {
            tx,
            carries_related: false,
        }
    };
    if let Err(refused) = mux.client_message(session, &text, &env, Some(reply.clone())) {
        if let Reply::Stream(number) = reply {
            mux.discard_stream(session, number);
        }
        let id = env.id.map_or("null", |id| id.get());
        refuse_request(rq, id, &refused, &headers);
    } else if let Reply::Stream(number) = reply {
        let mut sse = SseStream::start(rq, &headers);
        if pump_stream(app, &mut sse, &rx, Until::Last) {
            let _ = sse.finish(); // the client may be gone; nothing to report.
        }
        mux.detach(session, number, key);
    } else {
        json_reply(app, rq, &rx, &headers);
    }
    if transient {
        mux.close_session(session, "stateless request done");
    }
}

fn json_reply(app: &App, rq: Request, rx: &Receiver<Outbound>, headers: &Extra) {
    loop {
        select! {
            recv(rx) -> message => match message {
                Ok(m) if m.last => return respond::json(rq, 200, &m.text, headers),
                Ok(_) => continue, // related messages are not routed to a JSON reply
                Err(_) => {
                    return respond::rpc_error(rq, 500, rpc::INTERNAL_ERROR, "No response from the MCP server", headers);
                }
            },
            recv(app.shutdown.receiver()) -> _ => {
                return respond::rpc_error(rq, 503, rpc::SERVER_UNAVAILABLE, "Shutting down", headers);
            }
        }
    }
}

fn get(app: &App, mux: &Mux, rq: Request, extra: &Extra) {
    if !accepts(&rq).sse {
        return respond::rpc_error(
            rq,
            406,
            rpc::INVALID_REQUEST,
            "Not Acceptable: Client must accept text/event-stream",
            extra,
        );
    }
    let session = match session_of(&rq, mux) {
        Ok(id) => id,
        Err((status, message)) => {
            return respond::rpc_error(rq, status, rpc::INVALID_REQUEST, message, extra);
        }
    };
    let last_event = request_header(&rq, "Last-Event-ID").and_then(EventId::parse);
    let (tx, rx) = StreamTx::channel(limits::STREAM_QUEUE);
    // Only the session holds the sender: when it ends, the stream sees it at once.
    let key = tx.key();
    let number = match mux.attach_get(session, tx, last_event) {
        Ok(number) => number,
        Err(refused) => return refuse(rq, &refused, extra),
    };
    debug!("session {session}: GET on stream {number} (after {last_event:?})");
    let mut sse = SseStream::start(rq, extra);
    if pump_stream(app, &mut sse, &rx, Until::Last) {
        let _ = sse.finish(); // the client may be gone; nothing to report.
    }
    mux.detach(session, number, key);
    debug!("session {session}: GET on stream {number} closed");
}

/// When [`pump_stream`] ends a stream that is still open.
pub(super) enum Until<'a> {
    /// Only when its session ends: the legacy stream carries every response, a 2026-07-28
    /// listen stream every notification.
    SessionEnds,
    /// After its last event (a POST's response, or the end of a replay).
    Last,
    /// After its last event, written as `finish` makes it (a 2026-07-28 result).
    LastAs(&'a dyn Fn(&str) -> Cow<'_, str>),
}

/// Writes a stream's events as they come, with their ids, a keep-alive comment when idle.
/// Returns true when the stream ended in order (`until`) or its session did (the caller then
/// ends the body), false when the client left.
///
/// Nothing waits in our buffer while we wait: what is queued (a deferred head, a burst of
/// events) is written before blocking. An event with more right behind it, or a POST's last
/// one (the body's end follows), is queued instead of written alone.
pub(super) fn pump_stream(
    app: &App,
    sse: &mut SseStream,
    rx: &Receiver<Outbound>,
    until: Until<'_>,
) -> bool {
    // Watching for a hang-up costs two system calls: a stream that ends soon (most POST
    // replies) goes without; one still open after `WATCH_STREAM_AFTER` is watched.
    let mut unwatched = app.hangups.as_ref().zip(sse.socket_fd());
    let mut hangup: Option<Hangup> = None;
    let mut hung_up = crossbeam_channel::never();
    let mut probed = false;
    let mut idle_since = Instant::now();
    // The event id as text, kept for the next event: no allocation per event.
    let mut id_text = String::new();
    loop {
        if rx.is_empty()
            && let Err(e) = sse.send_pending()
        {
            debug!("client left a stream: {e}");
            return false;
        }
        let until_ping = app.keepalive.saturating_sub(idle_since.elapsed());
        let wait = match unwatched {
            Some(_) => until_ping.min(limits::WATCH_STREAM_AFTER),
            None => until_ping,
        };
        select! {
            recv(hung_up) -> _ => {
                // First the FIN: a probe tells a closed peer (it resets) from a half-closed
                // one (it reads on); then the reset itself.
                if probed || sse.comment("").is_err() {
                    debug!("client hung up on a stream");
                    return false;
                }
                probed = true;
                if let Some(h) = &hangup {
                    h.expect_reset();
                }
            },
            recv(rx) -> message => {
                let Ok(message) = message else { return true };
                if message.flush {
                    // A direct write left part of a message: it goes before anything else.
                    if let Err(e) = sse.send_pending() {
                        debug!("client left a stream: {e}");
                        return false;
                    }
                    continue;
                }
                let ends = message.last && !matches!(until, Until::SessionEnds);
                let id = message.id.map(|id| {
                    id_text.clear();
                    // Writing to a String cannot fail.
                    let _ = write!(id_text, "{id}");
                    id_text.as_str()
                });
                let written = if message.is_empty() && message.last {
                    return true; // nothing left to replay on a finished stream
                } else if message.is_empty() {
                    sse.priming(id.unwrap_or("0"), limits::SSE_RETRY_MS)
                } else if ends {
                    let text = match until {
                        Until::LastAs(finish) => finish(&message.text),
                        _ => Cow::Borrowed(&*message.text),
                    };
                    sse.queue_message(id, &text)
                } else if !rx.is_empty() {
                    sse.queue_message(id, &message.text)
                } else {
                    sse.message(id, &message.text)
                };
                if let Err(e) = written {
                    debug!("client left a stream: {e}");
                    return false;
                }
                if ends {
                    return true;
                }
                idle_since = Instant::now();
            },
            recv(app.shutdown.receiver()) -> _ => return true,
            default(wait) => {
                if let Some((watcher, fd)) = unwatched.take() {
                    hangup = watcher.watch(fd);
                    if let Some(h) = &hangup {
                        hung_up = h.signal.clone();
                    }
                }
                if idle_since.elapsed() >= app.keepalive {
                    if let Err(e) = sse.comment("ping") {
                        debug!("client left a stream: {e}");
                        return false;
                    }
                    idle_since = Instant::now();
                }
            }
        }
    }
}

fn delete(mux: &Mux, rq: Request, extra: &Extra) {
    match session_of(&rq, mux) {
        Ok(session) => {
            mux.close_session(session, "DELETE");
            respond::empty(rq, 200, extra);
        }
        Err((status, message)) => {
            respond::rpc_error(rq, status, rpc::INVALID_REQUEST, message, extra)
        }
    }
}
