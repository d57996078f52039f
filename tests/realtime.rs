//! Every Socket.IO event of the contract with its payloads, acks and errors, over a real socket,
//! on both transports (each scenario runs once over websocket and once over long-polling).

mod common;

use std::time::Duration;

use common::{
    seqs,
    sio::{ack_error, ack_ok, both_transports, Auth, SioClient, Transport},
    spawn_app, spawn_app_with, Session, TestApp,
};
use reqwest::Method;
use serde_json::{json, Value};

both_transports!(
    the_handshake_needs_a_live_token,
    joining_general_welcomes_replays_history_and_announces_presence,
    a_second_socket_of_a_user_is_welcomed_without_presence,
    rejoining_replays_history_and_says_nothing,
    joining_with_since_resumes_after_that_seq,
    a_refused_join_is_forbidden_audited_and_silent,
    an_unknown_room_is_not_found,
    members_join_private_rooms_with_the_private_notice,
    leaving_tells_the_room_and_stops_delivery,
    send_message_persists_then_broadcasts_to_everyone_in_the_room,
    send_message_refuses_bad_payloads_and_keeps_the_socket,
    history_follows_the_rest_rules,
    mark_read_moves_the_position_and_tells_the_users_other_sockets,
    typing_reaches_the_others_only,
    direct_messages_reach_every_socket_of_both_users,
    list_online_counts_distinct_users,
    messages_and_typing_share_one_rate_limit,
    a_kick_takes_the_users_sockets_out_at_once,
    deleting_a_room_removes_its_sockets,
    logout_password_change_and_disabling_disconnect_sockets,
);

const SHORT: Duration = Duration::from_millis(300);

async fn room_id(app: &TestApp, who: &Session, name: &str) -> String {
    let rooms = app.get("/api/rooms", Some(&who.access)).await;
    rooms.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap()
}

async fn the_handshake_needs_a_live_token(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;

    let s = app.socket(&ann.access, t).await;
    let session = s.next("session").await;
    assert_eq!(session["user"]["id"], ann.id.to_string());
    assert_eq!(session["user"]["username"], "ann");

    let header = SioClient::connect(&app.base, Auth::Header(&ann.access), t).await;
    assert!(header.is_ok(), "Authorization: Bearer is accepted");

    for auth in [
        Auth::None,
        Auth::Token("not-a-jwt"),
        Auth::Payload(json!({"token": 42})),
    ] {
        let refused = SioClient::connect(&app.base, auth, t).await;
        assert_eq!(refused.err().as_deref(), Some("unauthorized"));
    }
    // A revoked session's token.
    let other = app.login("ann", &ann.password).await;
    app.request(Method::POST, "/api/auth/logout", Some(&other.access), None)
        .await
        .ok(204);
    let refused = SioClient::connect(&app.base, Auth::Token(&other.access), t).await;
    assert_eq!(refused.err().as_deref(), Some("unauthorized"));
    assert!(s.is_connected());
}

async fn joining_general_welcomes_replays_history_and_announces_presence(t: Transport) {
    let app = spawn_app_with(&[("HISTORY_LIMIT", "3")]).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let general = json!({"id": room_id(&app, &ann, "general").await});
    app.seed_messages(&general, &ann, 5).await;

    let a = app.socket(&ann.access, t).await;
    let ack = a.call("joinRoom", json!("general")).await;
    ack_ok(&ack);
    assert_eq!(ack["room"]["name"], "general");
    assert_eq!(ack["room"]["visibility"], "public");
    let history = a.next("history").await;
    assert_eq!(
        history["room"],
        json!({"id": general["id"], "name": "general"})
    );
    assert_eq!(
        seqs(&history),
        [3, 4, 5],
        "the newest HISTORY_LIMIT, oldest first"
    );
    assert_eq!(history["has_more"], true);
    let welcome = a.next("message").await;
    assert_eq!(welcome["kind"], "system");
    assert_eq!(welcome["body"], "Welcome ann to the general room!");
    assert_eq!(welcome["room"]["name"], "general");
    assert!(welcome["created_at"].is_string());
    let presence = a.next("presence").await;
    assert_eq!(presence["status"], "joined");
    assert_eq!(
        presence["user"],
        json!({"id": ann.id, "username": "ann", "display_name": "ann"})
    );

    // The object form, and the others hear it.
    let b = app.socket(&bob.access, t).await;
    ack_ok(&b.call("joinRoom", json!({"room": "general"})).await);
    assert_eq!(
        a.next("message").await["body"],
        "Welcome bob to the general room!"
    );
    let presence = a.next("presence").await;
    assert_eq!(
        (
            presence["status"].as_str(),
            presence["user"]["username"].as_str()
        ),
        (Some("joined"), Some("bob"))
    );
    // Joining a public room over Socket.IO makes no member row.
    assert_eq!(app.count("room_members").await, 0);
}

async fn a_second_socket_of_a_user_is_welcomed_without_presence(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let watcher = app.register("watcher").await;
    let w = app.in_room(&watcher, "general", t).await;

    let first = app.in_room(&ann, "general", t).await;
    assert_eq!(w.next("presence").await["user"]["username"], "ann");
    let second = app.socket(&ann.access, t).await;
    ack_ok(&second.call("joinRoom", json!("general")).await);
    assert_eq!(
        second.next("message").await["body"],
        "Welcome ann to the general room!"
    );
    w.assert_silent("presence", SHORT).await;

    // Leaving with one of two sockets says nothing; the last one says `left`.
    first.disconnect().await;
    w.assert_silent("presence", SHORT).await;
    second.disconnect().await;
    let left = w.next("presence").await;
    assert_eq!(
        (left["status"].as_str(), left["user"]["username"].as_str()),
        (Some("left"), Some("ann"))
    );
}

async fn rejoining_replays_history_and_says_nothing(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let b = app.in_room(&bob, "general", t).await;
    let a = app.in_room(&ann, "general", t).await;
    b.until("presence", |p| p["user"]["username"] == "ann")
        .await;
    b.until("message", |m| {
        m["body"] == "Welcome ann to the general room!"
    })
    .await;

    ack_ok(&a.call("joinRoom", json!("general")).await);
    a.next("history").await;
    b.assert_silent("message", SHORT).await;
    b.assert_silent("presence", Duration::ZERO).await;
}

async fn joining_with_since_resumes_after_that_seq(t: Transport) {
    let app = spawn_app_with(&[("HISTORY_LIMIT", "4")]).await;
    let ann = app.register("ann").await;
    let general = json!({"id": room_id(&app, &ann, "general").await});
    app.seed_messages(&general, &ann, 10).await;
    let a = app.socket(&ann.access, t).await;
    ack_ok(
        &a.call("joinRoom", json!({"room": "general", "since": 3}))
            .await,
    );
    let history = a.next("history").await;
    assert_eq!(seqs(&history), [4, 5, 6, 7]);
    assert_eq!(history["has_more"], true);
    // Paging on with history {after}.
    let page = a
        .call("history", json!({"room": "general", "after": 7}))
        .await;
    ack_ok(&page);
    assert_eq!(seqs(&page), [8, 9, 10]);
    assert_eq!(page["has_more"], false);
    // since past the end replays nothing; a bad since is invalid_input.
    ack_ok(
        &a.call("joinRoom", json!({"room": "general", "since": 99}))
            .await,
    );
    assert_eq!(a.next("history").await["messages"], json!([]));
    ack_error(
        &a.call("joinRoom", json!({"room": "general", "since": -1}))
            .await,
        "invalid_input",
    );
}

async fn a_refused_join_is_forbidden_audited_and_silent(t: Transport) {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let eve = app.register("eve").await;
    let room = app.create_room(&owner, "secret", "private").await;
    let id = room["id"].as_str().unwrap().to_owned();

    let e = app.socket(&eve.access, t).await;
    for (event, payload, asked) in [
        ("joinPrivateRoom", json!({"roomId": id}), json!(id)),
        ("joinRoom", json!("secret"), json!("secret")),
        ("joinRoom", json!({"room": id}), json!(id)),
    ] {
        let ack = e.call(event, payload).await;
        ack_error(&ack, "forbidden");
        let error = e.next("error").await;
        assert_eq!(
            error,
            json!({"code": "forbidden", "message": "You are not authorized to join this room.", "room": asked})
        );
    }
    assert_eq!(app.audits("access_denied").await, 3);

    // Other events on the room are forbidden too, and nothing from it reaches eve.
    ack_error(&e.call("history", json!({"room": id})).await, "forbidden");
    ack_error(
        &e.call("listOnline", json!({"room": id})).await,
        "forbidden",
    );
    ack_error(
        &e.call("sendMessage", json!({"room": id, "body": "hi"}))
            .await,
        "forbidden",
    );
    let o = app.socket(&owner.access, t).await;
    ack_ok(&o.call("joinPrivateRoom", json!({"roomId": id})).await);
    ack_ok(
        &o.call("sendMessage", json!({"room": id, "body": "members only"}))
            .await,
    );
    ack_ok(&o.call("typing", json!({"room": id, "typing": true})).await);
    for event in ["message", "history", "presence", "typing"] {
        e.assert_silent(
            event,
            if event == "message" {
                SHORT
            } else {
                Duration::ZERO
            },
        )
        .await;
    }
    assert_eq!(app.count("messages").await, 1);
}

async fn an_unknown_room_is_not_found(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let a = app.socket(&ann.access, t).await;
    let ack = a.call("joinRoom", json!("nowhere")).await;
    ack_error(&ack, "not_found");
    assert_eq!(
        a.next("error").await,
        json!({"code": "not_found", "message": "Room not found.", "room": "nowhere"})
    );
    let missing = uuid::Uuid::now_v7().to_string();
    ack_error(
        &a.call("joinPrivateRoom", json!({"roomId": missing})).await,
        "not_found",
    );
    assert_eq!(a.next("error").await["room"], missing);
    ack_error(
        &a.call("history", json!({"room": "nowhere"})).await,
        "not_found",
    );
    ack_error(
        &a.call("listOnline", json!({"room": "nowhere"})).await,
        "not_found",
    );
}

async fn members_join_private_rooms_with_the_private_notice(t: Transport) {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&owner, "crew", "private").await;
    app.grant(&owner, &room, &bob, "member").await.ok(200);
    let id = room["id"].as_str().unwrap();
    let o = app.socket(&owner.access, t).await;
    ack_ok(&o.call("joinPrivateRoom", json!({"roomId": id})).await);
    let b = app.socket(&bob.access, t).await;
    let ack = b
        .call("joinPrivateRoom", json!({"roomId": id, "since": 0}))
        .await;
    ack_ok(&ack);
    assert_eq!(ack["room"]["id"], id);
    assert_eq!(b.next("history").await["room"]["name"], "crew");
    let notice = b.next("message").await;
    assert_eq!(notice["kind"], "system");
    assert_eq!(notice["body"], "bob has joined the private discussion.");
    assert_eq!(
        o.next("message").await["body"],
        "owner has joined the private discussion."
    );
    assert_eq!(
        o.next("message").await["body"],
        "bob has joined the private discussion."
    );
    // joinPrivateRoom on a public room follows joinRoom's rule.
    ack_ok(
        &b.call("joinPrivateRoom", json!({"roomId": "general"}))
            .await,
    );
}

async fn leaving_tells_the_room_and_stops_delivery(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", t).await;
    let b = app.in_room(&bob, "general", t).await;
    // Bob's arrival, so that the next presence is his leaving.
    a.next("presence").await;

    ack_ok(&b.call("leaveRoom", json!("general")).await);
    let left = a.next("presence").await;
    assert_eq!(
        (left["status"].as_str(), left["user"]["username"].as_str()),
        (Some("left"), Some("bob"))
    );
    b.drain("message");
    ack_ok(
        &a.call("sendMessage", json!({"room": "general", "body": "bye"}))
            .await,
    );
    b.assert_silent("message", SHORT).await;
    ack_error(
        &b.call("leaveRoom", json!({"room": "general"})).await,
        "not_joined",
    );
    ack_error(
        &b.call("sendMessage", json!({"room": "general", "body": "x"}))
            .await,
        "not_joined",
    );
}

async fn send_message_persists_then_broadcasts_to_everyone_in_the_room(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", t).await;
    let b = app.in_room(&bob, "general", t).await;

    let ack = a
        .call(
            "sendMessage",
            json!({"room": "general", "body": "  hello  ", "client_id": "c-1"}),
        )
        .await;
    ack_ok(&ack);
    let message = ack["message"].clone();
    assert_eq!(message["body"], "hello", "stored trimmed");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["client_id"], "c-1");
    assert_eq!(
        message["sender"],
        json!({"id": ann.id, "username": "ann", "display_name": "ann"})
    );
    // Committed before the ack.
    let stored: i64 = sqlx::query_scalar("select count(*) from messages where body = 'hello'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    for socket in [&a, &b] {
        let live = socket.until("message", |m| m["kind"] == "user").await;
        assert_eq!(
            live["room"],
            json!({"id": message["room_id"], "name": "general"})
        );
        let mut expected = message.as_object().unwrap().clone();
        // The ack is the sender's reading (with their own reactions); a broadcast is no one's.
        assert_eq!(expected.remove("my_reactions"), Some(json!([])));
        expected.insert("kind".into(), json!("user"));
        expected.insert("room".into(), live["room"].clone());
        assert_eq!(live, Value::Object(expected));
    }
    // By room id too.
    let by_id = a
        .call(
            "sendMessage",
            json!({"room": message["room_id"], "body": "again"}),
        )
        .await;
    assert_eq!(by_id["message"]["seq"], 2);
}

async fn send_message_refuses_bad_payloads_and_keeps_the_socket(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let a = app.in_room(&ann, "general", t).await;
    for payload in [
        json!("general"),
        json!(42),
        json!(null),
        json!([1, 2]),
        json!({"body": "no room"}),
        json!({"room": "general"}),
        json!({"room": "general", "body": "   "}),
        json!({"room": "general", "body": "x".repeat(4001)}),
        json!({"room": "general", "body": 5}),
        json!({"room": 5, "body": "x"}),
        json!({"room": "general", "body": "x", "client_id": "c".repeat(65)}),
        json!({"room": "general", "body": "x", "client_id": 7}),
    ] {
        ack_error(&a.call("sendMessage", payload).await, "invalid_input");
    }
    ack_error(&a.call_no_args("sendMessage").await, "invalid_input");
    ack_error(&a.call_no_args("joinRoom").await, "invalid_input");
    ack_error(&a.call("noSuchEvent", json!({})).await, "invalid_input");
    assert_eq!(app.count("messages").await, 0);
    assert!(a.is_connected());
    let ack = a
        .call(
            "sendMessage",
            json!({"room": "general", "body": "ü".repeat(4000)}),
        )
        .await;
    ack_ok(&ack);
    assert_eq!(ack["message"]["seq"], 1, "nothing used up a seq");
}

async fn history_follows_the_rest_rules(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let general = json!({"id": room_id(&app, &ann, "general").await});
    app.seed_messages(&general, &ann, 7).await;
    let a = app.socket(&ann.access, t).await;
    // history needs only the right to join.
    let page = a
        .call("history", json!({"room": "general", "limit": 3}))
        .await;
    ack_ok(&page);
    assert_eq!(seqs(&page), [5, 6, 7]);
    assert_eq!(page["has_more"], true);
    let older = a
        .call(
            "history",
            json!({"room": "general", "before": 5, "limit": 10}),
        )
        .await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 4);
    assert_eq!(older["has_more"], false);
    for bad in [
        json!({"room": "general", "before": 1, "after": 1}),
        json!({"room": "general", "limit": 0}),
        json!({"room": "general", "limit": 201}),
        json!({"room": "general", "after": "x"}),
        json!({"before": 3}),
    ] {
        ack_error(&a.call("history", bad).await, "invalid_input");
    }
}

async fn mark_read_moves_the_position_and_tells_the_users_other_sockets(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&ann, "notes", "public").await;
    app.seed_messages(&room, &ann, 4).await;
    let id = room["id"].as_str().unwrap();
    let phone = app.socket(&ann.access, t).await;
    let laptop = app.socket(&ann.access, t).await;
    ack_error(
        &phone
            .call("markRead", json!({"room": "notes", "seq": 1}))
            .await,
        "not_joined",
    );
    ack_ok(&phone.call("joinRoom", json!("notes")).await);
    ack_ok(
        &phone
            .call("markRead", json!({"room": "notes", "seq": 2}))
            .await,
    );
    let read = laptop.next("read").await;
    assert_eq!(read, json!({"room": {"id": id, "name": "notes"}, "seq": 2}));
    phone.assert_silent("read", SHORT).await;
    // Capped at last_seq; never backwards (and then nobody hears anything).
    ack_ok(
        &phone
            .call("markRead", json!({"room": "notes", "seq": 40}))
            .await,
    );
    assert_eq!(laptop.next("read").await["seq"], 4);
    ack_ok(
        &phone
            .call("markRead", json!({"room": "notes", "seq": 1}))
            .await,
    );
    laptop.assert_silent("read", SHORT).await;
    ack_error(
        &phone
            .call("markRead", json!({"room": "notes", "seq": "3"}))
            .await,
        "invalid_input",
    );

    // REST tells every socket of the user, the caller's included, when the position moves.
    app.put(
        &format!("/api/rooms/{id}/read"),
        Some(&ann.access),
        json!({"seq": 4}),
    )
    .await
    .ok(204);
    phone.assert_silent("read", SHORT).await;
    app.seed_messages(&room, &ann, 2).await;
    app.put(
        &format!("/api/rooms/{id}/read"),
        Some(&ann.access),
        json!({"seq": 6}),
    )
    .await
    .ok(204);
    for s in [&phone, &laptop] {
        assert_eq!(
            s.next("read").await,
            json!({"room": {"id": id, "name": "notes"}, "seq": 6})
        );
    }

    // A public room's non-member may not mark it read.
    let b = app.in_room(&bob, "notes", t).await;
    ack_error(
        &b.call("markRead", json!({"room": "notes", "seq": 1})).await,
        "forbidden",
    );
}

async fn typing_reaches_the_others_only(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.socket(&ann.access, t).await;
    ack_error(
        &a.call("typing", json!({"room": "general", "typing": true}))
            .await,
        "not_joined",
    );
    ack_ok(&a.call("joinRoom", json!("general")).await);
    let b = app.in_room(&bob, "general", t).await;
    ack_ok(
        &a.call("typing", json!({"room": "general", "typing": true}))
            .await,
    );
    let typing = b.next("typing").await;
    assert_eq!(
        typing["user"],
        json!({"id": ann.id, "username": "ann", "display_name": "ann"})
    );
    assert_eq!(typing["typing"], true);
    assert_eq!(typing["room"]["name"], "general");
    a.assert_silent("typing", SHORT).await;
    ack_error(
        &a.call("typing", json!({"room": "general", "typing": "yes"}))
            .await,
        "invalid_input",
    );
}

async fn direct_messages_reach_every_socket_of_both_users(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.socket(&ann.access, t).await;
    let b1 = app.socket(&bob.access, t).await;
    let b2 = app.socket(&bob.access, t).await;
    let ack = a
        .call(
            "directMessage",
            json!({"to": "BOB", "body": "psst", "client_id": "d-1"}),
        )
        .await;
    ack_ok(&ack);
    let mut ids = [ann.id.to_string(), bob.id.to_string()];
    ids.sort();
    assert_eq!(ack["room"]["name"], format!("dm:{}-{}", ids[0], ids[1]));
    assert_eq!(ack["room"]["visibility"], "direct");
    assert_eq!(ack["message"]["body"], "psst");
    for s in [&a, &b1, &b2] {
        let m = s.next("message").await;
        assert_eq!(
            (m["kind"].as_str(), m["body"].as_str()),
            (Some("user"), Some("psst"))
        );
        assert_eq!(m["room"]["id"], ack["room"]["id"]);
    }
    // By id, exactly once, and the room is the same one REST gives.
    let again = a
        .call(
            "directMessage",
            json!({"to": bob.id, "body": "psst", "client_id": "d-1"}),
        )
        .await;
    assert_eq!(again["message"]["id"], ack["message"]["id"]);
    b1.assert_silent("message", SHORT).await;
    let rest = app
        .post(
            &format!("/api/direct/{}", ann.id),
            Some(&bob.access),
            json!({}),
        )
        .await;
    assert_eq!(rest.ok(200)["id"], ack["room"]["id"]);

    ack_error(
        &a.call("directMessage", json!({"to": "ann", "body": "me"}))
            .await,
        "invalid_input",
    );
    ack_error(
        &a.call("directMessage", json!({"to": "nobody", "body": "x"}))
            .await,
        "not_found",
    );
    ack_error(
        &a.call("directMessage", json!({"to": "bob", "body": ""}))
            .await,
        "invalid_input",
    );
    ack_error(
        &a.call("directMessage", json!({"body": "x"})).await,
        "invalid_input",
    );
}

async fn list_online_counts_distinct_users(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a1 = app.in_room(&ann, "general", t).await;
    let _a2 = app.in_room(&ann, "general", t).await;
    let b = app.in_room(&bob, "general", t).await;
    let outsider = app.register("cat").await;
    let c = app.socket(&outsider.access, t).await;
    let ack = c.call("listOnline", json!({"room": "general"})).await;
    ack_ok(&ack);
    let names: Vec<&str> = ack["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob"]);
    assert_eq!(
        ack["users"][0],
        json!({"id": ann.id, "username": "ann", "display_name": "ann"})
    );
    b.disconnect().await;
    // The server has handled the disconnect once the room hears bob leave.
    a1.until("presence", |p| p["status"] == "left").await;
    let ack = c.call("listOnline", json!("general")).await;
    assert_eq!(ack["users"].as_array().unwrap().len(), 1);
}

async fn messages_and_typing_share_one_rate_limit(t: Transport) {
    let app = spawn_app_with(&[("MESSAGE_RATE", "1"), ("MESSAGE_BURST", "3")]).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", t).await;
    ack_ok(
        &a.call("sendMessage", json!({"room": "general", "body": "1"}))
            .await,
    );
    ack_ok(
        &a.call("typing", json!({"room": "general", "typing": true}))
            .await,
    );
    ack_ok(
        &a.call("directMessage", json!({"to": "bob", "body": "2"}))
            .await,
    );
    let refused = a
        .call("sendMessage", json!({"room": "general", "body": "3"}))
        .await;
    ack_error(&refused, "rate_limited");
    assert!(
        refused["error"]["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 1000),
        "{refused}"
    );
    ack_error(
        &a.call("typing", json!({"room": "general", "typing": false}))
            .await,
        "rate_limited",
    );
    assert_eq!(
        app.count("messages").await,
        2,
        "nothing stored over the limit"
    );
    // Per user: bob is unaffected.
    let b = app.in_room(&bob, "general", t).await;
    ack_ok(
        &b.call("sendMessage", json!({"room": "general", "body": "bob"}))
            .await,
    );
}

async fn a_kick_takes_the_users_sockets_out_at_once(t: Transport) {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&owner, "crew", "private").await;
    let id = room["id"].as_str().unwrap().to_owned();
    app.grant(&owner, &room, &bob, "member").await.ok(200);
    let o = app.socket(&owner.access, t).await;
    let b1 = app.socket(&bob.access, t).await;
    let b2 = app.socket(&bob.access, t).await;
    for s in [&o, &b1, &b2] {
        ack_ok(&s.call("joinPrivateRoom", json!({"roomId": id})).await);
    }
    // Everything the joins said has arrived before the kick: the owner heard three notices
    // and bob's arrival, bob's first socket two notices, the second its own.
    o.until("presence", |p| p["user"]["username"] == "bob")
        .await;
    for (s, notices) in [(&o, 3), (&b1, 2), (&b2, 1)] {
        for _ in 0..notices {
            assert_eq!(s.next("message").await["kind"], "system");
        }
    }
    app.delete(
        &format!("/api/rooms/{id}/members/{}", bob.id),
        Some(&owner.access),
    )
    .await
    .ok(204);
    for s in [&b1, &b2] {
        let removed = s.next("removed").await;
        assert_eq!(
            removed,
            json!({"room": {"id": id, "name": "crew"}, "reason": "kicked"})
        );
    }
    let left = o.next("presence").await;
    assert_eq!(
        (left["status"].as_str(), left["user"]["username"].as_str()),
        (Some("left"), Some("bob"))
    );
    ack_ok(
        &o.call("sendMessage", json!({"room": id, "body": "after the kick"}))
            .await,
    );
    b1.assert_silent("message", SHORT).await;
    b2.assert_silent("message", Duration::ZERO).await;
    ack_error(
        &b1.call("sendMessage", json!({"room": id, "body": "let me in"}))
            .await,
        "forbidden",
    );
    ack_error(
        &b1.call("joinPrivateRoom", json!({"roomId": id})).await,
        "forbidden",
    );

    // Leaving by oneself says `left`.
    let carl = app.register("carl").await;
    app.grant(&owner, &room, &carl, "member").await.ok(200);
    let c = app.socket(&carl.access, t).await;
    ack_ok(&c.call("joinPrivateRoom", json!({"roomId": id})).await);
    app.delete(
        &format!("/api/rooms/{id}/members/{}", carl.id),
        Some(&carl.access),
    )
    .await
    .ok(204);
    assert_eq!(c.next("removed").await["reason"], "left");
}

async fn deleting_a_room_removes_its_sockets(t: Transport) {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&owner, "doomed", "public").await;
    let id = room["id"].as_str().unwrap().to_owned();
    let b = app.in_room(&bob, "doomed", t).await;
    app.delete(&format!("/api/rooms/{id}"), Some(&owner.access))
        .await
        .ok(204);
    let removed = b.next("removed").await;
    assert_eq!(
        removed,
        json!({"room": {"id": id, "name": "doomed"}, "reason": "room_deleted"})
    );
    let after = b
        .call("sendMessage", json!({"room": id, "body": "hello?"}))
        .await;
    assert_eq!(after["ok"], false);
    assert!(b.is_connected());
}

async fn logout_password_change_and_disabling_disconnect_sockets(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let ann_phone = app.login("ann", &ann.password).await;
    let a = app.socket(&ann.access, t).await;
    let p = app.socket(&ann_phone.access, t).await;

    // Logout: only that session's sockets.
    app.request(
        Method::POST,
        "/api/auth/logout",
        Some(&ann_phone.access),
        None,
    )
    .await
    .ok(204);
    p.wait_disconnected().await;
    assert!(a.is_connected());

    // Password change: every other session's sockets, not the caller's.
    let tablet = app.login("ann", &ann.password).await;
    let tb = app.socket(&tablet.access, t).await;
    app.post(
        "/api/me/password",
        Some(&ann.access),
        json!({"current_password": ann.password, "new_password": "new password 1"}),
    )
    .await
    .ok(204);
    tb.wait_disconnected().await;
    assert!(a.is_connected());

    // Disabling: every socket.
    let boss = app.register("boss").await;
    app.make_admin(&boss).await;
    app.post(
        &format!("/api/admin/users/{}/disable", ann.id),
        Some(&boss.access),
        json!({}),
    )
    .await
    .ok(204);
    a.wait_disconnected().await;

    // A reused refresh token disconnects its session's sockets.
    let bob = app.register("bob").await;
    let b = app.socket(&bob.access, t).await;
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": bob.refresh}),
    )
    .await
    .ok(200);
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": bob.refresh}),
    )
    .await
    .error(401, "unauthorized");
    b.wait_disconnected().await;
}
