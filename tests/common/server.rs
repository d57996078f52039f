//! Server API helpers: keys made through the library (as `huddle api-key create` does) and
//! requests with a key and, optionally, a `Huddle-Workspace` header.

use huddle::{api_keys, app::AppState, workspaces::WorkspaceId};
use reqwest::Method;
use serde_json::Value;

use super::{into_reply, Api, Reply, Session};

/// A platform key's secret.
pub async fn platform_key(state: &AppState) -> String {
    api_keys::create(state, None, "tests", None)
        .await
        .expect("platform key")
        .secret
}

/// A key of one workspace (default: `WorkspaceId::DEFAULT`).
pub async fn workspace_key(state: &AppState, ws: Option<WorkspaceId>) -> String {
    api_keys::create(
        state,
        Some(ws.unwrap_or(WorkspaceId::DEFAULT)),
        "tests",
        None,
    )
    .await
    .expect("workspace key")
    .secret
}

impl Api {
    /// A server API request with `key` and, when given, `Huddle-Workspace: <slug>`.
    pub async fn server(
        &self,
        method: Method,
        path: &str,
        key: &str,
        workspace: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(slug) = workspace {
            req = req.header("Huddle-Workspace", slug);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        into_reply(req.send().await.expect("request")).await
    }

    /// `PUT /api/server/users/{external_id}` with `body`, expecting 200 or 201.
    pub async fn provision(&self, key: &str, external_id: &str, body: Value) -> Value {
        let path = format!("/api/server/users/{}", super::urlencode(external_id));
        let reply = self.server(Method::PUT, &path, key, None, Some(body)).await;
        assert!(
            matches!(reply.status.as_u16(), 200 | 201),
            "provision: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    /// A session minted for a provisioned user, as a `Session` (with no password).
    pub async fn minted(&self, key: &str, external_id: &str) -> Session {
        let path = format!(
            "/api/server/users/{}/sessions",
            super::urlencode(external_id)
        );
        let reply = self.server(Method::POST, &path, key, None, None).await;
        let body = reply.ok(201);
        Session {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            username: body["user"]["username"].as_str().unwrap().to_owned(),
            password: String::new(),
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// A key stored straight into a database (for clusters of server processes, which have no
/// `AppState` in the test): `hk_` and 43 base64url characters, as the server makes them.
pub async fn insert_key(db: &sqlx::PgPool, ws: Option<uuid::Uuid>) -> String {
    let secret = format!("hk_{}", uuid::Uuid::new_v4().simple()) + "abcdefghijk";
    assert_eq!(secret.len(), 46);
    sqlx::query(
        "insert into api_keys (id, workspace_id, name, prefix, secret_hash)
         values ($1, $2, 'tests', left($3, 11), sha256(convert_to($3, 'UTF8')))",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(ws)
    .bind(&secret)
    .execute(db)
    .await
    .unwrap();
    secret
}
