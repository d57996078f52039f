//! `edit`: edit throughput and ack latency. Senders in one room edit their own messages (sent
//! during set-up) with a new body each time, open loop (or closed): every op is a real change
//! (one rev, one `messageUpdated` broadcast to every socket in the room).

use std::fmt;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::ops::{self, LoadArgs, OpFn, Ops};
use super::persist::Mode;
use super::Target;
use crate::{Common, Timing};

#[derive(Args, Debug, Clone)]
pub struct EditArgs {
    /// Messages each sender sends during set-up and then edits in turn.
    #[arg(long, default_value_t = 10)]
    pub messages: usize,
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "edit")]
pub struct EditReport {
    url: String,
    params: Params,
    #[serde(flatten)]
    ops: Ops,
}

#[derive(Serialize)]
struct Params {
    senders: usize,
    rate: f64,
    window: usize,
    mode: Mode,
    messages: usize,
    room: String,
    #[serde(flatten)]
    timing: Timing,
}

/// Sender `i`'s `k`th op: an edit of its message `k mod messages`, with a body no earlier edit
/// had (so an edit always changes the body).
fn ops_of(room: &str, own: Vec<String>, i: usize) -> OpFn {
    let room = room.to_string();
    Box::new(move |k, _at| {
        let id = &own[(k as usize) % own.len()];
        let body = format!("edit {k} by sender {i}");
        ("editMessage", json!({"room": room, "id": id, "body": body}))
    })
}

pub async fn run(
    common: &Common,
    timing: &Timing,
    load: &LoadArgs,
    args: &EditArgs,
) -> Result<EditReport> {
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    let t = Target::new(common).await?;
    let env = ops::setup(&t, load.senders).await?;
    let n = env.socks.len();
    let own = env.send_messages(&vec![args.messages; n]).await?;
    let mode = load.mode();
    eprintln!(
        "edit: {mode} loop, {} senders x {} own messages, warm-up {}s, measuring {}s",
        n, args.messages, timing.warmup, timing.duration
    );
    let op_fns = own
        .into_iter()
        .enumerate()
        .map(|(i, own)| ops_of(&env.room, own, i))
        .collect();
    let ops = ops::phase(&env, &t, common, load, timing, "edit", op_fns).await?;
    Ok(EditReport {
        url: common.url().to_string(),
        params: Params {
            senders: n,
            rate: load.rate,
            window: load.window,
            mode,
            messages: args.messages,
            room: env.room,
            timing: timing.clone(),
        },
        ops,
    })
}

impl fmt::Display for EditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        write!(
            f,
            "edit ({} loop, {} senders, rate {}, window {}, {} own messages each, {}s):\n{}\n  latency origin: {}",
            p.mode,
            p.senders,
            p.rate,
            p.window,
            p.messages,
            p.timing.duration,
            self.ops,
            ops::origin(p.mode)
        )
    }
}
