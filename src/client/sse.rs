//! Legacy HTTP+SSE transport (spec section D, protocol 2024-11-05):
//! 1. GET the URL with `Accept: text/event-stream`;
//! 2. the first event is `endpoint`: resolve its data against the URL, require the same origin;
//! 3. POST every message to that endpoint (202 expected);
//! 4. read `message` events: the server's responses, requests and notifications.
//!
//! The `sse-stream` thread reconnects with backoff when the stream drops and reports each new
//! endpoint; the bridge then re-initializes the new session. No stdio here.

use std::sync::Arc;

use log::{debug, warn};
use ureq::Body;
use ureq::http::{Method, Response};

use super::http::{Req, error_snippet, media_type};
use super::streamable::failure;
use super::url::Url;
use super::{Remote, Report};
use crate::limits;
use crate::sse::parse::EventReader;

/// Starts the `sse-stream` thread. It runs until shutdown (or the process exits).
pub fn start_stream(remote: &Arc<Remote>) -> std::io::Result<()> {
    remote.spawn_thread("sse-stream", run_stream)
}

fn run_stream(remote: &Remote) {
    let Some(url) = Url::parse(&remote.url) else {
        remote.report(Report::StreamDown(format!(
            "invalid URL {}",
            remote.shown_url
        )));
        return;
    };
    let mut backoff = limits::RECONNECT_BACKOFF_START;
    loop {
        let req = Req::new(Method::GET, &remote.url)
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-store");
        let reason = match remote.http.send(&req) {
            Ok(r) if r.status().is_success() && media_type(&r) == "text/event-stream" => {
                match read_stream(remote, &url, r) {
                    Ok(()) => "the SSE stream ended".to_string(),
                    Err(e) => e,
                }
            }
            Ok(r) => {
                let status = r.status();
                format!(
                    "GET {} answered HTTP {status}: {}",
                    remote.shown_url,
                    error_snippet(r)
                )
            }
            Err(e) => e.to_string(),
        };
        remote.report(Report::StreamDown(reason));
        if remote.shutdown.receiver().recv_timeout(backoff).is_ok() || remote.shutdown.is_set() {
            return;
        }
        backoff = (backoff * 2).min(limits::RECONNECT_BACKOFF_MAX);
    }
}

/// Reads one connection of the stream. Once an endpoint was seen, a later drop restarts the
/// backoff from its start: the remote was there.
fn read_stream(remote: &Remote, url: &Url, response: Response<Body>) -> Result<(), String> {
    let mut reader = EventReader::new(
        response.into_body().into_reader(),
        limits::MAX_MESSAGE_BYTES,
    );
    let mut have_endpoint = false;
    loop {
        let event = match reader.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("reading the SSE stream: {e}")),
        };
        match event.event.as_str() {
            "endpoint" => {
                let endpoint = endpoint_url(url, &event.data)?;
                debug!("SSE endpoint: {endpoint}");
                have_endpoint = true;
                remote.report(Report::Endpoint(endpoint));
            }
            "message" if have_endpoint && !event.data.trim().is_empty() => {
                remote.report(Report::Message(event.data));
            }
            "message" => {}
            other => debug!(
                "SSE: ignoring event {:?}",
                crate::logging::escape_control(other)
            ),
        }
    }
}

/// The POST URL of an `endpoint` event: resolved against the SSE URL, same origin only (a
/// server must not send our messages, and credentials, elsewhere).
fn endpoint_url(sse_url: &Url, data: &str) -> Result<String, String> {
    let endpoint = sse_url.join(data).ok_or_else(|| {
        format!(
            "invalid endpoint {:?}",
            crate::logging::escape_control(data)
        )
    })?;
    if endpoint.origin() != sse_url.origin() {
        return Err(format!(
            "endpoint {endpoint} is not on the origin of {sse_url}; refused"
        ));
    }
    Ok(endpoint.to_string())
}

/// One message to POST to the endpoint.
pub struct PostJob {
    pub seq: u64,
    pub text: Arc<str>,
    pub endpoint: String,
}

/// POSTs `job` on a new `post` thread. The reply arrives on the stream.
pub fn post(remote: &Arc<Remote>, job: PostJob) {
    remote.spawn_post(job.seq, move |remote| run_post(remote, job));
}

fn run_post(remote: &Remote, job: PostJob) {
    let seq = job.seq;
    let mut req = Req::new(Method::POST, &job.endpoint);
    req.body = Some(("application/json", job.text.as_bytes()));
    let response = match remote.http.send(&req) {
        Ok(r) => r,
        Err(e) => return remote.report(failure(seq, e)),
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        remote.report(Report::Head {
            seq,
            session_id: None,
        });
        remote.report(Report::Done { seq });
    } else if status == 404 {
        // The endpoint's session is gone (the remote restarted): the stream will drop and
        // bring a new endpoint; until then the message waits.
        warn!("the SSE endpoint is gone (HTTP 404); waiting for a new one");
        remote.report(Report::NotDelivered {
            seq,
            reason: "the SSE session is gone".into(),
        });
    } else {
        let reason = error_snippet(response);
        remote.report(Report::Refused {
            seq,
            status,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_must_stay_on_the_origin() {
        let sse = Url::parse("http://127.0.0.1:8080/sse").unwrap();
        assert_eq!(
            endpoint_url(&sse, "/messages/?session_id=ab").unwrap(),
            "http://127.0.0.1:8080/messages/?session_id=ab"
        );
        assert!(endpoint_url(&sse, "http://evil.example/messages").is_err());
        assert!(endpoint_url(&sse, "https://127.0.0.1:8080/m").is_err());
    }
}
