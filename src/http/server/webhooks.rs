//! `/api/server/webhooks`: registering the product's receivers. The rules are in
//! `crate::webhooks`.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::AppResult,
    http::{
        extract::{Json, Path},
        params::IdPath,
    },
    store::webhooks::{Delivery, Webhook},
    webhooks::{self, Registered},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(update, delete))
        .routes(routes!(deliveries))
}

#[derive(Deserialize, ToSchema)]
struct NewWebhook {
    /// An http(s) URL of at most 2048 characters; private addresses only with
    /// WEBHOOK_ALLOW_PRIVATE=true.
    url: String,
    /// Event types to receive (empty: all).
    #[serde(default)]
    events: Vec<String>,
    /// Up to 256 characters.
    description: Option<String>,
}

/// Registers a webhook: the workspace's events from now on are POSTed to it, signed.
///
/// The answer holds its signing secret: the only time it is shown.
#[utoipa::path(post, operation_id = "server_register_webhook", path = "/webhooks", tag = "server", security(("api_key" = [])),
    request_body = NewWebhook,
    responses((status = 201, description = "The webhook and its secret", body = Registered)))]
async fn register(
    State(state): State<AppState>,
    caller: ServerCaller,
    Json(body): Json<NewWebhook>,
) -> AppResult<(StatusCode, Json<Registered>)> {
    let registered =
        webhooks::register(&state, &caller, &body.url, body.events, body.description).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

#[derive(Serialize, ToSchema)]
struct Webhooks {
    webhooks: Vec<Webhook>,
}

/// The workspace's webhooks.
#[utoipa::path(get, operation_id = "server_list_webhooks", path = "/webhooks", tag = "server", security(("api_key" = [])),
    responses((status = 200, description = "The webhooks, without secrets", body = Webhooks)))]
async fn list(State(state): State<AppState>, caller: ServerCaller) -> AppResult<Json<Webhooks>> {
    let webhooks = webhooks::list(&state, &caller).await?;
    Ok(Json(Webhooks { webhooks }))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookChanges)]
struct Changes {
    /// Absent: unchanged.
    url: Option<String>,
    /// Absent: unchanged; empty: all events.
    events: Option<Vec<String>>,
    /// `false` pauses deliveries; absent: unchanged.
    active: Option<bool>,
}

/// Changes a webhook's URL, events or whether it is active.
#[utoipa::path(patch, operation_id = "server_update_webhook", path = "/webhooks/{id}", tag = "server", security(("api_key" = [])),
    params(IdPath), request_body = Changes,
    responses((status = 200, description = "The webhook, changed", body = Webhook)))]
async fn update(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(IdPath { id }): Path<IdPath>,
    Json(body): Json<Changes>,
) -> AppResult<Json<Webhook>> {
    Ok(Json(
        webhooks::update(&state, &caller, id, body.url, body.events, body.active).await?,
    ))
}

/// Deletes a webhook; nothing more is sent to it.
#[utoipa::path(delete, operation_id = "server_delete_webhook", path = "/webhooks/{id}", tag = "server", security(("api_key" = [])),
    params(IdPath),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(IdPath { id }): Path<IdPath>,
) -> AppResult<StatusCode> {
    webhooks::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct Deliveries {
    deliveries: Vec<Delivery>,
}

/// A webhook's newest deliveries, newest first: what was sent, how it went.
#[utoipa::path(get, operation_id = "server_webhook_deliveries", path = "/webhooks/{id}/deliveries", tag = "server", security(("api_key" = [])),
    params(IdPath),
    responses((status = 200, description = "The deliveries", body = Deliveries)))]
async fn deliveries(
    State(state): State<AppState>,
    caller: ServerCaller,
    Path(IdPath { id }): Path<IdPath>,
) -> AppResult<Json<Deliveries>> {
    let deliveries = webhooks::deliveries(&state, &caller, id).await?;
    Ok(Json(Deliveries { deliveries }))
}
