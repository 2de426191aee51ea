//! Client mode: the local MCP client speaks stdio to us, we speak Streamable HTTP or legacy
//! HTTP+SSE to a remote server. Transparent: every stdin line goes to the remote unchanged
//! (`initialize` included, so the client's own capabilities reach the server) and every remote
//! message comes out on stdout, compact, one per line. The exception: a remote that speaks only
//! 2026-07-28, found by a `server/discover` probe before the client's `initialize`; `modern.rs`
//! then translates for the client, which speaks the session era.
//!
//! Threads (each arrow a bounded channel):
//! ```text
//! [stdin] --StdinMessage--> [bridge] --Out--> [stdout]
//!                              ^  spawns
//!  [post] x N (one per POST in flight, at most MAX_CONCURRENT_POSTS)  --Report--+
//!  [sse-stream] legacy GET stream, [get-stream] Streamable GET stream --Report--+
//!  [listen] a 2026-07-28 remote's `subscriptions/listen` stream           --Report--+
//!  [parent] polls getppid: a parent that died starts the shutdown (`parent.rs`)
//! ```
//! The bridge (`bridge.rs`) owns every decision: transport choice, session, queueing during an
//! outage, re-initialization, errors for requests that cannot be answered. Transport threads
//! only move bytes and report what happened. Only the bridge writes to stdout, except the stdin
//! thread's replies to lines that never became messages.

mod auth;
mod bridge;
mod http;
mod jwt;
mod md5;
mod modern;
mod oauth;
mod parent;
mod sse;
mod stdio;
mod streamable;
mod tls;
mod url;

use std::sync::Arc;

use crossbeam_channel::{Sender, bounded};
use log::info;

use crate::config::{ClientSettings, Transport};
use crate::error::Error;
use crate::limits;
use crate::shutdown::Shutdown;

/// What a transport thread tells the bridge. `seq` names the message a POST carried.
#[derive(Debug)]
pub enum Report {
    /// A POST got a 2xx response head; `session_id` is its `Mcp-Session-Id`, if any.
    Head {
        seq: u64,
        session_id: Option<String>,
    },
    /// One message from the remote (JSON text, possibly pretty-printed).
    Message(String),
    /// A POST is finished: its reply, if any, has been reported.
    Done { seq: u64 },
    /// A POST never reached the remote; it can be sent again.
    NotDelivered { seq: u64, reason: String },
    /// A POST reached the remote but its reply was cut off; it may have been processed.
    Lost { seq: u64, reason: String },
    /// HTTP 404 for our session (spec G4). `None`: noticed by the GET stream.
    SessionExpired { seq: Option<u64> },
    /// The remote answered a request's POST with an error status and, in the body, the JSON-RPC
    /// error response to that request (its id): the request has its answer, and the remote
    /// speaks MCP over Streamable HTTP. Not for 401/403, which are about credentials.
    Answered {
        seq: u64,
        status: u16,
        answer: String,
    },
    /// The remote answered a POST with an error status.
    Refused {
        seq: u64,
        status: u16,
        reason: String,
    },
    /// No credentials could be obtained for a POST (token endpoint, discovery).
    AuthFailed { seq: u64, reason: String },
    /// Legacy SSE: the stream is (re)connected and gave this POST URL.
    Endpoint(String),
    /// A GET stream is open.
    StreamUp,
    /// The Streamable GET stream of this generation got its first answer (a stream, a refusal,
    /// or an error): the bridge may send again.
    GetStreamSettled { generation: u64 },
    /// A GET stream could not be opened or dropped without a way back yet.
    StreamDown(String),
    /// 2026-07-28: a message on the `subscriptions/listen` stream of this generation.
    ListenMessage { generation: u64, text: String },
    /// 2026-07-28: the listen stream of this generation ended; `retry`: worth opening again.
    ListenEnded {
        generation: u64,
        reason: String,
        retry: bool,
    },
}

/// What every transport thread shares. Read-only after start.
pub struct Remote {
    pub http: http::Http,
    /// The URL the user gave: the MCP endpoint (Streamable HTTP) or the SSE URL (legacy).
    pub url: String,
    /// `url` as logs and error messages show it (query redacted).
    pub shown_url: String,
    reports: Sender<Report>,
    pub shutdown: Shutdown,
}

impl Remote {
    /// Tells the bridge; a bridge that has gone means we are exiting, so the report is moot.
    pub fn report(&self, report: Report) {
        let _ = self.reports.send(report);
    }

    /// Runs `work` on a new transport thread called `name`, which shares this `Remote`.
    pub fn spawn_thread(
        self: &Arc<Remote>,
        name: &str,
        work: impl FnOnce(&Remote) + Send + 'static,
    ) -> std::io::Result<()> {
        let remote = self.clone();
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(limits::CLIENT_THREAD_STACK_BYTES)
            .spawn(move || work(&remote))
            .map(drop)
    }

    /// Runs `work`, the POST of message `seq`, on a new `post` thread; reports the message
    /// `Lost` when no thread can start.
    pub fn spawn_post(self: &Arc<Remote>, seq: u64, work: impl FnOnce(&Remote) + Send + 'static) {
        if let Err(e) = self.spawn_thread("post", work) {
            let reason = format!("cannot start a POST thread: {e}");
            self.report(Report::Lost { seq, reason });
        }
    }
}

/// Runs client mode until stdin closes (Ok, exit 0) or the remote is lost for good (Err).
pub fn run(settings: ClientSettings, shutdown: Shutdown) -> Result<(), Error> {
    // First: a parent that dies from here on is noticed (see `parent.rs`).
    parent::watch(parent::current_parent(), shutdown.clone());
    let http = http::Http::new(&settings)?;
    let (report_tx, report_rx) = bounded(limits::REPORT_QUEUE);
    let remote = Arc::new(Remote {
        http,
        url: settings.url.clone(),
        shown_url: url::redacted(&settings.url),
        reports: report_tx,
        shutdown: shutdown.clone(),
    });
    let (stdout_tx, stdout_rx) = bounded(limits::STDOUT_QUEUE);
    let (stdin_tx, stdin_rx) = bounded(limits::STDIN_QUEUE);
    let spawn_error = |e| Error::io("starting a client thread", e);
    stdio::spawn_stdout(stdout_rx, shutdown.clone()).map_err(spawn_error)?;
    stdio::spawn_stdin(stdin_tx, stdout_tx.clone()).map_err(spawn_error)?;
    info!(
        "client mode: {} ({})",
        crate::logging::escape_control(&url::redacted(&settings.url)),
        match settings.transport {
            Transport::Auto => "auto-detecting the transport",
            Transport::Sse => "legacy SSE",
            Transport::StreamableHttp => "Streamable HTTP",
        }
    );
    let mut bridge = bridge::Bridge::new(
        remote,
        settings.transport,
        settings.era,
        settings.max_disconnected,
        stdout_tx,
    );
    bridge.run(stdin_rx, report_rx)
}
