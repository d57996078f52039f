//! API keys of the server API: made by workspace admins over REST or by an operator with
//! `huddle api-key create`, listed and revoked by admins. The secret is returned once, at
//! creation; only its digest is stored (`auth::api_key`).

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    admin::require_admin,
    app::AppState,
    auth::{api_key, AuthUser},
    error::{AppError, AppResult},
    store::{
        self,
        api_keys::{ApiKey, NewKey},
        audit,
    },
    validate,
    workspaces::WorkspaceId,
};

/// A key just made: the only time its secret is seen.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    pub key: ApiKey,
    pub secret: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Makes a key of `workspace` (`None`: a platform key), recording who made it.
pub async fn create(
    state: &AppState,
    workspace: Option<WorkspaceId>,
    name: &str,
    created_by: Option<Uuid>,
) -> AppResult<Created> {
    let name = validate::display_name("name", name)?;
    let secret = api_key::new_secret();
    let mut tx = state.db.begin().await?;
    let key = store::api_keys::create(
        &mut *tx,
        NewKey {
            workspace,
            name: &name,
            prefix: &secret.prefix,
            secret_hash: &secret.hash,
            created_by,
        },
    )
    .await?;
    // The audit log is per workspace; a platform key is recorded in the default one.
    let mut entry = audit::Entry::new(audit::Action::ApiKeyCreated).detail(json!({
        "key_id": key.id, "name": key.name, "prefix": key.prefix,
        "platform": workspace.is_none(),
    }));
    if let Some(by) = created_by {
        entry = entry.actor(by);
    }
    audit::record(&mut *tx, workspace.unwrap_or(WorkspaceId::DEFAULT), entry).await?;
    tx.commit().await?;
    tracing::info!(key.id = %key.id, key.prefix = %key.prefix, platform = workspace.is_none(), "API key created");
    Ok(Created {
        key,
        secret: secret.secret,
    })
}

/// `POST /api/admin/api-keys`: an admin makes a key of their workspace.
pub async fn create_as_admin(
    state: &AppState,
    caller: &AuthUser,
    name: &str,
) -> AppResult<Created> {
    require_admin(state, caller, "create_api_key").await?;
    create(state, Some(caller.workspace()), name, Some(caller.id())).await
}

/// The keys of the admin's workspace, revoked ones included, newest first.
pub async fn list(state: &AppState, caller: &AuthUser) -> AppResult<Vec<ApiKey>> {
    require_admin(state, caller, "list_api_keys").await?;
    Ok(store::api_keys::list(&state.db, caller.workspace()).await?)
}

/// Revokes a key of the admin's workspace: its very next request is refused. Revoking twice
/// changes nothing; a key of another workspace is not found.
pub async fn revoke(state: &AppState, caller: &AuthUser, id: Uuid) -> AppResult<()> {
    require_admin(state, caller, "revoke_api_key").await?;
    let ws = caller.workspace();
    let mut tx = state.db.begin().await?;
    let (key, changed) = store::api_keys::revoke(&mut *tx, ws, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such API key".into()))?;
    if changed {
        audit::record(
            &mut *tx,
            ws,
            audit::Entry::new(audit::Action::ApiKeyRevoked)
                .actor(caller.id())
                .detail(json!({ "key_id": key.id, "name": key.name, "prefix": key.prefix })),
        )
        .await?;
    }
    tx.commit().await?;
    if changed {
        tracing::info!(key.id = %key.id, key.prefix = %key.prefix, "API key revoked");
    }
    Ok(())
}
