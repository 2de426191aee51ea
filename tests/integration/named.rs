//! Named servers from the command line and from a config file, and the child's environment.

use serde_json::json;

use crate::support::*;

fn write_config(name: &str, text: &str) -> TempFile {
    TempFile::new(name, "servers.json", text)
}

#[test]
fn named_servers_from_the_command_line() {
    let one = format!("{FIXTURE} --stderr-at-start one");
    let two = format!("'{FIXTURE}' --stderr-at-start two");
    let p = Proxy::start(&[
        "--port",
        "0",
        "--named-server",
        "one",
        &one,
        "--named-server",
        "two",
        &two,
    ]);
    for name in ["one", "two"] {
        let mut c = McpClient::connect(&p.url(&format!("/servers/{name}/mcp")), json!({}));
        assert_eq!(c.tool_text("echo", json!({"message": name})), name);
    }
    // No default server: root routes are 404.
    assert_eq!(request("GET", &p.url("/sse"), &[], "").status, 404);
    assert_eq!(
        request("GET", &p.url("/servers/three/sse"), &[], "").status,
        404
    );
    // Named servers' SSE endpoint carries the prefix.
    let mut s = SseClient::get(&p.url("/servers/two/sse"), &[]);
    let first = s.next_event(DEADLINE).unwrap();
    assert!(
        first.data.starts_with("/servers/two/messages/?session_id="),
        "{first:?}"
    );
    let status = p.status();
    assert_eq!(
        status["server_instances"],
        json!({"one": "running", "two": "running"})
    );
    // The child's stderr is logged with its name.
    p.wait_for_log("[one] one");
}

#[test]
fn named_servers_from_a_config_file_skip_disabled_entries() {
    let config = json!({"mcpServers": {
        "alpha": {"command": FIXTURE, "args": [], "env": {"GREETING": "from-config"}, "timeout": 60, "transportType": "stdio"},
        "off": {"command": FIXTURE, "enabled": false},
        "gone": {"command": FIXTURE, "disabled": true},
        "broken": {"args": ["no command"]},
        "beta": {"command": FIXTURE, "headerToEnv": {"Authorization": "TOKEN"}}
    }});
    let path = write_config("ok", &config.to_string());
    let p = Proxy::start(&[
        "--port",
        "0",
        "--named-server-config",
        path.to_str().unwrap(),
        "--named-server",
        "ignored",
        "x",
    ]);
    let status = p.status();
    let names: Vec<&String> = status["server_instances"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        names,
        ["alpha", "beta"],
        "file order, disabled and invalid entries skipped"
    );
    let mut c = McpClient::connect(&p.url("/servers/alpha/mcp"), json!({}));
    assert_eq!(
        c.tool_text("env", json!({"name": "GREETING"})),
        "from-config"
    );
    let log = p.stderr();
    assert!(
        log.contains("\"broken\"") && log.contains("missing 'command'"),
        "{log}"
    );
    assert!(log.contains("--named-server is ignored"), "{log}");
}

#[test]
fn bad_config_files_exit_1_naming_the_file() {
    for (tag, text, needle) in [
        ("badjson", "{nope", "invalid JSON"),
        ("nokey", "{\"servers\": {}}", "mcpServers"),
    ] {
        let path = write_config(tag, text);
        let mut p = Proxy::spawn(&["--named-server-config", path.to_str().unwrap()], &[]);
        assert_eq!(p.wait_exit(DEADLINE), Some(1));
        let log = p.stderr();
        assert!(
            log.contains(path.to_str().unwrap()) && log.contains(needle),
            "{log}"
        );
    }
    let mut p = Proxy::spawn(&["--named-server-config", "/nonexistent/servers.json"], &[]);
    assert_eq!(p.wait_exit(DEADLINE), Some(1));
    assert!(p.stderr().contains("/nonexistent/servers.json"));
}

#[test]
fn env_cwd_and_pass_environment() {
    let dir = std::env::temp_dir();
    let dir = dir.canonicalize().unwrap();
    let p = Proxy::start_with(
        &[
            "--port",
            "0",
            "-e",
            "EXTRA",
            "set-by-flag",
            "--cwd",
            dir.to_str().unwrap(),
            "--",
            FIXTURE,
        ],
        &[("LEAKY_SECRET", "parent-only")],
    );
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    assert_eq!(c.tool_text("env", json!({"name": "EXTRA"})), "set-by-flag");
    assert_eq!(
        c.tool_text("env", json!({"name": "LEAKY_SECRET"})),
        "<unset>"
    );
    assert_ne!(c.tool_text("env", json!({"name": "PATH"})), "<unset>");
    assert_eq!(c.tool_text("cwd", json!({})), dir.to_str().unwrap());

    let p = Proxy::start_with(
        &["--port", "0", "--pass-environment", "--", FIXTURE],
        &[("LEAKY_SECRET", "parent-only")],
    );
    let mut c = McpClient::connect(&p.url("/mcp"), json!({}));
    assert_eq!(
        c.tool_text("env", json!({"name": "LEAKY_SECRET"})),
        "parent-only"
    );
}
