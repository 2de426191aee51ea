//! OAuth2 client credentials (the MCP `oauth-client-credentials` extension, spec section L9):
//! `grant_type=client_credentials`, the client authenticated with `client_secret_basic` or with
//! `private_key_jwt` (an RFC 7523 assertion, `jwt.rs`), the RFC 8707 `resource` parameter, a
//! cached token renewed [`TOKEN_EARLY_RENEWAL`] before it expires, and a new token after a 401.
//!
//! Without `--token-url` the token endpoint is discovered after the first 401 (L3/L4):
//! 1. `WWW-Authenticate: Bearer resource_metadata="…"`, else the well-known protected resource
//!    metadata URLs (with the server's path, then without);
//! 2. the metadata's `authorization_servers[0]`;
//! 3. its RFC 8414 / OpenID metadata (path insertion rules), whose `token_endpoint` we use and
//!    whose `issuer` is the audience of our assertions.
//!
//! No lock is held across a request: two threads that both find the token stale may both fetch
//! one, which is harmless.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{debug, info};
use serde_json::Value;
use ureq::http::Method;

use super::auth::{param, parse_challenge};
use super::http::{Plain, Req, SendError, error_snippet, read_body};
use super::jwt::{self, SigningKey};
use super::url::{self, Url};
use crate::encoding::{base64, form, percent_encode};
use crate::limits::{METADATA_MAX_BYTES, TOKEN_EARLY_RENEWAL};
use crate::logging::Secret;

/// How the client proves who it is at the token endpoint.
pub enum ClientProof {
    /// `client_secret_basic`: id and secret in `Authorization: Basic`.
    Secret(Secret<String>),
    /// `private_key_jwt` (RFC 7523 §2.2): a fresh signed assertion in each token request.
    PrivateKey(Box<SigningKey>),
}

pub struct ClientCredentials {
    client_id: String,
    proof: ClientProof,
    /// The canonical MCP server URL, sent as `resource`.
    resource: String,
    /// Configured, or discovered after the first 401.
    endpoint: Mutex<Option<TokenEndpoint>>,
    token: Mutex<Option<Token>>,
}

/// Where tokens come from.
#[derive(Clone)]
struct TokenEndpoint {
    url: String,
    /// The `aud` of our assertions: the authorization server's issuer identifier when it was
    /// discovered (what servers check, e.g. the conformance suite), else the token endpoint URL,
    /// which RFC 7523 §3 also allows.
    audience: String,
}

impl TokenEndpoint {
    fn configured(url: String) -> TokenEndpoint {
        TokenEndpoint {
            audience: url.clone(),
            url,
        }
    }
}

#[derive(Clone)]
struct Token {
    value: Secret<String>,
    /// When to fetch a new one; `None` when the server gave no `expires_in` (used until a 401).
    renew_at: Option<Instant>,
}

impl ClientCredentials {
    pub fn new(
        client_id: String,
        proof: ClientProof,
        token_url: Option<String>,
        server: &Url,
    ) -> ClientCredentials {
        let mut resource = format!("{}{}", server.base(), server.path);
        if resource.ends_with('/') && server.path.len() > 1 {
            resource.pop();
        }
        ClientCredentials {
            client_id,
            proof,
            resource,
            endpoint: Mutex::new(token_url.map(TokenEndpoint::configured)),
            token: Mutex::new(None),
        }
    }

    /// `Bearer <token>`: the cached token while fresh, else a new one. `None` while the token
    /// endpoint is still unknown (it is discovered from the first 401).
    pub fn bearer(&self, plain: &Plain) -> Result<Option<Secret<String>>, SendError> {
        if let Some(token) = self.fresh_token() {
            return Ok(Some(bearer(token.value.expose())));
        }
        let Some(endpoint) = self.known_endpoint() else {
            return Ok(None);
        };
        let token = self.fetch(plain, &endpoint)?;
        Ok(Some(bearer(&token)))
    }

    /// After a 401: discovers the token endpoint if needed and fetches a new token.
    pub fn renew(
        &self,
        plain: &Plain,
        www_authenticate: Option<&str>,
        server: &Url,
    ) -> Result<(), SendError> {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).take();
        let endpoint = match self.known_endpoint() {
            Some(endpoint) => endpoint,
            None => {
                let endpoint = discover_token_endpoint(plain, www_authenticate, server)?;
                info!(
                    "OAuth token endpoint discovered: {} (issuer {})",
                    endpoint.url, endpoint.audience
                );
                *self.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(endpoint.clone());
                endpoint
            }
        };
        self.fetch(plain, &endpoint).map(|_| ())
    }

    fn known_endpoint(&self) -> Option<TokenEndpoint> {
        self.endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fresh_token(&self) -> Option<Token> {
        let token = self
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        match token.renew_at {
            Some(at) if Instant::now() >= at => None,
            _ => Some(token),
        }
    }

    fn fetch(&self, plain: &Plain, endpoint: &TokenEndpoint) -> Result<String, SendError> {
        let token_url = endpoint.url.as_str();
        let mut auth = Vec::new();
        let body = match &self.proof {
            ClientProof::Secret(secret) => {
                // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
                let credentials = format!(
                    "{}:{}",
                    percent_encode(&self.client_id),
                    percent_encode(secret.expose())
                );
                auth.push((
                    "Authorization".to_string(),
                    Secret(format!("Basic {}", base64(credentials.as_bytes()))),
                ));
                Secret(form(&[
                    ("grant_type", "client_credentials"),
                    ("resource", &self.resource),
                ]))
            }
            ClientProof::PrivateKey(key) => {
                let assertion = key
                    .assertion_now(&self.client_id, &endpoint.audience)
                    .map_err(SendError::Auth)?;
                Secret(form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", jwt::ASSERTION_TYPE),
                    ("client_assertion", assertion.expose()),
                    ("resource", &self.resource),
                ]))
            }
        };
        let mut req = Req::new(Method::POST, token_url).header("Accept", "application/json");
        req.body = Some((
            "application/x-www-form-urlencoded",
            body.expose().as_bytes(),
        ));
        let response = plain.send(&req, &auth).map_err(auth_error)?;
        if response.status() != 200 {
            let status = response.status();
            return Err(SendError::Auth(format!(
                "token endpoint {token_url} answered HTTP {status}: {}",
                error_snippet(response)
            )));
        }
        let text = read_body(response, METADATA_MAX_BYTES).map_err(SendError::Auth)?;
        let (value, lifetime) = parse_token_response(&text).map_err(SendError::Auth)?;
        debug!("OAuth token obtained (expires in {lifetime:?})");
        let token = Token {
            value: Secret(value),
            renew_at: lifetime.map(|l| Instant::now() + l.saturating_sub(TOKEN_EARLY_RENEWAL)),
        };
        let value = token.value.expose().clone();
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(value)
    }
}

fn bearer(token: &str) -> Secret<String> {
    Secret(format!("Bearer {token}"))
}

/// A failure reaching the token endpoint or a metadata document is an authentication failure.
fn auth_error(e: SendError) -> SendError {
    match e {
        SendError::Auth(m) => SendError::Auth(m),
        SendError::Unreachable(m) | SendError::Broken(m) => SendError::Auth(m),
    }
}

/// `access_token` and the lifetime from `expires_in`.
fn parse_token_response(text: &str) -> Result<(String, Option<Duration>), String> {
    let v: Value =
        serde_json::from_str(text).map_err(|_| "token response is not JSON".to_string())?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("token response has no access_token")?;
    let lifetime = v
        .get("expires_in")
        .and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok()))
        .map(Duration::from_secs);
    Ok((token.to_string(), lifetime))
}

fn discover_token_endpoint(
    plain: &Plain,
    www_authenticate: Option<&str>,
    server: &Url,
) -> Result<TokenEndpoint, SendError> {
    let from_challenge = www_authenticate
        .map(parse_challenge)
        .filter(|(scheme, _)| scheme == "bearer")
        .and_then(|(_, params)| param(&params, "resource_metadata").map(str::to_string));
    let candidates = match from_challenge {
        Some(url) => vec![url],
        None => url::protected_resource_metadata_urls(server),
    };
    let resource_metadata = first_document(plain, &candidates)?;
    let issuer = resource_metadata
        .get("authorization_servers")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SendError::Auth("protected resource metadata names no authorization server".into())
        })?;
    let issuer_url = Url::parse(issuer)
        .ok_or_else(|| SendError::Auth(format!("invalid authorization server URL {issuer:?}")))?;
    let metadata = first_document(plain, &url::authorization_server_metadata_urls(&issuer_url))?;
    let url = metadata
        .get("token_endpoint")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            SendError::Auth("authorization server metadata has no token_endpoint".into())
        })?;
    // RFC 8414 §2: `issuer` is REQUIRED; the URL the resource named stands in for a server
    // that leaves it out.
    let audience = metadata
        .get("issuer")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
        .unwrap_or(issuer)
        .to_string();
    Ok(TokenEndpoint { url, audience })
}

/// The first of `urls` that serves a JSON object.
fn first_document(plain: &Plain, urls: &[String]) -> Result<Value, SendError> {
    for url in urls {
        let req = Req::new(Method::GET, url).header("Accept", "application/json");
        let response = plain.send(&req, &[]).map_err(auth_error)?;
        if response.status() != 200 {
            debug!("discovery: {url} answered HTTP {}", response.status());
            continue;
        }
        let text = read_body(response, METADATA_MAX_BYTES).map_err(SendError::Auth)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.is_object() => return Ok(v),
            _ => debug!("discovery: {url} is not a JSON object"),
        }
    }
    Err(SendError::Auth(format!(
        "no OAuth metadata found (tried {})",
        urls.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_fields() {
        let (t, l) = parse_token_response(r#"{"access_token":"AT","expires_in":60}"#).unwrap();
        assert_eq!((t.as_str(), l), ("AT", Some(Duration::from_secs(60))));
        let (_, l) = parse_token_response(r#"{"access_token":"AT","expires_in":"5"}"#).unwrap();
        assert_eq!(l, Some(Duration::from_secs(5)));
        assert!(parse_token_response(r#"{"token_type":"bearer"}"#).is_err());
        assert!(parse_token_response("nope").is_err());
    }

    #[test]
    fn resource_is_the_server_url_without_trailing_slash() {
        let c = ClientCredentials::new(
            "id".into(),
            ClientProof::Secret(Secret("s".into())),
            None,
            &Url::parse("https://h/mcp/?x=1").unwrap(),
        );
        assert_eq!(c.resource, "https://h/mcp");
    }
}
