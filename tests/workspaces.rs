//! Workspaces (tenants) are fully isolated. Two workspaces hold the same usernames and room
//! names; a user of one walks every REST route and Socket.IO event against the other's rooms and
//! users, by id, by name and by username, and gets exactly what an unknown id or name gets,
//! while the database does not change. Plus the workspace routes' status codes, and a token
//! whose `wid` was altered.

mod common;

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use common::{
    sio::{ack_ok, Auth, SioClient, Transport},
    spawn_app, spawn_app_with,
    tenancy::{
        assert_like_unknown, fingerprint, id, register_in, room_events, room_routes, user_routes,
    },
    Session, TestApp, TEST_JWT_SECRET,
};
use huddle::workspaces::{self, WorkspaceId};
use serde_json::{json, Value};
use uuid::Uuid;

const T: Transport = Transport::WebSocket;

/// One workspace's people and rooms, named alike in both workspaces.
struct Tenant {
    ann: Session,
    bob: Session,
    general: Value,
    lobby: Value,
    secret: Value,
    direct: Value,
}

async fn populate(app: &TestApp, slug: &str) -> Tenant {
    let ann = register_in(app, slug, "ann").await;
    let bob = register_in(app, slug, "bob").await;
    let lobby = app.create_room(&ann, "lobby", "public").await;
    let secret = app.create_room(&ann, "secret", "private").await;
    app.grant(&ann, &secret, &bob, "member").await.ok(200);
    let direct = app
        .post(
            &format!("/api/direct/{}", bob.id),
            Some(&ann.access),
            json!({}),
        )
        .await
        .ok(200)
        .clone();
    let general = app.get("/api/rooms", Some(&ann.access)).await.ok(200)["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "general")
        .expect("every workspace has its DEFAULT_ROOMS")
        .clone();
    for room in [&general, &lobby, &secret, &direct] {
        app.seed_messages(room, &ann, 2).await;
    }
    Tenant {
        ann,
        bob,
        general,
        lobby,
        secret,
        direct,
    }
}

#[tokio::test]
async fn another_workspaces_rooms_and_users_are_exactly_unknown_ones() {
    let app = spawn_app_with(&[("ROOM_EVENT_RATE", "0")]).await;
    let acme = workspaces::create(&app.state, "acme", "Acme Inc.")
        .await
        .unwrap();
    let home = populate(&app, "default").await;
    let other = populate(&app, "acme").await;
    // Names that exist in the other workspace only.
    let carol = register_in(&app, "acme", "carol").await;
    let only_there = app.create_room(&other.ann, "acme-only", "public").await;
    let hidden_there = app.create_room(&other.ann, "acme-hidden", "private").await;
    app.make_admin(&home.ann).await;
    let me = &home.ann;

    // The other workspace's users are in its own general, with sockets.
    let theirs = app.in_room(&other.ann, "general", T).await;
    let theirs_too = app.in_room(&other.bob, "general", T).await;
    // What bob's arrival told ann's socket is not the test's business.
    theirs.drain("presence");
    theirs.drain("message");
    let before = fingerprint(&app.db).await;

    // ---- REST, by room id: every route answers as for a room that does not exist.
    let missing_room = Uuid::now_v7().to_string();
    for room in [
        &other.general,
        &other.lobby,
        &other.secret,
        &other.direct,
        &only_there,
        &hidden_there,
    ] {
        for user in [other.bob.id, home.bob.id] {
            assert_like_unknown(
                &app,
                &me.access,
                room_routes(&id(room), user),
                room_routes(&missing_room, user),
            )
            .await;
        }
    }

    // ---- REST, by user id: inside the caller's own room, and as an admin.
    let missing_user = Uuid::now_v7().to_string();
    let own_room = id(&home.secret);
    for user in [&other.ann, &other.bob, &carol] {
        assert_like_unknown(
            &app,
            &me.access,
            user_routes(&own_room, &user.id.to_string()),
            user_routes(&own_room, &missing_user),
        )
        .await;
    }

    // ---- REST lists: nothing of the other workspace.
    let their_ids: Vec<String> = [
        &other.general,
        &other.lobby,
        &other.secret,
        &other.direct,
        &only_there,
        &hidden_there,
    ]
    .iter()
    .map(|r| id(r))
    .collect();
    for path in ["/api/rooms", "/api/rooms?limit=200", "/api/me/rooms"] {
        let text = app.get(path, Some(&me.access)).await.ok(200).to_string();
        for their in &their_ids {
            assert!(
                !text.contains(their.as_str()),
                "{path} shows {their}: {text}"
            );
        }
        assert!(!text.contains("acme-"), "{path}: {text}");
    }

    // ---- Socket.IO: by id and by name, as for a room that does not exist.
    let s = app.socket(&me.access, T).await;
    let unknown_name = "no-such-room";
    let mut asked: Vec<String> = their_ids.clone();
    asked.extend([
        "acme-only".to_owned(),
        "acme-hidden".to_owned(),
        other.direct["name"].as_str().unwrap().to_owned(),
    ]);
    for room in &asked {
        let control_room = if room.parse::<Uuid>().is_ok() {
            missing_room.as_str()
        } else {
            unknown_name
        };
        for ((event, data), (_, control)) in
            room_events(room).into_iter().zip(room_events(control_room))
        {
            let got = s.call(event, data.clone()).await;
            let want = s.call(event, control).await;
            assert_eq!(got, want, "{event} {data}");
            assert_eq!(got["error"]["code"], "not_found", "{event} {data}: {got}");
        }
    }
    // The `error` events of the refused joins say the same as for an unknown room.
    for error in s.drain("error") {
        assert_eq!(error["code"], "not_found", "{error}");
        assert_eq!(error["message"], "Room not found.", "{error}");
    }
    assert!(s.drain("history").is_empty(), "no history of their rooms");
    assert!(s.drain("message").is_empty(), "no message of their rooms");

    // directMessage to their users, by id and by a username only they have.
    for (to, control) in [
        (other.bob.id.to_string(), missing_user.clone()),
        (carol.id.to_string(), missing_user.clone()),
        ("carol".to_owned(), "nobody-here".to_owned()),
    ] {
        let got = s
            .call("directMessage", json!({"to": to, "body": "psst"}))
            .await;
        let want = s
            .call("directMessage", json!({"to": control, "body": "psst"}))
            .await;
        assert_eq!(got, want, "directMessage to {to}");
        assert_eq!(got["error"]["code"], "not_found", "{got}");
    }

    // listOnline and presence: the same room name, another workspace's sockets never show.
    let mine = app.in_room(me, "general", T).await;
    let online = ack_ok(&mine.call("listOnline", json!({"room": "general"})).await).clone();
    let names: Vec<&str> = online["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, [me.id.to_string()], "{online}");
    for socket in [&theirs, &theirs_too] {
        socket
            .assert_silent("presence", Duration::from_millis(300))
            .await;
        assert!(
            socket.drain("message").is_empty(),
            "no welcome from the other workspace"
        );
    }

    assert_eq!(
        before,
        fingerprint(&app.db).await,
        "nothing changed in the database"
    );

    // ---- The same names, inside the caller's own workspace, are the caller's own.
    let joined = ack_ok(&s.call("joinRoom", json!("lobby")).await).clone();
    assert_eq!(joined["room"]["id"], home.lobby["id"]);
    let sent = s
        .call("directMessage", json!({"to": "bob", "body": "hi bob"}))
        .await;
    assert_eq!(ack_ok(&sent)["room"]["id"], home.direct["id"]);
    let ws = app.get("/api/workspace", Some(&other.ann.access)).await;
    assert_eq!(ws.ok(200)["id"], acme.id.to_string());
    let me_there = app.get("/api/me", Some(&other.ann.access)).await;
    assert_eq!(me_there.ok(200)["workspace_id"], acme.id.to_string());
    let me_here = app.get("/api/me", Some(&me.access)).await;
    assert_eq!(
        me_here.ok(200)["workspace_id"],
        WorkspaceId::DEFAULT.to_string()
    );
}

#[tokio::test]
async fn usernames_are_unique_per_workspace_and_login_names_its_workspace() {
    let app = spawn_app().await;
    workspaces::create(&app.state, "acme", "Acme")
        .await
        .unwrap();
    let here = app.register("dana").await;
    let there = register_in(&app, "acme", "Dana").await;
    assert_ne!(here.id, there.id);
    app.post(
        "/api/auth/register",
        None,
        json!({"workspace": "acme", "username": "DANA", "password": "long enough"}),
    )
    .await
    .error(409, "conflict");

    // Each password works in its own workspace only.
    let login = |workspace: Option<&str>, password: &str| {
        let mut body = json!({"username": "dana", "password": password});
        if let Some(ws) = workspace {
            body["workspace"] = json!(ws);
        }
        app.post("/api/auth/login", None, body)
    };
    let reply = login(Some("acme"), &there.password).await;
    assert_eq!(reply.ok(200)["user"]["id"], there.id.to_string());
    let reply = login(None, &here.password).await;
    assert_eq!(reply.ok(200)["user"]["id"], here.id.to_string());
    let reply = login(Some("default"), &here.password).await;
    assert_eq!(reply.ok(200)["user"]["id"], here.id.to_string());
    login(None, &there.password)
        .await
        .error(401, "invalid_credentials");
    login(Some("acme"), &here.password)
        .await
        .error(401, "invalid_credentials");

    // An unknown workspace: register 404, login as an unknown user.
    for slug in ["nope", "Not A Slug", ""] {
        app.post(
            "/api/auth/register",
            None,
            json!({"workspace": slug, "username": "erin", "password": "long enough"}),
        )
        .await
        .error(404, "not_found");
        let unknown = login(Some(slug), &there.password).await;
        let unknown_user = app.login_raw("nobody-at-all", "whatever-password").await;
        unknown.error(401, "invalid_credentials");
        assert_eq!(unknown.body, unknown_user.body);
    }
    assert_eq!(app.count("users").await, 2);
}

#[tokio::test]
async fn workspace_signup_is_closed_by_default() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/workspaces",
            None,
            json!({"slug": "acme", "name": "Acme",
                   "owner": {"username": "olga", "password": "long enough"}}),
        )
        .await;
    reply.error(403, "forbidden");
    assert_eq!(app.count("workspaces").await, 1);
}

#[tokio::test]
async fn an_open_signup_creates_the_workspace_its_rooms_and_its_first_admin() {
    let app = spawn_app_with(&[("WORKSPACE_SIGNUP", "open")]).await;
    let signup = |slug: &str, name: &str, username: &str| {
        app.post(
            "/api/workspaces",
            None,
            json!({"slug": slug, "name": name,
                   "owner": {"username": username, "password": "long enough", "display_name": "Olga"}}),
        )
    };
    let reply = signup("acme", "Acme Inc.", "olga").await;
    let body = reply.ok(201).clone();
    let workspace = &body["workspace"];
    assert_eq!(workspace["slug"], "acme");
    assert_eq!(workspace["name"], "Acme Inc.");
    let mut keys: Vec<&String> = workspace.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "id", "name", "slug"]);
    assert_eq!(body["user"]["is_admin"], true);
    assert_eq!(body["user"]["display_name"], "Olga");
    assert_eq!(body["user"]["workspace_id"], workspace["id"]);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some());
    let token = body["access_token"].as_str().unwrap();
    assert!(body["refresh_token"].as_str().is_some());

    let mine = app.get("/api/workspace", Some(token)).await;
    assert_eq!(&mine.ok(200).clone(), workspace);
    let rooms = app.get("/api/rooms", Some(token)).await;
    assert_eq!(rooms.ok(200)["rooms"][0]["name"], "general");
    // The default workspace's own admin-free life goes on.
    let v1 = app.register("olga").await;
    let default = app.get("/api/workspace", Some(&v1.access)).await;
    assert_eq!(default.ok(200)["slug"], "default");

    signup("acme", "Another", "pete")
        .await
        .error(409, "conflict");
    signup("default", "Default again", "pete")
        .await
        .error(409, "conflict");
    for (slug, name, field) in [
        ("a", "ok", "slug"),
        ("Acme", "ok", "slug"),
        ("ac_me", "ok", "slug"),
        ("w".repeat(33).as_str(), "ok", "slug"),
        ("fine", "", "name"),
        ("fine", "n".repeat(65).as_str(), "name"),
    ] {
        let reply = signup(slug, name, "pete").await;
        let error = reply.error(400, "invalid_input");
        assert!(error["fields"][field].is_string(), "{slug} {name}: {error}");
    }
    signup("fine", "Fine", "x")
        .await
        .error(400, "invalid_input");
    // Nothing was left behind by the refusals.
    assert_eq!(app.count("workspaces").await, 2);
    assert_eq!(app.count("users").await, 2);
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_token_whose_wid_was_altered_is_unauthorized() {
    let app = spawn_app().await;
    let acme = workspaces::create(&app.state, "acme", "Acme")
        .await
        .unwrap();
    let ann = app.register("ann").await;
    let claims = claims_of(&ann.access);
    assert_eq!(claims["wid"], WorkspaceId::DEFAULT.to_string());
    // The control: the same claims, re-signed, are fine.
    app.get("/api/me", Some(&sign(&claims))).await.ok(200);

    for wid in [
        json!(acme.id.to_string()),
        json!(Uuid::now_v7().to_string()),
        json!("not-a-uuid"),
        Value::Null,
    ] {
        let mut altered = claims.clone();
        altered["wid"] = wid.clone();
        let token = sign(&altered);
        let reply = app.get("/api/me", Some(&token)).await;
        reply.error(401, "unauthorized");
        let refused = SioClient::connect(&app.base, Auth::Token(&token), T).await;
        assert_eq!(refused.err().as_deref(), Some("unauthorized"), "wid {wid}");
    }
    let mut without = claims.clone();
    without.as_object_mut().unwrap().remove("wid");
    app.get("/api/me", Some(&sign(&without)))
        .await
        .error(401, "unauthorized");
}

#[tokio::test]
async fn an_admin_acts_inside_its_own_workspace_only() {
    let app = spawn_app().await;
    workspaces::create(&app.state, "acme", "Acme")
        .await
        .unwrap();
    let boss = register_in(&app, "acme", "boss").await;
    sqlx::query("update users set is_admin = true where id = $1")
        .bind(boss.id)
        .execute(&app.db)
        .await
        .unwrap();
    let victim = app.register("victim").await;
    let room = app.create_room(&victim, "mine", "public").await;
    for path in [
        format!("/api/admin/users/{}/disable", victim.id),
        format!("/api/admin/users/{}/enable", victim.id),
    ] {
        app.post(&path, Some(&boss.access), json!({}))
            .await
            .error(404, "not_found");
    }
    // An admin may delete any room of its workspace; another workspace's is unknown.
    app.delete(&format!("/api/rooms/{}", id(&room)), Some(&boss.access))
        .await
        .error(404, "not_found");
    app.get("/api/me", Some(&victim.access)).await.ok(200);
    app.get(&format!("/api/rooms/{}", id(&room)), Some(&victim.access))
        .await
        .ok(200);
}

/// The writer stores a message in its room's workspace, and refuses a sender of another one
/// whatever the socket layer let through.
#[tokio::test]
async fn the_writer_refuses_a_sender_of_another_workspace() {
    use huddle::store::messages::{insert_batch, BatchOutcome, NewMessage};

    let app = spawn_app().await;
    workspaces::create(&app.state, "acme", "Acme")
        .await
        .unwrap();
    let here = app.register("ann").await;
    let there = register_in(&app, "acme", "ann").await;
    let room = app.create_room(&here, "lobby", "public").await;
    let room_id: Uuid = id(&room).parse().unwrap();
    let message = |sender: Uuid| NewMessage {
        id: Uuid::now_v7(),
        room_id,
        sender_id: sender,
        body: "hello".into(),
        ..NewMessage::default()
    };
    let outcomes = insert_batch(
        &app.db,
        &[message(there.id), message(here.id)],
        huddle::store::messages::Log::InStatement,
    )
    .await
    .unwrap();
    assert!(matches!(outcomes[0], BatchOutcome::Refused), "{outcomes:?}");
    let BatchOutcome::New(stored) = &outcomes[1] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(stored.seq, 1, "the refused message used up no seq");
    let (count, ws): (i64, Option<Uuid>) =
        sqlx::query_as("select count(*), min(workspace_id::text)::uuid from messages")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((count, ws), (1, Some(WorkspaceId::DEFAULT.as_uuid())));
}

/// Whatever the code does, the schema cannot hold a row whose ends are in two workspaces.
#[tokio::test]
async fn the_schema_refuses_rows_that_mix_two_workspaces() {
    let app = spawn_app().await;
    let acme = workspaces::create(&app.state, "acme", "Acme")
        .await
        .unwrap();
    let here = app.register("ann").await;
    let there = register_in(&app, "acme", "bob").await;
    let room: Uuid = id(&app.create_room(&here, "crew", "private").await)
        .parse()
        .unwrap();
    let default = WorkspaceId::DEFAULT.as_uuid();
    let acme = acme.id.as_uuid();
    let attempts = [
        // A member of another workspace, filed under either workspace.
        sqlx::query(
            "insert into room_members (workspace_id, room_id, user_id, role) values ($1, $2, $3, 'member')",
        )
        .bind(default)
        .bind(room)
        .bind(there.id),
        sqlx::query(
            "insert into room_members (workspace_id, room_id, user_id, role) values ($1, $2, $3, 'member')",
        )
        .bind(acme)
        .bind(room)
        .bind(there.id),
        // A message from another workspace's user.
        sqlx::query(
            "insert into messages (id, workspace_id, room_id, seq, rev, sender_id, body)
             values ($1, $2, $3, 99, 99, $4, 'x')",
        )
        .bind(Uuid::now_v7())
        .bind(default)
        .bind(room)
        .bind(there.id),
        // A session filed under another workspace than its user's.
        sqlx::query(
            "insert into sessions (id, workspace_id, user_id, refresh_token_hash, expires_at)
             values ($1, $2, $3, '\\x02', now() + interval '1 day')",
        )
        .bind(Uuid::now_v7())
        .bind(acme)
        .bind(here.id),
        // An audit line naming a user of another workspace.
        sqlx::query("insert into audit_log (workspace_id, action, actor_id) values ($1, 'room_created', $2)")
            .bind(acme)
            .bind(here.id),
        // A room created by a user of another workspace.
        sqlx::query(
            "insert into rooms (id, workspace_id, name, visibility, created_by)
             values ($1, $2, 'theirs', 'public', $3)",
        )
        .bind(Uuid::now_v7())
        .bind(acme)
        .bind(here.id),
    ];
    for (i, attempt) in attempts.into_iter().enumerate() {
        let err = attempt.execute(&app.db).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("23503"), "attempt {i}: {err}");
    }
}
