//! The HTTP front end: routing of the Kubernetes REST paths, discovery, and watch
//! streams.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::resources::{self, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{transform, ApiError, Filter, PatchKind, WatchMsg, WriteOpts};
use crate::{RequestRecord, Shared};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).expect("JSON values serialize");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect()
}

fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("1") | Some("true"))
}

fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_yaml::from_slice::<Value>(bytes).map_err(|yaml_err| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded: {json_err}; as YAML: {yaml_err}"
            ))
        }),
    }
}

struct Ctx {
    method: Method,
    query: HashMap<String, String>,
    content_type: String,
    user_agent: String,
    body: Bytes,
}

impl Ctx {
    fn write_opts(&self) -> WriteOpts {
        let manager = self
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| {
                self.user_agent
                    .split('/')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("unknown")
                    .to_string()
            });
        WriteOpts {
            manager,
            force: truthy(&self.query, "force"),
            dry_run: self.query.get("dryRun").is_some_and(|v| v == "All"),
        }
    }

    fn apply_manager_missing(&self) -> bool {
        self.query.get("fieldManager").is_none_or(|m| m.is_empty())
    }
}

/// Handles one HTTP request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let header_str = |h: header::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header_str(header::CONTENT_TYPE);
    let user_agent = header_str(header::USER_AGENT);
    let accept = header_str(header::ACCEPT);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut body = body;
    let mut content_type = content_type;
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        if let Some(v) = crate::protobuf::decode(&body) {
            body = Bytes::from(serde_json::to_vec(&v).expect("JSON values serialize"));
            content_type = "application/json".into();
        }
    }
    if content_type.starts_with("application/vnd.kubernetes.protobuf")
        || content_type.starts_with("application/cbor")
    {
        // JSON only: clients (client-go included) fall back to JSON on 415.
        let e = ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type})"),
        );
        let resp = error_response(&e);
        shared.log.lock().push(RequestRecord {
            method: method.to_string(),
            path,
            query: raw_query,
            status: 415,
            content_type,
            user_agent,
            field_manager: None,
            watch: false,
        });
        return Ok(resp);
    }
    let query = parse_query(&raw_query);
    let is_watch = method == Method::GET && (truthy(&query, "watch") || path.contains("/watch/"));
    if let Some(code) = take_fault(&shared, &method, &path, is_watch) {
        let reason = match code {
            429 => "TooManyRequests",
            409 => "Conflict",
            404 => "NotFound",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let e = ApiError::new(code, reason, format!("injected failure ({code})"));
        let mut resp = error_response(&e);
        if code == 429 {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        shared.log.lock().push(RequestRecord {
            method: method.to_string(),
            path,
            query: raw_query,
            status: code,
            content_type,
            user_agent,
            field_manager: query.get("fieldManager").cloned(),
            watch: is_watch,
        });
        return Ok(resp);
    }
    let field_manager = query.get("fieldManager").cloned();
    let ctx = Ctx {
        method: method.clone(),
        query,
        content_type: content_type.clone(),
        user_agent: user_agent.clone(),
        body,
    };
    let (resp, watch) = route(&shared, &path, &ctx, &accept);
    tracing::debug!(%method, %path, query = %raw_query, status = resp.status().as_u16(), "request");
    shared.log.lock().push(RequestRecord {
        method: method.to_string(),
        path,
        query: raw_query,
        status: resp.status().as_u16(),
        content_type,
        user_agent,
        field_manager,
        watch,
    });
    Ok(resp)
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kubesim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn route(shared: &Arc<Shared>, path: &str, ctx: &Ctx, accept: &str) -> (Response<Body>, bool) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = ctx.method == Method::GET;
    let types = shared.state.lock().types();
    let resp = match segs.as_slice() {
        [] if get => {
            let mut paths = vec![
                "/api".to_string(),
                "/api/v1".into(),
                "/apis".into(),
                "/healthz".into(),
                "/livez".into(),
                "/readyz".into(),
                "/version".into(),
            ];
            for t in &types {
                if !t.group.is_empty() {
                    paths.push(format!("/apis/{}", t.group));
                    for v in &t.versions {
                        paths.push(format!("/apis/{}/{v}", t.group));
                    }
                }
            }
            paths.sort();
            paths.dedup();
            json_response(200, &json!({ "paths": paths }))
        }
        ["version"] if get => json_response(200, &version_info()),
        ["healthz" | "livez" | "readyz", ..] if get => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(full("ok"))
            .expect("valid response"),
        ["api"] if get => json_response(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{
                    "clientCIDR": "0.0.0.0/0",
                    "serverAddress": shared.addr.lock().to_string(),
                }],
            }),
        ),
        ["api", "v1"] if get => json_response(200, &resources::resource_list(&types, "", "v1")),
        ["api", "v1", rest @ ..] => return resource(shared, "", "v1", rest, ctx, accept),
        ["apis"] if get => json_response(200, &resources::group_list(&types)),
        ["apis", group] if get => match resources::api_group(&types, group) {
            Some(g) => json_response(200, &g),
            None => error_response(&ApiError::not_found_path()),
        },
        ["apis", group, version] if get => {
            if types.iter().any(|t| t.group == *group && t.serves(version)) {
                json_response(200, &resources::resource_list(&types, group, version))
            } else {
                error_response(&ApiError::not_found_path())
            }
        }
        ["apis", group, version, rest @ ..] => {
            return resource(shared, group, version, rest, ctx, accept)
        }
        ["openapi", "v3"] if get => json_response(200, &resources::openapi_v3_root(&types)),
        ["openapi", "v3", "api", "v1"] if get => {
            match resources::openapi_v3_group_version(&types, "", "v1") {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::not_found_path()),
            }
        }
        ["openapi", "v3", "apis", group, version] if get => {
            match resources::openapi_v3_group_version(&types, group, version) {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::not_found_path()),
            }
        }
        _ => error_response(&ApiError::not_found_path()),
    };
    (resp, false)
}

/// Where a resource request points.
struct Target<'a> {
    rt: ResourceType,
    version: &'a str,
    ns: Option<&'a str>,
    name: Option<&'a str>,
    status: bool,
}

fn resolve<'a>(
    shared: &Shared,
    group: &str,
    version: &'a str,
    rest: &[&'a str],
) -> Result<Target<'a>, ApiError> {
    let state = shared.state.lock();
    let namespaced_form = rest.len() >= 3
        && rest[0] == "namespaces"
        && state
            .find_type(group, version, rest[2])
            .is_some_and(|t| t.namespaced);
    let (ns, rest) = if namespaced_form {
        (Some(rest[1]), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return Err(ApiError::not_found_path());
    }
    let rt = state
        .find_type(group, version, rest[0])
        .ok_or_else(ApiError::not_found_path)?;
    let name = rest.get(1).copied();
    let status = match rest.get(2) {
        None => false,
        Some(&"status") if rt.status => true,
        Some(_) => return Err(ApiError::not_found_path()),
    };
    if rt.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::not_found_path());
    }
    Ok(Target {
        rt,
        version,
        ns,
        name,
        status,
    })
}

fn out(rt: &ResourceType, version: &str, mut obj: Value) -> Value {
    obj["apiVersion"] = json!(rt.api_version(version));
    obj["kind"] = json!(rt.kind);
    obj
}

fn filter_from(t: &Target, q: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let mut fields = fields;
    if let Some(name) = t.name {
        let mut f = FieldSelector::parse(&format!("metadata.name={name}")).expect("valid");
        if !q.contains_key("fieldSelector") {
            fields = std::mem::take(&mut f);
        } else {
            fields = FieldSelector::parse(&format!(
                "{},metadata.name={name}",
                q.get("fieldSelector").map(String::as_str).unwrap_or("")
            ))
            .map_err(ApiError::bad_request)?;
        }
    }
    Ok(Filter {
        namespace: t.ns.map(str::to_string),
        labels,
        fields,
    })
}

fn resource(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    ctx: &Ctx,
    accept: &str,
) -> (Response<Body>, bool) {
    let (watch_prefix, rest) = match rest.first() {
        Some(&"watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let t = match resolve(shared, group, version, rest) {
        Ok(t) => t,
        Err(e) => return (error_response(&e), false),
    };
    let is_watch = ctx.method == Method::GET && (watch_prefix || truthy(&ctx.query, "watch"));
    if is_watch && !t.status {
        return match watch(shared, &t, ctx, accept) {
            Ok(r) => (r, true),
            Err(e) => (error_response(&e), false),
        };
    }
    let result = match (&ctx.method, t.name) {
        (&Method::GET, None) => list(shared, &t, ctx, accept),
        (&Method::POST, None) => create(shared, &t, ctx),
        (&Method::DELETE, None) => delete_collection(shared, &t, ctx),
        (&Method::GET, Some(name)) => {
            let state = shared.state.lock();
            state
                .get(&t.rt, t.ns.unwrap_or(""), name)
                .cloned()
                .map(|o| (200, table_or(accept, out(&t.rt, t.version, o), false)))
                .ok_or_else(|| ApiError::not_found(&t.rt, name))
        }
        (&Method::PUT, Some(name)) => parse_body(&ctx.body).and_then(|body| {
            let w = ctx.write_opts();
            shared
                .state
                .lock()
                .update(&t.rt, t.ns, name, body, t.status, &w)
                .map(|o| (200, out(&t.rt, t.version, o)))
        }),
        (&Method::PATCH, Some(name)) => patch(shared, &t, name, ctx),
        (&Method::DELETE, Some(name)) => {
            let options = parse_body(&ctx.body).unwrap_or(Value::Null);
            let mut options = options;
            if let Some(p) = ctx.query.get("propagationPolicy") {
                options["propagationPolicy"] = json!(p);
            }
            let dry_run = ctx.query.get("dryRun").is_some_and(|v| v == "All");
            shared
                .state
                .lock()
                .delete(&t.rt, t.ns, name, &options, dry_run)
                .map(|o| (200, out(&t.rt, t.version, o)))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    };
    match result {
        Ok((code, v)) => (json_response(code, &v), false),
        Err(e) => (error_response(&e), false),
    }
}

fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Renders objects as a `meta.k8s.io/v1` Table when the client asked for one
/// (`kubectl get` without `-o`).
fn wants_metadata(accept: &str) -> bool {
    accept.contains("as=PartialObjectMetadata")
}

/// An object as `meta.k8s.io/v1` PartialObjectMetadata.
fn partial(v: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": v.get("metadata").cloned().unwrap_or(json!({})),
    })
}

fn table_or(accept: &str, v: Value, is_list: bool) -> Value {
    if wants_metadata(accept) && !wants_table(accept) {
        if !is_list {
            return partial(&v);
        }
        let items: Vec<Value> = v
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(partial).collect())
            .unwrap_or_default();
        return json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": v.get("metadata").cloned().unwrap_or(json!({})),
            "items": items,
        });
    }
    if !wants_table(accept) {
        return v;
    }
    let items: Vec<Value> = if is_list {
        v.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    } else {
        vec![v.clone()]
    };
    let rv = v
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(json!(""));
    table(&items, rv)
}

fn age(ts: Option<&str>) -> String {
    let Some(ts) = ts else {
        return "<unknown>".into();
    };
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn table(items: &[Value], rv: Value) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let name = o.pointer("/metadata/name").cloned().unwrap_or(json!(""));
            let created = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str);
            let mut partial = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
            });
            if let Some(m) = partial["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": [name, age(created)], "object": partial})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0},
        ],
        "rows": rows,
    })
}

fn list(
    shared: &Arc<Shared>,
    t: &Target,
    ctx: &Ctx,
    accept: &str,
) -> Result<(u16, Value), ApiError> {
    let filter = filter_from(t, &ctx.query)?;
    let state = shared.state.lock();
    let items: Vec<Value> = state
        .list(&t.rt, &filter)
        .into_iter()
        .map(|o| out(&t.rt, t.version, o))
        .collect();
    let v = json!({
        "kind": t.rt.list_kind,
        "apiVersion": t.rt.api_version(t.version),
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    });
    Ok((200, table_or(accept, v, true)))
}

fn create(shared: &Arc<Shared>, t: &Target, ctx: &Ctx) -> Result<(u16, Value), ApiError> {
    if t.rt.namespaced && t.ns.is_none() {
        return Err(ApiError::not_found_path());
    }
    let body = parse_body(&ctx.body)?;
    let w = ctx.write_opts();
    shared
        .state
        .lock()
        .create(&t.rt, t.ns, body, &w, false)
        .map(|o| (201, out(&t.rt, t.version, o)))
}

fn delete_collection(
    shared: &Arc<Shared>,
    t: &Target,
    ctx: &Ctx,
) -> Result<(u16, Value), ApiError> {
    let filter = filter_from(t, &ctx.query)?;
    let mut state = shared.state.lock();
    let dry_run = ctx.query.get("dryRun").is_some_and(|v| v == "All");
    let mut items = Vec::new();
    for o in state.list(&t.rt, &filter) {
        let ns = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Ok(d) = state.delete(&t.rt, ns.as_deref(), &name, &Value::Null, dry_run) {
            items.push(out(&t.rt, t.version, d));
        }
    }
    Ok((
        200,
        json!({
            "kind": t.rt.list_kind,
            "apiVersion": t.rt.api_version(t.version),
            "metadata": {"resourceVersion": state.rv.to_string()},
            "items": items,
        }),
    ))
}

fn patch(
    shared: &Arc<Shared>,
    t: &Target,
    name: &str,
    ctx: &Ctx,
) -> Result<(u16, Value), ApiError> {
    let kind = PatchKind::from_content_type(&ctx.content_type).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml (got {:?})",
                ctx.content_type
            ),
        )
    })?;
    let body = parse_body(&ctx.body)?;
    let mut w = ctx.write_opts();
    if kind == PatchKind::Apply && ctx.apply_manager_missing() {
        w.manager = String::new();
    }
    shared
        .state
        .lock()
        .patch(&t.rt, t.ns, name, kind, body, t.status, &w)
        .map(|(code, o)| (code, out(&t.rt, t.version, o)))
}

fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": etype, "object": object}))
        .expect("JSON values serialize");
    v.push(b'\n');
    Bytes::from(v)
}

fn expired_line(requested: u64, current: u64) -> Bytes {
    let status = ApiError::new(
        410,
        "Expired",
        format!("too old resource version: {requested} ({current})"),
    )
    .to_status();
    event_line("ERROR", &status)
}

struct WatchStream {
    shared: Arc<Shared>,
    rt: ResourceType,
    version: String,
    filter: Filter,
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    pending: VecDeque<Bytes>,
    bookmarks: Option<tokio::time::Interval>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    /// Send PartialObjectMetadata objects (metadata-only watches).
    metadata_only: bool,
}

enum Wake {
    Msg(Option<WatchMsg>),
    Bookmark,
    Timeout,
}

impl WatchStream {
    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event_line(
            "BOOKMARK",
            &json!({
                "kind": self.rt.kind,
                "apiVersion": self.rt.api_version(&self.version),
                "metadata": meta,
            }),
        )
    }

    fn on_msg(&mut self, msg: Option<WatchMsg>) {
        match msg {
            None => self.done = true,
            Some(WatchMsg::Event(ev)) => {
                if let Some((t, o)) = transform(&ev, &self.filter) {
                    let mut o = out(&self.rt, &self.version, o);
                    if self.metadata_only {
                        o = partial(&o);
                    }
                    self.pending.push_back(event_line(t.as_str(), &o));
                }
            }
            Some(WatchMsg::Expired { requested, current }) => {
                self.pending.push_back(expired_line(requested, current));
                self.done = true;
            }
        }
    }

    async fn next_frame(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Self)> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some((Ok(Frame::data(b)), self));
            }
            if self.done {
                return None;
            }
            let wake = {
                let bookmarks = self.bookmarks.as_mut();
                let deadline = self.deadline.as_mut();
                tokio::select! {
                    m = self.rx.recv() => Wake::Msg(m),
                    _ = async {
                        match bookmarks {
                            Some(i) => { i.tick().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => Wake::Bookmark,
                    _ = async {
                        match deadline {
                            Some(d) => d.await,
                            None => std::future::pending::<()>().await,
                        }
                    } => Wake::Timeout,
                }
            };
            match wake {
                Wake::Msg(m) => self.on_msg(m),
                Wake::Timeout => self.done = true,
                Wake::Bookmark => {
                    // Drain under the lock so that the bookmark follows every event
                    // up to its resourceVersion.
                    let shared = self.shared.clone();
                    let state = shared.state.lock();
                    let rv = state.rv;
                    let mut msgs = Vec::new();
                    while let Ok(m) = self.rx.try_recv() {
                        msgs.push(m);
                    }
                    drop(state);
                    for m in msgs {
                        self.on_msg(Some(m));
                    }
                    if !self.done {
                        let b = self.bookmark(rv, false);
                        self.pending.push_back(b);
                    }
                }
            }
        }
    }
}

fn watch(
    shared: &Arc<Shared>,
    t: &Target,
    ctx: &Ctx,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let filter = filter_from(t, &ctx.query)?;
    let bookmarks_allowed = truthy(&ctx.query, "allowWatchBookmarks");
    let send_initial = truthy(&ctx.query, "sendInitialEvents");
    let rv = ctx.query.get("resourceVersion").map(String::as_str);
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0);
    let started = shared
        .state
        .lock()
        .watch_start(&t.rt, &filter, rv, send_initial);
    let response = |body: Body| {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(body)
            .expect("valid response")
    };
    let (initial, start_rv, rx) = match started {
        Ok(s) => s,
        Err((requested, current)) => {
            return Ok(response(full(expired_line(requested, current))));
        }
    };
    let interval = shared.opts.bookmark_interval;
    let mut stream = WatchStream {
        shared: shared.clone(),
        rt: t.rt.clone(),
        version: t.version.to_string(),
        filter,
        rx,
        pending: VecDeque::new(),
        bookmarks: bookmarks_allowed.then(|| {
            let mut i = tokio::time::interval_at(
                tokio::time::Instant::now() + interval,
                interval.max(Duration::from_millis(10)),
            );
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }),
        deadline: timeout.map(|s| Box::pin(tokio::time::sleep(Duration::from_secs(s)))),
        done: false,
        metadata_only: wants_metadata(accept) && !wants_table(accept),
    };
    for (etype, o) in initial {
        let mut o = out(&t.rt, t.version, o);
        if stream.metadata_only {
            o = partial(&o);
        }
        let line = event_line(etype.as_str(), &o);
        stream.pending.push_back(line);
    }
    if send_initial && bookmarks_allowed {
        let b = stream.bookmark(start_rv, true);
        stream.pending.push_back(b);
    }
    let s = futures::stream::unfold(stream, WatchStream::next_frame);
    Ok(response(StreamBody::new(s).boxed_unsync()))
}

fn take_fault(shared: &Shared, method: &Method, path: &str, is_watch: bool) -> Option<u16> {
    let mut faults = shared.faults.lock();
    let idx = faults.iter().position(|f| {
        f.times > 0
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && path.contains(&f.path_contains)
            && f.watch.is_none_or(|w| w == is_watch)
    })?;
    let f = &mut faults[idx];
    f.times -= 1;
    let code = f.code;
    if f.times == 0 {
        faults.remove(idx);
    }
    Some(code)
}
