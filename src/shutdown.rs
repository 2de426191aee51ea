//! SIGINT/SIGTERM → a shutdown token. Signals are blocked in every thread and taken by one
//! `signals` thread with sigwait(2), so no code runs in a signal handler. The first signal
//! starts a graceful shutdown; a second one forces the exit at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

/// Cloneable; every clone sees the same shutdown.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<Mutex<Option<Sender<()>>>>,
    rx: Receiver<()>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(Mutex::new(Some(tx))),
            rx,
        }
    }

    /// Starts the shutdown; idempotent.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Dropping the only sender disconnects the channel: every `select!` on it wakes.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Becomes ready (disconnected) once the shutdown starts; for `select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }

    /// Blocks until the shutdown starts.
    pub fn wait(&self) {
        let _ = self.rx.recv();
    }
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the shutdown signals in the calling thread and every thread it starts later.
/// Call first thing in `main`, before any thread exists.
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: a valid, initialised set; the old mask is not needed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Starts the `signals` thread: the first signal triggers `shutdown`, a second calls `force`
/// with the signal number (which should end the process).
pub fn watch_signals(
    shutdown: Shutdown,
    force: impl Fn(libc::c_int) + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let set = signal_set();
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                if shutdown.is_set() {
                    log::warn!("second signal {sig}: exiting now");
                    force(sig);
                } else {
                    shutdown.trigger();
                    log::info!("signal {sig}: shutting down (send it again to force)");
                }
            }
        })?;
    Ok(())
}

/// Runs `stop` on every item at once, each on a thread of its own (stopping a child takes up
/// to two grace periods; several in turn would add up), and returns when all are done. An
/// item whose thread cannot start is stopped on this thread, in turn.
pub fn stop_all<T: Sync>(items: &[T], stop: impl Fn(&T) + Sync) {
    let stop = &stop;
    std::thread::scope(|scope| {
        for item in items {
            let spawned = std::thread::Builder::new()
                .name("stop".into())
                .spawn_scoped(scope, move || stop(item));
            if spawned.is_err() {
                stop(item);
            }
        }
    });
}
