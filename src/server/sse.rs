//! The legacy HTTP+SSE transport (2024-11-05, spec section D):
//! 1. `GET /sse` opens a session whose one stream carries everything; the first event is
//!    `endpoint` with `<prefix>/messages/?session_id=<32 hex>`;
//! 2. each client message is a `POST` to that endpoint, answered 202; replies arrive on the
//!    stream as `message` events;
//! 3. the session ends when the stream does.

use std::sync::atomic::Ordering;

use log::{debug, info};
use tiny_http::{Method, Request};

use super::respond::{self, BodyError, Extra, SseStream};
use super::streamable::{Until, pump_stream};
use super::{App, ready, refuse, status_of};
use crate::jsonrpc::{Envelope, Kind};
use crate::limits;
use crate::mux::{Mux, Reply, SessionId, StreamTx};

pub fn stream(app: &App, mux: &Mux, rq: Request, prefix: &str, extra: &Extra) {
    if let Err(refused) = ready(mux) {
        return refuse(rq, &refused, extra);
    }
    if *rq.method() == Method::Head {
        let mut headers = extra.clone();
        headers.push(respond::header("Content-Type", "text/event-stream"));
        return respond::empty(rq, 200, &headers);
    }
    let (tx, rx) = StreamTx::channel(limits::STREAM_QUEUE);
    let session = match mux.open_session(Some(tx)) {
        Ok(id) => id,
        Err(refused) => return refuse(rq, &refused, extra),
    };
    let open = app.active_sse.fetch_add(1, Ordering::Relaxed) + 1;
    info!(
        "server {:?}: SSE session {session} opened; {open} SSE stream(s)",
        mux.label
    );
    // The head goes out with the endpoint event, in one write.
    let mut sse = SseStream::start(rq, extra);
    let endpoint = format!("{prefix}/messages/?session_id={session}");
    match sse.event("endpoint", &endpoint) {
        Ok(()) => {
            // Replies are written by the child's stdout thread itself when they can be.
            if let (Some(sink), Some(Reply::Direct { tx, .. })) =
                (sse.allow_direct(), mux.legacy_reply(session))
            {
                tx.allow_direct(sink);
            }
            if pump_stream(app, &mut sse, &rx, Until::SessionEnds) {
                let _ = sse.finish(); // the client may be gone; nothing to report.
            }
        }
        Err(e) => debug!("client left before the SSE head: {e}"),
    }
    app.active_sse.fetch_sub(1, Ordering::Relaxed);
    mux.close_session(session, "SSE stream closed");
}

/// The `session_id` of a query string.
fn session_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "session_id")
        .map(|(_, v)| v)
}

pub fn post(app: &App, mux: &Mux, mut rq: Request, extra: &Extra) {
    app.touch();
    let query = rq.url().split_once('?').map_or("", |(_, query)| query);
    let Some(raw) = session_param(query) else {
        return respond::text(rq, 400, "session_id is required", extra);
    };
    let Some(session) = SessionId::parse(raw) else {
        return respond::text(rq, 400, "Invalid session ID", extra);
    };
    let Some(legacy_reply) = mux.legacy_reply(session) else {
        return respond::text(rq, 404, "Could not find session", extra);
    };
    if let Err(refused) = ready(mux) {
        return respond::text(rq, 503, &refused.to_string(), extra);
    }
    // Unlike on `/mcp`, a POST without a Content-Type is accepted.
    if respond::content_type_is_json(&rq) == Some(false) {
        return respond::text(rq, 400, "Invalid Content-Type header", extra);
    }
    let body = match respond::read_body(&mut rq, app.limits.max_message_bytes) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            log::warn!(
                "refused a body over {} bytes (413)",
                app.limits.max_message_bytes
            );
            return respond::text(rq, 413, "Payload Too Large", extra);
        }
        Err(BodyError::Io(e)) => {
            debug!("reading a request body: {e}");
            return respond::text(rq, 400, "Could not read the body", extra);
        }
    };
    let Ok(text) = String::from_utf8(body) else {
        return respond::text(rq, 400, "Could not parse message", extra);
    };
    let env = match Envelope::parse(&text) {
        Ok(env) => env,
        Err(invalid) => {
            debug!("session {session}: {}", invalid.message());
            return respond::text(rq, 400, "Could not parse message", extra);
        }
    };
    let reply = (env.kind == Kind::Request).then_some(legacy_reply);
    match mux.client_message(session, &text, &env, reply) {
        Ok(()) => respond::text(rq, 202, "Accepted", extra),
        Err(refused) => respond::text(rq, status_of(&refused), &refused.to_string(), extra),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_param_is_found_among_others() {
        assert_eq!(session_param("a=1&session_id=ab&c"), Some("ab"));
        assert_eq!(session_param("session_ids=1"), None);
        assert_eq!(session_param(""), None);
    }
}
