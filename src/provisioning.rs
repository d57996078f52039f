//! Users the product provisions through the server API: known by the product's own
//! `external_id`, perhaps bots, perhaps without a password (password login then fails as for an
//! unknown user). The product mints real sessions for them, so logout, disabling and live
//! eviction work for them as for everyone else.

use serde_json::Value;

use crate::{
    accounts::{self, Authenticated},
    admin,
    app::AppState,
    auth::api_key::ServerCaller,
    error::{AppError, AppResult},
    events::{self, Kind},
    store::{
        self,
        audit::By,
        users::{Provisioned, User},
    },
    validate,
};

/// The body of `PUT /api/server/users/{external_id}`.
#[derive(Debug, Default)]
pub struct UserFields {
    pub username: String,
    pub display_name: Option<String>,
    pub is_admin: Option<bool>,
    pub is_bot: Option<bool>,
    pub metadata: Option<Value>,
}

/// Creates the user with this external id in the caller's workspace, or updates it (fields left
/// out keep their value). Returns the user and whether it was created.
pub async fn put_user(
    state: &AppState,
    caller: &ServerCaller,
    external_id: &str,
    fields: UserFields,
) -> AppResult<(User, bool)> {
    validate::external_id("external_id", external_id)?;
    validate::username("username", &fields.username)?;
    let display_name = fields
        .display_name
        .as_deref()
        .map(|name| validate::display_name("display_name", name))
        .transpose()?;
    let metadata = fields
        .metadata
        .map(|m| validate::metadata("metadata", m))
        .transpose()?;
    let ws = caller.workspace();
    let mut tx = state.db.begin().await?;
    let (user, created) = store::users::provision(
        &mut *tx,
        ws,
        Provisioned {
            external_id,
            username: &fields.username,
            display_name: display_name.as_deref(),
            is_admin: fields.is_admin,
            is_bot: fields.is_bot,
            metadata: metadata.as_ref(),
        },
    )
    .await?;
    let kind = if created {
        Kind::UserCreated
    } else {
        Kind::UserUpdated
    };
    events::record(&mut tx, ws, &[events::user(kind, &user)]).await?;
    tx.commit().await?;
    if created {
        tracing::info!(user.id = %user.id, key.id = %caller.key_id, "user provisioned");
    }
    Ok((user, created))
}

/// The user with this external id in the caller's workspace, and whether it is disabled.
async fn find(
    state: &AppState,
    caller: &ServerCaller,
    external_id: &str,
) -> AppResult<(User, bool)> {
    validate::external_id("external_id", external_id)
        .map_err(|_| AppError::NotFound("no such user".into()))?;
    store::users::find_by_external_id(&state.db, caller.workspace(), external_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))
}

/// The user named by an external id inside a body (`owner`, `members`, `sender`): unknown is
/// `404 not_found`.
pub async fn user(state: &AppState, caller: &ServerCaller, external_id: &str) -> AppResult<User> {
    find(state, caller, external_id).await.map(|(user, _)| user)
}

/// A new session for the user, as a login makes: `403 account_disabled` for a disabled user.
pub async fn mint_session(
    state: &AppState,
    caller: &ServerCaller,
    external_id: &str,
    user_agent: Option<&str>,
) -> AppResult<Authenticated> {
    let (user, disabled) = find(state, caller, external_id).await?;
    if disabled {
        return Err(AppError::AccountDisabled);
    }
    let mut tx = state.db.begin().await?;
    let tokens = accounts::open_session(state, &mut tx, &user, user_agent).await?;
    tx.commit().await?;
    Ok(Authenticated { user, tokens })
}

/// Disables (every session revoked, every socket disconnected) or enables the user.
pub async fn set_disabled(
    state: &AppState,
    caller: &ServerCaller,
    external_id: &str,
    disabled: bool,
) -> AppResult<()> {
    let (user, _) = find(state, caller, external_id).await?;
    admin::set_disabled(
        state,
        caller.workspace(),
        user.id,
        disabled,
        By::ApiKey(caller.key_id),
    )
    .await
}
