//! Workspaces (tenants): one deployment, many fully isolated customer organisations.
//!
//! The isolation rule lives in two places that back each other up. In the code, the caller's
//! workspace is part of its identity (`AuthUser`, from the token's `wid` checked against the
//! session), and every store function that reads or writes tenant data takes a `WorkspaceId`
//! and filters or inserts with it, so an id or a name from another workspace is simply not
//! found. In the schema, every reference between tenant rows is a composite foreign key
//! `(workspace_id, id)`, so a row mixing two workspaces cannot be stored whatever the code does.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    app::AppState,
    error::{AppError, AppResult},
    events,
    store::{self, workspaces::Workspace},
    validate,
};

/// A workspace's id. A type of its own so that a workspace is never passed where a user or room
/// id is expected, nor the other way round.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct WorkspaceId(Uuid);

impl WorkspaceId {
    /// The workspace every v1 client lands in (fixed by migration 0005, which moved every v1
    /// row into it).
    pub const DEFAULT: WorkspaceId = WorkspaceId(Uuid::from_u128(1));

    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for WorkspaceId {
    fn from(id: Uuid) -> Self {
        WorkspaceId(id)
    }
}

impl std::fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The slug register and login fall back to when a client names no workspace.
pub const DEFAULT_SLUG: &str = "default";

/// The workspace a client named (`None`: `default`), if it exists.
pub async fn resolve(state: &AppState, slug: Option<&str>) -> AppResult<Option<WorkspaceId>> {
    let slug = slug.unwrap_or(DEFAULT_SLUG);
    if slug == DEFAULT_SLUG {
        return Ok(Some(WorkspaceId::DEFAULT));
    }
    // A slug that cannot exist needs no round trip.
    if !validate::is_workspace_slug(slug) {
        return Ok(None);
    }
    Ok(store::workspaces::id_by_slug(&state.db, slug).await?)
}

/// As `resolve`, for requests where an unknown workspace is `404 not_found`.
pub async fn existing(state: &AppState, slug: Option<&str>) -> AppResult<WorkspaceId> {
    resolve(state, slug)
        .await?
        .ok_or_else(|| AppError::NotFound("no such workspace".into()))
}

/// The caller's own workspace.
pub async fn get(state: &AppState, ws: WorkspaceId) -> AppResult<Workspace> {
    store::workspaces::find(&state.db, ws)
        .await?
        .ok_or_else(AppError::not_found)
}

/// Every workspace (for platform keys).
pub async fn list(state: &AppState) -> AppResult<Vec<Workspace>> {
    Ok(store::workspaces::list(&state.db).await?)
}

/// Creates a workspace with its `DEFAULT_ROOMS`, inside the caller's transaction, so that a
/// workspace never exists without them. A taken slug is `409 conflict`.
pub async fn create_in(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    slug: &str,
    name: &str,
) -> AppResult<Workspace> {
    validate::workspace_slug("slug", slug)?;
    let name = validate::workspace_name("name", name)?;
    let workspace = store::workspaces::create(&mut *tx, slug, &name).await?;
    let rooms =
        store::rooms::ensure_public(&mut *tx, workspace.id, &state.config.default_rooms).await?;
    let logged: Vec<_> = rooms
        .iter()
        .map(|room| events::room(events::Kind::RoomCreated, room))
        .collect();
    // Not the transaction's last statement (signup adds its owner after): nothing else can
    // write events of a workspace before the workspace is committed.
    events::record(tx, workspace.id, &logged).await?;
    Ok(workspace)
}

/// Creates a workspace with its `DEFAULT_ROOMS` (`huddle workspace create`, the server API).
pub async fn create(state: &AppState, slug: &str, name: &str) -> AppResult<Workspace> {
    let mut tx = state.db.begin().await?;
    let workspace = create_in(state, &mut tx, slug, name).await?;
    tx.commit().await?;
    tracing::info!(workspace.id = %workspace.id, workspace.slug = %workspace.slug, "workspace created");
    Ok(workspace)
}

/// What `POST /api/workspaces` answers: the new workspace and its first admin, logged in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedUp {
    pub workspace: Workspace,
    #[serde(flatten)]
    pub owner: crate::accounts::Authenticated,
}

/// Self-service signup (`WORKSPACE_SIGNUP=open`): creates a workspace with its `DEFAULT_ROOMS`
/// and its owner as its first admin, with a session, all in one transaction, so a taken slug
/// or username leaves nothing behind.
pub async fn sign_up(
    state: &AppState,
    slug: &str,
    name: &str,
    owner: crate::accounts::Registration,
    user_agent: Option<&str>,
) -> AppResult<SignedUp> {
    if !state.config.workspace_signup.is_open() {
        return Err(AppError::Forbidden(
            "workspace signup is closed on this server".into(),
        ));
    }
    // Every field is checked before the password is hashed and before a transaction opens.
    validate::workspace_slug("slug", slug)?;
    validate::workspace_name("name", name)?;
    crate::accounts::validate_registration(&owner)?;
    let account = crate::accounts::prepare(state, owner).await?;
    let mut tx = state.db.begin().await?;
    let workspace = create_in(state, &mut tx, slug, name).await?;
    let owner =
        crate::accounts::open_account(state, &mut tx, workspace.id, account, true, user_agent)
            .await?;
    tx.commit().await?;
    tracing::info!(workspace.id = %workspace.id, user.id = %owner.user.id, "workspace signed up");
    Ok(SignedUp { workspace, owner })
}
