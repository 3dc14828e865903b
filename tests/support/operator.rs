//! The operator under test: in this process (as `groupbinder run` runs it) or as the binary.

use std::sync::Arc;
use std::time::Duration;

use groupbinder_api::Settings;
use groupbinder_controller::{Config, Health, Metrics};
use tokio_util::sync::CancellationToken;

use crate::{SEED_PREFIX, handmade};

/// The operator settings of the seed scenario: release `k10` in `kasten-io`, prefix `michael_azure_`.
pub fn seed_settings() -> Settings {
    Settings::for_k10("k10", "kasten-io", SEED_PREFIX)
}

/// An operator configuration for tests.
pub fn config(settings: Settings) -> Config {
    Config {
        entra: None,
        settings,
        concurrency: 8,
        resync: None,
        leader_election: None,
        instance: "e2e".into(),
    }
}

/// Serializes the tests of one binary that run an operator: two operators watching the same
/// cluster would both reconcile every object.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The controller running in this process, as `groupbinder run` runs it.
pub struct Operator {
    client: kube::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), groupbinder_controller::RunError>>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Its readiness.
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("finished", &self.task.is_finished())
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// Starts the controller with `config` against the cluster of `client`.
    pub fn start(client: &kube::Client, config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let task = tokio::spawn(groupbinder_controller::run(
            client.clone(),
            config,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        Operator {
            client: client.clone(),
            shutdown,
            task,
            metrics,
            health,
        }
    }

    /// Stops it gracefully and returns how it ended; fails if it touched the hand-made binding
    /// (where one was planted).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        // Bounded, as `groupbinder run`'s own deadline bounds it: a stop that hangs fails the
        // test that asked for it instead of holding the whole suite (once seen in CI: parked with
        // no timer pending, after a standby had just taken the lease).
        let mut task = self.task;
        match tokio::time::timeout(Duration::from_secs(30), &mut task).await {
            Ok(ended) => ended??,
            Err(_) => {
                task.abort();
                anyhow::bail!("the operator did not stop within 30 s of its shutdown signal");
            }
        }
        handmade::assert_hand_made_untouched_if_planted(&self.client).await
    }

    /// Whether it has stopped by itself.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// A `groupbinder run` process (the binary at `binary`) against the cluster of `kubeconfig`, with
/// its metrics on a free loopback port, `env` added and stdout discarded. Killed (SIGKILL) and
/// reaped when dropped, also when a test fails half-way.
#[derive(Debug)]
pub struct OperatorProcess {
    child: std::process::Child,
    port: u16,
}

impl OperatorProcess {
    /// Starts it.
    pub fn spawn(
        binary: &std::path::Path,
        kubeconfig: &std::path::Path,
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // GROUPBINDER_OPERATOR_WRAPPER="valgrind --tool=massif" runs it under a profiler.
        let wrapper = std::env::var("GROUPBINDER_OPERATOR_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = std::process::Command::new(program);
                command.args(words).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        command
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("GROUPBINDER_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        Ok(OperatorProcess {
            child: command.spawn()?,
            port,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The value of the metric sample `name` (e.g. `groupbinder_reconciles_total`) from its
    /// `/metrics`, or `None` while it does not answer.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric(&self.metrics()?, name)
    }

    /// Its whole `/metrics` answer, or `None` while it does not answer.
    pub fn metrics(&self) -> Option<String> {
        http_get(("127.0.0.1", self.port), "/metrics").ok()
    }

    /// The process, to kill or wait for it.
    pub fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }
}

/// A field of `/proc/<pid>/status` (e.g. `Uid:`), its words joined by one space; `None` when the
/// process or the field is not there.
pub fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A size in `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB; 0 when it is not there.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    proc_status(pid, field)
        .and_then(|v| v.trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// GET `path` over HTTP/1.0 from the operator's metrics server at `address`: the whole answer,
/// status line and headers included.
pub fn http_get(address: impl std::net::ToSocketAddrs, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: groupbinder\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The value of the unlabelled sample `name` in a `/metrics` answer.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Drop for OperatorProcess {
    /// SIGTERM first, so that a profiler it runs under (`GROUPBINDER_OPERATOR_WRAPPER`) writes
    /// its report.
    fn drop(&mut self) {
        groupbinder_testenv::terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// A client for the cluster of `kubeconfig` that counts the requests it sends, answered or not:
/// how hard an operator using it tries while the API server or etcd is away.
pub async fn counting_client(
    kubeconfig: &std::path::Path,
) -> anyhow::Result<(kube::Client, Arc<std::sync::atomic::AtomicU64>)> {
    let config = groupbinder_testenv::config_from_kubeconfig(kubeconfig).await?;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            request
        });
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build();
    Ok((client, sent))
}

/// Sends logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=groupbinder_controller=debug`).
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
