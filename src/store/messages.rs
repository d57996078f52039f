//! The `messages` table: storing messages with their per-room `seq`, and reading history pages.

use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::UserRef;
use crate::workspaces::WorkspaceId;

/// A stored message as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    /// The room's rev of this message's latest change.
    pub rev: i64,
    pub sender: UserRef,
    pub body: String,
    pub client_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub edited_at: Option<OffsetDateTime>,
}

/// A message row joined with its sender, as the queries below return it.
struct Row {
    id: Uuid,
    room_id: Uuid,
    seq: i64,
    rev: i64,
    body: String,
    client_id: Option<String>,
    created_at: OffsetDateTime,
    edited_at: Option<OffsetDateTime>,
    sender_id: Uuid,
    username: String,
    display_name: String,
}

impl From<Row> for Message {
    fn from(r: Row) -> Self {
        Message {
            id: r.id,
            room_id: r.room_id,
            seq: r.seq,
            rev: r.rev,
            sender: UserRef {
                id: r.sender_id,
                username: r.username,
                display_name: r.display_name,
            },
            body: r.body,
            client_id: r.client_id,
            created_at: r.created_at,
            edited_at: r.edited_at,
        }
    }
}

/// Which page of a room's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The newest `limit` messages (with a seq below `before`, when given).
    Before(Option<i64>),
    /// The oldest `limit` messages with a seq above this one.
    After(i64),
}

/// One page, oldest first, and whether more lie beyond it in the direction of paging.
#[derive(Debug, Serialize)]
pub struct History {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// Reads a page of a room of `ws` by walking the `(room_id, seq)` unique index (forwards for
/// `After`, backwards otherwise), fetching one row more than asked to learn `has_more` exactly.
pub async fn page(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    page: Page,
    limit: i64,
) -> sqlx::Result<History> {
    // Two statements so that each is a plain walk of the index in its own direction; the rows
    // come in walking order.
    let mut rows =
        match page {
            Page::After(after) => sqlx::query_as!(
                Row,
                r#"select m.id, m.room_id, m.seq, m.rev, m.body, m.client_id, m.created_at, m.edited_at,
                          u.id as sender_id, u.username, u.display_name
                   from messages m join users u on u.workspace_id = m.workspace_id and u.id = m.sender_id
                   where m.room_id = $1 and m.workspace_id = $4 and m.seq > $2
                   order by m.seq asc limit $3"#,
                room_id,
                after,
                limit + 1,
                ws.as_uuid(),
            )
            .fetch_all(db)
            .await?,
            Page::Before(before) => sqlx::query_as!(
                Row,
                r#"select m.id, m.room_id, m.seq, m.rev, m.body, m.client_id, m.created_at, m.edited_at,
                          u.id as sender_id, u.username, u.display_name
                   from messages m join users u on u.workspace_id = m.workspace_id and u.id = m.sender_id
                   where m.room_id = $1 and m.workspace_id = $4 and m.seq < $2
                   order by m.seq desc limit $3"#,
                room_id,
                before.unwrap_or(i64::MAX),
                limit + 1,
                ws.as_uuid(),
            )
            .fetch_all(db)
            .await?,
        };
    // The extra row, if any, lies beyond the page in the walking direction.
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if matches!(page, Page::Before(_)) {
        rows.reverse();
    }
    Ok(History {
        messages: rows.into_iter().map(Message::from).collect(),
        has_more,
    })
}

/// The result of storing a message.
#[derive(Clone, Debug)]
pub enum Stored {
    /// Newly committed with the next seq of its room.
    New(Message),
    /// The sender already sent this `client_id` to this room: the first copy, nothing stored.
    Duplicate(Message),
}

impl Stored {
    /// The message a sender is answered with: the new one, or the first copy.
    pub fn into_message(self) -> Message {
        match self {
            Stored::New(m) | Stored::Duplicate(m) => m,
        }
    }
}

/// Whether a statement failed on the unique `client_id` of another copy of a message.
pub fn is_duplicate_client_id(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.constraint())
        .is_some_and(|c| c == "messages_client_id_key")
}

/// A message to store as part of a batch.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: Uuid,
    pub room_id: Uuid,
    pub sender_id: Uuid,
    pub body: String,
    pub client_id: Option<String>,
}

/// What became of each message of a batch, in the batch's order.
#[derive(Clone, Debug)]
pub enum BatchOutcome {
    Stored(Stored),
    /// The room was deleted before the message could be stored.
    NoRoom,
    /// The sender may not post there any more (removed from a private or direct room, or
    /// disabled) by the time of the commit.
    Refused,
}

/// Stores a batch in one statement, so one round trip and one commit (autocommit) per batch:
/// - earlier copies of the batch's `client_id`s are looked up (they are answered, not stored);
/// - the access rule is applied again, at commit: a sender who is disabled, or is no longer a
///   member of a private or direct room, is refused (the socket's own view of what it joined
///   may lag behind a kick that another node or a lost bus message did not tell it about), and
///   so is a sender of another workspace than the room's;
/// - each message is stored in its room's workspace, read from the room row itself: one batch
///   carries messages of many workspaces, and the room is the authority on which one a message
///   belongs to (the composite foreign keys refuse a sender of any other);
/// - the rooms of the new messages are locked in id order (concurrent writers on other nodes
///   cannot deadlock) and each room's `last_seq` moves up by its count of new messages;
/// - the new messages are inserted with `insert ... select from unnest`, numbered after the
///   reserved block in batch order within each room.
///
/// Repeats of a `client_id` within the batch are answered with the first copy. A unique violation (a concurrent copy of a `client_id` on
/// another node) fails the whole statement, which uses up no seq; the writer then stores the
/// batch's halves apart (see `writer::commit`).
pub async fn insert_batch(db: &PgPool, batch: &[NewMessage]) -> sqlx::Result<Vec<BatchOutcome>> {
    use std::collections::HashMap;

    // Repeats within the batch are answered with their first copy's outcome.
    let same_as = repeats_in_batch(batch);
    let sent: Vec<&NewMessage> = batch
        .iter()
        .zip(&same_as)
        .filter(|(_, first)| first.is_none())
        .map(|(m, _)| m)
        .collect();
    let ids: Vec<Uuid> = sent.iter().map(|m| m.id).collect();
    let rooms: Vec<Uuid> = sent.iter().map(|m| m.room_id).collect();
    let senders: Vec<Uuid> = sent.iter().map(|m| m.sender_id).collect();
    let bodies: Vec<&str> = sent.iter().map(|m| m.body.as_str()).collect();
    let client_ids: Vec<Option<&str>> = sent.iter().map(|m| m.client_id.as_deref()).collect();
    // The rooms to lock, by primary key.
    let mut room_ids = rooms.clone();
    room_ids.sort();
    room_ids.dedup();

    let rows = sqlx::query!(
        r#"with input as materialized (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
                   with ordinality as t(id, room_id, sender_id, body, client_id, ord)
           ), earlier as materialized (
               select i.id as input_id, m.id, m.room_id, m.seq, m.rev, m.body, m.client_id,
                      m.created_at, m.edited_at, m.sender_id
               from input i
               join messages m on m.room_id = i.room_id and m.sender_id = i.sender_id
                              and m.client_id = i.client_id
           ), refused_pairs as materialized (
               -- Checked once per (room, sender) of the batch, not once per message: a busy
               -- batch is hundreds of messages from a handful of senders.
               select p.room_id, p.sender_id
               from (select distinct room_id, sender_id from input) p
               join rooms r on r.id = p.room_id
               join users u on u.id = p.sender_id
               where u.disabled_at is not null
                  or u.workspace_id <> r.workspace_id
                  or (r.visibility <> 'public'
                      and not exists (select from room_members m
                                      where m.room_id = p.room_id
                                        and m.user_id = p.sender_id))
           ), refused as materialized (
               select i.id as input_id
               from input i
               join refused_pairs x on x.room_id = i.room_id and x.sender_id = i.sender_id
               where not exists (select from earlier e where e.input_id = i.id)
           ), fresh as materialized (
               select i.* from input i
               where not exists (select from earlier e where e.input_id = i.id)
                 and not exists (select from refused x where x.input_id = i.id)
           ), locked as materialized (
               select id from rooms where id = any($6) order by id for update
           ), reserved as (
               update rooms r set last_seq = r.last_seq + c.n, last_rev = r.last_rev + c.n
               from (select room_id, count(*) as n from fresh group by room_id) c, locked l
               where r.id = any($6) and r.id = c.room_id and l.id = c.room_id
               returning r.id, r.workspace_id, r.last_seq - c.n as first_before,
                         r.last_rev - c.n as first_rev_before
           ), inserted as (
               insert into messages (id, workspace_id, room_id, seq, rev, sender_id, body,
                                     client_id)
               select f.id, r.workspace_id, f.room_id,
                      r.first_before + row_number() over (partition by f.room_id order by f.ord),
                      r.first_rev_before
                          + row_number() over (partition by f.room_id order by f.ord),
                      f.sender_id, f.body, f.client_id
               from fresh f join reserved r on r.id = f.room_id
               returning id, room_id, seq, rev, body, client_id, created_at, edited_at, sender_id
           ), stored as (
               select id as input_id, false as duplicate, id, room_id, seq, rev, body, client_id,
                      created_at, edited_at, sender_id
               from inserted
               union all
               select input_id, true, id, room_id, seq, rev, body, client_id, created_at,
                      edited_at, sender_id
               from earlier
           )
           select s.input_id as "input_id!", false as "refused!", s.duplicate as "duplicate?",
                  s.id as "id?", s.room_id as "room_id?", s.seq as "seq?", s.rev as "rev?",
                  s.body as "body?",
                  s.client_id, s.created_at as "created_at?", s.edited_at,
                  u.id as "sender_id?", u.username as "username?",
                  u.display_name as "display_name?"
           from stored s join users u on u.id = s.sender_id
           union all
           select x.input_id, true, null, null, null, null, null, null, null, null, null, null,
                  null, null
           from refused x"#,
        &ids,
        &rooms,
        &senders,
        &bodies as &[&str],
        &client_ids as &[Option<&str>],
        &room_ids,
    )
    .fetch_all(db)
    .await?;

    let mut by_input: HashMap<Uuid, BatchOutcome> = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = (|| {
            Some(Row {
                id: r.id?,
                room_id: r.room_id?,
                seq: r.seq?,
                rev: r.rev?,
                body: r.body?,
                client_id: r.client_id,
                created_at: r.created_at?,
                edited_at: r.edited_at,
                sender_id: r.sender_id?,
                username: r.username?,
                display_name: r.display_name?,
            })
        })();
        let outcome = match row {
            _ if r.refused => BatchOutcome::Refused,
            Some(row) if r.duplicate == Some(true) => {
                BatchOutcome::Stored(Stored::Duplicate(row.into()))
            }
            Some(row) => BatchOutcome::Stored(Stored::New(row.into())),
            // A stored row always has its columns (the query joins them from not-null
            // columns); without them it counts as not stored.
            None => continue,
        };
        by_input.insert(r.input_id, outcome);
    }
    Ok(batch
        .iter()
        .zip(same_as)
        .map(|(m, first)| match first {
            // A repeat gets the first copy's outcome, as a duplicate if it was stored.
            Some(first) => match by_input.get(&batch[first].id) {
                Some(BatchOutcome::Stored(Stored::New(m) | Stored::Duplicate(m))) => {
                    BatchOutcome::Stored(Stored::Duplicate(m.clone()))
                }
                Some(other) => other.clone(),
                None => BatchOutcome::NoRoom,
            },
            None => by_input.get(&m.id).cloned().unwrap_or(BatchOutcome::NoRoom),
        })
        .collect())
}

/// Deletes up to `limit` of the oldest messages of a room of `ws`, in a statement of its own;
/// returns how many went. Deleting a big room's messages this way, before the room row, keeps
/// the room's row lock (which the writer's batches take) to a short final transaction.
pub async fn purge_some(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"delete from messages
           where id in (select id from messages
                        where room_id = $1 and workspace_id = $3 order by seq limit $2)"#,
        room_id,
        limit,
        ws.as_uuid(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// For each message of a batch, the index of an earlier message of the batch with the same
/// room, sender and `client_id` (a resend within the batch), or `None` for a first copy.
fn repeats_in_batch(batch: &[NewMessage]) -> Vec<Option<usize>> {
    use std::collections::HashMap;

    let mut first_in_batch: HashMap<(Uuid, Uuid, &str), usize> = HashMap::new();
    batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let key = (m.room_id, m.sender_id, m.client_id.as_deref()?);
            match first_in_batch.get(&key) {
                Some(&first) => Some(first),
                None => {
                    first_in_batch.insert(key, i);
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: u128, sender: u128, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            id: Uuid::now_v7(),
            room_id: Uuid::from_u128(room),
            sender_id: Uuid::from_u128(sender),
            body: "hi".into(),
            client_id: client_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_resend_within_a_batch_points_at_its_first_copy() {
        let batch = [
            message(1, 1, Some("a")),
            message(1, 1, None),
            message(1, 1, Some("a")),
            message(2, 1, Some("a")),
            message(1, 2, Some("a")),
            message(1, 1, None),
            message(1, 1, Some("a")),
        ];
        assert_eq!(
            repeats_in_batch(&batch),
            [None, None, Some(0), None, None, None, Some(0)]
        );
    }
}
