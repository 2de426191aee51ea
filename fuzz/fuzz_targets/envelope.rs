//! Fuzz target: the JSON-RPC envelope and id rewriting (src/jsonrpc/envelope.rs).
//!
//! Input: byte 0 picks the replacement id and token, the rest is one message (UTF-8 only: the
//! framing drops anything else). Checks:
//! 1. No panic in `Envelope::parse`, its accessors and `Invalid::{code, message}`.
//! 2. A message `parse` accepts is valid JSON, and its kind matches its members.
//! 3. Text that is not JSON is a parse error (-32700), except that which looks like a batch.
//! 4. `with_id`: only the id's bytes change; the result is valid JSON, equal to the input with
//!    `id` set; it parses again, with the new id and the same kind, method and members.
//! 5. A progress token is `params._meta.progressToken`; splicing both it and the id (as the mux
//!    does) gives valid JSON equal to the input with both set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../src/jsonrpc"]
mod jsonrpc {
    pub mod envelope;
    /// The two codes envelope.rs uses from src/jsonrpc/error.rs (which needs more of the crate).
    pub mod error {
        pub const PARSE_ERROR: i64 = -32700;
        pub const INVALID_REQUEST: i64 = -32600;
    }
}

use jsonrpc::envelope::{Envelope, Invalid, Kind, span_of, splice, with_id};

/// Replacement ids and tokens: integers and strings the mux may write, and awkward ones.
const NEW_IDS: [&str; 6] = [
    "17",
    "-9007199254740993",
    r#""s\"q""#,
    r#""é\u0000""#,
    r#""""#,
    "0",
];

/// Whether `text` is JSON by the grammar (RFC 8259), numbers of any size included.
fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// The value of a JSON text; `None` when a number is too large for `Value` (`1e999`), which
/// the grammar allows and the envelope passes through untouched.
fn value(text: &str) -> Option<Value> {
    assert!(is_json(text), "not JSON: {text:?}");
    serde_json::from_str(text).ok()
}

/// `text` is JSON, and equals `expected` when the input had a value (see `value`).
#[track_caller]
fn equals(text: &str, expected: &Option<Value>, what: &str) {
    let got = value(text);
    if let Some(expected) = expected {
        assert_eq!(got.as_ref(), Some(expected), "{what}");
    }
}

fn same_members(a: &Envelope<'_>, b: &Envelope<'_>) {
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.method, b.method);
    let raw = |v: Option<&serde_json::value::RawValue>| v.map(|v| v.get().to_owned());
    assert_eq!(raw(a.params), raw(b.params));
    assert_eq!(raw(a.result), raw(b.result));
    assert_eq!(raw(a.error), raw(b.error));
}

fuzz_target!(|input: &[u8]| {
    let [pick, message @ ..] = input else {
        return;
    };
    let Ok(text) = std::str::from_utf8(message) else {
        return;
    };
    let new_id = NEW_IDS[usize::from(pick % 6)];
    let new_token = NEW_IDS[usize::from(pick / 6 % 6)];

    let env = match Envelope::parse(text) {
        Ok(env) => env,
        Err(e) => {
            let _ = (e.code(), e.message());
            let looks_like_batch = text
                .trim_start_matches([' ', '\t', '\n', '\r'])
                .starts_with('[');
            if !is_json(text) && !looks_like_batch {
                assert!(matches!(e, Invalid::Parse(_)), "not JSON but {e:?}");
            }
            return;
        }
    };
    assert!(is_json(text), "an accepted message is JSON");
    assert!(
        text.trim_start().starts_with('{'),
        "an accepted message is an object"
    );
    let original = value(text);
    match env.kind {
        Kind::Request => assert!(env.method.is_some() && env.id.is_some()),
        Kind::Notification => assert!(env.method.is_some() && env.id.is_none()),
        Kind::Response => {
            assert!(env.id.is_some() && (env.result.is_some() || env.error.is_some()))
        }
    }
    if let Some(original) = &original {
        assert_eq!(env.id.is_some(), original.get("id").is_some());
    }
    let _ = (env.method(), env.param("requestId"), env.param_str("name"));
    let token = env.progress_token();
    if let (Some(token), Some(original)) = (token, &original) {
        assert_eq!(
            value(token.get()).as_ref(),
            original.pointer("/params/_meta/progressToken"),
            "the progress token is params._meta.progressToken"
        );
    }

    let Some(id) = env.id else {
        return;
    };
    let span = span_of(text, id.get());
    let out = with_id(text, &env, new_id);
    assert_eq!(
        &out[..span.start],
        &text[..span.start],
        "bytes before the id"
    );
    assert_eq!(&out[span.start..span.start + new_id.len()], new_id);
    assert_eq!(
        &out[span.start + new_id.len()..],
        &text[span.end..],
        "bytes after the id"
    );
    let expected = original.map(|mut v| {
        v["id"] = value(new_id).expect("a small id");
        v
    });
    equals(&out, &expected, "with_id is the input with its id set");
    let again = Envelope::parse(&out).expect("a rewritten message parses");
    assert_eq!(again.id.map(|i| i.get()), Some(new_id));
    same_members(&env, &again);
    assert_eq!(
        with_id(&out, &again, id.get()),
        text,
        "rewriting back restores the input"
    );

    if let Some(token) = token {
        let out = splice(
            text,
            &mut [
                (span_of(text, id.get()), new_id),
                (span_of(text, token.get()), new_token),
            ],
        );
        let expected = expected.map(|mut v| {
            v["params"]["_meta"]["progressToken"] = value(new_token).expect("a small token");
            v
        });
        equals(&out, &expected, "id and progress token spliced");
        let again = Envelope::parse(&out).expect("a spliced message parses");
        assert_eq!(again.progress_token().map(|t| t.get()), Some(new_token));
    }
});
