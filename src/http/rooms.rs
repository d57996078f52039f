//! Rooms, members (the ACL), direct rooms, history and read state over REST. The rules are in
//! `crate::rooms`; these handlers parse and answer.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Json, Path, Query},
    params::{MemberPath, RoomPath, UserPath},
};
use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppResult, ErrorResponse},
    rooms::{self, Refusal, RoomKey, UserKey},
    store::{
        members::{Member, Role},
        messages::History,
        rooms::{MyRoom, Room, Visibility},
    },
    validate::{Limit, PageQuery, Seq},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list_public))
        .routes(routes!(list_mine))
        .routes(routes!(get_room, update, delete))
        .routes(routes!(members))
        .routes(routes!(grant, remove_member))
        .routes(routes!(history))
        .routes(routes!(mark_read))
        .routes(routes!(direct))
}

#[derive(Deserialize, ToSchema)]
struct CreateRoom {
    /// 1-64 of `a-z`, `0-9`, `_` and `-`; unique in the workspace.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
    /// `public` or `private` (`direct` rooms are made by POST /api/direct/{user_id}).
    visibility: Visibility,
    /// Up to 256 characters.
    topic: Option<String>,
    /// The app's own data about the room: a JSON object of at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Creates a room; the caller becomes its owner.
#[utoipa::path(post, operation_id = "create_room", path = "/rooms", tag = "rooms", security(("user_token" = [])),
    request_body = CreateRoom,
    responses(
        (status = 201, description = "The new room", body = Room),
        (status = 409, description = "`conflict`: a room with this name exists", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more rooms this hour than ROOMS_PER_HOUR allows", body = ErrorResponse),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<CreateRoom>,
) -> AppResult<(StatusCode, Json<Room>)> {
    let room = rooms::create(
        &state,
        &caller,
        &body.name,
        body.visibility,
        body.topic.as_deref(),
        body.metadata,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(room)))
}

/// Public rooms per page when the client does not say (a v1 client, which asks without
/// parameters, gets this first page in the shape it knows).
const ROOMS_PAGE: i64 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RoomsQuery {
    /// The `next` of the previous page: rooms named after this one.
    #[serde(default)]
    after: Option<String>,
    /// Page size (default 100).
    #[serde(default)]
    #[param(inline)]
    limit: Option<Limit>,
}

/// A page of the public room directory.
#[derive(Serialize, ToSchema)]
struct PublicRooms {
    rooms: Vec<Room>,
    /// Present only when more remain: pass it as `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The workspace's public rooms by name, a page at a time.
#[utoipa::path(get, operation_id = "list_public_rooms", path = "/rooms", tag = "rooms", security(("user_token" = [])),
    params(RoomsQuery),
    responses((status = 200, description = "A page of public rooms", body = PublicRooms)))]
async fn list_public(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<RoomsQuery>,
) -> AppResult<Json<PublicRooms>> {
    let limit = query.limit.map_or(ROOMS_PAGE, |l| l.0);
    let (rooms, next) = rooms::list_public(&state, &caller, query.after.as_deref(), limit).await?;
    Ok(Json(PublicRooms { rooms, next }))
}

#[derive(Serialize, ToSchema)]
struct MyRooms {
    rooms: Vec<MyRoom>,
}

/// Every room the caller is a member of, with their role and unread counts.
#[utoipa::path(get, operation_id = "list_my_rooms", path = "/me/rooms", tag = "rooms", security(("user_token" = [])),
    responses((status = 200, description = "The caller's rooms", body = MyRooms)))]
async fn list_mine(State(state): State<AppState>, caller: AuthUser) -> AppResult<Json<MyRooms>> {
    let rooms = rooms::list_mine(&state, &caller).await?;
    Ok(Json(MyRooms { rooms }))
}

/// One room.
///
/// A private or direct room the caller is not in is answered as absent.
#[utoipa::path(get, operation_id = "get_room", path = "/rooms/{id}", tag = "rooms", security(("user_token" = [])),
    params(RoomPath),
    responses((status = 200, description = "The room", body = Room)))]
async fn get_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
) -> AppResult<Json<Room>> {
    Ok(Json(rooms::get(&state, &caller, id).await?))
}

/// Distinguishes an absent field (`None`) from an explicit null (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
struct UpdateRoom {
    /// Up to 256 characters; `null` clears it; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    topic: Option<Option<String>>,
    /// Replaces the room's metadata (a JSON object of at most 4 KiB); absent: unchanged.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Changes a room's topic or metadata (its owner or a moderator).
#[utoipa::path(patch, operation_id = "update_room", path = "/rooms/{id}", tag = "rooms", security(("user_token" = [])),
    params(RoomPath), request_body = UpdateRoom,
    responses(
        (status = 200, description = "The room, changed", body = Room),
        (status = 403, description = "`forbidden`: only the room's owner or a moderator", body = ErrorResponse),
    ))]
async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
    Json(body): Json<UpdateRoom>,
) -> AppResult<Json<Room>> {
    Ok(Json(
        rooms::update(&state, &caller, id, body.topic, body.metadata).await?,
    ))
}

/// Deletes a room with its history (its owner, or an admin).
///
/// Everyone in it is told and taken out of it.
#[utoipa::path(delete, operation_id = "delete_room", path = "/rooms/{id}", tag = "rooms", security(("user_token" = [])),
    params(RoomPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: only the room's owner or an admin", body = ErrorResponse),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
) -> AppResult<StatusCode> {
    rooms::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct Members {
    members: Vec<Member>,
}

/// A room's members and their roles.
#[utoipa::path(get, operation_id = "list_members", path = "/rooms/{id}/members", tag = "rooms", security(("user_token" = [])),
    params(RoomPath),
    responses((status = 200, description = "The members", body = Members)))]
async fn members(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
) -> AppResult<Json<Members>> {
    let members = rooms::members(&state, &caller, id).await?;
    Ok(Json(Members { members }))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = MemberGrant)]
struct Grant {
    /// `member` or `moderator` (`owner` is never granted).
    role: Role,
}

/// Adds a member to a room or changes their role: the ACL grant (owner or moderator).
#[utoipa::path(put, operation_id = "grant_member", path = "/rooms/{id}/members/{user_id}", tag = "rooms",
    security(("user_token" = [])), params(MemberPath), request_body = Grant,
    responses(
        (status = 200, description = "The membership", body = Member),
        (status = 403, description = "`forbidden`: only the room's owner or a moderator", body = ErrorResponse),
    ))]
async fn grant(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(MemberPath { id, user_id }): Path<MemberPath>,
    Json(body): Json<Grant>,
) -> AppResult<Json<Member>> {
    Ok(Json(
        rooms::grant(&state, &caller, id, user_id, body.role).await?,
    ))
}

/// Removes a member from a room (owner or moderator; anyone may remove themselves).
///
/// Their sockets leave the room at once.
#[utoipa::path(delete, operation_id = "remove_member", path = "/rooms/{id}/members/{user_id}", tag = "rooms",
    security(("user_token" = [])), params(MemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`: not allowed to remove this member", body = ErrorResponse),
    ))]
async fn remove_member(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(MemberPath { id, user_id }): Path<MemberPath>,
) -> AppResult<StatusCode> {
    rooms::remove_member(&state, &caller, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The direct room of the caller and another user, made on first use.
#[utoipa::path(post, operation_id = "open_direct_room", path = "/direct/{user_id}", tag = "rooms", security(("user_token" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The direct room", body = Room),
        (status = 400, description = "`invalid_input`: the caller's own id", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more new rooms this hour than ROOMS_PER_HOUR allows", body = ErrorResponse),
    ))]
async fn direct(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(UserPath { user_id }): Path<UserPath>,
) -> AppResult<Json<Room>> {
    let (room, _) = rooms::direct(&state, &caller, UserKey::Id(user_id), "user_id").await?;
    Ok(Json(room))
}

/// A page of a room's history, oldest first.
///
/// Without `before` or `after`: the newest messages. Thread replies are included.
#[utoipa::path(get, operation_id = "history", path = "/rooms/{id}/messages", tag = "messages", security(("user_token" = [])),
    params(RoomPath, PageQuery),
    responses((status = 200, description = "A page of messages", body = History)))]
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
    Query(query): Query<PageQuery>,
) -> AppResult<Json<History>> {
    let history = rooms::history(&state, &caller, RoomKey::Id(id), query, Refusal::Hide).await?;
    Ok(Json(history))
}

#[derive(Deserialize, ToSchema)]
struct MarkRead {
    /// The seq read up to; a position behind the current one is ignored.
    #[schema(value_type = i64, minimum = 0)]
    seq: Seq,
}

/// Moves the caller's read position in a room.
///
/// Every socket of the caller hears the new position.
#[utoipa::path(put, operation_id = "mark_read", path = "/rooms/{id}/read", tag = "rooms", security(("user_token" = [])),
    params(RoomPath), request_body = MarkRead,
    responses(
        (status = 204, description = "Recorded"),
        (status = 403, description = "`forbidden`: not a member of the room", body = ErrorResponse),
    ))]
async fn mark_read(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
    Json(body): Json<MarkRead>,
) -> AppResult<StatusCode> {
    rooms::mark_read(
        &state,
        &caller,
        RoomKey::Id(id),
        body.seq,
        Refusal::Hide,
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
