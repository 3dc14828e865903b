//! Decoding an Entra ID (Azure AD) ID token and computing the identity K10 and kube-apiserver derive
//! from it. Pure: no network, no clock (the caller passes `now`).

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::{Map, Value};

/// Longest token accepted (real ID tokens are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Nothing was given.
    #[error("the token is empty")]
    Empty,
    /// More than [`MAX_TOKEN_BYTES`].
    #[error("the token is {0} bytes long; an ID token is a few KiB at most")]
    TooLarge(usize),
    /// Not `header.payload.signature`.
    #[error("a JWT has 3 dot-separated parts; this has {0}")]
    Segments(usize),
    /// A part is not base64url.
    #[error("the {0} is not valid base64url")]
    Base64(&'static str),
    /// A part is not JSON.
    #[error("the {0} is not JSON: {1}")]
    Json(&'static str, String),
    /// The payload is JSON but not an object.
    #[error("the payload is not a JSON object")]
    NotAnObject,
}

/// A decoded (not verified) JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The JOSE header.
    pub header: Value,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    signing_input: String,
    /// The signature, decoded.
    signature: Vec<u8>,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The JWKS file is not a JWKS.
    #[error("the JWKS is not valid: {0}")]
    Jwks(String),
    /// No key with the token's `kid` (or no key at all).
    #[error("the JWKS has no usable key for kid {0:?}")]
    NoKey(String),
    /// Only RS256 and ES256 are supported (what Entra ID and most issuers use).
    #[error("unsupported signing algorithm {0:?} (RS256 and ES256 are supported)")]
    Algorithm(String),
    /// The signature does not match.
    #[error(
        "the signature does not verify against key {0:?}: the token was altered, or signed by another key"
    )]
    Invalid(String),
}

impl Token {
    /// Verifies the signature against a JWKS document (`{"keys": [...]}`), choosing the key by
    /// `kid` (or trying every key when the token has none).
    pub fn verify(&self, jwks: &str) -> Result<(), SignatureError> {
        use ring::signature::{
            ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
            UnparsedPublicKey,
        };
        let jwks: Value =
            serde_json::from_str(jwks).map_err(|e| SignatureError::Jwks(e.to_string()))?;
        let keys = jwks["keys"]
            .as_array()
            .ok_or_else(|| SignatureError::Jwks("no \"keys\" array".into()))?;
        let alg = self.header["alg"].as_str().unwrap_or_default().to_owned();
        let kid = self.header["kid"].as_str().map(str::to_owned);
        let b64 = |key: &Value, field: &str| {
            key[field]
                .as_str()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        };
        let candidates: Vec<&Value> = keys
            .iter()
            .filter(|k| {
                kid.as_deref()
                    .is_none_or(|kid| k["kid"].as_str() == Some(kid))
            })
            .collect();
        if candidates.is_empty() {
            return Err(SignatureError::NoKey(kid.unwrap_or_default()));
        }
        let message = self.signing_input.as_bytes();
        for key in candidates {
            let ok = match (alg.as_str(), key["kty"].as_str()) {
                ("RS256", Some("RSA")) => match (b64(key, "n"), b64(key, "e")) {
                    (Some(n), Some(e)) => RsaPublicKeyComponents { n, e }
                        .verify(&RSA_PKCS1_2048_8192_SHA256, message, &self.signature)
                        .is_ok(),
                    _ => false,
                },
                ("ES256", Some("EC")) => match (b64(key, "x"), b64(key, "y")) {
                    (Some(x), Some(y)) => {
                        let point = [&[4u8][..], &x, &y].concat();
                        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                            .verify(message, &self.signature)
                            .is_ok()
                    }
                    _ => false,
                },
                ("RS256" | "ES256", _) => false,
                _ => return Err(SignatureError::Algorithm(alg)),
            };
            if ok {
                return Ok(());
            }
        }
        Err(SignatureError::Invalid(kid.unwrap_or_default()))
    }
}

/// Decodes a JWT without checking its signature. Accepts a leading `Bearer ` and surrounding
/// white space.
pub fn decode(input: &str) -> Result<Token, TokenError> {
    let input = input.trim();
    let input = input.strip_prefix("Bearer ").unwrap_or(input).trim();
    if input.is_empty() {
        return Err(TokenError::Empty);
    }
    if input.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(input.len()));
    }
    let parts: Vec<&str> = input.split('.').collect();
    let [header_part, payload_part, signature_part] = parts.as_slice() else {
        return Err(TokenError::Segments(parts.len()));
    };
    let header = json(header_part, "header")?;
    let Value::Object(claims) = json(payload_part, "payload")? else {
        return Err(TokenError::NotAnObject);
    };
    let signature = base64url(signature_part).ok_or(TokenError::Base64("signature"))?;
    Ok(Token {
        header,
        claims,
        signing_input: format!("{header_part}.{payload_part}"),
        signature,
    })
}

fn base64url(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(part)
        .or_else(|_| URL_SAFE.decode(part))
        .ok()
}

fn json(part: &str, name: &'static str) -> Result<Value, TokenError> {
    let bytes = base64url(part).ok_or(TokenError::Base64(name))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Json(name, e.to_string()))
}

/// How K10 (`auth.oidcAuth.*`) and kube-apiserver map claims to a Kubernetes identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    /// The configured provider URL (K10's `providerURL`, the apiserver's issuer URL), if known.
    pub provider_url: Option<String>,
    /// Claim holding the user name (`usernameClaim`, default `sub`).
    pub username_claim: String,
    /// `usernamePrefix`: unset means `<provider URL>#` unless the claim is `email`; `-` means none.
    pub username_prefix: Option<String>,
    /// Claim holding the groups (`groupClaim`).
    pub groups_claim: String,
    /// `groupPrefix`, put before every group.
    pub groups_prefix: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            provider_url: None,
            username_claim: "sub".into(),
            username_prefix: None,
            groups_claim: "groups".into(),
            groups_prefix: String::new(),
        }
    }
}

/// A problem with a token or the settings, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable identifier, e.g. `GroupsOverage`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// What K10 and kube-apiserver will see for a token.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// `1.0` or `2.0` (the `ver` claim).
    pub version: Option<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud`.
    pub audience: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires: Option<i64>,
    /// Whether `exp` is in the past.
    pub expired: bool,
    /// The user name, prefixed; `None` if the claim is missing.
    pub username: Option<String>,
    /// The groups, prefixed.
    pub groups: Vec<String>,
    /// Everything that may keep the user from getting the expected access.
    pub warnings: Vec<Warning>,
}

fn string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn warn(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Warning {
    Warning {
        code,
        message: message.into(),
        fix: fix.into(),
    }
}

/// Computes the identity for `token` under `mapping` at time `now` (seconds since the epoch).
pub fn explain(token: &Token, mapping: &Mapping, now: i64) -> Identity {
    let claims = &token.claims;
    let mut warnings = Vec::new();
    let issuer = string(claims, "iss");
    let audience = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let expires = claims.get("exp").and_then(Value::as_i64);
    let expired = expires.is_some_and(|exp| exp <= now);
    if let Some(exp) = expires.filter(|_| expired) {
        warnings.push(warn(
            "Expired",
            format!("the token expired {} seconds ago", now - exp),
            "sign in again for a fresh token; K10 and kube-apiserver refuse expired tokens",
        ));
    }

    // User name.
    let username_prefix = match mapping.username_prefix.as_deref() {
        Some("-") => String::new(),
        Some(prefix) => prefix.to_owned(),
        None if mapping.username_claim == "email" => String::new(),
        None => format!(
            "{}#",
            mapping
                .provider_url
                .clone()
                .or_else(|| issuer.clone())
                .unwrap_or_default()
        ),
    };
    let username = string(claims, &mapping.username_claim).map(|u| format!("{username_prefix}{u}"));
    if username.is_none() {
        warnings.push(warn(
            "NoUsernameClaim",
            format!("the token has no string claim {:?}", mapping.username_claim),
            "set usernameClaim to a claim the token has (oid is stable for a user across applications)",
        ));
    }
    if mapping.username_claim == "sub" && claims.contains_key("oid") {
        warnings.push(warn(
            "PairwiseSub",
            "usernameClaim is sub, which Entra ID makes different for every application (pairwise)",
            "use usernameClaim: oid, the user's object ID, stable across applications in the tenant",
        ));
    }
    if mapping.username_claim == "email"
        && claims.get("email_verified") == Some(&Value::Bool(false))
    {
        warnings.push(warn(
            "EmailNotVerified",
            "usernameClaim is email and email_verified is false: kube-apiserver rejects the token",
            "use usernameClaim: oid, or make sure the email is verified",
        ));
    }
    for claim in ["upn", "preferred_username", "unique_name", "email"] {
        if let Some(name) = string(claims, claim).filter(|n| n.contains("#EXT#")) {
            warnings.push(warn(
                "GuestUser",
                format!("{claim} {name:?} is a guest (B2B) account"),
                "guests get their groups from the resource tenant; check the group membership there, and prefer oid over names",
            ));
            break;
        }
    }
    for (what, prefix) in [
        ("usernamePrefix", username_prefix.as_str()),
        ("groupPrefix", mapping.groups_prefix.as_str()),
    ] {
        if prefix.starts_with("system:") {
            warnings.push(warn(
                "SystemPrefix",
                format!("{what} {prefix:?} starts with system:, which Kubernetes reserves"),
                format!("choose another {what}, e.g. \"azure:\""),
            ));
        }
    }

    // Groups.
    let overage = claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key(&mapping.groups_claim))
        || claims.get("hasgroups") == Some(&Value::Bool(true));
    let raw_groups: Vec<String> = match claims.get(&mapping.groups_claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    if overage {
        warnings.push(warn(
            "GroupsOverage",
            "the user is in too many groups for the token (over 200, or 6 in the implicit flow): Entra ID left the groups claim out and put _claim_names/_claim_sources (or hasgroups) instead; kube-apiserver then refuses the token and K10 sees no groups",
            "in the app registration set groupMembershipClaims to ApplicationGroup and assign only the K10 groups to the application, or use app roles",
        ));
    } else if !claims.contains_key(&mapping.groups_claim) {
        warnings.push(warn(
            "NoGroupsClaim",
            format!("the token has no {:?} claim", mapping.groups_claim),
            "in the app registration, Token configuration → Add groups claim (Security groups), and set K10's groupClaim: groups",
        ));
    }
    let not_guid: Vec<&String> = raw_groups
        .iter()
        .filter(|g| !groupbinder_api::desired::is_lower_guid(g))
        .collect();
    if !not_guid.is_empty() {
        let upper = not_guid
            .iter()
            .any(|g| groupbinder_api::desired::is_lower_guid(&g.to_lowercase()));
        warnings.push(warn(
            if upper { "UpperCaseGroup" } else { "GroupNotObjectId" },
            format!("groups that are not lower-case object IDs: {}", not_guid.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")),
            "AzureGroupBindings match group object IDs exactly (case-sensitive); emit object IDs (not names) in the groups claim",
        ));
    }
    let groups = raw_groups
        .iter()
        .map(|g| format!("{}{g}", mapping.groups_prefix))
        .collect();

    // Issuer against the configured provider URL.
    if let (Some(provider), Some(iss)) = (&mapping.provider_url, &issuer)
        && provider != iss
    {
        let hint = if provider.trim_end_matches('/') == iss.trim_end_matches('/') {
            "they differ only in the trailing slash, and issuers are compared exactly".to_owned()
        } else if iss.starts_with("https://sts.windows.net/") && provider.ends_with("/v2.0") {
            "the token is a v1 token (sts.windows.net) but the provider URL is v2.0: set accessTokenAcceptedVersion/requestedAccessTokenVersion to 2 in the app manifest, or use the v1 issuer".to_owned()
        } else if provider.starts_with("https://sts.windows.net/") && iss.ends_with("/v2.0") {
            "the token is a v2.0 token but the provider URL is the v1 issuer: use https://login.microsoftonline.com/<tenant>/v2.0".to_owned()
        } else {
            "set the provider URL to the token's iss exactly".to_owned()
        };
        warnings.push(warn(
            "IssuerMismatch",
            format!("iss {iss:?} is not the provider URL {provider:?}"),
            hint,
        ));
    }

    Identity {
        version: string(claims, "ver"),
        issuer,
        audience,
        expires,
        expired,
        username,
        groups,
        warnings,
    }
}

#[cfg(test)]
mod tests;
