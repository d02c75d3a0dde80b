//! Hostname lookup: exact names, wildcard suffixes and a default, without allocating.

use sluice_ir::HostMatch;
use std::borrow::Cow;
use std::collections::HashMap;

/// Index from hostname patterns to positions, answering "which entries match this
/// host, most specific first": the exact name, then wildcards from the longest suffix
/// to the shortest, then the entries without hostname. Entries with the same pattern
/// keep their insertion order.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: HashMap<Box<str>, Vec<usize>>,
    wildcard: HashMap<Box<str>, Vec<usize>>,
    any: Vec<usize>,
}

impl HostIndex {
    /// Adds entry `i` with pattern `host` (`None`: any host).
    pub fn insert(&mut self, host: Option<&HostMatch>, i: usize) {
        match host {
            Some(HostMatch::Exact(h)) => self
                .exact
                .entry(h.to_ascii_lowercase().into())
                .or_default()
                .push(i),
            Some(HostMatch::Wildcard(s)) => self
                .wildcard
                .entry(s.to_ascii_lowercase().into())
                .or_default()
                .push(i),
            None => self.any.push(i),
        }
    }

    /// The most specific entry matching `host` (normalized: lower case, no port).
    pub fn first(&self, host: &str) -> Option<usize> {
        self.candidates(host).next()
    }

    /// Every entry matching `host`, most specific first.
    pub fn candidates<'a>(&'a self, host: &'a str) -> impl Iterator<Item = usize> + 'a {
        let exact = self.exact.get(host).into_iter().flatten().copied();
        // Suffixes after each '.', left to right: longest first. A wildcard needs at
        // least one label in front, so the whole host is never a suffix.
        let wildcards = host
            .match_indices('.')
            .filter_map(move |(i, _)| self.wildcard.get(&host[i + 1..]))
            .flatten()
            .copied();
        exact.chain(wildcards).chain(self.any.iter().copied())
    }
}

/// Normalizes a `Host` / `:authority` value for matching: port stripped (IPv6
/// literals in brackets kept whole), trailing dot removed, lower case. Borrows when
/// nothing changes, which is the common case.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports are stripped, IPv6 literals survive, case folds, and the common case borrows.
    #[test]
    fn normalize() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert!(matches!(normalize_host("a.b:1"), Cow::Borrowed("a.b")));
    }

    /// Exact beats wildcards, longer suffixes beat shorter, the default comes last.
    #[test]
    fn candidates_order() {
        let mut idx = HostIndex::default();
        idx.insert(None, 0);
        idx.insert(Some(&HostMatch::parse("*.com")), 1);
        idx.insert(Some(&HostMatch::parse("*.example.com")), 2);
        idx.insert(Some(&HostMatch::parse("a.example.com")), 3);
        let c: Vec<_> = idx.candidates("a.example.com").collect();
        assert_eq!(c, vec![3, 2, 1, 0]);
        let c: Vec<_> = idx.candidates("example.com").collect();
        assert_eq!(c, vec![1, 0]);
        assert_eq!(idx.first("x.y.example.com"), Some(2));
    }
}
