//! The REST API: one module per resource, each with its own `router()`.

pub mod accounts;
pub mod admin;
pub mod extract;
pub mod messages;
pub mod ops;
pub mod oversize;
pub mod rooms;
pub mod server;
pub mod web;
pub mod workspaces;

use axum::Router;

use crate::app::AppState;

/// The REST routes (the Socket.IO layer and middleware are added in `app`).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(ops::router())
        .merge(web::router())
        .nest(
            "/api",
            accounts::router()
                .merge(rooms::router())
                .merge(messages::router())
                .merge(admin::router())
                .merge(workspaces::router())
                .nest("/server", server::router()),
        )
}
