//! Path parameters, named: the handlers extract them and the OpenAPI document describes them
//! from the same structs, so a path's ids and their documentation cannot disagree.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

/// `/rooms/{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoomPath {
    /// The room's id.
    pub id: Uuid,
}

/// `/rooms/{id}/members/{user_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// The room's id.
    pub id: Uuid,
    /// The member's user id.
    pub user_id: Uuid,
}

/// `/rooms/{id}/messages/{message_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// The room's id.
    pub id: Uuid,
    /// The message's id.
    pub message_id: Uuid,
}

/// `/rooms/{id}/messages/{message_id}/reactions/{emoji}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReactionPath {
    /// The room's id.
    pub id: Uuid,
    /// The message's id.
    pub message_id: Uuid,
    /// The reaction: 1-32 characters, no whitespace or control characters (percent-encoded).
    pub emoji: String,
}

/// `/rooms/{id}/threads/{root_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ThreadPath {
    /// The room's id.
    pub id: Uuid,
    /// The id of the thread's root message.
    pub root_id: Uuid,
}

/// `/direct/{user_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The other user's id.
    pub user_id: Uuid,
}

/// `/admin/users/{id}`, `/admin/api-keys/{id}`, `/server/webhooks/{id}`: one thing by its id.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// Its id.
    pub id: Uuid,
}

/// `/server/users/{external_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExternalIdPath {
    /// The product's own id for the user: 1-128 characters (percent-encoded).
    pub external_id: String,
}

/// `/server/rooms/{id}/members/{external_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServerMemberPath {
    /// The room's id.
    pub id: Uuid,
    /// The product's own id for the user.
    pub external_id: String,
}
