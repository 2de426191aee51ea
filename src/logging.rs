//! Logging to stderr only: in client mode stdout is the protocol channel.
//! UTC timestamps (simple_logger's local-time mode can fail in a threaded process) and the
//! thread name on each line.

use log::LevelFilter;

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
    // Only fails when a logger is already set, which would be our own bug in tests.
    let _ = logger.init();
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
