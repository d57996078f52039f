//! The subscription connection: made (with backoff), subscribed to the fixed channels and every
//! held one, read until lost; on a Redis Cluster also probed, since a shard can go deaf without
//! the connection noticing. When lost or deaf it is made again, with every channel.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    engine::{self, Incoming},
    Apply, Cluster,
};

/// Probes (Redis Cluster only): how many, how often, and after how many silent rounds the
/// connection is made again.
const PROBES: u16 = 16;
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_ROUNDS_MISSED: u64 = 2;

/// This node's probe channels: one per sixteenth of the slot space, so that every shard of any
/// cluster (each owns at least one range of slots) carries some, and a shard this node has
/// gone deaf to is noticed.
pub(super) fn probe_channels(prefix: &str, node: Uuid) -> Vec<String> {
    let span = 16384 / PROBES;
    (0..PROBES)
        .map(|range| {
            (0u32..)
                .map(|i| format!("{prefix}:probe:{{{node}:{i}}}"))
                .find(|name| engine::slot(name) / span == range)
                .unwrap_or_default()
        })
        .collect()
}

/// Owns the subscription connection for as long as the cluster exists: makes it (retrying with
/// backoff, 100 ms doubling to 2 s), subscribes the fixed channels and every held one, then
/// hands what arrives to `Cluster::heard` until the connection is lost or, on a Redis Cluster,
/// the probes find it deaf; then starts over with a fresh one.
pub(super) async fn supervise(cluster: std::sync::Weak<Cluster>, local: Arc<dyn Apply>) {
    let mut backoff = Duration::from_millis(100);
    let mut generation = 0u64;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        generation += 1;
        let connected = async {
            let (mut subscriber, incoming) = c.engine.connect_subscriber().await?;
            for channel in [&c.bus, &c.replies, &c.joined].into_iter().chain(&c.probes) {
                subscriber.subscribe(channel).await?;
            }
            c.interest.connected(generation, subscriber);
            let held = c.interest.resubscribe_all(generation).await?;
            Ok::<_, redis::RedisError>((incoming, held))
        };
        // Generous: every held channel is subscribed again, 64 at a time.
        let limit = Duration::from_secs(5) + Duration::from_millis(c.interest.len() as u64 / 10);
        match tokio::time::timeout(limit, connected).await {
            Ok(Ok((incoming, held))) => {
                backoff = Duration::from_millis(100);
                c.subscribed.store(true, Ordering::Release);
                c.announce.store(true, Ordering::Release);
                c.refresh.notify_one();
                c.resubscribed.notify_waiters();
                if generation > 1 {
                    c.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(channels = held, "subscribed to the cluster bus");
                drop(c);
                let why = listen(&cluster, incoming, &local).await;
                let Some(c) = cluster.upgrade() else { return };
                c.subscribed.store(false, Ordering::Release);
                c.interest.disconnected();
                // Deaf now: out of the registry, so that no one waits for this node.
                c.refresh.notify_one();
                tracing::warn!(why, "lost the cluster bus; connecting again");
                continue;
            }
            Ok(Err(err)) => {
                c.interest.disconnected();
                tracing::debug!(error = %err, "cannot subscribe to the cluster bus yet")
            }
            Err(_) => {
                c.interest.disconnected();
                tracing::debug!("subscribing to the cluster bus timed out")
            }
        }
        drop(c);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Reads one subscription connection until it is lost or found deaf; says why it stopped.
async fn listen(
    cluster: &std::sync::Weak<Cluster>,
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
    local: &Arc<dyn Apply>,
) -> &'static str {
    let probing = cluster.upgrade().is_some_and(|c| !c.probes.is_empty());
    let mut probes = Probes::new(cluster.upgrade().map_or(0, |c| c.probes.len()));
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            heard = incoming.recv() => {
                let Some(Incoming::Message { channel, payload }) = heard else {
                    return "the connection closed";
                };
                let Some(c) = cluster.upgrade() else { return "shutting down" };
                if let Some(k) = c.probes.iter().position(|p| *p == channel) {
                    probes.heard(k, &payload);
                    continue;
                }
                c.heard(channel, payload, local).await;
            }
            _ = tick.tick(), if probing => {
                let Some(c) = cluster.upgrade() else { return "shutting down" };
                if !probes.round(&c).await {
                    return "probes went unheard";
                }
            }
        }
    }
}

/// Liveness of a Redis Cluster subscription: each `PROBE_EVERY` the node publishes the round's
/// number on each of its probe channels, and must have heard each of them recently, with a
/// subscriber counted by the shard. Some rounds in a row without (`PROBE_ROUNDS_MISSED`) and
/// the connection is made again.
struct Probes {
    round: u64,
    last_heard: Vec<u64>,
    failed_rounds: u64,
}

impl Probes {
    fn new(count: usize) -> Probes {
        Probes {
            round: 0,
            last_heard: vec![0; count],
            failed_rounds: 0,
        }
    }

    fn heard(&mut self, k: usize, payload: &str) {
        if let (Some(last), Ok(round)) = (self.last_heard.get_mut(k), payload.parse::<u64>()) {
            *last = (*last).max(round);
        }
    }

    /// One round; false when the connection is to be made again.
    async fn round(&mut self, c: &Cluster) -> bool {
        let heard_all = self
            .last_heard
            .iter()
            .all(|last| *last + PROBE_ROUNDS_MISSED > self.round);
        self.round += 1;
        let counted = match c.engine.commands() {
            Some(redis) => {
                let round = self.round.to_string();
                let probes = c
                    .probes
                    .iter()
                    .map(|channel| (channel.as_str(), c.engine.publish(channel, &round)))
                    .collect();
                let replies = c.engine.send_all(&redis, probes).await;
                replies.iter().all(|n| matches!(n, Some(n) if *n > 0))
            }
            None => false,
        };
        if heard_all && counted {
            self.failed_rounds = 0;
            return true;
        }
        self.failed_rounds += 1;
        tracing::debug!(
            round = self.round,
            heard_all,
            counted,
            "a probe round failed"
        );
        self.failed_rounds < PROBE_ROUNDS_MISSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_channels_cover_every_sixteenth_of_the_slots() {
        let node = Uuid::new_v4();
        let probes = probe_channels("huddle:x", node);
        assert_eq!(probes.len(), 16);
        let mut ranges: Vec<u16> = probes.iter().map(|p| engine::slot(p) / 1024).collect();
        ranges.sort_unstable();
        assert_eq!(ranges, (0..16).collect::<Vec<u16>>());
    }
}
