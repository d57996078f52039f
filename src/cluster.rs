//! Several nodes as one, over Redis.
//!
//! Each node keeps its own sockets (socketioxide's in-memory adapter) and tells the others, on
//! one Redis pub/sub channel, every operation that concerns sockets wherever they are: "emit
//! this to these rooms", "disconnect these rooms", "take these sockets out of that room". Every
//! node applies what it hears to its own sockets. Questions that need every node's answer (how
//! many sockets does this user have in this room or anywhere, who is online) go out on the same
//! channel, and each node answers on the asker's own reply channel, naming itself.
//!
//! Who "every node" is comes from a registry, not from counting the bus's subscribers (anyone
//! may subscribe to the bus, e.g. an operator's `redis-cli`, and would then be waited for on
//! every question). Each node, while it hears the bus, keeps itself in the sorted set
//! `<prefix>:nodes` with an expiry (Redis's clock) a few refreshes ahead, drops expired members,
//! and caches the other members; a question waits only for those. A node that (re)joins says so
//! on `<prefix>:joined`, so the others re-read the set at once rather than at their next
//! refresh. A node that dies stays in the set until its entry expires (`NODE_TTL`): questions
//! meanwhile wait the full timeout for it, counted in `huddle_cluster_query_timeouts_total`.
//!
//! Why not socketioxide's Redis adapter: after a Redis outage it never resubscribes, so nodes
//! stay deaf to each other until restarted. Here the subscriber reconnects with backoff, and an
//! operation that cannot be published is still applied to this node's sockets, so a node keeps
//! serving its own clients while Redis is away, and cross-node delivery resumes by itself when
//! it returns. Messages are in Postgres before anything is published, so an outage loses no
//! message: clients on other nodes catch up with `joinRoom {since}` (or `history {after}`).

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use dashmap::DashMap;
use futures::StreamExt;
use redis::{aio::ConnectionManager, AsyncCommands};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::rooms::RoomRef;

/// What one node asks the others to do to their sockets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Emit `event` to the sockets in any of `channels` (Socket.IO rooms).
    Emit {
        channels: Vec<String>,
        event: String,
        data: Value,
    },
    /// Deliver a committed message (`message`) to the sockets in any of `channels`.
    Deliver { channels: Vec<String>, data: Value },
    /// Disconnect the sockets in any of `channels`.
    Disconnect { channels: Vec<String> },
    /// The sockets in `channel` get `removed` and leave `room`.
    Evict {
        channel: String,
        room: RoomRef,
        removed: Value,
    },
    /// Answer `query` on the reply channel of node `reply_to`.
    Query {
        id: Uuid,
        reply_to: Uuid,
        query: Query,
    },
}

/// Questions every node answers about its own sockets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    /// How many sockets `user` has in `room` (a number).
    SocketsInRoom { room: Uuid, user: Uuid },
    /// How many sockets `user` has at all (a number).
    SocketsOfUser { user: Uuid },
    /// The users with a socket in `room` (user refs).
    UsersInRoom { room: Uuid },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: Uuid,
    #[serde(flatten)]
    op: Op,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    id: Uuid,
    /// The answering node: each known node's answer is awaited once.
    node: Uuid,
    answer: Value,
}

/// How a node applies what it hears; implemented by the realtime layer.
pub trait Apply: Send + Sync + 'static {
    fn apply(&self, op: Op) -> futures::future::BoxFuture<'_, ()>;
    fn answer(&self, query: Query) -> Value;
}

/// This node's link to the others.
pub struct Cluster {
    node: Uuid,
    bus: String,
    reply_prefix: String,
    /// The registry's sorted set, and the channel a node (re)joining announces itself on.
    nodes_key: String,
    joined: String,
    redis: ConnectionManager,
    waiting: DashMap<Uuid, mpsc::UnboundedSender<(Uuid, Value)>>,
    /// The other live nodes, as last read from the registry: whom a question waits for.
    others: RwLock<HashSet<Uuid>>,
    /// Wakes the registry task before its next tick: this node (re)subscribed, or another node
    /// joined.
    refresh: Arc<tokio::sync::Notify>,
    /// Set on each (re)subscription: the next registry refresh tells the others this node is
    /// there, so they need not wait for their own next refresh to ask it.
    announce: AtomicBool,
    /// Questions that gave up waiting for a known node.
    query_timeouts: AtomicU64,
    /// Set by `leave`: the node is shutting down and must not register again.
    leaving: AtomicBool,
    /// True while the subscriber is connected (and so this node hears the others).
    subscribed: AtomicBool,
    /// True while publishing works; used to log an outage once rather than per message.
    publishing: AtomicBool,
    /// Envelopes waiting for the publisher task (see `publish`).
    outbox: mpsc::Sender<String>,
    /// Envelopes not published because Redis was failing or the outbox was full.
    unpublished: AtomicU64,
    /// Envelopes this node published, and envelopes it read off the bus (its own included):
    /// what the bus costs each node, the figure that routing by room is to shrink.
    published_total: AtomicU64,
    received_total: AtomicU64,
    /// Woken each time the subscriber (re)connects: whatever was published meanwhile was not
    /// heard, so the realtime layer re-checks its sockets (`realtime::revalidate`).
    pub resubscribed: tokio::sync::Notify,
    /// When Redis last failed a command (ms since `started`; 0: never). While this is recent,
    /// Redis work is skipped rather than waited on: an outage must not slow this node down.
    last_failure_ms: AtomicU64,
    started: std::time::Instant,
}

/// How long a question waits for the other nodes' answers.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often a node renews its registry entry and re-reads the others'.
const NODE_REFRESH: Duration = Duration::from_millis(2500);
/// How long an entry lives unrenewed: a few refreshes, so one slow round trip drops no node,
/// and a dead node is waited for this long at most.
const NODE_TTL: Duration = Duration::from_secs(10);
/// Redis commands give up after this, so an outage costs a request this much at most.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Envelopes that may wait for the publisher; past this they are dropped (and counted) rather
/// than held or waited for: the message path must never wait on Redis.
const OUTBOX: usize = 16 * 1024;
/// Most envelopes published in one round trip (a pipeline of PUBLISH commands).
const PUBLISH_BATCH: usize = 256;

impl Cluster {
    /// Connects lazily (a node starts even while Redis is away) and starts the subscriber.
    pub fn start(url: &str, prefix: &str, local: Arc<dyn Apply>) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let node = Uuid::new_v4();
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let cluster = Arc::new(Cluster {
            node,
            bus: format!("{prefix}:bus"),
            reply_prefix: format!("{prefix}:reply:"),
            nodes_key: format!("{prefix}:nodes"),
            joined: format!("{prefix}:joined"),
            redis,
            waiting: DashMap::new(),
            others: RwLock::new(HashSet::new()),
            refresh: Arc::new(tokio::sync::Notify::new()),
            announce: AtomicBool::new(false),
            query_timeouts: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            publishing: AtomicBool::new(true),
            outbox,
            unpublished: AtomicU64::new(0),
            published_total: AtomicU64::new(0),
            received_total: AtomicU64::new(0),
            resubscribed: tokio::sync::Notify::new(),
            last_failure_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        });
        tokio::spawn(subscribe(client, Arc::downgrade(&cluster), local));
        tokio::spawn(publisher(Arc::downgrade(&cluster), outgoing));
        tokio::spawn(registry(Arc::downgrade(&cluster), cluster.refresh.clone()));
        tracing::info!(node.id = %node, prefix, "cluster mode: nodes meet over Redis");
        Ok(cluster)
    }

    /// The command connection, for other uses of the same Redis (rate limits).
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Whether Redis work should be tried now: yes unless a command failed less than a second
    /// ago (then one try per second probes whether it is back).
    pub fn redis_usable(&self) -> bool {
        let failed = self.last_failure_ms.load(Ordering::Acquire);
        failed == 0 || self.now_ms().saturating_sub(failed) >= 1000
    }

    /// Records a failed Redis command (see `redis_usable`).
    pub fn redis_failed(&self) {
        self.last_failure_ms
            .store(self.now_ms().max(1), Ordering::Release);
    }

    fn redis_ok(&self) {
        self.last_failure_ms.store(0, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether Redis answers a PING now.
    pub async fn ping(&self) -> bool {
        let mut redis = self.redis.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut redis);
        let up = matches!(tokio::time::timeout(COMMAND_TIMEOUT, ping).await, Ok(Ok(_)));
        if up {
            self.redis_ok();
        } else {
            self.redis_failed();
        }
        up
    }

    /// Tells the other nodes, without waiting for Redis: the envelope is queued for the
    /// publisher task, which sends queued envelopes in order, many per round trip. While Redis
    /// is failing, or the queue is full, the envelope is dropped and counted: the operation has
    /// been applied to this node's sockets already, messages are in Postgres, and clients on
    /// other nodes catch up with `since` (and sockets are re-checked, see `revalidate`). So an
    /// unresponsive Redis can slow no commit and no acknowledgement.
    pub async fn publish(&self, op: Op) {
        let envelope = Envelope {
            from: self.node,
            op,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        if !self.redis_usable() || self.outbox.try_send(payload).is_err() {
            self.unpublished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Envelopes dropped because Redis was failing or too slow (see `publish`).
    pub fn unpublished(&self) -> u64 {
        self.unpublished.load(Ordering::Relaxed)
    }

    /// Envelopes this node published on the bus.
    pub fn published_total(&self) -> u64 {
        self.published_total.load(Ordering::Relaxed)
    }

    /// Envelopes this node read off the bus, its own included.
    pub fn received_total(&self) -> u64 {
        self.received_total.load(Ordering::Relaxed)
    }

    fn published(&self, result: &redis::RedisResult<()>) {
        match result {
            Ok(()) => {
                self.redis_ok();
                if !self.publishing.swap(true, Ordering::AcqRel) {
                    tracing::info!("Redis is back: publishing to the other nodes again");
                }
            }
            Err(err) => {
                self.redis_failed();
                if self.publishing.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %err, "Redis unavailable: other nodes will not hear this node until it returns");
                }
            }
        }
    }

    /// Asks every other node; returns the answers that came within the timeout. Waits for the
    /// nodes in the registry only (see the module doc); a node that answers without being known
    /// yet (it has just joined) is counted too.
    pub async fn ask(&self, query: Query) -> Vec<Value> {
        // Without the subscription no answer could reach us; without Redis no question goes out.
        if !self.subscribed.load(Ordering::Acquire) || !self.redis_usable() {
            return Vec::new();
        }
        let mut expected = self.other_nodes();
        if expected.is_empty() {
            return Vec::new();
        }
        let id = Uuid::new_v4();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting.insert(id, tx);
        self.publish(Op::Query {
            id,
            reply_to: self.node,
            query,
        })
        .await;
        let mut answered = HashSet::new();
        let mut answers = Vec::new();
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        while !expected.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((node, answer))) => {
                    // A node answers once; a duplicate (a replayed reply) must not count twice.
                    if answered.insert(node) {
                        expected.remove(&node);
                        answers.push(answer);
                    }
                }
                _ => {
                    self.query_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        missing = expected.len(),
                        "a question timed out waiting for nodes"
                    );
                    break;
                }
            }
        }
        self.waiting.remove(&id);
        answers
    }

    /// The other live nodes as last read from the registry.
    fn other_nodes(&self) -> HashSet<Uuid> {
        match self.others.read() {
            Ok(others) => others.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_other_nodes(&self, nodes: HashSet<Uuid>) {
        match self.others.write() {
            Ok(mut others) => *others = nodes,
            Err(poisoned) => *poisoned.into_inner() = nodes,
        }
    }

    /// Questions that gave up waiting for a node the registry listed (it died, or is too slow).
    pub fn query_timeouts(&self) -> u64 {
        self.query_timeouts.load(Ordering::Relaxed)
    }

    /// Renews this node's registry entry, or takes it out while this node does not hear the bus
    /// (a node that cannot hear questions must not be waited for); drops expired entries, and
    /// caches the other nodes.
    async fn refresh_registry(&self, announce: bool) -> redis::RedisResult<()> {
        let register =
            self.subscribed.load(Ordering::Acquire) && !self.leaving.load(Ordering::Acquire);
        let mut redis = self.redis.clone();
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
            redis
                .publish::<_, _, i64>(&self.joined, self.node.to_string())
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
        let mut redis = self.redis.clone();
        // Bounded by the connection's response timeout (`COMMAND_TIMEOUT`).
        let removed = redis.zrem::<_, _, i64>(&self.nodes_key, self.node.to_string());
        if let Err(err) = removed.await {
            tracing::debug!(error = %err, "could not leave the node registry");
        }
    }

    async fn reply(&self, to: Uuid, id: Uuid, answer: Value) {
        let reply = Reply {
            id,
            node: self.node,
            answer,
        };
        let Ok(payload) = serde_json::to_string(&reply) else {
            return;
        };
        let mut redis = self.redis.clone();
        let channel = format!("{}{to}", self.reply_prefix);
        if let Err(err) = redis.publish::<_, _, i64>(channel, payload).await {
            tracing::debug!(error = %err, "could not answer another node");
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
async fn registry(cluster: std::sync::Weak<Cluster>, refresh: Arc<tokio::sync::Notify>) {
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
        let announce = c.announce.swap(false, Ordering::AcqRel);
        if let Err(err) = c.refresh_registry(announce).await {
            tracing::debug!(error = %err, "could not refresh the node registry");
            if announce {
                c.announce.store(true, Ordering::Release);
            }
            if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
                c.redis_failed();
            }
        }
    }
}

/// Sends queued envelopes to the bus in order, up to `PUBLISH_BATCH` per round trip, for as
/// long as the cluster exists. A failed round trip loses its envelopes (see `publish`).
async fn publisher(cluster: std::sync::Weak<Cluster>, mut outgoing: mpsc::Receiver<String>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while outgoing.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let Some(c) = cluster.upgrade() else { return };
        if !c.redis_usable() {
            c.unpublished
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
            continue;
        }
        let mut pipe = redis::pipe();
        let sent = batch.len() as u64;
        for payload in batch.drain(..) {
            pipe.publish(&c.bus, payload).ignore();
        }
        let mut redis = c.redis.clone();
        let result = pipe.query_async::<()>(&mut redis).await;
        if result.is_err() {
            c.unpublished.fetch_add(sent, Ordering::Relaxed);
        } else {
            c.published_total.fetch_add(sent, Ordering::Relaxed);
        }
        c.published(&result);
    }
}

/// Listens to the bus and this node's reply channel, reconnecting with backoff (100 ms doubling
/// to 2 s) for as long as the cluster exists.
async fn subscribe(
    client: redis::Client,
    cluster: std::sync::Weak<Cluster>,
    local: Arc<dyn Apply>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let (bus, replies) = (c.bus.clone(), format!("{}{}", c.reply_prefix, c.node));
        let joined = c.joined.clone();
        drop(c);
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&bus).await?;
            pubsub.subscribe(&replies).await?;
            pubsub.subscribe(&joined).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), connected).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                if let Some(c) = cluster.upgrade() {
                    c.subscribed.store(true, Ordering::Release);
                    c.announce.store(true, Ordering::Release);
                    c.refresh.notify_one();
                    c.resubscribed.notify_waiters();
                }
                tracing::info!("subscribed to the cluster bus");
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(c) = cluster.upgrade() else { return };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if msg.get_channel_name() == bus {
                        c.received_total.fetch_add(1, Ordering::Relaxed);
                        match serde_json::from_str::<Envelope>(&payload) {
                            Ok(envelope) if envelope.from == c.node => {}
                            Ok(Envelope {
                                op:
                                    Op::Query {
                                        id,
                                        reply_to,
                                        query,
                                    },
                                ..
                            }) => {
                                // Off the reading loop: a slow answer (a big room) must not
                                // hold up the bus for every other message.
                                let local = local.clone();
                                tokio::spawn(async move {
                                    let answer = local.answer(query);
                                    c.reply(reply_to, id, answer).await;
                                });
                            }
                            Ok(envelope) => local.apply(envelope.op).await,
                            Err(err) => {
                                tracing::warn!(error = %err, "unreadable message on the cluster bus")
                            }
                        }
                    } else if msg.get_channel_name() == joined {
                        if payload != c.node.to_string() {
                            c.refresh.notify_one();
                        }
                    } else if let Ok(reply) = serde_json::from_str::<Reply>(&payload) {
                        if let Some(waiting) = c.waiting.get(&reply.id) {
                            let _ = waiting.send((reply.node, reply.answer));
                        }
                    }
                }
                if let Some(c) = cluster.upgrade() {
                    c.subscribed.store(false, Ordering::Release);
                    // Deaf now: out of the registry, so that no one waits for this node.
                    c.refresh.notify_one();
                }
                tracing::warn!("lost the cluster bus (Redis went away); reconnecting");
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cannot subscribe to the cluster bus yet")
            }
            Err(_) => tracing::debug!("subscribing to the cluster bus timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
