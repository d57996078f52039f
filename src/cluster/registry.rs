//! The node registry: the nodes alive now, so that a question waits for exactly them (see the
//! `cluster` module's comment for why a registry rather than the bus's subscriber count).

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use uuid::Uuid;

use super::{engine::COMMAND_TIMEOUT, Cluster};

/// How often a node renews its registry entry and re-reads the others'.
const NODE_REFRESH: Duration = Duration::from_millis(2500);
/// How long an entry lives unrenewed: a few refreshes, so one slow round trip drops no node,
/// and a dead node is waited for this long at most.
const NODE_TTL: Duration = Duration::from_secs(10);

impl Cluster {
    /// Renews this node's registry entry, or takes it out while this node does not hear the bus
    /// (a node that cannot hear questions must not be waited for); drops expired entries, and
    /// caches the other nodes.
    async fn refresh_registry(&self, announce: bool) -> redis::RedisResult<()> {
        let register =
            self.subscribed.load(Ordering::Acquire) && !self.leaving.load(Ordering::Acquire);
        let mut redis = self.commands()?;
        let members: Vec<String> = REGISTRY_SCRIPT
            .key(&self.nodes_key)
            .arg(self.node.to_string())
            .arg(NODE_TTL.as_millis() as u64)
            .arg(if register { "1" } else { "0" })
            .invoke_async(&mut redis)
            .await?;
        let others = members
            .iter()
            .filter_map(|m| Uuid::parse_str(m).ok())
            .filter(|n| *n != self.node)
            .collect();
        self.set_other_nodes(others);
        if register && announce {
            self.engine
                .publish(&self.joined, &self.node.to_string())
                .query_async::<i64>(&mut redis)
                .await?;
        }
        Ok(())
    }

    /// For a graceful shutdown: takes this node out of the registry at once, rather than
    /// letting its entry expire, so that no question waits for it any more; the registry task
    /// stops renewing it.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        self.refresh.notify_one();
        self.leave_registry().await;
    }

    /// Takes this node out of the registry, so that no one waits for it any more.
    async fn leave_registry(&self) {
        let Some(mut redis) = self.engine.commands() else {
            return;
        };
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&self.nodes_key).arg(self.node.to_string());
        let removed = zrem.query_async::<i64>(&mut redis);
        match tokio::time::timeout(COMMAND_TIMEOUT, removed).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "could not leave the node registry"),
            Err(_) => tracing::debug!("leaving the node registry timed out"),
        }
    }
}

/// The registry round trip, atomic on Redis's clock. KEYS[1]: the sorted set; ARGV[1]: this
/// node's id; ARGV[2]: the entry's lifetime in ms; ARGV[3]: '1' to renew the entry, '0' to take
/// it out. Returns the live members.
const REGISTRY: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

static REGISTRY_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(REGISTRY));

/// Keeps this node's registry entry fresh and its list of the others current, for as long as
/// the cluster exists, and until a graceful shutdown has taken the entry out (`leave`, from
/// `Realtime::close`).
pub(super) async fn registry(cluster: std::sync::Weak<Cluster>, refresh: Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(NODE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = refresh.notified() => {}
        }
        let Some(c) = cluster.upgrade() else { return };
        if c.leaving.load(Ordering::Acquire) {
            return;
        }
        // A Redis Cluster not reached yet: the supervisor is on it, and wakes this task when it
        // is; nothing failed that should make Redis work be skipped meanwhile.
        if c.engine.commands().is_none() {
            continue;
        }
        let announce = c.announce.swap(false, Ordering::AcqRel);
        let refreshed = tokio::time::timeout(COMMAND_TIMEOUT * 2, c.refresh_registry(announce));
        let failed = match refreshed.await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        if let Some(err) = failed {
            tracing::debug!(error = %err, "could not refresh the node registry");
            if announce {
                c.announce.store(true, Ordering::Release);
            }
            c.redis_failed();
        }
    }
}
