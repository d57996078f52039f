//! Logging: `RUST_LOG` picks what is logged (default `info`), `LOG_FORMAT` how (text or JSON).
//!
//! Whatever `RUST_LOG` says, the libraries that see raw client traffic (Socket.IO and Engine.IO
//! packets, WebSocket frames, HTTP connections) log at `info` at most: at debug and trace they
//! print packets and frames, which carry access tokens (the Socket.IO `auth` payload) and
//! message bodies. The cap is a filter of its own, not a directive added to `RUST_LOG`'s, so no
//! directive (`RUST_LOG=debug`, `RUST_LOG=socketioxide::socket=trace`) can lift it.

use tracing_subscriber::{
    filter::{LevelFilter, Targets},
    fmt,
    prelude::*,
    EnvFilter,
};

use crate::config::LogFormat;

/// Targets (and their sub-targets) held to `info`, because their debug output carries what
/// clients send. `log` records (tungstenite's) arrive under their module path as target.
const CLIENT_TRAFFIC: &[&str] = &[
    "socketioxide",
    "engineioxide",
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
];

/// The cap on `CLIENT_TRAFFIC`; everything else passes to `RUST_LOG`'s filter, whose most
/// verbose level (`most`) is the cap's default. That default matters for speed, not for what is
/// logged: the subscriber's overall level is the most verbose of its filters', and it decides
/// which `log` records (tungstenite logs every frame at trace) are even handed to tracing. A
/// cap defaulting to TRACE would have every frame's record built and filtered at run time.
fn client_traffic_cap(most: LevelFilter) -> Targets {
    Targets::new().with_default(most).with_targets(
        CLIENT_TRAFFIC
            .iter()
            .map(|t| (*t, LevelFilter::INFO.min(most))),
    )
}

/// `RUST_LOG`'s filter and the cap on client traffic, as one subscriber without an output.
fn filtered(
    filter: EnvFilter,
) -> impl tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> {
    let most = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    tracing_subscriber::registry()
        .with(filter)
        .with(client_traffic_cap(most))
}

/// Where log lines go: the server logs to standard output (where a container's logs are read);
/// the one-shot commands to standard error, so that what they print for scripts (a secret, a
/// workspace as JSON) is alone on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

pub fn init(format: LogFormat) {
    init_to(format, Output::Stdout)
}

pub fn init_to(format: LogFormat, output: Output) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let registry = filtered(filter);
    let writer = move || -> Box<dyn std::io::Write> {
        match output {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::Stderr => Box::new(std::io::stderr()),
        }
    };
    // try_init: a second call (tests start many apps in one process) is harmless.
    let _ = match format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(writer)).try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_writer(writer))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_cap_does_not_make_the_subscriber_more_verbose_than_rust_log() {
        for (rust_log, most) in [
            ("warn", LevelFilter::WARN),
            ("info,sqlx=warn", LevelFilter::INFO),
            ("warn,huddle=debug", LevelFilter::DEBUG),
        ] {
            let subscriber = filtered(EnvFilter::new(rust_log));
            assert_eq!(
                tracing::Subscriber::max_level_hint(&subscriber),
                Some(most),
                "{rust_log}"
            );
        }
    }

    #[test]
    fn the_cap_holds_client_traffic_to_info_and_nothing_else() {
        let cap = client_traffic_cap(LevelFilter::TRACE);
        assert!(!cap.would_enable("socketioxide::socket", &Level::DEBUG));
        assert!(!cap.would_enable("engineioxide", &Level::TRACE));
        assert!(!cap.would_enable("tungstenite::protocol", &Level::TRACE));
        assert!(cap.would_enable("socketioxide", &Level::INFO));
        assert!(cap.would_enable("huddle::writer", &Level::TRACE));
    }
}
