//! `/api/server/users/{external_id}`: users the product provisions, their sessions, disabling
//! and enabling. The rules are in `crate::provisioning`.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{post, put},
    Router,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    accounts::Authenticated,
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    http::{
        accounts::user_agent,
        extract::{Json, Path},
    },
    provisioning::{self, UserFields},
    store::users::User,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{external_id}", put(put_user))
        .route("/users/{external_id}/sessions", post(mint_session))
        .route("/users/{external_id}/disable", post(disable))
        .route("/users/{external_id}/enable", post(enable))
}

#[derive(Deserialize)]
struct PutUser {
    username: String,
    display_name: Option<String>,
    is_admin: Option<bool>,
    is_bot: Option<bool>,
    metadata: Option<Value>,
}

/// `PUT /api/server/users/{external_id}` -> 201 (created) or 200 (updated) user.
async fn put_user(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(external_id): Path<String>,
    Json(body): Json<PutUser>,
) -> AppResult<(StatusCode, Json<User>)> {
    let fields = UserFields {
        username: body.username,
        display_name: body.display_name,
        is_admin: body.is_admin,
        is_bot: body.is_bot,
        metadata: body.metadata,
    };
    let (user, created) = provisioning::put_user(&state, &caller, &external_id, fields).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(user)))
}

/// `POST /api/server/users/{external_id}/sessions` -> 201 `{user, ...tokens}`.
async fn mint_session(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(external_id): Path<String>,
    headers: HeaderMap,
) -> AppResult<(StatusCode, Json<Authenticated>)> {
    let session =
        provisioning::mint_session(&state, &caller, &external_id, user_agent(&headers)).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// `POST /api/server/users/{external_id}/disable` -> 204.
async fn disable(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(external_id): Path<String>,
) -> AppResult<StatusCode> {
    provisioning::set_disabled(&state, &caller, &external_id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/server/users/{external_id}/enable` -> 204.
async fn enable(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(external_id): Path<String>,
) -> AppResult<StatusCode> {
    provisioning::set_disabled(&state, &caller, &external_id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
