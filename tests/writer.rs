//! The message writer: the access rule applied again at commit, and a row Postgres refuses
//! failing only itself, without pushing the rest of its batch into one commit per message.

mod common;

use std::sync::Arc;

use common::{spawn_app, Session, TestApp};
use huddle::{
    error::AppError,
    metrics::Metrics,
    store::{
        messages::{insert_batch, BatchOutcome, NewMessage, Stored},
        rooms::RoomRef,
    },
    writer::{Applied, Change, Writer},
};
use serde_json::Value;
use uuid::Uuid;

fn room_ref(room: &Value) -> RoomRef {
    RoomRef {
        id: room["id"].as_str().unwrap().parse().unwrap(),
        name: room["name"].as_str().unwrap().to_owned(),
    }
}

fn message(room: &RoomRef, sender: &Session, body: &str) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        room_id: room.id,
        sender_id: sender.id,
        body: body.to_owned(),
        ..NewMessage::default()
    }
}

async fn last_seq(app: &TestApp, room: &RoomRef) -> i64 {
    sqlx::query_scalar("select last_seq from rooms where id = $1")
        .bind(room.id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A socket may still believe it is in a room after a kick it was not told about (a lost bus
/// message): the batch statement itself refuses the message, and uses up no seq.
#[tokio::test]
async fn a_removed_member_or_a_disabled_user_cannot_post_whatever_their_socket_believes() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let carl = app.register("carl").await;
    let crew = app.create_room(&owner, "crew", "private").await;
    let square = app.create_room(&owner, "square", "public").await;
    app.grant(&owner, &crew, &bob, "member").await.ok(200);
    app.grant(&owner, &crew, &carl, "member").await.ok(200);
    let (crew, square) = (room_ref(&crew), room_ref(&square));
    app.delete(
        &format!("/api/rooms/{}/members/{}", crew.id, bob.id),
        Some(&owner.access),
    )
    .await
    .ok(204);
    sqlx::query("update users set disabled_at = now() where id = $1")
        .bind(carl.id)
        .execute(&app.db)
        .await
        .unwrap();

    let batch = [
        message(&crew, &owner, "still the owner's room"),
        message(&crew, &bob, "kicked, but my socket did not hear it"),
        message(&square, &bob, "a public room needs no membership"),
        message(&crew, &carl, "disabled"),
        message(&square, &carl, "disabled here too"),
        message(&crew, &owner, "and again"),
    ];
    let outcomes = insert_batch(&app.db, &batch, huddle::store::messages::Log::InStatement)
        .await
        .unwrap();
    let summary: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            BatchOutcome::New(m) => format!("{} {}", m.body, m.seq),
            BatchOutcome::Duplicate(id) => format!("dup {id}"),
            BatchOutcome::NoRoom => "no room".into(),
            BatchOutcome::Refused => "refused".into(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "still the owner's room 1",
            "refused",
            "a public room needs no membership 1",
            "refused",
            "refused",
            "and again 2",
        ]
    );
    // The refused messages took no seq: the rooms' counters stay gap-free.
    assert_eq!(last_seq(&app, &crew).await, 2);
    assert_eq!(last_seq(&app, &square).await, 1);
}

/// A NUL (which Postgres text refuses) in one message of a big batch: that message alone is
/// refused as the client's fault, every other one is committed in order, and the writer finds
/// it in a handful of statements rather than one per message.
#[tokio::test]
async fn a_row_postgres_refuses_fails_only_itself_in_a_few_statements() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let room = room_ref(&app.create_room(&ann, "busy", "public").await);
    let metrics = Arc::new(Metrics::default());
    let writer = Writer::start(
        app.db.clone(),
        metrics.clone(),
        Arc::new(|_committed| Box::pin(async {})),
        0,
    );
    let mut receipts = Vec::new();
    for i in 0..301 {
        let body = if i == 150 {
            "bad \u{0} byte".to_owned()
        } else {
            format!("m{i}")
        };
        let receipt = writer
            .submit(
                Change::Send(message(&room, &ann, &body)),
                room.clone(),
                Vec::new(),
            )
            .await
            .unwrap();
        receipts.push(receipt);
    }
    let mut seqs = Vec::new();
    for (i, receipt) in receipts.into_iter().enumerate() {
        match receipt.outcome().await {
            Ok(Applied::Sent(Stored::New(m))) => {
                assert_eq!(m.body, format!("m{i}"));
                seqs.push(m.seq);
            }
            Err(AppError::InvalidInput { .. }) if i == 150 => {}
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "in order, gap-free");
    let statements = metrics.writer_statements.get();
    assert!(
        statements <= 40,
        "{statements} statements for 301 messages with one bad row"
    );
}

/// Deleting a room must not hold the room's row lock (which every batch of the writer takes for
/// its rooms) while its messages go: here one of its messages is held locked by another
/// transaction, so the deletion waits, and meanwhile sends to that very room and to another one
/// are committed and acknowledged as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_room_does_not_hold_up_the_writer() {
    use common::sio::{ack_ok, Transport};
    use serde_json::json;
    use std::time::{Duration, Instant};

    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let big = app.create_room(&ann, "big", "public").await;
    app.seed_messages(&big, &ann, 20).await;
    let big_id = big["id"].as_str().unwrap().to_owned();
    let s = app.in_room(&ann, "big", Transport::WebSocket).await;
    let g = app.in_room(&ann, "general", Transport::WebSocket).await;

    // Another transaction holds one of the room's messages.
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("select id from messages where room_id = $1 and seq = 20 for update")
        .bind(Uuid::parse_str(&big_id).unwrap())
        .execute(&mut *holder)
        .await
        .unwrap();
    let deleting = {
        let api = app.api.clone();
        let access = ann.access.clone();
        let path = format!("/api/rooms/{big_id}");
        tokio::spawn(async move { api.delete(&path, Some(&access)).await.status })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !deleting.is_finished(),
        "the deletion waits for the held message"
    );

    let started = Instant::now();
    for i in 0..5 {
        ack_ok(
            &s.call(
                "sendMessage",
                json!({"room": "big", "body": format!("b{i}")}),
            )
            .await,
        );
        ack_ok(
            &g.call(
                "sendMessage",
                json!({"room": "general", "body": format!("g{i}")}),
            )
            .await,
        );
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "10 sends took {took:?} during the deletion"
    );

    holder.commit().await.unwrap();
    assert_eq!(deleting.await.unwrap(), 204u16);
    let left: i64 = sqlx::query_scalar("select count(*) from messages where room_id = $1")
        .bind(Uuid::parse_str(&big_id).unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "the room's messages, those sent meanwhile included, are gone"
    );
}

/// A bug that panics while a batch is handled (here, in delivering it) costs that batch, not the
/// writer: the next messages are committed as usual.
#[tokio::test]
async fn the_writer_outlives_a_panic_in_a_batch() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let room = room_ref(&app.create_room(&ann, "busy", "public").await);
    let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = delivered.clone();
    let writer = Writer::start(
        app.db.clone(),
        Arc::new(Metrics::default()),
        Arc::new(move |_committed| {
            let first = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            Box::pin(async move {
                assert!(!first, "a bug in the first delivery");
            })
        }),
        0,
    );
    let submit = |body: &str| {
        writer.submit(
            Change::Send(message(&room, &ann, body)),
            room.clone(),
            Vec::new(),
        )
    };
    // The first message is committed and answered before its delivery panics.
    let first = submit("first").await.unwrap().outcome().await;
    assert!(
        matches!(first, Ok(Applied::Sent(Stored::New(_)))),
        "{first:?}"
    );
    let second = submit("second").await.unwrap().outcome().await;
    let Ok(Applied::Sent(Stored::New(second))) = second else {
        panic!("the writer stopped after the panic: {second:?}")
    };
    assert_eq!(second.seq, 2);
    // Delivery runs on a task of its own, after the answers: a drain waits for it.
    assert!(writer.drain(std::time::Duration::from_secs(5)).await);
    assert_eq!(
        delivered.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the second batch is delivered after the first delivery panicked"
    );
}
