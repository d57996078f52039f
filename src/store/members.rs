//! The `room_members` table: the ACL, roles and read positions.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::UserRef;
use crate::workspaces::WorkspaceId;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Moderator,
    Member,
}

impl Role {
    /// May add and remove members and change the topic.
    pub fn manages(self) -> bool {
        matches!(self, Role::Owner | Role::Moderator)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user: UserRef,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// A member row joined with its user.
struct MemberRow {
    id: Uuid,
    username: String,
    display_name: String,
    role: Role,
    added_at: OffsetDateTime,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Member {
            user: UserRef {
                id: r.id,
                username: r.username,
                display_name: r.display_name,
            },
            role: r.role,
            added_at: r.added_at,
        }
    }
}

pub async fn list(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
) -> sqlx::Result<Vec<Member>> {
    let rows = sqlx::query_as!(
        MemberRow,
        r#"select u.id, u.username, u.display_name, m.role as "role: Role", m.added_at
           from room_members m join users u on u.workspace_id = m.workspace_id and u.id = m.user_id
           where m.workspace_id = $2 and m.room_id = $1
           order by case m.role when 'owner' then 0 when 'moderator' then 1 else 2 end, lower(u.username)"#,
        room_id,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Member::from).collect())
}

pub async fn role(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<Role>> {
    sqlx::query_scalar!(
        r#"select role as "role: Role" from room_members
           where workspace_id = $3 and room_id = $1 and user_id = $2"#,
        room_id,
        user_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}

/// Adds a member or changes its role (never touching an owner row). Returns the member. The
/// room and the user must both be of `ws` (the foreign keys refuse anything else).
pub async fn upsert(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    user_id: Uuid,
    role: Role,
    added_by: Option<Uuid>,
) -> sqlx::Result<Member> {
    let row = sqlx::query_as!(
        MemberRow,
        r#"with upserted as (
               insert into room_members (workspace_id, room_id, user_id, role, added_by)
               values ($5, $1, $2, $3, $4)
               on conflict (room_id, user_id) do update set role = excluded.role
               where room_members.role <> 'owner'
               returning user_id, role, added_at
           )
           select u.id, u.username, u.display_name, up.role as "role: Role", up.added_at
           from upserted up join users u on u.workspace_id = $5 and u.id = up.user_id"#,
        room_id,
        user_id,
        role as Role,
        added_by,
        ws.as_uuid(),
    )
    .fetch_one(db)
    .await?;
    Ok(row.into())
}

/// Adds the given users as plain members where they are not members yet; returns those added,
/// with when.
pub async fn add_missing(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    user_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, OffsetDateTime)>> {
    let added = sqlx::query!(
        r#"insert into room_members (workspace_id, room_id, user_id, role)
           select $3, $1, unnest($2::uuid[]), 'member'
           on conflict (room_id, user_id) do nothing
           returning user_id, added_at"#,
        room_id,
        user_ids,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await?;
    Ok(added.into_iter().map(|r| (r.user_id, r.added_at)).collect())
}

/// Removes a member; returns when they had been added (`None`: there was no such member).
pub async fn remove(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<OffsetDateTime>> {
    sqlx::query_scalar!(
        "delete from room_members where workspace_id = $3 and room_id = $1 and user_id = $2
         returning added_at",
        room_id,
        user_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}

/// Moves a member's read position forward to `seq`, capped at the room's `last_seq`. Returns the
/// stored position and whether it moved, or `None` if the user is not a member.
pub async fn mark_read(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    user_id: Uuid,
    seq: i64,
) -> sqlx::Result<Option<(i64, bool)>> {
    let row = sqlx::query!(
        r#"with target as (
               select m.last_read_seq as old, greatest(m.last_read_seq, least($3, r.last_seq)) as new
               from room_members m join rooms r on r.workspace_id = m.workspace_id and r.id = m.room_id
               where m.workspace_id = $4 and m.room_id = $1 and m.user_id = $2
               for update of m
           ), updated as (
               update room_members m set last_read_seq = t.new from target t
               where m.room_id = $1 and m.user_id = $2 and t.new > t.old
               returning m.last_read_seq
           )
           select t.new as "stored!", (t.new > t.old) as "moved!" from target t"#,
        room_id,
        user_id,
        seq,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.stored, r.moved)))
}

/// A socket's room that its user may no longer enter.
pub struct Lost {
    pub room_id: Uuid,
    pub user_id: Uuid,
    /// False when the room itself is gone.
    pub room_exists: bool,
}

/// Of these (room, user) pairs, the ones whose user may no longer enter the room: the room is
/// gone, or it is private or direct and the user is not on its ACL. Used to re-check the rooms
/// live sockets are in, across workspaces (room and user ids are global, and a member row's
/// room and user are of one workspace by its foreign keys).
pub async fn lost_among(
    db: impl PgExecutor<'_>,
    rooms: &[Uuid],
    users: &[Uuid],
) -> sqlx::Result<Vec<Lost>> {
    sqlx::query_as!(
        Lost,
        r#"select t.room_id as "room_id!", t.user_id as "user_id!",
                  (r.id is not null) as "room_exists!"
           from unnest($1::uuid[], $2::uuid[]) as t(room_id, user_id)
           left join rooms r on r.id = t.room_id
           where r.id is null
              or (r.visibility <> 'public'
                  and not exists (select from room_members m
                                  where m.room_id = t.room_id and m.user_id = t.user_id))"#,
        rooms,
        users,
    )
    .fetch_all(db)
    .await
}
