//! The one HTTP client of client mode: a ureq `Agent` (our TLS connector, `localhost` resolver,
//! connect timeout, statuses returned rather than raised), the `-H` headers on every request,
//! and authentication with one retry after a 401.
//! Knows nothing of MCP: transports decide what a status means.

use std::time::Duration;

use ureq::http::{self, Response};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
use ureq::{Agent, AsSendBody, Body};

use super::auth::Auth;
use super::tls;
use super::url::Url;
use crate::config::ClientSettings;
use crate::error::Error;
use crate::limits;
use crate::logging::Secret;

/// One request. Header values here are not secret (Accept, session id, protocol version, the
/// 2026-07-28 era's `Mcp-*` headers).
pub struct Req<'a> {
    pub method: http::Method,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    /// Content type and bytes.
    pub body: Option<(&'static str, &'a [u8])>,
    /// Bound on the wait for the response head; `None` for POSTs whose answer may take minutes.
    pub head_timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    pub fn new(method: http::Method, url: &'a str) -> Req<'a> {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: None,
            head_timeout: Some(limits::CLIENT_HEAD_TIMEOUT),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Req<'a> {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The remote was not reached (refused, no route, DNS, TLS handshake): safe to send again.
    Unreachable(String),
    /// The connection broke after the request went out: it may have been processed.
    Broken(String),
    /// Credentials could not be obtained (token endpoint or discovery failed).
    Auth(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unreachable(m) => write!(f, "cannot connect: {m}"),
            SendError::Broken(m) => write!(f, "connection lost: {m}"),
            SendError::Auth(m) => write!(f, "authentication failed: {m}"),
        }
    }
}

/// Sends requests without authentication: the token endpoint and discovery documents use it.
pub struct Plain {
    agent: Agent,
}

impl Plain {
    pub fn send(
        &self,
        req: &Req,
        extra: &[(String, Secret<String>)],
    ) -> Result<Response<Body>, SendError> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.url);
        for (name, value) in extra {
            builder = builder.header(name.as_str(), value.expose().as_str());
        }
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        match req.body {
            Some((content_type, bytes)) => self.run(
                builder.header("Content-Type", content_type).body(bytes),
                req.head_timeout,
            ),
            None => self.run(builder.body(()), req.head_timeout),
        }
    }

    /// Sends a built request (with or without a body), waiting at most `head_timeout` for the
    /// response head.
    fn run(
        &self,
        built: Result<http::Request<impl AsSendBody>, http::Error>,
        head_timeout: Option<Duration>,
    ) -> Result<Response<Body>, SendError> {
        let request = built.map_err(|e| SendError::Unreachable(format!("invalid request: {e}")))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_recv_response(head_timeout)
            .build();
        self.agent.run(request).map_err(classify)
    }
}

/// Sorts a ureq error into "never reached the server" and "broke on the way".
fn classify(e: ureq::Error) -> SendError {
    use std::io::ErrorKind::*;
    use ureq::Timeout;
    let text = e.to_string();
    match &e {
        ureq::Error::Io(io) => match io.kind() {
            ConnectionRefused | NotFound | AddrNotAvailable | HostUnreachable
            | NetworkUnreachable | PermissionDenied => SendError::Unreachable(text),
            _ => SendError::Broken(text),
        },
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => SendError::Unreachable(text),
        _ => SendError::Broken(text),
    }
}

/// The authenticated client transports use.
pub struct Http {
    plain: Plain,
    /// `-H` headers; values may be credentials.
    headers: Vec<(String, Secret<String>)>,
    auth: Auth,
}

impl Http {
    pub fn new(settings: &ClientSettings) -> Result<Http, Error> {
        let tls = tls::client_config(&settings.tls)?;
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(limits::CLIENT_CONNECT_TIMEOUT))
            .user_agent(concat!("mcp-proxy/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry our credentials elsewhere; MCP endpoints do not move.
            .max_redirects(0)
            .build();
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(TcpConnector::default())
                .chain(tls::TlsConnector::new(tls));
        let agent = Agent::with_parts(config, connector, tls::LocalhostResolver::default());
        let server = Url::parse(&settings.url)
            .ok_or_else(|| Error::Usage(format!("invalid URL {:?}", settings.url)))?;
        Ok(Http {
            plain: Plain { agent },
            headers: settings
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Secret(v.clone())))
                .collect(),
            auth: Auth::from_settings(&settings.auth, &server)?,
        })
    }

    /// Sends with the `-H` headers and credentials; after a 401, renews the credentials once
    /// and sends again. Any status, 401 included, is returned as a response.
    pub fn send(&self, req: &Req) -> Result<Response<Body>, SendError> {
        let url = Url::parse(req.url)
            .ok_or_else(|| SendError::Unreachable(format!("invalid URL {:?}", req.url)))?;
        let mut renewed = false;
        loop {
            let authorization = self
                .auth
                .authorization(&self.plain, req.method.as_str(), &url)?;
            let mut headers: Vec<(String, Secret<String>)> =
                Vec::with_capacity(self.headers.len() + 1);
            for (name, value) in &self.headers {
                // Configured authentication overrides an `Authorization` from -H, as in the Python tool.
                if authorization.is_none() || !name.eq_ignore_ascii_case("authorization") {
                    headers.push((name.clone(), value.clone()));
                }
            }
            if let Some(value) = authorization {
                headers.push(("Authorization".into(), value));
            }
            let response = self.plain.send(req, &headers)?;
            if response.status() == 401 && !renewed {
                let challenge = header(&response, "www-authenticate");
                if self
                    .auth
                    .renew_after_401(&self.plain, challenge.as_deref(), &url)?
                {
                    renewed = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }
}

/// A response header as text.
pub fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The media type of a response, lowercase, without parameters.
pub fn media_type(response: &Response<Body>) -> String {
    header(response, "content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The body read as text, at most `cap` bytes (an error beyond).
pub fn read_body(response: Response<Body>, cap: u64) -> Result<String, String> {
    response
        .into_body()
        .into_with_config()
        .limit(cap)
        .read_to_string()
        .map_err(|e| e.to_string())
}

/// The body of an error response, lossily decoded, at most [`limits::REFUSAL_BODY_BYTES`];
/// never fails (what cannot be read is left out).
pub fn read_refusal(response: Response<Body>) -> String {
    read_lossy(response, limits::REFUSAL_BODY_BYTES)
}

/// The start of an error body read by [`read_refusal`], as `error_snippet` quotes it.
pub fn quote_body(text: &str) -> String {
    let mut end = text.len().min(limits::ERROR_BODY_QUOTE_BYTES as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    crate::logging::escape_control(text[..end].trim()).into_owned()
}

/// The start of an error body, for a log line or an error message; never fails.
pub fn error_snippet(response: Response<Body>) -> String {
    quote_body(&read_lossy(response, limits::ERROR_BODY_QUOTE_BYTES))
}

/// At most `cap` bytes of the body, lossily decoded. Best effort: an error body we cannot read
/// adds nothing to the status line.
fn read_lossy(response: Response<Body>, cap: u64) -> String {
    let mut bytes = Vec::new();
    let reader = response.into_body().into_reader();
    let _ = std::io::Read::read_to_end(&mut std::io::Read::take(reader, cap), &mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
