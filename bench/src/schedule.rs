//! The open-loop scheduler shared by the message senders, the `join` scenario and the login
//! flood: requests start on a fixed timetable whether or not earlier ones have finished, so a
//! slow server shows up as latency measured from the scheduled time instead of as a lower rate
//! (no coordinated omission).

use std::future::Future;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::time::{sleep_until, Instant};

/// How long after the end of the schedule unfinished requests are still waited for.
pub const DRAIN: Duration = Duration::from_secs(10);

pub struct Scheduled {
    /// Requests started.
    pub launched: u64,
    /// Requests still unfinished `DRAIN` after the end of the schedule.
    pub unfinished: u64,
}

/// Calls `launch(k, at)` at `at = first + k / rate` for k = 0, 1, ... while `at < until`, and
/// hands each finished request's output, with its `at`, to `on_done`. Returns once nothing is in
/// flight after `until`, or at `until + DRAIN`.
///
/// Latencies are taken in `on_done` (or inside the request), never at `launch`: finished requests
/// go first so that a due launch does not delay their recording.
pub async fn schedule<L, F, D>(
    rate: f64,
    first: Instant,
    until: Instant,
    mut launch: L,
    mut on_done: D,
) -> Scheduled
where
    L: FnMut(u64, Instant) -> F,
    F: Future,
    D: FnMut(Instant, F::Output),
{
    let interval = Duration::from_secs_f64(1.0 / rate);
    let deadline = until + DRAIN;
    let mut inflight = FuturesUnordered::new();
    let mut k: u64 = 0;
    let mut next = first;
    loop {
        let sending = next < until;
        if !sending && inflight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some((at, out)) = inflight.next() => on_done(at, out),
            _ = sleep_until(next), if sending => {
                let at = next;
                let request = launch(k, at);
                inflight.push(async move { (at, request.await) });
                k += 1;
                next = first + interval.mul_f64(k as f64);
            }
            _ = sleep_until(deadline) => break,
        }
    }
    Scheduled {
        launched: k,
        unfinished: inflight.len() as u64,
    }
}
