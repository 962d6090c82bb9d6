//! The controller in a process of its own, so that its RSS and CPU are its own, not those
//! of the fake API server and of the 1,000 clients.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis::controller::run::{Controller, Leadership};
use portcullis::telemetry::process::status_kib;
use tokio::net::TcpListener;

use super::CONTROLLER_ROLE;

/// 1,000 streams need more than the default 1,024 descriptors on some machines.
pub(crate) fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, ..limit });
}

/// The child process: the real controller against the fake API server at `api`, until the
/// bench closes our stdin. Prints its streams and admin addresses first.
pub(crate) fn run_controller(api: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let streams = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut stdout = std::io::stdout();
        let (s, a) = (streams.local_addr().unwrap(), admin.local_addr().unwrap());
        writeln!(stdout, "{s} {a}").unwrap();
        stdout.flush().unwrap();
        let config = kube::Config::new(api.parse().unwrap());
        let controller = Controller {
            client: kube::Client::try_from(config).unwrap(),
            streams,
            admin,
            keepalive: Duration::from_secs(15),
            leadership: Leadership::Always,
            certs: None,
            webhook: None,
            peers: None,
        };
        controller.run(std::future::pending()).await;
    });
}

/// The controller child: its addresses, and its /proc figures.
pub(crate) struct ControllerProcess {
    pub(crate) child: Child,
    pub(crate) streams: SocketAddr,
    pub(crate) admin: SocketAddr,
}

impl ControllerProcess {
    pub(crate) fn start(api: SocketAddr) -> ControllerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CONTROLLER_ROLE, format!("http://{api}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the controller process starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut addrs = line.split_whitespace().map(|a| a.parse::<SocketAddr>().unwrap());
        let (streams, admin) = (addrs.next().unwrap(), addrs.next().unwrap());
        ControllerProcess { child, streams, admin }
    }

    /// VmRSS and VmHWM (peak), KiB.
    pub(crate) fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        memory(&status.unwrap_or_default())
    }

    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn memory(status: &str) -> (u64, u64) {
    let field = |name| status_kib(status, name).and_then(|kib| u64::try_from(kib).ok());
    (field("VmRSS").unwrap_or(0), field("VmHWM").unwrap_or(0))
}

pub(crate) fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
