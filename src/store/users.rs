//! The `users` table.

use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use sqlx::types::Json;

use crate::{store::messages::JsonObject, workspaces::WorkspaceId};

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub username: String,
    pub display_name: String,
    pub is_admin: bool,
    /// The product's own id for the user (server API), if it has one.
    pub external_id: Option<String>,
    pub is_bot: bool,
    /// The product's own data about the user (server API), up to 4 KiB.
    #[schema(value_type = Object)]
    pub metadata: Json<JsonObject>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A user as other objects embed it (message senders, members, presence).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
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
    /// `None`: a user provisioned without a password, who cannot log in with one.
    pub password_hash: Option<String>,
    pub disabled: bool,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    /// `None`: no password login (a user provisioned by the server API).
    pub password_hash: Option<&'a str>,
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
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name, is_admin,
                     external_id, is_bot, metadata as "metadata: Json<JsonObject>", created_at"#,
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
                  is_admin, external_id, is_bot, metadata as "metadata: Json<JsonObject>", created_at,
                  password_hash, disabled_at is not null as "disabled!"
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
            external_id: r.external_id,
            is_bot: r.is_bot,
            metadata: r.metadata,
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
                  is_admin, external_id, is_bot, metadata as "metadata: Json<JsonObject>", created_at
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
    let hash = sqlx::query_scalar!(
        "select password_hash from users where workspace_id = $1 and id = $2",
        ws.as_uuid(),
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(hash.flatten())
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
                  is_admin, external_id, is_bot, metadata as "metadata: Json<JsonObject>", created_at
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
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name, is_admin,
                     external_id, is_bot, metadata as "metadata: Json<JsonObject>", created_at"#,
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
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name, is_admin,
                     external_id, is_bot, metadata as "metadata: Json<JsonObject>", created_at"#,
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

/// What the server API sets on a user it provisions; `None` fields keep their value on an
/// update (and take their default on a creation).
pub struct Provisioned<'a> {
    pub external_id: &'a str,
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub is_admin: Option<bool>,
    pub is_bot: Option<bool>,
    pub metadata: Option<&'a JsonObject>,
}

/// Creates the user of `ws` with this external id, or updates it: one statement, so two
/// requests for the same id at once make one user. Returns it and whether it was created. A
/// username taken by another user fails on `users_username_key` (-> 409).
pub async fn provision(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    p: Provisioned<'_>,
) -> sqlx::Result<(User, bool)> {
    let r = sqlx::query!(
        r#"insert into users (id, workspace_id, external_id, username, display_name, is_admin,
                              is_bot, metadata)
           values ($1, $2, $3, $4, coalesce($5, $4), coalesce($6, false), coalesce($7, false),
                   coalesce($8::jsonb, '{}'))
           on conflict (workspace_id, external_id) where external_id is not null do update set
               username = excluded.username,
               display_name = coalesce($5, users.display_name),
               is_admin = coalesce($6, users.is_admin),
               is_bot = coalesce($7, users.is_bot),
               metadata = coalesce($8::jsonb, users.metadata)
           returning id, workspace_id as "workspace_id: WorkspaceId", username, display_name,
                     is_admin, external_id, is_bot, metadata as "metadata: Json<JsonObject>",
                     created_at, xmax = 0 as "created!""#,
        Uuid::now_v7(),
        ws.as_uuid(),
        p.external_id,
        p.username,
        p.display_name,
        p.is_admin,
        p.is_bot,
        p.metadata.map(|m| Json(m)) as Option<Json<&JsonObject>>,
    )
    .fetch_one(db)
    .await?;
    let user = User {
        id: r.id,
        workspace_id: r.workspace_id,
        username: r.username,
        display_name: r.display_name,
        is_admin: r.is_admin,
        external_id: r.external_id,
        is_bot: r.is_bot,
        metadata: r.metadata,
        created_at: r.created_at,
    };
    Ok((user, r.created))
}

/// The user of `ws` with this external id, and whether it is disabled.
pub async fn find_by_external_id(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    external_id: &str,
) -> sqlx::Result<Option<(User, bool)>> {
    let r = sqlx::query!(
        r#"select id, workspace_id as "workspace_id: WorkspaceId", username, display_name,
                  is_admin, external_id, is_bot, metadata as "metadata: Json<JsonObject>",
                  created_at, disabled_at is not null as "disabled!"
           from users where workspace_id = $1 and external_id = $2"#,
        ws.as_uuid(),
        external_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(r.map(|r| {
        let user = User {
            id: r.id,
            workspace_id: r.workspace_id,
            username: r.username,
            display_name: r.display_name,
            is_admin: r.is_admin,
            external_id: r.external_id,
            is_bot: r.is_bot,
            metadata: r.metadata,
            created_at: r.created_at,
        };
        (user, r.disabled)
    }))
}
