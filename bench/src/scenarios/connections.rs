//! `connections`: many idle authenticated sockets, and the server's memory per socket.
//!
//! With several `--url`s the sockets go round-robin over them (nodes of one deployment) and the
//! RSS figures are sums over every `--server-pid`. With `--processes P` the sockets are opened by
//! P child processes of this one (a process may open only so many files), each holding its share
//! until this one has read the servers' RSS and held them for `--hold` seconds.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{future, stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::{round3, Target};
use crate::rest::{random_tag, User};
use crate::sio::{self, Socket};
use crate::stats::{cpu_window, rss_kib, Cpu};
use crate::Common;

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Sockets to open in all (a process may open at most ~20,000 files here: above that, use
    /// --processes).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Bind client sockets round-robin to 127.0.0.1 ..= 127.0.0.K.
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    /// Distinct users behind the sockets (each logs in once; sockets reuse tokens).
    #[arg(long, default_value_t = 1)]
    pub users: usize,
    /// Concurrent connects (per process).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds to hold the sockets open after connecting (idle CPU is measured then).
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Child processes that open the sockets, --count / P each (1: this process opens them).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Where the users are registered (default: the first --url): a node that is not measured,
    /// since a server keeps the memory of argon2's hashes and new sockets may reuse it.
    #[arg(long)]
    pub register_url: Option<String>,
    /// Internal: run as the child process that opens sockets `from ..from + count` of its parent.
    #[arg(long, hide = true)]
    pub worker_from: Option<usize>,
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
    /// Sums over every `--server-pid` (None when one cannot be read).
    server_rss_before_kib: Option<u64>,
    server_rss_after_kib: Option<u64>,
    rss_bytes_per_socket: Option<f64>,
    idle_cpu: Cpu,
    /// Every `--url` and the sockets connected to each, with several.
    #[serde(skip_serializing_if = "Option::is_none")]
    urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connected_per_url: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    register_url: Option<String>,
    /// Each server's RSS, with several `--server-pid`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_per_pid: Option<Vec<PidRss>>,
}

#[derive(Serialize)]
struct Params {
    count: usize,
    sources: u8,
    users: usize,
    concurrency: usize,
    hold_s: f64,
    processes: usize,
}

#[derive(Serialize)]
struct PidRss {
    pid: u32,
    before_kib: Option<u64>,
    after_kib: Option<u64>,
}

/// What a child process reports once its sockets are open.
#[derive(Serialize, Deserialize, Default)]
struct Opened {
    connected_per_url: Vec<usize>,
    failed: u64,
    first_error: Option<String>,
}

/// The soft limit on open files of this process, from /proc/self/limits.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Opens sockets `range` (socket i goes to `targets[i mod N]`, from source address i mod
/// `sources`, with `tokens[i mod len]`). Failed connects are counted, not fatal.
async fn open(
    targets: &[Target],
    tokens: &[String],
    range: Range<usize>,
    args: &ConnArgs,
    label: &str,
) -> (Vec<Socket>, Opened) {
    let started = Instant::now();
    let connected = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let sources = args.sources.max(1) as usize;
    let n = targets.len();
    let socks: Vec<(usize, Socket)> = stream::iter(range)
        .map(|i| {
            let token = &tokens[i % tokens.len()];
            let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % sources) as u8));
            let t = &targets[i % n];
            let (connected, failures, first_error) = (&connected, &failures, &first_error);
            async move {
                match sio::connect(&t.ws, t.addr, token, Some(src), None).await {
                    Ok(s) => {
                        let c = connected.fetch_add(1, Ordering::Relaxed) + 1;
                        if c % 1000 == 0 {
                            eprintln!(
                                "  {label}{c} sockets connected ({:.1}s)",
                                started.elapsed().as_secs_f64()
                            );
                        }
                        Some((i % n, s))
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
    let mut per_url = vec![0; n];
    for (u, _) in &socks {
        per_url[*u] += 1;
    }
    let opened = Opened {
        connected_per_url: per_url,
        failed: failures.load(Ordering::Relaxed),
        first_error: first_error.into_inner().expect("lock"),
    };
    (socks.into_iter().map(|(_, s)| s).collect(), opened)
}

/// Sum of the servers' RSS (None without pids or when one cannot be read), and each one's.
fn rss_of(pids: &[u32]) -> (Option<u64>, Vec<Option<u64>>) {
    let each: Vec<Option<u64>> = pids.iter().map(|&p| rss_kib(p)).collect();
    let sum = if pids.is_empty() {
        None
    } else {
        each.iter().copied().sum()
    };
    (sum, each)
}

/// A child process's part: reads the tokens (one comma-separated line on stdin), opens its
/// share, says so on stdout (one JSON line), answers
/// `alive` with the number of its sockets still open, and exits when stdin closes.
pub async fn worker(common: &Common, args: &ConnArgs, from: usize) -> Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let tokens: Vec<String> = lines
        .next_line()
        .await?
        .context("no tokens on stdin (--worker-from is internal)")?
        .split(',')
        .map(str::to_string)
        .collect();
    let targets = Target::all(common).await?;
    let label = format!("[from {from}] ");
    let (socks, opened) = open(&targets, &tokens, from..from + args.count, args, &label).await;
    let mut out = tokio::io::stdout();
    out.write_all(format!("{}\n", serde_json::to_string(&opened)?).as_bytes())
        .await?;
    out.flush().await?;
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "alive" {
            let alive = socks.iter().filter(|s| !s.is_closed()).count();
            out.write_all(format!("{alive}\n").as_bytes()).await?;
            out.flush().await?;
        }
    }
    Ok(())
}

pub async fn run(common: &Common, args: &ConnArgs) -> Result<ConnectionsReport> {
    let targets = Target::all(common).await?;
    let n = targets.len();
    let procs = args.processes.max(1);
    let share = args.count.div_ceil(procs);
    if let Some(limit) = open_files_limit() {
        if share + 64 > limit {
            bail!(
                "{share} sockets per process, but a process may open {limit} files here \
                 (ulimit -n): use --processes {}",
                args.count.div_ceil(limit.saturating_sub(100).max(1))
            );
        }
    }
    let tag = random_tag();
    let registrar = match &args.register_url {
        Some(url) => Target::at(url).await?.rest,
        None => targets[0].rest.clone(),
    };
    let users: Vec<User> = registrar
        .register_many(&format!("b{tag}c"), args.users.max(1))
        .await?;
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let (rss_before, each_before) = rss_of(&common.server_pid);
    let sources = args.sources.max(1);
    eprintln!(
        "connections: opening {} sockets to {n} node(s) from {sources} source address(es) in {procs} process(es)",
        args.count
    );
    let started = Instant::now();
    let mut opened = Opened {
        connected_per_url: vec![0; n],
        ..Default::default()
    };
    let mut socks = Vec::new();
    let mut children = Vec::new();
    if procs == 1 {
        let (s, o) = open(&targets, &tokens, 0..args.count, args, "").await;
        socks = s;
        opened = o;
    } else {
        let exe = std::env::current_exe()?;
        for k in 0..procs {
            let from = k * share;
            let count = share.min(args.count.saturating_sub(from));
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("connections")
                .arg("--url")
                .arg(common.urls.join(","))
                .args(["--count", &count.to_string()])
                .args(["--sources", &sources.to_string()])
                .args(["--concurrency", &args.concurrency.to_string()])
                .args(["--worker-from", &from.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let mut child = cmd.spawn().context("spawning a connections worker")?;
            // The users' tokens, one line: the worker's first input.
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(format!("{}\n", tokens.join(",")).as_bytes())
                .await?;
            stdin.flush().await?;
            let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
            children.push((child, stdin, stdout));
        }
        let reports = future::join_all(
            children
                .iter_mut()
                .map(|(_, _, out)| async move { out.next_line().await }),
        )
        .await;
        for report in reports {
            let line = report?.context("a connections worker exited before reporting")?;
            let o: Opened =
                serde_json::from_str(&line).with_context(|| format!("bad worker report {line}"))?;
            for (sum, c) in opened
                .connected_per_url
                .iter_mut()
                .zip(&o.connected_per_url)
            {
                *sum += c;
            }
            opened.failed += o.failed;
            if opened.first_error.is_none() {
                opened.first_error = o.first_error;
            }
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after, each_after) = rss_of(&common.server_pid);
    let from = Instant::now();
    let to = from + Duration::from_secs_f64(args.hold);
    let cpu = cpu_window(common.server_pid.clone(), from, to);
    tokio::time::sleep_until(to).await;
    let cpu = cpu.await.expect("cpu task");
    let mut alive_after_hold = socks.iter().filter(|s| !s.is_closed()).count();
    for (_, stdin, out) in &mut children {
        stdin.write_all(b"alive\n").await?;
        stdin.flush().await?;
        let line = out.next_line().await?.unwrap_or_default();
        alive_after_hold += line.trim().parse::<usize>().unwrap_or(0);
    }
    for (mut child, stdin, _) in children {
        drop(stdin);
        let _ = child.wait().await;
    }
    let n_conn: usize = opened.connected_per_url.iter().sum();
    drop(socks);
    Ok(ConnectionsReport {
        url: common.url().to_string(),
        params: Params {
            count: args.count,
            sources,
            users: users.len(),
            concurrency: args.concurrency,
            hold_s: args.hold,
            processes: procs,
        },
        connected: n_conn,
        failed: opened.failed,
        first_error: opened.first_error,
        connect_s: round3(connect_s),
        connects_per_s: round3(n_conn as f64 / connect_s),
        alive_after_hold,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        rss_bytes_per_socket: match (rss_before, rss_after) {
            (Some(a), Some(b)) if n_conn > 0 => {
                Some(round3(b.saturating_sub(a) as f64 * 1024.0 / n_conn as f64))
            }
            _ => None,
        },
        idle_cpu: cpu.per(n_conn as u64, "socket"),
        urls: (n > 1).then(|| common.urls.clone()),
        connected_per_url: (n > 1).then_some(opened.connected_per_url),
        register_url: args.register_url.clone(),
        rss_per_pid: (common.server_pid.len() > 1).then(|| {
            common
                .server_pid
                .iter()
                .zip(each_before.iter().zip(&each_after))
                .map(|(&pid, (&before_kib, &after_kib))| PidRss {
                    pid,
                    before_kib,
                    after_kib,
                })
                .collect()
        }),
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
        if let (Some(urls), Some(counts)) = (&self.urls, &self.connected_per_url) {
            let per: Vec<String> = urls
                .iter()
                .zip(counts)
                .map(|(u, c)| format!("{c} to {u}"))
                .collect();
            writeln!(f, "  {}", per.join(", "))?;
        }
        writeln!(
            f,
            "  server RSS {} -> {} KiB ({} bytes/socket)",
            kib(self.server_rss_before_kib),
            kib(self.server_rss_after_kib),
            self.rss_bytes_per_socket
                .map_or("?".into(), |v| format!("{v:.0}"))
        )?;
        if let Some(pids) = &self.rss_per_pid {
            for p in pids {
                writeln!(
                    f,
                    "    pid {}: {} -> {} KiB",
                    p.pid,
                    kib(p.before_kib),
                    kib(p.after_kib)
                )?;
            }
        }
        write!(f, "  idle {}", self.idle_cpu)
    }
}
