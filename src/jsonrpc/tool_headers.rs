//! `x-mcp-header` (2026-07-28, "Custom Headers from Tool Parameters"): the tool parameters a
//! tool's input schema mirrors into `Mcp-Param-{header}` request headers. Both modes read the
//! annotations with the one walk here (`annotations`):
//! 1. client mode checks them as the spec asks of a client ([`checked_header_params`]) and
//!    leaves a tool with an invalid one out of the list its client sees;
//! 2. server mode takes what its child declares as it is ([`declared_header_params`]) and
//!    checks a request's `Mcp-Param-*` headers against those.
//! 3. header values, `Mcp-Name` and `Mcp-Method` too, are plain or `=?base64?…?=` (spec
//!    "Value Encoding"): client mode writes them ([`encode_header_value`]), server mode reads
//!    them ([`decode_header_value`]).
//!
//! Pure functions; no IO.

use std::collections::HashMap;

use serde_json::Value;

/// A tool parameter mirrored into an `Mcp-Param-{header}` request header (`x-mcp-header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParam {
    /// The chain of `properties` keys from the schema's root to the parameter.
    pub path: Vec<String>,
    pub header: String,
}

/// Every tool's header parameters, by tool name.
pub type ToolHeaders = HashMap<String, Vec<HeaderParam>>;

/// One `x-mcp-header` annotation as the schema writes it, valid or not.
struct Annotation<'a> {
    /// The chain of `properties` keys from the schema's root to the annotated property.
    path: Vec<String>,
    /// The annotated property's schema.
    property: &'a Value,
    /// The annotation's value (a header name, if the schema is valid).
    header: &'a Value,
}

impl Annotation<'_> {
    /// The annotated property's own name (the last key of its path).
    fn name(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }

    /// The annotation as a header parameter, unchecked; `None` when its value is no string.
    fn to_param(&self) -> Option<HeaderParam> {
        Some(HeaderParam {
            path: self.path.clone(),
            header: self.header.as_str()?.to_string(),
        })
    }
}

/// Every `x-mcp-header` annotation reachable from `schema`'s root through `properties` only
/// (the spec's "statically reachable" rule), in schema order, a property before the ones
/// nested in it.
fn annotations(schema: &Value) -> Vec<Annotation<'_>> {
    let mut found = Vec::new();
    collect_annotations(schema, &mut Vec::new(), &mut found);
    found
}

fn collect_annotations<'a>(
    schema: &'a Value,
    path: &mut Vec<String>,
    found: &mut Vec<Annotation<'a>>,
) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        path.push(name.clone());
        if let Some(header) = property.get("x-mcp-header") {
            found.push(Annotation {
                path: path.clone(),
                property,
                header,
            });
        }
        collect_annotations(property, path, found);
        path.pop();
    }
}

/// The header parameters a tool declares, taken as written: every annotation whose value is
/// a string, with no other check (server mode: its child's schema is what requests are
/// checked against).
pub fn declared_header_params(schema: &Value) -> Vec<HeaderParam> {
    annotations(schema)
        .iter()
        .filter_map(Annotation::to_param)
        .collect()
}

/// The header parameters of a tool's input schema, checked as the spec asks of a client;
/// `Err(why)` for the first invalid annotation (spec "x-mcp-header": a non-empty token, on a
/// string, integer or boolean parameter, unique case-insensitively).
pub fn checked_header_params(schema: &Value) -> Result<Vec<HeaderParam>, String> {
    let found = annotations(schema)
        .iter()
        .map(checked_param)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, a) in found.iter().enumerate() {
        if found[..i]
            .iter()
            .any(|b| b.header.eq_ignore_ascii_case(&a.header))
        {
            return Err(format!("x-mcp-header {:?} is used twice", a.header));
        }
    }
    Ok(found)
}

/// One annotation as a header parameter, or why it is invalid.
fn checked_param(annotation: &Annotation<'_>) -> Result<HeaderParam, String> {
    let name = annotation.name();
    let header = annotation
        .header
        .as_str()
        .ok_or_else(|| format!("x-mcp-header of {name:?} is not a string"))?;
    if header.is_empty() {
        return Err(format!("x-mcp-header of {name:?} is empty"));
    }
    if !header.bytes().all(is_token_char) {
        return Err(format!(
            "x-mcp-header {header:?} of {name:?} is not a header name token"
        ));
    }
    if !primitive_type(annotation.property.get("type")) {
        return Err(format!(
            "x-mcp-header {header:?} is on {name:?}, which is not a string, integer or boolean"
        ));
    }
    Ok(HeaderParam {
        path: annotation.path.clone(),
        header: header.to_string(),
    })
}

/// RFC 9110 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `type` a header can carry: string, integer or boolean (`null` beside one of them is
/// allowed: a null value just sends no header). No `type` at all is not refused.
fn primitive_type(declared: Option<&Value>) -> bool {
    let ok = |t: &str| matches!(t, "string" | "integer" | "boolean");
    match declared {
        None => true,
        Some(Value::String(t)) => ok(t),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            names.len() == types.len()
                && names.iter().all(|t| ok(t) || *t == "null")
                && names.iter().any(|t| ok(t))
        }
        Some(_) => false,
    }
}

/// A header value as sent (spec "Value Encoding"): plain when it is visible ASCII and spaces
/// without leading or trailing whitespace, else `=?base64?{Base64 of UTF-8}?=` (so is a plain
/// value that looks like that form).
pub fn encode_header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with(BASE64_OPEN) && value.ends_with(BASE64_CLOSE));
    if plain {
        value.to_string()
    } else {
        format!(
            "{BASE64_OPEN}{}{BASE64_CLOSE}",
            crate::encoding::base64(value.as_bytes())
        )
    }
}

/// A header value as received: plain, or `=?base64?…?=`. `None` when the sentinel holds no
/// valid Base64 of UTF-8.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix(BASE64_OPEN)
        .and_then(|v| v.strip_suffix(BASE64_CLOSE))
    {
        Some(encoded) => String::from_utf8(crate::encoding::base64_decode(encoded)?).ok(),
        None => Some(value.to_string()),
    }
}

const BASE64_OPEN: &str = "=?base64?";
const BASE64_CLOSE: &str = "?=";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(properties: Value) -> Value {
        json!({"type": "object", "properties": properties})
    }

    fn param(path: &[&str], header: &str) -> HeaderParam {
        HeaderParam {
            path: path.iter().map(|k| k.to_string()).collect(),
            header: header.into(),
        }
    }

    #[test]
    fn header_params_follow_properties_chains_only() {
        let schema = schema(json!({
            "region": {"type": "string", "x-mcp-header": "Region"},
            "query": {"type": "string"},
            "nested": {"type": "object", "properties": {
                "tenant": {"type": "integer", "x-mcp-header": "Tenant"}}},
            "list": {"type": "array", "items": {"properties": {
                "hidden": {"type": "string", "x-mcp-header": "Hidden"}}}}
        }));
        let expected = [
            param(&["region"], "Region"),
            param(&["nested", "tenant"], "Tenant"),
        ];
        assert_eq!(declared_header_params(&schema), expected);
        assert_eq!(checked_header_params(&schema).unwrap(), expected);
    }

    #[test]
    fn invalid_annotations_are_refused() {
        for bad in [
            json!({"a":{"type":"string","x-mcp-header":""}}),
            json!({"a":{"type":"object","x-mcp-header":"A"}}),
            json!({"a":{"type":"array","x-mcp-header":"A"}}),
            json!({"a":{"type":"null","x-mcp-header":"A"}}),
            json!({"a":{"type":"number","x-mcp-header":"A"}}),
            json!({"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}),
            json!({"a":{"type":"string","x-mcp-header":"My Region"}}),
            json!({"a":{"type":"string","x-mcp-header":"Region:Primary"}}),
            json!({"a":{"type":"string","x-mcp-header":"Région"}}),
            json!({"a":{"type":"string","x-mcp-header":"Region\t1"}}),
            json!({"a":{"type":"string","x-mcp-header":7}}),
        ] {
            assert!(
                checked_header_params(&schema(bad.clone())).is_err(),
                "{bad}"
            );
        }
        let good = schema(json!({"a":{"type":["string","null"],"x-mcp-header":"A"},
            "b":{"x-mcp-header":"B-2"},"c":{"$ref":"http://example.com/x.json"}}));
        assert_eq!(checked_header_params(&good).unwrap().len(), 2);
    }

    #[test]
    fn the_first_invalid_annotation_is_named() {
        let bad = schema(json!({
            "a": {"type": "number", "x-mcp-header": "A"},
            "b": {"type": "string", "x-mcp-header": ""}
        }));
        assert_eq!(
            checked_header_params(&bad),
            Err(r#"x-mcp-header "A" is on "a", which is not a string, integer or boolean"#.into())
        );
    }

    #[test]
    fn declared_params_are_taken_as_written() {
        // What a client would refuse, server mode still checks requests against; only an
        // annotation that is no string at all is skipped.
        let schema = schema(json!({
            "a": {"type": "number", "x-mcp-header": "A"},
            "b": {"type": "string", "x-mcp-header": 7},
            "c": {"type": "string", "x-mcp-header": "a"}
        }));
        assert_eq!(
            declared_header_params(&schema),
            [param(&["a"], "A"), param(&["c"], "a")]
        );
    }

    #[test]
    fn header_values_are_plain_or_base64_and_decode_back() {
        for (value, sent) in [
            ("us-west1", "us-west1"),
            ("us west 1", "us west 1"),
            ("", ""),
            (" padded ", "=?base64?IHBhZGRlZCA=?="),
            ("\tx", "=?base64?CXg=?="),
            ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
            ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
            ("=?base64?abc?=", "=?base64?PT9iYXNlNjQ/YWJjPz0=?="),
        ] {
            assert_eq!(encode_header_value(value), sent);
            assert_eq!(decode_header_value(sent).as_deref(), Some(value));
        }
        assert_eq!(decode_header_value("=?base64?***?="), None);
    }
}
