//! The operator settings flags, shared by `run` and `plan` so both compute the same bindings.

use clap::Args;
use groupbinder_api::{Allowlist, Settings};

/// Where K10 is, and what an AzureGroupBinding may bind.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Helm release name of K10: its roles are <release>-admin, <release>-ns-admin, ...
    #[arg(long, env = "GROUPBINDER_K10_RELEASE", default_value = "k10")]
    pub k10_release: String,
    /// Namespace K10 is installed in (`-n`, `--namespace`: as kubectl users say it).
    #[arg(
        short = 'n',
        long,
        visible_alias = "namespace",
        env = "GROUPBINDER_K10_NAMESPACE",
        default_value = "kasten-io"
    )]
    pub k10_namespace: String,
    /// Group prefix for specs that set none: K10's auth.oidcAuth.groupPrefix.
    #[arg(long, env = "GROUPBINDER_DEFAULT_GROUP_PREFIX", default_value = "", value_parser = group_prefix)]
    pub default_group_prefix: String,
    /// Comma-separated roles an AzureGroupBinding may bind: a ClusterRole by its name (bound
    /// cluster-wide or in any namespace), a Role as namespace/name (bound in that namespace only)
    /// [default: the K10 release's ClusterRoles <release>-admin, -basic, -config-view and -mc-admin, and the
    /// Role <k10-namespace>/<release>-ns-admin].
    #[arg(long, env = "GROUPBINDER_ALLOWED_ROLES", value_delimiter = ',', value_parser = allowlist_entry)]
    pub allowed_roles: Option<Vec<String>>,
    /// The most RoleBindings one AzureGroupBinding may make (its namespaceSelectors select that
    /// many namespaces at most): above it the object keeps the RoleBindings it has, adds none, and
    /// says so (Ready=False, TooManyRoleBindings).
    #[arg(long, env = "GROUPBINDER_MAX_ROLE_BINDINGS", default_value_t = groupbinder_api::desired::DEFAULT_MAX_ROLE_BINDINGS)]
    pub max_role_bindings: usize,
}

impl SettingsArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_k10(
            &self.k10_release,
            &self.k10_namespace,
            &self.default_group_prefix,
        );
        settings.max_role_bindings = self.max_role_bindings;
        if let Some(entries) = &self.allowed_roles {
            // Every entry was checked by `allowlist_entry`; were one not, nothing would be allowed.
            settings.allowed =
                Allowlist::parse(entries.iter().map(String::as_str)).unwrap_or_default();
        }
        settings
    }
}

/// One `--allowed-roles` entry: `name` or `namespace/name`.
fn allowlist_entry(entry: &str) -> Result<String, String> {
    Allowlist::parse([entry])
        .map(|_| entry.trim().to_owned())
        .map_err(|e| e.to_string())
}

/// `--default-group-prefix`: what the CRD admits in `spec.groupPrefix`, no more.
fn group_prefix(prefix: &str) -> Result<String, String> {
    if prefix.starts_with("system:") {
        return Err("must not start with 'system:': that prefix is reserved for Kubernetes".into());
    }
    match groupbinder_api::text::invisible_in(prefix) {
        Some(c) => Err(format!(
            "holds the invisible character {} (white space, control, format or default-ignorable, or a leading combining mark): K10 compares group names exactly",
            c.escape_unicode()
        )),
        None => Ok(prefix.to_owned()),
    }
}
