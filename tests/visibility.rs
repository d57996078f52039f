//! Visibility never leaks: an outsider walks every REST route that names a private or direct
//! room and gets exactly what it gets for a room that does not exist.

mod common;

use common::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn an_outsider_gets_404_on_every_route_naming_a_private_or_direct_room() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let friend = app.register("friend").await;
    let outsider = app.register("outsider").await;
    let private = app.create_room(&owner, "hidden", "private").await;
    app.seed_messages(&private, &owner, 2).await;
    let direct = app
        .post(
            &format!("/api/direct/{}", friend.id),
            Some(&owner.access),
            json!({}),
        )
        .await
        .ok(200)
        .clone();
    let missing = json!({"id": uuid::Uuid::now_v7().to_string()});
    let before = (
        app.count("room_members").await,
        app.count("rooms").await,
        app.count("messages").await,
    );

    let walk = |room: Value| {
        let id = room["id"].as_str().unwrap().to_owned();
        let (f, o) = (friend.id, owner.id);
        vec![
            (Method::GET, format!("/api/rooms/{id}"), None),
            (
                Method::PATCH,
                format!("/api/rooms/{id}"),
                Some(json!({"topic": "x"})),
            ),
            (Method::DELETE, format!("/api/rooms/{id}"), None),
            (Method::GET, format!("/api/rooms/{id}/members"), None),
            (
                Method::PUT,
                format!("/api/rooms/{id}/members/{f}"),
                Some(json!({"role": "member"})),
            ),
            (
                Method::PUT,
                format!("/api/rooms/{id}/members/{f}"),
                Some(json!({"role": "moderator"})),
            ),
            (Method::DELETE, format!("/api/rooms/{id}/members/{f}"), None),
            (Method::DELETE, format!("/api/rooms/{id}/members/{o}"), None),
            (Method::GET, format!("/api/rooms/{id}/messages"), None),
            (
                Method::GET,
                format!("/api/rooms/{id}/messages?after=0"),
                None,
            ),
            (
                Method::PUT,
                format!("/api/rooms/{id}/read"),
                Some(json!({"seq": 1})),
            ),
        ]
    };
    for room in [private.clone(), direct.clone(), missing] {
        for (method, path, body) in walk(room) {
            let reply = app
                .request(method.clone(), &path, Some(&outsider.access), body)
                .await;
            let error = reply.error(404, "not_found");
            assert_eq!(
                error["message"], "not found",
                "{method} {path}: same words as for a missing room"
            );
        }
    }
    assert_eq!(
        before,
        (
            app.count("room_members").await,
            app.count("rooms").await,
            app.count("messages").await
        ),
        "nothing changed"
    );
    // Each refusal on an existing room is audited (11 routes x 2 rooms).
    assert_eq!(app.audits("access_denied").await, 22);
    // The outsider cannot find them in its lists either.
    let lists = [
        app.get("/api/rooms", Some(&outsider.access)).await,
        app.get("/api/me/rooms", Some(&outsider.access)).await,
    ];
    for list in lists {
        let text = list.ok(200).to_string();
        assert!(!text.contains("hidden") && !text.contains("dm:"), "{text}");
    }
    // Members see them.
    app.get(
        &format!("/api/rooms/{}", private["id"].as_str().unwrap()),
        Some(&owner.access),
    )
    .await
    .ok(200);
    app.get(
        &format!("/api/rooms/{}/messages", direct["id"].as_str().unwrap()),
        Some(&friend.access),
    )
    .await
    .ok(200);
}
