//! REST helpers: accounts and rooms, as in contract.md.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

pub const PASSWORD: &str = "bench-password-123";

#[derive(Clone)]
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl Rest {
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Value> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path` with a bearer token; the JSON body of a 2xx answer.
    pub async fn get(&self, path: &str, token: &str) -> Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {path}: bad JSON {text}"))
    }

    /// `GET /metrics` (Prometheus text, no auth): every unlabelled sample, by name.
    pub async fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("GET /metrics")?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("GET /metrics: {status} {text}");
        }
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// `GET /api/rooms/{id}`: the room's `(last_seq, last_rev)` (a v1 server has no `last_rev`:
    /// an error).
    pub async fn room_counters(&self, token: &str, room_id: &str) -> Result<(u64, u64)> {
        let v = self.get(&format!("/api/rooms/{room_id}"), token).await?;
        let seq = v["last_seq"].as_u64().context("room without last_seq")?;
        let rev = v["last_rev"]
            .as_u64()
            .context("room without last_rev (no v2 messages on this server?)")?;
        Ok((seq, rev))
    }

    fn user_of(v: &Value) -> Result<User> {
        Ok(User {
            id: v["user"]["id"].as_str().context("no user.id")?.to_string(),
            username: v["user"]["username"]
                .as_str()
                .context("no user.username")?
                .to_string(),
            token: v["access_token"]
                .as_str()
                .context("no access_token")?
                .to_string(),
        })
    }

    pub async fn register(&self, username: &str) -> Result<User> {
        let v = self
            .post(
                "/api/auth/register",
                None,
                &json!({"username": username, "password": PASSWORD}),
            )
            .await?;
        Self::user_of(&v)
    }

    /// One login; returns the status code (for the flood, which counts outcomes).
    pub async fn login_status(&self, username: &str) -> Result<u16> {
        let resp = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let _ = resp.bytes().await?;
        Ok(status)
    }

    /// Registers `n` users named `<prefix>_<i>` with some concurrency.
    pub async fn register_many(&self, prefix: &str, n: usize) -> Result<Vec<User>> {
        let mut users: Vec<(usize, User)> = stream::iter(0..n)
            .map(|i| {
                let name = format!("{prefix}_{i}");
                async move { self.register(&name).await.map(|u| (i, u)) }
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        users.sort_by_key(|(i, _)| *i);
        Ok(users.into_iter().map(|(_, u)| u).collect())
    }

    /// Creates a room; returns its id.
    pub async fn create_room(&self, token: &str, name: &str, visibility: &str) -> Result<String> {
        let v = self
            .post(
                "/api/rooms",
                Some(token),
                &json!({"name": name, "visibility": visibility}),
            )
            .await?;
        Ok(v["id"].as_str().context("room without id")?.to_string())
    }

    pub async fn grant_member(&self, token: &str, room_id: &str, user_id: &str) -> Result<()> {
        let path = format!("/api/rooms/{room_id}/members/{user_id}");
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&json!({"role": "member"}))
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "PUT {path}: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// A random tag for unique user and room names (lowercase, fits the room name charset).
pub fn random_tag() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}
