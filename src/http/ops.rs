//! Liveness and readiness for orchestrators and load balancers.

use std::time::Duration;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::{
    app::AppState,
    error::{AppError, AppResult},
    store,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    #[schema(example = "ready")]
    status: &'static str,
    #[schema(example = "ok")]
    postgres: &'static str,
    /// Present with REDIS_URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'static str>,
}

/// Readiness: 200 when Postgres (and Redis, with REDIS_URL) answer within two seconds.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = Readiness)))]
async fn readyz(State(state): State<AppState>) -> AppResult<Json<Readiness>> {
    let ping = store::ping(&state.db);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: postgres check failed");
            return Err(AppError::Unavailable("the database"));
        }
        Err(_) => return Err(AppError::Unavailable("the database")),
    }
    let ready = |redis| {
        Json(Readiness {
            status: "ready",
            postgres: "ok",
            redis,
        })
    };
    match state.realtime.cluster() {
        None => Ok(ready(None)),
        Some(cluster) if cluster.ping().await => Ok(ready(Some("ok"))),
        Some(_) => Err(AppError::Unavailable("Redis")),
    }
}

/// This node's metrics, in Prometheus' text format.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        render_metrics(&state),
    )
}

/// This node's metrics, and with several nodes what the bus costs it and how it fares.
fn render_metrics(state: &AppState) -> String {
    let mut text = state.metrics.render();
    if let Some(cluster) = state.realtime.cluster() {
        let bus: [(&str, &str, &str, u64); 8] = [
            ("huddle_bus_unpublished_total", "counter", "Operations for the other nodes dropped because Redis was failing or too slow.", cluster.unpublished()),
            ("huddle_bus_published_total", "counter", "Envelopes (messages, changes, effects on sockets, questions) this node published on the bus.", cluster.published_total()),
            ("huddle_bus_received_total", "counter", "Envelopes this node read off the bus, its own included.", cluster.received_total()),
            ("huddle_bus_unheard_total", "counter", "Envelopes not published because no other node listened to their room's, user's or session's channel.", cluster.unheard_total()),
            ("huddle_bus_channels", "gauge", "Room, user and session channels this node listens to (it has sockets there).", cluster.channels_held() as u64),
            ("huddle_bus_reconnects_total", "counter", "Times this node's subscription connection was lost or found deaf and made again.", cluster.reconnects()),
            ("huddle_cluster_peers", "gauge", "Other live nodes this node knows of from the registry: the nodes its questions wait for.", cluster.peers() as u64),
            ("huddle_cluster_query_timeouts_total", "counter", "Questions to the other nodes that gave up waiting for a registered node's answer.", cluster.query_timeouts()),
        ];
        for (name, kind, help, value) in bus {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
    }
    text
}
