//! Server mode: stdio children served over HTTP.
//!
//! 1. Every configured server's child is started at once, in parallel ([`Mux::start`]).
//! 2. The listener opens right away; a request for a server still starting waits for it
//!    (bounded), a server that failed answers 503.
//! 3. tiny_http serves each connection on a thread of its pool; we route each request there,
//!    by path: `/status`, `/health`, then `[/servers/NAME]/{mcp,sse,messages/}`.
//! 4. On SIGINT/SIGTERM: stop accepting, end open streams, stop every child, exit 0.
//!
//! This module parses no JSON; `streamable` and `sse` do, through `jsonrpc::Envelope`.

mod auth;
mod backend;
mod guard;
mod hangup;
mod modern;
mod respond;
mod sse;
mod status;
mod streamable;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use tiny_http::{Method, Request};

use crate::config::{ServerLimits, ServerSettings};
use crate::error::Error;
use crate::limits;
use crate::memory;
use crate::mux::{Mux, MuxOptions, Refused};
use crate::shutdown::Shutdown;
use auth::Auth;
use backend::Backend;
use guard::{Guard, Verdict};
use respond::Extra;

/// Everything a request handler reads. Immutable once serving, but for the counters.
pub struct App {
    servers: Vec<Backend>,
    default: Option<usize>,
    named: HashMap<String, usize>,
    stateless: bool,
    keepalive: Duration,
    guard: Guard,
    auth: Auth,
    limits: ServerLimits,
    /// Tells idle SSE streams that their client hung up (`None`: they notice at a write).
    hangups: Option<Arc<hangup::Watcher>>,
    /// Legacy SSE streams open, over all servers (`/status`).
    active_sse: AtomicUsize,
    /// Milliseconds since the epoch of the last `/sse` connect or `/mcp` request.
    last_activity: AtomicU64,
    shutdown: Shutdown,
}

impl App {
    fn touch(&self) {
        self.last_activity.store(now_millis(), Ordering::Relaxed);
    }
}

pub fn run(settings: ServerSettings, shutdown: Shutdown) -> Result<(), Error> {
    let limits = settings.limits;
    let options = MuxOptions {
        max_sessions: limits.max_sessions,
        max_message_bytes: limits.max_message_bytes,
    };
    let mut default = None;
    let mut named = HashMap::new();
    for (i, spec) in settings.servers.iter().enumerate() {
        match &spec.name {
            None => default = Some(i),
            Some(name) => {
                named.insert(name.clone(), i);
            }
        }
    }
    let servers: Vec<Backend> = settings
        .servers
        .into_iter()
        .map(|spec| Backend::new(spec, options, limits.max_tenants))
        .collect();
    raise_open_files_limit();
    let (listener, addr) = bind(&settings.host, settings.port, limits.http_timeout)?;
    let app = Arc::new(App {
        guard: Guard::new(
            settings.allow_origins,
            &settings.expose_headers,
            addr.ip().is_loopback(),
        ),
        servers,
        default,
        named,
        stateless: settings.stateless,
        keepalive: settings.sse_keepalive,
        auth: Auth::new(settings.auth_token),
        limits,
        hangups: hangup::Watcher::start(),
        active_sse: AtomicUsize::new(0),
        last_activity: AtomicU64::new(now_millis()),
        shutdown: shutdown.clone(),
    });
    // Each request is served on its connection's own thread (tiny_http's elastic pool,
    // patched: see vendor/tiny_http/PATCHED.md), so no hand-off between threads.
    let handler = {
        let app = app.clone();
        Arc::new(move |rq: Request| serve(&app, rq))
    };
    let http =
        tiny_http::Server::from_listener_with_handler(listener, None, handler).map_err(|e| {
            Error::Bind {
                addr: addr.to_string(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
    announce(&app, addr);
    let reaper = start_reaper(&app)?;

    shutdown.wait();
    drop(http); // closes the listener; requests on open connections are answered 503
    // The reaper only waits for the shutdown, then ends; it has nothing to report.
    let _ = reaper.join();

    info!("shutting down: stopping {} server(s)", app.servers.len());
    crate::shutdown::stop_all(&app.servers, Backend::stop);
    info!("shutdown complete");
    Ok(())
}

/// Checks every session and request against its timeout, once a tick, until shutdown; gives
/// freed memory back once the traffic has been quiet for a while after activity.
fn start_reaper(app: &Arc<App>) -> Result<thread::JoinHandle<()>, Error> {
    let app = app.clone();
    thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let shutdown = app.shutdown.receiver().clone();
            let mut ticks: u64 = 0;
            loop {
                crossbeam_channel::select! {
                    recv(shutdown) -> _ => return,
                    default(limits::REAPER_TICK) => {
                        for backend in &app.servers {
                            backend.reap(app.limits.session_idle, app.limits.request_timeout);
                        }
                        ticks += 1;
                        // Now and then, when quiet: under steady load freed memory is reused,
                        // and what a burst leaves is freed by threads ending over a while.
                        let quiet_ms = now_millis()
                            .saturating_sub(app.last_activity.load(Ordering::Relaxed));
                        if ticks.is_multiple_of(limits::RELEASE_EVERY_TICKS)
                            && quiet_ms >= limits::QUIET_BEFORE_RELEASE_MS
                        {
                            memory::release_free();
                        }
                    }
                }
            }
        })
        .map_err(|e| Error::io("starting a thread", e))
}

/// Raises the soft limit on open files to the hard one. Each connection costs two
/// descriptors (tiny_http splits it into halves), so the usual soft limit of 1024 would refuse
/// clients at about 500 open SSE streams, when the hard limit is often far higher.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            debug!("open files limit raised from {soft} to {}", limit.rlim_max);
        }
    }
}

/// Binds the listener ourselves to set options that accepted sockets inherit on Linux:
/// TCP_NODELAY (an SSE event is one small write and must not wait for the previous one's ACK,
/// Nagle's algorithm) and the read/write timeouts of `--http-timeout`.
fn bind(host: &str, port: u16, timeout: Duration) -> Result<(TcpListener, SocketAddr), Error> {
    let ip: IpAddr = match host {
        // No resolver needed for the usual names: a bare container has no /etc/hosts.
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => match h.trim_matches(|c| c == '[' || c == ']').parse() {
            Ok(ip) => ip,
            Err(_) => (h, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| Error::Bind {
                    addr: format!("{h}:{port}"),
                    source: std::io::Error::other("cannot resolve host"),
                })?,
        },
    };
    let wanted = SocketAddr::new(ip, port);
    let listener = TcpListener::bind(wanted).map_err(|source| Error::Bind {
        addr: wanted.to_string(),
        source,
    })?;
    set_socket_options(&listener, timeout);
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    Ok((listener, addr))
}

fn set_socket_options(listener: &TcpListener, timeout: Duration) {
    let one: libc::c_int = 1;
    set_option(
        listener,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &one,
        "TCP_NODELAY",
    );
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    set_option(
        listener,
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        &tv,
        "SO_RCVTIMEO",
    );
    set_option(
        listener,
        libc::SOL_SOCKET,
        libc::SO_SNDTIMEO,
        &tv,
        "SO_SNDTIMEO",
    );
}

fn set_option<T>(
    listener: &TcpListener,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and a pointer to a value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        warn!("cannot set {what}: {}", std::io::Error::last_os_error());
    }
}

fn announce(app: &App, addr: SocketAddr) {
    let base = format!("http://{addr}");
    info!(
        "mcp-proxy {} listening on {base}",
        env!("CARGO_PKG_VERSION")
    );
    let mut lines = Vec::new();
    if let Some(i) = app.default {
        lines.push((app.servers[i].label().to_string(), base.clone()));
    }
    let mut named: Vec<_> = app.named.iter().collect();
    named.sort_by_key(|(_, i)| **i);
    for (name, _) in named {
        lines.push((name.clone(), format!("{base}/servers/{name}")));
    }
    for (name, prefix) in lines {
        info!("  - {name}: {prefix}/mcp (Streamable HTTP), {prefix}/sse (SSE)");
    }
    info!("  - status: {base}/status, health: {base}/health");
    if app.auth.enabled() {
        info!("inbound authentication on: every request but /health needs the bearer token");
    }
}

/// Serves one request, unless the proxy is shutting down.
fn serve(app: &App, rq: Request) {
    if app.shutdown.is_set() {
        respond::text(rq, 503, "Shutting down", &[]);
    } else {
        handle(app, rq);
    }
}

/// Where a path leads.
enum Route {
    Status,
    Health,
    /// A server's endpoint, by the server's index.
    Server(usize, Endpoint),
    NotFound,
}

/// The MCP endpoints every server has.
enum Endpoint {
    Mcp,
    /// With the path prefix of a named server, for the `endpoint` event.
    Sse(String),
    Messages,
}

fn route(app: &App, path: &str) -> Route {
    if path == "/status" {
        return Route::Status;
    }
    if path == "/health" {
        return Route::Health;
    }
    let (index, prefix, rest) = match path.strip_prefix("/servers/") {
        Some(tail) => {
            let (name, rest) = match tail.find('/') {
                Some(i) => (&tail[..i], &tail[i..]),
                None => (tail, ""),
            };
            match app.named.get(name) {
                Some(i) => (*i, format!("/servers/{name}"), rest),
                None => return Route::NotFound,
            }
        }
        None => match app.default {
            Some(i) => (i, String::new(), path),
            None => return Route::NotFound,
        },
    };
    let endpoint = if rest == "/mcp" || rest.starts_with("/mcp/") {
        Endpoint::Mcp
    } else if rest == "/sse" {
        Endpoint::Sse(prefix)
    } else if rest.starts_with("/messages/") {
        Endpoint::Messages
    } else {
        return Route::NotFound;
    };
    Route::Server(index, endpoint)
}

fn handle(app: &App, rq: Request) {
    let verdict = app.guard.check(
        rq.method(),
        respond::request_header(&rq, "Host"),
        respond::request_header(&rq, "Origin"),
        respond::request_header(&rq, "Access-Control-Request-Method"),
        respond::request_header(&rq, "Access-Control-Request-Headers"),
    );
    let extra = match verdict {
        Verdict::Allow(extra) => extra,
        Verdict::Preflight(200, headers) => return respond::empty(rq, 200, &headers),
        Verdict::Preflight(status, headers) => {
            return respond::text(rq, status, "Disallowed CORS origin", &headers);
        }
        Verdict::Forbidden(why) => {
            warn!(
                "refused {} {}: {why}",
                rq.method(),
                crate::logging::escape_control(rq.url())
            );
            return respond::rpc_error(rq, 403, crate::jsonrpc::error::INVALID_REQUEST, why, &[]);
        }
    };
    let path = rq.url().split_once('?').map_or(rq.url(), |(path, _)| path);
    let route = route(app, path);
    if !matches!(route, Route::Health)
        && !app
            .auth
            .allows(respond::request_header(&rq, "Authorization"))
    {
        info!(
            "refused {} {}: missing or wrong bearer token (401)",
            rq.method(),
            crate::logging::escape_control(path)
        );
        let mut headers = extra.clone();
        headers.push(respond::header(
            "WWW-Authenticate",
            "Bearer realm=\"mcp-proxy\"",
        ));
        return respond::rpc_error(
            rq,
            401,
            crate::jsonrpc::error::INVALID_REQUEST,
            "Unauthorized",
            &headers,
        );
    }
    let (index, endpoint) = match route {
        Route::Status => return status::handle(app, rq, &extra),
        Route::Health => return status::health(app, rq, &extra),
        Route::NotFound => return respond::text(rq, 404, "Not Found", &extra),
        Route::Server(index, endpoint) => (index, endpoint),
    };
    match endpoint {
        Endpoint::Sse(_) if !matches!(rq.method(), Method::Get | Method::Head) => {
            return method_not_allowed(rq, "GET, HEAD", &extra);
        }
        Endpoint::Messages if *rq.method() != Method::Post => {
            return method_not_allowed(rq, "POST", &extra);
        }
        _ => {}
    }
    let mux = match app.servers[index].mux_for(&rq) {
        Ok(mux) => mux,
        Err(refused) => return refuse(rq, &refused, &extra),
    };
    match endpoint {
        Endpoint::Mcp => {
            app.touch();
            streamable::handle(app, &mux, rq, &extra)
        }
        Endpoint::Sse(prefix) => {
            app.touch();
            sse::stream(app, &mux, rq, &prefix, &extra)
        }
        Endpoint::Messages => sse::post(app, &mux, rq, &extra),
    }
}

fn method_not_allowed(rq: Request, allow: &str, extra: &Extra) {
    let mut headers = extra.clone();
    headers.push(respond::header("Allow", allow));
    respond::text(rq, 405, "Method Not Allowed", &headers);
}

/// Waits (bounded) for a server still starting; `Err` answers 503 for a server that failed.
fn ready(mux: &Mux) -> Result<(), Refused> {
    mux.wait_ready(limits::CHILD_INIT_TIMEOUT)
}

/// Answers a refusal of the mux: its HTTP status, and a JSON-RPC error body without an id.
fn refuse(rq: Request, refused: &Refused, extra: &[tiny_http::Header]) {
    refuse_request(rq, "null", refused, extra);
}

/// Answers a refusal of the request with id `id` (raw JSON): as [`refuse`], with that id.
fn refuse_request(rq: Request, id: &str, refused: &Refused, extra: &[tiny_http::Header]) {
    let code = match refused {
        Refused::UnknownSession | Refused::StreamAlreadyOpen => {
            crate::jsonrpc::error::INVALID_REQUEST
        }
        Refused::Unavailable(_) | Refused::Busy | Refused::TooManySessions => {
            crate::jsonrpc::error::SERVER_UNAVAILABLE
        }
    };
    let body = crate::jsonrpc::error::response(id, code, &refused.to_string());
    respond::json(rq, status_of(refused), &body, extra);
}

/// The HTTP status for a refusal of the mux.
fn status_of(refused: &Refused) -> u16 {
    match refused {
        Refused::UnknownSession => 404,
        Refused::StreamAlreadyOpen => 409,
        Refused::Unavailable(_) | Refused::Busy | Refused::TooManySessions => 503,
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
