//! Accounts and sessions: registering, logging in, rotating refresh tokens, logging out and
//! changing passwords. Shared by the REST handlers and the `huddle user create` command.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::{token, AuthUser},
    error::{AppError, AppResult},
    events::{self, Kind},
    store::{
        self, audit,
        sessions::{RevokeReason, Rotation},
        users::{NewUser, User},
    },
    validate,
    workspaces::{self, WorkspaceId},
};

/// The token pair handed out at login, registration and refresh. Its `Debug` shows no token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A user with a fresh session. Its `Debug` is the user's and the redacted tokens'.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Authenticated {
    pub user: User,
    #[serde(flatten)]
    pub tokens: Tokens,
}

/// What a client sends to register.
pub struct Registration {
    /// The workspace's slug; `None`: `default`.
    pub workspace: Option<String>,
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// Checks a registration against the contract's bounds, naming every field at fault.
pub(crate) fn validate_registration(r: &Registration) -> AppResult<String> {
    validate::username("username", &r.username)?;
    validate::password("password", &r.password)?;
    match &r.display_name {
        Some(name) => validate::display_name("display_name", name),
        None => Ok(r.username.clone()),
    }
}

/// Registers a user in the workspace it names (`404 not_found` when there is none).
pub async fn register(
    state: &AppState,
    r: Registration,
    user_agent: Option<&str>,
) -> AppResult<Authenticated> {
    validate_registration(&r)?;
    let ws = workspaces::existing(state, r.workspace.as_deref()).await?;
    let account = prepare(state, r).await?;
    let mut tx = state.db.begin().await?;
    let created = open_account(state, &mut tx, ws, account, false, user_agent).await?;
    tx.commit().await?;
    tracing::info!(user.id = %created.user.id, workspace.id = %ws, "user registered");
    Ok(created)
}

/// A registration checked and its password hashed, ready to be stored.
pub(crate) struct NewAccount {
    username: String,
    display_name: String,
    password_hash: String,
}

/// Checks a registration and hashes its password: the slow part, done before any transaction
/// is opened.
pub(crate) async fn prepare(state: &AppState, r: Registration) -> AppResult<NewAccount> {
    let display_name = validate_registration(&r)?;
    let password_hash = state.passwords.hash(r.password).await?;
    Ok(NewAccount {
        username: r.username,
        display_name,
        password_hash,
    })
}

/// Stores a prepared account in `ws` and opens its first session. A username taken in `ws` is
/// `409 conflict`.
pub(crate) async fn open_account(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    ws: WorkspaceId,
    account: NewAccount,
    is_admin: bool,
    user_agent: Option<&str>,
) -> AppResult<Authenticated> {
    let user = store::users::create(
        &mut *tx,
        ws,
        NewUser {
            username: &account.username,
            display_name: &account.display_name,
            password_hash: Some(&account.password_hash),
            is_admin,
        },
    )
    .await?;
    let tokens = open_session(state, tx, &user, user_agent).await?;
    events::record(tx, ws, &[events::user(Kind::UserCreated, &user)]).await?;
    Ok(Authenticated { user, tokens })
}

/// Longest password a login looks at: the most `register` accepts.
const MAX_PASSWORD_CHARS: usize = 256;

/// Logs in from `address`. A username that cannot exist (not of the contract's shape) or a
/// password longer than any account can have is answered exactly as an unknown user is: `401
/// invalid_credentials` after the same dummy argon2 verify, so neither the answer nor its timing
/// tells it apart (the contract: "unknown user or wrong password: same body, same timing"). It
/// touches neither the database nor the failure limits, so garbage cannot make limiter keys; the
/// per-address limit, checked before this, still bounds what it costs.
///
/// `workspace` is the slug the client named (`None`: `default`). An unknown workspace is
/// answered as an unknown user is, and counted as that user's failure.
pub async fn login(
    state: &AppState,
    address: IpAddr,
    workspace: Option<&str>,
    username: &str,
    password: String,
    user_agent: Option<&str>,
) -> AppResult<Authenticated> {
    let workspace_shape_ok = workspace.is_none_or(validate::is_workspace_slug);
    if !validate::is_username(username)
        || !workspace_shape_ok
        || validate::char_len(&password) > MAX_PASSWORD_CHARS
    {
        // The dummy verify of a fixed password: the work does not depend on what was sent.
        state.passwords.verify(String::new(), None).await?;
        return Err(AppError::InvalidCredentials);
    }
    // Counted per workspace and username, as given: an unknown workspace counts like an
    // unknown user, and `ann` of one workspace is not `ann` of another.
    let attempt = state
        .auth_limits
        .login_attempt(
            address,
            workspace.unwrap_or(workspaces::DEFAULT_SLUG),
            username,
        )
        .await?;
    let found = match workspaces::resolve(state, workspace).await? {
        Some(ws) => store::users::credentials(&state.db, ws, username).await?,
        None => None,
    };
    let (hash, found) = match found {
        Some(c) => (c.password_hash.clone(), Some(c)),
        None => (None, None),
    };
    if !state.passwords.verify(password, hash).await? {
        attempt.failed();
        return Err(AppError::InvalidCredentials);
    }
    attempt.succeeded().await;
    let credentials = found.ok_or(AppError::InvalidCredentials)?;
    if credentials.disabled {
        return Err(AppError::AccountDisabled);
    }
    let mut tx = state.db.begin().await?;
    let tokens = open_session(state, &mut tx, &credentials.user, user_agent).await?;
    tx.commit().await?;
    Ok(Authenticated {
        user: credentials.user,
        tokens,
    })
}

/// Starts a session for `user` and issues its first token pair.
pub(crate) async fn open_session(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    user: &User,
    user_agent: Option<&str>,
) -> AppResult<Tokens> {
    let (refresh_token, refresh_hash) = token::new_refresh_token();
    let lifetime = state
        .config
        .refresh_token_ttl
        .min(state.config.session_max_age);
    let expires_at = OffsetDateTime::now_utc() + lifetime;
    let user_agent = user_agent.map(|ua| ua.chars().take(256).collect::<String>());
    let session_id = store::sessions::create(
        &mut *tx,
        user.workspace_id,
        user.id,
        &refresh_hash,
        expires_at,
        user_agent.as_deref(),
    )
    .await?;
    tokens(state, user, session_id, refresh_token)
}

fn tokens(
    state: &AppState,
    user: &User,
    session_id: Uuid,
    refresh_token: String,
) -> AppResult<Tokens> {
    Ok(Tokens {
        access_token: state.keys.issue(user.workspace_id, user.id, session_id)?,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl.as_secs(),
    })
}

/// Exchanges a refresh token for a new pair. A token that was already exchanged means two
/// parties hold it: the whole session is revoked and both must log in again.
pub async fn refresh(state: &AppState, refresh_token: &str) -> AppResult<Tokens> {
    let old_hash = token::hash_refresh_token(refresh_token);
    let (new_token, new_hash) = token::new_refresh_token();
    let expires_at = OffsetDateTime::now_utc() + state.config.refresh_token_ttl;
    let mut tx = state.db.begin().await?;
    let max_age = state.config.session_max_age;
    match store::sessions::rotate(&mut tx, &old_hash, &new_hash, expires_at, max_age).await? {
        Rotation::Rotated { session_id, user } => {
            tx.commit().await?;
            tokens(state, &user, session_id, new_token)
        }
        Rotation::Reused {
            ws,
            session_id,
            user_id,
        } => {
            let was_live =
                store::sessions::revoke(&mut *tx, ws, session_id, RevokeReason::RefreshTokenReused)
                    .await?;
            if was_live {
                audit::record(
                    &mut *tx,
                    ws,
                    audit::Entry::new(audit::Action::RefreshTokenReused)
                        .target(user_id)
                        .detail(json!({ "session_id": session_id })),
                )
                .await?;
            }
            tx.commit().await?;
            if was_live {
                tracing::warn!(user.id = %user_id, session.id = %session_id, "refresh token reused; session revoked");
                state.realtime.disconnect_sessions(&[session_id]).await;
            }
            Err(AppError::UnauthorizedBecause(
                "this refresh token was already used; the session is revoked",
            ))
        }
        Rotation::Refused => Err(AppError::UnauthorizedBecause(
            "unknown, expired or revoked refresh token",
        )),
    }
}

/// Ends the caller's session: its tokens stop working and its sockets are disconnected.
pub async fn logout(state: &AppState, caller: &AuthUser) -> AppResult<()> {
    store::sessions::revoke(
        &state.db,
        caller.workspace(),
        caller.session_id,
        RevokeReason::Logout,
    )
    .await?;
    state
        .realtime
        .disconnect_sessions(&[caller.session_id])
        .await;
    Ok(())
}

pub async fn set_display_name(
    state: &AppState,
    caller: &AuthUser,
    display_name: &str,
) -> AppResult<User> {
    let display_name = validate::display_name("display_name", display_name)?;
    let ws = caller.workspace();
    let mut tx = state.db.begin().await?;
    let user = store::users::set_display_name(&mut *tx, ws, caller.id(), &display_name).await?;
    events::record(&mut tx, ws, &[events::user(Kind::UserUpdated, &user)]).await?;
    tx.commit().await?;
    Ok(user)
}

/// Changes the caller's password and revokes every other session of theirs. A wrong current
/// password counts as a failure of the caller's session (5 in 15 minutes), so a stolen access
/// token is no faster a way to guess it, while failed logins by others on the same username
/// cannot block the owner's own session.
pub async fn change_password(
    state: &AppState,
    caller: &AuthUser,
    current: String,
    new: String,
) -> AppResult<()> {
    validate::password("new_password", &new)?;
    if validate::char_len(&current) > MAX_PASSWORD_CHARS {
        state.passwords.verify(String::new(), None).await?;
        return Err(AppError::InvalidCredentials);
    }
    let attempt = state
        .auth_limits
        .password_change_attempt(caller.session_id)
        .await?;
    let ws = caller.workspace();
    let hash = store::users::password_hash(&state.db, ws, caller.id()).await?;
    if !state.passwords.verify(current, hash).await? {
        attempt.failed();
        return Err(AppError::InvalidCredentials);
    }
    attempt.succeeded().await;
    let new_hash = state.passwords.hash(new).await?;
    let mut tx = state.db.begin().await?;
    store::users::set_password_hash(&mut *tx, ws, caller.id(), &new_hash).await?;
    let revoked = store::sessions::revoke_all_of_user(
        &mut *tx,
        ws,
        caller.id(),
        Some(caller.session_id),
        RevokeReason::PasswordChanged,
    )
    .await?;
    audit::record(
        &mut *tx,
        ws,
        audit::Entry::new(audit::Action::PasswordChanged)
            .actor(caller.id())
            .target(caller.id())
            .detail(json!({ "sessions_revoked": revoked.len() })),
    )
    .await?;
    tx.commit().await?;
    state.realtime.disconnect_sessions(&revoked).await;
    Ok(())
}

/// `huddle user create` without `--workspace`: as `create_or_update_user_in`, in `default`.
pub async fn create_or_update_user(
    state: &AppState,
    username: &str,
    password: String,
    admin: bool,
) -> AppResult<(User, bool)> {
    create_or_update_user_in(state, WorkspaceId::DEFAULT, username, password, admin).await
}

/// `huddle user create`: makes a user of `ws`, or (if the name exists there) sets its password,
/// ends every session it had and, with `admin`, makes it an admin. Returns the user and whether
/// it was created.
pub async fn create_or_update_user_in(
    state: &AppState,
    ws: WorkspaceId,
    username: &str,
    password: String,
    admin: bool,
) -> AppResult<(User, bool)> {
    validate::username("username", username)?;
    validate::password("password", &password)?;
    let hash = state.passwords.hash(password).await?;
    // A reset is how an operator takes a compromised account back: whoever holds its sessions
    // must lose them with the old password, as with `POST /api/me/password`.
    let mut tx = state.db.begin().await?;
    if let Some(user) = store::users::reset(&mut *tx, ws, username, &hash, admin).await? {
        let revoked = store::sessions::revoke_all_of_user(
            &mut *tx,
            ws,
            user.id,
            None,
            RevokeReason::PasswordChanged,
        )
        .await?;
        audit::record(
            &mut *tx,
            ws,
            audit::Entry::new(audit::Action::PasswordChanged)
                .target(user.id)
                .detail(json!({ "sessions_revoked": revoked.len(), "by": "cli" })),
        )
        .await?;
        events::record(&mut tx, ws, &[events::user(Kind::UserUpdated, &user)]).await?;
        tx.commit().await?;
        state.realtime.disconnect_sessions(&revoked).await;
        return Ok((user, false));
    }
    let user = store::users::create(
        &mut *tx,
        ws,
        NewUser {
            username,
            display_name: username,
            password_hash: Some(&hash),
            is_admin: admin,
        },
    )
    .await?;
    events::record(&mut tx, ws, &[events::user(Kind::UserCreated, &user)]).await?;
    tx.commit().await?;
    Ok((user, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_printed() {
        let tokens = Tokens {
            access_token: "the-access-token".into(),
            refresh_token: "the-refresh-token".into(),
            token_type: "Bearer",
            expires_in: 900,
        };
        let printed = format!("{tokens:?}");
        assert!(!printed.contains("the-access-token") && !printed.contains("the-refresh-token"));
        assert!(printed.contains("expires_in: 900"), "{printed}");
    }
}
