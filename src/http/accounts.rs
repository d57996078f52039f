//! Accounts over REST: `/api/auth/*` and `/api/me*`. Handlers only parse and answer; the work is
//! in `crate::accounts`.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, StatusCode},
    routing::{get, post},
    Router,
};
use serde::Deserialize;

use super::extract::Json;
use crate::{
    accounts::{self, Authenticated, Registration, Tokens},
    app::AppState,
    auth::AuthUser,
    error::AppResult,
    store::users::User,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/me", get(me).patch(update_me))
        .route("/me/password", post(change_password))
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

#[derive(Deserialize)]
struct RegisterRequest {
    /// The workspace's slug; absent: `default` (v1 clients never name one).
    workspace: Option<String>,
    username: String,
    password: String,
    display_name: Option<String>,
}

/// `POST /api/auth/register` -> 201 `{user, ...tokens}`; 404 for an unknown `workspace`.
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

#[derive(Deserialize)]
struct LoginRequest {
    /// The workspace's slug; absent: `default`.
    workspace: Option<String>,
    username: String,
    password: String,
}

/// `POST /api/auth/login` -> 200 `{user, ...tokens}`; an unknown `workspace` is answered as an
/// unknown user (`401 invalid_credentials`).
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

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

/// `POST /api/auth/refresh` -> 200 tokens.
async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> AppResult<Json<Tokens>> {
    Ok(Json(accounts::refresh(&state, &body.refresh_token).await?))
}

/// `POST /api/auth/logout` -> 204.
async fn logout(State(state): State<AppState>, caller: AuthUser) -> AppResult<StatusCode> {
    accounts::logout(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/me` -> user.
async fn me(caller: AuthUser) -> Json<User> {
    Json(caller.user)
}

#[derive(Deserialize)]
struct UpdateMeRequest {
    display_name: Option<String>,
}

/// `PATCH /api/me` `{display_name}` -> user. An absent field is left as it is.
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

#[derive(Deserialize)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// `POST /api/me/password` -> 204; the caller's other sessions are revoked.
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
