//! `fanout`: broadcast latency from the scheduled send to every receiving socket, with lost and
//! reordered deliveries. With several `--url`s (nodes of one deployment), sockets are placed on
//! them by `--placement`, and the figures are also given per receiving node, for receivers on
//! their sender's node (same node) and on another one (cross node), and, where the nodes count
//! them in `/metrics`, the bus envelopes each node published and read per message sent.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use futures::{future, stream, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::{round3, window, Target, CALL_TIMEOUT, SETUP_CONCURRENCY};
use crate::rest::{random_tag, Rest};
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
    /// With several --url: `spread` puts every sender on the first URL and each room's members
    /// round-robin over all URLs; `local` puts room r, its sender and all its members on URL
    /// r mod N (no room needs another node).
    #[arg(long, value_enum, default_value_t = Placement::Spread)]
    pub placement: Placement,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Spread,
    Local,
}

impl Placement {
    /// The node (index of its URL) of room `r`'s sender.
    fn sender_node(self, r: usize, nodes: usize) -> usize {
        match self {
            Placement::Spread => 0,
            Placement::Local => r % nodes,
        }
    }

    /// The node of room `r`'s `j`th member.
    fn member_node(self, r: usize, j: usize, nodes: usize) -> usize {
        match self {
            Placement::Spread => j % nodes,
            Placement::Local => r % nodes,
        }
    }
}

/// Histogram shards per group, so that receiving sockets do not all contend for one lock.
const SHARDS: usize = 16;

/// The receivers of one node that are on their sender's node (`cross` false) or not.
struct Group {
    received: AtomicU64,
    hists: Vec<Mutex<Histogram<u64>>>,
}

impl Group {
    fn new() -> Self {
        Self {
            received: AtomicU64::new(0),
            hists: (0..SHARDS).map(|_| Mutex::new(new_hist())).collect(),
        }
    }
}

/// Group index of a receiver on `node`, on its sender's node or not.
fn group_of(node: usize, cross: bool) -> usize {
    node * 2 + usize::from(cross)
}

struct FanShared {
    t0: Instant,
    from_ns: AtomicU64,
    to_ns: AtomicU64,
    total: AtomicU64,
    reordered: AtomicU64,
    unparsed: AtomicU64,
    groups: Vec<Group>,
}

fn receiver_callback(sh: Arc<FanShared>, group: usize, shard: usize) -> EventFn {
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
            let g = &sh.groups[group];
            g.received.fetch_add(1, Ordering::Relaxed);
            let mut h = g.hists[shard].lock().expect("hist lock");
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
    /// Every `--url`, with several.
    #[serde(skip_serializing_if = "Option::is_none")]
    urls: Option<Vec<String>>,
    /// Receivers by node, with several `--url`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_node: Option<Vec<Split>>,
    /// Receivers on their sender's node, and on another node, with several `--url`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    same_node: Option<Split>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cross_node: Option<Split>,
    /// Cross-node delivery p99 minus same-node p99, when both have samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    cross_minus_same_p99_ms: Option<f64>,
    /// The bus counters of every node's `/metrics`, when every node has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    bus: Option<Bus>,
}

#[derive(Serialize)]
struct Params {
    rooms: usize,
    members: usize,
    rate: f64,
    user_pool: usize,
    #[serde(flatten)]
    timing: Timing,
    placement: Placement,
}

/// Deliveries to one set of receivers (a node's, or the same-node or cross-node ones).
#[derive(Serialize)]
struct Split {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    receivers: usize,
    expected_deliveries: u64,
    deliveries: u64,
    lost: u64,
    unexpected_extra: u64,
    delivery_latency: Latency,
    #[serde(skip)]
    p99_ms: Option<f64>,
}

impl Split {
    fn new(
        url: Option<String>,
        receivers: usize,
        expected: u64,
        deliveries: u64,
        hist: &Histogram<u64>,
    ) -> Self {
        Self {
            url,
            receivers,
            expected_deliveries: expected,
            deliveries,
            lost: expected.saturating_sub(deliveries),
            unexpected_extra: deliveries.saturating_sub(expected),
            delivery_latency: Latency::of(hist),
            p99_ms: (!hist.is_empty()).then(|| hist.value_at_quantile(0.99) as f64 / 1000.0),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} receivers, deliveries {} of {}, lost {}; {}",
            self.receivers,
            self.deliveries,
            self.expected_deliveries,
            self.lost,
            self.delivery_latency
        )
    }
}

/// Bus envelopes over the run: counters read from every node's `/metrics` after set-up (just
/// before the first send) and after the last delivery, over the messages acked in between
/// (warm-up included).
#[derive(Serialize)]
struct Bus {
    messages: u64,
    published_total: u64,
    received_total: u64,
    nodes: Vec<BusNode>,
}

#[derive(Serialize)]
struct BusNode {
    url: String,
    sockets_connected: Option<u64>,
    published: u64,
    received: u64,
    unpublished: Option<u64>,
    published_per_msg: Option<f64>,
    received_per_msg: Option<f64>,
}

const PUBLISHED: &str = "huddle_bus_published_total";
const RECEIVED: &str = "huddle_bus_received_total";
const UNPUBLISHED: &str = "huddle_bus_unpublished_total";
const SOCKETS: &str = "huddle_sockets_connected";

/// Every node's `/metrics` (None for a node that does not answer it).
async fn snapshot(targets: &[Target]) -> Vec<Option<BTreeMap<String, f64>>> {
    future::join_all(targets.iter().map(|t| async {
        match t.rest.metrics().await {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("{}: no metrics: {e:#}", t.rest.base);
                None
            }
        }
    }))
    .await
}

fn bus_of(
    rests: &[&Rest],
    before: &[Option<BTreeMap<String, f64>>],
    after: &[Option<BTreeMap<String, f64>>],
    messages: u64,
) -> Option<Bus> {
    let mut nodes = Vec::new();
    for ((rest, a), b) in rests.iter().zip(before).zip(after) {
        let (a, b) = (a.as_ref()?, b.as_ref()?);
        let delta = |name: &str| Some((b.get(name)? - a.get(name)?).max(0.0) as u64);
        let per = |n: u64| (messages > 0).then(|| round3(n as f64 / messages as f64));
        let published = delta(PUBLISHED)?;
        let received = delta(RECEIVED)?;
        nodes.push(BusNode {
            url: rest.base.clone(),
            sockets_connected: a.get(SOCKETS).map(|v| *v as u64),
            published,
            received,
            unpublished: delta(UNPUBLISHED),
            published_per_msg: per(published),
            received_per_msg: per(received),
        });
    }
    Some(Bus {
        messages,
        published_total: nodes.iter().map(|n| n.published).sum(),
        received_total: nodes.iter().map(|n| n.received).sum(),
        nodes,
    })
}

pub async fn run(common: &Common, timing: &Timing, args: &FanoutArgs) -> Result<FanoutReport> {
    if args.rooms == 0 || args.members == 0 || args.rate <= 0.0 {
        bail!("--rooms, --members and --rate must be positive");
    }
    let targets = Target::all(common).await?;
    let n = targets.len();
    let t = &targets[0];
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
        total: AtomicU64::new(0),
        reordered: AtomicU64::new(0),
        unparsed: AtomicU64::new(0),
        groups: (0..n * 2).map(|_| Group::new()).collect(),
    });
    let placement = args.placement;
    // Receivers of room r in group g: what the deliveries of r's messages to g should be.
    let mut members_in = vec![vec![0usize; n * 2]; args.rooms];
    for (r, counts) in members_in.iter_mut().enumerate() {
        let from = placement.sender_node(r, n);
        for j in 0..args.members {
            let node = placement.member_node(r, j, n);
            counts[group_of(node, node != from)] += 1;
        }
    }

    let total_recv = args.rooms * args.members;
    eprintln!("connecting {total_recv} receiving sockets to {n} node(s) ({placement:?})");
    let connected = AtomicU64::new(0);
    let recv_socks: Vec<Socket> = stream::iter(0..total_recv)
        .map(|i| {
            let (r, j) = (i / args.members, i % args.members);
            let room = rooms[r].clone();
            let token = receivers[i % pool].token.clone();
            let node = placement.member_node(r, j, n);
            let group = group_of(node, node != placement.sender_node(r, n));
            let cb = receiver_callback(sh.clone(), group, i % SHARDS);
            let t = &targets[node];
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
    for (r, (u, room)) in senders.iter().zip(&rooms).enumerate() {
        let s = targets[placement.sender_node(r, n)]
            .connect(&u.token, None)
            .await?;
        s.call("joinRoom", &json!(room), CALL_TIMEOUT).await?;
        send_socks.push(Arc::new(s));
    }
    // The bus counters once what the set-up published (joins, presence) has settled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bus_before = snapshot(&targets).await;

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
    // What each group should have received: its members in each room times the room's acks.
    let mut expected_of = vec![0u64; n * 2];
    for (r, task) in tasks.into_iter().enumerate() {
        let room = task.await.expect("sender task");
        for (g, m) in members_in[r].iter().enumerate() {
            expected_of[g] += room.acked_of_window * *m as u64;
        }
        res.merge(room);
    }
    let cpu = cpu.await.expect("cpu task");
    let expected = res.acked_of_window * args.members as u64;
    let received_now = || {
        sh.groups
            .iter()
            .map(|g| g.received.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    // Wait for the last deliveries.
    let deadline = Instant::now() + DRAIN;
    while received_now() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bus_after = snapshot(&targets).await;
    let received = received_now();
    let mut hist = new_hist();
    let mut group_hists = Vec::new();
    for g in &sh.groups {
        let mut gh = new_hist();
        for h in &g.hists {
            gh.add(&*h.lock().expect("hist lock"))?;
        }
        hist.add(&gh)?;
        group_hists.push(gh);
    }
    let receivers_closed = recv_socks.iter().filter(|s| s.is_closed()).count();
    drop(recv_socks);

    // Receivers, expected and received deliveries, and latencies of a set of groups.
    let split = |url: Option<String>, groups: &[usize]| -> Result<Split> {
        let mut h = new_hist();
        let (mut members, mut exp, mut got) = (0, 0, 0);
        for &g in groups {
            h.add(&group_hists[g])?;
            members += members_in.iter().map(|m| m[g]).sum::<usize>();
            exp += expected_of[g];
            got += sh.groups[g].received.load(Ordering::Relaxed);
        }
        Ok(Split::new(url, members, exp, got, &h))
    };
    let (mut per_node, mut same_node, mut cross_node, mut cross_minus_same) =
        (None, None, None, None);
    if n > 1 {
        let mut nodes = Vec::new();
        for (node, t) in targets.iter().enumerate() {
            let groups = [group_of(node, false), group_of(node, true)];
            nodes.push(split(Some(t.rest.base.clone()), &groups)?);
        }
        let same = split(
            None,
            &(0..n).map(|k| group_of(k, false)).collect::<Vec<_>>(),
        )?;
        let cross = split(None, &(0..n).map(|k| group_of(k, true)).collect::<Vec<_>>())?;
        if let (Some(s), Some(c)) = (same.p99_ms, cross.p99_ms) {
            cross_minus_same = Some(round3(c - s));
        }
        per_node = Some(nodes);
        same_node = Some(same);
        cross_node = Some(cross);
    }
    let rests: Vec<&Rest> = targets.iter().map(|t| &t.rest).collect();
    Ok(FanoutReport {
        url: common.url().to_string(),
        params: Params {
            rooms: args.rooms,
            members: args.members,
            rate: args.rate,
            user_pool: pool,
            timing: timing.clone(),
            placement,
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
        urls: (n > 1).then(|| common.urls.clone()),
        per_node,
        same_node,
        cross_node,
        cross_minus_same_p99_ms: cross_minus_same,
        bus: bus_of(&rests, &bus_before, &bus_after, res.acked_total),
    })
}

impl fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        write!(
            f,
            "fanout ({} rooms x {} members, {} msg/s, {}s",
            p.rooms, p.members, p.rate, p.timing.duration
        )?;
        if let Some(urls) = &self.urls {
            write!(f, ", {} nodes, {:?} placement", urls.len(), p.placement)?;
        }
        writeln!(f, "):")?;
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
        if let Some(nodes) = &self.per_node {
            for node in nodes {
                writeln!(f, "    on {}: {node}", node.url.as_deref().unwrap_or("?"))?;
            }
        }
        if let (Some(same), Some(cross)) = (&self.same_node, &self.cross_node) {
            writeln!(f, "    same node:  {same}")?;
            writeln!(f, "    cross node: {cross}")?;
            if let Some(d) = self.cross_minus_same_p99_ms {
                writeln!(f, "    cross-node p99 - same-node p99 = {d:.3} ms")?;
            }
        }
        writeln!(f, "  ack latency: {}", self.ack_latency)?;
        if let Some(bus) = &self.bus {
            writeln!(
                f,
                "  bus over {} messages: {} published, {} received in all",
                bus.messages, bus.published_total, bus.received_total
            )?;
            let per = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.3}"));
            for node in &bus.nodes {
                writeln!(
                    f,
                    "    {}: published {} ({}/msg), received {} ({}/msg)",
                    node.url,
                    node.published,
                    per(node.published_per_msg),
                    node.received,
                    per(node.received_per_msg)
                )?;
            }
        }
        write!(f, "  {}", self.cpu)
    }
}
