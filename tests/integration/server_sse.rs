//! Server mode over the legacy HTTP+SSE transport (`/sse` + `/messages/`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// An open legacy SSE session: the stream and the endpoint to POST to.
struct Legacy {
    stream: SseClient,
    endpoint: String,
}

impl Legacy {
    fn open(base: &str, path: &str) -> Legacy {
        let mut stream = SseClient::get(&format!("{base}{path}"), &[]);
        assert_eq!(stream.status, 200);
        assert!(stream.headers["content-type"].starts_with("text/event-stream"));
        let first = stream.next_event(DEADLINE).expect("endpoint event");
        assert_eq!(first.event.as_deref(), Some("endpoint"));
        Legacy {
            stream,
            endpoint: format!("{base}{}", first.data),
        }
    }

    fn post(&self, message: &Value) -> Response {
        request(
            "POST",
            &self.endpoint,
            &[("Content-Type", "application/json")],
            &message.to_string(),
        )
    }

    fn initialize(&mut self, capabilities: Value) {
        let r = self.post(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":initialize_params(capabilities)}));
        assert_eq!(r.status, 202, "{r:?}");
        assert_eq!(r.body, "Accepted");
        let v = self.stream.next_message();
        assert_eq!(v["id"], 0);
        assert_eq!(v["result"]["serverInfo"]["name"], "mcp-example-server");
        self.post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    }
}

#[test]
fn endpoint_event_then_replies_on_the_stream() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let mut s = Legacy::open(&p.base, "/sse");
    let (path, query) = s.endpoint[p.base.len()..].split_once('?').unwrap();
    assert_eq!(path, "/messages/");
    let id = query.strip_prefix("session_id=").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    s.initialize(json!({}));
    s.post(&json!({"jsonrpc":"2.0","id":"e","method":"tools/call","params":{"name":"echo","arguments":{"message":"over sse"}}}));
    let v = s.stream.next_message();
    assert_eq!(v["id"], "e");
    assert_eq!(v["result"]["content"][0]["text"], "over sse");
}

#[test]
fn progress_logs_and_sampling_over_sse() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let mut s = Legacy::open(&p.base, "/sse");
    s.initialize(json!({"sampling": {}}));
    s.post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"pt"}}}));
    for step in 1..=2 {
        let m = s.stream.next_message();
        assert_eq!(m["method"], "notifications/progress");
        assert_eq!(m["params"]["progressToken"], "pt");
        assert_eq!(m["params"]["progress"], step);
    }
    assert_eq!(s.stream.next_message()["id"], 1);

    s.post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"log","arguments":{"message":"hello log"}}}));
    let log = s.stream.next_message();
    assert_eq!(log["method"], "notifications/message");
    assert_eq!(log["params"]["data"], "hello log");
    assert_eq!(s.stream.next_message()["id"], 2);

    s.post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sample","arguments":{"prompt":"q"}}}));
    let req = s.stream.next_message();
    assert_eq!(req["method"], "sampling/createMessage");
    let r = s.post(&json!({"jsonrpc":"2.0","id":req["id"],"result":{"role":"assistant","content":{"type":"text","text":"a"},"model":"m"}}));
    assert_eq!(r.status, 202);
    assert_eq!(
        s.stream.next_message()["result"]["content"][0]["text"],
        "sampled: a"
    );
}

#[test]
fn messages_endpoint_errors() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let s = Legacy::open(&p.base, "/sse");
    let post =
        |url: &str, body: &str| request("POST", url, &[("Content-Type", "application/json")], body);
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string();

    let r = post(&p.url("/messages/"), &ping);
    assert_eq!((r.status, r.body.as_str()), (400, "session_id is required"));
    let r = post(&p.url("/messages/?session_id=xyz"), &ping);
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid session ID"));
    let r = post(
        &p.url("/messages/?session_id=0123456789abcdef0123456789abcdef"),
        &ping,
    );
    assert_eq!((r.status, r.body.as_str()), (404, "Could not find session"));
    let r = post(&s.endpoint, "{garbage");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Could not parse message")
    );
    assert_eq!(request("GET", &s.endpoint, &[], "").status, 405);
    assert_eq!(post(&p.url("/sse"), &ping).status, 405);
    assert_eq!(request("GET", &p.url("/sse/"), &[], "").status, 404);
    assert_eq!(post(&p.url("/messages"), &ping).status, 404);
}

#[test]
fn closing_the_stream_ends_the_session() {
    // A vanished client is noticed when a keep-alive write fails.
    let p = Proxy::start(&["--sse-keepalive", "1", "--port", "0", "--", FIXTURE]);
    let s = Legacy::open(&p.base, "/sse");
    let endpoint = s.endpoint.clone();
    let status = p.status();
    assert_eq!(status["active_sse_connections"], 1);
    s.stream.close();
    wait_until(DEADLINE, "the session to end", || {
        request(
            "POST",
            &endpoint,
            &[("Content-Type", "application/json")],
            "{}",
        )
        .status
            == 404
    });
    let status = p.status();
    assert_eq!(status["active_sse_connections"], 0);
}

/// The request line and head of a legacy stream, for a raw socket.
const LEGACY_GET: &[u8] =
    b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";

#[test]
fn an_idle_stream_gets_a_ping_comment_at_each_keepalive() {
    use std::io::Write;
    let p = Proxy::start(&["--sse-keepalive", "0.2", "--port", "0", "--", FIXTURE]);
    let mut socket = raw_connect(&p);
    socket.write_all(LEGACY_GET).unwrap();
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, ": ping\n\n");
    let first = seen.find(": ping").unwrap();
    assert!(seen[..first].contains("/messages/?session_id="), "{seen}");
    // And again: the keep-alive repeats while nothing else is sent.
    let mut rest = seen.split_off(first + ": ping".len());
    read_until(&mut socket, &mut rest, ": ping\n\n");
}

#[test]
fn first_event_arrives_at_once() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    // Warm up: the child is initialized.
    Legacy::open(&p.base, "/sse");
    let start = Instant::now();
    let _s = Legacy::open(&p.base, "/sse");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "endpoint event took {took:?}"
    );
}

/// Regression: tiny_http's connection pool queued a burst of connections behind workers that
/// then stayed in long-lived SSE handlers, so later requests were never served
/// (vendor/tiny_http/PATCHED.md).
#[test]
fn a_burst_of_streams_does_not_starve_other_requests() {
    use std::io::{Read, Write};
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    wait_until(DEADLINE, "the server to run", || {
        request("GET", &p.url("/health"), &[], "").status == 200
    });
    for round in 0..5 {
        // Streams opened as fast as a client can write them, then plain requests behind them.
        let streams: Vec<std::net::TcpStream> = (0..4)
            .map(|_| {
                let mut s = raw_connect(&p);
                s.write_all(LEGACY_GET).unwrap();
                s
            })
            .collect();
        let plain: Vec<std::net::TcpStream> = (0..3)
            .map(|_| {
                let mut s = raw_connect(&p);
                s.write_all(
                    b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                s
            })
            .collect();
        for mut s in plain {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = [0u8; 12];
            let read = s.read_exact(&mut head);
            assert!(
                read.is_ok(),
                "round {round}: /status not answered within 5 s: {read:?}"
            );
            assert_eq!(&head, b"HTTP/1.1 200");
        }
        for mut s in streams {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = [0u8; 12];
            let read = s.read_exact(&mut head);
            assert!(
                read.is_ok(),
                "round {round}: /sse not answered within 5 s: {read:?}"
            );
        }
    }
}

#[cfg(target_os = "linux")] // the hang-up watch is epoll's
#[test]
fn a_client_that_hangs_up_is_noticed_long_before_the_keepalive() {
    // Keep-alive every 60 s: only the hang-up watch can end the session within the deadline.
    let p = Proxy::start(&["--sse-keepalive", "60", "--port", "0", "--", FIXTURE]);
    let s = Legacy::open(&p.base, "/sse");
    let started = Instant::now();
    s.stream.close();
    wait_until(Duration::from_secs(10), "the stream to end", || {
        p.status()["active_sse_connections"] == 0
    });
    eprintln!("hang-up noticed after {:?}", started.elapsed());
}

#[test]
fn a_client_that_only_half_closes_still_gets_its_events() {
    use std::io::Write;
    let p = Proxy::start(&["--sse-keepalive", "60", "--port", "0", "--", FIXTURE]);
    let mut socket = raw_connect(&p);
    socket.write_all(LEGACY_GET).unwrap();
    // Done sending: the FIN must not end a stream the client still reads.
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "/messages/?session_id=");
    read_until(&mut socket, &mut seen, "\n\n");
    let path = seen
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_string();
    // Past the 100 ms after which the stream is watched, and its probe has gone out.
    std::thread::sleep(Duration::from_millis(500));
    let ping = json!({"jsonrpc":"2.0","id":"after-fin","method":"ping"});
    let posted = request(
        "POST",
        &p.url(&path),
        &[("Content-Type", "application/json")],
        &ping.to_string(),
    );
    assert_eq!(posted.status, 202);
    read_until(&mut socket, &mut seen, "after-fin");
}

#[test]
fn replies_to_a_client_that_reads_late_arrive_whole_and_in_order() {
    // Replies are written to the stream by the child's stdout thread when the socket takes
    // them at once. A client that does not read fills the socket: a reply goes out in part,
    // the stream's thread sends the rest, and later messages queue behind it. (The fixture
    // runs calls on threads of their own: replies to different calls come in any order.)
    let p = Proxy::start(&["--debug", "--port", "0", "--", FIXTURE]);
    let mut s = Legacy::open(&p.base, "/sse");
    s.initialize(json!({}));
    let mut expected = std::collections::HashMap::new();
    let sizes = [3_000_000, 1_000_000, 4_000_000, 700_000, 10, 2_000_000];
    for (id, bytes) in sizes.into_iter().enumerate() {
        s.post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"large","arguments":{"bytes":bytes}}}));
        expected.insert(id as u64, bytes);
    }
    // Calls whose progress notifications (queued) come before their replies (direct).
    for id in 100..120 {
        s.post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":id}}}));
    }
    p.wait_for_log("the stream's thread sends the rest");
    let mut progress_seen = std::collections::HashMap::<u64, u64>::new();
    let mut replies = 0;
    while replies < sizes.len() + 20 {
        let v = s.stream.next_message();
        if v["method"] == "notifications/progress" {
            let token = v["params"]["progressToken"].as_u64().unwrap();
            let seen = progress_seen.entry(token).or_default();
            *seen += 1;
            assert_eq!(v["params"]["progress"], *seen, "{v}");
            continue;
        }
        replies += 1;
        let id = v["id"].as_u64().unwrap();
        if id >= 100 {
            assert_eq!(
                progress_seen.get(&id),
                Some(&3),
                "progress before reply {id}"
            );
            continue;
        }
        let bytes = expected.remove(&id).expect("one reply per call");
        let text = v["result"]["content"][0]["text"].as_str().unwrap();
        assert_eq!(text.len(), bytes);
        assert!(
            text.as_bytes()
                .chunks(10)
                .all(|ch| ch == &b"0123456789"[..ch.len()])
        );
    }
    assert!(expected.is_empty());
}
