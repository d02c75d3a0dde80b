//! Hostname intersection between listeners and routes (Gateway API semantics).
use sluice_ir::HostMatch;

/// The hostnames a route with `route` hostname serves on a listener with `listener`
/// hostname, or `None` when they do not intersect:
/// - no listener hostname: the route's;
/// - `*.example.com` listener, `foo.example.com` route: `foo.example.com`;
/// - `foo.example.com` listener, `*.example.com` route: `foo.example.com`;
/// - two wildcards: the more specific one, if one contains the other.
pub fn intersect(listener: Option<&HostMatch>, route: &HostMatch) -> Option<HostMatch> {
    let Some(listener) = listener else {
        return Some(route.clone());
    };
    match (listener, route) {
        (HostMatch::Exact(l), HostMatch::Exact(r)) => (l == r).then(|| route.clone()),
        (HostMatch::Wildcard(_), HostMatch::Exact(r)) => listener.matches(r).then(|| route.clone()),
        (HostMatch::Exact(l), HostMatch::Wildcard(_)) => route.matches(l).then(|| listener.clone()),
        (HostMatch::Wildcard(l), HostMatch::Wildcard(r)) => {
            if l == r || listener.matches(r) {
                Some(route.clone())
            } else if route.matches(l) {
                Some(listener.clone())
            } else {
                None
            }
        }
    }
}

/// Specificity order of hostname patterns: exact names first (alphabetical), then
/// wildcards from the longest suffix, then no hostname.
pub fn specificity(h: &Option<HostMatch>) -> (u8, std::cmp::Reverse<usize>, String) {
    match h {
        Some(HostMatch::Exact(n)) => (0, std::cmp::Reverse(0), n.clone()),
        Some(HostMatch::Wildcard(s)) => (1, std::cmp::Reverse(s.len()), s.clone()),
        None => (2, std::cmp::Reverse(0), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostMatch {
        HostMatch::parse(s)
    }

    /// The intersection table of the Gateway API spec.
    #[test]
    fn intersections() {
        let cases = [
            (
                Some("*.example.com"),
                "foo.example.com",
                Some("foo.example.com"),
            ),
            (
                Some("foo.example.com"),
                "*.example.com",
                Some("foo.example.com"),
            ),
            (
                Some("foo.example.com"),
                "foo.example.com",
                Some("foo.example.com"),
            ),
            (Some("foo.example.com"), "bar.example.com", None),
            (
                Some("*.example.com"),
                "*.foo.example.com",
                Some("*.foo.example.com"),
            ),
            (
                Some("*.foo.example.com"),
                "*.example.com",
                Some("*.foo.example.com"),
            ),
            (Some("*.example.com"), "*.example.net", None),
            (Some("*.example.com"), "example.com", None),
            (None, "*.example.com", Some("*.example.com")),
        ];
        for (l, r, want) in cases {
            let l = l.map(h);
            assert_eq!(intersect(l.as_ref(), &h(r)), want.map(h), "{l:?} ∩ {r}");
        }
    }
}
