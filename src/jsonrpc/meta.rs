//! Editing a request line in place for the 2026-07-28 era: `_meta` members added, a retry's
//! fields added under a new id. Every other byte of the line stays as it was (a client's
//! `requestState` or arguments must reach the server unchanged). Pure functions; no IO.

use super::envelope::{Envelope, param_of, span_of, splice};

/// `_meta` key of the protocol version a 2026-07-28 request is made in.
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities.
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the client's name and version.
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the lowest log level the request wants `notifications/message` for.
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the server's name and version in a result.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Where and what to insert into `line` (whose envelope is `env`) to add `fields` (JSON
/// members, no braces) to `params._meta`, creating `_meta` or `params` as needed; every other
/// byte stays. Callers splice it with their other edits to the line, on the envelope they
/// parsed already.
pub fn meta_insertion(
    line: &str,
    env: &Envelope<'_>,
    fields: &str,
) -> (std::ops::Range<usize>, String) {
    let (at, text) = match env.params.filter(|p| p.get().starts_with('{')) {
        Some(params) => match param_of(params, "_meta").filter(|m| m.get().starts_with('{')) {
            Some(meta) => insert_first(line, meta.get(), fields),
            None => {
                let (at, rest) = insert_first(line, params.get(), fields);
                let comma = if rest.ends_with(',') { "," } else { "" };
                (at, format!(r#""_meta":{{{fields}}}{comma}"#))
            }
        },
        None => {
            // No params at all: add them before the message's closing brace.
            let end = line.trim_end().len() - 1;
            (end, format!(r#","params":{{"_meta":{{{fields}}}}}"#))
        }
    };
    (at..at, text)
}

/// Where `fields` go to become the first members of `object` (a JSON object inside `line`),
/// and the text to insert there: with a comma when other members follow.
fn insert_first(line: &str, object: &str, fields: &str) -> (usize, String) {
    let at = span_of(line, object).start + 1;
    let empty = object[1..object.len() - 1].trim().is_empty();
    let text = if empty {
        fields.to_string()
    } else {
        format!("{fields},")
    };
    (at, text)
}

/// The request `line` under `new_id` (raw JSON), with `fields` (JSON members, no braces) added
/// to the top of its params.
pub fn with_params_fields(line: &str, fields: &str, new_id: &str) -> String {
    let Ok(env) = Envelope::parse(line) else {
        return line.to_string();
    };
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    if let Some(id) = env.id {
        edits.push((span_of(line, id.get()), new_id.to_string()));
    }
    if let Some(params) = env.params.filter(|p| p.get().starts_with('{')) {
        let (at, text) = insert_first(line, params.get(), fields);
        edits.push((at..at, text));
    }
    let mut borrowed: Vec<(std::ops::Range<usize>, &str)> =
        edits.iter().map(|(r, s)| (r.clone(), s.as_str())).collect();
    splice(line, &mut borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_to_meta(line: &str, fields: &str) -> String {
        let env = Envelope::parse(line).unwrap();
        let (at, text) = meta_insertion(line, &env, fields);
        splice(line, &mut [(at, &text)])
    }

    #[test]
    fn meta_is_added_wherever_it_goes() {
        let f = r#""k":1"#;
        assert_eq!(
            add_to_meta(r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#, f),
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1}}}"#
        );
        assert_eq!(
            add_to_meta(r#"{"id":1,"method":"m","params":{}}"#, f),
            r#"{"id":1,"method":"m","params":{"_meta":{"k":1}}}"#
        );
        assert_eq!(
            add_to_meta(r#"{"id":1,"method":"m","params":{"a":2}}"#, f),
            r#"{"id":1,"method":"m","params":{"_meta":{"k":1},"a":2}}"#
        );
        assert_eq!(
            add_to_meta(
                r#"{"id":1,"method":"m","params":{"a":2,"_meta":{"progressToken":5}}}"#,
                f
            ),
            r#"{"id":1,"method":"m","params":{"a":2,"_meta":{"k":1,"progressToken":5}}}"#
        );
        assert_eq!(
            add_to_meta(r#"{"id":1,"method":"m","params":{"_meta":{}}}"#, f),
            r#"{"id":1,"method":"m","params":{"_meta":{"k":1}}}"#
        );
    }

    #[test]
    fn resumed_requests_carry_the_answers() {
        let line = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x"}}"#;
        assert_eq!(
            with_params_fields(line, r#""inputResponses":{"a":1}"#, "9"),
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"inputResponses":{"a":1},"name":"x"}}"#
        );
    }
}
