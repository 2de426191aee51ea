//! The stdio side of client mode: the `stdin` thread frames lines into messages, the `stdout`
//! thread writes one message per line and flushes each. Neither knows about HTTP.

use std::io::{self, Write};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, warn};

use crate::framing::{Line, LineReader, write_line};
use crate::jsonrpc::{Envelope, Kind, error};
use crate::limits;
use crate::shutdown::Shutdown;

/// One message from the local client, with its envelope read once.
pub struct StdinMessage {
    pub text: String,
    pub kind: Kind,
    /// Raw JSON text of the id.
    pub id: Option<String>,
    pub method: Option<String>,
}

/// What the stdout thread receives.
pub enum Out {
    Line(String),
    /// Acknowledged once every line before it has been written: lets the bridge exit only
    /// after its last answers are out.
    Barrier(Sender<()>),
}

/// Starts the `stdin` thread. It ends at EOF by dropping `messages`. It is never joined: a
/// read from stdin cannot be woken, and the process exits around it.
pub fn spawn_stdin(messages: Sender<StdinMessage>, stdout: Sender<Out>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut reader = LineReader::new(io::stdin().lock(), limits::MAX_MESSAGE_BYTES);
            loop {
                let line = match reader.next_line() {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => {
                        warn!("reading stdin: {e}");
                        break;
                    }
                };
                match message_from(line) {
                    Ok(message) => {
                        if messages.send(message).is_err() {
                            break;
                        }
                    }
                    Err(reply) => {
                        // Nobody else can answer a line that never became a message.
                        let _ = stdout.send(Out::Line(reply));
                    }
                }
            }
            debug!("stdin closed");
        })?;
    Ok(())
}

/// A message, or the JSON-RPC error to answer the line with.
fn message_from(line: Line) -> Result<StdinMessage, String> {
    let text = match line {
        Line::Text(text) => text,
        Line::TooLong(n) => {
            warn!(
                "stdin: dropped a {n}-byte line (limit {})",
                limits::MAX_MESSAGE_BYTES
            );
            return Err(error::response(
                "null",
                error::INVALID_REQUEST,
                &format!("message larger than {} bytes", limits::MAX_MESSAGE_BYTES),
            ));
        }
        Line::NotUtf8 => {
            warn!("stdin: dropped a line that is not UTF-8");
            return Err(error::response(
                "null",
                error::PARSE_ERROR,
                "Parse error: not UTF-8",
            ));
        }
    };
    let (kind, id, method) = match Envelope::parse(&text) {
        Ok(env) => (
            env.kind,
            env.id.map(|id| id.get().to_string()),
            env.method.map(|m| m.into_owned()),
        ),
        Err(invalid) => {
            warn!("stdin: invalid message: {}", invalid.message());
            return Err(error::response("null", invalid.code(), &invalid.message()));
        }
    };
    Ok(StdinMessage {
        text,
        kind,
        id,
        method,
    })
}

/// Starts the `stdout` thread. A write error means our parent has gone (broken pipe): the
/// shutdown starts, and later lines are discarded so no sender ever blocks on us.
pub fn spawn_stdout(lines: Receiver<Out>, shutdown: Shutdown) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let mut broken = false;
            for item in lines {
                match item {
                    Out::Line(line) if !broken => {
                        if let Err(e) = write_line(&mut out, &line).and_then(|()| out.flush()) {
                            debug!("stdout closed ({e}): the local client is gone");
                            broken = true;
                            shutdown.trigger();
                        }
                    }
                    Out::Line(_) => {}
                    Out::Barrier(ack) => {
                        // The waiter may have given up already; nothing to tell then.
                        let _ = ack.send(());
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_get_errors_with_null_id() {
        let reply = message_from(Line::TooLong(5)).err().unwrap();
        assert!(
            reply.contains(r#""id":null"#) && reply.contains("-32600"),
            "{reply}"
        );
        let reply = message_from(Line::NotUtf8).err().unwrap();
        assert!(reply.contains("-32700"), "{reply}");
        let reply = message_from(Line::Text("{oops".into())).err().unwrap();
        assert!(reply.contains("-32700"), "{reply}");
        let ok = message_from(Line::Text(
            r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#.into(),
        ))
        .unwrap();
        assert_eq!(ok.kind, Kind::Request);
        assert_eq!(ok.id.as_deref(), Some(r#""a""#));
        assert_eq!(ok.method.as_deref(), Some("ping"));
    }
}
