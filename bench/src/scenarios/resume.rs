//! `resume`: how long a client that was away takes to catch up, and whether it got everything.
//!
//! A client joins a room and keeps the highest `seq` and `rev` it has seen, then, `--runs` times:
//! it disconnects; `--writers` other sockets make `--changes` changes to the room (new messages,
//! edits of their own messages, reactions toggled on the room's messages, mixed by `--mix`); it
//! reconnects and catches up: `joinRoom {room, since, since_rev}`, then, side by side, pages
//! `history {after}` while the join's `has_more` (then each page's) says so, and pages
//! `GET /api/rooms/{id}/changes?after_rev=` while the join's `updates_has_more` (then each
//! page's `has_more`) says so. The catch-up time runs from the start of the reconnect to the last
//! page. It then checks that it got every change: every seq up to the room's `last_seq`, the
//! room's `last_rev`, and every message the writers changed at (at least) the rev of their last
//! ack.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::future::try_join_all;
use futures::{stream, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::react::EMOJI;
use super::{round3, Target, CALL_TIMEOUT, SETUP_CONCURRENCY};
use crate::rest::{random_tag, User};
use crate::sio::{EventFn, Socket};
use crate::stats::cpu_so_far_ms;
use crate::Common;

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// Changes made while the client is away, per run.
    #[arg(long, default_value_t = 2000)]
    pub changes: usize,
    /// Weights of new messages, edits and reactions among the changes: `messages:edits:reactions`.
    #[arg(long, default_value = "2:1:1")]
    pub mix: String,
    /// Sockets (distinct users) that make the changes.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Messages in the room (sent by the writers) before the client first joins.
    #[arg(long, default_value_t = 200)]
    pub preload: usize,
    /// Catch-ups measured, one after the other (the client goes away again after each).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// `limit` of every `history` and change-feed page (the contract allows 1..=200).
    #[arg(long, default_value_t = 200)]
    pub page_limit: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Send,
    Edit,
    React,
}

/// `"2:1:1"` -> [Send, Send, Edit, React]: the cycle each writer's changes follow.
fn parse_mix(mix: &str) -> Result<Vec<Kind>> {
    let w: Vec<usize> = mix
        .split(':')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--mix must be three integers, messages:edits:reactions"))?;
    let [s, e, r] = w[..] else {
        bail!("--mix must be three integers, messages:edits:reactions");
    };
    let mut cycle = Vec::new();
    cycle.extend(std::iter::repeat_n(Kind::Send, s));
    cycle.extend(std::iter::repeat_n(Kind::Edit, e));
    cycle.extend(std::iter::repeat_n(Kind::React, r));
    if cycle.is_empty() {
        bail!("--mix has no positive weight");
    }
    Ok(cycle)
}

/// A socket that makes changes: sends, edits its own messages, toggles reactions.
struct Writer {
    i: usize,
    sock: Socket,
    /// Its own messages (what it may edit).
    own: Vec<String>,
    /// Messages it reacts to: the preloaded ones and its own later ones.
    targets: Vec<String>,
    /// (target index, emoji index) it has reacted with.
    reacted: HashSet<(usize, usize)>,
    rng: StdRng,
    sent: u64,
}

impl Writer {
    async fn send(&mut self, room: &str, tag: &str) -> Result<Value> {
        let k = self.sent;
        self.sent += 1;
        let ack = self
            .sock
            .call(
                "sendMessage",
                &json!({"room": room, "body": format!("message {k} of writer {}", self.i),
                        "client_id": format!("{tag}-w{}-{k}", self.i)}),
                CALL_TIMEOUT,
            )
            .await?;
        let id = ack["message"]["id"]
            .as_str()
            .context("sendMessage ack without message.id")?
            .to_string();
        self.own.push(id.clone());
        self.targets.push(id);
        Ok(ack)
    }

    /// Makes `n` changes one after the other, following `cycle` (edits and reactions fall back
    /// to a send while there is nothing to act on). Returns each changed message's id with the
    /// rev of its last ack.
    async fn changes(
        &mut self,
        n: usize,
        cycle: &[Kind],
        room: &str,
        tag: &str,
    ) -> Result<HashMap<String, u64>> {
        let mut revs = HashMap::new();
        for q in 0..n {
            let kind = cycle[q % cycle.len()];
            let ack = match kind {
                Kind::Edit if !self.own.is_empty() => {
                    let id = self.own[self.rng.gen_range(0..self.own.len())].clone();
                    let body = format!("edited by writer {} ({q}, {})", self.i, self.sent);
                    self.sent += 1;
                    self.sock
                        .call(
                            "editMessage",
                            &json!({"room": room, "id": id, "body": body}),
                            CALL_TIMEOUT,
                        )
                        .await?
                }
                Kind::React if !self.targets.is_empty() => {
                    let t = self.rng.gen_range(0..self.targets.len());
                    let e = self.rng.gen_range(0..4);
                    // Toggled, so that it always changes something.
                    let on = self.reacted.insert((t, e));
                    if !on {
                        self.reacted.remove(&(t, e));
                    }
                    self.sock
                        .call(
                            "react",
                            &json!({"room": room, "id": self.targets[t], "emoji": EMOJI[e], "on": on}),
                            CALL_TIMEOUT,
                        )
                        .await?
                }
                _ => self.send(room, tag).await?,
            };
            let m = &ack["message"];
            let id = m["id"].as_str().context("ack without message.id")?;
            let rev = m["rev"].as_u64().context("ack without message.rev")?;
            let e = revs.entry(id.to_string()).or_insert(0);
            *e = (*e).max(rev);
        }
        Ok(revs)
    }
}

/// The client that goes away and comes back: the highest seq and rev it has seen.
struct Client {
    user: User,
    seq: u64,
    rev: u64,
}

/// Connects with a callback that forwards every `history` event (raw) to the receiver.
async fn connect_client(
    t: &Target,
    token: &str,
) -> Result<(Socket, mpsc::UnboundedReceiver<String>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let cb: EventFn = Arc::new(move |txt: &str| {
        if txt.starts_with("[\"history\"") {
            let _ = tx.send(txt.to_string());
        }
    });
    Ok((t.connect(token, Some(cb)).await?, rx))
}

/// Joins with `payload` and returns the `history` event's payload (it may come before or after
/// the ack).
async fn join(
    sock: &Socket,
    rx: &mut mpsc::UnboundedReceiver<String>,
    payload: Value,
) -> Result<Value> {
    let ack = sock.emit_ack("joinRoom", &payload);
    let (ack, hist) = tokio::time::timeout(CALL_TIMEOUT, async {
        let ack = ack.await;
        let hist = rx.recv().await;
        (ack, hist)
    })
    .await
    .context("joinRoom: no ack or no history event in time")?;
    let ack = ack.map_err(|_| anyhow!("joinRoom: socket closed"))?;
    if !crate::sio::ack_ok(&ack) {
        bail!("joinRoom refused: {ack}");
    }
    let hist = hist.context("socket closed before the history event")?;
    let mut v: Value = serde_json::from_str(&hist).context("history event: bad JSON")?;
    Ok(v.get_mut(1).map(Value::take).unwrap_or(Value::Null))
}

fn messages(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn max_of(msgs: &[Value], key: &str) -> Option<u64> {
    msgs.iter().filter_map(|m| m[key].as_u64()).max()
}

/// `history {after}` pages while `has_more`; returns the messages and the page count.
async fn page_history(
    sock: &Socket,
    room: &str,
    mut after: u64,
    mut has_more: bool,
    limit: usize,
) -> Result<(Vec<Value>, u64)> {
    let mut all = Vec::new();
    let mut pages = 0;
    while has_more {
        let v = sock
            .call(
                "history",
                &json!({"room": room, "after": after, "limit": limit}),
                CALL_TIMEOUT,
            )
            .await?;
        pages += 1;
        let msgs = messages(&v, "messages");
        has_more = v["has_more"].as_bool().unwrap_or(false);
        match max_of(&msgs, "seq") {
            Some(s) if s > after => after = s,
            _ if has_more => bail!("history page after {after}: no newer message but has_more"),
            _ => {}
        }
        all.extend(msgs);
    }
    Ok((all, pages))
}

/// The change feed from `after_rev` while `has_more`; returns the messages, the page count and
/// the last `last_rev` given.
async fn page_changes(
    t: &Target,
    token: &str,
    room_id: &str,
    mut after_rev: u64,
    mut has_more: bool,
    limit: usize,
) -> Result<(Vec<Value>, u64, u64)> {
    let mut all = Vec::new();
    let mut pages = 0;
    while has_more {
        let v = t
            .rest
            .get(
                &format!("/api/rooms/{room_id}/changes?after_rev={after_rev}&limit={limit}"),
                token,
            )
            .await?;
        pages += 1;
        has_more = v["has_more"].as_bool().unwrap_or(false);
        let next = v["last_rev"]
            .as_u64()
            .context("change feed without last_rev")?;
        if next <= after_rev && has_more {
            bail!("change feed after {after_rev}: last_rev {next} but has_more");
        }
        after_rev = next;
        all.extend(messages(&v, "messages"));
    }
    Ok((all, pages, after_rev))
}

/// One catch-up's figures.
#[derive(Serialize, Clone)]
struct RunFigures {
    /// From the start of the reconnect to the last page.
    catchup_ms: f64,
    /// From the start of the reconnect to having both the join's ack and its `history` event.
    join_ms: f64,
    /// Seconds the writers took for the changes (sequential acks per writer).
    changes_s: f64,
    /// Rise of the room's `last_seq` and `last_rev` while the client was away.
    new_messages: u64,
    changes_made: u64,
    /// Messages in the join's `messages` plus the `history` pages.
    messages_received: u64,
    /// Messages in the join's `updates` plus the change-feed pages.
    updates_received: u64,
    history_pages: u64,
    change_pages: u64,
    /// CPU of the server (with `--server-pid`) and of Postgres during the catch-up, in ms
    /// (clock ticks of 10 ms: coarse for one run).
    server_cpu_ms: Option<f64>,
    postgres_cpu_ms: f64,
    /// Seqs after `since` up to the room's `last_seq` that the client did not get.
    missing_seqs: u64,
    /// Messages changed while away that the client did not get at (at least) their last rev.
    stale_messages: u64,
    /// The client ends at the room's `last_seq` and `last_rev`.
    at_head: bool,
    complete: bool,
}

async fn catch_up(
    t: &Target,
    c: &mut Client,
    room: &str,
    room_id: &str,
    limit: usize,
    expected: &HashMap<String, u64>,
    pids: &[u32],
) -> Result<RunFigures> {
    let (since, since_rev) = (c.seq, c.rev);
    let cpu0 = cpu_so_far_ms(pids);
    let start = Instant::now();
    let (sock, mut rx) = connect_client(t, &c.user.token).await?;
    let h = join(
        &sock,
        &mut rx,
        json!({"room": room, "since": since, "since_rev": since_rev}),
    )
    .await?;
    let join_ms = start.elapsed();
    if h.get("updates").is_none() {
        bail!("the join's history has no `updates`: does the server take since_rev?");
    }
    let first = messages(&h, "messages");
    let updates = messages(&h, "updates");
    let after = max_of(&first, "seq").unwrap_or(since).max(since);
    let after_rev = updates
        .last()
        .and_then(|m| m["rev"].as_u64())
        .unwrap_or(since_rev);
    let (hist, feed) = tokio::join!(
        page_history(
            &sock,
            room,
            after,
            h["has_more"].as_bool().unwrap_or(false),
            limit
        ),
        page_changes(
            t,
            &c.user.token,
            room_id,
            after_rev,
            h["updates_has_more"].as_bool().unwrap_or(false),
            limit
        ),
    );
    let catchup = start.elapsed();
    let cpu1 = cpu_so_far_ms(pids);
    let (paged, history_pages) = hist?;
    let (changed, change_pages, feed_rev) = feed?;
    drop(sock);

    // What the client now knows: each message's highest rev, and the seqs it got.
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut seqs: HashSet<u64> = HashSet::new();
    for m in first.iter().chain(&updates).chain(&paged).chain(&changed) {
        if let Some(s) = m["seq"].as_u64() {
            seqs.insert(s);
        }
        if let (Some(id), Some(rev)) = (m["id"].as_str(), m["rev"].as_u64()) {
            let e = seen.entry(id).or_insert(0);
            *e = (*e).max(rev);
        }
    }
    let (last_seq, last_rev) = t.rest.room_counters(&c.user.token, room_id).await?;
    let missing_seqs = (since + 1..=last_seq).filter(|s| !seqs.contains(s)).count() as u64;
    let stale_messages = expected
        .iter()
        .filter(|(id, rev)| seen.get(id.as_str()).is_none_or(|&r| r < **rev))
        .count() as u64;
    let max_seq = seqs.iter().copied().max().unwrap_or(0).max(since);
    let max_rev = seen
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(since_rev)
        .max(feed_rev);
    let at_head = max_seq == last_seq && max_rev == last_rev;
    c.seq = max_seq;
    c.rev = max_rev;
    Ok(RunFigures {
        catchup_ms: round3(catchup.as_secs_f64() * 1000.0),
        join_ms: round3(join_ms.as_secs_f64() * 1000.0),
        changes_s: 0.0,
        new_messages: 0,
        changes_made: 0,
        messages_received: (first.len() + paged.len()) as u64,
        updates_received: (updates.len() + changed.len()) as u64,
        history_pages,
        change_pages,
        server_cpu_ms: match (cpu0.0, cpu1.0) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        postgres_cpu_ms: cpu1.1 - cpu0.1,
        missing_seqs,
        stale_messages,
        at_head,
        complete: missing_seqs == 0 && stale_messages == 0 && at_head,
    })
}

#[derive(Serialize)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut xs: Vec<f64>) -> Self {
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let median = if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        Self {
            median: round3(median),
            min: xs[0],
            max: xs[n - 1],
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "median {:.1} ms (min {:.1}, max {:.1})",
            self.median, self.min, self.max
        )
    }
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "resume")]
pub struct ResumeReport {
    url: String,
    params: Params,
    catchup_ms: Spread,
    join_ms: Spread,
    /// Medians over the runs.
    messages_received: f64,
    updates_received: f64,
    history_pages: f64,
    change_pages: f64,
    /// Mean CPU per catch-up over the runs, in ms (server: with `--server-pid`).
    server_cpu_ms_per_catchup: Option<f64>,
    postgres_cpu_ms_per_catchup: f64,
    /// Sum over the runs of missing seqs and stale messages.
    missed: u64,
    /// Every run got every change.
    complete: bool,
    per_run: Vec<RunFigures>,
}

impl ResumeReport {
    pub fn complete(&self) -> bool {
        self.complete
    }
}

#[derive(Serialize)]
struct Params {
    changes: usize,
    mix: String,
    writers: usize,
    preload: usize,
    runs: usize,
    page_limit: usize,
    room: String,
}

pub async fn run(common: &Common, args: &ResumeArgs) -> Result<ResumeReport> {
    let cycle = parse_mix(&args.mix)?;
    if args.writers == 0 || args.runs == 0 {
        bail!("--writers and --runs must be at least 1");
    }
    if !(1..=200).contains(&args.page_limit) {
        bail!("--page-limit must be 1..=200");
    }
    let t = Target::new(common).await?;
    let tag = random_tag();
    eprintln!(
        "registering {} writers and the resuming client",
        args.writers
    );
    let users = t
        .rest
        .register_many(&format!("b{tag}w"), args.writers)
        .await?;
    let client_user = t.rest.register(&format!("b{tag}c")).await?;
    let room = format!("bench-{tag}-resume");
    let room_id = t.rest.create_room(&users[0].token, &room, "public").await?;
    let mut writers: Vec<Writer> = stream::iter(users.iter().enumerate())
        .map(|(i, u)| {
            let room = room.clone();
            let t = &t;
            async move {
                let sock = t.connect(&u.token, None).await?;
                sock.call("joinRoom", &json!(room), CALL_TIMEOUT).await?;
                Ok::<_, anyhow::Error>(Writer {
                    i,
                    sock,
                    own: Vec::new(),
                    targets: Vec::new(),
                    reacted: HashSet::new(),
                    rng: StdRng::seed_from_u64(i as u64),
                    sent: 0,
                })
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!("preloading {} messages", args.preload);
    let nw = writers.len();
    let room_ref = room.as_str();
    let tag_ref = tag.as_str();
    try_join_all(writers.iter_mut().map(|w| {
        let n = args.preload / nw + usize::from(w.i < args.preload % nw);
        async move {
            for _ in 0..n {
                w.send(room_ref, tag_ref).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    }))
    .await?;
    // Every writer reacts to every preloaded message, and to its own later ones.
    let preloaded: Vec<String> = writers.iter().flat_map(|w| w.own.clone()).collect();
    for w in &mut writers {
        w.targets = preloaded.clone();
    }

    // The client's first visit: a plain join; it keeps the highest seq and rev of its history.
    let mut client = Client {
        user: client_user,
        seq: 0,
        rev: 0,
    };
    {
        let (sock, mut rx) = connect_client(&t, &client.user.token).await?;
        let h = join(&sock, &mut rx, json!({"room": room})).await?;
        let msgs = messages(&h, "messages");
        client.seq = max_of(&msgs, "seq").unwrap_or(0);
        client.rev = max_of(&msgs, "rev").unwrap_or(0);
    }

    eprintln!(
        "resume: {} runs of {} changes (mix {}) by {} writers while the client is away",
        args.runs, args.changes, args.mix, nw
    );
    let mut per_run = Vec::new();
    for run in 0..args.runs {
        let (seq0, rev0) = t.rest.room_counters(&users[0].token, &room_id).await?;
        let began = Instant::now();
        let maps = try_join_all(writers.iter_mut().map(|w| {
            let n = args.changes / nw + usize::from(w.i < args.changes % nw);
            let cycle = &cycle;
            async move { w.changes(n, cycle, room_ref, tag_ref).await }
        }))
        .await?;
        let changes_s = began.elapsed().as_secs_f64();
        let mut expected: HashMap<String, u64> = HashMap::new();
        for m in maps {
            for (id, rev) in m {
                let e = expected.entry(id).or_insert(0);
                *e = (*e).max(rev);
            }
        }
        let (seq1, rev1) = t.rest.room_counters(&users[0].token, &room_id).await?;
        // Let the writers' last broadcasts drain before the reconnect.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut f = catch_up(
            &t,
            &mut client,
            &room,
            &room_id,
            args.page_limit,
            &expected,
            &common.server_pid,
        )
        .await?;
        f.changes_s = round3(changes_s);
        f.new_messages = seq1 - seq0;
        f.changes_made = rev1 - rev0;
        eprintln!(
            "[resume run {}] {} changes in {:.2}s; caught up in {:.1} ms: {} messages, {} updates, {} + {} pages{}",
            run + 1,
            f.changes_made,
            changes_s,
            f.catchup_ms,
            f.messages_received,
            f.updates_received,
            f.history_pages,
            f.change_pages,
            if f.complete { "" } else { ", INCOMPLETE" }
        );
        per_run.push(f);
    }

    let med = |get: fn(&RunFigures) -> f64| Spread::of(per_run.iter().map(get).collect()).median;
    Ok(ResumeReport {
        url: common.url().to_string(),
        params: Params {
            changes: args.changes,
            mix: args.mix.clone(),
            writers: nw,
            preload: args.preload,
            runs: args.runs,
            page_limit: args.page_limit,
            room,
        },
        catchup_ms: Spread::of(per_run.iter().map(|f| f.catchup_ms).collect()),
        join_ms: Spread::of(per_run.iter().map(|f| f.join_ms).collect()),
        messages_received: med(|f| f.messages_received as f64),
        updates_received: med(|f| f.updates_received as f64),
        history_pages: med(|f| f.history_pages as f64),
        change_pages: med(|f| f.change_pages as f64),
        server_cpu_ms_per_catchup: per_run
            .iter()
            .map(|f| f.server_cpu_ms)
            .sum::<Option<f64>>()
            .map(|ms| round3(ms / per_run.len() as f64)),
        postgres_cpu_ms_per_catchup: round3(
            per_run.iter().map(|f| f.postgres_cpu_ms).sum::<f64>() / per_run.len() as f64,
        ),
        missed: per_run
            .iter()
            .map(|f| f.missing_seqs + f.stale_messages)
            .sum(),
        complete: per_run.iter().all(|f| f.complete),
        per_run,
    })
}

impl fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "resume ({} runs of {} changes, mix {}, {} writers, page limit {}):",
            p.runs, p.changes, p.mix, p.writers, p.page_limit
        )?;
        writeln!(f, "  catch-up: {}", self.catchup_ms)?;
        writeln!(
            f,
            "  join (connect + ack + history event): {}",
            self.join_ms
        )?;
        writeln!(
            f,
            "  received (medians): {} messages, {} updates, in {} history + {} change-feed pages",
            self.messages_received, self.updates_received, self.history_pages, self.change_pages
        )?;
        match self.server_cpu_ms_per_catchup {
            Some(ms) => write!(f, "  cpu per catch-up (mean): server {ms:.1} ms")?,
            None => write!(
                f,
                "  cpu per catch-up (mean): server n/a (pass --server-pid)"
            )?,
        }
        writeln!(f, "; postgres {:.1} ms", self.postgres_cpu_ms_per_catchup)?;
        if self.complete {
            write!(f, "  complete: every run got every message and change")
        } else {
            let bad: Vec<String> = self
                .per_run
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.complete)
                .map(|(i, r)| {
                    format!(
                        "run {}: {} missing seqs, {} stale messages, at head {}",
                        i + 1,
                        r.missing_seqs,
                        r.stale_messages,
                        r.at_head
                    )
                })
                .collect();
            write!(f, "  INCOMPLETE: {}", bad.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses() {
        use Kind::*;
        assert_eq!(parse_mix("2:1:1").unwrap(), vec![Send, Send, Edit, React]);
        assert_eq!(parse_mix("0:0:3").unwrap(), vec![React, React, React]);
        assert!(parse_mix("1:1").is_err());
        assert!(parse_mix("0:0:0").is_err());
        assert!(parse_mix("a:1:1").is_err());
    }
}
