//! `persist`: message persistence throughput and ack latency, open or closed loop. Its set-up,
//! phase and figures are also the message load of `login`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;

use super::{round3, window, Target, CALL_TIMEOUT, SETUP_CONCURRENCY};
use crate::rest::random_tag;
use crate::sender::{closed_loop, open_loop, SendResult, Window};
use crate::sio::Socket;
use crate::stats::{cpu_window, new_hist, progress, Cpu, CpuDelta, Latency};
use crate::{Common, Timing};

#[derive(Args, Debug, Clone)]
pub struct PersistArgs {
    /// Number of senders (each its own user and socket).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Total messages/s over all senders (open loop); 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Closed loop: un-acked sends in flight per sender.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Room to use (e.g. `general`); default: a fresh public room.
    #[arg(long)]
    pub room: Option<String>,
}

/// Connected senders, all joined to one room.
pub(super) struct PersistEnv {
    socks: Vec<Arc<Socket>>,
    pub(super) room: String,
    pub(super) tag: String,
}

pub(super) async fn setup(t: &Target, args: &PersistArgs) -> Result<PersistEnv> {
    if args.senders == 0 {
        bail!("--senders must be at least 1");
    }
    let tag = random_tag();
    eprintln!("registering {} sender users", args.senders);
    let users = t
        .rest
        .register_many(&format!("b{tag}s"), args.senders)
        .await?;
    let room = match &args.room {
        Some(r) => r.clone(),
        None => {
            let name = format!("bench-{tag}");
            t.rest.create_room(&users[0].token, &name, "public").await?;
            name
        }
    };
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
    Ok(PersistEnv { socks, room, tag })
}

/// Runs every sender over `w` and reports what they did in its measured phase.
pub(super) async fn phase(
    env: &PersistEnv,
    common: &Common,
    args: &PersistArgs,
    w: Window,
    label: &str,
    duration: f64,
) -> Sends {
    let cpu = cpu_window(common.server_pid.clone(), w.from, w.to);
    let acked = Arc::new(AtomicU64::new(0));
    progress(label.to_string(), vec![("acked", acked.clone())], w.to);
    let n = env.socks.len();
    let mut tasks = Vec::new();
    for (i, s) in env.socks.iter().enumerate() {
        let s = s.clone();
        let room = env.room.clone();
        let tag = format!("{}-{label}-{i}", env.tag);
        let acked = acked.clone();
        let rate = args.rate;
        let win = args.window;
        tasks.push(tokio::spawn(async move {
            if rate > 0.0 {
                let per = rate / n as f64;
                let offset = Duration::from_secs_f64(i as f64 / per / n as f64);
                open_loop(s, room, per, offset, &w, tag, acked).await
            } else {
                closed_loop(s, room, win, &w, tag, acked).await
            }
        }));
    }
    let mut res = SendResult::default();
    for t in tasks {
        res.merge(t.await.expect("sender task"));
    }
    Sends::new(&res, &cpu.await.expect("cpu task"), duration)
}

/// The figures of one persist phase.
#[derive(Serialize)]
pub(super) struct Sends {
    sent: u64,
    acked_total: u64,
    acked_in_window: u64,
    acked_per_s: f64,
    errors: BTreeMap<String, u64>,
    unacked: u64,
    ack_latency: Latency,
    cpu: Cpu,
}

impl Sends {
    /// Messages acked in the run, warm-up included.
    pub(super) fn acked_total(&self) -> u64 {
        self.acked_total
    }

    fn new(res: &SendResult, cpu: &CpuDelta, duration: f64) -> Self {
        Self {
            sent: res.sent,
            acked_total: res.acked_total,
            acked_in_window: res.acked_in_window,
            acked_per_s: round3(res.acked_in_window as f64 / duration),
            errors: res.errors.clone(),
            unacked: res.unacked,
            ack_latency: Latency::of(res.hist.as_ref().unwrap_or(&new_hist())),
            cpu: cpu.per(res.acked_in_window, "msg"),
        }
    }
}

impl fmt::Display for Sends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  acked {:.1} msg/s (sent {}, acked {}, errors {:?}, unacked {})\n  ack latency: {}\n  {}",
            self.acked_per_s, self.sent, self.acked_total, self.errors, self.unacked, self.ack_latency, self.cpu
        )
    }
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    /// Each sender sends on a fixed schedule: `--rate` > 0.
    Open,
    /// Each sender keeps `--window` sends in flight.
    Closed,
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "persist")]
pub struct PersistReport {
    url: String,
    params: Params,
    #[serde(flatten)]
    sends: Sends,
}

#[derive(Serialize)]
struct Params {
    senders: usize,
    rate: f64,
    window: usize,
    mode: Mode,
    room: String,
    #[serde(flatten)]
    timing: Timing,
}

pub async fn run(common: &Common, timing: &Timing, args: &PersistArgs) -> Result<PersistReport> {
    let t = Target::new(common).await?;
    let env = setup(&t, args).await?;
    let mode = if args.rate > 0.0 {
        Mode::Open
    } else {
        Mode::Closed
    };
    eprintln!(
        "persist: {mode} loop, warm-up {}s, measuring {}s",
        timing.warmup, timing.duration
    );
    let sends = phase(
        &env,
        common,
        args,
        window(timing),
        "persist",
        timing.duration,
    )
    .await;
    Ok(PersistReport {
        url: common.url().to_string(),
        params: Params {
            senders: args.senders,
            rate: args.rate,
            window: args.window,
            mode,
            room: env.room,
            timing: timing.clone(),
        },
        sends,
    })
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Open => "open",
            Mode::Closed => "closed",
        })
    }
}

impl fmt::Display for PersistReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        let origin = match p.mode {
            Mode::Open => "scheduled send time (coordinated-omission safe)",
            Mode::Closed => "actual send time",
        };
        write!(
            f,
            "persist ({} loop, {} senders, rate {}, window {}, {}s):\n{}\n  latency origin: {origin}",
            p.mode, p.senders, p.rate, p.window, p.timing.duration, self.sends
        )
    }
}
