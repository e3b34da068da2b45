//! Schema migrations, embedded in the binary and applied in order at start
//! (and by `listrelay migrate`). Each runs in its own transaction under an
//! advisory lock, so hosts starting at the same time apply it once.

use tokio_postgres::Client;

use super::{col, pg_err};
use crate::store::Result;

/// Every migration, by version. Never edit one that shipped: add the next.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "initial schema",
        include_str!("migrations/0001_init.sql"),
    ),
    (
        2,
        "bounces, moderation and subscription",
        include_str!("migrations/0002_bounces_moderation.sql"),
    ),
    (
        3,
        "member keys for paging large lists",
        include_str!("migrations/0003_member_keys.sql"),
    ),
    (
        4,
        "jobs planned in steps (drafts sealed when whole)",
        include_str!("migrations/0004_job_drafts.sql"),
    ),
    (
        5,
        "API tokens and the audit log",
        include_str!("migrations/0005_access.sql"),
    ),
    (
        6,
        "per-member delivery modes",
        include_str!("migrations/0006_delivery_modes.sql"),
    ),
];

/// Key of the advisory lock held while migrating ("listrelay" in ASCII, cut).
const LOCK: i64 = 0x6c69_7374_7265_6c61;

/// The version the schema is at (0 for an empty database).
pub async fn version(client: &Client) -> Result<i32> {
    let row = client
        .query_one(
            "SELECT to_regclass('listrelay_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let exists: bool = col(&row, "pg_class", 0)?;
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM listrelay_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?;
    col(&row, "listrelay_migrations", 0)
}

/// Applies the migrations the database lacks; returns those it applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<(i32, &'static str)>> {
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(pg_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS listrelay_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg_err)?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM listrelay_migrations WHERE version = $1",
                &[&version],
            )
            .await
            .map_err(pg_err)?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO listrelay_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        applied.push((version, name));
    }
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let have = version(client).await?;
    if have > latest {
        return Err(crate::store::StoreError::Invalid(format!(
            "the database schema is at version {have}, newer than this listrelay ({latest}); upgrade listrelay"
        )));
    }
    Ok(applied)
}
