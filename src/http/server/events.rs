//! `GET /api/server/events`: the workspace's event log, by position.

use axum::{extract::State, routing::get, Router};
use serde::Deserialize;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    events::{self, EventPage},
    http::extract::{Json, Query},
    validate::{EventLimit, Seq},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(list))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: Option<Seq>,
    #[serde(default)]
    limit: Option<EventLimit>,
}

/// Events per page when the caller does not say.
const EVENTS_PAGE: i64 = 100;

/// `GET /api/server/events?after=&limit=` -> `{events, has_more, last_position}`.
async fn list(
    State(state): State<AppState>,
    caller: ServerCaller,
    Query(query): Query<EventsQuery>,
) -> AppResult<Json<EventPage>> {
    let after = query.after.map_or(0, |a| a.0);
    let limit = query.limit.map_or(EVENTS_PAGE, |l| l.0);
    Ok(Json(events::page(&state, &caller, after, limit).await?))
}
