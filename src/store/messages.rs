//! The `messages` table: storing messages with their per-room `seq` and `rev`, changing them
//! (edits and tombstones), and reading them as the API shows them (history and thread pages,
//! the change feed).

use serde::{Deserialize, Serialize};
use sqlx::{types::Json, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::UserRef;
use crate::workspaces::WorkspaceId;

/// The app's own JSON object (`metadata` of messages and rooms).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A stored message as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
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
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    pub reply_to: Option<MessageRef>,
    pub thread_root_id: Option<Uuid>,
    pub thread: Option<ThreadSummary>,
    pub reactions: Vec<ReactionCount>,
    pub mentions: Vec<UserRef>,
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
    /// The emoji the reading user reacted with: present where a message is read by someone
    /// (history, the change feed, acks), absent where it is broadcast to many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_reactions: Option<Vec<String>>,
}

impl Message {
    /// The message as it is broadcast: without anyone's own reactions.
    pub fn broadcast(mut self) -> Self {
        self.my_reactions = None;
        self
    }
}

/// A quoted message (`reply_to`): its body cut to 200 characters, `""` once deleted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MessageRef {
    pub id: Uuid,
    pub seq: i64,
    pub sender: UserRef,
    pub body: String,
}

/// A thread root's summary of its replies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ThreadSummary {
    pub reply_count: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_reply_at: Option<OffsetDateTime>,
    pub last_reply_seq: Option<i64>,
}

/// One emoji's count on a message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
}

/// A row of `message_view` (see migration 0007) with the reader's own reactions.
#[derive(sqlx::FromRow)]
struct ViewRow {
    id: Uuid,
    room_id: Uuid,
    seq: i64,
    rev: i64,
    body: String,
    client_id: Option<String>,
    created_at: OffsetDateTime,
    edited_at: Option<OffsetDateTime>,
    deleted_at: Option<OffsetDateTime>,
    thread_root_id: Option<Uuid>,
    metadata: Json<JsonObject>,
    sender_id: Uuid,
    sender_username: String,
    sender_display_name: String,
    reply_to: Option<Json<MessageRef>>,
    thread: Option<Json<ThreadSummary>>,
    reactions: Json<Vec<ReactionCount>>,
    mentions: Json<Vec<UserRef>>,
    my_reactions: Vec<String>,
}

impl From<ViewRow> for Message {
    fn from(r: ViewRow) -> Self {
        Message {
            id: r.id,
            room_id: r.room_id,
            seq: r.seq,
            rev: r.rev,
            sender: UserRef {
                id: r.sender_id,
                username: r.sender_username,
                display_name: r.sender_display_name,
            },
            body: r.body,
            client_id: r.client_id,
            created_at: r.created_at,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
            reply_to: r.reply_to.map(|j| j.0),
            thread_root_id: r.thread_root_id,
            thread: r.thread.map(|j| j.0),
            reactions: r.reactions.0,
            mentions: r.mentions.0,
            metadata: r.metadata.0,
            my_reactions: Some(r.my_reactions),
        }
    }
}

/// The select list of every read of messages: `message_view`'s columns and the reactions of the
/// reader named by `$viewer` (an SQL expression). Reads are checked at run time (by the tests)
/// rather than at compile time: the view's columns all look nullable to sqlx's macros.
macro_rules! select_messages {
    ($viewer:literal) => {
        concat!(
            "select v.id, v.room_id, v.seq, v.rev, v.body, v.client_id, v.created_at, \
                    v.edited_at, v.deleted_at, v.thread_root_id, v.metadata, v.sender_id, \
                    v.sender_username, v.sender_display_name, v.reply_to, v.thread, \
                    v.reactions, v.mentions, \
                    array(select r.emoji from reactions r \
                          where r.message_id = v.id and r.user_id = ",
            $viewer,
            " order by r.created_at, r.emoji) as my_reactions "
        )
    };
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// Whose page: the room's timeline (every message, thread replies included) or one thread's
/// replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeline {
    Room,
    Thread(Uuid),
}

/// Reads a page of a room of `ws` as `viewer` sees it (their own reactions), by walking the
/// `(room_id, seq)` unique index (or, for a thread, `(thread_root_id, seq)`) forwards for
/// `After`, backwards otherwise, fetching one row more than asked to learn `has_more` exactly.
pub async fn page(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    viewer: Uuid,
    room_id: Uuid,
    timeline: Timeline,
    page: Page,
    limit: i64,
) -> sqlx::Result<History> {
    // One statement per direction and timeline, so that each is a plain walk of its index in
    // its own direction; the rows come in walking order.
    let (sql, bound) = match (timeline, page) {
        (Timeline::Room, Page::After(after)) => (
            concat!(
                select_messages!("$1"),
                "from message_view v ",
                "where v.room_id = $2 and v.workspace_id = $3 and v.seq > $4 \
                 order by v.seq asc limit $5"
            ),
            after,
        ),
        (Timeline::Room, Page::Before(before)) => (
            concat!(
                select_messages!("$1"),
                "from message_view v ",
                "where v.room_id = $2 and v.workspace_id = $3 and v.seq < $4 \
                 order by v.seq desc limit $5"
            ),
            before.unwrap_or(i64::MAX),
        ),
        (Timeline::Thread(_), Page::After(after)) => (
            concat!(
                select_messages!("$1"),
                "from message_view v ",
                "where v.thread_root_id = $2 and v.workspace_id = $3 \
                 and v.seq > $4 order by v.seq asc limit $5"
            ),
            after,
        ),
        (Timeline::Thread(_), Page::Before(before)) => (
            concat!(
                select_messages!("$1"),
                "from message_view v ",
                "where v.thread_root_id = $2 and v.workspace_id = $3 \
                 and v.seq < $4 order by v.seq desc limit $5"
            ),
            before.unwrap_or(i64::MAX),
        ),
    };
    // A thread page is a walk of `(thread_root_id, seq)` alone: every reply is in its root's
    // room (checked when it was sent), and the caller has checked that the root is in this
    // room. (With the room in the condition too, Postgres would rather AND two bitmaps and sort
    // the whole thread.)
    let key = match timeline {
        Timeline::Thread(root) => root,
        Timeline::Room => room_id,
    };
    let mut rows = sqlx::query_as::<_, ViewRow>(sql)
        .bind(viewer)
        .bind(key)
        .bind(ws.as_uuid())
        .bind(bound)
        .bind(limit + 1)
        .fetch_all(db)
        .await?;
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

/// Messages of a room whose `rev` is above `after_rev` (and, with `up_to_seq`, whose seq is at
/// most that: the changes to messages a client already has), in rev order: a walk of the
/// `(room_id, rev)` unique index. At most `limit`, and whether more remain.
pub async fn changes(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    viewer: Uuid,
    room_id: Uuid,
    after_rev: i64,
    up_to_seq: Option<i64>,
    limit: i64,
) -> sqlx::Result<(Vec<Message>, bool)> {
    let mut rows = sqlx::query_as::<_, ViewRow>(concat!(
        select_messages!("$1"),
        "from message_view v ",
        "where v.room_id = $2 and v.workspace_id = $3 and v.rev > $4 and v.seq <= $5 \
         order by v.rev asc limit $6"
    ))
    .bind(viewer)
    .bind(room_id)
    .bind(ws.as_uuid())
    .bind(after_rev)
    .bind(up_to_seq.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows.into_iter().map(Message::from).collect(), has_more))
}

/// One message of a room of `ws`, as `viewer` sees it.
pub async fn find(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    viewer: Uuid,
    room_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Message>> {
    let row = sqlx::query_as::<_, ViewRow>(concat!(
        select_messages!("$1"),
        "from message_view v ",
        "where v.id = $2 and v.room_id = $3 and v.workspace_id = $4"
    ))
    .bind(viewer)
    .bind(id)
    .bind(room_id)
    .bind(ws.as_uuid())
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
}

/// Messages by id as nobody in particular reads them (`my_reactions` empty); ids not found are
/// left out. For the writer, after its statements: each message is read once however many
/// changes of the batch touched it (`reactions::mine` adds each reader's own reactions).
pub async fn read_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Message>> {
    let rows = sqlx::query_as::<_, ViewRow>(concat!(
        select_messages!("'00000000-0000-0000-0000-000000000000'::uuid"),
        "from message_view v where v.id = any($1)"
    ))
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

/// What a reply names, checked before it is queued: the quoted message and the thread root
/// must be messages of the same room, and a root may not be a thread reply itself.
pub struct Target {
    pub id: Uuid,
    pub seq: i64,
    pub thread_root_id: Option<Uuid>,
    pub deleted: bool,
    pub sender_id: Uuid,
    pub created_at: OffsetDateTime,
}

/// A message of a room of `ws`, as a target of a reply, an edit, a deletion or a reaction.
pub async fn target(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Target>> {
    sqlx::query_as!(
        Target,
        r#"select id, seq, thread_root_id, deleted_at is not null as "deleted!", sender_id,
                  created_at
           from messages where id = $1 and room_id = $2 and workspace_id = $3"#,
        id,
        room_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}

/// A message of a room of `ws` quoted by a reply, as the reply carries it when it is sent.
pub async fn quote(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<MessageRef>> {
    let row = sqlx::query!(
        r#"select m.id, m.seq, left(m.body, 200) as "body!", u.id as sender_id, u.username,
                  u.display_name
           from messages m join users u on u.id = m.sender_id
           where m.id = $1 and m.room_id = $2 and m.workspace_id = $3"#,
        id,
        room_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| MessageRef {
        id: r.id,
        seq: r.seq,
        sender: UserRef {
            id: r.sender_id,
            username: r.username,
            display_name: r.display_name,
        },
        body: r.body,
    }))
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

/// A message to store as part of a batch, with what was resolved before it was queued.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    pub id: Uuid,
    pub room_id: Uuid,
    pub sender_id: Uuid,
    pub body: String,
    pub client_id: Option<String>,
    /// The quoted message, as it is at send time (checked to be of the same room).
    pub reply_to: Option<MessageRef>,
    /// The thread root (checked to be of the same room, and not a thread reply itself).
    pub thread_root_id: Option<Uuid>,
    pub metadata: JsonObject,
    /// The users the body names who may read the room.
    pub mentions: Vec<UserRef>,
}

/// What became of each message of a batch, in the batch's order.
#[derive(Clone, Debug)]
pub enum BatchOutcome {
    /// Newly committed with the next seq of its room.
    New(Box<Message>),
    /// The sender already sent this `client_id` to this room: the id of the first copy.
    Duplicate(Uuid),
    /// The room was deleted before the message could be stored.
    NoRoom,
    /// The sender may not post there any more (removed from a private or direct room, or
    /// disabled) by the time of the commit.
    Refused,
}

/// Stores a batch in one statement, so one round trip (and, run on its own, one commit) per
/// batch:
/// - earlier copies of the batch's `client_id`s are looked up (they are answered, not stored);
/// - the access rule is applied again, at commit: a sender who is disabled, or is no longer a
///   member of a private or direct room, is refused (the socket's own view of what it joined
///   may lag behind a kick that another node or a lost bus message did not tell it about), and
///   so is a sender of another workspace than the room's;
/// - each message is stored in its room's workspace, read from the room row itself: one batch
///   carries messages of many workspaces, and the room is the authority on which one a message
///   belongs to (the composite foreign keys refuse a sender of any other);
/// - the rooms of the new messages are locked in id order (concurrent writers on other nodes
///   cannot deadlock) and each room's `last_seq` moves up by its count of new messages, its
///   `last_rev` by one per message and one more per thread reply (the root's new summary);
/// - the new messages are inserted with `insert ... select from unnest`, numbered after the
///   reserved block in batch order within each room; a thread reply takes rev `r` and leaves
///   `r + 1` to its root, whose new summary `threads_and_mentions` stores next, in the same
///   transaction (a batch with thread replies or mentions is never committed by this statement
///   alone).
///
/// Repeats of a `client_id` within the batch are answered with the first copy. A unique violation (a concurrent copy of a `client_id` on
/// another node) fails the whole statement, which uses up no seq; the writer then stores the
/// batch's halves apart (see `writer::commit`).
/// Whether `insert_batch` writes the `message.created` events of what it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    /// In the statement itself: a batch of plain messages, committed alone, whose events must
    /// be in the same commit. The events are a few fixed-size columns each (the message is read
    /// from this table when the event is read), and the workspaces' `event_positions` rows are
    /// the statement's last lock (it needs the inserted rows first), held to its commit.
    InStatement,
    /// The caller appends them later in its transaction (`store::events`).
    ByCaller,
}

pub async fn insert_batch(
    db: impl PgExecutor<'_>,
    batch: &[NewMessage],
    log: Log,
) -> sqlx::Result<Vec<BatchOutcome>> {
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
    let replies: Vec<Option<Uuid>> = sent
        .iter()
        .map(|m| m.reply_to.as_ref().map(|r| r.id))
        .collect();
    let roots: Vec<Option<Uuid>> = sent.iter().map(|m| m.thread_root_id).collect();
    // Empty metadata (nearly every message) goes as null, stored as the column's `{}`: no JSON
    // to write here and parse there.
    let metadata: Vec<Option<serde_json::Value>> = sent
        .iter()
        .map(|m| (!m.metadata.is_empty()).then(|| serde_json::Value::Object(m.metadata.clone())))
        .collect();
    // The rooms to lock, by primary key.
    let mut room_ids = rooms.clone();
    room_ids.sort();
    room_ids.dedup();

    let rows = sqlx::query!(
        r#"with input as materialized (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                                    $7::uuid[], $8::uuid[], $9::jsonb[])
                   with ordinality as t(id, room_id, sender_id, body, client_id, reply_to,
                                        thread_root_id, metadata, ord)
           ), earlier as materialized (
               select i.id as input_id, m.id
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
               -- revs: a thread reply takes two (its own, then its root's new summary).
               select i.*, case when i.thread_root_id is null then 1 else 2 end as revs
               from input i
               where not exists (select from earlier e where e.input_id = i.id)
                 and not exists (select from refused x where x.input_id = i.id)
           ), locked as materialized (
               select id from rooms where id = any($6) order by id for update
           ), reserved as (
               update rooms r set last_seq = r.last_seq + c.n, last_rev = r.last_rev + c.revs
               from (select room_id, count(*) as n, sum(revs) as revs
                     from fresh group by room_id) c, locked l
               where r.id = any($6) and r.id = c.room_id and l.id = c.room_id
               returning r.id, r.workspace_id, r.last_seq - c.n as first_before,
                         r.last_rev - c.revs as first_rev_before
           ), inserted as (
               insert into messages (id, workspace_id, room_id, seq, rev, sender_id, body,
                                     client_id, reply_to, thread_root_id, metadata)
               select f.id, r.workspace_id, f.room_id,
                      r.first_before + row_number() over (partition by f.room_id order by f.ord),
                      r.first_rev_before + 1 - f.revs
                          + sum(f.revs) over (partition by f.room_id order by f.ord),
                      f.sender_id, f.body, f.client_id, f.reply_to, f.thread_root_id,
                      coalesce(f.metadata, '{}')
               from fresh f join reserved r on r.id = f.room_id
               returning id, workspace_id, room_id, seq, rev, body, client_id, created_at,
                         sender_id, thread_root_id
           ), counter as (
               -- The event log's positions (see store::events::append), taken once the rows
               -- are in, in workspace id order.
               insert into event_positions as p (workspace_id, last_position)
               select workspace_id, count(*) from inserted where $10
               group by workspace_id order by workspace_id
               on conflict (workspace_id)
                   do update set last_position = p.last_position + excluded.last_position
               returning p.workspace_id, p.last_position
           ), logged as (
               insert into events (workspace_id, position, id, type, message_id)
               select s.workspace_id,
                      c.last_position + 1
                          - row_number() over (partition by s.workspace_id
                                               order by s.room_id desc, s.seq desc),
                      gen_random_uuid(), 'message.created', s.id
               from inserted s join counter c on c.workspace_id = s.workspace_id
           )
           select s.id as "input_id!", false as "refused!", false as "duplicate!",
                  s.id as "id?", s.seq as "seq?", s.rev as "rev?",
                  s.created_at as "created_at?", u.username as "username?",
                  u.display_name as "display_name?"
           from inserted s join users u on u.id = s.sender_id
           union all
           select e.input_id, false, true, e.id, null, null, null, null, null
           from earlier e
           union all
           select x.input_id, true, false, null, null, null, null, null, null
           from refused x"#,
        &ids,
        &rooms,
        &senders,
        &bodies as &[&str],
        &client_ids as &[Option<&str>],
        &room_ids,
        &replies as &[Option<Uuid>],
        &roots as &[Option<Uuid>],
        &metadata as &[Option<serde_json::Value>],
        log == Log::InStatement,
    )
    .fetch_all(db)
    .await?;

    let by_id: HashMap<Uuid, &NewMessage> = sent.iter().map(|m| (m.id, *m)).collect();
    let mut by_input: HashMap<Uuid, BatchOutcome> = HashMap::with_capacity(rows.len());
    for r in rows {
        let outcome = if r.refused {
            BatchOutcome::Refused
        } else if r.duplicate {
            match r.id {
                Some(id) => BatchOutcome::Duplicate(id),
                None => continue,
            }
        } else {
            // A stored row always has its columns (the query takes them from not-null
            // columns); without them it counts as not stored.
            let (
                Some(new),
                Some(seq),
                Some(rev),
                Some(created_at),
                Some(username),
                Some(display_name),
            ) = (
                by_id.get(&r.input_id),
                r.seq,
                r.rev,
                r.created_at,
                r.username,
                r.display_name,
            )
            else {
                continue;
            };
            BatchOutcome::New(Box::new(Message {
                id: new.id,
                room_id: new.room_id,
                seq,
                rev,
                sender: UserRef {
                    id: new.sender_id,
                    username,
                    display_name,
                },
                body: new.body.clone(),
                client_id: new.client_id.clone(),
                created_at,
                edited_at: None,
                deleted_at: None,
                reply_to: new.reply_to.clone(),
                thread_root_id: new.thread_root_id,
                thread: None,
                reactions: Vec::new(),
                mentions: new.mentions.clone(),
                metadata: new.metadata.clone(),
                my_reactions: Some(Vec::new()),
            }))
        };
        by_input.insert(r.input_id, outcome);
    }
    Ok(batch
        .iter()
        .zip(same_as)
        .map(|(m, first)| match first {
            // A repeat gets the first copy's outcome, as a duplicate if it was stored.
            Some(first) => match by_input.get(&batch[first].id) {
                Some(BatchOutcome::New(m)) => BatchOutcome::Duplicate(m.id),
                Some(other) => other.clone(),
                None => BatchOutcome::NoRoom,
            },
            None => by_input.get(&m.id).cloned().unwrap_or(BatchOutcome::NoRoom),
        })
        .collect())
}

/// What `insert_batch` leaves to a second statement of the same transaction, for the messages
/// it stored new: each thread root's new summary (and the rev its last reply left it), and the
/// mention rows. Kept apart so that the plain batch statement, which nearly every batch is,
/// does not carry (and open the tables and indexes of) two more data-modifying steps.
pub async fn threads_and_mentions(
    db: impl PgExecutor<'_>,
    stored: &[&Message],
) -> sqlx::Result<()> {
    let replies: Vec<Uuid> = stored
        .iter()
        .filter(|m| m.thread_root_id.is_some())
        .map(|m| m.id)
        .collect();
    let (mention_of, mentioned): (Vec<Uuid>, Vec<Uuid>) = stored
        .iter()
        .flat_map(|m| m.mentions.iter().map(|u| (m.id, u.id)))
        .unzip();
    if replies.is_empty() && mention_of.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        r#"with threads as (
               update messages t
               set thread_reply_count = t.thread_reply_count + c.n,
                   thread_last_reply_at = c.last_at, thread_last_reply_seq = c.last_seq,
                   rev = c.last_rev + 1
               from (select r.thread_root_id, count(*) as n, max(r.created_at) as last_at,
                            max(r.seq) as last_seq, max(r.rev) as last_rev
                     from messages r where r.id = any($1)
                     group by r.thread_root_id) c
               where t.id = c.thread_root_id
           )
           insert into mentions (message_id, user_id, workspace_id, room_id, seq)
           select p.message_id, p.user_id, m.workspace_id, m.room_id, m.seq
           from unnest($2::uuid[], $3::uuid[]) as p(message_id, user_id)
           join messages m on m.id = p.message_id"#,
        &replies,
        &mention_of,
        &mentioned,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An edit to store as part of a batch.
#[derive(Clone, Debug)]
pub struct Edit {
    pub id: Uuid,
    pub room_id: Uuid,
    pub editor_id: Uuid,
    pub body: String,
    /// Replaces the old metadata when given.
    pub metadata: Option<JsonObject>,
    /// The users the new body names who may read the room.
    pub mentions: Vec<UserRef>,
}

/// A deletion to store as part of a batch.
#[derive(Clone, Debug)]
pub struct Delete {
    pub id: Uuid,
    pub room_id: Uuid,
    pub actor_id: Uuid,
}

/// What became of one edit or deletion of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Done, with the message's new rev and seq; for an edit, the users it newly mentions.
    Changed {
        rev: i64,
        seq: i64,
        newly_mentioned: Vec<Uuid>,
    },
    /// Nothing to do (a message deleted already).
    Unchanged,
    /// No such message in that room (or workspace).
    Missing,
    /// The actor may not (not the sender; not allowed to delete; no longer in the room).
    Forbidden,
    /// The message is deleted (edits).
    Deleted,
    /// `EDIT_WINDOW` has passed (edits).
    TooLate,
}

impl ChangeOutcome {
    fn from_row(verdict: &str, rev: Option<i64>, seq: Option<i64>, newly: Vec<Uuid>) -> Self {
        match (verdict, rev, seq) {
            ("ok", Some(rev), Some(seq)) => ChangeOutcome::Changed {
                rev,
                seq,
                newly_mentioned: newly,
            },
            ("unchanged", ..) => ChangeOutcome::Unchanged,
            ("forbidden", ..) => ChangeOutcome::Forbidden,
            ("deleted", ..) => ChangeOutcome::Deleted,
            ("late", ..) => ChangeOutcome::TooLate,
            _ => ChangeOutcome::Missing,
        }
    }
}

/// Stores a batch of edits (no message twice; the writer splits batches so) in one statement,
/// inside the writer's transaction, which has locked the rooms already. Checked at commit: the
/// message is in the room, the editor is its sender, may still enter the room and is not
/// disabled, the message is not deleted, and `edit_window` (seconds, 0: none) has not passed.
/// Each room's `last_rev` moves up by its count of edits, and the edited messages take those
/// revs in batch order. Mentions are replaced by the new body's.
pub async fn edit_batch(
    db: impl PgExecutor<'_>,
    batch: &[Edit],
    edit_window: i64,
) -> sqlx::Result<Vec<ChangeOutcome>> {
    let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
    let rooms: Vec<Uuid> = batch.iter().map(|e| e.room_id).collect();
    let editors: Vec<Uuid> = batch.iter().map(|e| e.editor_id).collect();
    let bodies: Vec<&str> = batch.iter().map(|e| e.body.as_str()).collect();
    let metadata: Vec<Option<serde_json::Value>> = batch
        .iter()
        .map(|e| e.metadata.clone().map(serde_json::Value::Object))
        .collect();
    let (mention_of, mentioned): (Vec<Uuid>, Vec<Uuid>) = batch
        .iter()
        .flat_map(|e| e.mentions.iter().map(|u| (e.id, u.id)))
        .unzip();
    let rows = sqlx::query!(
        r#"with input as materialized (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[])
                   with ordinality as t(id, room_id, editor_id, body, metadata, ord)
           ), judged as materialized (
               select i.*, m.seq,
                      case when m.id is null or m.workspace_id <> u.workspace_id then 'missing'
                           when m.sender_id <> i.editor_id or u.disabled_at is not null
                                or (r.visibility <> 'public'
                                    and not exists (select from room_members rm
                                                    where rm.room_id = i.room_id
                                                      and rm.user_id = i.editor_id))
                               then 'forbidden'
                           when m.deleted_at is not null then 'deleted'
                           when $8 > 0 and m.created_at < now() - make_interval(secs => $8)
                               then 'late'
                           else 'ok' end as verdict
               from input i
               join users u on u.id = i.editor_id
               left join rooms r on r.id = i.room_id
               left join messages m on m.id = i.id and m.room_id = i.room_id
           ), ok as materialized (
               select j.*, row_number() over (partition by j.room_id order by j.ord) as rank
               from judged j where j.verdict = 'ok'
           ), reserved as (
               update rooms r set last_rev = r.last_rev + c.n
               from (select room_id, count(*) as n from ok group by room_id) c
               where r.id = c.room_id
               returning r.id, r.last_rev - c.n as first_rev_before
           ), edited as (
               update messages m
               set body = o.body, metadata = coalesce(o.metadata, m.metadata),
                   edited_at = now(), rev = r.first_rev_before + o.rank
               from ok o join reserved r on r.id = o.room_id
               where m.id = o.id
               returning m.id
           ), wanted as (
               select p.message_id, p.user_id
               from unnest($6::uuid[], $7::uuid[]) as p(message_id, user_id)
           ), dropped as (
               delete from mentions mm using ok
               where mm.message_id = ok.id
                 and not exists (select from wanted w where w.message_id = mm.message_id
                                                      and w.user_id = mm.user_id)
           ), added as (
               insert into mentions (message_id, user_id, workspace_id, room_id, seq)
               select w.message_id, w.user_id, u.workspace_id, ok.room_id, ok.seq
               from wanted w join ok on ok.id = w.message_id join users u on u.id = w.user_id
               on conflict do nothing
               returning message_id, user_id
           )
           -- The edits and the rest apart, not joined on id: the writer's connection plans
           -- without hash joins, and a join of two CTEs would be a nested loop, n² per batch.
           select o.ord as "ord!", 'ok' as "verdict!", r.first_rev_before + o.rank as "rev?",
                  o.seq as "seq?",
                  array(select a.user_id from added a where a.message_id = o.id) as "newly!"
           from ok o join reserved r on r.id = o.room_id
           union all
           select j.ord, j.verdict, null, j.seq, '{}'::uuid[]
           from judged j where j.verdict <> 'ok'
           order by 1"#,
        &ids,
        &rooms,
        &editors,
        &bodies as &[&str],
        &metadata as &[Option<serde_json::Value>],
        &mention_of,
        &mentioned,
        edit_window as f64,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ChangeOutcome::from_row(&r.verdict, r.rev, r.seq, r.newly))
        .collect())
}

/// Stores a batch of deletions (no message twice) in one statement, inside the writer's
/// transaction. Checked at commit: the message is in the room; the actor may still enter it and
/// is its sender, the room's owner or a moderator, or an admin of the workspace. A deleted
/// message becomes a tombstone: body `""`, metadata `{}`, `deleted_at` set, its reactions and
/// mentions gone, a new rev. Deleting a tombstone changes nothing.
pub async fn delete_batch(
    db: impl PgExecutor<'_>,
    batch: &[Delete],
) -> sqlx::Result<Vec<ChangeOutcome>> {
    let ids: Vec<Uuid> = batch.iter().map(|d| d.id).collect();
    let rooms: Vec<Uuid> = batch.iter().map(|d| d.room_id).collect();
    let actors: Vec<Uuid> = batch.iter().map(|d| d.actor_id).collect();
    let rows = sqlx::query!(
        r#"with input as materialized (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[])
                   with ordinality as t(id, room_id, actor_id, ord)
           ), judged as materialized (
               select i.*, m.seq,
                      case when m.id is null or m.workspace_id <> u.workspace_id then 'missing'
                           when u.disabled_at is not null
                                or (r.visibility <> 'public' and rm.role is null)
                                or not (m.sender_id = i.actor_id or u.is_admin
                                        or coalesce(rm.role in ('owner', 'moderator'), false))
                               then 'forbidden'
                           when m.deleted_at is not null then 'unchanged'
                           else 'ok' end as verdict
               from input i
               join users u on u.id = i.actor_id
               left join rooms r on r.id = i.room_id
               left join room_members rm on rm.room_id = i.room_id and rm.user_id = i.actor_id
               left join messages m on m.id = i.id and m.room_id = i.room_id
           ), ok as materialized (
               select j.*, row_number() over (partition by j.room_id order by j.ord) as rank
               from judged j where j.verdict = 'ok'
           ), reserved as (
               update rooms r set last_rev = r.last_rev + c.n
               from (select room_id, count(*) as n from ok group by room_id) c
               where r.id = c.room_id
               returning r.id, r.last_rev - c.n as first_rev_before
           ), erased as (
               update messages m
               set body = '', metadata = '{}', deleted_at = now(),
                   rev = r.first_rev_before + o.rank
               from ok o join reserved r on r.id = o.room_id
               where m.id = o.id
               returning m.id
           ), unreacted as (
               delete from reactions x using ok where x.message_id = ok.id
           ), unmentioned as (
               delete from mentions x using ok where x.message_id = ok.id
           )
           select o.ord as "ord!", 'ok' as "verdict!", r.first_rev_before + o.rank as "rev?",
                  o.seq as "seq?"
           from ok o join reserved r on r.id = o.room_id
           union all
           select j.ord, j.verdict, null, j.seq
           from judged j where j.verdict <> 'ok'
           order by 1"#,
        &ids,
        &rooms,
        &actors,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ChangeOutcome::from_row(&r.verdict, r.rev, r.seq, Vec::new()))
        .collect())
}

/// Deletes up to `limit` of the oldest messages of a room of `ws`; returns their ids. Deleting a big room's messages this way, before the room row, keeps
/// the room's row lock (which the writer's batches take) to a short final transaction.
pub async fn purge_some(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"delete from messages
           where id in (select id from messages
                        where room_id = $1 and workspace_id = $3 order by seq limit $2)
           returning id"#,
        room_id,
        limit,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
}

/// The ids of a room's messages (what is left of them when the room row goes).
pub async fn ids_in_room(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "select id from messages where room_id = $1 and workspace_id = $2",
        room_id,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
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
            reply_to: None,
            thread_root_id: None,
            metadata: JsonObject::new(),
            mentions: Vec::new(),
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
