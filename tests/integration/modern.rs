//! The 2026-07-28 era (stateless MCP) on `/mcp`, served from our example server, which speaks
//! the session era: per-request `_meta`, header validation, `server/discover`, result types,
//! input-required results for the child's own requests, and `subscriptions/listen`.

use serde_json::{Value, json};

use crate::support::*;

const VERSION: &str = "2026-07-28";

fn meta(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    })
}

/// A modern request with every header it needs (name: the `Mcp-Name`, when the method has one).
fn call(url: &str, id: Value, method: &str, mut params: Value, name: Option<&str>) -> Response {
    if params.get("_meta").is_none() {
        params["_meta"] = meta(json!({}));
    }
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", VERSION),
        ("Mcp-Method", method),
    ];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name));
    }
    request("POST", url, &headers, &body.to_string())
}

/// The final JSON-RPC message of a reply, JSON or SSE.
fn final_message(r: &Response) -> Value {
    if r.header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let last = r
            .body
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| !d.is_empty())
            .last()
            .expect("an event with data");
        serde_json::from_str(last).unwrap()
    } else {
        r.json()
    }
}

/// POSTs `body` asking for an SSE reply, with the 2026-07-28 headers (`Mcp-Method` from the
/// body, `Mcp-Name` when given), and returns the open stream.
fn open_stream(url: &str, body: &Value, name: Option<&str>) -> SseClient {
    let method = body["method"].as_str().expect("a request");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", VERSION),
        ("Mcp-Method", method),
    ];
    headers.extend(name.map(|n| ("Mcp-Name", n)));
    SseClient::open("POST", url, &headers, &body.to_string())
}

fn proxy() -> Proxy {
    Proxy::start(&["--port", "0", "--", FIXTURE])
}

#[test]
fn discover_is_answered_from_the_childs_handshake() {
    let p = proxy();
    let r = call(&p.url("/mcp"), json!(1), "server/discover", json!({}), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("mcp-session-id").is_none(),
        "no sessions in 2026-07-28"
    );
    let result = &r.json()["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["supportedVersions"][0], VERSION);
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2025-11-25")
    );
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-example-server"
    );
    assert!(result["ttlMs"].is_number() && result["cacheScope"].is_string());
}

#[test]
fn a_stateless_call_gets_a_complete_result_and_lists_are_cacheable() {
    let p = proxy();
    let url = p.url("/mcp");
    let r = call(
        &url,
        json!("c1"),
        "tools/call",
        json!({"name":"echo","arguments":{"message":"modern"}}),
        Some("echo"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = final_message(&r);
    assert_eq!(v["id"], "c1");
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["content"][0]["text"], "modern");

    let v = final_message(&call(&url, json!(2), "tools/list", json!({}), None));
    assert_eq!(v["result"]["resultType"], "complete");
    assert!(v["result"]["ttlMs"].is_number(), "{v}");
    assert!(v["result"]["cacheScope"].is_string(), "{v}");
    assert!(v["result"]["tools"].as_array().unwrap().len() > 5);
}

#[test]
fn headers_must_match_the_body() {
    let p = proxy();
    let url = p.url("/mcp");
    let body = |method: &str| {
        json!({"jsonrpc":"2.0","id":1,"method":method,"params":{"name":"echo","arguments":{"message":"x"},"_meta":meta(json!({}))}})
            .to_string()
    };
    let post = |headers: &[(&str, &str)], b: String| {
        let mut all = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        all.extend_from_slice(headers);
        request("POST", &url, &all, &b)
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")],
            "no MCP-Protocol-Version",
        ),
        (
            vec![("MCP-Protocol-Version", VERSION), ("Mcp-Name", "echo")],
            "no Mcp-Method",
        ),
        (
            vec![
                ("MCP-Protocol-Version", VERSION),
                ("Mcp-Method", "tools/list"),
                ("Mcp-Name", "echo"),
            ],
            "wrong Mcp-Method",
        ),
        (
            vec![
                ("MCP-Protocol-Version", VERSION),
                ("Mcp-Method", "tools/call"),
            ],
            "no Mcp-Name",
        ),
        (
            vec![
                ("MCP-Protocol-Version", VERSION),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "other"),
            ],
            "wrong Mcp-Name",
        ),
        (
            vec![
                ("MCP-Protocol-Version", "2025-11-25"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "echo"),
            ],
            "version differs",
        ),
    ];
    for (headers, why) in cases {
        let r = post(&headers, body("tools/call"));
        assert_eq!(r.status, 400, "{why}: {r:?}");
        assert_eq!(r.json()["error"]["code"], -32020, "{why}: {r:?}");
    }
    // The name may come Base64-encoded.
    let r = post(
        &[
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?ZWNobw==?="),
        ],
        body("tools/call"),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn unsupported_versions_and_unknown_methods() {
    let p = proxy();
    let url = p.url("/mcp");
    let mut m = meta(json!({}));
    m["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let r = request(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("MCP-Protocol-Version", "2099-01-01"),
            ("Mcp-Method", "tools/list"),
        ],
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":m}}).to_string(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let e = &r.json()["error"];
    assert_eq!(e["code"], -32022);
    assert_eq!(e["data"]["requested"], "2099-01-01");
    assert!(
        e["data"]["supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == VERSION)
    );

    for method in ["vendor/unknown", "ping", "initialize", "logging/setLevel"] {
        let r = call(&url, json!(1), method, json!({}), None);
        assert_eq!(r.status, 404, "{method}: {r:?}");
        assert_eq!(final_message(&r)["error"]["code"], -32601, "{method}");
    }
    // No GET stream and no sessions to delete.
    let h = [
        ("MCP-Protocol-Version", VERSION),
        ("Accept", "text/event-stream"),
    ];
    assert_eq!(request("GET", &url, &h, "").status, 405);
    assert_eq!(request("DELETE", &url, &h, "").status, 405);
}

#[test]
fn a_childs_sampling_request_becomes_an_input_required_result() {
    let p = proxy();
    let url = p.url("/mcp");
    let caps = json!({"sampling": {}});
    let params =
        json!({"name":"sample","arguments":{"prompt":"a haiku"},"_meta":meta(caps.clone())});
    let r = call(&url, json!(1), "tools/call", params.clone(), Some("sample"));
    assert_eq!(r.status, 200, "{r:?}");
    let first = final_message(&r);
    assert_eq!(first["id"], 1);
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1);
    let (key, input) = requests.iter().next().unwrap();
    assert_eq!(input["method"], "sampling/createMessage");
    assert_eq!(input["params"]["messages"][0]["content"]["text"], "a haiku");
    let state = result["requestState"].as_str().unwrap();

    // The retry: a new id, the same request, the answer and the state.
    let mut retry = params.clone();
    retry["inputResponses"] = json!({ key: {"role":"assistant","content":{"type":"text","text":"old pond"},"model":"m"} });
    retry["requestState"] = json!(state);
    let r = call(&url, json!(2), "tools/call", retry.clone(), Some("sample"));
    let done = final_message(&r);
    assert_eq!(done["id"], 2);
    assert_eq!(done["result"]["resultType"], "complete");
    assert_eq!(done["result"]["content"][0]["text"], "sampled: old pond");

    // A state cannot be used twice, nor made up.
    let again = final_message(&call(&url, json!(3), "tools/call", retry, Some("sample")));
    assert_eq!(again["error"]["code"], -32602, "{again}");
}

#[test]
fn a_client_without_the_capability_is_told_which_one_it_lacks() {
    let p = proxy();
    let r = call(
        &p.url("/mcp"),
        json!(1),
        "tools/call",
        json!({"name":"elicit","arguments":{"message":"name?"}}),
        Some("elicit"),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let e = &r.json()["error"];
    assert_eq!(e["code"], -32021, "{e}");
    assert!(
        e["data"]["requiredCapabilities"]["elicitation"].is_object(),
        "{e}"
    );
    // The child was told no; it still serves.
    let v = final_message(&call(
        &p.url("/mcp"),
        json!(2),
        "tools/call",
        json!({"name":"echo","arguments":{"message":"ok"}}),
        Some("echo"),
    ));
    assert_eq!(v["result"]["content"][0]["text"], "ok");
}

#[test]
fn missing_meta_keys_are_invalid_params() {
    let p = proxy();
    let url = p.url("/mcp");
    for params in [
        json!({}),
        json!({"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}}),
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": VERSION}}),
    ] {
        let r = request(
            "POST",
            &url,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                ("MCP-Protocol-Version", VERSION),
                ("Mcp-Method", "server/discover"),
            ],
            &json!({"jsonrpc":"2.0","id":7,"method":"server/discover","params":params}).to_string(),
        );
        assert_eq!(r.status, 400, "{params}: {r:?}");
        assert_eq!(r.json()["error"]["code"], -32602, "{params}");
        assert_eq!(r.json()["id"], 7);
    }
}

#[test]
fn requests_the_child_sends_together_come_in_one_input_required_result() {
    let p = proxy();
    let url = p.url("/mcp");
    let params = json!({"name":"survey","arguments":{},"_meta":meta(json!({"sampling":{},"elicitation":{}}))});
    let first = final_message(&call(
        &url,
        json!(1),
        "tools/call",
        params.clone(),
        Some("survey"),
    ));
    let requests = first["result"]["inputRequests"]
        .as_object()
        .unwrap_or_else(|| panic!("{first}"));
    let mut keys: Vec<&String> = requests.keys().collect();
    keys.sort();
    assert_eq!(keys, ["haiku", "name"], "the child's key hints: {first}");
    assert!(
        !first.to_string().contains("dev.mcp-proxy/inputKey"),
        "the hint is for the proxy, not the client: {first}"
    );
    let mut retry = params;
    retry["requestState"] = first["result"]["requestState"].clone();
    retry["inputResponses"] = json!({
        "name": {"action":"accept","content":{"name":"Ada"}},
        "haiku": {"role":"assistant","content":{"type":"text","text":"pond"},"model":"m"}
    });
    let done = final_message(&call(&url, json!(2), "tools/call", retry, Some("survey")));
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"));
    assert!(text.contains("Ada") && text.contains("pond"), "{text}");
}

#[test]
fn answers_given_in_advance_are_used_and_checked() {
    let p = proxy();
    let url = p.url("/mcp");
    let caps = json!({"elicitation":{}});
    let mut params = json!({"name":"elicit","arguments":{"message":"name?"},"_meta":meta(caps)});
    params["inputResponses"] =
        json!({"name": {"action":"accept","content":{"name":"Bo"}}, "extra": {"ignored": true}});
    let v = final_message(&call(
        &url,
        json!(1),
        "tools/call",
        params.clone(),
        Some("elicit"),
    ));
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Bo")
    );
    // An answer of the wrong shape is refused; a wrong key is asked for again.
    params["inputResponses"] = json!({"name": 12345});
    let v = final_message(&call(
        &url,
        json!(2),
        "tools/call",
        params.clone(),
        Some("elicit"),
    ));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    params["inputResponses"] = json!({"wrong_key": {"action":"accept"}});
    let v = final_message(&call(&url, json!(3), "tools/call", params, Some("elicit")));
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
}

#[test]
fn progress_rides_on_an_sse_reply_and_logs_only_when_asked() {
    let p = proxy();
    let url = p.url("/mcp");
    let mut m = meta(json!({}));
    m["progressToken"] = json!("pt");
    let r = call(
        &url,
        json!(1),
        "tools/call",
        json!({"name":"progress","arguments":{"steps":2},"_meta":m}),
        Some("progress"),
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream"),
        "{r:?}"
    );
    assert_eq!(
        r.body.matches("notifications/progress").count(),
        2,
        "{}",
        r.body
    );
    assert_eq!(final_message(&r)["result"]["resultType"], "complete");

    // No logLevel in _meta: no log messages (2026-07-28).
    let r = call(
        &url,
        json!(2),
        "tools/call",
        json!({"name":"log","arguments":{"message":"quiet"}}),
        Some("log"),
    );
    assert!(!r.body.contains("notifications/message"), "{}", r.body);
    let mut m = meta(json!({}));
    m["io.modelcontextprotocol/logLevel"] = json!("info");
    let r = call(
        &url,
        json!(3),
        "tools/call",
        json!({"name":"log","arguments":{"message":"loud"},"_meta":m}),
        Some("log"),
    );
    assert!(
        r.body.contains("notifications/message") && r.body.contains("loud"),
        "{}",
        r.body
    );
}

#[test]
fn closing_a_reply_stream_cancels_the_request_at_the_child() {
    let p = proxy();
    let mut m = meta(json!({}));
    m["progressToken"] = json!("pt");
    // 300 steps 100 ms apart: the call would run 30 s if nobody cancelled it.
    let body = json!({"jsonrpc":"2.0","id":"long","method":"tools/call","params":{
        "name":"progress","arguments":{"steps":300,"interval_ms":100},"_meta":m}});
    let mut s = open_stream(&p.url("/mcp"), &body, Some("progress"));
    assert_eq!(s.status, 200);
    assert_eq!(s.next_message()["method"], "notifications/progress");
    s.close();
    // The child is told, with its own id, and drops the call (it says so on stderr).
    p.wait_for_log("was cancelled: no response");
    assert!(!p.stderr().contains("no running request"), "{}", p.stderr());
    wait_until(DEADLINE, "nothing in flight", || {
        p.status()["servers"]["default"]["in_flight"] == 0
    });
}

#[test]
fn listen_streams_carry_the_change_notifications_opted_in_to() {
    let p = proxy();
    let url = p.url("/mcp");
    let body = json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{
        "notifications": {"toolsListChanged": true, "resourceSubscriptions": ["example://greeting"]},
        "_meta": meta(json!({}))}});
    let mut listen = open_stream(&url, &body, None);
    assert_eq!(listen.status, 200);
    let ack = listen.next_message();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );

    // Prompts were not asked for; tools and the resource were.
    for (tool, args) in [
        ("notify", json!({"kind":"prompts"})),
        ("notify", json!({"kind":"tools"})),
        ("touch", json!({"uri":"example://greeting"})),
    ] {
        let r = call(
            &url,
            json!(9),
            "tools/call",
            json!({"name":tool,"arguments":args}),
            Some(tool),
        );
        assert_eq!(r.status, 200);
    }
    let first = listen.next_message();
    assert_eq!(
        first["method"], "notifications/tools/list_changed",
        "{first}"
    );
    assert_eq!(
        first["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
    let second = listen.next_message();
    assert_eq!(second["method"], "notifications/resources/updated");
    assert_eq!(second["params"]["uri"], "example://greeting");
}

#[test]
fn both_eras_share_one_child() {
    let p = proxy();
    let url = p.url("/mcp");
    let mut legacy = McpClient::connect(&url, json!({}));
    let v = final_message(&call(
        &url,
        json!(1),
        "tools/call",
        json!({"name":"echo","arguments":{"message":"m"}}),
        Some("echo"),
    ));
    assert_eq!(v["result"]["content"][0]["text"], "m");
    assert_eq!(legacy.tool_text("echo", json!({"message": "l"})), "l");
    let status = p.status();
    assert_eq!(status["servers"]["default"]["restarts"], 0);
}

#[test]
fn mcp_param_headers_must_match_the_arguments_marked_x_mcp_header() {
    let p = proxy();
    let url = p.url("/mcp");
    let send = |args: Value, extra: &[(&str, &str)]| {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"route","arguments":args,"_meta":meta(json!({}))}});
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "route"),
        ];
        headers.extend_from_slice(extra);
        request("POST", &url, &headers, &body.to_string())
    };
    let ok = send(
        json!({"region":"us-west1","shard":7}),
        &[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Shard", "7.0")],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        final_message(&ok)["result"]["content"][0]["text"],
        "region=us-west1 shard=7"
    );
    // The optional parameter absent: no header expected.
    assert_eq!(
        send(json!({"region":"eu"}), &[("Mcp-Param-Region", "eu")]).status,
        200
    );
    // Base64 for a value that is not plain ASCII.
    let r = send(
        json!({"region":"Zürich"}),
        &[("Mcp-Param-Region", "=?base64?WsO8cmljaA==?=")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    for (args, headers, why) in [
        (json!({"region":"us"}), vec![], "missing header"),
        (
            json!({"region":"us"}),
            vec![("Mcp-Param-Region", "eu")],
            "mismatch",
        ),
        (
            json!({"region":"us","shard":1}),
            vec![("Mcp-Param-Region", "us"), ("Mcp-Param-Shard", "2")],
            "number mismatch",
        ),
        (
            json!({"region":"us"}),
            vec![("Mcp-Param-Region", "=?base64?%%%?=")],
            "bad base64",
        ),
    ] {
        let r = send(args, &headers);
        assert_eq!(r.status, 400, "{why}: {r:?}");
        assert_eq!(r.json()["error"]["code"], -32020, "{why}");
    }
}

const MODERN_CHILD: &str = env!("CARGO_BIN_EXE_mcp-modern-server");

#[test]
fn a_modern_child_serves_session_era_clients() {
    let p = Proxy::start(&["--debug", "--port", "0", "--", MODERN_CHILD]);
    p.wait_for_log("initialized (protocol");
    let url = p.url("/mcp");
    let mut c = McpClient::connect(&url, json!({"elicitation": {}}));
    // initialize was answered from the child's server/discover.
    let r = post_json(
        &url,
        &[],
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":initialize_params(json!({}))}),
    );
    assert_eq!(
        r.json()["result"]["serverInfo"]["name"],
        "mcp-modern-server"
    );
    assert_eq!(
        c.tool_text("echo", json!({"message": "old client"})),
        "old client"
    );
    assert_eq!(c.call("ping", json!({}))["result"], json!({}));

    // The child's input-required result becomes a request to this client.
    let mut s = c.open_stream(&json!({"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"ask_name","arguments":{}}}));
    let ask = s.next_message();
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"action":"accept","content":{"name":"Grace"}}});
    assert_eq!(c.post(&answer, false).status, 202);
    let done = s.next_message();
    assert_eq!(done["id"], "a");
    assert_eq!(
        done["result"]["content"][0]["text"], "hello Grace",
        "{done}"
    );

    // Log lines reach a session-era client (info and up by default).
    let mut s = c.open_stream(&json!({"jsonrpc":"2.0","id":"l","method":"tools/call","params":{"name":"log","arguments":{"message":"from modern"}}}));
    let log = s.next_message();
    assert_eq!(log["method"], "notifications/message", "{log}");
    assert_eq!(s.next_message()["id"], "l");
}

#[test]
fn a_modern_child_gets_subscriptions_through_the_proxys_listen_stream() {
    let p = Proxy::start(&["--port", "0", "--", MODERN_CHILD]);
    let url = p.url("/mcp");
    let mut c = McpClient::connect(&url, json!({}));
    let sid = c.session.clone().unwrap();
    let mut get = SseClient::get(&url, &[("Mcp-Session-Id", &sid)]);
    assert_eq!(
        c.call("resources/subscribe", json!({"uri": "modern://greeting"}))["result"],
        json!({})
    );
    c.tool_text("notify_tools", json!({}));
    c.tool_text("touch", json!({"uri": "modern://greeting"}));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = get.next_message();
        seen.push(m["method"].as_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "notifications/resources/updated",
            "notifications/tools/list_changed"
        ]
    );
}

#[test]
fn a_modern_child_serves_modern_clients_with_its_own_input_required_results() {
    let p = Proxy::start(&["--port", "0", "--", MODERN_CHILD]);
    let url = p.url("/mcp");
    let caps = json!({"elicitation": {}});
    let params = json!({"name":"ask_name","arguments":{},"_meta":meta(caps)});
    let first = final_message(&call(
        &url,
        json!(1),
        "tools/call",
        params.clone(),
        Some("ask_name"),
    ));
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    assert!(
        first["result"]["inputRequests"]["name"].is_object(),
        "{first}"
    );
    let mut retry = params;
    retry["requestState"] = first["result"]["requestState"].clone();
    retry["inputResponses"] = json!({"name": {"action":"accept","content":{"name":"Lin"}}});
    let done = final_message(&call(&url, json!(2), "tools/call", retry, Some("ask_name")));
    assert_eq!(done["result"]["content"][0]["text"], "hello Lin", "{done}");
    let d = final_message(&call(&url, json!(3), "server/discover", json!({}), None));
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-modern-server"
    );
}

/// A listen stream is long-lived: a client that hangs up must be noticed at once (the
/// hang-up watch), not at the keep-alive write a minute later, or its session lingers.
#[cfg(target_os = "linux")] // the hang-up watch is epoll's
#[test]
fn a_listen_stream_whose_client_hangs_up_ends_long_before_the_keepalive() {
    let p = Proxy::start(&["--sse-keepalive", "60", "--port", "0", "--", FIXTURE]);
    let body = json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{
        "notifications": {"toolsListChanged": true}, "_meta": meta(json!({}))}});
    let mut listen = open_stream(&p.url("/mcp"), &body, None);
    assert_eq!(listen.status, 200);
    let ack = listen.next_message();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    let sessions = || p.status()["servers"]["default"]["sessions"].clone();
    assert_eq!(sessions(), 1, "the listen stream's session");
    listen.close();
    wait_until(
        std::time::Duration::from_secs(10),
        "the listen session to end",
        || sessions() == 0,
    );
}

#[test]
fn a_name_written_twice_is_checked_as_the_child_reads_it() {
    let p = proxy();
    // The child reads the last `name` ("add"): an `Mcp-Name: echo` must not let it through.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","name":"add","arguments":{{"a":1,"b":2,"message":"x"}},"_meta":{}}}}}"#,
        meta(json!({}))
    );
    let r = request(
        "POST",
        &p.url("/mcp"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", VERSION),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ],
        &body,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32020, "{r:?}");
}
