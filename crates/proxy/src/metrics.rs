//! Proxy metrics: requests by route and status code, latency histogram by route.
//!
//! Counters live in [`RouteStats`], fetched once per route when a config is compiled
//! and kept across reloads (counters stay monotonic). The hot path only touches
//! atomics, except for rare status codes, which go through a small mutex-protected map.

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Same bounds, in microseconds (what the hot path compares).
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
/// Status codes counted lock-free.
const COMMON: [u16; 24] = [
    0, 101, 200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413,
    429, 500, 502, 503, 504,
];

/// All proxy metrics.
#[derive(Debug)]
pub struct Metrics {
    routes: RwLock<HashMap<Arc<str>, Arc<RouteStats>>>,
    unmatched: Arc<RouteStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: RwLock::new(HashMap::new()),
            unmatched: Arc::new(RouteStats::default()),
        }
    }
}

/// Counters of one route.
#[derive(Debug)]
pub struct RouteStats {
    common: [AtomicU64; COMMON.len()],
    other: Mutex<BTreeMap<u16, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            common: std::array::from_fn(|_| AtomicU64::new(0)),
            other: Mutex::new(BTreeMap::new()),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl RouteStats {
    /// Records one finished request (`status` 0: no response was sent).
    pub fn record(&self, status: u16, elapsed: Duration) {
        match COMMON.iter().position(|&c| c == status) {
            Some(i) => {
                self.common[i].fetch_add(1, Ordering::Relaxed);
            }
            None => *self.other.lock().entry(status).or_default() += 1,
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Requests recorded with `status`.
    pub fn requests(&self, status: u16) -> u64 {
        match COMMON.iter().position(|&c| c == status) {
            Some(i) => self.common[i].load(Ordering::Relaxed),
            None => self.other.lock().get(&status).copied().unwrap_or(0),
        }
    }

    fn statuses(&self) -> BTreeMap<u16, u64> {
        let mut out = self.other.lock().clone();
        for (i, c) in COMMON.iter().enumerate() {
            let n = self.common[i].load(Ordering::Relaxed);
            if n > 0 {
                out.insert(*c, n);
            }
        }
        out
    }
}

impl Metrics {
    /// The counters of route `name`, created on first use.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        if let Some(s) = self.routes.read().get(name) {
            return s.clone();
        }
        self.routes
            .write()
            .entry(name.into())
            .or_insert_with(|| Arc::new(RouteStats::default()))
            .clone()
    }

    /// The counters of requests no route matched (label `route=""`).
    pub fn unmatched(&self) -> &Arc<RouteStats> {
        &self.unmatched
    }

    /// Appends the metrics in the Prometheus text format:
    /// `sluice_proxy_requests_total{route,code}` and
    /// `sluice_proxy_request_duration_seconds{route}` (histogram).
    pub fn render_prometheus(&self, out: &mut String) {
        let mut routes: Vec<(Arc<str>, Arc<RouteStats>)> = self
            .routes
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        routes.push(("".into(), self.unmatched.clone()));
        routes.sort_by(|a, b| a.0.cmp(&b.0));

        out.push_str("# HELP sluice_proxy_requests_total Requests served, by route and status code (route=\"\": no route matched; code=\"0\": no response).\n");
        out.push_str("# TYPE sluice_proxy_requests_total counter\n");
        for (name, s) in &routes {
            let label = escape(name);
            for (code, n) in s.statuses() {
                let _ = writeln!(
                    out,
                    "sluice_proxy_requests_total{{route=\"{label}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP sluice_proxy_request_duration_seconds Time from request start to the end of logging, by route.\n");
        out.push_str("# TYPE sluice_proxy_request_duration_seconds histogram\n");
        for (name, s) in &routes {
            let count = s.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let label = escape(name);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "sluice_proxy_request_duration_seconds_bucket{{route=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "sluice_proxy_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}"
            );
            let sum = s.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "sluice_proxy_request_duration_seconds_sum{{route=\"{label}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "sluice_proxy_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            );
        }
    }
}

fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters by route and code, and a cumulative histogram, in Prometheus text.
    #[test]
    fn render() {
        let m = Metrics::default();
        let r = m.route("httproute/default/a/rule/0/match/0");
        r.record(200, Duration::from_millis(3));
        r.record(200, Duration::from_millis(30));
        r.record(418, Duration::from_millis(3));
        m.unmatched().record(404, Duration::from_micros(10));
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(out.contains(
            "sluice_proxy_requests_total{route=\"httproute/default/a/rule/0/match/0\",code=\"200\"} 2"
        ));
        assert!(out.contains("code=\"418\"} 1"));
        assert!(out.contains("sluice_proxy_requests_total{route=\"\",code=\"404\"} 1"));
        assert!(out.contains(
            "sluice_proxy_request_duration_seconds_bucket{route=\"httproute/default/a/rule/0/match/0\",le=\"0.005\"} 2"
        ));
        assert!(out.contains(
            "sluice_proxy_request_duration_seconds_count{route=\"httproute/default/a/rule/0/match/0\"} 3"
        ));
        assert!(Arc::ptr_eq(
            &r,
            &m.route("httproute/default/a/rule/0/match/0")
        ));
    }
}
