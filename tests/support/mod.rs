//! Shared pieces of the integration tests: a sidecar run in-process, apps that misbehave
//! in every way the status contract names, and clients, all on real sockets on 127.0.0.1.
#![allow(dead_code)]

pub mod apps;
pub mod client;
pub mod fake_api;
pub mod fleet;
pub mod tls_client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A sidecar running in this test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), portcullis::sidecar::SidecarError>>,
}

impl Running {
    /// Starts a sidecar in front of `upstream` with `config` as its config file.
    pub async fn start(upstream: impl ToString, config: &str) -> Running {
        Self::start_with(upstream, config, portcullis::proxy::AppProtocol::Http1).await
    }

    pub async fn start_with(
        upstream: impl ToString,
        config: &str,
        app_protocol: portcullis::proxy::AppProtocol,
    ) -> Running {
        Self::start_full(upstream, config, app_protocol, Default::default(), Default::default())
            .await
    }

    /// With the client connection timeouts given.
    pub async fn start_with_timeouts(
        upstream: impl ToString,
        config: &str,
        client_timeouts: portcullis::proxy::ClientTimeouts,
    ) -> Running {
        Self::start_full(upstream, config, Default::default(), client_timeouts, Default::default())
            .await
    }

    /// With the client connection timeouts and limits given.
    pub async fn start_with_limits(
        upstream: impl ToString,
        config: &str,
        client_timeouts: portcullis::proxy::ClientTimeouts,
        client_limits: portcullis::proxy::ClientLimits,
    ) -> Running {
        Self::start_full(upstream, config, Default::default(), client_timeouts, client_limits).await
    }

    async fn start_full(
        upstream: impl ToString,
        config: &str,
        app_protocol: portcullis::proxy::AppProtocol,
        client_timeouts: portcullis::proxy::ClientTimeouts,
        client_limits: portcullis::proxy::ClientLimits,
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("portcullis.yaml");
        std::fs::write(&config_path, config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin) = (listener.local_addr().unwrap(), admin_listener.local_addr().unwrap());
        let sidecar = portcullis::sidecar::Sidecar {
            listener,
            admin: admin_listener,
            upstream: upstream.to_string(),
            app_protocol,
            config_file: Some(config_path.clone()),
            secrets_dir: Some(dir.path().join("secrets")),
            controller: None,
            reload_interval: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(5),
            client_timeouts,
            client_limits,
            stop: Default::default(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sidecar.run(async move {
            let _ = stopped.await;
        }));
        let running = Running { addr, admin, config_path, _dir: dir, stop: Some(stop), task };
        // The first config load happens before the admin server starts: once it answers,
        // later writes to the file are reloads.
        // (The listener is bound already, so only an answer proves the server runs.)
        assert_eq!(client::get(admin, "/readyz", &[]).await.status, 200);
        running
    }

    /// Rewrites the config file; the sidecar picks it up within its reload interval.
    pub fn write_config(&self, config: &str) {
        let tmp = self.config_path.with_extension("tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub async fn admin_get(&self, path: &str) -> client::Reply {
        client::get(self.admin, path, &[]).await
    }

    pub async fn generation(&self) -> u64 {
        let reply = self.admin_get("/config").await;
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        json["generation"].as_u64().unwrap()
    }

    /// Like `start`, with one Secret key mounted for bypass tokens.
    pub async fn start_with_secret(
        upstream: impl ToString,
        config: &str,
        secret: &str,
        key: &str,
        value: &str,
    ) -> Running {
        let running = Running::start(upstream, "").await;
        let dir = running.config_path.parent().unwrap().join("secrets").join(secret);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(key), value).unwrap();
        running.write_config(config);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running.generation().await < 2 {
            if std::time::Instant::now() > deadline {
                let metrics = running.admin_get("/metrics").await.body;
                panic!("the config was not applied: {metrics}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running
    }

    /// A sidecar whose app answered once and then went away: its port now refuses.
    pub async fn after_app_left(config: &str) -> Running {
        let (app, task) = apps::stoppable().await;
        let running = Running::start(app, config).await;
        assert_eq!(client::get(running.addr, "/", &[("connection", "close")]).await.body, "ok");
        task.abort();
        let _ = task.await;
        while tokio::net::TcpStream::connect(app).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A policy document with the given spec body (YAML, indented by two spaces).
pub fn policy(spec: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\nmetadata: {{name: test, namespace: default}}\nspec:\n{spec}\n"
    )
}

/// A Retry-After, which must be delay-seconds.
pub fn retry_after(reply: &client::Reply) -> u64 {
    reply.header("retry-after").parse().unwrap_or_else(|_| panic!("not delay-seconds: {reply:?}"))
}

/// The value of the first metrics line that starts with `line_start`.
pub fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// An address on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}
