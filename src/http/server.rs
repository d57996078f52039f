//! The server API (`/api/server/*`): what the product's own backend calls with an API key
//! (`auth::api_key::ServerCaller`). Thin handlers over the same domain functions as the user
//! routes, so one access rule, one writer and the same live effects hold for both.

pub mod events;
pub mod rooms;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(workspaces::router())
        .merge(users::router())
        .merge(rooms::router())
        .merge(events::router())
        .merge(webhooks::router())
}
