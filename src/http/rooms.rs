//! Rooms, members (the ACL), direct rooms, history and read state over REST. The rules are in
//! `crate::rooms`; these handlers parse and answer.

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post, put},
    Router,
};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::{Json, Path, Query};
use crate::{
    app::AppState,
    auth::AuthUser,
    error::AppResult,
    rooms::{self, Refusal, RoomKey, UserKey},
    store::{
        members::{Member, Role},
        messages::History,
        rooms::{MyRoom, Room, Visibility},
    },
    validate::{Limit, PageQuery, Seq},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms", post(create).get(list_public))
        .route("/me/rooms", get(list_mine))
        .route("/rooms/{id}", get(get_room).patch(update).delete(delete))
        .route("/rooms/{id}/members", get(members))
        .route(
            "/rooms/{id}/members/{user_id}",
            put(grant).delete(remove_member),
        )
        .route("/rooms/{id}/messages", get(history))
        .route("/rooms/{id}/read", put(mark_read))
        .route("/direct/{user_id}", post(direct))
}

#[derive(Deserialize)]
struct CreateRoom {
    name: String,
    visibility: Visibility,
    topic: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `POST /api/rooms` -> 201 room; the caller becomes its owner.
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

#[derive(Deserialize)]
struct RoomsQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<Limit>,
}

/// `GET /api/rooms?after=<name>&limit=<1..200>` -> public rooms by name, a page at a time:
/// `{"rooms": [...], "next": <name>}`, `next` present only when more remain (pass it as
/// `after`).
async fn list_public(
    State(state): State<AppState>,
    caller: AuthUser,
    Query(query): Query<RoomsQuery>,
) -> AppResult<Json<Value>> {
    let limit = query.limit.map_or(ROOMS_PAGE, |l| l.0);
    let (rooms, next) = rooms::list_public(&state, &caller, query.after.as_deref(), limit).await?;
    let mut body = json!({ "rooms": rooms });
    if let Some(next) = next {
        body["next"] = json!(next);
    }
    Ok(Json(body))
}

/// `GET /api/me/rooms` -> every room the caller is a member of, with role and unread count.
async fn list_mine(State(state): State<AppState>, caller: AuthUser) -> AppResult<Json<Value>> {
    let rooms: Vec<MyRoom> = rooms::list_mine(&state, &caller).await?;
    Ok(Json(json!({ "rooms": rooms })))
}

async fn get_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Room>> {
    Ok(Json(rooms::get(&state, &caller, id).await?))
}

/// Distinguishes an absent field (`None`) from an explicit null (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct UpdateRoom {
    #[serde(default, deserialize_with = "present")]
    topic: Option<Option<String>>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `PATCH /api/rooms/{id}` `{topic?, metadata?}` -> room (owner or moderator).
async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateRoom>,
) -> AppResult<Json<Room>> {
    Ok(Json(
        rooms::update(&state, &caller, id, body.topic, body.metadata).await?,
    ))
}

/// `DELETE /api/rooms/{id}` -> 204 (owner or admin).
async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    rooms::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/rooms/{id}/members`.
async fn members(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Value>> {
    let members = rooms::members(&state, &caller, id).await?;
    Ok(Json(json!({ "members": members })))
}

#[derive(Deserialize)]
struct Grant {
    role: Role,
}

/// `PUT /api/rooms/{id}/members/{user_id}` `{role}` -> 200 member: the ACL grant.
async fn grant(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<Grant>,
) -> AppResult<Json<Member>> {
    Ok(Json(
        rooms::grant(&state, &caller, id, user_id, body.role).await?,
    ))
}

/// `DELETE /api/rooms/{id}/members/{user_id}` -> 204.
async fn remove_member(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> AppResult<StatusCode> {
    rooms::remove_member(&state, &caller, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/direct/{user_id}` -> 200 room.
async fn direct(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(user_id): Path<Uuid>,
) -> AppResult<Json<Room>> {
    let (room, _) = rooms::direct(&state, &caller, UserKey::Id(user_id), "user_id").await?;
    Ok(Json(room))
}

/// `GET /api/rooms/{id}/messages?before=&after=&limit=`.
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery>,
) -> AppResult<Json<History>> {
    let history = rooms::history(&state, &caller, RoomKey::Id(id), query, Refusal::Hide).await?;
    Ok(Json(history))
}

#[derive(Deserialize)]
struct MarkRead {
    seq: Seq,
}

/// `PUT /api/rooms/{id}/read` `{seq}` -> 204; every socket of the user hears the new position.
async fn mark_read(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
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
