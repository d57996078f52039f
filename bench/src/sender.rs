//! Message senders: open loop (fixed schedule, latency from the scheduled time) and closed loop
//! (a window of un-acked sends, latency from the actual send time), of `sendMessage` or of any
//! other acknowledged event (`react`, `editMessage`, ...).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::schedule::schedule;
use crate::sio::{ack_error_code, ack_ok, Socket};
use crate::stats::{new_hist, record};

#[derive(Clone, Copy)]
pub struct Window {
    /// Time zero: bodies carry nanoseconds since this instant.
    pub t0: Instant,
    /// Start of the measured phase (end of warm-up).
    pub from: Instant,
    /// End of sending.
    pub to: Instant,
}

#[derive(Default)]
pub struct SendResult {
    pub hist: Option<Histogram<u64>>,
    pub sent: u64,
    /// Acks received while the measured phase ran.
    pub acked_in_window: u64,
    /// Ok acks of sends scheduled (open loop) or sent (closed loop) in the measured phase.
    pub acked_of_window: u64,
    pub acked_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub unacked: u64,
}

impl SendResult {
    pub fn merge(&mut self, o: SendResult) {
        match (&mut self.hist, o.hist) {
            (Some(h), Some(x)) => h.add(&x).expect("hist add"),
            (h @ None, x) => *h = x,
            _ => {}
        }
        self.sent += o.sent;
        self.acked_in_window += o.acked_in_window;
        self.acked_of_window += o.acked_of_window;
        self.acked_total += o.acked_total;
        self.unacked += o.unacked;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Nanoseconds from `t0` to `t` (0 before `t0`).
pub fn nanos(t0: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(t0).as_nanos() as u64
}

/// The `k`th `sendMessage` of a sender: the body is a time in ns since `t0`, the `client_id`
/// `<tag>-<k>`.
fn send_message(room: &str, body_ns: u64, tag: &str, k: u64) -> (&'static str, Value) {
    let payload =
        json!({"room": room, "body": body_ns.to_string(), "client_id": format!("{tag}-{k}")});
    ("sendMessage", payload)
}

/// Sends `sendMessage` on a fixed schedule: `rate` msgs/s, first send at `t0 + offset`.
/// The body is the scheduled time in ns since `t0`. Acked counter is bumped live for progress.
pub async fn open_loop(
    sock: Arc<Socket>,
    room: String,
    rate: f64,
    offset: Duration,
    w: &Window,
    tag: String,
    acked: Arc<AtomicU64>,
) -> SendResult {
    let t0 = w.t0;
    open_loop_with(sock, rate, offset, w, acked, move |k, at| {
        send_message(&room, nanos(t0, at), &tag, k)
    })
    .await
}

/// Closed loop of `sendMessage`: keeps `window` sends in flight until `w.to`.
pub async fn closed_loop(
    sock: Arc<Socket>,
    room: String,
    window: usize,
    w: &Window,
    tag: String,
    acked: Arc<AtomicU64>,
) -> SendResult {
    let t0 = w.t0;
    closed_loop_with(sock, window, w, acked, move |k, at| {
        send_message(&room, nanos(t0, at), &tag, k)
    })
    .await
}

/// Open loop over any acknowledged event: `op(k, at)` gives the event and payload of the `k`th
/// emit, scheduled at `at` (`rate` per second, the first at `t0 + offset`). Latency is measured
/// from `at`.
pub async fn open_loop_with<F>(
    sock: Arc<Socket>,
    rate: f64,
    offset: Duration,
    w: &Window,
    acked: Arc<AtomicU64>,
    mut op: F,
) -> SendResult
where
    F: FnMut(u64, Instant) -> (&'static str, Value),
{
    let mut res = SendResult {
        hist: Some(new_hist()),
        ..Default::default()
    };
    let done = schedule(
        rate,
        w.t0 + offset,
        w.to,
        |k, at| {
            // Emitted now, at the scheduled time, not when the ack future is first polled.
            let (event, payload) = op(k, at);
            let rx = sock.emit_ack(event, &payload);
            async move { rx.await.ok() }
        },
        |at, raw| handle_ack(&mut res, w, at, raw, &acked),
    )
    .await;
    res.sent = done.launched;
    res.unacked = done.unfinished;
    res
}

/// Closed loop over any acknowledged event: keeps `window` emits of `op(k, now)` in flight until
/// `w.to`. Latency is measured from the actual emit.
pub async fn closed_loop_with<F>(
    sock: Arc<Socket>,
    window: usize,
    w: &Window,
    acked: Arc<AtomicU64>,
    mut op: F,
) -> SendResult
where
    F: FnMut(u64, Instant) -> (&'static str, Value),
{
    let mut res = SendResult {
        hist: Some(new_hist()),
        ..Default::default()
    };
    let mut k: u64 = 0;
    let mut inflight = FuturesUnordered::new();
    let mut send = |k: u64| {
        let now = Instant::now();
        let (event, payload) = op(k, now);
        let rx = sock.emit_ack(event, &payload);
        async move { (now, rx.await.ok()) }
    };
    for _ in 0..window.max(1) {
        inflight.push(send(k));
        k += 1;
        res.sent += 1;
    }
    while let Some((sent_at, raw)) = inflight.next().await {
        let now = Instant::now();
        handle_ack(&mut res, w, sent_at, raw, &acked);
        if now < w.to {
            inflight.push(send(k));
            k += 1;
            res.sent += 1;
        }
    }
    res
}

/// Records one ack. `start` is the latency origin (scheduled or actual send time).
fn handle_ack(
    res: &mut SendResult,
    w: &Window,
    start: Instant,
    raw: Option<String>,
    acked: &AtomicU64,
) {
    let now = Instant::now();
    let Some(raw) = raw else {
        *res.errors.entry("socket_closed".into()).or_default() += 1;
        return;
    };
    if !ack_ok(&raw) {
        *res.errors.entry(ack_error_code(&raw)).or_default() += 1;
        return;
    }
    res.acked_total += 1;
    acked.fetch_add(1, Ordering::Relaxed);
    if now >= w.from && now < w.to {
        res.acked_in_window += 1;
    }
    if start >= w.from && start < w.to {
        res.acked_of_window += 1;
        if let Some(h) = res.hist.as_mut() {
            record(h, now.duration_since(start).as_micros() as u64);
        }
    }
}
