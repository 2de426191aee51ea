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
    // On a loaded machine "good" may still be starting when the failures are in.
    wait_until(DEADLINE, "good running, both failures reported", || {
        let s = p.status();
        s["server_instances"]["good"] == "running"
            && s["server_instances"]["missing"] == "failed"
            && s["server_instances"]["dies"] == "failed"
    });
    let status = p.status();
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
    let status = p.status();
    assert_eq!(status["server_instances"]["silent"], "starting");
}

#[test]
fn child_killed_mid_request_errors_within_a_second_and_is_restarted() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let mut slow = c.open_stream(&json!({"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}}));
    wait_until(DEADLINE, "the call to be in flight", || {
        p.status()["servers"]["default"]["in_flight"] == 1
    });
    let pid = p.status()["servers"]["default"]["pid"].as_u64().unwrap() as u32;
    let start = Instant::now();
    kill(pid, 9);
    let v = slow.next_message();
    let took = start.elapsed();
    eprintln!("in-flight request answered {took:?} after SIGKILL of the child");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(v["id"], "s");
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("SIGKILL"),
        "{v}"
    );

    // The same session goes on: the request waits for the restart, then succeeds.
    assert_eq!(c.tool_text("echo", json!({"message": "again"})), "again");
    let s = p.status();
    assert_eq!(s["server_instances"]["default"], "running");
    assert_eq!(s["servers"]["default"]["restarts"], 1);
    assert!(
        s["servers"]["default"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("signal 9")
    );
    assert_ne!(s["servers"]["default"]["pid"], pid);
}

#[test]
fn a_restarted_child_gets_its_subscriptions_back_and_sessions_hear_of_it() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let sid = c.session.clone().unwrap();
    let mut get = SseClient::get(&c.url, &[("Mcp-Session-Id", &sid)]);
    c.call("resources/subscribe", json!({"uri": "example://greeting"}));
    let crash = c.post(&json!({"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"crash","arguments":{}}}), false);
    assert_eq!(crash.json()["error"]["code"], -32000);
    // The fixture declares listChanged for tools, prompts and resources.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(get.next_message()["method"].as_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
            "notifications/tools/list_changed"
        ]
    );
    // The new child was re-subscribed: touching the resource reaches this session.
    assert_eq!(
        c.tool_text("touch", json!({"uri": "example://greeting"})),
        "touched"
    );
    let m = get.next_message();
    assert_eq!(m["method"], "notifications/resources/updated");
}

#[test]
fn a_crash_loop_backs_off() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE, "--exit-at-start", "3"]);
    wait_until(DEADLINE, "three failed starts", || {
        p.stderr().matches("exited before answering").count() >= 3
    });
    let log = p.stderr();
    let delays: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("restarting in ").nth(1))
        .filter_map(|rest| rest.split(" ms").next()?.parse().ok())
        .collect();
    assert!(
        delays.len() >= 2 && delays.windows(2).all(|w| w[1] == w[0] * 2),
        "{delays:?}\n{log}"
    );
    let r = request("GET", &p.url("/health"), &[], "");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["servers"]["default"], "failed");
    let s = p.status();
    assert!(
        s["servers"]["default"]["last_error"]
            .as_str()
            .unwrap()
            .contains("exit code 3"),
        "{s}"
    );
}

#[test]
fn health_is_200_when_every_server_runs() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    wait_until(DEADLINE, "/health to answer 200", || {
        request("GET", &p.url("/health"), &[], "").status == 200
    });
    let r = request("GET", &p.url("/health"), &[], "");
    assert_eq!(r.json()["status"], "ok");
}

#[test]
fn no_child_outlives_a_sigkilled_proxy() {
    let marker = format!("sigkill-marker-{}", std::process::id());
    let mut p = Proxy::start(&["--port", "0", "--", FIXTURE, "--stderr-at-start", &marker]);
    McpClient::connect(&p.url("/mcp"), json!({}));
    let proxy_pid = p.pid();
    let children: Vec<u32> = pids_running(&marker)
        .into_iter()
        .filter(|pid| *pid != proxy_pid)
        .collect();
    assert_eq!(children.len(), 1);
    // Only the proxy itself, not its group: the child must notice its parent died.
    kill(proxy_pid, 9);
    p.wait_exit(DEADLINE);
    wait_until(DEADLINE, "the child to die with the proxy", || {
        !process_alive(children[0])
    });
}

fn kill(pid: u32, signal: i32) {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
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
    // The stream ends (after its priming event, which a 2025-11-25 client gets first).
    get.rest(DEADLINE);
    assert!(
        pids_running(&marker).is_empty(),
        "children left: {:?}",
        pids_running(&marker)
    );
}

#[test]
fn a_childs_own_children_are_stopped_with_it() {
    // The child forks a helper that ignores SIGTERM, then becomes the fixture. Both carry the
    // marker in their command line; only a kill of the whole process group (escalating to
    // SIGKILL) reaches the helper, which no parent-death signal covers.
    let marker = format!("grandchild-{}", std::process::id());
    let script = format!(
        "(trap '' TERM; while :; do sleep 1; done) & exec {FIXTURE} --stderr-at-start {marker}"
    );
    let mut p = Proxy::start(&["--port", "0", "--", "sh", "-c", &script]);
    let proxy_pid = p.pid();
    wait_until(DEADLINE, "the child and its helper to run", || {
        pids_running(&marker)
            .iter()
            .filter(|pid| **pid != proxy_pid)
            .count()
            == 2
    });
    p.signal(15);
    assert_eq!(p.wait_exit(DEADLINE), Some(0), "{}", p.stderr());
    let start = Instant::now();
    while !pids_running(&marker).is_empty() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = pids_running(&marker);
    for pid in &left {
        kill(*pid, 9); // not to outlive a failed test
    }
    assert!(left.is_empty(), "left running: {left:?}");
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

#[test]
fn a_closed_stderr_does_not_stop_the_proxy() {
    use std::io::BufRead;
    // Whoever reads the proxy's stderr may go away (a supervisor, a desktop app's log pipe):
    // every log line then fails to write, and must not take its thread down.
    let mut proxy = ProcessGroup(
        Proxy::command(&["--debug", "--port", "0", "--", FIXTURE], &[])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = std::io::BufReader::new(proxy.0.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "the proxy ended before listening");
        if let Some(base) = listening_base(&line) {
            break base;
        }
    };
    drop(stderr);
    let url = format!("{base}/mcp");
    // Connection threads log each request (--debug); the child's stdout thread warns about
    // the line that is not JSON.
    let mut c = McpClient::connect(&url, json!({}));
    assert_eq!(c.tool_text("garbage", json!({})), "garbage sent");
    for i in 0..3 {
        let message = format!("m{i}");
        assert_eq!(c.tool_text("echo", json!({"message": message})), message);
    }
    let mut other = McpClient::connect(&url, json!({}));
    assert_eq!(other.tool_text("echo", json!({"message": "x"})), "x");
}
