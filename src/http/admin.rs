//! Admin routes: disabling and enabling users, and the workspace's API keys.

use axum::{
    extract::State,
    http::StatusCode,
    routing::{delete, get, post},
    Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::{Json, Path};
use crate::{
    admin,
    api_keys::{self, Created},
    app::AppState,
    auth::AuthUser,
    error::AppResult,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users/{id}/disable", post(disable))
        .route("/admin/users/{id}/enable", post(enable))
        .route("/admin/api-keys", get(list_keys).post(create_key))
        .route("/admin/api-keys/{id}", delete(revoke_key))
}

#[derive(Deserialize)]
struct NewKey {
    name: String,
}

/// `POST /api/admin/api-keys` `{name}` -> 201 `{key, secret}` (the secret this once).
async fn create_key(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<NewKey>,
) -> AppResult<(StatusCode, Json<Created>)> {
    let created = api_keys::create_as_admin(&state, &caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /api/admin/api-keys` -> `{"keys": [...]}`, newest first.
async fn list_keys(State(state): State<AppState>, caller: AuthUser) -> AppResult<Json<Value>> {
    let keys = api_keys::list(&state, &caller).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /api/admin/api-keys/{id}` -> 204 (again 204 once revoked).
async fn revoke_key(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    api_keys::revoke(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/admin/users/{id}/disable` -> 204.
async fn disable(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    admin::disable(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/admin/users/{id}/enable` -> 204.
async fn enable(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    admin::enable(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
