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
    store::{
        self, audit,
        sessions::{RevokeReason, Rotation},
        users::{NewUser, User},
    },
    validate,
};

/// The token pair handed out at login, registration and refresh. Its `Debug` shows no token.
#[derive(Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
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
#[derive(Debug, Serialize)]
pub struct Authenticated {
    pub user: User,
    #[serde(flatten)]
    pub tokens: Tokens,
}

/// What a client sends to register.
pub struct Registration {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// Checks a registration against the contract's bounds, naming every field at fault.
fn validate_registration(r: &Registration) -> AppResult<String> {
    validate::username("username", &r.username)?;
    validate::password("password", &r.password)?;
    match &r.display_name {
        Some(name) => validate::display_name("display_name", name),
        None => Ok(r.username.clone()),
    }
}

pub async fn register(
    state: &AppState,
    r: Registration,
    user_agent: Option<&str>,
) -> AppResult<Authenticated> {
    let display_name = validate_registration(&r)?;
    let hash = state.passwords.hash(r.password).await?;
    let mut tx = state.db.begin().await?;
    let user = store::users::create(
        &mut *tx,
        NewUser {
            username: &r.username,
            display_name: &display_name,
            password_hash: &hash,
            is_admin: false,
        },
    )
    .await?;
    let tokens = open_session(state, &mut tx, &user, user_agent).await?;
    tx.commit().await?;
    tracing::info!(user.id = %user.id, "user registered");
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
pub async fn login(
    state: &AppState,
    address: IpAddr,
    username: &str,
    password: String,
    user_agent: Option<&str>,
) -> AppResult<Authenticated> {
    if !validate::is_username(username) || validate::char_len(&password) > MAX_PASSWORD_CHARS {
        // The dummy verify of a fixed password: the work does not depend on what was sent.
        state.passwords.verify(String::new(), None).await?;
        return Err(AppError::InvalidCredentials);
    }
    let attempt = state.auth_limits.login_attempt(address, username).await?;
    let found = store::users::credentials(&state.db, username).await?;
    let (hash, found) = match found {
        Some(c) => (Some(c.password_hash.clone()), Some(c)),
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
async fn open_session(
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
        user.id,
        &refresh_hash,
        expires_at,
        user_agent.as_deref(),
    )
    .await?;
    tokens(state, user.id, session_id, refresh_token)
}

fn tokens(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    refresh_token: String,
) -> AppResult<Tokens> {
    Ok(Tokens {
        access_token: state.keys.issue(user_id, session_id)?,
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
            tokens(state, user.id, session_id, new_token)
        }
        Rotation::Reused {
            session_id,
            user_id,
        } => {
            let was_live =
                store::sessions::revoke(&mut *tx, session_id, RevokeReason::RefreshTokenReused)
                    .await?;
            if was_live {
                audit::record(
                    &mut *tx,
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
    store::sessions::revoke(&state.db, caller.session_id, RevokeReason::Logout).await?;
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
    Ok(store::users::set_display_name(&state.db, caller.id(), &display_name).await?)
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
    let hash = store::users::password_hash(&state.db, caller.id()).await?;
    if !state.passwords.verify(current, hash).await? {
        attempt.failed();
        return Err(AppError::InvalidCredentials);
    }
    attempt.succeeded().await;
    let new_hash = state.passwords.hash(new).await?;
    let mut tx = state.db.begin().await?;
    store::users::set_password_hash(&mut *tx, caller.id(), &new_hash).await?;
    let revoked = store::sessions::revoke_all_of_user(
        &mut *tx,
        caller.id(),
        Some(caller.session_id),
        RevokeReason::PasswordChanged,
    )
    .await?;
    audit::record(
        &mut *tx,
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

/// `huddle user create`: makes a user, or (if the name exists) sets its password, ends every
/// session it had and, with `admin`, makes it an admin. Returns the user and whether it was
/// created.
pub async fn create_or_update_user(
    state: &AppState,
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
    if let Some(user) = store::users::reset(&mut *tx, username, &hash, admin).await? {
        let revoked = store::sessions::revoke_all_of_user(
            &mut *tx,
            user.id,
            None,
            RevokeReason::PasswordChanged,
        )
        .await?;
        audit::record(
            &mut *tx,
            audit::Entry::new(audit::Action::PasswordChanged)
                .target(user.id)
                .detail(json!({ "sessions_revoked": revoked.len(), "by": "cli" })),
        )
        .await?;
        tx.commit().await?;
        state.realtime.disconnect_sessions(&revoked).await;
        return Ok((user, false));
    }
    drop(tx);
    let user = store::users::create(
        &state.db,
        NewUser {
            username,
            display_name: username,
            password_hash: &hash,
            is_admin: admin,
        },
    )
    .await?;
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
