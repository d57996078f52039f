//! Rooms, their members (the ACL), direct rooms, history and read state: the rules, shared by
//! REST and Socket.IO. Handlers of both transports parse and answer; this decides who may do
//! what, and performs the realtime effects of what it decides (kicks, deletions, read
//! positions), so that they happen whoever calls. Everything here acts inside the caller's
//! workspace: a room, member or user of another workspace is exactly an unknown one.

use serde::Serialize;
use serde_json::json;
use socketioxide::extract::SocketRef;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppError, AppResult},
    events::{self, Kind},
    store::{
        self,
        audit::{self, By},
        members::{Member, Role},
        messages::{History, JsonObject, Message, Page, Timeline},
        rooms::{MyRoom, Room, RoomAccess, RoomRef, Visibility},
        users::{User, UserRef},
    },
    validate::{self, PageQuery, Seq},
    workspaces::WorkspaceId,
};

impl RoomAccess {
    /// Public rooms are open to everyone; private and direct rooms to their members.
    pub fn may_enter(&self) -> bool {
        self.room.visibility == Visibility::Public || self.role.is_some()
    }

    fn manages(&self) -> bool {
        self.role.is_some_and(Role::manages)
    }
}

/// A room as a caller names it.
#[derive(Clone, Copy, Debug)]
pub enum RoomKey<'a> {
    /// By id (REST paths).
    Id(Uuid),
    /// By id or by name, as a socket client wrote it (a name may look like an id, so both are
    /// tried).
    Asked(&'a str),
}

/// How a room the caller may not enter is refused. The rule is the same on both transports;
/// only the answer differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// REST: `404`, exactly as for a room that does not exist, so REST never tells that a
    /// private room exists.
    Hide,
    /// Socket.IO: `forbidden` ("You are not authorized to join this room."); an unknown room is
    /// `not_found` ("Room not found."), and so is a direct room of two other users, so that a
    /// socket cannot learn who writes to whom by trying `dm:<a>-<b>` names.
    Forbid,
}

impl Refusal {
    fn unknown(self) -> AppError {
        match self {
            Refusal::Hide => AppError::not_found(),
            Refusal::Forbid => AppError::NotFound("Room not found.".into()),
        }
    }

    fn not_allowed(self) -> AppError {
        match self {
            Refusal::Hide => AppError::not_found(),
            Refusal::Forbid => {
                AppError::Forbidden("You are not authorized to join this room.".into())
            }
        }
    }
}

/// Writes an `access_denied` line for a refusal on an existing room.
async fn audit_denied(
    state: &AppState,
    caller: &AuthUser,
    room: &Room,
    action: &str,
) -> AppResult<()> {
    if !state.quotas.audit_denial(caller.id(), room.id, action) {
        return Ok(());
    }
    audit::record(
        &state.db,
        caller.workspace(),
        audit::Entry::new(audit::Action::AccessDenied)
            .actor(caller.id())
            .room(Some(room.id), &room.name)
            .detail(json!({ "action": action })),
    )
    .await?;
    Ok(())
}

/// A room with the caller's role in it, whether or not the caller may enter it.
async fn find(
    state: &AppState,
    caller: &AuthUser,
    key: RoomKey<'_>,
) -> AppResult<Option<RoomAccess>> {
    let (db, ws) = (&state.db, caller.workspace());
    let asked = match key {
        RoomKey::Id(id) => return Ok(store::rooms::access_by_id(db, ws, id, caller.id()).await?),
        RoomKey::Asked(asked) => asked,
    };
    if let Ok(id) = asked.parse::<Uuid>() {
        if let Some(access) = store::rooms::access_by_id(db, ws, id, caller.id()).await? {
            return Ok(Some(access));
        }
    }
    if !validate::is_room_name(asked) && !asked.starts_with("dm:") {
        return Ok(None);
    }
    Ok(store::rooms::access_by_name(db, ws, asked, caller.id()).await?)
}

/// The one access rule, for REST and sockets alike: a room the caller may enter (public, or on
/// its ACL). Otherwise the refusal is audited (for a room that exists) and answered as `refusal`
/// says. `action` names what was attempted, for the audit log.
pub async fn access(
    state: &AppState,
    caller: &AuthUser,
    key: RoomKey<'_>,
    action: &str,
    refusal: Refusal,
) -> AppResult<RoomAccess> {
    let access = find(state, caller, key)
        .await?
        .ok_or_else(|| refusal.unknown())?;
    if !access.may_enter() {
        audit_denied(state, caller, &access.room, action).await?;
        if access.room.visibility == Visibility::Direct {
            return Err(refusal.unknown());
        }
        return Err(refusal.not_allowed());
    }
    Ok(access)
}

/// As `access`, for REST routes that name the room by id.
async fn visible(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    action: &str,
) -> AppResult<RoomAccess> {
    access(state, caller, RoomKey::Id(room_id), action, Refusal::Hide).await
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

pub async fn create(
    state: &AppState,
    caller: &AuthUser,
    name: &str,
    visibility: Visibility,
    topic: Option<&str>,
    metadata: Option<serde_json::Value>,
) -> AppResult<Room> {
    let new = NewRoom::checked(name, visibility, topic, metadata)?;
    state.quotas.new_room(caller.id()).await?;
    let owner = [(caller.id(), Role::Owner)];
    let room = insert(
        state,
        caller.workspace(),
        new,
        &owner,
        By::User(caller.id()),
    )
    .await?;
    tracing::info!(room.id = %room.id, user.id = %caller.id(), "room created");
    Ok(room)
}

/// A room to create, checked against the contract's bounds.
pub(crate) struct NewRoom {
    name: String,
    visibility: Visibility,
    topic: Option<String>,
    metadata: JsonObject,
}

impl NewRoom {
    pub(crate) fn checked(
        name: &str,
        visibility: Visibility,
        topic: Option<&str>,
        metadata: Option<serde_json::Value>,
    ) -> AppResult<Self> {
        validate::room_name("name", name)?;
        if visibility == Visibility::Direct {
            // Direct rooms are made by `direct`, never by name.
            return Err(AppError::invalid_field(
                "visibility",
                "must be \"public\" or \"private\"",
            ));
        }
        Ok(NewRoom {
            name: name.to_owned(),
            visibility,
            topic: validate::topic("topic", topic)?,
            metadata: metadata
                .map(|m| validate::metadata("metadata", m))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Stores a new room of `ws` with its first members (the owner among them, if it has one), in
/// one transaction: a taken name leaves nothing behind. `created_by` is the owner.
pub(crate) async fn insert(
    state: &AppState,
    ws: WorkspaceId,
    new: NewRoom,
    members: &[(Uuid, Role)],
    by: By,
) -> AppResult<Room> {
    let owner = members.iter().find(|m| m.1 == Role::Owner).map(|m| m.0);
    let added_by = match by {
        By::User(id) => Some(id),
        By::ApiKey(_) => None,
    };
    let mut tx = state.db.begin().await?;
    let room = store::rooms::create(
        &mut *tx,
        ws,
        &new.name,
        new.visibility,
        new.topic.as_deref(),
        &new.metadata,
        owner,
    )
    .await?;
    let mut logged = vec![events::room(Kind::RoomCreated, &room)];
    for &(user, role) in members {
        let added_by = if role == Role::Owner { None } else { added_by };
        let member = store::members::upsert(&mut *tx, ws, room.id, user, role, added_by).await?;
        logged.push(events::member(Kind::MemberAdded, &room, &member, None));
    }
    audit::record(
        &mut *tx,
        ws,
        audit::Entry::new(audit::Action::RoomCreated)
            .room(Some(room.id), &room.name)
            .detail(json!({ "visibility": new.visibility, "members": members.len() }))
            .by(by),
    )
    .await?;
    events::record(&mut tx, ws, &logged).await?;
    tx.commit().await?;
    Ok(room)
}

/// Creates the `DEFAULT_ROOMS` of the `default` workspace that do not exist yet (at every start,
/// so a changed `DEFAULT_ROOMS` reaches it). Other workspaces get theirs when they are created.
pub async fn ensure_default_rooms(state: &AppState) -> anyhow::Result<()> {
    let names = &state.config.default_rooms;
    let ws = WorkspaceId::DEFAULT;
    let mut tx = state.db.begin().await?;
    let created = store::rooms::ensure_public(&mut *tx, ws, names).await?;
    let logged: Vec<_> = created
        .iter()
        .map(|room| events::room(Kind::RoomCreated, room))
        .collect();
    store::events::append(&mut tx, ws, &logged).await?;
    tx.commit().await?;
    if !created.is_empty() {
        tracing::info!(created = created.len(), "default rooms created");
    }
    Ok(())
}

/// The public rooms of the caller's workspace by name, `limit` at a time after the name `after`;
/// with the name to page on from when more remain.
pub async fn list_public(
    state: &AppState,
    caller: &AuthUser,
    after: Option<&str>,
    limit: i64,
) -> AppResult<(Vec<Room>, Option<String>)> {
    // One more than asked tells whether more remain.
    let ws = caller.workspace();
    let mut rooms = store::rooms::list_public(&state.db, ws, after, limit + 1).await?;
    let next = if rooms.len() as i64 > limit {
        rooms.truncate(limit as usize);
        rooms.last().map(|r| r.name.clone())
    } else {
        None
    };
    Ok((rooms, next))
}

pub async fn list_mine(state: &AppState, caller: &AuthUser) -> AppResult<Vec<MyRoom>> {
    Ok(store::rooms::list_for_member(&state.db, caller.workspace(), caller.id()).await?)
}

pub async fn get(state: &AppState, caller: &AuthUser, room_id: Uuid) -> AppResult<Room> {
    Ok(visible(state, caller, room_id, "get_room").await?.room)
}

/// Changes the topic and the metadata (owner or moderator). A topic of `None`: leave it;
/// `Some(None)`: clear it. Metadata `None`: leave it; given, it replaces the old.
pub async fn update(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    new_topic: Option<Option<String>>,
    metadata: Option<serde_json::Value>,
) -> AppResult<Room> {
    let access = visible(state, caller, room_id, "update_room").await?;
    require(state, caller, &access, access.manages(), "update_room").await?;
    let topic = match new_topic {
        None => None,
        Some(t) => Some(validate::topic("topic", t.as_deref())?),
    };
    let metadata = metadata
        .map(|m| validate::metadata("metadata", m))
        .transpose()?;
    if topic.is_none() && metadata.is_none() {
        return Ok(access.room);
    }
    let ws = caller.workspace();
    let topic = topic.as_ref().map(|t| t.as_deref());
    let mut tx = state.db.begin().await?;
    let room = store::rooms::update(&mut *tx, ws, room_id, topic, metadata.as_ref()).await?;
    events::record(&mut tx, ws, &[events::room(Kind::RoomUpdated, &room)]).await?;
    tx.commit().await?;
    Ok(room)
}

/// Deletes a room (its owner, or an admin of its workspace, who need not be able to see it); its
/// sockets, on every node, get `removed` with reason `room_deleted`.
pub async fn delete(state: &AppState, caller: &AuthUser, room_id: Uuid) -> AppResult<()> {
    let access = if caller.user.is_admin {
        find(state, caller, RoomKey::Id(room_id))
            .await?
            .ok_or_else(AppError::not_found)?
    } else {
        let access = visible(state, caller, room_id, "delete_room").await?;
        let owner = access.role == Some(Role::Owner);
        require(state, caller, &access, owner, "delete_room").await?;
        access
    };
    let as_admin = access.role != Some(Role::Owner);
    apply_delete(
        state,
        caller.workspace(),
        &access.room,
        By::User(caller.id()),
        as_admin,
    )
    .await?;
    tracing::info!(room.id = %room_id, user.id = %caller.id(), "room deleted");
    Ok(())
}

/// Deletes a room that may be deleted: its messages a chunk at a time, then the room, with its
/// audit line; its sockets, on every node, get `removed` with reason `room_deleted`.
pub(crate) async fn apply_delete(
    state: &AppState,
    ws: WorkspaceId,
    room: &Room,
    by: By,
    as_admin: bool,
) -> AppResult<()> {
    purge_messages(state, ws, room).await?;
    let mut tx = state.db.begin().await?;
    // Messages sent since the last chunk go with the room row's cascade; their events here.
    let late = store::messages::ids_in_room(&mut *tx, ws, room.id).await?;
    store::events::forget_messages(&mut tx, &late).await?;
    if !store::rooms::delete(&mut *tx, ws, room.id).await? {
        return Err(AppError::not_found());
    }
    audit::record(
        &mut *tx,
        ws,
        audit::Entry::new(audit::Action::RoomDeleted)
            .room(Some(room.id), &room.name)
            .detail(json!({ "as_admin": as_admin }))
            .by(by),
    )
    .await?;
    events::record(&mut tx, ws, &[events::room(Kind::RoomDeleted, room)]).await?;
    tx.commit().await?;
    state
        .realtime
        .remove_all(&RoomRef::from(room), Removal::RoomDeleted)
        .await;
    Ok(())
}

/// Deletes a room's messages a chunk at a time before the room itself goes. In one transaction
/// the cascade would hold the room's row lock for as long as it takes to delete them all, and
/// the message writer, which locks the rooms of each batch, would wait that long for every
/// room on every node. Messages sent meanwhile go with the room row's final cascade.
async fn purge_messages(state: &AppState, ws: WorkspaceId, room: &Room) -> AppResult<()> {
    const CHUNK: i64 = 5_000;
    let mut purged: u64 = 0;
    let started = std::time::Instant::now();
    let mut reported = started;
    loop {
        // A chunk of messages and their events go together: the log never shows a message
        // that history no longer has.
        let mut tx = state.db.begin().await?;
        let gone = store::messages::purge_some(&mut *tx, ws, room.id, CHUNK).await?;
        store::events::forget_messages(&mut tx, &gone).await?;
        tx.commit().await?;
        let done = gone.len() as u64;
        purged += done;
        if done < CHUNK as u64 {
            break;
        }
        if reported.elapsed() >= std::time::Duration::from_secs(5) {
            reported = std::time::Instant::now();
            tracing::info!(room.id = %room.id, purged, "deleting a room's messages");
        }
    }
    if purged >= CHUNK as u64 {
        tracing::info!(room.id = %room.id, purged, took_ms = started.elapsed().as_millis() as u64, "a room's messages are deleted");
    }
    Ok(())
}

pub async fn members(state: &AppState, caller: &AuthUser, room_id: Uuid) -> AppResult<Vec<Member>> {
    visible(state, caller, room_id, "list_members").await?;
    Ok(store::members::list(&state.db, caller.workspace(), room_id).await?)
}

/// The ACL grant: adds `user_id` to the room with `role` (`member` or `moderator`), or changes
/// its role. Owner and moderators may add members; only the owner grants or takes `moderator`;
/// the owner's own row never changes; direct rooms have exactly their two users.
pub async fn grant(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> AppResult<Member> {
    if role == Role::Owner {
        return Err(AppError::invalid_field(
            "role",
            "must be \"member\" or \"moderator\"",
        ));
    }
    let access = visible(state, caller, room_id, "grant_member").await?;
    let allowed = access.room.visibility != Visibility::Direct && access.manages();
    require(state, caller, &access, allowed, "grant_member").await?;
    find_user(state, caller, user_id).await?;
    let ws = caller.workspace();
    let current = store::members::role(&state.db, ws, room_id, user_id).await?;
    let touches_moderator = role == Role::Moderator || current == Some(Role::Moderator);
    let allowed =
        current != Some(Role::Owner) && (access.role == Some(Role::Owner) || !touches_moderator);
    require(state, caller, &access, allowed, "grant_member").await?;
    apply_grant(
        state,
        ws,
        &access.room,
        user_id,
        role,
        current,
        By::User(caller.id()),
    )
    .await
}

/// Stores a grant that was allowed: the member row and, when something changed, its audit line.
pub(crate) async fn apply_grant(
    state: &AppState,
    ws: WorkspaceId,
    room: &Room,
    user_id: Uuid,
    role: Role,
    current: Option<Role>,
    by: By,
) -> AppResult<Member> {
    let added_by = match by {
        By::User(id) => Some(id),
        By::ApiKey(_) => None,
    };
    let mut tx = state.db.begin().await?;
    let member = store::members::upsert(&mut *tx, ws, room.id, user_id, role, added_by).await?;
    let action = match current {
        None => Some(audit::Action::MemberGranted),
        Some(old) if old != role => Some(audit::Action::RoleChanged),
        Some(_) => None,
    };
    if let Some(action) = action {
        audit::record(
            &mut *tx,
            ws,
            audit::Entry::new(action)
                .target(user_id)
                .room(Some(room.id), &room.name)
                .detail(json!({ "role": role, "previous_role": current }))
                .by(by),
        )
        .await?;
        let kind = match current {
            None => Kind::MemberAdded,
            Some(_) => Kind::MemberRoleChanged,
        };
        events::record(&mut tx, ws, &[events::member(kind, room, &member, None)]).await?;
    }
    tx.commit().await?;
    Ok(member)
}

/// Why sockets were taken out of a room, as `removed` events say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Removed by an owner or moderator.
    Kicked,
    /// Removed themselves.
    Left,
    /// The room is gone.
    RoomDeleted,
}

/// Removes a member. Owner and moderators may remove others but never the owner; anyone but the
/// owner may remove themselves. Every live socket of the removed user, on every node, gets
/// `removed` (joined to the room or not, so every device can drop the room from its list) and
/// leaves the room.
pub async fn remove_member(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    user_id: Uuid,
) -> AppResult<()> {
    let access = visible(state, caller, room_id, "remove_member").await?;
    let ws = caller.workspace();
    let removal = if user_id == caller.id() {
        Removal::Left
    } else {
        Removal::Kicked
    };
    let target = if removal == Removal::Left {
        access.role
    } else {
        require(state, caller, &access, access.manages(), "remove_member").await?;
        store::members::role(&state.db, ws, room_id, user_id).await?
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
    let user = find_user(state, caller, user_id).await?;
    apply_removal(
        state,
        ws,
        &access.room,
        &user,
        target,
        removal,
        By::User(caller.id()),
    )
    .await
}

/// Carries out a removal that was allowed: the row, its audit line, and every live socket of the
/// user, on every node, told (`removed`) and taken out of the room.
pub(crate) async fn apply_removal(
    state: &AppState,
    ws: WorkspaceId,
    room: &Room,
    user: &User,
    role: Role,
    removal: Removal,
    by: By,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let Some(added_at) = store::members::remove(&mut *tx, ws, room.id, user.id).await? else {
        return Err(AppError::NotFound("no such member".into()));
    };
    audit::record(
        &mut *tx,
        ws,
        audit::Entry::new(audit::Action::MemberRemoved)
            .target(user.id)
            .room(Some(room.id), &room.name)
            .detail(json!({ "reason": removal, "role": role }))
            .by(by),
    )
    .await?;
    let member = Member {
        user: UserRef::from(user),
        role,
        added_at,
    };
    let removed = events::member(Kind::MemberRemoved, room, &member, Some(removal));
    events::record(&mut tx, ws, &[removed]).await?;
    tx.commit().await?;
    state
        .realtime
        .remove_member(&RoomRef::from(room), &UserRef::from(user), removal)
        .await;
    Ok(())
}

/// A user of the caller's workspace.
async fn find_user(state: &AppState, caller: &AuthUser, user_id: Uuid) -> AppResult<User> {
    store::users::find(&state.db, caller.workspace(), user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))
}

/// A user as a caller names it.
#[derive(Clone, Copy, Debug)]
pub enum UserKey<'a> {
    /// By id (REST paths).
    Id(Uuid),
    /// By id or username, as a socket client wrote it (a username is never shaped like an id).
    Asked(&'a str),
}

/// The name of the direct room of two users: `dm:` and their ids, sorted, joined by `-`. Unique
/// across workspaces too, since user ids are, though only unique within one is required.
pub fn direct_room_name(a: Uuid, b: Uuid) -> String {
    let (low, high) = if a.to_string() <= b.to_string() {
        (a, b)
    } else {
        (b, a)
    };
    format!("dm:{low}-{high}")
}

/// The direct room of the caller and `other`, created on first use with both as members (and
/// both made members again if one had left). `field` names the input that named `other`, for
/// the error when it is the caller.
pub async fn direct(
    state: &AppState,
    caller: &AuthUser,
    other: UserKey<'_>,
    field: &str,
) -> AppResult<(Room, User)> {
    let ws = caller.workspace();
    let other = match other {
        UserKey::Id(id) => find_user(state, caller, id).await?,
        UserKey::Asked(asked) => match asked.parse::<Uuid>() {
            Ok(id) => find_user(state, caller, id).await?,
            Err(_) => store::users::find_by_username(&state.db, ws, asked)
                .await?
                .ok_or_else(|| AppError::NotFound("no such user".into()))?,
        },
    };
    if other.id == caller.id() {
        return Err(AppError::invalid_field(
            field,
            "must be another user than yourself",
        ));
    }
    let name = direct_room_name(caller.id(), other.id);
    let mut tx = state.db.begin().await?;
    let (room, created) =
        store::rooms::get_or_create_direct(&mut tx, ws, &name, caller.id()).await?;
    if created {
        // Refused: the transaction is dropped, so the room is not made.
        state.quotas.new_room(caller.id()).await?;
    }
    let added =
        store::members::add_missing(&mut *tx, ws, room.id, &[caller.id(), other.id]).await?;
    let mut logged = Vec::new();
    if created {
        logged.push(events::room(Kind::RoomCreated, &room));
    }
    for (user_id, added_at) in added {
        let user = if user_id == caller.id() {
            UserRef::from(&caller.user)
        } else {
            UserRef::from(&other)
        };
        let member = Member {
            user,
            role: Role::Member,
            added_at,
        };
        logged.push(events::member(Kind::MemberAdded, &room, &member, None));
    }
    events::record(&mut tx, ws, &logged).await?;
    tx.commit().await?;
    Ok((room, other))
}

/// A page of a room's history, for a caller allowed to enter the room.
pub async fn history(
    state: &AppState,
    caller: &AuthUser,
    key: RoomKey<'_>,
    query: PageQuery,
    refusal: Refusal,
) -> AppResult<History> {
    let (page, limit) = query.page()?;
    let access = access(state, caller, key, "history", refusal).await?;
    let (ws, me) = (caller.workspace(), caller.id());
    let history = store::messages::page(
        &state.db,
        ws,
        me,
        access.room.id,
        Timeline::Room,
        page,
        limit,
    )
    .await?;
    Ok(within_bytes(history, page))
}

/// A page of one thread's replies (not its root), as the history pages the room.
pub async fn thread(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    root_id: Uuid,
    query: PageQuery,
) -> AppResult<History> {
    let (page, limit) = query.page()?;
    let access = visible(state, caller, room_id, "thread").await?;
    let (ws, me) = (caller.workspace(), caller.id());
    store::messages::target(&state.db, ws, access.room.id, root_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such message".into()))?;
    let timeline = Timeline::Thread(root_id);
    let history =
        store::messages::page(&state.db, ws, me, access.room.id, timeline, page, limit).await?;
    Ok(within_bytes(history, page))
}

/// One page of a room's change feed: the messages changed after `after_rev`, in rev order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Changes {
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// The cursor for the next page: the newest rev in this one, or the room's `last_rev` when
    /// nothing more remains.
    pub last_rev: i64,
}

/// The change feed of a room the caller may enter.
pub async fn changes(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    after_rev: i64,
    limit: i64,
) -> AppResult<Changes> {
    let access = visible(state, caller, room_id, "changes").await?;
    let (ws, me) = (caller.workspace(), caller.id());
    let (messages, has_more) =
        store::messages::changes(&state.db, ws, me, room_id, after_rev, None, limit).await?;
    let newest = messages.last().map_or(0, |m| m.rev);
    // The room was read before the page, so a change committed in between may be newer than
    // the room's `last_rev` as read: the cursor is never behind what the page holds.
    let last_rev = if has_more {
        newest
    } else {
        newest.max(access.room.last_rev)
    };
    Ok(Changes {
        messages,
        has_more,
        last_rev,
    })
}

/// One message of a room the caller may enter.
pub async fn message(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    id: Uuid,
) -> AppResult<Message> {
    visible(state, caller, room_id, "get_message").await?;
    store::messages::find(&state.db, caller.workspace(), caller.id(), room_id, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such message".into()))
}

/// The room of a change made over REST (an edit, a deletion, a reaction): one the caller may
/// enter, by the one access rule.
pub async fn for_change(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    action: &str,
) -> AppResult<RoomRef> {
    Ok(RoomRef::from(
        &visible(state, caller, room_id, action).await?.room,
    ))
}

/// What the message bodies of one history page (or join replay) may weigh together. 200
/// messages of 4000 four-byte characters would be over 3 MiB in one packet; past this the page
/// ends early with `has_more`, and the client pages on from where it ends.
pub const PAGE_BYTES: usize = 256 * 1024;

/// Cuts a page to `PAGE_BYTES` of bodies, always keeping one message so that paging advances.
/// The part kept is the one next to where the page started: the newest messages for a page
/// going back (`before`, or none), the oldest for one going forward (`after`).
fn within_bytes(mut history: History, page: Page) -> History {
    /// How many messages, taken in this order, fit (at least one).
    fn fitting<'a>(bodies: impl Iterator<Item = &'a str>) -> usize {
        let mut total = 0;
        let mut fit = 0;
        for body in bodies {
            total += body.len();
            if fit > 0 && total > PAGE_BYTES {
                break;
            }
            fit += 1;
        }
        fit
    }
    let len = history.messages.len();
    let bodies = history.messages.iter().map(|m| m.body.as_str());
    match page {
        Page::After(_) => {
            let fit = fitting(bodies);
            if fit < len {
                history.messages.truncate(fit);
                history.has_more = true;
            }
        }
        Page::Before(_) => {
            let fit = fitting(bodies.rev());
            if fit < len {
                history.messages.drain(..len - fit);
                history.has_more = true;
            }
        }
    }
    history
}

/// What a join replays.
#[derive(Debug)]
pub struct Replay {
    pub history: History,
    /// With `since_rev`: the messages at or before `since` changed after `since_rev`, in rev
    /// order, and whether more remain (the client pages on with the change feed).
    pub updates: Option<(Vec<Message>, bool)>,
}

/// The history a join replays (access already checked): the newest `HISTORY_LIMIT` messages,
/// or with `since` the oldest `HISTORY_LIMIT` after it; with `since_rev` too, the changes to
/// the messages the client already has.
pub async fn replay(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    since: Option<Seq>,
    since_rev: Option<Seq>,
) -> AppResult<Replay> {
    let limit = i64::from(state.config.history_limit);
    let page = since.map_or(Page::Before(None), |s| Page::After(s.0));
    let (ws, me) = (caller.workspace(), caller.id());
    let history =
        store::messages::page(&state.db, ws, me, room_id, Timeline::Room, page, limit).await?;
    let updates = match (since, since_rev) {
        (Some(since), Some(rev)) => Some(
            store::messages::changes(&state.db, ws, me, room_id, rev.0, Some(since.0), limit)
                .await?,
        ),
        _ => None,
    };
    Ok(Replay {
        history: within_bytes(history, page),
        updates,
    })
}

/// Moves the caller's read position (members only; never backwards; capped at `last_seq`).
/// When it moves, the user's sockets hear the stored position, all of them but `except` (the
/// socket that asked, which knows).
pub async fn mark_read(
    state: &AppState,
    caller: &AuthUser,
    key: RoomKey<'_>,
    seq: Seq,
    refusal: Refusal,
    except: Option<&SocketRef>,
) -> AppResult<()> {
    let access = access(state, caller, key, "mark_read", refusal).await?;
    require(state, caller, &access, access.role.is_some(), "mark_read").await?;
    let ws = caller.workspace();
    let (stored, moved) =
        store::members::mark_read(&state.db, ws, access.room.id, caller.id(), seq.0)
            .await?
            .ok_or_else(AppError::forbidden)?;
    if moved {
        state
            .realtime
            .read_moved(caller.id(), &RoomRef::from(&access.room), stored, except)
            .await;
    }
    Ok(())
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
}
