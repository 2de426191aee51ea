//! Hostile and broken input: each gets a clear refusal, and the proxy keeps serving everyone
//! else. Also the faults of issue 5: clients that vanish, clients that stop reading.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use crate::support::fake_remote::{FakeRemote, FakeResponse};
use crate::support::stdio_client::StdioProxy;
use crate::support::*;

fn raw_post(p: &Proxy, session: &str, body: &[u8]) -> Response {
    // `request` takes text; bad UTF-8 needs the bytes themselves.
    let mut stream = raw_connect(p);
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
    let mut silent = raw_connect(&p);
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

// ---- malformed SSE from a remote (client mode) ----------------------------------------------------

/// The sending end of a [`FakeResponse::sse_bytes`] stream.
type ByteStream = Sender<Vec<u8>>;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// A `notifications/message` whose data is `tag`, as an SSE event ending with `end` (a line end).
fn note_event(tag: &str, end: &str) -> Vec<u8> {
    let note = json!({"jsonrpc":"2.0","method":"notifications/message",
        "params":{"level":"info","data":tag}});
    format!("data: {note}{end}{end}").into_bytes()
}

/// The reply a remote that sends malformed SSE gives to a `tools/call` of `tool` (`extra`
/// lines go before the data in the "mixed" case), and whether its stream ends after it.
fn malformed_reply(tool: &str, answer: &str, extra: &str) -> (Vec<u8>, bool) {
    let mut b = Vec::new();
    let ends = match tool {
        "mixed" => {
            b.extend(sse_garbage(tool));
            b.extend(format!("retry: soon\r\n{extra}data: {answer}\r\n\r\n").bytes());
            false
        }
        "bad-json" => {
            b.extend(format!("data: {}\n\n", garbled(answer)).bytes());
            false
        }
        "truncated" => {
            b.extend(note_event("before-truncation", "\n"));
            b.extend(format!("data: {}", &answer[..answer.len() / 2]).bytes());
            true
        }
        "huge" => {
            b.extend(huge_event());
            true
        }
        _ => {
            b.extend(format!("data: {answer}\n\n").bytes());
            false
        }
    };
    (b, ends)
}

/// Malformed SSE that must neither reach stdout nor end the stream: lines without a colon, an
/// unknown field, a non-numeric `retry`, `data` that is not JSON (or not UTF-8), a BOM that is
/// not at the start of the stream (so part of a field name), binary garbage, an event type
/// nobody knows. Then valid events with CR-only and mixed line ends, one split over data lines.
fn sse_garbage(tag: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b": a comment\na line without a colon\nunknown-field: value\n");
    b.extend_from_slice(b"retry: soon\n\n");
    b.extend_from_slice(b"data: {\"jsonrpc\":\"2.0\",\"method\":\n\n");
    b.extend_from_slice(BOM);
    b.extend_from_slice(b"data: {\"jsonrpc\":\"2.0\",\"method\":\"bom-field\"}\n\n");
    b.extend_from_slice(b"\xff\xfe\x00\x01\x80 binary garbage\n\x00\x1b[31m: \xc3\x28\n\n");
    b.extend_from_slice(b"data: \xff\xfe\xfd\n\n");
    b.extend_from_slice(b"event: unknown-type\n");
    b.extend(note_event("unknown-type", "\n"));
    b.extend(note_event(&format!("{tag}-cr"), "\r"));
    let note = json!({"jsonrpc":"2.0","method":"notifications/message",
        "params":{"level":"info","data":format!("{tag}-multiline")}})
    .to_string();
    let (head, tail) = note.split_at(note.len() / 2);
    b.extend(format!("event: message\rdata: {head}\r\ndata: {tail}\n\r\n").into_bytes());
    b
}

/// One event whose data line is larger than client mode's cap (`MAX_MESSAGE_BYTES`, 32 MiB).
fn huge_event() -> Vec<u8> {
    let mut b = b"data: \"".to_vec();
    b.resize(b.len() + 32 * 1024 * 1024 + 1024, b'x');
    b.extend_from_slice(b"\"\n\n");
    b
}

/// `text` cut in half: a JSON-RPC message that is not JSON.
fn garbled(text: &str) -> String {
    format!("{}oops", &text[..text.len() / 2])
}

fn answer(id: &Value, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}}).to_string()
}

/// What came out of the proxy's stdout besides the responses the test waited for.
#[derive(Default)]
struct Seen {
    /// The `data` of every `notifications/message`.
    notes: Vec<String>,
    /// The method of every other notification or request.
    others: Vec<String>,
}

impl Seen {
    /// Reads stdout up to the response to `id`, recording everything else.
    #[track_caller]
    fn response(&mut self, client: &StdioProxy, id: i64) -> Value {
        self.until(client, |v| v.get("method").is_none() && v["id"] == id)
    }

    #[track_caller]
    fn until(&mut self, client: &StdioProxy, mut done: impl FnMut(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "stdout went on without what we wait for"
            );
            let v = client.recv();
            match v["method"].as_str() {
                Some("notifications/message") => self
                    .notes
                    .push(v["params"]["data"].as_str().unwrap_or("").into()),
                Some(other) => self.others.push(other.into()),
                None => {}
            }
            if done(&v) {
                return v;
            }
        }
    }

    /// Waits for the note `tag` unless it came already.
    #[track_caller]
    fn note(&mut self, client: &StdioProxy, tag: &str) {
        if !self.notes.iter().any(|n| n == tag) {
            self.until(client, |v| v["params"]["data"] == tag);
        }
    }

    #[track_caller]
    fn assert_clean(&self, expected_notes: &[&str]) {
        for tag in expected_notes {
            assert!(
                self.notes.iter().any(|n| n == tag),
                "{tag} missing: {:?}",
                self.notes
            );
        }
        for bad in ["unknown-type", "before-endpoint"] {
            assert!(!self.notes.iter().any(|n| n == bad), "{bad} delivered");
        }
        assert!(
            self.others.is_empty(),
            "unexpected messages: {:?}",
            self.others
        );
    }
}

fn call(client: &mut StdioProxy, id: i64, tool: &str) {
    client.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":{}}}));
}

#[track_caller]
fn assert_text(v: &Value, text: &str) {
    assert_eq!(v["result"]["content"][0]["text"], text, "{v}");
}

#[track_caller]
fn assert_error(v: &Value, says: &str) {
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {v}"));
    assert!(message.contains(says), "{v}");
}

#[track_caller]
fn assert_logged_clearly(client: &StdioProxy) {
    let log = client.stderr();
    for needle in [
        "dropped an invalid message from the remote",
        "SSE event larger than",
    ] {
        assert!(log.contains(needle), "no {needle:?} in stderr:\n{log}");
    }
    assert!(!log.contains("panicked"), "stderr:\n{log}");
}

#[test]
fn malformed_sse_from_a_streamable_http_remote_is_skipped_and_lost_answers_become_errors() {
    // Each `tools/call` is answered on an SSE stream shaped by the tool's name; the first GET
    // stream sends garbage, a note, then an event too large (the proxy drops it and reconnects).
    let gets: Arc<Mutex<Vec<ByteStream>>> = Arc::default();
    let fake = FakeRemote::start(move |req| {
        match req.method.as_str() {
            "DELETE" => return FakeResponse::empty(200),
            "GET" => {
                let (response, tx) = FakeResponse::sse_bytes();
                let mut gets = gets.lock().unwrap();
                let n = gets.len() + 1;
                let mut b = BOM.to_vec();
                b.extend(sse_garbage(&format!("get-{n}")));
                b.extend(note_event(&format!("get-{n}"), "\n"));
                tx.send(b).unwrap();
                if n == 1 {
                    tx.send(huge_event()).unwrap();
                }
                // Kept open (the sender is kept) until the proxy goes.
                gets.push(tx);
                return response;
            }
            _ => {}
        }
        let m = req.json();
        let id = &m["id"];
        match m["method"].as_str() {
            Some("initialize") => FakeResponse::json(
                200,
                &json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-06-18",
                    "capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}}),
            )
            .with_header("Mcp-Session-Id", "s1"),
            Some("tools/call") => {
                let tool = m["params"]["name"].as_str().unwrap_or("");
                let answer = answer(id, tool);
                let mut b = BOM.to_vec();
                // The stream ends after this reply, whatever it is.
                b.extend(malformed_reply(tool, &answer, "id: 9\r\n").0);
                let (response, tx) = FakeResponse::sse_bytes();
                // Dropping the sender ends the stream once this is written.
                tx.send(b).unwrap();
                response
            }
            _ => FakeResponse::empty(202),
        }
    });
    let mut client = StdioProxy::start(&[
        "--transport",
        "streamablehttp",
        "--protocol-era",
        "session",
        &fake.url("/mcp"),
    ]);
    client.initialize();
    let mut seen = Seen::default();
    call(&mut client, 1, "mixed");
    assert_text(&seen.response(&client, 1), "mixed");
    // A reply stream that ends without the response (garbled, cut mid-event, or dropped for a
    // huge event): the request is answered with an error, and the next one goes through.
    for (id, tool) in [(2, "bad-json"), (3, "truncated"), (4, "huge")] {
        call(&mut client, id, tool);
        assert_error(
            &seen.response(&client, id),
            "connection to the remote server was lost",
        );
        call(&mut client, id + 10, "echo");
        assert_text(&seen.response(&client, id + 10), "echo");
    }
    // The GET stream came back after its huge event.
    seen.note(&client, "get-2");
    seen.assert_clean(&[
        "mixed-cr",
        "mixed-multiline",
        "before-truncation",
        "get-1-cr",
        "get-1-multiline",
        "get-1",
        "get-2",
    ]);
    assert_logged_clearly(&client);
    assert!(
        client.stderr().contains("GET stream dropped"),
        "{}",
        client.stderr()
    );
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

#[test]
fn malformed_sse_from_a_legacy_sse_remote_is_skipped_and_lost_answers_become_errors() {
    // The stream of connection N announces `/messages?c=N` (with CR-only line ends, after
    // garbage); answers go on the stream the POST's endpoint belongs to, shaped by the tool.
    // Connection N's stream at N - 1; `None` once the fake ended it.
    let streams: Arc<Mutex<Vec<Option<ByteStream>>>> = Arc::default();
    let fake = FakeRemote::start(move |req| {
        let mut streams = streams.lock().unwrap();
        if req.method == "GET" && req.path == "/sse" {
            let (response, tx) = FakeResponse::sse_bytes();
            let n = streams.len() + 1;
            let mut b = BOM.to_vec();
            b.extend(sse_garbage("ignored"));
            // Messages before the endpoint event belong to no session: dropped.
            b.extend(note_event("before-endpoint", "\n"));
            b.extend(format!("event: endpoint\rdata: /messages?c={n}\r\r").bytes());
            tx.send(b).unwrap();
            streams.push(Some(tx));
            return response;
        }
        let Some(n) = req
            .path
            .strip_prefix("/messages?c=")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return FakeResponse::empty(404);
        };
        let m = req.json();
        let id = &m["id"];
        let mut bytes = Vec::new();
        let mut end_stream = false;
        match m["method"].as_str() {
            Some("initialize") => {
                let result = json!({"jsonrpc":"2.0","id":id,"result":{
                    "protocolVersion":"2024-11-05","capabilities":{"tools":{}},
                    "serverInfo":{"name":"fake","version":"1"}}});
                bytes.extend(format!("data: {result}\n\n").bytes());
            }
            Some("tools/call") => {
                let tool = m["params"]["name"].as_str().unwrap_or("");
                let answer = answer(id, tool);
                let (reply, ends) = malformed_reply(tool, &answer, "");
                bytes = reply;
                end_stream = ends;
            }
            _ => {}
        }
        if let Some(slot) = streams.get_mut(n - 1) {
            if let Some(tx) = slot
                && !bytes.is_empty()
            {
                tx.send(bytes).unwrap();
            }
            if end_stream {
                // The stream ends once what was sent is written.
                slot.take();
            }
        }
        FakeResponse::empty(202)
    });
    let mut client = StdioProxy::start(&["--transport", "sse", &fake.url("/sse")]);
    client.initialize();
    let mut seen = Seen::default();
    call(&mut client, 1, "mixed");
    assert_text(&seen.response(&client, 1), "mixed");
    // A garbled answer cannot be matched to its request: it waits, and the others go on.
    call(&mut client, 2, "bad-json");
    call(&mut client, 3, "echo");
    assert_text(&seen.response(&client, 3), "echo");
    // The stream cut mid-event: every request sent on it (2 and 4) is answered with an error
    // once the proxy is back on a new stream (and a new session, re-initialized).
    call(&mut client, 4, "truncated");
    let mut lost = vec![2, 4];
    while !lost.is_empty() {
        let v = seen.until(&client, |v| v.get("method").is_none());
        let id = v["id"].as_i64().unwrap_or_else(|| panic!("unexpected {v}"));
        assert!(lost.contains(&id), "unexpected {v}");
        assert_error(&v, "connection to the remote server was lost");
        lost.retain(|&l| l != id);
    }
    call(&mut client, 5, "huge");
    assert_error(
        &seen.response(&client, 5),
        "connection to the remote server was lost",
    );
    call(&mut client, 6, "echo");
    assert_text(&seen.response(&client, 6), "echo");
    seen.assert_clean(&["mixed-cr", "mixed-multiline", "before-truncation"]);
    assert_logged_clearly(&client);
    // A request whose answer was garbled on a stream that stays up is answered when the proxy
    // ends: no request is left without an answer.
    call(&mut client, 7, "bad-json");
    call(&mut client, 8, "echo");
    assert_text(&seen.response(&client, 8), "echo");
    client.close_stdin();
    assert_error(&seen.response(&client, 7), "shutting down");
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_the_listener() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    wait_until(DEADLINE, "the child to be running", || {
        request("GET", &p.url("/health"), &[], "").status == 200
    });
    // Soft and hard limit of 40 open files; about 10 are open already.
    let limit = libc::rlimit {
        rlim_cur: 40,
        rlim_max: 40,
    };
    // SAFETY: prlimit on another process of ours, with a valid struct and no old-limit out.
    let set = unsafe {
        libc::prlimit(
            p.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let addr = p.base.trim_start_matches("http://").to_string();
    // Each accepted connection costs two descriptors: these run the proxy out of them.
    let idle: Vec<_> = (0..40)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(idle);
    wait_until(DEADLINE, "the proxy to serve again", || {
        std::net::TcpStream::connect(&addr).is_ok()
            && request("GET", &p.url("/health"), &[], "").status == 200
    });
    p.wait_for_log("Too many open files");
}
