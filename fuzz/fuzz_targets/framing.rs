//! Fuzz target: newline-delimited framing (src/framing.rs).
//!
//! Input: byte 0 picks the line cap (high bit set: 1 MiB; otherwise 0..=63), byte 1 seeds the
//! buffer size and the read sizes, the rest is the stdin stream. Checks:
//! 1. No panic, whatever the bytes, the cap and however the reads are cut.
//! 2. The lines read from the whole slice and through a small `BufReader` over short reads are
//!    the same, and equal a reference model: split on `\n`; a line longer than the cap (its
//!    `\r`s counted) is `TooLong(its length)`; trailing `\r`s go; blank lines are skipped; the
//!    rest is `Text` or `NotUtf8`.
//! 3. Every `Text` line, written back with `write_line`, reads back as itself.
#![no_main]

use std::io::{BufReader, Read};

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/framing.rs"]
mod framing;

use framing::{Line, LineReader, write_line};

/// A `Read` handing out the stream in seeded pieces of 1..=8 bytes.
struct Pieces<'a> {
    rest: &'a [u8],
    state: u32,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let n = (1 + self.state as usize % 8)
            .min(self.rest.len())
            .min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

fn read_all(reader: impl std::io::BufRead, max: usize) -> Vec<Line> {
    let mut r = LineReader::new(reader, max);
    let mut out = Vec::new();
    while let Some(line) = r.next_line().expect("reading from memory does not fail") {
        out.push(line);
    }
    out
}

fn model(stream: &[u8], max: usize) -> Vec<Line> {
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop(); // the stream ended with `\n` (or was empty)
    }
    let mut out = Vec::new();
    for seg in segments {
        if seg.len() > max {
            out.push(Line::TooLong(seg.len()));
            continue;
        }
        let mut end = seg.len();
        while end > 0 && seg[end - 1] == b'\r' {
            end -= 1;
        }
        let seg = &seg[..end];
        if seg.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(match std::str::from_utf8(seg) {
            Ok(s) => Line::Text(s.to_owned()),
            Err(_) => Line::NotUtf8,
        });
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let [cap, seed, stream @ ..] = input else {
        return;
    };
    let max = if cap & 0x80 != 0 {
        1 << 20
    } else {
        usize::from(cap & 0x3f)
    };
    let whole = read_all(stream, max);
    let buffered = read_all(
        BufReader::with_capacity(
            1 + usize::from(seed % 16),
            Pieces {
                rest: stream,
                state: u32::from(*seed) | 0x100,
            },
        ),
        max,
    );
    assert_eq!(whole, buffered, "small buffer and short reads");
    assert_eq!(whole, model(stream, max), "reference model");

    for line in &whole {
        if let Line::Text(text) = line {
            let mut wire = Vec::new();
            write_line(&mut wire, text).expect("writing to memory does not fail");
            assert_eq!(
                read_all(&wire[..], max),
                [Line::Text(text.clone())],
                "round trip"
            );
        }
    }
});
