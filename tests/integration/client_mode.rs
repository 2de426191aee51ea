//! Client mode: stdio to a remote server (issue 3). The remote is our own server mode in front
//! of the example server (real MCP over real HTTP), or a scripted fake when a test must control
//! statuses, sessions, credentials or TLS.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::fake_remote::{
    FakeRemote, FakeRequest, FakeResponse, McpState, TLS_DIR, mcp_script, sse_event,
};
use crate::support::stdio_client::StdioProxy;
use crate::support::{
    DEADLINE, FIXTURE, PROXY, ProcessGroup, Proxy, TempFile, free_port, process_alive, wait_until,
};

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
        client.wait_for_log("re-initialized");
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

// ---- OAuth with a private key (private_key_jwt, RFC 7523) ---------------------------------------

/// Base64url without padding, decoded (the proxy only encodes; the test checks its output).
fn unbase64url(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url without padding: {s:?}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k != name {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = v.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'%' => {
                    let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                    out.push(u8::from_str_radix(&hex, 16).expect("percent escape"));
                }
                b'+' => out.push(b' '),
                b => out.push(b),
            }
        }
        Some(String::from_utf8(out).expect("UTF-8 form value"))
    })
}

/// The test client's public key (`support/tls/client-jwt.pub.pem`) as ring wants it: the
/// uncompressed point that ends a P-256 SubjectPublicKeyInfo.
fn client_public_key() -> Vec<u8> {
    use rustls::pki_types::SubjectPublicKeyInfoDer;
    use rustls::pki_types::pem::PemObject;
    let spki = SubjectPublicKeyInfoDer::from_pem_file(format!("{TLS_DIR}/client-jwt.pub.pem"))
        .expect("the test public key");
    let der: &[u8] = spki.as_ref();
    assert_eq!(der.len(), 91, "a P-256 SubjectPublicKeyInfo");
    der[der.len() - 65..].to_vec()
}

/// Checks a token request the way an authorization server must (RFC 7523 §3): the assertion's
/// signature with the client's public key, then its header and claims. `Err` says what is wrong.
fn check_assertion(req: &FakeRequest, issuer: &str, resource: &str) -> Result<Value, String> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    if req.header("authorization").is_some() {
        return Err("a private_key_jwt client sends no Authorization header".into());
    }
    let field = |name| form_field(&req.body, name).ok_or(format!("no {name} in {}", req.body));
    if field("grant_type")? != "client_credentials" {
        return Err("grant_type is not client_credentials".into());
    }
    if field("client_assertion_type")? != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return Err("wrong client_assertion_type".into());
    }
    if field("resource")? != resource {
        return Err(format!("resource is not {resource}"));
    }
    let assertion = field("client_assertion")?;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("not a compact JWS: {assertion}"));
    };
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, client_public_key())
        .verify(
            format!("{header}.{claims}").as_bytes(),
            &unbase64url(signature),
        )
        .map_err(|_| "the signature does not verify with the client's public key")?;
    let header: Value = serde_json::from_slice(&unbase64url(header)).map_err(|e| e.to_string())?;
    if header != json!({"alg": "ES256", "typ": "JWT"}) {
        return Err(format!("header {header}"));
    }
    let claims: Value = serde_json::from_slice(&unbase64url(claims)).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().ok_or("no iat")?;
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let well_formed = claims["iss"] == "cid"
        && claims["sub"] == "cid"
        && claims["aud"] == issuer
        && iat.abs_diff(now) < 60
        && exp == iat + 300
        && claims["jti"].as_str().is_some_and(|j| j.len() >= 16);
    if !well_formed {
        return Err(format!("claims {claims} (issuer {issuer})"));
    }
    Ok(claims)
}

#[test]
fn oauth_private_key_jwt_is_signed_for_the_discovered_issuer_and_renewed_after_401() {
    // The authorization server: RFC 8414 metadata at its root, a token endpoint that verifies
    // each assertion as a real server would and issues AT1, AT2, …
    let assertions: Arc<Mutex<Vec<Result<Value, String>>>> = Arc::default();
    let auth_port = Arc::new(Mutex::new(0u16));
    let mcp_port = Arc::new(Mutex::new(0u16));
    let auth_server = {
        let (assertions, auth_port, mcp_port) =
            (assertions.clone(), auth_port.clone(), mcp_port.clone());
        FakeRemote::start(move |req| {
            let issuer = format!("http://127.0.0.1:{}", auth_port.lock().unwrap());
            match req.path.as_str() {
                "/.well-known/oauth-authorization-server" => FakeResponse::json(
                    200,
                    &json!({"issuer": issuer, "token_endpoint": format!("{issuer}/token"),
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": ["ES256"]}),
                ),
                "/token" => {
                    let resource = format!("http://127.0.0.1:{}/mcp", mcp_port.lock().unwrap());
                    let checked = check_assertion(req, &issuer, &resource);
                    let mut assertions = assertions.lock().unwrap();
                    assertions.push(checked.clone());
                    match checked {
                        Ok(_) => FakeResponse::json(
                            200,
                            &json!({"access_token": format!("AT{}", assertions.len()),
                                    "token_type": "Bearer", "expires_in": 3600}),
                        ),
                        Err(e) => FakeResponse::json(
                            401,
                            &json!({"error": "invalid_client", "error_description": e}),
                        ),
                    }
                }
                _ => FakeResponse::empty(404),
            }
        })
    };
    *auth_port.lock().unwrap() = auth_server.port;
    // The MCP server: 401 with resource_metadata in the challenge (spec L3), its protected
    // resource metadata naming the authorization server.
    let state = Arc::new(Mutex::new(McpState {
        required_authorization: Some("Bearer AT1".into()),
        ..McpState::default()
    }));
    let fake = {
        let mcp = mcp_script(state.clone());
        let issuer = auth_server.url("");
        FakeRemote::start(move |req| {
            if req.path == "/prm" {
                FakeResponse::json(
                    200,
                    &json!({"resource": "x", "authorization_servers": [issuer]}),
                )
            } else {
                mcp(req)
            }
        })
    };
    *mcp_port.lock().unwrap() = fake.port;
    state.lock().unwrap().www_authenticate = Some(format!(
        r#"Bearer resource_metadata="{}""#,
        fake.url("/prm")
    ));

    let key = format!("{TLS_DIR}/client-jwt.key");
    let mut client = StdioProxy::start(&[
        "--debug",
        "--client-id",
        "cid",
        "--client-private-key",
        &key,
        &fake.url("/mcp"),
    ]);
    client.initialize();
    assert_eq!(
        structured(&client.call_tool(1, "x", json!({})))["authorization"],
        "Bearer AT1"
    );
    // The GET stream attempt also carries the token; let it happen before the token changes.
    wait_until(DEADLINE, "the GET stream attempt", || {
        fake.requests().iter().any(|r| r.method == "GET")
    });
    assert_eq!(assertions.lock().unwrap().len(), 1, "the token is cached");

    // Revoked: the 401 brings a new token, with a new assertion, and the request goes again.
    state.lock().unwrap().required_authorization = Some("Bearer AT2".into());
    assert_eq!(
        structured(&client.call_tool(2, "x", json!({})))["authorization"],
        "Bearer AT2"
    );
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));

    let assertions = assertions.lock().unwrap().clone();
    let claims: Vec<Value> = assertions
        .into_iter()
        .map(|checked| checked.unwrap_or_else(|e| panic!("token request refused: {e}")))
        .collect();
    assert_eq!(claims.len(), 2);
    assert_ne!(claims[0]["jti"], claims[1]["jti"], "each assertion is new");
    let log = client.stderr();
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();
    for secret in [
        "AT1",
        "AT2",
        key_line,
        "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9",
    ] {
        assert!(!log.contains(secret), "secret {secret:?} in stderr:\n{log}");
    }
}

#[test]
fn an_unusable_client_private_key_is_a_startup_error() {
    // A public key where the private key belongs, then a file that does not exist.
    for (file, reason) in [
        (
            format!("{TLS_DIR}/client-jwt.pub.pem"),
            "no PEM private key",
        ),
        (
            format!("{TLS_DIR}/nonexistent.key"),
            "cannot read the private key",
        ),
    ] {
        let mut client = StdioProxy::start(&[
            "--client-id",
            "cid",
            "--client-private-key",
            &file,
            "http://127.0.0.1:1/mcp",
        ]);
        assert_eq!(client.wait_exit(DEADLINE), Some(1), "{file}");
        let log = client.stderr();
        assert!(log.contains(reason) && log.contains(&file), "{log}");
    }
    let mut client = StdioProxy::start(&[
        "--client-id",
        "cid",
        "--client-secret",
        "s",
        "--client-private-key",
        "k.pem",
        "http://127.0.0.1:1/mcp",
    ]);
    assert_eq!(
        client.wait_exit(DEADLINE),
        Some(2),
        "secret and key exclude each other"
    );
}

// ---- order of messages --------------------------------------------------------------------------

/// What reached a fake remote, in the order it arrived.
#[derive(Default)]
struct Arrivals {
    /// Each POSTed message, and when the fake took it in.
    posts: Vec<(Value, Instant)>,
    /// Each GET: when it arrived, and when its response head was sent.
    gets: Vec<(Instant, Instant)>,
    /// Open SSE streams (GET streams, the legacy stream), kept until the test ends.
    streams: Vec<crossbeam_channel::Sender<String>>,
}

/// Up to 3 ms of random delay before a POST is taken in: without the ordering, messages sent
/// concurrently then arrive shuffled.
fn jitter() {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::thread::sleep(Duration::from_micros(random % 3000));
}

/// `initialize`, `notifications/initialized`, then `n` messages of every kind: requests,
/// notifications and answers to (imaginary) server requests.
fn burst(n: usize) -> Vec<Value> {
    let mut messages = vec![
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"order-test","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    ];
    messages.extend((0..n).map(|i| match i % 3 {
        0 => json!({"jsonrpc":"2.0","id":i + 1,"method":"tools/list","params":{"n":i}}),
        1 => json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed",
                    "params":{"_meta":{"n":i}}}),
        _ => json!({"jsonrpc":"2.0","id":format!("server-{i}"),"result":{"n":i}}),
    }));
    messages
}

/// Writes all `messages` to the proxy at once, then waits for the answer to every request.
fn send_all_and_collect_answers(client: &mut StdioProxy, messages: &[Value]) {
    let mut unanswered: Vec<String> = messages
        .iter()
        .filter(|m| m.get("method").is_some() && m.get("id").is_some())
        .map(|m| m["id"].to_string())
        .collect();
    for m in messages {
        client.send(m);
    }
    while !unanswered.is_empty() {
        let v = client.recv();
        assert!(v.get("error").is_none(), "{v}");
        let answered = v["id"].to_string();
        unanswered.retain(|id| *id != answered);
    }
}

#[track_caller]
fn assert_arrived_in_order(arrivals: &Mutex<Arrivals>, sent: &[Value]) {
    wait_until(DEADLINE, "every message at the remote", || {
        arrivals.lock().unwrap().posts.len() >= sent.len()
    });
    let arrivals = arrivals.lock().unwrap();
    let got: Vec<&Value> = arrivals.posts.iter().map(|(m, _)| m).collect();
    assert_eq!(got.len(), sent.len(), "each message once");
    if let Some(i) = (0..sent.len()).find(|&i| *got[i] != sent[i]) {
        panic!(
            "message {i} out of order: sent {}, arrived {}",
            sent[i], got[i]
        );
    }
}

#[test]
fn streamable_http_posts_arrive_in_stdin_order_and_after_the_get_stream_answered() {
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let fake = {
        let arrivals = arrivals.clone();
        FakeRemote::start(move |req| match req.method.as_str() {
            "GET" => {
                let arrived = Instant::now();
                // A slow head: what follows `initialized` must wait for it.
                std::thread::sleep(Duration::from_millis(300));
                let (response, stream) = FakeResponse::sse();
                let mut arrivals = arrivals.lock().unwrap();
                arrivals.gets.push((arrived, Instant::now()));
                arrivals.streams.push(stream);
                response.with_header("Mcp-Session-Id", "s1")
            }
            "DELETE" => FakeResponse::empty(200),
            _ => {
                jitter();
                let message = req.json();
                if message["method"] == "server/discover" {
                    // The era probe (2026-07-28) before the initialize: not a stdin message.
                    return FakeResponse::empty(404);
                }
                arrivals
                    .lock()
                    .unwrap()
                    .posts
                    .push((message.clone(), Instant::now()));
                if message["method"] == "initialize" {
                    FakeResponse::json(
                        200,
                        &json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18",
                            "capabilities":{},"serverInfo":{"name":"fake","version":"1"}}}),
                    )
                    .with_header("Mcp-Session-Id", "s1")
                } else if message.get("method").is_some() && message.get("id").is_some() {
                    FakeResponse::json(
                        200,
                        &json!({"jsonrpc":"2.0","id":message["id"],"result":{}}),
                    )
                } else {
                    FakeResponse::empty(202)
                }
            }
        })
    };
    let mut client = StdioProxy::start(&["--transport", "streamablehttp", &fake.url("/mcp")]);
    let sent = burst(60);
    send_all_and_collect_answers(&mut client, &sent);
    assert_arrived_in_order(&arrivals, &sent);

    wait_until(DEADLINE, "the GET stream answered", || {
        !arrivals.lock().unwrap().gets.is_empty()
    });
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.gets.len(), 1, "one GET stream");
    let (get_arrived, get_answered) = arrivals.gets[0];
    let initialized_at = arrivals.posts[1].1;
    let next_at = arrivals.posts[2].1;
    assert!(
        get_arrived >= initialized_at,
        "the GET came before notifications/initialized"
    );
    assert!(
        next_at > get_answered,
        "the message after notifications/initialized came {:?} before the GET's head was sent",
        get_answered - next_at
    );
    for req in fake
        .requests()
        .iter()
        .filter(|r| r.method != "POST" || r.json()["id"] != 0)
        .filter(|r| r.json()["method"] != "server/discover")
    {
        assert_eq!(req.header("mcp-session-id"), Some("s1"), "{}", req.body);
    }
}

#[test]
fn legacy_sse_posts_arrive_in_stdin_order() {
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let fake = {
        let arrivals = arrivals.clone();
        FakeRemote::start(move |req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/sse") => {
                let (response, stream) = FakeResponse::sse();
                stream
                    .send(sse_event("endpoint", "/messages?sid=1"))
                    .unwrap();
                arrivals.lock().unwrap().streams.push(stream);
                response
            }
            ("POST", "/messages?sid=1") => {
                jitter();
                let message = req.json();
                let mut arrivals = arrivals.lock().unwrap();
                arrivals.posts.push((message.clone(), Instant::now()));
                if message.get("method").is_some() && message.get("id").is_some() {
                    let result = if message["method"] == "initialize" {
                        json!({"protocolVersion":"2024-11-05","capabilities":{},
                               "serverInfo":{"name":"fake","version":"1"}})
                    } else {
                        json!({})
                    };
                    let answer = json!({"jsonrpc":"2.0","id":message["id"],"result":result});
                    for stream in &arrivals.streams {
                        // A stream whose client has gone: the live one gets it.
                        let _ = stream.send(sse_event("message", &answer.to_string()));
                    }
                }
                FakeResponse::empty(202)
            }
            _ => FakeResponse::empty(404),
        })
    };
    let mut client = StdioProxy::start(&["--transport", "sse", &fake.url("/sse")]);
    let sent = burst(60);
    send_all_and_collect_answers(&mut client, &sent);
    assert_arrived_in_order(&arrivals, &sent);
}

#[test]
fn a_server_request_on_the_get_stream_during_a_call_reaches_stdin() {
    // The conformance scenario elicitation-sep1034-client-defaults in miniature: `tools/call`
    // makes the server ask the client on the GET stream, which it drops (as the TS SDK does) when
    // no GET stream is open yet; the call ends with the answer.
    #[derive(Default)]
    struct State {
        get_stream: Option<crossbeam_channel::Sender<String>>,
        /// The call's reply stream and its id, while the server waits for the answer.
        call: Option<(crossbeam_channel::Sender<String>, Value)>,
        dropped: bool,
    }
    let state: Arc<Mutex<State>> = Arc::default();
    let fake = {
        let state = state.clone();
        FakeRemote::start(move |req| {
            if req.method == "GET" {
                // A slow head (no lock held): a proxy that does not wait for it sends tools/call
                // first.
                std::thread::sleep(Duration::from_millis(300));
                let (response, stream) = FakeResponse::sse();
                state.lock().unwrap().get_stream = Some(stream);
                return response;
            }
            let mut state = state.lock().unwrap();
            if req.method == "DELETE" {
                return FakeResponse::empty(200);
            }
            let message = req.json();
            match message["method"].as_str() {
                Some("initialize") => FakeResponse::json(
                    200,
                    &json!({"jsonrpc":"2.0","id":message["id"],"result":{
                        "protocolVersion":"2025-06-18","capabilities":{"tools":{}},
                        "serverInfo":{"name":"fake","version":"1"}}}),
                )
                .with_header("Mcp-Session-Id", "s1"),
                Some("tools/call") => {
                    let ask = json!({"jsonrpc":"2.0","id":"ask-1","method":"elicitation/create",
                        "params":{"message":"name?","requestedSchema":{"type":"object",
                        "properties":{"name":{"type":"string","default":"Ada"}}}}});
                    match &state.get_stream {
                        Some(stream) => {
                            stream.send(sse_event("message", &ask.to_string())).unwrap()
                        }
                        None => state.dropped = true,
                    }
                    let (response, stream) = FakeResponse::sse();
                    state.call = Some((stream, message["id"].clone()));
                    response
                }
                Some(_) => FakeResponse::empty(202),
                None if message["id"] == "ask-1" => {
                    if let Some((stream, id)) = state.call.take() {
                        let name = message["result"]["content"]["name"].clone();
                        let result = json!({"jsonrpc":"2.0","id":id,"result":{
                            "content":[{"type":"text","text":format!("hello {name}")}]}});
                        stream
                            .send(sse_event("message", &result.to_string()))
                            .unwrap();
                    }
                    FakeResponse::empty(202)
                }
                None => FakeResponse::empty(202),
            }
        })
    };
    let mut client = StdioProxy::start(&["--transport", "streamablehttp", &fake.url("/mcp")]);
    client.send(
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},
        "clientInfo":{"name":"t","version":"1"}}}),
    );
    client.response(&json!(0));
    // Back to back, as a desktop client does.
    client.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    client.send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"greet","arguments":{}}}));
    wait_until(DEADLINE, "tools/call at the remote", || {
        state.lock().unwrap().call.is_some()
    });
    assert!(
        !state.lock().unwrap().dropped,
        "tools/call reached the remote before its GET stream was open: the server's request was lost"
    );
    let ask = client.recv();
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    client.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{
        "action":"accept","content":{"name":"Ada"}}}));
    let v = client.response(&json!(1));
    assert_eq!(v["result"]["content"][0]["text"], "hello \"Ada\"", "{v}");
}

/// A reply spread over several SSE `data:` lines (pretty-printed JSON) comes out as one line
/// with the remote's bytes kept: numbers, escapes and key order as the remote wrote them,
/// never decoded and encoded again.
#[test]
fn a_multi_line_sse_reply_becomes_one_line_with_its_bytes_kept() {
    let pretty = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"z\": 1.50,\n    \"big\": 123456789012345678901234567890,\n    \"text\": \"caf\\u00e9 \\/ line\\nbreak\"\n  }\n}";
    let fake = FakeRemote::start(move |req| {
        if req.method != "POST" {
            return FakeResponse::empty(405);
        }
        let data: String = pretty.lines().map(|l| format!("data: {l}\n")).collect();
        FakeResponse {
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            body: format!("{data}\n"),
            ..FakeResponse::empty(200)
        }
    });
    let mut client = StdioProxy::start(&["--transport", "streamablehttp", &fake.url("/mcp")]);
    client.send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}));
    // The raw line, as the local client reads it.
    let line = client.no_output_for(DEADLINE).expect("the reply on stdout");
    assert_eq!(
        line,
        r#"{"jsonrpc": "2.0","id": 1,"result": {"z": 1.50,"big": 123456789012345678901234567890,"text": "caf\u00e9 \/ line\nbreak"}}"#
    );
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

/// A reply stream that ends before the response is resumed (spec E8, F7): a GET with
/// `Last-Event-ID` of the last event seen, after the server's `retry`, and the response that
/// comes on it reaches the client.
#[test]
fn a_reply_stream_cut_short_is_resumed_with_last_event_id() {
    let sse = |body: &str| FakeResponse {
        headers: vec![("Content-Type".into(), "text/event-stream".into())],
        body: body.into(),
        ..FakeResponse::empty(200)
    };
    let fake = FakeRemote::start(move |req| match req.method.as_str() {
        // A priming event (an id, no data), then the stream ends without the response.
        "POST" => sse("id: e1\nretry: 10\ndata: \n\n"),
        "GET" if req.header("last-event-id") == Some("e1") => sse(&format!(
            "id: e2\n{}",
            sse_event(
                "message",
                r#"{"jsonrpc":"2.0","id":7,"result":{"resumed":true}}"#
            )
        )),
        _ => FakeResponse::empty(405),
    });
    let mut client = StdioProxy::start(&["--transport", "streamablehttp", &fake.url("/mcp")]);
    client.send(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}));
    let v = client.response(&json!(7));
    assert_eq!(v["result"]["resumed"], true, "{v}");
    let resumed = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("a GET resuming the stream");
    assert_eq!(resumed.header("accept"), Some("text/event-stream"));
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

#[test]
fn an_error_status_answering_the_request_reaches_the_client_and_is_not_fatal() {
    // A 2026-07-28 server refuses a first message it cannot take (here: no MCP-Protocol-Version
    // header) with 400 and the JSON-RPC error for that request; the client then initializes.
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = {
        let mcp = mcp_script(state);
        FakeRemote::start(move |req| {
            let message = req.json();
            if message["method"] == "server/discover" {
                return FakeResponse::json(
                    400,
                    &json!({"jsonrpc":"2.0","id":message["id"],"error":{"code":-32020,
                        "message":"Header mismatch: the MCP-Protocol-Version header is required"}}),
                );
            }
            mcp(req)
        })
    };
    // auto as well: an answer by the request's id is no reason to fall back to legacy SSE.
    for transport in ["streamablehttp", "auto"] {
        let mut client = StdioProxy::start(&["--transport", transport, &fake.url("/mcp")]);
        client.send(
            &json!({"jsonrpc":"2.0","id":"d","method":"server/discover","params":{
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}),
        );
        let v = client.response(&json!("d"));
        assert_eq!(v["error"]["code"], -32020, "{transport}: {v}");
        client.initialize();
        let v = client.call_tool(1, "x", json!({}));
        assert_eq!(structured(&v)["method"], "tools/call", "{transport}: {v}");
        client.close_stdin();
        assert_eq!(client.wait_exit(DEADLINE), Some(0), "{transport}");
    }
}

// ---- a 2026-07-28 remote (issue 7) ------------------------------------------------------------

const MODERN_FIXTURE: &str = env!("CARGO_BIN_EXE_mcp-modern-server");

/// Our server mode in front of the modern fixture: it serves the 2026-07-28 era on /mcp (and
/// the session era beside it, so `auto` keeps the client's own era there; these tests ask for
/// the modern one).
fn modern_remote() -> Proxy {
    Proxy::start(&["--port", "0", "--", MODERN_FIXTURE])
}

/// Client mode speaking 2026-07-28 to `server`, initialized with every client capability.
fn modern_client(server: &Proxy) -> StdioProxy {
    let mut client =
        StdioProxy::start(&["--debug", "--protocol-era", "modern", &server.url("/mcp")]);
    client.send(
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18",
        "capabilities":{"sampling":{},"elicitation":{},"roots":{}},
        "clientInfo":{"name":"client-mode-test","version":"1"}}}),
    );
    let init = client.response(&json!(0));
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcp-modern-server",
        "{init}"
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    client.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    client
}

/// The next message that is not a notification of `method` (skipped ones are returned too).
#[track_caller]
fn recv_collecting(client: &StdioProxy, skip: &str) -> (Value, Vec<Value>) {
    let mut skipped = Vec::new();
    loop {
        let v = client.recv();
        if v["method"] == skip && v.get("id").is_none() {
            skipped.push(v);
        } else {
            return (v, skipped);
        }
    }
}

#[test]
fn auto_keeps_the_session_era_with_a_remote_that_speaks_both() {
    // Server mode serves both eras on /mcp: the client's own era needs no translation.
    let server = remote();
    let mut client = StdioProxy::start(&["--debug", &server.url("/mcp")]);
    client.initialize();
    assert_eq!(client.echo(1, "both"), "both");
    let expected = "remote: the session era (it speaks 2026-07-28 and the client's era";
    client.wait_for_log(expected);
    client.wait_for_log("session established");
}

#[test]
fn modern_remote_echo_progress_and_log_level() {
    let server = modern_remote();
    let mut client = modern_client(&server);
    client.wait_for_log("remote speaks 2026-07-28");
    // Answered here: the remote has neither.
    client.send(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
    assert_eq!(client.response(&json!(1))["result"], json!({}));
    assert_eq!(client.echo(2, "modern"), "modern");

    client.send(
        &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
        "name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"p1"}}}),
    );
    let (done, progress) = recv_collecting(&client, "notifications/progress");
    assert_eq!(done["id"], 3, "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "done 3 steps",
        "{done}"
    );
    assert_eq!(progress.len(), 3, "{progress:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p1")
    );

    // No level asked: no log messages (2026-07-28 sends them only on request).
    client.send(
        &json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{
        "name":"log","arguments":{"message":"quiet","level":"warning"}}}),
    );
    let (v, logs) = recv_collecting(&client, "notifications/message");
    assert_eq!(v["id"], 4);
    assert!(logs.is_empty(), "{logs:?}");
    client.send(
        &json!({"jsonrpc":"2.0","id":5,"method":"logging/setLevel","params":{"level":"info"}}),
    );
    assert_eq!(client.response(&json!(5))["result"], json!({}));
    for (id, level, shown) in [(6, "warning", true), (7, "debug", false)] {
        client.send(
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":"log","arguments":{"message":"loud","level":level}}}),
        );
        let (v, logs) = recv_collecting(&client, "notifications/message");
        assert_eq!(v["id"], id, "{v}");
        assert_eq!(logs.len(), usize::from(shown), "{level}: {logs:?}");
    }
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

#[test]
fn modern_remote_input_required_becomes_requests_answered_on_stdin() {
    let server = modern_remote();
    let mut client = modern_client(&server);
    client.send(&json!({"jsonrpc":"2.0","id":"a","method":"tools/call",
        "params":{"name":"ask_name","arguments":{}}}));
    let ask = client.recv();
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "What is your name?");
    assert_ne!(ask["id"], json!("a"), "our own id");
    client.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{
        "action":"accept","content":{"name":"Ada"}}}));
    let v = client.response(&json!("a"));
    assert_eq!(v["result"]["content"][0]["text"], "hello Ada", "{v}");

    client.send(&json!({"jsonrpc":"2.0","id":"b","method":"tools/call",
        "params":{"name":"two_rounds","arguments":{}}}));
    for (question, answer) in [("First question?", "one"), ("Second question?", "two")] {
        let ask = client.recv();
        assert_eq!(ask["params"]["message"], question, "{ask}");
        client.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{
            "action":"accept","content":{"answer":answer}}}));
    }
    let v = client.response(&json!("b"));
    assert_eq!(
        v["result"]["content"][0]["text"], "first=one second=two",
        "{v}"
    );

    // Sampling as well, and a refusal ends the call with the client's error.
    client.send(&json!({"jsonrpc":"2.0","id":"c","method":"tools/call",
        "params":{"name":"sample","arguments":{"prompt":"2+2?"}}}));
    let ask = client.recv();
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    client.send(
        &json!({"jsonrpc":"2.0","id":ask["id"],"error":{"code":-1,"message":"user said no"}}),
    );
    let v = client.response(&json!("c"));
    assert_eq!(v["error"]["message"], "user said no", "{v}");
    assert!(client.no_output_for(Duration::from_millis(200)).is_none());
}

#[test]
fn modern_remote_change_notifications_come_on_a_listen_stream() {
    let server = modern_remote();
    let mut client = modern_client(&server);
    client.send(
        &json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe",
        "params":{"uri":"modern://greeting"}}),
    );
    // Answered once the renewed listen stream is acknowledged: the update below is not lost.
    assert_eq!(client.response(&json!(1))["result"], json!({}));
    // The notification and the call's answer come on different streams, in either order.
    let mut expect_both = |id: i64, tool: &str, arguments: Value, method: &str| {
        client.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":tool,"arguments":arguments}}));
        let (mut answered, mut notified) = (false, None);
        while !answered || notified.is_none() {
            let v = client.recv();
            assert_ne!(
                v["method"], "notifications/subscriptions/acknowledged",
                "acknowledgements are ours"
            );
            if v["id"] == id {
                assert!(v.get("result").is_some(), "{v}");
                answered = true;
            } else if v["method"] == method {
                notified = Some(v);
            }
        }
        notified.unwrap()
    };
    let update = expect_both(
        2,
        "touch",
        json!({"uri":"modern://greeting"}),
        "notifications/resources/updated",
    );
    assert_eq!(update["params"]["uri"], "modern://greeting");
    expect_both(
        3,
        "notify_tools",
        json!({}),
        "notifications/tools/list_changed",
    );
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));
}

/// A 2026-07-28 remote that records headers: rejects the first request as an unsupported
/// version (as the conformance suite's request-metadata mock does), then answers discover,
/// tools/list (one valid tool with header parameters, one invalid), and everything else.
fn header_checking_remote() -> FakeRemote {
    let first = Arc::new(Mutex::new(true));
    FakeRemote::start(move |req| {
        if req.method != "POST" {
            return FakeResponse::empty(405).with_header("Allow", "POST");
        }
        let message = req.json();
        let id = message["id"].clone();
        if std::mem::replace(&mut *first.lock().unwrap(), false) {
            return FakeResponse::json(
                400,
                &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32022,
                    "message":"Unsupported protocol version",
                    "data":{"supported":["2026-07-28"],"requested":"x"}}}),
            );
        }
        if id.is_null() {
            return FakeResponse::empty(202);
        }
        let result = match message["method"].as_str().unwrap_or("") {
            "server/discover" => json!({"resultType":"complete","supportedVersions":["2026-07-28"],
                "capabilities":{"tools":{},"prompts":{},"resources":{},"logging":{}},
                "ttlMs":0,"cacheScope":"private",
                "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"fake-modern","version":"1"}}}),
            "tools/list" => {
                json!({"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[
                {"name":"headers","inputSchema":{"type":"object","properties":{
                    "region":{"type":"string","x-mcp-header":"Region"},
                    "priority":{"type":"integer","x-mcp-header":"Priority"},
                    "verbose":{"type":"boolean","x-mcp-header":"Verbose"},
                    "label":{"type":"string","x-mcp-header":"Label"},
                    "query":{"type":"string"}}}},
                {"name":"bad","inputSchema":{"type":"object","properties":{
                    "a":{"type":"string","x-mcp-header":"Dup"},
                    "b":{"type":"string","x-mcp-header":"dup"}}}}]})
            }
            _ => json!({"resultType":"complete","content":[]}),
        };
        FakeResponse::json(200, &json!({"jsonrpc":"2.0","id":id,"result":result}))
    })
}

#[test]
fn modern_remote_gets_meta_and_the_standard_and_parameter_headers() {
    let fake = header_checking_remote();
    let mut client = StdioProxy::start(&["--debug", &fake.url("/mcp")]);
    let init = client.initialize();
    assert_eq!(
        init["result"]["serverInfo"]["name"], "fake-modern",
        "{init}"
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    client.send(
        &json!({"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"error"}}),
    );
    client.response(&json!(1));
    client.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}));
    let list = client.response(&json!(2));
    let names: Vec<&Value> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(
        names,
        [&json!("headers")],
        "the invalid tool is left out: {list}"
    );
    client.call_tool(
        3,
        "headers",
        json!({"region":"us-west1","priority":42,"verbose":null,"label":" Héllo ","query":"q"}),
    );
    client.send(&json!({"jsonrpc":"2.0","id":4,"method":"resources/read",
        "params":{"uri":"file:///a%20b.txt"}}));
    client.response(&json!(4));
    client.send(&json!({"jsonrpc":"2.0","id":5,"method":"prompts/get",
        "params":{"name":"=?base64?x?="}}));
    client.response(&json!(5));
    client.close_stdin();
    assert_eq!(client.wait_exit(DEADLINE), Some(0));

    let requests = fake.requests();
    let methods: Vec<&str> = requests
        .iter()
        .map(|r| r.json()["method"].as_str().unwrap_or("?").to_string())
        .map(|m| Box::leak(m.into_boxed_str()) as &str)
        .collect();
    assert_eq!(
        methods,
        [
            "server/discover",
            "server/discover",
            "tools/list",
            "tools/call",
            "resources/read",
            "prompts/get"
        ],
        "retried discover; no initialize, initialized, ping, setLevel, GET or DELETE"
    );
    for r in &requests {
        let body = r.json();
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("mcp-protocol-version"),
            Some("2026-07-28"),
            "{}",
            r.body
        );
        assert_eq!(
            r.header("mcp-method"),
            body["method"].as_str(),
            "{}",
            r.body
        );
        assert_eq!(r.header("mcp-session-id"), None);
        let meta = &body["params"]["_meta"];
        assert_eq!(
            meta["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        assert_eq!(
            meta["io.modelcontextprotocol/clientCapabilities"],
            json!({"sampling":{}}),
            "{}",
            r.body
        );
        assert_eq!(
            meta["io.modelcontextprotocol/clientInfo"]["name"],
            "client-mode-test"
        );
    }
    let by_method = |m: &str| requests.iter().find(|r| r.json()["method"] == m).unwrap();
    assert_eq!(
        by_method("tools/list").json()["params"]["_meta"]["io.modelcontextprotocol/logLevel"],
        "error"
    );
    let call = by_method("tools/call");
    assert_eq!(call.header("mcp-name"), Some("headers"));
    assert_eq!(call.header("mcp-param-region"), Some("us-west1"));
    assert_eq!(call.header("mcp-param-priority"), Some("42"));
    assert_eq!(call.header("mcp-param-verbose"), None, "null: no header");
    // Leading/trailing space and non-ASCII: Base64 of the UTF-8.
    assert_eq!(
        call.header("mcp-param-label"),
        Some("=?base64?IEjDqWxsbyA=?=")
    );
    assert_eq!(call.header("mcp-param-query"), None, "not annotated");
    assert_eq!(
        by_method("resources/read").header("mcp-name"),
        Some("file:///a%20b.txt")
    );
    // A plain value that looks encoded is encoded.
    assert_eq!(
        by_method("prompts/get").header("mcp-name"),
        Some("=?base64?PT9iYXNlNjQ/eD89?=")
    );
}

#[test]
fn protocol_era_modern_refuses_a_session_era_remote_at_start_up() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = FakeRemote::start(mcp_script(state));
    let started = Instant::now();
    let mut client = StdioProxy::start(&["--protocol-era", "modern", &fake.url("/mcp")]);
    client.send(
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"t","version":"1"}}}),
    );
    let v = client.response(&json!(0));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not speak 2026-07-28")),
        "{v}"
    );
    assert_eq!(client.wait_exit(STARTUP_FAILURE_BOUND), Some(1));
    assert!(started.elapsed() < STARTUP_FAILURE_BOUND);
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.json()["method"] == "initialize"),
        "nothing of the session era was sent"
    );
}

// ---- the local client going away (issue 5) ----------------------------------------------------

/// A process group a test started (its leader is `sh`): SIGKILLed whole and reaped on drop.
#[test]
fn exits_when_its_parent_dies_while_a_sibling_holds_stdin_open() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let fake = FakeRemote::start(mcp_script(state));
    let pid_file = TempFile::new("orphan-pid", "pid", "");
    let log_file = TempFile::new("orphan-log", "stderr", "");
    // The parent starts the proxy with stdin from a pipe whose writer, a sleeping sibling,
    // outlives it (so no EOF comes), and stdout to /dev/null (so no write fails either).
    let script = r#"sleep 120 | "$0" --transport streamablehttp "$1" >/dev/null 2>"$2" &
echo $! >"$3"; wait"#;
    let parent = ProcessGroup(
        Command::new("sh")
            .args(["-c", script, PROXY, &fake.url("/mcp")])
            .arg(&log_file)
            .arg(&pid_file)
            .env_remove("SSE_URL")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh"),
    );
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let mut pid = 0;
    wait_until(DEADLINE, "the proxy to start", || {
        pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        pid != 0 && log().contains("client mode:")
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid = stat.rsplit(')').next().unwrap().split_whitespace().nth(1);
    assert_eq!(
        ppid,
        Some(parent.0.id().to_string().as_str()),
        "sh is not the parent"
    );
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-9", &parent.0.id().to_string()])
        .status();
    wait_until(Duration::from_secs(5), "the orphaned proxy to exit", || {
        !process_alive(pid)
    });
    eprintln!(
        "orphaned proxy exited {:?} after its parent",
        killed.elapsed()
    );
    assert!(
        log().contains("has gone: shutting down"),
        "stderr:\n{}",
        log()
    );
    drop(parent);
}

#[test]
fn stdin_eof_before_any_message_exits_0_at_once() {
    let state = Arc::new(Mutex::new(McpState::default()));
    let mcp = mcp_script(state);
    let streams = Mutex::new(Vec::new());
    let fake = FakeRemote::start(move |req| {
        if req.path != "/sse" {
            return mcp(req);
        }
        let (response, stream) = FakeResponse::sse();
        stream.send(sse_event("endpoint", "/messages")).unwrap();
        streams.lock().unwrap().push(stream);
        response
    });
    for (transport, path) in [("streamablehttp", "/mcp"), ("sse", "/sse")] {
        let mut client = StdioProxy::start(&["--transport", transport, &fake.url(path)]);
        client.close_stdin();
        assert_eq!(
            client.wait_exit(Duration::from_secs(5)),
            Some(0),
            "{transport}"
        );
    }
}
