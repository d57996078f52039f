//! What admins (users with `is_admin`) may do beyond everyone else: disable and enable users.
//! (Deleting any room is in `rooms::delete`.) An admin is the admin of its own workspace: a user
//! of another workspace is not found.

use serde_json::json;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppError, AppResult},
    events::{self, Kind},
    store::{
        self,
        audit::{self, By},
        sessions::RevokeReason,
    },
};

/// Lets admins through; refuses anyone else, with a line in the audit log (a few a minute).
pub(crate) async fn require_admin(
    state: &AppState,
    caller: &AuthUser,
    action: &str,
) -> AppResult<()> {
    if caller.user.is_admin {
        return Ok(());
    }
    if !state.quotas.audit_denial(caller.id(), Uuid::nil(), action) {
        return Err(AppError::Forbidden("admins only".into()));
    }
    audit::record(
        &state.db,
        caller.workspace(),
        audit::Entry::new(audit::Action::AccessDenied)
            .actor(caller.id())
            .detail(json!({ "action": action })),
    )
    .await?;
    Err(AppError::Forbidden("admins only".into()))
}

/// Disables a user: every session is revoked at once (so every token dies) and login answers
/// `account_disabled`; every socket of the user, on every node, is disconnected.
pub async fn disable(state: &AppState, caller: &AuthUser, user_id: Uuid) -> AppResult<()> {
    require_admin(state, caller, "disable_user").await?;
    if user_id == caller.id() {
        return Err(AppError::Forbidden(
            "you cannot disable your own account".into(),
        ));
    }
    set_disabled(
        state,
        caller.workspace(),
        user_id,
        true,
        By::User(caller.id()),
    )
    .await?;
    tracing::info!(user.id = %user_id, admin.id = %caller.id(), "user disabled");
    Ok(())
}

pub async fn enable(state: &AppState, caller: &AuthUser, user_id: Uuid) -> AppResult<()> {
    require_admin(state, caller, "enable_user").await?;
    set_disabled(
        state,
        caller.workspace(),
        user_id,
        false,
        By::User(caller.id()),
    )
    .await
}

/// Disables (revoking every session, disconnecting every socket on every node) or enables a
/// user of `ws`: the one rule behind the admin routes and the server API's.
pub(crate) async fn set_disabled(
    state: &AppState,
    ws: crate::workspaces::WorkspaceId,
    user_id: Uuid,
    disabled: bool,
    by: By,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let changed = store::users::set_disabled(&mut *tx, ws, user_id, disabled)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    // Revoke even when already disabled: it costs nothing and leaves no doubt.
    let revoked = if disabled {
        store::sessions::revoke_all_of_user(&mut *tx, ws, user_id, None, RevokeReason::UserDisabled)
            .await?
    } else {
        Vec::new()
    };
    if changed {
        let action = if disabled {
            audit::Action::UserDisabled
        } else {
            audit::Action::UserEnabled
        };
        let detail = if disabled {
            json!({ "sessions_revoked": revoked.len() })
        } else {
            json!({})
        };
        let entry = audit::Entry::new(action)
            .target(user_id)
            .detail(detail)
            .by(by);
        audit::record(&mut *tx, ws, entry).await?;
        if let Some(user) = store::users::find(&mut *tx, ws, user_id).await? {
            let kind = if disabled {
                Kind::UserDisabled
            } else {
                Kind::UserEnabled
            };
            events::record(&mut tx, ws, &[events::user(kind, &user)]).await?;
        }
    }
    tx.commit().await?;
    if disabled {
        state.realtime.disconnect_user(user_id).await;
    }
    Ok(())
}
