//! The Redis the nodes meet on: one server (`REDIS_URL`) or a Redis Cluster
//! (`REDIS_CLUSTER_URLS`). The rest of `cluster` sees the same four things either way: a command
//! connection (scripts, pipelines), a publish command, a subscription connection whose
//! channels can be added and dropped while it runs, and the stream of what arrives on it.
//!
//! On one server, channels are classic pub/sub (`PUBLISH`/`SUBSCRIBE`): the command connection
//! is a `ConnectionManager`, which reconnects by itself, and subscriptions have a connection of
//! their own. On a cluster, channels are sharded (`SPUBLISH`/`SSUBSCRIBE`): a channel lives on
//! the shard that owns its slot, so each message is handled by one shard rather than broadcast
//! over the whole cluster bus. One RESP3 cluster connection carries both commands and
//! subscriptions (messages arrive as pushes). The redis crate's cluster connection does not
//! reliably recover from a master's failover (measured: it can stay stuck on a slot refresh
//! that never finishes, failing every command, and it does not resubscribe on the promoted
//! replica), so it is never repaired in place: the supervisor in `cluster` drops it and builds a
//! fresh one from the seeds, which works at once (see `Cluster` and its probes).

use std::{sync::RwLock, time::Duration};

use futures::StreamExt;
use redis::{
    aio::{ConnectionLike, ConnectionManager, PubSubSink},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    Cmd, PushKind, RedisFuture, RedisResult, Value,
};
use tokio::sync::mpsc;

/// Where the nodes meet.
pub enum Engine {
    Single {
        client: redis::Client,
        commands: ConnectionManager,
    },
    Cluster {
        seeds: Vec<String>,
        /// The cluster connection of the current subscription, for commands too; `None` until
        /// the first one is made (a node starts while Redis is away).
        current: RwLock<Option<ClusterConnection>>,
    },
}

/// A command connection of either engine (used for scripts and pipelines).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The subscription side of one connection: channels are added and dropped on it while its
/// messages are read elsewhere (`Incoming`). Each call returns once Redis has confirmed it.
#[derive(Clone)]
pub enum Subscriber {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

impl Subscriber {
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Subscriber::Single(sink) => sink.subscribe(channel).await,
            // One channel per call: a call's channels must share a slot.
            Subscriber::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Subscriber::Single(sink) => sink.unsubscribe(channel).await,
            Subscriber::Cluster(conn) => conn.sunsubscribe(channel).await,
        }
    }
}

/// What a subscription connection hears.
pub enum Incoming {
    Message {
        channel: String,
        payload: String,
    },
    /// The connection (or, on a cluster, one of its shard connections) is gone: its
    /// subscriptions are no longer to be trusted.
    Lost,
}

/// Redis commands give up after this, so an outage costs a request this much at most.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

impl Engine {
    /// One server; connects lazily, so a node starts while Redis is away.
    pub fn single(url: &str) -> anyhow::Result<Engine> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Engine::Single { client, commands })
    }

    /// A Redis Cluster, found through any of `seeds`; nothing is connected until
    /// `connect_subscriber`.
    pub fn cluster(seeds: Vec<String>) -> anyhow::Result<Engine> {
        // Checks the URLs now, so that a typo fails at startup rather than on every retry.
        ClusterClientBuilder::new(seeds.clone()).build()?;
        Ok(Engine::Cluster {
            seeds,
            current: RwLock::new(None),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Engine::Cluster { .. })
    }

    /// The command connection, if there is one now.
    pub fn commands(&self) -> Option<RedisConn> {
        match self {
            Engine::Single { commands, .. } => Some(RedisConn::Single(commands.clone())),
            Engine::Cluster { current, .. } => {
                let current = match current.read() {
                    Ok(c) => c,
                    Err(poisoned) => poisoned.into_inner(),
                };
                current.clone().map(RedisConn::Cluster)
            }
        }
    }

    /// The command that publishes `payload` on `channel`.
    pub fn publish(&self, channel: &str, payload: &str) -> Cmd {
        let mut cmd = redis::cmd(if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        });
        cmd.arg(channel).arg(payload);
        cmd
    }

    /// The command that publishes `payload` on `channel` only if some other node listens to
    /// it, answering its number of receivers, or -1 if it was not published. `mine`: this
    /// node's own subscription to `channel` is confirmed, so it is one of the listeners Redis
    /// counts (and hearing its own envelope back is no reason to publish it); `alive`, on one
    /// server: a channel only this node's subscription connection listens to, which tells the
    /// script whether that connection is still there to be counted.
    ///
    /// Why: with each room's sockets on one node, that node would otherwise publish every
    /// message only to read it back itself. Why it loses nothing: a node subscribes to a room's
    /// channel (confirmed) before it reads the room's history, so a message is either committed
    /// before that read, or published after the subscription, when the script counts it.
    pub fn publish_if_heard(&self, channel: &str, payload: &str, mine: bool, alive: &str) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(if self.is_cluster() {
            PUBLISH_IF_HEARD_SHARDED
        } else {
            PUBLISH_IF_HEARD
        })
        .arg(1)
        .arg(channel)
        .arg(payload)
        .arg(if mine { "1" } else { "0" })
        .arg(alive);
        cmd
    }

    /// Sends publish commands (each with the channel it publishes to) in as few round trips as
    /// the engine allows, in order per channel; answers each command's integer reply, `None`
    /// where it failed. One server takes them as one pipeline. A Redis Cluster refuses a
    /// pipeline whose commands span slots, so there they go as one pipeline per slot, all at
    /// once: a channel's commands share its slot, so their order holds.
    pub async fn send_all(
        &self,
        redis: &RedisConn,
        commands: Vec<(&str, Cmd)>,
    ) -> Vec<Option<i64>> {
        let count = commands.len();
        let mut groups: Vec<(u16, Vec<usize>, redis::Pipeline)> = Vec::new();
        for (i, (channel, cmd)) in commands.into_iter().enumerate() {
            let slot = if self.is_cluster() { slot(channel) } else { 0 };
            match groups.iter_mut().find(|(s, _, _)| *s == slot) {
                Some((_, indexes, pipe)) => {
                    indexes.push(i);
                    pipe.add_command(cmd);
                }
                None => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(cmd);
                    groups.push((slot, vec![i], pipe));
                }
            }
        }
        let sends = groups.into_iter().map(|(_, indexes, pipe)| {
            let mut redis = redis.clone();
            async move {
                let sent = pipe.query_async::<Vec<i64>>(&mut redis);
                let replies = match tokio::time::timeout(COMMAND_TIMEOUT, sent).await {
                    Ok(Ok(replies)) => replies.into_iter().map(Some).collect(),
                    _ => vec![None; indexes.len()],
                };
                (indexes, replies)
            }
        });
        let mut replies = vec![None; count];
        for (indexes, answers) in futures::future::join_all(sends).await {
            for (i, answer) in indexes.into_iter().zip(answers) {
                replies[i] = answer;
            }
        }
        replies
    }

    /// A fresh subscription connection (on a cluster, also the new command connection) and
    /// what arrives on it. The stream ends with `Lost` when the connection is gone.
    pub async fn connect_subscriber(
        &self,
    ) -> RedisResult<(Subscriber, mpsc::UnboundedReceiver<Incoming>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        match self {
            Engine::Single { client, .. } => {
                let (sink, mut stream) = client.get_async_pubsub().await?.split();
                tokio::spawn(async move {
                    while let Some(msg) = stream.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let channel = msg.get_channel_name().to_owned();
                        if tx.send(Incoming::Message { channel, payload }).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Incoming::Lost);
                });
                Ok((Subscriber::Single(sink), rx))
            }
            Engine::Cluster { seeds, current } => {
                let (push_tx, mut pushes) = mpsc::unbounded_channel();
                let client = ClusterClientBuilder::new(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(push_tx)
                    .connection_timeout(COMMAND_TIMEOUT)
                    .response_timeout(COMMAND_TIMEOUT)
                    .retries(1)
                    .build()?;
                let conn = client.get_async_connection().await?;
                tokio::spawn(async move {
                    while let Some(push) = pushes.recv().await {
                        let incoming = match push.kind {
                            PushKind::SMessage => match sharded_message(push.data) {
                                Some(message) => message,
                                None => continue,
                            },
                            PushKind::Disconnection => Incoming::Lost,
                            _ => continue,
                        };
                        if tx.send(incoming).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Incoming::Lost);
                });
                match current.write() {
                    Ok(mut c) => *c = Some(conn.clone()),
                    Err(poisoned) => *poisoned.into_inner() = Some(conn.clone()),
                }
                Ok((Subscriber::Cluster(conn), rx))
            }
        }
    }
}

/// See `Engine::publish_if_heard`. KEYS[1]: the channel; ARGV: the payload, '1' if the caller's
/// own subscription is counted, and the caller's liveness channel.
const PUBLISH_IF_HEARD: &str = r#"
local n = redis.call('PUBSUB', 'NUMSUB', KEYS[1])[2]
if ARGV[2] == '1' and redis.call('PUBSUB', 'NUMSUB', ARGV[3])[2] > 0 then n = n - 1 end
if n > 0 then return redis.call('PUBLISH', KEYS[1], ARGV[1]) end
return -1
"#;

/// The same on a Redis Cluster, where the script runs on the shard owning the channel. The
/// caller's liveness is not checked there (its channel lives on another shard): a node whose
/// subscription on this shard is lost finds out from its probes within two seconds.
const PUBLISH_IF_HEARD_SHARDED: &str = r#"
local n = redis.call('PUBSUB', 'SHARDNUMSUB', KEYS[1])[2]
if ARGV[2] == '1' then n = n - 1 end
if n > 0 then return redis.call('SPUBLISH', KEYS[1], ARGV[1]) end
return -1
"#;

/// `[channel, payload]` of a sharded message push.
fn sharded_message(data: Vec<Value>) -> Option<Incoming> {
    let mut data = data.into_iter();
    let channel = redis::from_redis_value::<String>(data.next()?).ok()?;
    let payload = redis::from_redis_value::<String>(data.next()?).ok()?;
    Some(Incoming::Message { channel, payload })
}

/// The cluster hash slot of `name` (CRC16/XMODEM of the name, or of its `{tag}`, mod 16384), as
/// Redis computes it: used to spread the liveness probes over the slot space, so that every
/// shard carries some.
pub fn slot(name: &str) -> u16 {
    let bytes = name.as_bytes();
    let key = match bytes.iter().position(|b| *b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for byte in key {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_are_redis_s() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        // CRC16/XMODEM check value.
        assert_eq!(slot("123456789"), 0x31C3);
    }
}
