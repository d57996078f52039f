//! The `rooms` table.

use serde::{Deserialize, Serialize};
use sqlx::{types::Json, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{members::Role, messages::JsonObject};
use crate::workspaces::WorkspaceId;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
    Direct,
}

/// A room as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Room {
    pub id: Uuid,
    pub name: String,
    pub visibility: Visibility,
    pub topic: Option<String>,
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub last_seq: i64,
    /// The rev of the room's newest change (see `messages.rev`).
    pub last_rev: i64,
    /// The app's own data about the room, up to 4 KiB.
    #[schema(value_type = Object)]
    pub metadata: Json<JsonObject>,
}

/// A room as events name it: `{id, name}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomRef {
    pub id: Uuid,
    pub name: String,
}

impl From<&Room> for RoomRef {
    fn from(r: &Room) -> Self {
        RoomRef {
            id: r.id,
            name: r.name.clone(),
        }
    }
}

/// A room as `/api/me/rooms` shows it: with the caller's role and read position.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyRoom {
    #[serde(flatten)]
    pub room: Room,
    pub role: Role,
    pub last_read_seq: i64,
    pub unread: i64,
    /// Mentions of the caller in messages after `last_read_seq`.
    pub unread_mentions: i64,
}

/// A room and the caller's role in it (`None`: not a member).
#[derive(Clone, Debug)]
pub struct RoomAccess {
    pub room: Room,
    pub role: Option<Role>,
}

/// Inserts a room into `ws`; a name taken there fails on `rooms_name_key` (-> 409).
pub async fn create(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    name: &str,
    visibility: Visibility,
    topic: Option<&str>,
    metadata: &JsonObject,
    created_by: Option<Uuid>,
) -> sqlx::Result<Room> {
    sqlx::query_as!(
        Room,
        r#"insert into rooms (id, workspace_id, name, visibility, topic, created_by, metadata)
           values ($1, $6, $2, $3, $4, $5, $7)
           returning id, name, visibility as "visibility: Visibility", topic, created_by, created_at, last_seq, last_rev,
                     metadata as "metadata: Json<JsonObject>""#,
        Uuid::now_v7(),
        name,
        visibility as Visibility,
        topic,
        created_by,
        ws.as_uuid(),
        Json(metadata) as _,
    )
    .fetch_one(db)
    .await
}

/// Makes sure each named public room exists in `ws` (`DEFAULT_ROOMS`); existing rooms, of
/// any visibility, are left alone.
pub async fn ensure_public(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    names: &[String],
) -> sqlx::Result<Vec<Room>> {
    let ids: Vec<Uuid> = names.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query_as!(
        Room,
        r#"insert into rooms (id, workspace_id, name, visibility)
           select id, $3, name, 'public' from unnest($1::uuid[], $2::text[]) as t(id, name)
           on conflict (workspace_id, name) do nothing
           returning id, name, visibility as "visibility: Visibility", topic, created_by,
                     created_at, last_seq, last_rev, metadata as "metadata: Json<JsonObject>""#,
        &ids,
        names,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
}

/// Every public room of `ws`, by name.
pub async fn list_public(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Room>> {
    sqlx::query_as!(
        Room,
        r#"select id, name, visibility as "visibility: Visibility", topic, created_by, created_at, last_seq, last_rev,
                  metadata as "metadata: Json<JsonObject>"
           from rooms
           where workspace_id = $3 and visibility = 'public' and ($1::text is null or name > $1)
           order by name limit $2"#,
        after,
        limit,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
}

/// Every room of `ws` that `user_id` is a member of, by name.
pub async fn list_for_member(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    user_id: Uuid,
) -> sqlx::Result<Vec<MyRoom>> {
    let rows = sqlx::query!(
        r#"select r.id, r.name, r.visibility as "visibility: Visibility", r.topic, r.created_by,
                  r.created_at, r.last_seq, r.last_rev, r.metadata as "metadata: Json<JsonObject>",
                  m.role as "role: Role", m.last_read_seq,
                  (select count(*) from mentions mn
                   where mn.user_id = $1 and mn.room_id = r.id and mn.seq > m.last_read_seq)
                      as "unread_mentions!"
           from room_members m join rooms r on r.workspace_id = m.workspace_id and r.id = m.room_id
           where m.workspace_id = $2 and m.user_id = $1 order by r.name"#,
        user_id,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| MyRoom {
            unread: (r.last_seq - r.last_read_seq).max(0),
            role: r.role,
            last_read_seq: r.last_read_seq,
            unread_mentions: r.unread_mentions,
            room: Room {
                id: r.id,
                name: r.name,
                visibility: r.visibility,
                topic: r.topic,
                created_by: r.created_by,
                created_at: r.created_at,
                last_seq: r.last_seq,
                last_rev: r.last_rev,
                metadata: r.metadata,
            },
        })
        .collect())
}

/// A room row with the caller's role beside it, as the access checks read it.
struct RoomWithRole {
    id: Uuid,
    name: String,
    visibility: Visibility,
    topic: Option<String>,
    created_by: Option<Uuid>,
    created_at: OffsetDateTime,
    last_seq: i64,
    last_rev: i64,
    metadata: Json<JsonObject>,
    role: Option<Role>,
}

impl From<RoomWithRole> for RoomAccess {
    fn from(r: RoomWithRole) -> Self {
        RoomAccess {
            role: r.role,
            room: Room {
                id: r.id,
                name: r.name,
                visibility: r.visibility,
                topic: r.topic,
                created_by: r.created_by,
                created_at: r.created_at,
                last_seq: r.last_seq,
                last_rev: r.last_rev,
                metadata: r.metadata,
            },
        }
    }
}

/// A room of `ws` by id with `user_id`'s role in it: one query, for every access check. A room
/// of another workspace is not found.
pub async fn access_by_id(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<RoomAccess>> {
    let row = sqlx::query_as!(
        RoomWithRole,
        r#"select r.id, r.name, r.visibility as "visibility: Visibility", r.topic, r.created_by,
                  r.created_at, r.last_seq, r.last_rev, r.metadata as "metadata: Json<JsonObject>",
                  m.role as "role?: Role"
           from rooms r
           left join room_members m
                  on m.workspace_id = r.workspace_id and m.room_id = r.id and m.user_id = $2
           where r.workspace_id = $3 and r.id = $1"#,
        room_id,
        user_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(RoomAccess::from))
}

/// As `access_by_id`, by name (names are unique per workspace).
pub async fn access_by_name(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    name: &str,
    user_id: Uuid,
) -> sqlx::Result<Option<RoomAccess>> {
    let row = sqlx::query_as!(
        RoomWithRole,
        r#"select r.id, r.name, r.visibility as "visibility: Visibility", r.topic, r.created_by,
                  r.created_at, r.last_seq, r.last_rev, r.metadata as "metadata: Json<JsonObject>",
                  m.role as "role?: Role"
           from rooms r
           left join room_members m
                  on m.workspace_id = r.workspace_id and m.room_id = r.id and m.user_id = $2
           where r.workspace_id = $3 and r.name = $1"#,
        name,
        user_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(RoomAccess::from))
}

pub async fn update(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    topic: Option<Option<&str>>,
    metadata: Option<&JsonObject>,
) -> sqlx::Result<Room> {
    sqlx::query_as!(
        Room,
        r#"update rooms
           set topic = case when $4 then $2 else topic end,
               metadata = coalesce($5, metadata)
           where id = $1 and workspace_id = $3
           returning id, name, visibility as "visibility: Visibility", topic, created_by, created_at, last_seq, last_rev,
                     metadata as "metadata: Json<JsonObject>""#,
        room_id,
        topic.flatten(),
        ws.as_uuid(),
        topic.is_some(),
        metadata.map(Json) as _,
    )
    .fetch_one(db)
    .await
}

/// Locks rooms by primary key, in id order, for the rest of the caller's transaction: the
/// message writer's first statement when a batch holds more than new messages, so that its
/// statements (and every other node's) change each room's revs and reactions one at a time,
/// and no two writers can deadlock.
pub async fn lock(tx: &mut sqlx::PgConnection, room_ids: &[Uuid]) -> sqlx::Result<()> {
    let mut ids = room_ids.to_vec();
    ids.sort();
    ids.dedup();
    sqlx::query!(
        "select id from rooms where id = any($1) order by id for update",
        &ids
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(())
}

/// Rooms by id with their workspaces (the writer's events name each change's room as it stands).
pub async fn with_workspace(
    db: impl PgExecutor<'_>,
    room_ids: &[Uuid],
) -> sqlx::Result<Vec<(WorkspaceId, Room)>> {
    let rows = sqlx::query!(
        r#"select r.workspace_id as "workspace_id: WorkspaceId", r.id, r.name,
                  r.visibility as "visibility: Visibility", r.topic, r.created_by, r.created_at,
                  r.last_seq, r.last_rev, r.metadata as "metadata: Json<JsonObject>"
           from rooms r where r.id = any($1)"#,
        room_ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let room = Room {
                id: r.id,
                name: r.name,
                visibility: r.visibility,
                topic: r.topic,
                created_by: r.created_by,
                created_at: r.created_at,
                last_seq: r.last_seq,
                last_rev: r.last_rev,
                metadata: r.metadata,
            };
            (r.workspace_id, room)
        })
        .collect())
}

/// Deletes a room of `ws` with its members and messages. Returns whether it existed.
pub async fn delete(db: impl PgExecutor<'_>, ws: WorkspaceId, room_id: Uuid) -> sqlx::Result<bool> {
    let result = sqlx::query!(
        "delete from rooms where id = $1 and workspace_id = $2",
        room_id,
        ws.as_uuid()
    )
    .execute(db)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// The direct room of `ws` named `name`, created if missing. Safe under concurrency: of two
/// transactions creating it at once, the second waits on the unique name and then finds the
/// first one's room.
pub async fn get_or_create_direct(
    tx: &mut sqlx::PgConnection,
    ws: WorkspaceId,
    name: &str,
    created_by: Uuid,
) -> sqlx::Result<(Room, bool)> {
    let inserted = sqlx::query!(
        r#"insert into rooms (id, workspace_id, name, visibility, created_by)
           values ($1, $4, $2, 'direct', $3)
           on conflict (workspace_id, name) do nothing"#,
        Uuid::now_v7(),
        name,
        created_by,
        ws.as_uuid(),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    let room = sqlx::query_as!(
        Room,
        r#"select id, name, visibility as "visibility: Visibility", topic, created_by, created_at, last_seq, last_rev,
                  metadata as "metadata: Json<JsonObject>"
           from rooms where workspace_id = $2 and name = $1"#,
        name,
        ws.as_uuid(),
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((room, inserted))
}
