//! Sending messages: the checks a message passes before the writer (the contract's bounds, the
//! per-user rate limit shared by every node) and the hand-off to the writer, which commits and
//! then acknowledges and delivers. Room messages and direct messages take the same path.

use uuid::Uuid;

use crate::{
    app::AppState,
    auth::AuthUser,
    error::AppResult,
    realtime::user_channel,
    rooms::{self, UserKey},
    store::{
        messages::NewMessage,
        rooms::{Room, RoomRef},
    },
    validate,
    writer::Receipt,
};

/// Queues a message to a room the caller's socket has joined (checked by the caller). Returns
/// the receipt to await for the commit; submitted in call order, so a socket's sends commit in
/// the order it made them.
pub async fn send(
    state: &AppState,
    caller: &AuthUser,
    room: RoomRef,
    body: &str,
    client_id: Option<String>,
) -> AppResult<Receipt> {
    let message = check(state, caller, body, client_id)
        .await?
        .to(caller, room.id);
    state.writer.submit(message, room, Vec::new()).await
}

/// Queues a message to the direct room of the caller and `to` (a user id or username), created
/// on first use; it is delivered to both users' sockets as well as to the room's.
pub async fn send_direct(
    state: &AppState,
    caller: &AuthUser,
    to: &str,
    body: &str,
    client_id: Option<String>,
) -> AppResult<(Receipt, Room)> {
    // Checked before the room is made, so a refused message leaves nothing behind.
    let checked = check(state, caller, body, client_id).await?;
    let (room, other) = rooms::direct(state, caller, UserKey::Asked(to), "to").await?;
    let message = checked.to(caller, room.id);
    let also_to = vec![user_channel(caller.id()), user_channel(other.id)];
    let receipt = state
        .writer
        .submit(message, RoomRef::from(&room), also_to)
        .await?;
    Ok((receipt, room))
}

/// `typing` counts against the same per-user bucket as messages.
pub async fn typing_allowed(state: &AppState, caller: &AuthUser) -> AppResult<()> {
    state.message_limits.check(caller.id()).await
}

/// A message's text, checked against the bounds and the rate limit.
struct Checked {
    body: String,
    client_id: Option<String>,
}

impl Checked {
    /// The message to store, with a fresh UUIDv7.
    fn to(self, caller: &AuthUser, room_id: Uuid) -> NewMessage {
        NewMessage {
            id: Uuid::now_v7(),
            room_id,
            sender_id: caller.id(),
            body: self.body,
            client_id: self.client_id,
        }
    }
}

async fn check(
    state: &AppState,
    caller: &AuthUser,
    body: &str,
    client_id: Option<String>,
) -> AppResult<Checked> {
    let body = validate::message_body("body", body)?;
    let client_id = validate::client_id("client_id", client_id)?;
    state.message_limits.check(caller.id()).await?;
    Ok(Checked { body, client_id })
}
