//! Building the `Location` of a redirect (Gateway API `RequestRedirect` rules).

use super::rewrite::{rewrite_path, with_query};
use sluice_ir::Redirect;

/// What the redirect needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host without port.
    pub host: &'a str,
    /// Port of the listener the request came in on.
    pub listener_port: u16,
    /// Path without query.
    pub path: &'a str,
    /// Raw query.
    pub query: Option<&'a str>,
}

/// The `Location` value: unset parts keep the request's own. Without an explicit port,
/// a redirect that sets the scheme uses the scheme's well-known port, else the
/// listener's port; the port is left out when it is the scheme's default.
pub fn location(r: &Redirect, req: &RequestParts<'_>) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(req.scheme);
    let host = r.hostname.as_deref().unwrap_or(req.host);
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => p,
        (None, Some(s)) => default_port(s).unwrap_or(req.listener_port),
        (None, None) => req.listener_port,
    };
    let path = match &r.path {
        Some(p) => rewrite_path(p, req.path).unwrap_or_else(|| req.path.to_string()),
        None => req.path.to_string(),
    };
    let path = with_query(&path, req.query);
    if default_port(scheme) == Some(port) {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}:{port}{path}")
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_ir::PathRewrite;

    fn req() -> RequestParts<'static> {
        RequestParts {
            scheme: "http",
            host: "example.com",
            listener_port: 8080,
            path: "/a/b",
            query: Some("x=1"),
        }
    }

    fn redirect() -> Redirect {
        Redirect {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: 302,
        }
    }

    /// Port derivation: the listener port by default, the well-known one with a scheme.
    #[test]
    fn ports() {
        assert_eq!(
            location(&redirect(), &req()),
            "http://example.com:8080/a/b?x=1"
        );
        let r = Redirect {
            scheme: Some("https".into()),
            ..redirect()
        };
        assert_eq!(location(&r, &req()), "https://example.com/a/b?x=1");
        let r = Redirect {
            hostname: Some("other".into()),
            port: Some(80),
            ..redirect()
        };
        assert_eq!(location(&r, &req()), "http://other/a/b?x=1");
    }

    /// Path changes reuse the rewrite rules.
    #[test]
    fn paths() {
        let r = Redirect {
            path: Some(PathRewrite::ReplacePrefixMatch {
                prefix: "/a".into(),
                replacement: "/z".into(),
            }),
            port: Some(80),
            ..redirect()
        };
        assert_eq!(location(&r, &req()), "http://example.com/z/b?x=1");
    }
}
