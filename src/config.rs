//! Turns [`RawArgs`] (and the `--named-server-config` JSON file) into validated [`Settings`].
//! Settings are built once, before anything is served, and only read afterwards.
//! No network here; the only file read is the named-server config.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use log::{LevelFilter, info, warn};
use serde_json::Value;

use crate::cli::RawArgs;
use crate::error::Error;
use crate::limits;
use crate::logging::Secret;

/// Everything the program needs, resolved.
pub struct Settings {
    pub log_level: LevelFilter,
    pub mode: Mode,
}

pub enum Mode {
    Server(ServerSettings),
    Client(ClientSettings),
}

/// Server mode: stdio children served over HTTP.
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub stateless: bool,
    /// CORS is on when this is non-empty; `*` allows any origin.
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    /// Interval of the keep-alive comment on idle SSE streams.
    pub sse_keepalive: Duration,
    /// Inbound bearer token (`--auth-token`, `MCP_PROXY_AUTH_TOKEN`).
    pub auth_token: Option<Secret<String>>,
    pub limits: ServerLimits,
    /// The default server (name `None`) first, then named servers in definition order.
    pub servers: Vec<ServerSpec>,
}

/// The caps of server mode, each from a flag with a default in `limits.rs`.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    pub max_message_bytes: usize,
    /// Per server.
    pub max_sessions: usize,
    /// `None`: sessions are never reaped for idleness.
    pub session_idle: Option<Duration>,
    /// `None`: requests wait for the child as long as it takes.
    pub request_timeout: Option<Duration>,
    /// Socket read and write timeout of HTTP connections.
    pub http_timeout: Duration,
    /// Children per `headerToEnv` server.
    pub max_tenants: usize,
}

/// One stdio server to spawn. Holds environment values, which may be secrets: no `Debug`.
#[derive(Clone)]
pub struct ServerSpec {
    /// `None` for the default server, served at the root paths.
    pub name: Option<String>,
    pub command: String,
    pub args: Vec<String>,
    /// The child's whole environment (it starts from an empty one).
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// `headerToEnv` from the config file: request header name → child environment variable;
    /// a server with any gets a child per distinct set of values (`mux::Pool`).
    pub header_to_env: Vec<(String, String)>,
}

impl ServerSpec {
    /// The name used in logs and `/status`.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("default")
    }
}

/// Client mode: stdio bridged to a remote server. Holds credentials: no `Debug`.
pub struct ClientSettings {
    pub url: String,
    pub transport: Transport,
    /// Which protocol era to speak to a Streamable HTTP remote (`--protocol-era`).
    pub era: Era,
    /// `-H` headers and `API_ACCESS_TOKEN`'s Authorization, sent on every request.
    pub headers: Vec<(String, String)>,
    pub tls: TlsVerify,
    pub auth: ClientAuth,
    /// How long the remote may stay unreachable before client mode exits 1.
    pub max_disconnected: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Auto,
    Sse,
    StreamableHttp,
}

/// `--protocol-era`: the era client mode speaks to a Streamable HTTP remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// Probe with `server/discover`; translate only for a remote that speaks only 2026-07-28.
    Auto,
    /// 2026-07-28 only: a remote that does not speak it is a start-up failure.
    Modern,
    /// The session era (2024-11-05 … 2025-11-25) only: no probe.
    Session,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TlsVerify {
    Verify,
    NoVerify,
    CaBundle(PathBuf),
}

/// How the client authenticates to the remote (besides `--headers`).
pub enum ClientAuth {
    None,
    Basic {
        username: String,
        password: String,
        digest: bool,
    },
    ClientCredentials {
        client_id: String,
        credential: ClientCredential,
        /// Discovered from the remote's metadata when absent.
        token_url: Option<String>,
    },
}

/// How an OAuth client proves who it is at the token endpoint.
pub enum ClientCredential {
    /// `client_secret_basic` (`--client-secret`).
    Secret(String),
    /// `private_key_jwt`, RFC 7523 (`--client-private-key`): the path of a PKCS#8 PEM file
    /// holding a P-256 key, read when client mode starts.
    PrivateKey(PathBuf),
}

/// The environment variables a child gets even without `--pass-environment`
/// (the MCP SDKs' `get_default_environment` on POSIX).
const SAFE_ENV: [&str; 6] = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];

pub fn log_level(raw: &RawArgs) -> Result<LevelFilter, Error> {
    if raw.debug {
        return Ok(LevelFilter::Debug);
    }
    let Some(level) = &raw.log_level else {
        return Ok(LevelFilter::Info);
    };
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => Ok(LevelFilter::Trace),
        "DEBUG" => Ok(LevelFilter::Debug),
        "INFO" => Ok(LevelFilter::Info),
        "WARNING" | "WARN" => Ok(LevelFilter::Warn),
        "ERROR" | "CRITICAL" => Ok(LevelFilter::Error),
        _ => Err(Error::Usage(format!(
            "--log-level: invalid choice {level:?} (choose from DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        ))),
    }
}

/// Builds the settings. Call after logging is set up: skipped config entries are logged.
pub fn resolve(raw: RawArgs) -> Result<Settings, Error> {
    let log_level = log_level(&raw)?;
    let is_url = raw
        .command_or_url
        .as_deref()
        .is_some_and(|c| c.starts_with("http://") || c.starts_with("https://"));
    let mode = if is_url {
        if !raw.named_servers.is_empty() {
            warn!("--named-server is ignored in client mode");
        }
        Mode::Client(client_settings(raw)?)
    } else {
        Mode::Server(server_settings(raw)?)
    };
    Ok(Settings { log_level, mode })
}

fn server_settings(raw: RawArgs) -> Result<ServerSettings, Error> {
    let port = match raw.port.as_deref().or(raw.sse_port.as_deref()) {
        None => 0,
        Some(p) => p.parse::<u16>().map_err(|_| {
            Error::Usage(format!("--port: invalid port {p:?} (expected 0 to 65535)"))
        })?,
    };
    let host = raw
        .host
        .clone()
        .or(raw.sse_host.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let base_env = base_environment(raw.pass_environment);

    let mut servers = Vec::new();
    if let Some(command) = raw.command_or_url.clone() {
        let mut env = base_env.clone();
        merge_env(&mut env, raw.env.iter().cloned());
        servers.push(ServerSpec {
            name: None,
            command,
            args: raw.args.clone(),
            env: env.into_iter().collect(),
            cwd: raw.cwd.as_ref().map(PathBuf::from),
            header_to_env: Vec::new(),
        });
    }
    let named = match &raw.named_server_config {
        Some(path) => {
            if !raw.named_servers.is_empty() {
                warn!("--named-server is ignored because --named-server-config is given");
            }
            let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
                path: path.clone(),
                reason: format!("cannot read: {e}"),
            })?;
            named_servers_from_json(path, &text, &base_env)?
        }
        None => named_servers_from_cli(&raw.named_servers, &base_env),
    };
    servers.extend(named);
    if servers.is_empty() {
        return Err(Error::NoServers);
    }
    let expose_headers = if raw.expose_headers.is_empty() {
        vec!["mcp-session-id".to_string()]
    } else {
        raw.expose_headers.clone()
    };
    let sse_keepalive = seconds(&raw.sse_keepalive, "--sse-keepalive", false)?
        .flatten()
        .unwrap_or(limits::SSE_KEEPALIVE);
    let auth_token = raw
        .auth_token
        .clone()
        .or_else(|| std::env::var("MCP_PROXY_AUTH_TOKEN").ok())
        .filter(|t| !t.is_empty())
        .map(Secret);
    let limits = ServerLimits {
        max_message_bytes: count(&raw.max_message_size, "--max-message-size", 1)?
            .unwrap_or(limits::MAX_MESSAGE_BYTES),
        max_sessions: count(&raw.max_sessions, "--max-sessions", 1)?
            .unwrap_or(limits::MAX_SESSIONS),
        max_tenants: count(&raw.max_tenants, "--max-tenants", 1)?.unwrap_or(limits::MAX_TENANTS),
        session_idle: seconds(&raw.session_idle_timeout, "--session-idle-timeout", true)?
            .unwrap_or(Some(limits::SESSION_IDLE_TIMEOUT)),
        request_timeout: seconds(&raw.request_timeout, "--request-timeout", true)?.flatten(),
        http_timeout: seconds(&raw.http_timeout, "--http-timeout", false)?
            .flatten()
            .unwrap_or(limits::HTTP_TIMEOUT),
    };
    Ok(ServerSettings {
        host,
        port,
        sse_keepalive,
        auth_token,
        limits,
        stateless: raw.stateless,
        allow_origins: raw.allow_origins,
        expose_headers,
        servers,
    })
}

/// A duration flag in seconds (fractions allowed). `Some(None)`: 0 given where 0 means "never".
fn seconds(
    value: &Option<String>,
    flag: &str,
    zero_means_never: bool,
) -> Result<Option<Option<Duration>>, Error> {
    let Some(s) = value else { return Ok(None) };
    match s.trim().parse::<f64>() {
        Ok(secs) if secs == 0.0 && zero_means_never => Ok(Some(None)),
        Ok(secs) if secs > 0.0 && secs <= 365.0 * 86_400.0 => {
            Ok(Some(Some(Duration::from_secs_f64(secs))))
        }
        _ => Err(Error::Usage(format!(
            "{flag}: invalid value {s:?} (seconds{})",
            if zero_means_never {
                ", 0 for never"
            } else {
                ", more than 0"
            }
        ))),
    }
}

/// A whole-number flag of at least `min`.
fn count(value: &Option<String>, flag: &str, min: usize) -> Result<Option<usize>, Error> {
    let Some(s) = value else { return Ok(None) };
    match s.trim().parse::<usize>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(Error::Usage(format!(
            "{flag}: invalid value {s:?} (a whole number, at least {min})"
        ))),
    }
}

/// The safe default variables, plus the whole environment with `--pass-environment`.
fn base_environment(pass_environment: bool) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for key in SAFE_ENV {
        if let Ok(value) = std::env::var(key) {
            // Shell functions exported by bash look like `() { ...`; the SDKs skip them too.
            if !value.starts_with("()") {
                env.insert(key.to_string(), value);
            }
        }
    }
    if pass_environment {
        env.extend(std::env::vars());
    }
    env
}

fn merge_env(env: &mut BTreeMap<String, String>, extra: impl Iterator<Item = (String, String)>) {
    env.extend(extra);
}

fn named_servers_from_cli(
    defs: &[(String, String)],
    base_env: &BTreeMap<String, String>,
) -> Vec<ServerSpec> {
    let mut by_name: Vec<ServerSpec> = Vec::new();
    for (name, command_line) in defs {
        let words = match split_command_line(command_line) {
            Ok(words) if !words.is_empty() => words,
            Ok(_) => {
                warn!("--named-server {name:?}: empty command, skipped");
                continue;
            }
            Err(e) => {
                warn!("--named-server {name:?}: {e}, skipped");
                continue;
            }
        };
        let mut words = words.into_iter();
        let spec = ServerSpec {
            name: Some(name.clone()),
            command: words.next().expect("checked non-empty"),
            args: words.collect(),
            env: base_env.clone().into_iter().collect(),
            cwd: None,
            header_to_env: Vec::new(),
        };
        replace_or_push(&mut by_name, spec);
    }
    by_name
}

fn replace_or_push(specs: &mut Vec<ServerSpec>, spec: ServerSpec) {
    match specs.iter_mut().find(|s| s.name == spec.name) {
        Some(existing) => {
            warn!(
                "named server {:?} is defined twice; the last definition wins",
                spec.label()
            );
            *existing = spec;
        }
        None => specs.push(spec),
    }
}

/// Parses the `mcpServers` JSON. A bad file is an error; a bad entry is skipped with a warning.
pub fn named_servers_from_json(
    path: &str,
    text: &str,
    base_env: &BTreeMap<String, String>,
) -> Result<Vec<ServerSpec>, Error> {
    let config_error = |reason: String| Error::Config {
        path: path.to_string(),
        reason,
    };
    let root: Value =
        serde_json::from_str(text).map_err(|e| config_error(format!("invalid JSON: {e}")))?;
    let servers = root
        .get("mcpServers")
        .ok_or_else(|| config_error("missing 'mcpServers' key".into()))?
        .as_object()
        .ok_or_else(|| config_error("'mcpServers' must be an object".into()))?;
    let mut specs = Vec::new();
    for (name, entry) in servers {
        match server_from_entry(name, entry, base_env) {
            Ok(Some(spec)) => specs.push(spec),
            Ok(None) => info!("named server {name:?} in {path} is disabled, skipped"),
            Err(reason) => warn!("named server {name:?} in {path}: {reason}, skipped"),
        }
    }
    Ok(specs)
}

/// One `mcpServers` entry: `Ok(None)` when disabled, `Err(reason)` when invalid.
fn server_from_entry(
    name: &str,
    entry: &Value,
    base_env: &BTreeMap<String, String>,
) -> Result<Option<ServerSpec>, String> {
    let entry = entry.as_object().ok_or("entry is not an object")?;
    let enabled = entry.get("enabled").is_none_or(truthy);
    let disabled = entry.get("disabled").is_some_and(truthy);
    if !enabled || disabled {
        return Ok(None);
    }
    if name.is_empty() || name.contains('/') {
        return Err("a name must be non-empty and contain no '/'".into());
    }
    let command = match entry.get("command") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        Some(_) => return Err("'command' must be a non-empty string".into()),
        None => return Err("missing 'command'".into()),
    };
    let args = match entry.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(scalar_to_string)
            .collect::<Option<Vec<_>>>()
            .ok_or("'args' must be a list of strings")?,
        Some(_) => return Err("'args' must be a list".into()),
    };
    let mut env = base_env.clone();
    merge_env(&mut env, string_map(entry.get("env"), "env")?.into_iter());
    let header_to_env = string_map(entry.get("headerToEnv"), "headerToEnv")?;
    Ok(Some(ServerSpec {
        name: Some(name.to_string()),
        command,
        args,
        env: env.into_iter().collect(),
        cwd: None,
        header_to_env,
    }))
}

/// Python truthiness of a JSON value, as the Python tool reads `enabled`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_map(v: Option<&Value>, field: &str) -> Result<Vec<(String, String)>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    if v.is_null() {
        return Ok(Vec::new());
    }
    let map = v
        .as_object()
        .ok_or_else(|| format!("'{field}' must be an object"))?;
    map.iter()
        .map(|(k, v)| {
            scalar_to_string(v)
                .map(|s| (k.clone(), s))
                .ok_or_else(|| format!("'{field}.{k}' must be a string"))
        })
        .collect()
}

/// Splits a command line into words as a POSIX shell would (quotes and backslashes),
/// without expanding anything. `--named-server NAME 'CMD'` uses it (Python's `shlex.split`).
pub fn split_command_line(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn client_settings(raw: RawArgs) -> Result<ClientSettings, Error> {
    let url = raw.command_or_url.clone().expect("client mode has a URL");
    let transport = match raw.transport.as_deref() {
        None | Some("auto") => Transport::Auto,
        Some("sse") => Transport::Sse,
        Some("streamablehttp") => Transport::StreamableHttp,
        Some(other) => {
            return Err(Error::Usage(format!(
                "--transport: invalid choice {other:?} (choose from sse, streamablehttp, auto)"
            )));
        }
    };
    let era = match raw.protocol_era.as_deref() {
        None | Some("auto") => Era::Auto,
        Some("modern") => Era::Modern,
        Some("session") => Era::Session,
        Some(other) => {
            return Err(Error::Usage(format!(
                "--protocol-era: invalid choice {other:?} (choose from auto, modern, session)"
            )));
        }
    };
    if era == Era::Modern && transport == Transport::Sse {
        return Err(Error::Usage(
            "--protocol-era modern needs Streamable HTTP, not --transport sse".into(),
        ));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for (k, v) in &raw.headers {
        // A repeated header: the last value wins, as in the Python tool.
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(k));
        headers.push((k.clone(), v.clone()));
    }
    if let Ok(token) = std::env::var("API_ACCESS_TOKEN")
        && !token.is_empty()
    {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    let tls = match raw.verify_ssl.as_ref() {
        None | Some(None) => TlsVerify::Verify,
        Some(Some(v)) => tls_verify_from(v),
    };
    let auth = client_auth(&raw)?;
    let max_disconnected = match raw.max_disconnected.as_deref() {
        None => crate::limits::DEFAULT_MAX_DISCONNECTED,
        Some(s) => parse_seconds(s).ok_or_else(|| {
            Error::Usage(format!(
                "--max-disconnected: invalid value {s:?} (expected a number of seconds)"
            ))
        })?,
    };
    Ok(ClientSettings {
        url,
        transport,
        era,
        headers,
        tls,
        auth,
        max_disconnected,
    })
}

/// A non-negative, finite number of seconds (fractions allowed).
fn parse_seconds(s: &str) -> Option<std::time::Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}

/// `--verify-ssl VALUE`: true/1/yes/on verify, false/0/no/off don't, anything else is a CA path.
pub fn tls_verify_from(value: &str) -> TlsVerify {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => TlsVerify::Verify,
        "0" | "false" | "no" | "off" => TlsVerify::NoVerify,
        _ => TlsVerify::CaBundle(PathBuf::from(value)),
    }
}

fn client_auth(raw: &RawArgs) -> Result<ClientAuth, Error> {
    let credential = match (&raw.client_secret, &raw.client_private_key) {
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "--client-secret and --client-private-key exclude each other".into(),
            ));
        }
        (Some(secret), None) => Some(ClientCredential::Secret(secret.clone())),
        (None, Some(path)) => Some(ClientCredential::PrivateKey(PathBuf::from(path))),
        (None, None) => None,
    };
    match (&raw.client_id, credential) {
        (Some(id), Some(credential)) => {
            return Ok(ClientAuth::ClientCredentials {
                client_id: id.clone(),
                credential,
                token_url: raw.token_url.clone(),
            });
        }
        (Some(_), None) => {
            return Err(Error::Usage(
                "--client-id needs --client-secret or --client-private-key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::Usage(
                "--client-secret and --client-private-key need --client-id".into(),
            ));
        }
        (None, None) => {}
    }
    match (&raw.username, &raw.password) {
        (Some(username), Some(password)) => Ok(ClientAuth::Basic {
            username: username.clone(),
            password: password.clone(),
            digest: raw.digest,
        }),
        (None, None) if !raw.digest => Ok(ClientAuth::None),
        _ => Err(Error::Usage(
            "Both --username and --password are required".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ServerSpec>, Error> {
        named_servers_from_json("servers.json", text, &BTreeMap::new())
    }

    #[test]
    fn config_entries_enabled_disabled_and_invalid() {
        let specs = parse(
            r#"{"mcpServers": {
                "fetch": {"command": "uvx", "args": ["mcp-server-fetch"], "timeout": 60, "transportType": "stdio"},
                "off1": {"command": "x", "enabled": false},
                "off2": {"command": "x", "disabled": true},
                "on": {"command": "y", "disabled": false, "enabled": true},
                "nocmd": {"args": []},
                "badargs": {"command": "x", "args": "a b"},
                "notobj": 5,
                "gh": {"command": "npx", "env": {"TOKEN": "t", "N": 1},
                       "headerToEnv": {"Authorization": "TOKEN"}}
            }}"#,
        )
        .expect("valid file");
        let names: Vec<_> = specs.iter().map(|s| s.label()).collect();
        assert_eq!(names, ["fetch", "on", "gh"]);
        assert_eq!(specs[0].args, ["mcp-server-fetch"]);
        let gh = &specs[2];
        assert!(gh.env.contains(&("TOKEN".into(), "t".into())));
        assert!(gh.env.contains(&("N".into(), "1".into())));
        assert_eq!(gh.header_to_env, [("Authorization".into(), "TOKEN".into())]);
    }

    #[test]
    fn bad_config_files_name_the_problem() {
        for (text, needle) in [
            ("", "invalid JSON"),
            ("{nope", "invalid JSON"),
            ("{}", "missing 'mcpServers'"),
            ("[]", "missing 'mcpServers'"),
            (r#"{"mcpServers": []}"#, "must be an object"),
        ] {
            let err = parse(text).err().expect("error");
            let msg = err.to_string();
            assert!(
                msg.contains("servers.json") && msg.contains(needle),
                "{msg}"
            );
            assert_eq!(err.exit_code(), 1);
        }
        assert!(parse(r#"{"mcpServers": {}}"#).unwrap().is_empty());
    }

    #[test]
    fn config_env_wins_over_base_env() {
        let mut base = BTreeMap::new();
        base.insert("A".to_string(), "base".to_string());
        base.insert("B".to_string(), "base".to_string());
        let specs = named_servers_from_json(
            "f",
            r#"{"mcpServers": {"s": {"command": "c", "env": {"A": "cfg"}}}}"#,
            &base,
        )
        .unwrap();
        assert_eq!(
            specs[0].env,
            [("A".into(), "cfg".into()), ("B".into(), "base".into())]
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            split_command_line(r#"uvx mcp-server-fetch --ua "a b" 'c d' e\ f"#).unwrap(),
            ["uvx", "mcp-server-fetch", "--ua", "a b", "c d", "e f"]
        );
        assert_eq!(split_command_line("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_command_line(r#""""#).unwrap(), [""]);
        assert!(split_command_line("'open").is_err());
        assert_eq!(
            split_command_line(r#""x\"y\n""#).unwrap(),
            [r#"x"y\n"#.to_string()]
        );
    }

    #[test]
    fn verify_ssl_values() {
        assert_eq!(tls_verify_from("TRUE"), TlsVerify::Verify);
        assert_eq!(tls_verify_from(" off "), TlsVerify::NoVerify);
        assert_eq!(
            tls_verify_from("certs.pem"),
            TlsVerify::CaBundle("certs.pem".into())
        );
    }

    #[test]
    fn client_credentials_take_a_secret_or_a_private_key_not_both() {
        let raw = |secret: Option<&str>, key: Option<&str>, id: Option<&str>| RawArgs {
            client_id: id.map(str::to_string),
            client_secret: secret.map(str::to_string),
            client_private_key: key.map(str::to_string),
            ..RawArgs::default()
        };
        match client_auth(&raw(None, Some("k.pem"), Some("cid"))) {
            Ok(ClientAuth::ClientCredentials {
                client_id,
                credential: ClientCredential::PrivateKey(path),
                token_url: None,
            }) => assert_eq!((client_id.as_str(), path), ("cid", PathBuf::from("k.pem"))),
            _ => panic!("expected private_key_jwt client credentials"),
        }
        assert!(matches!(
            client_auth(&raw(Some("s"), None, Some("cid"))),
            Ok(ClientAuth::ClientCredentials {
                credential: ClientCredential::Secret(_),
                ..
            })
        ));
        for (secret, key, id, needle) in [
            (Some("s"), Some("k.pem"), Some("cid"), "exclude each other"),
            (None, None, Some("cid"), "--client-id needs"),
            (None, Some("k.pem"), None, "need --client-id"),
            (Some("s"), None, None, "need --client-id"),
        ] {
            let err = client_auth(&raw(secret, key, id))
                .err()
                .expect("usage error");
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn protocol_era_choices() {
        let raw = |era: Option<&str>, transport: Option<&str>| RawArgs {
            command_or_url: Some("http://127.0.0.1:1/mcp".into()),
            protocol_era: era.map(str::to_string),
            transport: transport.map(str::to_string),
            ..RawArgs::default()
        };
        for (era, expected) in [
            (None, Era::Auto),
            (Some("auto"), Era::Auto),
            (Some("modern"), Era::Modern),
            (Some("session"), Era::Session),
        ] {
            let settings = client_settings(raw(era, None)).expect("valid");
            assert_eq!(settings.era, expected, "{era:?}");
        }
        for (era, transport, needle) in [
            (Some("2026"), None, "invalid choice"),
            (Some("modern"), Some("sse"), "needs Streamable HTTP"),
        ] {
            let err = client_settings(raw(era, transport))
                .err()
                .expect("usage error");
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn log_level_any_case_and_debug_wins() {
        let mut raw = RawArgs {
            log_level: Some("warning".into()),
            ..RawArgs::default()
        };
        assert_eq!(log_level(&raw).unwrap(), LevelFilter::Warn);
        raw.debug = true;
        assert_eq!(log_level(&raw).unwrap(), LevelFilter::Debug);
        raw.debug = false;
        raw.log_level = Some("loud".into());
        assert_eq!(log_level(&raw).err().unwrap().exit_code(), 2);
    }
}
