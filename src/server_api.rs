//! Rooms, members and messages as the product's backend makes them through the server API.
//!
//! The backend holds its workspace's full authority: it manages every room, without being a
//! member of any. It still goes through the functions users go through, so nothing differs
//! downstream: `rooms::insert`, `apply_grant`, `apply_removal` and `apply_delete` (with their
//! audit lines and live effects on every node), and `messages::send` for a message, which is
//! sent as its sender, under the sender's own access rule, by the one writer.
//! (Provisioning users is in `provisioning`.)

use std::collections::HashMap;

use uuid::Uuid;

use crate::{
    app::AppState,
    auth::{api_key::ServerCaller, AuthUser},
    error::{AppError, AppResult},
    messages::{self, Outgoing},
    provisioning,
    rooms::{self, NewRoom, Removal},
    store::{
        self,
        audit::By,
        members::{Member, Role},
        messages::{Message, Stored},
        rooms::{Room, RoomRef, Visibility},
    },
    writer::Applied,
};

/// The most members a room may be created with in one request.
pub const MAX_INITIAL_MEMBERS: usize = 1000;

/// What `POST /api/server/rooms` asks for.
#[derive(Debug)]
pub struct RoomSpec {
    pub name: String,
    pub visibility: Visibility,
    pub topic: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// The owner's external id; a room without one is managed by the backend alone.
    pub owner: Option<String>,
    /// Other first members: external id and role (`member` or `moderator`).
    pub members: Vec<(String, Role)>,
}

fn by(caller: &ServerCaller) -> By {
    By::ApiKey(caller.key_id)
}

/// Creates a room with its owner and first members, all in one transaction. An unknown external
/// id is `404 not_found` and leaves nothing behind.
pub async fn create_room(
    state: &AppState,
    caller: &ServerCaller,
    spec: RoomSpec,
) -> AppResult<Room> {
    let new = NewRoom::checked(
        &spec.name,
        spec.visibility,
        spec.topic.as_deref(),
        spec.metadata,
    )?;
    if spec.members.len() > MAX_INITIAL_MEMBERS {
        return Err(AppError::invalid_field(
            "members",
            format!("must have at most {MAX_INITIAL_MEMBERS} entries"),
        ));
    }
    if spec.members.iter().any(|m| m.1 == Role::Owner) {
        return Err(AppError::invalid_field(
            "members",
            "roles must be \"member\" or \"moderator\" (the owner is named by \"owner\")",
        ));
    }
    let mut members: Vec<(Uuid, Role)> = Vec::with_capacity(spec.members.len() + 1);
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    if let Some(owner) = &spec.owner {
        let owner = provisioning::user(state, caller, owner).await?;
        seen.insert(owner.id, 0);
        members.push((owner.id, Role::Owner));
    }
    for (external_id, role) in &spec.members {
        let user = provisioning::user(state, caller, external_id).await?;
        match seen.get(&user.id) {
            // The owner stays the owner; a user named twice takes the last role given.
            Some(&i) if members[i].1 == Role::Owner => {}
            Some(&i) => members[i].1 = *role,
            None => {
                seen.insert(user.id, members.len());
                members.push((user.id, *role));
            }
        }
    }
    let room = rooms::insert(state, caller.workspace(), new, &members, by(caller)).await?;
    tracing::info!(room.id = %room.id, key.id = %caller.key_id, members = members.len(), "room created by the server API");
    Ok(room)
}

/// A room of the caller's workspace, whatever its visibility.
async fn room(state: &AppState, caller: &ServerCaller, room_id: Uuid) -> AppResult<Room> {
    // The access query with nobody's role: the room alone.
    store::rooms::access_by_id(&state.db, caller.workspace(), room_id, Uuid::nil())
        .await?
        .map(|access| access.room)
        .ok_or_else(|| AppError::NotFound("no such room".into()))
}

/// Adds a member or changes their role, as an owner would: `member` or `moderator`; the owner's
/// own row never changes, and direct rooms keep exactly their two users.
pub async fn grant(
    state: &AppState,
    caller: &ServerCaller,
    room_id: Uuid,
    external_id: &str,
    role: Role,
) -> AppResult<Member> {
    if role == Role::Owner {
        return Err(AppError::invalid_field(
            "role",
            "must be \"member\" or \"moderator\"",
        ));
    }
    let room = room(state, caller, room_id).await?;
    if room.visibility == Visibility::Direct {
        return Err(AppError::Forbidden(
            "a direct room has exactly its two users".into(),
        ));
    }
    let user = provisioning::user(state, caller, external_id).await?;
    let ws = caller.workspace();
    let current = store::members::role(&state.db, ws, room.id, user.id).await?;
    if current == Some(Role::Owner) {
        return Err(AppError::Forbidden(
            "the owner's membership cannot be changed".into(),
        ));
    }
    rooms::apply_grant(state, ws, &room, user.id, role, current, by(caller)).await
}

/// Removes a member (never the owner); their sockets on every node get `removed` (`kicked`).
pub async fn remove_member(
    state: &AppState,
    caller: &ServerCaller,
    room_id: Uuid,
    external_id: &str,
) -> AppResult<()> {
    let room = room(state, caller, room_id).await?;
    let user = provisioning::user(state, caller, external_id).await?;
    let ws = caller.workspace();
    let role = store::members::role(&state.db, ws, room.id, user.id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such member".into()))?;
    if role == Role::Owner {
        return Err(AppError::Forbidden("the owner cannot be removed".into()));
    }
    rooms::apply_removal(state, ws, &room, &user, role, Removal::Kicked, by(caller)).await
}

/// Deletes a room; its sockets on every node get `removed` (`room_deleted`).
pub async fn delete_room(state: &AppState, caller: &ServerCaller, room_id: Uuid) -> AppResult<()> {
    let room = room(state, caller, room_id).await?;
    rooms::apply_delete(state, caller.workspace(), &room, by(caller), true).await?;
    tracing::info!(room.id = %room.id, key.id = %caller.key_id, "room deleted by the server API");
    Ok(())
}

/// A message the backend sends in its sender's name.
#[derive(Debug)]
pub struct ServerMessage {
    pub sender: String,
    pub outgoing: Outgoing,
}

/// Sends a message as `sender`, with every guarantee of `sendMessage`: checked as theirs
/// (bounds, their rate limit, what it quotes and mentions), committed by the writer before the
/// answer, broadcast on every node, exactly once per `client_id`. The sender needs no socket;
/// they must be allowed in the room (anyone for a public room, members otherwise): `403
/// forbidden` if not. Returns the message and whether it was stored now (`false`: the first
/// copy of its `client_id`).
pub async fn send_message(
    state: &AppState,
    caller: &ServerCaller,
    room_id: Uuid,
    message: ServerMessage,
) -> AppResult<(Message, bool)> {
    let ws = caller.workspace();
    let (sender, disabled) = store::users::find_by_external_id(&state.db, ws, &message.sender)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user (sender)".into()))?;
    let access = store::rooms::access_by_id(&state.db, ws, room_id, sender.id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such room".into()))?;
    if disabled || !access.may_enter() {
        return Err(AppError::Forbidden(
            "the sender may not write in this room".into(),
        ));
    }
    // The sender acting through the backend: no session of theirs is involved.
    let as_sender = AuthUser {
        user: sender,
        session_id: Uuid::nil(),
    };
    let receipt = messages::send(
        state,
        &as_sender,
        RoomRef::from(&access.room),
        message.outgoing,
    )
    .await?;
    match receipt.outcome().await? {
        Applied::Sent(Stored::New(m)) => Ok((m, true)),
        Applied::Sent(Stored::Duplicate(m)) => Ok((m, false)),
        _ => Err(AppError::Internal(anyhow::anyhow!(
            "a send answered with something else than a message"
        ))),
    }
}
