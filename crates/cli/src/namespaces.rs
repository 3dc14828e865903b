//! The namespaces that `namespaceSelector`s select from, for the offline commands: from a file
//! (`kubectl get namespaces -o yaml`, or Namespace manifests) or from the cluster.

use std::path::PathBuf;

use clap::Args;
use groupbinder_api::selector::Labels;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;

/// Where the namespaces come from.
#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// Namespaces (with their labels) for namespaceSelectors: a file of Namespace manifests or a
    /// List, as `kubectl get namespaces -o yaml` prints.
    #[arg(long = "namespaces", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Read the namespaces for namespaceSelectors from the cluster (the current kubeconfig).
    #[arg(long, conflicts_with = "file")]
    namespaces_from_cluster: bool,
}

/// Names and labels of namespaces.
pub type Listed = Vec<(String, Labels)>;

impl NamespaceArgs {
    /// Whether the namespaces are to be read from the cluster.
    pub fn wants_cluster(&self) -> bool {
        self.namespaces_from_cluster
    }

    /// The namespaces from the file, if one was given.
    pub fn read_file(&self) -> anyhow::Result<Option<Listed>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text)
            .map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", file.display()))?;
        let mut listed = Listed::new();
        for doc in docs {
            let items = match doc["kind"].as_str() {
                Some("List" | "NamespaceList") => {
                    doc["items"].as_array().cloned().unwrap_or_default()
                }
                _ => vec![doc],
            };
            for item in items.into_iter().filter(|i| i["kind"] == "Namespace") {
                let ns: Namespace = serde_json::from_value(item)
                    .map_err(|e| anyhow::anyhow!("{}: a Namespace: {e}", file.display()))?;
                if let Some(name) = ns.metadata.name {
                    listed.push((name, ns.metadata.labels.unwrap_or_default()));
                }
            }
        }
        Ok(Some(listed))
    }
}

/// Every namespace of the cluster, with its labels.
pub async fn from_cluster(client: &kube::Client) -> anyhow::Result<Listed> {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    Ok(api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
        .collect())
}
