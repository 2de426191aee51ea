//! Every cap and timeout of the program, as a named constant with the reason for its value.
//! Nothing else lives here: a reader who wants to know "how much" or "how long" looks in one place.

use std::time::Duration;

/// Largest JSON-RPC message we accept on any input (stdio line, HTTP body, SSE event).
/// Big enough for a tools/list of a large server or a 10 MB tool result; small enough that a
/// hostile or broken peer cannot make us buffer without end.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// How long a child may take to answer the proxy's `initialize` before it is marked failed.
/// `uvx`/`npx` servers download packages on first start, so this is generous.
pub const CHILD_INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a child may take to answer the `server/discover` probe before it is taken for a
/// child of the session era (which some do not answer before `initialize`).
pub const CHILD_DISCOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// First delay before restarting a child that exited or failed to start; it doubles with
/// each failure in a row, up to [`CHILD_RESTART_MAX_DELAY`].
pub const CHILD_RESTART_MIN_DELAY: Duration = Duration::from_millis(250);

/// Longest delay between restarts of a child in a crash loop.
pub const CHILD_RESTART_MAX_DELAY: Duration = Duration::from_secs(30);

/// A child that ran this long before exiting is not in a crash loop: its next restart comes
/// after the shortest delay again.
pub const CHILD_STABLE_AFTER: Duration = Duration::from_secs(60);

/// Grace after closing a child's stdin before SIGTERM, and after SIGTERM before SIGKILL
/// (the Python tool and the MCP spec's stdio shutdown sequence use 2 s).
pub const CHILD_STOP_GRACE: Duration = Duration::from_secs(2);

/// Bytes waiting for one child's stdin beyond what its pipe holds. Past it the child is not
/// reading; HTTP callers then wait up to [`CHILD_SEND_TIMEOUT`] and get 503.
pub const CHILD_INPUT_BYTES: usize = 8 * 1024 * 1024;

/// Messages waiting for one child's stdin beyond what its pipe holds, whatever their size:
/// a child that does not read is found out after as many messages as before the backlog
/// was counted in bytes (each waiting request also holds a routing entry).
pub const CHILD_INPUT_MESSAGES: usize = 1024;

/// How long an HTTP handler waits for room in a child's stdin backlog.
pub const CHILD_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages queued for one downstream stream (a POST's SSE reply, a GET stream, a legacy SSE
/// stream). The router never blocks on a client: when this fills, the client is too slow and
/// its stream is closed.
pub const STREAM_QUEUE: usize = 4096;

/// Bytes waiting in one stream's queue, whatever the count (a client that stops reading
/// while large results pile up is dropped at this point too).
pub const STREAM_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Events kept per resumable SSE stream for a client that reconnects with `Last-Event-ID`
/// (and, on the GET stream, for a client that has no GET connection open yet). Oldest first out.
pub const REPLAY_EVENTS: usize = 256;

/// Bytes kept per resumable stream, whatever the count: a few large results fit, memory
/// stays bounded (the newest event is always kept).
pub const REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// Resumable streams kept per session; beyond it the oldest finished one goes.
pub const STREAMS_PER_SESSION: usize = 64;

/// How long a finished POST stream stays resumable after its response.
pub const RESUME_GRACE: Duration = Duration::from_secs(60);

/// Default interval of the `: ping` comment on idle SSE streams (the Python tool's
/// sse-starlette uses 15 s); also how a vanished client is noticed on an idle stream
/// (`--sse-keepalive`).
pub const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// An SSE stream still open after this long is watched for its client hanging up
/// (`server::hangup`); shorter ones (most POST replies) are spared the two system calls.
pub const WATCH_STREAM_AFTER: Duration = Duration::from_millis(100);

/// The `retry:` of a priming event: how long a client waits before resuming a dropped stream.
pub const SSE_RETRY_MS: u64 = 1000;

/// Default of `--max-sessions`: downstream sessions of one server at once (Streamable HTTP and
/// SSE together); each costs a few KiB, so this bounds memory well under 100 MiB.
pub const MAX_SESSIONS: usize = 10_000;

/// Default of `--session-idle-timeout`: a Streamable HTTP session with no request, no open
/// stream and nothing in flight for this long is closed (clients that never DELETE leak
/// otherwise). The Python SDK reaps after 30 minutes too.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default of `--http-timeout`: socket read and write timeout of HTTP connections. Closes
/// idle keep-alive connections and drops a client that stopped reading its stream; set on
/// the listener, which accepted sockets inherit on Linux.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// Default of `--max-tenants`: children of one `headerToEnv` server at once (one per distinct
/// set of mapped header values). A new tenant beyond it evicts the least recently used idle
/// one, or gets 503 when none is idle.
pub const MAX_TENANTS: usize = 16;

/// A tenant child with no session for this long is stopped (its next request starts a new one).
pub const TENANT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How long a 2026-07-28 request that needs the client's input (an `InputRequiredResult`)
/// waits for the client's retry before it is cancelled at the child.
pub const PARKED_INPUT_TTL: Duration = Duration::from_secs(10 * 60);

/// How long requests of a child are collected into one `InputRequiredResult` after the first:
/// a child that asks for several answers at once writes them back to back.
pub const INPUT_BATCH_WINDOW: Duration = Duration::from_millis(25);

/// Pages of `tools/list` read from a child to learn its tools' `x-mcp-header` parameters.
pub const TOOL_LIST_PAGES: usize = 100;

/// How often sessions and requests are checked against their timeouts.
pub const REAPER_TICK: Duration = Duration::from_secs(1);

/// Freed memory is given back to the system (`memory::release_free`, a walk over the
/// allocator's arenas: well under a millisecond) every this many reaper ticks, if the traffic
/// has been quiet for `QUIET_BEFORE_RELEASE_MS` by then.
pub const RELEASE_EVERY_TICKS: u64 = 5;
pub const QUIET_BEFORE_RELEASE_MS: u64 = 2000;

// ---- client mode ------------------------------------------------------------------------------

/// Connecting (DNS + TCP + TLS) to the remote server. Below the 15 s in which a start-up failure
/// must be reported, and long enough for a slow TLS handshake across the world.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Waiting for the response head of a stream open, a DELETE, or an OAuth/discovery request.
/// POSTs have none: a `tools/call` answered as JSON may legitimately take minutes.
pub const CLIENT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// First delay before reconnecting to the remote; doubles on each failure.
pub const RECONNECT_BACKOFF_START: Duration = Duration::from_millis(250);

/// Ceiling of the reconnect delay: a restarted remote is noticed within this much.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Default of `--max-disconnected`: how long the remote may stay unreachable before client mode
/// gives up (exit 1). Long enough to ride out a redeploy of the remote.
pub const DEFAULT_MAX_DISCONNECTED: Duration = Duration::from_secs(300);

/// How long a request from stdin may wait for the remote to come back before it is answered
/// with an error: MCP clients time requests out after about 60 s; answering sooner lets them
/// show a useful message.
pub const QUEUED_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages from stdin held while the remote is unreachable. Beyond this, requests are answered
/// with an error at once and notifications are dropped with a warning.
pub const OUTAGE_QUEUE: usize = 1024;

/// POSTs in flight at once. A request whose reply is JSON holds its connection (and thread) until
/// the result is ready; more than this and further messages wait in the queue.
pub const MAX_CONCURRENT_POSTS: usize = 64;

/// Stack of client mode's per-POST and per-stream threads: ureq + rustls handshake + the SSE
/// parser; a debug build needs well under half of this.
pub const CLIENT_THREAD_STACK_BYTES: usize = 512 * 1024;

/// Lines read from stdin ahead of the bridge: a small buffer, the pipe itself holds more.
pub const STDIN_QUEUE: usize = 64;

/// Messages waiting for the stdout writer; when full, readers of the remote wait (backpressure).
pub const STDOUT_QUEUE: usize = 1024;

/// Reports from transport threads to the bridge.
pub const REPORT_QUEUE: usize = 1024;

/// After stdin closes, how long answers to requests already sent may still be written out.
pub const STDIN_EOF_DRAIN: Duration = Duration::from_secs(3);

/// Attempts to resume a Streamable HTTP reply stream with `Last-Event-ID` (spec F7) before the
/// request is answered as lost.
pub const RESUME_ATTEMPTS: u32 = 3;

/// An OAuth access token is renewed this long before `expires_in` runs out (the Python tool's
/// httpx_auth `early_expiry`), so a request never carries a token that expires in flight.
pub const TOKEN_EARLY_RENEWAL: Duration = Duration::from_secs(30);

/// Largest token response or discovery document (RFC 9728 / RFC 8414 metadata) we read.
pub const METADATA_MAX_BYTES: u64 = 1024 * 1024;

/// The part of an error body quoted in a log line or a JSON-RPC error message.
pub const ERROR_BODY_QUOTE_BYTES: u64 = 512;

/// `exp` of an RFC 7523 client assertion, counted from its `iat`: a fresh assertion is signed
/// for each token request, so it only has to outlive the request (and the server's clock skew).
pub const CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// How long the next message waits for the response head of the POST before it, which shows
/// the remote has received that one (messages reach it in stdin order). Heads come within
/// milliseconds, except a JSON reply that comes only with its result: after this the next
/// message goes anyway, so a slow call cannot hold back, say, the answer to an elicitation.
pub const POST_HEAD_WAIT: Duration = Duration::from_secs(1);

/// After `notifications/initialized`, how long the next message waits for the GET stream's
/// response head: a server may send its requests only there, and drops them while no GET
/// stream is open. A remote that is slower than this gets the message anyway.
pub const GET_STREAM_HEAD_WAIT: Duration = Duration::from_secs(2);

/// The part of an error response read to find a JSON-RPC error answer in it (client mode): such
/// an answer is a few hundred bytes; anything longer is quoted, not parsed.
pub const REFUSAL_BODY_BYTES: u64 = 64 * 1024;

/// Client mode, 2026-07-28 remote: how long a `resources/(un)subscribe` answer waits for the
/// renewed `subscriptions/listen` stream to be acknowledged (then it goes out anyway).
pub const LISTEN_ACK_WAIT: Duration = Duration::from_secs(10);

/// Client mode, 2026-07-28 remote: input rounds (`InputRequiredResult`s) one request may take
/// before it is answered with an error; a remote asking for ever must not loop us for ever.
pub const MAX_INPUT_ROUNDS: usize = 32;

/// Client mode, 2026-07-28 remote: `server/discover` probes in a row after an unsupported-version
/// answer listing our version (the first request of a run may be refused regardless).
pub const DISCOVER_RETRIES: u32 = 2;
