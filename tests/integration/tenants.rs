//! `headerToEnv`: a child per distinct set of mapped header values, so one user's token never
//! serves another user's call; the pool is bounded and never shows the values.

use serde_json::json;

use crate::support::*;

fn config(dir_tag: &str, extra: serde_json::Value) -> TempFile {
    let mut server = json!({"command": FIXTURE, "env": {"API_TOKEN": "config-default"},
        "headerToEnv": {"X-Api-Token": "API_TOKEN"}});
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            server[k] = v.clone();
        }
    }
    let text = json!({"mcpServers": {"gh": server}}).to_string();
    TempFile::new(&format!("tenants-{dir_tag}"), "servers.json", &text)
}

/// A client whose every request carries `X-Api-Token: token`.
fn connect(p: &Proxy, token: Option<&str>) -> (String, Vec<(String, String)>) {
    let url = p.url("/servers/gh/mcp");
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(t) = token {
        headers.push(("X-Api-Token".into(), t.into()));
    }
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = post_json(
        &url,
        &h,
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":initialize_params(json!({}))}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    headers.push((
        "Mcp-Session-Id".into(),
        r.header("mcp-session-id").unwrap().into(),
    ));
    (url, headers)
}

fn env_of(url: &str, headers: &[(String, String)], name: &str) -> String {
    let mut h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    h.push(("Accept", "application/json"));
    let r = post_json(
        url,
        &h,
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"env","arguments":{"name":name}}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn each_token_gets_its_own_child_and_only_its_own_value() {
    let path = config("iso", json!({}));
    let p = Proxy::start(&[
        "--debug",
        "--port",
        "0",
        "--named-server-config",
        path.to_str().unwrap(),
    ]);
    let (url, alice) = connect(&p, Some("alice-secret-token"));
    let (_, bob) = connect(&p, Some("bob-secret-token"));
    let (_, nobody) = connect(&p, None);
    let (_, alice_again) = connect(&p, Some("alice-secret-token"));
    assert_eq!(env_of(&url, &alice, "API_TOKEN"), "alice-secret-token");
    assert_eq!(env_of(&url, &bob, "API_TOKEN"), "bob-secret-token");
    assert_eq!(env_of(&url, &nobody, "API_TOKEN"), "config-default");
    assert_eq!(
        env_of(&url, &alice_again, "API_TOKEN"),
        "alice-secret-token"
    );

    let status = p.status();
    let tenants = status["servers"]["gh"]["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 3, "alice, bob, and no token: {status}");
    let pids: std::collections::HashSet<_> =
        tenants.iter().map(|t| t["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 3, "three distinct children");
    let body = status.to_string();
    let log = p.stderr();
    for secret in ["alice-secret-token", "bob-secret-token"] {
        assert!(!body.contains(secret), "/status shows a token");
        assert!(!log.contains(secret), "the log shows a token");
    }
    // A session belongs to its tenant: another token cannot use it.
    let mut stolen = bob.clone();
    stolen[1] = alice.last().unwrap().clone();
    let mut h: Vec<(&str, &str)> = stolen
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    h.push(("Accept", "application/json"));
    let r = post_json(
        &url,
        &h,
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    );
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn the_pool_is_bounded_and_evicts_idle_tenants() {
    let path = config("cap", json!({}));
    let p = Proxy::start(&[
        "--max-tenants",
        "1",
        "--port",
        "0",
        "--named-server-config",
        path.to_str().unwrap(),
    ]);
    let (url, first) = connect(&p, Some("one"));
    // The only tenant has a session: a second token is refused.
    let r = post_json(
        &url,
        &[("X-Api-Token", "two")],
        &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":initialize_params(json!({}))}),
    );
    assert_eq!(r.status, 503, "{r:?}");
    // Once its session ends, the first tenant is evicted for the second.
    let sid = first.last().unwrap().1.clone();
    let r = request(
        "DELETE",
        &url,
        &[("X-Api-Token", "one"), ("Mcp-Session-Id", &sid)],
        "",
    );
    assert_eq!(r.status, 200);
    let (_, second) = connect(&p, Some("two"));
    assert_eq!(env_of(&url, &second, "API_TOKEN"), "two");
    p.wait_for_log("evicted");
}
