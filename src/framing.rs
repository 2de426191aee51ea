//! Newline-delimited JSON framing (the stdio transport): one message per line, capped length.
//! No threads, no JSON: bytes in, lines out.

use std::io::{self, BufRead, Read, Write};

/// One framed input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Text(String),
    /// A line longer than the cap; its bytes were discarded up to the next `\n`.
    TooLong(usize),
    /// A line that is not UTF-8 (spec A1: messages MUST be UTF-8).
    NotUtf8,
}

/// Reads lines of at most `max` bytes.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// The next non-empty line, or `None` at end of input. Blank lines are skipped.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            self.buf.clear();
            let limit = self.max as u64 + 1;
            let n = (&mut self.inner)
                .take(limit)
                .read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            if self.buf.last() != Some(&b'\n') && self.buf.len() > self.max {
                let dropped = self.buf.len() + self.discard_rest_of_line()?;
                return Ok(Some(Line::TooLong(dropped)));
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bytes = std::mem::take(&mut self.buf);
            return Ok(Some(match String::from_utf8(bytes) {
                Ok(s) => Line::Text(s),
                Err(_) => Line::NotUtf8,
            }));
        }
    }

    fn discard_rest_of_line(&mut self) -> io::Result<usize> {
        let mut dropped = 0;
        loop {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                return Ok(dropped);
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.inner.consume(i + 1);
                    return Ok(dropped + i);
                }
                None => {
                    let n = available.len();
                    self.inner.consume(n);
                    dropped += n;
                }
            }
        }
    }
}

/// Writes one message as a line. The caller flushes (after a batch, or per message).
pub fn write_line(out: &mut impl Write, message: &str) -> io::Result<()> {
    out.write_all(message.as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        assert_eq!(
            lines(b"{\"a\":1}\r\n\n  \n{\"b\":2}", 100),
            [
                Line::Text("{\"a\":1}".into()),
                Line::Text("{\"b\":2}".into())
            ]
        );
    }

    #[test]
    fn long_line_is_dropped_and_reading_goes_on() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(
            lines(&input, 10),
            [Line::TooLong(50), Line::Text("ok".into())]
        );
        assert_eq!(
            lines(b"0123456789\n", 10),
            [Line::Text("0123456789".into())]
        );
    }

    #[test]
    fn invalid_utf8_is_reported() {
        assert_eq!(
            lines(b"\xff\xfe\nok\n", 10),
            [Line::NotUtf8, Line::Text("ok".into())]
        );
    }
}
