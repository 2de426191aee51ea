//! The child's stdin, written by whichever thread has a message for it.
//!
//! A message goes into the pipe from the sender's own thread, with a write that cannot block
//! (the pipe is non-blocking): no hand-off to another thread, so no wake-up and no context
//! switch per message, which on a busy host is most of what a hop costs. What the pipe cannot
//! take at once (the child is slow, or the message is large) waits in a bounded backlog that
//! the `child-in` thread writes as the child reads; every later message queues behind it, so
//! the child reads its messages in the order they were sent. The lock covers non-blocking
//! writes only: no thread ever waits on it while another is blocked in IO.
//!
//! Dropping the last [`ChildInput`] closes stdin (the child's cue to exit) once the backlog
//! is written.

use std::io::{ErrorKind, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::process::ChildStdin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::debug;

use crate::limits;

/// Why a message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The backlog stayed full: the child is not reading.
    Full,
    /// Stdin is closed: the child exited or closed it.
    Closed,
}

/// A handle on the child's stdin; clones share it.
#[derive(Clone)]
pub struct ChildInput(Arc<Handle>);

/// Held by every [`ChildInput`] clone; the last one dropped tells the writer to finish.
struct Handle(Arc<Shared>);

struct Shared {
    label: String,
    state: Mutex<State>,
    /// The writer waits here for a backlog (or for the last handle to go).
    backlogged: Condvar,
    /// Senders wait here for the backlog to shrink below `limit` (or stdin to close).
    room: Condvar,
    /// Backlog bytes beyond which senders wait; one message may go past it.
    limit: usize,
}

struct State {
    /// `None` once closed.
    pipe: Option<ChildStdin>,
    /// Bytes not yet in the pipe, from `written` on.
    backlog: Vec<u8>,
    written: usize,
    /// Messages that went into the backlog since it was last empty (a second bound: many
    /// small messages behind a child that does not read).
    backlogged: usize,
    handles_gone: bool,
}

/// Backlog capacity kept once it is written; more goes back to the allocator.
const KEEP_BACKLOG: usize = 64 * 1024;

impl ChildInput {
    /// Makes `pipe` non-blocking and starts its `child-in` thread.
    pub fn start(pipe: ChildStdin, label: &str, limit: usize) -> std::io::Result<ChildInput> {
        set_nonblocking(&pipe)?;
        let shared = Arc::new(Shared {
            label: label.to_string(),
            state: Mutex::new(State {
                pipe: Some(pipe),
                backlog: Vec::new(),
                written: 0,
                backlogged: 0,
                handles_gone: false,
            }),
            backlogged: Condvar::new(),
            room: Condvar::new(),
            limit,
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("child-in".into())
            .spawn(move || write_backlog(&writer))?;
        Ok(ChildInput(Arc::new(Handle(shared))))
    }

    /// Sends one message (a line without its newline), waiting up to `timeout` for room.
    pub fn send_timeout(&self, line: &str, timeout: Duration) -> Result<(), SendError> {
        let shared = &self.0.0;
        let deadline = Instant::now() + timeout;
        let mut state = shared.lock();
        loop {
            if state.pipe.is_none() {
                return Err(SendError::Closed);
            }
            if state.has_room(shared.limit) {
                return shared.push(state, line);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SendError::Full);
            }
            state = shared
                .room
                .wait_timeout(state, left)
                .expect("child input lock")
                .0;
        }
    }

    /// Sends one message if there is room now; never waits (for the child-out thread: a
    /// child that does not read while it writes would otherwise deadlock us both).
    pub fn try_send(&self, line: &str) -> Result<(), SendError> {
        let shared = &self.0.0;
        let state = shared.lock();
        if state.pipe.is_none() {
            return Err(SendError::Closed);
        }
        if !state.has_room(shared.limit) {
            return Err(SendError::Full);
        }
        shared.push(state, line)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().handles_gone = true;
        self.0.backlogged.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("child input lock")
    }

    /// Writes `line` and its newline now, as far as the pipe takes them, or queues them
    /// behind the backlog.
    fn push(&self, mut state: MutexGuard<'_, State>, line: &str) -> Result<(), SendError> {
        let parts = [line.as_bytes(), b"\n"];
        let mut taken = 0;
        if state.pending() == 0 {
            let pipe = state.pipe.as_mut().expect("checked open");
            let slices = parts.map(IoSlice::new);
            match pipe.write_vectored(&slices) {
                Ok(n) => taken = n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(&mut state, &e);
                    return Err(SendError::Closed);
                }
            }
        }
        let total = line.len() + 1;
        if taken < total {
            for part in parts {
                let skip = taken.min(part.len());
                state.backlog.extend_from_slice(&part[skip..]);
                taken -= skip;
            }
            state.backlogged += 1;
            drop(state);
            self.backlogged.notify_one();
        }
        Ok(())
    }

    fn close(&self, state: &mut State, why: &std::io::Error) {
        debug!("server {:?}: stdin closed: {why}", self.label);
        state.pipe = None;
        state.backlog = Vec::new();
        state.written = 0;
        state.backlogged = 0;
        self.room.notify_all();
        self.backlogged.notify_one();
    }
}

impl State {
    fn pending(&self) -> usize {
        self.backlog.len() - self.written
    }

    /// Whether a message may go in: the backlog is under both of its bounds (one message
    /// may take it past the byte bound, however large, so that any message can be sent).
    fn has_room(&self, limit: usize) -> bool {
        self.pending() < limit && self.backlogged < limits::CHILD_INPUT_MESSAGES
    }

    /// Moves what the pipe takes now from the backlog into it.
    fn write_some(&mut self) -> std::io::Result<()> {
        let pipe = self.pipe.as_mut().expect("checked open");
        match pipe.write(&self.backlog[self.written..]) {
            Ok(n) => self.written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
        if self.written == self.backlog.len() {
            self.backlog.clear();
            self.backlog.shrink_to(KEEP_BACKLOG);
            self.written = 0;
            self.backlogged = 0;
        } else if self.written > self.backlog.len() / 2 {
            self.backlog.drain(..self.written);
            self.backlog
                .shrink_to(KEEP_BACKLOG.max(2 * self.backlog.len()));
            self.written = 0;
        }
        Ok(())
    }
}

/// The `child-in` thread: writes the backlog as the pipe drains; closes stdin when every
/// handle is gone and nothing is left to write.
fn write_backlog(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        while state.pending() == 0 && !state.handles_gone && state.pipe.is_some() {
            state = shared.backlogged.wait(state).expect("child input lock");
        }
        let Some(pipe) = &state.pipe else { return };
        if state.pending() == 0 {
            // Every handle is gone: dropping the pipe closes the child's stdin.
            state.pipe = None;
            return;
        }
        // Wait, without the lock, for the child to read. Only this thread writes while a
        // backlog exists and only this thread or a failed write closes, so the fd stays valid.
        let fd = pipe.as_raw_fd();
        drop(state);
        let waited = wait_writable(fd);
        state = shared.lock();
        if let Err(e) = waited {
            shared.close(&mut state, &e);
            return;
        }
        if state.pipe.is_none() {
            return;
        }
        let before = state.pending();
        if let Err(e) = state.write_some() {
            shared.close(&mut state, &e);
            return;
        }
        if state.pending() < before {
            shared.room.notify_all();
        }
    }
}

fn set_nonblocking(pipe: &ChildStdin) -> std::io::Result<()> {
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a file descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks until `fd` can be written (or is broken: the write that follows says how).
fn wait_writable(fd: i32) -> std::io::Result<()> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut poll, 1, -1) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e); // not a state that a retry would leave
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};

    /// `sh -c script` with piped stdin and stdout.
    fn child(script: &str) -> (Child, ChildStdin) {
        let mut c = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = c.stdin.take().unwrap();
        (c, stdin)
    }

    fn lines_of(mut c: Child) -> Vec<String> {
        let out = c.stdout.take().unwrap();
        let lines = BufReader::new(out).lines().map(Result::unwrap).collect();
        c.wait().unwrap();
        lines
    }

    #[test]
    fn a_slow_reader_gets_every_message_in_order_then_eof() {
        // The child starts reading late: the pipe (64 KiB) fills, the rest waits in the
        // backlog, and messages sent meanwhile queue behind it.
        let (c, stdin) = child("sleep 0.3; cat");
        let input = ChildInput::start(stdin, "t", 8 << 20).unwrap();
        let big = "x".repeat(10_000);
        let sent: Vec<String> = (0..200).map(|i| format!("{i} {big}")).collect();
        for line in &sent {
            input.send_timeout(line, Duration::from_secs(10)).unwrap();
        }
        drop(input);
        assert_eq!(lines_of(c), sent);
    }

    #[test]
    fn senders_wait_for_room_then_give_up_and_try_send_never_waits() {
        let (mut c, stdin) = child("exec sleep 30");
        let input = ChildInput::start(stdin, "t", 100_000).unwrap();
        let line = "y".repeat(50_000);
        // 64 KiB in the pipe, then the backlog passes its limit.
        let mut accepted = 0;
        while input.try_send(&line).is_ok() {
            accepted += 1;
            assert!(accepted < 100, "the backlog has no limit");
        }
        assert_eq!(input.try_send(&line), Err(SendError::Full));
        let start = Instant::now();
        let r = input.send_timeout(&line, Duration::from_millis(200));
        assert_eq!(r, Err(SendError::Full));
        assert!(start.elapsed() >= Duration::from_millis(200));
        c.kill().unwrap();
        c.wait().unwrap();
        // The writer notices the broken pipe; waiting senders are told it is closed.
        let r = input.send_timeout(&line, Duration::from_secs(10));
        assert_eq!(r, Err(SendError::Closed));
    }

    #[test]
    fn a_large_backlog_goes_back_to_the_allocator_once_written() {
        let (c, stdin) = child("sleep 0.2; cat >/dev/null");
        let input = ChildInput::start(stdin, "t", 8 << 20).unwrap();
        input
            .send_timeout(&"z".repeat(6 << 20), Duration::from_secs(10))
            .unwrap();
        let shared = &input.0.0;
        let start = Instant::now();
        while shared.lock().pending() > 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        let capacity = shared.lock().backlog.capacity();
        assert!(capacity <= KEEP_BACKLOG, "{capacity} bytes kept");
        drop(input);
        lines_of(c);
    }

    #[test]
    fn many_small_messages_behind_a_child_that_does_not_read_are_refused() {
        let (mut c, stdin) = child("exec sleep 30");
        let input = ChildInput::start(stdin, "t", 8 << 20).unwrap();
        let mut accepted = 0;
        while input.try_send("{}").is_ok() {
            accepted += 1;
            assert!(accepted < 100_000, "no bound on the number of messages");
        }
        // The pipe holds 64 KiB of 3-byte lines, then the backlog takes its count.
        assert!(
            accepted <= 65_536 / 3 + limits::CHILD_INPUT_MESSAGES + 1,
            "{accepted}"
        );
        c.kill().unwrap();
        c.wait().unwrap();
    }

    #[test]
    fn a_child_that_exited_refuses_messages() {
        let (mut c, stdin) = child("exit 0");
        c.wait().unwrap();
        let input = ChildInput::start(stdin, "t", 1 << 20).unwrap();
        // A child forked meanwhile by another test may hold the read end until it execs: a
        // write or two may still land in the pipe before the first one fails.
        let start = Instant::now();
        while input.try_send("{}").is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "writes never failed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(input.try_send("{}"), Err(SendError::Closed));
        assert_eq!(
            input.send_timeout("{}", Duration::from_secs(1)),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn dropping_the_last_handle_closes_stdin() {
        let (mut c, stdin) = child("cat");
        let input = ChildInput::start(stdin, "t", 1 << 20).unwrap();
        let other = input.clone();
        input.try_send("one").unwrap();
        drop(input);
        other.try_send("two").unwrap();
        drop(other);
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "one\ntwo\n");
        assert!(c.wait().unwrap().success());
    }
}
