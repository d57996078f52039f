//! The scenarios, one module each, and what they share: the server under test, the measured
//! window and set-up limits. Each scenario returns a report that serializes to the run's JSON
//! line and displays as its readable summary.

pub mod connections;
pub mod edit;
pub mod fanout;
pub mod join;
pub mod login;
pub mod ops;
pub mod persist;
pub mod react;
pub mod resume;
pub mod webhooks;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::time::Instant;

use crate::rest::Rest;
use crate::sender::Window;
use crate::sio::{self, EventFn, Socket};
use crate::{Common, Timing};

const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Concurrent connects/joins during set-up.
const SETUP_CONCURRENCY: usize = 32;

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Warm-up then the measured phase, starting a moment from now so that the senders are spawned
/// before their first scheduled send.
fn window(timing: &Timing) -> Window {
    let t0 = Instant::now() + Duration::from_millis(100);
    let from = t0 + timing.warmup();
    Window {
        t0,
        from,
        to: from + timing.duration(),
    }
}

struct Target {
    rest: Rest,
    ws: String,
    addr: SocketAddr,
}

impl Target {
    /// The server of a one-node scenario: refuses several `--url`s rather than use only one.
    async fn new(common: &Common) -> Result<Self> {
        if common.urls.len() != 1 {
            bail!(
                "this scenario takes one --url (got {}); fanout and connections take several",
                common.urls.len()
            );
        }
        Self::at(common.url()).await
    }

    /// Every `--url`, in order (the first is where REST set-up goes).
    async fn all(common: &Common) -> Result<Vec<Self>> {
        if common.urls.is_empty() {
            bail!("no --url");
        }
        let mut targets = Vec::new();
        for url in &common.urls {
            targets.push(Self::at(url).await?);
        }
        Ok(targets)
    }

    async fn at(url: &str) -> Result<Self> {
        let rest = Rest::new(url)?;
        let ws = sio::ws_url(url);
        let addr = sio::resolve(&ws).await?;
        Ok(Self { rest, ws, addr })
    }

    async fn connect(&self, token: &str, on_event: Option<EventFn>) -> Result<Socket> {
        sio::connect(&self.ws, self.addr, token, None, on_event).await
    }
}
