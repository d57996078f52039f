//! Workspaces over REST: the caller's own (`GET /api/workspace`) and self-service signup
//! (`POST /api/workspaces`, when `WORKSPACE_SIGNUP=open`). The rules are in
//! `crate::workspaces`.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Router,
};
use serde::Deserialize;

use super::{
    accounts::{client_address, user_agent},
    extract::Json,
};
use crate::{
    accounts::Registration,
    app::AppState,
    auth::AuthUser,
    error::AppResult,
    store::workspaces::Workspace,
    workspaces::{self, SignedUp},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workspace", get(mine))
        .route("/workspaces", post(sign_up))
}

/// `GET /api/workspace` -> the caller's workspace.
async fn mine(State(state): State<AppState>, caller: AuthUser) -> AppResult<Json<Workspace>> {
    Ok(Json(workspaces::get(&state, caller.workspace()).await?))
}

#[derive(Deserialize)]
struct Owner {
    username: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct SignUpRequest {
    slug: String,
    name: String,
    owner: Owner,
}

/// `POST /api/workspaces` -> 201 `{workspace, user, ...tokens}`; 403 while signup is closed,
/// 409 when the slug is taken.
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
