//! The `users` table.

use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub username: String,
    pub display_name: String,
    pub is_admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A user as other objects embed it (message senders, members, presence).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRef {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
}

impl From<&User> for UserRef {
    fn from(u: &User) -> Self {
        UserRef {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

/// A user as login needs it.
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub disabled: bool,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
}

/// Inserts a user into `ws`; a username taken there fails on `users_username_key` (-> 409).
pub async fn create(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    new: NewUser<'_>,
) -> sqlx::Result<User> {
    sqlx::query_as!(
        User,
        r#"insert into users (id, workspace_id, username, display_name, password_hash, is_admin)
           values ($1, $6, $2, $3, $4, $5)
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name, is_admin, created_at"#,
        Uuid::now_v7(),
        new.username,
        new.display_name,
        new.password_hash,
        new.is_admin,
        ws.as_uuid(),
    )
    .fetch_one(db)
    .await
}

/// Looks a user of `ws` up by username, whatever its case.
pub async fn credentials(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    username: &str,
) -> sqlx::Result<Option<Credentials>> {
    let row = sqlx::query!(
        r#"select id, workspace_id as "workspace_id: WorkspaceId", username, display_name,
                  is_admin, created_at, password_hash, disabled_at is not null as "disabled!"
           from users where workspace_id = $1 and lower(username) = lower($2)"#,
        ws.as_uuid(),
        username,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Credentials {
        user: User {
            id: r.id,
            workspace_id: r.workspace_id,
            username: r.username,
            display_name: r.display_name,
            is_admin: r.is_admin,
            created_at: r.created_at,
        },
        password_hash: r.password_hash,
        disabled: r.disabled,
    }))
}

/// A user of `ws` by username, whatever its case (without the credentials: for naming a user).
pub async fn find_by_username(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    username: &str,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"select id, workspace_id as "workspace_id: WorkspaceId", username, display_name,
                  is_admin, created_at
           from users where workspace_id = $1 and lower(username) = lower($2)"#,
        ws.as_uuid(),
        username,
    )
    .fetch_optional(db)
    .await
}

pub async fn password_hash(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select password_hash from users where workspace_id = $1 and id = $2",
        ws.as_uuid(),
        id
    )
    .fetch_optional(db)
    .await
}

/// A user of `ws` by id; a user of another workspace is not found.
pub async fn find(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"select id, workspace_id as "workspace_id: WorkspaceId", username, display_name,
                  is_admin, created_at
           from users where workspace_id = $1 and id = $2"#,
        ws.as_uuid(),
        id,
    )
    .fetch_optional(db)
    .await
}

pub async fn set_display_name(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
    display_name: &str,
) -> sqlx::Result<User> {
    sqlx::query_as!(
        User,
        r#"update users set display_name = $2 where id = $1 and workspace_id = $3
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name, is_admin, created_at"#,
        id,
        display_name,
        ws.as_uuid(),
    )
    .fetch_one(db)
    .await
}

pub async fn set_password_hash(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
    password_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update users set password_hash = $3 where workspace_id = $1 and id = $2",
        ws.as_uuid(),
        id,
        password_hash
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Updates the password and admin flag of an existing user of `ws` (used by `huddle user
/// create` when the user exists already). Returns `None` when there is no such username there.
pub async fn reset(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    username: &str,
    password_hash: &str,
    is_admin: bool,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"update users set password_hash = $2, is_admin = is_admin or $3
           where workspace_id = $4 and lower(username) = lower($1)
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name, is_admin, created_at"#,
        username,
        password_hash,
        is_admin,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}

/// Disables or enables a user of `ws`. Returns `None` when there is no such user there, else
/// whether the state changed.
pub async fn set_disabled(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
    disabled: bool,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar!(
        r#"with target as (select id, disabled_at is not null as was from users where id = $1 and workspace_id = $3 for update),
                changed as (
                    update users u set disabled_at = case when $2 then now() else null end
                    from target t where u.id = t.id and t.was <> $2
                    returning u.id
                )
           select (select count(*) from changed) > 0 as "changed!" from target"#,
        id,
        disabled,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}
