//! Hostile and broken input: each gets a clear refusal, and the proxy keeps serving everyone
//! else. Also the faults of issue 5: clients that vanish, clients that stop reading.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn raw_post(p: &Proxy, session: &str, body: &[u8]) -> Response {
    // `request` takes text; bad UTF-8 needs the bytes themselves.
    let mut stream = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\nMcp-Session-Id: {session}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut text).unwrap();
    let text = String::from_utf8_lossy(&text).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Response {
        status,
        headers: Default::default(),
        body,
    }
}

#[test]
fn broken_messages_get_clear_errors_and_the_session_goes_on() {
    let p = Proxy::start(&[
        "--max-message-size",
        "1000000",
        "--port",
        "0",
        "--",
        FIXTURE,
    ]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let sid = c.session.clone().unwrap();
    let deep = "[".repeat(100_000);
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":"{}"}}"#,
        "a".repeat(2_000_000)
    );
    let cases: Vec<(&[u8], u16, Option<i64>, &str)> = vec![
        (b"\xff\xfe{\"jsonrpc\"", 400, Some(-32700), "invalid UTF-8"),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"meth",
            400,
            Some(-32700),
            "truncated JSON",
        ),
        (deep.as_bytes(), 400, Some(-32600), "deep nesting"),
        (b"42", 400, Some(-32600), "a number"),
        (b"\"a string\"", 400, Some(-32600), "a string"),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"tools/list\"}",
            400,
            Some(-32600),
            "id null",
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":{\"an\":\"object\"},\"method\":\"tools/list\"}",
            400,
            Some(-32600),
            "object id",
        ),
        (
            b"\x00\x01\x02\x03binary",
            400,
            Some(-32700),
            "binary garbage",
        ),
        (huge.as_bytes(), 413, None, "a huge body"),
    ];
    for (body, status, code, what) in cases {
        let r = raw_post(&p, &sid, body);
        assert_eq!(r.status, status, "{what}: {r:?}");
        if let Some(code) = code {
            let v: serde_json::Value =
                serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {r:?}"));
            assert_eq!(v["error"]["code"], code, "{what}: {v}");
        }
        assert_eq!(
            c.tool_text("echo", json!({"message": what})),
            what,
            "served after {what}"
        );
    }
}

#[test]
fn binary_garbage_from_the_child_is_skipped() {
    let script = format!("printf '\\377\\376\\000garbage\\n'; exec {FIXTURE}");
    let p = Proxy::start(&["--port", "0", "--", "sh", "-c", &script]);
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    assert_eq!(c.tool_text("echo", json!({"message": "fine"})), "fine");
    p.wait_for_log("not UTF-8");
}

/// Threads and open files of a process.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (
        count(format!("/proc/{pid}/task")),
        count(format!("/proc/{pid}/fd")),
    )
}

#[test]
fn clients_vanishing_mid_stream_leak_no_thread_or_fd() {
    let p = Proxy::start(&["--sse-keepalive", "0.2", "--port", "0", "--", FIXTURE]);
    let mut warm = McpClient::connect(&p.url("/mcp"), json!({}));
    warm.tool_text("echo", json!({"message": "warm"}));
    let pid = p.pid();
    wait_until(DEADLINE, "the proxy to settle", || {
        std::thread::sleep(Duration::from_millis(300));
        let a = threads_and_fds(pid);
        std::thread::sleep(Duration::from_millis(300));
        a == threads_and_fds(pid)
    });
    let before = threads_and_fds(pid);
    for round in 0..3 {
        let mut open = Vec::new();
        for _ in 0..10 {
            // A legacy stream, a GET stream, and a POST stream in the middle of a slow call.
            open.push(SseClient::get(&p.url("/sse"), &[]));
            let c = McpClient::connect(&p.url("/mcp"), json!({}));
            let sid = c.session.clone().unwrap();
            open.push(SseClient::get(&c.url, &[("Mcp-Session-Id", &sid)]));
            open.push(c.open_stream(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":60000}}})));
        }
        for s in open {
            s.close();
        }
        // Each connection's thread ends when its next write fails (keep-alive every 0.2 s);
        // tiny_http keeps a few idle workers and lets extras go after 5 s idle.
        wait_until(
            Duration::from_secs(30),
            "threads and fds to come back down",
            || {
                let (threads, fds) = threads_and_fds(pid);
                threads <= before.0 + 4 && fds <= before.1 + 4
            },
        );
        eprintln!(
            "round {round}: before {before:?}, after {:?}",
            threads_and_fds(pid)
        );
    }
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_memory_stays_bounded() {
    let p = Proxy::start(&["--http-timeout", "2", "--port", "0", "--", FIXTURE]);
    // A legacy SSE client that never reads its stream.
    let mut silent = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    silent
        .write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    // Another client makes the child flood every session with large log lines: far more than
    // the socket buffers and the stream's queue (8 MiB) can hold.
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    let start = Instant::now();
    let line = "x".repeat(64 * 1024);
    for _ in 0..600 {
        if p.stderr().contains("too slowly") {
            break;
        }
        c.tool_text("log", json!({"message": line}));
    }
    p.wait_for_log("too slowly");
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", p.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "peak RSS {rss_kib} KiB flooding a client that never reads ({:?})",
        start.elapsed()
    );
    assert!(rss_kib < 100 * 1024, "peak RSS {rss_kib} KiB");
    assert_eq!(c.tool_text("echo", json!({"message": "still"})), "still");
    drop(silent);
}
