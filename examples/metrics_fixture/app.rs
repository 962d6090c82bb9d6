//! The app behind every sidecar, on a raw socket so that it can misbehave exactly as a
//! broken app would. What it does depends on the path:
//!
//! | path | answer |
//! |---|---|
//! | `/ok` | 200, `application/json` |
//! | `/oops` | 500, the app's own failure |
//! | `/html` | 200, `text/html` (the policy allows JSON only: 502 `content_type_mismatch`) |
//! | `/malformed` | a status line no parser takes (502 `malformed_response`) |
//! | `/slow` | nothing for 3 s (past the 500 ms response-headers timeout: 504) |
//! | `/busy` | 200 after 1 s (a burst of them overloads the sidecar: 503) |
//! | `/stream` | 200 headers and one chunk, then silence (the route's request timeout cuts it) |
//! | anything else | 404 |

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One connection, keep-alive: request heads (the load sends no bodies), one answer each.
async fn serve(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buffer).await else { return };
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        let answer = match path {
            "/ok" => response("200 OK", "application/json", "{\"ok\":true}"),
            "/oops" => response("500 Internal Server Error", "text/plain", "oops"),
            "/html" => response("200 OK", "text/html", "<p>hello</p>"),
            "/malformed" => {
                let _ = stream.write_all(b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n").await;
                return;
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                response("200 OK", "application/json", "{}")
            }
            "/busy" => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                response("200 OK", "application/json", "{}")
            }
            "/stream" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n1\r\n[\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                return;
            }
            _ => response("404 Not Found", "text/plain", "no such path"),
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The next request head, up to its blank line; what follows stays in `buffer`.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buffer.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}
