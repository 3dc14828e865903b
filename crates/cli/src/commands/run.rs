//! `groupbinder run`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use groupbinder_controller::{Config, Health, LeaderElection, Metrics, server};
use tokio_util::sync::CancellationToken;

use crate::entra::EntraArgs;
use crate::settings::SettingsArgs;

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Flags of `groupbinder run`. Each has an environment-variable equivalent.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    entra: EntraArgs,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "GROUPBINDER_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_address: SocketAddr,
    /// Elect a leader through a Lease, so that several replicas are safe.
    #[arg(long, env = "GROUPBINDER_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "GROUPBINDER_LEASE_NAME",
        default_value = "groupbinder-leader"
    )]
    lease_name: String,
    /// Seconds a lease is valid without renewal.
    #[arg(long, env = "GROUPBINDER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Name of this replica, in the Lease and in events [default: the host name].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconciles running at once.
    #[arg(long, env = "GROUPBINDER_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Seconds between full resyncs of every AzureGroupBinding (0: only on changes). A resync
    /// that finds nothing to change writes nothing.
    #[arg(long, env = "GROUPBINDER_RESYNC_SECONDS", default_value_t = 600)]
    resync_seconds: u64,
    /// Log format.
    #[arg(
        long,
        env = "GROUPBINDER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Start even though --allowed-roles names none of K10's roles (an empty list or a typo
    /// would otherwise revoke every grant in the cluster): the operator then binds only those.
    #[arg(long, env = "GROUPBINDER_ALLOW_NON_K10_ROLES")]
    allow_non_k10_roles: bool,
    /// Objects that set no groupPrefix use K10's live groupPrefix (from K10's OIDC Secret)
    /// instead of --default-group-prefix, and follow it when it changes. Whoever may write
    /// K10's OIDC Secret then decides the group names their bindings grant.
    #[arg(long, env = "GROUPBINDER_FOLLOW_K10_GROUP_PREFIX")]
    follow_k10_group_prefix: bool,
    /// Log level or tracing filter, e.g. `info` or `info,groupbinder_controller=debug`.
    #[arg(long, env = "GROUPBINDER_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

impl RunArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut settings = self.settings.settings();
        settings.follow_k10_group_prefix = self.follow_k10_group_prefix;
        let identity = self.identity.clone().unwrap_or_else(hostname);
        let lease_duration = Duration::from_secs(self.lease_duration_seconds.max(2));
        Ok(Config {
            entra: self.entra.setup()?,
            settings,
            concurrency: self.concurrency.max(1),
            resync: (self.resync_seconds > 0).then(|| Duration::from_secs(self.resync_seconds)),
            leader_election: self.leader_election.then(|| LeaderElection {
                namespace: self.leader_election_namespace.clone(),
                name: self.lease_name.clone(),
                identity: identity.clone(),
                lease_duration,
                retry_period: lease_duration / 3,
            }),
            instance: identity,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "groupbinder".to_owned())
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("setting up logging: {e}"))
}

/// How long `groupbinder run` may take to stop after SIGTERM or Ctrl-C: then it exits whatever
/// it is waiting for (an API server that accepts connections and never answers, say). Well under
/// Kubernetes' default 30 s grace period.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the controller until SIGTERM or Ctrl-C, and exits at most [`SHUTDOWN_DEADLINE`] later.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format, &args.log_level)?;
    let settings = args.settings.settings();
    let (release, namespace) = (&settings.k10_release, &settings.k10_namespace);
    if !args.allow_non_k10_roles && !settings.allowed.names_a_k10_role(release, namespace) {
        let k10 = groupbinder_api::Allowlist::k10(release, namespace);
        anyhow::bail!(
            "refusing to start: --allowed-roles ({:?}) names none of K10's roles for release {release:?} in {namespace:?} ({k10}); every AzureGroupBinding would lose its grants at once. Fix the list (or --k10-release, --k10-namespace), or pass --allow-non-k10-roles if that is meant",
            settings.allowed.to_string()
        );
    }
    let config = args.config()?;
    tracing::info!(
        k10_release = %config.settings.k10_release,
        k10_namespace = %config.settings.k10_namespace,
        allowed_roles = %config.settings.allowed,
        leader_election = config.leader_election.is_some(),
        entra = ?config.entra.as_ref().map(|e| &e.tenant),
        "starting groupbinder"
    );
    let client = crate::connection::client().await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = server::bind(args.metrics_address).await?;
    let http = tokio::spawn(server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let result =
        groupbinder_controller::run(client, config, metrics, health, shutdown.clone()).await;
    shutdown.cancel();
    let _ = http.await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!(deadline = ?SHUTDOWN_DEADLINE, "shutting down");
    shutdown.cancel();
    // A thread of its own: it fires even if every task is stuck, or the runtime is.
    std::thread::spawn(|| {
        std::thread::sleep(SHUTDOWN_DEADLINE);
        tracing::error!(deadline = ?SHUTDOWN_DEADLINE, "did not stop in time after the signal; exiting");
        std::process::exit(1);
    });
}
