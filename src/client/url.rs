//! The little URL handling client mode needs: split an absolute http(s) URL, resolve the legacy
//! `endpoint` event against the SSE URL, compare origins, and build the OAuth discovery URLs
//! (RFC 9728 §3.1 and RFC 8414 §3.1 path insertion, MCP authorization spec L4).
//! Pure string functions; no IO.

/// An absolute `http://` or `https://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// `host[:port]` as written (userinfo is not supported in client URLs).
    pub authority: String,
    /// The path, at least `/`.
    pub path: String,
    /// The query with its `?`, or empty.
    pub query: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (path, query) = match tail.find('?') {
            Some(i) => (&tail[..i], &tail[i..]),
            None => (tail, ""),
        };
        Some(Url {
            scheme,
            authority: authority.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            query: query.to_string(),
        })
    }

    /// `scheme://host:port` with the default port made explicit, lowercase: for comparisons.
    pub fn origin(&self) -> String {
        let authority = self.authority.to_ascii_lowercase();
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if has_port {
            format!("{}://{authority}", self.scheme)
        } else {
            let port = if self.scheme == "https" { 443 } else { 80 };
            format!("{}://{authority}:{port}", self.scheme)
        }
    }

    /// `scheme://authority`, as written.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Resolves a reference (absolute, `//host`, `/path`, `?query` or `relative/path`) against
    /// this URL, as RFC 3986 §5.2 does for the shapes MCP servers send. `.` and `..` segments
    /// are left to the server.
    pub fn join(&self, reference: &str) -> Option<Url> {
        let reference = reference.trim();
        if reference.contains("://") {
            return Url::parse(reference);
        }
        let joined = if let Some(rest) = reference.strip_prefix("//") {
            format!("{}://{rest}", self.scheme)
        } else if reference.starts_with('/') {
            format!("{}{reference}", self.base())
        } else if reference.starts_with('?') {
            format!("{}{}{reference}", self.base(), self.path)
        } else if reference.is_empty() {
            self.to_string()
        } else {
            let dir = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{dir}{reference}", self.base())
        };
        Url::parse(&joined)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}{}",
            self.scheme, self.authority, self.path, self.query
        )
    }
}

/// The URL for logs and error messages: a query may carry a credential, so it shows as `?***`.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Some(u) if u.query.is_empty() => u.to_string(),
        Some(u) => format!("{}{}?***", u.base(), u.path),
        None => "<invalid URL>".into(),
    }
}

/// RFC 9728 protected resource metadata locations for the MCP server URL, in the order the MCP
/// spec (2025-11-25) says to try them: with the path inserted, then at the root.
pub fn protected_resource_metadata_urls(server: &Url) -> Vec<String> {
    let root = format!("{}/.well-known/oauth-protected-resource", server.base());
    let path = server.path.trim_end_matches('/');
    if path.is_empty() {
        vec![root]
    } else {
        vec![format!("{root}{path}"), root]
    }
}

/// RFC 8414 / OpenID Connect discovery locations for an issuer, in the MCP spec's order.
pub fn authorization_server_metadata_urls(issuer: &Url) -> Vec<String> {
    let base = issuer.base();
    let path = issuer.path.trim_end_matches('/');
    if path.is_empty() {
        vec![
            format!("{base}/.well-known/oauth-authorization-server"),
            format!("{base}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{base}/.well-known/oauth-authorization-server{path}"),
            format!("{base}/.well-known/openid-configuration{path}"),
            format!("{base}{path}/.well-known/openid-configuration"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display() {
        let u = url("HTTP://Host:8080/sse?x=1#frag");
        assert_eq!(u.scheme, "http");
        assert_eq!(u.authority, "Host:8080");
        assert_eq!(u.path, "/sse");
        assert_eq!(u.query, "?x=1");
        assert_eq!(url("https://h").path, "/");
        assert_eq!(url("https://h?q").to_string(), "https://h/?q");
        assert!(Url::parse("ftp://h/").is_none());
        assert!(Url::parse("http:///x").is_none());
        assert!(Url::parse("http://user:pw@h/").is_none());
    }

    #[test]
    fn endpoint_references_resolve_against_the_sse_url() {
        let base = url("http://h:1/a/sse?k=v");
        let join = |r: &str| base.join(r).unwrap().to_string();
        assert_eq!(
            join("/messages/?session_id=ab"),
            "http://h:1/messages/?session_id=ab"
        );
        assert_eq!(join("messages?s=1"), "http://h:1/a/messages?s=1");
        assert_eq!(join("?s=1"), "http://h:1/a/sse?s=1");
        assert_eq!(join("//other:2/m"), "http://other:2/m");
        assert_eq!(join("https://x/m"), "https://x/m");
    }

    #[test]
    fn queries_are_redacted() {
        assert_eq!(redacted("http://h/mcp?key=secret"), "http://h/mcp?***");
        assert_eq!(redacted("http://h/mcp"), "http://h/mcp");
    }

    #[test]
    fn origins_compare_with_default_ports() {
        assert_eq!(url("http://H/x").origin(), url("http://h:80/y").origin());
        assert_ne!(url("http://h/x").origin(), url("https://h/x").origin());
        assert_ne!(url("http://h:1/").origin(), url("http://h:2/").origin());
    }

    #[test]
    fn discovery_urls_insert_the_path() {
        assert_eq!(
            protected_resource_metadata_urls(&url("http://h:1/mcp")),
            [
                "http://h:1/.well-known/oauth-protected-resource/mcp",
                "http://h:1/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            authorization_server_metadata_urls(&url("https://as/t1")),
            [
                "https://as/.well-known/oauth-authorization-server/t1",
                "https://as/.well-known/openid-configuration/t1",
                "https://as/t1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            authorization_server_metadata_urls(&url("https://as/")),
            [
                "https://as/.well-known/oauth-authorization-server",
                "https://as/.well-known/openid-configuration"
            ]
        );
    }
}
