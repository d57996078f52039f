//! `react`: reaction throughput and ack latency. Senders in one room toggle emoji on the room's
//! messages, open loop (or closed), so that every op is a real change (a reaction added or
//! removed: one rev, one `reaction` broadcast to every socket in the room).

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::ops::{self, LoadArgs, OpFn, Ops};
use super::persist::Mode;
use super::Target;
use crate::{Common, Timing};

/// Single-scalar emoji (no variation selectors), the first `--emoji` of which are used.
pub const EMOJI: [&str; 8] = ["👍", "🎉", "😂", "🚀", "👀", "🔥", "✅", "💯"];

#[derive(Args, Debug, Clone)]
pub struct ReactArgs {
    /// Messages in the room (sent during set-up, round-robin by the senders) that get reactions.
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// Distinct emoji each sender cycles through (1..=8).
    #[arg(long, default_value_t = 4)]
    pub emoji: usize,
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "react")]
pub struct ReactReport {
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
    emoji: usize,
    room: String,
    #[serde(flatten)]
    timing: Timing,
}

/// Sender `i`'s `k`th op: pair `p = k mod (messages × emoji)` names a message (rotated by `i`, so
/// the senders start on different messages) and an emoji; the first pass over the pairs adds
/// every reaction, the second removes them, and so on. Each op therefore changes something, as
/// long as the op on the same pair one pass earlier was applied.
fn ops_of(room: &str, ids: &Arc<Vec<String>>, emoji: usize, i: usize) -> OpFn {
    let room = room.to_string();
    let ids = ids.clone();
    let m = ids.len();
    let pairs = (m * emoji) as u64;
    Box::new(move |k, _at| {
        let p = (k % pairs) as usize;
        let on = (k / pairs).is_multiple_of(2);
        let id = &ids[(p % m + i) % m];
        let e = EMOJI[p / m];
        (
            "react",
            json!({"room": room, "id": id, "emoji": e, "on": on}),
        )
    })
}

pub async fn run(
    common: &Common,
    timing: &Timing,
    load: &LoadArgs,
    args: &ReactArgs,
) -> Result<ReactReport> {
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    if args.emoji == 0 || args.emoji > EMOJI.len() {
        bail!("--emoji must be 1..={}", EMOJI.len());
    }
    let t = Target::new(common).await?;
    let env = ops::setup(&t, load.senders).await?;
    let n = env.socks.len();
    let counts: Vec<usize> = (0..n)
        .map(|i| args.messages / n + usize::from(i < args.messages % n))
        .collect();
    let ids: Arc<Vec<String>> = Arc::new(env.send_messages(&counts).await?.concat());
    let mode = load.mode();
    eprintln!(
        "react: {mode} loop, {} senders x {} messages x {} emoji, warm-up {}s, measuring {}s",
        n, args.messages, args.emoji, timing.warmup, timing.duration
    );
    let op_fns = (0..n)
        .map(|i| ops_of(&env.room, &ids, args.emoji, i))
        .collect();
    let ops = ops::phase(&env, &t, common, load, timing, "react", op_fns).await?;
    Ok(ReactReport {
        url: common.url().to_string(),
        params: Params {
            senders: n,
            rate: load.rate,
            window: load.window,
            mode,
            messages: args.messages,
            emoji: args.emoji,
            room: env.room,
            timing: timing.clone(),
        },
        ops,
    })
}

impl fmt::Display for ReactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        write!(
            f,
            "react ({} loop, {} senders, rate {}, window {}, {} messages x {} emoji, {}s):\n{}\n  latency origin: {}",
            p.mode,
            p.senders,
            p.rate,
            p.window,
            p.messages,
            p.emoji,
            p.timing.duration,
            self.ops,
            ops::origin(p.mode)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_toggles_its_pair() {
        let ids = Arc::new((0..3).map(|i| format!("m{i}")).collect::<Vec<_>>());
        let mut op = ops_of("r", &ids, 2, 1);
        let mut state = std::collections::HashSet::new();
        for k in 0..60 {
            let (event, v) = op(k, tokio::time::Instant::now());
            assert_eq!(event, "react");
            let key = (v["id"].to_string(), v["emoji"].to_string());
            let on = v["on"].as_bool().unwrap();
            // Adding what is absent or removing what is there: a real change every time.
            assert_eq!(on, !state.contains(&key), "op {k}");
            if on {
                state.insert(key);
            } else {
                state.remove(&key);
            }
        }
    }
}
