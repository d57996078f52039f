//! The scenarios. Each returns (one JSON line, a readable summary).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::stream;
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::rest::{random_tag, Rest, User};
use crate::schedule::{schedule, DRAIN};
use crate::sender::{closed_loop, open_loop, SendResult, Window};
use crate::sio::{self, ack_error_code, ack_ok, EventFn, Socket};
use crate::stats::{cpu_window, lat_json, lat_line, new_hist, progress, record, rss_kib, CpuDelta};
use crate::{Common, PersistArgs, Timing};

const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Concurrent connects/joins during set-up.
const SETUP_CONCURRENCY: usize = 32;

type Output = (String, String);

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn window(timing: &Timing) -> Window {
    let t0 = Instant::now() + Duration::from_millis(100);
    let from = t0 + timing.warmup();
    Window {
        t0,
        from,
        to: from + timing.duration(),
    }
}

struct Target {
    rest: Rest,
    ws: String,
    addr: SocketAddr,
}

impl Target {
    async fn new(common: &Common) -> Result<Self> {
        let rest = Rest::new(&common.url)?;
        let ws = sio::ws_url(&common.url);
        let addr = sio::resolve(&ws).await?;
        Ok(Self { rest, ws, addr })
    }

    async fn connect(&self, token: &str, on_event: Option<EventFn>) -> Result<Socket> {
        sio::connect(&self.ws, self.addr, token, None, on_event).await
    }
}

// ---------------------------------------------------------------------------------------------
// persist

struct PersistEnv {
    socks: Vec<Arc<Socket>>,
    room: String,
    tag: String,
}

async fn persist_setup(t: &Target, args: &PersistArgs) -> Result<PersistEnv> {
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

async fn persist_phase(
    env: &PersistEnv,
    common: &Common,
    args: &PersistArgs,
    w: Window,
    label: &str,
) -> (SendResult, CpuDelta) {
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
    (res, cpu.await.expect("cpu task"))
}

fn persist_json(res: &SendResult, cpu: &CpuDelta, duration: f64) -> Value {
    let empty = new_hist();
    let h = res.hist.as_ref().unwrap_or(&empty);
    json!({
        "sent": res.sent,
        "acked_total": res.acked_total,
        "acked_in_window": res.acked_in_window,
        "acked_per_s": round3(res.acked_in_window as f64 / duration),
        "errors": res.errors,
        "unacked": res.unacked,
        "ack_latency": lat_json(h),
        "cpu": cpu.json(res.acked_in_window, "msg"),
    })
}

fn persist_lines(res: &SendResult, cpu: &CpuDelta, duration: f64) -> String {
    let empty = new_hist();
    let h = res.hist.as_ref().unwrap_or(&empty);
    format!(
        "  acked {:.1} msg/s (sent {}, acked {}, errors {:?}, unacked {})\n  {}\n  {}",
        res.acked_in_window as f64 / duration,
        res.sent,
        res.acked_total,
        res.errors,
        res.unacked,
        lat_line("ack latency", h),
        cpu.line(res.acked_in_window, "msg")
    )
}

pub async fn persist(common: &Common, timing: &Timing, args: &PersistArgs) -> Result<Output> {
    let t = Target::new(common).await?;
    let env = persist_setup(&t, args).await?;
    let mode = if args.rate > 0.0 { "open" } else { "closed" };
    eprintln!(
        "persist: {mode} loop, warm-up {}s, measuring {}s",
        timing.warmup, timing.duration
    );
    let (res, cpu) = persist_phase(&env, common, args, window(timing), "persist").await;
    let mut j = json!({
        "scenario": "persist",
        "url": common.url,
        "params": {"senders": args.senders, "rate": args.rate, "window": args.window,
                   "mode": mode, "room": env.room, "duration_s": timing.duration, "warmup_s": timing.warmup},
    });
    merge_into(&mut j, persist_json(&res, &cpu, timing.duration));
    let summary = format!(
        "persist ({mode} loop, {} senders, rate {}, window {}, {}s):\n{}\n  latency origin: {}",
        args.senders,
        args.rate,
        args.window,
        timing.duration,
        persist_lines(&res, &cpu, timing.duration),
        if mode == "open" {
            "scheduled send time (coordinated-omission safe)"
        } else {
            "actual send time"
        }
    );
    Ok((j.to_string(), summary))
}

fn merge_into(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
}

// ---------------------------------------------------------------------------------------------
// fanout

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

pub async fn fanout(common: &Common, timing: &Timing, args: &FanoutArgs) -> Result<Output> {
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
                if c % 1000 == 0 {
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
    let closed = recv_socks.iter().filter(|s| s.is_closed()).count();
    let lost = expected.saturating_sub(received);
    let extra = received.saturating_sub(expected);
    let j = json!({
        "scenario": "fanout",
        "url": common.url,
        "params": {"rooms": args.rooms, "members": args.members, "rate": args.rate,
                   "user_pool": pool, "duration_s": timing.duration, "warmup_s": timing.warmup},
        "sent": res.sent,
        "acked_of_window": res.acked_of_window,
        "acked_per_s": round3(res.acked_in_window as f64 / timing.duration),
        "send_errors": res.errors,
        "unacked": res.unacked,
        "ack_latency": lat_json(res.hist.as_ref().unwrap_or(&new_hist())),
        "expected_deliveries": expected,
        "deliveries": received,
        "deliveries_per_s": round3(received as f64 / timing.duration),
        "lost": lost,
        "unexpected_extra": extra,
        "reordered": sh.reordered.load(Ordering::Relaxed),
        "unparsed": sh.unparsed.load(Ordering::Relaxed),
        "receivers_closed": closed,
        "delivery_latency": lat_json(&hist),
        "cpu": cpu.json(received, "delivery"),
    });
    let summary = format!(
        "fanout ({} rooms x {} members, {} msg/s, {}s):\n  acked {:.1} msg/s; deliveries {received} of {expected} expected ({:.0}/s), lost {lost}, reordered {}, receivers closed {closed}\n  {}\n  {}\n  {}",
        args.rooms,
        args.members,
        args.rate,
        timing.duration,
        res.acked_in_window as f64 / timing.duration,
        received as f64 / timing.duration,
        sh.reordered.load(Ordering::Relaxed),
        lat_line("delivery latency (from scheduled send)", &hist),
        lat_line("ack latency", res.hist.as_ref().unwrap_or(&new_hist())),
        cpu.line(received, "delivery"),
    );
    drop(recv_socks);
    Ok((j.to_string(), summary))
}

// ---------------------------------------------------------------------------------------------
// join

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

pub async fn join(common: &Common, timing: &Timing, args: &JoinArgs) -> Result<Output> {
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
    let (scheduled, unfinished) = (done.launched, done.unfinished);
    let cpu = cpu.await.expect("cpu task");
    let j = json!({
        "scenario": "join",
        "url": common.url,
        "params": {"users": args.users, "rate": args.rate, "preload": args.preload,
                   "duration_s": timing.duration, "warmup_s": timing.warmup},
        "joins_scheduled": scheduled,
        "joins_ok_total": joined.load(Ordering::Relaxed),
        "joins_ok_in_window": ok_in_window,
        "joins_per_s": round3(ok_in_window as f64 / timing.duration),
        "errors": errors,
        "leave_errors": leave_errors,
        "unfinished": unfinished,
        "history_events": histories.load(Ordering::Relaxed),
        "join_latency": lat_json(&hist),
        "cpu": cpu.json(ok_in_window, "join"),
    });
    let summary = format!(
        "join ({} joins/s, {} members, {} preloaded, {}s):\n  {:.1} joins/s ok, errors {errors:?}, leave errors {leave_errors}, history events {} for {} ok joins\n  {}\n  {}",
        args.rate,
        args.users,
        args.preload,
        timing.duration,
        ok_in_window as f64 / timing.duration,
        histories.load(Ordering::Relaxed),
        joined.load(Ordering::Relaxed),
        lat_line("join ack latency (from scheduled time)", &hist),
        cpu.line(ok_in_window, "join"),
    );
    Ok((j.to_string(), summary))
}

// ---------------------------------------------------------------------------------------------
// connections

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Sockets to open from this process (a process may open at most ~20,000 files here:
    /// split larger totals over several processes).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Bind client sockets round-robin to 127.0.0.1 ..= 127.0.0.K.
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    /// Distinct users behind the sockets (each logs in once; sockets reuse tokens).
    #[arg(long, default_value_t = 1)]
    pub users: usize,
    /// Concurrent connects.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds to hold the sockets open after connecting (idle CPU is measured then).
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
}

pub async fn connections(common: &Common, args: &ConnArgs) -> Result<Output> {
    let t = Target::new(common).await?;
    let tag = random_tag();
    let users: Vec<User> = t
        .rest
        .register_many(&format!("b{tag}c"), args.users.max(1))
        .await?;
    let pid = common.server_pid.first().copied();
    let rss_before = pid.and_then(rss_kib);
    let started = Instant::now();
    let connected = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let sources = args.sources.max(1);
    eprintln!(
        "connections: opening {} sockets from {sources} source address(es)",
        args.count
    );
    let socks: Vec<Socket> = stream::iter(0..args.count)
        .map(|i| {
            let token = users[i % users.len()].token.clone();
            let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % sources as usize) as u8));
            let (t, connected, failures, first_error) = (&t, &connected, &failures, &first_error);
            async move {
                match sio::connect(&t.ws, t.addr, &token, Some(src), None).await {
                    Ok(s) => {
                        let c = connected.fetch_add(1, Ordering::Relaxed) + 1;
                        if c % 1000 == 0 {
                            eprintln!(
                                "  {c} sockets connected ({:.1}s)",
                                started.elapsed().as_secs_f64()
                            );
                        }
                        Some(s)
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("lock")
                            .get_or_insert_with(|| format!("{e:#}"));
                        None
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .filter_map(|s| async move { s })
        .collect()
        .await;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = pid.and_then(rss_kib);
    let from = Instant::now();
    let to = from + Duration::from_secs_f64(args.hold);
    let cpu = cpu_window(common.server_pid.clone(), from, to);
    tokio::time::sleep_until(to).await;
    let cpu = cpu.await.expect("cpu task");
    let alive = socks.iter().filter(|s| !s.is_closed()).count();
    let n = socks.len();
    let per_socket = match (rss_before, rss_after) {
        (Some(a), Some(b)) if n > 0 => Some(round3(b.saturating_sub(a) as f64 * 1024.0 / n as f64)),
        _ => None,
    };
    let j = json!({
        "scenario": "connections",
        "url": common.url,
        "params": {"count": args.count, "sources": sources, "users": users.len(),
                   "concurrency": args.concurrency, "hold_s": args.hold},
        "connected": n,
        "failed": failures.load(Ordering::Relaxed),
        "first_error": *first_error.lock().expect("lock"),
        "connect_s": round3(connect_s),
        "connects_per_s": round3(n as f64 / connect_s),
        "alive_after_hold": alive,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "rss_bytes_per_socket": per_socket,
        "idle_cpu": cpu.json(n as u64, "socket"),
    });
    let summary = format!(
        "connections: {n} of {} connected in {connect_s:.1}s ({:.0}/s), {} failed{}; {alive} alive after {}s hold\n  server RSS {} -> {} KiB ({} bytes/socket)\n  idle {}",
        args.count,
        n as f64 / connect_s,
        failures.load(Ordering::Relaxed),
        first_error
            .lock()
            .expect("lock")
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default(),
        args.hold,
        rss_before.map_or("?".into(), |v| v.to_string()),
        rss_after.map_or("?".into(), |v| v.to_string()),
        per_socket.map_or("?".into(), |v| format!("{v:.0}")),
        cpu.line(n as u64, "socket"),
    );
    drop(socks);
    Ok((j.to_string(), summary))
}

// ---------------------------------------------------------------------------------------------
// login

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// Logins per second (open loop) during the second phase.
    #[arg(long, default_value_t = 20.0)]
    pub login_rate: f64,
    /// Pre-registered users the logins cycle through.
    #[arg(long, default_value_t = 10)]
    pub login_users: usize,
}

struct LoginResult {
    hist: Histogram<u64>,
    ok_in_window: u64,
    statuses: BTreeMap<String, u64>,
}

async fn login_flood(rest: Rest, names: Vec<String>, rate: f64, w: Window) -> LoginResult {
    let mut res = LoginResult {
        hist: new_hist(),
        ok_in_window: 0,
        statuses: BTreeMap::new(),
    };
    schedule(
        rate,
        w.t0,
        w.to,
        |k, _| {
            let rest = rest.clone();
            let name = names[(k as usize) % names.len()].clone();
            async move { rest.login_status(&name).await }
        },
        |at, status| {
            let key = match status {
                Ok(s) => s.to_string(),
                Err(_) => "transport_error".to_string(),
            };
            if key == "200" && at >= w.from && at < w.to {
                res.ok_in_window += 1;
                record(&mut res.hist, at.elapsed().as_micros() as u64);
            }
            *res.statuses.entry(key).or_default() += 1;
        },
    )
    .await;
    res
}

pub async fn login(
    common: &Common,
    timing: &Timing,
    persist_args: &PersistArgs,
    args: &LoginArgs,
) -> Result<Output> {
    if persist_args.rate <= 0.0 || args.login_rate <= 0.0 {
        bail!("login needs a fixed --rate > 0 for the persist load and --login-rate > 0");
    }
    let t = Target::new(common).await?;
    let env = persist_setup(&t, persist_args).await?;
    eprintln!("registering {} login users", args.login_users.max(1));
    let login_users = t
        .rest
        .register_many(&format!("b{}l", env.tag), args.login_users.max(1))
        .await?;
    let names: Vec<String> = login_users.into_iter().map(|u| u.username).collect();

    eprintln!("phase 1: persist alone at {} msg/s", persist_args.rate);
    let (alone, alone_cpu) =
        persist_phase(&env, common, persist_args, window(timing), "persist-alone").await;
    eprintln!(
        "phase 2: persist at {} msg/s + {} logins/s",
        persist_args.rate, args.login_rate
    );
    let w = window(timing);
    let flood = tokio::spawn(login_flood(t.rest.clone(), names, args.login_rate, w));
    let (with, with_cpu) = persist_phase(&env, common, persist_args, w, "persist+login").await;
    let lr = flood.await.expect("login flood");
    let mut phase2 = persist_json(&with, &with_cpu, timing.duration);
    merge_into(
        &mut phase2,
        json!({
            "logins_ok_per_s": round3(lr.ok_in_window as f64 / timing.duration),
            "login_statuses": lr.statuses,
            "login_latency": lat_json(&lr.hist),
        }),
    );
    let j = json!({
        "scenario": "login",
        "url": common.url,
        "params": {"senders": persist_args.senders, "rate": persist_args.rate,
                   "login_rate": args.login_rate, "login_users": names_len(args),
                   "room": env.room, "duration_s": timing.duration, "warmup_s": timing.warmup},
        "persist_only": persist_json(&alone, &alone_cpu, timing.duration),
        "persist_with_logins": phase2,
    });
    let summary = format!(
        "login flood ({} logins/s) during persist ({} msg/s, {} senders, {}s per phase):\n persist alone:\n{}\n persist + logins:\n{}\n  logins ok {:.1}/s, statuses {:?}\n  {}",
        args.login_rate,
        persist_args.rate,
        persist_args.senders,
        timing.duration,
        persist_lines(&alone, &alone_cpu, timing.duration),
        persist_lines(&with, &with_cpu, timing.duration),
        lr.ok_in_window as f64 / timing.duration,
        lr.statuses,
        lat_line("login latency (from scheduled time)", &lr.hist),
    );
    Ok((j.to_string(), summary))
}

fn names_len(args: &LoginArgs) -> usize {
    args.login_users.max(1)
}
