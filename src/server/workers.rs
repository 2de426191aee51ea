//! An elastic pool of request threads.
//!
//! Each worker blocks in tiny_http's `recv()` and serves the request it gets on its own
//! stack. A worker that takes the last idle slot starts another, so a new request never
//! waits behind a long one (an SSE stream holds its worker for hours); a worker ends when
//! it finds more than `MAX_IDLE` others idle, or when it has waited `LINGER` for work with
//! more than `INITIAL` idle. Under steady load no thread is created per request:
//! spawning one cost more than the rest of a small `/mcp` round trip (perf: `clone`,
//! stack mapping and the scheduler were the top of the profile).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use log::{debug, error};
use tiny_http::Request;

use crate::limits;

/// Idle workers kept warm; a worker finishing a request above this many idle ones ends.
const MAX_IDLE: usize = 16;

/// Started up front, so the first burst does not pay for spawning; kept when idle.
const INITIAL: usize = 4;

/// How long a worker above `INITIAL` waits for a request before it ends.
const LINGER: Duration = Duration::from_secs(5);

pub struct Workers<H> {
    http: Arc<tiny_http::Server>,
    handler: H,
    /// Workers waiting in `recv()`, or about to.
    idle: AtomicUsize,
    /// Workers alive, idle or busy (for the log and `/status`).
    alive: AtomicUsize,
}

/// What a worker does with a request, and when to stop taking them.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, rq: Request);
    /// Whether the server is shutting down: workers then stop taking requests.
    fn stopping(&self) -> bool;
    /// Answers a request that arrives during shutdown.
    fn refuse(&self, rq: Request);
}

impl<H: Handler> Workers<H> {
    /// Starts the pool. Returns once the first worker runs; the workers end after
    /// `http.unblock()` is called with `stopping()` true.
    pub fn start(http: Arc<tiny_http::Server>, handler: H) -> Arc<Self> {
        let pool = Arc::new(Workers {
            http,
            handler,
            idle: AtomicUsize::new(0),
            alive: AtomicUsize::new(0),
        });
        for _ in 0..INITIAL {
            pool.spawn();
        }
        pool
    }

    /// Workers alive now.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    fn spawn(self: &Arc<Self>) {
        self.idle.fetch_add(1, Ordering::SeqCst);
        self.alive.fetch_add(1, Ordering::Relaxed);
        let pool = self.clone();
        let spawned = thread::Builder::new()
            .name("http".into())
            .stack_size(limits::HANDLER_STACK_BYTES)
            .spawn(move || pool.work());
        if let Err(e) = spawned {
            self.idle.fetch_sub(1, Ordering::SeqCst);
            self.alive.fetch_sub(1, Ordering::Relaxed);
            // The others still serve; this request waits for one of them.
            error!("cannot start a request thread: {e}");
        }
    }

    fn work(self: Arc<Self>) {
        while !self.handler.stopping() {
            let rq = match self.http.recv_timeout(LINGER) {
                Ok(Some(rq)) => rq,
                // Idle for a while (or woken by unblock(): the loop checks for shutdown).
                Ok(None) => {
                    if self.retire_above(INITIAL) {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    debug!("accept: {e}");
                    continue;
                }
            };
            if self.handler.stopping() {
                self.handler.refuse(rq);
                break;
            }
            // Taking the last idle slot: start a replacement before the request may block.
            if self.idle.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.spawn();
            }
            self.handler.handle(rq);
            self.idle.fetch_add(1, Ordering::SeqCst);
            if self.retire_above(MAX_IDLE) {
                return;
            }
        }
        self.idle.fetch_sub(1, Ordering::SeqCst);
        self.alive.fetch_sub(1, Ordering::Relaxed);
        // unblock() wakes one waiter: pass the wake-up on to the next worker.
        self.http.unblock();
    }

    /// Ends this (idle) worker if more than `keep` are idle; true if it should return.
    fn retire_above(&self, keep: usize) -> bool {
        let mut idle = self.idle.load(Ordering::SeqCst);
        while idle > keep {
            match self
                .idle
                .compare_exchange(idle, idle - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    self.alive.fetch_sub(1, Ordering::Relaxed);
                    return true;
                }
                Err(now) => idle = now,
            }
        }
        false
    }
}
