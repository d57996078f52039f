//! Accounts over REST: `/api/auth/*` and `/api/me*`. Handlers only parse and answer; the work is
//! in `crate::accounts`.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, StatusCode},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::{
    accounts::{self, Authenticated, Registration, Tokens},
    app::AppState,
    auth::AuthUser,
    error::{AppResult, ErrorResponse},
    store::users::User,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
}

/// The client's address: the TCP peer, or behind a trusted proxy (`TRUST_PROXY`) the last
/// `X-Forwarded-For` entry, which the proxy itself appended. Earlier entries are the client's
/// own claims, so when the last one does not parse the peer is taken, never an earlier entry.
pub(super) fn client_address(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if state.config.trust_proxy {
        return forwarded_for(headers).unwrap_or_else(|| peer.ip());
    }
    peer.ip()
}

/// The literal last entry of the (last) `X-Forwarded-For` header, if it is an IP address.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last_header = headers.get_all("x-forwarded-for").iter().next_back()?;
    let last_entry = last_header.to_str().ok()?.rsplit(',').next()?;
    last_entry.trim().parse().ok()
}

pub(super) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

#[derive(Deserialize, ToSchema)]
struct RegisterRequest {
    /// The workspace's slug; absent: `default` (v1 clients never name one).
    workspace: Option<String>,
    /// 3-32 of letters, digits, `_`, `.` and `-`; unique in the workspace.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,32}$")]
    username: String,
    /// 8-256 characters.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    /// 1-64 characters; absent: the username.
    display_name: Option<String>,
}

/// Registers a user and logs them in.
///
/// The user is made in the `default` workspace unless `workspace` names another.
#[utoipa::path(post, operation_id = "register", path = "/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new user and a session", body = Authenticated),
        (status = 404, description = "`not_found`: no workspace with this slug", body = ErrorResponse),
        (status = 409, description = "`conflict`: the username is taken", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many attempts from this address", body = ErrorResponse),
    ))]
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<RegisterRequest>,
) -> AppResult<(StatusCode, Json<Authenticated>)> {
    state
        .auth_limits
        .check_address(client_address(&state, peer, &headers))
        .await?;
    let registration = Registration {
        workspace: body.workspace,
        username: body.username,
        password: body.password,
        display_name: body.display_name,
    };
    let created = accounts::register(&state, registration, user_agent(&headers)).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    /// The workspace's slug; absent: `default`.
    workspace: Option<String>,
    username: String,
    password: String,
}

/// Logs in with a username and password.
///
/// An unknown `workspace` is answered as an unknown user.
#[utoipa::path(post, operation_id = "login", path = "/auth/login", tag = "accounts", request_body = LoginRequest,
    responses(
        (status = 200, description = "The user and a new session", body = Authenticated),
        (status = 401, description = "`invalid_credentials`: unknown username or wrong password", body = ErrorResponse),
        (status = 403, description = "`account_disabled`: the account is disabled", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many attempts from this address or for this username", body = ErrorResponse),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<LoginRequest>,
) -> AppResult<Json<Authenticated>> {
    let address = client_address(&state, peer, &headers);
    state.auth_limits.check_address(address).await?;
    let authenticated = accounts::login(
        &state,
        address,
        body.workspace.as_deref(),
        &body.username,
        body.password,
        user_agent(&headers),
    )
    .await?;
    Ok(Json(authenticated))
}

#[derive(Deserialize, ToSchema)]
struct RefreshRequest {
    refresh_token: String,
}

/// Trades a refresh token for a new token pair.
///
/// Refresh tokens rotate: the one given is spent, and presenting it again revokes the session.
#[utoipa::path(post, operation_id = "refresh", path = "/auth/refresh", tag = "accounts", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = Tokens),
        (status = 401, description = "`unauthorized`: unknown, spent, expired or revoked refresh token", body = ErrorResponse),
        (status = 403, description = "`account_disabled`: the account is disabled", body = ErrorResponse),
    ))]
async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> AppResult<Json<Tokens>> {
    Ok(Json(accounts::refresh(&state, &body.refresh_token).await?))
}

/// Ends the caller's session.
///
/// Its sockets are disconnected and its refresh token revoked.
#[utoipa::path(post, operation_id = "logout", path = "/auth/logout", tag = "accounts", security(("user_token" = [])),
    responses((status = 204, description = "Logged out")))]
async fn logout(State(state): State<AppState>, caller: AuthUser) -> AppResult<StatusCode> {
    accounts::logout(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, operation_id = "me", path = "/me", tag = "accounts", security(("user_token" = [])),
    responses((status = 200, description = "The caller", body = User)))]
async fn me(caller: AuthUser) -> Json<User> {
    Json(caller.user)
}

#[derive(Deserialize, ToSchema)]
struct UpdateMeRequest {
    /// 1-64 characters; absent: unchanged.
    display_name: Option<String>,
}

/// Changes the caller's display name.
///
/// An absent field is left as it is.
#[utoipa::path(patch, operation_id = "update_me", path = "/me", tag = "accounts", security(("user_token" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, description = "The caller, changed", body = User)))]
async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<UpdateMeRequest>,
) -> AppResult<Json<User>> {
    match body.display_name {
        Some(name) => Ok(Json(
            accounts::set_display_name(&state, &caller, &name).await?,
        )),
        None => Ok(Json(caller.user)),
    }
}

#[derive(Deserialize, ToSchema)]
struct ChangePasswordRequest {
    current_password: String,
    /// 8-256 characters.
    #[schema(min_length = 8, max_length = 256)]
    new_password: String,
}

/// Changes the caller's password.
///
/// Every other session of the caller is revoked and its sockets disconnected.
#[utoipa::path(post, operation_id = "change_password", path = "/me/password", tag = "accounts", security(("user_token" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many wrong current passwords", body = ErrorResponse),
    ))]
async fn change_password(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<ChangePasswordRequest>,
) -> AppResult<StatusCode> {
    accounts::change_password(&state, &caller, body.current_password, body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> Option<IpAddr> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        forwarded_for(&headers)
    }

    #[test]
    fn only_the_literal_last_forwarded_entry_counts() {
        assert_eq!(xff(&["1.1.1.1, 10.0.0.1"]), "10.0.0.1".parse().ok());
        assert_eq!(xff(&["1.1.1.1", "2001:db8::1"]), "2001:db8::1".parse().ok());
        // An unparseable last entry never falls back to an earlier, client-written one.
        assert_eq!(xff(&["1.1.1.1, garbage"]), None);
        assert_eq!(xff(&["1.1.1.1", "unknown"]), None);
        assert_eq!(xff(&["1.1.1.1,"]), None);
        assert_eq!(xff(&[]), None);
    }
}
