//! Start-up failures, child death and shutdown: failures stay local, nothing is orphaned.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[test]
fn a_failing_server_does_not_take_down_the_others() {
    let bad_cmd = "/nonexistent/mcp-server";
    let early_exit = format!("{FIXTURE} --exit-at-start 7");
    let p = Proxy::start(&[
        "--port",
        "0",
        "--named-server",
        "good",
        FIXTURE,
        "--named-server",
        "missing",
        bad_cmd,
        "--named-server",
        "dies",
        &early_exit,
    ]);
    let url = p.url("/status");
    wait_until(DEADLINE, "both failures to be reported", || {
        let s = request("GET", &url, &[], "").json();
        s["server_instances"]["missing"] == "failed" && s["server_instances"]["dies"] == "failed"
    });
    let status = request("GET", &url, &[], "").json();
    assert_eq!(status["server_instances"]["good"], "running");
    assert!(
        status["servers"]["dies"]["last_error"]
            .as_str()
            .unwrap()
            .contains("exit code 7"),
        "{status}"
    );
    for name in ["missing", "dies"] {
        let r = post_json(
            &p.url(&format!("/servers/{name}/mcp")),
            &[],
            &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":initialize_params(json!({}))}),
        );
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.json()["error"]["message"].is_string());
        assert_eq!(
            request("GET", &p.url(&format!("/servers/{name}/sse")), &[], "").status,
            503
        );
    }
    let mut c = McpClient::connect(&p.url("/servers/good/mcp"), json!({}));
    assert_eq!(
        c.tool_text("echo", json!({"message": "still here"})),
        "still here"
    );
}

#[test]
fn a_child_that_never_initializes_is_not_waited_on_by_the_others() {
    let silent = format!("{FIXTURE} --no-initialize");
    let p = Proxy::start(&[
        "--port",
        "0",
        "--named-server",
        "silent",
        &silent,
        "--named-server",
        "ok",
        FIXTURE,
    ]);
    let mut c = McpClient::connect(&p.url("/servers/ok/mcp"), json!({}));
    assert_eq!(c.tool_text("echo", json!({"message": "x"})), "x");
    let status = request("GET", &p.url("/status"), &[], "").json();
    assert_eq!(status["server_instances"]["silent"], "starting");
}

#[test]
fn requests_in_flight_get_an_error_at_once_when_the_child_dies() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let c = McpClient::connect(&p.url("/mcp"), json!({}));
    let mut slow = c.open_stream(&json!({"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}}));
    wait_until(DEADLINE, "the call to be in flight", || {
        request("GET", &p.url("/status"), &[], "").json()["servers"]["default"]["in_flight"] == 1
    });
    let start = Instant::now();
    let r = c.post(&json!({"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"crash","arguments":{}}}), false);
    let v = slow.next_message();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(v["id"], "s");
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert_eq!(r.json()["error"]["code"], -32000);
    let status = request("GET", &p.url("/status"), &[], "").json();
    assert_eq!(status["server_instances"]["default"], "failed");
}

#[test]
fn non_json_child_output_is_skipped() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE, "--garbage-at-start"]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    assert_eq!(c.tool_text("garbage", json!({})), "garbage sent");
    assert_eq!(c.tool_text("echo", json!({"message": "ok"})), "ok");
    p.wait_for_log("not JSON-RPC");
}

#[test]
fn sigterm_stops_children_and_exits_0() {
    let marker = format!("sigterm-marker-{}", std::process::id());
    let named = format!("{FIXTURE} --stderr-at-start {marker}");
    let mut p = Proxy::start(&[
        "--port",
        "0",
        "--named-server",
        "a",
        &named,
        "--named-server",
        "b",
        &named,
    ]);
    let c = McpClient::connect(&p.url("/servers/a/mcp"), json!({}));
    let sid = c.session.clone().unwrap();
    let mut get = SseClient::get(&c.url, &[("Mcp-Session-Id", &sid)]);
    let _legacy = SseClient::get(&p.url("/servers/b/sse"), &[]);
    let children = |p: &Proxy| -> Vec<u32> {
        pids_running(&marker)
            .into_iter()
            .filter(|pid| *pid != p.pid())
            .collect()
    };
    assert_eq!(children(&p).len(), 2);
    p.signal(15);
    assert_eq!(p.wait_exit(DEADLINE), Some(0), "{}", p.stderr());
    assert!(get.next_event(DEADLINE).is_none(), "open stream ended");
    assert!(
        pids_running(&marker).is_empty(),
        "children left: {:?}",
        pids_running(&marker)
    );
}

#[test]
fn a_child_that_ignores_sigterm_is_killed() {
    // sh traps TERM and keeps running; the proxy must escalate to SIGKILL.
    let marker = format!("stubborn-{}", std::process::id());
    let script = format!(
        "trap '' TERM; exec 3<&0; echo {marker} >&2; while read -r line; do :; done; sleep 60 # {marker}"
    );
    let mut p = Proxy::start(&["--port", "0", "--", "sh", "-c", &script]);
    let proxy_pid = p.pid();
    wait_until(DEADLINE, "the child to run", || {
        pids_running(&marker).iter().any(|pid| *pid != proxy_pid)
    });
    p.signal(15);
    assert_eq!(p.wait_exit(DEADLINE), Some(0));
    assert!(pids_running(&marker).is_empty(), "children left");
}
