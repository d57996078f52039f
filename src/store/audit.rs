//! The `audit_log` table: written by the server, read by people.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::workspaces::WorkspaceId;

/// The values of `audit_log.action`.
#[derive(Clone, Copy, Debug, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Action {
    RoomCreated,
    RoomDeleted,
    MemberGranted,
    RoleChanged,
    MemberRemoved,
    UserDisabled,
    UserEnabled,
    AccessDenied,
    PasswordChanged,
    RefreshTokenReused,
    ApiKeyCreated,
    ApiKeyRevoked,
}

/// One line of the log. Fields left `None` are written as null.
#[derive(Debug)]
pub struct Entry<'a> {
    pub action: Action,
    pub actor_id: Option<Uuid>,
    pub target_user_id: Option<Uuid>,
    pub room_id: Option<Uuid>,
    pub room_name: Option<&'a str>,
    pub detail: Value,
}

impl<'a> Entry<'a> {
    pub fn new(action: Action) -> Self {
        Entry {
            action,
            actor_id: None,
            target_user_id: None,
            room_id: None,
            room_name: None,
            detail: Value::Object(Default::default()),
        }
    }

    pub fn actor(mut self, id: Uuid) -> Self {
        self.actor_id = Some(id);
        self
    }

    pub fn target(mut self, id: Uuid) -> Self {
        self.target_user_id = Some(id);
        self
    }

    pub fn room(mut self, id: Option<Uuid>, name: &'a str) -> Self {
        self.room_id = id;
        self.room_name = Some(name);
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Who did it: a user is the actor; an API key has no user, so its id goes into `detail`
    /// (`api_key`). Call after `detail`, which replaces the whole object.
    pub fn by(mut self, by: By) -> Self {
        match by {
            By::User(id) => self.actor_id = Some(id),
            By::ApiKey(id) => {
                if let Value::Object(detail) = &mut self.detail {
                    detail.insert("api_key".into(), Value::String(id.to_string()));
                }
            }
        }
        self
    }
}

/// Who made a change: a user (through their own session) or the product's backend (an API key
/// of the server API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    User(Uuid),
    ApiKey(Uuid),
}

/// Writes a line of the log of `ws` (the people it names must be of that workspace).
pub async fn record(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    entry: Entry<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"insert into audit_log (workspace_id, action, actor_id, target_user_id, room_id, room_name, detail)
           values ($7, $1, $2, $3, $4, $5, $6)"#,
        entry.action as Action,
        entry.actor_id,
        entry.target_user_id,
        entry.room_id,
        entry.room_name,
        entry.detail,
        ws.as_uuid(),
    )
    .execute(db)
    .await?;
    Ok(())
}
