//! A small HTTP/1.1 client over real sockets: one keep-alive connection per
//! [`HttpClient`], reopened only when the server closed it, and a timeout on every
//! request. Tests use it to count failures exactly: nothing is retried behind their back
//! except what [`HttpClient::send`] documents.

use crate::echo::EchoBody;
use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Default per-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer, body read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The echo server's JSON, when the answer came from one.
    pub fn echo(&self) -> Option<EchoBody> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The pod of the echo server that answered, when one did.
    pub fn pod(&self) -> Option<String> {
        self.echo().map(|e| e.pod)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 client bound to one address.
pub struct HttpClient {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Conn>,
    connects: u64,
    reconnect_retries: u64,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    /// Requests already answered on this connection.
    used: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient {
            addr,
            timeout: REQUEST_TIMEOUT,
            conn: None,
            connects: 0,
            reconnect_retries: 0,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Requests that were sent again on a new connection because the server closed an
    /// idle keep-alive connection under them (see [`HttpClient::send`]).
    pub fn reconnect_retries(&self) -> u64 {
        self.reconnect_retries
    }

    /// Drops the current connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// `GET path` with `Host: host`.
    pub async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<Reply> {
        self.get_with(host, path, &[]).await
    }

    /// `GET path` with `Host: host` and extra headers.
    pub async fn get_with(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(http::Method::GET)
            .uri(path)
            .header(http::header::HOST, host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .context("building a request")?;
        self.send(req).await
    }

    /// Sends a request on the kept-alive connection (opening one if there is none or the
    /// server closed it) and reads the whole answer within the timeout.
    ///
    /// One retry only: a GET whose reused connection turns out to have been closed by
    /// the server before any answer byte (the keep-alive race every HTTP client handles)
    /// is sent again once on a new connection; [`HttpClient::reconnect_retries`] counts
    /// these. Any other error is returned, and the connection is dropped.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let retry = if req.method() == http::Method::GET {
            Some(clone_request(&req))
        } else {
            None
        };
        match self.send_once(req).await {
            Ok(reply) => Ok(reply),
            Err(SendError::ClosedIdle(err)) => match retry {
                Some(req) => {
                    self.reconnect_retries += 1;
                    self.send_once(req).await.map_err(|e| {
                        e.into_anyhow()
                            .context(format!("retry after idle close ({err})"))
                    })
                }
                None => Err(err),
            },
            Err(e) => Err(e.into_anyhow()),
        }
    }

    async fn send_once(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, SendError> {
        let timeout = self.timeout;
        let addr = self.addr;
        let fut = async {
            if self.conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
                self.conn = None;
                let conn = connect(addr).await.map_err(SendError::Other)?;
                self.connects += 1;
                self.conn = Some(conn);
            }
            let conn = self.conn.as_mut().expect("connection just ensured");
            let reused = conn.used > 0;
            if let Err(e) = conn.sender.ready().await {
                let err = anyhow!(e).context(format!("connection to {addr} closed"));
                return Err(if reused {
                    SendError::ClosedIdle(err)
                } else {
                    SendError::Other(err)
                });
            }
            let resp = match conn.sender.send_request(req).await {
                Ok(resp) => resp,
                Err(e) => {
                    let idle_close = reused && (e.is_canceled() || e.is_incomplete_message());
                    let err = anyhow!(e).context(format!("request to {addr}"));
                    return Err(if idle_close {
                        SendError::ClosedIdle(err)
                    } else {
                        SendError::Other(err)
                    });
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| SendError::Other(anyhow!(e).context("reading the body")))?
                .to_bytes();
            conn.used += 1;
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(SendError::Other(anyhow!(
                    "request to {addr} timed out after {timeout:?}"
                )))
            }
        }
    }
}

enum SendError {
    /// A reused connection was found closed before the request got any answer.
    ClosedIdle(anyhow::Error),
    Other(anyhow::Error),
}

impl SendError {
    fn into_anyhow(self) -> anyhow::Error {
        match self {
            SendError::ClosedIdle(e) | SendError::Other(e) => e,
        }
    }
}

fn clone_request(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .version(req.version())
        .body(Full::new(Bytes::new()))
        .expect("cloned request is valid");
    *out.headers_mut() = req.headers().clone();
    out
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn {
        sender,
        task,
        used: 0,
    })
}

/// One `GET` on a new connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Reply> {
    HttpClient::new(addr).get(host, path).await
}

/// Whether a TCP connection to `addr` is accepted (false when refused or timing out).
pub async fn port_open(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
