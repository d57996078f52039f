//! Re-checking live sockets against the database.
//!
//! A socket's authority is checked at its handshake and at each join. After that, kicks,
//! logouts, password changes and disabled accounts reach live sockets as signals: this node's
//! own calls after a commit, and bus messages from the other nodes. A signal can be lost (Redis
//! restarting, the subscriber reconnecting, a request cancelled between its commit and its
//! signal). So each node re-checks its own sockets every `REVALIDATE_SECS` and right after each
//! reconnect of the bus subscriber: one query for the sessions and one for the rooms. Sockets
//! of sessions that are no longer live are disconnected; sockets in rooms their user may no
//! longer enter get `removed` and leave them. A lost signal then costs at most one period,
//! instead of lasting until the client disconnects. (Sends do not wait for this: the writer
//! applies the access rule again at commit.)

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use uuid::Uuid;

use super::{inbound::Conn, presence_channel, session_channel};
use crate::{
    app::AppState,
    rooms::Removal,
    store::{self, rooms::RoomRef},
};

/// Starts the re-checking task of this node; it stops with the realtime layer.
pub(crate) fn spawn(state: &AppState) {
    let period = state.config.revalidate_every;
    if period.is_zero() {
        return;
    }
    tokio::spawn(run(state.clone(), period));
}

async fn run(state: AppState, period: Duration) {
    let cluster = state.realtime.cluster().cloned();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        match &cluster {
            Some(cluster) => tokio::select! {
                _ = tick.tick() => {}
                _ = cluster.resubscribed.notified() => {}
            },
            None => {
                tick.tick().await;
            }
        }
        if !state.realtime.is_open() {
            return;
        }
        match sweep(&state).await {
            Ok(Swept {
                sockets,
                disconnected,
                evicted,
            }) if disconnected + evicted > 0 => tracing::info!(
                sockets,
                disconnected,
                evicted,
                "re-check of live sockets acted on lost revocations"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "re-check of live sockets failed"),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    pub sockets: usize,
    /// Sessions whose sockets were disconnected.
    pub disconnected: usize,
    /// (room, user) pairs whose sockets were taken out of the room.
    pub evicted: usize,
}

/// Checks every socket of this node once.
pub(crate) async fn sweep(state: &AppState) -> sqlx::Result<Swept> {
    let sockets = state.realtime.io().sockets();
    let mut sessions = HashSet::new();
    let mut pairs = HashSet::new();
    let mut rooms: HashMap<Uuid, RoomRef> = HashMap::new();
    for socket in &sockets {
        let Some(conn) = socket.extensions.get::<Conn>() else {
            continue;
        };
        sessions.insert(conn.auth.session_id);
        for room in conn.rooms() {
            pairs.insert((room.id, conn.auth.id()));
            rooms.insert(room.id, room);
        }
    }
    let mut swept = Swept {
        sockets: sockets.len(),
        ..Swept::default()
    };
    if sessions.is_empty() {
        return Ok(swept);
    }

    let sessions: Vec<Uuid> = sessions.into_iter().collect();
    let dead = store::sessions::dead_among(&state.db, &sessions).await?;
    swept.disconnected = dead.len();
    if !dead.is_empty() {
        let channels = dead.iter().map(|s| session_channel(*s)).collect();
        state.realtime.disconnect_here(channels).await;
    }

    let (room_ids, user_ids): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
    for lost in store::members::lost_among(&state.db, &room_ids, &user_ids).await? {
        let Some(room) = rooms.get(&lost.room_id) else {
            continue;
        };
        let removal = if lost.room_exists {
            Removal::Kicked
        } else {
            Removal::RoomDeleted
        };
        let channel = presence_channel(lost.room_id, lost.user_id);
        state.realtime.evict_here(channel, room, removal);
        swept.evicted += 1;
    }
    Ok(swept)
}
