//! The HTTP/1.1 client for requests to an HTTP/1.1 app, with or without a body: the
//! request's own task writes the request to a pooled connection and reads the response,
//! head and body, from it. hyper's client puts a connection task and a channel between the
//! two, a task switch and a hop each way for every request; here there are none. Upgrades
//! and HTTP/2 stay with hyper's client.
//!
//! What this client sends is what hyper's would for the same request (see `head` and
//! `send`), what it accepts from the app is what hyper's does (see `head`), and it fails
//! with the same outcomes as hyper's errors (see `error`).
//!
//! A request body is written while the response is read, as hyper's client does: an app
//! may answer before it has read the whole body (a 413, say). Its answer is then passed on
//! at once, and the body goes on being sent while the response body is read (see
//! `H1Body`); once the response has ended, the rest of the request body is not sent, and
//! the connection, left mid-request, is closed. A failed write after the app has answered
//! only stops the request body, and the connection is not reused.

mod body;
mod conn;
mod error;
mod head;
mod send;
#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Method, Response};
use tokio::io::AsyncWriteExt;

pub use body::H1Body;
pub use conn::H1Conn;
pub use error::{Failed, H1Error};
use head::{Added, Head};
use send::{Upload, UploadError};

use crate::proxy::body::RequestBody;

/// The exchange itself: request out, head in, and the connection handed to the body.
impl H1Conn {
    /// Sends a request and reads the response head. The response body is read by the
    /// returned response's [`H1Body`], which owns the connection until it ends, and sends
    /// what is left of the request body meanwhile. On failure, the connection is dropped;
    /// the error says whether the app had sent anything.
    pub async fn send(
        mut self: Box<Self>,
        parts: &Parts,
        body: RequestBody,
        max_head_bytes: usize,
    ) -> Result<Response<H1Body>, Failed> {
        self.read_any = false;
        self.out.clear();
        let (upload, added) =
            if body.is_empty() { (None, Added::None) } else { Upload::new(parts, body) };
        head::encode_request(&mut self.out, parts, added);
        let exchange = match upload {
            None => self.send_head(max_head_bytes, &parts.method).await.map(|h| (h, None, true)),
            Some(upload) => self.send_with_body(upload, max_head_bytes, &parts.method).await,
        };
        match exchange {
            Ok((head, upload, sendable)) => Ok(body::response(head, self, upload, sendable)),
            Err(error) => Err(Failed { error, answered: self.read_any }),
        }
    }

    async fn send_head(&mut self, max_head_bytes: usize, method: &Method) -> Result<Head, H1Error> {
        self.stream.write_all(&self.out).await?;
        poll_fn(|cx| self.poll_head(cx, max_head_bytes, method)).await
    }

    /// Writes the request and reads the response head at once. Returns the head, the upload
    /// if the body is not all sent yet, and whether the connection can still be written to.
    async fn send_with_body(
        &mut self,
        mut upload: Box<Upload>,
        max_head_bytes: usize,
        method: &Method,
    ) -> Result<(Head, Option<Box<Upload>>, bool), H1Error> {
        let (mut sending, mut writable) = (true, true);
        let head = poll_fn(|cx| {
            // The app's answer first, as hyper reads before it writes.
            if let Poll::Ready(head) = self.poll_head(cx, max_head_bytes, method) {
                return Poll::Ready(head);
            }
            if sending {
                match upload.poll_send(self, cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => sending = false,
                    Poll::Ready(Err(UploadError::Body(cause))) => {
                        return Poll::Ready(Err(H1Error::RequestBody(cause)));
                    }
                    // An app that answers early may close its end without reading the rest
                    // (a 413): its answer is still to be read, and the failure is the read's.
                    Poll::Ready(Err(UploadError::Io(e))) => {
                        tracing::debug!(error = %e, "writing the request body to the app failed");
                        (sending, writable) = (false, false);
                    }
                }
            }
            Poll::Pending
        })
        .await?;
        Ok((head, sending.then_some(upload), writable))
    }

    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        max_head_bytes: usize,
        method: &Method,
    ) -> Poll<Result<Head, H1Error>> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) =
                    head::parse_response(&mut self.buf, max_head_bytes, method, &mut self.spans)?
            {
                // Interim responses (100 Continue, 103 Early Hints) are not passed on, as
                // hyper's client does not; the final one follows on the same connection.
                if head.status.is_informational()
                    && head.status != http::StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(H1Error::Closed));
            }
        }
    }
}
