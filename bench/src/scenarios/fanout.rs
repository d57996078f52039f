//! `fanout`: broadcast latency from the scheduled send to every receiving socket, with lost and
//! reordered deliveries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::{round3, window, Target, CALL_TIMEOUT, SETUP_CONCURRENCY};
use crate::rest::random_tag;
use crate::schedule::DRAIN;
use crate::sender::{open_loop, SendResult};
use crate::sio::{self, EventFn, Socket};
use crate::stats::{cpu_window, new_hist, progress, record, Cpu, Latency};
use crate::{Common, Timing};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Receiving sockets per room.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Total messages/s over all rooms (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Distinct users behind the receiving sockets (sockets share their tokens round-robin).
    #[arg(long, default_value_t = 20)]
    pub user_pool: usize,
}

/// Histogram shards, so that receiving sockets do not all contend for one lock.
const SHARDS: usize = 16;

struct FanShared {
    t0: Instant,
    from_ns: AtomicU64,
    to_ns: AtomicU64,
    received: AtomicU64,
    total: AtomicU64,
    reordered: AtomicU64,
    unparsed: AtomicU64,
    hists: Vec<Mutex<Histogram<u64>>>,
}

fn receiver_callback(sh: Arc<FanShared>, shard: usize) -> EventFn {
    let last_seq = AtomicU64::new(0);
    Arc::new(move |txt: &str| {
        if !txt.starts_with("[\"message\"") || !txt.contains("\"kind\":\"user\"") {
            return;
        }
        let now = sh.t0.elapsed().as_nanos() as u64;
        let Some(ts) = sio::u64_after(txt, "\"body\":\"") else {
            sh.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        sh.total.fetch_add(1, Ordering::Relaxed);
        if let Some(seq) = sio::u64_after(txt, "\"seq\":") {
            if seq <= last_seq.swap(seq, Ordering::Relaxed) {
                sh.reordered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if ts >= sh.from_ns.load(Ordering::Relaxed) && ts < sh.to_ns.load(Ordering::Relaxed) {
            sh.received.fetch_add(1, Ordering::Relaxed);
            let mut h = sh.hists[shard].lock().expect("hist lock");
            record(&mut h, now.saturating_sub(ts) / 1000);
        }
    })
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "fanout")]
pub struct FanoutReport {
    url: String,
    params: Params,
    sent: u64,
    acked_of_window: u64,
    acked_per_s: f64,
    send_errors: BTreeMap<String, u64>,
    unacked: u64,
    ack_latency: Latency,
    expected_deliveries: u64,
    deliveries: u64,
    deliveries_per_s: f64,
    lost: u64,
    unexpected_extra: u64,
    reordered: u64,
    unparsed: u64,
    receivers_closed: usize,
    delivery_latency: Latency,
    cpu: Cpu,
}

#[derive(Serialize)]
struct Params {
    rooms: usize,
    members: usize,
    rate: f64,
    user_pool: usize,
    #[serde(flatten)]
    timing: Timing,
}

pub async fn run(common: &Common, timing: &Timing, args: &FanoutArgs) -> Result<FanoutReport> {
    if args.rooms == 0 || args.members == 0 || args.rate <= 0.0 {
        bail!("--rooms, --members and --rate must be positive");
    }
    let t = Target::new(common).await?;
    let tag = random_tag();
    let pool = args.user_pool.clamp(1, args.members * args.rooms);
    eprintln!(
        "registering {} sender users and {pool} receiver users",
        args.rooms
    );
    let senders = t
        .rest
        .register_many(&format!("b{tag}s"), args.rooms)
        .await?;
    let receivers = t.rest.register_many(&format!("b{tag}r"), pool).await?;
    let mut rooms = Vec::new();
    for (r, u) in senders.iter().enumerate() {
        let name = format!("bench-{tag}-{r}");
        t.rest.create_room(&u.token, &name, "public").await?;
        rooms.push(name);
    }

    let mut w = window(timing);
    let sh = Arc::new(FanShared {
        t0: Instant::now(),
        from_ns: AtomicU64::new(u64::MAX),
        to_ns: AtomicU64::new(u64::MAX),
        received: AtomicU64::new(0),
        total: AtomicU64::new(0),
        reordered: AtomicU64::new(0),
        unparsed: AtomicU64::new(0),
        hists: (0..SHARDS).map(|_| Mutex::new(new_hist())).collect(),
    });

    let total_recv = args.rooms * args.members;
    eprintln!("connecting {total_recv} receiving sockets");
    let connected = AtomicU64::new(0);
    let recv_socks: Vec<Socket> = stream::iter(0..total_recv)
        .map(|i| {
            let room = rooms[i / args.members].clone();
            let token = receivers[i % pool].token.clone();
            let cb = receiver_callback(sh.clone(), i % SHARDS);
            let t = &t;
            let connected = &connected;
            async move {
                let s = t.connect(&token, Some(cb)).await?;
                s.call("joinRoom", &json!(room), CALL_TIMEOUT).await?;
                let c = connected.fetch_add(1, Ordering::Relaxed) + 1;
                if c.is_multiple_of(1000) {
                    eprintln!("  {c} receivers joined");
                }
                Ok::<_, anyhow::Error>(s)
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let mut send_socks = Vec::new();
    for (u, room) in senders.iter().zip(&rooms) {
        let s = t.connect(&u.token, None).await?;
        s.call("joinRoom", &json!(room), CALL_TIMEOUT).await?;
        send_socks.push(Arc::new(s));
    }

    // Time zero for bodies must be the receivers' t0.
    let now = Instant::now() + Duration::from_millis(100);
    w.t0 = sh.t0;
    w.from = now + timing.warmup();
    w.to = w.from + timing.duration();
    sh.from_ns.store(
        w.from.duration_since(sh.t0).as_nanos() as u64,
        Ordering::Relaxed,
    );
    sh.to_ns.store(
        w.to.duration_since(sh.t0).as_nanos() as u64,
        Ordering::Relaxed,
    );
    let cpu = cpu_window(common.server_pid.clone(), w.from, w.to);
    let acked = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    {
        // Progress: mirror sh.total into a shareable counter.
        let sh = sh.clone();
        let delivered = delivered.clone();
        let until = w.to + DRAIN;
        tokio::spawn(async move {
            while Instant::now() < until {
                delivered.store(sh.total.load(Ordering::Relaxed), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    progress(
        "fanout".into(),
        vec![("acked", acked.clone()), ("delivered", delivered)],
        w.to,
    );
    eprintln!(
        "fanout: {} rooms x {} members, {} msg/s total, warm-up {}s, measuring {}s",
        args.rooms, args.members, args.rate, timing.warmup, timing.duration
    );
    let per_room = args.rate / args.rooms as f64;
    let mut tasks = Vec::new();
    for (r, s) in send_socks.iter().enumerate() {
        let s = s.clone();
        let room = rooms[r].clone();
        let tag = format!("{tag}-{r}");
        let acked = acked.clone();
        let offset = Duration::from_secs_f64(r as f64 / per_room / args.rooms as f64);
        // The scheduled first send is relative to t0 = sh.t0; start at `now`.
        let offset = offset + now.duration_since(sh.t0);
        tasks.push(tokio::spawn(async move {
            open_loop(s, room, per_room, offset, &w, tag, acked).await
        }));
    }
    let mut res = SendResult::default();
    for task in tasks {
        res.merge(task.await.expect("sender task"));
    }
    let cpu = cpu.await.expect("cpu task");
    let expected = res.acked_of_window * args.members as u64;
    // Wait for the last deliveries.
    let deadline = Instant::now() + DRAIN;
    while sh.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = sh.received.load(Ordering::Relaxed);
    let mut hist = new_hist();
    for h in &sh.hists {
        hist.add(&*h.lock().expect("hist lock"))?;
    }
    let receivers_closed = recv_socks.iter().filter(|s| s.is_closed()).count();
    drop(recv_socks);
    Ok(FanoutReport {
        url: common.url.clone(),
        params: Params {
            rooms: args.rooms,
            members: args.members,
            rate: args.rate,
            user_pool: pool,
            timing: timing.clone(),
        },
        sent: res.sent,
        acked_of_window: res.acked_of_window,
        acked_per_s: round3(res.acked_in_window as f64 / timing.duration),
        send_errors: res.errors,
        unacked: res.unacked,
        ack_latency: Latency::of(res.hist.as_ref().unwrap_or(&new_hist())),
        expected_deliveries: expected,
        deliveries: received,
        deliveries_per_s: round3(received as f64 / timing.duration),
        lost: expected.saturating_sub(received),
        unexpected_extra: received.saturating_sub(expected),
        reordered: sh.reordered.load(Ordering::Relaxed),
        unparsed: sh.unparsed.load(Ordering::Relaxed),
        receivers_closed,
        delivery_latency: Latency::of(&hist),
        cpu: cpu.per(received, "delivery"),
    })
}

impl fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "fanout ({} rooms x {} members, {} msg/s, {}s):",
            p.rooms, p.members, p.rate, p.timing.duration
        )?;
        writeln!(
            f,
            "  acked {:.1} msg/s; deliveries {} of {} expected ({:.0}/s), lost {}, reordered {}, receivers closed {}",
            self.acked_per_s,
            self.deliveries,
            self.expected_deliveries,
            self.deliveries_per_s,
            self.lost,
            self.reordered,
            self.receivers_closed
        )?;
        writeln!(
            f,
            "  delivery latency (from scheduled send): {}",
            self.delivery_latency
        )?;
        writeln!(f, "  ack latency: {}", self.ack_latency)?;
        write!(f, "  {}", self.cpu)
    }
}
