//! `/api/server/webhooks`: registering the product's receivers. The rules are in
//! `crate::webhooks`.

use axum::{extract::State, http::StatusCode, routing::get, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    http::extract::{Json, Path},
    store::webhooks::Webhook,
    webhooks::{self, Registered},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list).post(register))
        .route(
            "/webhooks/{id}",
            axum::routing::patch(update).delete(delete),
        )
        .route("/webhooks/{id}/deliveries", get(deliveries))
}

#[derive(Deserialize)]
struct NewWebhook {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    description: Option<String>,
}

/// `POST /api/server/webhooks` -> 201 `{webhook, secret}`.
async fn register(
    State(state): State<AppState>,
    caller: ServerCaller,
    Json(body): Json<NewWebhook>,
) -> AppResult<(StatusCode, Json<Registered>)> {
    let registered =
        webhooks::register(&state, &caller, &body.url, body.events, body.description).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// `GET /api/server/webhooks` -> `{"webhooks": [...]}`.
async fn list(State(state): State<AppState>, caller: ServerCaller) -> AppResult<Json<Value>> {
    let all = webhooks::list(&state, &caller).await?;
    Ok(Json(json!({ "webhooks": all })))
}

#[derive(Deserialize)]
struct Changes {
    url: Option<String>,
    events: Option<Vec<String>>,
    active: Option<bool>,
}

/// `PATCH /api/server/webhooks/{id}` `{url?, events?, active?}` -> the webhook.
async fn update(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(id): Path<Uuid>,
    Json(body): Json<Changes>,
) -> AppResult<Json<Webhook>> {
    Ok(Json(
        webhooks::update(&state, &caller, id, body.url, body.events, body.active).await?,
    ))
}

/// `DELETE /api/server/webhooks/{id}` -> 204.
async fn delete(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    webhooks::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/server/webhooks/{id}/deliveries` -> `{"deliveries": [...]}`, newest first.
async fn deliveries(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Value>> {
    let all = webhooks::deliveries(&state, &caller, id).await?;
    Ok(Json(json!({ "deliveries": all })))
}
