//! `webhooks`: what webhooks cost the message path, and how late they arrive. The persist load
//! (the same set-up and phase as `persist`) runs with `--webhooks N` receivers registered (each
//! a path of one HTTP server of the bench's own on 127.0.0.1, answering 204, after
//! `--receiver-delay-ms` for a slow one); reported: acked msgs/s and ack latency as `persist`
//! reports them, and for `message.created` deliveries the lag from the message's scheduled send
//! time (its body) to its arrival at the receiver, and how many of the acked messages arrived.
//! Needs a server API key of the workspace (`--key`, `huddle api-key create`) and a server
//! started with `WEBHOOK_ALLOW_PRIVATE=true`; the webhooks are deleted at the end.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::persist::{self, PersistArgs, Sends};
use super::{window, Target};
use crate::stats::{new_hist, record, Latency};
use crate::{Common, Timing};

#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Webhooks to register (0: the same load without any).
    #[arg(long, default_value_t = 1)]
    pub webhooks: usize,
    /// A server API key of the workspace the senders register in.
    #[arg(long, env = "HUDDLE_BENCH_KEY")]
    pub key: String,
    /// How long the receiver waits before answering (a slow receiver).
    #[arg(long, default_value_t = 0)]
    pub receiver_delay_ms: u64,
    /// How long to wait after the load for the last deliveries.
    #[arg(long, default_value_t = 30.0)]
    pub drain_s: f64,
}

/// What the receiver saw: per webhook, the message ids it got; and the lags.
struct Seen {
    ids: Vec<HashSet<String>>,
    lag: Histogram<u64>,
    requests: u64,
}

async fn receive(listener: TcpListener, seen: Arc<Mutex<Seen>>, t0: Instant, delay: Duration) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let _ = connection(tcp, seen, t0, delay).await;
        });
    }
}

/// One keep-alive HTTP/1.1 connection: requests with a `content-length` body, each answered
/// 204 (after `delay`).
async fn connection(
    tcp: tokio::net::TcpStream,
    seen: Arc<Mutex<Seen>>,
    t0: Instant,
    delay: Duration,
) -> Result<()> {
    let (read, mut write) = tcp.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        read.read_exact(&mut body).await?;
        let arrived = Instant::now();
        // "POST /hook/<n> HTTP/1.1"
        let hook: usize = request_line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/hook/"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        if let Ok(event) = serde_json::from_slice::<Value>(&body) {
            let mut seen = seen.lock().expect("receiver state");
            seen.requests += 1;
            if event["type"] == "message.created" {
                let message = &event["data"]["message"];
                let fresh = match (seen.ids.get_mut(hook), message["id"].as_str()) {
                    (Some(ids), Some(id)) => ids.insert(id.to_owned()),
                    _ => false,
                };
                let sent_ns = message["body"].as_str().and_then(|b| b.parse::<u64>().ok());
                if let (true, Some(ns)) = (fresh, sent_ns) {
                    let sent = t0 + Duration::from_nanos(ns);
                    record(
                        &mut seen.lag,
                        arrived.saturating_duration_since(sent).as_micros() as u64,
                    );
                }
            }
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        write
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "webhooks")]
pub struct WebhookReport {
    url: String,
    webhooks: usize,
    receiver_delay_ms: u64,
    senders: usize,
    rate: f64,
    window: usize,
    #[serde(flatten)]
    timing: Timing,
    #[serde(flatten)]
    sends: Sends,
    /// Messages acked in the run (warm-up included) that each webhook got, at least.
    delivered_min: usize,
    acked_total: u64,
    /// From a message's scheduled send to its `message.created` arriving at a receiver.
    delivery_lag: Latency,
    requests: u64,
}

pub async fn run(
    common: &Common,
    timing: &Timing,
    load: &PersistArgs,
    args: &WebhookArgs,
) -> Result<WebhookReport> {
    let t = Target::new(common).await?;
    let env = persist::setup(&t, load).await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let w = window(timing);
    let seen = Arc::new(Mutex::new(Seen {
        ids: vec![HashSet::new(); args.webhooks],
        lag: new_hist(),
        requests: 0,
    }));
    // The receiver stands for the product's server, elsewhere in production: it runs on a
    // thread and runtime of its own, so that its requests do not queue with the senders' acks
    // on the bench's runtime (its CPU still comes out of the same cores).
    let (receiver_seen, t0) = (seen.clone(), w.t0);
    let delay = Duration::from_millis(args.receiver_delay_ms);
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the receiver");
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => receive(listener, receiver_seen, t0, delay).await,
                    Err(err) => eprintln!("webhooks: the receiver cannot listen: {err}"),
                }
            });
        })?;
    let mut hooks = Vec::new();
    for i in 0..args.webhooks {
        let reply = t
            .rest
            .http
            .post(format!("{}/api/server/webhooks", t.rest.base))
            .bearer_auth(&args.key)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hook/{i}")}))
            .send()
            .await
            .context("registering a webhook")?;
        let status = reply.status();
        let body: Value = reply.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("registering a webhook: {status} {body} (is WEBHOOK_ALLOW_PRIVATE=true set?)");
        }
        hooks.push(
            body["webhook"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    eprintln!(
        "webhooks: {} registered, receiver delay {} ms; warm-up {}s, measuring {}s",
        args.webhooks, args.receiver_delay_ms, timing.warmup, timing.duration
    );
    let sends = persist::phase(&env, common, load, w, "webhooks", timing.duration).await;
    let acked_total = sends.acked_total();
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_s);
    let delivered_min = loop {
        let least = {
            let seen = seen.lock().expect("receiver state");
            seen.ids.iter().map(HashSet::len).min().unwrap_or(0)
        };
        if args.webhooks == 0 || least as u64 >= acked_total || Instant::now() >= deadline {
            break least;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for id in &hooks {
        let _ = t
            .rest
            .http
            .delete(format!("{}/api/server/webhooks/{id}", t.rest.base))
            .bearer_auth(&args.key)
            .send()
            .await;
    }
    let seen = seen.lock().expect("receiver state");
    Ok(WebhookReport {
        url: common.url().to_string(),
        webhooks: args.webhooks,
        receiver_delay_ms: args.receiver_delay_ms,
        senders: load.senders,
        rate: load.rate,
        window: load.window,
        timing: timing.clone(),
        sends,
        delivered_min,
        acked_total,
        delivery_lag: Latency::of(&seen.lag),
        requests: seen.requests,
    })
}

impl fmt::Display for WebhookReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "webhooks ({} webhooks, receiver delay {} ms, {} senders, rate {}, window {}, {}s):\n{}\n  delivered (least of the webhooks): {} of {} acked\n  delivery lag: {}",
            self.webhooks,
            self.receiver_delay_ms,
            self.senders,
            self.rate,
            self.window,
            self.timing.duration,
            self.sends,
            self.delivered_min,
            self.acked_total,
            self.delivery_lag
        )
    }
}
