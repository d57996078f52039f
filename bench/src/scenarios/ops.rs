//! What `react` and `edit` share: senders (one user and socket each) joined to one fresh public
//! room that already holds messages, each running an open loop (or a closed one) of an
//! acknowledged event that changes one of those messages; and the report of those operations,
//! `persist`'s figures per op, plus the rise of the room's `last_rev` over the phase, which
//! tells how many of the acked ops really changed something.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::persist::Mode;
use super::{round3, window, Target, CALL_TIMEOUT, SETUP_CONCURRENCY};
use crate::rest::{random_tag, User};
use crate::sender::{closed_loop_with, open_loop_with, SendResult};
use crate::sio::Socket;
use crate::stats::{cpu_window, new_hist, progress, Cpu, CpuDelta, Latency};
use crate::{Common, Timing};

/// One sender's operations: the event and payload of its `k`th op, scheduled at `at`.
pub(super) type OpFn = Box<dyn FnMut(u64, Instant) -> (&'static str, Value) + Send>;

/// The load of `react` and `edit`: as `persist`'s, with a default open-loop rate.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Number of senders (each its own user and socket).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Total ops/s over all senders (open loop); 0 = closed loop.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Closed loop: un-acked ops in flight per sender.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
}

impl LoadArgs {
    pub(super) fn mode(&self) -> Mode {
        if self.rate > 0.0 {
            Mode::Open
        } else {
            Mode::Closed
        }
    }
}

/// Connected senders, all joined to one fresh public room.
pub(super) struct Env {
    pub(super) socks: Vec<Arc<Socket>>,
    pub(super) users: Vec<User>,
    pub(super) room: String,
    pub(super) room_id: String,
    pub(super) tag: String,
}

pub(super) async fn setup(t: &Target, senders: usize) -> Result<Env> {
    if senders == 0 {
        bail!("--senders must be at least 1");
    }
    let tag = random_tag();
    eprintln!("registering {senders} sender users");
    let users = t.rest.register_many(&format!("b{tag}s"), senders).await?;
    let room = format!("bench-{tag}");
    let room_id = t.rest.create_room(&users[0].token, &room, "public").await?;
    eprintln!("connecting {} senders to room {room}", users.len());
    let socks: Vec<Arc<Socket>> = stream::iter(users.iter())
        .map(|u| {
            let room = room.clone();
            async move {
                let s = t.connect(&u.token, None).await?;
                s.call("joinRoom", &json!(room), CALL_TIMEOUT).await?;
                Ok::<_, anyhow::Error>(Arc::new(s))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Env {
        socks,
        users,
        room,
        room_id,
        tag,
    })
}

impl Env {
    /// Sender `i` sends `counts[i]` messages (one after the other; the senders side by side).
    /// Returns the ids of each sender's messages.
    pub(super) async fn send_messages(&self, counts: &[usize]) -> Result<Vec<Vec<String>>> {
        let total: usize = counts.iter().sum();
        eprintln!("sending {total} set-up messages");
        stream::iter(self.socks.iter().zip(counts).enumerate())
            .map(|(i, (s, &n))| async move {
                let mut ids = Vec::with_capacity(n);
                for j in 0..n {
                    let ack = s
                        .call(
                            "sendMessage",
                            &json!({
                                "room": self.room,
                                "body": format!("set-up message {j} of sender {i}"),
                                "client_id": format!("{}-setup-{i}-{j}", self.tag),
                            }),
                            CALL_TIMEOUT,
                        )
                        .await
                        .context("set-up sendMessage")?;
                    let id = ack["message"]["id"]
                        .as_str()
                        .context("sendMessage ack without message.id")?;
                    ids.push(id.to_string());
                }
                Ok::<_, anyhow::Error>(ids)
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The room's `last_rev`.
    async fn last_rev(&self, t: &Target) -> Result<u64> {
        let (_, rev) = t
            .rest
            .room_counters(&self.users[0].token, &self.room_id)
            .await?;
        Ok(rev)
    }
}

/// Runs every sender's `ops` (one `OpFn` per sender, in order) over a warm-up and the measured
/// phase, and reports what they did in the measured phase. `label` names the progress lines.
pub(super) async fn phase(
    env: &Env,
    t: &Target,
    common: &Common,
    load: &LoadArgs,
    timing: &Timing,
    label: &'static str,
    ops: Vec<OpFn>,
) -> Result<Ops> {
    assert_eq!(ops.len(), env.socks.len(), "one op stream per sender");
    let rev_before = env.last_rev(t).await?;
    let w = window(timing);
    let cpu = cpu_window(common.server_pid.clone(), w.from, w.to);
    let acked = Arc::new(AtomicU64::new(0));
    progress(label.to_string(), vec![("acked", acked.clone())], w.to);
    let n = env.socks.len();
    let mut tasks = Vec::new();
    for (i, (s, op)) in env.socks.iter().zip(ops).enumerate() {
        let s = s.clone();
        let acked = acked.clone();
        let rate = load.rate;
        let win = load.window;
        tasks.push(tokio::spawn(async move {
            if rate > 0.0 {
                let per = rate / n as f64;
                let offset = Duration::from_secs_f64(i as f64 / per / n as f64);
                open_loop_with(s, per, offset, &w, acked, op).await
            } else {
                closed_loop_with(s, win, &w, acked, op).await
            }
        }));
    }
    let mut res = SendResult::default();
    for task in tasks {
        res.merge(task.await.expect("sender task"));
    }
    let cpu = cpu.await.expect("cpu task");
    let rev_after = env.last_rev(t).await?;
    Ok(Ops::new(
        &res,
        &cpu,
        timing.duration,
        rev_after.saturating_sub(rev_before),
    ))
}

/// The figures of one phase of ops: as `persist`'s `Sends`, per op, plus `changes`.
#[derive(Serialize)]
pub(super) struct Ops {
    sent: u64,
    acked_total: u64,
    acked_in_window: u64,
    acked_per_s: f64,
    errors: BTreeMap<String, u64>,
    unacked: u64,
    ack_latency: Latency,
    cpu: Cpu,
    /// Rise of the room's `last_rev` from before the first op to after the last ack (warm-up
    /// included): the ops that changed something (a no-op raises no rev).
    changes: u64,
    /// `acked_total - changes` when positive: ok acks that changed nothing.
    noop_acks: u64,
}

impl Ops {
    fn new(res: &SendResult, cpu: &CpuDelta, duration: f64, changes: u64) -> Self {
        Self {
            sent: res.sent,
            acked_total: res.acked_total,
            acked_in_window: res.acked_in_window,
            acked_per_s: round3(res.acked_in_window as f64 / duration),
            errors: res.errors.clone(),
            unacked: res.unacked,
            ack_latency: Latency::of(res.hist.as_ref().unwrap_or(&new_hist())),
            cpu: cpu.per(res.acked_in_window, "op"),
            changes,
            noop_acks: res.acked_total.saturating_sub(changes),
        }
    }
}

impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  acked {:.1} ops/s (sent {}, acked {}, errors {:?}, unacked {})",
            self.acked_per_s, self.sent, self.acked_total, self.errors, self.unacked
        )?;
        writeln!(
            f,
            "  changes (rise of the room's last_rev) {}, ok acks that changed nothing {}",
            self.changes, self.noop_acks
        )?;
        writeln!(f, "  ack latency: {}", self.ack_latency)?;
        write!(f, "  {}", self.cpu)
    }
}

/// The latency origin line of a summary.
pub(super) fn origin(mode: Mode) -> &'static str {
    match mode {
        Mode::Open => "scheduled send time (coordinated-omission safe)",
        Mode::Closed => "actual send time",
    }
}
