//! The operator settings flags, shared by `run` and `plan` so both compute the same bindings.

use clap::Args;
use groupbinder_api::Settings;
use groupbinder_api::desired::k10_roles;

/// Where K10 is, and what an AzureGroupBinding may bind.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Helm release name of K10: its roles are <release>-admin, <release>-ns-admin, ...
    #[arg(long, env = "GROUPBINDER_K10_RELEASE", default_value = "k10")]
    pub k10_release: String,
    /// Namespace K10 is installed in.
    #[arg(long, env = "GROUPBINDER_K10_NAMESPACE", default_value = "kasten-io")]
    pub k10_namespace: String,
    /// Group prefix for specs that set none: K10's auth.oidcAuth.groupPrefix.
    #[arg(long, env = "GROUPBINDER_DEFAULT_GROUP_PREFIX", default_value = "")]
    pub default_group_prefix: String,
    /// Comma-separated names of the roles and cluster roles an AzureGroupBinding may bind
    /// [default: the K10 release's admin, ns-admin, basic and config-view roles].
    #[arg(long, env = "GROUPBINDER_ALLOWED_ROLES", value_delimiter = ',')]
    pub allowed_roles: Option<Vec<String>>,
}

impl SettingsArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_k10(
            &self.k10_release,
            &self.k10_namespace,
            &self.default_group_prefix,
        );
        let allowed = self
            .allowed_roles
            .clone()
            .unwrap_or_else(|| k10_roles(&self.k10_release));
        settings.allowed_roles = allowed
            .into_iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        settings
    }
}
