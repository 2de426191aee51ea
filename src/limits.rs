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

/// Messages queued for one child's stdin. A full queue means the child is not reading;
/// HTTP callers then wait up to [`CHILD_SEND_TIMEOUT`] and get 503.
pub const CHILD_INPUT_QUEUE: usize = 1024;

/// How long an HTTP handler waits for room in a child's input queue.
pub const CHILD_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages queued for one downstream stream (a POST's SSE reply, a GET stream, a legacy SSE
/// stream). The router never blocks on a client: when this fills, the client is too slow and
/// its stream is closed.
pub const STREAM_QUEUE: usize = 4096;

/// Unrelated messages (log lines, list_changed) kept for a Streamable HTTP session that has no
/// stream open to carry them; delivered when its GET stream opens. Oldest dropped first.
pub const SESSION_BACKLOG: usize = 256;

/// Default interval of the `: ping` comment on idle SSE streams (the Python tool's
/// sse-starlette uses 15 s); also how a vanished client is noticed on an idle stream
/// (`--sse-keepalive`).
pub const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// Stack of the threads we spawn per HTTP request. serde_json stops at 128 levels of nesting,
/// which needs far less; measured peak below 64 KiB in a debug build.
pub const HANDLER_STACK_BYTES: usize = 256 * 1024;

/// Downstream sessions of one server at once (Streamable HTTP and SSE together).
pub const MAX_SESSIONS: usize = 10_000;
