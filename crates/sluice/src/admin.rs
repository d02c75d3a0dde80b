//! Admin HTTP server: `/status`, `/readyz`, `/healthz`, `/config`, `/metrics`.
//!
//! Plain hyper on its own socket, off the proxy's data path.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// What the admin endpoints read. All of it is shared state published by the
/// controller and the proxy over watch channels; nothing here blocks them.
pub struct AdminState {
    pub config: watch::Receiver<Arc<sluice_ir::Config>>,
    pub status: watch::Receiver<Arc<sluice_controller::StatusReport>>,
    pub applied: watch::Receiver<sluice_ir::Applied>,
    pub reloads: Arc<AtomicU64>,
    pub metrics: Arc<sluice_proxy::Metrics>,
    /// Generation of the first configuration: ready once the proxy serves it.
    pub first_generation: u64,
    /// Cluster mode: status writer counters and leadership.
    pub cluster: Option<ClusterState>,
}

/// What cluster mode adds to `/metrics`.
pub struct ClusterState {
    pub status_writes: Arc<sluice_controller::status::sink::SinkMetrics>,
    pub leader: watch::Receiver<bool>,
}

impl AdminState {
    fn ready(&self) -> bool {
        let applied = self.applied.borrow().generation;
        applied >= 1 && applied >= self.first_generation
    }
}

/// Binds the admin socket and serves it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&state, req)) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
                {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
    });
    Ok(local)
}

fn handle<B>(state: &AdminState, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: first configuration not served yet\n",
                )
            }
        }
        "/status" => {
            let report = state.status.borrow().clone();
            match serde_json::to_vec_pretty(&*report) {
                Ok(body) => json(body),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
            }
        }
        "/config" => {
            let config = state.config.borrow().clone();
            json(config.to_redacted_json().into_bytes())
        }
        "/metrics" => {
            let mut out = String::with_capacity(4096);
            render_metrics(state, &mut out);
            let mut resp = Response::new(Full::new(Bytes::from(out)));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /status /readyz /healthz /config /metrics\n",
        ),
    }
}

fn render_metrics(state: &AdminState, out: &mut String) {
    let generation = state.config.borrow().generation;
    let applied = state.applied.borrow().clone();
    let _ = writeln!(out, "# HELP sluice_config_generation Generation of the newest configuration built by the controller.");
    let _ = writeln!(out, "# TYPE sluice_config_generation gauge");
    let _ = writeln!(out, "sluice_config_generation {generation}");
    let _ = writeln!(
        out,
        "# HELP sluice_config_applied_generation Generation of the configuration the proxy serves."
    );
    let _ = writeln!(out, "# TYPE sluice_config_applied_generation gauge");
    let _ = writeln!(
        out,
        "sluice_config_applied_generation {}",
        applied.generation
    );
    let _ = writeln!(out, "# HELP sluice_config_reloads_total Rebuilds of the configuration after a change of the sources.");
    let _ = writeln!(out, "# TYPE sluice_config_reloads_total counter");
    let _ = writeln!(
        out,
        "sluice_config_reloads_total {}",
        state.reloads.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP sluice_listener_errors Listeners of the served configuration that could not be bound.");
    let _ = writeln!(out, "# TYPE sluice_listener_errors gauge");
    let _ = writeln!(
        out,
        "sluice_listener_errors {}",
        applied.listener_errors.len()
    );
    if let Some(c) = &state.cluster {
        let _ = writeln!(
            out,
            "# HELP sluice_leader 1 while this replica holds the leader Lease (and writes status)."
        );
        let _ = writeln!(out, "# TYPE sluice_leader gauge");
        let _ = writeln!(out, "sluice_leader {}", u8::from(*c.leader.borrow()));
        let _ = writeln!(out, "# HELP sluice_status_writes_total Status objects handled by the API server writer, by result.");
        let _ = writeln!(out, "# TYPE sluice_status_writes_total counter");
        for (result, v) in [
            ("written", &c.status_writes.writes),
            ("unchanged", &c.status_writes.skipped),
            ("error", &c.status_writes.errors),
        ] {
            let _ = writeln!(
                out,
                "sluice_status_writes_total{{result=\"{result}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
    state.metrics.render_prometheus(out);
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
