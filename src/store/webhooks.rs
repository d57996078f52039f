//! The `webhooks`, `webhook_deliveries` and `webhook_attempts` tables.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// A webhook as the API shows it (never its secret).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Registers a webhook of `ws`; it receives the events committed from now on (its cursor starts
/// at the workspace's newest position).
pub async fn create(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    url: &str,
    events: &[String],
    description: Option<&str>,
    secret: &[u8],
) -> sqlx::Result<Webhook> {
    sqlx::query_as!(
        Webhook,
        r#"insert into webhooks (id, workspace_id, url, events, description, secret, event_cursor)
           values ($1, $2, $3, $4, $5, $6,
                   coalesce((select last_position from event_positions where workspace_id = $2), 0))
           returning id, url, events, description, active, created_at"#,
        Uuid::now_v7(),
        ws.as_uuid(),
        url,
        events,
        description,
        secret,
    )
    .fetch_one(db)
    .await
}

pub async fn list(db: impl PgExecutor<'_>, ws: WorkspaceId) -> sqlx::Result<Vec<Webhook>> {
    sqlx::query_as!(
        Webhook,
        r#"select id, url, events, description, active, created_at from webhooks
           where workspace_id = $1 order by created_at, id"#,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
}

/// Changes a webhook of `ws`: each `Some` field replaces the old value.
pub async fn update(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
    url: Option<&str>,
    events: Option<&[String]>,
    active: Option<bool>,
) -> sqlx::Result<Option<Webhook>> {
    sqlx::query_as!(
        Webhook,
        r#"update webhooks set url = coalesce($3, url), events = coalesce($4, events),
                               active = coalesce($5, active)
           where id = $1 and workspace_id = $2
           returning id, url, events, description, active, created_at"#,
        id,
        ws.as_uuid(),
        url,
        events,
        active,
    )
    .fetch_optional(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, ws: WorkspaceId, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "delete from webhooks where id = $1 and workspace_id = $2",
        id,
        ws.as_uuid()
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A delivery as `GET /api/server/webhooks/{id}/deliveries` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    /// How many times it was POSTed.
    pub attempt: i32,
    pub status: String,
    pub response_status: Option<i32>,
    pub latency_ms: Option<i32>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A webhook's newest deliveries, newest first; `None` when `ws` has no such webhook.
pub async fn deliveries(
    db: impl PgExecutor<'_> + Copy,
    ws: WorkspaceId,
    webhook_id: Uuid,
    limit: i64,
) -> sqlx::Result<Option<Vec<Delivery>>> {
    let exists = sqlx::query_scalar!(
        r#"select exists(select from webhooks where id = $1 and workspace_id = $2) as "exists!""#,
        webhook_id,
        ws.as_uuid(),
    )
    .fetch_one(db)
    .await?;
    if !exists {
        return Ok(None);
    }
    let rows = sqlx::query_as!(
        Delivery,
        r#"select id, event_id, attempts as attempt, status, last_status as response_status,
                  last_latency_ms as latency_ms, last_error as error, created_at
           from webhook_deliveries where webhook_id = $1
           order by created_at desc, id desc limit $2"#,
        webhook_id,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(Some(rows))
}

/// What a webhook's stream reads before each batch: where to send, how to sign, what to take,
/// and its cursor (the position up to which every event has been sent once).
#[derive(Debug)]
pub struct StreamHead {
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub secret: Vec<u8>,
    pub events: Vec<String>,
    pub active: bool,
    pub event_cursor: i64,
}

pub async fn stream_head(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<StreamHead>> {
    sqlx::query_as!(
        StreamHead,
        r#"select workspace_id as "workspace_id: WorkspaceId", url, secret, events, active,
                  event_cursor
           from webhooks where id = $1"#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// The advisory lock class of webhook streams (the key's first half; the second is a hash of
/// the webhook id): "HWKS".
const STREAM_LOCK_CLASS: i32 = 0x4857_4B53;

/// Takes the streams of active webhooks that have events past their cursor, at most `limit`,
/// none of `running`, and none another node holds: each taken one's advisory lock is held by
/// `conn`'s session until `release_stream` (or until the session ends, when the node dies, so
/// that another node takes over at once). Two webhooks whose ids hash alike share a lock: they
/// are streamed by the same node, nothing worse.
pub async fn take_streams(
    conn: &mut sqlx::PgConnection,
    running: &[Uuid],
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    // The candidates are fixed first (materialized), so that the lock is tried on exactly the
    // rows returned and never on one a later filter would drop (a lock nobody would release).
    sqlx::query_scalar!(
        r#"with due as materialized (
               select w.id from webhooks w
               join event_positions p on p.workspace_id = w.workspace_id
               where w.active and w.event_cursor < p.last_position and w.id <> all($1)
               order by w.id
               limit $2
           )
           select id as "id!" from due where pg_try_advisory_lock($3, hashtext(id::text))"#,
        running,
        limit,
        STREAM_LOCK_CLASS,
    )
    .fetch_all(conn)
    .await
}

pub async fn release_stream(conn: &mut sqlx::PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query_scalar!(
        "select pg_advisory_unlock($1, hashtext($2::uuid::text))",
        STREAM_LOCK_CLASS,
        id,
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// The first attempt of one event, made by a stream.
#[derive(Debug)]
pub struct Sent {
    /// The delivery's id, made by the stream.
    pub delivery_id: Uuid,
    pub event_position: i64,
    pub event_id: Uuid,
    pub response_status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// `None`: delivered. `Some(secs)`: the first retry is due in that many seconds.
    pub retry_in_secs: Option<f64>,
}

/// Ends a batch of a webhook's stream, in one statement: its deliveries (delivered, or pending
/// with their first retry due) and their attempts are written, and the cursor moves from
/// `from` to `to` (the last position the batch read, sent or not of a wanted type). Only if
/// the cursor is still at `from`: otherwise another node streamed the same events meanwhile (it
/// took over after this node's lock session was lost), nothing is written, and the answer is
/// false (those events were sent twice: at least once).
pub async fn record_sent(
    db: impl PgExecutor<'_>,
    webhook_id: Uuid,
    from: i64,
    to: i64,
    sent: &[Sent],
) -> sqlx::Result<bool> {
    let ids: Vec<Uuid> = sent.iter().map(|s| s.delivery_id).collect();
    let positions: Vec<i64> = sent.iter().map(|s| s.event_position).collect();
    let events: Vec<Uuid> = sent.iter().map(|s| s.event_id).collect();
    let statuses: Vec<Option<i32>> = sent.iter().map(|s| s.response_status).collect();
    let latencies: Vec<i32> = sent.iter().map(|s| s.latency_ms).collect();
    let errors: Vec<Option<&str>> = sent.iter().map(|s| s.error.as_deref()).collect();
    let retries: Vec<Option<f64>> = sent.iter().map(|s| s.retry_in_secs).collect();
    sqlx::query_scalar!(
        r#"with moved as (
               update webhooks set event_cursor = $3
               where id = $1 and event_cursor = $2
               returning workspace_id
           ), input as materialized (
               select * from unnest($4::uuid[], $5::int8[], $6::uuid[], $7::int4[], $8::int4[],
                                    $9::text[], $10::float8[])
                   as t(delivery_id, event_position, event_id, response_status, latency_ms,
                        error, retry_in_secs)
           ), deliveries as (
               insert into webhook_deliveries (id, webhook_id, workspace_id, event_position,
                                               event_id, status, attempts, next_attempt_at,
                                               last_status, last_latency_ms, last_error)
               select i.delivery_id, $1, m.workspace_id, i.event_position, i.event_id,
                      case when i.retry_in_secs is null then 'delivered' else 'pending' end, 1,
                      now() + make_interval(secs => coalesce(i.retry_in_secs, 0)),
                      i.response_status, i.latency_ms, i.error
               from input i cross join moved m
               on conflict (webhook_id, event_id) do nothing
               returning id, workspace_id
           ), attempts as (
               insert into webhook_attempts (delivery_id, workspace_id, attempt, response_status,
                                             latency_ms, error)
               select i.delivery_id, d.workspace_id, 1, i.response_status, i.latency_ms, i.error
               from input i join deliveries d on d.id = i.delivery_id
           )
           select exists(select from moved) as "moved!""#,
        webhook_id,
        from,
        to,
        &ids,
        &positions,
        &events,
        &statuses as &[Option<i32>],
        &latencies,
        &errors as &[Option<&str>],
        &retries as &[Option<f64>],
    )
    .fetch_one(db)
    .await
}

/// A delivery claimed for an attempt, with what the attempt needs.
#[derive(Debug)]
pub struct Claimed {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub url: String,
    pub secret: Vec<u8>,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    pub created_at: OffsetDateTime,
    pub workspace_id: WorkspaceId,
    pub event_position: i64,
}

/// Claims up to `limit` due deliveries, at most `per_webhook` of each webhook and none of the
/// webhooks in `busy`, for one attempt each: their next attempt is pushed `lease_secs` ahead,
/// so that if this node dies mid-attempt another one tries again then (at least once). Two
/// nodes claiming at once never take the same delivery: the update checks again, on the row it
/// locked, that the delivery is still due.
pub async fn claim(
    db: impl PgExecutor<'_>,
    limit: i64,
    per_webhook: i64,
    busy: &[Uuid],
    lease_secs: f64,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as!(
        Claimed,
        r#"with due as (
               -- Per webhook, its oldest due deliveries through webhook_deliveries_due_idx: a
               -- few rows per webhook, however many are waiting behind a slow receiver.
               select x.id, x.next_attempt_at
               from webhooks w
               cross join lateral (
                   select d.id, d.next_attempt_at from webhook_deliveries d
                   where d.webhook_id = w.id and d.status = 'pending'
                     and d.next_attempt_at <= now()
                   order by d.next_attempt_at
                   limit $4) x
               where w.active and w.id <> all($2)
               order by x.next_attempt_at
               limit $1
           )
           update webhook_deliveries d
           set attempts = d.attempts + 1,
               next_attempt_at = now() + make_interval(secs => $3)
           from due, webhooks w
           where d.id = due.id and w.id = d.webhook_id
             and d.status = 'pending' and d.next_attempt_at <= now()
           returning d.id, d.webhook_id, w.url, w.secret, d.attempts as attempt, d.created_at,
                     d.workspace_id as "workspace_id: WorkspaceId", d.event_position"#,
        limit,
        busy,
        lease_secs,
        per_webhook,
    )
    .fetch_all(db)
    .await
}

/// What one attempt came to.
#[derive(Debug)]
pub struct Attempt {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub response_status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// `None`: delivered. `Some(secs)`: retry in that many seconds, unless that passes
    /// `give_up_after_secs` from the delivery's creation, when it is marked failed.
    pub retry_in_secs: Option<f64>,
}

/// Records retries (rows of `webhook_attempts`) and their outcomes on their deliveries, in one
/// statement.
pub async fn record(
    db: impl PgExecutor<'_>,
    attempts: &[Attempt],
    give_up_after_secs: f64,
) -> sqlx::Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = attempts.iter().map(|a| a.delivery_id).collect();
    let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
    let statuses: Vec<Option<i32>> = attempts.iter().map(|a| a.response_status).collect();
    let latencies: Vec<i32> = attempts.iter().map(|a| a.latency_ms).collect();
    let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.error.as_deref()).collect();
    let retries: Vec<Option<f64>> = attempts.iter().map(|a| a.retry_in_secs).collect();
    sqlx::query!(
        r#"with input as materialized (
               select * from unnest($1::uuid[], $2::int4[], $3::int4[], $4::int4[], $5::text[],
                                    $6::float8[])
                   as t(delivery_id, attempt, response_status, latency_ms, error, retry_in_secs)
           ), attempts as (
               insert into webhook_attempts (delivery_id, workspace_id, attempt, response_status,
                                             latency_ms, error)
               select i.delivery_id, d.workspace_id, i.attempt, i.response_status, i.latency_ms,
                      i.error
               from input i join webhook_deliveries d on d.id = i.delivery_id
           )
           update webhook_deliveries d
           set status = case when i.retry_in_secs is null then 'delivered'
                             when now() + make_interval(secs => i.retry_in_secs)
                                  > d.created_at + make_interval(secs => $7) then 'failed'
                             else 'pending' end,
               next_attempt_at = now() + make_interval(secs => coalesce(i.retry_in_secs, 0)),
               last_status = i.response_status, last_latency_ms = i.latency_ms,
               last_error = i.error
           from input i
           where d.id = i.delivery_id"#,
        &ids,
        &numbers,
        &statuses as &[Option<i32>],
        &latencies,
        &errors as &[Option<&str>],
        &retries as &[Option<f64>],
        give_up_after_secs,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes deliveries (and their attempts, by cascade) made more than `days` days ago that are
/// no longer pending, at most `batch` of them; returns how many went.
pub async fn purge_older_than(db: impl PgExecutor<'_>, days: i64, batch: i64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"delete from webhook_deliveries where ctid = any(array(
               select ctid from webhook_deliveries
               where created_at < now() - make_interval(days => $1::int) and status <> 'pending'
               limit $2))"#,
        days as i32,
        batch,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
