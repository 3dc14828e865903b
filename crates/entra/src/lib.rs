//! Asks Microsoft Entra ID what an object ID is: one typed Graph read per group
//! (`GET /v1.0/groups/{id}?$select=...`), and for an ID that is no group, what it is instead
//! (`GET /v1.0/directoryObjects/{id}`, which needs a directory read permission; without it the
//! answer is only "not a group in this tenant").
//!
//! Tokens come from `azure_identity` (workload identity's federated token, or a client secret),
//! through [`Https`]: one rustls client with ring, so no second crypto provider is compiled in.
//! What the answers mean is [`groupbinder_api::entra`]'s; when to ask is the caller's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use bytes::Bytes;
use groupbinder_api::entra::{
    Answer, GROUP_SELECT, GraphDirectoryObject, GraphErrorBody, GraphGroup, GroupFacts, ObjectKind,
};
use http_body_util::Full;

mod https;
pub use https::{BODY_LIMIT, Https, TlsError, TransportError};

/// Microsoft Graph.
pub const GRAPH: &str = "https://graph.microsoft.com";
/// The token scope for Graph's public cloud with the application's permissions; another cloud's
/// Graph (`https://graph.microsoft.us`, ...) is its own base URL followed by `/.default`.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);
/// The wait after a throttled answer without `Retry-After`.
pub const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(30);

/// How the operator proves who it is to Entra ID.
#[derive(Debug)]
pub enum CredentialSource {
    /// AKS workload identity: the projected service-account token in `AZURE_FEDERATED_TOKEN_FILE`
    /// (or this file) is the client assertion; the client ID from `AZURE_CLIENT_ID` unless given.
    WorkloadIdentity {
        /// The token file, when not `AZURE_FEDERATED_TOKEN_FILE`.
        token_file: Option<PathBuf>,
    },
    /// An application's client secret (never logged).
    ClientSecret(Secret),
}

/// Where and how to ask.
#[derive(Debug)]
pub struct Config {
    /// The tenant whose groups the objects name.
    pub tenant_id: String,
    /// The application (client) ID; `None`: `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// The credential.
    pub credential: CredentialSource,
    /// The token authority, e.g. `https://login.microsoftonline.com/`; `None`:
    /// `AZURE_AUTHORITY_HOST` or the public cloud. HTTPS only.
    pub authority_host: Option<String>,
    /// Graph's base URL ([`GRAPH`]).
    pub graph_endpoint: String,
    /// More CAs to trust, PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// The deadline of each request.
    pub timeout: Duration,
}

/// Why the client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// TLS.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `azure_identity` refused the settings (tenant, client ID, token file, authority).
    #[error("Entra ID credentials: {0}")]
    Credential(String),
    /// The Graph endpoint is not an HTTPS URL.
    #[error("the Graph endpoint {0:?} is not an https:// URL")]
    Graph(String),
}

/// Why one object ID could not be looked up. None of these says anything about the group.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Entra ID asks to wait (429, or 503 with `Retry-After`).
    #[error("Entra ID throttled the lookup: asked to wait {retry_after:?}")]
    Throttled {
        /// How long.
        retry_after: Duration,
    },
    /// No token: the credential was refused (`invalid_client`, an unknown tenant, a federated
    /// credential that does not match), or the token endpoint could not be reached.
    #[error("no token from Entra ID: {0}")]
    Token(String),
    /// Graph refused the token: the application lacks `GroupMember.Read.All`.
    #[error(
        "Graph refused the request ({code}): grant the application GroupMember.Read.All (application permission, admin consent)"
    )]
    Denied {
        /// Graph's error code.
        code: String,
    },
    /// No answer.
    #[error("Graph: {0}")]
    Transport(#[from] TransportError),
    /// Another answer.
    #[error("Graph answered {status} {code}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// Graph's error code, if any.
        code: String,
    },
}

impl LookupError {
    /// A low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            LookupError::Throttled { .. } => "throttled",
            LookupError::Token(_) => "token",
            LookupError::Denied { .. } => "denied",
            LookupError::Transport(_) => "transport",
            LookupError::Unexpected { .. } => "unexpected",
        }
    }
}

/// Asks Entra ID about object IDs.
#[async_trait::async_trait]
pub trait Lookup: Send + Sync + std::fmt::Debug {
    /// What `object_id` is.
    async fn lookup(&self, object_id: &str) -> Result<Answer, LookupError>;
}

/// The Graph client.
#[derive(Clone)]
pub struct Directory {
    https: Https,
    credential: Arc<dyn TokenCredential>,
    graph: String,
    scope: String,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("graph", &self.graph)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// A client for `config`.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if !config.graph_endpoint.starts_with("https://") {
            return Err(ConfigError::Graph(config.graph_endpoint));
        }
        let https = Https::new(config.ca_pem.as_deref(), config.timeout)?;
        let mut client_options = azure_core::http::ClientOptions {
            transport: Some(azure_core::http::Transport::new(Arc::new(https.clone()))),
            // One attempt: the caller owns retries, backoff and Retry-After.
            retry: azure_core::http::RetryOptions::none(),
            ..Default::default()
        };
        let authority = config
            .authority_host
            .or_else(|| std::env::var("AZURE_AUTHORITY_HOST").ok());
        if let Some(authority) = authority {
            let mut custom = azure_core::cloud::CustomConfiguration::default();
            custom.authority_host = authority;
            client_options.cloud = Some(Arc::new(custom.into()));
        }
        let credential_error = |e: azure_core::Error| ConfigError::Credential(e.to_string());
        let credential: Arc<dyn TokenCredential> = match config.credential {
            CredentialSource::WorkloadIdentity { token_file } => {
                let options = azure_identity::WorkloadIdentityCredentialOptions {
                    credential_options: azure_identity::ClientAssertionCredentialOptions {
                        client_options,
                    },
                    client_id: config.client_id,
                    tenant_id: Some(config.tenant_id),
                    token_file_path: token_file,
                };
                azure_identity::WorkloadIdentityCredential::new(Some(options))
                    .map_err(credential_error)?
            }
            CredentialSource::ClientSecret(secret) => {
                let client_id = config
                    .client_id
                    .or_else(|| std::env::var("AZURE_CLIENT_ID").ok())
                    .unwrap_or_default();
                let options = azure_identity::ClientSecretCredentialOptions { client_options };
                azure_identity::ClientSecretCredential::new(
                    &config.tenant_id,
                    client_id,
                    secret,
                    Some(options),
                )
                .map_err(credential_error)?
            }
        };
        let graph = config.graph_endpoint.trim_end_matches('/').to_owned();
        Ok(Directory {
            https,
            credential,
            scope: format!("{graph}/.default"),
            graph,
        })
    }

    async fn get(&self, path: &str, token: &str) -> Result<https::Answer, LookupError> {
        let request = http::Request::get(format!("{}{path}", self.graph))
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| TransportError::Request(e.to_string()))?;
        Ok(self.https.send(request).await?)
    }
}

#[async_trait::async_trait]
impl Lookup for Directory {
    async fn lookup(&self, object_id: &str) -> Result<Answer, LookupError> {
        // The ID goes into a path: only a GUID's characters (the schema admits nothing else).
        if object_id.is_empty() || !object_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Ok(Answer::NotAGroup(None));
        }
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| LookupError::Token(first_line(&e.to_string())))?;
        let token = token.token.secret();
        let group = self
            .get(
                &format!("/v1.0/groups/{object_id}?$select={GROUP_SELECT}"),
                token,
            )
            .await?;
        match group.status.as_u16() {
            200 => {
                let group: GraphGroup =
                    serde_json::from_slice(&group.body).map_err(|_| LookupError::Unexpected {
                        status: 200,
                        code: "unreadable group".into(),
                    })?;
                return Ok(Answer::Group(GroupFacts::from(group)));
            }
            404 => {}
            _ => return Err(failure(&group)),
        }
        let object = self
            .get(&format!("/v1.0/directoryObjects/{object_id}"), token)
            .await?;
        match object.status.as_u16() {
            200 => {
                let object: GraphDirectoryObject =
                    serde_json::from_slice(&object.body).unwrap_or_default();
                Ok(Answer::NotAGroup(Some(ObjectKind::from_odata_type(
                    &object.odata_type,
                ))))
            }
            // Missing, or no permission to tell what it is: not a group, all the same.
            404 | 403 => Ok(Answer::NotAGroup(None)),
            _ => Err(failure(&object)),
        }
    }
}

/// The error an answer other than 200 and 404 means.
fn failure(answer: &https::Answer) -> LookupError {
    let status = answer.status.as_u16();
    let code = serde_json::from_slice::<GraphErrorBody>(&answer.body)
        .map(|b| groupbinder_api::text::bounded(&b.error.code, 64))
        .unwrap_or_default();
    match status {
        429 | 503 => LookupError::Throttled {
            retry_after: retry_after(&answer.headers),
        },
        401 | 403 => LookupError::Denied { code },
        _ => LookupError::Unexpected { status, code },
    }
}

/// `Retry-After` in seconds (Graph sends seconds), bounded by [`RETRY_AFTER_MAX`].
pub fn retry_after(headers: &http::HeaderMap) -> Duration {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(RETRY_AFTER_DEFAULT, |s| {
            Duration::from_secs(s).min(RETRY_AFTER_MAX)
        })
}

/// The first line of an error, escaped and bounded: `azure_identity`'s errors carry the token
/// endpoint's whole answer and a troubleshooting link.
fn first_line(text: &str) -> String {
    groupbinder_api::text::bounded(text.lines().next().unwrap_or_default(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_and_bounded() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), RETRY_AFTER_DEFAULT);
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(7));
        headers.insert(http::header::RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&headers), RETRY_AFTER_MAX);
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), RETRY_AFTER_DEFAULT);
    }

    #[test]
    fn the_token_scope_is_the_graph_of_the_cloud() {
        assert_eq!(format!("{GRAPH}/.default"), GRAPH_SCOPE);
    }

    #[test]
    fn a_plain_http_graph_is_refused() {
        let config = Config {
            tenant_id: "3f1c0d2e-0000-4000-8000-000000000001".into(),
            client_id: Some("app".into()),
            credential: CredentialSource::ClientSecret(Secret::new("s")),
            authority_host: Some("https://login.example".into()),
            graph_endpoint: "http://graph.example".into(),
            ca_pem: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(Directory::new(config), Err(ConfigError::Graph(_))));
    }

    #[test]
    fn a_plain_http_authority_is_refused_by_azure_identity() {
        let config = Config {
            tenant_id: "3f1c0d2e-0000-4000-8000-000000000001".into(),
            client_id: Some("app".into()),
            credential: CredentialSource::ClientSecret(Secret::new("s")),
            authority_host: Some("http://login.example".into()),
            graph_endpoint: GRAPH.into(),
            ca_pem: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            Directory::new(config),
            Err(ConfigError::Credential(_))
        ));
    }
}
