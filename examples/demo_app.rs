//! The demo's sample app: a tiny HTTP/1.1 server on raw sockets, so that it can misbehave
//! the way real apps do. Usage: `demo_app ADDR`.
//!
//! - `/`          200, a greeting
//! - `/slow`      answers after 10 s (the sidecar's responseHeaders timeout fires first)
//! - `/broken`    a garbage status line
//! - `/report`    HTML where the route allows only CSV
//! - `/app-down`  the app's own 503 with Retry-After, which passes through untouched

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("demo app listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream));
    }
}

async fn serve(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let response: &[u8] = match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nfinally done\n"
        }
        "/broken" => b"HTTP/1.1 2OO SORT OF OK\r\n\r\n",
        "/report" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\nConnection: close\r\n\r\n<h1>Login page</h1>\n",
        "/app-down" => b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 30\r\nContent-Length: 31\r\nConnection: close\r\n\r\nThe app says: back in a moment\n",
        _ => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nHello from the demo app\n",
    };
    let _ = stream.write_all(response).await;
    let _ = stream.shutdown().await;
}
