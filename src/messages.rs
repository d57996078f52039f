//! Changing a room's timeline: sending, editing, deleting and reacting. Each change passes its
//! checks here (the contract's bounds, the per-user rate limit shared by every node, what a
//! reply names, whom a body mentions) and is handed to the writer, which commits and then
//! acknowledges and announces. Room and direct messages take the same path, and REST and
//! Socket.IO the same functions; the caller has already checked that the user may act in the
//! room (a joined socket, or the access rule for REST), and the writer checks it again at commit.

use serde_json::Value;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppError, AppResult},
    mentions,
    realtime::user_channel,
    rooms::{self, UserKey},
    store::{
        self,
        messages::{Delete, Edit, JsonObject, Message, MessageRef, NewMessage},
        reactions::React,
        rooms::{Room, RoomRef},
        users::UserRef,
    },
    validate,
    writer::{Applied, Change, Receipt},
};

/// A message as a client sends it.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub body: String,
    pub client_id: Option<String>,
    pub reply_to: Option<Uuid>,
    pub thread_root_id: Option<Uuid>,
    pub metadata: Option<Value>,
}

/// Queues a message to a room the caller may write in (checked by the caller). Returns the
/// receipt to await for the commit; submitted in call order, so a socket's sends commit in the
/// order it made them.
pub async fn send(
    state: &AppState,
    caller: &AuthUser,
    room: RoomRef,
    outgoing: Outgoing,
) -> AppResult<Receipt> {
    let checked = check(state, caller, &outgoing).await?;
    let message = resolve(state, caller, room.id, checked, outgoing).await?;
    state
        .writer
        .submit(Change::Send(message), room, Vec::new())
        .await
}

/// Queues a message to the direct room of the caller and `to` (a user id or username), created
/// on first use; it is delivered to both users' sockets as well as to the room's.
pub async fn send_direct(
    state: &AppState,
    caller: &AuthUser,
    to: &str,
    outgoing: Outgoing,
) -> AppResult<(Receipt, Room)> {
    // Checked before the room is made, so a refused message leaves nothing behind.
    let checked = check(state, caller, &outgoing).await?;
    let (room, other) = rooms::direct(state, caller, UserKey::Asked(to), "to").await?;
    let message = resolve(state, caller, room.id, checked, outgoing).await?;
    let also_to = vec![user_channel(caller.id()), user_channel(other.id)];
    let receipt = state
        .writer
        .submit(Change::Send(message), RoomRef::from(&room), also_to)
        .await?;
    Ok((receipt, room))
}

/// Queues an edit of the caller's message: a new body and, when given, new metadata. The
/// writer checks at commit that the caller sent it, that it is not deleted and that
/// `EDIT_WINDOW` has not passed.
pub async fn edit(
    state: &AppState,
    caller: &AuthUser,
    room: RoomRef,
    id: Uuid,
    body: &str,
    metadata: Option<Value>,
) -> AppResult<Receipt> {
    let body = validate::message_body("body", body)?;
    let metadata = metadata
        .map(|m| validate::metadata("metadata", m))
        .transpose()?;
    state.message_limits.check(caller.id()).await?;
    let mentions = mentions::resolve(state, caller.workspace(), room.id, &body).await?;
    let edit = Edit {
        id,
        room_id: room.id,
        editor_id: caller.id(),
        body,
        metadata,
        mentions,
    };
    state
        .writer
        .submit(Change::Edit(edit), room, Vec::new())
        .await
}

/// Queues a deletion: by the sender, the room's owner or a moderator, or a workspace admin
/// (checked by the writer at commit).
pub async fn delete(
    state: &AppState,
    caller: &AuthUser,
    room: RoomRef,
    id: Uuid,
) -> AppResult<Receipt> {
    state.message_limits.check(caller.id()).await?;
    let delete = Delete {
        id,
        room_id: room.id,
        actor_id: caller.id(),
    };
    state
        .writer
        .submit(Change::Delete(delete), room, Vec::new())
        .await
}

/// Queues a reaction added (`on`) or taken back.
pub async fn react(
    state: &AppState,
    caller: &AuthUser,
    room: RoomRef,
    id: Uuid,
    emoji: &str,
    on: bool,
) -> AppResult<Receipt> {
    validate::emoji("emoji", emoji)?;
    state.message_limits.check(caller.id()).await?;
    let react = React {
        message_id: id,
        room_id: room.id,
        user_id: caller.id(),
        emoji: emoji.to_owned(),
        on,
    };
    let user = UserRef::from(&caller.user);
    state
        .writer
        .submit(Change::React(react, user), room, Vec::new())
        .await
}

/// A committed change's message (a deletion has none: `None`).
pub async fn committed(receipt: Receipt) -> AppResult<Option<Message>> {
    Ok(receipt.outcome().await?.into_message())
}

/// As `committed`, for a change that always answers with its message.
pub async fn committed_message(receipt: Receipt) -> AppResult<Message> {
    match receipt.outcome().await? {
        Applied::Deleted => Err(AppError::Internal(anyhow::anyhow!(
            "a change expected to answer with its message did not"
        ))),
        applied => applied
            .into_message()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no message in the answer"))),
    }
}

/// `typing` counts against the same per-user bucket as messages.
pub async fn typing_allowed(state: &AppState, caller: &AuthUser) -> AppResult<()> {
    state.message_limits.check(caller.id()).await
}

/// A message's text and metadata, checked against the bounds and the rate limit.
struct Checked {
    body: String,
    client_id: Option<String>,
    metadata: JsonObject,
}

async fn check(state: &AppState, caller: &AuthUser, outgoing: &Outgoing) -> AppResult<Checked> {
    let body = validate::message_body("body", &outgoing.body)?;
    let client_id = validate::client_id("client_id", outgoing.client_id.clone())?;
    let metadata = match &outgoing.metadata {
        Some(m) => validate::metadata("metadata", m.clone())?,
        None => JsonObject::new(),
    };
    state.message_limits.check(caller.id()).await?;
    Ok(Checked {
        body,
        client_id,
        metadata,
    })
}

/// Resolves what a checked message names in its room (the quoted message, the thread root, the
/// mentioned users) into the message to store, with a fresh UUIDv7.
async fn resolve(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    checked: Checked,
    outgoing: Outgoing,
) -> AppResult<NewMessage> {
    let ws = caller.workspace();
    let reply_to = match outgoing.reply_to {
        None => None,
        Some(id) => Some(quoted(state, caller, room_id, id).await?),
    };
    if let Some(root) = outgoing.thread_root_id {
        let target = store::messages::target(&state.db, ws, room_id, root)
            .await?
            .ok_or_else(|| AppError::NotFound("no such message (thread_root_id)".into()))?;
        if target.thread_root_id.is_some() {
            return Err(AppError::invalid_field(
                "thread_root_id",
                "names a thread reply; a thread's root is a message of the main timeline",
            ));
        }
    }
    let mentions = mentions::resolve(state, ws, room_id, &checked.body).await?;
    Ok(NewMessage {
        id: Uuid::now_v7(),
        room_id,
        sender_id: caller.id(),
        body: checked.body,
        client_id: checked.client_id,
        reply_to,
        thread_root_id: outgoing.thread_root_id,
        metadata: checked.metadata,
        mentions,
    })
}

/// The message a reply quotes: one of the same room, in its state now.
async fn quoted(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    id: Uuid,
) -> AppResult<MessageRef> {
    store::messages::quote(&state.db, caller.workspace(), room_id, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such message (reply_to)".into()))
}
