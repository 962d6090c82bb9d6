//! A stream that shows every byte it reads to a [`Tap`], and passes writes straight on.
//! Used to count what the app sent (`pool`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sees the bytes a stream reads, in order.
pub trait Tap {
    fn on_read(&mut self, bytes: &[u8]);
}

pub struct ReadTap<S, T> {
    inner: S,
    tap: T,
}

impl<S, T> ReadTap<S, T> {
    pub fn new(inner: S, tap: T) -> Self {
        ReadTap { inner, tap }
    }
}

impl<S: AsyncRead + Unpin, T: Tap + Unpin> AsyncRead for ReadTap<S, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tap.on_read(&buf.filled()[before..]);
        }
        result
    }
}

/// Writes go straight to the wrapped stream.
impl<S: AsyncWrite + Unpin, T: Unpin> AsyncWrite for ReadTap<S, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
