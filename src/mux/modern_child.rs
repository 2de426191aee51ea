//! A child that speaks 2026-07-28 over stdio, served to clients of both eras:
//! 1. found by `server/discover` at start-up; its discover result stands in for an
//!    `initialize` result, so session-era clients are answered from it as from any child;
//! 2. requests of session-era clients get the per-request `_meta` the child needs (protocol
//!    version, the client's capabilities and identity, its log level); their `ping` and
//!    `logging/setLevel` are answered here, their subscriptions kept here;
//! 3. an `InputRequiredResult` for a session-era client becomes requests to that client
//!    (sampling, elicitation, roots); with every answer in, the proxy retries the request at
//!    the child with `inputResponses` and `requestState`: the client sees only the end;
//! 4. change notifications come on one `subscriptions/listen` of the proxy's own, renewed when
//!    the set of subscribed resources changes; the mux fans them out as for any child.

use std::collections::HashMap;

use log::{debug, warn};
use serde_json::{Map, Value, json};

use super::session::{Session, SessionId};
use super::stream::Outbound;
use super::{ClientRequest, InitCache, Mux, Pending, State, canonical_id};
use crate::jsonrpc;
use crate::jsonrpc::envelope::Envelope;
use crate::jsonrpc::meta::with_params_fields;

const VERSION: &str = "2026-07-28";

/// The `server/discover` probe: what a 2026-07-28 client sends (the proxy stands in for
/// every client, so it declares every client capability).
pub fn discover_params() -> String {
    json!({"_meta": {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}, "elicitation": {}, "roots": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION")},
    }})
    .to_string()
}

/// The child's `server/discover` answer as the `initialize` result session-era clients get;
/// `None` when the answer is not a 2026-07-28 discover result.
pub(super) fn cache_from_discover(response: &str) -> Option<InitCache> {
    let v: Value = serde_json::from_str(response).ok()?;
    let result = v.get("result")?.as_object()?;
    let versions = result.get("supportedVersions")?.as_array()?;
    if !versions.iter().any(|v| v == VERSION) {
        return None;
    }
    let capabilities = result.get("capabilities").cloned().unwrap_or(json!({}));
    let mut init = Map::new();
    init.insert("protocolVersion".into(), jsonrpc::LATEST_VERSION.into());
    init.insert("capabilities".into(), capabilities.clone());
    let server_info = result
        .get("_meta")
        .and_then(|m| m.get("io.modelcontextprotocol/serverInfo"))
        .cloned()
        .unwrap_or(json!({"name": "unknown", "version": "unknown"}));
    init.insert("serverInfo".into(), server_info);
    if let Some(instructions) = result.get("instructions") {
        init.insert("instructions".into(), instructions.clone());
    }
    Some(InitCache {
        result: init,
        has_logging: capabilities.get("logging").is_some(),
        modern: true,
    })
}

/// The `_meta` members a session-era client's request needs at a 2026-07-28 child.
pub(super) fn meta_fields(session: &Session) -> String {
    let mut fields = format!(
        r#""io.modelcontextprotocol/protocolVersion":"{VERSION}","io.modelcontextprotocol/clientCapabilities":{}"#,
        session.caps_raw.as_deref().unwrap_or("{}")
    );
    if let Some(info) = &session.client_info_raw {
        fields.push_str(&format!(r#","io.modelcontextprotocol/clientInfo":{info}"#));
    }
    // A session-era client gets log messages unless it asked otherwise: `info` and up, until
    // its `logging/setLevel` says.
    let level = match session.log_level {
        Some(super::session::NO_LOGS) => None,
        Some(level) => Some(super::session::log_level_name(level)),
        None => Some("info"),
    };
    if let Some(level) = level {
        fields.push_str(&format!(r#","io.modelcontextprotocol/logLevel":"{level}""#));
    }
    fields
}

/// A 2026-07-28 child's answer that asks a session-era client for input first.
pub(super) struct InputRound {
    /// The request, to be sent again (under a new proxy id) once every answer is in.
    request: ClientRequest,
    /// The request as the child got it, without the answers.
    line: String,
    request_state: Option<String>,
    /// Keys still unanswered, by the id of the request the client got for each.
    waiting: HashMap<String, String>,
    answers: Map<String, Value>,
}

impl Mux {
    /// Opens (or renews) the proxy's own `subscriptions/listen` at a 2026-07-28 child: every
    /// list change the child declares, and every resource some client is subscribed to.
    pub(super) fn renew_listen(&self) {
        let (params, old) = {
            let mut state = self.lock();
            let Some(init) = state.init.clone().filter(|i| i.modern) else {
                return;
            };
            let caps = init.result.get("capabilities").cloned().unwrap_or_default();
            let declared = |kind: &str, flag: &str| caps[kind][flag] == json!(true);
            let uris: Vec<&String> = state.subscriptions.keys().collect();
            let mut filter = Map::new();
            filter.insert(
                "toolsListChanged".into(),
                declared("tools", "listChanged").into(),
            );
            filter.insert(
                "promptsListChanged".into(),
                declared("prompts", "listChanged").into(),
            );
            filter.insert(
                "resourcesListChanged".into(),
                declared("resources", "listChanged").into(),
            );
            if declared("resources", "subscribe") && !uris.is_empty() {
                filter.insert("resourceSubscriptions".into(), json!(uris));
            }
            let mut params = serde_json::from_str::<Value>(&discover_params()).expect("ours");
            params["notifications"] = Value::Object(filter);
            let id = self.next_id();
            state.pending.insert(id, Pending::Internal(None));
            ((id, params.to_string()), state.listen_id.replace(id))
        };
        let (id, params) = params;
        if let Some(old) = old {
            self.lock().pending.remove(&old);
            let _ = self.send_to_child(jsonrpc::notification(
                "notifications/cancelled",
                &format!(r#"{{"requestId":{old},"reason":"renewed"}}"#),
            )); // a child that is gone has no listen left to end
        }
        if self
            .send_to_child(jsonrpc::request(
                &id.to_string(),
                "subscriptions/listen",
                &params,
            ))
            .is_err()
        {
            warn!(
                "server {:?}: cannot open a listen stream at the child",
                self.label
            );
        }
    }
}

/// Turns the child's `InputRequiredResult` for a session-era client into requests to that
/// client. `Err(why)` when it cannot (the client lacks a capability, or left): the caller
/// then answers the client's request with an error.
pub(super) fn ask_session_client(
    state: &mut State,
    request: ClientRequest,
    result: &Value,
) -> Result<(), String> {
    let requests = result
        .get("inputRequests")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let session = request.session;
    let Some(s) = state.sessions.get(&session) else {
        return Err("the client's session has closed".into());
    };
    for (key, input) in &requests {
        let method = input.get("method").and_then(Value::as_str).unwrap_or("");
        if !s.caps.accepts(method) {
            return Err(format!(
                "the MCP server needs {method} ({key}), which the client did not declare"
            ));
        }
    }
    let Some(line) = request.sent.clone() else {
        return Err("the request to resume is not known".into());
    };
    state.next_input += 1;
    let round_id = state.next_input;
    let mut waiting = HashMap::new();
    let mut messages = Vec::new();
    for (key, input) in requests {
        state.next_input += 1;
        let id = format!("mcp-proxy-input-{}", state.next_input);
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": input["method"]});
        if let Some(params) = input.get("params") {
            message["params"] = params.clone();
        }
        waiting.insert(canonical_id(&jsonrpc::quote(&id)), key);
        messages.push(message.to_string());
    }
    let reply = request.reply.clone();
    let round = InputRound {
        request,
        line: line.into(),
        request_state: result
            .get("requestState")
            .and_then(Value::as_str)
            .map(str::to_string),
        waiting: waiting.clone(),
        answers: Map::new(),
    };
    for key in waiting.keys() {
        state.input_waits.insert(key.clone(), round_id);
    }
    state.input_rounds.insert(round_id, round);
    for text in messages {
        if reply.carries_related() {
            state.deliver_reply(session, &reply, Outbound::message(text.into()));
        } else if let Some(s) = state.sessions.get_mut(&session) {
            s.deliver_unrelated(session, text.into());
        }
    }
    debug!("session {session}: the child needs input; asked the client");
    Ok(())
}

impl Mux {
    /// A session-era client's answer to one of the inputs asked for it. When it was the last
    /// one, the request goes back to the child with every answer. False when `id` is not one.
    pub(super) fn input_answered(&self, session: SessionId, id: &str, env: &Envelope<'_>) -> bool {
        let key = canonical_id(id);
        let resend = {
            let mut state = self.lock();
            let Some(round_id) = state.input_waits.get(&key).copied() else {
                return false;
            };
            let Some(round) = state.input_rounds.get_mut(&round_id) else {
                state.input_waits.remove(&key);
                return false;
            };
            if round.request.session != session {
                warn!("session {session} answered input {id} asked of another session; dropped");
                return true;
            }
            state.input_waits.remove(&key);
            let round = state.input_rounds.get_mut(&round_id).expect("found above");
            let input_key = round.waiting.remove(&key).unwrap_or_default();
            let answer = match (env.result, env.error) {
                (Some(result), _) => serde_json::from_str(result.get()).unwrap_or(Value::Null),
                (None, Some(error)) => {
                    // The client refused: the request ends with its error.
                    let round = state.input_rounds.remove(&round_id).expect("found above");
                    let text = format!(
                        r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
                        round.request.id,
                        error.get()
                    );
                    let (session, reply) = (round.request.session, round.request.reply.clone());
                    state.deliver_reply(session, &reply, Outbound::last(text.into()));
                    return true;
                }
                (None, None) => Value::Null,
            };
            round.answers.insert(input_key, answer);
            if !round.waiting.is_empty() {
                return true;
            }
            let round = state.input_rounds.remove(&round_id).expect("found above");
            let proxy_id = self.next_id();
            let mut fields = format!(r#""inputResponses":{}"#, Value::Object(round.answers));
            if let Some(token) = &round.request_state {
                fields.push_str(&format!(r#","requestState":{}"#, jsonrpc::quote(token)));
            }
            let line = with_params_fields(&round.line, &fields, &proxy_id.to_string());
            let mut request = round.request;
            request.sent = Some(round.line.into());
            if let Some(s) = state.sessions.get_mut(&request.session) {
                s.in_flight.insert(canonical_id(&request.id), proxy_id);
            }
            state.pending.insert(proxy_id, Pending::Client(request));
            line
        };
        if self.send_to_child(resend).is_err() {
            warn!(
                "server {:?}: could not resume a request at the child",
                self.label
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_results_stand_in_for_initialize() {
        let r = r#"{"jsonrpc":"2.0","id":0,"result":{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{},"logging":{}},"instructions":"hi","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"m","version":"1"}}}}"#;
        let cache = cache_from_discover(r).expect("modern");
        assert!(cache.modern && cache.has_logging);
        assert_eq!(cache.result["serverInfo"]["name"], "m");
        assert_eq!(cache.result["instructions"], "hi");
        assert!(
            cache_from_discover(
                r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"no"}}"#
            )
            .is_none()
        );
    }
}
