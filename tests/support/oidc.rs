//! A local OpenID Connect issuer for tests: HTTPS on loopback with its own CA, a discovery document
//! and a JWKS for each issuer path, and ES256-signed ID tokens shaped like Entra ID's.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use rcgen::KeyPair;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use crate::tls::TlsServer;

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
    _server: TlsServer,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

const KID: &str = "groupbinder-test-key";

impl Issuer {
    /// Starts an issuer on a free loopback port. Any path `<p>/.well-known/openid-configuration`
    /// serves the discovery document of issuer `<base><p>`; `/keys` serves the JWKS.
    pub async fn start() -> anyhow::Result<Self> {
        let pkcs8 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_der();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        // The base URL is known only once the server listens: the handler reads it from here.
        let base = Arc::new(std::sync::OnceLock::<String>::new());
        let (seen, keys) = (base.clone(), jwks.clone());
        let server = TlsServer::start(Arc::new(move |request| {
            let state = (seen.get().cloned().unwrap_or_default(), keys.clone());
            Box::pin(async move { respond(&request, &state) })
        }))?;
        let _ = base.set(server.base.clone());
        Ok(Issuer {
            base: server.base.clone(),
            ca_pem: server.ca_pem.clone(),
            jwks,
            key,
            rng,
            _server: server,
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

fn respond(
    request: &Request<hyper::body::Incoming>,
    state: &(String, Value),
) -> Response<Full<Bytes>> {
    let (base, jwks) = state;
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
    match body {
        Some(body) => crate::tls::json(200, &body),
        None => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap_or_default(),
    }
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
