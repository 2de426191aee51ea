//! The errors that end the process, and the exit code of each.
//! A bad message from one client never becomes one of these: that is an HTTP status
//! (`server::Reject`) or a JSON-RPC error on the wire (`jsonrpc::error`).
//! This module never logs and never exits; `main.rs` does both.

use std::fmt;
use std::io;

/// A failure that stops the program.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong (exit 2, as argparse does).
    Usage(String),
    /// A configuration file or value is wrong (exit 1).
    Config { path: String, reason: String },
    /// Neither a default server nor a named server was given (exit 1).
    NoServers,
    /// The listening socket could not be opened (exit 1).
    Bind { addr: String, source: io::Error },
    /// Client mode: the remote server cannot be reached, rejected our credentials, or stayed
    /// unreachable longer than `--max-disconnected` (exit 1). One readable sentence.
    Upstream(String),
    /// An IO failure of the program itself (exit 1).
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl Error {
    pub fn io(what: &'static str, source: io::Error) -> Error {
        Error::Io { what, source }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Config { path, reason } => write!(f, "config {path}: {reason}"),
            Error::NoServers => f.write_str(
                "Either a command_or_url for a default server or at least one --named-server \
                 (or --named-server-config) must be provided for stdio mode.",
            ),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Upstream(m) => write!(f, "remote server: {m}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_others_1() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::NoServers.exit_code(), 1);
    }

    #[test]
    fn error_stays_small() {
        // It travels in every Result on the start-up path; keep it a few words.
        assert!(std::mem::size_of::<Error>() <= 64);
    }
}
