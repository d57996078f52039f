//! The `events` and `event_positions` tables: the workspace event log.

use serde_json::Value;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// An event to append, in the order it is given.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: Uuid,
    pub kind: &'static str,
    /// What the event shows; `None` for a message event whose message is read when the event
    /// is (see `events.data`'s comment in the migration).
    pub data: Option<Value>,
    /// The message a `message.*` or `reaction.*` event shows, and the one `data` quotes.
    pub message_id: Option<Uuid>,
    pub quoted_id: Option<Uuid>,
}

/// An event row as it is stored.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: Uuid,
    pub kind: String,
    pub position: i64,
    pub workspace_id: WorkspaceId,
    pub created_at: OffsetDateTime,
    pub data: Option<Value>,
    pub message_id: Option<Uuid>,
}

/// Appends events of `ws` with the workspace's next positions. Call it as the last statement of
/// the change's transaction: it locks the workspace's `event_positions` row until the commit,
/// so the positions of two transactions follow their commit order (the reader's guarantee, see
/// the migration). Several workspaces in one transaction: call in workspace id order.
pub async fn append(
    tx: &mut sqlx::PgConnection,
    ws: WorkspaceId,
    events: &[NewEvent],
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let data: Vec<Option<Value>> = events.iter().map(|e| e.data.clone()).collect();
    let messages: Vec<Option<Uuid>> = events.iter().map(|e| e.message_id).collect();
    let quoted: Vec<Option<Uuid>> = events.iter().map(|e| e.quoted_id).collect();
    sqlx::query!(
        r#"with counter as (
               insert into event_positions as p (workspace_id, last_position)
               values ($1, $2)
               on conflict (workspace_id)
                   do update set last_position = p.last_position + excluded.last_position
               returning last_position - $2 as first
           )
           insert into events (workspace_id, position, id, type, data, message_id, quoted_id)
           select $1, c.first + e.ord, e.id, e.type, e.data, e.message_id, e.quoted_id
           from counter c,
                unnest($3::uuid[], $4::text[], $5::jsonb[], $6::uuid[], $7::uuid[])
                    with ordinality as e(id, type, data, message_id, quoted_id, ord)"#,
        ws.as_uuid(),
        events.len() as i64,
        &ids,
        &kinds as &[&str],
        &data as &[Option<Value>],
        &messages as &[Option<Uuid>],
        &quoted as &[Option<Uuid>],
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Appends the message writer's events, of any workspaces, each in its message's workspace
/// (read from the message row), in the order given within each workspace. As `append`, the
/// transaction's last statement; the counters are taken in workspace id order, so two writers
/// whose batches span the same workspaces cannot deadlock on them.
pub async fn append_for_messages(
    tx: &mut sqlx::PgConnection,
    mut events: Vec<NewEvent>,
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let data: Vec<Option<Value>> = events.iter_mut().map(|e| e.data.take()).collect();
    let messages: Vec<Option<Uuid>> = events.iter().map(|e| e.message_id).collect();
    let quoted: Vec<Option<Uuid>> = events.iter().map(|e| e.quoted_id).collect();
    sqlx::query!(
        r#"with items as materialized (
               select m.workspace_id, e.id, e.type, e.data, e.message_id, e.quoted_id, e.ord
               from unnest($1::uuid[], $2::text[], $3::jsonb[], $4::uuid[], $5::uuid[])
                        with ordinality as e(id, type, data, message_id, quoted_id, ord)
               join messages m on m.id = e.message_id
           ), counter as (
               insert into event_positions as p (workspace_id, last_position)
               select workspace_id, count(*) from items group by workspace_id
               order by workspace_id
               on conflict (workspace_id)
                   do update set last_position = p.last_position + excluded.last_position
               returning p.workspace_id, p.last_position
           )
           insert into events (workspace_id, position, id, type, data, message_id, quoted_id)
           select i.workspace_id,
                  c.last_position + 1
                      - row_number() over (partition by i.workspace_id order by i.ord desc),
                  i.id, i.type, i.data, i.message_id, i.quoted_id
           from items i join counter c on c.workspace_id = i.workspace_id"#,
        &ids,
        &kinds as &[&str],
        &data as &[Option<Value>],
        &messages as &[Option<Uuid>],
        &quoted as &[Option<Uuid>],
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Of these messages, those whose `message.created` event still reads its message from
/// `messages` (the message has not changed since): before a change, the writer stores what
/// that event shows (`store_created`).
pub async fn unchanged_since_created(
    tx: &mut sqlx::PgConnection,
    message_ids: &[Uuid],
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"select message_id as "id!" from events
           where message_id = any($1) and type = 'message.created' and data is null"#,
        message_ids,
    )
    .fetch_all(&mut *tx)
    .await
}

/// Stores what the `message.created` events of these messages show: `(message id, data,
/// quoted message id)`.
pub async fn store_created(
    tx: &mut sqlx::PgConnection,
    items: &[(Uuid, Value, Option<Uuid>)],
) -> sqlx::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.0).collect();
    let data: Vec<Value> = items.iter().map(|i| i.1.clone()).collect();
    let quoted: Vec<Option<Uuid>> = items.iter().map(|i| i.2).collect();
    sqlx::query!(
        r#"update events e set data = x.data, quoted_id = x.quoted_id
           from unnest($1::uuid[], $2::jsonb[], $3::uuid[]) as x(message_id, data, quoted_id)
           where e.message_id = x.message_id and e.type = 'message.created'
             and e.data is null"#,
        &ids,
        &data,
        &quoted as &[Option<Uuid>],
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Erases deleted messages' text from the log: every event of theirs reads the message (now
/// deleted) when it is read, and quotes of them in stored events lose their text. The
/// contract's "gone from the database, not hidden" holds for the log too.
pub async fn erase_messages(tx: &mut sqlx::PgConnection, message_ids: &[Uuid]) -> sqlx::Result<()> {
    if message_ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        r#"update events set data = null, quoted_id = null
           where message_id = any($1) and data is not null"#,
        message_ids,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        r#"update events set data = jsonb_set(data, '{message,reply_to,body}', '""')
           where quoted_id = any($1) and data->'message'->'reply_to'->>'body' <> ''"#,
        message_ids,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes the events of messages that are being deleted for good (their room is deleted).
pub async fn forget_messages(
    tx: &mut sqlx::PgConnection,
    message_ids: &[Uuid],
) -> sqlx::Result<()> {
    if message_ids.is_empty() {
        return Ok(());
    }
    sqlx::query!("delete from events where message_id = any($1)", message_ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Event rows of `ws` after `after`, oldest first, at most `limit`.
pub async fn page(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as!(
        Row,
        r#"select id, type as kind, position, workspace_id as "workspace_id: WorkspaceId",
                  created_at, data, message_id
           from events where workspace_id = $1 and position > $2
           order by position limit $3"#,
        ws.as_uuid(),
        after,
        limit,
    )
    .fetch_all(db)
    .await
}

/// The position of `ws`'s newest committed event (0 before its first).
pub async fn last_position(db: impl PgExecutor<'_>, ws: WorkspaceId) -> sqlx::Result<i64> {
    let last = sqlx::query_scalar!(
        "select last_position from event_positions where workspace_id = $1",
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(last.unwrap_or(0))
}

/// The event rows at these `(workspace, position)`s (those still kept), in no order.
pub async fn at(db: impl PgExecutor<'_>, wanted: &[(WorkspaceId, i64)]) -> sqlx::Result<Vec<Row>> {
    let workspaces: Vec<Uuid> = wanted.iter().map(|w| w.0.as_uuid()).collect();
    let positions: Vec<i64> = wanted.iter().map(|w| w.1).collect();
    sqlx::query_as!(
        Row,
        r#"select e.id, e.type as kind, e.position,
                  e.workspace_id as "workspace_id: WorkspaceId", e.created_at, e.data,
                  e.message_id
           from unnest($1::uuid[], $2::bigint[]) as w(workspace_id, position)
           join events e on e.workspace_id = w.workspace_id and e.position = w.position"#,
        &workspaces,
        &positions,
    )
    .fetch_all(db)
    .await
}

/// Deletes events older than `days` days, at most `batch` of them; returns how many went.
pub async fn purge_older_than(db: impl PgExecutor<'_>, days: i64, batch: i64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"delete from events where ctid = any(array(
               select ctid from events
               where created_at < now() - make_interval(days => $1::int)
               limit $2))"#,
        days as i32,
        batch,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
