//! The login limits as an attacker meets them: a concurrent burst on a fresh username, a
//! trickle meant to lock someone else out, IPv6 neighbours, forged `X-Forwarded-For` entries,
//! and input of a shape no account can have.

mod common;

use common::{spawn_app_with, TestApp};
use serde_json::json;

/// A login as seen through a trusted proxy that appended `from`; answers the status.
async fn login_from(app: &TestApp, from: &str, username: &str, password: &str) -> u16 {
    app.client
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", from)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_fresh_username_hammered_concurrently_gets_at_most_five_guesses_verified() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000")]).await;
    app.register("rosa").await;
    let guesses = (0..20).map(|i| {
        let password = format!("guess-number-{i}");
        let app = &app;
        async move { app.login_raw("rosa", &password).await.status.as_u16() }
    });
    let statuses = futures::future::join_all(guesses).await;
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(verified <= 5, "{statuses:?}");
    assert_eq!(verified + refused, 20, "{statuses:?}");
}

#[tokio::test]
async fn a_trickle_from_one_address_does_not_lock_the_owner_out_from_another() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000"), ("TRUST_PROXY", "true")]).await;
    let sara = app.register("sara").await;
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, "203.0.113.66", "SARA", "wrong-password").await,
            401
        );
    }
    assert_eq!(
        login_from(&app, "203.0.113.66", "sara", &sara.password).await,
        429
    );
    assert_eq!(
        login_from(&app, "198.51.100.1", "sara", &sara.password).await,
        200
    );
}

#[tokio::test]
async fn many_addresses_together_lock_the_username_at_fifty() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000"), ("TRUST_PROXY", "true")]).await;
    let tom = app.register("tom").await;
    for i in 0..50 {
        let from = format!("203.0.113.{i}");
        assert_eq!(login_from(&app, &from, "tom", "wrong-password").await, 401);
    }
    assert_eq!(
        login_from(&app, "198.51.100.1", "tom", &tom.password).await,
        429
    );
}

#[tokio::test]
async fn a_password_change_is_not_blocked_by_someone_elses_failed_logins() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000")]).await;
    let uwe = app.register("uwe").await;
    for _ in 0..5 {
        app.login_raw("uwe", "wrong-password")
            .await
            .error(401, "invalid_credentials");
    }
    app.post(
        "/api/me/password",
        Some(&uwe.access),
        json!({"current_password": uwe.password, "new_password": "a-new-password"}),
    )
    .await
    .ok(204);
    // Its own wrong guesses still count: 5 per session.
    for _ in 0..5 {
        app.post(
            "/api/me/password",
            Some(&uwe.access),
            json!({"current_password": "wrong-password", "new_password": "another-one"}),
        )
        .await
        .error(401, "invalid_credentials");
    }
    app.post(
        "/api/me/password",
        Some(&uwe.access),
        json!({"current_password": "a-new-password", "new_password": "another-one"}),
    )
    .await
    .error(429, "rate_limited");
}

#[tokio::test]
async fn two_ipv6_addresses_in_one_64_share_a_bucket() {
    let app = spawn_app_with(&[("AUTH_RATE", "2"), ("TRUST_PROXY", "true")]).await;
    assert_eq!(
        login_from(&app, "2001:db8:1:2::1", "nobody", "whatever-1").await,
        401
    );
    assert_eq!(
        login_from(&app, "2001:db8:1:2:ffff::9", "nobody", "whatever-1").await,
        401
    );
    assert_eq!(
        login_from(&app, "2001:db8:1:2::3", "nobody", "whatever-1").await,
        429
    );
    assert_eq!(
        login_from(&app, "2001:db8:1:3::1", "nobody", "whatever-1").await,
        401
    );
}

#[tokio::test]
async fn an_unparseable_last_forwarded_entry_falls_back_to_the_peer() {
    let app = spawn_app_with(&[("AUTH_RATE", "2"), ("TRUST_PROXY", "true")]).await;
    // Each claims a different address before the garbage; all count against the peer.
    assert_eq!(
        login_from(&app, "192.0.2.1, unknown", "nobody", "whatever-1").await,
        401
    );
    assert_eq!(
        login_from(&app, "192.0.2.2, unknown", "nobody", "whatever-1").await,
        401
    );
    let reply = app.login_raw("nobody", "whatever-1").await;
    reply.error(429, "rate_limited");
}

#[tokio::test]
async fn input_no_account_can_have_is_a_wrong_password_that_counts_nothing() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000")]).await;
    let vera = app.register("vera").await;
    let long = "p".repeat(257);
    for _ in 0..6 {
        app.login_raw("vera", &long)
            .await
            .error(401, "invalid_credentials");
        app.login_raw("no such name!", "whatever-1")
            .await
            .error(401, "invalid_credentials");
    }
    // None of it counted as a failure for vera.
    app.login("vera", &vera.password).await;
}

#[tokio::test]
async fn a_login_flood_past_the_hash_queue_is_answered_503_and_the_server_stays_responsive() {
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE", "2"),
    ])
    .await;
    let yara = app.register("yara").await;
    let guesses = (0..40).map(|i| {
        let app = &app;
        async move {
            let reply = app.login_raw(&format!("ghost{i}"), "whatever-1").await;
            if reply.status.as_u16() == 503 {
                reply.error(503, "unavailable");
            }
            reply.status.as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(busy > 0, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    // Still serving, logins included, once the flood has passed.
    app.get("/healthz", None).await.ok(200);
    app.login("yara", &yara.password).await;
}
