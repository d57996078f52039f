//! All SQL lives here: one module per table or aggregate, plus the pool set-up and the readiness
//! ping below. Functions take `impl PgExecutor` where they may run on the pool or inside a
//! caller's transaction.

pub mod api_keys;
pub mod audit;
pub mod events;
pub mod members;
pub mod mentions;
pub mod messages;
pub mod reactions;
pub mod rooms;
pub mod sessions;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

use crate::config::Config;

/// Creates the database named in `DATABASE_URL` if it is missing. Two nodes starting at once may
/// both try; the loser's "already exists" is fine.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(url).await? {
        tracing::info!("database does not exist yet; creating it");
        if let Err(err) = sqlx::Postgres::create_database(url).await {
            let exists = err
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "42P04");
            if !exists {
                return Err(err.into());
            }
        }
    }
    Ok(())
}

/// Applies pending migrations (under sqlx's advisory lock, so concurrent nodes take turns).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}

/// One round trip to Postgres, for readiness checks.
pub async fn ping(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query_scalar!(r#"select 1 as "one!""#)
        .fetch_one(db)
        .await?;
    Ok(())
}

/// The connection pool. Acquiring a connection gives up after a few seconds so that a dead
/// Postgres answers `503 unavailable` promptly instead of hanging every request.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&config.database_url)
        .await?;
    Ok(pool)
}

/// Connection options for a task that runs the same few statements all day, each reaching its
/// rows through keys (the message writer, the webhook worker): one generic plan per statement
/// and connection, never re-planned (planning a `message_view` read costs more than running it),
/// made of index look-ups only, so that a plan made while a table was small stays right. And no
/// JIT: a scan with no index to use (a small table's) keeps the huge cost that `enable_seqscan =
/// off` gives it, which passes `jit_above_cost`, and compiling the plan then took 130 ms of
/// every run of a 1 ms statement.
pub fn fixed_plans(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("jit", "off"),
        ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"),
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
    ])
}

/// The message writer's own connection, beside the shared pool, with a fixed plan for its one
/// big batch statement (`messages::insert_batch`):
/// - a generic plan: left to itself Postgres re-plans the statement for every execution (a
///   custom plan fits the exact array lengths, and for small batches the generic one never looks
///   cheaper), and planning it costs about 0.3 ms, more than executing a batch of one;
/// - nested loops over indexes only: a generic plan is made once per connection, and one made
///   while `messages` was empty hash-joined a sequential scan of `messages` to find earlier
///   `client_id`s. With autovacuum off, nothing ever replaced it, and each batch then read the
///   whole table. Every row this statement touches is reached through a primary or unique key,
///   so this plan is the right one at any size.
///
/// The writer runs one statement at a time, so one connection is all it needs. sqlx would ping
/// it before every batch (`test_before_acquire`), a round trip per batch; it is pinged only after
/// a second of rest, when Postgres may have gone away meanwhile. Under load a lost connection
/// fails the batch in flight either way (`unavailable`, nothing acknowledged).
pub fn writer_pool(db: &PgPool) -> PgPool {
    let options = fixed_plans((*db.connect_options()).clone());
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < std::time::Duration::from_secs(1) {
                    return Ok(true);
                }
                // A dead connection is closed and replaced, not handed to the writer.
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
        .connect_lazy_with(options)
}
