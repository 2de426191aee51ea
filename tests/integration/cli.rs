//! The command line: usage errors, help, version, and the "nothing to serve" exit.

use std::time::Duration;

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut p = Proxy::spawn(args, env);
    let code = p.wait_exit(DEADLINE);
    (code, p.stderr())
}

#[test]
fn unknown_flag_is_a_usage_error_with_exit_2() {
    let (code, out) = run(&["--bogus-flag", "x"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--bogus-flag"), "{out}");
    let (code, out) = run(&["--port", "notaport", "x"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--port"), "{out}");
    let (code, _) = run(&["--log-level", "chatty", "x"], &[]);
    assert_eq!(code, Some(2));
}

#[test]
fn no_server_exits_1_with_the_seed_message() {
    let (code, out) = run(&[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("Either a command_or_url for a default server or at least one --named-server"),
        "{out}"
    );
}

#[test]
fn version_and_help() {
    let (code, out) = run(&["--version"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("mcp-proxy "), "{out}");
    let (code, out) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for flag in [
        "--named-server-config",
        "--allow-origin",
        "--stateless",
        "--transport",
        "--sse-port",
    ] {
        assert!(out.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn sse_url_environment_variable_is_the_default_command() {
    // SSE_URL names a command here (not a URL), so it becomes the default server.
    let p = Proxy::start_with(&["--port", "0"], &[("SSE_URL", FIXTURE)]);
    wait_until(DEADLINE, "the default server to run", || {
        p.status()["server_instances"]["default"] == "running"
    });
}

#[test]
fn deprecated_sse_port_and_sse_host_work() {
    let port = free_port();
    let p = Proxy::start(&[
        "--sse-port",
        &port.to_string(),
        "--sse-host",
        "127.0.0.1",
        "--",
        FIXTURE,
    ]);
    assert_eq!(p.port, port);
}

#[test]
fn busy_port_exits_1() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let mut p = Proxy::spawn(&["--port", &port, "--", FIXTURE], &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(p.stderr().contains("cannot listen"), "{}", p.stderr());
}
