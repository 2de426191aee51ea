//! Credentials for requests to the remote: HTTP Basic, HTTP Digest (answering the server's
//! challenge) and OAuth2 client credentials (in `oauth.rs`, its JWT client assertions in
//! `jwt.rs`). `-H` headers and
//! `API_ACCESS_TOKEN` are plain headers and live in `http.rs`.
//! Every secret is held in a `Secret`, which prints `***`; nothing here logs a value.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::http::{Plain, SendError};
use super::jwt::SigningKey;
use super::md5;
use super::oauth::{ClientCredentials, ClientProof};
use super::url::Url;
use crate::config::{ClientAuth, ClientCredential};
use crate::encoding::{base64, hex};
use crate::error::Error;
use crate::logging::Secret;

/// How requests authenticate.
pub enum Auth {
    None,
    /// The whole `Basic …` header value.
    Basic(Secret<String>),
    Digest(Digest),
    ClientCredentials(Box<ClientCredentials>),
}

impl Auth {
    /// Fails when a `--client-private-key` file cannot be read or holds no usable key.
    pub fn from_settings(auth: &ClientAuth, server: &Url) -> Result<Auth, Error> {
        Ok(match auth {
            ClientAuth::None => Auth::None,
            ClientAuth::Basic {
                username,
                password,
                digest: false,
            } => Auth::Basic(Secret(format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            ))),
            ClientAuth::Basic {
                username,
                password,
                digest: true,
            } => Auth::Digest(Digest {
                username: username.clone(),
                password: Secret(password.clone()),
                challenge: Mutex::new(None),
                count: AtomicU32::new(0),
            }),
            ClientAuth::ClientCredentials {
                client_id,
                credential,
                token_url,
            } => {
                let proof = match credential {
                    ClientCredential::Secret(secret) => ClientProof::Secret(Secret(secret.clone())),
                    ClientCredential::PrivateKey(path) => {
                        let key = SigningKey::load(path).map_err(|reason| Error::Config {
                            path: path.display().to_string(),
                            reason,
                        })?;
                        ClientProof::PrivateKey(Box::new(key))
                    }
                };
                Auth::ClientCredentials(Box::new(ClientCredentials::new(
                    client_id.clone(),
                    proof,
                    token_url.clone(),
                    server,
                )))
            }
        })
    }

    /// The `Authorization` value for a request, if this scheme has one ready.
    pub fn authorization(
        &self,
        plain: &Plain,
        method: &str,
        url: &Url,
    ) -> Result<Option<Secret<String>>, SendError> {
        Ok(match self {
            Auth::None => None,
            Auth::Basic(value) => Some(value.clone()),
            Auth::Digest(digest) => digest.authorization(method, url),
            Auth::ClientCredentials(oauth) => oauth.bearer(plain)?,
        })
    }

    /// After a 401: takes the challenge in and says whether sending again may now succeed.
    pub fn renew_after_401(
        &self,
        plain: &Plain,
        www_authenticate: Option<&str>,
        url: &Url,
    ) -> Result<bool, SendError> {
        match self {
            Auth::None | Auth::Basic(_) => Ok(false),
            Auth::Digest(digest) => Ok(digest.take_challenge(www_authenticate)),
            Auth::ClientCredentials(oauth) => {
                oauth.renew(plain, www_authenticate, url).map(|()| true)
            }
        }
    }
}

/// The parameters of one challenge in `WWW-Authenticate`: its scheme (lowercase) and its
/// auth-params (names lowercase, quoted values unescaped).
pub fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.push((name, value));
    }
    (scheme.to_ascii_lowercase(), params)
}

/// One auth-param of a parsed challenge.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// HTTP Digest (RFC 7616) with MD5 and `qop=auth`, the combination servers offer in practice.
pub struct Digest {
    username: String,
    password: Secret<String>,
    /// The last challenge; reused (with a growing nonce count) until the server sends another.
    challenge: Mutex<Option<DigestChallenge>>,
    count: AtomicU32,
}

#[derive(Clone)]
struct DigestChallenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    qop_auth: bool,
}

impl Digest {
    fn take_challenge(&self, header: Option<&str>) -> bool {
        let Some((scheme, params)) = header.map(parse_challenge) else {
            return false;
        };
        let algorithm_ok =
            param(&params, "algorithm").is_none_or(|a| a.eq_ignore_ascii_case("md5"));
        let (Some(realm), Some(nonce)) = (param(&params, "realm"), param(&params, "nonce")) else {
            return false;
        };
        if scheme != "digest" || !algorithm_ok {
            return false;
        }
        let challenge = DigestChallenge {
            realm: realm.to_string(),
            nonce: nonce.to_string(),
            opaque: param(&params, "opaque").map(str::to_string),
            qop_auth: param(&params, "qop")
                .is_some_and(|q| q.split(',').any(|q| q.trim() == "auth")),
        };
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some(challenge);
        self.count.store(0, Ordering::SeqCst);
        true
    }

    fn authorization(&self, method: &str, url: &Url) -> Option<Secret<String>> {
        let challenge = self
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let cnonce = hex(&crate::random::u128().to_le_bytes()[..8]);
        Some(Secret(digest_header(
            &self.username,
            self.password.expose(),
            &challenge,
            method,
            &format!("{}{}", url.path, url.query),
            count,
            &cnonce,
        )))
    }
}

fn digest_header(
    username: &str,
    password: &str,
    c: &DigestChallenge,
    method: &str,
    uri: &str,
    count: u32,
    cnonce: &str,
) -> String {
    let ha1 = md5::hex_digest(format!("{username}:{}:{password}", c.realm).as_bytes());
    let ha2 = md5::hex_digest(format!("{method}:{uri}").as_bytes());
    let nc = format!("{count:08x}");
    let mut header = format!(
        r#"Digest username="{username}", realm="{}", nonce="{}", uri="{uri}", algorithm=MD5"#,
        c.realm, c.nonce
    );
    if c.qop_auth {
        let response =
            md5::hex_digest(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce).as_bytes());
        header.push_str(&format!(
            r#", response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}""#
        ));
    } else {
        let response = md5::hex_digest(format!("{ha1}:{}:{ha2}", c.nonce).as_bytes());
        header.push_str(&format!(r#", response="{response}""#));
    }
    if let Some(opaque) = &c.opaque {
        header.push_str(&format!(r#", opaque="{opaque}""#));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params_quoted_and_bare() {
        let (scheme, params) = parse_challenge(
            r#"Bearer error="invalid_token", resource_metadata="http://h/.well-known/x?a=1,2", scope=read"#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(param(&params, "error"), Some("invalid_token"));
        assert_eq!(
            param(&params, "resource_metadata"),
            Some("http://h/.well-known/x?a=1,2")
        );
        assert_eq!(param(&params, "scope"), Some("read"));
        assert_eq!(parse_challenge("Bearer").1, []);
    }

    #[test]
    fn digest_matches_rfc2617_example() {
        // RFC 2617 §3.5: Mufasa / "Circle Of Life".
        let c = DigestChallenge {
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            qop_auth: true,
        };
        let header = digest_header(
            "Mufasa",
            "Circle Of Life",
            &c,
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            header.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{header}"
        );
        assert!(header.contains("nc=00000001"), "{header}");
    }
}
