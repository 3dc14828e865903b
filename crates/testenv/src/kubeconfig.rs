//! Kubeconfig files for the control plane's identities.

use std::path::{Path, PathBuf};

use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use crate::{CertAndKey, Error, io};

const NAME: &str = "groupbinder-testenv";

/// How a kubeconfig authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// A client certificate.
    Certificate(&'a CertAndKey),
    /// A bearer token (a service account's, from the TokenRequest API).
    Token(&'a str),
}

/// Mints a client certificate for `user` in `groups` from `ca` and writes a kubeconfig for
/// `server` that authenticates with it: the identity of a component or a test user.
pub fn for_identity(
    file: &Path,
    server: &str,
    ca: &crate::pki::Ca,
    user: &str,
    groups: &[&str],
) -> Result<PathBuf, Error> {
    let identity = ca.client(user, groups)?;
    write(
        file,
        server,
        &ca.cert_pem(),
        Credentials::Certificate(&identity),
    )
}

/// Writes a kubeconfig for `server`, trusting `ca_pem`, authenticating with `credentials`.
pub fn write(
    file: &Path,
    server: &str,
    ca_pem: &str,
    credentials: Credentials<'_>,
) -> Result<PathBuf, Error> {
    let b64 = |s: &str| k8s_openapi::ByteString(s.as_bytes().to_vec());
    let encode = |s: &str| {
        serde_json::to_value(b64(s))
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                certificate_authority_data: encode(ca_pem),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(match credentials {
                Credentials::Certificate(identity) => AuthInfo {
                    client_certificate_data: encode(&identity.cert_pem),
                    client_key_data: encode(&identity.key_pem).map(Into::into),
                    ..AuthInfo::default()
                },
                Credentials::Token(token) => AuthInfo {
                    token: Some(token.to_owned().into()),
                    ..AuthInfo::default()
                },
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context {
                cluster: NAME.into(),
                user: Some(NAME.into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(NAME.into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Kubeconfig::default()
    };
    let yaml = serde_saphyr::to_string(&config).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    std::fs::write(file, yaml).map_err(io(format!("writing {}", file.display())))?;
    Ok(file.to_owned())
}

/// A client from a kubeconfig file.
pub async fn client(file: &Path) -> Result<kube::Client, Error> {
    kube::Client::try_from(config(file).await?).map_err(|e| Error::Kubeconfig(e.to_string()))
}

/// The client configuration in the kubeconfig `file`.
pub async fn config(file: &Path) -> Result<kube::Config, Error> {
    let kubeconfig = Kubeconfig::read_from(file).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))
}
