//! Each room's second counter, `rev`: every change to a room's timeline takes the next one. Until
//! edits, deletions and reactions exist, the only change is a new message, so a message's `rev`
//! is gap-free like its `seq`, and the room's `last_rev` follows its `last_seq`; whatever path a
//! message takes (acks, live delivery, history, room objects) shows the same numbers.

mod common;

use common::{
    sio::{both_transports, Transport},
    spawn_app,
};
use futures::future::join_all;
use serde_json::{json, Value};

both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_sends_take_gap_free_revs_in_commit_order,
);

fn num(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

async fn concurrent_sends_take_gap_free_revs_in_commit_order(t: Transport) {
    let app = spawn_app().await;
    let mut senders = Vec::new();
    for name in ["ann", "bob", "cid"] {
        let who = app.register(name).await;
        senders.push(app.in_room(&who, "general", t).await);
    }
    let reader = app.register("dee").await;
    let watcher = app.in_room(&reader, "general", t).await;

    // Three sockets send at once; each ack, each live delivery and each history row carries the
    // message's rev, equal to its seq.
    let mut pending = Vec::new();
    for i in 0..40 {
        for s in &senders {
            pending.push(s.call(
                "sendMessage",
                json!({"room": "general", "body": format!("m{i}")}),
            ));
        }
    }
    let acks = join_all(pending).await;
    let mut revs: Vec<i64> = acks
        .iter()
        .map(|ack| {
            let m = &ack["message"];
            assert_eq!(num(m, "rev"), num(m, "seq"), "{m}");
            num(m, "rev")
        })
        .collect();
    revs.sort();
    assert_eq!(
        revs,
        (1..=120).collect::<Vec<_>>(),
        "gap-free, each rev once"
    );

    let mut live = Vec::new();
    while live.len() < 120 {
        let m = watcher.next("message").await;
        if m["kind"] == "user" {
            assert_eq!(num(&m, "rev"), num(&m, "seq"), "{m}");
            live.push(num(&m, "rev"));
        }
    }
    assert_eq!(
        live,
        (1..=120).collect::<Vec<_>>(),
        "delivered in rev order"
    );

    let rooms = app.get("/api/rooms", Some(&reader.access)).await;
    let general = rooms.ok(200)["rooms"][0].clone();
    assert_eq!(
        (num(&general, "last_seq"), num(&general, "last_rev")),
        (120, 120)
    );
    let page = app
        .get(
            &format!(
                "/api/rooms/{}/messages?after=0&limit=200",
                general["id"].as_str().unwrap()
            ),
            Some(&reader.access),
        )
        .await;
    let stored: Vec<i64> = page.ok(200)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| num(m, "rev"))
        .collect();
    assert_eq!(stored, (1..=120).collect::<Vec<_>>());
}
