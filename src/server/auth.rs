//! Inbound authentication: an optional bearer token (`--auth-token`, `MCP_PROXY_AUTH_TOKEN`)
//! required on every request but `/health` and CORS preflights. Pure: a header in, a verdict
//! out; the comparison takes the same time wherever the first wrong byte is.

use crate::logging::Secret;

pub struct Auth {
    token: Option<Secret<String>>,
}

impl Auth {
    pub fn new(token: Option<Secret<String>>) -> Auth {
        Auth { token }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request with this `Authorization` header may pass.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(presented) = authorization.and_then(bearer_token) else {
            return false;
        };
        constant_time_eq(presented.as_bytes(), token.expose().as_bytes())
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares every byte of the longer input, so the time taken tells nothing about where the
/// inputs differ (only, at most, their lengths).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    // Keep the optimizer from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let auth = Auth::new(Some(Secret("s3cret".into())));
        assert!(auth.allows(Some("Bearer s3cret")));
        assert!(auth.allows(Some("bearer  s3cret ")));
        assert!(!auth.allows(Some("Bearer s3cre")));
        assert!(!auth.allows(Some("Bearer s3cret2")));
        assert!(!auth.allows(Some("Basic s3cret")));
        assert!(!auth.allows(Some("s3cret")));
        assert!(!auth.allows(None));
        assert!(Auth::new(None).allows(None));
    }

    #[test]
    fn equal_lengths_and_contents_only() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
