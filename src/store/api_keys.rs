//! The `api_keys` table: keys of the server API, stored as digests of their secrets.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// A key as listed: never its secret.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A key about to be stored.
pub struct NewKey<'a> {
    /// `None`: a platform key.
    pub workspace: Option<WorkspaceId>,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: &'a [u8],
    pub created_by: Option<Uuid>,
}

pub async fn create(db: impl PgExecutor<'_>, new: NewKey<'_>) -> sqlx::Result<ApiKey> {
    sqlx::query_as!(
        ApiKey,
        r#"insert into api_keys (id, workspace_id, name, prefix, secret_hash, created_by)
           values ($1, $2, $3, $4, $5, $6)
           returning id, name, prefix, created_at, last_used_at, revoked_at"#,
        Uuid::now_v7(),
        new.workspace.map(WorkspaceId::as_uuid),
        new.name,
        new.prefix,
        new.secret_hash,
        new.created_by,
    )
    .fetch_one(db)
    .await
}

/// What a valid key lets its holder do.
#[derive(Clone, Copy, Debug)]
pub struct KeyScope {
    pub id: Uuid,
    /// `None`: a platform key.
    pub workspace: Option<WorkspaceId>,
}

/// The unrevoked key whose secret has this digest, counting the use (one statement: the count
/// and `last_used_at` move with every request the key authenticates).
pub async fn use_key(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8],
) -> sqlx::Result<Option<KeyScope>> {
    let row = sqlx::query!(
        r#"update api_keys set last_used_at = now(), uses = uses + 1
           where secret_hash = $1 and revoked_at is null
           returning id, workspace_id"#,
        secret_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| KeyScope {
        id: r.id,
        workspace: r.workspace_id.map(WorkspaceId::from),
    }))
}

/// A workspace's keys, revoked ones included, newest first.
pub async fn list(db: impl PgExecutor<'_>, ws: WorkspaceId) -> sqlx::Result<Vec<ApiKey>> {
    sqlx::query_as!(
        ApiKey,
        r#"select id, name, prefix, created_at, last_used_at, revoked_at
           from api_keys where workspace_id = $1
           order by created_at desc, id desc"#,
        ws.as_uuid(),
    )
    .fetch_all(db)
    .await
}

/// Revokes a key of `ws`. `None`: no such key there; `Some(false)`: it was revoked already.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    id: Uuid,
) -> sqlx::Result<Option<(ApiKey, bool)>> {
    let row = sqlx::query!(
        r#"with target as (
               select id, revoked_at as was_revoked from api_keys
               where id = $1 and workspace_id = $2
               for update
           )
           update api_keys k set revoked_at = coalesce(k.revoked_at, now())
           from target t where k.id = t.id
           returning k.id, k.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at,
                     t.was_revoked is null as "changed!""#,
        id,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        (
            ApiKey {
                id: r.id,
                name: r.name,
                prefix: r.prefix,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                revoked_at: r.revoked_at,
            },
            r.changed,
        )
    }))
}
