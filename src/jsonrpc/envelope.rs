//! Reads the JSON-RPC envelope of a message (kind, id, method) with the payload left as raw
//! bytes, and rewrites single values (an id, a progress token) by splicing their byte range.
//! HOT PATH: no `Value` tree is built and nothing is re-serialised. No IO, no routing.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// What a message is, by the JSON-RPC 2.0 rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// The routing view of one message. Borrowed from the message text; spans index into it.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub kind: Kind,
    /// The raw JSON text of the id (`7`, `"a"`), exactly as written.
    pub id: Option<&'a RawValue>,
    pub method: Option<Cow<'a, str>>,
    pub params: Option<&'a RawValue>,
    /// The raw `result` member of a response.
    pub result: Option<&'a RawValue>,
    /// The raw `error` member of a response.
    pub error: Option<&'a RawValue>,
}

/// Why a message cannot be routed.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON at all (JSON-RPC -32700).
    Parse(String),
    /// A JSON array: batches were removed in 2025-06-18 (-32600).
    Batch,
    /// JSON, but not a JSON-RPC message (-32600).
    NotJsonRpc(&'static str),
}

impl Invalid {
    pub fn code(&self) -> i64 {
        match self {
            Invalid::Parse(_) => super::error::PARSE_ERROR,
            _ => super::error::INVALID_REQUEST,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Invalid::Parse(e) => format!("Parse error: {e}"),
            Invalid::Batch => "Invalid Request: JSON-RPC batches are not supported".into(),
            Invalid::NotJsonRpc(why) => format!("Invalid Request: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Keeps a member that is present, even when its value is `null` (serde maps null to `None`).
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

impl<'a> Envelope<'a> {
    /// Parses the envelope of one message.
    pub fn parse(text: &'a str) -> Result<Envelope<'a>, Invalid> {
        // JSON's whitespace only: what Unicode also calls whitespace makes the text not JSON.
        let first = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first()
            .copied();
        match first {
            Some(b'{') => {}
            Some(b'[') => return Err(Invalid::Batch),
            _ => {
                // Not an object: still tell "not JSON" apart from "JSON but not a message".
                return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Ok(_) => Invalid::NotJsonRpc("a message must be a JSON object"),
                    Err(e) => Invalid::Parse(e.to_string()),
                });
            }
        }
        let raw: RawEnvelope<'a> =
            serde_json::from_str(text).map_err(|e| Invalid::Parse(e.to_string()))?;
        let kind = match (
            &raw.method,
            raw.id,
            raw.result.is_some() || raw.error.is_some(),
        ) {
            (Some(_), Some(id), false) => {
                check_id(id)?;
                Kind::Request
            }
            (Some(_), None, false) => Kind::Notification,
            (None, Some(_), true) => Kind::Response,
            (None, None, true) => return Err(Invalid::NotJsonRpc("a response needs an id")),
            (Some(_), _, true) => {
                return Err(Invalid::NotJsonRpc("both a method and a result/error"));
            }
            (None, _, false) => return Err(Invalid::NotJsonRpc("no method, result or error")),
        };
        Ok(Envelope {
            kind,
            id: raw.id,
            method: raw.method,
            params: raw.params,
            result: raw.result,
            error: raw.error,
        })
    }

    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// `_meta.progressToken` of the params, if any.
    pub fn progress_token(&self) -> Option<&'a RawValue> {
        #[derive(Deserialize)]
        struct Params<'b> {
            #[serde(rename = "_meta", borrow)]
            meta: Option<&'b RawValue>,
        }
        #[derive(Deserialize)]
        struct Meta<'b> {
            #[serde(rename = "progressToken", borrow)]
            token: Option<&'b RawValue>,
        }
        // Objects only: serde also reads a struct from an array, by position.
        let object = |raw: &'a RawValue| Some(raw.get()).filter(|text| text.starts_with('{'));
        let params: Params<'a> = serde_json::from_str(object(self.params?)?).ok()?;
        let meta: Meta<'a> = serde_json::from_str(object(params.meta?)?).ok()?;
        meta.token
    }

    /// A raw member of the params object (`requestId`, `progressToken`, `uri`, `level`, ...).
    pub fn param(&self, name: &str) -> Option<&'a RawValue> {
        param_of(self.params?, name)
    }

    /// A string member of the params object.
    pub fn param_str(&self, name: &str) -> Option<String> {
        serde_json::from_str(self.param(name)?.get()).ok()
    }
}

/// Ids must be strings or integers, never null (spec A2).
fn check_id(id: &RawValue) -> Result<(), Invalid> {
    let text = id.get();
    let ok = text.starts_with('"') || (!text.is_empty() && text.parse::<i64>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(Invalid::NotJsonRpc(
            "a request id must be a string or an integer",
        ))
    }
}

/// Finds one member of a raw JSON object without building the rest. Of a key written twice,
/// the last wins, as in every parser the child may use (serde_json's `Value`, Python, JS):
/// what we check must be what the child reads.
pub fn param_of<'a>(object: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    use serde::de::{MapAccess, Visitor};
    struct Find<'n>(&'n str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(object.get());
    serde::Deserializer::deserialize_map(&mut de, Find(name))
        .ok()
        .flatten()
}

/// The byte range of `part` inside `whole`. `part` must be a sub-slice of `whole`
/// (every `RawValue` parsed from `whole` is).
pub fn span_of(whole: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    debug_assert!(
        start + part.len() <= whole.len(),
        "part is not inside whole"
    );
    start..start + part.len()
}

/// Replaces byte ranges of `text` (non-overlapping, any order) in one pass.
pub fn splice(text: &str, edits: &mut [(Range<usize>, &str)]) -> String {
    edits.sort_by_key(|(range, _)| range.start);
    let grow: usize = edits.iter().map(|(_, s)| s.len()).sum();
    let mut out = String::with_capacity(text.len() + grow);
    let mut at = 0;
    for (range, with) in edits.iter() {
        out.push_str(&text[at..range.start]);
        out.push_str(with);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The message with its top-level `id` replaced by `new_id` (raw JSON text).
pub fn with_id(text: &str, env: &Envelope<'_>, new_id: &str) -> String {
    let id = env.id.expect("with_id on a message that has an id");
    splice(text, &mut [(span_of(text, id.get()), new_id)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let r = Envelope::parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert_eq!(r.kind, Kind::Request);
        assert_eq!(r.id.unwrap().get(), "1");
        let n =
            Envelope::parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind, Kind::Notification);
        let s = Envelope::parse(r#"{"jsonrpc":"2.0","id":"x","result":{}}"#).unwrap();
        assert_eq!(s.kind, Kind::Response);
        let e = Envelope::parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1}}"#).unwrap();
        assert_eq!(e.kind, Kind::Response);
        assert_eq!(e.id.unwrap().get(), "null");
    }

    #[test]
    fn invalid_messages() {
        assert!(matches!(Envelope::parse("{"), Err(Invalid::Parse(_))));
        assert!(matches!(Envelope::parse("nope"), Err(Invalid::Parse(_))));
        assert_eq!(Envelope::parse("[1]").unwrap_err(), Invalid::Batch);
        assert!(matches!(Envelope::parse("42"), Err(Invalid::NotJsonRpc(_))));
        assert!(matches!(
            Envelope::parse(r#"{"id":null,"method":"x"}"#),
            Err(Invalid::NotJsonRpc(_))
        ));
        assert!(matches!(
            Envelope::parse(r#"{"id":1.5,"method":"x"}"#),
            Err(Invalid::NotJsonRpc(_))
        ));
        assert!(matches!(
            Envelope::parse(r#"{"jsonrpc":"2.0"}"#),
            Err(Invalid::NotJsonRpc(_))
        ));
    }

    /// Found by `scripts/fuzz` (target envelope): a vertical tab (or a no-break space) before
    /// `[` is not JSON whitespace, so the text is not JSON: a parse error, not a batch.
    #[test]
    fn non_json_whitespace_before_a_bracket_is_a_parse_error() {
        assert!(matches!(
            Envelope::parse("\u{b}[[f"),
            Err(Invalid::Parse(_))
        ));
        assert!(matches!(
            Envelope::parse("\u{a0}[1]"),
            Err(Invalid::Parse(_))
        ));
        assert_eq!(Envelope::parse(" \r\n\t[1]").unwrap_err(), Invalid::Batch);
    }

    #[test]
    fn a_member_written_twice_is_read_as_its_last_value() {
        let raw: &RawValue = serde_json::from_str(r#"{"name":"echo","x":1,"name":"add"}"#).unwrap();
        assert_eq!(param_of(raw, "name").unwrap().get(), r#""add""#);
    }

    #[test]
    fn id_is_replaced_byte_exactly() {
        let text = r#"{"jsonrpc":"2.0", "id" : "abc\"d" ,"method":"tools/call","params":{"id":5}}"#;
        let env = Envelope::parse(text).unwrap();
        assert_eq!(env.id.unwrap().get(), r#""abc\"d""#);
        let out = with_id(text, &env, "17");
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0", "id" : 17 ,"method":"tools/call","params":{"id":5}}"#
        );
        let back = Envelope::parse(&out).unwrap();
        assert_eq!(with_id(&out, &back, r#""abc\"d""#), text);
    }

    #[test]
    fn progress_token_and_params() {
        let text = r#"{"id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"tok","other":[1,2]},"arguments":{}}}"#;
        let env = Envelope::parse(text).unwrap();
        let token = env.progress_token().unwrap();
        assert_eq!(token.get(), r#""tok""#);
        let out = splice(
            text,
            &mut [
                (span_of(text, token.get()), "99"),
                (span_of(text, env.id.unwrap().get()), "5"),
            ],
        );
        assert_eq!(
            out,
            r#"{"id":5,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":99,"other":[1,2]},"arguments":{}}}"#
        );
        assert_eq!(env.param_str("name").as_deref(), Some("x"));
        assert!(env.param("missing").is_none());
        let no_meta = Envelope::parse(r#"{"id":1,"method":"x","params":[1]}"#).unwrap();
        assert!(no_meta.progress_token().is_none());
    }

    /// Found by the `envelope` fuzz target's check (on a written input): serde reads a struct
    /// from an array too, so `[{"progressToken":…}]` or `"_meta":[…]` gave a progress token,
    /// which the mux would have rewritten.
    #[test]
    fn progress_token_is_only_in_objects() {
        for text in [
            r#"{"id":1,"method":"x","params":[{"progressToken":"tok"}]}"#,
            r#"{"id":1,"method":"x","params":{"_meta":["tok"]}}"#,
            r#"{"id":1,"method":"x","params":[["tok"]]}"#,
        ] {
            let env = Envelope::parse(text).unwrap();
            assert!(env.progress_token().is_none(), "{text}");
        }
        let env =
            Envelope::parse(r#"{"id":1,"method":"x","params":{"_meta":{"progressToken":"tok"}}}"#);
        assert_eq!(env.unwrap().progress_token().unwrap().get(), r#""tok""#);
    }

    #[test]
    fn escaped_method_is_decoded() {
        let env = Envelope::parse(r#"{"id":1,"method":"tools\/list"}"#).unwrap();
        assert_eq!(env.method(), "tools/list");
    }
}
