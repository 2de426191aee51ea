//! Who may talk to us: DNS-rebinding protection (spec I1/I2: a present, invalid `Origin` gets
//! 403; on a loopback bind a non-loopback `Host` gets 403) and CORS (only with
//! `--allow-origin`). Pure: request headers in, a decision out.

use tiny_http::Header;

use super::respond::header;

pub struct Guard {
    /// `--allow-origin` values; CORS is on when non-empty.
    allow_origins: Vec<String>,
    any_origin: bool,
    expose_headers: String,
    /// Bound to a loopback address: only loopback `Host` names are accepted.
    loopback_only: bool,
}

/// The outcome for one request.
pub enum Verdict {
    /// Serve it; add these headers to the response.
    Allow(Vec<Header>),
    /// A CORS preflight: answer it with this status and these headers.
    Preflight(u16, Vec<Header>),
    /// 403 with this reason.
    Forbidden(&'static str),
}

impl Guard {
    pub fn new(
        allow_origins: Vec<String>,
        expose_headers: &[String],
        loopback_only: bool,
    ) -> Guard {
        Guard {
            any_origin: allow_origins.iter().any(|o| o == "*"),
            allow_origins,
            expose_headers: expose_headers.join(", "),
            loopback_only,
        }
    }

    fn cors_enabled(&self) -> bool {
        !self.allow_origins.is_empty()
    }

    fn cors_allows(&self, origin: &str) -> bool {
        self.any_origin
            || self
                .allow_origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }

    pub fn check(
        &self,
        method: &tiny_http::Method,
        host: Option<&str>,
        origin: Option<&str>,
        preflight_method: Option<&str>,
        preflight_headers: Option<&str>,
    ) -> Verdict {
        if self.loopback_only && host.is_some_and(|h| !is_loopback_host(h)) {
            return Verdict::Forbidden("Forbidden: Host is not a loopback name");
        }
        let Some(origin) = origin else {
            return Verdict::Allow(Vec::new());
        };
        let cors_ok = self.cors_enabled() && self.cors_allows(origin);
        if !cors_ok && !is_loopback_origin(origin) {
            return Verdict::Forbidden("Forbidden: Origin not allowed");
        }
        if *method == tiny_http::Method::Options
            && preflight_method.is_some()
            && self.cors_enabled()
        {
            if !cors_ok {
                return Verdict::Preflight(400, Vec::new());
            }
            let mut headers = self.allow_origin_headers(origin);
            headers.push(header(
                "Access-Control-Allow-Methods",
                "GET, POST, DELETE, OPTIONS",
            ));
            headers.push(header(
                "Access-Control-Allow-Headers",
                preflight_headers.unwrap_or("*"),
            ));
            headers.push(header("Access-Control-Max-Age", "600"));
            return Verdict::Preflight(200, headers);
        }
        if cors_ok {
            let mut headers = self.allow_origin_headers(origin);
            if !self.expose_headers.is_empty() {
                headers.push(header(
                    "Access-Control-Expose-Headers",
                    &self.expose_headers,
                ));
            }
            Verdict::Allow(headers)
        } else {
            Verdict::Allow(Vec::new())
        }
    }

    fn allow_origin_headers(&self, origin: &str) -> Vec<Header> {
        if self.any_origin {
            vec![header("Access-Control-Allow-Origin", "*")]
        } else {
            vec![
                header("Access-Control-Allow-Origin", origin),
                header("Vary", "Origin"),
            ]
        }
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_loopback_origin(origin: &str) -> bool {
    match origin.split_once("://") {
        Some(("http" | "https", host)) => is_loopback_host(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::Method;

    fn names(headers: &[Header]) -> Vec<String> {
        headers
            .iter()
            .map(|h| format!("{}: {}", h.field, h.value))
            .collect()
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.1.2.3",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example.com",
            "evil.example.com:80",
            "10.0.0.1",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn dns_rebinding_is_refused() {
        let g = Guard::new(Vec::new(), &[], true);
        assert!(matches!(
            g.check(
                &Method::Post,
                Some("evil.example.com"),
                Some("http://evil.example.com"),
                None,
                None
            ),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            g.check(
                &Method::Post,
                Some("localhost:9"),
                Some("http://evil.example.com"),
                None,
                None
            ),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            g.check(&Method::Post, Some("localhost:9"), Some("http://localhost:9"), None, None),
            Verdict::Allow(h) if h.is_empty()
        ));
        assert!(matches!(
            g.check(&Method::Post, Some("127.0.0.1:9"), None, None, None),
            Verdict::Allow(_)
        ));
        // Bound to all interfaces: any Host.
        let open = Guard::new(Vec::new(), &[], false);
        assert!(matches!(
            open.check(&Method::Get, Some("proxy.example.com"), None, None, None),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn cors_headers_and_preflight() {
        let g = Guard::new(
            vec!["https://app.example".into()],
            &["mcp-session-id".to_string()],
            false,
        );
        match g.check(&Method::Post, None, Some("https://app.example"), None, None) {
            Verdict::Allow(h) => assert_eq!(
                names(&h),
                [
                    "Access-Control-Allow-Origin: https://app.example",
                    "Vary: Origin",
                    "Access-Control-Expose-Headers: mcp-session-id"
                ]
            ),
            _ => panic!("allowed origin refused"),
        }
        match g.check(
            &Method::Options,
            None,
            Some("https://app.example"),
            Some("POST"),
            Some("content-type"),
        ) {
            Verdict::Preflight(200, h) => {
                let n = names(&h);
                assert!(
                    n.contains(&"Access-Control-Allow-Headers: content-type".to_string()),
                    "{n:?}"
                );
            }
            _ => panic!("preflight refused"),
        }
        assert!(matches!(
            g.check(
                &Method::Options,
                None,
                Some("http://localhost:3000"),
                Some("POST"),
                None
            ),
            Verdict::Preflight(400, _)
        ));
        assert!(matches!(
            g.check(
                &Method::Post,
                None,
                Some("https://other.example"),
                None,
                None
            ),
            Verdict::Forbidden(_)
        ));
        let star = Guard::new(vec!["*".into()], &[], false);
        assert!(matches!(
            star.check(&Method::Post, None, Some("https://anyone.example"), None, None),
            Verdict::Allow(h) if names(&h) == ["Access-Control-Allow-Origin: *"]
        ));
    }
}
