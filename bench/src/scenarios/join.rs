//! `join`: private-room join latency (the ACL check and the history replay), at a fixed rate
//! over the member sockets.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::{round3, window, Target, CALL_TIMEOUT, SETUP_CONCURRENCY};
use crate::rest::random_tag;
use crate::schedule::schedule;
use crate::sio::{ack_error_code, ack_ok, EventFn, Socket};
use crate::stats::{cpu_window, new_hist, progress, record, Cpu, Latency};
use crate::{Common, Timing};

#[derive(Args, Debug, Clone)]
pub struct JoinArgs {
    /// Members of the private room (each its own user and socket).
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Joins per second (open loop), spread round-robin over the member sockets.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Messages preloaded into the room.
    #[arg(long, default_value_t = 50)]
    pub preload: usize,
}

/// One scheduled join and the leave after it.
struct Attempt {
    /// The raw ack, `None` on a timeout or a closed socket.
    ack: Option<String>,
    acked_at: Instant,
    left: bool,
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "join")]
pub struct JoinReport {
    url: String,
    params: Params,
    joins_scheduled: u64,
    joins_ok_total: u64,
    joins_ok_in_window: u64,
    joins_per_s: f64,
    errors: BTreeMap<String, u64>,
    leave_errors: u64,
    unfinished: u64,
    history_events: u64,
    join_latency: Latency,
    cpu: Cpu,
}

#[derive(Serialize)]
struct Params {
    users: usize,
    rate: f64,
    preload: usize,
    #[serde(flatten)]
    timing: Timing,
}

pub async fn run(common: &Common, timing: &Timing, args: &JoinArgs) -> Result<JoinReport> {
    if args.users == 0 || args.rate <= 0.0 {
        bail!("--users and --rate must be positive");
    }
    let t = Target::new(common).await?;
    let tag = random_tag();
    eprintln!("registering owner + {} member users", args.users);
    let owner = t.rest.register(&format!("b{tag}o")).await?;
    let members = t
        .rest
        .register_many(&format!("b{tag}m"), args.users)
        .await?;
    let room_id = t
        .rest
        .create_room(&owner.token, &format!("bench-{tag}-priv"), "private")
        .await?;
    for m in &members {
        t.rest.grant_member(&owner.token, &room_id, &m.id).await?;
    }
    eprintln!("preloading {} messages", args.preload);
    let owner_sock = t.connect(&owner.token, None).await?;
    owner_sock
        .call("joinPrivateRoom", &json!({"roomId": room_id}), CALL_TIMEOUT)
        .await?;
    for i in 0..args.preload {
        owner_sock
            .call(
                "sendMessage",
                &json!({"room": room_id, "body": format!("preload message {i}"), "client_id": format!("pre-{i}")}),
                CALL_TIMEOUT,
            )
            .await
            .context("preload sendMessage")?;
    }
    let histories = Arc::new(AtomicU64::new(0));
    let socks: Vec<Arc<Socket>> = stream::iter(members.iter())
        .map(|u| {
            let h = histories.clone();
            let cb: EventFn = Arc::new(move |txt: &str| {
                if txt.starts_with("[\"history\"") {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            });
            let t = &t;
            async move { Ok::<_, anyhow::Error>(Arc::new(t.connect(&u.token, Some(cb)).await?)) }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;

    let w = window(timing);
    let cpu = cpu_window(common.server_pid.clone(), w.from, w.to);
    let joined = Arc::new(AtomicU64::new(0));
    progress("join".into(), vec![("joins", joined.clone())], w.to);
    eprintln!(
        "join: {} joins/s over {} member sockets, warm-up {}s, measuring {}s",
        args.rate, args.users, timing.warmup, timing.duration
    );
    let mut hist = new_hist();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok_in_window = 0u64;
    let mut leave_errors = 0u64;
    let done = schedule(
        args.rate,
        w.t0,
        w.to,
        |k, _| {
            let sock = socks[(k as usize) % socks.len()].clone();
            let room_id = room_id.clone();
            async move {
                let rx = sock.emit_ack("joinPrivateRoom", &json!({"roomId": room_id}));
                let ack = tokio::time::timeout(CALL_TIMEOUT, rx)
                    .await
                    .ok()
                    .and_then(Result::ok);
                let acked_at = Instant::now();
                let left = sock
                    .call("leaveRoom", &json!({"room": room_id}), CALL_TIMEOUT)
                    .await
                    .is_ok();
                Attempt {
                    ack,
                    acked_at,
                    left,
                }
            }
        },
        |at, attempt| {
            match attempt.ack {
                Some(raw) if ack_ok(&raw) => {
                    joined.fetch_add(1, Ordering::Relaxed);
                    if at >= w.from && at < w.to {
                        ok_in_window += 1;
                        record(
                            &mut hist,
                            attempt.acked_at.duration_since(at).as_micros() as u64,
                        );
                    }
                }
                Some(raw) => *errors.entry(ack_error_code(&raw)).or_default() += 1,
                None => *errors.entry("timeout_or_closed".into()).or_default() += 1,
            }
            if !attempt.left {
                leave_errors += 1;
            }
        },
    )
    .await;
    let cpu = cpu.await.expect("cpu task");
    Ok(JoinReport {
        url: common.url().to_string(),
        params: Params {
            users: args.users,
            rate: args.rate,
            preload: args.preload,
            timing: timing.clone(),
        },
        joins_scheduled: done.launched,
        joins_ok_total: joined.load(Ordering::Relaxed),
        joins_ok_in_window: ok_in_window,
        joins_per_s: round3(ok_in_window as f64 / timing.duration),
        errors,
        leave_errors,
        unfinished: done.unfinished,
        history_events: histories.load(Ordering::Relaxed),
        join_latency: Latency::of(&hist),
        cpu: cpu.per(ok_in_window, "join"),
    })
}

impl fmt::Display for JoinReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "join ({} joins/s, {} members, {} preloaded, {}s):",
            p.rate, p.users, p.preload, p.timing.duration
        )?;
        writeln!(
            f,
            "  {:.1} joins/s ok, errors {:?}, leave errors {}, history events {} for {} ok joins",
            self.joins_per_s,
            self.errors,
            self.leave_errors,
            self.history_events,
            self.joins_ok_total
        )?;
        writeln!(
            f,
            "  join ack latency (from scheduled time): {}",
            self.join_latency
        )?;
        write!(f, "  {}", self.cpu)
    }
}
