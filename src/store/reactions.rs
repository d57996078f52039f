//! The `reactions` table: one row per user, emoji and message.

use std::collections::HashMap;

use sqlx::PgExecutor;
use uuid::Uuid;

/// A reaction added (`on`) or taken back, to store as part of a batch.
#[derive(Clone, Debug)]
pub struct React {
    pub message_id: Uuid,
    pub room_id: Uuid,
    pub user_id: Uuid,
    pub emoji: String,
    pub on: bool,
}

/// What became of one reaction of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReactOutcome {
    /// Added or removed: the message's new rev, its seq, and the emoji's count after it.
    Changed { rev: i64, seq: i64, count: i64 },
    /// Already so (added twice, or removing what is not there): nothing changed.
    Unchanged,
    /// No such message in that room (or workspace).
    Missing,
    /// The user may not enter the room any more, or is disabled.
    Forbidden,
    /// The message is a tombstone.
    Deleted,
}

/// Stores a batch of reactions in one statement, inside the writer's transaction, which has
/// locked the batch's rooms first: every reaction of a room is changed under that lock, so the
/// counts read here (and the "already there?" test) see every committed change. No (message,
/// user, emoji) appears twice in a batch (the writer splits batches so), so each row's count
/// after its change is the count before the statement plus the changes before it in the batch.
/// Each room's `last_rev` moves up by its count of real changes; each changed message takes
/// the rev of its last change.
pub async fn react_batch(
    db: impl PgExecutor<'_>,
    batch: &[React],
) -> sqlx::Result<Vec<ReactOutcome>> {
    let messages: Vec<Uuid> = batch.iter().map(|r| r.message_id).collect();
    let rooms: Vec<Uuid> = batch.iter().map(|r| r.room_id).collect();
    let users: Vec<Uuid> = batch.iter().map(|r| r.user_id).collect();
    let emoji: Vec<&str> = batch.iter().map(|r| r.emoji.as_str()).collect();
    let on: Vec<bool> = batch.iter().map(|r| r.on).collect();
    let rows = sqlx::query!(
        r#"with input as materialized (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[])
                   with ordinality as t(message_id, room_id, user_id, emoji, on_, ord)
           ), judged as materialized (
               select i.*, m.seq, m.workspace_id,
                      (select count(*) from reactions x
                       where x.message_id = i.message_id and x.emoji = i.emoji) as before,
                      case when m.id is null or m.workspace_id <> u.workspace_id then 'missing'
                           when u.disabled_at is not null
                                or (r.visibility <> 'public'
                                    and not exists (select from room_members rm
                                                    where rm.room_id = i.room_id
                                                      and rm.user_id = i.user_id))
                               then 'forbidden'
                           when m.deleted_at is not null then 'deleted'
                           when i.on_ = exists (select from reactions x
                                                where x.message_id = i.message_id
                                                  and x.user_id = i.user_id
                                                  and x.emoji = i.emoji)
                               then 'unchanged'
                           else 'ok' end as verdict
               from input i
               join users u on u.id = i.user_id
               left join rooms r on r.id = i.room_id
               left join messages m on m.id = i.message_id and m.room_id = i.room_id
           ), ok as materialized (
               select j.*, row_number() over (partition by j.room_id order by j.ord) as rank,
                      j.before + sum(case when j.on_ then 1 else -1 end)
                          over (partition by j.message_id, j.emoji order by j.ord) as count
               from judged j where j.verdict = 'ok'
           ), reserved as (
               update rooms r set last_rev = r.last_rev + c.n
               from (select room_id, count(*) as n from ok group by room_id) c
               where r.id = c.room_id
               returning r.id, r.last_rev - c.n as first_rev_before
           ), revs as (
               select o.ord, o.message_id, o.seq, o.count, r.first_rev_before + o.rank as rev
               from ok o join reserved r on r.id = o.room_id
           ), added as (
               insert into reactions (message_id, user_id, emoji, workspace_id, room_id)
               select message_id, user_id, emoji, workspace_id, room_id from ok where on_
           ), removed as (
               delete from reactions x using ok
               where not ok.on_ and x.message_id = ok.message_id and x.user_id = ok.user_id
                 and x.emoji = ok.emoji
           ), bumped as (
               update messages m set rev = b.rev
               from (select message_id, max(rev) as rev from revs group by message_id) b
               where m.id = b.message_id
           )
           -- The changes and the rest apart, not joined on ord: the writer's connection plans
           -- without hash joins, and a join of two CTEs would be a nested loop, n² per batch.
           select v.ord as "ord!", 'ok' as "verdict!", v.rev as "rev?", v.seq as "seq?",
                  v.count as "count?"
           from revs v
           union all
           select j.ord, j.verdict, null, j.seq, null
           from judged j where j.verdict <> 'ok'
           order by 1"#,
        &messages,
        &rooms,
        &users,
        &emoji as &[&str],
        &on,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| match (r.verdict.as_str(), r.rev, r.seq, r.count) {
            ("ok", Some(rev), Some(seq), Some(count)) => ReactOutcome::Changed { rev, seq, count },
            ("unchanged", ..) => ReactOutcome::Unchanged,
            ("forbidden", ..) => ReactOutcome::Forbidden,
            ("deleted", ..) => ReactOutcome::Deleted,
            _ => ReactOutcome::Missing,
        })
        .collect())
}

/// Each (message, user) pair's own reactions, oldest first (pairs with none are left out).
pub async fn mine(
    db: impl PgExecutor<'_>,
    pairs: &[(Uuid, Uuid)],
) -> sqlx::Result<HashMap<(Uuid, Uuid), Vec<String>>> {
    let messages: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
    let users: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
    let rows = sqlx::query!(
        r#"select r.message_id, r.user_id, r.emoji
           from unnest($1::uuid[], $2::uuid[]) as p(message_id, user_id)
           join reactions r on r.message_id = p.message_id and r.user_id = p.user_id
           order by r.created_at, r.emoji"#,
        &messages,
        &users,
    )
    .fetch_all(db)
    .await?;
    let mut mine: HashMap<(Uuid, Uuid), Vec<String>> = HashMap::new();
    for r in rows {
        mine.entry((r.message_id, r.user_id))
            .or_default()
            .push(r.emoji);
    }
    Ok(mine)
}
