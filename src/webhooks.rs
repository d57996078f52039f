//! Webhooks: the product's endpoints that receive its workspace's event log, signed per the
//! Standard Webhooks specification (`signing`), delivered at least once by `worker` from the
//! log (so a receiver that was down gets everything once it is back, for 24 hours of retries),
//! and never to an internal address (`address`).

pub mod address;
pub mod signing;
pub mod worker;

use serde::Serialize;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::api_key::ServerCaller,
    error::{AppError, AppResult},
    events::Kind,
    store::{
        self,
        webhooks::{Delivery, Webhook},
    },
};

/// A webhook just registered: the only time its secret is seen.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub webhook: Webhook,
    pub secret: String,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("webhook", &self.webhook)
            .field("secret", &"<redacted>")
            .finish()
    }
}

const MAX_URL_CHARS: usize = 2048;
const MAX_DESCRIPTION_CHARS: usize = 256;

/// A receiver's URL: http(s), a host that may receive deliveries (see `address`).
async fn checked_url(state: &AppState, url: &str) -> AppResult<String> {
    let bad = |why: &str| AppError::invalid_field("url", why.to_owned());
    if url.chars().count() > MAX_URL_CHARS {
        return Err(bad("must be at most 2048 characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("must be an absolute http(s) URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| bad("must name a host"))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    address::check_host(&host, port, state.config.webhook_allow_private)
        .await
        .map_err(|why| bad(&why))?;
    Ok(parsed.to_string())
}

/// The event types a webhook takes: known ones, each once; empty means all.
fn checked_events(events: Vec<String>) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if Kind::parse(&e).is_none() {
            return Err(AppError::invalid_field(
                "events",
                format!("'{e}' is not an event type"),
            ));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Registers a webhook of the caller's workspace; it gets the events committed from now on.
pub async fn register(
    state: &AppState,
    caller: &ServerCaller,
    url: &str,
    events: Vec<String>,
    description: Option<String>,
) -> AppResult<Registered> {
    let url = checked_url(state, url).await?;
    let events = checked_events(events)?;
    let description = description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(AppError::invalid_field(
            "description",
            "must be at most 256 characters",
        ));
    }
    let (secret, shown) = signing::new_secret();
    let webhook = store::webhooks::create(
        &state.db,
        caller.workspace(),
        &url,
        &events,
        description.as_deref(),
        &secret,
    )
    .await?;
    tracing::info!(webhook.id = %webhook.id, key.id = %caller.key_id, "webhook registered");
    Ok(Registered {
        webhook,
        secret: shown,
    })
}

pub async fn list(state: &AppState, caller: &ServerCaller) -> AppResult<Vec<Webhook>> {
    Ok(store::webhooks::list(&state.db, caller.workspace()).await?)
}

/// Changes a webhook's URL, types or `active`; fields left out keep their value.
pub async fn update(
    state: &AppState,
    caller: &ServerCaller,
    id: Uuid,
    url: Option<String>,
    events: Option<Vec<String>>,
    active: Option<bool>,
) -> AppResult<Webhook> {
    let url = match url {
        Some(url) => Some(checked_url(state, &url).await?),
        None => None,
    };
    let events = events.map(checked_events).transpose()?;
    store::webhooks::update(
        &state.db,
        caller.workspace(),
        id,
        url.as_deref(),
        events.as_deref(),
        active,
    )
    .await?
    .ok_or_else(|| AppError::NotFound("no such webhook".into()))
}

pub async fn delete(state: &AppState, caller: &ServerCaller, id: Uuid) -> AppResult<()> {
    if store::webhooks::delete(&state.db, caller.workspace(), id).await? {
        Ok(())
    } else {
        Err(AppError::NotFound("no such webhook".into()))
    }
}

/// A webhook's newest deliveries (at most 100), newest first.
pub async fn deliveries(
    state: &AppState,
    caller: &ServerCaller,
    id: Uuid,
) -> AppResult<Vec<Delivery>> {
    store::webhooks::deliveries(&state.db, caller.workspace(), id, 100)
        .await?
        .ok_or_else(|| AppError::NotFound("no such webhook".into()))
}
