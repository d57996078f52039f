//! `/api/server/rooms`: rooms, their members and messages, as the product's backend makes them.
//! The rules are in `crate::server_api`.

use axum::{
    extract::State,
    http::StatusCode,
    routing::{post, put},
    Router,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    http::extract::{Json, Path},
    messages::Outgoing,
    server_api::{self, RoomSpec, ServerMessage},
    store::{
        members::{Member, Role},
        messages::Message,
        rooms::{Room, Visibility},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms", post(create))
        .route("/rooms/{id}", axum::routing::delete(delete))
        .route(
            "/rooms/{id}/members/{external_id}",
            put(grant).delete(remove_member),
        )
        .route("/rooms/{id}/messages", post(send))
}

#[derive(Deserialize)]
struct InitialMember {
    external_id: String,
    role: Role,
}

#[derive(Deserialize)]
struct CreateRoom {
    name: String,
    visibility: Visibility,
    topic: Option<String>,
    metadata: Option<Value>,
    owner: Option<String>,
    #[serde(default)]
    members: Vec<InitialMember>,
}

/// `POST /api/server/rooms` -> 201 room.
async fn create(
    State(state): State<AppState>,
    caller: ServerCaller,
    Json(body): Json<CreateRoom>,
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

/// `DELETE /api/server/rooms/{id}` -> 204.
async fn delete(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    server_api::delete_room(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Grant {
    role: Role,
}

/// `PUT /api/server/rooms/{id}/members/{external_id}` `{role}` -> 200 member.
async fn grant(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path((id, external_id)): Path<(Uuid, String)>,
    Json(body): Json<Grant>,
) -> AppResult<Json<Member>> {
    Ok(Json(
        server_api::grant(&state, &caller, id, &external_id, body.role).await?,
    ))
}

/// `DELETE /api/server/rooms/{id}/members/{external_id}` -> 204.
async fn remove_member(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path((id, external_id)): Path<(Uuid, String)>,
) -> AppResult<StatusCode> {
    server_api::remove_member(&state, &caller, id, &external_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SendMessage {
    sender: String,
    body: String,
    client_id: Option<String>,
    reply_to: Option<Uuid>,
    thread_root_id: Option<Uuid>,
    metadata: Option<Value>,
}

/// `POST /api/server/rooms/{id}/messages` -> 201 message (200 with the first copy when its
/// `client_id` was sent before).
async fn send(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(id): Path<Uuid>,
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
