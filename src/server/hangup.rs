//! Noticing at once that the client of an idle SSE stream has gone.
//!
//! A stream otherwise learns that its client left only when a write fails, and the first
//! write after the peer closed still succeeds (TCP answers it with a reset): a vanished
//! client's thread, socket and session lingered for up to two keep-alive periods (30 s by
//! default), and a burst of vanished clients piled up threads. One thread here waits on
//! epoll for every open stream's socket:
//!
//! 1. the peer's FIN (`EPOLLRDHUP`) wakes the stream, which writes a keep-alive comment:
//!    a peer that only half-closed reads it, a peer that closed answers it with a reset;
//! 2. the stream then waits for that reset (`EPOLLHUP`/`EPOLLERR`) and ends when it comes.
//!
//! Linux only (epoll); elsewhere streams notice at their next failed write, as before.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, warn};

/// The epoll set of the open streams' sockets, and whom to tell.
pub struct Watcher {
    epoll: i32,
    streams: Mutex<HashMap<u64, Sender<()>>>,
    next_token: AtomicU64,
}

/// One stream's watch; ends (leaves the epoll set) when dropped, while its socket is open.
pub struct Hangup {
    watcher: Arc<Watcher>,
    fd: i32,
    token: u64,
    /// Receives once per armed watch: the peer hung up (first), or reset (after `expect_reset`).
    pub signal: Receiver<()>,
}

impl Watcher {
    /// Starts the watching thread. `None` (streams then notice at their next failed write)
    /// where epoll is missing or the thread cannot start.
    pub fn start() -> Option<Arc<Watcher>> {
        let watcher = match Watcher::new() {
            Ok(w) => Arc::new(w),
            Err(e) => {
                warn!("cannot watch SSE clients for hang-ups ({e}): noticed at the next write");
                return None;
            }
        };
        let run = watcher.clone();
        let spawned = std::thread::Builder::new()
            .name("hangups".into())
            .stack_size(64 * 1024)
            .spawn(move || run.wait_loop());
        match spawned {
            Ok(_) => Some(watcher), // runs until the process ends
            Err(e) => {
                warn!("cannot watch SSE clients for hang-ups ({e}): noticed at the next write");
                None
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn new() -> io::Result<Watcher> {
        // SAFETY: plain system call; the descriptor is ours alone.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Watcher {
            epoll,
            streams: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> io::Result<Watcher> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no epoll"))
    }

    /// Watches `fd` (an open stream's socket) for the peer hanging up.
    pub fn watch(self: &Arc<Self>, fd: i32) -> Option<Hangup> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, signal) = crossbeam_channel::bounded(1);
        self.lock().insert(token, tx);
        let hangup = Hangup {
            watcher: self.clone(),
            fd,
            token,
            signal,
        };
        match self.control(fd, token, Interest::HangUp, true) {
            Ok(()) => Some(hangup),
            Err(e) => {
                debug!("cannot watch a stream's socket: {e}");
                None // dropping `hangup` forgets the token
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<()>>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one call.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(target_os = "linux")]
    fn wait_loop(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: `events` has room for the 64 events we ask for at most.
            let n = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), 64, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                warn!("hang-up watch stopped: {e}");
                return;
            }
            let streams = self.lock();
            for event in &events[..n as usize] {
                let token = event.u64;
                if let Some(tx) = streams.get(&token) {
                    let _ = tx.try_send(()); // one signal per arming is enough
                }
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn wait_loop(&self) {}

    #[cfg(target_os = "linux")]
    fn control(&self, fd: i32, token: u64, interest: Interest, add: bool) -> io::Result<()> {
        let bits = match interest {
            Interest::HangUp => libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR,
            Interest::Reset => libc::EPOLLHUP | libc::EPOLLERR,
        };
        let mut event = libc::epoll_event {
            // One-shot: a signalled watch stays quiet until re-armed.
            events: (bits | libc::EPOLLONESHOT) as u32,
            u64: token,
        };
        let op = if add {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        // SAFETY: `fd` is the caller's open socket; `event` lives across the call.
        if unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn control(&self, _fd: i32, _token: u64, _interest: Interest, _add: bool) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no epoll"))
    }

    #[cfg(target_os = "linux")]
    fn forget(&self, fd: i32) {
        let mut unused = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `fd` is still open (the Hangup is dropped before its stream's socket).
        unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_DEL, fd, &mut unused) };
    }

    #[cfg(not(target_os = "linux"))]
    fn forget(&self, _fd: i32) {}
}

#[derive(Clone, Copy)]
enum Interest {
    /// The peer's FIN, or worse.
    HangUp,
    /// Only a reset or error: the answer to a write to a peer that closed.
    Reset,
}

impl Hangup {
    /// After the stream wrote a probe: signal only if the peer answers it with a reset.
    pub fn expect_reset(&self) {
        if let Err(e) = self
            .watcher
            .control(self.fd, self.token, Interest::Reset, false)
        {
            debug!("cannot re-arm a stream's hang-up watch: {e}");
        }
    }
}

impl Drop for Hangup {
    fn drop(&mut self) {
        self.watcher.forget(self.fd);
        self.watcher.lock().remove(&self.token);
    }
}
