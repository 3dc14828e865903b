//! A local OpenID Connect issuer for tests: HTTPS on loopback with its own CA, a discovery document
//! and a JWKS for each issuer path, and ES256-signed ID tokens shaped like Entra ID's.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

/// A running issuer. Dropping it stops the server.
pub struct Issuer {
    /// `https://127.0.0.1:<port>`: each issuer URL is this plus a path, e.g. `/tenant/v2.0`.
    pub base: String,
    /// The CA that signed the server's certificate, PEM (for `certificateAuthority`).
    pub ca_pem: String,
    /// The issuer's JWKS document (what `/keys` serves).
    pub jwks: Value,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

const KID: &str = "groupbinder-test-key";

impl Issuer {
    /// Starts an issuer on a free loopback port. Any path `<p>/.well-known/openid-configuration`
    /// serves the discovery document of issuer `<base><p>`; `/keys` serves the JWKS.
    pub async fn start() -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let pkcs8 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_der();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});

        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let state = Arc::new((base.clone(), jwks.clone()));
        // Its own thread and runtime: the caller's runtime may be blocked (a test waiting for
        // kubectl) exactly when kube-apiserver fetches the keys.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let serve = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (acceptor, state) = (acceptor.clone(), state.clone());
                        tokio::spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let service =
                                service_fn(move |request| respond(request, state.clone()));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Issuer {
            base,
            jwks,
            ca_pem: ca.pem(),
            key,
            rng,
            stop: Some(stop),
        })
    }

    /// An ES256-signed JWT with `claims`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

async fn respond(
    request: Request<hyper::body::Incoming>,
    state: Arc<(String, Value)>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (base, jwks) = &*state;
    let path = request.uri().path();
    let body = if path == "/keys" {
        Some(jwks.clone())
    } else {
        path.strip_suffix("/.well-known/openid-configuration")
            .map(|issuer_path| {
                json!({
                    "issuer": format!("{base}{issuer_path}"),
                    "jwks_uri": format!("{base}/keys"),
                    "authorization_endpoint": format!("{base}{issuer_path}/authorize"),
                    "response_types_supported": ["code", "id_token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                })
            })
    };
    let response = match body {
        Some(body) => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string()))),
        None => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found"))),
    };
    Ok(response.unwrap_or_default())
}

/// A JWT with `claims` and a signature that verifies nowhere: for commands that read a token's
/// claims without checking its signature.
pub fn unsigned(claims: &serde_json::Value) -> String {
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        enc(claims)
    )
}
