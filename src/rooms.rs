//! Rooms, their members (the ACL), history and read state: the rules, shared by REST and
//! Socket.IO. Handlers parse and answer; this decides who may do what.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppError, AppResult},
    store::{
        self, audit,
        members::{Member, Role, UserRef},
        messages::{History, Page},
        rooms::{MyRoom, Room, RoomAccess, Visibility},
    },
    validate,
    writer::RoomRef,
};

/// Bounds of history pages.
pub const MAX_PAGE: i64 = 200;
pub const DEFAULT_PAGE: i64 = 50;

impl RoomAccess {
    /// Public rooms are open to everyone; private and direct rooms to their members.
    pub fn may_enter(&self) -> bool {
        self.room.visibility == Visibility::Public || self.role.is_some()
    }

    fn manages(&self) -> bool {
        self.role.is_some_and(Role::manages)
    }
}

/// Writes an `access_denied` line for a refusal on an existing room.
pub async fn audit_denied(
    state: &AppState,
    caller: &AuthUser,
    room: &Room,
    action: &str,
) -> AppResult<()> {
    audit::record(
        &state.db,
        audit::Entry::new(audit::Action::AccessDenied)
            .actor(caller.id())
            .room(Some(room.id), &room.name)
            .detail(json!({ "action": action })),
    )
    .await?;
    Ok(())
}

/// A room as REST sees it: unknown rooms, and private or direct rooms the caller is not in, are
/// both `404` (the latter audited), so REST never tells that a private room exists.
pub async fn visible(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    action: &str,
) -> AppResult<RoomAccess> {
    let access = store::rooms::access_by_id(&state.db, room_id, caller.id())
        .await?
        .ok_or_else(AppError::not_found)?;
    if !access.may_enter() {
        audit_denied(state, caller, &access.room, action).await?;
        return Err(AppError::not_found());
    }
    Ok(access)
}

/// Refuses (with `403`, audited) unless `allowed`.
async fn require(
    state: &AppState,
    caller: &AuthUser,
    access: &RoomAccess,
    allowed: bool,
    action: &str,
) -> AppResult<()> {
    if allowed {
        return Ok(());
    }
    audit_denied(state, caller, &access.room, action).await?;
    Err(AppError::forbidden())
}

/// A topic as given: trimmed, at most 256 characters; empty means none.
fn topic(value: Option<&str>) -> AppResult<Option<String>> {
    let Some(t) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if validate::char_len(t) > 256 {
        return Err(AppError::invalid_field(
            "topic",
            "must be at most 256 characters",
        ));
    }
    Ok(Some(t.to_owned()))
}

pub async fn create(
    state: &AppState,
    caller: &AuthUser,
    name: &str,
    visibility: &str,
    topic_text: Option<&str>,
) -> AppResult<Room> {
    if !validate::is_room_name(name) {
        return Err(AppError::invalid_field(
            "name",
            "must be 1-64 characters of a-z, 0-9, '_' and '-'",
        ));
    }
    let visibility = match visibility {
        "public" => Visibility::Public,
        "private" => Visibility::Private,
        _ => {
            return Err(AppError::invalid_field(
                "visibility",
                "must be \"public\" or \"private\"",
            ))
        }
    };
    let topic = topic(topic_text)?;
    let mut tx = state.db.begin().await?;
    let room = store::rooms::create(
        &mut *tx,
        name,
        visibility,
        topic.as_deref(),
        Some(caller.id()),
    )
    .await?;
    store::members::upsert(&mut *tx, room.id, caller.id(), Role::Owner, None).await?;
    audit::record(
        &mut *tx,
        audit::Entry::new(audit::Action::RoomCreated)
            .actor(caller.id())
            .room(Some(room.id), &room.name)
            .detail(json!({ "visibility": visibility })),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(room.id = %room.id, user.id = %caller.id(), "room created");
    Ok(room)
}

/// Creates the `DEFAULT_ROOMS` that do not exist yet.
pub async fn ensure_default_rooms(state: &AppState) -> anyhow::Result<()> {
    let created = store::rooms::ensure_public(&state.db, &state.config.default_rooms).await?;
    if created > 0 {
        tracing::info!(created, "default rooms created");
    }
    Ok(())
}

pub async fn list_public(state: &AppState) -> AppResult<Vec<Room>> {
    Ok(store::rooms::list_public(&state.db).await?)
}

pub async fn list_mine(state: &AppState, caller: &AuthUser) -> AppResult<Vec<MyRoom>> {
    Ok(store::rooms::list_for_member(&state.db, caller.id()).await?)
}

pub async fn get(state: &AppState, caller: &AuthUser, room_id: Uuid) -> AppResult<Room> {
    Ok(visible(state, caller, room_id, "get_room").await?.room)
}

/// Changes the topic (owner or moderator). `None`: leave it; `Some(None)`: clear it.
pub async fn update(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    new_topic: Option<Option<String>>,
) -> AppResult<Room> {
    let access = visible(state, caller, room_id, "update_room").await?;
    require(state, caller, &access, access.manages(), "update_room").await?;
    match new_topic {
        None => Ok(access.room),
        Some(t) => {
            let t = topic(t.as_deref())?;
            Ok(store::rooms::set_topic(&state.db, room_id, t.as_deref()).await?)
        }
    }
}

/// Deletes a room (its owner, or an admin). Returns it, for telling its sockets.
pub async fn delete(state: &AppState, caller: &AuthUser, room_id: Uuid) -> AppResult<Room> {
    let access = store::rooms::access_by_id(&state.db, room_id, caller.id())
        .await?
        .ok_or_else(AppError::not_found)?;
    if !caller.user.is_admin {
        if !access.may_enter() {
            audit_denied(state, caller, &access.room, "delete_room").await?;
            return Err(AppError::not_found());
        }
        require(
            state,
            caller,
            &access,
            access.role == Some(Role::Owner),
            "delete_room",
        )
        .await?;
    }
    let mut tx = state.db.begin().await?;
    if !store::rooms::delete(&mut *tx, room_id).await? {
        return Err(AppError::not_found());
    }
    audit::record(
        &mut *tx,
        audit::Entry::new(audit::Action::RoomDeleted)
            .actor(caller.id())
            .room(Some(room_id), &access.room.name)
            .detail(json!({ "as_admin": access.role != Some(Role::Owner) })),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(room.id = %room_id, user.id = %caller.id(), "room deleted");
    state.realtime.room_deleted(&room_ref(&access.room)).await;
    Ok(access.room)
}

pub async fn members(state: &AppState, caller: &AuthUser, room_id: Uuid) -> AppResult<Vec<Member>> {
    visible(state, caller, room_id, "list_members").await?;
    Ok(store::members::list(&state.db, room_id).await?)
}

/// The ACL grant: adds `user_id` to the room with `role`, or changes its role. Owner and
/// moderators may add members; only the owner grants or takes `moderator`; the owner's own row
/// never changes; direct rooms have exactly their two users.
pub async fn grant(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> AppResult<Member> {
    let role = match role {
        "member" => Role::Member,
        "moderator" => Role::Moderator,
        _ => {
            return Err(AppError::invalid_field(
                "role",
                "must be \"member\" or \"moderator\"",
            ))
        }
    };
    let access = visible(state, caller, room_id, "grant_member").await?;
    let allowed = access.room.visibility != Visibility::Direct && access.manages();
    require(state, caller, &access, allowed, "grant_member").await?;
    store::users::find(&state.db, user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    let current = store::members::role(&state.db, room_id, user_id).await?;
    let touches_moderator = role == Role::Moderator || current == Some(Role::Moderator);
    let allowed =
        current != Some(Role::Owner) && (access.role == Some(Role::Owner) || !touches_moderator);
    require(state, caller, &access, allowed, "grant_member").await?;

    let mut tx = state.db.begin().await?;
    let member =
        store::members::upsert(&mut *tx, room_id, user_id, role, Some(caller.id())).await?;
    let action = match current {
        None => Some(audit::Action::MemberGranted),
        Some(old) if old != role => Some(audit::Action::RoleChanged),
        Some(_) => None,
    };
    if let Some(action) = action {
        audit::record(
            &mut *tx,
            audit::Entry::new(action)
                .actor(caller.id())
                .target(user_id)
                .room(Some(room_id), &access.room.name)
                .detail(json!({ "role": role, "previous_role": current })),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(member)
}

/// Why a member left a room, as `removed` events say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    Kicked,
    Left,
}

impl Removal {
    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Kicked => "kicked",
            Removal::Left => "left",
        }
    }
}

/// Removes a member. Owner and moderators may remove others but never the owner; anyone but the
/// owner may remove themselves.
pub async fn remove_member(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    user_id: Uuid,
) -> AppResult<(Room, Removal)> {
    let access = visible(state, caller, room_id, "remove_member").await?;
    let removal = if user_id == caller.id() {
        Removal::Left
    } else {
        Removal::Kicked
    };
    let target = if removal == Removal::Left {
        access.role
    } else {
        require(state, caller, &access, access.manages(), "remove_member").await?;
        store::members::role(&state.db, room_id, user_id).await?
    };
    let target = target.ok_or_else(|| AppError::NotFound("no such member".into()))?;
    require(
        state,
        caller,
        &access,
        target != Role::Owner,
        "remove_member",
    )
    .await?;
    let user = store::users::find(&state.db, user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;

    let mut tx = state.db.begin().await?;
    if !store::members::remove(&mut *tx, room_id, user_id).await? {
        return Err(AppError::NotFound("no such member".into()));
    }
    audit::record(
        &mut *tx,
        audit::Entry::new(audit::Action::MemberRemoved)
            .actor(caller.id())
            .target(user_id)
            .room(Some(room_id), &access.room.name)
            .detail(json!({ "reason": removal.as_str(), "role": target })),
    )
    .await?;
    tx.commit().await?;
    let user = UserRef {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
    };
    state
        .realtime
        .remove_member(&room_ref(&access.room), &user, removal)
        .await;
    Ok((access.room, removal))
}

/// The name of the direct room of two users: `dm:` and their ids, sorted, joined by `-`.
pub fn direct_room_name(a: Uuid, b: Uuid) -> String {
    let (low, high) = if a.to_string() <= b.to_string() {
        (a, b)
    } else {
        (b, a)
    };
    format!("dm:{low}-{high}")
}

/// The direct room of the caller and `other`, created on first use with both as members (and
/// both made members again if one had left).
pub async fn direct(state: &AppState, caller: &AuthUser, other: Uuid) -> AppResult<Room> {
    if other == caller.id() {
        return Err(AppError::invalid_field(
            "user_id",
            "must be another user than yourself",
        ));
    }
    store::users::find(&state.db, other)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    let name = direct_room_name(caller.id(), other);
    let mut tx = state.db.begin().await?;
    let room = store::rooms::get_or_create_direct(&mut tx, &name, caller.id()).await?;
    store::members::add_missing(&mut *tx, room.id, &[caller.id(), other]).await?;
    tx.commit().await?;
    Ok(room)
}

/// `before`, `after` and `limit` of a history request, from JSON values or query strings.
pub fn parse_page(before: &Value, after: &Value, limit: &Value) -> AppResult<(Page, i64)> {
    let before = seq_arg("before", before)?;
    let after = seq_arg("after", after)?;
    let limit = match limit {
        Value::Null => DEFAULT_PAGE,
        v => match integer(v) {
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(AppError::invalid_field(
                    "limit",
                    "must be an integer from 1 to 200",
                ))
            }
        },
    };
    let page = match (before, after) {
        (Some(_), Some(_)) => {
            return Err(AppError::invalid_field(
                "after",
                "cannot be used together with before",
            ))
        }
        (None, Some(after)) => Page::After(after),
        (before, None) => Page::Before(before),
    };
    Ok((page, limit))
}

/// A message seq: an integer >= 0 (a JSON number, or digits from a query string); null: absent.
pub fn seq_arg(name: &str, value: &Value) -> AppResult<Option<i64>> {
    match value {
        Value::Null => Ok(None),
        v => integer(v)
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| AppError::invalid_field(name, "must be an integer >= 0")),
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s)
            if !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

pub async fn history(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    page: Page,
    limit: i64,
) -> AppResult<History> {
    visible(state, caller, room_id, "history").await?;
    Ok(store::messages::page(&state.db, room_id, page, limit).await?)
}

/// Moves the caller's read position (members only). Returns the room, the stored position and
/// whether it moved.
pub async fn mark_read(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    seq: i64,
) -> AppResult<(Room, i64, bool)> {
    let access = visible(state, caller, room_id, "mark_read").await?;
    require(state, caller, &access, access.role.is_some(), "mark_read").await?;
    let (stored, moved) = store::members::mark_read(&state.db, room_id, caller.id(), seq)
        .await?
        .ok_or_else(AppError::forbidden)?;
    Ok((access.room, stored, moved))
}

/// `PUT /api/rooms/{id}/read`: as `mark_read`, then every socket of the user hears the stored
/// position if it moved.
pub async fn mark_read_everywhere(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    seq: i64,
) -> AppResult<()> {
    let (room, stored, moved) = mark_read(state, caller, room_id, seq).await?;
    if moved {
        state
            .realtime
            .read_moved(caller.id(), &room_ref(&room), stored)
            .await;
    }
    Ok(())
}

pub fn room_ref(room: &Room) -> RoomRef {
    RoomRef {
        id: room.id,
        name: room.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_room_names_do_not_depend_on_who_asks() {
        let a: Uuid = "0192f0c1-0000-7000-8000-000000000001".parse().unwrap();
        let b: Uuid = "0192f0c1-0000-7000-8000-000000000002".parse().unwrap();
        assert_eq!(direct_room_name(a, b), direct_room_name(b, a));
        assert_eq!(
            direct_room_name(b, a),
            "dm:0192f0c1-0000-7000-8000-000000000001-0192f0c1-0000-7000-8000-000000000002"
        );
    }

    #[test]
    fn pages_parse_from_numbers_and_digit_strings() {
        let n = Value::Null;
        assert_eq!(parse_page(&n, &n, &n).unwrap(), (Page::Before(None), 50));
        assert_eq!(
            parse_page(&json!(10), &n, &json!("5")).unwrap(),
            (Page::Before(Some(10)), 5)
        );
        assert_eq!(
            parse_page(&n, &json!("0"), &json!(200)).unwrap(),
            (Page::After(0), 200)
        );
        for (b, a, l) in [
            (json!(1), json!(2), n.clone()),
            (json!(-1), n.clone(), n.clone()),
            (json!("1.5"), n.clone(), n.clone()),
            (json!("abc"), n.clone(), n.clone()),
            (n.clone(), json!(true), n.clone()),
            (n.clone(), n.clone(), json!(0)),
            (n.clone(), n.clone(), json!(201)),
            (n.clone(), n.clone(), json!(2.5)),
        ] {
            assert!(parse_page(&b, &a, &l).is_err(), "{b} {a} {l}");
        }
    }
}
