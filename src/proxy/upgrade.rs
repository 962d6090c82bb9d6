//! Protocol switches (WebSocket and other HTTP/1.1 Upgrades): once the app answers 101,
//! bytes are copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::pool::Conn;

/// Joins the client's and the app's upgraded connections. `conn` stays alive until the
/// tunnel ends, since the app's side of it belongs to that connection.
pub fn tunnel(client: OnUpgrade, app: OnUpgrade, conn: Option<Conn>) {
    tokio::spawn(async move {
        let _conn = conn;
        let (client, app) = match tokio::try_join!(client, app) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
        match tokio::io::copy_bidirectional(&mut client, &mut app).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
        }
    });
}
