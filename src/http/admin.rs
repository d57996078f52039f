//! Admin routes: disabling and enabling users, and the workspace's API keys.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{Json, Path},
    params::IdPath,
};
use crate::{
    admin,
    api_keys::{self, Created},
    app::AppState,
    auth::AuthUser,
    error::{AppResult, ErrorResponse},
    store::api_keys::ApiKey,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
struct NewKey {
    /// 1-64 characters, for people to tell keys apart.
    name: String,
}

/// Makes an API key of the caller's workspace (admins).
///
/// The answer holds the key's secret: the only time it is shown.
#[utoipa::path(post, operation_id = "create_api_key", path = "/admin/api-keys", tag = "admin", security(("user_token" = [])),
    request_body = NewKey,
    responses(
        (status = 201, description = "The key and its secret", body = Created),
        (status = 403, description = "`forbidden`: admins only", body = ErrorResponse),
    ))]
async fn create_key(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<NewKey>,
) -> AppResult<(StatusCode, Json<Created>)> {
    let created = api_keys::create_as_admin(&state, &caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Serialize, ToSchema)]
struct ApiKeys {
    keys: Vec<ApiKey>,
}

/// The workspace's API keys, newest first, revoked ones included (admins).
#[utoipa::path(get, operation_id = "list_api_keys", path = "/admin/api-keys", tag = "admin", security(("user_token" = [])),
    responses(
        (status = 200, description = "The keys, without secrets", body = ApiKeys),
        (status = 403, description = "`forbidden`: admins only", body = ErrorResponse),
    ))]
async fn list_keys(State(state): State<AppState>, caller: AuthUser) -> AppResult<Json<ApiKeys>> {
    let keys = api_keys::list(&state, &caller).await?;
    Ok(Json(ApiKeys { keys }))
}

/// Revokes an API key (admins); it is refused from the next request on.
///
/// Revoking it again answers 204 too.
#[utoipa::path(delete, operation_id = "revoke_api_key", path = "/admin/api-keys/{id}", tag = "admin", security(("user_token" = [])),
    params(IdPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`forbidden`: admins only", body = ErrorResponse),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(IdPath { id }): Path<IdPath>,
) -> AppResult<StatusCode> {
    api_keys::revoke(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a user of the workspace (admins).
///
/// Their sessions are revoked and their sockets disconnected at once.
#[utoipa::path(post, operation_id = "disable_user", path = "/admin/users/{id}/disable", tag = "admin",
    security(("user_token" = [])), params(IdPath),
    responses(
        (status = 204, description = "Disabled"),
        (status = 403, description = "`forbidden`: admins only, and not themselves", body = ErrorResponse),
    ))]
async fn disable(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(IdPath { id }): Path<IdPath>,
) -> AppResult<StatusCode> {
    admin::disable(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a disabled user again (admins).
#[utoipa::path(post, operation_id = "enable_user", path = "/admin/users/{id}/enable", tag = "admin",
    security(("user_token" = [])), params(IdPath),
    responses(
        (status = 204, description = "Enabled"),
        (status = 403, description = "`forbidden`: admins only", body = ErrorResponse),
    ))]
async fn enable(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(IdPath { id }): Path<IdPath>,
) -> AppResult<StatusCode> {
    admin::enable(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
