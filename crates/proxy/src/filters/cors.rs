//! CORS (Gateway API `CORS` filter, ingress-nginx `enable-cors`): preflight answers
//! and the headers added to actual answers. Pure functions on `http` types.

use http::header::{self, HeaderName, HeaderValue};
use sluice_ir as ir;

/// A CORS policy with its origins parsed.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<OriginPattern>,
    allow_methods: Vec<String>,
    allow_headers: Vec<String>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    allow_credentials: bool,
}

#[derive(Debug)]
enum OriginPattern {
    Any,
    /// `scheme://host[:port]`, lower case.
    Exact(String),
    /// `scheme://*.suffix[:port]`: `prefix` = `scheme://`, `suffix` = `.suffix[:port]`.
    Wildcard {
        prefix: String,
        suffix: String,
    },
}

/// Headers to add to an answer.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

impl CorsPolicy {
    /// Compiles `c`; header values that cannot be sent are an error.
    pub fn compile(c: &ir::Cors) -> Result<Self, String> {
        let origins = c
            .allow_origins
            .iter()
            .map(|o| {
                let o = o.trim().to_ascii_lowercase();
                if o == "*" {
                    return OriginPattern::Any;
                }
                match o.split_once("://*") {
                    Some((scheme, suffix)) => OriginPattern::Wildcard {
                        prefix: format!("{scheme}://"),
                        suffix: suffix.to_string(),
                    },
                    None => OriginPattern::Exact(o),
                }
            })
            .collect();
        let join = |v: &[String]| -> Result<Option<HeaderValue>, String> {
            if v.is_empty() {
                return Ok(None);
            }
            HeaderValue::from_str(&v.join(", "))
                .map(Some)
                .map_err(|_| format!("invalid CORS header list {v:?}"))
        };
        join(&c.allow_methods)?;
        join(&c.allow_headers)?;
        Ok(CorsPolicy {
            origins,
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: join(&c.expose_headers)?,
            max_age: c.max_age_s.map(HeaderValue::from),
            allow_credentials: c.allow_credentials,
        })
    }

    /// Does `origin` match an allowed origin?
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|p| match p {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => *o == origin,
            OriginPattern::Wildcard { prefix, suffix } => origin
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .is_some_and(|label| !label.is_empty() && !label.contains('/')),
        })
    }

    /// The answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`): CORS headers when the origin is allowed,
    /// none otherwise (the browser then refuses the request).
    pub fn preflight(&self, req: &http::HeaderMap) -> Headers {
        let Some(origin) = allowed_origin(self, req) else {
            return Vec::new();
        };
        let mut out = self.common(origin);
        let requested_method = req.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        if let Some(v) = self.list(&self.allow_methods, requested_method) {
            out.push((header::ACCESS_CONTROL_ALLOW_METHODS, v));
        }
        let requested_headers = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if let Some(v) = self.list(&self.allow_headers, requested_headers) {
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, v));
        }
        if let Some(v) = &self.max_age {
            out.push((header::ACCESS_CONTROL_MAX_AGE, v.clone()));
        }
        out
    }

    /// Headers added to the answer of an actual (non-preflight) request.
    pub fn actual(&self, req: &http::HeaderMap) -> Headers {
        match allowed_origin(self, req) {
            Some(origin) => self.common(origin),
            None => Vec::new(),
        }
    }

    fn common(&self, origin: &HeaderValue) -> Headers {
        let mut out = vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (header::VARY, HeaderValue::from_static("Origin")),
        ];
        if self.allow_credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(v) = &self.expose_headers {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone()));
        }
        out
    }

    /// An allow list as a header: `*` echoes what was requested (a literal `*` is not
    /// honoured by browsers on credentialed requests), else the list joined.
    fn list(&self, list: &[String], requested: Option<&HeaderValue>) -> Option<HeaderValue> {
        if list.iter().any(|m| m == "*") {
            return match requested {
                Some(r) => Some(r.clone()),
                None if !self.allow_credentials => Some(HeaderValue::from_static("*")),
                None => None,
            };
        }
        if list.is_empty() {
            return None;
        }
        HeaderValue::from_str(&list.join(", ")).ok()
    }
}

/// Is this request a CORS preflight?
pub fn is_preflight(method: &http::Method, req: &http::HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && req.contains_key(header::ORIGIN)
        && req.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn allowed_origin<'a>(p: &CorsPolicy, req: &'a http::HeaderMap) -> Option<&'a HeaderValue> {
    let origin = req.get(header::ORIGIN)?;
    p.allows(origin.to_str().ok()?).then_some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], methods: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::compile(&ir::Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: methods.iter().map(|s| s.to_string()).collect(),
            allow_headers: vec!["x-a".into()],
            expose_headers: vec!["x-b".into()],
            max_age_s: Some(60),
            allow_credentials: credentials,
        })
        .expect("policy")
    }

    fn req(origin: &str, method: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().expect("origin"));
        if let Some(m) = method {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                m.parse().expect("method"),
            );
        }
        h
    }

    fn get(h: &Headers, name: HeaderName) -> Option<&str> {
        h.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    /// Exact, wildcard-label and `*` origins; others get no CORS headers.
    #[test]
    fn origins() {
        let p = policy(
            &["https://www.foo.com", "https://*.bar.com"],
            &["GET"],
            true,
        );
        assert!(p.allows("https://www.foo.com"));
        assert!(p.allows("https://xpto.www.bar.com"));
        assert!(!p.allows("https://bar.com"));
        assert!(!p.allows("http://www.foo.com"));
        assert!(!p.allows("https://foobar.com"));
        assert!(policy(&["*"], &[], false).allows("https://foobar.com:12345"));
        assert!(p
            .preflight(&req("https://foobar.com", Some("GET")))
            .is_empty());
    }

    /// A preflight answer carries origin, methods, headers, max age, credentials.
    #[test]
    fn preflight_answer() {
        let p = policy(&["https://www.foo.com"], &["GET", "OPTIONS"], true);
        let h = p.preflight(&req("https://www.foo.com", Some("GET")));
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://www.foo.com")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, OPTIONS")
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), Some("x-a"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_EXPOSE_HEADERS), Some("x-b"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_MAX_AGE), Some("60"));
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        let p = policy(&["https://www.foo.com"], &["*"], false);
        let h = p.preflight(&req("https://www.foo.com", Some("POST")));
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), Some("POST"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }
}
