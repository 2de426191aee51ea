//! Client mode: stdio to a remote server (issue 3). The remote is our own server mode in front
//! of the example server (real MCP over real HTTP), or a scripted fake when a test must control
//! statuses, sessions, credentials or TLS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::fake_remote::{FakeRemote, FakeResponse, McpState, TLS_DIR, mcp_script};
use crate::support::stdio_client::StdioProxy;
use crate::support::{DEADLINE, FIXTURE, Proxy, free_port, wait_until};

/// A start-up failure must be reported within this (the issue's bound).
const STARTUP_FAILURE_BOUND: Duration = Duration::from_secs(15);

fn remote() -> Proxy {
    Proxy::start(&["--port", "0", "--", FIXTURE])
}

fn structured(v: &Value) -> &Value {
    &v["result"]["structuredContent"]
}

// ---- transports against a real remote ---------------------------------------------------------

#[test]
fn streamable_http_round_trip_then_exit_0_on_stdin_eof() {
    let server = remote();
    let mut client = StdioProxy::start(&["--transport", "streamablehttp", &server.url("/mcp")]);
    let init = client.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-example-server");
    assert_eq!(client.echo(1, "hello"), "hello");
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

#[test]
fn legacy_sse_round_trip() {
    let server = remote();
    let mut client = StdioProxy::start(&["--transport", "sse", &server.url("/sse")]);
    client.initialize();
    assert_eq!(client.echo(1, "over sse"), "over sse");
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

#[test]
fn auto_uses_streamable_http_or_falls_back_to_legacy_sse() {
    let server = remote();
    for path in ["/mcp", "/sse"] {
        let mut client = StdioProxy::start(&["--debug", &server.url(path)]);
        client.initialize();
        assert_eq!(client.echo(1, path), path);
        let expected = if path == "/sse" {
            "trying legacy SSE"
        } else {
            "remote speaks Streamable HTTP"
        };
        wait_until(DEADLINE, expected, || client.stderr().contains(expected));
    }
}

#[test]
fn sampling_request_from_the_remote_is_answered_on_stdin() {
    let server = remote();
    for path in ["/mcp", "/sse"] {
        let mut client = StdioProxy::start(&[&server.url(path)]);
        client.initialize();
        client.send(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
            "params":{"name":"sample","arguments":{"prompt":"2+2?"}}}));
        let ask = loop {
            let v = client.recv();
            if v["method"] == "sampling/createMessage" {
                break v;
            }
            assert!(v["id"] != json!(7), "tool answered before sampling: {v}");
        };
        assert_eq!(ask["params"]["messages"][0]["content"]["text"], "2+2?");
        client.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{
            "role":"assistant","content":{"type":"text","text":"four"},"model":"test"}}));
        let v = client.response(&json!(7));
        assert_eq!(v["result"]["content"][0]["text"], "sampled: four", "{path}");
    }
}

#[test]
fn one_megabyte_messages_both_ways() {
    let server = remote();
    for path in ["/mcp", "/sse"] {
        let mut client = StdioProxy::start(&[&server.url(path)]);
        client.initialize();
        let big = "x".repeat(1_000_000);
        assert_eq!(client.echo(1, &big).len(), 1_000_000, "{path}: echo");
        let v = client.call_tool(2, "large", json!({"bytes": 1_000_000}));
        let text = v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(text.len(), 1_000_000, "{path}: large");
    }
}

#[test]
fn remote_restart_mid_session_is_transparent() {
    for path in ["/mcp", "/sse"] {
        let port = free_port().to_string();
        let server = Proxy::start(&["--port", &port, "--", FIXTURE]);
        let url = server.url(path);
        let mut client = StdioProxy::start(&["--debug", &url]);
        client.initialize();
        assert_eq!(client.echo(1, "before"), "before");
        drop(server);
        let _restarted = Proxy::start(&["--port", &port, "--", FIXTURE]);
        // Calls after the restart succeed, however the outage was noticed.
        for id in 2..5 {
            assert_eq!(client.echo(id, "after"), "after", "{path}");
        }
        // The replayed initialize's reply was not shown: only our calls came back.
        assert!(client.no_output_for(Duration::from_millis(200)).is_none());
        assert!(client.stderr().contains("re-initialized"), "{path}");
    }
}

// ---- sessions ---------------------------------------------------------------------------------

#[test]
fn session_404_replays_initialize_hidden_and_retries_the_request() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = FakeRemote::start(mcp_script(state.clone()));
    let mut client = StdioProxy::start(&[
        "--debug",
        "--transport",
        "streamablehttp",
        &fake.url("/mcp"),
    ]);
    client.initialize();
    let v = client.call_tool(1, "x", json!({}));
    assert_eq!(structured(&v)["session"], "s1");
    assert_eq!(structured(&v)["protocolVersion"], "2025-06-18");
    let posted = |method: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.json()["method"] == method)
            .count()
    };
    wait_until(DEADLINE, "notifications/initialized posted", || {
        posted("notifications/initialized") == 1
    });
    state.lock().unwrap().live_sessions.clear();
    let v = client.call_tool(2, "x", json!({}));
    assert_eq!(structured(&v)["session"], "s2", "{v}");
    assert!(
        client.no_output_for(Duration::from_millis(200)).is_none(),
        "hidden replies leaked"
    );
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
    // The request that met the 404 went out twice, around one replayed initialize/initialized.
    assert_eq!(posted("initialize"), 2);
    assert_eq!(posted("notifications/initialized"), 2);
    assert_eq!(posted("tools/call"), 3);
    let requests = fake.requests();
    let delete = requests
        .iter()
        .find(|r| r.method == "DELETE")
        .expect("DELETE at exit");
    assert_eq!(delete.header("mcp-session-id"), Some("s2"));
}

// ---- credentials ------------------------------------------------------------------------------

#[test]
fn headers_and_api_access_token_reach_every_request() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = FakeRemote::start(mcp_script(state));
    let mut client = StdioProxy::start_with(
        &["-H", "X-Tenant", "acme", &fake.url("/mcp")],
        &[("API_ACCESS_TOKEN", "tok-123")],
    );
    client.initialize();
    client.call_tool(1, "x", json!({}));
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
    let requests = fake.requests();
    assert!(requests.len() >= 3);
    for r in requests {
        assert_eq!(
            r.header("x-tenant"),
            Some("acme"),
            "{} {}",
            r.method,
            r.body
        );
        assert_eq!(r.header("authorization"), Some("Bearer tok-123"));
    }
}

#[test]
fn basic_auth_and_a_rejected_password() {
    let state = Arc::new(Mutex::new(McpState {
        // base64("user:pa ss")
        required_authorization: Some("Basic dXNlcjpwYSBzcw==".into()),
        ..McpState::default()
    }));
    let fake = FakeRemote::start(mcp_script(state));
    let mut client = StdioProxy::start(&[
        "--username",
        "user",
        "--password",
        "pa ss",
        &fake.url("/mcp"),
    ]);
    client.initialize();
    assert_eq!(
        structured(&client.call_tool(1, "x", json!({})))["authorization"],
        "Basic dXNlcjpwYSBzcw=="
    );
    drop(client);

    let started = Instant::now();
    let mut client = StdioProxy::start(&[
        "--username",
        "user",
        "--password",
        "wrong",
        &fake.url("/mcp"),
    ]);
    client.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}));
    let v = client.response(&json!(0));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("401"),
        "{v}"
    );
    assert_eq!(client.wait_exit(STARTUP_FAILURE_BOUND), Some(1));
    assert!(started.elapsed() < STARTUP_FAILURE_BOUND);
    assert!(
        client
            .stderr()
            .contains("rejected our credentials (HTTP 401)"),
        "{}",
        client.stderr()
    );
}

/// Token endpoint of the OAuth tests: tokens `AT1`, `AT2`, … living `lifetime` seconds.
fn token_endpoint(
    issued: Arc<Mutex<Vec<Value>>>,
    lifetime: u64,
) -> impl Fn(&crate::support::fake_remote::FakeRequest) -> FakeResponse + Send + Sync {
    move |req| {
        let mut issued = issued.lock().unwrap();
        issued.push(json!({"authorization": req.header("authorization"), "body": req.body}));
        if req.header("authorization") != Some("Basic Y2lkOmNzZWM=") {
            return FakeResponse::json(401, &json!({"error":"invalid_client"}));
        }
        let token = format!("AT{}", issued.len());
        FakeResponse::json(
            200,
            &json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime}),
        )
    }
}

#[test]
fn oauth_client_credentials_cached_renewed_and_retried_after_401() {
    let issued = Arc::new(Mutex::new(Vec::new()));
    // expires_in 31 s: renewed 30 s early, so after one second.
    let token_server = FakeRemote::start(token_endpoint(issued.clone(), 31));
    let state = Arc::new(Mutex::new(McpState {
        required_authorization: Some("Bearer AT1".into()),
        ..McpState::default()
    }));
    let fake = FakeRemote::start(mcp_script(state.clone()));
    let mut client = StdioProxy::start(&[
        "--debug",
        "--client-id",
        "cid",
        "--client-secret",
        "csec",
        "--token-url",
        &token_server.url("/token"),
        &fake.url("/mcp"),
    ]);
    client.initialize();
    assert_eq!(
        structured(&client.call_tool(1, "x", json!({})))["authorization"],
        "Bearer AT1"
    );
    // The GET stream attempt (405 here) also carries the token; let it happen before the
    // required token changes.
    wait_until(DEADLINE, "the GET stream attempt", || {
        fake.requests().iter().any(|r| r.method == "GET")
    });
    assert_eq!(issued.lock().unwrap().len(), 1, "the token is cached");
    let first = issued.lock().unwrap()[0].clone();
    assert_eq!(first["authorization"], "Basic Y2lkOmNzZWM=");
    let body = first["body"].as_str().unwrap();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(
        body.contains(&format!(
            "resource=http%3A%2F%2F127.0.0.1%3A{}%2Fmcp",
            fake.port
        )),
        "{body}"
    );

    // Renewal before expiry: the token's renewal time is one second away.
    state.lock().unwrap().required_authorization = Some("Bearer AT2".into());
    std::thread::sleep(Duration::from_millis(1200)); // lets the token age; not synchronisation
    let v = client.call_tool(2, "x", json!({}));
    assert_eq!(structured(&v)["authorization"], "Bearer AT2", "{v}");

    // Revoked early: the 401 brings a new token and the request is sent again, once.
    state.lock().unwrap().required_authorization = Some("Bearer AT3".into());
    assert_eq!(
        structured(&client.call_tool(3, "x", json!({})))["authorization"],
        "Bearer AT3"
    );
    assert_eq!(issued.lock().unwrap().len(), 3);

    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
    let log = client.stderr();
    for secret in ["csec", "AT1", "AT2", "AT3", "Y2lkOmNzZWM="] {
        assert!(!log.contains(secret), "secret {secret:?} in stderr:\n{log}");
    }
}

#[test]
fn oauth_token_endpoint_is_discovered_from_the_401() {
    let issued = Arc::new(Mutex::new(Vec::new()));
    let auth_server = {
        let tokens = token_endpoint(issued.clone(), 3600);
        let port = Arc::new(Mutex::new(0u16));
        let port_in = port.clone();
        let fake = FakeRemote::start(move |req| match req.path.as_str() {
            "/.well-known/oauth-authorization-server/tenant" => {
                let p = *port_in.lock().unwrap();
                FakeResponse::json(
                    200,
                    &json!({
                    "issuer": format!("http://127.0.0.1:{p}/tenant"),
                    "token_endpoint": format!("http://127.0.0.1:{p}/tenant/token")}),
                )
            }
            "/tenant/token" => tokens(req),
            _ => FakeResponse::empty(404),
        });
        *port.lock().unwrap() = fake.port;
        fake
    };
    let state = Arc::new(Mutex::new(McpState {
        required_authorization: Some("Bearer AT1".into()),
        ..McpState::default()
    }));
    let prm = {
        let state = state.clone();
        let issuer = auth_server.url("/tenant");
        let mcp = mcp_script(state);
        move |req: &crate::support::fake_remote::FakeRequest| {
            if req.path == "/.well-known/oauth-protected-resource/mcp" {
                FakeResponse::json(
                    200,
                    &json!({"resource": "x", "authorization_servers": [issuer]}),
                )
            } else {
                mcp(req)
            }
        }
    };
    let fake = FakeRemote::start(prm);
    // No resource_metadata in the challenge: the well-known location with the path is used.
    state.lock().unwrap().www_authenticate = Some(r#"Bearer realm="mcp""#.into());
    let mut client = StdioProxy::start(&[
        "--client-id",
        "cid",
        "--client-secret",
        "csec",
        &fake.url("/mcp"),
    ]);
    client.initialize();
    assert_eq!(
        structured(&client.call_tool(1, "x", json!({})))["authorization"],
        "Bearer AT1"
    );
    assert_eq!(issued.lock().unwrap().len(), 1);
}

// ---- TLS --------------------------------------------------------------------------------------

#[test]
fn tls_with_a_test_ca_refused_by_default_accepted_with_the_pem_or_no_verify() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = FakeRemote::start_tls(mcp_script(state));
    let url = fake.url("/mcp");

    let started = Instant::now();
    let mut client = StdioProxy::start(&["--transport", "streamablehttp", &url]);
    client.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}));
    let v = client.response(&json!(0));
    assert!(v.get("error").is_some(), "{v}");
    assert_eq!(client.wait_exit(STARTUP_FAILURE_BOUND), Some(1));
    assert!(started.elapsed() < STARTUP_FAILURE_BOUND);
    let log = client.stderr();
    assert!(
        log.contains("certificate") || log.contains("UnknownIssuer"),
        "{log}"
    );

    let ca = format!("{TLS_DIR}/ca.pem");
    for args in [vec!["--verify-ssl", ca.as_str()], vec!["--no-verify-ssl"]] {
        let mut all = args.clone();
        all.push(&url);
        let mut client = StdioProxy::start(&all);
        client.initialize();
        let v = client.call_tool(1, "x", json!({}));
        assert!(
            structured(&v)["session"]
                .as_str()
                .is_some_and(|s| s.starts_with('s')),
            "{args:?}: {v}"
        );
    }
}

#[test]
fn an_unreadable_ca_bundle_is_a_startup_error() {
    let mut client = StdioProxy::start(&[
        "--verify-ssl",
        "/nonexistent/ca.pem",
        "http://127.0.0.1:1/mcp",
    ]);
    assert_eq!(client.wait_exit(DEADLINE), Some(1));
    assert!(
        client.stderr().contains("cannot read CA bundle"),
        "{}",
        client.stderr()
    );
}

// ---- failures ---------------------------------------------------------------------------------

#[test]
fn unreachable_url_exits_1_quickly_with_one_readable_line() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/sse");
    // SSE connects at start-up.
    let started = Instant::now();
    let mut client = StdioProxy::start(&["--transport", "sse", &url]);
    assert_eq!(client.wait_exit(STARTUP_FAILURE_BOUND), Some(1));
    assert!(started.elapsed() < STARTUP_FAILURE_BOUND);
    let log = client.stderr();
    assert!(
        log.contains("mcp-proxy: error: remote server: cannot connect to"),
        "{log}"
    );

    // Streamable HTTP / auto connect with the first message, which is answered first.
    let mut client = StdioProxy::start(&[&format!("http://127.0.0.1:{port}/mcp")]);
    client.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}));
    let v = client.response(&json!(0));
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert_eq!(client.wait_exit(STARTUP_FAILURE_BOUND), Some(1));
}

#[test]
fn invalid_stdin_lines_get_errors_and_stdout_stays_json() {
    let server = remote();
    let mut client = StdioProxy::start(&[&server.url("/mcp")]);
    client.send_line("this is not json");
    let v = client.recv();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    client.initialize();
    assert_eq!(client.echo(1, "still fine"), "still fine");
}

#[test]
fn requests_during_an_outage_are_answered_with_an_error_then_the_proxy_gives_up() {
    let port = free_port().to_string();
    let server = Proxy::start(&["--port", &port, "--", FIXTURE]);
    let mut client = StdioProxy::start(&["--max-disconnected", "4", &server.url("/mcp")]);
    client.initialize();
    drop(server);
    let started = Instant::now();
    client.send(&json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}));
    let v = client.response(&json!(9));
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert_eq!(client.wait_exit(DEADLINE), Some(1));
    assert!(started.elapsed() < DEADLINE);
    assert!(
        client.stderr().contains("--max-disconnected"),
        "{}",
        client.stderr()
    );
}

#[test]
fn digest_auth_answers_the_challenge() {
    let fake = FakeRemote::start(|req| {
        let authorization = req.header("authorization").unwrap_or("");
        let answered = authorization
            .starts_with(r#"Digest username="user", realm="mcp", nonce="n0nce""#)
            && authorization.contains(r#"uri="/mcp""#)
            && authorization.contains("qop=auth")
            && authorization.contains(r#"opaque="op""#);
        if !answered {
            return FakeResponse::empty(401).with_header(
                "WWW-Authenticate",
                r#"Digest realm="mcp", qop="auth", nonce="n0nce", opaque="op", algorithm=MD5"#,
            );
        }
        let message = req.json();
        match message.get("id") {
            Some(id) => FakeResponse::json(200, &json!({"jsonrpc":"2.0","id":id,"result":{}})),
            None => FakeResponse::empty(202),
        }
    });
    let mut client = StdioProxy::start(&[
        "--transport",
        "streamablehttp",
        "--username",
        "user",
        "--password",
        "secret-pw",
        "--digest",
        "--debug",
        &fake.url("/mcp"),
    ]);
    client.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}));
    assert!(client.response(&json!(0)).get("result").is_some());
    client.send(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
    assert!(client.response(&json!(1)).get("result").is_some());
    // One challenge, then the nonce is reused with a growing count.
    let unauthorized = fake
        .requests()
        .iter()
        .filter(|r| r.header("authorization").is_none())
        .count();
    assert_eq!(unauthorized, 1);
    assert!(!client.stderr().contains("secret-pw"));
}

#[test]
fn sigterm_ends_the_session_and_exits_0() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = FakeRemote::start(mcp_script(state.clone()));
    let mut client = StdioProxy::start(&[&fake.url("/mcp")]);
    client.initialize();
    client.call_tool(1, "x", json!({}));
    client.signal(15);
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
    assert!(
        fake.requests().iter().any(|r| r.method == "DELETE"),
        "DELETE before exit"
    );
    assert!(state.lock().unwrap().live_sessions.is_empty());
}
