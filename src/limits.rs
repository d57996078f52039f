//! Rate limits on register and login.
//!
//! - `AUTH_RATE` requests per minute per client address, shared by register and login. An IPv6
//!   address counts by its /64, since one host is routinely given a whole /64.
//! - Failed logins, counted per (client address, username): 5 in 15 minutes (one more allowed
//!   every 3 minutes). This is the rule that stops guessing from one place; keyed by the pair, a
//!   trickle of wrong passwords from someone else's address cannot lock the owner out.
//! - Failed logins per username from all addresses together: 50 in 15 minutes. This stops a
//!   guesser with many addresses (one guess every 18 s at most, hopeless against any real
//!   password), and an attacker must command that many addresses to lock the owner out, and only
//!   for as long as they keep it up.
//! - A wrong current password on `POST /api/me/password` counts per session (5 in 15 minutes):
//!   a stolen access token is no faster a way to guess, and no one else's failures can block
//!   the owner's own session.
//!
//! Each attempt takes its cells *before* the password is checked, so a burst of concurrent
//! guesses cannot all slip in before the first failure is counted; a success gives them back
//! (and forgets the pair's failures), as does an attempt that ends in neither outcome (an error).
//! Unknown usernames are counted like known ones, so the limits say nothing about which exist.
//!
//! `AUTH_RATE=0` turns them all off. These live in this process; the per-user message limit,
//! which must hold across nodes, is separate.

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use dashmap::DashMap;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use uuid::Uuid;

use crate::error::AppError;

/// Failed logins allowed per (address, username), and per session for a password change.
const FAILED_LOGINS: u32 = 5;
/// Failed logins allowed per username across every address.
const FAILED_LOGINS_GLOBAL: u32 = 50;
const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What a failure is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FailureKey {
    /// A client address (IPv6 by /64) and an ASCII-lowercased username.
    Pair(IpAddr, String),
    /// An ASCII-lowercased username, from anywhere.
    Username(String),
    /// An authenticated session changing its password.
    Session(Uuid),
}

impl FailureKey {
    fn allowed(&self) -> u32 {
        match self {
            FailureKey::Username(_) => FAILED_LOGINS_GLOBAL,
            FailureKey::Pair(..) | FailureKey::Session(_) => FAILED_LOGINS,
        }
    }
}

/// A GCRA bucket of `allowed` failures per `FAILED_LOGIN_WINDOW`, as a "theoretical arrival
/// time": each failure pushes it one interval later; a failure is allowed while it stays within
/// one window of now. Unlike governor's buckets it can give a cell back.
#[derive(Debug)]
struct Bucket {
    tat: Instant,
}

impl Bucket {
    fn interval(allowed: u32) -> Duration {
        FAILED_LOGIN_WINDOW / allowed
    }

    /// Takes a cell, or says how long until one is free.
    fn take(&mut self, allowed: u32, now: Instant) -> Result<(), Duration> {
        let next = self.tat.max(now) + Self::interval(allowed);
        let debt = next - now;
        if debt > FAILED_LOGIN_WINDOW {
            return Err(debt - FAILED_LOGIN_WINDOW);
        }
        self.tat = next;
        Ok(())
    }

    fn give_back(&mut self, allowed: u32, now: Instant) {
        self.tat = self
            .tat
            .checked_sub(Self::interval(allowed))
            .unwrap_or(now)
            .max(now);
    }

    /// Full again: nothing to remember.
    fn is_idle(&self, now: Instant) -> bool {
        self.tat <= now
    }
}

pub struct AuthLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Option<DashMap<FailureKey, Bucket>>,
    clock: DefaultClock,
}

/// The cells one login (or password change) took. Dropped without `failed`, it gives them back:
/// only a wrong password counts.
#[must_use]
pub struct LoginAttempt {
    limits: Arc<AuthLimits>,
    keys: Vec<FailureKey>,
    failed: bool,
}

impl LoginAttempt {
    /// The password was wrong (or the user unknown): the cells stay taken.
    pub fn failed(mut self) {
        self.failed = true;
    }

    /// The password was right: this address's failures for the username are forgotten, and the
    /// cell of the username's global bucket is given back (the others' failures still count).
    pub fn succeeded(mut self) {
        if let Some(map) = &self.limits.failures {
            self.keys.retain(|key| match key {
                FailureKey::Username(_) => true,
                other => {
                    map.remove(other);
                    false
                }
            });
        }
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if self.failed {
            return;
        }
        let Some(map) = &self.limits.failures else {
            return;
        };
        let now = Instant::now();
        for key in &self.keys {
            if let Some(mut bucket) = map.get_mut(key) {
                bucket.give_back(key.allowed(), now);
            }
        }
    }
}

/// The address as the limits count it: IPv4 (also when mapped into IPv6) as it is, IPv6 by /64.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl AuthLimits {
    /// `auth_rate` per minute per address; 0 turns every auth limit off.
    pub fn new(auth_rate: u32) -> Arc<Self> {
        let limits = Arc::new(match NonZeroU32::new(auth_rate) {
            None => AuthLimits {
                per_address: None,
                failures: None,
                clock: DefaultClock::default(),
            },
            Some(rate) => AuthLimits {
                per_address: Some(RateLimiter::keyed(Quota::per_minute(rate))),
                failures: Some(DashMap::new()),
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
        limiter
            .check_key(&address_key(address))
            .map_err(|not_until| {
                refused(
                    "too many requests from this address; try again later",
                    not_until.wait_time_from(self.clock.now()),
                )
            })
    }

    /// Before checking a login's password: takes a cell from the (address, username) bucket
    /// and from the username's global one, or refuses while either is empty. `username` must
    /// already be a valid username (ASCII), so that lowercasing it is the one way to spell it.
    pub fn login_attempt(
        self: &Arc<Self>,
        address: IpAddr,
        username: &str,
    ) -> Result<LoginAttempt, AppError> {
        let name = username.to_ascii_lowercase();
        self.take(vec![
            FailureKey::Pair(address_key(address), name.clone()),
            FailureKey::Username(name),
        ])
    }

    /// Before checking the current password of a password change by `session`.
    pub fn password_change_attempt(
        self: &Arc<Self>,
        session: Uuid,
    ) -> Result<LoginAttempt, AppError> {
        self.take(vec![FailureKey::Session(session)])
    }

    /// Takes a cell from each key's bucket (made on first use), all or none.
    fn take(self: &Arc<Self>, keys: Vec<FailureKey>) -> Result<LoginAttempt, AppError> {
        let mut attempt = LoginAttempt {
            limits: self.clone(),
            keys: Vec::with_capacity(keys.len()),
            failed: false,
        };
        let Some(map) = &self.failures else {
            return Ok(attempt);
        };
        let now = Instant::now();
        for key in keys {
            let taken = map
                .entry(key.clone())
                .or_insert_with(|| Bucket { tat: now })
                .take(key.allowed(), now);
            if let Err(wait) = taken {
                // `attempt` is dropped here and gives back the cells already taken.
                return Err(refused(
                    "too many failed logins for this username; try again later",
                    wait,
                ));
            }
            attempt.keys.push(key);
        }
        Ok(attempt)
    }
}

fn refused(message: &str, retry_after: Duration) -> AppError {
    AppError::RateLimited {
        message: message.to_owned(),
        retry_after,
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
        if let Some(map) = &self.failures {
            let now = Instant::now();
            map.retain(|_, bucket| !bucket.is_idle(now));
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn five_failures_lock_an_address_and_username_and_success_unlocks_it() {
        let limits = AuthLimits::new(30);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            limits.login_attempt(a, "Alice").unwrap().failed();
        }
        assert!(
            limits.login_attempt(a, "alice").is_err(),
            "sixth attempt refused, any case"
        );
        assert!(limits.login_attempt(a, "bob").is_ok());
        // The same username from elsewhere is not locked by this address's failures.
        limits
            .login_attempt(ip("198.51.100.7"), "alice")
            .unwrap()
            .succeeded();

        let limits = AuthLimits::new(30);
        for _ in 0..4 {
            limits.login_attempt(a, "carol").unwrap().failed();
        }
        limits.login_attempt(a, "carol").unwrap().succeeded();
        for _ in 0..5 {
            limits.login_attempt(a, "carol").unwrap().failed();
        }
    }

    #[tokio::test]
    async fn an_attempt_takes_its_cell_up_front_and_gives_it_back_unless_it_failed() {
        let limits = AuthLimits::new(30);
        let a = ip("192.0.2.1");
        // Five attempts in flight at once: a sixth is refused before any has failed.
        let pending: Vec<_> = (0..5)
            .map(|_| limits.login_attempt(a, "dora").unwrap())
            .collect();
        assert!(limits.login_attempt(a, "dora").is_err());
        // Ended by neither outcome (an error on the way): the cells come back.
        drop(pending);
        for _ in 0..5 {
            limits.login_attempt(a, "dora").unwrap().failed();
        }
        assert!(limits.login_attempt(a, "dora").is_err());
    }

    #[tokio::test]
    async fn many_addresses_lock_a_username_at_the_global_threshold() {
        let limits = AuthLimits::new(30);
        for i in 0..FAILED_LOGINS_GLOBAL {
            let from = ip(&format!("10.0.{}.{}", i / 200, i % 200));
            limits.login_attempt(from, "erin").unwrap().failed();
        }
        assert!(limits.login_attempt(ip("10.9.9.9"), "erin").is_err());
        assert!(limits.login_attempt(ip("10.9.9.9"), "frank").is_ok());
    }

    #[tokio::test]
    async fn a_password_change_counts_per_session_not_per_username() {
        let limits = AuthLimits::new(30);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            limits.login_attempt(a, "gina").unwrap().failed();
        }
        let session = Uuid::now_v7();
        for _ in 0..5 {
            limits.password_change_attempt(session).unwrap().failed();
        }
        assert!(limits.password_change_attempt(session).is_err());
        assert!(limits.password_change_attempt(Uuid::now_v7()).is_ok());
    }

    #[tokio::test]
    async fn ipv6_counts_by_its_64() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let limits = AuthLimits::new(2);
        limits.check_address(ip("2001:db8::1")).unwrap();
        limits.check_address(ip("2001:db8::ffff:2")).unwrap();
        assert!(limits.check_address(ip("2001:db8::3")).is_err());
        limits.check_address(ip("2001:db8:0:1::1")).unwrap();
    }

    #[tokio::test]
    async fn zero_turns_every_auth_limit_off() {
        let limits = AuthLimits::new(0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            limits.check_address(ip).unwrap();
            limits.login_attempt(ip, "dave").unwrap().failed();
        }
    }
}
