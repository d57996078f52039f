//! Huddle: an authenticated real-time chat backend.
//!
//! REST (axum) for accounts, rooms and history; Socket.IO for live rooms; Postgres for everything
//! that must survive. See `README.md` and `docs/api.md`.

pub mod accounts;
pub mod admin;
pub mod api_keys;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod decode;
pub mod error;
pub mod events;
pub mod housekeeping;
pub mod http;
pub mod idle;
pub mod limits;
pub mod mentions;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod provisioning;
pub mod quotas;
pub mod realtime;
pub mod rooms;
pub mod server_api;
pub mod store;
pub mod telemetry;
pub mod validate;
pub mod webhooks;
pub mod workspaces;
pub mod writer;
