//! The `mentions` table (rows are written with their messages, in `messages`), and the users a
//! body's `@names` resolve to.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::users::UserRef;
use crate::workspaces::WorkspaceId;

/// The users of `ws` named (case-insensitively) in `names` who may read `room_id`: any user of
/// the workspace who is not disabled for a public room, its members otherwise. With the
/// lower-cased name each was found by.
pub async fn readers_named(
    db: impl PgExecutor<'_>,
    ws: WorkspaceId,
    room_id: Uuid,
    names: &[String],
) -> sqlx::Result<Vec<(String, UserRef)>> {
    let rows = sqlx::query!(
        r#"select lower(u.username) as "key!", u.id, u.username, u.display_name
           from users u join rooms r on r.id = $2 and r.workspace_id = u.workspace_id
           where u.workspace_id = $1 and lower(u.username) = any($3) and u.disabled_at is null
             and (r.visibility = 'public'
                  or exists (select from room_members m
                             where m.room_id = r.id and m.user_id = u.id))"#,
        ws.as_uuid(),
        room_id,
        names,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let user = UserRef {
                id: r.id,
                username: r.username,
                display_name: r.display_name,
            };
            (r.key, user)
        })
        .collect())
}
