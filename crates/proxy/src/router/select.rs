//! Request → route. Allocation-free for the common case.

use super::{CompiledMatch, PathMatcher, Router, ValueMatcher};
use http::{HeaderMap, Method};
use std::borrow::Cow;

/// The parts of a request matching looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Host, normalized with [`super::normalize_host`].
    pub host: &'a str,
    /// Path, without query.
    pub path: &'a str,
    /// Raw query string (after `?`), if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Indices of a route inside the [`Router`] that selected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRef {
    pub(crate) listener: u32,
    pub(crate) server: u32,
    pub(crate) vhost: u32,
    pub(crate) route: u32,
}

impl Router {
    /// Selects the route serving `req` on listener `listener`: one server chosen by
    /// host (no fall-through between servers), then the matching virtual hosts in
    /// order, then the first matching route.
    pub fn select(&self, listener: usize, req: &RequestView<'_>) -> Option<RouteRef> {
        let l = self.listeners.get(listener)?;
        let server = l.server_index.first(req.host)?;
        let s = &l.servers[server];
        for vhost in s.vhost_index.candidates(req.host) {
            let v = &s.vhosts[vhost];
            if let Some(route) = v.routes.iter().position(|r| r.matcher.matches(req)) {
                return Some(RouteRef {
                    listener: listener as u32,
                    server: server as u32,
                    vhost: vhost as u32,
                    route: route as u32,
                });
            }
        }
        None
    }
}

impl CompiledMatch {
    pub(crate) fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(m) = &self.method {
            if m != req.method {
                return false;
            }
        }
        if !self.path.matches(req.path) {
            return false;
        }
        for (name, value) in self.headers.iter() {
            if !header_matches(req.headers, name, value) {
                return false;
            }
        }
        for (name, value) in self.query.iter() {
            match query_param(req.query, name) {
                Some(v) if value.matches(&v) => {}
                _ => return false,
            }
        }
        true
    }
}

impl PathMatcher {
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => &**p == path,
            PathMatcher::Prefix(p) => prefix_matches(p, path),
            PathMatcher::Regex(re) => re.is_match(path),
            PathMatcher::Never => false,
        }
    }
}

/// Element-wise prefix match; `prefix` has no trailing slash (empty for `/`).
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

fn header_matches(headers: &HeaderMap, name: &http::HeaderName, m: &ValueMatcher) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let Ok(first) = first.to_str() else {
        return false;
    };
    match values.next() {
        // Common case: one value, no allocation.
        None => m.matches(first),
        Some(second) => {
            let mut joined = String::from(first);
            for v in std::iter::once(second).chain(values) {
                let Ok(v) = v.to_str() else {
                    return false;
                };
                joined.push(',');
                joined.push_str(v);
            }
            m.matches(&joined)
        }
    }
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    for pair in query?.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k) == name {
            return Some(decode(v));
        }
    }
    None
}

fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let b = *b?;
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element-wise prefixes: `/foo` covers `/foo/bar`, not `/foobar`.
    #[test]
    fn prefix() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(prefix_matches("", "/anything"));
    }

    /// Query values are percent-decoded and the first occurrence counts.
    #[test]
    fn query() {
        assert_eq!(
            query_param(Some("a=1&b=x%20y&b=2"), "b").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param(Some("a"), "a").as_deref(), Some(""));
        assert_eq!(query_param(Some("a=%zz"), "a").as_deref(), Some("%zz"));
        assert_eq!(query_param(None, "a"), None);
    }
}
