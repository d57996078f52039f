//! Messages v2 on three nodes sharing Postgres and Redis: edits, deletions, reactions, thread
//! summaries and mentions made on one node reach sockets on the others; a client away during
//! changes resumes on another node with `since` + `since_rev` and misses nothing; and under races
//! (the same reaction from two nodes at once, an edit and a delete of one message at once) the
//! database ends consistent and every client's view, built from the events it got (each field
//! taking the value of the highest rev), equals it.

mod common;

use std::collections::HashMap;

use common::{
    cluster::TestCluster,
    messages::{
        all_messages, assert_tombstone, db_message, db_reaction_count, eventually, last_rev,
        message_at, message_rows_containing, num, reaction_path, room_named, send, send_json, text,
        user_ref, View,
    },
    seqs,
    sio::{ack_error, ack_ok, SioClient, Transport},
    Session,
};
use serde_json::{json, Value};

const WS: Transport = Transport::WebSocket;

async fn cluster() -> TestCluster {
    TestCluster::start_on_test_redis(3, &[("ROOM_EVENT_RATE", "0")]).await
}

fn edit(room: &str, id: &Value, body: &str) -> Value {
    json!({"room": room, "id": id, "body": body})
}

fn react(room: &str, id: &Value, emoji: &str, on: bool) -> Value {
    json!({"room": room, "id": id, "emoji": emoji, "on": on})
}

/// Pumps each client's events into its view until `done` holds for every view (10 s).
async fn settle(
    clients: &[(&str, &SioClient)],
    views: &mut HashMap<String, View>,
    what: &str,
    done: impl Fn(&View) -> bool,
) {
    for (name, s) in clients {
        let view = views.entry((*name).to_owned()).or_default();
        eventually(&format!("{what} at {name}"), || {
            view.pump(s);
            done(view)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletes_reactions_threads_and_mentions_reach_every_node() {
    let c = cluster().await;
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    let ann = n0.register("ann").await;
    let bob = n1.register("bob").await;
    let carl = n2.register("carl").await;
    let gid = text(&room_named(n0, &ann, "general").await, "id");
    let room = json!({"id": gid, "name": "general"});
    let a = n0.in_room(&ann, "general", WS).await;
    let b = n1.in_room(&bob, "general", WS).await;
    let cs = n2.in_room(&carl, "general", WS).await;
    // carl's other device, on another node, in no room.
    let carl_away = n1.socket(&carl.access, WS).await;

    let m = send(&a, "general", "hello").await;
    // Every socket, the sender's own included, takes the broadcast.
    for s in [&a, &b, &cs] {
        s.until("message", |x| x["id"] == m["id"]).await;
    }

    // An edit on node 0.
    let ack = a
        .call("editMessage", edit("general", &m["id"], "hello, edited"))
        .await;
    let edited = ack_ok(&ack)["message"].clone();
    for s in [&a, &b, &cs] {
        let u = s.next("messageUpdated").await;
        assert_eq!(u["room"], room);
        assert_eq!(u["message"]["body"], "hello, edited");
        assert_eq!(u["message"]["rev"], edited["rev"]);
    }

    // A reaction on node 1.
    let ack = b
        .call("react", react("general", &m["id"], "👍", true))
        .await;
    let rev = num(&ack_ok(&ack)["message"], "rev");
    let want = json!({"room": room, "message_id": m["id"], "seq": m["seq"], "rev": rev,
                      "emoji": "👍", "user": user_ref(&bob), "on": true, "count": 1});
    for s in [&a, &b, &cs] {
        assert_eq!(s.next("reaction").await, want);
    }
    // And one over REST on node 2.
    n2.put(
        &reaction_path(&gid, &text(&m, "id"), "🎉"),
        Some(&carl.access),
        json!({}),
    )
    .await
    .ok(200);
    for s in [&a, &b, &cs] {
        let e = s.next("reaction").await;
        assert_eq!(
            (e["emoji"].as_str(), e["rev"].as_i64()),
            (Some("🎉"), Some(rev + 1))
        );
    }

    // A thread reply on node 2: the reply, then the root's new summary, everywhere.
    let reply = send_json(
        &cs,
        json!({"room": "general", "body": "in thread", "thread_root_id": m["id"]}),
    )
    .await;
    for s in [&a, &b, &cs] {
        let u = s.next("messageUpdated").await;
        assert_eq!(u["message"]["id"], m["id"]);
        assert_eq!(u["message"]["thread"]["reply_count"], 1);
        assert_eq!(num(&u["message"], "rev"), num(&reply, "rev") + 1);
        let before: Vec<Value> = s
            .drain("message")
            .into_iter()
            .filter(|x| x["kind"] != "system")
            .collect();
        assert_eq!(before.len(), 1, "the reply came first");
        assert_eq!(before[0]["id"], reply["id"]);
    }

    // A mention on node 0: every socket of carl, on nodes 1 and 2.
    let mention = send(&a, "general", "@carl look").await;
    for s in [&carl_away, &cs] {
        let e = s.next("mentioned").await;
        assert_eq!(e["room"], room);
        assert_eq!(e["message"]["id"], mention["id"]);
    }
    // An edit that mentions bob newly tells bob only.
    ack_ok(
        &a.call(
            "editMessage",
            edit("general", &mention["id"], "@carl look @bob"),
        )
        .await,
    );
    assert_eq!(b.next("mentioned").await["message"]["id"], mention["id"]);
    carl_away
        .assert_silent("mentioned", std::time::Duration::from_millis(300))
        .await;

    // A deletion over REST on node 1, of ann's message, by ann.
    let rev = last_rev(n1, &ann, &gid).await;
    n1.delete(
        &format!("/api/rooms/{gid}/messages/{}", text(&m, "id")),
        Some(&ann.access),
    )
    .await
    .ok(204);
    for s in [&a, &b, &cs] {
        assert_eq!(
            s.next("messageDeleted").await,
            json!({"room": room, "id": m["id"], "seq": m["seq"], "rev": rev + 1})
        );
    }
    assert_tombstone(&message_at(n2, &carl, &gid, num(&m, "seq")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_during_changes_resumes_on_another_node_and_misses_nothing() {
    let c = cluster().await;
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    let ann = n0.register("ann").await;
    let bob = n0.register("bob").await;
    let dee = n0.register("dee").await;
    let town = n0.create_room(&ann, "town", "public").await;
    let id = text(&town, "id");
    let a = n0.in_room(&ann, "town", WS).await;
    let b = n1.in_room(&bob, "town", WS).await;
    let mut ms = Vec::new();
    for i in 1..=4 {
        ms.push(send(&a, "town", &format!("m{i}")).await);
    }

    // dee's first visit, on node 0.
    let mut view = View::default();
    let d = n0.socket(&dee.access, WS).await;
    ack_ok(&d.call("joinRoom", json!({"room": "town"})).await);
    for m in d.next("history").await["messages"].as_array().unwrap() {
        view.apply_message(m);
    }
    let since = 4;
    let since_rev = last_rev(n0, &ann, &id).await;
    d.disconnect().await;

    // Changes on every node while dee is away.
    ack_ok(
        &a.call("editMessage", edit("town", &ms[0]["id"], "m1 edited"))
            .await,
    );
    ack_ok(
        &b.call("react", react("town", &ms[1]["id"], "👍", true))
            .await,
    );
    n2.delete(
        &format!("/api/rooms/{id}/messages/{}", text(&ms[2], "id")),
        Some(&ann.access),
    )
    .await
    .ok(204);
    let m5 = send_json(
        &b,
        json!({"room": "town", "body": "m5 in thread", "thread_root_id": ms[3]["id"]}),
    )
    .await;
    n2.put(
        &reaction_path(&id, &text(&m5, "id"), "🎉"),
        Some(&ann.access),
        json!({}),
    )
    .await
    .ok(200);
    ack_ok(
        &b.call("editMessage", edit("town", &m5["id"], "m5 edited"))
            .await,
    );
    let m6 = send(&a, "town", "m6").await;

    // dee comes back on node 2.
    let d = n2.socket(&dee.access, WS).await;
    ack_ok(
        &d.call(
            "joinRoom",
            json!({"room": "town", "since": since, "since_rev": since_rev}),
        )
        .await,
    );
    let h = d.next("history").await;
    assert_eq!(seqs(&h), [5, 6]);
    assert_eq!(h["messages"][0]["body"], "m5 edited");
    assert_eq!(h["messages"][1]["id"], m6["id"]);
    assert_eq!(h["updates_has_more"], false);
    let updated: Vec<&Value> = h["updates"]
        .as_array()
        .unwrap_or_else(|| panic!("no updates: {h}"))
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(
        updated,
        [&ms[0]["id"], &ms[1]["id"], &ms[2]["id"], &ms[3]["id"]]
    );
    for m in h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(h["updates"].as_array().unwrap())
    {
        view.apply_message(m);
    }
    let all = all_messages(n2, &dee, &id).await;
    assert_eq!(view.messages.len(), all.len());
    for m in &all {
        view.assert_matches(m, "dee");
    }

    // And live from there on: a change on node 0 reaches dee on node 2.
    d.drain("message");
    ack_ok(
        &a.call("react", react("town", &ms[0]["id"], "🔥", true))
            .await,
    );
    let mut views = HashMap::from([("dee".to_owned(), view)]);
    settle(&[("dee", &d)], &mut views, "the live reaction", |v| {
        v.messages[&text(&ms[0], "id")]
            .reactions()
            .contains_key("🔥")
    })
    .await;
    let all = all_messages(n1, &dee, &id).await;
    for m in &all {
        views["dee"].assert_matches(m, "dee");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_reaction_from_two_nodes_at_once_counts_two_everywhere() {
    let c = cluster().await;
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    let mut users: Vec<Session> = Vec::new();
    for name in ["ann", "bob", "carl", "dee", "eve"] {
        users.push(n0.register(name).await);
    }
    let gid = text(&room_named(n0, &users[0], "general").await, "id");
    // ann sends; bob (node 0) and carl (node 1) react; dee and eve watch on nodes 1 and 2.
    let a = n0.in_room(&users[0], "general", WS).await;
    let b = n0.in_room(&users[1], "general", WS).await;
    let cl = n1.in_room(&users[2], "general", WS).await;
    let d = n1.in_room(&users[3], "general", WS).await;
    let e = n2.in_room(&users[4], "general", WS).await;
    let clients = [
        ("ann", &a),
        ("bob", &b),
        ("carl", &cl),
        ("dee", &d),
        ("eve", &e),
    ];
    for (_, s) in &clients {
        s.drain("message");
    }

    const ROUNDS: usize = 20;
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let m = send(&a, "general", &format!("round {round}")).await;
        let (rb, rc) = tokio::join!(
            b.call("react", react("general", &m["id"], "🔥", true)),
            cl.call("react", react("general", &m["id"], "🔥", true)),
        );
        let mut counts = Vec::new();
        for ack in [&rb, &rc] {
            let got = &ack_ok(ack)["message"];
            assert_eq!(got["my_reactions"], json!(["🔥"]), "{got}");
            counts.push(num(&got["reactions"][0], "count"));
        }
        assert_eq!(counts.iter().max(), Some(&2), "round {round}: {counts:?}");
        let mid = text(&m, "id");
        assert_eq!(
            db_reaction_count(&c.db, &mid, "🔥").await,
            2,
            "round {round}"
        );
        let stored = message_at(n2, &users[4], &gid, num(&m, "seq")).await;
        assert_eq!(
            stored["reactions"],
            json!([{"emoji": "🔥", "count": 2}]),
            "round {round}"
        );
        ids.push(mid);
    }

    let mut views = HashMap::new();
    settle(&clients, &mut views, "both reactions of every round", |v| {
        ids.iter().all(|id| {
            v.log
                .iter()
                .filter(|(name, e)| name == "reaction" && e["message_id"] == id.as_str())
                .count()
                >= 2
        })
    })
    .await;
    let all = all_messages(n1, &users[3], &gid).await;
    for (name, _) in &clients {
        let view = &views[*name];
        for id in &ids {
            // Two events, two revs; in rev order they count 1 then 2 (absolute counts).
            let mut events: Vec<(i64, i64)> = view
                .log
                .iter()
                .filter(|(n, e)| n == "reaction" && e["message_id"] == id.as_str())
                .map(|(_, e)| (num(e, "rev"), num(e, "count")))
                .collect();
            events.sort();
            assert_eq!(events.len(), 2, "{name}, {id}: {events:?}");
            assert!(
                events[0].0 < events[1].0,
                "{name}: distinct revs {events:?}"
            );
            assert_eq!(
                events.iter().map(|e| e.1).collect::<Vec<_>>(),
                [1, 2],
                "{name}, {id}"
            );
        }
        // Each reactor's changes went through one node: they arrive in rev order.
        for reactor in [&users[1], &users[2]] {
            let revs: Vec<i64> = view
                .log
                .iter()
                .filter(|(n, e)| n == "reaction" && e["user"]["id"] == reactor.id.to_string())
                .map(|(_, e)| num(e, "rev"))
                .collect();
            assert_eq!(revs.len(), ROUNDS);
            assert!(
                revs.windows(2).all(|w| w[0] < w[1]),
                "{name} got {}'s reactions out of rev order: {revs:?}",
                reactor.username
            );
        }
        for m in &all {
            view.assert_matches(m, name);
        }
    }
    assert_eq!(c.count("reactions").await, 2 * ROUNDS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_and_a_delete_at_once_end_as_a_tombstone_everywhere() {
    let c = cluster().await;
    let (n0, n1, n2) = (c.node(0), c.node(1), c.node(2));
    let ann = n0.register("ann").await;
    let bob = n0.register("bob").await;
    let gid = text(&room_named(n0, &ann, "general").await, "id");
    // ann edits from node 0 and deletes from node 1; bob watches on node 2.
    let a0 = n0.in_room(&ann, "general", WS).await;
    let a1 = n1.in_room(&ann, "general", WS).await;
    let b = n2.in_room(&bob, "general", WS).await;
    let clients = [("ann@0", &a0), ("ann@1", &a1), ("bob@2", &b)];
    for (_, s) in &clients {
        s.drain("message");
    }

    const ROUNDS: usize = 20;
    let mut rounds = Vec::new();
    let mut edits_won = 0;
    for round in 0..ROUNDS {
        let m = send(&a0, "general", &format!("orig-{round}")).await;
        let (edited, deleted) = tokio::join!(
            a0.call(
                "editMessage",
                edit("general", &m["id"], &format!("edited-{round}"))
            ),
            a1.call("deleteMessage", json!({"room": "general", "id": m["id"]})),
        );
        ack_ok(&deleted);
        let edit_ok = if edited["ok"] == true {
            edits_won += 1;
            true
        } else {
            // The delete came first: a deleted message cannot be edited.
            ack_error(&edited, "invalid_input");
            false
        };
        let mid = text(&m, "id");
        let (body, is_deleted, _) = db_message(&c.db, &mid).await;
        assert_eq!((body.as_str(), is_deleted), ("", true), "round {round}");
        rounds.push((mid, edit_ok));
    }
    assert_eq!(message_rows_containing(&c.db, "orig-").await, 0);
    assert_eq!(message_rows_containing(&c.db, "edited-").await, 0);
    // One rev per send, per deletion, per edit that happened.
    assert_eq!(
        last_rev(n2, &bob, &gid).await,
        (2 * ROUNDS + edits_won) as i64
    );

    let mut views = HashMap::new();
    settle(&clients, &mut views, "every deletion and edit", |v| {
        rounds.iter().all(|(id, edit_ok)| {
            let deleted = v.messages.get(id).is_some_and(|k| k.deleted);
            let edited = !edit_ok
                || v.log
                    .iter()
                    .any(|(n, e)| n == "messageUpdated" && e["message"]["id"] == id.as_str());
            deleted && edited
        })
    })
    .await;
    let all = all_messages(n1, &bob, &gid).await;
    assert_eq!(all.len(), ROUNDS);
    for m in &all {
        assert_tombstone(m);
    }
    for (name, _) in &clients {
        let view = &views[*name];
        for (id, edit_ok) in &rounds {
            let deletions: Vec<i64> = view
                .log
                .iter()
                .filter(|(n, e)| n == "messageDeleted" && e["id"] == id.as_str())
                .map(|(_, e)| num(e, "rev"))
                .collect();
            assert_eq!(deletions.len(), 1, "{name}: one messageDeleted for {id}");
            let updates: Vec<i64> = view
                .log
                .iter()
                .filter(|(n, e)| n == "messageUpdated" && e["message"]["id"] == id.as_str())
                .map(|(_, e)| num(&e["message"], "rev"))
                .collect();
            assert_eq!(updates.len(), usize::from(*edit_ok), "{name}: {id}");
            assert!(
                updates.iter().all(|r| *r < deletions[0]),
                "{name}: an edit after the deletion of {id}: {updates:?} vs {deletions:?}"
            );
        }
        for m in &all {
            view.assert_matches(m, name);
        }
    }
}
