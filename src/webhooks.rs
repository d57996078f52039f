//! Webhooks: the product's endpoints that will receive its workspace's event log.
//!
//! What stands so far are the two parts that do not depend on the log: `signing`, the Standard
//! Webhooks signature (checked in `tests/webhooks_signing.rs` with the specification's own npm
//! library, the one receivers verify with), and `address`, the SSRF policy (a receiver's host
//! is resolved by Huddle and internal addresses are refused). Registration, the delivery worker
//! and its retries come with the event log (issue 14).

pub mod address;
pub mod signing;
