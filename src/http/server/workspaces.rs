//! `/api/server/workspaces`: platform keys create and list workspaces.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::{AppResult, ErrorResponse},
    http::extract::Json,
    store::workspaces::Workspace,
    workspaces,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list))
}

#[derive(Deserialize, ToSchema)]
struct NewWorkspace {
    /// 2-32 of `a-z`, `0-9` and `-`.
    #[schema(pattern = "^[a-z0-9-]{2,32}$")]
    slug: String,
    /// 1-64 characters.
    name: String,
}

/// Creates a workspace with its DEFAULT_ROOMS (platform keys).
#[utoipa::path(post, operation_id = "server_create_workspace", path = "/workspaces", tag = "server", security(("api_key" = [])),
    request_body = NewWorkspace,
    responses(
        (status = 201, description = "The workspace", body = Workspace),
        (status = 403, description = "`forbidden`: platform keys only", body = ErrorResponse),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorResponse),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: ServerCaller,
    Json(body): Json<NewWorkspace>,
) -> AppResult<(StatusCode, Json<Workspace>)> {
    caller.require_platform()?;
    let workspace = workspaces::create(&state, &body.slug, &body.name).await?;
    Ok((StatusCode::CREATED, Json(workspace)))
}

#[derive(Serialize, ToSchema)]
struct Workspaces {
    workspaces: Vec<Workspace>,
}

/// Every workspace, oldest first (platform keys).
#[utoipa::path(get, operation_id = "server_list_workspaces", path = "/workspaces", tag = "server", security(("api_key" = [])),
    responses(
        (status = 200, description = "The workspaces", body = Workspaces),
        (status = 403, description = "`forbidden`: platform keys only", body = ErrorResponse),
    ))]
async fn list(State(state): State<AppState>, caller: ServerCaller) -> AppResult<Json<Workspaces>> {
    caller.require_platform()?;
    let workspaces = workspaces::list(&state).await?;
    Ok(Json(Workspaces { workspaces }))
}
