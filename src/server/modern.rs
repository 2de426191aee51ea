//! The 2026-07-28 era on `/mcp` (stateless MCP; spec section K), beside the session era:
//! 1. a POST is modern when its `_meta` names its protocol version
//!    (`io.modelcontextprotocol/protocolVersion`) or its `MCP-Protocol-Version` header names a
//!    modern version;
//! 2. it is validated: header against body (400 + -32020 `HeaderMismatch`: the version,
//!    `Mcp-Method`, and `Mcp-Name` for tools/call, resources/read and prompts/get), then the
//!    version itself (400 + -32022 listing what we support);
//! 3. each request is a session of its own; `server/discover` and `subscriptions/listen` are
//!    answered here; a retry that brings back a `requestState` resumes its parked request;
//!    methods of the old era only (initialize, ping, logging/setLevel, resources/subscribe)
//!    and methods the child does not know are 404 + -32601; everything else goes to the
//!    child, and its result gets `resultType` (and `ttlMs`/`cacheScope` when cacheable);
//! 4. the reply is one JSON body, unless something related to the request (progress, a log
//!    line it asked for) arrives before the response: then an SSE stream; a client that
//!    closes it cancels the request at the child.

use std::borrow::Cow;

use crossbeam_channel::{Receiver, select};
use log::debug;
use serde_json::value::RawValue;
use tiny_http::Request;

use super::respond::{self, Extra, SseStream, request_header};
use super::streamable::{Until, pump_stream};
use super::{App, refuse_request};
use crate::jsonrpc::envelope::{Envelope, param_of, span_of, splice};
use crate::jsonrpc::error::{HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION};
use crate::jsonrpc::meta::{CLIENT_CAPABILITIES, LOG_LEVEL, PROTOCOL_VERSION};
use crate::jsonrpc::tool_headers::decode_header_value;
use crate::jsonrpc::{self, Kind, error as rpc};
use crate::limits;
use crate::mux::session::{ClientCaps, log_rank};
use crate::mux::{ListenFilter, MODERN_VERSIONS, Mux, Outbound, Reply, StreamTx};

/// Methods that exist only in the session era: a modern client gets 404 for them.
const LEGACY_ONLY: [&str; 6] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "notifications/initialized",
];

/// Results a client may cache (`CacheableResult`): they must carry `ttlMs` and `cacheScope`.
const CACHEABLE: [&str; 5] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// The `_meta` of a message's params, looked up once (it is read for the era, the
/// validation, the capabilities and the log level).
pub struct Meta<'a> {
    raw: Option<&'a RawValue>,
    /// The protocol version it names, if any: a message that names one is modern.
    version: Option<String>,
}

impl<'a> Meta<'a> {
    pub fn of(env: &Envelope<'a>) -> Meta<'a> {
        let raw = env.param("_meta");
        let version = raw
            .and_then(|m| param_of(m, PROTOCOL_VERSION))
            .and_then(|v| serde_json::from_str(v.get()).ok());
        Meta { raw, version }
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        param_of(self.raw?, key)
    }
}

/// Whether a version belongs to the modern era (2026-07-28 and later).
pub fn is_modern_version(version: &str) -> bool {
    version >= "2026-07-28"
}

/// Whether a POST speaks the modern era.
pub fn is_modern(rq: &Request, meta: &Meta<'_>) -> bool {
    meta.version.is_some()
        || request_header(rq, "MCP-Protocol-Version").is_some_and(|v| is_modern_version(v.trim()))
}

/// Every version we speak, newest first (for `supportedVersions` and -32022).
pub fn all_versions() -> Vec<&'static str> {
    let mut all: Vec<&str> = MODERN_VERSIONS.to_vec();
    all.extend(jsonrpc::SUPPORTED_VERSIONS.iter().rev());
    all
}

/// A refusal with an HTTP status and a JSON-RPC error (with the request's id when known).
struct Rejection {
    status: u16,
    code: i64,
    message: String,
    data: Option<String>,
}

impl Rejection {
    fn mismatch(message: String) -> Rejection {
        Rejection {
            status: 400,
            code: HEADER_MISMATCH,
            message,
            data: None,
        }
    }

    fn send(self, rq: Request, id: &str, extra: &Extra) {
        let body = match self.data {
            Some(data) => rpc::response_with_data(id, self.code, &self.message, &data),
            None => rpc::response(id, self.code, &self.message),
        };
        respond::json(rq, self.status, &body, extra);
    }
}

/// Checks the headers against the body, then the version.
fn validate(rq: &Request, env: &Envelope<'_>, meta: &Meta<'_>, mux: &Mux) -> Result<(), Rejection> {
    let header = request_header(rq, "MCP-Protocol-Version").map(str::trim);
    let body = meta.version.as_deref();
    if header.is_none() {
        return Err(Rejection::mismatch(
            "Header mismatch: the MCP-Protocol-Version header is required".into(),
        ));
    }
    if env.kind == Kind::Request {
        let missing: Vec<&str> = [PROTOCOL_VERSION, CLIENT_CAPABILITIES]
            .into_iter()
            .filter(|key| meta.get(key).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Rejection {
                status: 400,
                code: rpc::INVALID_PARAMS,
                message: format!("Invalid params: missing _meta keys: {}", missing.join(", ")),
                data: None,
            });
        }
    }
    match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(Rejection::mismatch(format!(
                "Header mismatch: MCP-Protocol-Version header {h:?} does not match body value {b:?}"
            )));
        }
        (Some(h), None) if env.kind == Kind::Request => {
            return Err(Rejection::mismatch(format!(
                "Header mismatch: MCP-Protocol-Version header {h:?} but no {PROTOCOL_VERSION} in _meta"
            )));
        }
        _ => {}
    }
    let version = body.or(header).unwrap_or_default();
    if !MODERN_VERSIONS.contains(&version) {
        let supported: Vec<String> = all_versions().iter().map(|v| jsonrpc::quote(v)).collect();
        return Err(Rejection {
            status: 400,
            code: UNSUPPORTED_PROTOCOL_VERSION,
            message: "Unsupported protocol version".into(),
            data: Some(format!(
                r#"{{"supported":[{}],"requested":{}}}"#,
                supported.join(","),
                jsonrpc::quote(version)
            )),
        });
    }
    if env.kind != Kind::Request {
        return Ok(());
    }
    match request_header(rq, "Mcp-Method") {
        None => {
            return Err(Rejection::mismatch(
                "Header mismatch: the Mcp-Method header is required".into(),
            ));
        }
        Some(m) if m != env.method() => {
            return Err(Rejection::mismatch(format!(
                "Header mismatch: Mcp-Method header {m:?} does not match body value {:?}",
                env.method()
            )));
        }
        Some(_) => {}
    }
    let name_field = match env.method() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field {
        let body_name = env.param_str(field).unwrap_or_default();
        match request_header(rq, "Mcp-Name").map(|v| decode_header_value(v.trim())) {
            None => {
                return Err(Rejection::mismatch(
                    "Header mismatch: the Mcp-Name header is required".into(),
                ));
            }
            Some(None) => {
                return Err(Rejection::mismatch(
                    "Header mismatch: the Mcp-Name header is not valid Base64".into(),
                ));
            }
            Some(Some(name)) if name != body_name => {
                return Err(Rejection::mismatch(format!(
                    "Header mismatch: Mcp-Name header value {name:?} does not match body value {body_name:?}"
                )));
            }
            Some(Some(_)) => {}
        }
    }
    if env.method() == "tools/call" {
        check_param_headers(rq, env, mux)?;
    }
    Ok(())
}

/// The `Mcp-Param-*` headers of a tool call against its arguments, for the parameters the
/// tool's schema marks with `x-mcp-header` (spec "Custom Headers from Tool Parameters").
fn check_param_headers(rq: &Request, env: &Envelope<'_>, mux: &Mux) -> Result<(), Rejection> {
    let Some(tool) = env.param_str("name") else {
        return Ok(());
    };
    let headers = mux.tool_headers();
    let Some(params) = headers.get(&tool) else {
        return Ok(());
    };
    let arguments: serde_json::Value = env
        .param("arguments")
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or_default();
    for param in params {
        let name = format!("Mcp-Param-{}", param.header);
        let value = param
            .path
            .iter()
            .try_fold(&arguments, |v, key| v.get(key))
            .filter(|v| !v.is_null());
        let header = request_header(rq, &name);
        match (value, header) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(Rejection::mismatch(format!(
                    "Header mismatch: the {name} header is required for this tool call"
                )));
            }
            (None, Some(_)) => {
                return Err(Rejection::mismatch(format!(
                    "Header mismatch: {name} is sent but the argument is absent"
                )));
            }
            (Some(value), Some(raw)) => {
                if raw
                    .chars()
                    .any(|c| (c.is_control() && c != '\t') || !c.is_ascii())
                {
                    return Err(Rejection::mismatch(format!(
                        "Header mismatch: {name} holds characters not allowed in a header"
                    )));
                }
                let Some(decoded) = decode_header_value(raw) else {
                    return Err(Rejection::mismatch(format!(
                        "Header mismatch: {name} is not valid Base64"
                    )));
                };
                if !header_matches(value, &decoded) {
                    return Err(Rejection::mismatch(format!(
                        "Header mismatch: {name} header value {decoded:?} does not match body value {value}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether a decoded header value stands for the body value: strings exactly, integers
/// numerically (`42.0` is `42`), booleans as `true`/`false`.
fn header_matches(value: &serde_json::Value, header: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s == header,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => match (n.as_f64(), header.trim().parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}

/// Serves one modern POST.
pub fn post(
    app: &App,
    mux: &Mux,
    rq: Request,
    text: &str,
    env: &Envelope<'_>,
    meta: &Meta<'_>,
    extra: &Extra,
) {
    let id = env.id.map_or("null", |id| id.get());
    if let Err(rejection) = validate(&rq, env, meta, mux) {
        debug!("modern request refused: {}", rejection.message);
        return rejection.send(rq, id, extra);
    }
    if env.kind != Kind::Request {
        // No client notification is defined on this transport in 2026-07-28; accept and drop.
        return respond::empty(rq, 202, extra);
    }
    let method = env.method();
    if LEGACY_ONLY.contains(&method) {
        return Rejection {
            status: 404,
            code: rpc::METHOD_NOT_FOUND,
            message: format!("Method not found: {method}"),
            data: None,
        }
        .send(rq, id, extra);
    }
    if method == "server/discover" {
        return match mux.discover(id) {
            Ok(body) => respond::json(rq, 200, &body, extra),
            Err(refused) => refuse_request(rq, id, &refused, extra),
        };
    }
    let caps = meta
        .get(CLIENT_CAPABILITIES)
        .map(|c| ClientCaps {
            sampling: param_of(c, "sampling").is_some(),
            elicitation: param_of(c, "elicitation").is_some(),
            roots: param_of(c, "roots").is_some(),
        })
        .unwrap_or_default();
    let log_level = meta
        .get(LOG_LEVEL)
        .and_then(|l| serde_json::from_str::<String>(l.get()).ok())
        .and_then(|l| log_rank(&l));
    let session = match mux.open_modern_session(caps, log_level) {
        Ok(session) => session,
        Err(refused) => return refuse_request(rq, id, &refused, extra),
    };
    let (tx, rx) = StreamTx::channel(limits::STREAM_QUEUE);
    let reply = Reply::Direct {
        tx,
        carries_related: true,
    };
    let submitted = if method == "subscriptions/listen" {
        let filter = listen_filter(env);
        mux.listen(session, id, filter, reply)
    } else if let Some(token) = env
        .param_str("requestState")
        .filter(|t| mux.owns_request_state(t) || !mux.child_is_modern())
    {
        mux.resume(session, env, reply, &token)
    } else {
        mux.client_message(session, text, env, Some(reply))
    };
    match submitted {
        Err(refused) => refuse_request(rq, id, &refused, extra),
        Ok(()) if method == "subscriptions/listen" => {
            // Open until the client leaves or we shut down.
            let mut sse = SseStream::start(rq, extra);
            if pump_stream(app, &mut sse, &rx, Until::SessionEnds) {
                let _ = sse.finish(); // the client may be gone; nothing to report.
            }
        }
        Ok(()) => {
            let server_info = mux.server_info();
            let uri = env.param("uri").map(|u| u.get());
            let finish: &dyn Fn(&str) -> (u16, Cow<'_, str>) =
                &|text| complete(text, method, uri, server_info.as_deref());
            reply_to(app, rq, &rx, extra, finish);
        }
    }
    mux.close_session(session, "modern request done");
}

fn listen_filter(env: &Envelope<'_>) -> ListenFilter {
    let wanted = env.param("notifications");
    let flag = |name: &str| {
        wanted
            .and_then(|w| param_of(w, name))
            .is_some_and(|v| v.get() == "true")
    };
    ListenFilter {
        tools: flag("toolsListChanged"),
        prompts: flag("promptsListChanged"),
        resources: flag("resourcesListChanged"),
        resource_uris: wanted
            .and_then(|w| param_of(w, "resourceSubscriptions"))
            .and_then(|u| serde_json::from_str(u.get()).ok())
            .unwrap_or_default(),
    }
}

/// Waits for the first message: the response alone becomes a JSON body (404 for an unknown
/// method); anything before it turns the reply into an SSE stream.
fn reply_to(
    app: &App,
    rq: Request,
    rx: &Receiver<Outbound>,
    extra: &Extra,
    finish: &dyn Fn(&str) -> (u16, Cow<'_, str>),
) {
    let first = select! {
        recv(rx) -> m => m.ok(),
        recv(app.shutdown.receiver()) -> _ => None,
    };
    let Some(first) = first else {
        return respond::rpc_error(rq, 503, rpc::SERVER_UNAVAILABLE, "No response", extra);
    };
    if first.last {
        let (status, body) = finish(&first.text);
        return respond::json(rq, status, &body, extra);
    }
    // The head and the first message go out together, with whatever follows at once.
    let mut sse = SseStream::start(rq, extra);
    let finish_text: &dyn Fn(&str) -> Cow<'_, str> = &|text| finish(text).1;
    // Closing the stream cancels the request (2026-07-28): the caller closes the session,
    // which cancels what is still in flight at the child.
    let ended = sse.queue_message(None, &first.text).is_ok()
        && pump_stream(app, &mut sse, rx, Until::LastAs(finish_text));
    if ended {
        let _ = sse.finish(); // the client may be gone; nothing to report.
    }
}

/// The child's final message as a modern client expects it: `resultType` on a result (and
/// the caching fields and `serverInfo` where due), -32002 as -32602, and the HTTP status
/// (404 for an unknown method).
pub fn complete<'t>(
    text: &'t str,
    method: &str,
    uri: Option<&str>,
    server_info: Option<&str>,
) -> (u16, Cow<'t, str>) {
    let Ok(env) = Envelope::parse(text) else {
        return (200, Cow::Borrowed(text));
    };
    if let Some(error) = env.error {
        let code = param_of(error, "code").map(|c| c.get());
        return match code {
            Some("-32601") => (404, Cow::Borrowed(text)),
            Some("-32020" | "-32021" | "-32022") => (400, Cow::Borrowed(text)),
            Some("-32002" | "-32602") if method == "resources/read" => {
                (200, Cow::Owned(resource_not_found(text, error, uri)))
            }
            _ => (200, Cow::Borrowed(text)),
        };
    }
    let Some(result) = env.result else {
        return (200, Cow::Borrowed(text));
    };
    let mut fields = Vec::new();
    if param_of(result, "resultType").is_none() {
        fields.push(r#""resultType":"complete""#.to_string());
    }
    if CACHEABLE.contains(&method) {
        if param_of(result, "ttlMs").is_none() {
            fields.push(r#""ttlMs":0"#.to_string());
        }
        if param_of(result, "cacheScope").is_none() {
            fields.push(r#""cacheScope":"private""#.to_string());
        }
    }
    if let Some(info) = server_info
        && param_of(result, "_meta").is_none()
    {
        fields.push(format!(
            r#""_meta":{{"io.modelcontextprotocol/serverInfo":{info}}}"#
        ));
    }
    if fields.is_empty() {
        return (200, Cow::Borrowed(text));
    }
    let raw = result.get();
    let empty = raw[1..raw.len() - 1].trim().is_empty();
    let mut insert = fields.join(",");
    if !empty {
        insert.push(',');
    }
    let at = span_of(text, raw).start + 1;
    (200, Cow::Owned(splice(text, &mut [(at..at, &insert)])))
}

/// A resource that does not exist: -32602 with `data.uri` in 2026-07-28 (-32002 before).
fn resource_not_found(text: &str, error: &RawValue, uri: Option<&str>) -> String {
    let code = param_of(error, "code").expect("matched on it");
    let code_edit = (span_of(text, code.get()), "-32602");
    let data = uri
        .filter(|_| param_of(error, "data").is_none())
        .map(|uri| format!(r#","data":{{"uri":{uri}}}"#));
    match &data {
        Some(data) => {
            let at = span_of(text, error.get()).end - 1; // before the error's closing brace
            splice(text, &mut [code_edit, (at..at, data)])
        }
        None => splice(text, &mut [code_edit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_get_result_type_and_caching_fields() {
        let (status, text) = complete(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            "tools/list",
            None,
            Some(r#"{"name":"s","version":"1"}"#),
        );
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["tools"], serde_json::json!([]));
        assert_eq!(
            v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "s"
        );
        let (_, text) = complete(
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            "tools/call",
            None,
            None,
        );
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}"#
        );
        let kept = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#;
        assert_eq!(complete(kept, "tools/call", None, None).1, kept);
    }

    #[test]
    fn errors_map_to_the_modern_codes_and_statuses() {
        let unknown = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        assert_eq!(complete(unknown, "x/y", None, None).0, 404);
        let missing = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"no"}}"#;
        let (status, text) = complete(missing, "resources/read", Some(r#""a://b""#), None);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "a://b");
    }

    #[test]
    fn header_values_match_by_type() {
        use serde_json::json;
        assert!(header_matches(&json!("us-west1"), "us-west1"));
        assert!(header_matches(&json!(42), "42.0"));
        assert!(header_matches(&json!(-7), "-7"));
        assert!(header_matches(&json!(true), "true"));
        assert!(!header_matches(&json!(true), "True"));
        assert!(!header_matches(&json!("a"), "b"));
        assert!(!header_matches(&json!(1), "one"));
    }
}
