//! Access-token tampering: every kind of bad token is `401 unauthorized`, never a 500.

mod common;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use common::{spawn_app, Session, TestApp, TEST_JWT_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a real token of `session`.
fn claims_of(session: &Session) -> Value {
    let payload = session.access.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let reply = app.get("/api/me", Some(token)).await;
    assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.body);
    assert_eq!(reply.body["error"]["code"], "unauthorized", "{what}");
}

#[tokio::test]
async fn a_real_token_carries_exactly_the_contracts_claims() {
    let app = spawn_app().await;
    let amy = app.register("amy").await;
    let claims = claims_of(&amy);
    let keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{claims}");
    for key in ["sub", "sid", "wid", "iat", "exp"] {
        assert!(claims.get(key).is_some(), "{key} missing: {claims}");
    }
    assert_eq!(claims["sub"], amy.id.to_string());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(amy.access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
}

#[tokio::test]
async fn our_own_signature_on_our_claims_is_accepted() {
    // The control for the tests below: re-signing the same claims with the right key works.
    let app = spawn_app().await;
    let ben = app.register("ben").await;
    let token = sign(Algorithm::HS256, TEST_JWT_SECRET, &claims_of(&ben));
    app.get("/api/me", Some(&token)).await.ok(200);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = spawn_app().await;
    let cal = app.register("cal").await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims_of(&cal).to_string());
    assert_refused(&app, &format!("{header}.{payload}."), "alg none").await;
    assert_refused(&app, &format!("{header}.{payload}"), "alg none, no dot").await;
}

#[tokio::test]
async fn another_algorithm_is_refused_even_with_the_right_secret() {
    let app = spawn_app().await;
    let dan = app.register("dan").await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, TEST_JWT_SECRET, &claims_of(&dan));
        assert_refused(&app, &token, &format!("{alg:?}")).await;
    }
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let app = spawn_app().await;
    let eve = app.register("eve").await;
    let forged = sign(
        Algorithm::HS256,
        "another-secret-another-secret-0123456",
        &claims_of(&eve),
    );
    assert_refused(&app, &forged, "foreign key").await;

    // Changing the payload of a real token breaks its signature.
    let mut claims = claims_of(&eve);
    claims["exp"] = json!(now() + 3600 * 24 * 365);
    let parts: Vec<&str> = eve.access.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_refused(&app, &tampered, "tampered payload").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    let fay = app.register("fay").await;
    let mut claims = claims_of(&fay);
    claims["iat"] = json!(now() - 1000);
    claims["exp"] = json!(now() - 1);
    assert_refused(
        &app,
        &sign(Algorithm::HS256, TEST_JWT_SECRET, &claims),
        "expired",
    )
    .await;
}

#[tokio::test]
async fn a_token_missing_a_claim_is_refused() {
    let app = spawn_app().await;
    let gus = app.register("gus").await;
    for claim in ["sub", "sid", "iat", "exp"] {
        let mut claims = claims_of(&gus);
        claims.as_object_mut().unwrap().remove(claim);
        assert_refused(
            &app,
            &sign(Algorithm::HS256, TEST_JWT_SECRET, &claims),
            claim,
        )
        .await;
    }
    let mut claims = claims_of(&gus);
    claims["sub"] = json!("not-a-uuid");
    assert_refused(
        &app,
        &sign(Algorithm::HS256, TEST_JWT_SECRET, &claims),
        "bad sub",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_or_foreign_session_is_refused() {
    let app = spawn_app().await;
    let hal = app.register("hal").await;
    let ida = app.register("ida").await;
    let mut claims = claims_of(&hal);
    claims["sid"] = json!(uuid::Uuid::now_v7());
    assert_refused(
        &app,
        &sign(Algorithm::HS256, TEST_JWT_SECRET, &claims),
        "unknown sid",
    )
    .await;

    // hal's user id on ida's session: a session only vouches for its own user.
    let mut claims = claims_of(&ida);
    claims["sub"] = json!(hal.id);
    assert_refused(
        &app,
        &sign(Algorithm::HS256, TEST_JWT_SECRET, &claims),
        "foreign sid",
    )
    .await;
}

#[tokio::test]
async fn a_revoked_session_is_refused() {
    let app = spawn_app().await;
    let jon = app.register("jon").await;
    sqlx::query("update sessions set revoked_at = now(), revoked_reason = 'logout'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_refused(&app, &jon.access, "revoked").await;
}

#[tokio::test]
async fn a_disabled_users_token_is_refused() {
    let app = spawn_app().await;
    let kim = app.register("kim").await;
    sqlx::query("update users set disabled_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    assert_refused(&app, &kim.access, "disabled").await;
}

#[tokio::test]
async fn a_missing_or_malformed_authorization_header_is_refused() {
    let app = spawn_app().await;
    let lou = app.register("lou").await;
    app.get("/api/me", None).await.error(401, "unauthorized");
    for value in [
        format!("Basic {}", lou.access),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        lou.access.clone(),
        "Bearer not.a.jwt".to_owned(),
        "Bearer ....".to_owned(),
    ] {
        let res = app
            .client
            .get(app.url("/api/me"))
            .header("authorization", value.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "{value}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // The scheme is case-insensitive.
    let res = app
        .client
        .get(app.url("/api/me"))
        .header("authorization", format!("bearer {}", lou.access))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// Key rotation: an earlier secret, listed in `JWT_PREVIOUS_SECRETS`, still verifies.
const PREVIOUS_SECRET: &str = "the-previous-secret-of-this-test-0123456";

#[tokio::test]
async fn a_token_signed_with_a_previous_secret_is_accepted_by_rest_and_sockets() {
    use common::sio::{SioClient, Transport};

    let app = common::spawn_app_with(&[("JWT_PREVIOUS_SECRETS", PREVIOUS_SECRET)]).await;
    let kai = app.register("kai").await;
    let token = sign(Algorithm::HS256, PREVIOUS_SECRET, &claims_of(&kai));
    assert_eq!(
        app.get("/api/me", Some(&token)).await.ok(200)["id"],
        kai.id.to_string()
    );
    for t in Transport::ALL {
        let socket = SioClient::connect(&app.base, common::sio::Auth::Token(&token), t).await;
        assert!(socket.is_ok(), "{t:?}: {:?}", socket.err());
    }
    // New tokens are signed with the current secret only.
    let fresh = app.login("kai", &kai.password).await;
    let verifies_with = |secret: &str| {
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
        let validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        jsonwebtoken::decode::<Value>(&fresh.access, &key, &validation).is_ok()
    };
    assert!(verifies_with(TEST_JWT_SECRET) && !verifies_with(PREVIOUS_SECRET));

    // A secret that is neither current nor previous is refused, over both.
    let foreign = sign(
        Algorithm::HS256,
        "a-secret-nobody-configured-0123456789abc",
        &claims_of(&kai),
    );
    assert_refused(&app, &foreign, "unknown secret").await;
    for t in Transport::ALL {
        let refused = SioClient::connect(&app.base, common::sio::Auth::Token(&foreign), t).await;
        assert!(refused.is_err(), "{t:?}");
    }
}

#[tokio::test]
async fn without_the_previous_secret_listed_its_tokens_are_refused() {
    let app = spawn_app().await;
    let lea = app.register("lea").await;
    let token = sign(Algorithm::HS256, PREVIOUS_SECRET, &claims_of(&lea));
    assert_refused(&app, &token, "previous secret not listed").await;
}

#[test]
fn a_bad_previous_secret_stops_the_server_with_exit_code_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env(
            "JWT_PREVIOUS_SECRETS",
            format!("{PREVIOUS_SECRET},tiny-secret"),
        )
        .current_dir(std::env::temp_dir())
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("huddle: JWT_PREVIOUS_SECRETS must be"),
        "{stderr}"
    );
    assert!(!stderr.contains("tiny-secret") && !stderr.contains(PREVIOUS_SECRET));
}
