//! `/api/server/users/{external_id}`: users the product provisions, their sessions, disabling
//! and enabling. The rules are in `crate::provisioning`.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    accounts::Authenticated,
    app::AppState,
    auth::api_key::ServerCaller,
    error::{AppResult, ErrorResponse},
    http::{
        accounts::user_agent,
        extract::{Json, Path},
        params::ExternalIdPath,
    },
    provisioning::{self, UserFields},
    store::users::User,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_user))
        .routes(routes!(mint_session))
        .routes(routes!(disable))
        .routes(routes!(enable))
}

#[derive(Deserialize, ToSchema)]
struct PutUser {
    /// 3-32 of letters, digits, `_`, `.` and `-`; unique in the workspace.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,32}$")]
    username: String,
    /// 1-64 characters; absent: kept (the username for a new user).
    display_name: Option<String>,
    /// Absent: kept (false for a new user).
    is_admin: Option<bool>,
    /// Absent: kept (false for a new user).
    is_bot: Option<bool>,
    /// A JSON object of at most 4 KiB; absent: kept.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Creates or updates a user by the product's own id (no password: they log in through
/// sessions the product mints).
#[utoipa::path(put, operation_id = "server_put_user", path = "/users/{external_id}", tag = "server", security(("api_key" = [])),
    params(ExternalIdPath), request_body = PutUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 200, description = "Updated", body = User),
        (status = 409, description = "`conflict`: the username is taken by another user", body = ErrorResponse),
    ))]
async fn put_user(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(ExternalIdPath { external_id }): Path<ExternalIdPath>,
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

/// Mints a session for a provisioned user: tokens the product hands to its client.
#[utoipa::path(post, operation_id = "server_mint_session", path = "/users/{external_id}/sessions", tag = "server",
    security(("api_key" = [])), params(ExternalIdPath),
    responses(
        (status = 201, description = "The user and a new session", body = Authenticated),
        (status = 403, description = "`account_disabled`: the user is disabled", body = ErrorResponse),
    ))]
async fn mint_session(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(ExternalIdPath { external_id }): Path<ExternalIdPath>,
    headers: HeaderMap,
) -> AppResult<(StatusCode, Json<Authenticated>)> {
    let session =
        provisioning::mint_session(&state, &caller, &external_id, user_agent(&headers)).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Disables a user: their sessions are revoked and their sockets disconnected at once.
#[utoipa::path(post, operation_id = "server_disable_user", path = "/users/{external_id}/disable", tag = "server",
    security(("api_key" = [])), params(ExternalIdPath),
    responses((status = 204, description = "Disabled")))]
async fn disable(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(ExternalIdPath { external_id }): Path<ExternalIdPath>,
) -> AppResult<StatusCode> {
    provisioning::set_disabled(&state, &caller, &external_id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a disabled user again.
#[utoipa::path(post, operation_id = "server_enable_user", path = "/users/{external_id}/enable", tag = "server",
    security(("api_key" = [])), params(ExternalIdPath),
    responses((status = 204, description = "Enabled")))]
async fn enable(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(ExternalIdPath { external_id }): Path<ExternalIdPath>,
) -> AppResult<StatusCode> {
    provisioning::set_disabled(&state, &caller, &external_id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
