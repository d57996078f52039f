//! The `workspaces` table: the tenants themselves.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// A workspace as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Inserts a workspace; a taken slug fails on `workspaces_slug_key` (-> 409).
pub async fn create(db: impl PgExecutor<'_>, slug: &str, name: &str) -> sqlx::Result<Workspace> {
    sqlx::query_as!(
        Workspace,
        r#"insert into workspaces (id, slug, name) values ($1, $2, $3)
           returning id as "id: WorkspaceId", slug, name, created_at"#,
        Uuid::now_v7(),
        slug,
        name,
    )
    .fetch_one(db)
    .await
}

pub async fn find(db: impl PgExecutor<'_>, ws: WorkspaceId) -> sqlx::Result<Option<Workspace>> {
    sqlx::query_as!(
        Workspace,
        r#"select id as "id: WorkspaceId", slug, name, created_at from workspaces where id = $1"#,
        ws.as_uuid(),
    )
    .fetch_optional(db)
    .await
}

/// The id of the workspace with this slug, if there is one.
pub async fn id_by_slug(db: impl PgExecutor<'_>, slug: &str) -> sqlx::Result<Option<WorkspaceId>> {
    sqlx::query_scalar!(
        r#"select id as "id: WorkspaceId" from workspaces where slug = $1"#,
        slug,
    )
    .fetch_optional(db)
    .await
}

/// Every workspace, oldest first.
pub async fn list(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Workspace>> {
    sqlx::query_as!(
        Workspace,
        r#"select id as "id: WorkspaceId", slug, name, created_at from workspaces
           order by created_at, id"#,
    )
    .fetch_all(db)
    .await
}
