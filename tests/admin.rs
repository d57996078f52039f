//! Admin powers over REST, and the audit log an admin reads.

mod common;

use common::spawn_app;
use serde_json::json;

#[tokio::test]
async fn disabling_revokes_every_session_and_blocks_login_until_enabled() {
    let app = spawn_app().await;
    let boss = {
        let s = app.register("boss").await;
        app.make_admin(&s).await;
        s
    };
    let ann = app.register("ann").await;
    let ann_phone = app.login("ann", &ann.password).await;

    app.post(
        &format!("/api/admin/users/{}/disable", ann.id),
        Some(&boss.access),
        json!({}),
    )
    .await
    .ok(204);
    for s in [&ann, &ann_phone] {
        app.get("/api/me", Some(&s.access))
            .await
            .error(401, "unauthorized");
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await
        .error(401, "unauthorized");
    }
    app.login_raw("ann", &ann.password)
        .await
        .error(403, "account_disabled");
    let live: i64 = sqlx::query_scalar(
        "select count(*) from sessions where user_id = $1 and revoked_at is null",
    )
    .bind(ann.id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(live, 0);

    app.post(
        &format!("/api/admin/users/{}/enable", ann.id),
        Some(&boss.access),
        json!({}),
    )
    .await
    .ok(204);
    app.login("ann", &ann.password).await;
    // The old sessions stay dead.
    app.get("/api/me", Some(&ann.access))
        .await
        .error(401, "unauthorized");
    assert_eq!(
        (
            app.audits("user_disabled").await,
            app.audits("user_enabled").await
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn only_admins_disable_and_enable() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    for action in ["disable", "enable"] {
        app.post(
            &format!("/api/admin/users/{}/{action}", bob.id),
            Some(&ann.access),
            json!({}),
        )
        .await
        .error(403, "forbidden");
        app.post(
            &format!("/api/admin/users/{}/{action}", bob.id),
            None,
            json!({}),
        )
        .await
        .error(401, "unauthorized");
    }
    app.get("/api/me", Some(&bob.access)).await.ok(200);
    assert_eq!(app.audits("access_denied").await, 2);
}

#[tokio::test]
async fn disabling_an_unknown_user_or_oneself_is_refused() {
    let app = spawn_app().await;
    let boss = {
        let s = app.register("boss").await;
        app.make_admin(&s).await;
        s
    };
    app.post(
        &format!("/api/admin/users/{}/disable", uuid::Uuid::now_v7()),
        Some(&boss.access),
        json!({}),
    )
    .await
    .error(404, "not_found");
    app.post(
        "/api/admin/users/nope/disable",
        Some(&boss.access),
        json!({}),
    )
    .await
    .error(404, "not_found");
    app.post(
        &format!("/api/admin/users/{}/disable", boss.id),
        Some(&boss.access),
        json!({}),
    )
    .await
    .error(403, "forbidden");
    app.get("/api/me", Some(&boss.access)).await.ok(200);
}

#[tokio::test]
async fn the_readme_audit_query_answers_who_was_let_in_by_whom_and_who_was_turned_away() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let guest = app.register("guest").await;
    let intruder = app.register("intruder").await;
    let room = app.create_room(&owner, "war-room", "private").await;
    app.grant(&owner, &room, &guest, "member").await.ok(200);
    app.get(
        &format!("/api/rooms/{}", room["id"].as_str().unwrap()),
        Some(&intruder.access),
    )
    .await
    .error(404, "not_found");

    // The query printed in README.md, section "Reading the audit log".
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("-- who was let into")
        .expect("README audit query");
    let sql = &readme[start..];
    let sql = &sql[..sql.find("```").unwrap()];
    let sql = sql.replace(":'room'", "'war-room'");
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as(&sql).fetch_all(&app.db).await.unwrap();
    let summary: Vec<(String, String, Option<String>)> = rows
        .into_iter()
        .map(|(_, action, who, by)| (action, who.unwrap_or_default(), by))
        .collect();
    assert!(
        summary.contains(&(
            "member_granted".into(),
            "guest".into(),
            Some("owner".into())
        )),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("access_denied".into(), "intruder".into(), None)),
        "{summary:?}"
    );
}
