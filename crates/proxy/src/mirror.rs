//! Request mirrors: fire-and-forget copies of a request to another backend.
//!
//! Copies carry the request line and headers as sent upstream (after the route's
//! header filters and rewrites) but not the body: a request with a body is mirrored
//! with `content-length: 0`. Answers are read and discarded; failures are logged at
//! debug level and never affect the client's request.

use crate::router::{CompiledBackendKind, MirrorTarget};
use crate::upstream::peer;
use http::header;
use pingora_core::connectors::http::Connector;
use pingora_error::Error;
use pingora_http::RequestHeader;
use rand::Rng;
use sluice_ir::Timeouts;
use std::sync::Arc;
use std::time::Duration;

/// How long a mirrored request may take.
const MIRROR_TIMEOUT_MS: u64 = 30_000;
/// How long an idle mirror connection stays pooled.
const IDLE: Duration = Duration::from_secs(60);

/// Sends a copy of `req` to `target` if this request falls in its share.
pub(crate) fn maybe_fire(
    connector: &Arc<Connector>,
    target: &Arc<MirrorTarget>,
    req: &RequestHeader,
    connect_timeout: Duration,
) {
    if target.numerator < target.denominator
        && rand::rng().random_range(0..target.denominator) >= target.numerator
    {
        return;
    }
    let CompiledBackendKind::Endpoints { protocol, tls, .. } = &target.backend.kind else {
        tracing::debug!(backend = %target.backend.name, "mirror backend is invalid; not mirrored");
        return;
    };
    let Some(addr) = target.backend.kind.next_endpoint() else {
        tracing::debug!(backend = %target.backend.name, "mirror backend has no endpoint");
        return;
    };
    let timeouts = Timeouts {
        backend_request_ms: Some(MIRROR_TIMEOUT_MS),
        ..Timeouts::default()
    };
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let peer = peer(
        addr,
        *protocol,
        tls.as_deref(),
        &host,
        &timeouts,
        connect_timeout,
    );
    let mut copy = req.clone();
    if copy.headers.contains_key(header::CONTENT_LENGTH)
        || copy.headers.contains_key(header::TRANSFER_ENCODING)
    {
        copy.remove_header(&header::TRANSFER_ENCODING);
        let _ = copy.insert_header(header::CONTENT_LENGTH, "0");
    }
    let connector = connector.clone();
    let name = target.backend.name.clone();
    tokio::spawn(async move {
        let result = async {
            let (mut s, _) = connector.get_http_session(&peer).await?;
            s.write_request_header(Box::new(copy)).await?;
            s.finish_request_body().await?;
            s.read_response_header().await?;
            while s.read_response_body().await?.is_some() {}
            connector.release_http_session(s, &peer, Some(IDLE)).await;
            Ok::<_, Box<Error>>(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(backend = %name, error = %e, "mirrored request failed");
        }
    });
}
