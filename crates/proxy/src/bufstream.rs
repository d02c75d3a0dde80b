//! A write buffer in front of accepted plain-TCP streams.
//!
//! Pingora's HTTP/1 code writes a response header and its body with separate writes
//! and flushes at the end of the response: it relies on the L4 stream's write buffer
//! (Pingora's listeners give it `DEFAULT_L4_WRITE_BUFFER_SIZE` bytes) to send a small
//! response in one `send`. `Stream::from(TcpStream)` has no write buffer and the
//! setter is crate-private, so our accept loops wrap the stream in this type instead:
//! a `tokio::io::BufWriter` of the same size, with every other trait Pingora needs
//! passed through to the L4 stream. Flushing is Pingora's, as with its own listeners
//! (after header-only answers, at the end of a Content-Length body, after every
//! chunk of chunked and close-delimited bodies, and on shutdown).

use async_trait::async_trait;
use pingora_core::protocols::l4::stream::{Stream as L4Stream, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// An L4 stream with a write buffer (see the module docs).
#[derive(Debug)]
pub(crate) struct BufferedStream(BufWriter<L4Stream>);

impl BufferedStream {
    pub(crate) fn new(l4: L4Stream) -> Self {
        BufferedStream(BufWriter::with_capacity(DEFAULT_L4_WRITE_BUFFER_SIZE, l4))
    }
}

impl AsyncRead for BufferedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BufferedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for BufferedStream {
    async fn shutdown(&mut self) {
        // Flushes the buffer, then shuts the socket down (as `L4Stream` does).
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.0).await {
            tracing::debug!(error = %e, "failed to shut the connection down");
        }
    }
}

impl UniqueID for BufferedStream {
    fn id(&self) -> UniqueIDType {
        self.0.get_ref().id()
    }
}

impl Ssl for BufferedStream {}

impl GetTimingDigest for BufferedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0.get_ref().get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.0.get_ref().get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.0.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for BufferedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.get_ref().get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.0.get_mut().set_proxy_digest(digest);
    }
}

impl GetSocketDigest for BufferedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_ref().get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.0.get_mut().set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for BufferedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        // Nothing is buffered on the read side: the L4 stream peeks (and rewinds).
        self.0.get_mut().try_peek(buf).await
    }
}
