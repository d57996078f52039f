//! What admins (users with `is_admin`) may do beyond everyone else: disable and enable users.
//! (Deleting any room is in `rooms::delete`.) An admin is the admin of its own workspace: a user
//! of another workspace is not found.

use serde_json::json;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::AuthUser,
    error::{AppError, AppResult},
    store::{self, audit, sessions::RevokeReason},
};

async fn require_admin(state: &AppState, caller: &AuthUser, action: &str) -> AppResult<()> {
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
    let ws = caller.workspace();
    let mut tx = state.db.begin().await?;
    let changed = store::users::set_disabled(&mut *tx, ws, user_id, true)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    // Revoke even when already disabled: it costs nothing and leaves no doubt.
    let revoked = store::sessions::revoke_all_of_user(
        &mut *tx,
        ws,
        user_id,
        None,
        RevokeReason::UserDisabled,
    )
    .await?;
    if changed {
        audit::record(
            &mut *tx,
            ws,
            audit::Entry::new(audit::Action::UserDisabled)
                .actor(caller.id())
                .target(user_id)
                .detail(json!({ "sessions_revoked": revoked.len() })),
        )
        .await?;
    }
    tx.commit().await?;
    state.realtime.disconnect_user(user_id).await;
    tracing::info!(user.id = %user_id, admin.id = %caller.id(), "user disabled");
    Ok(())
}

pub async fn enable(state: &AppState, caller: &AuthUser, user_id: Uuid) -> AppResult<()> {
    require_admin(state, caller, "enable_user").await?;
    let ws = caller.workspace();
    let mut tx = state.db.begin().await?;
    let changed = store::users::set_disabled(&mut *tx, ws, user_id, false)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    if changed {
        audit::record(
            &mut *tx,
            ws,
            audit::Entry::new(audit::Action::UserEnabled)
                .actor(caller.id())
                .target(user_id),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
