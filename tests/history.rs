//! History pages and read state over REST, and the index that serves them.

mod common;

use common::{seqs, spawn_app, Session, TestApp};
use serde_json::{json, Value};

async fn page(app: &TestApp, who: &Session, room: &Value, query: &str) -> Value {
    let path = format!(
        "/api/rooms/{}/messages{query}",
        room["id"].as_str().unwrap()
    );
    app.get(&path, Some(&who.access)).await.ok(200).clone()
}

#[tokio::test]
async fn seqs_run_1_2_3_per_room_without_gaps() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let a = app.create_room(&ann, "alpha", "public").await;
    let b = app.create_room(&ann, "beta", "public").await;
    app.seed_messages(&a, &ann, 3).await;
    app.seed_messages(&b, &ann, 2).await;
    app.seed_messages(&a, &ann, 2).await;
    assert_eq!(seqs(&page(&app, &ann, &a, "").await), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&page(&app, &ann, &b, "").await), [1, 2]);
    let room = app
        .get(
            &format!("/api/rooms/{}", a["id"].as_str().unwrap()),
            Some(&ann.access),
        )
        .await;
    assert_eq!(room.ok(200)["last_seq"], 5);
}

/// Batch statements on many connections at once (as on several nodes): distinct gap-free seqs,
/// and every message keeps the id it was given.
#[tokio::test]
async fn concurrent_senders_get_distinct_gap_free_seqs() {
    use huddle::store::messages::{insert_batch, BatchOutcome, NewMessage};
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let room = app.create_room(&ann, "busy", "public").await;
    let room_id: uuid::Uuid = room["id"].as_str().unwrap().parse().unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let db = app.db.clone();
        let message = NewMessage {
            id: uuid::Uuid::now_v7(),
            room_id,
            sender_id: ann.id,
            body: format!("m{i}"),
            ..NewMessage::default()
        };
        tasks.push(tokio::spawn(async move {
            let outcome = insert_batch(
                &db,
                std::slice::from_ref(&message),
                huddle::store::messages::Log::InStatement,
            )
            .await
            .unwrap();
            let [BatchOutcome::New(stored)] = &outcome[..] else {
                panic!("not new: {outcome:?}")
            };
            assert_eq!(stored.id, message.id);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = page(&app, &ann, &room, "?limit=200").await;
    assert_eq!(seqs(&all), (1..=40).collect::<Vec<_>>());
}

/// The writer's batch statement: seqs per room in batch order, repeats of a `client_id` (within
/// the batch or from before) answered with the first copy and using up no seq, and a deleted
/// room's messages refused while the rest of the batch is stored.
#[tokio::test]
async fn a_batch_numbers_rooms_apart_and_stores_repeats_once() {
    use huddle::store::messages::{insert_batch, BatchOutcome, NewMessage};
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let id = |room: &Value| -> uuid::Uuid { room["id"].as_str().unwrap().parse().unwrap() };
    let (a, b, gone) = (
        app.create_room(&ann, "alpha", "public").await,
        app.create_room(&ann, "beta", "public").await,
        app.create_room(&ann, "gone", "public").await,
    );
    let msg = |room: &Value, body: &str, client_id: Option<&str>| NewMessage {
        id: uuid::Uuid::now_v7(),
        room_id: id(room),
        sender_id: ann.id,
        body: body.into(),
        client_id: client_id.map(Into::into),
        ..NewMessage::default()
    };
    let earlier = insert_batch(
        &app.db,
        &[msg(&a, "first", Some("k1"))],
        huddle::store::messages::Log::InStatement,
    )
    .await
    .unwrap();
    let [BatchOutcome::New(earlier)] = &earlier[..] else {
        panic!("not new: {earlier:?}")
    };
    let delete = format!("/api/rooms/{}", id(&gone));
    app.delete(&delete, Some(&ann.access)).await.ok(204);

    let batch = [
        msg(&a, "a1", None),
        msg(&b, "b1", Some("k2")),
        msg(&a, "again", Some("k1")), // sent before this batch
        msg(&gone, "lost", None),
        msg(&a, "a2", Some("k3")),
        msg(&b, "b1 again", Some("k2")), // repeat within the batch
        msg(&b, "b2", None),
    ];
    let outcomes = insert_batch(&app.db, &batch, huddle::store::messages::Log::InStatement)
        .await
        .unwrap();
    // A repeat is answered with its first copy's id: name it by that copy's body and seq.
    let mut first_copies = std::collections::HashMap::new();
    first_copies.insert(earlier.id, format!("{} {}", earlier.body, earlier.seq));
    for outcome in &outcomes {
        if let BatchOutcome::New(m) = outcome {
            first_copies.insert(m.id, format!("{} {}", m.body, m.seq));
        }
    }
    let summary: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            BatchOutcome::New(m) => format!("new {} {}", m.body, m.seq),
            BatchOutcome::Duplicate(id) => format!("dup {}", first_copies[id]),
            BatchOutcome::NoRoom => "no room".into(),
            BatchOutcome::Refused => "refused".into(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "new a1 2",
            "new b1 1",
            "dup first 1",
            "no room",
            "new a2 3",
            "dup b1 1",
            "new b2 2"
        ]
    );
    let BatchOutcome::Duplicate(dup) = &outcomes[2] else {
        unreachable!()
    };
    assert_eq!(*dup, earlier.id);
    assert_eq!(seqs(&page(&app, &ann, &a, "").await), [1, 2, 3]);
    assert_eq!(seqs(&page(&app, &ann, &b, "").await), [1, 2]);
    let stored: i64 = sqlx::query_scalar("select count(*) from messages")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 5);
}

#[tokio::test]
async fn a_message_has_exactly_the_contracts_fields() {
    let app = spawn_app().await;
    let bea = app.register("bea").await;
    let room = app.create_room(&bea, "shape", "public").await;
    app.seed_messages(&room, &bea, 1).await;
    let m = page(&app, &bea, &room, "").await["messages"][0].clone();
    let mut keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "body",
            "client_id",
            "created_at",
            "deleted_at",
            "edited_at",
            "id",
            "mentions",
            "metadata",
            "my_reactions",
            "reactions",
            "reply_to",
            "rev",
            "room_id",
            "sender",
            "seq",
            "thread",
            "thread_root_id"
        ]
    );
    // v2's fields, as a message that nothing has happened to has them.
    for (field, empty) in [
        ("deleted_at", Value::Null),
        ("reply_to", Value::Null),
        ("thread_root_id", Value::Null),
        ("thread", Value::Null),
        ("reactions", json!([])),
        ("mentions", json!([])),
        ("metadata", json!({})),
        ("my_reactions", json!([])),
    ] {
        assert_eq!(m[field], empty, "{field}");
    }
    assert_eq!(m["room_id"], room["id"]);
    assert_eq!(
        m["sender"],
        json!({"id": bea.id, "username": "bea", "display_name": "bea"})
    );
    assert_eq!(m["body"], "message 1");
    assert_eq!(m["client_id"], Value::Null);
    assert_eq!(m["edited_at"], Value::Null);
    assert_eq!(
        m["rev"], 1,
        "a message's rev is its sending's until it changes"
    );
    let id: uuid::Uuid = m["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn pages_walk_backwards_and_forwards_with_exact_has_more() {
    let app = spawn_app().await;
    let cy = app.register("cyd").await;
    let room = app.create_room(&cy, "pages", "public").await;
    app.seed_messages(&room, &cy, 12).await;

    let newest = page(&app, &cy, &room, "?limit=5").await;
    assert_eq!(seqs(&newest), [8, 9, 10, 11, 12]);
    assert_eq!(newest["has_more"], true);
    let older = page(&app, &cy, &room, "?limit=5&before=8").await;
    assert_eq!(seqs(&older), [3, 4, 5, 6, 7]);
    assert_eq!(older["has_more"], true);
    let oldest = page(&app, &cy, &room, "?limit=5&before=3").await;
    assert_eq!(seqs(&oldest), [1, 2]);
    assert_eq!(oldest["has_more"], false);
    let exact = page(&app, &cy, &room, "?limit=7&before=8").await;
    assert_eq!(seqs(&exact), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        exact["has_more"], false,
        "exactly the rest: nothing older remains"
    );

    let first = page(&app, &cy, &room, "?after=0&limit=5").await;
    assert_eq!(seqs(&first), [1, 2, 3, 4, 5]);
    assert_eq!(first["has_more"], true);
    let last = page(&app, &cy, &room, "?after=7&limit=5").await;
    assert_eq!(seqs(&last), [8, 9, 10, 11, 12]);
    assert_eq!(last["has_more"], false);
    let beyond = page(&app, &cy, &room, "?after=12").await;
    assert_eq!(seqs(&beyond), Vec::<i64>::new());
    assert_eq!(beyond["has_more"], false);

    let default = page(&app, &cy, &room, "").await;
    assert_eq!(seqs(&default).len(), 12);
    assert_eq!(default["has_more"], false);
}

#[tokio::test]
async fn bad_page_parameters_are_invalid_input() {
    let app = spawn_app().await;
    let dee = app.register("dee").await;
    let room = app.create_room(&dee, "params", "public").await;
    for (query, field) in [
        ("?before=1&after=1", "after"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?before=-1", "before"),
        ("?after=1.5", "after"),
        ("?after=", "after"),
    ] {
        let path = format!(
            "/api/rooms/{}/messages{query}",
            room["id"].as_str().unwrap()
        );
        let reply = app.get(&path, Some(&dee.access)).await;
        assert!(
            reply.error(400, "invalid_input")["fields"][field].is_string(),
            "{query}: {}",
            reply.body
        );
    }
}

async fn assert_read(app: &TestApp, who: &Session, n: i64) {
    let mine = app.get("/api/me/rooms", Some(&who.access)).await;
    let r = mine.ok(200)["rooms"][0].clone();
    assert_eq!(r["last_read_seq"], n);
    assert_eq!(r["unread"], 4 - n);
}

#[tokio::test]
async fn read_positions_move_forward_only_and_stop_at_last_seq() {
    let app = spawn_app().await;
    let eli = app.register("eli").await;
    let room = app.create_room(&eli, "reading", "private").await;
    app.seed_messages(&room, &eli, 4).await;
    let path = format!("/api/rooms/{}/read", room["id"].as_str().unwrap());
    app.put(&path, Some(&eli.access), json!({"seq": 2}))
        .await
        .ok(204);
    assert_read(&app, &eli, 2).await;
    app.put(&path, Some(&eli.access), json!({"seq": 1}))
        .await
        .ok(204);
    assert_read(&app, &eli, 2).await;
    app.put(&path, Some(&eli.access), json!({"seq": 99}))
        .await
        .ok(204);
    assert_read(&app, &eli, 4).await;
    for bad in [
        json!({"seq": -1}),
        json!({"seq": "3"}),
        json!({"seq": 1.5}),
        json!({}),
    ] {
        app.put(&path, Some(&eli.access), bad)
            .await
            .error(400, "invalid_input");
    }
}

#[tokio::test]
async fn a_public_rooms_non_member_cannot_mark_it_read() {
    let app = spawn_app().await;
    let fin = app.register("fin").await;
    let guy = app.register("guy").await;
    let room = app.create_room(&fin, "square", "public").await;
    let path = format!("/api/rooms/{}/read", room["id"].as_str().unwrap());
    app.put(&path, Some(&guy.access), json!({"seq": 0}))
        .await
        .error(403, "forbidden");
    // ...but may read its history.
    page(&app, &guy, &room, "").await;
}

#[tokio::test]
async fn history_pages_are_served_by_the_room_seq_index() {
    let app = spawn_app().await;
    let hue = app.register("hue").await;
    let room = app.create_room(&hue, "indexed", "public").await;
    app.seed_messages(&room, &hue, 3).await;
    let mut conn = app.db.acquire().await.unwrap();
    sqlx::query("set enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for (order, cmp) in [("desc", "<"), ("asc", ">")] {
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "explain select * from messages where room_id = $1 and seq {cmp} $2 order by seq {order} limit 51"
        ))
        .bind(uuid::Uuid::parse_str(room["id"].as_str().unwrap()).unwrap())
        .bind(10_i64)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("messages_room_seq_key"), "{plan}");
        assert!(!plan.contains("Sort"), "no sort step: {plan}");
    }
}

/// The writer's connection plans its batch statement once, generically, and only over indexes
/// (see `store::writer_pool`): a plan made while `messages` was empty must not scan it later.
#[tokio::test]
async fn the_writer_connection_plans_generically_over_indexes_only() {
    let app = spawn_app().await;
    let writer = huddle::store::writer_pool(&app.db);
    for (setting, expected) in [
        ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"),
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
    ] {
        let value: String = sqlx::query_scalar("select current_setting($1)")
            .bind(setting)
            .fetch_one(&writer)
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting}");
    }
    // On the still empty messages table, the lookup of earlier client_ids uses the index.
    let plan: Vec<String> = sqlx::query_scalar(
        "explain select m.id from unnest($1::uuid[], $2::uuid[], $3::text[]) as k(r, s, c)
         join messages m on m.room_id = k.r and m.sender_id = k.s and m.client_id = k.c",
    )
    .bind(Vec::<uuid::Uuid>::new())
    .bind(Vec::<uuid::Uuid>::new())
    .bind(Vec::<String>::new())
    .fetch_all(&writer)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("messages_client_id_key"), "{plan}");
    assert!(!plan.contains("Seq Scan on messages"), "{plan}");
}
