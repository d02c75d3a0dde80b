//! Route precedence: one `Ord` on a match summary.
use sluice_ir::{PathMatch, RouteMatch};
use std::cmp::{Ordering, Reverse};

/// Precedence of one HTTPRoute match within a virtual host; `Less` = served first.
///
/// Gateway API (HTTPRouteRule): "Proxy or Load Balancer routing configuration generated
/// from HTTPRoutes MUST prioritize matches based on the following criteria, continuing
/// on ties. Across all rules specified on applicable Routes, precedence must be given
/// to the match having:
/// * "Exact" path match.
/// * "Prefix" path match with largest number of characters.
/// * Method match.
/// * Largest number of header matches.
/// * Largest number of query param matches.
///
/// If ties still exist across multiple Routes, matching precedence MUST be determined
/// in order of the following criteria, continuing on ties:
/// * The oldest Route based on creation timestamp.
/// * The Route appearing first in alphabetical order by "{namespace}/{name}".
///
/// If ties still exist within an HTTPRoute, matching precedence MUST be granted to the
/// FIRST matching rule (in list order) with a match meeting the above criteria."
///
/// Regular-expression paths are implementation-specific: they rank after exact paths
/// and before prefixes (longer expressions first), as Envoy Gateway does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precedence {
    /// Path kind and length.
    pub path: PathRank,
    /// Whether a method is matched.
    pub method: bool,
    /// Number of header matches.
    pub headers: usize,
    /// Number of query parameter matches.
    pub query_params: usize,
    /// `creationTimestamp` in nanoseconds since the epoch; `None` sorts last.
    pub created: Option<i128>,
    /// Namespace of the route.
    pub namespace: String,
    /// Name of the route.
    pub name: String,
    /// Rule index.
    pub rule: usize,
    /// Match index within the rule.
    pub matcher: usize,
}

/// Path part of [`Precedence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRank {
    /// Exact path, with its length.
    Exact(usize),
    /// Regular expression, with its length.
    Regex(usize),
    /// Prefix, with its length (trailing `/` removed).
    Prefix(usize),
}

impl PathRank {
    fn key(self) -> (u8, Reverse<usize>) {
        match self {
            PathRank::Exact(n) => (0, Reverse(n)),
            PathRank::Regex(n) => (1, Reverse(n)),
            PathRank::Prefix(n) => (2, Reverse(n)),
        }
    }
}

impl Precedence {
    /// The match part of the precedence of `m`; the tie-breakers are filled by the caller.
    pub fn of(m: &RouteMatch) -> (PathRank, bool, usize, usize) {
        let path = match &m.path {
            PathMatch::Exact(p) => PathRank::Exact(p.len()),
            PathMatch::Regex(p) => PathRank::Regex(p.len()),
            PathMatch::Prefix(p) => PathRank::Prefix(if p == "/" {
                0
            } else {
                p.trim_end_matches('/').len()
            }),
        };
        (
            path,
            m.method.is_some(),
            m.headers.len(),
            m.query_params.len(),
        )
    }
}

impl Ord for Precedence {
    fn cmp(&self, other: &Self) -> Ordering {
        self.path
            .key()
            .cmp(&other.path.key())
            .then_with(|| other.method.cmp(&self.method))
            .then_with(|| other.headers.cmp(&self.headers))
            .then_with(|| other.query_params.cmp(&self.query_params))
            .then_with(|| match (&self.created, &other.created) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            .then_with(|| self.namespace.cmp(&other.namespace))
            .then_with(|| self.name.cmp(&other.name))
            .then_with(|| self.rule.cmp(&other.rule))
            .then_with(|| self.matcher.cmp(&other.matcher))
    }
}

impl PartialOrd for Precedence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
