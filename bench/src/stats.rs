//! Histograms and their latency report, CPU accounting from /proc, RSS, progress lines.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio::time::Instant;

/// Latency histogram in microseconds, 1 us .. 10 min, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// Latency percentiles of a histogram in milliseconds; only `count` when it has no samples.
#[derive(Serialize)]
pub struct Latency {
    count: u64,
    #[serde(flatten)]
    quantiles: Option<Quantiles>,
}

#[derive(Serialize)]
struct Quantiles {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let quantiles = (!h.is_empty()).then(|| Quantiles {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        });
        Self {
            count: h.len(),
            quantiles,
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(q) = &self.quantiles else {
            return write!(f, "no samples");
        };
        write!(
            f,
            "n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms",
            self.count, q.p50_ms, q.p90_ms, q.p99_ms, q.p999_ms, q.max_ms
        )
    }
}

fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process, in clock ticks; with `children`, plus cutime + cstime (the CPU
/// of its exited and reaped children).
fn stat_ticks(pid: u32, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the comm: field 3 (state) is f[0]; utime is field 14, stime 15, cutime 16, cstime 17.
    let fields: &[usize] = if children {
        &[11, 12, 13, 14]
    } else {
        &[11, 12]
    };
    let mut sum = 0;
    for &i in fields {
        sum += f.get(i)?.parse::<u64>().ok()?;
    }
    Some(sum)
}

fn proc_ticks(pid: u32) -> Option<u64> {
    stat_ticks(pid, false)
}

/// CPU over every process whose comm is `postgres`: utime + stime, plus cutime + cstime so that
/// backends that exit between two snapshots stay counted (the postmaster reaps them and their
/// time moves into its cutime/cstime), which keeps the sum monotonic.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "postgres")
                .unwrap_or(false)
        })
        .filter_map(|pid| stat_ticks(pid, true))
        .sum()
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Clone, Debug)]
struct CpuSnap {
    server: Vec<Option<u64>>,
    pg: u64,
    me: u64,
}

fn snap(pids: &[u32]) -> CpuSnap {
    CpuSnap {
        server: pids.iter().map(|&p| proc_ticks(p)).collect(),
        pg: postgres_ticks(),
        me: proc_ticks(std::process::id()).unwrap_or(0),
    }
}

/// CPU used so far by the server processes (`None` without pids or when one is gone) and by
/// every Postgres process, in ms: for phases without a fixed window, as the difference of two
/// calls (blocking: it reads /proc; call it outside what is timed).
pub fn cpu_so_far_ms(pids: &[u32]) -> (Option<f64>, f64) {
    let tck = clk_tck() as f64;
    let s = snap(pids);
    let server = if pids.is_empty() {
        None
    } else {
        s.server
            .iter()
            .copied()
            .sum::<Option<u64>>()
            .map(|t| t as f64 * 1000.0 / tck)
    };
    (server, s.pg as f64 * 1000.0 / tck)
}

/// CPU used between two instants by the server processes and by Postgres, in ms.
#[derive(Clone, Debug, Default)]
pub struct CpuDelta {
    pub server_ms: Option<f64>,
    pub postgres_ms: f64,
    /// CPU of this load generator itself (shares the machine with the server).
    pub bench_ms: f64,
    pub wall_s: f64,
}

impl CpuDelta {
    /// The figures to report, with the CPU per `unit` (a message, a delivery, ...) of work done.
    pub fn per(&self, units: u64, unit: &'static str) -> Cpu {
        let cores = |ms: f64| (ms / 1000.0 / self.wall_s * 100.0).round() / 100.0;
        let per =
            |ms: f64| (units > 0).then(|| (ms * 1000.0 / units as f64 * 100.0).round() / 100.0);
        Cpu {
            wall_s: (self.wall_s * 1000.0).round() / 1000.0,
            server_cpu_ms: self.server_ms,
            server_cores: self.server_ms.map(cores),
            postgres_cpu_ms: self.postgres_ms,
            postgres_cores: cores(self.postgres_ms),
            per_unit: PerUnit {
                unit,
                server: self.server_ms.and_then(per),
                postgres: per(self.postgres_ms),
            },
            bench_cpu_ms: self.bench_ms,
            bench_cores: cores(self.bench_ms),
        }
    }
}

/// CPU over a measured phase: cores are CPU time over wall time, rounded to 0.01.
#[derive(Serialize)]
pub struct Cpu {
    wall_s: f64,
    server_cpu_ms: Option<f64>,
    server_cores: Option<f64>,
    postgres_cpu_ms: f64,
    postgres_cores: f64,
    #[serde(flatten)]
    per_unit: PerUnit,
    bench_cpu_ms: f64,
    bench_cores: f64,
}

/// CPU µs per unit of work, under keys named after the unit (`server_cpu_us_per_msg`, ...),
/// which is why it serializes by hand. `None` when no unit was done.
struct PerUnit {
    unit: &'static str,
    server: Option<f64>,
    postgres: Option<f64>,
}

impl Serialize for PerUnit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(&format!("server_cpu_us_per_{}", self.unit), &self.server)?;
        map.serialize_entry(
            &format!("postgres_cpu_us_per_{}", self.unit),
            &self.postgres,
        )?;
        map.end()
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.per_unit.unit;
        let per = |us: Option<f64>| us.map_or("n/a".to_string(), |us| format!("{us:.1}"));
        write!(f, "cpu over {:.1}s: ", self.wall_s)?;
        match (self.server_cpu_ms, self.server_cores) {
            (Some(ms), Some(cores)) => write!(
                f,
                "server {ms:.0} ms ({cores:.2} cores, {} us/{unit})",
                per(self.per_unit.server)
            )?,
            _ => write!(f, "server cpu: n/a (pass --server-pid)")?,
        }
        write!(
            f,
            "; postgres {:.0} ms ({:.2} cores, {} us/{unit}); bench itself {:.2} cores",
            self.postgres_cpu_ms,
            self.postgres_cores,
            per(self.per_unit.postgres),
            self.bench_cores,
        )
    }
}

/// Takes CPU snapshots at `from` and `to` in the background.
pub fn cpu_window(pids: Vec<u32>, from: Instant, to: Instant) -> tokio::task::JoinHandle<CpuDelta> {
    tokio::spawn(async move {
        let tck = tokio::task::spawn_blocking(clk_tck).await.unwrap_or(100) as f64;
        tokio::time::sleep_until(from).await;
        let p = pids.clone();
        let a = tokio::task::spawn_blocking(move || snap(&p))
            .await
            .expect("snapshot");
        let t_a = Instant::now();
        tokio::time::sleep_until(to).await;
        let p = pids.clone();
        let b = tokio::task::spawn_blocking(move || snap(&p))
            .await
            .expect("snapshot");
        let wall_s = t_a.elapsed().as_secs_f64();
        let server_ms = if pids.is_empty() {
            None
        } else {
            let mut total = 0u64;
            let mut ok = true;
            for (x, y) in a.server.iter().zip(&b.server) {
                match (x, y) {
                    (Some(x), Some(y)) => total += y.saturating_sub(*x),
                    _ => ok = false,
                }
            }
            ok.then_some(total as f64 * 1000.0 / tck)
        };
        CpuDelta {
            server_ms,
            postgres_ms: b.pg.saturating_sub(a.pg) as f64 * 1000.0 / tck,
            bench_ms: b.me.saturating_sub(a.me) as f64 * 1000.0 / tck,
            wall_s,
        }
    })
}

/// Prints the named counters (and their rate) to stderr every 5 s until `until`.
pub fn progress(label: String, counters: Vec<(&'static str, Arc<AtomicU64>)>, until: Instant) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last: Vec<u64> = counters.iter().map(|_| 0).collect();
        let mut tick =
            tokio::time::interval_at(start + Duration::from_secs(5), Duration::from_secs(5));
        loop {
            tick.tick().await;
            if Instant::now() > until {
                break;
            }
            let mut parts = Vec::new();
            for (i, (name, c)) in counters.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                parts.push(format!("{name}={v} ({:.0}/s)", (v - last[i]) as f64 / 5.0));
                last[i] = v;
            }
            eprintln!(
                "[{label} +{:.0}s] {}",
                start.elapsed().as_secs_f64(),
                parts.join(" ")
            );
        }
    });
}
