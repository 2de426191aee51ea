//! The command line, parsed with lexopt into [`RawArgs`]: what the user typed, nothing resolved.
//! Flag names and meanings are those of the Python `mcp-proxy` so either can be swapped in.
//! This module opens no file and no socket; `config.rs` turns `RawArgs` into settings.

use std::ffi::OsString;

use lexopt::prelude::*;

use crate::error::Error;

/// What the user asked for.
pub enum Parsed {
    Run(Box<RawArgs>),
    Help,
    Version,
}

/// The command line as typed. Repeatable flags keep every occurrence in order.
#[derive(Default)]
pub struct RawArgs {
    pub command_or_url: Option<String>,
    pub args: Vec<String>,
    // client mode
    pub headers: Vec<(String, String)>,
    pub transport: Option<String>,
    pub protocol_era: Option<String>,
    /// `Some(None)`: `--verify-ssl` without a value.
    pub verify_ssl: Option<Option<String>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `--client-private-key FILE`: PEM key for `private_key_jwt` client authentication.
    pub client_private_key: Option<String>,
    pub token_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub digest: bool,
    pub max_disconnected: Option<String>,
    // stdio servers
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub pass_environment: bool,
    pub log_level: Option<String>,
    pub debug: bool,
    pub named_servers: Vec<(String, String)>,
    pub named_server_config: Option<String>,
    // HTTP server
    pub port: Option<String>,
    pub host: Option<String>,
    pub sse_port: Option<String>,
    pub sse_host: Option<String>,
    pub stateless: bool,
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    pub sse_keepalive: Option<String>,
    pub auth_token: Option<String>,
    pub max_message_size: Option<String>,
    pub max_sessions: Option<String>,
    pub max_tenants: Option<String>,
    pub session_idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub http_timeout: Option<String>,
}

pub const USAGE: &str = "\
usage: mcp-proxy [-h] [--version] [-H KEY VALUE]
                 [--transport {sse,streamablehttp,auto}] [--verify-ssl [VALUE]]
                 [--no-verify-ssl] [-e KEY VALUE] [--cwd CWD]
                 [--client-id CLIENT_ID] [--client-secret CLIENT_SECRET]
                 [--client-private-key FILE] [--token-url TOKEN_URL]
                 [--username USERNAME] [--password PASSWORD] [--digest]
                 [--max-disconnected SECONDS] [--protocol-era {auto,modern,session}]
                 [--pass-environment | --no-pass-environment]
                 [--log-level LEVEL] [--debug | --no-debug]
                 [--named-server NAME COMMAND_STRING]
                 [--named-server-config FILE_PATH] [--port PORT] [--host HOST]
                 [--stateless | --no-stateless] [--sse-port SSE_PORT]
                 [--sse-host SSE_HOST]
                 [--allow-origin ALLOW_ORIGIN [ALLOW_ORIGIN ...]]
                 [--expose-header HEADER] [--sse-keepalive SECONDS]
                 [--auth-token TOKEN] [--max-message-size BYTES] [--max-sessions N]
                 [--max-tenants N]
                 [--session-idle-timeout SECONDS] [--request-timeout SECONDS]
                 [--http-timeout SECONDS]
                 [command_or_url] [args ...]";

pub const HELP: &str = "
Start the MCP proxy in one of two possible modes: as a client or a server.

positional arguments:
  command_or_url        Command or URL to connect to. When a URL (http:// or https://), runs a
                        stdio-to-remote client. Otherwise the command of the default stdio server.
                        Default: the SSE_URL environment variable.
  args                  Arguments of the default server's command (put them after --).

options:
  -h, --help            show this help message and exit
  --version             show the version and exit

SSE/StreamableHTTP client options:
  -H, --headers KEY VALUE
                        Header sent on every request to the remote server. Repeatable.
  --transport {sse,streamablehttp,auto}
                        Transport to the remote server. Default: auto (Streamable HTTP, falling
                        back to SSE as the MCP specification describes).
  --protocol-era {auto,modern,session}
                        Protocol era at the remote (Streamable HTTP). auto (default): probe with
                        server/discover; a remote that speaks only 2026-07-28 gets the local
                        client's messages translated, any other gets them unchanged. modern:
                        2026-07-28 or nothing. session: no probe (2024-11-05 .. 2025-11-25).
  --verify-ssl [VALUE]  TLS verification: no value/true/1/yes/on = verify; false/0/no/off = don't;
                        anything else = path of a PEM CA bundle.
  --no-verify-ssl       Disable TLS verification (alias for --verify-ssl false).
  --client-id CLIENT_ID           OAuth2 client ID (client credentials grant)
  --client-secret CLIENT_SECRET   OAuth2 client secret (client_secret_basic)
  --client-private-key FILE       OAuth2 client key instead of a secret: a PKCS#8 PEM file
                                  with a P-256 key; each token request carries a JWT signed
                                  with it (private_key_jwt, RFC 7523, ES256) whose audience is
                                  the discovered issuer, or the --token-url
  --token-url TOKEN_URL           OAuth2 token endpoint (discovered when absent)
  --username USERNAME   HTTP Basic user
  --password PASSWORD   HTTP Basic password
  --digest              Use HTTP Digest instead of Basic with --username/--password
  --max-disconnected SECONDS
                        How long the remote may stay unreachable (reconnecting with backoff,
                        requests queued) before the proxy gives up and exits 1. Default: 300.
  Environment: API_ACCESS_TOKEN=T sends 'Authorization: Bearer T'.

stdio server options:
  -e, --env KEY VALUE   Environment variable for the default server. Repeatable.
  --cwd CWD             Working directory of the default server.
  --pass-environment, --no-pass-environment
                        Pass the proxy's whole environment to every server.
  --log-level LEVEL     DEBUG, INFO, WARNING, ERROR or CRITICAL (any case). Default INFO.
  --debug, --no-debug   Same as --log-level DEBUG; wins over --log-level.
  --named-server NAME COMMAND_STRING
                        A named stdio server served under /servers/NAME/. Repeatable.
  --named-server-config FILE_PATH
                        JSON file of named servers ({\"mcpServers\": {...}}); when given,
                        --named-server is ignored.

HTTP server options:
  --port PORT           Port to listen on. Default: a free port (printed at start).
  --host HOST           Address to listen on. Default: 127.0.0.1.
  --stateless, --no-stateless
                        Streamable HTTP without sessions. Default: off.
  --sse-port SSE_PORT   (deprecated) Same as --port.
  --sse-host SSE_HOST   (deprecated) Same as --host.
  --allow-origin ALLOW_ORIGIN [ALLOW_ORIGIN ...]
                        Origins allowed by CORS. Repeatable. Default: no CORS.
  --expose-header HEADER
                        Header exposed to CORS clients. Repeatable. Default: mcp-session-id.
  --sse-keepalive SECONDS
                        Interval of the keep-alive comment on idle SSE streams; a client that
                        vanished is noticed within two intervals. Default: 15.
  --auth-token TOKEN    Require 'Authorization: Bearer TOKEN' on every request but /health
                        (401 otherwise). Also read from MCP_PROXY_AUTH_TOKEN, which keeps it
                        out of the process list. Default: no authentication.

Limits (server mode; each logs a line when it triggers):
  --max-message-size BYTES
                        Largest message on any input: bigger HTTP bodies get 413, bigger lines
                        from a child are dropped. Default: 33554432 (32 MiB).
  --max-sessions N      Open sessions per server; more get 503. Default: 10000.
  --max-tenants N       Children per server with headerToEnv (one per distinct set of mapped
                        header values); a new one evicts the least recently used idle one, or
                        gets 503. Idle ones stop after 10 minutes. Default: 16.
  --session-idle-timeout SECONDS
                        A session with no request, no stream and nothing in flight for this
                        long is closed. 0 = never. Default: 1800.
  --request-timeout SECONDS
                        A request the child has not answered in this long gets a JSON-RPC error
                        and the child gets notifications/cancelled. 0 = never. Default: 0.
  --http-timeout SECONDS
                        Read and write timeout of HTTP connections: an idle keep-alive
                        connection is closed, a client that stops reading is dropped. Default: 120.

Routes (server mode): /mcp (Streamable HTTP), /sse and /messages/ (legacy SSE),
/servers/NAME/... for named servers, /status.

Examples:
  mcp-proxy http://localhost:8080/sse
  mcp-proxy --transport streamablehttp http://localhost:8080/mcp
  mcp-proxy --headers Authorization 'Bearer YOUR_TOKEN' http://localhost:8080/sse
  mcp-proxy --port 8080 -- your-command --arg1 value1
  mcp-proxy --named-server fetch 'uvx mcp-server-fetch' --port 8080
  mcp-proxy your-command --port 8080 -e KEY VALUE --allow-origin='*'
";

/// Parses the process's own command line, with `SSE_URL` as the default `command_or_url`.
pub fn parse_env() -> Result<Parsed, Error> {
    let sse_url = std::env::var("SSE_URL").ok().filter(|s| !s.is_empty());
    parse(lexopt::Parser::from_env(), sse_url)
}

/// Parses arguments (without the program name).
#[cfg(test)]
pub fn parse_from<I, S>(args: I) -> Result<Parsed, Error>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut all: Vec<OsString> = vec!["mcp-proxy".into()];
    all.extend(args.into_iter().map(Into::into));
    parse(lexopt::Parser::from_iter(all), None)
}

fn parse(mut p: lexopt::Parser, default_url: Option<String>) -> Result<Parsed, Error> {
    let mut a = RawArgs::default();
    let mut positionals: Vec<String> = Vec::new();
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Long("version") => return Ok(Parsed::Version),
            Short('H') | Long("headers") => a.headers.push(pair(&mut p, "--headers")?),
            Long("transport") => a.transport = Some(string(&mut p, "--transport")?),
            Long("protocol-era") => a.protocol_era = Some(string(&mut p, "--protocol-era")?),
            Long("verify-ssl") => a.verify_ssl = Some(verify_ssl_value(&mut p)?),
            Long("no-verify-ssl") => a.verify_ssl = Some(Some("false".into())),
            Long("client-id") => a.client_id = Some(string(&mut p, "--client-id")?),
            Long("client-secret") => a.client_secret = Some(string(&mut p, "--client-secret")?),
            Long("client-private-key") => {
                a.client_private_key = Some(string(&mut p, "--client-private-key")?)
            }
            Long("token-url") => a.token_url = Some(string(&mut p, "--token-url")?),
            Long("username") => a.username = Some(string(&mut p, "--username")?),
            Long("password") => a.password = Some(string(&mut p, "--password")?),
            Long("digest") => a.digest = true,
            Long("max-disconnected") => {
                a.max_disconnected = Some(string(&mut p, "--max-disconnected")?)
            }
            Short('e') | Long("env") => a.env.push(pair(&mut p, "--env")?),
            Long("cwd") => a.cwd = Some(string(&mut p, "--cwd")?),
            Long("pass-environment") => a.pass_environment = true,
            Long("no-pass-environment") => a.pass_environment = false,
            Long("log-level") => a.log_level = Some(string(&mut p, "--log-level")?),
            Long("debug") => a.debug = true,
            Long("no-debug") => a.debug = false,
            Long("named-server") => a.named_servers.push(pair(&mut p, "--named-server")?),
            Long("named-server-config") => {
                a.named_server_config = Some(string(&mut p, "--named-server-config")?)
            }
            Long("port") => a.port = Some(string(&mut p, "--port")?),
            Long("host") => a.host = Some(string(&mut p, "--host")?),
            Long("sse-port") => a.sse_port = Some(string(&mut p, "--sse-port")?),
            Long("sse-host") => a.sse_host = Some(string(&mut p, "--sse-host")?),
            Long("stateless") => a.stateless = true,
            Long("no-stateless") => a.stateless = false,
            Long("allow-origin") => {
                a.allow_origins.push(string(&mut p, "--allow-origin")?);
                // argparse's nargs="+": further values follow, but only ones that are origins,
                // so `--allow-origin '*' uvx srv` keeps `uvx srv` as the command (the Python
                // tool swallows it).
                while let Some(next) = next_value_if(&mut p, looks_like_origin) {
                    a.allow_origins.push(next);
                }
            }
            Long("expose-header") => a.expose_headers.push(string(&mut p, "--expose-header")?),
            Long("sse-keepalive") => a.sse_keepalive = Some(string(&mut p, "--sse-keepalive")?),
            Long("auth-token") => a.auth_token = Some(string(&mut p, "--auth-token")?),
            Long("max-message-size") => {
                a.max_message_size = Some(string(&mut p, "--max-message-size")?)
            }
            Long("max-sessions") => a.max_sessions = Some(string(&mut p, "--max-sessions")?),
            Long("max-tenants") => a.max_tenants = Some(string(&mut p, "--max-tenants")?),
            Long("session-idle-timeout") => {
                a.session_idle_timeout = Some(string(&mut p, "--session-idle-timeout")?)
            }
            Long("request-timeout") => {
                a.request_timeout = Some(string(&mut p, "--request-timeout")?)
            }
            Long("http-timeout") => a.http_timeout = Some(string(&mut p, "--http-timeout")?),
            Value(v) => positionals.push(into_string(v, "argument")?),
            _ => return Err(usage(arg.unexpected())),
        }
    }
    let mut positionals = positionals.into_iter();
    a.command_or_url = positionals.next().or(default_url);
    a.args = positionals.collect();
    Ok(Parsed::Run(Box::new(a)))
}

/// `--verify-ssl` takes an optional value: `--verify-ssl=X`, or a following word that is neither
/// a flag nor a URL (argparse would take a URL too and treat it as a CA bundle path).
fn verify_ssl_value(p: &mut lexopt::Parser) -> Result<Option<String>, Error> {
    if let Some(v) = p.optional_value() {
        return into_string(v, "--verify-ssl").map(Some);
    }
    Ok(next_value_if(p, |s| {
        !s.starts_with('-') && !s.starts_with("http://") && !s.starts_with("https://")
    }))
}

fn next_value_if(p: &mut lexopt::Parser, accept: impl Fn(&str) -> bool) -> Option<String> {
    let mut raw = p.try_raw_args()?;
    let next = raw.peek()?.to_str()?;
    if !accept(next) {
        return None;
    }
    raw.next().and_then(|s| s.into_string().ok())
}

/// `*`, `null`, or `scheme://host[:port]` with no path: what a browser sends as `Origin`.
pub fn looks_like_origin(s: &str) -> bool {
    if s == "*" || s == "null" {
        return true;
    }
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !rest.contains('/')
        }
        None => false,
    }
}

fn pair(p: &mut lexopt::Parser, flag: &str) -> Result<(String, String), Error> {
    let key = string(p, flag)?;
    let value = string(p, flag)?;
    Ok((key, value))
}

fn string(p: &mut lexopt::Parser, flag: &str) -> Result<String, Error> {
    into_string(p.value().map_err(usage)?, flag)
}

fn into_string(v: OsString, what: &str) -> Result<String, Error> {
    v.into_string()
        .map_err(|v| Error::Usage(format!("{what}: value {v:?} is not valid UTF-8")))
}

fn usage(e: lexopt::Error) -> Error {
    Error::Usage(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RawArgs {
        match parse_from(args.iter().copied()) {
            Ok(Parsed::Run(a)) => *a,
            Ok(_) => panic!("expected a run for {args:?}"),
            Err(e) => panic!("unexpected error for {args:?}: {e}"),
        }
    }

    #[test]
    fn everything_after_double_dash_belongs_to_the_child() {
        let a = run(&["--port", "8080", "--", "uvx", "srv", "--user-agent=X", "-e"]);
        assert_eq!(a.command_or_url.as_deref(), Some("uvx"));
        assert_eq!(a.args, ["srv", "--user-agent=X", "-e"]);
        assert_eq!(a.port.as_deref(), Some("8080"));
    }

    #[test]
    fn options_may_follow_the_command() {
        let a = run(&[
            "your-command",
            "--port",
            "8080",
            "-e",
            "K",
            "V",
            "-e",
            "A",
            "B",
        ]);
        assert_eq!(a.command_or_url.as_deref(), Some("your-command"));
        assert_eq!(a.env, [("K".into(), "V".into()), ("A".into(), "B".into())]);
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let err = parse_from(["uvx", "--user-agent=X"]).err().expect("error");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--user-agent"), "{err}");
    }

    #[test]
    fn missing_value_is_a_usage_error() {
        let err = parse_from(["--port"]).err().expect("error");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn allow_origin_accumulates_and_leaves_the_command_alone() {
        let a = run(&[
            "--allow-origin",
            "*",
            "uvx",
            "srv",
            "--allow-origin",
            "http://a.example",
            "https://b.example:8443",
        ]);
        assert_eq!(
            a.allow_origins,
            ["*", "http://a.example", "https://b.example:8443"]
        );
        assert_eq!(a.command_or_url.as_deref(), Some("uvx"));
        assert_eq!(a.args, ["srv"]);
    }

    #[test]
    fn allow_origin_does_not_swallow_a_remote_url() {
        let a = run(&["--allow-origin", "*", "http://host:8080/sse"]);
        assert_eq!(a.allow_origins, ["*"]);
        assert_eq!(a.command_or_url.as_deref(), Some("http://host:8080/sse"));
    }

    #[test]
    fn verify_ssl_value_is_optional_and_never_a_url() {
        assert_eq!(
            run(&["--verify-ssl", "http://x/sse"]).verify_ssl,
            Some(None)
        );
        assert_eq!(
            run(&["--verify-ssl", "false", "http://x/sse"]).verify_ssl,
            Some(Some("false".into()))
        );
        assert_eq!(
            run(&["--verify-ssl=ca.pem", "http://x/sse"]).verify_ssl,
            Some(Some("ca.pem".into()))
        );
        assert_eq!(
            run(&["--no-verify-ssl"]).verify_ssl,
            Some(Some("false".into()))
        );
        assert_eq!(
            run(&["--verify-ssl", "--debug"]).verify_ssl,
            Some(None),
            "a following flag is not the value"
        );
    }

    #[test]
    fn named_servers_and_headers_keep_order() {
        let a = run(&[
            "--named-server",
            "fetch",
            "uvx mcp-server-fetch",
            "-H",
            "X-A",
            "1",
            "--named-server",
            "two",
            "cmd 'a b'",
        ]);
        assert_eq!(
            a.named_servers,
            [
                ("fetch".into(), "uvx mcp-server-fetch".into()),
                ("two".into(), "cmd 'a b'".into())
            ]
        );
        assert_eq!(a.headers, [("X-A".into(), "1".into())]);
    }

    #[test]
    fn help_and_version_return_early() {
        assert!(matches!(parse_from(["--help"]), Ok(Parsed::Help)));
        assert!(matches!(parse_from(["-h", "--bogus"]), Ok(Parsed::Help)));
        assert!(matches!(parse_from(["--version"]), Ok(Parsed::Version)));
    }

    #[test]
    fn boolean_pairs_last_one_wins() {
        let a = run(&[
            "--stateless",
            "--no-stateless",
            "--debug",
            "--no-debug",
            "x",
        ]);
        assert!(!a.stateless && !a.debug);
        let a = run(&["--no-pass-environment", "--pass-environment", "x"]);
        assert!(a.pass_environment);
    }

    #[test]
    fn origin_shapes() {
        assert!(looks_like_origin("*"));
        assert!(looks_like_origin("http://localhost:3000"));
        assert!(!looks_like_origin("http://host/sse"));
        assert!(!looks_like_origin("uvx"));
        assert!(!looks_like_origin("://x"));
    }
}
