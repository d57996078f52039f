//! The REST API: one module per resource, each with its own `router()`; `web` serves the pages.

pub mod accounts;
pub mod admin;
pub mod extract;
pub mod messages;
pub mod ops;
pub mod oversize;
pub mod params;
pub mod rooms;
pub mod server;
pub mod web;
pub mod workspaces;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// The REST routes with their OpenAPI description (the Socket.IO layer and middleware are added
/// in `app`, which also serves the description).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(ops::router()).nest(
        "/api",
        accounts::router()
            .merge(rooms::router())
            .merge(messages::router())
            .merge(admin::router())
            .merge(workspaces::router())
            .nest("/server", server::router()),
    )
}
