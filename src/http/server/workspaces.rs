//! `/api/server/workspaces`: platform keys create and list workspaces.

use axum::{extract::State, http::StatusCode, routing::get, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    app::AppState, auth::api_key::ServerCaller, error::AppResult, http::extract::Json,
    store::workspaces::Workspace, workspaces,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/workspaces", get(list).post(create))
}

#[derive(Deserialize)]
struct NewWorkspace {
    slug: String,
    name: String,
}

/// `POST /api/server/workspaces` `{slug, name}` -> 201 workspace; 409 when the slug is taken.
async fn create(
    State(state): State<AppState>,
    caller: ServerCaller,
    Json(body): Json<NewWorkspace>,
) -> AppResult<(StatusCode, Json<Workspace>)> {
    caller.require_platform()?;
    let workspace = workspaces::create(&state, &body.slug, &body.name).await?;
    Ok((StatusCode::CREATED, Json(workspace)))
}

/// `GET /api/server/workspaces` -> `{"workspaces": [...]}`, oldest first.
async fn list(State(state): State<AppState>, caller: ServerCaller) -> AppResult<Json<Value>> {
    caller.require_platform()?;
    let all = workspaces::list(&state).await?;
    Ok(Json(json!({ "workspaces": all })))
}
