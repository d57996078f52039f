//! Who is calling: one verification for REST requests and Socket.IO handshakes alike.

pub mod api_key;
pub mod password;
pub mod token;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};
use uuid::Uuid;

use crate::{
    app::AppState,
    error::{AppError, AppResult},
    store,
    workspaces::WorkspaceId,
};

/// An authenticated caller: a live session of an enabled user, inside its workspace. Everything
/// a caller does is scoped by `workspace()`.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: store::users::User,
    pub session_id: Uuid,
}

impl AuthUser {
    pub fn id(&self) -> Uuid {
        self.user.id
    }

    /// The caller's workspace: the token's `wid`, which `authenticate` checked is the session's.
    pub fn workspace(&self) -> WorkspaceId {
        self.user.workspace_id
    }
}

/// Checks an access token: signature, algorithm and expiry, then that its session is live, its
/// user enabled and its workspace the token's `wid` (one indexed query), so that logout, a
/// password change or disabling a user act on the very next request, and a token can never
/// name a workspace its session is not in.
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<AuthUser> {
    let claims = state.keys.verify(token)?;
    let user = store::sessions::live_user(&state.db, claims.wid, claims.sid, claims.sub)
        .await?
        .ok_or(AppError::Unauthorized)?;
    Ok(AuthUser {
        user,
        session_id: claims.sid,
    })
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or(AppError::Unauthorized)?;
        let caller = authenticate(state, token).await?;
        // Into the request's span (`app::http_span`): every later log line of it names them.
        tracing::Span::current()
            .record("user.id", tracing::field::display(caller.id()))
            .record("workspace.id", tracing::field::display(caller.workspace()));
        Ok(caller)
    }
}
