//! Server mode over Streamable HTTP (`/mcp`): sessions, routing, and every error status.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn proxy() -> Proxy {
    Proxy::start(&["--port", "0", "--", FIXTURE])
}

fn tools_call(id: Value, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":arguments}})
}

#[test]
fn initialize_is_answered_from_the_childs_handshake() {
    let p = proxy();
    let r = post_json(
        &p.url("/mcp"),
        &[],
        &json!({"jsonrpc":"2.0","id":"init-1","method":"initialize","params":initialize_params(json!({}))}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let session = r.header("mcp-session-id").expect("session header");
    assert_eq!(session.len(), 32);
    assert!(session.chars().all(|c| c.is_ascii_hexdigit()));
    let v = r.json();
    assert_eq!(v["id"], "init-1");
    assert_eq!(v["result"]["serverInfo"]["name"], "mcp-example-server");
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25");
    // The child's capabilities pass unchanged (the Python tool rewrites them).
    assert_eq!(v["result"]["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(v["result"]["capabilities"]["resources"]["subscribe"], true);
    assert!(
        v["result"]["instructions"]
            .as_str()
            .unwrap()
            .contains("Example server")
    );

    // An older client gets its own version; an unknown one gets the latest.
    for (asked, got) in [("2024-11-05", "2024-11-05"), ("1999-01-01", "2025-11-25")] {
        let mut params = initialize_params(json!({}));
        params["protocolVersion"] = json!(asked);
        let r = post_json(
            &p.url("/mcp"),
            &[],
            &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":params}),
        );
        assert_eq!(r.json()["result"]["protocolVersion"], got);
    }
}

#[test]
fn string_and_integer_ids_come_back_exactly() {
    let p = proxy();
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    for id in [
        json!(7),
        json!("seven"),
        json!(0),
        json!(-3),
        json!("a\"b\\c"),
        json!(9007199254740993u64),
    ] {
        let r = c.post(
            &tools_call(id.clone(), "echo", json!({"message": "x"})),
            false,
        );
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(v["id"], id, "id {id} came back as {}", v["id"]);
        // The raw text is identical too (no re-serialisation of ids).
        let raw_id = serde_json::to_string(&id).unwrap();
        assert!(r.body.contains(&format!("\"id\":{raw_id}")), "{}", r.body);
    }
}

#[test]
fn twenty_concurrent_sessions_each_get_only_their_own_answers() {
    let p = proxy();
    let url = p.url("/mcp");
    let workers: Vec<_> = (0..20)
        .map(|n| {
            let url = url.clone();
            thread::spawn(move || {
                let mut c = McpClient::connect(&url, json!({}));
                for i in 0..15 {
                    let message = format!("session {n} call {i}");
                    // Alternate JSON and SSE replies.
                    let v = if i % 2 == 0 {
                        let r = c.post(
                            &tools_call(json!(i), "echo", json!({"message": message})),
                            false,
                        );
                        r.json()
                    } else {
                        let mut s = c.open_stream(&tools_call(
                            json!(i),
                            "echo",
                            json!({"message": message}),
                        ));
                        s.next_message()
                    };
                    assert_eq!(v["id"], i);
                    assert_eq!(v["result"]["content"][0]["text"], message.as_str());
                }
                c.tool_text("add", json!({"a": n, "b": 1}))
            })
        })
        .collect();
    for (n, w) in workers.into_iter().enumerate() {
        assert_eq!(w.join().expect("worker"), (n + 1).to_string());
    }
}

#[test]
fn progress_and_log_messages_ride_on_the_request_stream() {
    let p = proxy();
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    let mut s = c.open_stream(&json!({"jsonrpc":"2.0","id":"p1","method":"tools/call",
        "params":{"name":"progress","arguments":{"steps":4,"interval_ms":5},"_meta":{"progressToken":"my-token"}}}));
    assert_eq!(s.status, 200);
    assert!(s.headers["content-type"].starts_with("text/event-stream"));
    for step in 1..=4 {
        let m = s.next_message();
        assert_eq!(m["method"], "notifications/progress", "{m}");
        assert_eq!(m["params"]["progressToken"], "my-token");
        assert_eq!(m["params"]["progress"], step);
    }
    let done = s.next_message();
    assert_eq!(done["id"], "p1");
    assert_eq!(done["result"]["content"][0]["text"], "done 4 steps");
    assert!(
        s.next_event(DEADLINE).is_none(),
        "stream ends after the response"
    );

    let mut s = c.open_stream(&tools_call(
        json!(5),
        "log",
        json!({"level":"warning","message":"careful"}),
    ));
    let log = s.next_message();
    assert_eq!(log["method"], "notifications/message");
    assert_eq!(log["params"]["data"], "careful");
    assert_eq!(s.next_message()["id"], 5);
}

#[test]
fn integer_progress_tokens_of_two_sessions_do_not_mix() {
    let p = proxy();
    let a = McpClient::connect(&p.url("/mcp"), json!({}));
    let b = McpClient::connect(&p.url("/mcp"), json!({}));
    let call = |id: i64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"progress","arguments":{"steps":3,"interval_ms":20},"_meta":{"progressToken":1}}})
    };
    let mut sa = a.open_stream(&call(1));
    let mut sb = b.open_stream(&call(1));
    for s in [&mut sa, &mut sb] {
        for step in 1..=3 {
            let m = s.next_message();
            assert_eq!(m["params"]["progressToken"], 1);
            assert_eq!(m["params"]["progress"], step);
        }
        assert_eq!(s.next_message()["id"], 1);
    }
}

#[test]
fn sampling_request_reaches_the_calling_session_and_its_answer_returns() {
    let p = proxy();
    let url = p.url("/mcp");
    // A bystander session that could sample too, idle.
    let _bystander = McpClient::connect(&url, json!({"sampling": {}}));
    let c = McpClient::connect(&url, json!({"sampling": {}}));
    let mut s = c.open_stream(&tools_call(
        json!(11),
        "sample",
        json!({"prompt": "write a haiku"}),
    ));
    let request = s.next_message();
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "write a haiku"
    );
    let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"an old silent pond"},"model":"test"}});
    let r = c.post(&answer, false);
    assert_eq!(r.status, 202, "{r:?}");
    let result = s.next_message();
    assert_eq!(result["id"], 11);
    assert_eq!(
        result["result"]["content"][0]["text"],
        "sampled: an old silent pond"
    );
}

#[test]
fn a_childs_request_goes_to_the_session_with_the_most_recent_call_in_flight() {
    let p = Proxy::start(&["--debug", "--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    let busy = McpClient::connect(&url, json!({"sampling": {}}));
    let caller = McpClient::connect(&url, json!({"sampling": {}}));
    let _late = McpClient::connect(&url, json!({"sampling": {}}));
    // Sessions opened before and after the caller, one with a call of its own in flight.
    let _slow = busy.open_stream(&tools_call(json!("slow"), "sleep", json!({"ms": 30_000})));
    p.wait_for_log("request tools/call \"slow\"");
    let mut s = caller.open_stream(&tools_call(json!(1), "sample", json!({"prompt": "mine"})));
    let request = s.next_message();
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"ok"},"model":"m"}});
    assert_eq!(caller.post(&answer, false).status, 202);
    assert_eq!(
        s.next_message()["result"]["content"][0]["text"],
        "sampled: ok"
    );
}

#[test]
fn a_session_cannot_answer_a_request_sent_to_another() {
    let p = proxy();
    let url = p.url("/mcp");
    let c = McpClient::connect(&url, json!({"sampling": {}}));
    let intruder = McpClient::connect(&url, json!({"sampling": {}}));
    let mut s = c.open_stream(&tools_call(json!(1), "sample", json!({"prompt": "p"})));
    let request = s.next_message();
    let forged = json!({"jsonrpc":"2.0","id":request["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"forged"},"model":"x"}});
    assert_eq!(intruder.post(&forged, false).status, 202);
    let real = json!({"jsonrpc":"2.0","id":request["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"real"},"model":"x"}});
    assert_eq!(c.post(&real, false).status, 202);
    assert_eq!(
        s.next_message()["result"]["content"][0]["text"],
        "sampled: real"
    );
}

#[test]
fn child_request_without_a_capable_client_is_refused_at_once() {
    let p = proxy();
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let start = Instant::now();
    let v = c.call(
        "tools/call",
        json!({"name":"sample","arguments":{"prompt":"p"}}),
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("sampling failed")
    );
}

#[test]
fn get_stream_carries_unrelated_notifications_and_only_one_is_allowed() {
    let p = proxy();
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let session = c.session.clone().unwrap();
    let mut get = SseClient::get(&c.url, &[("Mcp-Session-Id", &session)]);
    assert_eq!(get.status, 200);
    let second = request(
        "GET",
        &c.url,
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
        "",
    );
    assert_eq!(second.status, 409, "{second:?}");
    // A JSON-only call: its related notifications go to the GET stream.
    assert_eq!(c.tool_text("notify", json!({"kind": "tools"})), "notified");
    let m = get.next_message();
    assert_eq!(m["method"], "notifications/tools/list_changed");
}

#[test]
fn notifications_wait_for_a_get_stream_when_none_is_open() {
    let p = proxy();
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    assert_eq!(c.tool_text("log", json!({"message": "early"})), "logged");
    let session = c.session.clone().unwrap();
    let mut get = SseClient::get(&c.url, &[("Mcp-Session-Id", &session)]);
    let m = get.next_message();
    assert_eq!(m["params"]["data"], "early");
}

#[test]
fn list_changed_reaches_every_session_and_updates_only_subscribers() {
    let p = proxy();
    let url = p.url("/mcp");
    let mut a = McpClient::connect(&url, json!({}));
    let b = McpClient::connect(&url, json!({}));
    let sb = b.session.clone().unwrap();
    let mut b_stream = SseClient::get(&url, &[("Mcp-Session-Id", &sb)]);
    let sa = a.session.clone().unwrap();
    let mut a_stream = SseClient::get(&url, &[("Mcp-Session-Id", &sa)]);

    let r = a.call("resources/subscribe", json!({"uri": "example://greeting"}));
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(
        a.tool_text("touch", json!({"uri": "example://greeting"})),
        "touched"
    );
    assert_eq!(
        a.tool_text("notify", json!({"kind": "prompts"})),
        "notified"
    );

    let first_a = a_stream.next_message();
    assert_eq!(first_a["method"], "notifications/resources/updated");
    assert_eq!(first_a["params"]["uri"], "example://greeting");
    assert_eq!(
        a_stream.next_message()["method"],
        "notifications/prompts/list_changed"
    );
    // b never subscribed: it sees only the list_changed.
    assert_eq!(
        b_stream.next_message()["method"],
        "notifications/prompts/list_changed"
    );
}

#[test]
fn each_session_gets_log_messages_at_its_own_level() {
    let p = proxy();
    let url = p.url("/mcp");
    let mut quiet = McpClient::connect(&url, json!({}));
    let mut chatty = McpClient::connect(&url, json!({}));
    let mut streams = [&quiet, &chatty]
        .map(|c| SseClient::get(&url, &[("Mcp-Session-Id", c.session.as_deref().unwrap())]));
    let r = quiet.call("logging/setLevel", json!({"level": "error"}));
    assert_eq!(r["result"], json!({}), "{r}");
    chatty.call("logging/setLevel", json!({"level": "debug"}));
    for (level, message) in [("warning", "w"), ("error", "e")] {
        let text = chatty.tool_text("log", json!({"level": level, "message": message}));
        assert_eq!(text, "logged");
    }
    let [quiet_stream, chatty_stream] = &mut streams;
    // Each stream carries the lines in order: "e" first means "w" was held back.
    assert_eq!(quiet_stream.next_message()["params"]["data"], "e");
    assert_eq!(chatty_stream.next_message()["params"]["data"], "w");
    assert_eq!(chatty_stream.next_message()["params"]["data"], "e");
}

#[test]
fn one_megabyte_result_and_request_arrive_intact() {
    let p = proxy();
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let text = c.tool_text("large", json!({"bytes": 1_000_000}));
    assert_eq!(text.len(), 1_000_000);
    assert!(
        text.as_bytes()
            .chunks(10)
            .all(|ch| ch == &b"0123456789"[..ch.len()])
    );

    let big: String = (0..1_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    assert_eq!(c.tool_text("echo", json!({"message": big.clone()})), big);

    let mut s = c.open_stream(&tools_call(json!(99), "large", json!({"bytes": 1_000_000})));
    let v = s.next_message();
    assert_eq!(
        v["result"]["content"][0]["text"].as_str().unwrap().len(),
        1_000_000
    );
}

#[test]
fn cancelled_request_is_cancelled_at_the_child() {
    let p = Proxy::start(&["--debug", "--port", "0", "--", FIXTURE]);
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    let mut s = c.open_stream(&tools_call(json!("slow"), "sleep", json!({"ms": 30_000})));
    // Wait until the request is at the child before cancelling it.
    p.wait_for_log("request tools/call \"slow\"");
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow","reason":"user"}});
    assert_eq!(c.post(&cancel, false).status, 202);
    let v = s.next_message();
    assert_eq!(v["id"], "slow");
    assert_eq!(v["error"]["code"], -32800, "{v}");
    // The child saw the cancel for its own id: it drops the call (and says so on stderr).
    p.wait_for_log("was cancelled: no response");
    assert!(!p.stderr().contains("no running request"), "{}", p.stderr());
    let mut c2 = McpClient::connect(&p.url("/mcp"), json!({}));
    assert_eq!(c2.tool_text("echo", json!({"message": "after"})), "after");
}

#[test]
fn child_error_responses_pass_through_verbatim() {
    let p = proxy();
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let v = c.call("tools/call", json!({"name": "fail", "arguments": {}}));
    assert_eq!(v["error"]["code"], -32042);
    assert_eq!(v["error"]["message"], "requested failure");
    assert_eq!(v["error"]["data"]["detail"], "fail tool");
    // Unknown methods reach the child too (it answers -32601).
    let v = c.call("vendor/custom", json!({}));
    assert_eq!(v["error"]["code"], -32601, "{v}");
}

#[test]
fn session_lifecycle_statuses() {
    let p = proxy();
    let url = p.url("/mcp");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    // No session header on a non-initialize request: 400.
    let r = post_json(&url, &[], &list);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"]["code"], -32600);
    // Unknown (and malformed) session: 404.
    for bogus in ["0123456789abcdef0123456789abcdef", "nope"] {
        let r = post_json(&url, &[("Mcp-Session-Id", bogus)], &list);
        assert_eq!(r.status, 404, "{r:?}");
    }
    let mut c = McpClient::connect(&url, json!({}));
    let tools = c.call("tools/list", json!({}));
    assert!(
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo")
    );
    let session = c.session.clone().unwrap();
    // DELETE ends it; then 404.
    let r = request("DELETE", &url, &[("Mcp-Session-Id", &session)], "");
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_json(&url, &[("Mcp-Session-Id", &session)], &list);
    assert_eq!(r.status, 404, "{r:?}");
    let r = request("DELETE", &url, &[("Mcp-Session-Id", &session)], "");
    assert_eq!(r.status, 404, "{r:?}");
    let r = request(
        "GET",
        &url,
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
        "",
    );
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn transport_error_statuses() {
    let p = proxy();
    let url = p.url("/mcp");
    let c = McpClient::connect(&url, json!({}));
    let sid = c.session.clone().unwrap();
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string();
    let base = [
        ("Content-Type", "application/json"),
        ("Mcp-Session-Id", sid.as_str()),
    ];

    let with = |extra: &[(&str, &str)], body: &str| {
        let mut h = base.to_vec();
        h.extend_from_slice(extra);
        request("POST", &url, &h, body)
    };
    // Accept that allows neither JSON nor SSE: 406.
    assert_eq!(with(&[("Accept", "text/html")], &ping).status, 406);
    // Wrong Content-Type: 415.
    let r = request(
        "POST",
        &url,
        &[
            ("Content-Type", "text/plain"),
            ("Accept", "application/json"),
            ("Mcp-Session-Id", &sid),
        ],
        &ping,
    );
    assert_eq!(r.status, 415, "{r:?}");
    // Bad JSON: 400 with -32700.
    let r = with(&[("Accept", "application/json")], "{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);
    // A batch: 400 with -32600.
    let r = with(&[("Accept", "application/json")], &format!("[{ping}]"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32600);
    // Unsupported MCP-Protocol-Version: 400 naming the supported ones.
    let r = with(
        &[
            ("Accept", "application/json"),
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        &ping,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-11-25")
    );
    // A notification: 202 with no body.
    let r = with(
        &[("Accept", "application/json")],
        &json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"}).to_string(),
    );
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty());
    // Other methods: 405 with Allow.
    let r = request("PUT", &url, &[("Mcp-Session-Id", &sid)], "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
    // GET without SSE in Accept: 406.
    let r = request(
        "GET",
        &url,
        &[("Accept", "application/json"), ("Mcp-Session-Id", &sid)],
        "",
    );
    assert_eq!(r.status, 406);
    // Too large a body: 413, before it is read.
    let r = request(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Content-Length", "999999999999"),
        ],
        "",
    );
    assert_eq!(r.status, 413, "{r:?}");
    // The session still works after all that.
    let r = with(&[("Accept", "application/json")], &ping);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], json!({}));
}

#[test]
fn mcp_with_trailing_slash_and_subpaths_work() {
    let p = proxy();
    for path in ["/mcp/", "/mcp/anything"] {
        let mut c = McpClient::connect(&p.url(path), json!({}));
        assert_eq!(c.tool_text("echo", json!({"message": path})), path);
    }
    assert_eq!(request("GET", &p.url("/nope"), &[], "").status, 404);
}

#[test]
fn stateless_mode_needs_no_session() {
    let p = Proxy::start(&["--stateless", "--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    let r = post_json(
        &url,
        &[("Accept", "application/json")],
        &tools_call(json!(1), "echo", json!({"message":"hi"})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    let r = post_json(
        &url,
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":initialize_params(json!({}))}),
    );
    assert_eq!(r.status, 200);
    assert!(r.header("mcp-session-id").is_none(), "{r:?}");
    assert_eq!(
        request("GET", &url, &[("Accept", "text/event-stream")], "").status,
        405
    );
    assert_eq!(request("DELETE", &url, &[], "").status, 405);
    // Progress still rides on the SSE reply.
    let mut s = SseClient::open(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
            "params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"t"}}})
        .to_string(),
    );
    assert_eq!(s.next_message()["method"], "notifications/progress");
    assert_eq!(s.next_message()["method"], "notifications/progress");
    assert_eq!(s.next_message()["id"], 2);
}

#[test]
fn sse_events_are_flushed_the_moment_they_exist() {
    let p = proxy();
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    // 5 progress steps 300 ms apart: each must arrive well before the next is produced.
    let mut s = c.open_stream(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"progress","arguments":{"steps":5,"interval_ms":300},"_meta":{"progressToken":"t"}}}));
    let mut arrivals = Vec::new();
    let start = Instant::now();
    for _ in 0..5 {
        let m = s.next_message();
        assert_eq!(m["method"], "notifications/progress");
        arrivals.push(start.elapsed());
    }
    // Buffered delivery would bunch the events together; flushed delivery spaces them out.
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(150),
            "events bunched: {arrivals:?}"
        );
    }
    assert_eq!(s.next_message()["id"], 1);
}

/// Microseconds since the epoch (the fixture stamps `ticks` with the same clock).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Receives `ticks` log messages and returns their delivery latencies in microseconds.
fn tick_latencies(next: &mut dyn FnMut() -> Value, count: usize) -> Vec<u64> {
    let mut latencies = Vec::new();
    while latencies.len() < count {
        let m = next();
        if m["method"] == "notifications/message" && m["params"]["logger"] == "ticks" {
            let sent = m["params"]["data"]["sent_us"].as_u64().unwrap();
            latencies.push(now_us().saturating_sub(sent));
        }
    }
    latencies.sort_unstable();
    latencies
}

/// Measures event produced (the child writes the line) → event received (the client has
/// parsed it), over a POST SSE reply and over the legacy SSE stream. Prints the numbers; the
/// bound only catches buffering (an event stuck until the stream ends or a buffer fills).
#[test]
fn sse_event_latency_from_child_to_client() {
    let p = proxy();
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ticks","arguments":{"count":50,"interval_ms":10}}});
    let mut s = c.open_stream(&call);
    let mcp = tick_latencies(&mut || s.next_message(), 50);

    let mut legacy = SseClient::get(&p.url("/sse"), &[]);
    let endpoint = format!("{}{}", p.base, legacy.next_event(DEADLINE).unwrap().data);
    let post = |m: &Value| {
        request(
            "POST",
            &endpoint,
            &[("Content-Type", "application/json")],
            &m.to_string(),
        )
    };
    post(
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":initialize_params(json!({}))}),
    );
    post(&call);
    let sse = tick_latencies(&mut || legacy.next_message(), 50);

    let pct = |v: &[u64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    eprintln!(
        "SSE latency child->client, 50 events: /mcp p50 {} us p99 {} us; /sse p50 {} us p99 {} us",
        pct(&mcp, 0.5),
        pct(&mcp, 0.99),
        pct(&sse, 0.5),
        pct(&sse, 0.99)
    );
    assert!(
        pct(&mcp, 0.5) < 200_000 && pct(&sse, 0.5) < 200_000,
        "{mcp:?} {sse:?}"
    );
}

#[test]
fn elicitation_and_roots_reach_clients_that_declared_them_and_child_pings_are_answered() {
    let p = proxy();
    let url = p.url("/mcp");
    let mut plain = McpClient::connect(&url, json!({}));
    // The proxy itself answers the child's ping.
    assert_eq!(plain.tool_text("ping_client", json!({})), "pong");

    let c = McpClient::connect(
        &url,
        json!({"elicitation": {}, "roots": {"listChanged": true}}),
    );
    let mut s = c.open_stream(&tools_call(
        json!("e"),
        "elicit",
        json!({"message": "your name?"}),
    ));
    let req = s.next_message();
    assert_eq!(req["method"], "elicitation/create");
    assert_eq!(req["params"]["message"], "your name?");
    let answer = json!({"jsonrpc":"2.0","id":req["id"],"result":{"action":"accept","content":{"name":"Ada"}}});
    assert_eq!(c.post(&answer, false).status, 202);
    let done = s.next_message();
    let text: Value =
        serde_json::from_str(done["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, json!({"action":"accept","content":{"name":"Ada"}}));

    let mut s = c.open_stream(&tools_call(json!("r"), "roots", json!({})));
    let req = s.next_message();
    assert_eq!(req["method"], "roots/list");
    let roots = json!([{"uri": "file:///work", "name": "work"}]);
    c.post(
        &json!({"jsonrpc":"2.0","id":req["id"],"result":{"roots": roots}}),
        false,
    );
    let done = s.next_message();
    let text: Value =
        serde_json::from_str(done["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, roots);

    // A client without the capability is never asked: the child gets an error at once.
    let v = plain.call(
        "tools/call",
        json!({"name": "elicit", "arguments": {"message": "?"}}),
    );
    assert_eq!(v["result"]["isError"], true, "{v}");
}

#[test]
fn post_streams_start_with_a_priming_event_for_2025_11_25_clients_only() {
    let p = proxy();
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    let mut s = c.open_stream(&tools_call(json!(1), "echo", json!({"message": "m"})));
    let priming = s.next_event(DEADLINE).unwrap();
    assert!(
        priming.data.is_empty() && priming.id.is_some(),
        "{priming:?}"
    );
    // It tells the client how soon to reconnect.
    let retry = priming.retry.as_deref().unwrap_or("");
    assert!(retry.parse::<u64>().is_ok(), "{priming:?}");
    let response = s.next_event(DEADLINE).unwrap();
    assert!(response.id.is_some(), "events carry ids: {response:?}");
    assert_ne!(response.id, priming.id);

    // An older client never sees an event without data.
    let mut params = initialize_params(json!({}));
    params["protocolVersion"] = json!("2025-06-18");
    let r = post_json(
        &p.url("/mcp"),
        &[],
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":params}),
    );
    let sid = r.header("mcp-session-id").unwrap().to_string();
    let mut s = SseClient::open(
        "POST",
        &p.url("/mcp"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", &sid),
        ],
        &tools_call(json!(1), "echo", json!({"message": "m"})).to_string(),
    );
    let first = s.next_event(DEADLINE).unwrap();
    assert!(!first.data.is_empty(), "{first:?}");
}

#[test]
fn a_dropped_post_stream_resumes_with_last_event_id_and_loses_nothing() {
    let p = proxy();
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    let sid = c.session.clone().unwrap();
    let mut s = c.open_stream(&json!({"jsonrpc":"2.0","id":"r1","method":"tools/call",
        "params":{"name":"progress","arguments":{"steps":6,"interval_ms":150},"_meta":{"progressToken":"t"}}}));
    // Read two progress events, remember the last id, then drop the connection.
    let mut last_id = None;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = s.next_event(DEADLINE).unwrap();
        last_id = e.id.clone();
        if !e.data.is_empty() {
            seen.push(e.json()["params"]["progress"].as_u64().unwrap());
        }
    }
    s.close();
    // Reconnect after the call has finished: the rest is replayed, then the stream ends.
    wait_until(DEADLINE, "the call to finish at the child", || {
        p.status()["servers"]["default"]["in_flight"] == 0
    });
    let last = last_id.unwrap();
    let mut resumed = SseClient::get(
        &c.url,
        &[("Mcp-Session-Id", &sid), ("Last-Event-ID", &last)],
    );
    assert_eq!(resumed.status, 200);
    let mut response = None;
    while let Some(e) = resumed.next_event(DEADLINE) {
        if e.data.is_empty() {
            continue;
        }
        let m = e.json();
        if m["method"] == "notifications/progress" {
            seen.push(m["params"]["progress"].as_u64().unwrap());
        } else {
            response = Some(m);
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6], "every step exactly once");
    let response = response.expect("the response was replayed");
    assert_eq!(response["id"], "r1");
    assert_eq!(response["result"]["content"][0]["text"], "done 6 steps");
}

#[test]
fn the_get_stream_resumes_after_a_drop() {
    let p = proxy();
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let sid = c.session.clone().unwrap();
    let mut get = SseClient::get(&c.url, &[("Mcp-Session-Id", &sid)]);
    for kind in ["tools", "prompts"] {
        assert_eq!(c.tool_text("notify", json!({"kind": kind})), "notified");
    }
    let mut next_with_data = || loop {
        let e = get.next_event(DEADLINE).expect("an event");
        if !e.data.is_empty() {
            return e;
        }
    };
    let tools = next_with_data();
    assert_eq!(tools.json()["method"], "notifications/tools/list_changed");
    let prompts = next_with_data();
    assert_eq!(
        prompts.json()["method"],
        "notifications/prompts/list_changed"
    );
    get.close();
    // While no GET is open (the proxy may not have noticed the drop yet).
    assert_eq!(
        c.tool_text("notify", json!({"kind": "resources"})),
        "notified"
    );
    // Resuming after the first event replays the second too, though it was written: only the
    // client knows what it read. A GET that ignored Last-Event-ID would start at "resources".
    let last = tools.id.expect("events carry ids");
    let mut again = SseClient::get(
        &c.url,
        &[("Mcp-Session-Id", &sid), ("Last-Event-ID", &last)],
    );
    assert_eq!(
        again.next_message()["method"],
        "notifications/prompts/list_changed"
    );
    assert_eq!(
        again.next_message()["method"],
        "notifications/resources/list_changed"
    );
}

#[test]
fn deleting_a_session_ends_its_get_stream_at_once() {
    let p = proxy();
    let url = p.url("/mcp");
    let c = McpClient::connect(&url, json!({}));
    let sid = c.session.clone().unwrap();
    let mut get = SseClient::get(&url, &[("Mcp-Session-Id", &sid)]);
    assert_eq!(
        request("DELETE", &url, &[("Mcp-Session-Id", &sid)], "").status,
        200
    );
    // Well inside the 15 s keep-alive: the stream ends because its session did, not because
    // a keep-alive write failed. A priming event may come first.
    let rest = get.rest(Duration::from_secs(10));
    assert!(rest.iter().all(|e| e.data.is_empty()), "{rest:?}");
}

#[test]
fn deleting_a_session_ends_its_post_streams() {
    let p = proxy();
    let url = p.url("/mcp");
    let c = McpClient::connect(&url, json!({}));
    let sid = c.session.clone().unwrap();
    let mut s = c.open_stream(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"sleep","arguments":{"ms":60000}}}));
    wait_until(DEADLINE, "the call to be at the child", || {
        p.status()["servers"]["default"]["in_flight"] == 1
    });
    assert_eq!(
        request("DELETE", &url, &[("Mcp-Session-Id", &sid)], "").status,
        200
    );
    // A priming event may come first; the call never completes: the child was told.
    let rest = s.rest(Duration::from_secs(10));
    assert!(rest.iter().all(|e| !e.data.contains("slept")), "{rest:?}");
    p.wait_for_log("was cancelled: no response");
}

#[test]
fn an_http_1_0_sse_reply_ends_even_when_the_client_asks_for_keep_alive() {
    use std::io::{Read, Write};
    let p = proxy();
    let url = p.url("/mcp");
    let c = McpClient::connect(&url, json!({}));
    let sid = c.session.clone().unwrap();
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string();
    let mut socket = raw_connect(&p);
    write!(
        socket,
        "POST /mcp HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Mcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // A close-delimited body: the read must end (not time out) once the response is in.
    let mut all = Vec::new();
    socket
        .read_to_end(&mut all)
        .expect("the body ends with the connection");
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("text/event-stream") && text.contains("\"tools\""),
        "{text}"
    );
}

#[test]
fn the_child_sees_one_subscription_per_uri_whoever_holds_it() {
    let p = Proxy::start(&["--log-level", "debug", "--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    let mut a = McpClient::connect(&url, json!({}));
    let mut b = McpClient::connect(&url, json!({}));
    let uri = json!({"uri": "example://greeting"});
    assert!(a.call("resources/subscribe", uri.clone())["result"].is_object());
    assert!(b.call("resources/subscribe", uri.clone())["result"].is_object());
    // b lets go while a still holds it: the child must keep its subscription.
    assert!(b.call("resources/unsubscribe", uri.clone())["result"].is_object());
    // The last holder lets go: now the child hears of it.
    assert!(a.call("resources/unsubscribe", uri)["result"].is_object());
    // stderr is one ordered pipe: once this call's line is in, so are all before it.
    assert_eq!(a.tool_text("echo", json!({"message": "end"})), "end");
    p.wait_for_log("request tools/call ");
    let log = p.stderr();
    let forwarded = |method: &str| log.matches(&format!("request {method} ")).count();
    assert_eq!(forwarded("resources/subscribe"), 1, "{log}");
    assert_eq!(forwarded("resources/unsubscribe"), 1, "{log}");
}
