//! An oversized request body is answered, not cut off.
//!
//! A handler refuses a body over `MAX_BODY_BYTES` as soon as it has read that much, and the
//! client gets `413 payload_too_large`. But a client that writes its whole body before reading
//! (as `fetch` and most HTTP libraries do) is still writing when that answer is ready; if the
//! server then closes the connection with unread data, the kernel resets it, and the client sees
//! a reset instead of the 413. So the rest of a refused body is read and thrown away first, up
//! to `DRAIN_LIMIT` bytes and `DRAIN_TIME`; past either, the connection is closed after the
//! answer (a client sending more than that is not one the contract has to wait for).

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, BodyDataStream, Bytes, HttpBody},
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::Response,
};
use futures::{Stream, StreamExt};

/// Most bytes of a refused body read and thrown away before answering.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// Longest time spent doing so.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The middleware: keeps hold of the request body beside the handler, so that what the handler
/// left unread can be drained when it answers 413.
pub async fn drain_refused_bodies(req: Request, next: Next) -> Response {
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let shared = Shared(Arc::new(Mutex::new(Some(body.into_data_stream()))));
    let req = Request::from_parts(parts, Body::from_stream(shared.clone()));
    let mut response = next.run(req).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let rest = shared.0.lock().ok().and_then(|mut body| body.take());
        let drained = match rest {
            Some(rest) => drain(rest).await,
            None => false,
        };
        if !drained {
            // Unread data is left: tell the client the connection ends with this answer.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// Reads and discards a body to its end, within the bounds. True if it reached the end.
async fn drain(mut rest: BodyDataStream) -> bool {
    let mut read: u64 = 0;
    let to_end = async {
        while let Some(chunk) = rest.next().await {
            let Ok(chunk) = chunk else { return false };
            read += chunk.len() as u64;
            if read > DRAIN_LIMIT {
                return false;
            }
        }
        true
    };
    let reached_end = tokio::time::timeout(DRAIN_TIME, to_end)
        .await
        .unwrap_or(false);
    tracing::debug!(bytes = read, reached_end, "drained a refused request body");
    reached_end
}

/// The request body, shared between the handler (which reads it through this) and the
/// middleware (which drains what is left).
#[derive(Clone)]
struct Shared(Arc<Mutex<Option<BodyDataStream>>>);

impl Stream for Shared {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Ok(mut body) = self.0.lock() else {
            return Poll::Ready(None);
        };
        match body.as_mut() {
            Some(body) => body.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}
