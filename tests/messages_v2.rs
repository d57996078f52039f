//! Messages v2 on one node: edit, delete, quoted replies and threads, reactions, mentions,
//! metadata, the change feed and resuming with `since_rev`, over Socket.IO (each socket scenario
//! runs once per transport) and over REST. Every rule here is from the contract's "Messages" and
//! "v2 details" sections and from spec13 (the decisions where the contract is silent).

mod common;

use std::time::Duration;

use common::{
    messages::{
        all_messages, assert_tombstone, changes, db_reaction_count, last_rev, mention_ids,
        message_at, message_rows_containing, my_reactions, next_user_message, num, reaction_path,
        reactions, revs, room_named, room_now, send, send_json, text, user_ref, View,
    },
    seqs,
    sio::{ack_error, ack_ok, both_transports, SioClient, Transport},
    spawn_app, spawn_app_with, spawn_with_state, Session, TestApp,
};
use futures::future::join_all;
use huddle::app::AppState;
use serde_json::{json, Value};
use uuid::Uuid;

both_transports!(
    edit_by_the_sender_updates_the_message_and_tells_the_room,
    edit_refusals_change_nothing,
    edit_metadata_is_replaced_when_given_and_kept_when_absent,
    delete_leaves_a_tombstone_and_tells_the_room,
    delete_is_for_the_sender_owner_moderator_and_admin_only,
    a_thread_reply_raises_the_root_summary_with_a_second_rev,
    thread_and_reply_ids_are_checked,
    reply_to_quotes_a_message_ref_that_follows_deletion,
    reactions_count_absolutely_and_tell_the_room,
    bad_emoji_and_deleted_messages_refuse_reactions,
    mentions_resolve_names_that_may_read_the_room,
    mentioned_goes_to_every_socket_of_newly_mentioned_users,
    resume_with_since_rev_misses_no_message_and_no_change,
    resume_updates_are_capped_and_page_on_with_the_change_feed,
    since_rev_needs_since,
    edit_delete_and_react_share_the_message_bucket,
);

both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_reactions_on_one_node_arrive_in_rev_order_with_absolute_counts,
);

const SHORT: Duration = Duration::from_millis(300);
const WS: Transport = Transport::WebSocket;

// ------------------------------------------------------------------ helpers

/// Two users with a socket each in `general`, everything their joins said taken out.
struct Pair {
    app: TestApp,
    ann: Session,
    bob: Session,
    a: SioClient,
    b: SioClient,
    /// general's id
    id: String,
}

async fn pair_with(t: Transport, overrides: &[(&str, &str)]) -> Pair {
    let app = spawn_app_with(overrides).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", t).await;
    let b = app.in_room(&bob, "general", t).await;
    // bob's welcome comes before his presence: once the presence is here, so is the welcome.
    a.until("presence", |p| p["user"]["username"] == "bob")
        .await;
    a.drain("message");
    let id = text(&room_named(&app, &ann, "general").await, "id");
    Pair {
        app,
        ann,
        bob,
        a,
        b,
        id,
    }
}

async fn pair(t: Transport) -> Pair {
    pair_with(t, &[]).await
}

impl Pair {
    /// ann sends `body` to general; both sockets' copies of it are taken.
    async fn ann_says(&self, body: &str) -> Value {
        let m = send(&self.a, "general", body).await;
        for s in [&self.a, &self.b] {
            s.until("message", |got| got["id"] == m["id"]).await;
        }
        m
    }

    async fn last_rev(&self) -> i64 {
        last_rev(&self.app, &self.ann, &self.id).await
    }

    fn room_ref(&self) -> Value {
        json!({"id": self.id, "name": "general"})
    }
}

fn edit(room: &str, id: &Value, body: impl Into<Value>) -> Value {
    json!({"room": room, "id": id, "body": body.into()})
}

fn react(room: &str, id: &Value, emoji: &str, on: bool) -> Value {
    json!({"room": room, "id": id, "emoji": emoji, "on": on})
}

/// Asserts two RFC 3339 times name the same instant.
#[track_caller]
fn same_instant(a: &Value, b: &Value) {
    use time::{format_description::well_known::Rfc3339, OffsetDateTime};
    let parse = |v: &Value| {
        OffsetDateTime::parse(
            v.as_str().unwrap_or_else(|| panic!("not a time: {v}")),
            &Rfc3339,
        )
        .unwrap_or_else(|e| panic!("not RFC 3339: {v}: {e}"))
    };
    assert_eq!(parse(a), parse(b), "{a} vs {b}");
}

/// The message with this id in a list of messages.
#[track_caller]
fn find<'a>(messages: &'a [Value], id: &Value) -> &'a Value {
    messages
        .iter()
        .find(|m| m["id"] == *id)
        .unwrap_or_else(|| panic!("no message {id} in {messages:?}"))
}

/// `unread_mentions` of one of the caller's rooms in `/api/me/rooms`.
async fn unread_mentions(app: &TestApp, who: &Session, room_id: &str) -> i64 {
    let rooms = app.get("/api/me/rooms", Some(&who.access)).await;
    let room = rooms.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room_id)
        .unwrap_or_else(|| panic!("{room_id} not among {}", rooms.body))
        .clone();
    num(&room, "unread_mentions")
}

async fn read_up_to(app: &TestApp, who: &Session, room_id: &str, seq: i64) {
    app.put(
        &format!("/api/rooms/{room_id}/read"),
        Some(&who.access),
        json!({"seq": seq}),
    )
    .await
    .ok(204);
}

/// A GET whose future owns its path.
async fn get_as(app: &TestApp, path: String, token: &str) -> common::Reply {
    app.get(&path, Some(token)).await
}

fn message_path(room_id: &str, id: &Value) -> String {
    format!("/api/rooms/{room_id}/messages/{}", id.as_str().unwrap())
}

// ------------------------------------------------------------------ edit

async fn edit_by_the_sender_updates_the_message_and_tells_the_room(t: Transport) {
    let p = pair(t).await;
    let m = p.ann_says("hello").await;
    assert!(m["edited_at"].is_null(), "{m}");
    let rev0 = p.last_rev().await;
    assert_eq!(num(&m, "rev"), rev0);

    let ack =
        p.a.call("editMessage", edit("general", &m["id"], "  hello again  "))
            .await;
    let e = ack_ok(&ack)["message"].clone();
    assert_eq!(e["id"], m["id"]);
    assert_eq!(e["seq"], m["seq"]);
    assert_eq!(e["body"], "hello again", "stored trimmed");
    assert_eq!(e["created_at"], m["created_at"]);
    assert!(e["edited_at"].is_string(), "edited_at set: {e}");
    assert_eq!(num(&e, "rev"), rev0 + 1);
    assert_eq!(e["my_reactions"], json!([]), "acks carry my_reactions: {e}");
    assert_eq!(p.last_rev().await, rev0 + 1, "one change, one rev");

    for s in [&p.a, &p.b] {
        let u = s.next("messageUpdated").await;
        assert_eq!(u["room"], p.room_ref());
        assert_eq!(u["message"]["id"], m["id"]);
        assert_eq!(u["message"]["body"], "hello again");
        assert_eq!(u["message"]["rev"], e["rev"]);
        assert_eq!(u["message"]["edited_at"], e["edited_at"]);
        assert!(
            u["message"].get("my_reactions").is_none(),
            "broadcasts carry no my_reactions: {u}"
        );
    }
    let stored = message_at(&p.app, &p.bob, &p.id, num(&m, "seq")).await;
    assert_eq!(stored["body"], "hello again");
    assert_eq!(stored["rev"], e["rev"]);
    assert_eq!(stored["edited_at"], e["edited_at"]);

    // The longest body allowed, by room id this time: another change, another rev.
    let long = "é".repeat(4000);
    let ack =
        p.a.call("editMessage", edit(&p.id, &m["id"], long.as_str()))
            .await;
    assert_eq!(ack_ok(&ack)["message"]["body"], long.as_str());
    assert_eq!(num(&ack["message"], "rev"), rev0 + 2);
    assert_eq!(p.last_rev().await, rev0 + 2);
}

async fn edit_refusals_change_nothing(t: Transport) {
    let p = pair(t).await;
    let m = p.ann_says("mine").await;
    let gone = p.ann_says("soon gone").await;
    ack_ok(
        &p.a.call(
            "deleteMessage",
            json!({"room": "general", "id": gone["id"]}),
        )
        .await,
    );
    p.app.create_room(&p.ann, "other", "public").await;
    let elsewhere = p.app.in_room(&p.ann, "other", t).await;
    let foreign = send(&elsewhere, "other", "elsewhere").await;
    let secret = p.app.create_room(&p.bob, "secret", "private").await;
    for s in [&p.a, &p.b] {
        s.until("messageDeleted", |d| d["id"] == gone["id"]).await;
    }
    let rev0 = p.last_rev().await;

    // Someone else's message.
    ack_error(
        &p.b.call("editMessage", edit("general", &m["id"], "hijack"))
            .await,
        "forbidden",
    );
    // A deleted one.
    ack_error(
        &p.a.call("editMessage", edit("general", &gone["id"], "back"))
            .await,
        "invalid_input",
    );
    // Bodies out of bounds.
    for body in [json!(""), json!("   "), json!("x".repeat(4001)), json!(5)] {
        let ack =
            p.a.call("editMessage", edit("general", &m["id"], body.clone()))
                .await;
        let error = ack_error(&ack, "invalid_input");
        assert!(error["fields"]["body"].is_string(), "{body}: {ack}");
    }
    // Unknown, malformed, of another room.
    ack_error(
        &p.a.call(
            "editMessage",
            edit("general", &json!(Uuid::now_v7().to_string()), "x"),
        )
        .await,
        "not_found",
    );
    ack_error(
        &p.a.call("editMessage", edit("general", &json!("not-a-uuid"), "x"))
            .await,
        "invalid_input",
    );
    ack_error(
        &p.a.call("editMessage", edit("general", &foreign["id"], "x"))
            .await,
        "not_found",
    );
    // A socket that has not joined the room.
    let lone = p.app.socket(&p.ann.access, t).await;
    ack_error(
        &lone
            .call("editMessage", edit("general", &m["id"], "x"))
            .await,
        "not_joined",
    );
    // A room the user may not join: forbidden, before not_joined.
    ack_error(
        &p.a.call(
            "editMessage",
            edit(secret["id"].as_str().unwrap(), &m["id"], "x"),
        )
        .await,
        "forbidden",
    );

    assert_eq!(p.last_rev().await, rev0, "no refusal took a rev");
    let stored = message_at(&p.app, &p.ann, &p.id, num(&m, "seq")).await;
    assert_eq!(stored["body"], "mine");
    assert!(stored["edited_at"].is_null(), "{stored}");
    p.a.assert_silent("messageUpdated", SHORT).await;
    p.b.assert_silent("messageUpdated", Duration::ZERO).await;
}

async fn edit_metadata_is_replaced_when_given_and_kept_when_absent(t: Transport) {
    let p = pair(t).await;
    let card = json!({"ticket": "T-1", "tags": ["a", "b"], "n": {"deep": true}});
    let m = send_json(
        &p.a,
        json!({"room": "general", "body": "card", "metadata": card}),
    )
    .await;
    assert_eq!(m["metadata"], card);

    let ack =
        p.a.call("editMessage", edit("general", &m["id"], "card v2"))
            .await;
    assert_eq!(
        ack_ok(&ack)["message"]["metadata"],
        card,
        "kept when absent"
    );

    let mut with = edit("general", &m["id"], "card v3");
    with["metadata"] = json!({"ticket": "T-2"});
    let ack = p.a.call("editMessage", with).await;
    assert_eq!(
        ack_ok(&ack)["message"]["metadata"],
        json!({"ticket": "T-2"}),
        "replaced, not merged"
    );
    let rev = p.last_rev().await;

    for bad in [
        json!([1]),
        json!("x"),
        json!(5),
        json!({"k": "x".repeat(4089)}),
    ] {
        let mut with = edit("general", &m["id"], "card v4");
        with["metadata"] = bad.clone();
        let ack = p.a.call("editMessage", with).await;
        assert!(
            ack_error(&ack, "invalid_input")["fields"]["metadata"].is_string(),
            "{ack}"
        );
    }
    let stored = message_at(&p.app, &p.bob, &p.id, num(&m, "seq")).await;
    assert_eq!(stored["metadata"], json!({"ticket": "T-2"}));
    assert_eq!(stored["body"], "card v3");
    assert_eq!(p.last_rev().await, rev);
}

#[tokio::test]
async fn edit_window_forbids_late_edits_on_both_transports() {
    let app = spawn_app_with(&[("EDIT_WINDOW", "1")]).await;
    let ann = app.register("ann").await;
    let a = app.in_room(&ann, "general", WS).await;
    let id = text(&room_named(&app, &ann, "general").await, "id");
    let old = send(&a, "general", "old").await;
    let fresh = send(&a, "general", "fresh").await;
    // Inside the window: fine.
    ack_ok(
        &a.call(
            "editMessage",
            edit("general", &fresh["id"], "fresh, edited"),
        )
        .await,
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rev = last_rev(&app, &ann, &id).await;
    ack_error(
        &a.call("editMessage", edit("general", &old["id"], "too late"))
            .await,
        "forbidden",
    );
    app.patch(
        &message_path(&id, &old["id"]),
        Some(&ann.access),
        json!({"body": "too late"}),
    )
    .await
    .error(403, "forbidden");
    assert_eq!(last_rev(&app, &ann, &id).await, rev);
    assert_eq!(
        message_at(&app, &ann, &id, num(&old, "seq")).await["body"],
        "old"
    );
    // Deleting is not bounded by the edit window.
    app.delete(&message_path(&id, &old["id"]), Some(&ann.access))
        .await
        .ok(204);
}

#[tokio::test]
async fn rest_edit_follows_the_socket_rules() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let carl = app.register("carl").await;
    let a = app.in_room(&ann, "general", WS).await;
    let b = app.in_room(&bob, "general", WS).await;
    let gid = text(&room_named(&app, &ann, "general").await, "id");
    let m = send(&a, "general", "hello").await;
    let path = message_path(&gid, &m["id"]);
    let rev0 = last_rev(&app, &ann, &gid).await;

    // The sender (no member row in a public room) edits.
    let reply = app
        .patch(&path, Some(&ann.access), json!({"body": " edited "}))
        .await;
    let e = reply.ok(200).clone();
    assert_eq!(e["body"], "edited");
    assert!(e["edited_at"].is_string());
    assert_eq!(num(&e, "rev"), rev0 + 1);
    assert_eq!(e["my_reactions"], json!([]));
    assert_eq!(last_rev(&app, &ann, &gid).await, rev0 + 1);
    let u = b
        .until("messageUpdated", |u| u["message"]["id"] == m["id"])
        .await;
    assert_eq!(u["message"]["body"], "edited");
    assert_eq!(u["room"], json!({"id": gid, "name": "general"}));
    // The one-message route shows the same.
    let one = app.get(&path, Some(&bob.access)).await;
    assert_eq!(one.ok(200)["body"], "edited");
    assert_eq!(one.body["rev"], e["rev"]);

    // Not the sender.
    app.patch(&path, Some(&bob.access), json!({"body": "hijack"}))
        .await
        .error(403, "forbidden");
    // Bodies out of bounds.
    for body in [
        json!({"body": ""}),
        json!({"body": "  "}),
        json!({"body": "x".repeat(4001)}),
        json!({}),
    ] {
        let reply = app.patch(&path, Some(&ann.access), body.clone()).await;
        assert!(
            reply.error(400, "invalid_input")["fields"]["body"].is_string(),
            "{body}: {}",
            reply.body
        );
    }
    // Metadata: replaced when given, kept when absent, bounded.
    let reply = app
        .patch(
            &path,
            Some(&ann.access),
            json!({"body": "x", "metadata": {"k": 1}}),
        )
        .await;
    assert_eq!(reply.ok(200)["metadata"], json!({"k": 1}));
    let reply = app
        .patch(&path, Some(&ann.access), json!({"body": "y"}))
        .await;
    assert_eq!(reply.ok(200)["metadata"], json!({"k": 1}));
    for bad in [json!([1]), json!({"k": "x".repeat(4089)})] {
        let reply = app
            .patch(
                &path,
                Some(&ann.access),
                json!({"body": "z", "metadata": bad}),
            )
            .await;
        assert!(reply.error(400, "invalid_input")["fields"]["metadata"].is_string());
    }
    // Unknown, malformed (a path: 404), another room's.
    app.patch(
        &format!("/api/rooms/{gid}/messages/{}", Uuid::now_v7()),
        Some(&ann.access),
        json!({"body": "x"}),
    )
    .await
    .error(404, "not_found");
    app.patch(
        &format!("/api/rooms/{gid}/messages/not-a-uuid"),
        Some(&ann.access),
        json!({"body": "x"}),
    )
    .await
    .error(404, "not_found");
    let other = app.create_room(&ann, "other", "public").await;
    app.patch(
        &message_path(other["id"].as_str().unwrap(), &m["id"]),
        Some(&ann.access),
        json!({"body": "x"}),
    )
    .await
    .error(404, "not_found");

    // A private room: a non-member is answered as for the room (404), the sender edits.
    let crew = app.create_room(&bob, "crew", "private").await;
    let crew_id = text(&crew, "id");
    let bc = app.in_room(&bob, "crew", WS).await;
    let pm = send(&bc, "crew", "private words").await;
    let ppath = message_path(&crew_id, &pm["id"]);
    for who in [&ann, &carl] {
        app.patch(&ppath, Some(&who.access), json!({"body": "x"}))
            .await
            .error(404, "not_found");
    }
    app.patch(&ppath, Some(&bob.access), json!({"body": "still private"}))
        .await
        .ok(200);

    // A deleted message cannot be edited.
    app.delete(&path, Some(&ann.access)).await.ok(204);
    let rev = last_rev(&app, &ann, &gid).await;
    app.patch(&path, Some(&ann.access), json!({"body": "back"}))
        .await
        .error(400, "invalid_input");
    assert_eq!(last_rev(&app, &ann, &gid).await, rev);
    assert_tombstone(&message_at(&app, &ann, &gid, num(&m, "seq")).await);
}

// ------------------------------------------------------------------ delete

async fn delete_leaves_a_tombstone_and_tells_the_room(t: Transport) {
    let p = pair(t).await;
    let secret = "the launch code is swordfish-4242";
    let m = send_json(
        &p.a,
        json!({"room": "general", "body": format!("@bob {secret}"), "metadata": {"note": secret}}),
    )
    .await;
    assert_eq!(mention_ids(&m), [p.bob.id.to_string()]);
    ack_ok(
        &p.b.call("react", react("general", &m["id"], "👍", true))
            .await,
    );
    for s in [&p.a, &p.b] {
        s.next("reaction").await;
        s.drain("message");
    }
    let rev0 = p.last_rev().await;

    let ack =
        p.a.call("deleteMessage", json!({"room": "general", "id": m["id"]}))
            .await;
    ack_ok(&ack);
    for s in [&p.a, &p.b] {
        let d = s.next("messageDeleted").await;
        assert_eq!(
            d,
            json!({"room": p.room_ref(), "id": m["id"], "seq": m["seq"], "rev": rev0 + 1})
        );
    }
    assert_eq!(p.last_rev().await, rev0 + 1);

    // A tombstone in the history (socket and REST) and the change feed; the seq stays.
    let page = p.b.call("history", json!({"room": "general"})).await;
    let row = find(ack_ok(&page)["messages"].as_array().unwrap(), &m["id"]).clone();
    assert_tombstone(&row);
    assert_eq!(row["seq"], m["seq"]);
    assert_eq!(num(&row, "rev"), rev0 + 1);
    assert_eq!(row["my_reactions"], json!([]), "{row}");
    assert_tombstone(&message_at(&p.app, &p.bob, &p.id, num(&m, "seq")).await);
    let feed = changes(
        &p.app,
        &p.bob,
        &p.id,
        Some(rev0.to_string()).as_deref(),
        None,
    )
    .await;
    let feed = feed.ok(200);
    assert_eq!(revs(feed), [rev0 + 1]);
    assert_tombstone(&feed["messages"][0]);
    let all = all_messages(&p.app, &p.ann, &p.id).await;
    let got_seqs: Vec<i64> = all.iter().map(|m| num(m, "seq")).collect();
    assert_eq!(
        got_seqs,
        (1..=got_seqs.len() as i64).collect::<Vec<_>>(),
        "no gap"
    );

    // The body is gone from the database, with its reactions and mentions.
    assert_eq!(message_rows_containing(&p.app.db, "swordfish").await, 0);
    assert_eq!(
        db_reaction_count(&p.app.db, m["id"].as_str().unwrap(), "👍").await,
        0
    );
    let mentions: i64 = sqlx::query_scalar("select count(*) from mentions where message_id = $1")
        .bind(m["id"].as_str().unwrap().parse::<Uuid>().unwrap())
        .fetch_one(&p.app.db)
        .await
        .unwrap();
    assert_eq!(mentions, 0);

    // Twice: ok again, nothing changes.
    ack_ok(
        &p.a.call("deleteMessage", json!({"room": "general", "id": m["id"]}))
            .await,
    );
    assert_eq!(p.last_rev().await, rev0 + 1);
    p.a.assert_silent("messageDeleted", SHORT).await;
    p.b.assert_silent("messageDeleted", Duration::ZERO).await;

    // Unknown, malformed, and a socket that has not joined.
    let other = p.ann_says("still here").await;
    ack_error(
        &p.a.call(
            "deleteMessage",
            json!({"room": "general", "id": Uuid::now_v7().to_string()}),
        )
        .await,
        "not_found",
    );
    ack_error(
        &p.a.call("deleteMessage", json!({"room": "general", "id": "nope"}))
            .await,
        "invalid_input",
    );
    let lone = p.app.socket(&p.ann.access, t).await;
    ack_error(
        &lone
            .call(
                "deleteMessage",
                json!({"room": "general", "id": other["id"]}),
            )
            .await,
        "not_joined",
    );
    assert_eq!(
        message_at(&p.app, &p.ann, &p.id, num(&other, "seq")).await["body"],
        "still here"
    );
}

async fn delete_is_for_the_sender_owner_moderator_and_admin_only(t: Transport) {
    let app = spawn_app().await;
    let own = app.register("own").await;
    let modr = app.register("modr").await;
    let mem = app.register("mem").await;
    let other = app.register("other").await;
    let adm = app.register("adm").await;
    app.make_admin(&adm).await;
    let crew = app.create_room(&own, "crew", "private").await;
    let crew_id = text(&crew, "id");
    app.grant(&own, &crew, &modr, "moderator").await.ok(200);
    for who in [&mem, &other, &adm] {
        app.grant(&own, &crew, who, "member").await.ok(200);
    }
    let mut sockets = Vec::new();
    for who in [&own, &modr, &mem, &other, &adm] {
        sockets.push(app.in_room(who, "crew", t).await);
    }
    let [o, md, me, ot, ad] = <[SioClient; 5]>::try_from(sockets).ok().unwrap();
    let mut ms = Vec::new();
    for i in 1..=4 {
        ms.push(send(&me, "crew", &format!("note {i}")).await);
    }
    let del = |m: &Value| json!({"room": "crew", "id": m["id"]});

    // Another member may not, and neither may the owner edit it.
    ack_error(&ot.call("deleteMessage", del(&ms[0])).await, "forbidden");
    ack_error(
        &o.call("editMessage", edit("crew", &ms[0]["id"], "owner's words"))
            .await,
        "forbidden",
    );
    assert_eq!(
        message_at(&app, &own, &crew_id, num(&ms[0], "seq")).await["body"],
        "note 1"
    );
    // The sender, the owner, a moderator, a workspace admin (a plain member here).
    for (s, m) in [(&me, &ms[0]), (&o, &ms[1]), (&md, &ms[2]), (&ad, &ms[3])] {
        ack_ok(&s.call("deleteMessage", del(m)).await);
        assert_tombstone(&message_at(&app, &own, &crew_id, num(m, "seq")).await);
    }
    assert_eq!(message_rows_containing(&app.db, "note ").await, 0);
}

#[tokio::test]
async fn rest_delete_follows_the_permissions_and_is_idempotent() {
    let app = spawn_app().await;
    let own = app.register("own").await;
    let modr = app.register("modr").await;
    let mem = app.register("mem").await;
    let other = app.register("other").await;
    let outsider = app.register("outsider").await;
    let adm = app.register("adm").await;
    app.make_admin(&adm).await;
    let crew = app.create_room(&own, "crew", "private").await;
    let crew_id = text(&crew, "id");
    app.grant(&own, &crew, &modr, "moderator").await.ok(200);
    app.grant(&own, &crew, &mem, "member").await.ok(200);
    app.grant(&own, &crew, &other, "member").await.ok(200);
    let watcher = app.in_room(&own, "crew", WS).await;
    let me = app.in_room(&mem, "crew", WS).await;
    let mut ms = Vec::new();
    for i in 1..=3 {
        ms.push(send(&me, "crew", &format!("crew note {i}")).await);
    }
    watcher.drain("message");

    app.delete(&message_path(&crew_id, &ms[0]["id"]), Some(&other.access))
        .await
        .error(403, "forbidden");
    app.delete(
        &message_path(&crew_id, &ms[0]["id"]),
        Some(&outsider.access),
    )
    .await
    .error(404, "not_found");
    for (who, m) in [(&mem, &ms[0]), (&own, &ms[1]), (&modr, &ms[2])] {
        let rev = last_rev(&app, &own, &crew_id).await;
        let reply = app
            .delete(&message_path(&crew_id, &m["id"]), Some(&who.access))
            .await;
        reply.ok(204);
        assert!(reply.body.is_null());
        let d = watcher.next("messageDeleted").await;
        assert_eq!(
            d,
            json!({"room": {"id": crew_id, "name": "crew"}, "id": m["id"], "seq": m["seq"], "rev": rev + 1})
        );
        assert_tombstone(&message_at(&app, &own, &crew_id, num(m, "seq")).await);
    }
    assert_eq!(message_rows_containing(&app.db, "crew note").await, 0);

    // Twice: 204 again, no rev, no event.
    let rev = last_rev(&app, &own, &crew_id).await;
    app.delete(&message_path(&crew_id, &ms[0]["id"]), Some(&mem.access))
        .await
        .ok(204);
    assert_eq!(last_rev(&app, &own, &crew_id).await, rev);
    watcher.assert_silent("messageDeleted", SHORT).await;

    // A public room: a workspace admin who is not a member may; another user may not.
    let gid = text(&room_named(&app, &own, "general").await, "id");
    let g = app.in_room(&mem, "general", WS).await;
    let pm = send(&g, "general", "public words").await;
    app.delete(&message_path(&gid, &pm["id"]), Some(&other.access))
        .await
        .error(403, "forbidden");
    app.delete(&message_path(&gid, &pm["id"]), Some(&adm.access))
        .await
        .ok(204);
    assert_tombstone(&message_at(&app, &own, &gid, num(&pm, "seq")).await);
    // Unknown and malformed ids in the path: 404.
    for id in [Uuid::now_v7().to_string(), "nope".to_owned()] {
        app.delete(
            &format!("/api/rooms/{gid}/messages/{id}"),
            Some(&own.access),
        )
        .await
        .error(404, "not_found");
    }
}

// ------------------------------------------------------------------ replies and threads

async fn a_thread_reply_raises_the_root_summary_with_a_second_rev(t: Transport) {
    let p = pair(t).await;
    let root = p.ann_says("root").await;
    assert!(root["thread"].is_null(), "{root}");
    let rev0 = p.last_rev().await;

    let reply = send_json(
        &p.b,
        json!({"room": "general", "body": "in thread", "thread_root_id": root["id"]}),
    )
    .await;
    assert_eq!(reply["thread_root_id"], root["id"]);
    assert!(reply["thread"].is_null(), "a reply has no summary: {reply}");
    assert!(reply["reply_to"].is_null());
    assert_eq!(num(&reply, "rev"), rev0 + 1);
    assert_eq!(p.last_rev().await, rev0 + 2, "two changes, two revs");

    for s in [&p.a, &p.b] {
        // The root's update comes after the reply: once it is here, the reply is too.
        let u = s.next("messageUpdated").await;
        let before: Vec<Value> = s
            .drain("message")
            .into_iter()
            .filter(|m| m["kind"] != "system")
            .collect();
        assert_eq!(
            before.len(),
            1,
            "the reply arrives before the root's update"
        );
        assert_eq!(before[0]["id"], reply["id"]);
        assert_eq!(u["room"], p.room_ref());
        let r = &u["message"];
        assert_eq!(r["id"], root["id"]);
        assert_eq!(num(r, "rev"), rev0 + 2);
        assert_eq!(r["thread"]["reply_count"], 1);
        assert_eq!(r["thread"]["last_reply_seq"], reply["seq"]);
        same_instant(&r["thread"]["last_reply_at"], &reply["created_at"]);
    }

    let reply2 = send_json(
        &p.a,
        json!({"room": "general", "body": "again", "thread_root_id": root["id"]}),
    )
    .await;
    assert_eq!(p.last_rev().await, rev0 + 4);
    let stored = message_at(&p.app, &p.bob, &p.id, num(&root, "seq")).await;
    assert_eq!(stored["thread"]["reply_count"], 2);
    assert_eq!(stored["thread"]["last_reply_seq"], reply2["seq"]);
    assert_eq!(num(&stored, "rev"), rev0 + 4);
    // A thread reply is a room message like any other.
    let all = all_messages(&p.app, &p.bob, &p.id).await;
    assert_eq!(find(&all, &reply2["id"])["thread_root_id"], root["id"]);

    // A deleted reply stays a tombstone in its thread; the count does not go down.
    ack_ok(
        &p.a.call(
            "deleteMessage",
            json!({"room": "general", "id": reply2["id"]}),
        )
        .await,
    );
    let stored = message_at(&p.app, &p.bob, &p.id, num(&root, "seq")).await;
    assert_eq!(stored["thread"]["reply_count"], 2);
    let thread = p
        .app
        .get(
            &format!("/api/rooms/{}/threads/{}/messages", p.id, text(&root, "id")),
            Some(&p.bob.access),
        )
        .await;
    let page = thread.ok(200);
    assert_eq!(seqs(page), [num(&reply, "seq"), num(&reply2, "seq")]);
    assert_tombstone(&page["messages"][1]);
}

async fn thread_and_reply_ids_are_checked(t: Transport) {
    let p = pair(t).await;
    let root = p.ann_says("root").await;
    let reply = send_json(
        &p.a,
        json!({"room": "general", "body": "r", "thread_root_id": root["id"]}),
    )
    .await;
    p.app.create_room(&p.ann, "other", "public").await;
    let elsewhere = p.app.in_room(&p.ann, "other", t).await;
    let foreign = send(&elsewhere, "other", "elsewhere").await;
    let count = p.app.count("messages").await;
    let unknown = json!(Uuid::now_v7().to_string());

    for (field, id, code) in [
        ("thread_root_id", reply["id"].clone(), "invalid_input"),
        ("thread_root_id", unknown.clone(), "not_found"),
        ("thread_root_id", json!("nope"), "invalid_input"),
        ("thread_root_id", foreign["id"].clone(), "not_found"),
        ("reply_to", unknown.clone(), "not_found"),
        ("reply_to", json!("nope"), "invalid_input"),
        ("reply_to", foreign["id"].clone(), "not_found"),
    ] {
        let mut payload = json!({"room": "general", "body": "x"});
        payload[field] = id.clone();
        let ack = p.a.call("sendMessage", payload).await;
        let error = ack_error(&ack, code);
        if id == reply["id"] {
            assert!(error["fields"]["thread_root_id"].is_string(), "{ack}");
        }
    }
    assert_eq!(p.app.count("messages").await, count, "nothing stored");

    // A reply to a deleted root is allowed, and raises its summary.
    let gone = p.ann_says("soon gone").await;
    ack_ok(
        &p.a.call(
            "deleteMessage",
            json!({"room": "general", "id": gone["id"]}),
        )
        .await,
    );
    let late = send_json(
        &p.b,
        json!({"room": "general", "body": "late", "thread_root_id": gone["id"]}),
    )
    .await;
    assert_eq!(late["thread_root_id"], gone["id"]);
    let stored = message_at(&p.app, &p.bob, &p.id, num(&gone, "seq")).await;
    assert_tombstone(&stored);
    assert_eq!(stored["thread"]["reply_count"], 1);
}

async fn reply_to_quotes_a_message_ref_that_follows_deletion(t: Transport) {
    let p = pair(t).await;
    let long: String = "ü".repeat(150) + &"x".repeat(150);
    let cut: String = long.chars().take(200).collect();
    let q = p.ann_says(&long).await;
    let rev0 = p.last_rev().await;

    let r = send_json(
        &p.b,
        json!({"room": "general", "body": "quoting", "reply_to": q["id"]}),
    )
    .await;
    let quoted = json!({"id": q["id"], "seq": q["seq"], "sender": user_ref(&p.ann), "body": cut});
    assert_eq!(r["reply_to"], quoted);
    assert!(
        r["thread_root_id"].is_null(),
        "a quoted reply is in the main timeline"
    );
    assert_eq!(p.last_rev().await, rev0 + 1, "quoting changes nothing else");
    let live = next_user_message(&p.a).await;
    assert_eq!(live["reply_to"], quoted);
    p.a.assert_silent("messageUpdated", SHORT).await;

    // Deleted: every read shows the quote's current state, "".
    ack_ok(
        &p.a.call("deleteMessage", json!({"room": "general", "id": q["id"]}))
            .await,
    );
    let stored = message_at(&p.app, &p.bob, &p.id, num(&r, "seq")).await;
    let mut gone = quoted.clone();
    gone["body"] = json!("");
    assert_eq!(stored["reply_to"], gone);
    let page = p.b.call("history", json!({"room": "general"})).await;
    assert_eq!(
        find(ack_ok(&page)["messages"].as_array().unwrap(), &r["id"])["reply_to"],
        gone
    );
    let feed = changes(&p.app, &p.bob, &p.id, Some("0"), Some("200")).await;
    let feed = feed.ok(200)["messages"].as_array().unwrap().clone();
    assert_eq!(find(&feed, &r["id"])["reply_to"], gone);
    let joiner = p.app.socket(&p.bob.access, t).await;
    ack_ok(&joiner.call("joinRoom", json!({"room": "general"})).await);
    let h = joiner.next("history").await;
    assert_eq!(
        find(h["messages"].as_array().unwrap(), &r["id"])["reply_to"],
        gone
    );
}

#[tokio::test]
async fn thread_pages_list_replies_only_and_page_by_seq() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let outsider = app.register("outsider").await;
    let a = app.in_room(&ann, "general", WS).await;
    let gid = text(&room_named(&app, &ann, "general").await, "id");
    let root = send(&a, "general", "root").await;
    let mut replies = Vec::new();
    for i in 1..=5 {
        send(&a, "general", &format!("between {i}")).await;
        replies.push(
            send_json(
                &a,
                json!({"room": "general", "body": format!("reply {i}"), "thread_root_id": root["id"]}),
            )
            .await,
        );
    }
    let rs: Vec<i64> = replies.iter().map(|r| num(r, "seq")).collect();
    ack_ok(
        &a.call("react", react("general", &replies[0]["id"], "👍", true))
            .await,
    );
    let base = format!("/api/rooms/{gid}/threads/{}/messages", text(&root, "id"));
    let page = |q: &str| get_as(&app, format!("{base}{q}"), &ann.access);

    let all = page("").await;
    let all = all.ok(200);
    assert_eq!(seqs(all), rs, "replies only, oldest first, not the root");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["messages"][0]["my_reactions"], json!(["👍"]));
    let newest = page("?limit=2").await;
    assert_eq!(seqs(newest.ok(200)), rs[3..]);
    assert_eq!(newest.body["has_more"], true);
    let before = page(&format!("?before={}&limit=10", rs[2])).await;
    assert_eq!(seqs(before.ok(200)), rs[..2]);
    assert_eq!(before.body["has_more"], false);
    let before = page(&format!("?before={}&limit=1", rs[2])).await;
    assert_eq!(seqs(before.ok(200)), rs[1..2]);
    assert_eq!(before.body["has_more"], true);
    let after = page(&format!("?after={}&limit=2", rs[1])).await;
    assert_eq!(seqs(after.ok(200)), rs[2..4]);
    assert_eq!(after.body["has_more"], true);
    let after = page(&format!("?after={}", rs[3])).await;
    assert_eq!(seqs(after.ok(200)), rs[4..]);
    assert_eq!(after.body["has_more"], false);
    page(&format!("?after=1&before={}", rs[4]))
        .await
        .error(400, "invalid_input");
    page("?limit=0").await.error(400, "invalid_input");
    page("?limit=201").await.error(400, "invalid_input");

    // A root without replies: an empty page. Unknown, malformed, foreign roots: 404.
    let lonely = send(&a, "general", "lonely").await;
    let empty = app
        .get(
            &format!("/api/rooms/{gid}/threads/{}/messages", text(&lonely, "id")),
            Some(&ann.access),
        )
        .await;
    assert_eq!(empty.ok(200)["messages"], json!([]));
    let other = app.create_room(&ann, "other", "public").await;
    let other_id = text(&other, "id");
    for path in [
        format!("/api/rooms/{gid}/threads/{}/messages", Uuid::now_v7()),
        format!("/api/rooms/{gid}/threads/nope/messages"),
        format!(
            "/api/rooms/{other_id}/threads/{}/messages",
            text(&root, "id")
        ),
    ] {
        app.get(&path, Some(&ann.access))
            .await
            .error(404, "not_found");
    }
    // A private room's thread: members only.
    let crew = app.create_room(&ann, "crew", "private").await;
    let c = app.in_room(&ann, "crew", WS).await;
    let croot = send(&c, "crew", "croot").await;
    send_json(
        &c,
        json!({"room": "crew", "body": "r", "thread_root_id": croot["id"]}),
    )
    .await;
    let path = format!(
        "/api/rooms/{}/threads/{}/messages",
        text(&crew, "id"),
        text(&croot, "id")
    );
    app.get(&path, Some(&outsider.access))
        .await
        .error(404, "not_found");
    assert_eq!(
        seqs(app.get(&path, Some(&ann.access)).await.ok(200)).len(),
        1
    );
}

// ------------------------------------------------------------------ reactions

async fn reactions_count_absolutely_and_tell_the_room(t: Transport) {
    let p = pair(t).await;
    let m = p.ann_says("react to me").await;
    let rev0 = p.last_rev().await;
    let heart = "\u{2764}\u{FE0F}";
    let event = |who: &Session, emoji: &str, on: bool, rev: i64, count: i64| {
        json!({
            "room": {"id": p.id, "name": "general"},
            "message_id": m["id"], "seq": m["seq"], "rev": rev,
            "emoji": emoji, "user": user_ref(who), "on": on, "count": count,
        })
    };

    let ack =
        p.b.call("react", react("general", &m["id"], "👍", true))
            .await;
    let got = ack_ok(&ack)["message"].clone();
    assert_eq!(got["reactions"], json!([{"emoji": "👍", "count": 1}]));
    assert_eq!(got["my_reactions"], json!(["👍"]));
    assert_eq!(num(&got, "rev"), rev0 + 1);
    for s in [&p.a, &p.b] {
        assert_eq!(
            s.next("reaction").await,
            event(&p.bob, "👍", true, rev0 + 1, 1)
        );
    }

    let ack =
        p.a.call("react", react("general", &m["id"], "👍", true))
            .await;
    assert_eq!(
        ack_ok(&ack)["message"]["reactions"],
        json!([{"emoji": "👍", "count": 2}])
    );
    for s in [&p.a, &p.b] {
        assert_eq!(
            s.next("reaction").await,
            event(&p.ann, "👍", true, rev0 + 2, 2)
        );
    }
    for (i, emoji) in ["🎉", heart].into_iter().enumerate() {
        let ack =
            p.a.call("react", react("general", &m["id"], emoji, true))
                .await;
        ack_ok(&ack);
        for s in [&p.a, &p.b] {
            assert_eq!(
                s.next("reaction").await,
                event(&p.ann, emoji, true, rev0 + 3 + i as i64, 1)
            );
        }
    }
    let ack =
        p.a.call("react", react("general", &m["id"], "🎉", true))
            .await;
    // Adding twice: ok, nothing changes.
    let got = ack_ok(&ack)["message"].clone();
    assert_eq!(num(&got, "rev"), rev0 + 4);
    assert_eq!(
        got["reactions"][0],
        json!({"emoji": "👍", "count": 2}),
        "most used first"
    );
    assert_eq!(
        reactions(&got),
        [
            ("👍".to_owned(), 2),
            ("🎉".to_owned(), 1),
            (heart.to_owned(), 1)
        ]
        .into_iter()
        .collect()
    );
    let mut mine = vec!["👍".to_owned(), "🎉".to_owned(), heart.to_owned()];
    mine.sort();
    assert_eq!(my_reactions(&got), mine);
    // Removing what is not there: ok, nothing changes.
    let ack =
        p.b.call("react", react("general", &m["id"], "🎉", false))
            .await;
    assert_eq!(num(&ack_ok(&ack)["message"], "rev"), rev0 + 4);
    assert_eq!(p.last_rev().await, rev0 + 4);
    p.a.assert_silent("reaction", SHORT).await;
    p.b.assert_silent("reaction", Duration::ZERO).await;

    // Off.
    let ack =
        p.b.call("react", react("general", &m["id"], "👍", false))
            .await;
    assert_eq!(ack_ok(&ack)["message"]["my_reactions"], json!([]));
    for s in [&p.a, &p.b] {
        assert_eq!(
            s.next("reaction").await,
            event(&p.bob, "👍", false, rev0 + 5, 1)
        );
    }
    let ack =
        p.a.call("react", react("general", &m["id"], "👍", false))
            .await;
    assert!(
        !reactions(&ack_ok(&ack)["message"]).contains_key("👍"),
        "{ack}"
    );
    for s in [&p.a, &p.b] {
        assert_eq!(
            s.next("reaction").await,
            event(&p.ann, "👍", false, rev0 + 6, 0)
        );
    }
    assert_eq!(p.last_rev().await, rev0 + 6);

    // Each reader's own reactions, in history, the change feed and the socket history.
    let mut mine = vec!["🎉".to_owned(), heart.to_owned()];
    mine.sort();
    let seq = num(&m, "seq");
    assert_eq!(
        my_reactions(&message_at(&p.app, &p.ann, &p.id, seq).await),
        mine
    );
    assert_eq!(
        my_reactions(&message_at(&p.app, &p.bob, &p.id, seq).await),
        Vec::<String>::new()
    );
    let feed = changes(
        &p.app,
        &p.ann,
        &p.id,
        Some((rev0 + 5).to_string()).as_deref(),
        None,
    )
    .await;
    assert_eq!(my_reactions(&feed.ok(200)["messages"][0]), mine);
    let page = p.a.call("history", json!({"room": "general"})).await;
    assert_eq!(
        my_reactions(find(
            ack_ok(&page)["messages"].as_array().unwrap(),
            &m["id"]
        )),
        mine
    );
}

async fn bad_emoji_and_deleted_messages_refuse_reactions(t: Transport) {
    let p = pair(t).await;
    let m = p.ann_says("target").await;
    let gone = p.ann_says("gone").await;
    ack_ok(
        &p.a.call(
            "deleteMessage",
            json!({"room": "general", "id": gone["id"]}),
        )
        .await,
    );
    for s in [&p.a, &p.b] {
        s.next("messageDeleted").await;
    }
    let rev0 = p.last_rev().await;

    for emoji in [
        String::new(),
        "x".repeat(33),
        "👍".repeat(33),
        "a b".to_owned(),
        "👍 ".to_owned(),
        "\t".to_owned(),
        "a\nb".to_owned(),
        "a\u{7}".to_owned(),
        "\u{0}".to_owned(),
        "a\u{3000}b".to_owned(),
        "a\u{a0}b".to_owned(),
    ] {
        let ack =
            p.a.call("react", react("general", &m["id"], &emoji, true))
                .await;
        assert!(
            ack_error(&ack, "invalid_input")["fields"]["emoji"].is_string(),
            "{emoji:?}: {ack}"
        );
    }
    let ack =
        p.a.call(
            "react",
            json!({"room": "general", "id": m["id"], "emoji": 5, "on": true}),
        )
        .await;
    ack_error(&ack, "invalid_input");
    // A deleted message, unknown and malformed ids, a socket that has not joined.
    ack_error(
        &p.a.call("react", react("general", &gone["id"], "👍", true))
            .await,
        "invalid_input",
    );
    ack_error(
        &p.a.call(
            "react",
            react("general", &json!(Uuid::now_v7().to_string()), "👍", true),
        )
        .await,
        "not_found",
    );
    ack_error(
        &p.a.call("react", react("general", &json!("nope"), "👍", true))
            .await,
        "invalid_input",
    );
    let lone = p.app.socket(&p.ann.access, t).await;
    ack_error(
        &lone
            .call("react", react("general", &m["id"], "👍", true))
            .await,
        "not_joined",
    );
    assert_eq!(p.last_rev().await, rev0);
    p.b.assert_silent("reaction", SHORT).await;
    assert_eq!(p.app.count("reactions").await, 0);

    // The bounds count Unicode scalar values: 32 are fine, however many bytes they take.
    for emoji in [
        "x".repeat(32),
        "👍".repeat(32),
        "+1".to_owned(),
        ":tada:".to_owned(),
    ] {
        let ack =
            p.a.call("react", react("general", &m["id"], &emoji, true))
                .await;
        assert!(
            reactions(&ack_ok(&ack)["message"]).contains_key(&emoji),
            "{ack}"
        );
    }
    assert_eq!(p.last_rev().await, rev0 + 4);
}

#[tokio::test]
async fn rest_reactions_take_url_encoded_emoji() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let carl = app.register("carl").await;
    let a = app.in_room(&ann, "general", WS).await;
    let gid = text(&room_named(&app, &ann, "general").await, "id");
    let m = send(&a, "general", "react to me").await;
    let mid = text(&m, "id");
    let rev0 = last_rev(&app, &ann, &gid).await;
    let tone = "👍\u{1F3FD}";
    let family = "👨\u{200D}👩\u{200D}👧";

    // bob, with no socket and no member row: anyone of the workspace may react in a public room.
    assert_eq!(
        reaction_path(&gid, &mid, "👍"),
        format!("/api/rooms/{gid}/messages/{mid}/reactions/%F0%9F%91%8D")
    );
    let reply = app
        .put(
            &reaction_path(&gid, &mid, "👍"),
            Some(&bob.access),
            json!({}),
        )
        .await;
    let got = reply.ok(200);
    assert_eq!(got["reactions"], json!([{"emoji": "👍", "count": 1}]));
    assert_eq!(got["my_reactions"], json!(["👍"]));
    assert_eq!(num(got, "rev"), rev0 + 1);
    let e = a.next("reaction").await;
    assert_eq!(
        e,
        json!({"room": {"id": gid, "name": "general"}, "message_id": mid, "seq": m["seq"],
               "rev": rev0 + 1, "emoji": "👍", "user": user_ref(&bob), "on": true, "count": 1})
    );
    for (who, emoji) in [(&bob, tone), (&ann, family), (&ann, "👍")] {
        app.put(
            &reaction_path(&gid, &mid, emoji),
            Some(&who.access),
            json!({}),
        )
        .await
        .ok(200);
        assert_eq!(a.next("reaction").await["emoji"], emoji);
    }
    let now = message_at(&app, &ann, &gid, num(&m, "seq")).await;
    assert_eq!(
        reactions(&now),
        [
            ("👍".to_owned(), 2),
            (tone.to_owned(), 1),
            (family.to_owned(), 1)
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(now["reactions"][0]["emoji"], "👍");
    let mut mine = vec!["👍".to_owned(), family.to_owned()];
    mine.sort();
    assert_eq!(my_reactions(&now), mine);
    assert_eq!(db_reaction_count(&app.db, &mid, family).await, 1);

    // Twice, and removing what is not there: 200, no rev, no event.
    let rev = last_rev(&app, &ann, &gid).await;
    let again = app
        .put(
            &reaction_path(&gid, &mid, "👍"),
            Some(&bob.access),
            json!({}),
        )
        .await;
    assert_eq!(num(again.ok(200), "rev"), rev);
    let absent = app
        .delete(&reaction_path(&gid, &mid, "🎉"), Some(&bob.access))
        .await;
    assert_eq!(num(absent.ok(200), "rev"), rev);
    assert_eq!(last_rev(&app, &ann, &gid).await, rev);
    a.assert_silent("reaction", SHORT).await;

    // Off.
    let off = app
        .delete(&reaction_path(&gid, &mid, tone), Some(&bob.access))
        .await;
    assert!(!reactions(off.ok(200)).contains_key(tone));
    let e = a.next("reaction").await;
    assert_eq!(
        (e["on"].clone(), e["count"].clone(), e["rev"].clone()),
        (json!(false), json!(0), json!(rev + 1))
    );

    // Bad emoji in the path.
    for emoji in [
        "a b".to_owned(),
        "x".repeat(33),
        "\u{7}".to_owned(),
        "a\tb".to_owned(),
    ] {
        let reply = app
            .put(
                &reaction_path(&gid, &mid, &emoji),
                Some(&bob.access),
                json!({}),
            )
            .await;
        assert!(
            reply.error(400, "invalid_input")["fields"]["emoji"].is_string(),
            "{emoji:?}"
        );
    }
    // Unknown and malformed message ids, another room: 404.
    let other = app.create_room(&ann, "other", "public").await;
    for path in [
        reaction_path(&gid, &Uuid::now_v7().to_string(), "👍"),
        reaction_path(&gid, "nope", "👍"),
        reaction_path(&text(&other, "id"), &mid, "👍"),
    ] {
        app.put(&path, Some(&bob.access), json!({}))
            .await
            .error(404, "not_found");
    }
    // A private room: members only; others are answered as for the room.
    let crew = app.create_room(&ann, "crew", "private").await;
    app.grant(&ann, &crew, &bob, "member").await.ok(200);
    let c = app.in_room(&ann, "crew", WS).await;
    let pm = send(&c, "crew", "private").await;
    let ppath = reaction_path(&text(&crew, "id"), &text(&pm, "id"), "👍");
    app.put(&ppath, Some(&carl.access), json!({}))
        .await
        .error(404, "not_found");
    app.put(&ppath, Some(&bob.access), json!({})).await.ok(200);
    // A deleted message: 400.
    app.delete(&message_path(&gid, &m["id"]), Some(&ann.access))
        .await
        .ok(204);
    app.put(
        &reaction_path(&gid, &mid, "👍"),
        Some(&bob.access),
        json!({}),
    )
    .await
    .error(400, "invalid_input");
    assert_eq!(db_reaction_count(&app.db, &mid, "👍").await, 0);
}

async fn concurrent_reactions_on_one_node_arrive_in_rev_order_with_absolute_counts(t: Transport) {
    let app = spawn_app().await;
    let mut users = Vec::new();
    let mut sockets = Vec::new();
    for name in ["ann", "bob", "carl", "dee"] {
        let who = app.register(name).await;
        sockets.push(app.in_room(&who, "general", t).await);
        users.push(who);
    }
    let gid = text(&room_named(&app, &users[0], "general").await, "id");
    let m = send(&sockets[0], "general", "race me").await;
    let emojis = ["👍", "🎉", "🔥", "👀", "✅"];
    for emoji in emojis {
        for on in [true, false] {
            let pending: Vec<_> = sockets[1..]
                .iter()
                .map(|s| s.call_later("react", react("general", &m["id"], emoji, on)))
                .collect();
            for ack in join_all(pending).await {
                ack_ok(&ack);
            }
        }
    }
    // 5 emoji x 3 users x (on, off): 30 changes, each told to all four sockets in rev order.
    for (i, s) in sockets.iter().enumerate() {
        let mut events = Vec::new();
        while events.len() < 30 {
            events.push(s.next("reaction").await);
        }
        let revs: Vec<i64> = events.iter().map(|e| num(e, "rev")).collect();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "socket {i}: revs in order: {revs:?}"
        );
        for emoji in emojis {
            let counts: Vec<i64> = events
                .iter()
                .filter(|e| e["emoji"] == emoji)
                .map(|e| num(e, "count"))
                .collect();
            assert_eq!(
                counts,
                [1, 2, 3, 2, 1, 0],
                "socket {i}, {emoji}: absolute counts"
            );
        }
    }
    let now = message_at(&app, &users[0], &gid, num(&m, "seq")).await;
    assert_eq!(now["reactions"], json!([]));
    assert_eq!(num(&now, "rev"), num(&m, "rev") + 30);
    assert_eq!(app.count("reactions").await, 0);
}

// ------------------------------------------------------------------ mentions

async fn mentions_resolve_names_that_may_read_the_room(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let bob_smith = app.register("bob.smith").await;
    let carl = app.register("carl").await;
    let dave = app.register("dave").await;
    app.make_admin(&ann).await;
    app.post(
        &format!("/api/admin/users/{}/disable", dave.id),
        Some(&ann.access),
        json!({}),
    )
    .await
    .ok(204);
    let a = app.in_room(&ann, "general", t).await;
    let id = |who: &Session| who.id.to_string();

    let cases: Vec<(&str, Vec<String>)> = vec![
        ("@bob hi", vec![id(&bob)]),
        ("hi @nobody", vec![]),
        ("thanks @bob.", vec![id(&bob)]),
        ("thanks @bob!", vec![id(&bob)]),
        ("ping @bob.smith", vec![id(&bob_smith)]),
        ("ping @bob.smith.", vec![id(&bob_smith)]),
        ("@bob_ and @bob-", vec![id(&bob)]),
        ("(@bob)", vec![id(&bob)]),
        ("@BOB loud", vec![id(&bob)]),
        ("mail@bob", vec![]),
        ("@ann note to self", vec![id(&ann)]),
        ("@bob @bob twice", vec![id(&bob)]),
        ("@dave is disabled", vec![]),
        ("@", vec![]),
    ];
    for (body, want) in cases {
        let m = send(&a, "general", body).await;
        let mut want = want;
        want.sort();
        assert_eq!(mention_ids(&m), want, "{body:?}: {m}");
        assert_eq!(m["body"], body, "unknown names stay plain text");
        let stored = message_at(&app, &ann, &text(&m, "room_id"), num(&m, "seq")).await;
        assert_eq!(stored["mentions"], m["mentions"], "{body:?}");
    }
    let m = send(&a, "general", "@bob hi").await;
    assert_eq!(m["mentions"], json!([user_ref(&bob)]), "user_refs");

    // An edit resolves them again.
    let ack = a
        .call("editMessage", edit("general", &m["id"], "@carl instead"))
        .await;
    assert_eq!(mention_ids(&ack_ok(&ack)["message"]), [id(&carl)]);

    // A private room: only its members.
    let crew = app.create_room(&ann, "crew", "private").await;
    app.grant(&ann, &crew, &bob, "member").await.ok(200);
    let c = app.in_room(&ann, "crew", t).await;
    let pm = send(&c, "crew", "@carl @bob").await;
    assert_eq!(mention_ids(&pm), [id(&bob)]);
}

async fn mentioned_goes_to_every_socket_of_newly_mentioned_users(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let carl = app.register("carl").await;
    let a = app.in_room(&ann, "general", t).await;
    let b_in = app.in_room(&bob, "general", t).await;
    let b_out = app.socket(&bob.access, t).await;
    let c_out = app.socket(&carl.access, t).await;
    let gid = text(&room_named(&app, &ann, "general").await, "id");

    let m = send(&a, "general", "@bob look").await;
    for s in [&b_in, &b_out] {
        let e = s.next("mentioned").await;
        assert_eq!(e["room"], json!({"id": gid, "name": "general"}));
        assert_eq!(e["message"]["id"], m["id"]);
        assert_eq!(e["message"]["body"], "@bob look");
        assert_eq!(mention_ids(&e["message"]), [bob.id.to_string()]);
    }
    c_out.assert_silent("mentioned", SHORT).await;
    a.assert_silent("mentioned", Duration::ZERO).await;

    // An edit tells only the newly mentioned.
    ack_ok(
        &a.call("editMessage", edit("general", &m["id"], "@bob look @carl"))
            .await,
    );
    let e = c_out.next("mentioned").await;
    assert_eq!(e["message"]["id"], m["id"]);
    assert_eq!(e["message"]["body"], "@bob look @carl");
    b_in.assert_silent("mentioned", SHORT).await;
    b_out.assert_silent("mentioned", Duration::ZERO).await;

    // Someone who may not read the room is never told.
    let crew = app.create_room(&ann, "crew", "private").await;
    app.grant(&ann, &crew, &bob, "member").await.ok(200);
    let c = app.in_room(&ann, "crew", t).await;
    let pm = send(&c, "crew", "@carl @bob secret").await;
    let e = b_out.next("mentioned").await;
    assert_eq!(e["message"]["id"], pm["id"]);
    assert_eq!(e["room"]["name"], "crew");
    c_out.assert_silent("mentioned", SHORT).await;
}

#[tokio::test]
async fn unread_mentions_count_until_read() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let crew = app.create_room(&ann, "crew", "private").await;
    let crew_id = text(&crew, "id");
    app.grant(&ann, &crew, &bob, "member").await.ok(200);
    let a = app.in_room(&ann, "crew", WS).await;
    let unread = || unread_mentions(&app, &bob, &crew_id);
    assert_eq!(unread().await, 0);
    for body in ["@bob one", "no mention", "@bob two", "@bob three"] {
        send(&a, "crew", body).await;
    }
    assert_eq!(unread().await, 3);
    // The sender's own count: no mention of ann.
    let rooms = app.get("/api/me/rooms", Some(&ann.access)).await;
    assert_eq!(rooms.ok(200)["rooms"][0]["unread_mentions"], 0);

    let read = |seq: i64| read_up_to(&app, &bob, &crew_id, seq);
    read(1).await;
    assert_eq!(unread().await, 2);
    read(3).await;
    assert_eq!(unread().await, 1);
    // Deleting the last one removes its mention.
    let last = message_at(&app, &ann, &crew_id, 4).await;
    ack_ok(
        &a.call("deleteMessage", json!({"room": "crew", "id": last["id"]}))
            .await,
    );
    assert_eq!(unread().await, 0);
    // Editing a mention in counts it.
    let m = send(&a, "crew", "plain").await;
    ack_ok(
        &a.call("editMessage", edit("crew", &m["id"], "now @bob"))
            .await,
    );
    assert_eq!(unread().await, 1);
    read(num(&m, "seq")).await;
    assert_eq!(unread().await, 0);
}

// ------------------------------------------------------------------ metadata

#[tokio::test]
async fn message_metadata_is_an_object_of_at_most_4_kib() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let a = app.in_room(&ann, "general", WS).await;
    let gid = text(&room_named(&app, &ann, "general").await, "id");

    let plain = send(&a, "general", "plain").await;
    assert_eq!(plain["metadata"], json!({}), "default {{}}");
    let card = json!({"attachments": [{"url": "https://example.com/a.png"}], "ticket": "T-9"});
    let m = send_json(
        &a,
        json!({"room": "general", "body": "card", "metadata": card}),
    )
    .await;
    assert_eq!(m["metadata"], card);
    assert_eq!(
        message_at(&app, &bob, &gid, num(&m, "seq")).await["metadata"],
        card
    );
    // Exactly 4096 bytes serialised: {"k":"x...x"} is 8 bytes around the string.
    let edge = json!({"k": "x".repeat(4088)});
    assert_eq!(serde_json::to_string(&edge).unwrap().len(), 4096);
    send_json(
        &a,
        json!({"room": "general", "body": "edge", "metadata": edge}),
    )
    .await;
    let count = app.count("messages").await;
    for bad in [
        json!({"k": "x".repeat(4089)}),
        json!([1, 2]),
        json!("meta"),
        json!(7),
        json!(true),
    ] {
        let ack = a
            .call(
                "sendMessage",
                json!({"room": "general", "body": "x", "metadata": bad}),
            )
            .await;
        assert!(
            ack_error(&ack, "invalid_input")["fields"]["metadata"].is_string(),
            "{ack}"
        );
        let ack = a
            .call(
                "directMessage",
                json!({"to": "bob", "body": "x", "metadata": bad}),
            )
            .await;
        assert!(
            ack_error(&ack, "invalid_input")["fields"]["metadata"].is_string(),
            "{ack}"
        );
    }
    assert_eq!(app.count("messages").await, count, "nothing stored");
    // directMessage takes it too.
    let ack = a
        .call(
            "directMessage",
            json!({"to": "bob", "body": "dm", "metadata": {"x": 1}}),
        )
        .await;
    assert_eq!(ack_ok(&ack)["message"]["metadata"], json!({"x": 1}));
}

#[tokio::test]
async fn rooms_take_metadata_on_create_and_patch() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let general = room_named(&app, &ann, "general").await;
    assert_eq!(general["metadata"], json!({}));
    assert!(general["last_rev"].is_i64(), "{general}");

    let created = app
        .post(
            "/api/rooms",
            Some(&ann.access),
            json!({"name": "desk", "visibility": "public", "metadata": {"team": "support"}}),
        )
        .await;
    let room = created.ok(201).clone();
    assert_eq!(room["metadata"], json!({"team": "support"}));
    let id = text(&room, "id");
    assert_eq!(
        room_now(&app, &ann, &id).await["metadata"],
        json!({"team": "support"})
    );
    let plain = app.create_room(&ann, "plain", "public").await;
    assert_eq!(plain["metadata"], json!({}));

    let patched = app
        .patch(
            &format!("/api/rooms/{id}"),
            Some(&ann.access),
            json!({"metadata": {"sla": "4h"}}),
        )
        .await;
    assert_eq!(patched.ok(200)["metadata"], json!({"sla": "4h"}));
    // A topic-only patch keeps it.
    let patched = app
        .patch(
            &format!("/api/rooms/{id}"),
            Some(&ann.access),
            json!({"topic": "t"}),
        )
        .await;
    assert_eq!(patched.ok(200)["metadata"], json!({"sla": "4h"}));

    for bad in [json!({"k": "x".repeat(4089)}), json!([1]), json!("x")] {
        let reply = app
            .post(
                "/api/rooms",
                Some(&ann.access),
                json!({"name": "bad", "visibility": "public", "metadata": bad}),
            )
            .await;
        assert!(reply.error(400, "invalid_input")["fields"]["metadata"].is_string());
        let reply = app
            .patch(
                &format!("/api/rooms/{id}"),
                Some(&ann.access),
                json!({"metadata": bad}),
            )
            .await;
        assert!(reply.error(400, "invalid_input")["fields"]["metadata"].is_string());
    }
    assert_eq!(
        room_now(&app, &ann, &id).await["metadata"],
        json!({"sla": "4h"})
    );
    let rooms = app.get("/api/me/rooms", Some(&ann.access)).await;
    let mine = rooms.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["metadata"], json!({"sla": "4h"}));
}

// ------------------------------------------------------------------ change feed

#[tokio::test]
async fn change_feed_pages_in_rev_order() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&ann, "feed", "public").await;
    let id = text(&room, "id");
    assert_eq!(room["last_rev"], 0);
    let a = app.in_room(&ann, "feed", WS).await;
    let mut ms = Vec::new();
    for i in 1..=5 {
        ms.push(send(&a, "feed", &format!("m{i}")).await);
    }
    // revs 1-5 the sends; then 6 an edit of m2, 7 a reaction on m1, 8 the deletion of m3.
    ack_ok(
        &a.call("editMessage", edit("feed", &ms[1]["id"], "m2 edited"))
            .await,
    );
    ack_ok(
        &a.call("react", react("feed", &ms[0]["id"], "👍", true))
            .await,
    );
    ack_ok(
        &a.call("deleteMessage", json!({"room": "feed", "id": ms[2]["id"]}))
            .await,
    );
    assert_eq!(last_rev(&app, &ann, &id).await, 8);

    let all = changes(&app, &bob, &id, Some("0"), None).await;
    let all = all.ok(200).clone();
    assert_eq!(revs(&all), [4, 5, 6, 7, 8]);
    let ids: Vec<&Value> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(
        ids,
        [
            &ms[3]["id"],
            &ms[4]["id"],
            &ms[1]["id"],
            &ms[0]["id"],
            &ms[2]["id"]
        ],
        "each message once, at its latest rev"
    );
    assert_eq!(all["has_more"], false);
    assert_eq!(all["last_rev"], 8);
    assert_eq!(all["messages"][2]["body"], "m2 edited");
    assert_eq!(
        all["messages"][3]["reactions"],
        json!([{"emoji": "👍", "count": 1}])
    );
    assert_eq!(
        all["messages"][3]["my_reactions"],
        json!([]),
        "bob's own: none"
    );
    assert_tombstone(&all["messages"][4]);
    // after_rev defaults to 0.
    let default = changes(&app, &bob, &id, None, None).await;
    assert_eq!(revs(default.ok(200)), [4, 5, 6, 7, 8]);
    // ann's view carries her reaction.
    let hers = changes(&app, &ann, &id, Some("6"), Some("1")).await;
    assert_eq!(hers.ok(200)["messages"][0]["my_reactions"], json!(["👍"]));

    // Paging: last_rev is the newest rev of a page with more to come, else the room's last_rev.
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = changes(
            &app,
            &bob,
            &id,
            Some(after.to_string()).as_deref(),
            Some("2"),
        )
        .await;
        let page = page.ok(200).clone();
        let r = revs(&page);
        if page["has_more"] == true {
            assert_eq!(page["last_rev"], *r.last().unwrap());
        } else {
            assert_eq!(page["last_rev"], 8);
        }
        after = num(&page, "last_rev");
        pages.push(r);
        if page["has_more"] != true {
            break;
        }
        assert!(pages.len() < 10, "paging ends");
    }
    assert_eq!(pages, [vec![4, 5], vec![6, 7], vec![8]]);
    // A full page with nothing after it: has_more false.
    let exact = changes(&app, &bob, &id, Some("5"), Some("3")).await;
    assert_eq!(revs(exact.ok(200)), [6, 7, 8]);
    assert_eq!(exact.body["has_more"], false);
    // Nothing newer: empty, the cursor is the room's last_rev.
    for after in ["8", "100"] {
        let empty = changes(&app, &bob, &id, Some(after), None).await;
        let empty = empty.ok(200);
        assert_eq!(empty["messages"], json!([]));
        assert_eq!(empty["has_more"], false);
        assert_eq!(empty["last_rev"], 8);
    }
}

#[tokio::test]
async fn change_feed_is_members_only_and_checks_its_query() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let crew = app.create_room(&ann, "crew", "private").await;
    let crew_id = text(&crew, "id");
    let c = app.in_room(&ann, "crew", WS).await;
    send(&c, "crew", "private").await;

    changes(&app, &bob, &crew_id, Some("0"), None)
        .await
        .error(404, "not_found");
    changes(&app, &bob, &Uuid::now_v7().to_string(), Some("0"), None)
        .await
        .error(404, "not_found");
    changes(&app, &bob, "nope", Some("0"), None)
        .await
        .error(404, "not_found");
    app.grant(&ann, &crew, &bob, "member").await.ok(200);
    assert_eq!(
        revs(changes(&app, &bob, &crew_id, Some("0"), None).await.ok(200)),
        [1]
    );

    for (after, limit) in [
        (Some("-1"), None),
        (Some("abc"), None),
        (Some("1.5"), None),
        (Some("0"), Some("0")),
        (Some("0"), Some("201")),
        (Some("0"), Some("x")),
    ] {
        let reply = changes(&app, &bob, &crew_id, after, limit).await;
        reply.error(400, "invalid_input");
    }
    let max = changes(&app, &bob, &crew_id, Some("0"), Some("200")).await;
    max.ok(200);
}

// ------------------------------------------------------------------ resume

async fn resume_with_since_rev_misses_no_message_and_no_change(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let carl = app.register("carl").await;
    let room = app.create_room(&ann, "town", "public").await;
    let id = text(&room, "id");
    let a = app.in_room(&ann, "town", t).await;
    let b = app.in_room(&bob, "town", t).await;
    let mut ms = Vec::new();
    for i in 1..=5 {
        ms.push(send(&a, "town", &format!("m{i}")).await);
    }

    // carl's first visit: what he knows.
    let mut view = View::default();
    let c = app.socket(&carl.access, t).await;
    ack_ok(&c.call("joinRoom", json!({"room": "town"})).await);
    let h = c.next("history").await;
    assert!(
        h.get("updates").is_none(),
        "no updates without since_rev: {h}"
    );
    for m in h["messages"].as_array().unwrap() {
        view.apply_message(m);
    }
    let (since, since_rev) = (5, last_rev(&app, &ann, &id).await);
    assert_eq!(since_rev, 5);
    c.disconnect().await;

    // While he is away.
    ack_ok(
        &a.call("editMessage", edit("town", &ms[1]["id"], "m2 edited"))
            .await,
    ); // 6
    ack_ok(
        &a.call("deleteMessage", json!({"room": "town", "id": ms[2]["id"]}))
            .await,
    ); // 7
    ack_ok(
        &b.call("react", react("town", &ms[0]["id"], "👍", true))
            .await,
    ); // 8
    let m6 = send(&a, "town", "m6").await; // seq 6, rev 9
    let reply = send_json(
        &b,
        json!({"room": "town", "body": "m7 in thread", "thread_root_id": ms[3]["id"]}),
    )
    .await; // seq 7, rev 10; m4 rev 11
    ack_ok(&b.call("react", react("town", &m6["id"], "🎉", true)).await); // 12
    assert_eq!(last_rev(&app, &ann, &id).await, 12);

    let c = app.socket(&carl.access, t).await;
    ack_ok(
        &c.call(
            "joinRoom",
            json!({"room": "town", "since": since, "since_rev": since_rev}),
        )
        .await,
    );
    let h = c.next("history").await;
    assert_eq!(seqs(&h), [6, 7], "the new messages");
    assert_eq!(h["has_more"], false);
    assert_eq!(h["messages"][0]["id"], m6["id"]);
    assert_eq!(
        h["messages"][0]["reactions"],
        json!([{"emoji": "🎉", "count": 1}])
    );
    assert_eq!(h["messages"][1]["id"], reply["id"]);
    let updates = h["updates"]
        .as_array()
        .unwrap_or_else(|| panic!("no updates: {h}"));
    let ids: Vec<&Value> = updates.iter().map(|m| &m["id"]).collect();
    assert_eq!(
        ids,
        [&ms[1]["id"], &ms[2]["id"], &ms[0]["id"], &ms[3]["id"]],
        "the changed old messages, in rev order"
    );
    assert_eq!(revs(&json!({"messages": updates})), [6, 7, 8, 11]);
    assert_eq!(h["updates_has_more"], false);
    assert_eq!(updates[0]["body"], "m2 edited");
    assert_tombstone(&updates[1]);
    assert_eq!(
        updates[2]["reactions"],
        json!([{"emoji": "👍", "count": 1}])
    );
    assert_eq!(updates[2]["my_reactions"], json!([]));
    assert_eq!(updates[3]["thread"]["reply_count"], 1);

    // Nothing missed: carl's view equals the room.
    for m in h["messages"].as_array().unwrap().iter().chain(updates) {
        view.apply_message(m);
    }
    let all = all_messages(&app, &ann, &id).await;
    assert_eq!(view.messages.len(), all.len());
    for m in &all {
        view.assert_matches(m, "carl");
    }

    // A v1 join (since only) has neither field.
    let v1 = app.socket(&carl.access, t).await;
    ack_ok(
        &v1.call("joinRoom", json!({"room": "town", "since": 5}))
            .await,
    );
    let h = v1.next("history").await;
    assert!(
        h.get("updates").is_none() && h.get("updates_has_more").is_none(),
        "{h}"
    );
}

async fn resume_updates_are_capped_and_page_on_with_the_change_feed(t: Transport) {
    let app = spawn_app_with(&[("HISTORY_LIMIT", "3")]).await;
    let ann = app.register("ann").await;
    let room = app.create_room(&ann, "town", "private").await;
    let id = text(&room, "id");
    let a = app.in_room(&ann, "town", t).await;
    let mut ms = Vec::new();
    for i in 1..=6 {
        ms.push(send(&a, "town", &format!("m{i}")).await);
    }
    for m in &ms[..5] {
        ack_ok(
            &a.call("editMessage", edit("town", &m["id"], "edited"))
                .await,
        ); // 7..11
    }
    let s = app.socket(&ann.access, t).await;
    ack_ok(
        &s.call(
            "joinPrivateRoom",
            json!({"roomId": id, "since": 6, "since_rev": 6}),
        )
        .await,
    );
    let h = s.next("history").await;
    assert_eq!(h["messages"], json!([]));
    assert_eq!(h["has_more"], false);
    let updates = json!({"messages": h["updates"]});
    assert_eq!(
        revs(&updates),
        [7, 8, 9],
        "the oldest changes first, HISTORY_LIMIT of them"
    );
    assert_eq!(h["updates_has_more"], true);
    let rest = changes(&app, &ann, &id, Some("9"), None).await;
    let rest = rest.ok(200);
    assert_eq!(revs(rest), [10, 11]);
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["last_rev"], 11);
}

async fn since_rev_needs_since(t: Transport) {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let crew = app.create_room(&ann, "crew", "private").await;
    let crew_id = text(&crew, "id");
    let s = app.socket(&ann.access, t).await;
    for (event, payload) in [
        ("joinRoom", json!({"room": "general", "since_rev": 0})),
        ("joinRoom", json!({"room": "general", "since_rev": 3})),
        (
            "joinPrivateRoom",
            json!({"roomId": crew_id, "since_rev": 3}),
        ),
    ] {
        let ack = s.call(event, payload.clone()).await;
        assert!(
            ack_error(&ack, "invalid_input")["fields"]["since_rev"].is_string(),
            "{payload}: {ack}"
        );
    }
    for bad in [json!(-1), json!("x"), json!(1.5)] {
        let ack = s
            .call(
                "joinRoom",
                json!({"room": "general", "since": 0, "since_rev": bad}),
            )
            .await;
        ack_error(&ack, "invalid_input");
    }
    s.assert_silent("history", SHORT).await;
    // Both: a history with updates (none yet).
    ack_ok(
        &s.call(
            "joinPrivateRoom",
            json!({"roomId": crew_id, "since": 0, "since_rev": 0}),
        )
        .await,
    );
    let h = s.next("history").await;
    assert_eq!(h["updates"], json!([]));
    assert_eq!(h["updates_has_more"], false);
}

#[tokio::test]
async fn resume_after_a_restart_misses_no_change() {
    // `owner` holds the database; the servers below come and go on it.
    let owner = spawn_app().await;
    let config = owner.state.config.as_ref().clone();
    let first = spawn_with_state(
        AppState::connect(config.clone()).await.unwrap(),
        String::new(),
        String::new(),
    )
    .await;
    let ann = first.register("ann").await;
    let carl = first.register("carl").await;
    let gid = text(&room_named(&first, &ann, "general").await, "id");
    let a = first.in_room(&ann, "general", WS).await;
    let mut ms = Vec::new();
    for i in 1..=3 {
        ms.push(send(&a, "general", &format!("m{i}")).await);
    }
    let c = first.socket(&carl.access, WS).await;
    ack_ok(&c.call("joinRoom", json!({"room": "general"})).await);
    let mut view = View::default();
    for m in c.next("history").await["messages"].as_array().unwrap() {
        view.apply_message(m);
    }
    let since_rev = last_rev(&first, &ann, &gid).await;
    drop(c);
    // Changes acknowledged just before the server goes.
    ack_ok(
        &a.call("editMessage", edit("general", &ms[0]["id"], "m1 edited"))
            .await,
    );
    ack_ok(
        &a.call("react", react("general", &ms[1]["id"], "👍", true))
            .await,
    );
    ack_ok(
        &a.call(
            "deleteMessage",
            json!({"room": "general", "id": ms[2]["id"]}),
        )
        .await,
    );
    send(&a, "general", "m4").await;
    drop(first);
    a.wait_disconnected().await;

    let second = spawn_with_state(
        AppState::connect(config).await.unwrap(),
        String::new(),
        String::new(),
    )
    .await;
    let again = second.socket(&carl.access, Transport::Polling).await;
    ack_ok(
        &again
            .call(
                "joinRoom",
                json!({"room": "general", "since": 3, "since_rev": since_rev}),
            )
            .await,
    );
    let h = again.next("history").await;
    assert_eq!(seqs(&h), [4]);
    assert_eq!(revs(&json!({"messages": h["updates"]})).len(), 3);
    for m in h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(h["updates"].as_array().unwrap())
    {
        view.apply_message(m);
    }
    let all = all_messages(&second, &ann, &gid).await;
    assert_eq!(all.len(), 4);
    for m in &all {
        view.assert_matches(m, "carl after the restart");
    }
    assert_eq!(view.messages[&text(&ms[0], "id")].body, "m1 edited");
    assert!(view.messages[&text(&ms[2], "id")].deleted);
}

// ------------------------------------------------------------------ rate limits

async fn edit_delete_and_react_share_the_message_bucket(t: Transport) {
    let p = pair_with(t, &[("MESSAGE_RATE", "1"), ("MESSAGE_BURST", "5")]).await;
    let m1 = send(&p.a, "general", "one").await; // 1
    let m2 = send(&p.a, "general", "two").await; // 2
    ack_ok(
        &p.a.call("editMessage", edit("general", &m1["id"], "one!"))
            .await,
    ); // 3
    ack_ok(
        &p.a.call("react", react("general", &m1["id"], "👍", true))
            .await,
    ); // 4
    ack_ok(
        &p.a.call("deleteMessage", json!({"room": "general", "id": m2["id"]}))
            .await,
    ); // 5
    let rev = p.last_rev().await;

    for (event, payload) in [
        ("react", react("general", &m1["id"], "🎉", true)),
        ("editMessage", edit("general", &m1["id"], "one!!")),
        ("deleteMessage", json!({"room": "general", "id": m1["id"]})),
        ("sendMessage", json!({"room": "general", "body": "three"})),
    ] {
        let ack = p.a.call(event, payload).await;
        let error = ack_error(&ack, "rate_limited");
        assert!(
            error["retry_after_ms"]
                .as_u64()
                .is_some_and(|ms| ms > 0 && ms <= 1000),
            "{event}: {ack}"
        );
    }
    // The REST forms draw from it too.
    let path = message_path(&p.id, &m1["id"]);
    let reply = p
        .app
        .patch(&path, Some(&p.ann.access), json!({"body": "rest"}))
        .await;
    reply.error(429, "rate_limited");
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(p.last_rev().await, rev, "nothing changed over the limit");
    let stored = message_at(&p.app, &p.ann, &p.id, num(&m1, "seq")).await;
    assert_eq!(stored["body"], "one!");
    // Per user: bob is unaffected.
    ack_ok(
        &p.b.call("react", react("general", &m1["id"], "👍", true))
            .await,
    );
}

#[tokio::test]
async fn rest_edit_delete_and_react_draw_from_the_message_bucket() {
    let app = spawn_app_with(&[("MESSAGE_RATE", "1"), ("MESSAGE_BURST", "4")]).await;
    let ann = app.register("ann").await;
    let a = app.in_room(&ann, "general", WS).await;
    let gid = text(&room_named(&app, &ann, "general").await, "id");
    let m1 = send(&a, "general", "one").await; // 1
    let m2 = send(&a, "general", "two").await; // 2
    let p1 = message_path(&gid, &m1["id"]);
    app.patch(&p1, Some(&ann.access), json!({"body": "one!"}))
        .await
        .ok(200); // 3
    app.put(
        &reaction_path(&gid, &text(&m1, "id"), "👍"),
        Some(&ann.access),
        json!({}),
    )
    .await
    .ok(200); // 4
    let rev = last_rev(&app, &ann, &gid).await;
    for reply in [
        app.delete(&message_path(&gid, &m2["id"]), Some(&ann.access))
            .await,
        app.delete(
            &reaction_path(&gid, &text(&m1, "id"), "👍"),
            Some(&ann.access),
        )
        .await,
        app.patch(&p1, Some(&ann.access), json!({"body": "one!!"}))
            .await,
    ] {
        reply.error(429, "rate_limited");
        assert!(
            reply.headers.contains_key("retry-after"),
            "{:?}",
            reply.headers
        );
    }
    ack_error(
        &a.call("sendMessage", json!({"room": "general", "body": "three"}))
            .await,
        "rate_limited",
    );
    assert_eq!(last_rev(&app, &ann, &gid).await, rev);
    assert_eq!(
        message_at(&app, &ann, &gid, num(&m2, "seq")).await["body"],
        "two",
        "not deleted"
    );
}
