//! Fuzz target: the SSE parser (src/sse/parse.rs).
//!
//! Input: byte 0 picks the size cap (high bit set: 1 MiB, so never reached; otherwise 1..=64),
//! byte 1 seeds the chunking, the rest is the event stream. Checks:
//! 1. No panic, whatever the bytes and wherever the chunks are cut (empty chunks included).
//! 2. Fed whole, one byte at a time, in seeded chunks or through `EventReader`: the same events,
//!    and the same error; without an error, the same last event id and retry.
//! 3. Under the large cap, the events, last event id and retry equal those of a line-by-line
//!    reference model written from the WHATWG "event stream interpretation" text.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/sse/parse.rs"]
mod parse;

use parse::{Event, EventReader, Parser};

/// What one run of the parser produced: the events, whether it failed, and the final state.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Event>,
    too_large: bool,
    last_id: Option<String>,
    retry_ms: Option<u64>,
}

/// A tiny deterministic generator for chunk lengths (xorshift).
struct Lengths(u32);

impl Lengths {
    fn next(&mut self, most: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 as usize) % (most + 1)
    }
}

fn run(max: usize, chunks: impl Iterator<Item = Vec<u8>>) -> Outcome {
    let mut p = Parser::new(max);
    let mut events = Vec::new();
    let mut too_large = false;
    for chunk in chunks {
        if p.feed(&chunk, &mut events).is_err() {
            too_large = true;
            break;
        }
    }
    Outcome {
        events,
        too_large,
        last_id: p.last_event_id().map(str::to_owned),
        retry_ms: p.retry_ms(),
    }
}

/// A `Read` handing out the stream in seeded pieces of 1..=9 bytes.
struct Pieces<'a> {
    rest: &'a [u8],
    lengths: Lengths,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (1 + self.lengths.next(8))
            .min(self.rest.len())
            .min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// The WHATWG algorithm, line by line over the whole stream, as plainly as it is written.
fn model(stream: &[u8]) -> (Vec<Event>, Option<String>, Option<u64>) {
    let stream = stream.strip_prefix(b"\xef\xbb\xbf").unwrap_or(stream);
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\r' => {
                lines.push(&stream[start..i]);
                i += if stream.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            b'\n' => {
                lines.push(&stream[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    // A last line without its end is never processed (the stream ended mid-line).
    let (mut data, mut event_type, mut last_id, mut retry) =
        (String::new(), String::new(), None::<String>, None::<u64>);
    let mut events = Vec::new();
    for line in lines {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            data.pop(); // the trailing LF
            events.push(Event {
                event: if event_type.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut event_type)
                },
                data: std::mem::take(&mut data),
                id: last_id.clone(),
            });
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = Some(value.to_owned()),
            // Digits only; an overflowing number is not a delay (the parser's reading: none).
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok();
            }
            _ => {}
        }
    }
    (events, last_id, retry)
}

fuzz_target!(|input: &[u8]| {
    let [cap, seed, stream @ ..] = input else {
        return;
    };
    let max = if cap & 0x80 != 0 {
        1 << 20
    } else {
        1 + usize::from(cap & 0x3f)
    };
    let whole = run(max, std::iter::once(stream.to_vec()));
    let bytewise = run(max, stream.iter().map(|&b| vec![b]));
    assert_eq!(whole, bytewise, "one byte at a time");

    let mut lengths = Lengths(u32::from(*seed) | 0x100);
    let mut rest = stream;
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        // 0..=7: empty chunks on purpose, a caller may feed one.
        let n = lengths.next(7).min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let chunked = run(max, chunks.into_iter());
    assert_eq!(whole, chunked, "seeded chunks");

    let mut reader = EventReader::new(
        Pieces {
            rest: stream,
            lengths: Lengths(u32::from(*seed) | 0x200),
        },
        max,
    );
    let mut read = Vec::new();
    let failed = loop {
        match reader.next_event() {
            Ok(Some(e)) => read.push(e),
            Ok(None) => break false,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                break true;
            }
        }
    };
    assert_eq!(failed, whole.too_large, "EventReader error");
    if !failed {
        assert_eq!(read, whole.events, "EventReader events");
    }

    if max == 1 << 20 {
        assert!(
            !whole.too_large,
            "cap of 1 MiB reached by a libFuzzer input"
        );
        let (events, last_id, retry) = model(stream);
        assert_eq!(whole.events, events, "reference model: events");
        assert_eq!(whole.last_id, last_id, "reference model: last event id");
        assert_eq!(whole.retry_ms, retry, "reference model: retry");
    }
});
