//! # sluice-ir: the intermediate representation
//!
//! The controller translates Gateway API objects and Ingress objects (with their
//! `nginx.ingress.kubernetes.io/*` annotations) into one [`Config`]; the proxy compiles
//! that `Config` into its router. This crate is the only thing the two sides share.
//!
//! Rules the types follow:
//! - **Plain data.** No Kubernetes types, no Pingora types, no tokio. Everything is
//!   `serde` (camelCase) and `schemars`, so `/config` can dump it and a JSON schema can
//!   be generated from it (`cargo xtask schema`).
//! - **Complete.** Endpoints are resolved to addresses, TLS material is resolved from
//!   Secrets and defaults are applied by the translator. The proxy never guesses.
//! - **Deterministic.** The same objects give byte-identical IR whatever the order they
//!   arrived in: every list is in a defined order (listeners by address then port,
//!   servers by specificity, routes by precedence, backends by source order).
//! - **Provenance.** Every route, backend and filter carries a [`Source`] naming the
//!   object a user wrote, so a log line or a metric label can name it.
//! - **Fail closed, explicitly.** A backend that could not be resolved is
//!   [`BackendKind::Invalid`]: the proxy answers its share of traffic with
//!   its `status` (500 unless said otherwise). Nothing is dropped silently.
//!
//! Shape, from the socket down (the consumer's view):
//!
//! ```text
//! Config ─ listeners: address:port, protocol
//!            └ servers: hostname pattern (selected exclusively: listener isolation)
//!                └ virtual_hosts: hostname pattern (most specific first, falls through)
//!                    └ routes: ordered by precedence; first match wins
//!                        └ action: forward to weighted backends | redirect | fixed answer
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

mod validate;
pub use validate::ValidationError;

/// The whole configuration the proxy serves at one point in time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Monotonic configuration generation, set by the controller's pipeline (not by
    /// translation): 0 for the empty configuration, +1 for every new snapshot published.
    #[serde(default)]
    pub generation: u64,
    /// Sockets to bind, ordered by address then port. Two listeners never share the
    /// same address and port.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// TLS certificates referenced by servers, keyed by [`Certificate::name`]
    /// (a `BTreeMap`, so the order is deterministic).
    #[serde(default)]
    pub certificates: BTreeMap<String, Certificate>,
}

/// One bound socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Stable name, used in logs and metrics: `<address>:<port>`.
    pub name: String,
    /// Address to bind (IPv4 or IPv6).
    pub address: IpAddr,
    /// TCP port to bind.
    pub port: u16,
    /// What is spoken on the socket.
    pub protocol: Protocol,
    /// Server blocks sharing this socket. A request is served by exactly one server:
    /// the one whose [`Server::hostname`] matches the request's host most specifically
    /// (exact name, then the longest wildcard suffix, then a server without hostname).
    /// There is no fall-through from one server to another (Gateway API listener
    /// isolation; one nginx `server {}` per host for Ingress). Ordered by specificity,
    /// most specific first; ties by name.
    pub servers: Vec<Server>,
}

/// Protocol spoken on a listener socket.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// Cleartext HTTP/1.1 (and HTTP/2 with prior knowledge).
    Http,
    /// TLS-terminated HTTP/1.1 and HTTP/2 (ALPN).
    Https,
    /// TLS passthrough, routed by SNI without terminating TLS (Gateway API
    /// `protocol: TLS` with `tls.mode: Passthrough` and TLSRoutes; ingress-nginx
    /// `ssl-passthrough`). The proxy reads the ClientHello, selects a server by its
    /// SNI (exact name, then the longest wildcard, then a server without hostname; no
    /// fall-through), then the most specific [`Server::passthrough`] route of that
    /// server, and splices the connection, ClientHello included, to one of the
    /// route's backends. Virtual hosts and HTTP routes do not apply. A connection
    /// without SNI, or whose SNI selects nothing, is closed.
    #[serde(rename = "TLS_PASSTHROUGH")]
    TlsPassthrough,
}

/// A hostname pattern: an exact name, or a wildcard `*.suffix` matching one or more
/// labels in front of `suffix` (Gateway API and nginx semantics). Always lower case.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum HostMatch {
    /// `foo.example.com`: only that name.
    Exact(String),
    /// `*.example.com`, stored as the suffix `example.com`: any name ending in
    /// `.example.com` with at least one label before it.
    Wildcard(String),
}

impl HostMatch {
    /// Parses `*.suffix` as a wildcard and anything else as an exact name (lower-cased).
    pub fn parse(s: &str) -> HostMatch {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix("*.") {
            Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
            None => HostMatch::Exact(s),
        }
    }

    /// Does `host` (lower case, without port) match this pattern?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// The pattern as users write it (`*.example.com` for wildcards).
    pub fn to_pattern(&self) -> String {
        match self {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Wildcard(s) => format!("*.{s}"),
        }
    }
}

/// A server block: the routes reachable through one hostname pattern of a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Stable name: `gateway/<ns>/<name>/<listener>` or `ingress/<host>`.
    pub name: String,
    /// Where this server comes from (a Gateway listener, or the Ingress hosts).
    pub source: Source,
    /// Hostname this server answers for; `None` answers any host not claimed by a more
    /// specific server on the same listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<HostMatch>,
    /// TLS for this server, on `HTTPS` listeners: the certificate names (keys of
    /// [`Config::certificates`]) offered to clients whose SNI selects this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    /// Virtual hosts in order of specificity (exact names first, then wildcards from
    /// the longest suffix, then the one without hostname). A request tries each one
    /// whose hostname matches, in this order, until a route matches. Empty on
    /// [`Protocol::TlsPassthrough`] listeners.
    pub virtual_hosts: Vec<VirtualHost>,
    /// SNI-routed passthrough routes, on [`Protocol::TlsPassthrough`] listeners only
    /// (default: none). Ordered by hostname specificity (exact names, then wildcards
    /// from the longest suffix, then the one without hostname); among routes with
    /// the same hostname the translator puts the oldest first (then namespace/name),
    /// and the first whose hostname matches the SNI serves the connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<PassthroughRoute>,
}

/// A TLS passthrough route: connections whose SNI matches `hostname` are spliced,
/// still encrypted, to one of `backends`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PassthroughRoute {
    /// Stable name, a path: `tlsroute/<ns>/<name>/rule/<i>`. Used in logs.
    pub name: String,
    /// The object (and rule) this route comes from.
    pub source: Source,
    /// SNI pattern; `None` matches any SNI (a route without hostnames on a listener
    /// without hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<HostMatch>,
    /// Candidate backends, picked per connection with probability
    /// `weight / sum(weights)`. Only [`BackendKind::Endpoints`] backends carry traffic
    /// (their `protocol` and `tls` are ignored: bytes are passed through); a picked
    /// [`BackendKind::Invalid`] backend, a backend without endpoints, no backend or
    /// all weights 0 close the connection. Backend filters do not apply.
    pub backends: Vec<Backend>,
}

/// TLS settings of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTls {
    /// Certificate names (keys of [`Config::certificates`]); the first whose names
    /// cover the SNI is served, else the first.
    pub certificates: Vec<String>,
    /// Client certificate validation (mutual TLS) for connections whose SNI selects
    /// this server; `None`: no client certificate is requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidation>,
}

/// How client certificates are requested and checked on a TLS server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientValidation {
    /// PEM bundle of the certificate authorities a client certificate must chain to.
    pub ca_pem: String,
    /// What happens with a missing or invalid client certificate.
    pub mode: ClientCertMode,
    /// Maximum verification depth of the client chain (default 1, as nginx's
    /// `ssl_verify_depth`); `None` keeps the TLS library's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_depth: Option<u32>,
}

/// Client certificate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientCertMode {
    /// A certificate that chains to the CA is required; the handshake fails otherwise
    /// (Gateway API `AllowValidOnly`, nginx `ssl_verify_client on`).
    Require,
    /// A certificate is requested; if one is presented it must verify, else the
    /// handshake fails; connections without one are accepted (nginx `optional`).
    Optional,
    /// A certificate is requested but neither its absence nor a failed verification
    /// stops the connection (Gateway API `AllowInsecureFallback`, nginx
    /// `optional_no_ca`).
    RequestOnly,
}

/// A certificate and its private key, PEM encoded, resolved from a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Certificate {
    /// `<namespace>/<secret name>`.
    pub name: String,
    /// PEM certificate chain (leaf first).
    pub cert_pem: String,
    /// PEM private key. Serialized as `"<redacted>"` by the admin `/config` endpoint.
    pub key_pem: String,
}

/// A set of routes sharing one hostname pattern inside a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHost {
    /// Hostname pattern; `None` matches any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<HostMatch>,
    /// Routes in precedence order: the first whose match accepts the request wins.
    pub routes: Vec<Route>,
}

/// One match plus what to do with the requests it accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// Stable name, a path: `httproute/<ns>/<name>/rule/<i>/match/<j>`. Used as the
    /// metrics label and in logs.
    pub name: String,
    /// The object (and rule) this route comes from.
    pub source: Source,
    /// What a request must look like to be served by this route.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Filters applied to matching requests, in order, before the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// What happens to matching requests.
    pub action: Action,
    /// Timeouts; unset fields mean no timeout beyond the proxy defaults.
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// Retry policy; `None`: a failed attempt is not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// When and how often a failed request is sent again (to a backend picked anew).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Upstream answer codes that make an attempt count as failed (e.g. 500, 502).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
    /// Retries after the first attempt (Gateway API `attempts`); 0 disables retries.
    pub attempts: u32,
    /// Pause before each retry, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Also retry when the connection fails (refused, reset, closed before an answer)
    /// and when an attempt times out (`timeouts.backendRequestMs`).
    pub on_connection_error: bool,
}

/// Conditions on a request. All given conditions must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// Condition on the request path (without query).
    pub path: PathMatch,
    /// Conditions on request headers; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Conditions on query parameters; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<QueryParamMatch>,
    /// HTTP method (upper case), if restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Condition on the request path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum PathMatch {
    /// The path equals this value exactly (case-sensitive).
    Exact(String),
    /// Element-wise prefix: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not
    /// `/foobar`. A trailing `/` in the prefix is ignored; `/` matches every path.
    Prefix(String),
    /// A regular expression (Rust `regex` syntax, linear time), applied to the path
    /// with `is_match`: the translator writes the anchors (`^`, `$`) and flags
    /// (`(?i)`) the front end's semantics need.
    Regex(String),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".to_string())
    }
}

/// How a string value is compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum StringMatch {
    /// Equal, case-sensitively.
    Exact(String),
    /// A regular expression (Rust `regex` syntax) applied with `is_match`; the
    /// translator writes the anchors it needs.
    Regex(String),
}

/// Condition on one request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, lower case.
    pub name: String,
    /// Condition on the value. With several values (repeated header), the values are
    /// joined with `,` before comparing.
    pub value: StringMatch,
}

/// Condition on one query parameter (the first value of that name counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParamMatch {
    /// Parameter name, case-sensitive.
    pub name: String,
    /// Condition on the value.
    pub value: StringMatch,
}

/// What a route does with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    /// Proxy to one of the backends, picked by weight.
    Forward(Forward),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly with a status code (and optional body), without a backend.
    Respond(DirectResponse),
}

/// Weighted choice of backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Forward {
    /// Candidate backends. Each request picks one with probability
    /// `weight / sum(weights)`. With no backend, or all weights 0, the answer is 500.
    pub backends: Vec<Backend>,
}

/// A backend: a set of endpoints speaking one protocol, or an unresolved reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Stable name: `<namespace>/<service>:<port>`, or the reference as written when
    /// it did not resolve.
    pub name: String,
    /// The object and rule that reference this backend.
    pub source: Source,
    /// Relative weight among the route's backends (0 = never picked).
    pub weight: u32,
    /// Filters that apply only when this backend is picked (after the route's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Where the traffic goes.
    pub kind: BackendKind,
}

/// Where a backend's traffic goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum BackendKind {
    /// Ready endpoints of a Service port. With no endpoint the proxy answers 503.
    Endpoints(EndpointSet),
    /// A reference that did not resolve: the proxy answers `status` (500) for this
    /// backend's share of traffic, as Gateway API requires.
    Invalid {
        /// Why, for logs (e.g. `Service "ns/foo" not found`).
        reason: String,
        /// Status code to answer (500).
        status: u16,
    },
}

/// Endpoints of one backend and how to speak to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSet {
    /// Protocol towards the endpoints.
    pub protocol: UpstreamProtocol,
    /// Ready endpoints, sorted by address then port.
    pub endpoints: Vec<Endpoint>,
    /// TLS towards the endpoints (with [`UpstreamProtocol::Https`]): SNI, server
    /// verification and the client certificate to present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// TLS settings towards an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTls {
    /// SNI sent, and the name the server certificate must carry unless
    /// `subject_alt_names` is given.
    pub server_name: String,
    /// Verify the upstream certificate (false: any certificate is accepted).
    pub verify: bool,
    /// PEM bundle of trusted CAs; `None` uses the system's trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Names (DNS names or URIs) of which the server certificate must carry at least
    /// one, instead of `server_name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Client certificate to present (a key of [`Config::certificates`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

/// Protocol towards an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 in clear text (WebSocket upgrades pass through).
    Http1,
    /// HTTP/2 in clear text with prior knowledge (`appProtocol: kubernetes.io/h2c`).
    H2c,
    /// HTTPS (HTTP/1.1 over TLS).
    Https,
}

/// One endpoint address.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// IP address.
    pub address: IpAddr,
    /// TCP port.
    pub port: u16,
}

/// A redirect answer. Unset parts keep the request's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    /// `http` or `https`; default: the request's scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Host to redirect to; default: the request's host (without port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port; default: derived from the scheme (Gateway API rules). The port is left out
    /// of `Location` when it is the scheme's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path change; default: the request's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// Status code (301, 302, 303, 307, 308).
    pub status: u16,
}

/// A direct answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectResponse {
    /// Status code.
    pub status: u16,
    /// Body, if any (sent as `text/plain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// How a path is changed (redirects and rewrites).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum PathRewrite {
    /// Replace the whole path.
    ReplaceFullPath {
        /// The new path.
        path: String,
    },
    /// Replace the part of the path the route's prefix matched, element-wise, with the
    /// Gateway API slash rules (`/foo` → `/` on `/foo/bar` gives `/bar`).
    ReplacePrefixMatch {
        /// The prefix the route matched (as in its [`PathMatch::Prefix`]).
        prefix: String,
        /// What replaces it.
        replacement: String,
    },
}

/// A filter applied to requests of a route or of one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Filter {
    /// Change request headers before proxying.
    RequestHeaders(HeaderModifier),
    /// Change response headers before answering.
    ResponseHeaders(HeaderModifier),
    /// Rewrite host and/or path before proxying.
    UrlRewrite(UrlRewrite),
    /// Send a copy of the request to another backend; its answer is discarded.
    /// (Boxed: a backend is much larger than the other filters.)
    Mirror(Box<Mirror>),
    /// Answer CORS preflights and add CORS headers to answers.
    Cors(Cors),
    /// The filter could not be translated: the proxy answers `status` (500) instead of
    /// serving the route without it (fail closed).
    InternalError {
        /// Why, for logs.
        reason: String,
        /// Status code to answer (500).
        status: u16,
    },
}

/// A request mirror.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    /// Where copies go (its weight is ignored).
    pub backend: Backend,
    /// Share of requests mirrored: `numerator / denominator` (1/1 = all).
    pub numerator: u32,
    /// Denominator of the share (> 0).
    pub denominator: u32,
}

/// Cross-origin resource sharing (Gateway API `CORS` filter, ingress-nginx
/// `enable-cors`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins: `*`, `scheme://host[:port]`, or with a wildcard host label
    /// (`https://*.example.com`). A request whose `Origin` matches none gets no CORS
    /// headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Allowed methods (`*` for any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`*` for any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to the page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub allow_credentials: bool,
}

/// Header changes: `set` replaces, `add` appends, `remove` deletes (by name).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    /// Headers to set (replacing any existing values), names lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderValue>,
    /// Headers to add (keeping existing values), names lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderValue>,
    /// Header names to remove, lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    /// Name, lower case.
    pub name: String,
    /// Value.
    pub value: String,
}

/// URL rewrite before proxying.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    /// New `Host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

/// Timeouts of a route, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Whole request, from the first byte received to the last byte of the answer
    /// (Gateway API `timeouts.request`). Exceeded: 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<u64>,
    /// One attempt towards a backend (Gateway API `timeouts.backendRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_ms: Option<u64>,
    /// TCP connect to an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
}

impl Timeouts {
    /// True when no timeout is set.
    pub fn is_empty(&self) -> bool {
        *self == Timeouts::default()
    }
}

/// Provenance: the object a user wrote that produced an IR element.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Kind: `HTTPRoute`, `Gateway`, `Ingress`, ...
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Rule index inside the object, when the element comes from one rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// Section inside the object (listener name, `rules[].name`, Ingress host), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The annotation that produced the element, for Ingress annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
}

impl Source {
    /// A source for a whole object.
    pub fn object(kind: &str, namespace: &str, name: &str) -> Source {
        Source {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            rule: None,
            section: None,
            annotation: None,
        }
    }

    /// `namespace/name` (or `name` for cluster-scoped objects).
    pub fn object_ref(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

impl Config {
    /// Serializes to pretty JSON with private keys replaced by `"<redacted>"`.
    pub fn to_redacted_json(&self) -> String {
        let mut redacted = self.clone();
        for cert in redacted.certificates.values_mut() {
            cert.key_pem = "<redacted>".to_string();
        }
        serde_json::to_string_pretty(&redacted).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The JSON schema of the IR.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(Config)
    }
}

/// What the proxy reports back after applying a [`Config`]: the generation now served
/// and the listeners it could not bind (so the controller can set `Programmed: False`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Applied {
    /// Generation of the config now being served (0: none yet).
    pub generation: u64,
    /// Listener name ([`Listener::name`]) → why it could not be bound. Empty when all
    /// listeners of that generation are bound.
    #[serde(default)]
    pub listener_errors: BTreeMap<String, String>,
}
