//! Messages over REST beyond the v1 history: one message, edits, deletions, reactions, thread
//! pages and the change feed. The rules are in `crate::messages` (changes, through the writer)
//! and `crate::rooms` (reads and the access rule); these handlers parse and answer.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Json, Path, Query},
    params::{MessagePath, ReactionPath, RoomPath, ThreadPath},
};
use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppResult, ErrorResponse},
    messages,
    rooms::{self, Changes},
    store::messages::{History, Message},
    validate::{Limit, PageQuery, Seq},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(one, edit, delete))
        .routes(routes!(react_on, react_off))
        .routes(routes!(thread))
        .routes(routes!(changes))
}

/// One message, as the caller sees it (with their own reactions).
#[utoipa::path(get, operation_id = "get_message", path = "/rooms/{id}/messages/{message_id}", tag = "messages",
    security(("user_token" = [])), params(MessagePath),
    responses((status = 200, description = "The message", body = Message)))]
async fn one(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(MessagePath { id, message_id }): Path<MessagePath>,
) -> AppResult<Json<Message>> {
    Ok(Json(rooms::message(&state, &caller, id, message_id).await?))
}

#[derive(Deserialize, ToSchema)]
struct EditBody {
    /// The new text: 1-4000 characters after trimming.
    body: String,
    /// Replaces the message's metadata (a JSON object of at most 4 KiB); absent: unchanged.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Edits a message (its sender only, within EDIT_WINDOW when set).
///
/// The room hears `messageEdited`; the message's `rev` moves to the room's next.
#[utoipa::path(patch, operation_id = "edit_message", path = "/rooms/{id}/messages/{message_id}", tag = "messages",
    security(("user_token" = [])), params(MessagePath), request_body = EditBody,
    responses(
        (status = 200, description = "The message, edited", body = Message),
        (status = 403, description = "`forbidden`: not the sender, the edit window has passed, or the message is deleted", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more changes than MESSAGE_RATE allows", body = ErrorResponse),
    ))]
async fn edit(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(MessagePath { id, message_id }): Path<MessagePath>,
    Json(body): Json<EditBody>,
) -> AppResult<Json<Message>> {
    let room = rooms::for_change(&state, &caller, id, "edit_message").await?;
    let receipt =
        messages::edit(&state, &caller, room, message_id, &body.body, body.metadata).await?;
    Ok(Json(messages::committed_message(receipt).await?))
}

/// Deletes a message, leaving a tombstone (its sender, the room's owner or a moderator, or an
/// admin).
///
/// Deleting a tombstone again answers 204 too.
#[utoipa::path(delete, operation_id = "delete_message", path = "/rooms/{id}/messages/{message_id}", tag = "messages",
    security(("user_token" = [])), params(MessagePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: not allowed to delete this message", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more changes than MESSAGE_RATE allows", body = ErrorResponse),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(MessagePath { id, message_id }): Path<MessagePath>,
) -> AppResult<StatusCode> {
    let room = rooms::for_change(&state, &caller, id, "delete_message").await?;
    let receipt = messages::delete(&state, &caller, room, message_id).await?;
    messages::committed(receipt).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds the caller's reaction to a message (again: no change).
#[utoipa::path(put, operation_id = "add_reaction", path = "/rooms/{id}/messages/{message_id}/reactions/{emoji}",
    tag = "messages", security(("user_token" = [])), params(ReactionPath),
    responses(
        (status = 200, description = "The message with its reactions", body = Message),
        (status = 400, description = "`invalid_input`: not a valid reaction, or the message has too many kinds", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a member, or the message is deleted", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more changes than MESSAGE_RATE allows", body = ErrorResponse),
    ))]
async fn react_on(
    state: State<AppState>,
    caller: AuthUser,
    path: Path<ReactionPath>,
) -> AppResult<Json<Message>> {
    react(state, caller, path, true).await
}

/// Takes the caller's reaction off a message (when absent: no change).
#[utoipa::path(delete, operation_id = "remove_reaction", path = "/rooms/{id}/messages/{message_id}/reactions/{emoji}",
    tag = "messages", security(("user_token" = [])), params(ReactionPath),
    responses(
        (status = 200, description = "The message with its reactions", body = Message),
        (status = 400, description = "`invalid_input`: not a valid reaction", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a member, or the message is deleted", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: more changes than MESSAGE_RATE allows", body = ErrorResponse),
    ))]
async fn react_off(
    state: State<AppState>,
    caller: AuthUser,
    path: Path<ReactionPath>,
) -> AppResult<Json<Message>> {
    react(state, caller, path, false).await
}

async fn react(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(ReactionPath {
        id,
        message_id,
        emoji,
    }): Path<ReactionPath>,
    on: bool,
) -> AppResult<Json<Message>> {
    let room = rooms::for_change(&state, &caller, id, "react").await?;
    let receipt = messages::react(&state, &caller, room, message_id, &emoji, on).await?;
    Ok(Json(messages::committed_message(receipt).await?))
}

/// A page of one thread's replies, paged by seq as the history is.
#[utoipa::path(get, operation_id = "thread_messages", path = "/rooms/{id}/threads/{root_id}/messages", tag = "messages",
    security(("user_token" = [])), params(ThreadPath, PageQuery),
    responses((status = 200, description = "A page of replies", body = History)))]
async fn thread(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(ThreadPath { id, root_id }): Path<ThreadPath>,
    Query(query): Query<PageQuery>,
) -> AppResult<Json<History>> {
    Ok(Json(
        rooms::thread(&state, &caller, id, root_id, query).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// Changes after this rev (default 0: from the start).
    #[serde(default)]
    #[param(inline)]
    after_rev: Option<Seq>,
    /// Page size (default 50).
    #[serde(default)]
    #[param(inline)]
    limit: Option<Limit>,
}

/// Changes per page when the client does not say.
const CHANGES_PAGE: i64 = 50;

/// The room's change feed: messages created, edited, deleted or reacted to after `after_rev`,
/// in rev order, each once in its latest state.
#[utoipa::path(get, operation_id = "room_changes", path = "/rooms/{id}/changes", tag = "messages", security(("user_token" = [])),
    params(RoomPath, ChangesQuery),
    responses((status = 200, description = "A page of changes", body = Changes)))]
async fn changes(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(RoomPath { id }): Path<RoomPath>,
    Query(query): Query<ChangesQuery>,
) -> AppResult<Json<Changes>> {
    let after_rev = query.after_rev.map_or(0, |r| r.0);
    let limit = query.limit.map_or(CHANGES_PAGE, |l| l.0);
    Ok(Json(
        rooms::changes(&state, &caller, id, after_rev, limit).await?,
    ))
}
