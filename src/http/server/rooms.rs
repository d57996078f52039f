//! `/api/server/rooms`: rooms, their members and messages, as the product's backend makes them.
//! The rules are in `crate::server_api`.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::{AppResult, ErrorResponse},
    http::{
        extract::{Json, Path},
        params::{RoomPath, ServerMemberPath},
    },
    messages::Outgoing,
    server_api::{self, RoomSpec, ServerMessage},
    store::{
        members::{Member, Role},
        messages::Message,
        rooms::{Room, Visibility},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(delete))
        .routes(routes!(grant, remove_member))
        .routes(routes!(send))
}

#[derive(Deserialize, ToSchema)]
struct InitialMember {
    /// A provisioned user's external id.
    external_id: String,
    role: Role,
}

#[derive(Deserialize, ToSchema)]
struct ServerRoomSpec {
    /// 1-64 of `a-z`, `0-9`, `_` and `-`; unique in the workspace.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
    /// `public` or `private`.
    visibility: Visibility,
    /// Up to 256 characters.
    topic: Option<String>,
    /// A JSON object of at most 4 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// The external id of the room's owner (absent: no owner).
    owner: Option<String>,
    /// Members to add with the room, by external id.
    #[serde(default)]
    members: Vec<InitialMember>,
}

/// Creates a room with its owner and members, by the product's own user ids.
#[utoipa::path(post, operation_id = "server_create_room", path = "/rooms", tag = "server", security(("api_key" = [])),
    request_body = ServerRoomSpec,
    responses(
        (status = 201, description = "The room", body = Room),
        (status = 404, description = "`not_found`: no user with one of the external ids", body = ErrorResponse),
        (status = 409, description = "`conflict`: a room with this name exists", body = ErrorResponse),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: ServerCaller,
    Json(body): Json<ServerRoomSpec>,
) -> AppResult<(StatusCode, Json<Room>)> {
    let spec = RoomSpec {
        name: body.name,
        visibility: body.visibility,
        topic: body.topic,
        metadata: body.metadata,
        owner: body.owner,
        members: body
            .members
            .into_iter()
            .map(|m| (m.external_id, m.role))
            .collect(),
    };
    let room = server_api::create_room(&state, &caller, spec).await?;
    Ok((StatusCode::CREATED, Json(room)))
}

/// Deletes a room with its history; everyone in it is told and taken out of it.
#[utoipa::path(delete, operation_id = "server_delete_room", path = "/rooms/{id}", tag = "server", security(("api_key" = [])),
    params(RoomPath),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(RoomPath { id }): Path<RoomPath>,
) -> AppResult<StatusCode> {
    server_api::delete_room(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[schema(as = ServerMemberGrant)]
struct Grant {
    /// `member` or `moderator` (`owner` only where the room has none).
    role: Role,
}

/// Adds a provisioned user to a room or changes their role.
#[utoipa::path(put, operation_id = "server_grant_member", path = "/rooms/{id}/members/{external_id}", tag = "server",
    security(("api_key" = [])), params(ServerMemberPath), request_body = Grant,
    responses(
        (status = 200, description = "The membership", body = Member),
        (status = 403, description = "`forbidden`: a direct room, or a second owner", body = ErrorResponse),
    ))]
async fn grant(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(ServerMemberPath { id, external_id }): Path<ServerMemberPath>,
    Json(body): Json<Grant>,
) -> AppResult<Json<Member>> {
    Ok(Json(
        server_api::grant(&state, &caller, id, &external_id, body.role).await?,
    ))
}

/// Removes a member from a room; their sockets leave it at once.
#[utoipa::path(delete, operation_id = "server_remove_member", path = "/rooms/{id}/members/{external_id}", tag = "server",
    security(("api_key" = [])), params(ServerMemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`: the owner cannot be removed", body = ErrorResponse),
    ))]
async fn remove_member(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(ServerMemberPath { id, external_id }): Path<ServerMemberPath>,
) -> AppResult<StatusCode> {
    server_api::remove_member(&state, &caller, id, &external_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
struct SendMessage {
    /// The sender's external id (a member of the room).
    sender: String,
    /// 1-4000 characters after trimming.
    body: String,
    /// An idempotency key, 1-64 characters: sent again, the first copy is answered.
    client_id: Option<String>,
    /// The id of a message of the room this one replies to.
    reply_to: Option<Uuid>,
    /// The id of the thread's root message, for a reply in a thread.
    thread_root_id: Option<Uuid>,
    /// A JSON object of at most 4 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Sends a message as a provisioned user; the room hears it as from that user.
#[utoipa::path(post, operation_id = "server_send_message", path = "/rooms/{id}/messages", tag = "server", security(("api_key" = [])),
    params(RoomPath), request_body = SendMessage,
    responses(
        (status = 201, description = "The message, stored", body = Message),
        (status = 200, description = "Its `client_id` was sent before: the first copy", body = Message),
        (status = 403, description = "`forbidden`: the sender is not a member of the room", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more messages than MESSAGE_RATE allows", body = ErrorResponse),
    ))]
async fn send(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(RoomPath { id }): Path<RoomPath>,
    Json(body): Json<SendMessage>,
) -> AppResult<(StatusCode, Json<Message>)> {
    let message = ServerMessage {
        sender: body.sender,
        outgoing: Outgoing {
            body: body.body,
            client_id: body.client_id,
            reply_to: body.reply_to,
            thread_root_id: body.thread_root_id,
            metadata: body.metadata,
        },
    };
    let (message, stored) = server_api::send_message(&state, &caller, id, message).await?;
    let status = if stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(message)))
}
