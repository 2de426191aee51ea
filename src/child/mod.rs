//! A stdio MCP server process: spawned in its own process group, its three pipes pumped by
//! named threads, stopped with the stdio shutdown sequence (close stdin, SIGTERM, SIGKILL).
//! Knows nothing of HTTP, sessions or JSON-RPC: lines in, lines out.

mod input;
mod pump;
mod spawn;

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};

use crate::config::ServerSpec;
use crate::limits;

pub use input::{ChildInput, SendError};
pub use spawn::describe_exit;

/// A running (or exited) child process.
pub struct ChildProcess {
    pub pid: u32,
    label: String,
    /// Disconnected once the child has been reaped.
    exited: Receiver<()>,
    status: Arc<Mutex<Option<ExitStatus>>>,
}

/// What the child's stdout reader reports.
pub trait LineSink: Send + 'static {
    /// One line the child wrote (without the newline).
    fn line(&self, line: String);
    /// The child closed its stdout; `exit` describes how it ended.
    fn closed(&self, exit: String);
}

impl ChildProcess {
    /// Spawns the child and its pump threads. Returns the process and its stdin.
    /// Stdout lines longer than `max_line` bytes are dropped (and logged).
    pub fn spawn(
        spec: &ServerSpec,
        label: &str,
        max_line: usize,
        sink: impl LineSink,
    ) -> std::io::Result<(Arc<ChildProcess>, ChildInput)> {
        let mut spawned = spawn::spawn(spec)?;
        let pid = spawned.child.id();
        info!("server {label:?}: started {:?} (pid {pid})", spec.command);
        let (exited_tx, exited) = crossbeam_channel::bounded::<()>(0);
        let status = Arc::new(Mutex::new(None));
        let child = Arc::new(ChildProcess {
            pid,
            label: label.to_string(),
            exited,
            status,
        });
        let stdin = spawned.child.stdin.take().expect("stdin is piped");
        let input = ChildInput::start(stdin, label, limits::CHILD_INPUT_BYTES)?;
        pump::start(spawned, child.clone(), exited_tx, max_line, sink)?;
        Ok((child, input))
    }

    /// Waits up to `timeout` for the child to exit; its exit description if it did.
    pub fn wait_exit(&self, timeout: Duration) -> Option<String> {
        match self.exited.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => None,
            _ => Some(self.exit_description()),
        }
    }

    pub fn exit_description(&self) -> String {
        match *self.status.lock().expect("status lock") {
            Some(status) => describe_exit(status),
            None => "still running".into(),
        }
    }

    /// The stdio shutdown sequence: the caller has closed stdin (dropped every sender); wait,
    /// then SIGTERM the process group, wait, then SIGKILL it. Blocks at most 2 grace periods.
    pub fn stop(&self) {
        if let Some(how) = self.wait_exit(limits::CHILD_STOP_GRACE) {
            debug!("server {:?}: exited after stdin closed ({how})", self.label);
            // Grandchildren of an `sh -c` wrapper may still run in the group.
            spawn::signal_group(self.pid, libc::SIGKILL);
            return;
        }
        spawn::signal_group(self.pid, libc::SIGTERM);
        if self.wait_exit(limits::CHILD_STOP_GRACE).is_none() {
            warn!(
                "server {:?}: pid {} ignored SIGTERM; sending SIGKILL",
                self.label, self.pid
            );
            spawn::signal_group(self.pid, libc::SIGKILL);
            self.wait_exit(limits::CHILD_STOP_GRACE);
        } else {
            spawn::signal_group(self.pid, libc::SIGKILL);
        }
    }

    /// Kills the whole process group at once (forced exit, or a child that stopped talking).
    pub fn kill(&self) {
        spawn::signal_group(self.pid, libc::SIGKILL);
    }
}
