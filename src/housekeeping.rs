//! Periodic clean-up of what would otherwise grow forever: sessions that ended long ago and the
//! refresh tokens they rotated away, and events older than `EVENT_RETENTION_DAYS`.
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
    let days = state.config.event_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let days = i64::try_from(days).unwrap_or(i64::MAX).min(1_000_000);
    let mut total = 0;
    loop {
        let n = store::events::purge_older_than(&state.db, days, CHUNK).await?;
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
        if total % (100 * CHUNK as u64) == 0 {
            tracing::info!(events = total, "deleting old events");
        }
    }
}
