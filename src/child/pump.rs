//! The child's output pipes, one named thread each (stdin is [`super::input`]'s):
//! - `child-out` reads stdout lines (capped) and hands them to the sink; at EOF it waits for the
//!   exit status and reports it;
//! - `child-err` logs stderr lines, prefixed with the server's name;
//! - `child-wait` reaps the process and records its status.

use std::io::BufReader;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::Sender;
use log::{info, warn};

use super::spawn::Spawned;
use super::{ChildProcess, LineSink};
use crate::framing::{Line, LineReader};
use crate::limits;

pub fn start(
    spawned: Spawned,
    process: Arc<ChildProcess>,
    exited_tx: Sender<()>,
    max_line: usize,
    sink: impl LineSink,
) -> std::io::Result<()> {
    let label = process.label.clone();
    let status = process.status.clone();
    let mut child = spawned.child;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let name = label.to_string();
    thread::Builder::new()
        .name("child-err".into())
        .spawn(move || log_stderr(stderr, &name))?;

    thread::Builder::new()
        .name("child-wait".into())
        .spawn(move || {
            let result = child.wait();
            if let Ok(s) = result {
                *status.lock().expect("status lock") = Some(s);
            }
            // Dropping the sender wakes every waiter: the child is reaped.
            drop(exited_tx);
        })?;

    let name = label.to_string();
    thread::Builder::new()
        .name("child-out".into())
        .spawn(move || read_stdout(stdout, &name, &process, max_line, sink))?;
    Ok(())
}

fn read_stdout(
    stdout: std::process::ChildStdout,
    label: &str,
    process: &ChildProcess,
    max_line: usize,
    sink: impl LineSink,
) {
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, stdout), max_line);
    loop {
        match reader.next_line() {
            Ok(Some(Line::Text(line))) => sink.line(line),
            Ok(Some(Line::TooLong(n))) => warn!(
                "server {label:?}: dropped a {n}-byte stdout line (limit {max_line} bytes, --max-message-size)"
            ),
            Ok(Some(Line::NotUtf8)) => {
                warn!("server {label:?}: dropped a stdout line that is not UTF-8")
            }
            Ok(None) => break,
            Err(e) => {
                warn!("server {label:?}: reading stdout: {e}");
                break;
            }
        }
    }
    // stdout is closed; the exit status follows shortly unless the child closed stdout and
    // kept running, which makes it useless to us: kill it.
    let exit = match process.wait_exit(limits::CHILD_STOP_GRACE) {
        Some(how) => how,
        None => {
            warn!(
                "server {label:?}: closed stdout but still runs; killing pid {}",
                process.pid
            );
            process.kill();
            process
                .wait_exit(limits::CHILD_STOP_GRACE)
                .unwrap_or_else(|| "closed stdout".into())
        }
    };
    sink.closed(exit);
}

fn log_stderr(stderr: std::process::ChildStderr, label: &str) {
    let mut reader = LineReader::new(BufReader::new(stderr), 64 * 1024);
    loop {
        match reader.next_line() {
            // Debug-quoted: the child's text cannot forge our log lines.
            Ok(Some(Line::Text(line))) => {
                info!("[{label}] {}", crate::logging::escape_control(&line))
            }
            Ok(Some(Line::TooLong(n))) => info!("[{label}] <{n} bytes of stderr>"),
            Ok(Some(Line::NotUtf8)) => info!("[{label}] <non-UTF-8 stderr line>"),
            Ok(None) | Err(_) => return,
        }
    }
}
