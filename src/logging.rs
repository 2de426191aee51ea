//! Logging to stderr only: in client mode stdout is the protocol channel.
//! UTC timestamps (simple_logger's local-time mode can fail in a threaded process) and the
//! thread name on each line.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

pub fn init(level: LevelFilter) {
    let logger = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_utc_timestamps()
        .with_threads(true)
        // Libraries speak at warn and above; our own module carries the story.
        .with_module_level("ureq", LevelFilter::Warn.min(level))
        .with_module_level("ureq_proto", LevelFilter::Warn.min(level))
        .with_module_level("rustls", LevelFilter::Warn.min(level))
        .with_module_level("tiny_http", LevelFilter::Warn.min(level));
    let max = logger.max_level();
    // Only fails when a logger is already set, which would be our own bug in tests.
    if log::set_boxed_logger(Box::new(Guarded::new(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// simple_logger writes with `eprintln!`, which panics when stderr is gone (a pipe whose
/// reader closed): a log line would take down whichever thread wrote it, the child's stdout
/// pump included. This catches that panic and stops logging; the proxy goes on serving.
struct Guarded<L> {
    inner: L,
    stderr_gone: AtomicBool,
}

impl<L> Guarded<L> {
    fn new(inner: L) -> Guarded<L> {
        Guarded {
            inner,
            stderr_gone: AtomicBool::new(false),
        }
    }
}

impl<L: Log> Log for Guarded<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !self.stderr_gone.load(Ordering::Relaxed) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.stderr_gone.load(Ordering::Relaxed) {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| self.inner.log(record))).is_err() {
            self.stderr_gone.store(true, Ordering::Relaxed);
            log::set_max_level(LevelFilter::Off);
        }
    }

    fn flush(&self) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.inner.flush()));
    }
}

/// A value that must never reach a log line: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret<T>(pub T);

impl<T> Secret<T> {
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<T> std::fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Escapes control characters (ESC, CR, ...) so a line of foreign text stays one log line.
pub fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret("hunter2".to_string());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
