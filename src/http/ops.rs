//! Liveness and readiness for orchestrators and load balancers.

use std::time::Duration;

use axum::{extract::State, routing::get, Router};
use serde_json::{json, Value};

use super::extract::Json;
use crate::{
    app::AppState,
    error::{AppError, AppResult},
    store,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `GET /healthz`: 200 while the process runs.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when Postgres (and Redis, with `REDIS_URL`) answer within two seconds,
/// else 503 `unavailable`.
async fn readyz(State(state): State<AppState>) -> AppResult<Json<Value>> {
    let ping = store::ping(&state.db);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: postgres check failed");
            return Err(AppError::Unavailable("the database"));
        }
        Err(_) => return Err(AppError::Unavailable("the database")),
    }
    match state.realtime.cluster() {
        None => Ok(Json(json!({ "status": "ready", "postgres": "ok" }))),
        Some(cluster) if cluster.ping().await => Ok(Json(
            json!({ "status": "ready", "postgres": "ok", "redis": "ok" }),
        )),
        Some(_) => Err(AppError::Unavailable("Redis")),
    }
}

/// `GET /metrics`: Prometheus text.
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

/// This node's metrics, and with several nodes the bus envelopes dropped while Redis failed
/// and the questions that timed out waiting for a node.
fn render_metrics(state: &AppState) -> String {
    let mut text = state.metrics.render();
    if let Some(cluster) = state.realtime.cluster() {
        let name = "huddle_bus_unpublished_total";
        text.push_str(&format!(
            "# HELP {name} Operations for the other nodes dropped because Redis was failing or too slow.\n# TYPE {name} counter\n{name} {}\n",
            cluster.unpublished()
        ));
        let name = "huddle_cluster_query_timeouts_total";
        text.push_str(&format!(
            "# HELP {name} Questions to the other nodes that gave up waiting for a registered node's answer.\n# TYPE {name} counter\n{name} {}\n",
            cluster.query_timeouts()
        ));
    }
    text
}
