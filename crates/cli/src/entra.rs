//! The flags that make the operator (and, later, the commands) ask Entra ID about each object's
//! group, shared by every command that asks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;
use futures::StreamExt;
use groupbinder_api::entra::Answer;
use groupbinder_controller::EntraSetup;
use groupbinder_entra::{Config, CredentialSource, Directory, GRAPH, Lookup};

/// Asking Entra ID (off unless `--entra-tenant-id` is given).
#[derive(Debug, Args)]
pub struct EntraArgs {
    /// Ask Entra ID (Microsoft Graph) whether each object's groupObjectId is a group of this
    /// tenant, and show its display name. Off when unset. Needs the application permission
    /// GroupMember.Read.All (Directory.Read.All as well to tell what a non-group ID is instead).
    #[arg(long, env = "GROUPBINDER_ENTRA_TENANT_ID")]
    pub entra_tenant_id: Option<String>,
    /// The application (client) ID [default: AZURE_CLIENT_ID, as AKS workload identity sets it].
    #[arg(long, env = "GROUPBINDER_ENTRA_CLIENT_ID")]
    pub entra_client_id: Option<String>,
    /// A file holding the application's client secret. Without it, the credential is AKS
    /// workload identity (the token in AZURE_FEDERATED_TOKEN_FILE).
    #[arg(long, env = "GROUPBINDER_ENTRA_CLIENT_SECRET_FILE")]
    pub entra_client_secret_file: Option<PathBuf>,
    /// The token authority (https only) [default: AZURE_AUTHORITY_HOST, or
    /// https://login.microsoftonline.com/].
    #[arg(long, env = "GROUPBINDER_ENTRA_AUTHORITY_HOST")]
    pub entra_authority_host: Option<String>,
    /// Microsoft Graph's base URL (https only).
    #[arg(long, env = "GROUPBINDER_ENTRA_GRAPH_ENDPOINT", default_value = GRAPH)]
    pub entra_graph_endpoint: String,
    /// A PEM file of CAs to trust besides Mozilla's (a TLS-inspecting proxy's).
    #[arg(long, env = "GROUPBINDER_ENTRA_CA_FILE")]
    pub entra_ca_file: Option<PathBuf>,
    /// Seconds an answer is kept before the group is asked about again.
    #[arg(long, env = "GROUPBINDER_ENTRA_TTL_SECONDS", default_value_t = 600)]
    pub entra_ttl_seconds: u64,
    /// Seconds a group may be missing before Ready says so (a new group is missing for a while).
    #[arg(
        long,
        env = "GROUPBINDER_ENTRA_REPLICATION_WINDOW_SECONDS",
        default_value_t = 600
    )]
    pub entra_replication_window_seconds: u64,
}

impl EntraArgs {
    /// The Graph client, or `None` when Entra ID is not to be asked.
    pub fn directory(&self) -> anyhow::Result<Option<(String, Directory)>> {
        let Some(tenant) = self.entra_tenant_id.clone() else {
            return Ok(None);
        };
        let credential = match &self.entra_client_secret_file {
            Some(path) => {
                let secret = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("reading the client secret file {}: {e}", path.display())
                })?;
                CredentialSource::ClientSecret(secret.trim_end().to_owned().into())
            }
            None => CredentialSource::WorkloadIdentity { token_file: None },
        };
        let ca_pem =
            match &self.entra_ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("reading --entra-ca-file {}: {e}", path.display())
                })?),
                None => None,
            };
        let directory = Directory::new(Config {
            tenant_id: tenant.clone(),
            client_id: self.entra_client_id.clone(),
            credential,
            authority_host: self.entra_authority_host.clone(),
            graph_endpoint: self.entra_graph_endpoint.clone(),
            ca_pem,
            timeout: Duration::from_secs(10),
        })?;
        Ok(Some((tenant, directory)))
    }

    /// How the controller asks, or `None`.
    pub fn setup(&self) -> anyhow::Result<Option<EntraSetup>> {
        Ok(self.directory()?.map(|(tenant, directory)| EntraSetup {
            directory: Arc::new(directory),
            tenant,
            ttl: Duration::from_secs(self.entra_ttl_seconds.max(1)),
            window: Duration::from_secs(self.entra_replication_window_seconds),
        }))
    }
}

/// The commands' lookups at once: at most this many.
const COMMAND_CONCURRENCY: usize = 4;

impl EntraArgs {
    /// What Entra ID says of each of `ids` (each asked once), or `None` when it is not to be
    /// asked. An ID that could not be looked up is left out, and said once on standard error.
    pub async fn answers<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Option<BTreeMap<String, Answer>>> {
        let Some((_, directory)) = self.directory()? else {
            return Ok(None);
        };
        let ids: BTreeSet<&str> = ids.into_iter().collect();
        let directory = &directory;
        let results: Vec<(String, Result<Answer, groupbinder_entra::LookupError>)> =
            futures::stream::iter(ids)
                .map(|id| async move { (id.to_owned(), directory.lookup(id).await) })
                .buffer_unordered(COMMAND_CONCURRENCY)
                .collect()
                .await;
        let mut answers = BTreeMap::new();
        let mut failed = Vec::new();
        for (id, result) in results {
            match result {
                Ok(answer) => {
                    answers.insert(id, answer);
                }
                Err(error) => failed.push(error.to_string()),
            }
        }
        if let Some(first) = failed.first() {
            eprintln!(
                "Entra ID: {} of the object IDs could not be looked up ({}); they are shown without a name",
                failed.len(),
                groupbinder_api::text::shown(first)
            );
        }
        Ok(Some(answers))
    }
}
