//! Clients of the controller's TLS listeners, as the sidecars and the API server reach them.

use std::net::SocketAddr;

use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS connection to `addr` (its certificate names `localhost`) that trusts `ca_pem` only.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(portcullis::tls::client_config(ca_pem).unwrap()).connect(name, tcp).await
}

/// POSTs an AdmissionReview to the webhook over TLS, as the API server does; its answer,
/// which must be a 200.
pub async fn post_review(addr: SocketAddr, ca_pem: &str, review: &Value) -> Value {
    let stream = tls_connect(addr, ca_pem).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/inject?timeout=10s")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(review.to_string())))
        .unwrap();
    let reply = super::client::collect(tx.send_request(req).await.unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}
