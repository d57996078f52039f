//! The `messages` table: storing messages with their per-room `seq`, and reading history pages.

use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::members::UserRef;

/// A stored message as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
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

/// Reads a page by walking the `(room_id, seq)` unique index (forwards for `After`, backwards
/// otherwise), fetching one row more than asked to learn `has_more` exactly.
pub async fn page(
    db: impl PgExecutor<'_>,
    room_id: Uuid,
    page: Page,
    limit: i64,
) -> sqlx::Result<History> {
    let mut rows =
        match page {
            Page::After(after) => sqlx::query_as!(
                Row,
                r#"select m.id, m.room_id, m.seq, m.body, m.client_id, m.created_at, m.edited_at,
                          u.id as sender_id, u.username, u.display_name
                   from messages m join users u on u.id = m.sender_id
                   where m.room_id = $1 and m.seq > $2
                   order by m.seq asc limit $3"#,
                room_id,
                after,
                limit + 1,
            )
            .fetch_all(db)
            .await?,
            Page::Before(before) => {
                let mut rows = sqlx::query_as!(
                Row,
                r#"select m.id, m.room_id, m.seq, m.body, m.client_id, m.created_at, m.edited_at,
                          u.id as sender_id, u.username, u.display_name
                   from messages m join users u on u.id = m.sender_id
                   where m.room_id = $1 and m.seq < $2
                   order by m.seq desc limit $3"#,
                room_id,
                before.unwrap_or(i64::MAX),
                limit + 1,
            )
            .fetch_all(db)
            .await?;
                // Newest first from the index; the extra row, if any, is the oldest and goes.
                rows.truncate(limit as usize + 1);
                rows.reverse();
                if rows.len() as i64 > limit {
                    rows.remove(0);
                    return Ok(History {
                        messages: rows.into_iter().map(Message::from).collect(),
                        has_more: true,
                    });
                }
                rows
            }
        };
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(History {
        messages: rows.into_iter().map(Message::from).collect(),
        has_more,
    })
}

/// The result of storing a message.
#[derive(Debug)]
pub enum Stored {
    /// Newly committed with the next seq of its room.
    New(Message),
    /// The sender already sent this `client_id` to this room: the first copy, nothing stored.
    Duplicate(Message),
}

/// Stores one message in its own transaction. The room row's `last_seq` is incremented in the
/// same statement, which holds the room's row lock until commit: seqs are gap-free and commit in
/// order, across nodes too.
pub async fn insert(
    db: &PgPool,
    room_id: Uuid,
    sender_id: Uuid,
    body: &str,
    client_id: Option<&str>,
) -> sqlx::Result<Stored> {
    if let Some(client_id) = client_id {
        if let Some(first) = by_client_id(db, room_id, sender_id, client_id).await? {
            return Ok(Stored::Duplicate(first));
        }
    }
    let inserted = sqlx::query_as!(
        Row,
        r#"with next as (
               update rooms set last_seq = last_seq + 1 where id = $2 returning last_seq
           ), inserted as (
               insert into messages (id, room_id, seq, sender_id, body, client_id)
               select $1, $2, next.last_seq, $3, $4, $5 from next
               returning id, room_id, seq, body, client_id, created_at, edited_at, sender_id
           )
           select i.id, i.room_id, i.seq, i.body, i.client_id, i.created_at, i.edited_at,
                  i.sender_id, u.username, u.display_name
           from inserted i join users u on u.id = i.sender_id"#,
        Uuid::now_v7(),
        room_id,
        sender_id,
        body,
        client_id,
    )
    .fetch_one(db)
    .await;
    match (inserted, client_id) {
        (Ok(row), _) => Ok(Stored::New(row.into())),
        // A concurrent send with the same client_id won the race; the statement rolled back
        // whole, so no seq was used up.
        (Err(err), Some(client_id)) if is_duplicate_client_id(&err) => {
            by_client_id(db, room_id, sender_id, client_id)
                .await?
                .map(Stored::Duplicate)
                .ok_or(err)
        }
        (Err(err), _) => Err(err),
    }
}

fn is_duplicate_client_id(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.constraint())
        .is_some_and(|c| c == "messages_client_id_key")
}

async fn by_client_id(
    db: impl PgExecutor<'_>,
    room_id: Uuid,
    sender_id: Uuid,
    client_id: &str,
) -> sqlx::Result<Option<Message>> {
    let row = sqlx::query_as!(
        Row,
        r#"select m.id, m.room_id, m.seq, m.body, m.client_id, m.created_at, m.edited_at,
                  u.id as sender_id, u.username, u.display_name
           from messages m join users u on u.id = m.sender_id
           where m.room_id = $1 and m.sender_id = $2 and m.client_id = $3"#,
        room_id,
        sender_id,
        client_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
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
#[derive(Debug)]
pub enum BatchOutcome {
    Stored(Stored),
    /// The room was deleted before the message could be stored.
    NoRoom,
}

/// Stores a batch in one transaction: one query finds earlier copies of repeated `client_id`s,
/// one locks the batch's rooms (in id order, so concurrent writers on other nodes cannot
/// deadlock) and reserves a block of seqs per room, and one `insert ... select from unnest`
/// writes every new message. Seqs follow the batch order within each room.
///
/// A unique violation (a concurrent copy of a `client_id` on another node) fails the whole
/// batch; the caller then stores its messages one by one.
pub async fn insert_batch(db: &PgPool, batch: &[NewMessage]) -> sqlx::Result<Vec<BatchOutcome>> {
    use std::collections::HashMap;

    let mut tx = db.begin().await?;

    // 1. Earlier copies of any client_id in the batch.
    let keyed: Vec<&NewMessage> = batch.iter().filter(|m| m.client_id.is_some()).collect();
    let mut earlier: HashMap<(Uuid, Uuid, String), Message> = HashMap::new();
    if !keyed.is_empty() {
        let rooms: Vec<Uuid> = keyed.iter().map(|m| m.room_id).collect();
        let senders: Vec<Uuid> = keyed.iter().map(|m| m.sender_id).collect();
        let client_ids: Vec<String> = keyed.iter().filter_map(|m| m.client_id.clone()).collect();
        let rows = sqlx::query_as!(
            Row,
            r#"select m.id, m.room_id, m.seq, m.body, m.client_id, m.created_at, m.edited_at,
                      u.id as sender_id, u.username, u.display_name
               from messages m
               join unnest($1::uuid[], $2::uuid[], $3::text[]) as k(room_id, sender_id, client_id)
                 on m.room_id = k.room_id and m.sender_id = k.sender_id and m.client_id = k.client_id
               join users u on u.id = m.sender_id"#,
            &rooms,
            &senders,
            &client_ids,
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let message = Message::from(row);
            let key = (
                message.room_id,
                message.sender.id,
                message.client_id.clone().unwrap_or_default(),
            );
            earlier.insert(key, message);
        }
    }

    // 2. Which messages are new: not seen before, and not a repeat within this batch.
    enum Plan {
        New(usize),
        Earlier((Uuid, Uuid, String)),
        SameBatch(usize),
    }
    let mut plans = Vec::with_capacity(batch.len());
    let mut fresh: Vec<&NewMessage> = Vec::new();
    let mut first_in_batch: HashMap<(Uuid, Uuid, String), usize> = HashMap::new();
    for m in batch {
        let key = m
            .client_id
            .as_ref()
            .map(|c| (m.room_id, m.sender_id, c.clone()));
        match key {
            Some(k) if earlier.contains_key(&k) => plans.push(Plan::Earlier(k)),
            Some(k) if first_in_batch.contains_key(&k) => {
                plans.push(Plan::SameBatch(first_in_batch[&k]))
            }
            key => {
                if let Some(k) = key {
                    first_in_batch.insert(k, fresh.len());
                }
                plans.push(Plan::New(fresh.len()));
                fresh.push(m);
            }
        }
    }

    // 3. Reserve seqs: lock the rooms in id order, then add each room's count to last_seq.
    let mut counts: HashMap<Uuid, i64> = HashMap::new();
    for m in &fresh {
        *counts.entry(m.room_id).or_default() += 1;
    }
    let mut room_ids: Vec<Uuid> = counts.keys().copied().collect();
    room_ids.sort();
    let room_counts: Vec<i64> = room_ids.iter().map(|id| counts[id]).collect();
    let reserved = if room_ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query!(
            r#"with locked as (
                   select id from rooms where id = any($1) order by id for update
               )
               update rooms r set last_seq = r.last_seq + c.n
               from unnest($1::uuid[], $2::bigint[]) as c(id, n), locked l
               where r.id = c.id and l.id = c.id
               returning r.id, r.last_seq - c.n as "first_before!""#,
            &room_ids,
            &room_counts,
        )
        .fetch_all(&mut *tx)
        .await?
    };
    let mut next_seq: HashMap<Uuid, i64> = reserved
        .into_iter()
        .map(|r| (r.id, r.first_before))
        .collect();

    // 4. Insert the new messages of rooms that still exist, with their seqs.
    let mut seqs: Vec<Option<i64>> = Vec::with_capacity(fresh.len());
    for m in &fresh {
        seqs.push(next_seq.get_mut(&m.room_id).map(|s| {
            *s += 1;
            *s
        }));
    }
    let insertable: Vec<(usize, &NewMessage, i64)> = fresh
        .iter()
        .zip(&seqs)
        .enumerate()
        .filter_map(|(i, (m, seq))| seq.map(|s| (i, *m, s)))
        .collect();
    let mut stored: HashMap<usize, Message> = HashMap::new();
    if !insertable.is_empty() {
        let ids: Vec<Uuid> = insertable.iter().map(|(_, m, _)| m.id).collect();
        let rooms: Vec<Uuid> = insertable.iter().map(|(_, m, _)| m.room_id).collect();
        let seq_values: Vec<i64> = insertable.iter().map(|(_, _, s)| *s).collect();
        let senders: Vec<Uuid> = insertable.iter().map(|(_, m, _)| m.sender_id).collect();
        let bodies: Vec<String> = insertable.iter().map(|(_, m, _)| m.body.clone()).collect();
        let client_ids: Vec<Option<String>> = insertable
            .iter()
            .map(|(_, m, _)| m.client_id.clone())
            .collect();
        let rows = sqlx::query_as!(
            Row,
            r#"with inserted as (
                   insert into messages (id, room_id, seq, sender_id, body, client_id)
                   select * from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[])
                   returning id, room_id, seq, body, client_id, created_at, edited_at, sender_id
               )
               select i.id as "id!", i.room_id as "room_id!", i.seq as "seq!", i.body as "body!",
                      i.client_id, i.created_at as "created_at!", i.edited_at,
                      u.id as sender_id, u.username, u.display_name
               from inserted i join users u on u.id = i.sender_id"#,
            &ids,
            &rooms,
            &seq_values,
            &senders,
            &bodies,
            &client_ids as &[Option<String>],
        )
        .fetch_all(&mut *tx)
        .await?;
        let position: HashMap<Uuid, usize> =
            insertable.iter().map(|(i, m, _)| (m.id, *i)).collect();
        for row in rows {
            let message = Message::from(row);
            if let Some(i) = position.get(&message.id) {
                stored.insert(*i, message);
            }
        }
    }
    tx.commit().await?;

    Ok(plans
        .into_iter()
        .map(|plan| match plan {
            Plan::New(i) => stored.get(&i).cloned().map_or(BatchOutcome::NoRoom, |m| {
                BatchOutcome::Stored(Stored::New(m))
            }),
            Plan::SameBatch(i) => stored.get(&i).cloned().map_or(BatchOutcome::NoRoom, |m| {
                BatchOutcome::Stored(Stored::Duplicate(m))
            }),
            Plan::Earlier(k) => BatchOutcome::Stored(Stored::Duplicate(earlier[&k].clone())),
        })
        .collect())
}
