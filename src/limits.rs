//! Rate limits on register and login, built on `governor` (GCRA token buckets).
//!
//! - `AUTH_RATE` requests per minute per client address, shared by register and login.
//! - 5 failed logins per username in 15 minutes (one more allowed every 3 minutes), counted for
//!   unknown usernames too so the limit says nothing about which names exist, and cleared by a
//!   successful login. While a username is over it, login is refused before any password work.
//!
//! `AUTH_RATE=0` turns both off. These live in this process; the per-user message limit, which
//! must hold across nodes, is separate.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use dashmap::DashMap;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter,
};

use crate::error::AppError;

const FAILED_LOGINS: u32 = 5;
const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

pub struct AuthLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Lower-cased username -> its failure bucket and when it last failed (for clean-up).
    failed_logins: Option<DashMap<String, (DefaultDirectRateLimiter, Instant)>>,
    clock: DefaultClock,
}

/// Whether a login attempt already took a cell from its username's failure bucket.
#[must_use]
pub struct LoginAttempt {
    key: String,
    counted: bool,
}

impl AuthLimits {
    /// `auth_rate` per minute per address; 0 turns every auth limit off.
    pub fn new(auth_rate: u32) -> Arc<Self> {
        let limits = Arc::new(match NonZeroU32::new(auth_rate) {
            None => AuthLimits {
                per_address: None,
                failed_logins: None,
                clock: DefaultClock::default(),
            },
            Some(rate) => AuthLimits {
                per_address: Some(RateLimiter::keyed(Quota::per_minute(rate))),
                failed_logins: Some(DashMap::new()),
                clock: DefaultClock::default(),
            },
        });
        if limits.per_address.is_some() {
            spawn_cleanup(Arc::downgrade(&limits), AuthLimits::forget_idle);
        }
        limits
    }

    /// Takes one request from the address's bucket, or says how long to wait.
    pub fn check_address(&self, address: IpAddr) -> Result<(), AppError> {
        let Some(limiter) = &self.per_address else {
            return Ok(());
        };
        limiter.check_key(&address).map_err(|not_until| {
            self.refused(
                "too many requests from this address; try again later",
                not_until,
            )
        })
    }

    /// Before checking a password: refuses while the username is over its failure limit. When
    /// the username already has a bucket this takes a cell now (given back by `succeeded`), so
    /// that concurrent guesses cannot all slip in before the first failure is counted.
    pub fn login_attempt(&self, username: &str) -> Result<LoginAttempt, AppError> {
        let key = username.to_lowercase();
        let Some(map) = &self.failed_logins else {
            return Ok(LoginAttempt { key, counted: true });
        };
        let counted = match map.get(&key) {
            None => false,
            Some(entry) => {
                entry.0.check().map_err(|not_until| {
                    self.refused(
                        "too many failed logins for this username; try again later",
                        not_until,
                    )
                })?;
                true
            }
        };
        Ok(LoginAttempt { key, counted })
    }

    /// The password was wrong (or the user unknown).
    pub fn failed(&self, attempt: LoginAttempt) {
        let Some(map) = &self.failed_logins else {
            return;
        };
        let mut entry = map.entry(attempt.key).or_insert_with(|| {
            let quota = Quota::with_period(FAILED_LOGIN_WINDOW / FAILED_LOGINS)
                .expect("non-zero period")
                .allow_burst(NonZeroU32::new(FAILED_LOGINS).expect("non-zero"));
            (RateLimiter::direct(quota), Instant::now())
        });
        if !attempt.counted {
            // The bucket was just made (or made by a concurrent failure): this failure's cell.
            let _ = entry.0.check();
        }
        entry.1 = Instant::now();
    }

    /// The password was right: the username's failures are forgotten.
    pub fn succeeded(&self, attempt: LoginAttempt) {
        if let Some(map) = &self.failed_logins {
            map.remove(&attempt.key);
        }
    }

    fn refused(
        &self,
        message: &str,
        not_until: NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> AppError {
        AppError::RateLimited {
            message: message.to_owned(),
            retry_after: not_until.wait_time_from(self.clock.now()),
        }
    }
}

/// Runs `forget_idle` on the limits once a minute, so memory does not grow with every key ever
/// seen. Stops when the limits are dropped.
fn spawn_cleanup<T: Send + Sync + 'static>(limits: Weak<T>, forget_idle: fn(&T)) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(limits) = limits.upgrade() else {
                break;
            };
            forget_idle(&limits);
        }
    });
}

impl AuthLimits {
    fn forget_idle(&self) {
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(map) = &self.failed_logins {
            map.retain(|_, (_, last)| last.elapsed() < FAILED_LOGIN_WINDOW);
        }
    }
}

/// The per-user limit shared by `sendMessage`, `directMessage` and `typing`: `MESSAGE_RATE` per
/// second with bursts of `MESSAGE_BURST`. `MESSAGE_RATE=0` turns it off.
///
/// With several nodes the bucket lives in Redis (a GCRA script run atomically by Redis, on
/// Redis's clock), so every node draws from the same one. While Redis is unreachable each node
/// falls back to its own in-memory bucket: a user may then send up to the limit per node, which
/// is better than refusing every message during the outage.
pub struct MessageLimits {
    local: Option<DefaultKeyedRateLimiter<uuid::Uuid>>,
    shared: Option<(Arc<crate::cluster::Cluster>, String)>,
    rate: u32,
    burst: u32,
    clock: DefaultClock,
}

/// GCRA over Redis. KEYS[1]: the user's key; ARGV[1]: milliseconds between events at the
/// sustained rate; ARGV[2]: the burst. Keeps the "theoretical arrival time" of the next event;
/// returns 0 if the event may go now, else how many milliseconds to wait.
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - now - burst * interval
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(burst * interval) + 1000)
return 0
"#;

impl MessageLimits {
    pub fn new(
        rate: u32,
        burst: u32,
        shared: Option<(Arc<crate::cluster::Cluster>, String)>,
    ) -> Arc<Self> {
        let local = NonZeroU32::new(rate).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let limits = Arc::new(MessageLimits {
            local,
            shared: if rate > 0 { shared } else { None },
            rate,
            burst: burst.max(1),
            clock: DefaultClock::default(),
        });
        if limits.local.is_some() {
            spawn_cleanup(Arc::downgrade(&limits), |l: &MessageLimits| {
                if let Some(local) = &l.local {
                    local.retain_recent();
                }
            });
        }
        limits
    }

    /// Takes one event from the user's bucket, or says how long to wait.
    pub async fn check(&self, user: uuid::Uuid) -> Result<(), AppError> {
        let Some(limiter) = &self.local else {
            return Ok(());
        };
        if let Some((cluster, prefix)) = self.shared.as_ref().filter(|(c, _)| c.redis_usable()) {
            let mut redis = cluster.redis();
            let interval = 1000.0 / f64::from(self.rate);
            let waited: redis::RedisResult<u64> = redis::Script::new(GCRA)
                .key(format!("{prefix}:rate:{user}"))
                .arg(interval)
                .arg(self.burst)
                .invoke_async(&mut redis)
                .await;
            match waited {
                Ok(0) => return Ok(()),
                Ok(ms) => return Err(too_many(Duration::from_millis(ms))),
                Err(err) => {
                    tracing::debug!(error = %err, "shared rate limit unavailable; using this node's")
                }
            }
        }
        limiter
            .check_key(&user)
            .map_err(|not_until| too_many(not_until.wait_time_from(self.clock.now())))
    }
}

fn too_many(retry_after: Duration) -> AppError {
    AppError::RateLimited {
        message: "too many messages; slow down".to_owned(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_address_bucket_holds_auth_rate_requests() {
        let limits = AuthLimits::new(3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_address(ip).unwrap();
        }
        let err = limits.check_address(ip).unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        limits.check_address("127.0.0.2".parse().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn five_failures_lock_a_username_and_success_unlocks_it() {
        let limits = AuthLimits::new(30);
        for _ in 0..5 {
            let attempt = limits.login_attempt("Alice").unwrap();
            limits.failed(attempt);
        }
        assert!(
            limits.login_attempt("alice").is_err(),
            "sixth attempt refused, any case"
        );
        assert!(limits.login_attempt("bob").is_ok());

        let limits = AuthLimits::new(30);
        for _ in 0..4 {
            let attempt = limits.login_attempt("carol").unwrap();
            limits.failed(attempt);
        }
        let attempt = limits.login_attempt("carol").unwrap();
        limits.succeeded(attempt);
        for _ in 0..5 {
            let attempt = limits.login_attempt("carol").unwrap();
            limits.failed(attempt);
        }
    }

    #[tokio::test]
    async fn zero_turns_every_auth_limit_off() {
        let limits = AuthLimits::new(0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            limits.check_address(ip).unwrap();
            let attempt = limits.login_attempt("dave").unwrap();
            limits.failed(attempt);
        }
    }
}
