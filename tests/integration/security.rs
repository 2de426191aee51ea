//! DNS-rebinding protection (Origin/Host) and CORS.

use serde_json::json;

use crate::support::*;

fn initialize(url: &str, headers: &[(&str, &str)]) -> Response {
    post_json(
        url,
        headers,
        &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":initialize_params(json!({}))}),
    )
}

#[test]
fn foreign_origin_or_host_is_forbidden_on_loopback() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let url = p.url("/mcp");
    let evil = [
        ("Host", "evil.example.com"),
        ("Origin", "http://evil.example.com"),
    ];
    assert_eq!(initialize(&url, &evil).status, 403);
    let host = format!("localhost:{}", p.port);
    let origin = format!("http://localhost:{}", p.port);
    assert_eq!(
        initialize(
            &url,
            &[("Host", &host), ("Origin", "http://evil.example.com")]
        )
        .status,
        403
    );
    assert_eq!(
        initialize(&url, &[("Host", "evil.example.com")]).status,
        403
    );
    assert_eq!(
        initialize(&url, &[("Host", &host), ("Origin", &origin)]).status,
        200
    );
    assert_eq!(
        request(
            "GET",
            &p.url("/sse"),
            &[("Origin", "https://evil.example.com")],
            ""
        )
        .status,
        403
    );
}

#[test]
fn cors_only_with_allow_origin() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let r = initialize(&p.url("/mcp"), &[("Origin", "http://localhost:3000")]);
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = request(
        "OPTIONS",
        &p.url("/mcp"),
        &[
            ("Origin", "http://localhost:3000"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert_eq!(r.status, 405, "no CORS: preflight is just another method");

    let p = Proxy::start(&[
        "--port",
        "0",
        "--allow-origin",
        "https://app.example",
        "--",
        FIXTURE,
    ]);
    let r = request(
        "OPTIONS",
        &p.url("/mcp"),
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, mcp-session-id",
            ),
        ],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, mcp-session-id")
    );
    let r = initialize(&p.url("/mcp"), &[("Origin", "https://app.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("mcp-session-id")
    );
    assert_eq!(
        initialize(&p.url("/mcp"), &[("Origin", "https://other.example")]).status,
        403
    );
    let r = request(
        "OPTIONS",
        &p.url("/mcp"),
        &[
            ("Origin", "http://localhost:1"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn allow_origin_star_and_custom_expose_headers() {
    let p = Proxy::start(&[
        "--port",
        "0",
        "--allow-origin",
        "*",
        "--expose-header",
        "x-one",
        "--expose-header",
        "x-two",
        "--",
        FIXTURE,
    ]);
    let r = initialize(&p.url("/mcp"), &[("Origin", "https://anyone.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-one, x-two")
    );
}

#[test]
fn status_answers_get_and_head_only() {
    let p = Proxy::start(&["--port", "0", "--", FIXTURE]);
    let r = request("GET", &p.url("/status"), &[], "");
    assert_eq!(r.status, 200);
    let v = r.json();
    for key in [
        "api_last_activity",
        "active_sse_connections",
        "server_instances",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert!(v["api_last_activity"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(request("HEAD", &p.url("/status"), &[], "").status, 200);
    assert_eq!(request("POST", &p.url("/status"), &[], "").status, 405);
}
