//! Per-user quotas on what costs the server more than a message: room events over Socket.IO and
//! new rooms.
//!
//! - `joinRoom`, `joinPrivateRoom`, `leaveRoom`, `history` and `listOnline` draw from one bucket
//!   per user, `ROOM_EVENT_RATE` per second with bursts of `ROOM_EVENT_BURST`, separate from the
//!   message bucket (so that paging history never eats into what a user may send). Each of these
//!   reads the database or asks every node, and a join or leave makes the room hear a notice.
//!   With several nodes the bucket is shared through Redis like the message bucket.
//! - Rooms created (`POST /api/rooms`) and direct rooms opened (the first message to someone)
//!   count against `ROOMS_PER_HOUR` per user (all at once, then one more every hour /
//!   `ROOMS_PER_HOUR`). With several nodes this bucket too lives in Redis, shared by every node
//!   (`<prefix>:new_rooms:<user>`); while Redis is unusable each node falls back to its own.
//! - Refusals are written to the audit log at most `AUDITED_DENIALS_PER_MINUTE` times a minute
//!   per user, room and action (on this node): a loop probing a private room must not grow the table
//!   without bound. The refusals themselves are all answered, and counted in `/metrics`.

use std::{
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::{
    cluster::Cluster,
    config::Config,
    error::{AppError, AppResult},
    limits::MessageLimits,
};

pub struct Quotas {
    room_events: Arc<MessageLimits>,
    new_rooms: Arc<MessageLimits>,
    audited_denials: DefaultKeyedRateLimiter<(Uuid, Uuid, String)>,
}

/// Denials of one user, room and action written to the audit log per minute (see the module
/// doc).
pub const AUDITED_DENIALS_PER_MINUTE: u32 = 6;

impl Quotas {
    /// `shared`: the cluster and this cluster's Redis prefix, when there are several nodes.
    pub fn new(config: &Config, shared: Option<(Arc<Cluster>, String)>) -> Arc<Self> {
        // The message limiter's GCRA, under keys of its own (`<prefix>:rooms:rate:<user>`).
        let new_rooms_shared = shared
            .clone()
            .map(|(cluster, prefix)| (cluster, format!("{prefix}:new_rooms")));
        let shared = shared.map(|(cluster, prefix)| (cluster, format!("{prefix}:rooms")));
        let room_events =
            MessageLimits::new(config.room_event_rate, config.room_event_burst, shared);
        let per_hour = config.rooms_per_hour;
        let new_rooms = MessageLimits::with_interval(
            per_hour,
            Duration::from_secs(3600) / per_hour.max(1),
            per_hour,
            new_rooms_shared,
        );
        let per_minute = NonZeroU32::new(AUDITED_DENIALS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        let quotas = Arc::new(Quotas {
            room_events,
            new_rooms,
            audited_denials: RateLimiter::keyed(Quota::per_minute(per_minute)),
        });
        forget_idle(Arc::downgrade(&quotas));
        quotas
    }

    /// Takes one room event from the user's bucket.
    pub async fn room_event(&self, user: Uuid) -> AppResult<()> {
        self.room_events.check(user).await.map_err(|err| match err {
            AppError::RateLimited { retry_after, .. } => AppError::RateLimited {
                message: "too many room requests; slow down".to_owned(),
                retry_after,
            },
            other => other,
        })
    }

    /// Whether this refusal of `action` to `user` on `room` (nil: no room) goes to the audit
    /// log.
    pub fn audit_denial(&self, user: Uuid, room: Uuid, action: &str) -> bool {
        let key = (user, room, action.to_owned());
        self.audited_denials.check_key(&key).is_ok()
    }

    /// Takes one new room from the user's hourly quota.
    pub async fn new_room(&self, user: Uuid) -> AppResult<()> {
        self.new_rooms.check(user).await.map_err(|err| match err {
            AppError::RateLimited { retry_after, .. } => AppError::RateLimited {
                message: "too many new rooms; try again later".to_owned(),
                retry_after,
            },
            other => other,
        })
    }
}

/// Drops the buckets of users idle long enough to be full again, every minute.
fn forget_idle(quotas: Weak<Quotas>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(quotas) = quotas.upgrade() else {
                break;
            };
            quotas.audited_denials.retain_recent();
            quotas.audited_denials.shrink_to_fit();
        }
    });
}
