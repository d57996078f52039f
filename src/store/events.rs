//! The `events` and `event_positions` tables: the workspace event log.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// An event to append, in the order it is given (events that show a message are made by
/// `append_messages` and the message writer's batch statement instead).
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: Uuid,
    pub kind: &'static str,
    pub data: Value,
}

/// An event as the log shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub position: i64,
    pub workspace_id: WorkspaceId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub data: Value,
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
    let data: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    sqlx::query!(
        r#"with counter as (
               insert into event_positions as p (workspace_id, last_position)
               values ($1, $2)
               on conflict (workspace_id)
                   do update set last_position = p.last_position + excluded.last_position
               returning last_position - $2 as first
           )
           insert into events (workspace_id, position, id, type, data)
           select $1, c.first + e.ord, e.id, e.type, e.data
           from counter c,
                unnest($3::uuid[], $4::text[], $5::jsonb[]) with ordinality as e(id, type, data, ord)"#,
        ws.as_uuid(),
        events.len() as i64,
        &ids,
        &kinds as &[&str],
        &data,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Events of `ws` after `after`, oldest first, at most `limit`.
pub async fn page(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as!(
        Event,
        r#"select id, type as kind, position, workspace_id as "workspace_id: WorkspaceId",
                  created_at, data
           from events where workspace_id = $1 and position > $2
           order by position limit $3"#,
        ws.as_uuid(),
        after,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Appends events that show messages (`message.*`, `reaction.*`), made here from the messages
/// as the transaction sees them now and their rooms: `(type, message id)`, in order, of any
/// workspaces (each numbered in its own log; counters taken in workspace id order). As
/// `append`, the last statement of the transaction.
pub async fn append_messages(
    tx: &mut sqlx::PgConnection,
    items: &[(&'static str, Uuid)],
) -> sqlx::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = items.iter().map(|i| i.0).collect();
    let ids: Vec<Uuid> = items.iter().map(|i| i.1).collect();
    sqlx::query!(
        r#"with items as materialized (
               select i.type, i.ord, v.workspace_id,
                      jsonb_build_object('room', huddle_room_json(r),
                                         'message', huddle_message_json(v)) as data,
                      v.id as message_id, (v.reply_to->>'id')::uuid as quoted_id
               from unnest($1::text[], $2::uuid[]) with ordinality as i(type, id, ord)
               join message_view v on v.id = i.id
               join rooms r on r.id = v.room_id
           ), counted as materialized (
               select workspace_id, count(*) as n from items group by workspace_id
           ), counter as (
               insert into event_positions as p (workspace_id, last_position)
               select workspace_id, n from counted order by workspace_id
               on conflict (workspace_id)
                   do update set last_position = p.last_position + excluded.last_position
               returning p.workspace_id, p.last_position
           )
           insert into events (workspace_id, position, id, type, data, message_id, quoted_id)
           select i.workspace_id,
                  c.last_position - k.n
                      + row_number() over (partition by i.workspace_id order by i.ord),
                  gen_random_uuid(), i.type, i.data, i.message_id, i.quoted_id
           from items i
           join counted k on k.workspace_id = i.workspace_id
           join counter c on c.workspace_id = i.workspace_id"#,
        &kinds as &[&str],
        &ids,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Erases a deleted message's text from every event that shows it, or quotes it: the
/// contract's "gone from the database, not hidden" holds for the log too.
pub async fn erase_message(tx: &mut sqlx::PgConnection, message_ids: &[Uuid]) -> sqlx::Result<()> {
    if message_ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        r#"update events set data = jsonb_set(jsonb_set(jsonb_set(jsonb_set(data,
                   '{message,body}', '""'), '{message,metadata}', '{}'),
                   '{message,mentions}', '[]'), '{message,reactions}', '[]')
           where message_id = any($1) and data->'message'->>'body' <> ''"#,
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
