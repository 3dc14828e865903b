//! One HTTPS client for everything said to Entra ID: the token endpoint (as `azure_identity`'s
//! transport) and Graph. rustls with ring as its only crypto provider, installed explicitly;
//! Mozilla's roots (the image has no system store) and, optionally, more CAs from a PEM file (a
//! proxy's, or a test stand-in's). Every request has a deadline and every body a size limit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest answer read (a group, a token, an error): anything larger is refused.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection or TLS failed.
    #[error("{0}")]
    Connect(String),
    /// The answer was larger than [`BODY_LIMIT`] or broke off.
    #[error("reading the answer: {0}")]
    Body(String),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(String),
}

/// Why the client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA in the extra PEM could not be read.
    #[error("the CA file holds no usable certificate: {0}")]
    Ca(String),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// An answer: status, headers, body (at most [`BODY_LIMIT`] bytes).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// The HTTPS client.
#[derive(Clone)]
pub struct Https {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Https {
    /// A client trusting Mozilla's roots and the CAs in `extra_ca_pem`; each request fails after
    /// `timeout`.
    pub fn new(extra_ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, TlsError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::Ca(e.to_string()))?;
                roots.add(cert)?;
                added += 1;
            }
            if added == 0 {
                return Err(TlsError::Ca("no PEM certificate in it".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Https { client, timeout })
    }

    /// Sends `request` and reads the answer, within the deadline.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Answer, TransportError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TransportError::Connect(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, BODY_LIMIT)
                .collect()
                .await
                .map_err(|e| TransportError::Body(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
    }
}

/// An error and its sources, on one line ("client error (Connect): tcp connect error: ...").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `azure_identity`'s requests (tokens) go through the same client.
#[async_trait::async_trait]
impl azure_core::http::HttpClient for Https {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let method = request.method().as_ref().to_owned();
        let mut builder = http::Request::builder()
            .method(method.as_str())
            .uri(request.url().as_str());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = match request.body() {
            azure_core::http::Body::Bytes(bytes) => bytes.clone(),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(Error::with_message(
                    ErrorKind::Io,
                    "streaming request bodies are not supported",
                ));
            }
        };
        let built = builder
            .body(Full::new(body))
            .map_err(|e| Error::with_message(ErrorKind::Io, e.to_string()))?;
        let answer = self
            .send(built)
            .await
            .map_err(|e| Error::with_message(ErrorKind::Io, e.to_string()))?;
        let mut headers = azure_core::http::headers::Headers::new();
        for (name, value) in &answer.headers {
            if let Ok(value) = value.to_str() {
                headers.insert(name.as_str().to_owned(), value.to_owned());
            }
        }
        Ok(azure_core::http::AsyncRawResponse::from_bytes(
            answer.status.as_u16().into(),
            headers,
            answer.body,
        ))
    }
}
