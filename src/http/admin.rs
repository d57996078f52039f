//! Admin routes: disabling and enabling users.

use axum::{extract::State, http::StatusCode, routing::post, Router};
use uuid::Uuid;

use super::extract::Path;
use crate::{admin, app::AppState, auth::AuthUser, error::AppResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users/{id}/disable", post(disable))
        .route("/admin/users/{id}/enable", post(enable))
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
