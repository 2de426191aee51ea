//! Streamable HTTP transport (spec sections E, F, G, H): one POST per message, read as 202, a
//! JSON body or an SSE stream; the optional GET stream for server-initiated messages; DELETE at
//! the end. Each POST and the GET stream run on their own thread and report to the bridge.
//! No stdio here, and no session policy: a 404 is reported, the bridge re-initializes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use log::{debug, info, warn};
use ureq::Body;
use ureq::http::{Method, Response};

use super::http::{Req, SendError, header, media_type, quote_body, read_body, read_refusal};
use super::{Remote, Report};
use crate::jsonrpc::{Envelope, Kind};
use crate::limits;
use crate::sse::parse::{EventReader, Parser};

/// The session headers of the moment a request is made.
#[derive(Clone, Default)]
pub struct Session {
    pub id: Option<String>,
    pub protocol_version: Option<String>,
}

impl Session {
    fn apply<'a>(&self, mut req: Req<'a>) -> Req<'a> {
        if let Some(id) = &self.id {
            req = req.header("Mcp-Session-Id", id.clone());
        }
        if let Some(version) = &self.protocol_version {
            req = req.header("MCP-Protocol-Version", version.clone());
        }
        req
    }
}

/// One message to POST.
pub struct PostJob {
    pub seq: u64,
    pub text: Arc<str>,
    /// The raw id when the message is a request: its response ends a reply stream.
    pub request_id: Option<String>,
    pub session: Session,
    /// More headers: a 2026-07-28 remote's `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*` (`session` is empty then).
    pub headers: Vec<(String, String)>,
}

/// POSTs `job` on a new `post` thread.
pub fn post(remote: &Arc<Remote>, job: PostJob) {
    remote.spawn_post(job.seq, move |remote| run_post(remote, job));
}

fn run_post(remote: &Remote, job: PostJob) {
    let seq = job.seq;
    let mut req = job.session.apply(
        Req::new(Method::POST, &remote.url).header("Accept", "application/json, text/event-stream"),
    );
    req.headers.extend(job.headers.iter().cloned());
    req.body = Some(("application/json", job.text.as_bytes()));
    // A JSON answer comes when the result is ready, which may take minutes.
    req.head_timeout = None;
    let response = match remote.http.send(&req) {
        Ok(response) => response,
        Err(e) => return remote.report(failure(seq, e)),
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        let session_id = header(&response, "mcp-session-id");
        remote.report(Report::Head { seq, session_id });
        let outcome = read_reply(remote, &job, response);
        remote.report(match outcome {
            Ok(()) => Report::Done { seq },
            Err(reason) => Report::Lost { seq, reason },
        });
    } else if status == 404 && job.session.id.is_some() {
        remote.report(Report::SessionExpired { seq: Some(seq) });
    } else {
        let body = read_refusal(response);
        let answered = !matches!(status, 401 | 403)
            && job
                .request_id
                .as_deref()
                .is_some_and(|id| is_response_to(&body, id));
        remote.report(if answered {
            Report::Answered {
                seq,
                status,
                answer: body,
            }
        } else {
            Report::Refused {
                seq,
                status,
                reason: quote_body(&body),
            }
        });
    }
}

/// The report for a request that got no response.
pub fn failure(seq: u64, e: SendError) -> Report {
    match e {
        SendError::Unreachable(reason) => Report::NotDelivered { seq, reason },
        SendError::Broken(reason) => Report::Lost { seq, reason },
        SendError::Auth(reason) => Report::AuthFailed { seq, reason },
    }
}

/// Reads a 2xx reply: nothing (202), one JSON message, or an SSE stream up to the response.
fn read_reply(remote: &Remote, job: &PostJob, response: Response<Body>) -> Result<(), String> {
    if response.status().as_u16() == 202 {
        return Ok(());
    }
    match media_type(&response).as_str() {
        "text/event-stream" => read_reply_stream(remote, job, response),
        "application/json" => {
            let text = read_body(response, limits::MAX_MESSAGE_BYTES as u64)?;
            if !text.trim().is_empty() {
                remote.report(Report::Message(text));
            }
            Ok(())
        }
        other if job.request_id.is_some() => Err(format!(
            "the remote answered a request with content type {other:?}"
        )),
        _ => Ok(()),
    }
}

/// Reads a reply stream until the response to the request; resumes with `Last-Event-ID` when
/// the stream ends early and the server gave event ids (spec E8, F7).
fn read_reply_stream(
    remote: &Remote,
    job: &PostJob,
    response: Response<Body>,
) -> Result<(), String> {
    let mut reader = EventReader::new(
        response.into_body().into_reader(),
        limits::MAX_MESSAGE_BYTES,
    );
    let mut ended = read_until_response(remote, &mut reader, job.request_id.as_deref());
    let Some(request_id) = job.request_id.as_deref() else {
        return Ok(());
    };
    let mut resume = Resume::default();
    resume.update(reader.parser());
    for _ in 0..limits::RESUME_ATTEMPTS {
        if let Ok(true) = ended {
            return Ok(());
        }
        let Some(event_id) = resume.last_event_id.clone() else {
            break;
        };
        let delay = Duration::from_millis(resume.retry_ms.unwrap_or(1000));
        if remote.shutdown.receiver().recv_timeout(delay).is_ok() || remote.shutdown.is_set() {
            break;
        }
        debug!("resuming the reply stream after event {event_id:?}");
        let req = job.session.apply(
            Req::new(Method::GET, &remote.url)
                .header("Accept", "text/event-stream")
                .header("Last-Event-ID", event_id),
        );
        let response = match remote.http.send(&req) {
            Ok(r) if r.status().is_success() && media_type(&r) == "text/event-stream" => r,
            Ok(r) => {
                debug!("resumption refused: HTTP {}", r.status());
                break;
            }
            Err(e) => {
                ended = Err(e.to_string());
                continue;
            }
        };
        let mut resumed = EventReader::new(
            response.into_body().into_reader(),
            limits::MAX_MESSAGE_BYTES,
        );
        ended = read_until_response(remote, &mut resumed, Some(request_id));
        resume.update(resumed.parser());
    }
    match ended {
        Ok(true) => Ok(()),
        Ok(false) => Err("the reply stream ended before the response".into()),
        Err(e) => Err(e),
    }
}

/// Where a dropped stream picks up (spec E8, F7): the last event id and `retry` the server
/// gave on any connection of it so far.
#[derive(Default)]
struct Resume {
    last_event_id: Option<String>,
    retry_ms: Option<u64>,
}

impl Resume {
    /// Takes in what one connection of the stream gave.
    fn update(&mut self, parser: &Parser) {
        if let Some(id) = parser.last_event_id() {
            self.last_event_id = Some(id.to_string());
        }
        self.retry_ms = parser.retry_ms().or(self.retry_ms);
    }
}

/// Reports every message of a stream; `Ok(true)` once the response to `want` went by,
/// `Ok(false)` when the stream ended without it.
pub fn read_until_response<R: std::io::Read>(
    remote: &Remote,
    reader: &mut EventReader<R>,
    want: Option<&str>,
) -> Result<bool, String> {
    loop {
        let event = match reader.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        if event.event != "message" || event.data.trim().is_empty() {
            // Priming events (an id and empty data) and unknown event types carry no message.
            continue;
        }
        let answered = want.is_some_and(|id| is_response_to(&event.data, id));
        remote.report(Report::Message(event.data));
        if answered {
            return Ok(true);
        }
    }
}

fn is_response_to(text: &str, id: &str) -> bool {
    Envelope::parse(text)
        .is_ok_and(|env| env.kind == Kind::Response && env.id.is_some_and(|i| i.get() == id))
}

/// Opens the GET stream for server-initiated messages (spec F1–F4) on a `get-stream` thread.
/// Its first answer, whatever it is, is reported as `GetStreamSettled`. It keeps reconnecting
/// (backoff, `Last-Event-ID`, `retry`) until `generation` moves on, the server says 405 (no
/// stream) or 404 (session gone, reported), or shutdown.
pub fn open_get_stream(remote: &Arc<Remote>, session: Session, generation: Arc<AtomicU64>) {
    let mine = generation.load(Ordering::SeqCst);
    let spawned = remote.spawn_thread("get-stream", move |remote| {
        run_get_stream(remote, &session, &generation, mine)
    });
    if let Err(e) = spawned {
        warn!("cannot start the GET stream thread: {e}");
    }
}

fn run_get_stream(remote: &Remote, session: &Session, generation: &AtomicU64, mine: u64) {
    let mut backoff = limits::RECONNECT_BACKOFF_START;
    let mut resume = Resume::default();
    // The bridge holds back its next message until the first answer (bridge.rs, order 2).
    let mut settled = false;
    let mut settle = || {
        if !std::mem::replace(&mut settled, true) {
            remote.report(Report::GetStreamSettled { generation: mine });
        }
    };
    loop {
        if generation.load(Ordering::SeqCst) != mine || remote.shutdown.is_set() {
            return;
        }
        let mut req =
            session.apply(Req::new(Method::GET, &remote.url).header("Accept", "text/event-stream"));
        if let Some(id) = &resume.last_event_id {
            req = req.header("Last-Event-ID", id.clone());
        }
        let response = remote.http.send(&req);
        settle();
        match response {
            Ok(r) if r.status().as_u16() == 405 => {
                info!("the remote offers no GET stream (HTTP 405)");
                return;
            }
            Ok(r) if r.status().as_u16() == 404 && session.id.is_some() => {
                remote.report(Report::SessionExpired { seq: None });
                return;
            }
            Ok(r) if r.status().is_success() && media_type(&r) == "text/event-stream" => {
                debug!("GET stream open");
                remote.report(Report::StreamUp);
                backoff = limits::RECONNECT_BACKOFF_START;
                let mut reader =
                    EventReader::new(r.into_body().into_reader(), limits::MAX_MESSAGE_BYTES);
                if let Err(e) = read_until_response(remote, &mut reader, None) {
                    // A network error or an unusable event (too large): worth a line either way.
                    warn!("GET stream dropped: {e}");
                }
                resume.update(reader.parser());
                debug!("GET stream ended; reconnecting");
            }
            Ok(r) if r.status().is_client_error() => {
                warn!(
                    "the remote refused the GET stream (HTTP {}); not retrying",
                    r.status()
                );
                return;
            }
            Ok(r) => warn!("GET stream: HTTP {}", r.status()),
            Err(e) => remote.report(Report::StreamDown(e.to_string())),
        }
        let delay = backoff.max(Duration::from_millis(resume.retry_ms.unwrap_or(0)));
        if remote.shutdown.receiver().recv_timeout(delay).is_ok() || remote.shutdown.is_set() {
            return;
        }
        backoff = (backoff * 2).min(limits::RECONNECT_BACKOFF_MAX);
    }
}

/// One `subscriptions/listen` to POST (2026-07-28): its stream stays open for change
/// notifications until `generation` moves on.
pub struct ListenJob {
    pub text: String,
    pub headers: Vec<(String, String)>,
    pub generation: Arc<AtomicU64>,
}

/// POSTs a `subscriptions/listen` on a `listen` thread. Every message on its stream is reported
/// as `ListenMessage`, its end as `ListenEnded`. Once `generation` moves on, the thread closes
/// the stream at its next read (a keep-alive comment is enough): in 2026-07-28, closing the
/// stream is how a client ends a request (spec K7).
pub fn listen(remote: &Arc<Remote>, job: ListenJob) {
    let mine = job.generation.load(Ordering::SeqCst);
    let spawned = remote.spawn_thread("listen", move |remote| {
        let (reason, retry) = run_listen(remote, &job, mine);
        remote.report(Report::ListenEnded {
            generation: mine,
            reason,
            retry,
        });
    });
    if let Err(e) = spawned {
        remote.report(Report::ListenEnded {
            generation: mine,
            reason: format!("cannot start the listen thread: {e}"),
            retry: false,
        });
    }
}

/// Runs one listen; returns why it ended and whether to open it again.
fn run_listen(remote: &Remote, job: &ListenJob, mine: u64) -> (String, bool) {
    let mut req =
        Req::new(Method::POST, &remote.url).header("Accept", "application/json, text/event-stream");
    req.headers.extend(job.headers.iter().cloned());
    req.body = Some(("application/json", job.text.as_bytes()));
    req.head_timeout = None;
    let response = match remote.http.send(&req) {
        Ok(response) => response,
        Err(e) => return (e.to_string(), true),
    };
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let body = read_refusal(response);
        // A client error will not go away by asking again (no listen here, say 404/-32601).
        return (
            format!("HTTP {status}: {}", quote_body(&body)),
            !response_is_client_error(status),
        );
    }
    match media_type(&response).as_str() {
        "text/event-stream" => {
            let body = Cancellable {
                inner: response.into_body().into_reader(),
                generation: job.generation.clone(),
                mine,
            };
            let mut reader = EventReader::new(body, limits::MAX_MESSAGE_BYTES);
            loop {
                match reader.next_event() {
                    Ok(Some(event))
                        if event.event == "message" && !event.data.trim().is_empty() =>
                    {
                        remote.report(Report::ListenMessage {
                            generation: mine,
                            text: event.data,
                        })
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return ("the stream ended".into(), true),
                    Err(e) => return (e.to_string(), true),
                }
            }
        }
        _ => {
            // An immediate answer (an error, most likely): the listen is over.
            let text = read_body(response, limits::MAX_MESSAGE_BYTES as u64).unwrap_or_default();
            if !text.trim().is_empty() {
                remote.report(Report::ListenMessage {
                    generation: mine,
                    text: text.clone(),
                });
            }
            (format!("answered at once: {}", quote_body(&text)), false)
        }
    }
}

fn response_is_client_error(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// A response body that reads as ended once its listen is retired.
struct Cancellable<R> {
    inner: R,
    generation: Arc<AtomicU64>,
    mine: u64,
}

impl<R: std::io::Read> std::io::Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.generation.load(Ordering::SeqCst) != self.mine {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if self.generation.load(Ordering::SeqCst) != self.mine {
            return Ok(0);
        }
        Ok(n)
    }
}

/// Ends the session (spec G5). Best effort: 405 and errors are only logged.
pub fn delete_session(remote: &Remote, session: &Session) {
    if session.id.is_none() {
        return;
    }
    let req = session.apply(Req::new(Method::DELETE, &remote.url));
    match remote.http.send(&req) {
        Ok(r) => debug!("DELETE session: HTTP {}", r.status()),
        Err(e) => debug!("DELETE session: {e}"),
    }
}
