//! Client mode ends when the local client that started it goes away, even while its stdin is
//! still held open by someone else (a sibling that inherited the pipe, a wrapper script's other
//! children): the stdin EOF then never comes, and nothing is ever written to stdout to fail.
//!
//! The `parent` thread polls getppid(2): once it differs from the parent we started with, the
//! parent has died and we were re-parented (to init or a subreaper), and the shutdown starts as
//! on SIGTERM (DELETE of the session, answers flushed, exit 0).
//!
//! Why not `prctl(PR_SET_PDEATHSIG, SIGTERM)`: its "parent" is the *thread* that forked us, so a
//! client that spawns us from a worker thread (a thread pool, tokio's blocking pool, a JVM) would
//! send us SIGTERM when that thread exits while the client lives on (prctl(2); Go issue 27505).
//! getppid only changes when the whole parent process is gone, and works on every Unix.

use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use log::{info, warn};

use crate::shutdown::Shutdown;

/// How often the parent is checked. A dead parent is noticed within this; one cheap syscall per
/// tick. (A timeout of client mode only; kept beside the code that uses it.)
const PARENT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Our parent's pid now; call as early as possible so a parent that dies at once is seen.
pub fn current_parent() -> libc::pid_t {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// Starts the `parent` thread, which triggers `shutdown` once `parent` (from
/// [`current_parent`]) is no longer our parent. Nothing is watched when we started as an orphan
/// or as pid 1 of a container: no parent of our own to lose. The thread ends with the shutdown.
pub fn watch(parent: libc::pid_t, shutdown: Shutdown) {
    if parent <= 1 {
        return;
    }
    if current_parent() != parent {
        info!("the parent process (pid {parent}) has gone: shutting down");
        shutdown.trigger();
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("parent".into())
        // It only sleeps and calls getppid.
        .stack_size(64 * 1024)
        .spawn(move || {
            // Disconnected (not a timeout) once the shutdown starts for another reason.
            while let Err(RecvTimeoutError::Timeout) =
                shutdown.receiver().recv_timeout(PARENT_CHECK_INTERVAL)
            {
                if current_parent() != parent {
                    info!("the parent process (pid {parent}) has gone: shutting down");
                    shutdown.trigger();
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start the parent watch thread ({e}): a dead parent goes unnoticed");
    }
}
