//! How every command reaches the cluster: kubectl's connection flags, so that the binary is also
//! the kubectl plugin `kubectl groupbinder` (installed as `kubectl-groupbinder` on the `PATH`,
//! kubectl hands it every flag that follows the plugin's name).

use std::path::PathBuf;
use std::sync::OnceLock;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// kubectl's connection flags, accepted before or after the command.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Path to the kubeconfig file [default: $KUBECONFIG, then ~/.kube/config, then the pod's
    /// service account].
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// The kubeconfig cluster to use.
    #[arg(long, global = true, value_name = "NAME")]
    cluster: Option<String>,
    /// The kubeconfig user to use.
    #[arg(long, global = true, value_name = "NAME")]
    user: Option<String>,
    /// Username to impersonate for every request (needs `impersonate` on users).
    #[arg(long = "as", global = true, value_name = "USER")]
    as_user: Option<String>,
    /// Group to impersonate, with `--as` (repeat for more groups).
    #[arg(
        long = "as-group",
        global = true,
        value_name = "GROUP",
        requires = "as_user"
    )]
    as_groups: Vec<String>,
}

/// The flags of this invocation, set once by [`crate::main`] before any command runs.
static FLAGS: OnceLock<ConnectionArgs> = OnceLock::new();

/// Keeps this invocation's connection flags for [`client`].
pub fn set(flags: ConnectionArgs) {
    let _ = FLAGS.set(flags);
}

/// A client for the cluster the flags name: without any, what kubectl would use (`$KUBECONFIG`,
/// `~/.kube/config`), or in a pod its service account.
pub async fn client() -> anyhow::Result<kube::Client> {
    let flags = FLAGS.get().cloned().unwrap_or_default();
    let options = KubeConfigOptions {
        context: flags.context,
        cluster: flags.cluster,
        user: flags.user,
    };
    let chosen = options.context.is_some() || options.cluster.is_some() || options.user.is_some();
    let mut config = match flags.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(&path)
                .map_err(|e| anyhow::anyhow!("reading the kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        None if chosen => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    if let Some(user) = flags.as_user {
        config.auth_info.impersonate = Some(user);
        config.auth_info.impersonate_groups =
            (!flags.as_groups.is_empty()).then_some(flags.as_groups);
    }
    Ok(kube::Client::try_from(config)?)
}
