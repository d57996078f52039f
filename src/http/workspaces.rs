//! Workspaces over REST: the caller's own (`GET /api/workspace`) and self-service signup
//! (`POST /api/workspaces`, when `WORKSPACE_SIGNUP=open`). The rules are in
//! `crate::workspaces`.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    accounts::{client_address, user_agent},
    extract::Json,
};
use crate::{
    accounts::Registration,
    app::AppState,
    auth::AuthUser,
    error::{AppResult, ErrorResponse},
    store::workspaces::Workspace,
    workspaces::{self, SignedUp},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mine))
        .routes(routes!(sign_up))
}

/// The caller's workspace.
#[utoipa::path(get, operation_id = "my_workspace", path = "/workspace", tag = "workspaces", security(("user_token" = [])),
    responses((status = 200, description = "The workspace", body = Workspace)))]
async fn mine(State(state): State<AppState>, caller: AuthUser) -> AppResult<Json<Workspace>> {
    Ok(Json(workspaces::get(&state, caller.workspace()).await?))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = WorkspaceOwner)]
struct Owner {
    /// 3-32 of letters, digits, `_`, `.` and `-`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,32}$")]
    username: String,
    /// 8-256 characters.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    /// 1-64 characters; absent: the username.
    display_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct SignUpRequest {
    /// 2-32 of `a-z`, `0-9` and `-`: what clients name at login.
    #[schema(pattern = "^[a-z0-9-]{2,32}$")]
    slug: String,
    /// 1-64 characters, for people.
    name: String,
    /// The workspace's first admin.
    owner: Owner,
}

/// Self-service signup: a new workspace and its first admin, logged in (when
/// WORKSPACE_SIGNUP=open).
#[utoipa::path(post, operation_id = "sign_up_workspace", path = "/workspaces", tag = "workspaces", request_body = SignUpRequest,
    responses(
        (status = 201, description = "The workspace, its admin and a session", body = SignedUp),
        (status = 403, description = "`forbidden`: signup is closed (WORKSPACE_SIGNUP=closed)", body = ErrorResponse),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many attempts from this address", body = ErrorResponse),
    ))]
async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SignUpRequest>,
) -> AppResult<(StatusCode, Json<SignedUp>)> {
    // It registers a user and hashes a password: the same per-address limit as register.
    state
        .auth_limits
        .check_address(client_address(&state, peer, &headers))
        .await?;
    let owner = Registration {
        workspace: None,
        username: body.owner.username,
        password: body.owner.password,
        display_name: body.owner.display_name,
    };
    let signed_up =
        workspaces::sign_up(&state, &body.slug, &body.name, owner, user_agent(&headers)).await?;
    Ok((StatusCode::CREATED, Json(signed_up)))
}
