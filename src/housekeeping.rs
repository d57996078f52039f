//! Periodic clean-up of what would otherwise grow forever: sessions that ended long ago and the
//! refresh tokens they rotated away, and events and webhook deliveries (with their attempts)
//! older than `EVENT_RETENTION_DAYS`.
//!
//! A session's rows are kept for `ENDED_SESSION_KEPT` after it was revoked or expired, so that a
//! replayed refresh token of a recent session is still recognised (and audited) as a replay;
//! after that a replay is answered like any unknown token. Deleting a session deletes its
//! rotated tokens (`on delete cascade`). Every serving node runs this; the deletes are
//! idempotent and skip rows another node holds, so several nodes at once only share the work.

use std::time::Duration;

use crate::{app::AppState, store};

/// How long an ended session (revoked or expired) is kept.
pub const ENDED_SESSION_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the clean-up runs.
const EVERY: Duration = Duration::from_secs(3600);
/// Sessions deleted per statement: short transactions, no long lock on the table.
const CHUNK: i64 = 1000;

/// Starts the clean-up task; it runs for as long as the process does.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match purge_ended_sessions(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "deleted sessions that ended long ago"),
                Err(err) => tracing::warn!(error = %err, "cleaning up ended sessions failed"),
            }
            match purge_old_events(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "deleted events past EVENT_RETENTION_DAYS"),
                Err(err) => tracing::warn!(error = %err, "cleaning up old events failed"),
            }
            match purge_old_deliveries(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    deliveries = n,
                    "deleted webhook deliveries past EVENT_RETENTION_DAYS"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "cleaning up old webhook deliveries failed")
                }
            }
        }
    });
}

/// Deletes every session that ended more than `ENDED_SESSION_KEPT` ago, a chunk at a time.
/// Returns how many.
pub async fn purge_ended_sessions(state: &AppState) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let n = store::sessions::purge_ended(&state.db, ENDED_SESSION_KEPT, CHUNK).await?;
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// Deletes events older than `EVENT_RETENTION_DAYS` (none when it is 0), a chunk at a time,
/// logging progress when there are many. Returns how many.
pub async fn purge_old_events(state: &AppState) -> sqlx::Result<u64> {
    purge_past_retention(state, "events", |db, days| {
        Box::pin(store::events::purge_older_than(db, days, CHUNK))
    })
    .await
}

/// Deletes webhook deliveries that are no longer pending and were made more than
/// `EVENT_RETENTION_DAYS` ago (their events are gone too), with their attempts: each delivered
/// event leaves two rows, which would otherwise grow forever. Returns how many.
pub async fn purge_old_deliveries(state: &AppState) -> sqlx::Result<u64> {
    purge_past_retention(state, "webhook deliveries", |db, days| {
        Box::pin(store::webhooks::purge_older_than(db, days, CHUNK))
    })
    .await
}

type Purge = for<'a> fn(
    &'a sqlx::PgPool,
    i64,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = sqlx::Result<u64>> + Send + 'a>,
>;

/// Runs `purge` (a chunk of at most `CHUNK` rows older than `EVENT_RETENTION_DAYS`) until a
/// chunk comes short, logging progress when there are many.
async fn purge_past_retention(state: &AppState, what: &str, purge: Purge) -> sqlx::Result<u64> {
    let days = state.config.event_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let days = i64::try_from(days).unwrap_or(i64::MAX).min(1_000_000);
    let mut total = 0;
    loop {
        let n = purge(&state.db, days).await?;
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
        if total % (100 * CHUNK as u64) == 0 {
            tracing::info!(rows = total, "deleting old {what}");
        }
    }
}
