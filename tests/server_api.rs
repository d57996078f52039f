//! The server API's keys and users: admins make, list and revoke keys; keys authenticate
//! `/api/server/*` only; platform keys manage workspaces and pick one per request; the product
//! provisions users by its own ids and mints real sessions for them.

mod common;

use common::{
    server::{platform_key, workspace_key},
    sio::Transport,
    spawn_app, tenancy,
};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[tokio::test]
async fn an_admin_makes_lists_and_revokes_keys_and_a_revoked_key_is_refused_at_once() {
    let app = spawn_app().await;
    let boss = app.register("boss").await;
    app.make_admin(&boss).await;
    let ann = app.register("ann").await;

    // Not an admin: refused, and nothing made.
    app.post(
        "/api/admin/api-keys",
        Some(&ann.access),
        json!({"name": "x"}),
    )
    .await
    .error(403, "forbidden");
    app.get("/api/admin/api-keys", Some(&ann.access))
        .await
        .error(403, "forbidden");
    assert_eq!(app.count("api_keys").await, 0);
    // A bad name changes nothing either.
    for name in [json!(""), json!("x".repeat(65)), json!(3)] {
        app.post(
            "/api/admin/api-keys",
            Some(&boss.access),
            json!({"name": name}),
        )
        .await
        .error(400, "invalid_input");
    }
    assert_eq!(app.count("api_keys").await, 0);

    let created = app
        .post(
            "/api/admin/api-keys",
            Some(&boss.access),
            json!({"name": "billing backend"}),
        )
        .await;
    let body = created.ok(201).clone();
    let secret = body["secret"].as_str().unwrap().to_owned();
    let key = &body["key"];
    assert!(secret.starts_with("hk_") && secret.len() == 46, "{secret}");
    assert_eq!(key["name"], "billing backend");
    assert_eq!(key["prefix"].as_str().unwrap(), &secret[..11]);
    assert!(key["created_at"].is_string() && key["last_used_at"].is_null());
    // Stored only as its digest: no column holds the secret.
    let (hash, dump): (Vec<u8>, String) =
        sqlx::query_as("select secret_hash, to_jsonb(k)::text from api_keys k")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(hash, Sha256::digest(secret.as_bytes()).to_vec());
    assert!(!dump.contains(&secret[11..]), "{dump}");

    // It works on the server API, and its use is recorded.
    app.server(
        Method::PUT,
        "/api/server/users/u1",
        &secret,
        None,
        Some(json!({"username": "user1"})),
    )
    .await
    .ok(201);
    let list = app.get("/api/admin/api-keys", Some(&boss.access)).await;
    let keys = list.ok(200)["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], key["id"]);
    assert!(keys[0]["last_used_at"].is_string(), "{}", keys[0]);
    assert!(keys[0]["revoked_at"].is_null());
    assert!(keys[0].get("secret").is_none() && !list.body.to_string().contains(&secret));
    let uses: i64 = sqlx::query_scalar("select uses from api_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(uses, 1);

    // Revoked: the very next request is refused; revoking again is 204 and changes nothing.
    let path = format!("/api/admin/api-keys/{}", key["id"].as_str().unwrap());
    app.delete(&path, Some(&ann.access))
        .await
        .error(403, "forbidden");
    app.delete(&path, Some(&boss.access)).await.ok(204);
    app.server(
        Method::PUT,
        "/api/server/users/u2",
        &secret,
        None,
        Some(json!({"username": "user2"})),
    )
    .await
    .error(401, "unauthorized");
    app.delete(&path, Some(&boss.access)).await.ok(204);
    let list = app.get("/api/admin/api-keys", Some(&boss.access)).await;
    assert!(list.ok(200)["keys"][0]["revoked_at"].is_string());
    assert_eq!(app.audits("api_key_created").await, 1);
    assert_eq!(app.audits("api_key_revoked").await, 1);
    app.delete(
        &format!("/api/admin/api-keys/{}", Uuid::now_v7()),
        Some(&boss.access),
    )
    .await
    .error(404, "not_found");
    app.delete("/api/admin/api-keys/not-a-uuid", Some(&boss.access))
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn an_admin_sees_and_revokes_only_the_keys_of_their_own_workspace() {
    let app = spawn_app().await;
    let platform = platform_key(&app.state).await;
    app.server(
        Method::POST,
        "/api/server/workspaces",
        &platform,
        None,
        Some(json!({"slug": "acme", "name": "Acme"})),
    )
    .await
    .ok(201);
    let boss = app.register("boss").await;
    app.make_admin(&boss).await;
    let acme_boss = tenancy::register_in(&app.api, "acme", "boss").await;
    app.make_admin(&acme_boss).await;

    let acme_key = app
        .post(
            "/api/admin/api-keys",
            Some(&acme_boss.access),
            json!({"name": "acme"}),
        )
        .await
        .ok(201)
        .clone();
    let list = app.get("/api/admin/api-keys", Some(&boss.access)).await;
    assert_eq!(
        list.ok(200)["keys"],
        json!([]),
        "the platform key is no workspace's"
    );
    let path = format!(
        "/api/admin/api-keys/{}",
        acme_key["key"]["id"].as_str().unwrap()
    );
    app.delete(&path, Some(&boss.access))
        .await
        .error(404, "not_found");
    // The acme key acts in acme: the user it makes is acme's.
    let secret = acme_key["secret"].as_str().unwrap();
    let user = app
        .provision(secret, "e-1", json!({"username": "carol"}))
        .await;
    let ws: Uuid = sqlx::query_scalar("select id from workspaces where slug = 'acme'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(user["workspace_id"], ws.to_string());
}

#[tokio::test]
async fn keys_and_user_tokens_are_not_interchangeable() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let key = workspace_key(&app.state, None).await;
    let body = Some(json!({"username": "bob"}));
    // A user's token, nothing, junk, or a key-shaped secret nobody issued: 401 on the server API.
    let unknown = format!("hk_{}", "A".repeat(43));
    for token in [
        ann.access.as_str(),
        "",
        "hk_short",
        unknown.as_str(),
        "Basic abc",
    ] {
        app.server(
            Method::PUT,
            "/api/server/users/b",
            token,
            None,
            body.clone(),
        )
        .await
        .error(401, "unauthorized");
    }
    let bare = app
        .client
        .put(app.url("/api/server/users/b"))
        .json(&json!({"username": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    // A Huddle-Workspace header that is no text: 401 without a valid key, 400 with one.
    for (token, status, code) in [
        (unknown.as_str(), 401, "unauthorized"),
        (key.as_str(), 400, "invalid_input"),
    ] {
        let res = app
            .client
            .put(app.url("/api/server/users/b"))
            .bearer_auth(token)
            .header(
                "Huddle-Workspace",
                reqwest::header::HeaderValue::from_bytes(b"ac\xffme").unwrap(),
            )
            .json(&json!({"username": "bob"}))
            .send()
            .await
            .unwrap();
        common::into_reply(res).await.error(status, code);
    }
    // A key on a user route: 401.
    app.get("/api/me", Some(&key))
        .await
        .error(401, "unauthorized");
    app.get("/api/rooms", Some(&key))
        .await
        .error(401, "unauthorized");
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn a_platform_key_creates_and_lists_workspaces_and_acts_in_one_by_header() {
    let app = spawn_app().await;
    let platform = platform_key(&app.state).await;
    let default_key = workspace_key(&app.state, None).await;
    let new = |slug: &str| Some(json!({"slug": slug, "name": "Acme Inc"}));

    let created = app
        .server(
            Method::POST,
            "/api/server/workspaces",
            &platform,
            None,
            new("acme"),
        )
        .await;
    assert_eq!(created.ok(201)["slug"], "acme");
    app.server(
        Method::POST,
        "/api/server/workspaces",
        &platform,
        None,
        new("acme"),
    )
    .await
    .error(409, "conflict");
    app.server(
        Method::POST,
        "/api/server/workspaces",
        &platform,
        None,
        new("Not A Slug"),
    )
    .await
    .error(400, "invalid_input");
    // Workspaces are for platform keys only.
    app.server(
        Method::POST,
        "/api/server/workspaces",
        &default_key,
        None,
        new("other"),
    )
    .await
    .error(403, "forbidden");
    app.server(
        Method::GET,
        "/api/server/workspaces",
        &default_key,
        None,
        None,
    )
    .await
    .error(403, "forbidden");
    let list = app
        .server(Method::GET, "/api/server/workspaces", &platform, None, None)
        .await;
    let slugs: Vec<&str> = list.ok(200)["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["default", "acme"]);

    // The platform key acts where Huddle-Workspace says (default: default); an unknown slug is 404.
    let put = |who: &str| Some(json!({"username": who}));
    let in_acme = app
        .server(
            Method::PUT,
            "/api/server/users/x1",
            &platform,
            Some("acme"),
            put("ann"),
        )
        .await;
    let in_default = app
        .server(
            Method::PUT,
            "/api/server/users/x1",
            &platform,
            None,
            put("ann"),
        )
        .await;
    assert_eq!(in_acme.ok(201)["workspace_id"], created.body["id"]);
    assert_eq!(
        in_default.ok(201)["workspace_id"],
        "00000000-0000-0000-0000-000000000001"
    );
    app.server(
        Method::PUT,
        "/api/server/users/x2",
        &platform,
        Some("nowhere"),
        put("bob"),
    )
    .await
    .error(404, "not_found");
    // A workspace key naming another workspace is refused; naming its own is fine.
    app.server(
        Method::PUT,
        "/api/server/users/x3",
        &default_key,
        Some("acme"),
        put("cyd"),
    )
    .await
    .error(403, "forbidden");
    app.server(
        Method::PUT,
        "/api/server/users/x3",
        &default_key,
        Some("nowhere"),
        put("cyd"),
    )
    .await
    .error(403, "forbidden");
    app.server(
        Method::PUT,
        "/api/server/users/x3",
        &default_key,
        Some("default"),
        put("cyd"),
    )
    .await
    .ok(201);
}

#[tokio::test]
async fn provisioned_users_are_created_then_updated_keeping_what_is_left_out() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    let created = app
        .server(
            Method::PUT,
            "/api/server/users/crm%7C42",
            &key,
            None,
            Some(
                json!({"username": "ann", "display_name": "Ann A.", "is_bot": true,
                        "metadata": {"plan": "pro"}}),
            ),
        )
        .await;
    let user = created.ok(201).clone();
    assert_eq!(user["external_id"], "crm|42");
    assert_eq!(user["username"], "ann");
    assert_eq!(user["display_name"], "Ann A.");
    assert_eq!(user["is_bot"], true);
    assert_eq!(user["is_admin"], false);
    assert_eq!(user["metadata"], json!({"plan": "pro"}));

    // Only the username: everything else kept; the same user (200, same id).
    let updated = app
        .server(
            Method::PUT,
            "/api/server/users/crm%7C42",
            &key,
            None,
            Some(json!({"username": "anna"})),
        )
        .await;
    let again = updated.ok(200);
    assert_eq!(again["id"], user["id"]);
    assert_eq!(again["username"], "anna");
    assert_eq!(again["display_name"], "Ann A.");
    assert_eq!(again["is_bot"], true);
    assert_eq!(again["metadata"], json!({"plan": "pro"}));
    let updated = app
        .server(
            Method::PUT,
            "/api/server/users/crm%7C42",
            &key,
            None,
            Some(json!({"username": "anna", "is_admin": true, "is_bot": false, "metadata": {}})),
        )
        .await;
    let again = updated.ok(200);
    assert_eq!(
        (again["is_admin"].clone(), again["is_bot"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(again["metadata"], json!({}));

    // Bad input: a clear error and nothing changed.
    let before = tenancy::fingerprint(&app.db).await;
    let long_id = "e".repeat(129);
    for (path, body) in [
        (
            "/api/server/users/e1".to_owned(),
            json!({"username": "no spaces allowed"}),
        ),
        (
            "/api/server/users/e1".to_owned(),
            json!({"display_name": "no username"}),
        ),
        (
            "/api/server/users/e1".to_owned(),
            json!({"username": "bob", "metadata": [1]}),
        ),
        (
            "/api/server/users/e1".to_owned(),
            json!({"username": "bob", "metadata": {"x": "y".repeat(5000)}}),
        ),
        (
            "/api/server/users/e1".to_owned(),
            json!({"username": "bob", "is_bot": "yes"}),
        ),
        (
            format!("/api/server/users/{long_id}"),
            json!({"username": "bob"}),
        ),
        (
            "/api/server/users/tab%09id".to_owned(),
            json!({"username": "bob"}),
        ),
    ] {
        app.server(Method::PUT, &path, &key, None, Some(body))
            .await
            .error(400, "invalid_input");
    }
    // A username that someone else has (here: a user who registered) is a conflict.
    app.register("carol").await;
    let before_conflict = tenancy::fingerprint(&app.db).await;
    app.server(
        Method::PUT,
        "/api/server/users/e2",
        &key,
        None,
        Some(json!({"username": "Carol"})),
    )
    .await
    .error(409, "conflict");
    app.server(
        Method::PUT,
        "/api/server/users/crm%7C42",
        &key,
        None,
        Some(json!({"username": "carol"})),
    )
    .await
    .error(409, "conflict");
    assert_eq!(tenancy::fingerprint(&app.db).await, before_conflict);
    assert_ne!(before, before_conflict, "carol registered in between");
}

#[tokio::test]
async fn a_provisioned_user_without_a_password_cannot_log_in_with_one() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    app.provision(&key, "42", json!({"username": "dave"})).await;
    for password in ["", "password123", "correct horse battery staple"] {
        app.login_raw("dave", password)
            .await
            .error(401, "invalid_credentials");
    }
    // A registered user's own record shows the new fields too.
    let eve = app.register("eve").await;
    let me = app.get("/api/me", Some(&eve.access)).await;
    let me = me.ok(200);
    assert_eq!(
        (
            me["external_id"].clone(),
            me["is_bot"].clone(),
            me["metadata"].clone()
        ),
        (Value::Null, json!(false), json!({}))
    );
}

#[tokio::test]
async fn a_minted_session_is_a_real_session_that_disabling_ends_everywhere() {
    let app = spawn_app().await;
    let key = workspace_key(&app.state, None).await;
    app.provision(&key, "u-7", json!({"username": "frank"}))
        .await;
    let frank = app.minted(&key, "u-7").await;
    let me = app.get("/api/me", Some(&frank.access)).await;
    assert_eq!(me.ok(200)["external_id"], "u-7");
    let second = app.minted(&key, "u-7").await;
    assert_ne!(second.access, frank.access);
    // It refreshes like any session.
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": second.refresh}),
    )
    .await
    .ok(200);
    // Live: a socket of the minted session.
    let socket = app.in_room(&frank, "general", Transport::WebSocket).await;

    app.server(
        Method::POST,
        "/api/server/users/u-7/disable",
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    socket.wait_disconnected().await;
    app.get("/api/me", Some(&frank.access))
        .await
        .error(401, "unauthorized");
    app.server(
        Method::POST,
        "/api/server/users/u-7/sessions",
        &key,
        None,
        None,
    )
    .await
    .error(403, "account_disabled");
    assert_eq!(app.audits("user_disabled").await, 1);
    let detail: Value =
        sqlx::query_scalar("select detail from audit_log where action = 'user_disabled'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(detail["sessions_revoked"], 2);
    assert!(detail["api_key"].is_string(), "{detail}");

    app.server(
        Method::POST,
        "/api/server/users/u-7/enable",
        &key,
        None,
        None,
    )
    .await
    .ok(204);
    let back = app.minted(&key, "u-7").await;
    app.get("/api/me", Some(&back.access)).await.ok(200);
    // The old sessions stay dead.
    app.get("/api/me", Some(&frank.access))
        .await
        .error(401, "unauthorized");
    // Logout ends a minted session like any other.
    app.post("/api/auth/logout", Some(&back.access), json!({}))
        .await
        .ok(204);
    app.get("/api/me", Some(&back.access))
        .await
        .error(401, "unauthorized");

    for path in [
        "/api/server/users/nobody/sessions",
        "/api/server/users/nobody/disable",
        "/api/server/users/nobody/enable",
    ] {
        app.server(Method::POST, path, &key, None, None)
            .await
            .error(404, "not_found");
    }
}

#[tokio::test]
async fn the_same_external_id_in_two_workspaces_is_two_users() {
    let app = spawn_app().await;
    let platform = platform_key(&app.state).await;
    app.server(
        Method::POST,
        "/api/server/workspaces",
        &platform,
        None,
        Some(json!({"slug": "acme", "name": "Acme"})),
    )
    .await
    .ok(201);
    let body = Some(json!({"username": "gina"}));
    let a = app
        .server(
            Method::PUT,
            "/api/server/users/7",
            &platform,
            None,
            body.clone(),
        )
        .await;
    let b = app
        .server(
            Method::PUT,
            "/api/server/users/7",
            &platform,
            Some("acme"),
            body,
        )
        .await;
    assert_ne!(a.ok(201)["id"], b.ok(201)["id"]);
    // A session minted in one is not the other's.
    let in_acme = app
        .server(
            Method::POST,
            "/api/server/users/7/sessions",
            &platform,
            Some("acme"),
            None,
        )
        .await;
    let token = in_acme.ok(201)["access_token"].as_str().unwrap().to_owned();
    let me = app.get("/api/me", Some(&token)).await;
    assert_eq!(me.ok(200)["id"], b.body["id"]);
}
