//! Path rewriting with the Gateway API slash rules.

use crate::router::prefix_matches;
use sluice_ir::PathRewrite;

/// The path after `rewrite`. `path` has no query. `None` when nothing changes (a
/// `ReplacePrefixMatch` whose prefix does not cover the path).
pub fn rewrite_path(rewrite: &PathRewrite, path: &str) -> Option<String> {
    match rewrite {
        PathRewrite::ReplaceFullPath { path: new } => Some(new.clone()),
        PathRewrite::ReplacePrefixMatch {
            prefix,
            replacement,
        } => {
            let prefix = prefix.trim_end_matches('/');
            if !prefix_matches(prefix, path) {
                return None;
            }
            let rest = &path[prefix.len()..];
            let replacement = replacement.trim_end_matches('/');
            let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
            out.push_str(replacement);
            if !rest.is_empty() && !rest.starts_with('/') {
                out.push('/');
            }
            out.push_str(rest);
            if out.is_empty() {
                out.push('/');
            } else if !out.starts_with('/') {
                out.insert(0, '/');
            }
            Some(out)
        }
    }
}

/// `path` plus `?query` when there is one.
pub fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(prefix: &str, replacement: &str, path: &str) -> String {
        rewrite_path(
            &PathRewrite::ReplacePrefixMatch {
                prefix: prefix.into(),
                replacement: replacement.into(),
            },
            path,
        )
        .unwrap_or_else(|| "<none>".into())
    }

    /// The table of the Gateway API `HTTPPathModifier` documentation.
    #[test]
    fn gateway_api_slash_rules() {
        assert_eq!(rp("/foo", "/xyz", "/foo/bar"), "/xyz/bar");
        assert_eq!(rp("/foo", "/xyz/", "/foo/bar"), "/xyz/bar");
        assert_eq!(rp("/foo/", "/xyz", "/foo/bar"), "/xyz/bar");
        assert_eq!(rp("/foo/", "/xyz/", "/foo/bar"), "/xyz/bar");
        assert_eq!(rp("/foo", "/xyz", "/foo"), "/xyz");
        assert_eq!(rp("/foo", "/xyz", "/foo/"), "/xyz/");
        assert_eq!(rp("/foo", "", "/foo/bar"), "/bar");
        assert_eq!(rp("/foo", "", "/foo/"), "/");
        assert_eq!(rp("/foo", "", "/foo"), "/");
        assert_eq!(rp("/foo", "/", "/foo/"), "/");
        assert_eq!(rp("/foo", "/", "/foo"), "/");
        assert_eq!(rp("/prefix/one", "/one", "/prefix/one/two"), "/one/two");
        assert_eq!(rp("/strip-prefix", "/", "/strip-prefix/three"), "/three");
        assert_eq!(rp("/", "/new", "/a/b"), "/new/a/b");
        assert_eq!(rp("/foo", "/xyz", "/foobar"), "<none>");
    }
}
