//! The application: shared state, the router with its middleware, and serving it.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, OriginalUri, Request},
    http::{header, HeaderName, HeaderValue, Method},
    response::IntoResponse,
    Router,
};
use sqlx::PgPool;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, Any, CorsLayer},
    trace::TraceLayer,
};

use crate::{
    auth::{password::Passwords, token::Keys},
    config::Config,
    error::AppError,
    http,
    limits::{AuthLimits, MessageLimits},
    metrics::Metrics,
    openapi,
    quotas::Quotas,
    realtime::Realtime,
    store,
    writer::Writer,
};

/// Everything a handler may need. Cheap to clone; built once per server.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub passwords: Passwords,
    pub auth_limits: Arc<AuthLimits>,
    pub message_limits: Arc<MessageLimits>,
    pub quotas: Arc<Quotas>,
    pub metrics: Arc<Metrics>,
    pub realtime: Realtime,
    pub writer: Writer,
}

impl AppState {
    /// Creates the database if needed, connects, and applies pending migrations.
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        store::ensure_database(&config.database_url).await?;
        let db = store::connect(&config).await?;
        store::migrate(&db).await?;
        let state = Self::with_pool(config, db)?;
        crate::rooms::ensure_default_rooms(&state).await?;
        Ok(state)
    }

    /// Builds the state around a pool and starts the message writer and the Socket.IO
    /// namespace. Needs a tokio runtime.
    pub fn with_pool(config: Config, db: PgPool) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let realtime = Realtime::new(&config, metrics.clone())?;
        let deliverer = realtime.clone();
        let writer = Writer::start(
            store::writer_pool(&db),
            metrics.clone(),
            Arc::new(move |committed| {
                let deliverer = deliverer.clone();
                Box::pin(async move { deliverer.deliver(committed).await })
            }),
            config.edit_window,
        );
        let shared_limits = realtime
            .cluster()
            .map(|c| (c.clone(), config.redis_prefix.clone()));
        let state = AppState {
            keys: Arc::new(Keys::new(
                &config.jwt_secret.0,
                &config.jwt_previous_secrets(),
                config.access_token_ttl,
            )),
            passwords: Passwords::new(config.password_hash_concurrency, config.password_hash_queue),
            auth_limits: AuthLimits::new(config.auth_rate, shared_limits.clone()),
            quotas: Quotas::new(&config, shared_limits.clone()),
            message_limits: MessageLimits::new(
                config.message_rate,
                config.message_burst,
                shared_limits,
            ),
            config: Arc::new(config),
            db,
            metrics,
            realtime,
            writer,
        };
        Realtime::start(&state);
        Ok(state)
    }
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let socket_io = state.realtime.layer();
    let metrics = state.metrics.clone();
    let (rest, api) = http::router().split_for_parts();
    // Rendered once: the document only changes with the binary.
    let document = axum::body::Bytes::from(openapi::json(&openapi::finish(api)));
    // The web client and the docs page: pages, not REST routes, so outside the document.
    rest.merge(http::web::router())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn(
            http::oversize::drain_refused_bodies,
        ))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let metrics = metrics.clone();
                async move {
                    let started = std::time::Instant::now();
                    let response = next.run(req).await;
                    metrics.http_requests.observe(started.elapsed());
                    response
                }
            },
        ))
        // Socket.IO takes /socket.io/ on the same port, inside CORS for browsers' long-polling.
        .layer(socket_io)
        .layer(axum::middleware::map_request(detach_from_read_buffer))
        .layer(cors(&config))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                security_headers(req, next, config.hsts_max_age)
            },
        ))
        .layer(TraceLayer::new_for_http().make_span_with(http_span))
        .layer(axum::middleware::from_fn(request_id))
        .layer(CatchPanicLayer::custom(|_panic| {
            AppError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
}

/// The span of a request, for every log line while it is served: named by the route template
/// (not the path, so ids do not explode cardinality), with the request's id, the room of a
/// `/rooms/{id}` route, and the caller's user and workspace, which the extractors record once
/// they know them (`AuthUser`, `ServerCaller`).
fn http_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The room's id is the segment after `rooms` in `/api/rooms/{id}...` and
    // `/api/server/rooms/{id}...`; only a well-formed id is logged.
    let room =
        if route.starts_with("/api/rooms/{id}") || route.starts_with("/api/server/rooms/{id}") {
            req.uri()
                .path()
                .split('/')
                .skip_while(|s| *s != "rooms")
                .nth(1)
                .and_then(|s| s.parse::<uuid::Uuid>().ok())
        } else {
            None
        };
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        route,
        request_id,
        user.id = tracing::field::Empty,
        workspace.id = tracing::field::Empty,
        room.id = tracing::field::Empty,
    );
    if let Some(room) = room {
        span.record("room.id", tracing::field::display(room));
    }
    span
}

const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id, logged with everything it causes and returned in `X-Request-Id`:
/// the caller's own when it sent a sane one (a proxy's, so that its logs and Huddle's meet),
/// else a new UUID.
async fn request_id(mut req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let sane = |v: &HeaderValue| {
        (1..=128).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    let id = match req.headers().get(REQUEST_ID).filter(|v| sane(v)) {
        Some(id) => id.clone(),
        None => {
            let fresh = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string());
            // A UUID's text is always a valid header value.
            let Ok(fresh) = fresh else {
                return next.run(req).await;
            };
            req.headers_mut().insert(REQUEST_ID, fresh.clone());
            fresh
        }
    };
    let mut response = next.run(req).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// Gives a Socket.IO request's header values and URIs memory of their own. hyper parses them
/// as slices of the connection's 8 KiB read buffer, and the Socket.IO layer keeps each socket's
/// request parts (axum's `OriginalUri` extension included) for the socket's whole life, so every
/// idle socket kept its connection's read buffers alive for a few header bytes (the figures are
/// in BENCHMARKS.md, "Profiles and what changed").
async fn detach_from_read_buffer(mut req: Request) -> Request {
    if req.uri().path().starts_with("/socket.io") {
        for value in req.headers_mut().values_mut() {
            if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
                *value = copy;
            }
        }
        if let Ok(copy) = axum::http::Uri::try_from(req.uri().to_string()) {
            if let Some(original) = req.extensions_mut().get_mut::<OriginalUri>() {
                original.0 = copy.clone();
            }
            *req.uri_mut() = copy;
        }
    }
    req
}

/// The content security policy: nothing but this origin, for the JSON API and the web client
/// served from `/` (which opens its websocket to this origin), never framed. Images may also be
/// `data:` URLs because the API docs page's Swagger UI draws its icons with them (inline SVG in
/// its stylesheet); a `data:` image runs no script and fetches nothing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Headers every response carries (REST, errors, CORS preflights, Socket.IO polling), and
/// `Cache-Control: no-store` where responses hold tokens or the caller's own data.
async fn security_headers(
    req: Request,
    next: axum::middleware::Next,
    hsts_max_age: Option<u64>,
) -> axum::response::Response {
    let path = req.uri().path();
    let private =
        path.starts_with("/api/auth/") || path == "/api/me" || path.starts_with("/api/me/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if private {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(age) = hsts_max_age {
        if let Ok(value) = HeaderValue::from_str(&format!("max-age={age}")) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
        }
    }
    response
}

/// Unknown routes and methods: the contract's 404 rather than axum's empty replies.
async fn no_route(method: Method, uri: axum::http::Uri) -> AppError {
    AppError::NotFound(format!("no route for {method} {}", uri.path()))
}

fn cors(config: &Config) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        // X-Request-Id both ways, so a browser client on another origin may send its own and
        // read the one it was given (`request_id`).
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(REQUEST_ID),
        ])
        .expose_headers([HeaderName::from_static(REQUEST_ID)])
        .max_age(Duration::from_secs(3600));
    match &config.cors_origins {
        None => layer.allow_origin(Any),
        Some(origins) => layer.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        )),
    }
}

/// The longest a graceful shutdown waits for queued messages to be committed.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then lets in-flight requests finish.
///
/// Served through hyper-util's connection builder rather than `axum::serve`, which sets no
/// timer: without one, hyper's header read timeout is off, and a client trickling headers (or an
/// idle kept-alive connection) holds its connection and buffers forever. With the timer, a
/// connection that does not complete a request's headers within `HTTP_HEADER_TIMEOUT`, counted
/// from when the server starts waiting for them (so idle keep-alive time counts), is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        service::TowerToHyperService,
    };

    if state.config.cors_origins.is_none() {
        tracing::warn!(
            "CORS_ORIGINS is '*': any web page may call this API from a browser. Set \
             CORS_ORIGINS to the origins of your web clients, e.g. https://chat.example.com"
        );
    }
    let header_timeout = state.config.http_header_timeout;
    crate::housekeeping::spawn(state.clone());
    crate::webhooks::worker::spawn(&state);
    let realtime = state.realtime.clone();
    let writer = state.writer.clone();
    let app = router(state);
    // HTTP/1.1 only, as before (axum is built without HTTP/2 here).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Shutdown, told to every connection; each holds a receiver of `done` until it ends, so
    // `done.closed()` completes when the last one has (as axum::serve does it).
    let (stop, stopping) = tokio::sync::watch::channel(());
    let (done, _) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, Nagle's algorithm holds a small frame (an ack written right
        // after a broadcast) until the client's delayed ACK arrives: about 40 ms per ack.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            // What `into_make_service_with_connect_info` did: the peer for `ConnectInfo`.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(remote));
            let mut app = app.clone();
            async move {
                use tower::Service;
                app.call(req.map(axum::body::Body::new)).await
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
            .with_upgrades();
        let mut stopping = stopping.clone();
        let alive = done.subscribe();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopping.changed() => {
                    // Finishes the request in flight, then closes.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(alive);
        });
    }
    drop(listener);
    // Messages already queued are committed and acknowledged (later ones are answered
    // `unavailable`) while their sockets are still there to hear it.
    if !writer.drain(SHUTDOWN_DRAIN).await {
        tracing::warn!("shutdown: the message queue was not empty after the drain period");
    }
    // The acknowledgements go out from tasks of their own once the writer has answered: give
    // them a moment to reach the sockets' outgoing queues before the sockets close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Sockets (long-polling ones included) would otherwise hold the shutdown open.
    realtime.close().await;
    let _ = stop.send(());
    done.closed().await;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};

    /// Whether `part` lies inside `buffer`'s memory.
    fn inside(part: &[u8], buffer: &Bytes) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&part.as_ptr())
    }

    #[tokio::test]
    async fn socket_io_requests_stop_pointing_into_the_read_buffer() {
        // As hyper builds them: the URI and header values share one buffer.
        let buffer = Bytes::from(b"/socket.io/?EIO=4&transport=websocket websocket".to_vec());
        let uri = axum::http::Uri::from_maybe_shared(buffer.slice(0..37)).unwrap();
        let value = HeaderValue::from_maybe_shared(buffer.slice(38..)).unwrap();
        let mut req = Request::builder()
            .uri(uri.clone())
            .header(header::UPGRADE, value)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(OriginalUri(uri));
        assert!(inside(req.headers()[header::UPGRADE].as_bytes(), &buffer));

        let req = detach_from_read_buffer(req).await;
        let original = &req.extensions().get::<OriginalUri>().unwrap().0;
        assert_eq!(original, "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.headers()[header::UPGRADE], "websocket");
        assert!(!inside(req.headers()[header::UPGRADE].as_bytes(), &buffer));
        assert!(!inside(req.uri().path().as_bytes(), &buffer));
        assert!(!inside(original.path().as_bytes(), &buffer));
    }
}
