//! The ACL over REST: who may grant, change and remove members, with every role rule.

mod common;

use common::{spawn_app, Session, TestApp};
use serde_json::{json, Value};

struct Cast {
    app: TestApp,
    owner: Session,
    moderator: Session,
    member: Session,
    outsider: Session,
    room: Value,
}

/// A private room with an owner, a moderator and a member, and an outsider.
async fn cast() -> Cast {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let moderator = app.register("moderator").await;
    let member = app.register("member").await;
    let outsider = app.register("outsider").await;
    let room = app.create_room(&owner, "crew", "private").await;
    app.grant(&owner, &room, &moderator, "moderator")
        .await
        .ok(200);
    app.grant(&owner, &room, &member, "member").await.ok(200);
    Cast {
        app,
        owner,
        moderator,
        member,
        outsider,
        room,
    }
}

fn member_path(room: &Value, user: &Session) -> String {
    format!(
        "/api/rooms/{}/members/{}",
        room["id"].as_str().unwrap(),
        user.id
    )
}

async fn role_of(c: &Cast, user: &Session) -> Option<String> {
    sqlx::query_scalar("select role from room_members where user_id = $1")
        .bind(user.id)
        .fetch_optional(&c.app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_grant_returns_the_member_and_is_audited() {
    let c = cast().await;
    let reply = c.app.grant(&c.owner, &c.room, &c.outsider, "member").await;
    let member = reply.ok(200);
    assert_eq!(
        member["user"],
        json!({"id": c.outsider.id, "username": "outsider", "display_name": "outsider"})
    );
    assert_eq!(member["role"], "member");
    assert!(member["added_at"].is_string());
    // owner's grants of moderator + member in cast(), and this one.
    assert_eq!(c.app.audits("member_granted").await, 3);
    let (actor, target, room_name): (uuid::Uuid, uuid::Uuid, String) = sqlx::query_as(
        "select actor_id, target_user_id, room_name from audit_log where action = 'member_granted' order by id desc limit 1",
    )
    .fetch_one(&c.app.db)
    .await
    .unwrap();
    assert_eq!(
        (actor, target, room_name.as_str()),
        (c.owner.id, c.outsider.id, "crew")
    );
}

#[tokio::test]
async fn a_moderator_may_add_members_but_not_moderators() {
    let c = cast().await;
    c.app
        .grant(&c.moderator, &c.room, &c.outsider, "moderator")
        .await
        .error(403, "forbidden");
    assert_eq!(role_of(&c, &c.outsider).await, None);
    c.app
        .grant(&c.moderator, &c.room, &c.outsider, "member")
        .await
        .ok(200);
    assert_eq!(role_of(&c, &c.outsider).await.as_deref(), Some("member"));
    // Re-granting the same role is harmless.
    c.app
        .grant(&c.moderator, &c.room, &c.outsider, "member")
        .await
        .ok(200);
}

#[tokio::test]
async fn only_the_owner_grants_or_takes_moderator() {
    let c = cast().await;
    c.app
        .grant(&c.moderator, &c.room, &c.member, "moderator")
        .await
        .error(403, "forbidden");
    let other_mod = c.app.register("othermod").await;
    c.app
        .grant(&c.owner, &c.room, &other_mod, "moderator")
        .await
        .ok(200);
    // A moderator cannot demote another moderator.
    c.app
        .grant(&c.moderator, &c.room, &other_mod, "member")
        .await
        .error(403, "forbidden");
    assert_eq!(role_of(&c, &other_mod).await.as_deref(), Some("moderator"));
    // The owner can, and it is audited as a role change.
    c.app
        .grant(&c.owner, &c.room, &other_mod, "member")
        .await
        .ok(200);
    assert_eq!(role_of(&c, &other_mod).await.as_deref(), Some("member"));
    assert_eq!(c.app.audits("role_changed").await, 1);
}

#[tokio::test]
async fn plain_members_cannot_grant_and_nobody_changes_the_owner() {
    let c = cast().await;
    c.app
        .grant(&c.member, &c.room, &c.outsider, "member")
        .await
        .error(403, "forbidden");
    c.app
        .grant(&c.owner, &c.room, &c.owner, "member")
        .await
        .error(403, "forbidden");
    c.app
        .grant(&c.moderator, &c.room, &c.owner, "member")
        .await
        .error(403, "forbidden");
    assert_eq!(role_of(&c, &c.owner).await.as_deref(), Some("owner"));
    assert_eq!(role_of(&c, &c.outsider).await, None);
}

#[tokio::test]
async fn grants_refuse_bad_roles_and_unknown_users() {
    let c = cast().await;
    for role in [json!("owner"), json!("admin"), json!(1), json!(null)] {
        let path = member_path(&c.room, &c.outsider);
        c.app
            .put(&path, Some(&c.owner.access), json!({"role": role}))
            .await
            .error(400, "invalid_input");
    }
    let path = format!(
        "/api/rooms/{}/members/{}",
        c.room["id"].as_str().unwrap(),
        uuid::Uuid::now_v7()
    );
    c.app
        .put(&path, Some(&c.owner.access), json!({"role": "member"}))
        .await
        .error(404, "not_found");
    assert_eq!(c.app.count("room_members").await, 3);
}

#[tokio::test]
async fn owner_and_moderators_remove_others_but_never_the_owner() {
    let c = cast().await;
    c.app
        .delete(&member_path(&c.room, &c.member), Some(&c.member.access))
        .await
        .ok(204);
    c.app
        .grant(&c.owner, &c.room, &c.member, "member")
        .await
        .ok(200);

    // A plain member cannot remove others.
    c.app
        .delete(&member_path(&c.room, &c.moderator), Some(&c.member.access))
        .await
        .error(403, "forbidden");
    // A moderator can remove a member...
    c.app
        .delete(&member_path(&c.room, &c.member), Some(&c.moderator.access))
        .await
        .ok(204);
    assert_eq!(role_of(&c, &c.member).await, None);
    // ...but nobody removes the owner, and the owner cannot leave.
    c.app
        .delete(&member_path(&c.room, &c.owner), Some(&c.moderator.access))
        .await
        .error(403, "forbidden");
    c.app
        .delete(&member_path(&c.room, &c.owner), Some(&c.owner.access))
        .await
        .error(403, "forbidden");
    assert_eq!(role_of(&c, &c.owner).await.as_deref(), Some("owner"));
    // The owner removes the moderator.
    c.app
        .delete(&member_path(&c.room, &c.moderator), Some(&c.owner.access))
        .await
        .ok(204);
    assert_eq!(c.app.count("room_members").await, 1);

    let reasons: Vec<String> = sqlx::query_scalar(
        "select detail->>'reason' from audit_log where action = 'member_removed' order by id",
    )
    .fetch_all(&c.app.db)
    .await
    .unwrap();
    assert_eq!(reasons, ["left", "kicked", "kicked"]);
}

#[tokio::test]
async fn removing_a_non_member_is_not_found() {
    let c = cast().await;
    c.app
        .delete(&member_path(&c.room, &c.outsider), Some(&c.owner.access))
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn members_of_a_direct_room_cannot_add_others_but_may_leave() {
    let app = spawn_app().await;
    let a = app.register("aaa").await;
    let b = app.register("bbb").await;
    let c = app.register("ccc").await;
    let room = app
        .post(&format!("/api/direct/{}", b.id), Some(&a.access), json!({}))
        .await
        .ok(200)
        .clone();
    app.grant(&a, &room, &c, "member")
        .await
        .error(403, "forbidden");
    app.delete(&member_path(&room, &b), Some(&a.access))
        .await
        .error(403, "forbidden");
    app.delete(&member_path(&room, &a), Some(&a.access))
        .await
        .ok(204);
    // Opening the direct room again brings both back.
    app.post(&format!("/api/direct/{}", b.id), Some(&a.access), json!({}))
        .await
        .ok(200);
    assert_eq!(app.count("room_members").await, 2);
}
