//! `login`: a login flood during a fixed-rate persist load, against the same load alone: the
//! difference is what the argon2 logins cost the message path.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use super::persist::{self, PersistArgs, Sends};
use super::{round3, window, Target};
use crate::rest::Rest;
use crate::schedule::schedule;
use crate::sender::Window;
use crate::stats::{new_hist, record, Latency};
use crate::{Common, Timing};

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// Logins per second (open loop) during the second phase.
    #[arg(long, default_value_t = 20.0)]
    pub login_rate: f64,
    /// Pre-registered users the logins cycle through.
    #[arg(long, default_value_t = 10)]
    pub login_users: usize,
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename = "login")]
pub struct LoginReport {
    url: String,
    params: Params,
    persist_only: Sends,
    persist_with_logins: WithLogins,
}

#[derive(Serialize)]
struct Params {
    senders: usize,
    rate: f64,
    login_rate: f64,
    login_users: usize,
    room: String,
    #[serde(flatten)]
    timing: Timing,
}

/// The persist figures of the second phase, and the logins that ran beside them.
#[derive(Serialize)]
struct WithLogins {
    #[serde(flatten)]
    sends: Sends,
    #[serde(flatten)]
    logins: Logins,
}

#[derive(Serialize)]
struct Logins {
    logins_ok_per_s: f64,
    login_statuses: BTreeMap<String, u64>,
    login_latency: Latency,
}

/// Logs in at `rate`/s from `w.t0` to `w.to`, cycling through `names`. Latency is counted for
/// the ok logins scheduled in the measured phase; every status (or `transport_error`) is counted.
async fn flood(rest: Rest, names: Vec<String>, rate: f64, w: Window, duration: f64) -> Logins {
    let mut hist = new_hist();
    let mut ok_in_window = 0u64;
    let mut statuses = BTreeMap::new();
    schedule(
        rate,
        w.t0,
        w.to,
        |k, _| {
            let rest = rest.clone();
            let name = names[(k as usize) % names.len()].clone();
            async move { rest.login_status(&name).await }
        },
        |at, status| {
            let key = match status {
                Ok(s) => s.to_string(),
                Err(_) => "transport_error".to_string(),
            };
            if key == "200" && at >= w.from && at < w.to {
                ok_in_window += 1;
                record(&mut hist, at.elapsed().as_micros() as u64);
            }
            *statuses.entry(key).or_default() += 1;
        },
    )
    .await;
    Logins {
        logins_ok_per_s: round3(ok_in_window as f64 / duration),
        login_statuses: statuses,
        login_latency: Latency::of(&hist),
    }
}

pub async fn run(
    common: &Common,
    timing: &Timing,
    persist_args: &PersistArgs,
    args: &LoginArgs,
) -> Result<LoginReport> {
    if persist_args.rate <= 0.0 || args.login_rate <= 0.0 {
        bail!("login needs a fixed --rate > 0 for the persist load and --login-rate > 0");
    }
    let t = Target::new(common).await?;
    let env = persist::setup(&t, persist_args).await?;
    let login_users = args.login_users.max(1);
    eprintln!("registering {login_users} login users");
    let names: Vec<String> = t
        .rest
        .register_many(&format!("b{}l", env.tag), login_users)
        .await?
        .into_iter()
        .map(|u| u.username)
        .collect();

    eprintln!("phase 1: persist alone at {} msg/s", persist_args.rate);
    let alone = persist::phase(
        &env,
        common,
        persist_args,
        window(timing),
        "persist-alone",
        timing.duration,
    )
    .await;
    eprintln!(
        "phase 2: persist at {} msg/s + {} logins/s",
        persist_args.rate, args.login_rate
    );
    let w = window(timing);
    let logins = tokio::spawn(flood(
        t.rest.clone(),
        names,
        args.login_rate,
        w,
        timing.duration,
    ));
    let with = persist::phase(
        &env,
        common,
        persist_args,
        w,
        "persist+login",
        timing.duration,
    )
    .await;
    let logins = logins.await.expect("login flood");
    Ok(LoginReport {
        url: common.url().to_string(),
        params: Params {
            senders: persist_args.senders,
            rate: persist_args.rate,
            login_rate: args.login_rate,
            login_users,
            room: env.room,
            timing: timing.clone(),
        },
        persist_only: alone,
        persist_with_logins: WithLogins {
            sends: with,
            logins,
        },
    })
}

impl fmt::Display for LoginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        let with = &self.persist_with_logins;
        let logins = &with.logins;
        writeln!(
            f,
            "login flood ({} logins/s) during persist ({} msg/s, {} senders, {}s per phase):",
            p.login_rate, p.rate, p.senders, p.timing.duration
        )?;
        writeln!(f, " persist alone:\n{}", self.persist_only)?;
        writeln!(f, " persist + logins:\n{}", with.sends)?;
        writeln!(
            f,
            "  logins ok {:.1}/s, statuses {:?}",
            logins.logins_ok_per_s, logins.login_statuses
        )?;
        write!(
            f,
            "  login latency (from scheduled time): {}",
            logins.login_latency
        )
    }
}
