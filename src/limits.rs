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
//! `AUTH_RATE=0` turns them all off.
//!
//! With several nodes (`REDIS_URL`) every one of these buckets lives in Redis (`SharedBuckets`:
//! GCRA scripts run atomically by Redis, on Redis's clock, each key expiring once its bucket is
//! full again), so a guesser gains nothing by spreading attempts over the nodes. The same rules
//! hold there: cells are taken before the password check (all of an attempt's buckets or none,
//! in one script), given back on success or error, and a success forgets the pair's failures.
//! While Redis is unusable each node falls back to its own in-memory buckets, as a single node
//! always uses: the limits then hold per node, which is better than refusing every login during
//! the outage. An attempt gives its cells back where it took them.

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, LazyLock, Weak},
    time::{Duration, Instant},
};

use dashmap::DashMap;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use uuid::Uuid;

use crate::{cluster::Cluster, error::AppError};

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

    /// Its bucket in Redis. A valid username has no `:`, so the pair's key is unambiguous. A
    /// login takes its pair's and its username's cells in one script, and a Redis Cluster runs
    /// a script only on keys of one slot: the name (`workspace/username`, which can hold no
    /// brace) is the keys' hash tag, so both land in the slot of the name, and different names
    /// spread over the slots.
    fn shared(&self) -> SharedCell {
        let key = match self {
            FailureKey::Pair(address, name) => format!("auth:pair:{{{name}}}:{address}"),
            FailureKey::Username(name) => format!("auth:user:{{{name}}}"),
            FailureKey::Session(session) => format!("auth:session:{session}"),
        };
        let allowed = self.allowed();
        SharedCell {
            key,
            interval_ms: FAILED_LOGIN_WINDOW.as_millis() as f64 / f64::from(allowed),
            burst: allowed,
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
    /// With several nodes: where the buckets live while Redis is usable.
    shared: Option<SharedBuckets>,
    auth_rate: u32,
    clock: DefaultClock,
}

/// The cells one login (or password change) took. Dropped without `failed`, it gives them back:
/// only a wrong password counts.
#[must_use]
pub struct LoginAttempt {
    limits: Arc<AuthLimits>,
    keys: Vec<FailureKey>,
    /// Whether the cells were taken in Redis (else in this node's memory).
    shared: bool,
    failed: bool,
}

impl LoginAttempt {
    /// The password was wrong (or the user unknown): the cells stay taken.
    pub fn failed(mut self) {
        self.failed = true;
    }

    /// The password was right: this address's failures for the username are forgotten, and the
    /// cell of the username's global bucket is given back (the others' failures still count).
    pub async fn succeeded(mut self) {
        if self.shared {
            // Awaited rather than left to `drop`, so that the next attempt (maybe on another
            // node) already sees the forgotten failures; on a task of its own, so that a client
            // hanging up now cannot cancel it half-way.
            self.failed = true;
            let cells: Vec<(SharedCell, bool)> = self
                .keys
                .iter()
                .map(|key| (key.shared(), !matches!(key, FailureKey::Username(_))))
                .collect();
            let limits = self.limits.clone();
            let given_back = tokio::spawn(async move {
                if let Some(shared) = &limits.shared {
                    shared.give_back(&cells).await;
                }
            });
            let _ = given_back.await;
            return;
        }
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
        if self.shared {
            // `drop` cannot wait: the cells come back a moment later, from a task.
            let (limits, keys) = (self.limits.clone(), std::mem::take(&mut self.keys));
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(async move {
                if let Some(shared) = &limits.shared {
                    let cells: Vec<_> = keys.iter().map(|key| (key.shared(), false)).collect();
                    shared.give_back(&cells).await;
                }
            });
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
    /// `auth_rate` per minute per address; 0 turns every auth limit off. `shared`: the cluster
    /// and this cluster's Redis prefix, when there are several nodes.
    pub fn new(auth_rate: u32, shared: Option<(Arc<Cluster>, String)>) -> Arc<Self> {
        let limits = Arc::new(match NonZeroU32::new(auth_rate) {
            None => AuthLimits {
                per_address: None,
                failures: None,
                shared: None,
                auth_rate,
                clock: DefaultClock::default(),
            },
            Some(rate) => AuthLimits {
                per_address: Some(RateLimiter::keyed(Quota::per_minute(rate))),
                failures: Some(DashMap::new()),
                shared: shared.map(|(cluster, prefix)| SharedBuckets::new(cluster, &prefix)),
                auth_rate,
                clock: DefaultClock::default(),
            },
        });
        if limits.per_address.is_some() {
            spawn_cleanup(Arc::downgrade(&limits), AuthLimits::forget_idle);
        }
        limits
    }

    /// Takes one request from the address's bucket, or says how long to wait.
    pub async fn check_address(&self, address: IpAddr) -> Result<(), AppError> {
        let Some(limiter) = &self.per_address else {
            return Ok(());
        };
        let message = "too many requests from this address; try again later";
        let address = address_key(address);
        if let Some(shared) = &self.shared {
            // The governor quota below, as GCRA: `auth_rate` a minute, all of them at once.
            let cell = SharedCell {
                key: format!("auth:addr:{address}"),
                interval_ms: 60_000.0 / f64::from(self.auth_rate.max(1)),
                burst: self.auth_rate.max(1),
            };
            match shared.take(std::slice::from_ref(&cell)).await {
                Some(Ok(())) => return Ok(()),
                Some(Err(wait)) => return Err(refused(message, wait)),
                None => {}
            }
        }
        limiter
            .check_key(&address)
            .map_err(|not_until| refused(message, not_until.wait_time_from(self.clock.now())))
    }

    /// Before checking a login's password: takes a cell from the (address, username) bucket
    /// and from the username's global one, or refuses while either is empty. A username is
    /// counted within its workspace (`workspace`: the slug the client named): `ann` of one
    /// workspace is someone else than `ann` of another. Both must already be valid (ASCII, and
    /// neither contains `/`), so that lowercasing gives the one way to spell the pair.
    pub async fn login_attempt(
        self: &Arc<Self>,
        address: IpAddr,
        workspace: &str,
        username: &str,
    ) -> Result<LoginAttempt, AppError> {
        let name = format!("{workspace}/{username}").to_ascii_lowercase();
        self.take(vec![
            FailureKey::Pair(address_key(address), name.clone()),
            FailureKey::Username(name),
        ])
        .await
    }

    /// Before checking the current password of a password change by `session`.
    pub async fn password_change_attempt(
        self: &Arc<Self>,
        session: Uuid,
    ) -> Result<LoginAttempt, AppError> {
        self.take(vec![FailureKey::Session(session)]).await
    }

    /// Takes a cell from each key's bucket (made on first use), all or none: in Redis when it
    /// is usable, else here.
    async fn take(self: &Arc<Self>, keys: Vec<FailureKey>) -> Result<LoginAttempt, AppError> {
        let mut attempt = LoginAttempt {
            limits: self.clone(),
            keys: Vec::with_capacity(keys.len()),
            shared: false,
            failed: false,
        };
        let Some(map) = &self.failures else {
            return Ok(attempt);
        };
        if let Some(shared) = &self.shared {
            let cells: Vec<SharedCell> = keys.iter().map(FailureKey::shared).collect();
            match shared.take(&cells).await {
                Some(Ok(())) => {
                    attempt.keys = keys;
                    attempt.shared = true;
                    return Ok(attempt);
                }
                Some(Err(wait)) => return Err(refused(FAILED_LOGINS_REFUSED, wait)),
                None => {}
            }
        }
        let now = Instant::now();
        for key in keys {
            let taken = map
                .entry(key.clone())
                .or_insert_with(|| Bucket { tat: now })
                .take(key.allowed(), now);
            if let Err(wait) = taken {
                // `attempt` is dropped here and gives back the cells already taken.
                return Err(refused(FAILED_LOGINS_REFUSED, wait));
            }
            attempt.keys.push(key);
        }
        Ok(attempt)
    }
}

const FAILED_LOGINS_REFUSED: &str = "too many failed logins for this username; try again later";

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

/// One GCRA bucket in Redis: `burst` events at once, one more every `interval_ms`.
#[derive(Clone, Debug)]
pub(crate) struct SharedCell {
    /// Under the cluster's prefix.
    pub key: String,
    pub interval_ms: f64,
    pub burst: u32,
}

/// GCRA buckets kept in Redis and shared by every node, each a "theoretical arrival time" (TAT)
/// of its next event, in ms on Redis's clock, under a key that expires once the bucket is full
/// again (so nothing stays that a missing key would not say). Used for every limit that must
/// hold across nodes: messages, room events, new rooms, and the auth limits.
pub(crate) struct SharedBuckets {
    cluster: Arc<Cluster>,
    prefix: String,
}

/// Takes one event from every bucket in KEYS, or from none. ARGV: for each key in turn, its
/// interval (ms) and burst. Returns 0 if taken, else the ms to wait until all could be.
const GCRA_TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local nexts = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  nexts[i] = tat + interval
  local w = nexts[i] - now - burst * interval
  if w > wait then wait = w end
end
if wait > 0 then return math.ceil(wait) end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.3f', nexts[i]), 'PX', math.ceil(nexts[i] - now) + 1000)
end
return 0
"#;

/// Gives one event back to every bucket in KEYS: its TAT moves one interval earlier, never
/// before now. ARGV: each key's interval (ms), or -1 to forget the bucket (make it full).
const GCRA_GIVE_BACK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if interval >= 0 then tat = tat - interval end
  if interval < 0 or tat <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  end
end
return 0
"#;

// Made once: a script's SHA-1 (by which Redis runs it) is computed when it is made.
static GCRA_TAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_TAKE));
static GCRA_GIVE_BACK_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(GCRA_GIVE_BACK));

impl SharedBuckets {
    pub(crate) fn new(cluster: Arc<Cluster>, prefix: &str) -> Self {
        SharedBuckets {
            cluster,
            prefix: prefix.to_owned(),
        }
    }

    /// Takes an event from each of `cells`, all or none: `Some(Ok)` if taken, `Some(Err(wait))`
    /// if refused, `None` if Redis is unusable (the caller falls back to its local bucket).
    pub(crate) async fn take(&self, cells: &[SharedCell]) -> Option<Result<(), Duration>> {
        if !self.cluster.redis_usable() {
            return None;
        }
        let mut script = GCRA_TAKE_SCRIPT.prepare_invoke();
        for cell in cells {
            script
                .key(format!("{}:{}", self.prefix, cell.key))
                .arg(cell.interval_ms)
                .arg(cell.burst.max(1));
        }
        let Some(mut redis) = self.cluster.redis() else {
            // A Redis Cluster not reached yet.
            self.cluster.redis_failed();
            return None;
        };
        match script.invoke_async::<u64>(&mut redis).await {
            Ok(0) => Some(Ok(())),
            Ok(ms) => Some(Err(Duration::from_millis(ms))),
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    /// Gives an event back to each cell's bucket, or forgets the bucket where the flag is set.
    /// Best effort: if Redis fails, the cells stay taken until they drain by themselves.
    pub(crate) async fn give_back(&self, cells: &[(SharedCell, bool)]) {
        if cells.is_empty() {
            return;
        }
        let mut script = GCRA_GIVE_BACK_SCRIPT.prepare_invoke();
        for (cell, forget) in cells {
            script
                .key(format!("{}:{}", self.prefix, cell.key))
                .arg(if *forget { -1.0 } else { cell.interval_ms });
        }
        let Some(mut redis) = self.cluster.redis() else {
            return;
        };
        if let Err(err) = script.invoke_async::<u64>(&mut redis).await {
            self.failed(&err);
        }
    }

    fn failed(&self, err: &redis::RedisError) {
        tracing::debug!(error = %err, "shared rate limit unavailable; using this node's");
        if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
            self.cluster.redis_failed();
        }
    }
}

/// The per-user limit shared by `sendMessage`, `directMessage` and `typing`: `MESSAGE_RATE` per
/// second with bursts of `MESSAGE_BURST`. `MESSAGE_RATE=0` turns it off. The same type, with
/// other numbers and keys, limits room events and new rooms (see `quotas`).
///
/// With several nodes the bucket lives in Redis (`SharedBuckets`), so every node draws from the
/// same one. While Redis is unreachable each node falls back to its own in-memory bucket: a user
/// may then send up to the limit per node, which is better than refusing every message during
/// the outage.
pub struct MessageLimits {
    local: Option<DefaultKeyedRateLimiter<uuid::Uuid>>,
    shared: Option<SharedBuckets>,
    /// Between events at the sustained rate, and how many may come at once.
    interval: Duration,
    burst: u32,
    clock: DefaultClock,
}

impl MessageLimits {
    /// `rate` per second with bursts of `burst` (0: `rate`); `rate` 0 turns it off.
    pub fn new(
        rate: u32,
        burst: u32,
        shared: Option<(Arc<crate::cluster::Cluster>, String)>,
    ) -> Arc<Self> {
        let burst = if burst == 0 { rate } else { burst };
        Self::with_interval(
            rate,
            Duration::from_secs(1) / rate.max(1),
            burst,
            shared.map(|(cluster, prefix)| (cluster, format!("{prefix}:rate"))),
        )
    }

    /// `burst` events at once, one more every `interval`; `enabled` 0 turns it off. `shared`:
    /// the cluster and the prefix of this limit's keys (`<prefix>:<user>`).
    pub(crate) fn with_interval(
        enabled: u32,
        interval: Duration,
        burst: u32,
        shared: Option<(Arc<crate::cluster::Cluster>, String)>,
    ) -> Arc<Self> {
        let burst = burst.max(1);
        let local = (enabled > 0)
            .then(|| Quota::with_period(interval))
            .flatten()
            .map(|quota| {
                let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
                RateLimiter::keyed(quota.allow_burst(burst))
            });
        let limits = Arc::new(MessageLimits {
            shared: if local.is_some() {
                shared.map(|(cluster, prefix)| SharedBuckets::new(cluster, &prefix))
            } else {
                None
            },
            local,
            interval,
            burst,
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
        if let Some(shared) = &self.shared {
            let cell = SharedCell {
                key: user.to_string(),
                interval_ms: self.interval.as_secs_f64() * 1000.0,
                burst: self.burst,
            };
            match shared.take(std::slice::from_ref(&cell)).await {
                Some(Ok(())) => return Ok(()),
                Some(Err(wait)) => return Err(too_many(wait)),
                None => {}
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

    /// What Redis Cluster hashes of a key: the text between the first `{` and the next `}`
    /// when there is one and it is not empty, else the whole key.
    fn hash_tag(key: &str) -> &str {
        key.find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}')
                    .filter(|&close| close > 0)
                    .map(|close| &rest[..close])
            })
            .unwrap_or(key)
    }

    #[test]
    fn a_logins_two_cells_share_a_cluster_slot_and_names_spread() {
        let address: IpAddr = "203.0.113.7".parse().unwrap();
        let name = "acme/ann".to_owned();
        let pair = FailureKey::Pair(address, name.clone()).shared().key;
        let user = FailureKey::Username(name).shared().key;
        let prefixed = |k: &str| format!("huddle_prod:{k}");
        assert_eq!(hash_tag(&prefixed(&pair)), "acme/ann");
        assert_eq!(hash_tag(&prefixed(&user)), "acme/ann");
        let other = FailureKey::Username("acme/bob".to_owned()).shared().key;
        assert_eq!(hash_tag(&prefixed(&other)), "acme/bob");
    }

    #[tokio::test]
    async fn the_address_bucket_holds_auth_rate_requests() {
        let limits = AuthLimits::new(3, None);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_address(ip).await.unwrap();
        }
        let err = limits.check_address(ip).await.unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        limits
            .check_address("127.0.0.2".parse().unwrap())
            .await
            .unwrap();
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn five_failures_lock_an_address_and_username_and_success_unlocks_it() {
        let limits = AuthLimits::new(30, None);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            limits
                .login_attempt(a, "default", "Alice")
                .await
                .unwrap()
                .failed();
        }
        assert!(
            limits.login_attempt(a, "default", "alice").await.is_err(),
            "sixth attempt refused, any case"
        );
        assert!(limits.login_attempt(a, "default", "bob").await.is_ok());
        // Nor is the same username in another workspace: another person.
        assert!(limits.login_attempt(a, "acme", "alice").await.is_ok());
        // The same username from elsewhere is not locked by this address's failures.
        limits
            .login_attempt(ip("198.51.100.7"), "default", "alice")
            .await
            .unwrap()
            .succeeded()
            .await;

        let limits = AuthLimits::new(30, None);
        for _ in 0..4 {
            limits
                .login_attempt(a, "default", "carol")
                .await
                .unwrap()
                .failed();
        }
        limits
            .login_attempt(a, "default", "carol")
            .await
            .unwrap()
            .succeeded()
            .await;
        for _ in 0..5 {
            limits
                .login_attempt(a, "default", "carol")
                .await
                .unwrap()
                .failed();
        }
    }

    #[tokio::test]
    async fn an_attempt_takes_its_cell_up_front_and_gives_it_back_unless_it_failed() {
        let limits = AuthLimits::new(30, None);
        let a = ip("192.0.2.1");
        // Five attempts in flight at once: a sixth is refused before any has failed.
        let mut pending = Vec::new();
        for _ in 0..5 {
            pending.push(limits.login_attempt(a, "default", "dora").await.unwrap());
        }
        assert!(limits.login_attempt(a, "default", "dora").await.is_err());
        // Ended by neither outcome (an error on the way): the cells come back.
        drop(pending);
        for _ in 0..5 {
            limits
                .login_attempt(a, "default", "dora")
                .await
                .unwrap()
                .failed();
        }
        assert!(limits.login_attempt(a, "default", "dora").await.is_err());
    }

    #[tokio::test]
    async fn many_addresses_lock_a_username_at_the_global_threshold() {
        let limits = AuthLimits::new(30, None);
        for i in 0..FAILED_LOGINS_GLOBAL {
            let from = ip(&format!("10.0.{}.{}", i / 200, i % 200));
            limits
                .login_attempt(from, "default", "erin")
                .await
                .unwrap()
                .failed();
        }
        assert!(limits
            .login_attempt(ip("10.9.9.9"), "default", "erin")
            .await
            .is_err());
        assert!(limits
            .login_attempt(ip("10.9.9.9"), "default", "frank")
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_password_change_counts_per_session_not_per_username() {
        let limits = AuthLimits::new(30, None);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            limits
                .login_attempt(a, "default", "gina")
                .await
                .unwrap()
                .failed();
        }
        let session = Uuid::now_v7();
        for _ in 0..5 {
            limits
                .password_change_attempt(session)
                .await
                .unwrap()
                .failed();
        }
        assert!(limits.password_change_attempt(session).await.is_err());
        assert!(limits.password_change_attempt(Uuid::now_v7()).await.is_ok());
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
        let limits = AuthLimits::new(2, None);
        limits.check_address(ip("2001:db8::1")).await.unwrap();
        limits.check_address(ip("2001:db8::ffff:2")).await.unwrap();
        assert!(limits.check_address(ip("2001:db8::3")).await.is_err());
        limits.check_address(ip("2001:db8:0:1::1")).await.unwrap();
    }

    #[tokio::test]
    async fn zero_turns_every_auth_limit_off() {
        let limits = AuthLimits::new(0, None);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            limits.check_address(ip).await.unwrap();
            limits
                .login_attempt(ip, "default", "dave")
                .await
                .unwrap()
                .failed();
        }
    }
}
