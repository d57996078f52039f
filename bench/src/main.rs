//! huddle-bench: a load generator for any server implementing the Huddle wire contract.
//!
//! Speaks Engine.IO v4 / Socket.IO v5 frames over a raw websocket itself, registers its users over
//! REST, and prints one JSON line per run on stdout followed by a readable summary.

mod scenarios;
mod schedule;
mod sender;
mod sio;
mod stats;

mod rest;

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "huddle-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Server process id(s) for CPU/RSS accounting (repeatable or comma-separated).
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct Timing {
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds before the measured phase (not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
}

impl Timing {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}

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

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Message persistence throughput and ack latency.
    Persist {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        args: PersistArgs,
    },
    /// Broadcast fan-out latency from send to every receiving socket.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        args: scenarios::FanoutArgs,
    },
    /// Private-room join latency (ACL check + 50-message history replay).
    Join {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        args: scenarios::JoinArgs,
    },
    /// Many idle authenticated sockets: server RSS per socket.
    Connections {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::ConnArgs,
    },
    /// Login flood during a fixed-rate persist load (compared to persist alone).
    Login {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        persist: PersistArgs,
        #[command(flatten)]
        args: scenarios::LoginArgs,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = cli.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build()?;
    let (json, summary) = rt.block_on(async move {
        match cli.scenario {
            Scenario::Persist {
                common,
                timing,
                args,
            } => scenarios::persist(&common, &timing, &args).await,
            Scenario::Fanout {
                common,
                timing,
                args,
            } => scenarios::fanout(&common, &timing, &args).await,
            Scenario::Join {
                common,
                timing,
                args,
            } => scenarios::join(&common, &timing, &args).await,
            Scenario::Connections { common, args } => scenarios::connections(&common, &args).await,
            Scenario::Login {
                common,
                timing,
                persist,
                args,
            } => scenarios::login(&common, &timing, &persist, &args).await,
        }
    })?;
    println!("{json}");
    println!("{summary}");
    // Don't wait for lingering socket tasks.
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}
