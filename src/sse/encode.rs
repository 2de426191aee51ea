//! SSE events to bytes. Does not flush: the owner of the socket flushes after each event.

use std::io::{self, Write};

/// Writes one event. `data` must not contain line breaks (compact JSON never does; a
/// multi-line value would be split into several `data:` lines, which we never need).
pub fn event(
    out: &mut impl Write,
    event: Option<&str>,
    id: Option<&str>,
    data: &str,
) -> io::Result<()> {
    debug_assert!(!data.contains('\n') && !data.contains('\r'));
    if let Some(id) = id {
        writeln!(out, "id: {id}")?;
    }
    if let Some(name) = event {
        writeln!(out, "event: {name}")?;
    }
    out.write_all(b"data: ")?;
    out.write_all(data.as_bytes())?;
    out.write_all(b"\n\n")
}

/// A JSON-RPC message as an SSE `message` event.
pub fn message(out: &mut impl Write, id: Option<&str>, json: &str) -> io::Result<()> {
    event(out, Some("message"), id, json)
}

/// A priming event (spec E8): an id to resume from, the reconnection delay, empty data.
pub fn priming(out: &mut impl Write, id: &str, retry_ms: u64) -> io::Result<()> {
    write!(out, "id: {id}\nretry: {retry_ms}\ndata: \n\n")
}

/// A comment line; clients ignore it, proxies on the way see traffic.
pub fn comment(out: &mut impl Write, text: &str) -> io::Result<()> {
    write!(out, ": {text}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout() {
        let mut out = Vec::new();
        message(&mut out, Some("7"), "{\"a\":1}").unwrap();
        event(&mut out, Some("endpoint"), None, "/messages/?session_id=ab").unwrap();
        comment(&mut out, "ping").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id: 7\nevent: message\ndata: {\"a\":1}\n\nevent: endpoint\ndata: /messages/?session_id=ab\n\n: ping\n\n"
        );
    }
}
