//! K10's live settings read from the cluster, for the commands that already talk to it
//! (`audit`, `import`, `explain-token --check`, `plan --namespaces-from-cluster`): the same chain
//! the operator watches (Deployment `auth-svc` → volume `k10-oidc-auth` → that Secret, and
//! ConfigMap `k10-config`), read once. Only the six OIDC keys are taken from the Secret.

use groupbinder_api::k10oidc::{
    AUTH_DEPLOYMENT, K10_CONFIG, K10Live, K10Oidc, mounted_oidc_secret,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::output::shown;

/// Flag that turns reading K10's live settings off.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct K10ClusterArgs {
    /// Do not read K10's live OIDC settings (Deployment auth-svc, its OIDC Secret, k10-config)
    /// from the cluster; use --k10-values, the flags and the defaults only.
    #[arg(long)]
    pub no_k10_from_cluster: bool,
}

/// What the cluster says of K10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K10Cluster {
    /// Its OIDC settings, as far as they could be read.
    pub live: K10Live,
    /// `k10-config`'s `apiDomain`, if read.
    pub api_domain: Option<String>,
}

impl K10Cluster {
    /// The OIDC settings, when known.
    pub fn oidc(&self) -> Option<&K10Oidc> {
        match &self.live {
            K10Live::Known(oidc) => Some(oidc),
            _ => None,
        }
    }
}

/// Reads K10's settings in `namespace`, unless `args` turn it off; says on standard error what it
/// used, or why it could not.
pub async fn read(args: K10ClusterArgs, client: &Client, namespace: &str) -> Option<K10Cluster> {
    if args.no_k10_from_cluster {
        return None;
    }
    let cluster = K10Cluster {
        live: live(client, namespace).await,
        api_domain: Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(K10_CONFIG)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.data?.remove("apiDomain")),
    };
    match &cluster.live {
        K10Live::Known(oidc) => eprintln!(
            "note: K10's live OIDC settings (namespace {}): groupPrefix {}, groupClaim {} (--no-k10-from-cluster to ignore them)",
            shown(namespace),
            shown(&format!("{:?}", oidc.group_prefix)),
            shown(&format!("{:?}", oidc.group_claim)),
        ),
        other => eprintln!(
            "note: K10's live OIDC settings not used: {}",
            shown(&match other {
                K10Live::NotInstalled => format!("no Deployment auth-svc in namespace {namespace}"),
                K10Live::OidcOff => "auth-svc mounts no OIDC Secret".to_owned(),
                K10Live::Unreadable(why) => why.clone(),
                K10Live::Known(_) => String::new(),
            })
        ),
    }
    Some(cluster)
}

async fn live(client: &Client, namespace: &str) -> K10Live {
    let deployment = match Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(AUTH_DEPLOYMENT)
        .await
    {
        Ok(Some(d)) => d,
        Ok(None) => return K10Live::NotInstalled,
        Err(e) => {
            return K10Live::Unreadable(format!(
                "reading Deployment {namespace}/{AUTH_DEPLOYMENT}: {e}"
            ));
        }
    };
    let Some(name) = mounted_oidc_secret(&deployment) else {
        return K10Live::OidcOff;
    };
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(secret)) => K10Live::Known(K10Oidc::from_secret(secret)),
        Ok(None) => K10Live::Unreadable(format!(
            "{AUTH_DEPLOYMENT} mounts Secret {namespace}/{name}, which does not exist"
        )),
        Err(e) => K10Live::Unreadable(format!("reading Secret {namespace}/{name}: {e}")),
    }
}
