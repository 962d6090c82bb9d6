//! A stream that shows every byte it reads to a [`Tap`], and passes writes straight on.
//! Used to count what the app sent (`pool`); `client_io` passes writes on the same way.

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

/// `AsyncWrite` for a stream wrapper that only watches reads: every write goes straight to
/// the wrapped stream in `$field`.
macro_rules! write_through {
    (impl[$($generics:tt)*] $ty:ty, $field:ident) => {
        impl<$($generics)*> tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$field).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;

write_through!(impl[S: AsyncWrite + Unpin, T: Unpin] ReadTap<S, T>, inner);
