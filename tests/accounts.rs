//! Accounts over real HTTP: register, login, refresh, logout, /api/me, password change, and
//! every documented failure, each of which must change nothing.

mod common;

use common::{sio::Transport, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn registering_returns_the_user_and_a_token_pair() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "Alice", "password": "correct horse", "display_name": "Alice A."}),
        )
        .await;
    let body = reply.ok(201);
    let user = &body["user"];
    assert_eq!(user["username"], "Alice");
    assert_eq!(user["display_name"], "Alice A.");
    assert_eq!(user["is_admin"], false);
    assert!(user["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    let created_at = user["created_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(
        created_at,
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    assert!(created_at.ends_with('Z'), "UTC: {created_at}");
    // v2 adds external_id, is_bot and metadata (set only through the server API).
    assert_eq!(
        (
            user["external_id"].clone(),
            user["is_bot"].clone(),
            user["metadata"].clone()
        ),
        (
            serde_json::Value::Null,
            serde_json::json!(false),
            serde_json::json!({})
        )
    );
    assert_eq!(
        user.as_object().unwrap().len(),
        9,
        "exactly the contract's user fields: {user}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 32);

    let me = app.get("/api/me", body["access_token"].as_str()).await;
    assert_eq!(me.ok(200), user);
}

#[tokio::test]
async fn the_display_name_defaults_to_the_username() {
    let app = spawn_app().await;
    let reply = app.register_raw("bob_1", "password-1").await;
    assert_eq!(reply.ok(201)["user"]["display_name"], "bob_1");
}

#[tokio::test]
async fn a_taken_username_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    app.register("carol").await;
    for name in ["carol", "CAROL", "Carol"] {
        app.register_raw(name, "another-password")
            .await
            .error(409, "conflict");
    }
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("sessions").await, 1);
}

#[tokio::test]
async fn the_password_is_stored_only_as_an_argon2id_hash() {
    let app = spawn_app().await;
    app.register_raw("dora", "my secret words").await.ok(201);
    let hash: String = sqlx::query_scalar("select password_hash from users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains("my secret words"));
}

#[tokio::test]
async fn registration_refuses_every_out_of_bounds_field_and_changes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"username": "ab", "password": "password-1"}),
            "username",
        ),
        (
            json!({"username": "x".repeat(33), "password": "password-1"}),
            "username",
        ),
        (
            json!({"username": "has space", "password": "password-1"}),
            "username",
        ),
        (
            json!({"username": "émile", "password": "password-1"}),
            "username",
        ),
        (json!({"username": "erin", "password": "short"}), "password"),
        (
            json!({"username": "erin", "password": "p".repeat(257)}),
            "password",
        ),
        (
            json!({"username": "erin", "password": "password-1", "display_name": ""}),
            "display_name",
        ),
        (
            json!({"username": "erin", "password": "password-1", "display_name": "   "}),
            "display_name",
        ),
        (
            json!({"username": "erin", "password": "password-1", "display_name": "d".repeat(65)}),
            "display_name",
        ),
        (json!({"password": "password-1"}), "username"),
        (json!({"username": "erin"}), "password"),
        (
            json!({"username": 42, "password": "password-1"}),
            "username",
        ),
        (
            json!({"username": "erin", "password": ["password-1"]}),
            "password",
        ),
        (
            json!({"username": "erin", "password": "password-1", "display_name": 7}),
            "display_name",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/api/auth/register", None, body.clone()).await;
        let error = reply.error(400, "invalid_input");
        assert!(
            error["fields"][field].is_string(),
            "{body} -> {}",
            reply.body
        );
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn bounds_count_characters_not_bytes() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "frank", "password": "ü".repeat(256), "display_name": "ß".repeat(64)}),
        )
        .await;
    reply.ok(201);
}

#[tokio::test]
async fn malformed_bodies_get_the_contracts_error_shape() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    for (ct, body) in [
        (json_ct, &b"{\"username\": \"gina\""[..]),
        (json_ct, b"not json"),
        (json_ct, b""),
        (json_ct, b"[\"gina\", \"password-1\"]"),
        (json_ct, b"\"gina\""),
        (json_ct, b"null"),
        (
            json_ct,
            b"{\"username\": \"gina\", \"password\": \"password-1\"} extra",
        ),
        (
            Some("text/plain"),
            b"{\"username\": \"gina\", \"password\": \"password-1\"}",
        ),
        (
            None,
            b"{\"username\": \"gina\", \"password\": \"password-1\"}",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"username=gina&password=password-1",
        ),
    ] {
        for path in ["/api/auth/register", "/api/auth/login", "/api/auth/refresh"] {
            let reply = app.raw(Method::POST, path, ct, body.to_vec()).await;
            reply.error(400, "invalid_input");
        }
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_payload_too_large() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "1000")]).await;
    let body = json!({"username": "hank", "password": "p".repeat(2000)});
    let reply = app.post("/api/auth/register", None, body).await;
    reply.error(413, "payload_too_large");
    assert_eq!(app.count("users").await, 0);

    // The default limit is 1 MiB.
    let app = spawn_app().await;
    let body = json!({"username": "hank", "password": "p".repeat(1024 * 1024 + 1)});
    app.post("/api/auth/register", None, body)
        .await
        .error(413, "payload_too_large");
}

/// As `fetch` does: the whole body is written before anything is read. The server must read
/// (and throw away) the rest of the refused body rather than reset the connection under the
/// client's writes, so that the client gets to read the 413.
#[tokio::test]
async fn a_client_that_writes_a_huge_body_before_reading_gets_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let body = format!(
        r#"{{"username": "hank", "password": "{}"}}"#,
        "p".repeat(5 * 1024 * 1024)
    );
    let address = app.base.trim_start_matches("http://").to_owned();
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(&address).await?;
        let head = format!(
            "POST /api/auth/register HTTP/1.1\r\nhost: {address}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .expect("the exchange finishes")
        .expect("the whole body is written and the answer read, with no reset");
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "{}",
        &response[..response.len().min(300)]
    );
    let (_, json) = response.split_once("\r\n\r\n").unwrap();
    let json: Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["error"]["code"], "payload_too_large");
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn login_works_with_any_case_of_the_username() {
    let app = spawn_app().await;
    let alice = app.register("Alice").await;
    let reply = app.login_raw("aLiCe", &alice.password).await;
    let body = reply.ok(200);
    assert_eq!(body["user"]["username"], "Alice");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].is_string());
    assert_eq!(app.count("sessions").await, 2);
}

#[tokio::test]
async fn an_unknown_user_and_a_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let ivan = app.register("ivan").await;
    let wrong = app.login_raw("ivan", "not-the-password").await;
    let unknown = app.login_raw("nobody", &ivan.password).await;
    wrong.error(401, "invalid_credentials");
    unknown.error(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(app.count("sessions").await, 1);
}

#[tokio::test]
async fn login_needs_both_fields_as_strings() {
    let app = spawn_app().await;
    app.post("/api/auth/login", None, json!({"username": "x"}))
        .await
        .error(400, "invalid_input");
    app.post(
        "/api/auth/login",
        None,
        json!({"username": "x", "password": 12345678}),
    )
    .await
    .error(400, "invalid_input");
}

#[tokio::test]
async fn refresh_rotates_the_pair_and_the_old_token_stops_working() {
    let app = spawn_app().await;
    let jane = app.register("jane").await;
    let reply = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": jane.refresh}),
        )
        .await;
    let tokens = reply.ok(200).clone();
    assert_eq!(
        tokens.as_object().unwrap().len(),
        4,
        "tokens only: {tokens}"
    );
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let new_refresh = tokens["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, jane.refresh);
    app.get("/api/me", tokens["access_token"].as_str())
        .await
        .ok(200);

    // The new refresh token works in turn.
    let again = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": new_refresh}),
        )
        .await;
    again.ok(200);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let kate = app.register("kate").await;
    let other_device = app.login("kate", &kate.password).await;
    let rotated = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": kate.refresh}),
        )
        .await;
    let rotated = rotated.ok(200).clone();

    // The thief (or the victim) presents the old token again.
    let reuse = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": kate.refresh}),
        )
        .await;
    reuse.error(401, "unauthorized");

    // Every token of that session is dead: the newest refresh token, the old and new access tokens.
    let newest = rotated["refresh_token"].as_str().unwrap();
    app.post("/api/auth/refresh", None, json!({"refresh_token": newest}))
        .await
        .error(401, "unauthorized");
    app.get("/api/me", rotated["access_token"].as_str())
        .await
        .error(401, "unauthorized");
    app.get("/api/me", Some(&kate.access))
        .await
        .error(401, "unauthorized");

    // Other sessions of the user live on.
    app.get("/api/me", Some(&other_device.access)).await.ok(200);

    let (reason, audits): (String, i64) = sqlx::query_as(
        "select revoked_reason, (select count(*) from audit_log where action = 'refresh_token_reused')
         from sessions where revoked_at is not null",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((reason.as_str(), audits), ("refresh_token_reused", 1));
}

#[tokio::test]
async fn an_unknown_refresh_token_is_refused_and_harms_nobody() {
    let app = spawn_app().await;
    let leo = app.register("leo").await;
    for token in ["", "garbage", &leo.access] {
        app.post("/api/auth/refresh", None, json!({"refresh_token": token}))
            .await
            .error(401, "unauthorized");
    }
    app.get("/api/me", Some(&leo.access)).await.ok(200);
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": leo.refresh}),
    )
    .await
    .ok(200);
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app().await;
    let mia = app.register("mia").await;
    sqlx::query("update sessions set expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": mia.refresh}),
    )
    .await
    .error(401, "unauthorized");
}

#[tokio::test]
async fn logout_kills_the_sessions_access_and_refresh_tokens_at_once() {
    let app = spawn_app().await;
    let ned = app.register("ned").await;
    let laptop = app.login("ned", &ned.password).await;
    let reply = app
        .request(Method::POST, "/api/auth/logout", Some(&ned.access), None)
        .await;
    assert_eq!(reply.status.as_u16(), 204);
    assert!(reply.body.is_null());
    app.get("/api/me", Some(&ned.access))
        .await
        .error(401, "unauthorized");
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": ned.refresh}),
    )
    .await
    .error(401, "unauthorized");
    app.request(Method::POST, "/api/auth/logout", Some(&ned.access), None)
        .await
        .error(401, "unauthorized");
    // Only that session.
    app.get("/api/me", Some(&laptop.access)).await.ok(200);
}

#[tokio::test]
async fn me_can_change_its_display_name() {
    let app = spawn_app().await;
    let olga = app.register("olga").await;
    let reply = app
        .request(
            Method::PATCH,
            "/api/me",
            Some(&olga.access),
            Some(json!({"display_name": "  Olga O.  "})),
        )
        .await;
    assert_eq!(reply.ok(200)["display_name"], "Olga O.");
    assert_eq!(
        app.get("/api/me", Some(&olga.access)).await.ok(200)["display_name"],
        "Olga O."
    );

    // An absent field changes nothing.
    let reply = app
        .request(
            Method::PATCH,
            "/api/me",
            Some(&olga.access),
            Some(json!({})),
        )
        .await;
    assert_eq!(reply.ok(200)["display_name"], "Olga O.");

    for bad in [
        json!({"display_name": ""}),
        json!({"display_name": "x".repeat(65)}),
        json!({"display_name": 3}),
    ] {
        app.request(Method::PATCH, "/api/me", Some(&olga.access), Some(bad))
            .await
            .error(400, "invalid_input");
    }
    assert_eq!(
        app.get("/api/me", Some(&olga.access)).await.ok(200)["display_name"],
        "Olga O."
    );
    app.request(
        Method::PATCH,
        "/api/me",
        None,
        Some(json!({"display_name": "X"})),
    )
    .await
    .error(401, "unauthorized");
}

#[tokio::test]
async fn a_password_change_revokes_every_other_session() {
    let app = spawn_app().await;
    let pat = app.register("pat").await;
    let phone = app.login("pat", &pat.password).await;
    let reply = app
        .post(
            "/api/me/password",
            Some(&pat.access),
            json!({"current_password": pat.password, "new_password": "a brand new one"}),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 204);

    app.get("/api/me", Some(&pat.access)).await.ok(200);
    app.get("/api/me", Some(&phone.access))
        .await
        .error(401, "unauthorized");
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": phone.refresh}),
    )
    .await
    .error(401, "unauthorized");
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": pat.refresh}),
    )
    .await
    .ok(200);

    app.login_raw("pat", &pat.password)
        .await
        .error(401, "invalid_credentials");
    app.login_raw("pat", "a brand new one").await.ok(200);
}

/// `huddle user create` on an existing user is how an operator takes an account back: every
/// session it had ends with the old password, live sockets included.
#[tokio::test]
async fn an_operator_password_reset_ends_every_session() {
    let app = spawn_app().await;
    let tess = app.register("tess").await;
    let phone = app.login("tess", &tess.password).await;
    let socket = app.socket(&phone.access, Transport::WebSocket).await;

    let (user, created) = huddle::accounts::create_or_update_user(
        &app.state,
        "Tess",
        "taken back by the operator".to_owned(),
        false,
    )
    .await
    .unwrap();
    assert_eq!((user.id, created), (tess.id, false));

    for session in [&tess, &phone] {
        app.get("/api/me", Some(&session.access))
            .await
            .error(401, "unauthorized");
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": session.refresh}),
        )
        .await
        .error(401, "unauthorized");
    }
    socket.wait_disconnected().await;
    let revoked: i64 = sqlx::query_scalar(
        "select count(*) from sessions where user_id = $1 and revoked_reason = 'password_changed'",
    )
    .bind(tess.id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(revoked, 2);
    app.login_raw("tess", &tess.password)
        .await
        .error(401, "invalid_credentials");
    app.login_raw("tess", "taken back by the operator")
        .await
        .ok(200);
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let app = spawn_app().await;
    let quinn = app.register("quinn").await;
    let phone = app.login("quinn", &quinn.password).await;
    app.post(
        "/api/me/password",
        Some(&quinn.access),
        json!({"current_password": "wrong-password", "new_password": "a brand new one"}),
    )
    .await
    .error(401, "invalid_credentials");
    app.post(
        "/api/me/password",
        Some(&quinn.access),
        json!({"current_password": quinn.password, "new_password": "short"}),
    )
    .await
    .error(400, "invalid_input");
    app.post(
        "/api/me/password",
        Some(&quinn.access),
        json!({"new_password": "a brand new one"}),
    )
    .await
    .error(400, "invalid_input");
    app.get("/api/me", Some(&phone.access)).await.ok(200);
    app.login_raw("quinn", &quinn.password).await.ok(200);
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_and_its_tokens_die() {
    let app = spawn_app().await;
    let rita = app.register("rita").await;
    sqlx::query("update users set disabled_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    app.get("/api/me", Some(&rita.access))
        .await
        .error(401, "unauthorized");
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": rita.refresh}),
    )
    .await
    .error(401, "unauthorized");
    app.login_raw("rita", &rita.password)
        .await
        .error(403, "account_disabled");
    app.login_raw("rita", "the-wrong-password")
        .await
        .error(401, "invalid_credentials");
}

#[tokio::test]
async fn register_and_login_are_limited_per_address() {
    let app = spawn_app_with(&[("AUTH_RATE", "3")]).await;
    app.register("sam").await;
    app.login("sam", "sam-password").await;
    app.login_raw("sam", "wrong-password")
        .await
        .error(401, "invalid_credentials");
    let reply = app.login_raw("sam", "sam-password").await;
    let error = reply.error(429, "rate_limited");
    assert!(error["retry_after_ms"].as_u64().unwrap() > 0);
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    app.register_raw("tina", "tina-password")
        .await
        .error(429, "rate_limited");
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn five_failed_logins_lock_the_username_even_for_the_right_password() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000")]).await;
    let uma = app.register("uma").await;
    app.register("victor").await;
    for _ in 0..5 {
        app.login_raw("UMA", "wrong-password")
            .await
            .error(401, "invalid_credentials");
    }
    let reply = app.login_raw("uma", &uma.password).await;
    reply.error(429, "rate_limited");
    assert!(reply.headers.contains_key("retry-after"));
    // Other usernames are unaffected; unknown usernames are counted too.
    app.login("victor", "victor-password").await;
    for _ in 0..5 {
        app.login_raw("ghost", "wrong-password")
            .await
            .error(401, "invalid_credentials");
    }
    app.login_raw("ghost", "wrong-password")
        .await
        .error(429, "rate_limited");
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count() {
    let app = spawn_app_with(&[("AUTH_RATE", "1000")]).await;
    let wes = app.register("wes").await;
    for _ in 0..4 {
        app.login_raw("wes", "wrong-password")
            .await
            .error(401, "invalid_credentials");
    }
    app.login("wes", &wes.password).await;
    for _ in 0..5 {
        app.login_raw("wes", "wrong-password")
            .await
            .error(401, "invalid_credentials");
    }
}

#[tokio::test]
async fn auth_rate_zero_turns_the_auth_limits_off() {
    let app = spawn_app().await;
    app.register("xena").await;
    for _ in 0..8 {
        app.login_raw("xena", "wrong-password")
            .await
            .error(401, "invalid_credentials");
    }
    app.login("xena", "xena-password").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_counts_the_forwarded_address() {
    let login = |app: &common::TestApp, forwarded: &'static str| {
        let req = app
            .client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"username": "nobody", "password": "whatever-1"}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let app = spawn_app_with(&[("AUTH_RATE", "2"), ("TRUST_PROXY", "true")]).await;
    // The client may claim anything; the proxy's own (last) entry is what counts.
    assert_eq!(login(&app, "1.1.1.1, 10.0.0.1").await, 401);
    assert_eq!(login(&app, "2.2.2.2, 10.0.0.1").await, 401);
    assert_eq!(login(&app, "3.3.3.3, 10.0.0.1").await, 429);
    assert_eq!(login(&app, "10.0.0.2").await, 401);

    // Without TRUST_PROXY the header is ignored: every request comes from the peer.
    let app = spawn_app_with(&[("AUTH_RATE", "2")]).await;
    assert_eq!(login(&app, "10.0.0.1").await, 401);
    assert_eq!(login(&app, "10.0.0.2").await, 401);
    assert_eq!(login(&app, "10.0.0.3").await, 429);
}

/// Refreshing extends a session up to `SESSION_MAX_AGE` after its login and never beyond: a
/// refresh token kept fresh does not live forever.
#[tokio::test]
async fn a_session_ends_at_its_maximum_age_however_often_it_is_refreshed() {
    let app = spawn_app_with(&[("SESSION_MAX_AGE", "3600")]).await;
    let uma = app.register("uma").await;
    let age = |secs: i64| {
        sqlx::query(
            "update sessions set created_at = now() - make_interval(secs => $2) where id = (
                 select id from sessions where user_id = $1)",
        )
        .bind(uma.id)
        .bind(secs as f64)
    };
    age(1800).execute(&app.db).await.unwrap();
    let fresh = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": uma.refresh}),
        )
        .await
        .ok(200)
        .clone();
    let left: f64 = sqlx::query_scalar(
        "select extract(epoch from expires_at - now())::float8 from sessions where user_id = $1",
    )
    .bind(uma.id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        (1700.0..=1800.0).contains(&left),
        "the session should end 1 h after its login, {left} s from now"
    );

    // Half an hour and a second later (every timestamp of the session moved back by that much),
    // the refreshed token is past the session's end.
    sqlx::query(
        "update sessions set created_at = created_at - interval '1801 seconds',
                             expires_at = expires_at - interval '1801 seconds'
         where user_id = $1",
    )
    .bind(uma.id)
    .execute(&app.db)
    .await
    .unwrap();
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": fresh["refresh_token"]}),
    )
    .await
    .error(401, "unauthorized");
}

/// Sessions that ended more than a week ago are deleted with their rotated refresh tokens; live
/// ones and recently ended ones stay.
#[tokio::test]
async fn sessions_that_ended_long_ago_are_purged() {
    let app = spawn_app().await;
    let vic = app.register("vic").await;
    let refreshed = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": vic.refresh}),
        )
        .await
        .ok(200)
        .clone();
    let live = app.login("vic", &vic.password).await;
    let recent = app.login("vic", &vic.password).await;
    let expired = app.login("vic", &vic.password).await;
    let reply = app
        .request(Method::POST, "/api/auth/logout", Some(&recent.access), None)
        .await;
    assert_eq!(reply.status.as_u16(), 204);
    let session_of = |access: &str| {
        let claims = access.split('.').nth(1).unwrap().to_owned();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
                .unwrap();
        let claims: Value = serde_json::from_slice(&bytes).unwrap();
        claims["sid"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .unwrap()
    };
    let old_logout = session_of(refreshed["access_token"].as_str().unwrap());
    sqlx::query(
        "update sessions set revoked_at = now() - interval '8 days', revoked_reason = 'logout'
         where id = $1",
    )
    .bind(old_logout)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("update sessions set expires_at = now() - interval '8 days' where id = $1")
        .bind(session_of(&expired.access))
        .execute(&app.db)
        .await
        .unwrap();

    let purged = huddle::housekeeping::purge_ended_sessions(&app.state)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("select id from sessions order by id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let mut kept = vec![session_of(&live.access), session_of(&recent.access)];
    kept.sort();
    assert_eq!(left, kept);
    let rotated: i64 = sqlx::query_scalar("select count(*) from rotated_refresh_tokens")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        rotated, 0,
        "the purged session's rotated token is gone with it"
    );
    app.get("/api/me", Some(&live.access)).await.ok(200);
}
