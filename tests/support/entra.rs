//! A stand-in for Entra ID, answering as Microsoft documents it: the v2.0 token endpoint
//! (`POST /{tenant}/oauth2/v2.0/token`, client credentials with a client secret or a client
//! assertion, 401 `invalid_client` otherwise) and Graph's `GET /v1.0/groups/{id}` and
//! `GET /v1.0/directoryObjects/{id}` (404 `Request_ResourceNotFound`, 403
//! `Authorization_RequestDenied` without a directory read permission, 429 with `Retry-After` when
//! throttling), over TLS with its own CA (azure_identity refuses plain HTTP).
//!
//! A client assertion is a workload-identity token: it is verified as Entra ID verifies a
//! federated credential — signature by a key of the issuer's JWKS (here the test API server's
//! service-account keys, ES256), that issuer, that subject, audience `api://AzureADTokenExchange`,
//! not expired. What only Microsoft's service can prove: its real tokens, tenants, permissions,
//! replication delays and throttling budgets.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::tls::{TlsServer, json};

/// The audience of a workload-identity token.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// A federated credential: tokens of `issuer` for `subject` are this application's.
#[derive(Clone, Debug)]
pub struct Federated {
    /// The service-account issuer (the API server's `--service-account-issuer`).
    pub issuer: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// The issuer's JWKS.
    pub jwks: Value,
}

/// Requests answered, by endpoint.
#[derive(Debug, Default)]
pub struct Counts {
    /// Token requests.
    pub tokens: AtomicU64,
    /// `GET /v1.0/groups/{id}`.
    pub groups: AtomicU64,
    /// `GET /v1.0/directoryObjects/{id}`.
    pub objects: AtomicU64,
    /// Answers 429.
    pub throttled: AtomicU64,
}

#[derive(Debug, Default)]
struct Directory {
    groups: HashMap<String, Value>,
    objects: HashMap<String, &'static str>,
    group_read: bool,
    directory_read: bool,
    throttle_until: Option<Instant>,
    retry_after: u64,
    federated: Option<Federated>,
    tokens: HashSet<String>,
    /// Every answer to a group read, in order: when, and whether it was a group (404: not).
    group_answers: Vec<(Instant, bool)>,
}

/// The running stand-in. Dropping it stops it.
#[derive(Debug)]
pub struct Entra {
    /// `https://127.0.0.1:<port>`: the authority host and Graph's base URL at once.
    pub base: String,
    /// Its CA, PEM.
    pub ca_pem: String,
    /// The tenant it serves.
    pub tenant: String,
    /// The application's client ID.
    pub client_id: String,
    /// The application's client secret.
    pub client_secret: String,
    /// What it answered.
    pub counts: Arc<Counts>,
    directory: Arc<Mutex<Directory>>,
    server: TlsServer,
}

impl Entra {
    /// Starts a stand-in for `tenant`, with one application and an empty directory.
    pub fn start(tenant: &str) -> anyhow::Result<Self> {
        let directory = Arc::new(Mutex::new(Directory {
            group_read: true,
            directory_read: true,
            retry_after: 2,
            ..Directory::default()
        }));
        let counts = Arc::new(Counts::default());
        let app = App {
            tenant: tenant.to_owned(),
            client_id: "5b1b2c3d-0000-4000-8000-0000000000aa".to_owned(),
            client_secret: "stand-in-client-secret-Q~9x".to_owned(),
        };
        let state = Arc::new((app.clone(), directory.clone(), counts.clone()));
        let server = TlsServer::start(Arc::new(move |request| {
            let state = state.clone();
            Box::pin(async move { answer(request, &state).await })
        }))?;
        Ok(Entra {
            base: server.base.clone(),
            ca_pem: server.ca_pem.clone(),
            tenant: app.tenant,
            client_id: app.client_id,
            client_secret: app.client_secret,
            counts,
            directory,
            server,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Directory) -> T) -> T {
        let mut directory = self
            .directory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut directory)
    }

    /// A group: `security` (a security group) or a Microsoft 365 group.
    pub fn add_group(&self, id: &str, display_name: &str, security: bool) {
        let group = json!({
            "id": id,
            "displayName": display_name,
            "securityEnabled": security,
            "mailEnabled": !security,
            "groupTypes": if security { json!([]) } else { json!(["Unified"]) },
        });
        self.with(|d| {
            d.groups.insert(id.to_owned(), group);
            d.objects.insert(id.to_owned(), "#microsoft.graph.group");
        });
    }

    /// Removes a group (deleted in Entra ID).
    pub fn remove_group(&self, id: &str) {
        self.with(|d| {
            d.groups.remove(id);
            d.objects.remove(id);
        });
    }

    /// A user.
    pub fn add_user(&self, id: &str) {
        self.with(|d| d.objects.insert(id.to_owned(), "#microsoft.graph.user"));
    }

    /// Whether the application may read groups (`GroupMember.Read.All`).
    pub fn set_group_read(&self, allowed: bool) {
        self.with(|d| d.group_read = allowed);
    }

    /// Whether the application may read directory objects (`Directory.Read.All`).
    pub fn set_directory_read(&self, allowed: bool) {
        self.with(|d| d.directory_read = allowed);
    }

    /// Throttles every Graph request for `for_`, asking to wait `retry_after` seconds.
    pub fn throttle(&self, for_: Duration, retry_after: u64) {
        self.with(|d| {
            d.throttle_until = Some(Instant::now() + for_);
            d.retry_after = retry_after;
        });
    }

    /// Trusts workload-identity tokens as `federated` says.
    pub fn federate(&self, federated: Federated) {
        self.with(|d| d.federated = Some(federated));
    }

    /// Unreachable (`true`), or back (`false`).
    pub fn set_down(&self, down: bool) {
        self.server.set_down(down);
    }

    /// The environment that makes `groupbinder` (`run` and the commands) ask this stand-in with
    /// its client secret: the secret and the CA are written into `dir`.
    pub fn env(&self, dir: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
        std::fs::create_dir_all(dir)?;
        let (secret, ca) = (dir.join("entra-client-secret"), dir.join("entra-ca.pem"));
        std::fs::write(&secret, format!("{}\n", self.client_secret))?;
        std::fs::write(&ca, &self.ca_pem)?;
        Ok([
            ("GROUPBINDER_ENTRA_TENANT_ID", self.tenant.clone()),
            ("GROUPBINDER_ENTRA_CLIENT_ID", self.client_id.clone()),
            (
                "GROUPBINDER_ENTRA_CLIENT_SECRET_FILE",
                secret.display().to_string(),
            ),
            ("GROUPBINDER_ENTRA_AUTHORITY_HOST", self.base.clone()),
            ("GROUPBINDER_ENTRA_GRAPH_ENDPOINT", self.base.clone()),
            ("GROUPBINDER_ENTRA_CA_FILE", ca.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect())
    }

    /// The answers to group reads given since `since`, in order: a group (`true`) or 404.
    /// Errors (throttling, denied, unreachable) are not answers.
    pub fn group_answers_since(&self, since: Instant) -> Vec<bool> {
        self.with(|d| {
            d.group_answers
                .iter()
                .filter(|(at, _)| *at >= since)
                .map(|(_, found)| *found)
                .collect()
        })
    }

    /// Graph requests answered so far (groups and directory objects).
    pub fn graph_requests(&self) -> u64 {
        self.counts.groups.load(Ordering::SeqCst) + self.counts.objects.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
struct App {
    tenant: String,
    client_id: String,
    client_secret: String,
}

type State = (App, Arc<Mutex<Directory>>, Arc<Counts>);

async fn answer(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let (app, directory, counts) = state;
    let path = request.uri().path().to_owned();
    if request.method() == hyper::Method::POST && path.ends_with("/oauth2/v2.0/token") {
        counts.tokens.fetch_add(1, Ordering::SeqCst);
        let tenant = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let Ok(body) = Limited::new(request.into_body(), 64 * 1024).collect().await else {
            return json(400, &json!({"error": "invalid_request"}));
        };
        let form: HashMap<String, String> = form_urlencoded::parse(&body.to_bytes())
            .into_owned()
            .collect();
        return token(app, directory, &tenant, &form);
    }
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| lock(directory).tokens.contains(t));
    let (kind, id) = match path.strip_prefix("/v1.0/groups/") {
        Some(id) => ("group", id.to_owned()),
        None => match path.strip_prefix("/v1.0/directoryObjects/") {
            Some(id) => ("object", id.to_owned()),
            None => return json(404, &json!({"error": {"code": "BadRequest"}})),
        },
    };
    if kind == "group" {
        counts.groups.fetch_add(1, Ordering::SeqCst);
    } else {
        counts.objects.fetch_add(1, Ordering::SeqCst);
    }
    if !authorized {
        return json(
            401,
            &json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure. Invalid audience."}}),
        );
    }
    let mut d = lock(directory);
    if let Some(until) = d.throttle_until
        && Instant::now() < until
    {
        counts.throttled.fetch_add(1, Ordering::SeqCst);
        let mut response = json(
            429,
            &json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}}),
        );
        if let Ok(value) = d.retry_after.to_string().parse() {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, value);
        }
        return response;
    }
    let not_found = || {
        json(
            404,
            &json!({"error": {"code": "Request_ResourceNotFound", "message": format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present.")}}),
        )
    };
    let denied = || {
        json(
            403,
            &json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}),
        )
    };
    if kind == "group" && d.group_read {
        let found = d.groups.contains_key(&id);
        d.group_answers.push((Instant::now(), found));
    }
    match kind {
        "group" if !d.group_read => denied(),
        "group" => match d.groups.get(&id) {
            Some(group) => {
                let mut group = group.clone();
                group["@odata.context"] = json!(
                    "https://graph.microsoft.com/v1.0/$metadata#groups(id,displayName,securityEnabled,mailEnabled,groupTypes)/$entity"
                );
                json(200, &group)
            }
            None => not_found(),
        },
        _ if !d.directory_read => denied(),
        _ => match d.objects.get(&id) {
            Some(odata_type) => json(200, &json!({"@odata.type": odata_type, "id": id})),
            None => not_found(),
        },
    }
}

fn lock(directory: &Mutex<Directory>) -> std::sync::MutexGuard<'_, Directory> {
    directory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The token endpoint's answer to `form`.
fn token(
    app: &App,
    directory: &Mutex<Directory>,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let error = |status, code: &str, description: &str| {
        json(
            status,
            &json!({"error": code, "error_description": description, "error_codes": [0]}),
        )
    };
    if tenant != app.tenant {
        return error(
            400,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(400, "unsupported_grant_type", "AADSTS70003");
    }
    // The client credentials grant takes only `<resource>/.default` scopes.
    if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
        return error(
            400,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    if form.get("client_id") != Some(&app.client_id) {
        return error(
            400,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    let proven = match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(secret), None) => {
            if *secret == app.client_secret {
                Ok(())
            } else {
                Err("AADSTS7000215: Invalid client secret provided.".to_owned())
            }
        }
        (None, Some(assertion))
            if form.get("client_assertion_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") =>
        {
            let federated = lock(directory).federated.clone();
            match federated {
                Some(federated) => verify_assertion(assertion, &federated),
                None => Err("AADSTS70021: No matching federated identity record found.".into()),
            }
        }
        _ => Err(
            "AADSTS7000218: The request body must contain client_assertion or client_secret."
                .into(),
        ),
    };
    if let Err(why) = proven {
        return error(401, "invalid_client", &why);
    }
    let mut bytes = [0u8; 24];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let access = hex_string(&bytes);
    lock(directory).tokens.insert(access.clone());
    json(
        200,
        &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access}),
    )
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies a workload-identity token as a federated credential: ES256 by a key of the issuer's
/// JWKS, `iss`, `sub`, `aud` and `exp`.
fn verify_assertion(token: &str, federated: &Federated) -> Result<(), String> {
    let bad = |why: &str| Err(format!("AADSTS700211: {why}"));
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return bad("the client assertion is not a JWT");
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
    let header: Value = decode(header)
        .and_then(|h| serde_json::from_slice(&h).map_err(|e| e.to_string()))
        .or_else(|e| bad(&e).map(|()| Value::Null))?;
    let kid = header["kid"].as_str().unwrap_or_default();
    let Some(key) = federated.jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"].as_str() == Some(kid))
    else {
        return bad("no key of the issuer signed the client assertion");
    };
    if header["alg"] != "ES256" || key["kty"] != "EC" {
        return bad("only ES256 assertions are verified by this stand-in");
    }
    let (Ok(x), Ok(y)) = (
        decode(key["x"].as_str().unwrap_or_default()),
        decode(key["y"].as_str().unwrap_or_default()),
    ) else {
        return bad("the issuer's key is unreadable");
    };
    let mut point = vec![4u8];
    point.extend(x);
    point.extend(y);
    let input = format!("{}.{}", parts[0], parts[1]);
    let signature = decode(signature).or_else(|e| bad(&e).map(|()| Vec::new()))?;
    let verified =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &signature);
    if verified.is_err() {
        return bad("the client assertion's signature does not verify");
    }
    let claims: Value = decode(claims)
        .and_then(|c| serde_json::from_slice(&c).map_err(|e| e.to_string()))
        .or_else(|e| bad(&e).map(|()| Value::Null))?;
    if claims["iss"] != federated.issuer.as_str() {
        return bad("the client assertion's issuer has no federated credential");
    }
    if claims["sub"] != federated.subject.as_str() {
        return bad("the client assertion's subject has no federated credential");
    }
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == TOKEN_EXCHANGE_AUDIENCE,
        Value::Array(all) => all.iter().any(|a| a == TOKEN_EXCHANGE_AUDIENCE),
        _ => false,
    };
    if !audience_ok {
        return bad("the client assertion's audience is not api://AzureADTokenExchange");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if claims["exp"].as_u64().unwrap_or(0) <= now {
        return bad("the client assertion has expired");
    }
    Ok(())
}

/// The service-account issuer of the API server `client` talks to, and its JWKS.
pub async fn service_account_issuer(client: &kube::Client) -> anyhow::Result<(String, Value)> {
    let get = |path: &str| {
        http::Request::get(path)
            .body(Vec::new())
            .map_err(anyhow::Error::from)
    };
    let discovery: Value = serde_json::from_str(
        &client
            .request_text(get("/.well-known/openid-configuration")?)
            .await?,
    )?;
    let jwks: Value = serde_json::from_str(&client.request_text(get("/openid/v1/jwks")?).await?)?;
    let issuer = discovery["issuer"].as_str().unwrap_or_default().to_owned();
    Ok((issuer, jwks))
}

/// A workload-identity token for ServiceAccount `namespace/name`, minted by the API server
/// (TokenRequest, audience `api://AzureADTokenExchange`), as the kubelet projects it.
pub async fn workload_identity_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
    if accounts.get_opt(name).await?.is_none() {
        let account: ServiceAccount = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
        )?;
        accounts.create(&Default::default(), &account).await?;
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![TOKEN_EXCHANGE_AUDIENCE.to_owned()]),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let minted = accounts
        .create_token_request(name, &Default::default(), &request)
        .await?;
    minted
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("the TokenRequest came back without a token"))
}

/// A made-up object ID: `n` in the last group.
pub fn object_id(n: u32) -> String {
    format!("0e1d2c3b-0000-4000-8000-{n:012}")
}
