//! The connection handshake: the access token is checked exactly as on REST before the socket
//! exists; a refused client gets `connect_error` with message `unauthorized` (or
//! `too_many_connections` when the user already has `MAX_SOCKETS_PER_USER` sockets, counted on
//! every node).

use std::sync::Arc;

use dashmap::{mapref::entry::Entry, DashMap};
use serde_json::Value;
use socketioxide::{
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    ParserError,
};
use uuid::Uuid;

use super::{inbound, payload::Session, session_channel, user_channel};
use crate::{
    app::AppState,
    auth::{self, AuthUser},
    error::AppError,
};

/// Why a connection was refused; its text is the client's `connect_error` message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("unauthorized")]
    Unauthorized,
    #[error("unavailable")]
    Unavailable,
    /// The user already has `MAX_SOCKETS_PER_USER` sockets (on every node together).
    #[error("too_many_connections")]
    TooManyConnections,
}

/// Handshakes in flight on this node, per user, past authentication and not yet admitted.
type Handshaking = Arc<DashMap<Uuid, usize>>;

/// One handshake counted in `Handshaking` until dropped.
struct InFlight {
    handshaking: Handshaking,
    user: Uuid,
}

impl InFlight {
    /// Counts this handshake; returns it with how many of the user's were in flight before it.
    fn start(handshaking: &Handshaking, user: Uuid) -> (InFlight, usize) {
        let before = {
            let mut n = handshaking.entry(user).or_insert(0);
            *n += 1;
            *n - 1
        };
        let this = InFlight {
            handshaking: handshaking.clone(),
            user,
        };
        (this, before)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Entry::Occupied(mut n) = self.handshaking.entry(self.user) {
            if *n.get() <= 1 {
                n.remove();
            } else {
                *n.get_mut() -= 1;
            }
        }
    }
}

pub(super) fn register(state: &AppState) {
    let st = state.clone();
    let handshaking = Handshaking::default();
    let authenticate = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let (st, handshaking) = (st.clone(), handshaking.clone());
        async move { admit(st, handshaking, s, auth).await }
    };
    let connected = |s: SocketRef| async move {
        if let Some(conn) = s.extensions.get::<inbound::Conn>() {
            let _ = s.emit(
                "session",
                &Session {
                    user: &conn.auth.user,
                },
            );
        }
        tracing::debug!(socket.id = %s.id, "socket connected");
    };
    state.realtime.io().ns("/", connected.with(authenticate));
}

/// The token comes from the handshake's `auth.token`, or an `Authorization: Bearer` header.
fn token(s: &SocketRef, auth: &Result<Value, ParserError>) -> Option<String> {
    let from_auth = auth
        .as_ref()
        .ok()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    from_auth.or_else(|| auth::bearer_token(&s.req_parts().headers).map(str::to_owned))
}

/// Runs before the client is told it is connected, so everything a client event needs is in
/// place before its first event can arrive.
async fn admit(
    state: AppState,
    handshaking: Handshaking,
    s: SocketRef,
    auth: Result<Value, ParserError>,
) -> Result<(), Refused> {
    let token = token(&s, &auth).ok_or(Refused::Unauthorized)?;
    let user: AuthUser = auth::authenticate(&state, &token)
        .await
        .map_err(|e| match e {
            AppError::Unavailable(_) => Refused::Unavailable,
            _ => Refused::Unauthorized,
        })?;
    // Counting the other nodes' sockets waits for their answers: meanwhile the user's other
    // handshakes here count too, or a burst of concurrent ones would all see room for one more.
    // Counted until the socket is in its user channel (a moment counted twice is harmless).
    let (in_flight, before) = InFlight::start(&handshaking, user.id());
    if !super::below_socket_cap(&state, user.id(), before).await {
        return Err(Refused::TooManyConnections);
    }
    let channels = vec![user_channel(user.id()), session_channel(user.session_id)];
    // Heard from every node before the client is told it is connected.
    state.realtime.hold(&channels).await;
    s.join(channels);
    drop(in_flight);
    let conn = inbound::open(state.clone(), s.clone(), user);
    s.extensions.insert(conn);
    s.on_fallback(|_: inbound::Inbound| async {});
    let metrics = state.metrics.clone();
    s.on_disconnect(move |s: SocketRef| {
        let metrics = metrics.clone();
        async move {
            metrics.sockets_connected.dec();
            if let Some(conn) = s.extensions.get::<inbound::Conn>() {
                conn.disconnected().await;
            }
        }
    });
    state.metrics.sockets_connected.inc();
    Ok(())
}
