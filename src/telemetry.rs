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
    // Behind the filters above, so that the collector sees no more than the logs do.
    let registry = registry.with(export::layer());
    // try_init: a second call (tests start many apps in one process) is harmless.
    let _ = match format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(writer)).try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_writer(writer))
            .try_init(),
    };
}

/// Sends the spans still buffered for the collector (the `otel` feature); call before exiting.
pub fn shutdown() {
    export::shutdown()
}

/// Spans to an OpenTelemetry collector: built with `--features otel` and switched on by
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard OTLP variables configure the rest; the service
/// is `huddle` unless `OTEL_SERVICE_NAME` says otherwise). Spans are batched and sent over HTTP
/// from the SDK's own thread, so a slow or absent collector never holds up a request.
#[cfg(feature = "otel")]
mod export {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::{
        trace::{SdkTracerProvider, Tracer},
        Resource,
    };
    use tracing_opentelemetry::OpenTelemetryLayer;
    use tracing_subscriber::registry::LookupSpan;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub fn layer<S>() -> Option<OpenTelemetryLayer<S, Tracer>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(err) => {
                // Logging is not set up yet: this is the one place to say so.
                eprintln!("huddle: OpenTelemetry export is off: {err}");
                return None;
            }
        };
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("huddle");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("huddle");
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    pub fn shutdown() {
        if let Some(provider) = PROVIDER.get() {
            if let Err(err) = provider.shutdown() {
                eprintln!("huddle: flushing OpenTelemetry spans failed: {err}");
            }
        }
    }
}

#[cfg(not(feature = "otel"))]
mod export {
    pub fn layer() -> Option<tracing_subscriber::layer::Identity> {
        None
    }

    pub fn shutdown() {}
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
