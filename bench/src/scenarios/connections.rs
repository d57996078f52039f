//! `connections`: many idle authenticated sockets, and the server's memory per socket.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use futures::{stream, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::{round3, Target};
use crate::rest::{random_tag, User};
use crate::sio::{self, Socket};
use crate::stats::{cpu_window, rss_kib, Cpu};
use crate::Common;

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

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "connections")]
pub struct ConnectionsReport {
    url: String,
    params: Params,
    connected: usize,
    failed: u64,
    first_error: Option<String>,
    connect_s: f64,
    connects_per_s: f64,
    alive_after_hold: usize,
    server_rss_before_kib: Option<u64>,
    server_rss_after_kib: Option<u64>,
    rss_bytes_per_socket: Option<f64>,
    idle_cpu: Cpu,
}

#[derive(Serialize)]
struct Params {
    count: usize,
    sources: u8,
    users: usize,
    concurrency: usize,
    hold_s: f64,
}

pub async fn run(common: &Common, args: &ConnArgs) -> Result<ConnectionsReport> {
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
    let alive_after_hold = socks.iter().filter(|s| !s.is_closed()).count();
    let n = socks.len();
    drop(socks);
    Ok(ConnectionsReport {
        url: common.url.clone(),
        params: Params {
            count: args.count,
            sources,
            users: users.len(),
            concurrency: args.concurrency,
            hold_s: args.hold,
        },
        connected: n,
        failed: failures.load(Ordering::Relaxed),
        first_error: first_error.into_inner().expect("lock"),
        connect_s: round3(connect_s),
        connects_per_s: round3(n as f64 / connect_s),
        alive_after_hold,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        rss_bytes_per_socket: match (rss_before, rss_after) {
            (Some(a), Some(b)) if n > 0 => {
                Some(round3(b.saturating_sub(a) as f64 * 1024.0 / n as f64))
            }
            _ => None,
        },
        idle_cpu: cpu.per(n as u64, "socket"),
    })
}

impl fmt::Display for ConnectionsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        write!(
            f,
            "connections: {} of {} connected in {:.1}s ({:.0}/s), {} failed",
            self.connected, self.params.count, self.connect_s, self.connects_per_s, self.failed
        )?;
        if let Some(e) = &self.first_error {
            write!(f, " (first error: {e})")?;
        }
        writeln!(
            f,
            "; {} alive after {}s hold",
            self.alive_after_hold, self.params.hold_s
        )?;
        writeln!(
            f,
            "  server RSS {} -> {} KiB ({} bytes/socket)",
            kib(self.server_rss_before_kib),
            kib(self.server_rss_after_kib),
            self.rss_bytes_per_socket
                .map_or("?".into(), |v| format!("{v:.0}"))
        )?;
        write!(f, "  idle {}", self.idle_cpu)
    }
}
