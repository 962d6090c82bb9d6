//! The HTTP/1.1 client for requests without a body: the request's own task writes the head
//! to a pooled connection to the app and reads the response, head and body, from it. hyper's
//! client puts a connection task and a channel between the two, a task switch and a hop each
//! way for every request; here there are none. Requests with a body, upgrades and HTTP/2
//! stay with hyper's client.
//!
//! What this client accepts from the app is what hyper's does (see `head`), and it fails
//! with the same three outcomes as hyper's errors (see `error`).

mod body;
mod conn;
mod error;
mod head;

use http::request::Parts;
use http::{Method, Response};
use tokio::io::AsyncWriteExt;

pub use body::H1Body;
pub use conn::H1Conn;
pub use error::{Failed, H1Error};
use head::Head;

/// The exchange itself: head out, head in, and the connection handed to the body.
impl H1Conn {
    /// Sends a request without a body and reads the response head. The body is read by the
    /// returned response's [`H1Body`], which owns the connection until it ends. On failure,
    /// the connection is dropped; the error says whether the app had sent anything.
    pub async fn send(
        mut self: Box<Self>,
        parts: &Parts,
        max_head_bytes: usize,
    ) -> Result<Response<H1Body>, Failed> {
        self.read_any = false;
        self.out.clear();
        head::encode_request(&mut self.out, parts);
        let sent = self.stream.write_all(&self.out).await;
        let head = match sent {
            Ok(()) => self.read_head(max_head_bytes, &parts.method).await,
            Err(e) => Err(e.into()),
        };
        match head {
            Ok(head) => Ok(body::response(head, self)),
            Err(error) => Err(Failed { error, answered: self.read_any }),
        }
    }

    async fn read_head(&mut self, max_head_bytes: usize, method: &Method) -> Result<Head, H1Error> {
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
                return Ok(head);
            }
            if self.fill().await? == 0 {
                return Err(H1Error::Closed);
            }
        }
    }
}
