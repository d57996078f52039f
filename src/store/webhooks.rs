//! The `webhooks`, `webhook_deliveries` and `webhook_attempts` tables.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// A webhook as the API shows it (never its secret).
#[derive(Clone, Debug, Serialize)]
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
#[derive(Clone, Debug, Serialize)]
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

/// Turns the events committed past each active webhook's cursor into its pending deliveries
/// (those of the types it takes) and moves the cursor, for a few webhooks at a time; webhooks
/// another node is doing this for are skipped. Positions are dense and follow commit order, so
/// a cursor never passes an event that could still appear. Returns how many deliveries it made.
pub async fn enqueue(db: impl PgExecutor<'_>, per_webhook: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"with hooks as (
               select w.id, w.workspace_id, w.events, w.event_cursor
               from webhooks w
               join event_positions p on p.workspace_id = w.workspace_id
               where w.active and w.event_cursor < p.last_position
               order by w.id
               limit 50
               for update of w skip locked
           ), taken as materialized (
               select h.id as webhook_id, h.events as wanted, e.workspace_id, e.position,
                      e.id as event_id, e.type
               from hooks h
               cross join lateral (
                   select workspace_id, position, id, type from events
                   where workspace_id = h.workspace_id and position > h.event_cursor
                   order by position limit $1) e
           ), inserted as (
               insert into webhook_deliveries (id, webhook_id, workspace_id, event_position,
                                               event_id)
               select gen_random_uuid(), webhook_id, workspace_id, position, event_id
               from taken
               where cardinality(wanted) = 0 or type = any(wanted)
               on conflict (webhook_id, event_id) do nothing
               returning 1
           ), advanced as (
               update webhooks w set event_cursor = t.last
               from (select webhook_id, max(position) as last from taken group by webhook_id) t
               where w.id = t.webhook_id
               returning 1
           )
           select count(*) as "made!" from inserted"#,
        per_webhook,
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

/// Records attempts (rows of `webhook_attempts`) and their outcomes on their deliveries, in one
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
