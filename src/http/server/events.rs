//! `GET /api/server/events`: the workspace's event log, by position.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    events::{self, EventPage},
    http::extract::{Json, Query},
    validate::{EventLimit, Seq},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Events after this position (default 0: from the start of what is kept).
    #[serde(default)]
    #[param(inline)]
    after: Option<Seq>,
    /// Page size (default 100).
    #[serde(default)]
    #[param(inline)]
    limit: Option<EventLimit>,
}

/// Events per page when the caller does not say.
const EVENTS_PAGE: i64 = 100;

/// The workspace's event log, by position: every change, in commit order.
#[utoipa::path(get, operation_id = "server_events", path = "/events", tag = "server", security(("api_key" = [])),
    params(EventsQuery),
    responses((status = 200, description = "A page of events", body = EventPage)))]
async fn list(
    State(state): State<AppState>,
    caller: ServerCaller,
    Query(query): Query<EventsQuery>,
) -> AppResult<Json<EventPage>> {
    let after = query.after.map_or(0, |a| a.0);
    let limit = query.limit.map_or(EVENTS_PAGE, |l| l.0);
    Ok(Json(events::page(&state, &caller, after, limit).await?))
}
