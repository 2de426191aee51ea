//! Inbound authentication and the caps of server mode: each has a flag, and each refusal is
//! clear and leaves everyone else served.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn init_body() -> serde_json::Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":initialize_params(json!({}))})
}

#[test]
fn bearer_token_is_required_except_on_health() {
    let token = "tok-very-secret-123";
    let p = Proxy::start_with(
        &["--debug", "--port", "0", "--", FIXTURE],
        &[("MCP_PROXY_AUTH_TOKEN", token)],
    );
    let url = p.url("/mcp");
    let r = post_json(&url, &[], &init_body());
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(
        post_json(&url, &[("Authorization", "Bearer wrong")], &init_body()).status,
        401
    );
    assert_eq!(request("GET", &p.url("/status"), &[], "").status, 401);
    wait_until(DEADLINE, "/health to answer 200 without a token", || {
        request("GET", &p.url("/health"), &[], "").status == 200
    });

    let auth = format!("Bearer {token}");
    let r = post_json(&url, &[("Authorization", &auth)], &init_body());
    assert_eq!(r.status, 200);
    // An unknown session with a good token is 404 (re-initialize), never 401 (re-authorize).
    let r = post_json(
        &url,
        &[
            ("Authorization", &auth),
            ("Mcp-Session-Id", "0123456789abcdef0123456789abcdef"),
        ],
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    );
    assert_eq!(r.status, 404);
    assert!(!p.stderr().contains(token), "the token leaked into the log");
}

#[test]
fn auth_token_flag_works_too() {
    let p = Proxy::start(&["--auth-token", "flag-token", "--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    assert_eq!(post_json(&url, &[], &init_body()).status, 401);
    assert_eq!(
        post_json(
            &url,
            &[("Authorization", "Bearer flag-token")],
            &init_body()
        )
        .status,
        200
    );
}

#[test]
fn oversized_messages_are_refused_both_ways() {
    let p = Proxy::start(&["--max-message-size", "100000", "--port", "0", "--", FIXTURE]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let big = "x".repeat(200_000);
    let r = c.post(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message": big}}}), false);
    assert_eq!(r.status, 413, "{r:?}");
    p.wait_for_log("413");
    // A child's line over the cap is dropped and logged; the proxy serves on.
    let _waiting = c.open_stream(&json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"large","arguments":{"bytes": 200000}}}));
    p.wait_for_log("stdout line (limit 100000 bytes");
    assert_eq!(c.tool_text("echo", json!({"message": "small"})), "small");
}

#[test]
fn too_many_sessions_get_503() {
    let p = Proxy::start(&["--max-sessions", "2", "--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    let _a = McpClient::connect(&url, json!({}));
    let b = McpClient::connect(&url, json!({}));
    let r = post_json(&url, &[], &init_body());
    assert_eq!(r.status, 503, "{r:?}");
    p.wait_for_log("refused a session");
    let sid = b.session.clone().unwrap();
    assert_eq!(
        request("DELETE", &url, &[("Mcp-Session-Id", &sid)], "").status,
        200
    );
    assert_eq!(post_json(&url, &[], &init_body()).status, 200);
}

#[test]
fn idle_sessions_are_reaped() {
    let p = Proxy::start(&["--session-idle-timeout", "1", "--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    let c = McpClient::connect(&url, json!({}));
    let sid = c.session.clone().unwrap();
    // Polling the session would keep it alive: watch the log instead.
    p.wait_for_log("(idle for 1 s)");
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    assert_eq!(
        post_json(&url, &[("Mcp-Session-Id", &sid)], &ping).status,
        404
    );
}

#[test]
fn a_request_that_times_out_gets_an_error_and_is_cancelled_at_the_child() {
    let p = Proxy::start(&[
        "--debug",
        "--request-timeout",
        "0.5",
        "--port",
        "0",
        "--",
        FIXTURE,
    ]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let start = Instant::now();
    let v = c.call(
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": 30000}}),
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(v["error"]["code"], -32001, "{v}");
    p.wait_for_log("timed out after 0.5 s");
    // The child was told, with its own id: it drops the call (and says so on stderr).
    p.wait_for_log("was cancelled: no response");
    assert!(!p.stderr().contains("no running request"), "{}", p.stderr());
    wait_until(DEADLINE, "nothing in flight", || {
        p.status()["servers"]["default"]["in_flight"] == 0
    });
    assert_eq!(c.tool_text("echo", json!({"message": "next"})), "next");
}

#[test]
fn idle_http_connections_are_closed() {
    let p = Proxy::start(&["--http-timeout", "1", "--port", "0", "--", FIXTURE]);
    let mut stream = raw_connect(&p);
    // Half a request line, then silence.
    stream.write_all(b"GET /status HT").unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "connection kept open {took:?}"
    );
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
}

#[test]
fn bad_limit_values_are_usage_errors() {
    for args in [
        ["--max-sessions", "0"],
        ["--max-message-size", "lots"],
        ["--request-timeout", "-1"],
        ["--http-timeout", "0"],
    ] {
        let mut all = args.to_vec();
        all.push(FIXTURE);
        let mut p = Proxy::spawn(&all, &[]);
        assert_eq!(p.wait_exit(DEADLINE), Some(2), "{args:?}: {}", p.stderr());
    }
}

#[test]
fn a_child_that_stops_reading_gets_its_callers_a_503_not_a_hang() {
    // The child answers, then stops reading stdin for longer than the test. Its pipe fills,
    // then the proxy's bounded backlog; the next message waits CHILD_SEND_TIMEOUT (10 s) for
    // room and is refused with 503, so that memory stays bounded and nobody waits for ever.
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let stopped = c.tool_text("stop_reading", json!({"ms": 60_000}));
    assert_eq!(stopped, "stopped reading");
    let padding = "x".repeat(64 * 1024);
    let note = json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed",
        "params":{"padding": padding}});
    let start = Instant::now();
    // 8 MiB of backlog is about 130 of these; the bound on messages (1,024) is far off.
    for sent in 0..1_000 {
        let r = c.post(&note, false);
        if r.status == 503 {
            assert!(r.body.contains("busy"), "{r:?}");
            assert!(sent > 100, "refused after only {sent} messages");
            assert!(
                start.elapsed() >= Duration::from_secs(9),
                "no wait for room"
            );
            return;
        }
        assert_eq!(r.status, 202, "{r:?}");
    }
    panic!("1,000 messages of 64 KiB were all accepted by a child that reads nothing");
}
