//! Messages over REST beyond the v1 history: one message, edits, deletions, reactions, thread
//! pages and the change feed. The rules are in `crate::messages` (changes, through the writer)
//! and `crate::rooms` (reads and the access rule); these handlers parse and answer.

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, put},
    Router,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::extract::{Json, Path, Query};
use crate::{
    app::AppState,
    auth::AuthUser,
    error::AppResult,
    messages,
    rooms::{self, Changes},
    store::messages::{History, Message},
    validate::{Limit, PageQuery, Seq},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/rooms/{id}/messages/{message_id}",
            get(one).patch(edit).delete(delete),
        )
        .route(
            "/rooms/{id}/messages/{message_id}/reactions/{emoji}",
            put(react_on).delete(react_off),
        )
        .route("/rooms/{id}/threads/{root_id}/messages", get(thread))
        .route("/rooms/{id}/changes", get(changes))
}

/// `GET /api/rooms/{id}/messages/{message_id}` -> message.
async fn one(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> AppResult<Json<Message>> {
    Ok(Json(rooms::message(&state, &caller, id, message_id).await?))
}

#[derive(Deserialize)]
struct EditBody {
    body: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `PATCH /api/rooms/{id}/messages/{message_id}` `{body, metadata?}` -> message (its sender).
async fn edit(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<EditBody>,
) -> AppResult<Json<Message>> {
    let room = rooms::for_change(&state, &caller, id, "edit_message").await?;
    let receipt =
        messages::edit(&state, &caller, room, message_id, &body.body, body.metadata).await?;
    Ok(Json(messages::committed_message(receipt).await?))
}

/// `DELETE /api/rooms/{id}/messages/{message_id}` -> 204 (its sender, the room's owner or a
/// moderator, or an admin); again 204 for a tombstone.
async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> AppResult<StatusCode> {
    let room = rooms::for_change(&state, &caller, id, "delete_message").await?;
    let receipt = messages::delete(&state, &caller, room, message_id).await?;
    messages::committed(receipt).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/rooms/{id}/messages/{message_id}/reactions/{emoji}` -> message.
async fn react_on(
    state: State<AppState>,
    caller: AuthUser,
    path: Path<(Uuid, Uuid, String)>,
) -> AppResult<Json<Message>> {
    react(state, caller, path, true).await
}

/// `DELETE /api/rooms/{id}/messages/{message_id}/reactions/{emoji}` -> message.
async fn react_off(
    state: State<AppState>,
    caller: AuthUser,
    path: Path<(Uuid, Uuid, String)>,
) -> AppResult<Json<Message>> {
    react(state, caller, path, false).await
}

async fn react(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, message_id, emoji)): Path<(Uuid, Uuid, String)>,
    on: bool,
) -> AppResult<Json<Message>> {
    let room = rooms::for_change(&state, &caller, id, "react").await?;
    let receipt = messages::react(&state, &caller, room, message_id, &emoji, on).await?;
    Ok(Json(messages::committed_message(receipt).await?))
}

/// `GET /api/rooms/{id}/threads/{root_id}/messages?before=&after=&limit=` -> one thread's
/// replies, paged by seq as the history is.
async fn thread(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((id, root_id)): Path<(Uuid, Uuid)>,
    Query(query): Query<PageQuery>,
) -> AppResult<Json<History>> {
    Ok(Json(
        rooms::thread(&state, &caller, id, root_id, query).await?,
    ))
}

#[derive(Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    after_rev: Option<Seq>,
    #[serde(default)]
    limit: Option<Limit>,
}

/// Changes per page when the client does not say.
const CHANGES_PAGE: i64 = 50;

/// `GET /api/rooms/{id}/changes?after_rev=&limit=` -> `{messages, has_more, last_rev}`.
async fn changes(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
    Query(query): Query<ChangesQuery>,
) -> AppResult<Json<Changes>> {
    let after_rev = query.after_rev.map_or(0, |r| r.0);
    let limit = query.limit.map_or(CHANGES_PAGE, |l| l.0);
    Ok(Json(
        rooms::changes(&state, &caller, id, after_rev, limit).await?,
    ))
}
