//! The namespaces that `namespaceSelector`s select from, for the offline commands: from a file
//! (`kubectl get namespaces -o yaml`, or Namespace manifests) or from the cluster.

use std::path::PathBuf;

use clap::Args;
use groupbinder_api::selector::Labels;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;

use crate::manifests::{self, ManifestError};

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
    /// Whether the namespaces are read from the cluster (`--namespaces-from-cluster`).
    pub fn reads_cluster(&self) -> bool {
        self.namespaces_from_cluster
    }

    /// The namespaces from the file, if one was given.
    pub fn read_file(&self) -> Result<Option<Listed>, ManifestError> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let documents = manifests::read_all(std::slice::from_ref(file))?;
        let (namespaces, failures) = manifests::of_kind::<Namespace>(&documents, None, "Namespace");
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure);
        }
        Ok(Some(
            namespaces
                .into_iter()
                .filter_map(|ns| Some((ns.metadata.name?, ns.metadata.labels.unwrap_or_default())))
                .collect(),
        ))
    }

    /// The namespaces: from the file when one was given, else from the cluster when asked or
    /// when `cluster` is true, else none (selectors then select nothing and say so).
    pub async fn read(&self, cluster: bool) -> anyhow::Result<Option<Listed>> {
        if let Some(listed) = self.read_file()? {
            return Ok(Some(listed));
        }
        if !(cluster || self.namespaces_from_cluster) {
            return Ok(None);
        }
        Ok(Some(
            from_cluster(&crate::connection::client().await?).await?,
        ))
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
