//! The `sessions` and `rotated_refresh_tokens` tables: logins and their refresh-token chains.

use sqlx::{types::Json, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::User;
use crate::{store::messages::JsonObject, workspaces::WorkspaceId};

/// Why a session ended; the values of `sessions.revoked_reason`.
#[derive(Clone, Copy, Debug, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    PasswordChanged,
    RefreshTokenReused,
    UserDisabled,
}

pub async fn create(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    user_id: Uuid,
    refresh_token_hash: &[u8],
    expires_at: OffsetDateTime,
    user_agent: Option<&str>,
) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query!(
        r#"insert into sessions (id, workspace_id, user_id, refresh_token_hash, expires_at, user_agent)
           values ($1, $2, $3, $4, $5, $6)"#,
        id,
        ws.as_uuid(),
        user_id,
        refresh_token_hash,
        expires_at,
        user_agent,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// The user of a live session of an enabled account, if `session_id` is one, belongs to
/// `user_id` and to the workspace `ws` (the token's `wid`). This runs on every authenticated
/// request.
pub async fn live_user(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    session_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"select u.id, u.workspace_id as "workspace_id: WorkspaceId", u.username, u.display_name,
                  u.is_admin, u.external_id, u.is_bot, u.metadata as "metadata: Json<JsonObject>",
                  u.created_at
           from sessions s join users u on u.workspace_id = s.workspace_id and u.id = s.user_id
           where s.id = $1 and s.user_id = $2 and s.workspace_id = $3
             and s.revoked_at is null and u.disabled_at is null"#,
        session_id,
        user_id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}

/// What became of a presented refresh token.
pub enum Rotation {
    /// It was current: it is now retired and `new_hash` is current.
    Rotated { session_id: Uuid, user: User },
    /// It had been rotated away already: someone is replaying it.
    Reused {
        ws: WorkspaceId,
        session_id: Uuid,
        user_id: Uuid,
    },
    /// Unknown, expired, or its session or user is no longer live.
    Refused,
}

/// Exchanges a current refresh token for a new one, atomically: of two requests racing with the
/// same token, one rotates it and the other finds it retired (and so revokes the session, as a
/// replay would). Not scoped by a workspace: the token itself names the session, and so its
/// workspace, which comes back with the user.
pub async fn rotate(
    tx: &mut sqlx::PgConnection,
    old_hash: &[u8],
    new_hash: &[u8],
    expires_at: OffsetDateTime,
    max_age: std::time::Duration,
) -> sqlx::Result<Rotation> {
    // A rotation extends the session up to `max_age` after its login, never beyond: a stolen
    // refresh token kept fresh cannot last forever.
    let rotated = sqlx::query!(
        r#"update sessions s set refresh_token_hash = $2, refreshed_at = now(),
               expires_at = least($3, s.created_at + make_interval(secs => $4))
           from users u
           where s.refresh_token_hash = $1 and u.workspace_id = s.workspace_id and u.id = s.user_id
             and s.revoked_at is null and s.expires_at > now() and u.disabled_at is null
           returning s.id, u.id as user_id, u.workspace_id as "workspace_id: WorkspaceId",
                     u.username, u.display_name, u.is_admin, u.external_id, u.is_bot,
                     u.metadata as "metadata: Json<JsonObject>", u.created_at"#,
        old_hash,
        new_hash,
        expires_at,
        max_age.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = rotated {
        sqlx::query!(
            "insert into rotated_refresh_tokens (token_hash, session_id) values ($1, $2)",
            old_hash,
            r.id,
        )
        .execute(&mut *tx)
        .await?;
        return Ok(Rotation::Rotated {
            session_id: r.id,
            user: User {
                id: r.user_id,
                workspace_id: r.workspace_id,
                username: r.username,
                display_name: r.display_name,
                is_admin: r.is_admin,
                external_id: r.external_id,
                is_bot: r.is_bot,
                metadata: r.metadata,
                created_at: r.created_at,
            },
        });
    }
    let reused = sqlx::query!(
        r#"select s.id, s.user_id, s.workspace_id as "workspace_id: WorkspaceId"
           from rotated_refresh_tokens r join sessions s on s.id = r.session_id
           where r.token_hash = $1"#,
        old_hash,
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match reused {
        Some(r) => Rotation::Reused {
            ws: r.workspace_id,
            session_id: r.id,
            user_id: r.user_id,
        },
        None => Rotation::Refused,
    })
}

/// Ends one session of `ws`. Returns whether it was live until now.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    session_id: Uuid,
    reason: RevokeReason,
) -> sqlx::Result<bool> {
    let result = sqlx::query!(
        r#"update sessions set revoked_at = now(), revoked_reason = $2
           where id = $1 and workspace_id = $3 and revoked_at is null"#,
        session_id,
        reason as RevokeReason,
        ws.as_uuid(),
    )
    .execute(db)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Ends every live session of a user of `ws` but `keep`; returns the ids of those ended.
pub async fn revoke_all_of_user(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: RevokeReason,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"update sessions set revoked_at = now(), revoked_reason = $3
           where workspace_id = $4 and user_id = $1 and revoked_at is null
             and id is distinct from $2
           returning id"#,
        user_id,
        keep,
        reason as RevokeReason,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
}

/// Deletes up to `limit` sessions that were revoked, or expired, more than `kept` ago (their
/// rotated refresh tokens go with them). Returns how many. Housekeeping for the whole
/// deployment, so across workspaces: it acts for no caller.
pub async fn purge_ended(
    db: impl PgExecutor<'_>,
    kept: std::time::Duration,
    limit: i64,
) -> sqlx::Result<u64> {
    let result = sqlx::query!(
        r#"delete from sessions where id in (
               select id from sessions
               where revoked_at < now() - make_interval(secs => $1)
                  or expires_at < now() - make_interval(secs => $1)
               limit $2
               for update skip locked
           )"#,
        kept.as_secs_f64(),
        limit,
    )
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

/// Of these sessions, the ones that are no longer live: revoked, or their user disabled (or
/// gone). Used to re-check the sessions of live sockets, whose handshake was the last check;
/// across workspaces, as a node's sockets are. Session ids are global, so none can be mistaken
/// for another workspace's.
pub async fn dead_among(db: impl PgExecutor<'_>, sessions: &[Uuid]) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"select t.id as "id!"
           from unnest($1::uuid[]) as t(id)
           where not exists (
               select from sessions s
               join users u on u.workspace_id = s.workspace_id and u.id = s.user_id
               where s.id = t.id and s.revoked_at is null and u.disabled_at is null
           )"#,
        sessions,
    )
    .fetch_all(db)
    .await
}
