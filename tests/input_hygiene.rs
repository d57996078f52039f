//! Text the database refuses (U+0000) and characters that have no place in chat text: refused
//! as `400 invalid_input` naming the field, over REST bodies, query strings and socket payloads,
//! before anything reaches SQL, so nothing is stored and nothing answers 500.

mod common;

use common::{
    sio::{ack_error, ack_ok, both_transports, Transport},
    spawn_app, TestApp,
};
use serde_json::{json, Value};

both_transports!(a_nul_in_a_message_body_or_client_id_is_refused_and_nothing_stored);

/// Asserts a 400 `invalid_input` whose `fields` names `field`, and returns that field's detail.
#[track_caller]
fn refused_field(reply: &common::Reply, field: &str) -> String {
    let error = reply.error(400, "invalid_input");
    error["fields"][field]
        .as_str()
        .unwrap_or_else(|| panic!("no detail for {field}: {error}"))
        .to_owned()
}

#[tokio::test]
async fn a_nul_in_any_account_field_is_refused_not_a_500() {
    let app = spawn_app().await;
    let register = |body: Value| {
        let app = &app;
        async move { app.post("/api/auth/register", None, body).await }
    };
    let reply = register(
        json!({"username": "nina", "password": "nina-password", "display_name": "a\u{0}b"}),
    )
    .await;
    assert!(refused_field(&reply, "display_name").contains("NUL"));
    let reply = register(json!({"username": "ni\u{0}na", "password": "nina-password"})).await;
    refused_field(&reply, "username");
    // argon2 would hash it happily; the rule is the same for every field all the same.
    let reply = register(json!({"username": "nina", "password": "nina-pass\u{0}word"})).await;
    refused_field(&reply, "password");
    assert_eq!(app.count("users").await, 0);

    let nina = app.register("nina").await;
    let reply = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "ni\u{0}na", "password": nina.password}),
        )
        .await;
    refused_field(&reply, "username");
    let reply = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "nina", "password": "\u{0}"}),
        )
        .await;
    refused_field(&reply, "password");

    let reply = app
        .patch(
            "/api/me",
            Some(&nina.access),
            json!({"display_name": "x\u{0}"}),
        )
        .await;
    refused_field(&reply, "display_name");
    let me = app.get("/api/me", Some(&nina.access)).await;
    assert_eq!(me.ok(200)["display_name"], "nina");
}

#[tokio::test]
async fn a_nul_in_a_query_string_value_is_refused_naming_the_parameter() {
    let app = spawn_app().await;
    let olga = app.register("olga").await;
    let room = app.create_room(&olga, "nulls", "public").await;
    let path = |query: &str| {
        format!(
            "/api/rooms/{}/messages?{query}",
            room["id"].as_str().unwrap()
        )
    };
    let reply = app.get(&path("before=%00"), Some(&olga.access)).await;
    assert!(refused_field(&reply, "before").contains("NUL"));
    // Also in a parameter the handler does not know.
    let reply = app.get(&path("whatever=a%00"), Some(&olga.access)).await;
    refused_field(&reply, "whatever");
    app.get(&path("before=1"), Some(&olga.access)).await.ok(200);
}

async fn a_nul_in_a_message_body_or_client_id_is_refused_and_nothing_stored(t: Transport) {
    let app = spawn_app().await;
    let pia = app.register("pia").await;
    let s = app.in_room(&pia, "general", t).await;
    for (payload, field) in [
        (json!({"room": "general", "body": "a\u{0}b"}), "body"),
        (
            json!({"room": "general", "body": "ok", "client_id": "c\u{0}"}),
            "client_id",
        ),
        (json!({"room": "gen\u{0}eral", "body": "ok"}), "room"),
        (
            json!({"room": "general", "body": "ok", "extra": ["\u{0}"]}),
            "extra[0]",
        ),
    ] {
        let ack = s.call("sendMessage", payload).await;
        let error = ack_error(&ack, "invalid_input");
        assert!(error["fields"][field].is_string(), "{field}: {ack}");
    }
    // A bare-string payload too.
    ack_error(
        &s.call("joinRoom", json!("gen\u{0}eral")).await,
        "invalid_input",
    );
    // Other control characters than tab and line breaks are refused in a body.
    let ack = s
        .call(
            "sendMessage",
            json!({"room": "general", "body": "\u{1b}[2Jgone"}),
        )
        .await;
    assert!(ack_error(&ack, "invalid_input")["fields"]["body"].is_string());
    assert_eq!(app.count("messages").await, 0);
    ack_ok(
        &s.call(
            "sendMessage",
            json!({"room": "general", "body": "two\n\tlines"}),
        )
        .await,
    );
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn display_names_and_topics_refuse_bidi_overrides_and_control_characters() {
    let app: TestApp = spawn_app().await;
    let quinn = app.register("quinn").await;
    for bad in [
        "evil\u{202E}gpj.exe",
        "a\u{2066}b",
        "two\nlines",
        "tab\tbed",
    ] {
        let reply = app
            .post(
                "/api/rooms",
                Some(&quinn.access),
                json!({"name": "r", "visibility": "public", "topic": bad}),
            )
            .await;
        refused_field(&reply, "topic");
        let reply = app
            .patch("/api/me", Some(&quinn.access), json!({"display_name": bad}))
            .await;
        refused_field(&reply, "display_name");
    }
    let room = app.create_room(&quinn, "r", "public").await;
    let path = format!("/api/rooms/{}", room["id"].as_str().unwrap());
    let reply = app
        .patch(&path, Some(&quinn.access), json!({"topic": "\u{202D}x"}))
        .await;
    refused_field(&reply, "topic");
    // Right-to-left text itself is fine.
    let reply = app
        .patch(&path, Some(&quinn.access), json!({"topic": "שלום"}))
        .await;
    assert_eq!(reply.ok(200)["topic"], "שלום");
}
