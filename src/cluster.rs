//! Several nodes as one, over Redis (one server, or a Redis Cluster: see `engine`).
//!
//! Each node keeps its own sockets (socketioxide's in-memory adapter) and tells the others what
//! concerns sockets wherever they are: "emit this to these rooms", "disconnect these sessions",
//! "take this user's sockets out of that room". Every node applies what it hears to its own
//! sockets.
//!
//! The bus is routed: each Socket.IO room (a chat room, a user, a session) has a channel of its
//! own, `<prefix>:c:<room>`, and a node listens to a room's channel only while it has sockets
//! in that room (`interest`). An operation is published on the channel of each room it names,
//! so it reaches only the nodes that have something to do with it; a node that hears it on
//! several of them (a direct message to the room and to its recipient's user room) applies it
//! once. A channel is taken before a socket joins its room and confirmed by Redis before the
//! join reads history, so nothing committed after the read can be missed.
//!
//! Questions that need every node's answer (how many sockets does this user have in this room
//! or anywhere, who is online) are few (a connection, a join, a leave) and go on one shared
//! channel, `<prefix>:bus`; each node answers on the asker's own reply channel, naming itself.
//! Who "every node" is comes from a registry, not from counting the bus's subscribers (anyone may
//! subscribe to the bus, e.g. an operator's `redis-cli`, and would then be waited for on every
//! question; `registry`). Each node, while it hears the bus, keeps itself in the sorted set
//! `<prefix>:nodes` with an expiry (Redis's clock) a few refreshes ahead, drops expired members,
//! and caches the other members; a question waits only for those. A node that (re)joins says so on
//! `<prefix>:joined`, so the others re-read the set at once rather than at their next refresh. A
//! node that dies stays in the set until its entry expires (`NODE_TTL`): questions meanwhile wait
//! the full timeout for it, counted in `huddle_cluster_query_timeouts_total`.
//!
//! Why not socketioxide's Redis adapter: after a Redis outage it never resubscribes, so nodes stay
//! deaf to each other until restarted. Here a supervisor (`supervise`) owns the subscription
//! connection: when it is lost (or, on a Redis Cluster, when probes show it deaf to a shard) it
//! makes a new one and subscribes every held channel again; and an operation that cannot be
//! published is still applied to this node's sockets, so a node keeps serving its own clients while
//! Redis is away, and cross-node delivery resumes by itself when it returns. Messages are in
//! Postgres before anything is published, so an outage loses no message: clients on other nodes
//! catch up with `joinRoom {since}` (or `history {after}`), and re-validation
//! (`realtime::revalidate`, woken on each resubscription) closes any eviction that was not heard.

mod engine;
mod interest;
mod registry;
mod supervise;

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use engine::RedisConn;
use engine::{Engine, COMMAND_TIMEOUT};
use interest::Interest;

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
    /// Set when the envelope goes out on several channels: a node that hears it on more than
    /// one applies it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    once: Option<Uuid>,
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
    /// The Socket.IO rooms this node has sockets in whose channels it must hear; `None` when
    /// that cannot be told now (nothing is let go then).
    fn rooms_in_use(&self) -> futures::future::BoxFuture<'_, Option<HashSet<String>>>;
}

/// This node's link to the others.
pub struct Cluster {
    node: Uuid,
    /// How this node's envelopes begin (`from` is serialized first).
    own_envelopes: String,
    /// Prefix of the routed channels (`<prefix>:c:<Socket.IO room>`).
    routed_prefix: String,
    /// The questions' shared channel, this node's reply channel, and the prefix of the others'.
    bus: String,
    reply_prefix: String,
    replies: String,
    /// The registry's sorted set, and the channel a node (re)joining announces itself on.
    nodes_key: String,
    joined: String,
    /// On a Redis Cluster: channels of this node's own, one in each sixteenth of the slot
    /// space, which it publishes to each second and must hear (see `Probes`).
    probes: Vec<String>,
    engine: Engine,
    interest: Interest,
    waiting: DashMap<Uuid, mpsc::UnboundedSender<(Uuid, Value)>>,
    /// Multi-channel envelopes already applied (see `Envelope::once`).
    recent: Mutex<Recent>,
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
    /// (channel, envelope) pairs waiting for the publisher task (see `publish`).
    outbox: mpsc::Sender<(String, Arc<str>)>,
    /// Envelopes not published because Redis was failing or the outbox was full.
    unpublished: AtomicU64,
    /// Envelopes this node published, and envelopes it read off the bus (its own included):
    /// what the bus costs each node, the figure that routing by room shrinks.
    published_total: AtomicU64,
    received_total: AtomicU64,
    /// Envelopes not published because no other node listened to their channel.
    unheard_total: AtomicU64,
    /// Subscription connections made after the first.
    reconnects: AtomicU64,
    /// Woken each time the subscriber (re)connects: whatever was published meanwhile was not
    /// heard, so the realtime layer re-checks its sockets (`realtime::revalidate`).
    pub resubscribed: tokio::sync::Notify,
    /// When Redis last failed a command (ms since `started`; 0: never). While this is recent,
    /// Redis work is skipped rather than waited on: an outage must not slow this node down.
    last_failure_ms: AtomicU64,
    started: Instant,
}

/// How long a question waits for the other nodes' answers.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Envelopes that may wait for the publisher; past this they are dropped (and counted) rather
/// than held or waited for: the message path must never wait on Redis.
const OUTBOX: usize = 16 * 1024;
/// Most envelopes published in one round trip (a pipeline of PUBLISH commands).
const PUBLISH_BATCH: usize = 256;
/// How long a join or a handshake waits for its channels to be confirmed before going on
/// without (the socket then hears its room once the subscription lands, or after the next
/// reconnection).
const HOLD_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often unused channels are let go, and how long one stays after its last use.
const RELEASE_EVERY: Duration = Duration::from_secs(10);
const LINGER: Duration = Duration::from_secs(30);
/// How long a multi-channel envelope's id is remembered: its copies arrive within
/// milliseconds of each other.
const RECENT: Duration = Duration::from_secs(10);
impl Cluster {
    /// Connects lazily (a node starts even while Redis is away) and starts the subscriber.
    /// `redis`: one server's URL, or the seeds of a Redis Cluster.
    pub fn start(
        redis: &crate::config::RedisEngine,
        prefix: &str,
        local: Arc<dyn Apply>,
    ) -> anyhow::Result<Arc<Self>> {
        let engine = match redis {
            crate::config::RedisEngine::Single(url) => Engine::single(url)?,
            crate::config::RedisEngine::Cluster(seeds) => {
                Engine::cluster(seeds.iter().map(|s| s.to_string()).collect())?
            }
        };
        let node = Uuid::new_v4();
        let probes = if engine.is_cluster() {
            supervise::probe_channels(prefix, node)
        } else {
            Vec::new()
        };
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let cluster = Arc::new(Cluster {
            node,
            own_envelopes: format!("{{\"from\":\"{node}\""),
            routed_prefix: format!("{prefix}:c:"),
            bus: format!("{prefix}:bus"),
            reply_prefix: format!("{prefix}:reply:"),
            replies: format!("{prefix}:reply:{node}"),
            nodes_key: format!("{prefix}:nodes"),
            joined: format!("{prefix}:joined"),
            probes,
            engine,
            interest: Interest::new(),
            waiting: DashMap::new(),
            recent: Mutex::new(Recent::default()),
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
            unheard_total: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            resubscribed: tokio::sync::Notify::new(),
            last_failure_ms: AtomicU64::new(0),
            started: Instant::now(),
        });
        tokio::spawn(supervise::supervise(
            Arc::downgrade(&cluster),
            local.clone(),
        ));
        tokio::spawn(publisher(Arc::downgrade(&cluster), outgoing));
        tokio::spawn(registry::registry(
            Arc::downgrade(&cluster),
            cluster.refresh.clone(),
        ));
        tokio::spawn(release(Arc::downgrade(&cluster), local));
        let engine = if cluster.engine.is_cluster() {
            "Redis Cluster"
        } else {
            "Redis"
        };
        tracing::info!(node.id = %node, prefix, engine, "cluster mode: nodes meet over Redis");
        Ok(cluster)
    }

    /// The command connection, for other uses of the same Redis (rate limits); `None` while
    /// there is none (a Redis Cluster not reached yet).
    pub fn redis(&self) -> Option<RedisConn> {
        self.engine.commands()
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

    /// Whether Redis answers a PING now (on a cluster, the node the command is routed to).
    pub async fn ping(&self) -> bool {
        let up = match self.engine.commands() {
            Some(mut redis) => {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut redis);
                matches!(tokio::time::timeout(COMMAND_TIMEOUT, ping).await, Ok(Ok(_)))
            }
            None => false,
        };
        if up {
            self.redis_ok();
        } else {
            self.redis_failed();
        }
        up && self.subscribed.load(Ordering::Acquire)
    }

    /// The routed channel of a Socket.IO room.
    fn channel_of(&self, room: &str) -> String {
        format!("{}{room}", self.routed_prefix)
    }

    /// Makes sure this node hears the channels of these Socket.IO rooms before a socket joins
    /// them: returns once Redis confirmed each subscription, or after `HOLD_TIMEOUT`, or at once
    /// while Redis is failing (the subscriptions go on in the background either way, and a
    /// channel that could not be subscribed is when the connection is made again).
    pub async fn hold(self: &Arc<Self>, rooms: &[String]) {
        let channels: Vec<String> = rooms.iter().map(|room| self.channel_of(room)).collect();
        let this = self.clone();
        let holding = tokio::spawn(async move {
            let holds = channels.iter().map(|channel| this.interest.hold(channel));
            for (result, channel) in futures::future::join_all(holds).await.iter().zip(&channels) {
                if let Err(err) = result {
                    tracing::debug!(error = %err, channel, "could not subscribe yet");
                }
            }
        });
        if !self.redis_usable() || !self.subscribed.load(Ordering::Acquire) {
            return;
        }
        if tokio::time::timeout(HOLD_TIMEOUT, holding).await.is_err() {
            tracing::debug!("subscribing to a room's channel timed out");
        }
    }

    /// How many routed channels this node holds.
    pub fn channels_held(&self) -> usize {
        self.interest.len()
    }

    /// Subscription connections made after the first.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Tells the other nodes, without waiting for Redis: the envelope is queued for the
    /// publisher task, which sends queued envelopes in order, many per round trip. While Redis
    /// is failing, or the queue is full, the envelope is dropped and counted: the operation has
    /// been applied to this node's sockets already, messages are in Postgres, and clients on
    /// other nodes catch up with `since` (and sockets are re-checked, see `revalidate`). So an
    /// unresponsive Redis can slow no commit and no acknowledgement.
    pub async fn publish(&self, op: Op) {
        match op {
            // Each channel's sockets are disconnected on their own: one envelope each, so that
            // none is sent to the nodes of every other channel.
            Op::Disconnect { channels } if channels.len() > 1 => {
                for channel in channels {
                    let routed = vec![self.channel_of(&channel)];
                    self.send(
                        routed,
                        Op::Disconnect {
                            channels: vec![channel],
                        },
                    );
                }
            }
            op => {
                let routed = match &op {
                    Op::Emit { channels, .. }
                    | Op::Deliver { channels, .. }
                    | Op::Disconnect { channels } => {
                        let mut routed: Vec<String> = Vec::with_capacity(channels.len());
                        for channel in channels.iter().map(|c| self.channel_of(c)) {
                            if !routed.contains(&channel) {
                                routed.push(channel);
                            }
                        }
                        routed
                    }
                    Op::Evict { channel, .. } => vec![self.channel_of(channel)],
                    Op::Query { .. } => vec![self.bus.clone()],
                };
                self.send(routed, op);
            }
        }
    }

    /// Queues one envelope for each of `channels` (see `publish`).
    fn send(&self, channels: Vec<String>, op: Op) {
        let envelope = Envelope {
            from: self.node,
            once: (channels.len() > 1).then(Uuid::new_v4),
            op,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        let payload: Arc<str> = payload.into();
        for channel in channels {
            if !self.redis_usable() || self.outbox.try_send((channel, payload.clone())).is_err() {
                self.unpublished.fetch_add(1, Ordering::Relaxed);
            }
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

    /// Envelopes not published because no other node listened to their channel.
    pub fn unheard_total(&self) -> u64 {
        self.unheard_total.load(Ordering::Relaxed)
    }

    fn published(&self, result: Result<(), &str>) {
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
                    tracing::warn!(
                        error = err,
                        "Redis unavailable: other nodes will not hear this node until it returns"
                    );
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

    /// How many other live nodes this node knows of: the ones its questions wait for.
    pub fn peers(&self) -> usize {
        self.other_nodes().len()
    }

    /// Questions that gave up waiting for a node the registry listed (it died, or is too slow).
    pub fn query_timeouts(&self) -> u64 {
        self.query_timeouts.load(Ordering::Relaxed)
    }

    fn commands(&self) -> redis::RedisResult<RedisConn> {
        self.engine.commands().ok_or_else(not_connected)
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
        let Some(mut redis) = self.engine.commands() else {
            return;
        };
        let channel = format!("{}{to}", self.reply_prefix);
        let sent = self
            .engine
            .publish(&channel, &payload)
            .query_async::<i64>(&mut redis)
            .await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, "could not answer another node");
        }
    }

    /// Handles one message heard on the subscription connection.
    async fn heard(self: &Arc<Self>, channel: String, payload: String, local: &Arc<dyn Apply>) {
        if channel == self.replies {
            if let Ok(reply) = serde_json::from_str::<Reply>(&payload) {
                if let Some(waiting) = self.waiting.get(&reply.id) {
                    let _ = waiting.send((reply.node, reply.answer));
                }
            }
            return;
        }
        if channel == self.joined {
            if payload != self.node.to_string() {
                self.refresh.notify_one();
            }
            return;
        }
        self.received_total.fetch_add(1, Ordering::Relaxed);
        // This node's own envelope, back because it listens to the channel too: told apart
        // without parsing what may be a whole message.
        if payload.starts_with(&self.own_envelopes) {
            return;
        }
        let envelope = match serde_json::from_str::<Envelope>(&payload) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(error = %err, channel, "unreadable message on the cluster bus");
                return;
            }
        };
        if envelope.from == self.node {
            return;
        }
        if let Some(id) = envelope.once {
            let fresh = match self.recent.lock() {
                Ok(mut recent) => recent.first_time(id),
                Err(poisoned) => poisoned.into_inner().first_time(id),
            };
            if !fresh {
                return;
            }
        }
        match envelope.op {
            Op::Query {
                id,
                reply_to,
                query,
            } => {
                // Off the reading loop: a slow answer (a big room) must not hold up the bus
                // for every other message.
                let (this, local) = (self.clone(), local.clone());
                tokio::spawn(async move {
                    let answer = local.answer(query);
                    this.reply(reply_to, id, answer).await;
                });
            }
            op => local.apply(op).await,
        }
    }
}

fn not_connected() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "no connection to the Redis Cluster yet",
    ))
}

/// The ids of multi-channel envelopes applied in the last `RECENT`.
#[derive(Default)]
struct Recent {
    ids: HashSet<Uuid>,
    order: VecDeque<(Instant, Uuid)>,
}

impl Recent {
    /// True the first time `id` is seen.
    fn first_time(&mut self, id: Uuid) -> bool {
        let now = Instant::now();
        while let Some((at, old)) = self.order.front() {
            if now.duration_since(*at) < RECENT {
                break;
            }
            self.ids.remove(old);
            self.order.pop_front();
        }
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }
}

/// Sends queued envelopes to their channels in order, up to `PUBLISH_BATCH` per round trip, for
/// as long as the cluster exists. A failed round trip loses its envelopes (see `publish`).
async fn publisher(
    cluster: std::sync::Weak<Cluster>,
    mut outgoing: mpsc::Receiver<(String, Arc<str>)>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while outgoing.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let Some(c) = cluster.upgrade() else { return };
        let sent = batch.len() as u64;
        let redis = c.engine.commands().filter(|_| c.redis_usable());
        let Some(redis) = redis else {
            c.unpublished.fetch_add(sent, Ordering::Relaxed);
            batch.clear();
            continue;
        };
        let commands: Vec<(&str, redis::Cmd)> = batch
            .iter()
            .map(|(channel, payload)| {
                // Room, user and session channels are published to only if another node
                // listens; questions always (every node listens to the shared channel).
                let cmd = if channel.starts_with(&c.routed_prefix) {
                    let mine = c.interest.confirmed(channel);
                    c.engine
                        .publish_if_heard(channel, payload, mine, &c.replies)
                } else {
                    c.engine.publish(channel, payload)
                };
                (channel.as_str(), cmd)
            })
            .collect();
        let replies = c.engine.send_all(&redis, commands).await;
        batch.clear();
        let failed = replies.iter().filter(|r| r.is_none()).count() as u64;
        let unheard = replies
            .iter()
            .filter(|r| matches!(r, Some(n) if *n < 0))
            .count() as u64;
        c.unpublished.fetch_add(failed, Ordering::Relaxed);
        c.unheard_total.fetch_add(unheard, Ordering::Relaxed);
        c.published_total
            .fetch_add(sent - failed - unheard, Ordering::Relaxed);
        c.published(if failed == 0 {
            Ok(())
        } else {
            Err("publishing failed or timed out")
        });
    }
}

/// Lets go, every `RELEASE_EVERY`, of the channels of rooms this node no longer has sockets in
/// (after `LINGER`), for as long as the cluster exists.
async fn release(cluster: std::sync::Weak<Cluster>, local: Arc<dyn Apply>) {
    let first = tokio::time::Instant::now() + RELEASE_EVERY;
    let mut tick = tokio::time::interval_at(first, RELEASE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        let Some(rooms) = local.rooms_in_use().await else {
            continue;
        };
        let in_use: HashSet<String> = rooms.iter().map(|room| c.channel_of(room)).collect();
        let released = c.interest.release_unused(&in_use, LINGER).await;
        if released > 0 {
            tracing::debug!(
                released,
                held = c.interest.len(),
                "let go of unused channels"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_begins_with_its_sender() {
        let from = Uuid::new_v4();
        let envelope = Envelope {
            from,
            once: None,
            op: Op::Disconnect { channels: vec![] },
        };
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(
            json.starts_with(&format!("{{\"from\":\"{from}\"")),
            "{json}"
        );
    }

    #[test]
    fn a_multi_channel_envelope_applies_once() {
        let mut recent = Recent::default();
        let id = Uuid::new_v4();
        assert!(recent.first_time(id));
        assert!(!recent.first_time(id));
        assert!(recent.first_time(Uuid::new_v4()));
    }
}
