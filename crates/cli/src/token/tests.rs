use super::*;
use serde_json::json;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const GROUP: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
const NOW: i64 = 1_800_000_000;

fn jwt(claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(&json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})),
        enc(claims)
    )
}

fn v2(extra: Value) -> Value {
    let mut claims = json!({
        "aud": "6731de76-14a6-49ae-97bc-6eba6914391e",
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
        "name": "Michael", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "preferred_username": "michael@contoso.com",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": TENANT, "ver": "2.0",
        "groups": [GROUP],
    });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

fn k10(prefix: &str) -> Mapping {
    Mapping {
        provider_url: Some(format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
        groups_prefix: prefix.into(),
        ..Mapping::default()
    }
}

fn codes(identity: &Identity) -> Vec<&'static str> {
    identity.warnings.iter().map(|w| w.code).collect()
}

#[test]
fn v2_token_with_k10_defaults() {
    let identity = explain(
        &decode(&jwt(&v2(json!({})))).unwrap(),
        &k10("michael_azure_"),
        NOW,
    );
    assert_eq!(identity.version.as_deref(), Some("2.0"));
    assert_eq!(identity.groups, [format!("michael_azure_{GROUP}")]);
    // No usernamePrefix and a claim other than email: the provider URL and '#'.
    assert_eq!(
        identity.username.as_deref(),
        Some(format!("https://login.microsoftonline.com/{TENANT}/v2.0#AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ").as_str())
    );
    assert_eq!(
        codes(&identity),
        ["PairwiseSub"],
        "sub chosen while oid exists"
    );
    assert!(!identity.expired);
}

#[test]
fn username_prefix_rules() {
    let token = decode(&jwt(&v2(json!({"email": "m@contoso.com"})))).unwrap();
    let with = |claim: &str, prefix: Option<&str>| {
        let mapping = Mapping {
            username_claim: claim.into(),
            username_prefix: prefix.map(Into::into),
            ..k10("")
        };
        explain(&token, &mapping, NOW).username.unwrap()
    };
    assert_eq!(
        with("oid", Some("-")),
        "00000000-0000-0000-66f3-3332eca7ea81"
    );
    assert_eq!(
        with("oid", Some("azure:")),
        "azure:00000000-0000-0000-66f3-3332eca7ea81"
    );
    assert_eq!(
        with("email", None),
        "m@contoso.com",
        "email gets no default prefix"
    );
}

#[test]
fn v1_token_against_v2_provider() {
    let claims = v2(
        json!({"iss": format!("https://sts.windows.net/{TENANT}/"), "ver": "1.0", "upn": "michael@contoso.com"}),
    );
    let identity = explain(&decode(&jwt(&claims)).unwrap(), &k10("p_"), NOW);
    let w = identity
        .warnings
        .iter()
        .find(|w| w.code == "IssuerMismatch")
        .expect("issuer warning");
    assert!(w.fix.contains("v1 token"), "{w:?}");
}

#[test]
fn trailing_slash_mismatch_is_named() {
    let mut mapping = k10("");
    mapping.provider_url = Some(format!("https://login.microsoftonline.com/{TENANT}/v2.0/"));
    let identity = explain(&decode(&jwt(&v2(json!({})))).unwrap(), &mapping, NOW);
    let w = identity
        .warnings
        .iter()
        .find(|w| w.code == "IssuerMismatch")
        .expect("issuer warning");
    assert!(w.fix.contains("trailing slash"), "{w:?}");
}

#[test]
fn groups_overage_and_hasgroups() {
    let overage = v2(json!({
        "groups": null,
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}},
    }));
    let identity = explain(&decode(&jwt(&overage)).unwrap(), &k10(""), NOW);
    assert!(identity.groups.is_empty());
    assert!(codes(&identity).contains(&"GroupsOverage"));
    assert!(!codes(&identity).contains(&"NoGroupsClaim"));

    let implicit = v2(json!({"groups": null, "hasgroups": true}));
    assert!(
        codes(&explain(&decode(&jwt(&implicit)).unwrap(), &k10(""), NOW))
            .contains(&"GroupsOverage")
    );

    let none = v2(json!({"groups": null}));
    assert!(
        codes(&explain(&decode(&jwt(&none)).unwrap(), &k10(""), NOW)).contains(&"NoGroupsClaim")
    );
}

#[test]
fn guests_expired_tokens_names_and_upper_case_groups() {
    let guest = v2(
        json!({"preferred_username": "michael_fabrikam.com#EXT#@contoso.onmicrosoft.com", "exp": NOW - 10}),
    );
    let identity = explain(&decode(&jwt(&guest)).unwrap(), &k10(""), NOW);
    assert!(identity.expired);
    assert!(codes(&identity).contains(&"GuestUser") && codes(&identity).contains(&"Expired"));

    let names = v2(json!({"groups": ["K10 Admins"]}));
    assert!(
        codes(&explain(&decode(&jwt(&names)).unwrap(), &k10(""), NOW))
            .contains(&"GroupNotObjectId")
    );
    let upper = v2(json!({"groups": [GROUP.to_uppercase()]}));
    assert!(
        codes(&explain(&decode(&jwt(&upper)).unwrap(), &k10(""), NOW)).contains(&"UpperCaseGroup")
    );
}

#[test]
fn email_unverified_and_system_prefix() {
    let claims = v2(json!({"email": "m@contoso.com", "email_verified": false}));
    let mapping = Mapping {
        username_claim: "email".into(),
        ..k10("system:")
    };
    let identity = explain(&decode(&jwt(&claims)).unwrap(), &mapping, NOW);
    assert!(codes(&identity).contains(&"EmailNotVerified"));
    assert!(codes(&identity).contains(&"SystemPrefix"));
}

#[test]
fn malformed_input_gives_clear_errors() {
    assert_eq!(decode(""), Err(TokenError::Empty));
    assert_eq!(decode("abc"), Err(TokenError::Segments(1)));
    assert_eq!(decode("a.b.c.d"), Err(TokenError::Segments(4)));
    assert_eq!(decode("!!!.e30.x"), Err(TokenError::Base64("header")));
    assert!(matches!(
        decode("e30.bm90IGpzb24.x"),
        Err(TokenError::Json("payload", _))
    ));
    assert_eq!(
        decode("e30.WzFd.x"),
        Err(TokenError::NotAnObject),
        "[1] is JSON but not an object"
    );
    assert_eq!(
        decode(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        Err(TokenError::TooLarge(MAX_TOKEN_BYTES + 1))
    );
    assert!(decode(&format!("Bearer {}\n", jwt(&v2(json!({}))))).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_input_never_panics(input in "\\PC{0,300}") {
        if let Ok(token) = decode(&input) {
            let _ = explain(&token, &Mapping::default(), NOW);
        }
    }

    #[test]
    fn truncated_and_mutated_tokens_never_panic(cut in 0usize..600, flip in 0usize..600, byte in 0u8..128) {
        let token = jwt(&v2(json!({"_claim_names": {"groups": 1}, "groups": [1, null, {"a": []}], "aud": [1, "x"]})));
        let mut bytes = token.into_bytes();
        bytes.truncate(cut.min(bytes.len()));
        if let Some(b) = bytes.get_mut(flip) { *b = byte; }
        let input = String::from_utf8_lossy(&bytes);
        if let Ok(token) = decode(&input) {
            let _ = explain(&token, &k10("p_"), NOW);
        }
    }
}

#[test]
fn signatures_verify_against_a_jwks() {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = key.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]})
    .to_string();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let sign = |header: &Value, claims: &Value| {
        let input = format!("{}.{}", enc(header), enc(claims));
        let signature = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    };
    let header = json!({"alg": "ES256", "kid": "k1"});
    let token = sign(&header, &v2(json!({})));
    assert_eq!(decode(&token).unwrap().verify(&jwks), Ok(()));

    // The same signature on other claims.
    let (signed, _) = token.rsplit_once('.').unwrap();
    let tampered = format!(
        "{}.{}.{}",
        signed.split('.').next().unwrap(),
        enc(&v2(json!({"groups": ["x"]}))),
        token.rsplit('.').next().unwrap()
    );
    assert!(matches!(
        decode(&tampered).unwrap().verify(&jwks),
        Err(SignatureError::Invalid(_))
    ));
    let other_kid = sign(&json!({"alg": "ES256", "kid": "k2"}), &v2(json!({})));
    assert_eq!(
        decode(&other_kid).unwrap().verify(&jwks),
        Err(SignatureError::NoKey("k2".into()))
    );
    let none = sign(&json!({"alg": "none", "kid": "k1"}), &v2(json!({})));
    assert_eq!(
        decode(&none).unwrap().verify(&jwks),
        Err(SignatureError::Algorithm("none".into()))
    );
    assert!(matches!(
        decode(&token).unwrap().verify("[]"),
        Err(SignatureError::Jwks(_))
    ));
}

/// Compares the JSON report of `claims` with `golden/<name>.json`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, claims: &Value, mapping: &Mapping) {
    let identity = explain(&decode(&jwt(claims)).unwrap(), mapping, NOW);
    let actual = serde_json::to_string_pretty(&identity).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/token/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{name}: report changed; review and rerun with UPDATE_GOLDEN=1\n{actual}"
    );
}

#[test]
fn golden_reports() {
    let mapping = Mapping {
        username_claim: "oid".into(),
        username_prefix: Some("-".into()),
        ..k10("michael_azure_")
    };
    golden("v2", &v2(json!({})), &mapping);
    golden(
        "v1-against-v2-provider",
        &v2(json!({
            "iss": format!("https://sts.windows.net/{TENANT}/"), "ver": "1.0",
            "upn": "michael@contoso.com", "unique_name": "michael@contoso.com", "preferred_username": null,
        })),
        &mapping,
    );
    golden(
        "overage",
        &v2(json!({
            "groups": null,
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": format!("https://graph.microsoft.com/v1.0/users/x/getMemberObjects")}},
        })),
        &mapping,
    );
    golden(
        "guest-expired-hasgroups",
        &v2(
            json!({"preferred_username": "michael_fabrikam.com#EXT#@contoso.onmicrosoft.com", "exp": NOW - 7200, "groups": null, "hasgroups": true}),
        ),
        &k10("michael_azure_"),
    );
}
