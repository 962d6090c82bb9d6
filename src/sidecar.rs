//! One sidecar: the config source, the data plane and the admin server, wired together.
//! `portcullis proxy` runs one; tests run them in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::admin::prestop::StopHook;
use crate::config::follow::{ControllerSource, FollowEvent};
use crate::config::{self, ReloadOutcome, Reloader};
use crate::proxy::{AppProtocol, ClientLimits, ClientTimeouts, Pool, Proxy};
use crate::telemetry::metrics::{Metrics, ResultLabels, WindowLabels};

pub struct Sidecar {
    pub listener: TcpListener,
    pub admin: TcpListener,
    /// The app, as HOST:PORT.
    pub upstream: String,
    pub app_protocol: AppProtocol,
    pub config_file: Option<PathBuf>,
    /// Mounted Secrets, for bypass tokens: `<dir>/<secret>/<key>`.
    pub secrets_dir: Option<PathBuf>,
    /// Follow the controller's config stream instead of (or on top of) a file.
    pub controller: Option<ControllerSource>,
    pub reload_interval: Duration,
    pub drain_timeout: Duration,
    /// How long clients may take over a request head, and stay idle between requests.
    pub client_timeouts: ClientTimeouts,
    /// How large a request head may be, and how many client connections may be open.
    pub client_limits: ClientLimits,
    /// The app container's `preStop` hook (`/prestop`).
    pub stop: StopSettings,
}

/// What the app container's `preStop` hook (`/prestop` on the admin port) is answered with.
#[derive(Clone, Debug, Default)]
pub struct StopSettings {
    /// How long the hook holds the app's stop, from its first call.
    pub delay: Duration,
    /// The pod's token that the hook must carry; without one, only loopback callers.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("config refused: {0}")]
    Config(#[from] config::ReloadError),
}

impl Sidecar {
    /// Runs until `shutdown` resolves and in-flight requests have drained.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), SidecarError> {
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = config::channel();
        let mut reload_task = None;
        // Ready once a config is in force: at once with a file or the defaults, on the first
        // snapshot with a controller (until then the defaults are served).
        let ready = Arc::new(AtomicBool::new(self.controller.is_none()));
        if let Some(source) = self.controller.clone() {
            let (tx, ready, metrics) = (tx.clone(), ready.clone(), metrics.clone());
            reload_task =
                Some(tokio::spawn(source.follow(tx, ready, move |e| followed(&metrics, e))));
        } else if self.config_file.is_none() {
            config::publish(&tx, config::Config::default());
        }
        if let Some(path) = &self.config_file {
            let mut reloader = Reloader::new(path.clone(), self.secrets_dir.clone(), tx);
            match reloader.check().await {
                ReloadOutcome::Refused(e) => return Err(e.into()),
                outcome => record(&metrics, &outcome),
            }
            let metrics = metrics.clone();
            reload_task = Some(tokio::spawn(
                reloader.run(self.reload_interval, move |o| record(&metrics, o)),
            ));
        }
        metrics.config_generation.set(rx.borrow().generation);

        let draining = ready.clone();
        let proxy = Arc::new(Proxy::new(
            Pool::new(self.upstream.clone(), self.app_protocol),
            rx.clone(),
            metrics.clone(),
        ));
        let lifecycle = proxy.lifecycle().clone();
        let stop = StopHook::new(lifecycle.clone(), self.stop.delay, self.stop.token.as_deref());
        let admin = Admin {
            metrics: metrics.clone(),
            config: rx,
            ready,
            stop: Arc::new(stop),
            lifecycle,
            recent: Arc::default(),
        };
        let sampler = tokio::spawn(admin.clone().sample_recent());
        let admin_task = tokio::spawn(crate::admin::serve(self.admin, admin));
        tracing::info!(
            listen = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            upstream = %self.upstream,
            "proxy started"
        );
        let gauges = tokio::spawn(keep_gauges(proxy.clone(), metrics));
        let following = reload_task.as_ref().map(|task| task.abort_handle());
        let shutdown = async move {
            shutdown.await;
            // Draining: /readyz says so, and no new snapshot says otherwise.
            if let Some(task) = following {
                task.abort();
            }
            draining.store(false, std::sync::atomic::Ordering::Release);
        };
        crate::proxy::serve(
            self.listener,
            proxy,
            shutdown,
            self.drain_timeout,
            self.client_timeouts,
            self.client_limits,
        )
        .await;
        gauges.abort();
        sampler.abort();
        admin_task.abort();
        if let Some(task) = reload_task {
            task.abort();
        }
        Ok(())
    }
}

fn followed(metrics: &Metrics, event: FollowEvent) {
    match event {
        FollowEvent::Applied { version, generation } => {
            metrics.controller_connected.set(1);
            metrics.config_reloads.get_or_create(&ResultLabels { result: "applied" }).inc();
            metrics.config_generation.set(generation);
            tracing::info!(version, generation, "config snapshot applied");
        }
        FollowEvent::Refused(why) => {
            metrics.config_reloads.get_or_create(&ResultLabels { result: "refused" }).inc();
            tracing::error!("config snapshot refused, the last good one stays in force: {why}");
        }
        FollowEvent::Disconnected(why) => {
            metrics.controller_connected.set(0);
            tracing::warn!("config stream lost, enforcing the last good config: {why}");
        }
    }
}

/// Gauges that describe state rather than events are sampled a few times a second.
async fn keep_gauges(proxy: Arc<Proxy>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut generation = 0;
    loop {
        tick.tick().await;
        let observed = proxy.observe();
        metrics.queue_depth.set(observed.queue_depth as i64);
        metrics.concurrency_limit.set(observed.limit as i64);
        if observed.generation != generation {
            // Windows that left the config leave the metrics too.
            metrics.maintenance_active.clear();
            generation = observed.generation;
        }
        metrics.maintenance_until.set(observed.maintenance_until.map_or(0, |t| t.as_second()));
        for (window, on) in observed.windows {
            metrics.maintenance_active.get_or_create(&WindowLabels { window }).set(i64::from(on));
        }
    }
}

fn record(metrics: &Metrics, outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Unchanged => {}
        ReloadOutcome::Applied { generation } => {
            metrics.config_reloads.get_or_create(&ResultLabels { result: "applied" }).inc();
            metrics.config_generation.set(*generation);
            tracing::info!(generation, "config applied");
        }
        ReloadOutcome::Refused(e) => {
            metrics.config_reloads.get_or_create(&ResultLabels { result: "refused" }).inc();
            tracing::error!("config refused, the last good one stays in force: {e}");
        }
    }
}
