//! huddle-bench: a load generator for any server implementing the Huddle wire contract.
//!
//! Speaks Engine.IO v4 / Socket.IO v5 frames over a raw websocket itself, registers its users over
//! REST, and prints one JSON line per run on stdout followed by a readable summary.

mod rest;
mod scenarios;
mod schedule;
mod sender;
mod sio;
mod stats;

use std::fmt::Display;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use scenarios::{connections, edit, fanout, join, login, persist, react, resume, webhooks};

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
    /// Base URL of the server. `fanout` and `connections` take several nodes of one deployment
    /// (repeatable or comma-separated); the other scenarios take one.
    #[arg(
        long = "url",
        value_name = "URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:3000"
    )]
    pub urls: Vec<String>,
    /// Server process id(s) for CPU/RSS accounting (repeatable or comma-separated).
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

impl Common {
    /// The first (or only) `--url`: the node that REST set-up goes to, and the report's `url`.
    pub fn url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }
}

/// Also the `duration_s` and `warmup_s` of a report's `params`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Timing {
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    #[serde(rename = "duration_s")]
    pub duration: f64,
    /// Warm-up seconds before the measured phase (not measured).
    #[arg(long, default_value_t = 2.0)]
    #[serde(rename = "warmup_s")]
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

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Message persistence throughput and ack latency.
    Persist {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        args: persist::PersistArgs,
    },
    /// Broadcast fan-out latency from send to every receiving socket.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        args: fanout::FanoutArgs,
    },
    /// Private-room join latency (ACL check + 50-message history replay).
    Join {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        args: join::JoinArgs,
    },
    /// Many idle authenticated sockets: server RSS per socket.
    Connections {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: connections::ConnArgs,
    },
    /// Login flood during a fixed-rate persist load (compared to persist alone).
    Login {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        persist: persist::PersistArgs,
        #[command(flatten)]
        args: login::LoginArgs,
    },
    /// Reaction throughput and ack latency (`react` toggling emoji on a room's messages).
    React {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        load: scenarios::ops::LoadArgs,
        #[command(flatten)]
        args: react::ReactArgs,
    },
    /// Edit throughput and ack latency (`editMessage` of the senders' own messages).
    Edit {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        load: scenarios::ops::LoadArgs,
        #[command(flatten)]
        args: edit::EditArgs,
    },
    /// Catch-up time of a client back after N changes (join since/since_rev, history and
    /// change-feed pages), and whether it got every change.
    Webhooks {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        load: persist::PersistArgs,
        #[command(flatten)]
        args: webhooks::WebhookArgs,
    },
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: resume::ResumeArgs,
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
    // Set when a scenario's own check failed (`resume` missed a change): exit status 3.
    let mut failed = false;
    let (json, summary) = rt.block_on(async {
        match cli.scenario {
            Scenario::Persist {
                common,
                timing,
                args,
            } => lines(persist::run(&common, &timing, &args).await?),
            Scenario::Fanout {
                common,
                timing,
                args,
            } => lines(fanout::run(&common, &timing, &args).await?),
            Scenario::Join {
                common,
                timing,
                args,
            } => lines(join::run(&common, &timing, &args).await?),
            Scenario::Connections { common, args } => {
                if let Some(from) = args.worker_from {
                    // A child of `connections --processes`: no report of its own.
                    connections::worker(&common, &args, from).await?;
                    std::process::exit(0);
                }
                lines(connections::run(&common, &args).await?)
            }
            Scenario::Login {
                common,
                timing,
                persist,
                args,
            } => lines(login::run(&common, &timing, &persist, &args).await?),
            Scenario::React {
                common,
                timing,
                load,
                args,
            } => lines(react::run(&common, &timing, &load, &args).await?),
            Scenario::Edit {
                common,
                timing,
                load,
                args,
            } => lines(edit::run(&common, &timing, &load, &args).await?),
            Scenario::Webhooks {
                common,
                timing,
                load,
                args,
            } => lines(webhooks::run(&common, &timing, &load, &args).await?),
            Scenario::Resume { common, args } => {
                let report = resume::run(&common, &args).await?;
                failed = !report.complete();
                lines(report)
            }
        }
    })?;
    println!("{json}");
    println!("{summary}");
    // Don't wait for lingering socket tasks.
    rt.shutdown_timeout(Duration::from_millis(200));
    if failed {
        eprintln!("FAILED: the client did not get every change (see the report)");
        std::process::exit(3);
    }
    Ok(())
}

/// A report's JSON line and its readable summary. The JSON goes through `serde_json::Value`,
/// whose maps are sorted, so keys come out in the same order as in the earlier results.
fn lines(report: impl Serialize + Display) -> Result<(String, String)> {
    Ok((
        serde_json::to_value(&report)?.to_string(),
        report.to_string(),
    ))
}
