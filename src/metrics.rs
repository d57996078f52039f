//! Prometheus metrics for `GET /metrics`, kept per server instance (no global registry, so many
//! instances can live in one process, as in the tests).

use std::{
    fmt::Write,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the request latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    pub sockets_connected: Gauge,
    pub messages_persisted: Counter,
    pub writer_statements: Counter,
    pub deliveries: Counter,
    pub join_denials: Counter,
    /// Sockets disconnected because they stopped reading (their outgoing queue was full).
    pub slow_consumers: Counter,
    pub http_requests: Histogram,
}

impl Metrics {
    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "huddle_sockets_connected",
            "gauge",
            "Socket.IO connections open on this node.",
            self.sockets_connected.get().to_string(),
        );
        metric(
            "huddle_messages_persisted_total",
            "counter",
            "Messages committed to Postgres by this node.",
            self.messages_persisted.get().to_string(),
        );
        metric(
            "huddle_writer_statements_total",
            "counter",
            "Batch statements the message writer ran (messages persisted per statement is the group commit at work).",
            self.writer_statements.get().to_string(),
        );
        metric(
            "huddle_deliveries_total",
            "counter",
            "Messages handed to this node's sockets.",
            self.deliveries.get().to_string(),
        );
        metric(
            "huddle_join_denials_total",
            "counter",
            "Room joins refused (not on the ACL, or no such room).",
            self.join_denials.get().to_string(),
        );
        metric(
            "huddle_slow_consumers_total",
            "counter",
            "Sockets disconnected because they stopped reading what was sent to them.",
            self.slow_consumers.get().to_string(),
        );

        let h = &self.http_requests;
        let name = "huddle_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} REST request latencies.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.messages_persisted.add(3);
        m.sockets_connected.inc();
        m.http_requests.observe(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("huddle_messages_persisted_total 3\n"));
        assert!(text.contains("huddle_sockets_connected 1\n"));
        assert!(text.contains("huddle_http_request_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("huddle_http_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("huddle_http_request_duration_seconds_count 1\n"));
    }
}
