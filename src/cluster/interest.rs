//! The routed channels this node listens to: one per Socket.IO room (a chat room, a user, a
//! session) it has sockets in, so that what is published for a room reaches only the nodes
//! with sockets there.
//!
//! A channel is taken (`hold`) before a socket joins its room, and confirmed by Redis before
//! `hold` returns: a join then reads history only once whatever is committed after it is sure
//! to be heard. It is let go lazily (`release_unused`): once no socket here is in the room and
//! no one has held it for a while, so that a member who leaves and comes back, or a socket that
//! reconnects, does not cost a round trip each time.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dashmap::DashMap;
use futures::StreamExt;
use tokio::sync::Mutex as AsyncMutex;

use super::engine::Subscriber;

pub struct Interest {
    held: DashMap<String, Arc<AsyncMutex<Held>>>,
    /// The live subscription connection and its generation (0 and `None` while there is none).
    current: Mutex<(u64, Option<Subscriber>)>,
}

struct Held {
    /// The connection generation this channel is subscribed on (0: none).
    generation: u64,
    /// When it was last held.
    wanted_at: Instant,
}

/// Channels subscribed at once when a connection is (re)made.
const RESUBSCRIBE_CONCURRENCY: usize = 64;

impl Interest {
    pub fn new() -> Interest {
        Interest {
            held: DashMap::new(),
            current: Mutex::new((0, None)),
        }
    }

    fn current(&self) -> (u64, Option<Subscriber>) {
        match self.current.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The connection every held channel is to be subscribed on from now on.
    pub fn connected(&self, generation: u64, subscriber: Subscriber) {
        match self.current.lock() {
            Ok(mut c) => *c = (generation, Some(subscriber)),
            Err(poisoned) => *poisoned.into_inner() = (generation, Some(subscriber)),
        }
    }

    /// The connection is gone: channels stay held, to be subscribed on the next one.
    pub fn disconnected(&self) {
        match self.current.lock() {
            Ok(mut c) => *c = (0, None),
            Err(poisoned) => *poisoned.into_inner() = (0, None),
        }
    }

    /// Whether this node's subscription to `channel` is confirmed on the live connection (false
    /// when unsure: the channel is being taken or let go right now).
    pub fn confirmed(&self, channel: &str) -> bool {
        let Some(entry) = self.held.get(channel).map(|e| e.value().clone()) else {
            return false;
        };
        let Ok(held) = entry.try_lock() else {
            return false;
        };
        let generation = match self.current.lock() {
            Ok(c) => c.0,
            Err(poisoned) => poisoned.into_inner().0,
        };
        generation != 0 && held.generation == generation
    }

    /// How many channels are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Holds `channel`, subscribing to it if it is not yet (returns once Redis confirmed). While
    /// there is no connection the channel is only recorded: the next connection subscribes it.
    pub async fn hold(&self, channel: &str) -> redis::RedisResult<()> {
        let entry = self
            .held
            .entry(channel.to_owned())
            .or_insert_with(|| {
                Arc::new(AsyncMutex::new(Held {
                    generation: 0,
                    wanted_at: Instant::now(),
                }))
            })
            .clone();
        let mut held = entry.lock().await;
        held.wanted_at = Instant::now();
        let (generation, subscriber) = self.current();
        let Some(mut subscriber) = subscriber else {
            return Ok(());
        };
        if held.generation == generation {
            return Ok(());
        }
        subscriber.subscribe(channel).await?;
        held.generation = generation;
        Ok(())
    }

    /// Subscribes every held channel on the connection of `generation` (after a reconnection).
    /// Fails if any subscription fails: the connection is then not to be trusted.
    pub async fn resubscribe_all(&self, generation: u64) -> redis::RedisResult<usize> {
        let (current, subscriber) = self.current();
        let Some(subscriber) = subscriber.filter(|_| current == generation) else {
            return Ok(0);
        };
        let channels: Vec<(String, Arc<AsyncMutex<Held>>)> = self
            .held
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let results: Vec<redis::RedisResult<()>> = futures::stream::iter(channels)
            .map(|(channel, entry)| {
                let mut subscriber = subscriber.clone();
                async move {
                    let mut held = entry.lock().await;
                    if held.generation != generation {
                        subscriber.subscribe(&channel).await?;
                        held.generation = generation;
                    }
                    Ok(())
                }
            })
            .buffer_unordered(RESUBSCRIBE_CONCURRENCY)
            .collect()
            .await;
        let count = results.len();
        results.into_iter().collect::<redis::RedisResult<()>>()?;
        Ok(count)
    }

    /// Lets go of the held channels not in `in_use` and not held for `linger`; returns how many.
    pub async fn release_unused(&self, in_use: &HashSet<String>, linger: Duration) -> usize {
        let unused: Vec<(String, Arc<AsyncMutex<Held>>)> = self
            .held
            .iter()
            .filter(|e| !in_use.contains(e.key()))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let mut released = 0;
        for (channel, entry) in unused {
            // Busy: someone is holding it right now.
            let Ok(mut held) = entry.try_lock() else {
                continue;
            };
            if held.wanted_at.elapsed() < linger {
                continue;
            }
            let (generation, subscriber) = self.current();
            if let Some(mut subscriber) = subscriber.filter(|_| held.generation == generation) {
                // A failure means the connection is failing: the next one will not subscribe
                // the channel, as it is no longer held.
                let _ = subscriber.unsubscribe(&channel).await;
            }
            held.generation = 0;
            drop(held);
            // Only if no `hold` has taken the entry meanwhile (the map's reference and ours):
            // one that has finds it unsubscribed and subscribes it again.
            if self
                .held
                .remove_if(&channel, |_, e| Arc::strong_count(e) == 2)
                .is_some()
            {
                released += 1;
            }
        }
        released
    }
}
